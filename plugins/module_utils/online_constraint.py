# -*- coding: utf-8 -*-
# Foreign keys, CHECK constraints and NOT NULL added without a long lock. Each is split into short catalog steps,
# each under the short lock_timeout with retries, and one long scan that lets writes go on:
#   foreign_key: ADD CONSTRAINT ... FOREIGN KEY ... NOT VALID  (SHARE ROW EXCLUSIVE on both tables, an instant)
#                VALIDATE CONSTRAINT  (SHARE UPDATE EXCLUSIVE on the table, ROW SHARE on the referenced one: a scan
#                that blocks no reads or writes)
#                Each of its steps (and its DROP, ACCESS EXCLUSIVE on both tables) locks two tables: it takes the
#                referenced one first, under a lock_timeout below deadlock_timeout (lock_order says why).
#   check:       ADD CONSTRAINT ... CHECK (...) NOT VALID  (ACCESS EXCLUSIVE, an instant), then VALIDATE
#   not_null:    a helper CHECK (column IS NOT NULL) NOT VALID, VALIDATE, then ALTER COLUMN ... SET NOT NULL (ACCESS
#                EXCLUSIVE, instant: PostgreSQL 12+ proves the column from the valid check instead of scanning), then
#                the helper dropped.
# Where a run stopped between steps, the catalog says which steps are left (decide_steps), so a rerun resumes.
#
# decide_steps and the *_differences functions take plain catalog facts and return plain data, so tests/unit runs
# them without a server. ConstraintRunner reads the catalog, checks the data and runs the steps through the DDL
# session (ddl_session: the migration lock proof before each statement, retries with backoff), a foreign key's index
# through the index kind (online_index); its peers, the index and unique kinds, are reached through it.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.identifiers import identifier_error
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.index_plan import (
    ACTION_CREATE, ACTION_DROP, ACTION_UNCHANGED,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.lock_order import lock_text
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.plan_sql import (
    expression_error, statement_error,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.ledger import attribution, without_not_valid
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.plan_trust import refusal_message
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.refusal_rules import (
    ADD_CHECK, ADD_FOREIGN_KEY, COLUMN_FACTS_QUERY, DROP_CONSTRAINT, DROP_NOT_NULL, SET_NOT_NULL, UNIQUE_INDEXES_QUERY,
    VALIDATE,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session import (
    OnlineIndexError, error_text, sqlstate,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.online_index import (
    OnlineIndexRunner, table_problems,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.unique_constraint import (
    CONSTRAINT_TYPES, UniqueConstraintRunner,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.unique_keys import (
    PRIMARY_KEY_QUERY, group_totals, groups_limit,
)

KINDS = ('foreign_key', 'check', 'not_null')
# foreign_key_violation, check_violation, not_null_violation: VALIDATE (or SET NOT NULL) found rows that break it.
VIOLATION_SQLSTATES = ('23503', '23514', '23502')
# A NOT VALID constraint left by an earlier run: the rerun validates it (and, for NOT NULL, goes on from there).
ACTION_VALIDATE = 'validated'
# NOT NULL whose helper check is valid already: only SET NOT NULL and the helper's drop are left.
ACTION_COMPLETE = 'completed'

# pg_constraint.confupdtype / confdeltype, and the words a plan (and Prisma) uses for them.
REFERENTIAL_ACTIONS = dict(a='NO ACTION', r='RESTRICT', c='CASCADE', n='SET NULL', d='SET DEFAULT')

# The steps, in the order they run, and the lock each takes. 'short' steps run under the constraint lock_timeout
# (other sessions queue behind them at most that long); 'scan' steps under validate_lock_timeout, then scan without a
# statement timeout while reads and writes go on; 'build' is a concurrent index build.
STEP_ORDER = ('build_index', 'add', 'validate', 'set_not_null', 'drop', 'drop_not_null', 'drop_index')
STEP_LOCKS = dict(
    build_index='SHARE UPDATE EXCLUSIVE on the table, no reads or writes blocked (CREATE INDEX CONCURRENTLY)',
    add=None,  # by kind, see add_lock
    validate='SHARE UPDATE EXCLUSIVE on the table%s: a scan that blocks no reads or writes',
    set_not_null='ACCESS EXCLUSIVE on the table, an instant (the valid check proves the column, no scan)',
    drop='ACCESS EXCLUSIVE on the table, an instant',
    drop_not_null='ACCESS EXCLUSIVE on the table, an instant',
    drop_index='SHARE UPDATE EXCLUSIVE on the table, no reads or writes blocked (DROP INDEX CONCURRENTLY)',
)

COLUMNS_QUERY = """
SELECT a.attname::text AS name, a.atttypid::bigint AS type_oid, pg_catalog.format_type(a.atttypid, a.atttypmod) AS type,
       a.attnotnull AS not_null
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relname = %(table)s AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""

# Whether values of the first type can be compared with = to values of the second (directly, or through a binary
# coercion), as a foreign key needs.
COMPARABLE_QUERY = """
SELECT EXISTS (
  SELECT 1 FROM pg_catalog.pg_operator o
  WHERE o.oprname = '='
    AND (o.oprleft = %(a)s OR EXISTS (SELECT 1 FROM pg_catalog.pg_cast WHERE castsource = %(a)s
                                      AND casttarget = o.oprleft AND castmethod = 'b'))
    AND (o.oprright = %(b)s OR EXISTS (SELECT 1 FROM pg_catalog.pg_cast WHERE castsource = %(b)s
                                       AND casttarget = o.oprright AND castmethod = 'b'))) AS comparable
"""

# Indexes of a table whose leading key columns are exactly a given set (any order): they serve a foreign key's
# lookups when a referenced row is deleted or its key updated.
LEADING_INDEX_QUERY = """
SELECT c.relname::text AS name
FROM pg_catalog.pg_index i
JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
JOIN pg_catalog.pg_class t ON t.oid = i.indrelid
JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace
WHERE n.nspname = %(schema)s AND t.relname = %(table)s AND i.indisvalid AND i.indpred IS NULL
  AND (SELECT array_agg(a.attname::text ORDER BY a.attname)
       FROM unnest((i.indkey::int2[])[0:%(count)s - 1]) AS k(attnum)
       JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum) = %(columns)s::text[]
"""


# ---------------------------------------------------------------------------------------------------
# Decisions on plain data.
# ---------------------------------------------------------------------------------------------------

def referential_action(value):
    """The canonical form of ON DELETE / ON UPDATE words (no action, Restrict, SET_NULL, ...), or None."""
    if value is None:
        return 'NO ACTION'
    words = ' '.join(str(value).replace('_', ' ').upper().split())
    return words if words in REFERENTIAL_ACTIONS.values() else None


def entry_columns(entry):
    """The table's columns an entry is about (a NOT NULL's one column, a check's none)."""
    if entry['type'] == 'not_null':
        return [entry['column']] if entry.get('column') else []
    return list(entry.get('columns') or [])


def entry_errors(entry):
    """What is wrong with one foreign_key, check or not_null entry on its own (no catalog needed)."""
    errors = []
    kind = entry.get('type')
    if kind not in KINDS:
        return ['constraint "%s": type %s is not one of %s' % (entry.get('name'), kind, ', '.join(KINDS))]
    for what, value in [('constraint name', entry.get('name')), ('table', entry.get('table')),
                        ('schema', entry.get('schema'))] + [('column', c) for c in entry_columns(entry)]:
        error = identifier_error(what, value)
        if error:
            errors.append(error)
    if kind == 'foreign_key':
        references = entry.get('references') or {}
        if not entry.get('columns'):
            errors.append('foreign key "%s" has no columns' % entry.get('name'))
        for what, value in [('referenced table', references.get('table')),
                            ('referenced schema', references.get('schema') or entry.get('schema'))] + \
                [('referenced column', c) for c in references.get('columns') or []]:
            error = identifier_error(what, value)
            if error:
                errors.append(error)
        if len(references.get('columns') or []) != len(entry.get('columns') or []):
            errors.append('foreign key "%s": %d column(s) reference %d column(s); give as many referenced columns as '
                          'columns' % (entry.get('name'), len(entry.get('columns') or []),
                                       len(references.get('columns') or [])))
        for option in ('on_delete', 'on_update'):
            if referential_action(entry.get(option)) is None:
                errors.append('foreign key "%s": %s must be one of %s, not %r' % (
                    entry.get('name'), option, ', '.join(REFERENTIAL_ACTIONS.values()), entry.get(option)))
        if entry.get('index') is not None:
            error = identifier_error('index', entry.get('index'))
            if error:
                errors.append(error)
    elif kind == 'check':
        problem = expression_error(entry.get('expression') or '')
        if problem:
            errors.append('check "%s": expression is not one SQL expression a plan may use: %s'
                          % (entry.get('name'), problem))
    elif not entry.get('column'):
        errors.append('not_null "%s" names no column' % entry.get('name'))
    return errors


def foreign_key_differences(existing, entry, default_schema):
    """What makes an existing constraint (a CONSTRAINTS_QUERY row) differ from a planned foreign key; empty if equal."""
    if existing['type'] != 'f':
        return ['it is a %s constraint, not FOREIGN KEY' % CONSTRAINT_TYPES.get(existing['type'], existing['type'])]
    references = entry['references']
    differences = []
    if existing['columns'] != list(entry['columns']):
        differences.append('its columns are (%s), planned (%s)' % (', '.join(existing['columns']),
                                                                   ', '.join(entry['columns'])))
    planned_ref = (references.get('schema') or default_schema, references['table'], list(references['columns']))
    if (existing['ref_schema'], existing['ref_table'], existing['ref_columns']) != planned_ref:
        differences.append('it references %s.%s (%s), planned %s.%s (%s)' % (
            existing['ref_schema'], existing['ref_table'], ', '.join(existing['ref_columns']), planned_ref[0],
            planned_ref[1], ', '.join(planned_ref[2])))
    for option in ('on_delete', 'on_update'):
        have = REFERENTIAL_ACTIONS.get(existing[option])
        if have != referential_action(entry.get(option)):
            planned = referential_action(entry.get(option))
            differences.append('its %s is %s, planned %s' % (option.replace('_', ' ').upper(), have, planned))
    if existing['match_type'] != 's':
        differences.append('it is MATCH FULL')
    if existing['deferrable']:
        differences.append('it is DEFERRABLE')
    return differences


def check_differences(existing, planned_definition):
    """What makes an existing constraint differ from a planned CHECK (PostgreSQL's rendering of both); empty if
    equal."""
    if existing['type'] != 'c':
        return ['it is a %s constraint, not CHECK' % CONSTRAINT_TYPES.get(existing['type'], existing['type'])]
    if without_not_valid(existing['definition']) != without_not_valid(planned_definition):
        return ['its expression differs']
    return []


def decide_steps(kind, state, existing, differences, column_not_null=False, index_action=None):
    """The steps one entry still needs, from what the catalog holds: (action, steps, errors).

    C(existing) is the constraint of the entry's name on its table (a CONSTRAINTS_QUERY row) or None; for not_null it
    is the helper check. C(differences) says how it differs from the planned one. C(column_not_null) is
    pg_attribute.attnotnull of a not_null's column. C(index_action) is what a foreign key's own index (option index)
    needs: created or rebuilt (build it first), dropped (rolling back), or None.
    """
    if existing is not None and differences:
        return None, [], differences
    steps = []
    if state == 'present':
        if index_action in (ACTION_CREATE, 'rebuilt'):
            steps.append('build_index')
        if kind == 'not_null' and column_not_null:
            steps.extend(['drop'] if existing is not None else [])
        else:
            if existing is None:
                steps.append('add')
            if existing is None or not existing['valid']:
                steps.append('validate')
            if kind == 'not_null':
                steps.extend(['set_not_null', 'drop'])
        if 'add' in steps:
            action = ACTION_CREATE
        elif 'validate' in steps:
            action = ACTION_VALIDATE
        elif kind == 'not_null' and steps:
            action = ACTION_COMPLETE
        else:
            action = ACTION_CREATE if steps else ACTION_UNCHANGED
        return action, steps, []
    if kind == 'not_null' and column_not_null:
        steps.append('drop_not_null')
    if existing is not None:
        steps.append('drop')
    if index_action == ACTION_DROP:
        steps.append('drop_index')
    return (ACTION_DROP if steps else ACTION_UNCHANGED), steps, []


def planned_unique_keys(entries, default_schema):
    """(schema, table, frozenset(columns)) of the unique constraints among C(entries): a foreign key after them may
    reference one (in check mode, or in the preflight, before it exists)."""
    return set((entry.get('schema') or default_schema, entry['table'], frozenset(entry['columns']))
               for entry in entries if entry.get('type', 'unique') == 'unique')


def different_message(entry, existing, differences, planned_text):
    return ('a different constraint named "%s" already exists on %s.%s (%s).\n  existing: %s\n  planned:  %s\n'
            'Rename the planned constraint, or drop the existing one deliberately, and rerun; nothing was changed on it.'
            % (entry['name'], entry['schema'], entry['table'], '; '.join(differences), existing['definition'],
               planned_text))


def violation_report(entry, found):
    """The lines an SRE reads when rows stop a planned foreign key, check or NOT NULL."""
    kind = entry['type']
    where = '%s.%s' % (entry['schema'], entry['table'])
    if kind == 'foreign_key':
        references = entry['references']
        lines = ['foreign key "%s" (%s) -> %s.%s (%s): %d row(s) of %s reference no row (%d missing key(s))' % (
            entry['name'], ', '.join(entry['columns']), references.get('schema') or entry['schema'],
            references['table'], ', '.join(references['columns']), found['total_rows'], where,
            found['total_groups'])]
        for group in found['groups']:
            lines.append('  (%s) = (%s): %d row(s), %s %s%s' % (
                ', '.join(entry['columns']), ', '.join(str(v) for v in group['key']), group['rows'], found['row_id'],
                ', '.join(str(v) for v in group['sample_ids']),
                ', ...' if group['rows'] > len(group['sample_ids']) else ''))
        if found['total_groups'] > len(found['groups']):
            lines.append('  ... and %d more missing key(s)' % (found['total_groups'] - len(found['groups'])))
        return lines
    what = ('check "%s" CHECK (%s)' % (entry['name'], entry['expression']) if kind == 'check'
            else 'NOT NULL on %s."%s"' % (where, entry['column']))
    verb = 'violate' if kind == 'check' else 'hold NULL'
    return ['%s: %d row(s) of %s %s it: %s %s%s' % (
        what, found['total_rows'], where, verb, found['row_id'], ', '.join(str(v) for v in found['sample_ids']),
        ', ...' if found['total_rows'] > len(found['sample_ids']) else '')]


def violations_advice(kinds):
    advice = dict(
        foreign_key='insert the missing referenced rows, or delete (or set to NULL) the rows that reference them',
        check='fix or delete the rows that violate the check',
        not_null='fill in the NULL values (or delete those rows)')
    return 'What to do: %s, then rerun; the run checks again before any DDL.' % '; '.join(
        advice[kind] for kind in KINDS if kind in kinds)


KIND_WORDS = dict(foreign_key='foreign key', check='check', not_null='not_null')


def entry_statement(kind, step):
    """The statement a step of a foreign_key, check or not_null entry sends, as the refusal rules name it; None for the
    steps of its own index (the index runner's)."""
    if step == 'add':
        return ADD_FOREIGN_KEY if kind == 'foreign_key' else ADD_CHECK
    return dict(validate=VALIDATE, set_not_null=SET_NOT_NULL, drop=DROP_CONSTRAINT, drop_not_null=DROP_NOT_NULL).get(step)


def ordered_kind(kind, step):
    """The lock_order.ORDERED_STATEMENTS entry of a step that locks two tables (a foreign key's add, validate and
    drop), or None."""
    return 'foreign_key_%s' % step if kind == 'foreign_key' and step in ('add', 'validate', 'drop') else None


def step_lock(kind, step):
    """The lock a step takes, as the docs and the report say it."""
    ordered = ordered_kind(kind, step)
    if ordered:
        return '%s, %s, under a lock_timeout capped at half of deadlock_timeout' % (lock_text(ordered), dict(
            add='an instant (NOT VALID: no scan)', validate='a scan that blocks no reads or writes',
            drop='an instant')[step])
    if step == 'add':
        return 'ACCESS EXCLUSIVE on the table, an instant (NOT VALID: no scan)'
    if step == 'validate':
        return STEP_LOCKS['validate'] % ''
    return STEP_LOCKS[step]


# ---------------------------------------------------------------------------------------------------
# The runner: catalog, data checks and the steps, against a live autocommit connection.
# ---------------------------------------------------------------------------------------------------

class ConstraintRunner(object):
    """Plans and applies foreign keys, checks and NOT NULL; the index kind (C(indexes), online_index.OnlineIndexRunner)
    and the unique kind (C(unique), unique_constraint.UniqueConstraintRunner) are its peers over the same DDL session,
    and a run reaches every kind through it (plan, plan_constraint, plan_entry; apply, apply_constraint, apply_entry).

    C(constraint_lock_timeout) bounds each catalog step (ADD ... NOT VALID, SET NOT NULL, DROP), C(lock_timeout) the
    wait of VALIDATE for its lock (SHARE UPDATE EXCLUSIVE, which no reader or writer conflicts with) and of a
    concurrent index build; the scan itself runs under C(statement_timeout) (0: none).
    """

    def __init__(self, connection, constraint_lock_timeout='2s', sample_ids=5, max_groups=20, **options):
        self.indexes = OnlineIndexRunner(connection, **options)
        self.unique = UniqueConstraintRunner(self.indexes, constraint_lock_timeout, sample_ids, max_groups)
        self.session = session = self.indexes.session
        self.connection, self.cursor, self.sql, self.trust, self.ledger = \
            connection, session.cursor, session.sql, session.trust, session.ledger
        self.lock_timeout, self.constraint_lock_timeout = session.lock_timeout, constraint_lock_timeout
        self.sample_ids, self.max_groups = sample_ids, max_groups
        # The session's records and the names planned, as a run reads them.
        self.executed_queries, self.cleanup_queries = session.executed_queries, session.cleanup_queries
        self.leftovers, self.waits, self.created_names = session.leftovers, session.waits, self.indexes.created_names
        # The other kinds, as the phases and the preflight call them.
        self.plan, self.apply = self.indexes.plan, self.indexes.apply
        self.read_existing_indexes, self.estimate_sizes = self.indexes.read_existing_indexes, self.indexes.estimate_sizes
        self.server_version, self.connection_lost = self.indexes.server_version, session.connection_lost
        self.plan_constraint, self.apply_constraint = self.unique.plan_constraint, self.unique.apply_constraint
        self.read_constraints = self.unique.read_constraints

    @property
    def retries_used(self):
        """Lock-timeout retries used so far (the session's)."""
        return self.session.retries_used

    # -- reading -----------------------------------------------------------------------------------

    def read_constraint(self, schema, table, name):
        rows = [row for row in self.read_constraints(schema, name) if row['table'] == table]
        return rows[0] if rows else None

    def read_columns(self, schema, table):
        return dict((row['name'], row) for row in self.session.query(COLUMNS_QUERY, dict(schema=schema, table=table)))

    def check_definition(self, schema, table, expression, context='check'):
        """PostgreSQL's own rendering of CHECK (expression) on the table, from an empty temporary copy of it (of the
        same name, so the expression may name the table), in a rolled-back transaction: (definition, None) or (None,
        why it is refused). Runs outside any transaction (the probe needs a writable one).

        A plan's check expression (C(context) check) is first proven by the server's resolution (PlanTrust: built-in
        or trusted objects only, IMMUTABLE), then PostgreSQL itself proves it IMMUTABLE as an index predicate on the
        copy (a CHECK does not have to be, but a plan's must: its VALIDATE and every later write evaluate it), and
        only then is it added to the copy. Nothing of it is evaluated on a row before.
        """
        sql = self.sql
        self.cursor.execute('BEGIN')
        try:
            self.cursor.execute(sql.SQL('CREATE TEMPORARY TABLE {} (LIKE {}.{})').format(
                sql.Identifier(table), sql.Identifier(schema), sql.Identifier(table)))
            if context:
                problems = self.trust.prove_expression(context, table, expression)
                if problems:
                    return None, refusal_message('check expression', expression, problems)
                immutable = self.session.checked(sql.SQL('CREATE INDEX pgzd_check_immutable ON pg_temp.{} ((1)) WHERE ({})').format(
                    sql.Identifier(table), self.session.plan_text(context, expression)), 'IndexStmt')
                self.cursor.execute('SAVEPOINT pgzd_immutable')
                try:
                    self.cursor.execute(immutable)
                except Exception as error:  # psycopg2 and psycopg 3 errors share no importable base here
                    self.cursor.execute('ROLLBACK TO SAVEPOINT pgzd_immutable')
                    return None, refusal_message('check expression', expression, [
                        'PostgreSQL does not accept it as IMMUTABLE (%s)' % error_text(error).splitlines()[0]])
            probe = sql.SQL('ALTER TABLE pg_temp.{} ADD CONSTRAINT pgzd_check_probe CHECK ({}) NOT VALID').format(
                sql.Identifier(table), self.session.plan_text(context, expression) if context else sql.SQL(expression))
            text = self.session.render(probe)
            problem = statement_error(text, 'AlterTableStmt')
            if problem:
                return None, 'refusing to send %s: %s' % (text, problem)
            self.cursor.execute(text)
            rows = self.session.query("SELECT pg_catalog.pg_get_constraintdef(con.oid) AS definition "
                               "FROM pg_catalog.pg_constraint con JOIN pg_catalog.pg_class c ON c.oid = con.conrelid "
                               "WHERE c.relnamespace = pg_catalog.pg_my_temp_schema() AND c.relname = %(table)s "
                               "AND con.conname = 'pgzd_check_probe'", dict(table=table))
            return rows[0]['definition'], None
        except OnlineIndexError as error:
            return None, str(error)
        except Exception as error:  # psycopg2 and psycopg 3 errors share no importable base here
            reason = error_text(error).splitlines()[0]
            return None, 'PostgreSQL refuses CHECK (%s) on %s.%s: %s' % (expression, schema, table, reason)
        finally:
            self.cursor.execute('ROLLBACK')

    def check_expression(self, entry):
        """The text of an entry's CHECK: a check's expression, or a NOT NULL's helper condition."""
        if entry['type'] == 'check':
            return entry['expression']
        return self.session.render(self.sql.SQL('{} IS NOT NULL').format(self.sql.Identifier(entry['column'])))

    def checked_condition(self, entry):
        """The CHECK condition of an entry as SQL to send: a check's expression only once proven (plan_text)."""
        if entry['type'] == 'check':
            return self.session.plan_text('check', entry['expression'])
        return self.sql.SQL('{} IS NOT NULL').format(self.sql.Identifier(entry['column']))

    # -- planning ----------------------------------------------------------------------------------

    def plan_entry(self, entry, state, default_schema='public', planned_unique=()):
        """Validate one foreign_key, check or not_null entry against the catalog and decide its steps; no DDL runs.

        Runs outside any transaction: a check's expression is proven on an empty temporary copy of the table, in a
        transaction of its own (rolled back). C(planned_unique) lists (schema, table, frozenset(columns)) of the
        unique keys the plan adds before this entry (a foreign key may reference one). Raises OnlineIndexError
        listing every problem found.
        """
        spec = dict(entry, schema=entry.get('schema') or default_schema)
        if spec['type'] == 'foreign_key':
            references = dict(spec['references'], schema=spec['references'].get('schema') or spec['schema'])
            spec.update(references=references, on_delete=referential_action(spec.get('on_delete')) or spec.get(
                'on_delete'), on_update=referential_action(spec.get('on_update')) or spec.get('on_update'))
        schema, table = spec['schema'], spec['table']
        errors = entry_errors(spec)
        if errors:
            raise OnlineIndexError(table_problems(schema, table, errors))
        table_row = self.indexes.read_table(schema, table)
        columns = self.read_columns(schema, table) if table_row else {}
        if state == 'present':
            errors = self._catalog_errors(spec, table_row, columns)
            if errors:
                raise OnlineIndexError(table_problems(schema, table, errors))
        existing = self.read_constraint(schema, table, spec['name'])
        planned_text = self.planned_text(spec)
        differences = []
        if existing is not None and spec['type'] == 'foreign_key':
            differences = foreign_key_differences(existing, spec, schema)
        elif existing is not None or (spec['type'] == 'check' and state == 'present'):
            # PostgreSQL's own rendering, to compare with an existing one; for a new check, the proof that
            # PostgreSQL accepts the expression on this table (its columns, its types) before any DDL.
            definition, problem = self.check_definition(schema, table, self.check_expression(spec),
                                                        'check' if spec['type'] == 'check' else None)
            if problem:
                raise OnlineIndexError(table_problems(schema, table, [problem]))
            differences = check_differences(existing, definition) if existing is not None else []
        index_decision = self._index_decision(spec, state) if spec.get('index') else None
        column_not_null = bool(columns.get(spec.get('column'), {}).get('not_null'))
        action, steps, problems = decide_steps(spec['type'], state, existing, differences, column_not_null,
                                               index_action=index_decision['action'] if index_decision else None)
        if problems:
            raise OnlineIndexError(table_problems(schema, table, [
                different_message(spec, existing, problems, planned_text)]))
        ledger_rows, left_alone = [], None
        if state == 'absent':
            # What the ledger does not attribute to the plan is left alone before the rules judge the rest.
            action, steps, ledger_rows, left_alone = self._attributed_steps(spec, action, steps, existing,
                                                                            column_not_null)
        errors = self.step_refusals_of_entry(spec, steps, existing, planned_unique)
        if errors:
            raise OnlineIndexError(table_problems(schema, table, errors))
        decision = dict(spec=spec, action=action, steps=steps, constraint=existing, index_decision=index_decision,
                        column_not_null=column_not_null, table_oid=table_row['oid'] if table_row else None,
                        planned=planned_text, ledger_rows=ledger_rows,
                        advice=self._index_advice(spec, state, table_row, index_decision))
        if left_alone:
            decision['left_alone'] = left_alone
        rendered = [(step, [self.session.render(statement) for statement in self.step_sql(spec, step, index_decision)])
                    for step in steps]
        decision['statements'] = [text for _step, texts in rendered for text in texts]
        # The lock each step takes, beside its own statement (in a transaction of lock_order, the fourth).
        decision['locks'] = [step_lock(spec['type'], step) if len(texts) == 1 or position == 3 else None
                             for step, texts in rendered for position in range(len(texts))]
        return decision

    def _attributed_steps(self, spec, action, steps, existing, column_not_null):
        """A rollback's steps, kept only where the ledger attributes what they undo to the plan and it still matches:
        (action, steps, the ledger rows they undo, why the rest is left alone or None). A NOT NULL that predates the
        plan, a constraint of the name the application made, or one changed since the run recorded it, stays."""
        schema, table, kind = spec['schema'], spec['table'], spec['type']
        plan = self.ledger.plan
        kept, rows, reasons = [], [], []
        not_null_row = self.ledger.open_rows('not_null', schema, [spec['column']], table).get(spec['column']) \
            if kind == 'not_null' else None
        for step in steps:
            if step == 'drop_not_null':
                undo, reason = attribution(plan, 'not_null', '%s.%s' % (table, spec['column']), not_null_row,
                                           column_not_null, True)
            elif step == 'drop' and kind == 'not_null':
                # The helper check of a NOT NULL a stopped run was adding: the run's own when the ledger has the NOT NULL.
                undo, reason = attribution(plan, 'not_null', '%s.%s' % (table, spec['column']), not_null_row, True, True)
            elif step == 'drop':
                row = self.ledger.open_rows('constraint', schema, [spec['name']], table).get(spec['name'])
                undo, reason = attribution(plan, 'constraint', spec['name'], row, existing is not None,
                                           row is not None and without_not_valid(existing['definition'])
                                           == without_not_valid(row['definition']),
                                           existing['definition'] if existing else None)
                rows.extend([row] if undo else [])
            else:  # drop_index: the index runner decided it from the ledger already
                undo, reason = True, None
            if undo:
                kept.append(step)
            elif reason:
                reasons.append(reason)
        if not_null_row is not None and ('drop_not_null' in kept or ('drop' in kept and not column_not_null)):
            rows.append(not_null_row)
        if kept == steps:
            return action, steps, rows, None
        return (ACTION_DROP if kept else ACTION_UNCHANGED), kept, rows, '; '.join(sorted(set(reasons))) or None

    def _catalog_errors(self, spec, table_row, columns):
        """What the entry names that does not exist: its table, its columns, the referenced table and columns. What
        PostgreSQL would refuse of what exists is the refusal rules' (step_refusals_of_entry)."""
        schema, table = spec['schema'], spec['table']
        if table_row is None:
            return ['table %s.%s does not exist: check the plan\'s schema and table name (names are case-sensitive, '
                    'Prisma models are quoted CamelCase)' % (schema, table)]
        missing = [c for c in entry_columns(spec) if c not in columns]
        if missing:
            return ['constraint "%s": column(s) %s not found in %s.%s (its columns: %s)' % (
                spec['name'], ', '.join('"%s"' % c for c in missing), schema, table, ', '.join(columns))]
        if spec['type'] != 'foreign_key':
            return []
        references = spec['references']
        ref_schema, ref_table, ref_columns = references['schema'], references['table'], references['columns']
        if self.indexes.read_table(ref_schema, ref_table) is None:
            return ['foreign key "%s": the referenced table %s.%s does not exist' % (spec['name'], ref_schema, ref_table)]
        parent = self.read_columns(ref_schema, ref_table)
        missing = [c for c in ref_columns if c not in parent]
        if missing:
            return ['foreign key "%s": referenced column(s) %s not found in %s.%s (its columns: %s)' % (
                spec['name'], ', '.join('"%s"' % c for c in missing), ref_schema, ref_table, ', '.join(parent))]
        return []

    def step_refusals_of_entry(self, spec, steps, existing, planned_unique):
        """What PostgreSQL would refuse of an entry's steps (refusal_rules), one line per rule. A foreign key's own
        index (build_index, drop_index) is the index runner's to prove (OnlineIndexRunner.plan)."""
        schema, table = spec['schema'], spec['table']
        relation = self.indexes.read_relation_facts([(schema, table)]).get((schema, table))
        if relation is None:
            return []
        subject = '%s "%s"' % (KIND_WORDS[spec['type']], spec['name'])
        judged = []
        for step in steps:
            statement = entry_statement(spec['type'], step)
            if statement is None:
                continue
            facts = dict(relation=relation)
            if statement == ADD_FOREIGN_KEY:
                facts.update(self.foreign_key_facts(spec, planned_unique))
            elif statement == DROP_CONSTRAINT and existing is not None:
                facts['constraint'] = dict(name=existing['name'], local=existing.get('local', True))
            elif statement == DROP_NOT_NULL:
                facts['column'] = self.column_facts(schema, table).get(spec['column'])
                if facts['column'] is None:
                    continue
            judged.append((subject, statement, facts))
        return self.indexes.refused(judged)

    def column_facts(self, schema, table):
        """{column: its facts} (refusal_rules.COLUMN_FACTS_QUERY) of a table."""
        return dict((row['name'], row) for row in self.session.query(COLUMN_FACTS_QUERY, dict(schema=schema, table=table)))

    def foreign_key_facts(self, spec, planned_unique):
        """The facts a foreign key's ADD CONSTRAINT depends on: the referenced relation and its unique keys (or one
        the plan adds before it), whether the key types compare, REFERENCES privileges and generated columns."""
        references = spec['references']
        ref_schema, ref_table, ref_columns = references['schema'], references['table'], list(references['columns'])
        referenced = self.indexes.read_relation_facts([(ref_schema, ref_table)])[(ref_schema, ref_table)]
        columns, parent = self.read_columns(spec['schema'], spec['table']), self.read_columns(ref_schema, ref_table)
        incomparable = []
        for column, ref_column in zip(spec['columns'], ref_columns):
            mine, theirs = columns[column], parent[ref_column]
            if mine['type_oid'] != theirs['type_oid'] and not self.session.query(
                    COMPARABLE_QUERY, dict(a=mine['type_oid'], b=theirs['type_oid']))[0]['comparable']:
                incomparable.append('column "%s" (%s) cannot be compared with %s.%s."%s" (%s)' % (
                    column, mine['type'], ref_schema, ref_table, ref_column, theirs['type']))
        own, theirs = self.column_facts(spec['schema'], spec['table']), self.column_facts(ref_schema, ref_table)
        return dict(referenced=referenced, ref_columns=ref_columns,
                    keys=self.session.query(UNIQUE_INDEXES_QUERY, dict(oid=referenced['oid'])),
                    planned_key=(ref_schema, ref_table, frozenset(ref_columns)) in planned_unique,
                    incomparable=incomparable,
                    missing_references=[c for c in ref_columns if not theirs[c]['references_privilege']],
                    generated=[c for c in spec['columns'] if own[c]['generated']],
                    on_delete=spec['on_delete'], on_update=spec['on_update'])

    def _index_decision(self, spec, state):
        index = dict(name=spec['index'], columns=list(spec['columns']), unique=False, method='btree', include=[],
                     where=None)
        return self.indexes.plan(spec['schema'], spec['table'], [index], state)[0]

    def _index_advice(self, spec, state, table_row, index_decision):
        """A foreign key without an index on its columns: deleting or updating a referenced row scans the table."""
        if spec['type'] != 'foreign_key' or state != 'present' or index_decision is not None or table_row is None:
            return None
        columns = sorted(spec['columns'])
        if self.session.query(LEADING_INDEX_QUERY, dict(schema=spec['schema'], table=spec['table'], count=len(columns),
                                                 columns=columns)):
            return None
        name = '%s_%s_idx' % (spec['table'], '_'.join(spec['columns']))
        return ('foreign key "%s": no index on %s.%s (%s); each delete or key update of a %s row will scan %s. Add '
                '`index: %s` to the entry to build one concurrently before the key is added.'
                % (spec['name'], spec['schema'], spec['table'], ', '.join(spec['columns']),
                   spec['references']['table'], spec['table'], name[:63]))

    # -- SQL ---------------------------------------------------------------------------------------

    def planned_text(self, spec):
        """The planned constraint as a definition (the diff and messages show it)."""
        sql = self.sql
        if spec['type'] == 'foreign_key':
            references = spec['references']
            return self.session.render(sql.SQL('FOREIGN KEY ({}) REFERENCES {}.{}({}) ON UPDATE {} ON DELETE {}').format(
                sql.SQL(', ').join(sql.Identifier(c) for c in spec['columns']), sql.Identifier(references['schema']),
                sql.Identifier(references['table']),
                sql.SQL(', ').join(sql.Identifier(c) for c in references['columns']),
                sql.SQL(spec['on_update']), sql.SQL(spec['on_delete'])))
        if spec['type'] == 'check':
            return 'CHECK (%s)' % spec['expression']
        return 'NOT NULL on column %s (through CHECK (%s))' % (spec['column'], self.check_expression(spec))

    def step_sql(self, spec, step, index_decision=None):
        """The statements of one step, in order: a step that locks two tables runs in a transaction of its own that
        takes the referenced table first (OnlineIndexRunner.in_lock_order); any other step is one statement."""
        statement = self.step_statement(spec, step, index_decision)
        ordered = ordered_kind(spec['type'], step)
        if not ordered:
            return [statement]
        references = spec['references']
        return self.session.in_lock_order(ordered, references['schema'], references['table'], statement,
                                  self.lock_timeout if step == 'validate' else self.constraint_lock_timeout)

    def step_statement(self, spec, step, index_decision=None):
        sql = self.sql
        table = sql.SQL('ALTER TABLE {}.{} ').format(sql.Identifier(spec['schema']), sql.Identifier(spec['table']))
        name = sql.Identifier(spec['name'])
        if step == 'build_index':
            return self.indexes.create_statement(spec['schema'], spec['table'], index_decision['spec'])
        if step == 'drop_index':
            return self.indexes.drop_statement(spec['schema'], spec['index'])
        if step == 'add' and spec['type'] == 'foreign_key':
            references = spec['references']
            return table + sql.SQL('ADD CONSTRAINT {} FOREIGN KEY ({}) REFERENCES {}.{} ({}) ON DELETE {} ON UPDATE {} '
                                   'NOT VALID').format(
                name, sql.SQL(', ').join(sql.Identifier(c) for c in spec['columns']),
                sql.Identifier(references['schema']), sql.Identifier(references['table']),
                sql.SQL(', ').join(sql.Identifier(c) for c in references['columns']),
                sql.SQL(spec['on_delete']), sql.SQL(spec['on_update']))
        if step == 'add':
            return table + sql.SQL('ADD CONSTRAINT {} CHECK ({}) NOT VALID').format(name, self.checked_condition(spec))
        if step == 'validate':
            return table + sql.SQL('VALIDATE CONSTRAINT {}').format(name)
        if step == 'set_not_null':
            return table + sql.SQL('ALTER COLUMN {} SET NOT NULL').format(sql.Identifier(spec['column']))
        if step == 'drop_not_null':
            return table + sql.SQL('ALTER COLUMN {} DROP NOT NULL').format(sql.Identifier(spec['column']))
        return table + sql.SQL('DROP CONSTRAINT IF EXISTS {}').format(name)

    # -- the data --------------------------------------------------------------------------------

    def find_violations(self, spec, sample_ids, max_groups):
        """The rows that stop a planned foreign key (grouped by missing key), check or NOT NULL: dict(row_id,
        total_rows, total_groups, groups, sample_ids). Raises the driver's error (or ValueError for a refused
        statement)."""
        sql = self.sql
        primary_key = [row['column_name'] for row in self.session.query(
            PRIMARY_KEY_QUERY, dict(schema=spec['schema'], table=spec['table']))]
        if primary_key:
            row_id = sql.SQL(" || ',' || ").join(sql.SQL('t.{}::text').format(sql.Identifier(c)) for c in primary_key)
            label = '/'.join(primary_key)
        else:
            row_id, label = sql.SQL('t.ctid::text'), 'ctid'
        source = sql.SQL('{}.{} AS t').format(sql.Identifier(spec['schema']), sql.Identifier(spec['table']))
        if spec['type'] == 'foreign_key':
            references = spec['references']
            keys = sql.SQL(', ').join(sql.SQL('t.{}').format(sql.Identifier(c)) for c in spec['columns'])
            query = sql.SQL(
                'SELECT ARRAY[{key_text}] AS key, count(*) AS rows, (array_agg({row_id} ORDER BY {row_id}))[1:{sample}] '
                'AS sample_ids, count(*) OVER () AS total_groups, sum(count(*)) OVER () AS total_rows FROM {source} '
                'WHERE {not_null} AND NOT EXISTS (SELECT 1 FROM {ref_schema}.{ref_table} AS r WHERE {join}) '
                'GROUP BY {keys} ORDER BY count(*) DESC, {keys} LIMIT {limit}').format(
                    key_text=sql.SQL(', ').join(sql.SQL('t.{}::text').format(sql.Identifier(c)) for c in spec['columns']),
                    row_id=row_id, sample=sql.Literal(int(sample_ids)), source=source,
                    not_null=sql.SQL(' AND ').join(sql.SQL('t.{} IS NOT NULL').format(sql.Identifier(c))
                                                   for c in spec['columns']),
                    ref_schema=sql.Identifier(references['schema']), ref_table=sql.Identifier(references['table']),
                    join=sql.SQL(' AND ').join(sql.SQL('r.{} = t.{}').format(sql.Identifier(r), sql.Identifier(c))
                                               for c, r in zip(spec['columns'], references['columns'])),
                    keys=keys, limit=sql.Literal(groups_limit(max_groups)))
            return dict(group_totals(self.session.query(query), max_groups), row_id=label, sample_ids=[])
        # A check passes on NULL: only rows where it is false violate it.
        condition = sql.SQL('({}) IS FALSE').format(self.checked_condition(spec)) if spec['type'] == 'check' else \
            sql.SQL('t.{} IS NULL').format(sql.Identifier(spec['column']))
        query = sql.SQL('SELECT count(*) AS total_rows, (array_agg({row_id} ORDER BY {row_id}))[1:{sample}] AS '
                        'sample_ids FROM {source} WHERE {condition}').format(
            row_id=row_id, sample=sql.Literal(int(sample_ids)), source=source, condition=condition).as_string(
                self.connection)
        # Plan text inside: sent only once PostgreSQL's parser proves the whole text one SELECT.
        problem = statement_error(query, 'SelectStmt')
        if problem:
            raise ValueError('refusing to send %s: %s' % (query, problem))
        row = self.session.query(query)[0]
        total = int(row['total_rows'])
        return dict(row_id=label, total_rows=total, total_groups=total, groups=[],
                    sample_ids=row['sample_ids'] or [])

    # -- applying ----------------------------------------------------------------------------------

    def apply_entry(self, decision):
        """Run one decision's steps in order. Returns (seconds, lock retries, [steps done]); raises OnlineIndexError
        naming the step that failed and what is kept."""
        spec = decision['spec']
        started = time.monotonic()
        retries, done = 0, []
        intent = self._intend_entry(decision)
        for step in decision['steps']:
            statement = self.step_statement(spec, step, decision['index_decision'])
            try:
                if step in ('build_index', 'drop_index'):
                    retries += self.indexes.apply(decision['index_decision'])[1]
                elif ordered_kind(spec['type'], step):
                    retries += self._in_lock_order(decision, step)
                elif step == 'validate':
                    retries += self._validate(decision, statement)
                else:
                    retries += self.session.with_short_lock_timeout(
                        spec, self._step_decision(decision, step), statement, self.constraint_lock_timeout,
                        self.explain_failure)
            except OnlineIndexError as error:
                raise OnlineIndexError('%s\nSteps done before it, and kept: %s. A rerun resumes from the catalog: %s'
                                       % (error, ', '.join(done) or 'none', self._resume_note(spec, step)))
            done.append(step)
            self._record_step(decision, step, intent)
        for row in decision.get('ledger_rows') or []:
            self.ledger.undone(row['id'])
        return round(time.monotonic() - started, 3), retries, done

    def _intend_entry(self, decision):
        """Before its first statement: the ledger row of what the entry makes (a foreign key or check; the NOT NULL of a
        column that was nullable), or None."""
        spec = decision['spec']
        if 'add' not in decision['steps']:
            return None
        if spec['type'] == 'not_null':
            return self.ledger.intend('not_null', spec['schema'], spec['table'], spec['column'], 'NOT NULL',
                                      prior=dict(nullable=True, helper_check=spec['name']))
        return self.ledger.intend('constraint', spec['schema'], spec['table'], spec['name'], decision['planned'])

    def _record_step(self, decision, step, intent):
        """After a step: the ledger row applied once the object is there (the constraint added; the column NOT NULL)."""
        spec = decision['spec']
        if intent is None:
            return
        if step == 'add' and spec['type'] != 'not_null':
            added = self.read_constraint(spec['schema'], spec['table'], spec['name'])
            self.ledger.applied(intent, definition=added['definition'] if added else None)
        elif step == 'set_not_null':
            self.ledger.applied(intent, definition='NOT NULL')

    def _step_decision(self, decision, step):
        advice = ('What to do: let those sessions finish (or end them), or raise the constraint lock_timeout / '
                  'lock_retries, then rerun.')
        return dict(decision, retry_advice=advice, step=step)

    def _in_lock_order(self, decision, step):
        """A step that locks two tables: the referenced table first, then the statement, in one transaction under the
        lock_timeout capped below deadlock_timeout, retried with backoff as a whole."""
        spec = decision['spec']
        statements = self.step_sql(spec, step)
        configured = self.lock_timeout if step == 'validate' else self.constraint_lock_timeout
        timeout = self.session.deadlock_safe_timeout(configured)
        kept = ('the constraint "%s" is kept NOT VALID (it already checks every new row), and the rerun validates it'
                % spec['name'] if step == 'validate' else 'this step had not changed anything, it runs again')
        referenced = self.indexes.read_table(spec['references']['schema'], spec['references']['table'])
        step_decision = dict(decision, step=step, lock_timeout=timeout['note'], retry_advice=(
            'What to do: let those sessions finish (or end them), or raise lock_retries (its lock_timeout, %s, stays '
            'below deadlock_timeout, so that the application is never the deadlock victim), then rerun: %s.'
            % (timeout['value'], kept)), lock_oids=[referenced['oid'] if referenced else None, decision['table_oid']])
        return self.session.with_retries(spec, step_decision, statements[3], lambda: self.session.in_transaction(
            statements), explain=self.explain_failure)

    def _validate(self, decision, statement):
        """VALIDATE CONSTRAINT: its lock (SHARE UPDATE EXCLUSIVE, which no reader or writer conflicts with) waited for
        under lock_timeout with retries, then the scan without a statement timeout."""
        spec = decision['spec']
        step = dict(decision, retry_advice=(
            'What to do: let those sessions finish (or end them: autovacuum and other DDL take the same lock), or '
            'raise index_lock_timeout / lock_retries, then rerun: the constraint "%s" is kept NOT VALID (it already '
            'checks every new row), and the rerun validates it.' % spec['name']))
        return self.session.with_retries(spec, step, statement, lambda: self.session.execute(
            statement, 'AlterTableStmt'), explain=self.explain_failure)

    def explain_failure(self, error, decision):
        """After VALIDATE failed on rows written since the preflight: those rows (the constraint stays NOT VALID)."""
        if sqlstate(error) not in VIOLATION_SQLSTATES:
            return []
        spec = decision['spec']
        try:
            found = self.find_violations(spec, self.sample_ids, self.max_groups)
        except Exception as failure:  # the driver's errors have no common base class to name here
            return ['The rows could not be listed: %s' % error_text(failure)]
        lines = ['Rows written since the preflight break it:'] + violation_report(spec, found)
        lines.append(violations_advice([spec['type']]))
        return lines

    @staticmethod
    def _resume_note(spec, step):
        if step == 'build_index':
            return 'it builds the index again (an INVALID leftover is dropped first).'
        if step in ('add', 'drop', 'drop_not_null', 'drop_index'):
            return 'this step had not changed anything; it runs again.'
        if step == 'validate':
            return 'the NOT VALID constraint "%s" is kept (new rows are checked already), and is validated.' % spec['name']
        return 'the valid check "%s" is kept; SET NOT NULL runs again.' % spec['name']


def read_violations(runner, spec, sample_ids, max_groups):
    """find_violations in a savepoint of the caller's transaction: (found, problem)."""
    cursor = runner.cursor
    cursor.execute('SAVEPOINT pgzd_violations')
    try:
        found = runner.find_violations(spec, sample_ids, max_groups)
        cursor.execute('RELEASE SAVEPOINT pgzd_violations')
        return found, None
    except Exception as error:  # psycopg2 and psycopg 3 errors share no importable base here
        cursor.execute('ROLLBACK TO SAVEPOINT pgzd_violations')
        return None, 'constraint "%s" on %s.%s: the rows could not be checked: %s' % (
            spec['name'], spec['schema'], spec['table'], error_text(error))
