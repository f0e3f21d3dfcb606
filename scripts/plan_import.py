#!/usr/bin/env python3
"""Write a pg-zero-downtime plan from the SQL a team already has (a Prisma migration.sql, a hand-written file).

    .venv/bin/python scripts/plan_import.py prisma/migrations/20241125000000_t12_indexes/migration.sql -o plans/t12.yml

The SQL is parsed with PostgreSQL's own parser (pglast wraps libpg_query). Every
    CREATE [UNIQUE] INDEX [CONCURRENTLY] [IF NOT EXISTS] <name> ON <table> [USING <method>] (<columns>)
        [INCLUDE (<columns>)] [WHERE <predicate>]
becomes an index entry of its table, and every
    ALTER TABLE <table> ADD CONSTRAINT <name> UNIQUE (<columns>)
    ALTER TABLE <table> ADD CONSTRAINT <name> FOREIGN KEY (<columns>) REFERENCES <table> (<columns>)
        [ON DELETE <action>] [ON UPDATE <action>]
    ALTER TABLE <table> ADD CONSTRAINT <name> CHECK (<expression>)
    ALTER TABLE <table> ALTER COLUMN <column> SET NOT NULL      (named <Table>_<column>_not_null)
a constraint entry; the playbooks then build indexes CONCURRENTLY and add constraints NOT VALID, then validate them,
whatever the SQL said. Read-only queries
(a SELECT that checks for duplicates), transaction control and SET of a timeout change nothing the plan
has to carry: they are listed as skipped. Any other statement, or a feature of these two statements the
plan format cannot express (expression keys, sort order, operator classes, storage options, an unnamed
index, DEFERRABLE...), is refused with its line: the import fails and writes nothing, so no schema change
is ever dropped silently.

--base <plan> keeps the name, description, schema, baseline_queries and prisma_migration of an existing
plan and replaces only its tables and constraints: a team refreshes the DDL part of its plan from an
updated migration without retyping its baseline queries.
Exit status: 0 written, 2 refused (nothing written), 1 unreadable input.
"""

import argparse
import os
import sys

import yaml

try:
    import pglast
    from pglast import enums
    from pglast.stream import RawStream
except ImportError:  # pragma: no cover - the bootstrap installs it
    sys.exit('plan_import needs pglast: run scripts/bootstrap (or pip install -r requirements.txt)')

# Timeouts the playbooks set themselves, per statement; a SET of one of these in the SQL is not needed.
SESSION_SETTINGS_SKIPPED = ('lock_timeout', 'statement_timeout', 'idle_in_transaction_session_timeout')
# Keys a --base plan keeps; tables and constraints always come from the SQL.
BASE_KEYS = ('name', 'description', 'schema', 'baseline_queries', 'prisma_migration')


class Refusal(Exception):
    """A statement, or part of one, that the plan format cannot carry."""


def statement_spans(sql_text, raw_statements):
    """(first line, text) of each parsed statement, its leading whitespace and comments left out.

    pglast reports character offsets; a statement's span starts at most right after the previous semicolon.
    """
    spans = []
    for raw in raw_statements:
        start = raw.stmt_location
        end = start + raw.stmt_len if raw.stmt_len else len(sql_text)
        text = sql_text[start:end]
        offset = _skip_comments(text)
        spans.append((sql_text[:start + offset].count('\n') + 1, text[offset:].strip()))
    return spans


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


def _names(nodes):
    return [node.sval for node in nodes or ()]


def _table(relation):
    return relation.schemaname, relation.relname


def index_entry(statement):
    """(schema, table, plan index entry) of a CREATE INDEX, or Refusal naming what the plan cannot express."""
    problems = []
    if not statement.idxname:
        problems.append('the index has no name (PostgreSQL would invent one, so no rerun or rollback could find '
                        'it): name it as Prisma does, <Table>_<columns>_idx')
    if statement.relation.inh is False:
        problems.append('ON ONLY builds an index on a partitioned parent alone: plan the index on the parent (without '
                        'ONLY), and the playbooks build it on each partition and attach them')
    columns = []
    for param in statement.indexParams:
        if param.name is None:
            problems.append('key %s is an expression; only plain columns can be planned'
                            % RawStream()(param.expr))
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
    if problems:
        raise Refusal('; '.join(problems))
    entry = {'name': statement.idxname, 'columns': columns}
    if statement.unique:
        entry['unique'] = True
    if statement.accessMethod and statement.accessMethod != 'btree':
        entry['method'] = statement.accessMethod
    if statement.whereClause is not None:
        entry['where'] = RawStream()(statement.whereClause)
    if statement.indexIncludingParams:
        entry['include'] = [param.name for param in statement.indexIncludingParams]
    schema, table = _table(statement.relation)
    return schema, table, entry


# pg_constraint's letters for ON DELETE / ON UPDATE, as pglast gives them, and the plan's words.
REFERENTIAL_ACTIONS = {'a': 'NO ACTION', 'r': 'RESTRICT', 'c': 'CASCADE', 'n': 'SET NULL', 'd': 'SET DEFAULT'}
IMPORTABLE = ('only ALTER TABLE ... ADD CONSTRAINT ... UNIQUE / FOREIGN KEY / CHECK and ALTER COLUMN ... SET NOT NULL '
              'can be imported; move the other changes to a migration of their own')


def _unique_entry(definition, table):
    problems = []
    if definition.indexname:
        problems.append('UNIQUE USING INDEX attaches an existing index; plan the columns instead')
    if definition.including:
        problems.append('INCLUDE (...)')
    if definition.nulls_not_distinct:
        problems.append('NULLS NOT DISTINCT')
    if definition.options or definition.indexspace:
        problems.append('WITH (...) or USING INDEX TABLESPACE')
    return problems, {'name': definition.conname, 'table': table, 'type': 'unique', 'columns': _names(definition.keys)}


def _foreign_key_entry(definition, table):
    problems = []
    if not definition.pk_attrs:
        problems.append('REFERENCES names no columns: name the referenced key columns, as Prisma does')
    if definition.fk_matchtype not in ('s', '\x00', None):
        problems.append('MATCH FULL')
    if definition.fk_del_set_cols:
        problems.append('ON DELETE SET NULL / SET DEFAULT (columns)')
    references = {'table': definition.pktable.relname}
    if definition.pktable.schemaname:
        references['schema'] = definition.pktable.schemaname
    references['columns'] = _names(definition.pk_attrs)
    entry = {'name': definition.conname, 'table': table, 'type': 'foreign_key', 'columns': _names(definition.fk_attrs),
             'references': references}
    for key, letter in (('on_delete', definition.fk_del_action), ('on_update', definition.fk_upd_action)):
        if REFERENTIAL_ACTIONS.get(letter, 'NO ACTION') != 'NO ACTION':
            entry[key] = REFERENTIAL_ACTIONS[letter]
    return problems, entry


def _check_entry(definition, table):
    problems = ['NO INHERIT'] if definition.is_no_inherit else []
    return problems, {'name': definition.conname, 'table': table, 'type': 'check',
                      'expression': RawStream()(definition.raw_expr)}


CONSTRAINT_KINDS = {enums.ConstrType.CONSTR_UNIQUE: _unique_entry, enums.ConstrType.CONSTR_FOREIGN: _foreign_key_entry,
                    enums.ConstrType.CONSTR_CHECK: _check_entry}


def not_null_name(table, column):
    """The name of a NOT NULL entry (its helper check's, on the way): <Table>_<column>_not_null, at most 63 bytes."""
    return ('%s_%s' % (table, column))[:63 - len('_not_null')] + '_not_null'


def constraint_entries(statement):
    """[(schema, table, plan constraint entry)] of an ALTER TABLE made only of ADD CONSTRAINT ... UNIQUE, FOREIGN KEY
    or CHECK and ALTER COLUMN ... SET NOT NULL."""
    if statement.objtype != enums.ObjectType.OBJECT_TABLE:
        raise Refusal(IMPORTABLE)
    schema, table = _table(statement.relation)
    entries = []
    for command in statement.cmds:
        if command.subtype == enums.AlterTableType.AT_SetNotNull:
            entries.append((schema, table, {'name': not_null_name(table, command.name), 'table': table,
                                            'type': 'not_null', 'column': command.name}))
            continue
        definition = command.def_
        kind = getattr(definition, 'contype', None)
        if command.subtype != enums.AlterTableType.AT_AddConstraint or kind not in CONSTRAINT_KINDS:
            raise Refusal(IMPORTABLE)
        problems, entry = CONSTRAINT_KINDS[kind](definition, table)
        if not definition.conname:
            problems.insert(0, 'the constraint has no name (PostgreSQL would invent one, so no rerun or rollback could '
                               'find it): name it as Prisma does')
        if definition.deferrable or definition.initdeferred:
            problems.append('DEFERRABLE / INITIALLY DEFERRED')
        if problems:
            raise Refusal('; '.join(problems))
        entries.append((schema, table, entry))
    return entries


def skip_reason(statement):
    """Why a statement that changes nothing the plan carries can be left out, or None."""
    kind = type(statement).__name__
    if kind == 'SelectStmt':
        data_modifying = [cte for cte in statement.withClause.ctes
                          if type(cte.ctequery).__name__ != 'SelectStmt'] if statement.withClause else []
        if statement.intoClause is None and not statement.lockingClause and not data_modifying:
            return 'read-only query (the preflight does its own checks, e.g. for duplicate keys)'
    if kind == 'TransactionStmt':
        return 'transaction control (each planned statement runs on its own; CONCURRENTLY cannot run in a block)'
    if kind == 'VariableSetStmt' and statement.name in SESSION_SETTINGS_SKIPPED:
        return 'session timeout (the playbooks set lock_timeout and statement_timeout per statement)'
    return None


def import_sql(sql_text, schema='public'):
    """Parse SQL into (tables, constraints, skipped, refused).

    tables: plan tables in the order their first index appears; constraints: plan constraints in order;
    skipped: [(line, statement, reason)]; refused: [(line, statement, reason)].
    """
    try:
        raw_statements = pglast.parser.parse_sql(sql_text)
    except pglast.parser.ParseError as error:
        message, position = (error.args + (None,))[:2]
        line = sql_text[:position].count('\n') + 1 if isinstance(position, int) else None
        return [], [], [], [(line, '', 'PostgreSQL cannot parse it: %s' % message)]
    tables, by_table, constraints, skipped, refused = [], {}, [], [], []
    names = {}
    for raw, (line, text) in zip(raw_statements, statement_spans(sql_text, raw_statements)):
        statement = raw.stmt
        kind = type(statement).__name__
        try:
            if kind == 'IndexStmt':
                found = [index_entry(statement)]
            elif kind == 'AlterTableStmt':
                found = constraint_entries(statement)
            else:
                reason = skip_reason(statement)
                if reason:
                    skipped.append((line, text, reason))
                else:
                    refused.append((line, text, 'not an index or constraint: a plan only carries CREATE INDEX, '
                                                'ALTER TABLE ... ADD CONSTRAINT ... UNIQUE / FOREIGN KEY / CHECK and '
                                                'ALTER COLUMN ... SET NOT NULL; run this change separately (and '
                                                'reviewed for locks) before or after'))
                continue
        except Refusal as refusal:
            refused.append((line, text, str(refusal)))
            continue
        for table_schema, table, entry in found:
            qualified = (table_schema or schema, entry['name'])
            if qualified in names:
                refused.append((line, text, '%s is already defined at line %d' % (entry['name'], names[qualified])))
                continue
            names[qualified] = line
            if 'type' in entry:
                if table_schema and table_schema != schema:
                    entry = dict(entry, schema=table_schema)
                constraints.append(entry)
                continue
            key = (table_schema or schema, table)
            if key not in by_table:
                by_table[key] = {'name': table}
                if table_schema and table_schema != schema:
                    by_table[key]['schema'] = table_schema
                by_table[key]['indexes'] = []
                tables.append(by_table[key])
            by_table[key]['indexes'].append(entry)
    return tables, constraints, skipped, refused


def build_plan(tables, constraints, name, description, schema, base=None):
    """The plan as an ordered dict; with base, its name, description, schema and queries are kept."""
    plan = {'name': name, 'description': description, 'schema': schema}
    if base:
        plan.update((key, base[key]) for key in ('name', 'description', 'schema') if key in base)
    plan['tables'] = tables
    if constraints:
        plan['constraints'] = constraints
    for key in ('baseline_queries', 'prisma_migration'):
        if base and key in base:
            plan[key] = base[key]
    return plan


class _IndentedDumper(yaml.SafeDumper):
    """Block YAML with list items indented under their key, as yamllint's default expects."""

    def increase_indent(self, flow=False, indentless=False):
        return super(_IndentedDumper, self).increase_indent(flow, False)


def _flow(value):
    """value as one line of flow-style YAML (a scalar is written inside a list, then unwrapped)."""
    if not isinstance(value, (dict, list)):
        return _flow([value])[1:-1]
    return yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=1 << 20).strip()


def _item(entry, width=140):
    """A list item of entry: one flow-style line, or a block mapping (with flow-style lists) where that is too long
    for yamllint."""
    line = '  - %s' % _flow(entry)
    if len(line) <= width:
        return line
    block = yaml.dump([entry], Dumper=_IndentedDumper, sort_keys=False, default_flow_style=None, width=width)
    return '\n'.join('  ' + text for text in block.rstrip().splitlines())


def render_plan(plan, source, skipped):
    """The plan file's text, in the layout of plans/t12.yml: one flow-style line per index or constraint."""
    lines = ['---', '# Imported by scripts/plan_import.py from %s.' % source,
             '# Plan format: docs/plan-format.md. Every index is built CONCURRENTLY, and every foreign key and',
             '# check added NOT VALID then validated, whatever the SQL said.']
    for line, text, reason in skipped:
        lines.append('# Skipped line %d, %s: %s' % (line, reason, ' '.join(text.split())[:80]))
    lines.extend('%s: %s' % (key, _flow(plan[key])) for key in ('name', 'description', 'schema'))
    lines.append('tables:')
    for table in plan['tables']:
        lines.append('  - name: %s' % _flow(table['name']))
        if 'schema' in table:
            lines.append('    schema: %s' % _flow(table['schema']))
        lines.append('    indexes:')
        lines.extend('      - %s' % _flow(index) for index in table['indexes'])
    if plan.get('constraints'):
        lines.append('constraints:')
        lines.extend(_item(constraint) for constraint in plan['constraints'])
    for key in ('baseline_queries', 'prisma_migration'):
        if key in plan:
            lines.append(yaml.dump({key: plan[key]}, Dumper=_IndentedDumper, sort_keys=False, width=120).rstrip())
    return '\n'.join(lines) + '\n'


def default_name(path):
    """A Prisma migration is named by its folder (<timestamp>_<name>/migration.sql); a file by its stem."""
    base = os.path.basename(path)
    if base == 'migration.sql' and os.path.dirname(os.path.abspath(path)):
        return os.path.basename(os.path.dirname(os.path.abspath(path)))
    return os.path.splitext(base)[0]


def main(argv=None):
    parser = argparse.ArgumentParser(
        description='Write a pg-zero-downtime plan from SQL (a Prisma migration.sql or any file of CREATE INDEX '
                    'and ALTER TABLE ... ADD CONSTRAINT ... UNIQUE statements).')
    parser.add_argument('sql', help='the SQL file; - reads standard input')
    parser.add_argument('-o', '--output', help='plan file to write (default: standard output)')
    parser.add_argument('--name', help='plan name (default: the Prisma migration folder, or the file name)')
    parser.add_argument('--description', default='', help='plan description')
    parser.add_argument('--schema', default='public', help='schema of unqualified tables (default: public)')
    parser.add_argument('--prisma', action='store_true',
                        help='the SQL is a Prisma migration (prisma/migrations/<name>/migration.sql): add a '
                             'prisma_migration section, so migrate.yml records it as applied in _prisma_migrations')
    parser.add_argument('--base', help='existing plan whose name, description, schema, baseline_queries and '
                                       'prisma_migration are kept')
    args = parser.parse_args(argv)

    try:
        if args.sql == '-':
            sql_text, source = sys.stdin.read(), 'standard input'
        else:
            with open(args.sql, encoding='utf-8') as handle:
                sql_text, source = handle.read(), args.sql
        base = None
        if args.base:
            with open(args.base, encoding='utf-8') as handle:
                base = dict((key, value) for key, value in (yaml.safe_load(handle) or {}).items() if key in BASE_KEYS)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        print('plan_import: cannot read the input: %s' % error, file=sys.stderr)
        return 1

    schema = (base or {}).get('schema', args.schema)
    tables, constraints, skipped, refused = import_sql(sql_text, schema=schema)
    for line, text, reason in skipped:
        print('skipped line %s: %s\n    %s' % (line, ' '.join(text.split())[:100], reason), file=sys.stderr)
    if not refused and not tables and not constraints:
        refused.append((None, '', 'no CREATE INDEX, ALTER TABLE ... ADD CONSTRAINT or SET NOT NULL found'))
    if refused:
        for line, text, reason in refused:
            print('refused %s: %s\n    %s' % ('line %s' % line if line else 'input', ' '.join(text.split())[:100],
                                               reason), file=sys.stderr)
        print('plan_import: %d statement(s) refused; no plan written. Fix or remove them and import again.'
              % len(refused), file=sys.stderr)
        return 2

    plan = build_plan(tables, constraints, args.name or default_name(args.sql if args.sql != '-' else 'stdin'),
                      args.description, schema, base)
    if args.name:
        plan['name'] = args.name
    if args.prisma:
        if os.path.basename(args.sql) != 'migration.sql':
            print('plan_import: --prisma needs the migration.sql of a Prisma migration folder '
                  '(prisma/migrations/<name>/migration.sql), not %s' % args.sql, file=sys.stderr)
            return 2
        plan['prisma_migration'] = {
            'name': default_name(args.sql),
            # Relative to the plan file, as the playbooks resolve it.
            'file': os.path.relpath(os.path.abspath(args.sql), os.path.dirname(os.path.abspath(args.output)))
            if args.output else os.path.abspath(args.sql)}
    text = render_plan(plan, source, skipped)
    if args.output:
        with open(args.output, 'w', encoding='utf-8') as handle:
            handle.write(text)
    else:
        sys.stdout.write(text)
    print('plan_import: %d index(es) on %d table(s), %d constraint(s)%s%s' % (
        sum(len(table['indexes']) for table in tables), len(tables), len(constraints),
        ', %d statement(s) skipped' % len(skipped) if skipped else '',
        ' -> %s' % args.output if args.output else ''), file=sys.stderr)
    return 0


if __name__ == '__main__':
    sys.exit(main())
