# -*- coding: utf-8 -*-
# Unique constraints added without blocking: CREATE UNIQUE INDEX CONCURRENTLY under the constraint's
# name, then ALTER TABLE ... ADD CONSTRAINT ... UNIQUE USING INDEX under a short lock_timeout.
#
# decide_constraint_action takes plain catalog facts and returns plain data, so tests/unit runs it
# without a server. UniqueConstraintRunner builds the index with the index kind (online_index: validation, concurrent
# build, cleanup of INVALID leftovers) and runs its statements through the DDL session (ddl_session: lock-timeout
# retries with backoff and jitter).

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.plan.identifiers import identifier_error
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.index_actions import (
    ACTION_CREATE, ACTION_DROP, ACTION_REBUILD, ACTION_UNCHANGED,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.index_runs import left_alone_lines
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.run.ledger import attribution, without_not_valid
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.online_index import table_problems
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.outcomes import done, planned_note
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.plan import plan_schema
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.plan.refusal_rules import (
    ADD_UNIQUE, CREATE_INDEX, DROP_CONSTRAINT, DROP_INDEX, NO_BTREE_CLASS_QUERY, index_facts,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.statements import OnlineIndexError, sqlstate
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.unique_keys import (
    find_duplicates, format_duplicate_report,
)

# The unique index already exists, valid and equivalent: only the ALTER TABLE runs.
ACTION_ATTACH = 'attached'

UNIQUE_VIOLATION = '23505'

# The options naming one constraint, shared by the modules that act on one.
CONSTRAINT_OPTIONS = dict(
    name=dict(type='str', required=True),
    table=dict(type='str', required=True),
    schema=dict(type='str', default='public'),
    columns=dict(type='list', elements='str', required=True),
)

# A plan's constraints, as the modules that take a whole plan read them (doc fragment plan_constraints).
# The plan loader (plugins/plugin_utils/migration_plan.py) has proven each entry has the keys its type needs.
PLAN_CONSTRAINT_OPTIONS = plan_schema.argument_options(plan_schema.CONSTRAINT)

CONSTRAINT_TYPES = dict(p='PRIMARY KEY', u='UNIQUE', f='FOREIGN KEY', c='CHECK', x='EXCLUDE', t='TRIGGER',
                        n='NOT NULL')

# Every kind of constraint of a name: online_constraint reads foreign keys and checks with it too.
CONSTRAINTS_QUERY = """
SELECT con.conname::text AS name, con.contype::text AS type, n.nspname::text AS schema,
       t.relname::text AS "table", con.condeferrable AS deferrable, con.convalidated AS valid, con.conislocal AS local,
       ARRAY(SELECT a.attname::text
             FROM unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_catalog.pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum
             ORDER BY k.ord) AS columns,
       ic.relname::text AS index_name,
       coalesce((to_jsonb(i) ->> 'indnullsnotdistinct')::boolean, false) AS nulls_not_distinct,
       con.confmatchtype::text AS match_type, con.confupdtype::text AS on_update, con.confdeltype::text AS on_delete,
       rn.nspname::text AS ref_schema, rt.relname::text AS ref_table,
       ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_catalog.pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum
             ORDER BY k.ord) AS ref_columns,
       pg_catalog.pg_get_constraintdef(con.oid) AS definition
FROM pg_catalog.pg_constraint con
JOIN pg_catalog.pg_namespace n ON n.oid = con.connamespace
LEFT JOIN pg_catalog.pg_class t ON t.oid = con.conrelid
LEFT JOIN pg_catalog.pg_class ic ON ic.oid = con.conindid
LEFT JOIN pg_catalog.pg_index i ON i.indexrelid = con.conindid
LEFT JOIN pg_catalog.pg_class rt ON rt.oid = con.confrelid
LEFT JOIN pg_catalog.pg_namespace rn ON rn.oid = rt.relnamespace
WHERE n.nspname = %(schema)s AND con.conname = %(name)s
"""


def validate_constraint(name, schema, table, columns):
    """Check the input alone: identifiers and columns. Returns a list of errors."""
    errors = []
    for kind, value in [('constraint name', name), ('schema', schema), ('table', table)] + \
            [('column', column) for column in columns or []]:
        error = identifier_error(kind, value)
        if error:
            errors.append(error)
    if not columns:
        errors.append('constraint "%s" has no columns' % name)
    elif len(set(columns)) != len(columns):
        errors.append('constraint "%s" names a column twice: %s' % (name, ', '.join(columns)))
    return errors


def planned_definition(columns):
    """How pg_get_constraintdef renders the planned constraint."""
    return 'UNIQUE (%s)' % ', '.join(_quote(c) for c in columns)


def _quote(identifier):
    if identifier.islower() and identifier.replace('_', '').isalnum() and not identifier[0].isdigit():
        return identifier
    return '"%s"' % identifier.replace('"', '""')


def constraint_differences(existing, columns):
    """What makes an existing constraint (catalog facts) differ from UNIQUE (columns); empty if equal."""
    differences = []
    if existing['type'] != 'u':
        differences.append('it is a %s constraint, not UNIQUE' % CONSTRAINT_TYPES.get(existing['type'], existing['type']))
    if existing['columns'] != list(columns):
        differences.append('its columns are (%s), planned (%s)' % (', '.join(existing['columns']), ', '.join(columns)))
    if existing['deferrable']:
        differences.append('it is DEFERRABLE')
    if existing['nulls_not_distinct']:
        differences.append('it has NULLS NOT DISTINCT')
    return differences


def index_differences(index, schema, table, columns):
    """What keeps an existing index (catalog facts) from backing UNIQUE (columns); empty if it can."""
    differences = []
    if (index['table_schema'], index['table']) != (schema, table):
        return ['it is on table %s.%s, not %s.%s' % (index['table_schema'], index['table'], schema, table)]
    if not index['unique']:
        differences.append('it is not unique')
    if index['method'] != 'btree':
        differences.append('its method is %s, not btree' % index['method'])
    if index['key_columns'] != list(columns):
        differences.append('its key columns are (%s), planned (%s)'
                           % (', '.join(c or 'expression' for c in index['key_columns']), ', '.join(columns)))
    if index['include_columns']:
        differences.append('it has INCLUDE columns')
    if index['predicate']:
        differences.append('it is partial (WHERE %s)' % index['predicate'])
    for extra in index.get('extras') or []:
        differences.append('it has %s' % extra)
    return differences


def decide_constraint_action(name, schema, table, columns, state, constraints, index):
    """Decide what one planned unique constraint needs, from what the catalog holds.

    C(constraints) are the constraints of that name in the schema (CONSTRAINTS_QUERY rows), C(index)
    the relation of that name in the schema (an EXISTING_INDEXES_QUERY row) or None.
    Returns (action, errors); action is one of created, rebuilt, attached, unchanged, dropped.
    """
    qualified = '%s.%s' % (schema, name)
    ours = [c for c in constraints if (c['schema'], c['table']) == (schema, table)]
    if ours:
        existing = ours[0]
        differences = constraint_differences(existing, columns)
        if differences:
            return None, ['a different constraint named "%s" already exists on %s.%s (%s).\n  existing: %s\n'
                          '  planned:  %s\nRename the planned constraint, or drop the existing one deliberately, '
                          'and rerun; nothing was changed on it.'
                          % (name, schema, table, '; '.join(differences), existing['definition'],
                             planned_definition(columns))]
        if state == 'absent':
            return ACTION_DROP, []
        return ACTION_UNCHANGED, []
    if index is not None and index['relkind'] not in ('i', 'I'):
        if state == 'absent':
            return ACTION_UNCHANGED, []
        return None, ['"%s" already exists and is not an index (relation kind %s); a unique constraint needs an '
                      'index of its own name: choose another constraint name' % (qualified, index['relkind'])]
    if index is not None and index['constraint']:
        if state == 'absent':
            return ACTION_UNCHANGED, []
        return None, ['index "%s" already backs constraint "%s": choose another constraint name'
                      % (qualified, index['constraint'])]
    if state == 'absent':
        if index is None or (index['table_schema'], index['table']) != (schema, table):
            return ACTION_UNCHANGED, []
        differences = index_differences(index, schema, table, columns)
        if differences:
            return None, ['index "%s" on %s.%s is not the constraint\'s index (%s); it was not made by this plan, '
                          'so it is left alone: drop it deliberately if it must go'
                          % (qualified, schema, table, '; '.join(differences))]
        # The unique index of a build whose ADD CONSTRAINT never ran (or an INVALID leftover).
        return ACTION_DROP, []
    if index is None:
        return ACTION_CREATE, []
    if index['build_in_progress_pid']:
        return None, ['index "%s" is being built right now by backend pid %s: wait for that build to finish (see '
                      'pg_stat_progress_create_index) and rerun' % (qualified, index['build_in_progress_pid'])]
    differences = index_differences(index, schema, table, columns)
    if not index['valid'] and (index['table_schema'], index['table']) == (schema, table):
        # An INVALID index can be dropped whatever it is: it enforces nothing and serves no query.
        return ACTION_REBUILD, []
    if differences:
        return None, ['index "%s" already exists and cannot back the constraint (%s).\n  existing: %s\n'
                      '  planned:  UNIQUE index on (%s)\nRename the planned constraint, or drop that index '
                      'deliberately (DROP INDEX CONCURRENTLY), and rerun; nothing was changed on it.'
                      % (qualified, '; '.join(differences), index['definition'], ', '.join(columns))]
    return ACTION_ATTACH, []


class UniqueConstraintRunner(object):
    """Plans and applies one unique constraint, its unique index built by the index kind (C(indexes), an
    online_index.OnlineIndexRunner) through the same DDL session.

    The session's lock_timeout bounds the lock waits of the concurrent index build and drop (they block no reads
    or writes); C(constraint_lock_timeout) bounds the ACCESS EXCLUSIVE lock of ALTER TABLE, the one
    that would make other sessions queue, so it is short.
    """

    def __init__(self, indexes, constraint_lock_timeout='2s', sample_ids=5, max_groups=20):
        self.indexes, self.session = indexes, indexes.session
        self.sql, self.cursor, self.ledger = self.session.sql, self.session.cursor, self.session.ledger
        self.constraint_lock_timeout = constraint_lock_timeout
        self.sample_ids = sample_ids
        self.max_groups = max_groups

    def read_constraints(self, schema, name):
        return self.session.query(CONSTRAINTS_QUERY, dict(schema=schema, name=name))

    def read_constraint(self, schema, table, name):
        rows = [row for row in self.read_constraints(schema, name) if row['table'] == table]
        return rows[0] if rows else None

    def plan_constraint(self, name, schema, table, columns, state, dropped_first=None):
        """Validate one constraint against the catalog and decide its action; no DDL runs.

        Its statements are then proven against the refusal rules. C(dropped_first) names the foreign keys a rollback
        drops before this constraint (see OnlineIndexRunner.plan). Raises OnlineIndexError listing every problem found.
        """
        errors = validate_constraint(name, schema, table, columns)
        if errors:
            raise OnlineIndexError(table_problems(schema, table, errors))
        table_row = self.indexes.read_table(schema, table)
        if table_row is None and state == 'present':
            raise OnlineIndexError(table_problems(schema, table, [
                'table %s.%s does not exist: check the plan\'s schema and table name (names are case-sensitive, '
                'Prisma models are quoted CamelCase)' % (schema, table)]))
        if table_row is not None:
            missing = [c for c in columns if c not in table_row['columns']]
            if missing and state == 'present':
                raise OnlineIndexError(table_problems(schema, table, [
                    'constraint "%s": column(s) %s not found in %s.%s (its columns: %s)'
                    % (name, ', '.join('"%s"' % c for c in missing), schema, table, ', '.join(table_row['columns']))]))
        index = self.indexes.read_existing_indexes(schema, [name]).get(name)
        constraints = self.read_constraints(schema, name)
        action, errors = decide_constraint_action(name, schema, table, columns, state, constraints, index)
        if errors:
            raise OnlineIndexError(table_problems(schema, table, errors))
        ours = [c for c in constraints if (c['schema'], c['table']) == (schema, table)]
        ledger_row, left_alone = None, None
        if state == 'absent' and action == ACTION_DROP:
            ledger_row, left_alone = self._attributed(name, ours[0] if ours else None, index)
            if left_alone:
                action = ACTION_UNCHANGED
        errors = self.constraint_refusals(name, schema, table, columns, action, ours[0] if ours else None, index,
                                          () if state == 'present' else dropped_first)
        if errors:
            raise OnlineIndexError(table_problems(schema, table, errors))
        if action in (ACTION_CREATE, ACTION_REBUILD):
            self.indexes.created_names.append((schema, name, 'unique constraint "%s" of %s.%s' % (name, schema, table)))
        spec = dict(name=name, schema=schema, table=table, columns=list(columns), unique=True, method='btree',
                    include=[], where=None)
        decision = dict(spec=spec, action=action, table_oid=table_row['oid'] if table_row else None,
                        constraint=ours[0] if ours else None, index=index, ledger_row=ledger_row,
                        left_alone=left_alone, retry_advice=(
                            'What to do: let those sessions finish (or end them), or raise index_lock_timeout / '
                            'lock_retries, then rerun: it builds the unique index again (dropping any INVALID '
                            'leftover first) and attaches it; no constraint was added.'))
        decision['statements'] = [self.session.render(statement) for statement in self.constraint_statements(decision)]
        return decision

    def _attributed(self, name, constraint, index):
        """(the ledger row the rollback of unique constraint C(name) undoes, None) or (None, why it is left alone): the
        plan's row, matching the constraint (or, for the unique index of a build whose ADD CONSTRAINT never ran, the
        run's intent), and made on an index of the run's own."""
        schema = index['table_schema'] if index else constraint['schema']
        row = self.ledger.open_rows('constraint', schema, [name], index['table'] if index else constraint['table']
                                    ).get(name)
        if constraint is not None:
            matches = row is not None and without_not_valid(constraint['definition']) == \
                without_not_valid(row['definition'])
            now = constraint['definition']
        else:
            matches = row is not None and row['state'] == 'intended'
            now = index['definition']
        undo, reason = attribution(self.ledger.plan, 'constraint', name, row, True, matches, now)
        if undo and (row.get('prior') or {}).get('index_definition'):
            return None, ('constraint "%s" was added by run %s on an index that predates the plan (%s): dropping it '
                          'would drop that index too, so it is left alone; drop it deliberately if it must go'
                          % (name, row['run_id'], row['prior']['index_definition']))
        return (row, None) if undo else (None, reason)

    def constraint_refusals(self, name, schema, table, columns, action, constraint, index, dropped_first):
        """What PostgreSQL would refuse of the statements of C(action) (refusal_rules), one line per rule."""
        relation = self.indexes.read_relation_facts([(schema, table)]).get((schema, table))
        if relation is None or action == ACTION_UNCHANGED:
            return []
        if action == ACTION_DROP:
            statements = [DROP_CONSTRAINT if constraint else DROP_INDEX]
        else:
            statements = ([DROP_INDEX] if action == ACTION_REBUILD else []) + \
                ([CREATE_INDEX] if action in (ACTION_CREATE, ACTION_REBUILD) else []) + [ADD_UNIQUE]
        facts = dict(relation=relation, index=index_facts(index) if index and index['relkind'] in ('i', 'I') else None,
                     constraint=dict(name=name, local=constraint.get('local', True)) if constraint else None)
        if facts['index'] is not None and dropped_first is not None:
            facts['dependents'] = [fk for fk in facts['index']['referenced_by'] if fk not in dropped_first]
        if CREATE_INDEX in statements:
            facts['no_btree_class'] = self.session.query(NO_BTREE_CLASS_QUERY,
                                                         dict(schema=schema, table=table, columns=list(columns)))
        return self.indexes.refused([('unique constraint "%s"' % name, statement, facts) for statement in statements])

    def add_constraint_statement(self, spec):
        sql = self.sql
        return sql.SQL('ALTER TABLE {}.{} ADD CONSTRAINT {} UNIQUE USING INDEX {}').format(
            sql.Identifier(spec['schema']), sql.Identifier(spec['table']), sql.Identifier(spec['name']),
            sql.Identifier(spec['name']))

    def drop_constraint_statement(self, spec):
        sql = self.sql
        return sql.SQL('ALTER TABLE {}.{} DROP CONSTRAINT IF EXISTS {}').format(
            sql.Identifier(spec['schema']), sql.Identifier(spec['table']), sql.Identifier(spec['name']))

    def constraint_statements(self, decision):
        """The statements of a decision, in order (check mode shows them)."""
        spec, action = decision['spec'], decision['action']
        if action == ACTION_DROP:
            if decision['constraint']:
                return [self.drop_constraint_statement(spec)]
            return [self.indexes.drop_statement(spec['schema'], spec['name'])]
        statements = []
        if action == ACTION_REBUILD:
            statements.append(self.indexes.drop_statement(spec['schema'], spec['name']))
        if action in (ACTION_CREATE, ACTION_REBUILD):
            statements.append(self.indexes.create_statement(spec['schema'], spec['table'], spec))
        if action in (ACTION_CREATE, ACTION_REBUILD, ACTION_ATTACH):
            statements.append(self.add_constraint_statement(spec))
        return statements

    # -- applying ----------------------------------------------------------------------------------

    def apply_constraint(self, decision):
        """Run one decision's DDL. Returns (seconds, lock retries); raises OnlineIndexError on failure."""
        spec, action = decision['spec'], decision['action']
        started = time.monotonic()
        retries = 0
        intent = None
        if action in (ACTION_CREATE, ACTION_REBUILD, ACTION_ATTACH):
            known = self.ledger.open_rows('constraint', spec['schema'], [spec['name']], spec['table']).get(spec['name'])
            # Attaching an index no run of the plan made: the ledger says so, and a rollback leaves it alone.
            prior = dict(index_definition=decision['index']['definition']) \
                if action == ACTION_ATTACH and known is None else None
            intent = self.ledger.intend('constraint', spec['schema'], spec['table'], spec['name'],
                                        planned_definition(spec['columns']), prior)
        if action == ACTION_DROP and decision['constraint']:
            retries += self._under_constraint_lock_timeout(decision, self.drop_constraint_statement(spec))
        elif action in (ACTION_DROP, ACTION_REBUILD):
            drop = self.indexes.drop_statement(spec['schema'], spec['name'])
            retries += self.session.with_retries(spec, decision, drop, lambda: self.session.execute_concurrently(
                spec, drop), explain=self.explain_failure)
        if action in (ACTION_CREATE, ACTION_REBUILD):
            create = self.indexes.create_statement(spec['schema'], spec['table'], spec)
            retries += self.indexes.build_index(spec, decision, create, explain=self.explain_failure)
        if action in (ACTION_CREATE, ACTION_REBUILD, ACTION_ATTACH):
            retries += self._under_constraint_lock_timeout(decision, self.add_constraint_statement(spec))
            added = [c for c in self.read_constraints(spec['schema'], spec['name']) if c['table'] == spec['table']]
            self.ledger.applied(intent, definition=added[0]['definition'] if added else None)
        if action == ACTION_DROP and decision.get('ledger_row'):
            self.ledger.undone(decision['ledger_row']['id'])
        return round(time.monotonic() - started, 3), retries

    def _under_constraint_lock_timeout(self, decision, statement):
        """Run an ACCESS EXCLUSIVE statement with the short constraint_lock_timeout, retried with backoff and jitter
        (DdlSession.with_short_lock_timeout): sessions queued behind it wait no longer, and the queue drains between
        attempts."""
        spec = decision['spec']
        step = dict(decision, retry_advice=(
            'What to do: let those sessions finish (or end them), or raise the constraint lock_timeout / '
            'lock_retries, then rerun. The unique index "%s" is kept: it is valid and already enforces uniqueness, '
            'so the rerun only runs the ALTER TABLE (rollback.yml drops it).' % spec['name']
            if decision['action'] != ACTION_DROP else
            'What to do: let those sessions finish (or end them), or raise the constraint lock_timeout / '
            'lock_retries, then rerun; nothing was changed by this step.'))
        return self.session.with_short_lock_timeout(spec, step, statement, self.constraint_lock_timeout,
                                                    self.explain_failure)

    def explain_failure(self, error, decision):
        """After a unique violation during the build: the duplicate keys that caused it."""
        if sqlstate(error) != UNIQUE_VIOLATION:
            return []
        spec = decision['spec']
        try:
            found = find_duplicates(self.cursor, self.sql, spec['schema'], spec['table'], spec['columns'],
                                    self.sample_ids, self.max_groups)
        except Exception as failure:  # the driver's errors have no common base class to name here
            return ['The duplicate keys could not be listed: %s' % failure]
        if not found['total_groups']:
            return ['Rows with a duplicate key were written while the index was being built, and are gone again: '
                    'rerun.']
        lines = ['Rows with a duplicate key were written while the unique index was being built:']
        lines.extend(format_duplicate_report(spec['name'], spec['schema'], spec['table'], spec['columns'],
                                             found['row_id'], found['groups'], found['total_groups'],
                                             found['total_rows']))
        lines.append('What to do: resolve those rows (and stop the writer that creates them), then rerun.')
        return lines


def constraint_summary(entries, check_mode):
    """The constraint phase as the play prints it: one line per constraint changed (or to change, in check mode), one
    per duplicate rename or restore, and in check mode the SQL a real run would execute, in order."""
    changed = [e for e in entries if e.get('action') not in (None, 'unchanged')]
    lines = ['Check mode: nothing was changed. A real run would do this:'] if check_mode else []
    if not changed and not any(e.get('renamed_rows') or e.get('restored_rows') for e in entries):
        lines.append('No constraint needed a change.')
    for entry in changed:
        if not done(entry):
            # The one that stopped the phase: what it was to be, never as if it were done.
            lines.append('%-9s %-40s on %s.%s%s' % (entry['action'], entry['name'], entry.get('schema', '?'),
                                                    entry.get('table', '?'), planned_note(entry)))
            continue
        lines.append('%-9s %-40s on %s.%s in %6.2fs%s' % (
            entry['action'], entry['name'], entry['schema'], entry['table'], entry.get('seconds') or 0.0,
            ' (%s lock retries)' % entry['retries'] if entry.get('retries') else ''))
    for entry in entries:
        if entry.get('renamed_rows'):
            lines.append('%s: %s duplicate row(s) %s, recorded in the audit table' % (
                entry['name'], entry['renamed_rows'], 'to rename' if check_mode else 'renamed'))
        elif entry.get('restored_rows'):
            lines.append('%s: %s renamed value(s) %s' % (entry['name'], entry['restored_rows'],
                                                         'to restore' if check_mode else 'restored'))
    lines.extend(left_alone_lines(entries))
    if check_mode and changed:
        lines.append('SQL it would run, in order:')
        for entry in changed:
            locks = entry.get('locks') or [None] * len(entry.get('statements') or [])
            lines.extend('%s;%s' % (statement, '  -- %s' % lock if lock else '')
                         for statement, lock in zip(entry.get('statements') or [], locks))
    return lines


def plan_failure_message(failure, done_before, not_started):
    """What a failed constraint phase says: the failure, what was done before it and kept, what did not start."""
    lines = [failure]
    kept = ['%s %s' % (e['action'], e['name']) for e in done_before if done(e)]
    if kept:
        lines.append('Done before it, and kept: %s' % ', '.join(kept))
    if not_started:
        lines.append('Not started, nothing changed on them: %s (queued behind the failure above)'
                     % ', '.join(not_started))
    return '\n'.join(lines)
