# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every statement of a Prisma migration.sql for PostgreSQL, parsed by PostgreSQL's parser and put in one class.

classify(sql_text) returns one entry per statement, and one per subcommand of an ALTER TABLE with several (Prisma
writes ``ALTER TABLE "Job" ADD COLUMN "a" ..., ADD COLUMN "b" ...;``). An entry is a plain dict:

    line, column      1-based position where the statement (or the subcommand) starts in the file
    text              its SQL; a subcommand's is its table's ``ALTER TABLE <name>`` and the subcommand as written
    statement         the whole statement as written (equal to text but for a subcommand), subcommand: 1, 2... or None
    prisma_step       Prisma's label from the comment before it (``-- AddForeignKey`` gives AddForeignKey), or None
    class             online | catalog | refused | skip (below)
    kind              what it does (KINDS lists them all); refused entries keep theirs (create_index, drop_column...)
    lock              the lock level it takes, as PostgreSQL's "Explicit Locking" table names it, the way the tool
                      runs it: for an online kind the lock held during the long part (SHARE UPDATE EXCLUSIVE), for
                      the others the statement's own; None when it locks no table
    brief_lock        online kinds: the stronger lock taken for a catalog moment only, under the short lock_timeout
    lock_as_written   the lock of the statement exactly as written (what a plain run, or prisma migrate deploy, takes)
    lock_on           the tables (or types, indexes) locked, schema-qualified when the SQL qualifies them
    details           what the tool's kinds need: schema, table, name, columns, unique, method, where, include,
                      references, on_delete, on_update, expression, column, definition, enum, values...
    how               one sentence: how the tool runs it
    why               refused and skip: why; catalog on a table created earlier in the file: why the plain form
    safe_way          refused: the expand/contract way to reach the same schema without hurting the application
    ack               refused: the acknowledgement key that accepts it (below); None when nothing can accept it
    needs_server_proof  a fact only the live server can prove (below), or absent; class_if_proven beside it

The classes (issue 23, point 2):
    online   done by the tool's own kinds: CREATE [UNIQUE] INDEX built CONCURRENTLY, DROP INDEX CONCURRENTLY,
             ADD CONSTRAINT UNIQUE / FOREIGN KEY / CHECK and SET NOT NULL on today's paths (NOT VALID, then
             VALIDATE), ADD PRIMARY KEY as a unique index built concurrently then ADD PRIMARY KEY USING INDEX.
    catalog  catalog-only, run as written under the short lock_timeout with retries, in file order. Anything on a
             table created earlier in the same file is catalog too: the table holds no rows and no running code uses
             it yet, so the plain form is equivalent and faster (its why says so, for --check to show).
    refused  refused before any change unless acknowledged: rewrites of the table, statements that break the
             running application (renames), that lose data (drops), data changes, and anything unknown.
    skip     changes nothing a migration carries: transaction control (each statement runs on its own), SET of
             lock_timeout / statement_timeout (the tool sets its own), a read-only SELECT.

Acknowledgements. A refused entry's ack is ``<line>:<kind>`` (for example ``12:drop_column``); a migrations folder
prefixes the migration's name: ``20261201000000_drop_notes:12:drop_column``. The kind is part of the key so that an
acknowledgement written for one statement never accepts another one that an edit moved to its line: the statement
at line 12 is then no longer a drop_column, the key matches nothing, and acknowledge() reports it as unused, which is
an error. A key accepts every refused statement of its kind that starts on its line (Prisma writes one subcommand a
line, so that is one). An acknowledged entry runs exactly as written, under the short lock_timeout, taking
lock_as_written.
A statement PostgreSQL cannot parse has no ack: nothing can accept it.

Server proofs. The file alone cannot tell everything; such an entry is refused, with needs_server_proof saying what
the preflight may prove on the live server to lift the refusal, and class_if_proven the class it then takes:
    {'default_volatility': '<expression>'}  ADD COLUMN with a default calling a function that is not a known constant
                                            (a volatile one, checked in pg_proc.provolatile, rewrites the table);
    {'column_type': {'schema', 'table', 'column', 'to'}}  ALTER COLUMN TYPE when the column's current type is not
                                            known from the file: classify() again with column_types read from the
                                            catalog (format_type) decides it, through type_change_rewrites().

Pure Python over pglast (PostgreSQL's parser, libpg_query); no database access. pglast is imported guarded, so the
modules load without it and say what to install (plan_sql.MISSING_PARSER).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

try:
    from pglast import enums
    from pglast.parser import ParseError, parse_sql, scan
    from pglast.stream import RawStream
    HAS_PGLAST = True
except ImportError:  # reported by classify() with what to install
    HAS_PGLAST = False

MISSING_PARSER = ('the Python package pglast (PostgreSQL\'s parser) is not installed: install it (pip install '
                  'pglast), it is needed to classify migration statements')

CLASSES = ('online', 'catalog', 'refused', 'skip')

ACCESS_EXCLUSIVE = 'ACCESS EXCLUSIVE'
EXCLUSIVE = 'EXCLUSIVE'
SHARE_ROW_EXCLUSIVE = 'SHARE ROW EXCLUSIVE'
SHARE = 'SHARE'
SHARE_UPDATE_EXCLUSIVE = 'SHARE UPDATE EXCLUSIVE'
ROW_EXCLUSIVE = 'ROW EXCLUSIVE'


def _kind(cls, lock_as_written, how=None, lock=None, brief_lock=None, why=None, safe_way=None):
    return dict(cls=cls, lock_as_written=lock_as_written, lock=lock or lock_as_written, brief_lock=brief_lock,
                how=how, why=why, safe_way=safe_way)


REWRITE_AND_BLOCK = ('PostgreSQL rewrites the whole table and rebuilds its indexes under ACCESS EXCLUSIVE: no query '
                     'of the application can read or write the table until it is done (minutes on a large table)')
# Every kind: its class, its locks, how the tool runs it, and for a refused one why and the safe way. docs/prisma.md
# has the same table for readers; tests/unit/test_statement_classes.py checks that it lists every kind.
KINDS = dict(
    create_index=_kind('online', SHARE, lock=SHARE_UPDATE_EXCLUSIVE,
                       how='built CONCURRENTLY by the index kind (CREATE [UNIQUE] INDEX CONCURRENTLY), then proven '
                           'valid'),
    drop_index=_kind('online', ACCESS_EXCLUSIVE, lock=SHARE_UPDATE_EXCLUSIVE, how='DROP INDEX CONCURRENTLY'),
    add_unique=_kind('online', ACCESS_EXCLUSIVE, lock=SHARE_UPDATE_EXCLUSIVE, brief_lock=ACCESS_EXCLUSIVE,
                     how='a unique index built CONCURRENTLY, then ADD CONSTRAINT ... UNIQUE USING INDEX'),
    add_primary_key=_kind('online', ACCESS_EXCLUSIVE, lock=SHARE_UPDATE_EXCLUSIVE, brief_lock=ACCESS_EXCLUSIVE,
                          how='a unique index built CONCURRENTLY, then ADD CONSTRAINT ... PRIMARY KEY USING INDEX '
                              '(its columns must be NOT NULL first, or that step scans the table)'),
    add_foreign_key=_kind('online', SHARE_ROW_EXCLUSIVE, lock=SHARE_UPDATE_EXCLUSIVE, brief_lock=SHARE_ROW_EXCLUSIVE,
                          how='ADD CONSTRAINT ... NOT VALID, then VALIDATE CONSTRAINT (ROW SHARE on the referenced '
                              'table)'),
    add_check=_kind('online', ACCESS_EXCLUSIVE, lock=SHARE_UPDATE_EXCLUSIVE, brief_lock=ACCESS_EXCLUSIVE,
                    how='ADD CONSTRAINT ... NOT VALID, then VALIDATE CONSTRAINT'),
    set_not_null=_kind('online', ACCESS_EXCLUSIVE, lock=SHARE_UPDATE_EXCLUSIVE, brief_lock=ACCESS_EXCLUSIVE,
                       how='on PostgreSQL 18+, ADD CONSTRAINT ... NOT NULL ... NOT VALID, then VALIDATE CONSTRAINT; '
                           'before 18, a CHECK (column IS NOT NULL) added NOT VALID and validated, then SET NOT NULL '
                           '(no scan), then the check dropped'),
    create_table=_kind('catalog', ACCESS_EXCLUSIVE, how='run as written: a new, empty table'),
    create_enum=_kind('catalog', None, how='run as written'),
    add_enum_value=_kind('catalog', EXCLUSIVE, how='run as written, in a transaction of its own (PostgreSQL 12+; the '
                                                   'lock is on the type, and blocks no query of its tables)'),
    add_column=_kind('catalog', ACCESS_EXCLUSIVE, how='run as written under the short lock_timeout: no rewrite (a '
                                                      'nullable column, or a non-volatile default, PostgreSQL 11+)'),
    drop_not_null=_kind('catalog', ACCESS_EXCLUSIVE, how='run as written under the short lock_timeout'),
    set_default=_kind('catalog', ACCESS_EXCLUSIVE, how='run as written under the short lock_timeout (only new rows '
                                                       'take the default)'),
    drop_default=_kind('catalog', ACCESS_EXCLUSIVE, how='run as written under the short lock_timeout'),
    drop_constraint=_kind('catalog', ACCESS_EXCLUSIVE, how='run as written under the short lock_timeout (a foreign '
                                                           'key locks its referenced table too)'),
    validate_constraint=_kind('catalog', SHARE_UPDATE_EXCLUSIVE, how='run as written: it scans the table, but blocks '
                                                                     'no read or write'),
    alter_column_type=_kind(
        'refused', ACCESS_EXCLUSIVE, how='a binary-coercible change (a wider varchar, varchar to text, a wider '
                                         'numeric precision) runs as written, with no rewrite, under the short '
                                         'lock_timeout; any other is refused',
        why=REWRITE_AND_BLOCK + '; and a narrower type, or a USING expression, can fail on existing rows half way',
        safe_way='add a column of the new type, write both columns from the application (or a trigger), backfill '
                 'the new one in batches, switch reads to it, then drop the old column in a later release'),
    rename_index=_kind('catalog', SHARE_UPDATE_EXCLUSIVE, how='run as written (Prisma\'s RenameIndex)'),
    rename_constraint=_kind('catalog', ACCESS_EXCLUSIVE, how='run as written under the short lock_timeout'),
    create_schema=_kind('catalog', None, how='run as written (Prisma\'s first migration starts with it)'),
    create_sequence=_kind('catalog', None, how='run as written'),
    alter_sequence=_kind('catalog', SHARE_ROW_EXCLUSIVE, how='run as written (ALTER SEQUENCE ... OWNED BY, which '
                                                             'Prisma writes with an autoincrement)'),
    create_extension=_kind('catalog', None, how='run as written (the extension\'s own script may take more locks)'),
    comment=_kind('catalog', SHARE_UPDATE_EXCLUSIVE, how='run as written'),
    add_column_volatile_default=_kind(
        'refused', ACCESS_EXCLUSIVE,
        why='a volatile default (a value computed per row: a random or generated value, a sequence, a stored '
            'generated or identity column) is written into every existing row: ' + REWRITE_AND_BLOCK,
        safe_way='add the column nullable without a default, then SET DEFAULT for new rows (catalog only), '
                 'backfill the existing rows in batches, then SET NOT NULL (done online) if it must be required'),
    add_column_required=_kind(
        'refused', ACCESS_EXCLUSIVE,
        why='NOT NULL without a default fails on a table that has rows, and once it exists the running '
            'application, which does not write the column, fails on every insert',
        safe_way='add the column nullable (or with a constant default, catalog only), deploy code that writes it, '
                 'backfill the existing rows in batches, then SET NOT NULL (done online)'),
    add_column_with_constraint=_kind(
        'refused', ACCESS_EXCLUSIVE,
        why='a constraint declared inside ADD COLUMN (UNIQUE, PRIMARY KEY, REFERENCES, CHECK) is built or checked '
            'under the same ACCESS EXCLUSIVE lock: an index built without CONCURRENTLY, or a scan of the table',
        safe_way='add the column alone, then the constraint in a statement of its own, which goes online'),
    rename_column=_kind(
        'refused', ACCESS_EXCLUSIVE,
        why='the running application still reads and writes the old name: its queries fail from the moment the '
            'rename commits until every instance runs the new code',
        safe_way='keep the column\'s name in the database and rename the field only (@map("old_name") in Prisma); '
                 'or add the new column, write both, backfill it in batches, switch reads to it, and drop the old '
                 'column in a later release'),
    rename_table=_kind(
        'refused', ACCESS_EXCLUSIVE,
        why='the running application still queries the old name: every query of the table fails from the moment '
            'the rename commits until every instance runs the new code',
        safe_way='keep the table\'s name in the database and rename the model only (@@map("OldName") in Prisma); or '
                 'create the new table, write both, backfill it in batches, switch reads, and drop the old one later'),
    rename_type=_kind(
        'refused', ACCESS_EXCLUSIVE,
        why='queries and casts of the running application that name the old type fail from the moment it commits',
        safe_way='keep the database name and rename in the schema only (@@map on the enum in Prisma)'),
    rename_enum_value=_kind(
        'refused', EXCLUSIVE,
        why='rows keep their value under the new label, and the running application, which still writes the old '
            'label, fails on every such write',
        safe_way='add the new value, deploy code that writes it, update the rows in batches, and stop using the old '
                 'value (an enum value cannot be dropped); or rename in the schema only (@map on the value)'),
    drop_column=_kind(
        'refused', ACCESS_EXCLUSIVE,
        why='the data in the column is lost for good, and queries of the running application that name it fail '
            'until every instance runs the new code',
        safe_way='first deploy code that no longer reads or writes the column (the field removed from the Prisma '
                 'schema), keep a copy of the data if it may be needed, then drop it in a later release, '
                 'acknowledged'),
    drop_table=_kind(
        'refused', ACCESS_EXCLUSIVE,
        why='every row of the table is lost for good, and queries of the running application that use it fail',
        safe_way='first deploy code that no longer uses the table, back it up (pg_dump --table), then drop it in a '
                 'later release, acknowledged'),
    drop_type=_kind(
        'refused', ACCESS_EXCLUSIVE,
        why='the type is lost (it fails while a column still uses it), and no rollback can bring back its values',
        safe_way='drop the columns that use it first, in an earlier release, then drop the type, acknowledged'),
    update=_kind(
        'refused', ROW_EXCLUSIVE,
        why='it changes rows, not the schema: one statement over a table holds the lock of every row it changes '
            'until it commits (the application\'s writes to them wait), its cost depends on the data, and no schema '
            'rollback undoes it',
        safe_way='backfill in batches of a few thousand rows by key, each in its own transaction, from a job outside '
                 'the migration'),
    insert=_kind(
        'refused', ROW_EXCLUSIVE,
        why='it changes rows, not the schema: a rerun inserts the rows again, and no schema rollback removes them',
        safe_way='seed data from a job outside the migration, idempotently (INSERT ... ON CONFLICT DO NOTHING), in '
                 'batches'),
    delete=_kind(
        'refused', ROW_EXCLUSIVE,
        why='it removes rows for good, and holds the lock of every row it deletes until it commits',
        safe_way='delete in batches by key from a job outside the migration, after a backup of the rows'),
    unknown=_kind(
        'refused', None,
        why='a statement this classifier does not know: its locks and its effect on the application cannot be '
            'stated',
        safe_way='run it yourself, reviewed for locks, before or after the migration; or acknowledge it to run as '
                 'written under the short lock_timeout'),
    syntax_error=_kind('refused', None, why='PostgreSQL\'s parser cannot read it',
                       safe_way='fix the SQL: nothing can acknowledge a statement that cannot be parsed'),
    transaction_control=_kind('skip', None, how='left out', why='transaction control: each statement runs on its own '
                                                                '(CONCURRENTLY cannot run in a block)'),
    session_timeout=_kind('skip', None, how='left out', why='session timeout: the tool sets lock_timeout and '
                                                            'statement_timeout per statement (transaction_timeout 0 '
                                                            'on 17+)'),
    read_only_query=_kind('skip', None, how='left out', why='read-only query (the preflight does its own checks, '
                                                            'e.g. for duplicate keys)'),
)

# Kinds of the online class whose form the tool's kinds cannot carry: refused, and acknowledged they run as written.
ONLINE_FORM_SAFE_WAY = ('write it in a form the tool\'s kind can carry (named, plain columns, no storage options), '
                        'or acknowledge it to run as written, which holds %s on the table while it runs')
SESSION_SETTINGS_SKIPPED = ('lock_timeout', 'statement_timeout', 'idle_in_transaction_session_timeout', 'transaction_timeout')
# pg_constraint's letters for ON DELETE / ON UPDATE, as pglast gives them.
REFERENTIAL_ACTIONS = {'a': 'NO ACTION', 'r': 'RESTRICT', 'c': 'CASCADE', 'n': 'SET NULL', 'd': 'SET DEFAULT'}
# Functions of pg_catalog that are STABLE or IMMUTABLE (evaluated once for ADD COLUMN: no rewrite, PostgreSQL 11+),
# and those known VOLATILE; any other function is for the server to prove (needs_server_proof).
NON_VOLATILE_FUNCTIONS = ('now', 'transaction_timestamp', 'statement_timestamp', 'current_date', 'localtimestamp')
VOLATILE_FUNCTIONS = ('random', 'gen_random_uuid', 'uuid_generate_v1', 'uuid_generate_v1mc', 'uuid_generate_v4',
                      'clock_timestamp', 'timeofday', 'nextval', 'random_normal', 'uuidv4', 'uuidv7')
PRISMA_STEP = re.compile(r'^--\s*([A-Z][a-z]+(?:[A-Z][a-z]*)+)\b')
# Type names pglast gives (pg_catalog's) and their families for a rewrite-free change.
TEXT_TYPES = ('varchar', 'text')


def _names(nodes):
    return [node.sval for node in nodes or ()]


def _qualified(schema, name):
    return '%s.%s' % (schema, name) if schema else name


def _relation(relation):
    return relation.schemaname, relation.relname


def _deparse(node):
    return RawStream()(node)


REFUSED_HOW = 'refused unless acknowledged; acknowledged, it runs as written under the short lock_timeout'


def _entry(kind, **values):
    spec = KINDS[kind]
    how = REFUSED_HOW if spec['cls'] == 'refused' and spec['how'] is None else spec['how']
    entry = dict(kind=kind, cls=spec['cls'], lock=spec['lock'], brief_lock=spec['brief_lock'],
                 lock_as_written=spec['lock_as_written'], lock_on=[], details={}, how=how,
                 why=spec['why'], safe_way=spec['safe_way'])
    entry.update(values)
    return entry


def _refuse(entry, why, safe_way=None, **values):
    """entry turned refused (keeping its kind): it runs as written only if acknowledged."""
    entry.update(cls='refused', lock=entry['lock_as_written'], brief_lock=None, how=REFUSED_HOW, why=why,
                 safe_way=safe_way or entry['safe_way'] or KINDS['unknown']['safe_way'], **values)
    return entry


# ---------------------------------------------------------------------------------------------------------- indexes

def _index(statement):
    schema, table = _relation(statement.relation)
    problems = []
    if not statement.idxname:
        problems.append('the index has no name (PostgreSQL would invent one, so no rerun or rollback could find it): '
                        'name it as Prisma does, <Table>_<columns>_idx')
    if statement.relation.inh is False:
        problems.append('ON ONLY builds an index on a partitioned parent alone: plan the index on the parent (without '
                        'ONLY), and the playbooks build it on each partition and attach them')
    columns = []
    for param in statement.indexParams:
        if param.name is None:
            problems.append('key %s is an expression; only plain columns can be planned' % _deparse(param.expr))
            continue
        columns.append(param.name)
        if param.ordering != enums.SortByDir.SORTBY_DEFAULT or \
                param.nulls_ordering != enums.SortByNulls.SORTBY_NULLS_DEFAULT:
            problems.append('column %s has a sort order (ASC/DESC/NULLS FIRST/LAST)' % param.name)
        if param.opclass or param.collation:
            problems.append('column %s has an operator class or collation' % param.name)
    if statement.options:
        problems.append('WITH (...) storage parameters')
    if statement.tableSpace:
        problems.append('TABLESPACE %s' % statement.tableSpace)
    if statement.nulls_not_distinct:
        problems.append('NULLS NOT DISTINCT')
    details = dict(schema=schema, table=table, name=statement.idxname, columns=columns,
                   unique=bool(statement.unique), method=statement.accessMethod or 'btree',
                   where=_deparse(statement.whereClause) if statement.whereClause is not None else None,
                   include=[param.name for param in statement.indexIncludingParams or ()])
    entry = _entry('create_index', details=details, lock_on=[_qualified(schema, table)])
    return entry, (schema, table), problems


def _drop(statement):
    kinds = {enums.ObjectType.OBJECT_INDEX: 'drop_index', enums.ObjectType.OBJECT_TABLE: 'drop_table',
             enums.ObjectType.OBJECT_TYPE: 'drop_type'}
    kind = kinds.get(statement.removeType)
    if kind is None:
        return _entry('unknown'), None, []
    objects = [_names(item) if isinstance(item, tuple) else _names(item.names) for item in statement.objects]
    names = [(parts[-2] if len(parts) > 1 else None, parts[-1]) for parts in objects]
    problems = []
    if len(names) != 1:
        problems.append('it drops %d objects at once: drop one per statement' % len(names))
    if statement.behavior == enums.DropBehavior.DROP_CASCADE:
        problems.append('CASCADE drops whatever depends on it too (constraints, views, columns)')
    schema, name = names[0]
    details = dict(schema=schema, name=name, if_exists=bool(statement.missing_ok))
    if kind == 'drop_table':
        details = dict(schema=schema, table=name, if_exists=bool(statement.missing_ok))
    return _entry(kind, details=details, lock_on=[_qualified(*pair) for pair in names]), (schema, name), problems


# ------------------------------------------------------------------------------------------------------ constraints

def _constraint(definition, schema, table):
    """(kind, details, problems) of a table constraint; kind None when no online kind carries its type."""
    contype = definition.contype
    problems = []
    details = dict(schema=schema, table=table, name=definition.conname)
    if contype in (enums.ConstrType.CONSTR_UNIQUE, enums.ConstrType.CONSTR_PRIMARY):
        kind = 'add_unique' if contype == enums.ConstrType.CONSTR_UNIQUE else 'add_primary_key'
        if definition.indexname:
            problems.append('%s USING INDEX attaches an existing index; plan the columns instead'
                            % ('UNIQUE' if kind == 'add_unique' else 'PRIMARY KEY'))
        if definition.including:
            problems.append('INCLUDE (...)')
        if definition.nulls_not_distinct:
            problems.append('NULLS NOT DISTINCT')
        if definition.options or definition.indexspace:
            problems.append('WITH (...) or USING INDEX TABLESPACE')
        details['columns'] = _names(definition.keys)
    elif contype == enums.ConstrType.CONSTR_FOREIGN:
        kind = 'add_foreign_key'
        if not definition.pk_attrs:
            problems.append('REFERENCES names no columns: name the referenced key columns, as Prisma does')
        if definition.fk_matchtype not in ('s', '\x00', None):
            problems.append('MATCH FULL')
        if definition.fk_del_set_cols:
            problems.append('ON DELETE SET NULL / SET DEFAULT (columns)')
        details.update(columns=_names(definition.fk_attrs),
                       references=dict(schema=definition.pktable.schemaname, table=definition.pktable.relname,
                                       columns=_names(definition.pk_attrs)),
                       on_delete=REFERENTIAL_ACTIONS.get(definition.fk_del_action, 'NO ACTION'),
                       on_update=REFERENTIAL_ACTIONS.get(definition.fk_upd_action, 'NO ACTION'))
    elif contype == enums.ConstrType.CONSTR_CHECK:
        kind = 'add_check'
        if definition.is_no_inherit:
            problems.append('NO INHERIT')
        details['expression'] = _deparse(definition.raw_expr)
    else:
        return None, details, []
    if not definition.conname:
        problems.insert(0, 'the constraint has no name (PostgreSQL would invent one, so no rerun or rollback could '
                           'find it): name it as Prisma does')
    if definition.deferrable or definition.initdeferred:
        problems.append('DEFERRABLE / INITIALLY DEFERRED')
    return kind, details, problems


# ---------------------------------------------------------------------------------------------------------- columns

def _type_text(type_name):
    return _deparse(type_name)


def _column_definition(column):
    """A ColumnDef as data: name, type, not_null, default (text), and the constraints other than those."""
    not_null = bool(column.is_not_null)
    default = None
    default_node = None
    others = []
    computed = bool(column.identity not in ('\x00', '', None) or column.generated not in ('\x00', '', None))
    for constraint in column.constraints or ():
        if constraint.contype == enums.ConstrType.CONSTR_NOTNULL:
            not_null = True
        elif constraint.contype == enums.ConstrType.CONSTR_NULL:
            not_null = False
        elif constraint.contype == enums.ConstrType.CONSTR_DEFAULT:
            default_node = constraint.raw_expr
            default = _deparse(constraint.raw_expr)
        elif constraint.contype in (enums.ConstrType.CONSTR_GENERATED, enums.ConstrType.CONSTR_IDENTITY):
            computed = True
        else:
            others.append(constraint)
    if column.raw_default is not None:
        default_node = column.raw_default
        default = _deparse(column.raw_default)
    definition = dict(name=column.colname, type=_type_text(column.typeName), not_null=not_null, default=default)
    if computed:
        definition['computed'] = True  # GENERATED ... STORED or an identity: a value written into every row
    return definition, default_node, others


def default_volatility(node):
    """('constant' | 'volatile' | 'unknown', the function call's text or None) of a default expression's tree:
    literals, casts of them, arrays of them, CURRENT_TIMESTAMP and now() are constants for ADD COLUMN (evaluated once,
    no rewrite); a known volatile function is volatile; any other function call only the server can tell."""
    name = type(node).__name__
    if node is None or name in ('A_Const', 'SQLValueFunction'):
        return 'constant', None
    if name == 'TypeCast':
        return default_volatility(node.arg)
    if name == 'A_ArrayExpr':
        return _worst(default_volatility(element) for element in node.elements or ())
    if name == 'A_Expr' and node.lexpr is None:  # a unary minus or plus of a constant
        return default_volatility(node.rexpr)
    if name == 'FuncCall':
        function = _names(node.funcname)
        bare = function[-1].lower()
        in_catalog = len(function) == 1 or function[0] == 'pg_catalog'
        if in_catalog and bare in VOLATILE_FUNCTIONS:
            return 'volatile', _deparse(node)
        if in_catalog and bare in NON_VOLATILE_FUNCTIONS and not node.args:
            return 'constant', None
        return 'unknown', _deparse(node)
    return 'unknown', _deparse(node)


def _worst(results):
    worst = ('constant', None)
    for result in results:
        if result[0] == 'volatile':
            return result
        if result[0] == 'unknown' and worst[0] == 'constant':
            worst = result
    return worst


def _add_column(command, schema, table, new_table):
    definition, default_node, others = _column_definition(command.def_)
    details = dict(schema=schema, table=table, column=definition['name'], definition=definition,
                   if_not_exists=bool(command.missing_ok))
    entry = _entry('add_column', details=details, lock_on=[_qualified(schema, table)])
    if new_table:
        return entry
    if others:
        entry['kind'] = 'add_column_with_constraint'
        return _refuse(entry, KINDS['add_column_with_constraint']['why'])
    if definition.get('computed') or definition['type'].lower() in ('serial', 'bigserial', 'smallserial',
                                                                              'serial4', 'serial8', 'serial2'):
        entry['kind'] = 'add_column_volatile_default'
        return _refuse(entry, KINDS['add_column_volatile_default']['why'])
    volatility, call = default_volatility(default_node) if default_node is not None else ('constant', None)
    if volatility == 'volatile':
        entry['kind'] = 'add_column_volatile_default'
        return _refuse(entry, 'its default %s is volatile: ' % call + KINDS['add_column_volatile_default']['why'])
    if definition['not_null'] and default_node is None:
        entry['kind'] = 'add_column_required'
        return _refuse(entry, KINDS['add_column_required']['why'])
    if volatility == 'unknown':
        return _refuse(entry, 'its default calls %s, and only the server knows whether that is volatile (a volatile '
                              'default rewrites the table under ACCESS EXCLUSIVE): the preflight proves it, or the '
                              'statement is refused' % call,
                       KINDS['add_column_volatile_default']['safe_way'],
                       needs_server_proof=dict(default_volatility=call), class_if_proven='catalog')
    return entry


def _type_key(type_text):
    """(base name, typmods, array) of a type written in SQL ('character varying(50)', 'VARCHAR(100)', 'text[]')."""
    statement = parse_sql('SELECT NULL::%s' % type_text)[0].stmt
    type_name = statement.targetList[0].val.typeName
    names = _names(type_name.names)
    base = names[-1] if len(names) == 1 or names[0] == 'pg_catalog' else '.'.join(names)
    modifiers = []
    for modifier in type_name.typmods or ():
        value = getattr(modifier, 'val', None)
        modifiers.append(getattr(value, 'ival', None))
    return base, tuple(modifiers), bool(type_name.arrayBounds)


def type_change_rewrites(from_type, to_type):
    """None when changing a column from from_type to to_type (SQL type texts) needs no rewrite and no scan, as the
    names alone prove it; else a sentence why it is refused. Conservative: only what is proven passes."""
    try:
        old, new = _type_key(from_type), _type_key(to_type)
    except (ParseError, AttributeError, IndexError):
        return 'the type %s or %s cannot be read' % (from_type, to_type)
    if old == new:
        return None
    (old_base, old_mods, old_array), (new_base, new_mods, new_array) = old, new
    if old_array or new_array:
        refusal = 'an array type changes only when identical'
    elif old_base in TEXT_TYPES and new_base == 'text':
        refusal = None
    elif old_base in TEXT_TYPES and new_base == 'varchar':
        # varchar(n) -> varchar(m >= n), and varchar(n) / text -> varchar without a length, are binary coercible.
        refusal = None if not new_mods or (old_base == 'varchar' and old_mods and old_mods[0] <= new_mods[0]) else \
            'a shorter or new length limit checks every row'
    elif old_base == new_base == 'numeric':
        # numeric(p, s) -> numeric(p2 >= p, s) or unconstrained numeric: no stored value changes.
        same_scale = len(new_mods) == len(old_mods) == 2 and old_mods[1] == new_mods[1] or \
            len(new_mods) == len(old_mods) == 1
        refusal = None if not new_mods or (old_mods and same_scale and new_mods[0] >= old_mods[0]) else \
            'another scale or a smaller precision rewrites or checks every row'
    elif old_base == new_base == 'varbit':
        refusal = None if not new_mods or (old_mods and new_mods[0] >= old_mods[0]) else \
            'a shorter length limit checks every row'
    else:
        refusal = 'no binary-coercible change from %s to %s is proven by their names' % (from_type, to_type)
    return None if refusal is None else '%s to %s: %s' % (from_type, to_type, refusal)


def _alter_column_type(command, schema, table, type_of, new_table):
    column = command.def_
    to_type = _type_text(column.typeName)
    details = dict(schema=schema, table=table, column=command.name, type=to_type,
                   using=_deparse(column.raw_default) if column.raw_default is not None else None)
    entry = _entry('alter_column_type', details=details, lock_on=[_qualified(schema, table)])
    if new_table:
        return dict(entry, cls='catalog', why=None, safe_way=None, how='run as written')
    if column.raw_default is not None:
        return _refuse(entry, 'USING %s computes a new value for every row: ' % details['using'] + REWRITE_AND_BLOCK)
    if column.collClause is not None:
        return _refuse(entry, 'a new COLLATE may rebuild the indexes of the column: ' + REWRITE_AND_BLOCK)
    from_type = type_of(command.name)
    if from_type is None:
        return _refuse(entry, 'the current type of %s is not in this file, so nothing proves the change to %s is '
                              'binary-coercible; if it is not, %s' % (command.name, to_type, REWRITE_AND_BLOCK),
                       needs_server_proof=dict(column_type=dict(schema=schema, table=table, column=command.name,
                                                                to=to_type)),
                       class_if_proven='catalog')
    details['from'] = from_type
    refusal = type_change_rewrites(from_type, to_type)
    if refusal:
        return _refuse(entry, '%s; %s' % (refusal, KINDS['alter_column_type']['why']))
    return dict(entry, cls='catalog', why=None, safe_way=None,
                how='run as written under the short lock_timeout: %s to %s is binary-coercible, no rewrite'
                    % (from_type, to_type))


# ------------------------------------------------------------------------------------------------------ ALTER TABLE

ALTER_COLUMN_KINDS = {'AT_DropNotNull': 'drop_not_null', 'AT_SetNotNull': 'set_not_null',
                      'AT_DropColumn': 'drop_column', 'AT_DropConstraint': 'drop_constraint',
                      'AT_ValidateConstraint': 'validate_constraint'}


def _alter_table_command(command, schema, table, type_of, new_table):
    """(entry, problems) of one subcommand of ALTER TABLE."""
    subtype = command.subtype.name
    locked = [_qualified(schema, table)]
    if subtype == 'AT_AddColumn':
        return _add_column(command, schema, table, new_table), []
    if subtype == 'AT_AlterColumnType':
        return _alter_column_type(command, schema, table, type_of, new_table), []
    if subtype == 'AT_ColumnDefault':
        kind = 'drop_default' if command.def_ is None else 'set_default'
        details = dict(schema=schema, table=table, column=command.name)
        if command.def_ is not None:
            details['default'] = _deparse(command.def_)
        return _entry(kind, details=details, lock_on=locked), []
    if subtype in ALTER_COLUMN_KINDS:
        kind = ALTER_COLUMN_KINDS[subtype]
        details = dict(schema=schema, table=table)
        details['constraint' if kind in ('drop_constraint', 'validate_constraint') else 'column'] = command.name
        if kind == 'drop_constraint':
            details['if_exists'] = bool(command.missing_ok)
        problems = ['CASCADE drops whatever depends on it too'] \
            if command.behavior == enums.DropBehavior.DROP_CASCADE else []
        return _entry(kind, details=details, lock_on=locked), problems
    if subtype == 'AT_AddConstraint':
        kind, details, problems = _constraint(command.def_, schema, table)
        if kind is None:
            return _entry('unknown', details=details, lock_on=locked), []
        if kind == 'add_foreign_key':
            references = details['references']
            locked.append(_qualified(references['schema'], references['table']))
        return _entry(kind, details=details, lock_on=locked), problems
    return _entry('unknown', details=dict(schema=schema, table=table, subcommand=subtype), lock_on=locked), []


# ---------------------------------------------------------------------------------------------------- other kinds

def _create_table(statement):
    schema, table = _relation(statement.relation)
    columns, constraints, locked = [], [], [_qualified(schema, table)]
    for element in statement.tableElts or ():
        if type(element).__name__ == 'ColumnDef':
            definition, _default, others = _column_definition(element)
            columns.append(definition)
            constraints.extend(others)
        else:
            constraints.append(element)
    primary_key = None
    for constraint in constraints:
        if constraint.contype == enums.ConstrType.CONSTR_PRIMARY:
            primary_key = dict(name=constraint.conname, columns=_names(constraint.keys))
        elif constraint.contype == enums.ConstrType.CONSTR_FOREIGN:
            locked.append(_qualified(constraint.pktable.schemaname, constraint.pktable.relname))
    details = dict(schema=schema, table=table, columns=columns, primary_key=primary_key,
                   if_not_exists=bool(statement.if_not_exists))
    entry = _entry('create_table', details=details, lock_on=locked)
    if statement.inhRelations or statement.partbound is not None or statement.ofTypename is not None:
        entry = _entry('unknown', details=details, lock_as_written=ACCESS_EXCLUSIVE, lock_on=locked + [
            _qualified(*_relation(parent)) for parent in statement.inhRelations or ()])
        return _refuse(entry, 'a table that inherits from, or is a partition of, an existing table changes that '
                              'table too (ACCESS EXCLUSIVE on it, and its rows if attached)')
    return entry


def _rename(statement):
    kinds = {enums.ObjectType.OBJECT_INDEX: 'rename_index', enums.ObjectType.OBJECT_TABCONSTRAINT: 'rename_constraint',
             enums.ObjectType.OBJECT_COLUMN: 'rename_column', enums.ObjectType.OBJECT_TABLE: 'rename_table',
             enums.ObjectType.OBJECT_TYPE: 'rename_type'}
    kind = kinds.get(statement.renameType, 'unknown')
    if statement.relation is not None:
        schema, name = _relation(statement.relation)
    else:
        parts = _names(statement.object) if isinstance(statement.object, tuple) else [str(statement.object)]
        schema, name = (parts[-2] if len(parts) > 1 else None), parts[-1]
    details = dict(schema=schema, new_name=statement.newname)
    if kind in ('rename_index', 'rename_type'):
        details['name'] = name
    else:
        details['table'] = name
    if kind == 'rename_column':
        details['column'] = statement.subname
    if kind == 'rename_constraint':
        details['constraint'] = statement.subname
    return _entry(kind, details=details, lock_on=[_qualified(schema, name)])


def _alter_enum(statement):
    names = _names(statement.typeName)
    schema, enum = (names[-2] if len(names) > 1 else None), names[-1]
    if statement.oldVal:
        return _entry('rename_enum_value', details=dict(schema=schema, enum=enum, value=statement.oldVal,
                                                        new_value=statement.newVal), lock_on=[_qualified(schema, enum)])
    details = dict(schema=schema, enum=enum, value=statement.newVal, if_not_exists=bool(statement.skipIfNewValExists))
    if statement.newValNeighbor:
        details['before' if not statement.newValIsAfter else 'after'] = statement.newValNeighbor
    return _entry('add_enum_value', details=details, lock_on=[_qualified(schema, enum)])


def _create_enum(statement):
    names = _names(statement.typeName)
    return _entry('create_enum', details=dict(schema=names[-2] if len(names) > 1 else None, enum=names[-1],
                                              values=[value.sval for value in statement.vals or ()]))


def _comment(statement):
    entry = _entry('comment', details=dict(object_type=statement.objtype.name[len('OBJECT_'):].lower(),
                                           comment=statement.comment))
    if statement.objtype in (enums.ObjectType.OBJECT_TABLE, enums.ObjectType.OBJECT_COLUMN):
        parts = _names(statement.object)
        parts = parts[:-1] if statement.objtype == enums.ObjectType.OBJECT_COLUMN else parts
        entry['lock_on'] = ['.'.join(parts)]
    else:
        entry['lock'] = entry['lock_as_written'] = None
    return entry


def _alter_sequence(statement):
    options = [option.defname for option in statement.options or ()]
    schema, name = _relation(statement.sequence)
    if options != ['owned_by']:
        return _refuse(_entry('unknown', lock_on=[_qualified(schema, name)]),
                       'ALTER SEQUENCE other than OWNED BY can restart or change the values the application gets')
    return _entry('alter_sequence', details=dict(schema=schema, sequence=name), lock_on=[_qualified(schema, name)])


def _select(statement):
    data_modifying = [cte for cte in statement.withClause.ctes
                      if type(cte.ctequery).__name__ != 'SelectStmt'] if statement.withClause else []
    if statement.intoClause is None and not statement.lockingClause and not data_modifying:
        return _entry('read_only_query')
    return _refuse(_entry('unknown'), 'a SELECT that writes (a data-modifying WITH, INTO) or locks rows (FOR '
                                      'UPDATE / SHARE)')


def _simple(statement):
    """The entry of a statement that is not an ALTER TABLE, or None for those the caller handles."""
    kind = type(statement).__name__
    if kind == 'CreateStmt':
        return _create_table(statement)
    if kind == 'CreateEnumStmt':
        return _create_enum(statement)
    if kind == 'AlterEnumStmt':
        return _alter_enum(statement)
    if kind == 'RenameStmt':
        return _rename(statement)
    if kind == 'CreateSchemaStmt':
        if statement.schemaElts:
            return _refuse(_entry('unknown'), 'CREATE SCHEMA with statements of its own: write them separately')
        return _entry('create_schema', details=dict(schema=statement.schemaname,
                                                    if_not_exists=bool(statement.if_not_exists)))
    if kind == 'CreateSeqStmt':
        schema, name = _relation(statement.sequence)
        return _entry('create_sequence', details=dict(schema=schema, sequence=name,
                                                      if_not_exists=bool(statement.if_not_exists)))
    if kind == 'AlterSeqStmt':
        return _alter_sequence(statement)
    if kind == 'CreateExtensionStmt':
        return _entry('create_extension', details=dict(extension=statement.extname,
                                                       if_not_exists=bool(statement.if_not_exists)))
    if kind == 'CommentStmt':
        return _comment(statement)
    if kind == 'TransactionStmt':
        return _entry('transaction_control')
    if kind == 'VariableSetStmt':
        if statement.name in SESSION_SETTINGS_SKIPPED:
            return _entry('session_timeout')
        return _refuse(_entry('unknown'), 'SET %s changes how the statements after it run (a search_path changes '
                                          'which tables their names mean)' % statement.name)
    if kind == 'SelectStmt':
        return _select(statement)
    if kind in ('UpdateStmt', 'InsertStmt', 'DeleteStmt'):
        schema, table = _relation(statement.relation)
        return _entry(kind[:-4].lower(), details=dict(schema=schema, table=table),
                      lock_on=[_qualified(schema, table)])
    return _entry('unknown', details=dict(statement=kind))


# --------------------------------------------------------------------------------------------------- the file walk

def _skip_comments(text):
    """Index of the first character of text that is neither whitespace nor inside a comment."""
    position = 0
    while position < len(text):
        if text[position].isspace():
            position += 1
        elif text.startswith('--', position):
            newline = text.find('\n', position)
            position = len(text) if newline < 0 else newline + 1
        elif text.startswith('/*', position):
            close = text.find('*/', position + 2)
            position = len(text) if close < 0 else close + 2
        else:
            break
    return position


def _prisma_step(gap):
    """Prisma's label of a statement (``-- CreateIndex`` gives CreateIndex): the last line comment of the text
    between the previous statement and it, if that comment is a label; None otherwise."""
    labels = [PRISMA_STEP.match(line.strip()) for line in gap.splitlines() if line.strip().startswith('--')]
    return labels[-1].group(1) if labels and labels[-1] else None


def _position(sql_text, offset):
    """1-based (line, column) of a character offset."""
    line_start = sql_text.rfind('\n', 0, offset) + 1
    return sql_text.count('\n', 0, offset) + 1, offset - line_start + 1


def _subcommand_starts(text, relation_offset):
    """Offsets in text (an ALTER TABLE) where each subcommand starts: after the table's name, then after each comma
    outside parentheses. The scanner is PostgreSQL's, so commas inside literals or quoted names do not count."""
    tokens = scan(text)
    index = next(position for position, token in enumerate(tokens) if token.start >= relation_offset)
    index += 1
    while index + 1 < len(tokens) and tokens[index].name == 'ASCII_46':  # schema.table: '.' then the name
        index += 2
    if index < len(tokens) and tokens[index].name == 'ASCII_42':  # ALTER TABLE name * (its children too)
        index += 1
    starts, depth = [tokens[index].start], 0
    for token in tokens[index:]:
        if token.name in ('ASCII_40', 'ASCII_91'):
            depth += 1
        elif token.name in ('ASCII_41', 'ASCII_93'):
            depth -= 1
        elif token.name == 'ASCII_44' and depth == 0:
            starts.append(token.end + 1)
    return starts


def _subcommand_texts(text, relation_offset):
    """[(offset of the subcommand in text, its own text)]."""
    starts = _subcommand_starts(text, relation_offset)
    pieces = []
    for number, start in enumerate(starts):
        end = starts[number + 1] - 1 if number + 1 < len(starts) else len(text)
        piece = text[start:end]
        lead = len(piece) - len(piece.lstrip())
        pieces.append((start + lead, piece.strip().rstrip(',').rstrip()))
    return pieces


def _placed(entry, sql_text, offset, text, statement_text, step, subcommand=None):
    line, column = _position(sql_text, offset)
    entry.update(line=line, column=column, text=text, statement=statement_text, prisma_step=step,
                 subcommand=subcommand)
    if entry['cls'] == 'refused':
        entry['ack'] = None if entry['kind'] == 'syntax_error' else '%d:%s' % (line, entry['kind'])
    entry['class'] = entry.pop('cls')
    return entry


def _on_new_table(entry, created):
    """entry of a statement on a table created earlier in the file: catalog, run as written (no rows, no user)."""
    entry.update(cls='catalog', lock=entry['lock_as_written'], brief_lock=None, how='run as written',
                 why='the table was created at line %d of this migration: it holds no rows and no running code uses '
                     'it yet, so the plain form is equivalent and faster' % created, safe_way=None)
    entry.pop('needs_server_proof', None)
    entry.pop('class_if_proven', None)
    return entry


def classify(sql_text, schema='public', column_types=None):
    """The entries of every statement of sql_text (a migration.sql), in file order (see the module's docstring).

    schema: the schema of unqualified names (to match a statement with a table created earlier in the file).
    column_types: {(schema or None, table, column): SQL type text} the current types of columns, read from the
    catalog by the caller; the types of columns created in the file are added as they appear.
    Raises ValueError when pglast is missing; SQL PostgreSQL cannot parse is one refused entry, kind syntax_error.
    """
    if not HAS_PGLAST:
        raise ValueError(MISSING_PARSER)
    try:
        raw_statements = parse_sql(sql_text)
    except ParseError as error:
        message, position = (error.args + (None,))[:2]
        offset = max(position - 1, 0) if isinstance(position, int) else 0
        entry = _refuse(_entry('syntax_error'), 'PostgreSQL cannot parse it: %s' % message)
        return [_placed(entry, sql_text, offset, '', '', None)]
    known_types = dict(((key[0] or schema, key[1], key[2]), value) for key, value in (column_types or {}).items())
    created = {}  # (schema, table) -> line of its CREATE TABLE
    created_indexes = {}  # (schema, index) -> (schema, table) of an index created in the file
    entries, previous_end = [], 0
    for raw in raw_statements:
        start = raw.stmt_location
        end = start + raw.stmt_len if raw.stmt_len else len(sql_text)
        start += _skip_comments(sql_text[start:end])
        step, previous_end = _prisma_step(sql_text[previous_end:start]), end
        statement_text = sql_text[start:end].strip()
        statement = raw.stmt
        line = _position(sql_text, start)[0]
        if type(statement).__name__ == 'AlterTableStmt' and statement.objtype == enums.ObjectType.OBJECT_TABLE:
            table_schema, table = _relation(statement.relation)
            key = (table_schema or schema, table)
            pieces = _subcommand_texts(statement_text, statement.relation.location - start)
            header = statement_text[:pieces[0][0]].rstrip()
            several = len(statement.cmds) > 1 and len(pieces) == len(statement.cmds)
            for number, command in enumerate(statement.cmds, start=1):
                entry, problems = _alter_table_command(command, table_schema, table,
                                                       lambda column: known_types.get(key + (column,)), key in created)
                if problems and entry['cls'] != 'refused':
                    _refuse(entry, '; '.join(problems), ONLINE_FORM_SAFE_WAY % entry['lock_as_written'])
                if key in created:
                    _on_new_table(entry, created[key])
                if entry['kind'] == 'add_column':
                    definition = entry['details']['definition']
                    known_types[key + (definition['name'],)] = definition['type']
                elif entry['kind'] == 'alter_column_type' and entry['cls'] == 'catalog':
                    known_types[key + (entry['details']['column'],)] = entry['details']['type']
                offset, text = (pieces[number - 1] if several else (0, statement_text))
                entries.append(_placed(entry, sql_text, start + offset,
                                       '%s %s' % (header, text) if several else text, statement_text, step,
                                       number if several else None))
            continue
        problems, target = [], None
        if type(statement).__name__ == 'IndexStmt':
            entry, target, problems = _index(statement)
            if statement.idxname:
                created_indexes[(target[0] or schema, statement.idxname)] = (target[0] or schema, target[1])
        elif type(statement).__name__ == 'DropStmt':
            entry, name, problems = _drop(statement)
            if entry['kind'] == 'drop_table':
                target = name
            elif entry['kind'] == 'drop_index':
                target = created_indexes.get((name[0] or schema, name[1]))
        elif type(statement).__name__ == 'AlterTableStmt':
            entry = _entry('unknown', details=dict(object_type=statement.objtype.name))
        else:
            entry = _simple(statement)
        if problems and entry['cls'] != 'refused':
            _refuse(entry, '; '.join(problems), ONLINE_FORM_SAFE_WAY % entry['lock_as_written'])
        if target is not None and (target[0] or schema, target[1]) in created:
            _on_new_table(entry, created[(target[0] or schema, target[1])])
        if entry['kind'] == 'create_table':
            created[(entry['details']['schema'] or schema, entry['details']['table'])] = line
            for column in entry['details']['columns']:
                known_types[(entry['details']['schema'] or schema, entry['details']['table'], column['name'])] = \
                    column['type']
        entries.append(_placed(entry, sql_text, start, statement_text, statement_text, step))
    return entries


def acknowledge(entries, acknowledgements, prefix=''):
    """(entries, unused): entries with acknowledged=True on each refused one whose ack (with prefix, e.g. the
    migration's name and ':') is in acknowledgements; unused: the acknowledgements of prefix that matched nothing,
    an error for the caller to report (a stale acknowledgement must not pass silently)."""
    wanted = set(key[len(prefix):] for key in acknowledgements if key.startswith(prefix))
    matched = set()
    for entry in entries:
        if entry['class'] == 'refused' and entry.get('ack') in wanted:
            entry['acknowledged'] = True
            matched.add(entry['ack'])
    return entries, sorted(prefix + key for key in wanted - matched)
