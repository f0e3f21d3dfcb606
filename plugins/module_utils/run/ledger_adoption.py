# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Adopting into the ledger what a plan made before the ledger existed (version 0.16 and earlier).

A rollback undoes only what the ledger attributes to its plan (module_utils/run/ledger.py), so the objects an older version
made are left alone until they are adopted: recorded, applied, under run id <plan>-adopted-<time> with prior
{"adopted": true}. Only what is in place exactly as the plan defines it, and that no open ledger row names yet, is
adopted; the runners' own decisions of the present state say what "exactly as planned" is (an index's action
unchanged, a constraint's unchanged). Anything else is listed, with the reason, and left to the operator.

The decisions (index_adoption, constraint_adoption, not_null_adoption, rename_adoptions) take plain data, so tests/unit
runs them without a server; Adoption reads the catalog through the runners and writes every row in one transaction.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import json

from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.advisory_locks import migration_lock_error
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.index_actions import (
    ACTION_CREATE, ACTION_UNCHANGED,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.index_definitions import (
    restore_statement,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.index_replacement import (
    read_replacement_record, replacement_names,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.run.ledger import (
    CREATE_STATEMENTS, OPEN, QUALIFIED, Ledger, renamed_rows_definition,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.constraint_decisions import planned_unique_keys
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.plan.plan_proof import unique_indexes
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.statements import (
    OnlineIndexError, error_text, fetch_dicts,
)

ADOPTED = dict(adopted=True)
# The kinds of row that name an index: a planned index made, or one a replacement swapped in.
INDEX_KINDS = ('index', 'replaced_index')

# Every open row of the ledger, of any plan: an object another plan's ledger holds is not adopted for this one.
OPEN_ROWS_QUERY = ("SELECT plan, run_id, kind, schema_name, table_name, object_name, state, prior FROM %s "
                   "WHERE state IN ('intended', 'applied') ORDER BY id" % QUALIFIED)

# The renames of duplicate keys the audit table holds and no rollback restored yet, per constraint and run.
RENAMES_QUERY = """
SELECT constraint_name, table_schema, table_name, run_id, min(column_name) AS column_name, count(*) AS rows
FROM {audit}
WHERE restored_at IS NULL AND constraint_name = ANY(%(names)s)
GROUP BY constraint_name, table_schema, table_name, run_id
ORDER BY min(id)
"""


# A row of the ledger written applied at once, its values as literals (so that check mode shows the very statement).
ADOPTED_ROW_STATEMENT = (
    'INSERT INTO pgzd_audit.ledger (plan, run_id, kind, schema_name, table_name, object_name, definition, prior, '
    "state, applied_at) VALUES ({plan}, {run}, {kind}, {schema}, {table}, {name}, {definition}, {prior}::jsonb, "
    "'applied', now())")


class AdoptionError(Exception):
    """Nothing was recorded: what went wrong and what to do."""


def adopted_run_id(plan, now=None):
    """The run id of an adoption: <plan>-adopted-<UTC time>."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return '%s-adopted-%s' % (plan, now.strftime('%Y%m%dT%H%M%SZ'))


def record(kind, schema, table, name, definition, prior=None, cleared_comment=None):
    """A ledger row to write, applied: C(cleared_comment) is the 0.16 replacement record the same transaction clears."""
    return dict(kind=kind, schema=schema, table=table, name=name, definition=definition,
                prior=dict(prior or {}, **ADOPTED), cleared_comment=cleared_comment)


def refusal(kind, schema, table, name, reason):
    """An object of the plan that is not adopted, and why."""
    return dict(kind=kind, schema=schema, table=table, name=name, reason=reason)


def ledger_owner(rows, kinds, schema, table, name, audit_run_id=None):
    """The open ledger row (OPEN_ROWS_QUERY, any plan) of an object, or None: of one of C(kinds), named C(name) on
    C(schema).C(table) (for a rename, of the audit run C(audit_run_id))."""
    for row in rows:
        where = (row['schema_name'], row['table_name'], row['object_name'])
        run = (row.get('prior') or {}).get('audit_run_id')
        if row['kind'] in kinds and row['state'] in OPEN and where == (schema, table, name) \
                and audit_run_id in (None, run):
            return row
    return None


def owned_reason(plan, row):
    if row['plan'] == plan:
        return ('already in the ledger of plan %s (run %s, %s): nothing to adopt, a rollback of the plan undoes it'
                % (plan, row['run_id'], row['state']))
    return ('the ledger attributes it to plan %s (run %s, %s): a rollback of that plan undoes it, so it is not adopted '
            'for plan %s too' % (row['plan'], row['run_id'], row['state'], plan))


def pending_reason(kind, action):
    if action == ACTION_CREATE:
        return 'not set: the column is nullable' if kind == 'not_null' else \
            'absent: no run made it (a migration would create it)'
    return 'not in place as planned yet: a migration would finish it (%s), then record it' % action


def not_in_place(plan, kind, schema, table, name, decision, owner, problem):
    """The refusal of an object of any kind that is not to adopt, or None: an open ledger row of any plan holds it
    (C(owner)), the runner could not decide it (C(decision) None, C(problem) says why), or a migration would still act
    on it (its action is not unchanged)."""
    if owner is not None:
        return refusal(kind, schema, table, name, owned_reason(plan, owner))
    if decision is None:
        return refusal(kind, schema, table, name, 'not as the plan defines it: %s' % problem)
    if decision['action'] != ACTION_UNCHANGED:
        return refusal(kind, schema, table, name, pending_reason(kind, decision['action']))
    return None


def index_adoption(plan, spec, decision, owner):
    """(record, None) or (None, refusal) of a planned index, from OnlineIndexRunner.plan's decision of it for the
    present state (C(decision) None: the plan could not be decided, C(spec)['problem'] says why) and its open ledger
    row of any plan (C(owner)).

    An index the decision leaves unchanged is in place as planned: recorded as made by the plan (kind index, with
    pg_get_indexdef). For an on_mismatch: replace entry whose index carries the comment version 0.16 wrote when it
    swapped it in, the replacement is recorded instead (kind replaced_index, with the recorded definition and comment),
    and that comment is cleared: the ledger holds it from now on, and a rollback gives the old index its own comment.
    """
    schema, table, name = spec['schema'], spec['table'], spec['name']
    refused = not_in_place(plan, 'index', schema, table, name, decision, owner, spec.get('problem'))
    if refused:
        return None, refused
    existing = decision['existing']
    if spec.get('on_mismatch') == 'replace':
        replaced, unreadable = read_replacement_record(existing.get('comment'))
        if unreadable:
            return None, refusal('replaced_index', schema, table, name, unreadable)
        if replaced is not None:
            try:
                restore_statement(replaced['definition'], name, replacement_names(name)[0], schema, table)
            except ValueError as error:
                return None, refusal('replaced_index', schema, table, name, (
                    'its comment records the index it replaced, but a rollback could not build that again (%s): %s'
                    % (error, replaced['definition'])))
            return record('replaced_index', schema, table, name, existing['definition'],
                          prior=dict(definition=replaced['definition'], comment=replaced['comment']),
                          cleared_comment=existing['comment']), None
    return record('index', schema, table, name, existing['definition']), None


def constraint_adoption(plan, entry, decision, owner):
    """(record, None) or (None, refusal) of a planned unique constraint, foreign key or check, from the runners'
    decision of it for the present state (plan_constraint, plan_entry; None: C(entry)['problem'] says why it could not
    be decided) and its open ledger row of any plan (C(owner)). In place as planned (unchanged): recorded with
    pg_get_constraintdef."""
    schema, table, name = entry['schema'], entry['table'], entry['name']
    refused = not_in_place(plan, 'constraint', schema, table, name, decision, owner, entry.get('problem'))
    if refused:
        return None, refused
    return record('constraint', schema, table, name, decision['constraint']['definition']), None


# Columns whose NOT NULL comes with something else than a plan: a rollback must never drop it.
NOT_NULL_OWNERS = (
    ('in_primary_key', 'it is a column of the primary key, which makes it NOT NULL: no plan set it'),
    ('identity', 'it is an identity column, always NOT NULL: no plan set it'),
    ('in_replica_identity', 'it is a column of the replica identity index, whose columns must stay NOT NULL'),
    ('parent_not_null', 'its NOT NULL is inherited from the partitioned table it belongs to'),
)


def not_null_adoption(plan, entry, decision, owner, facts):
    """(record, None) or (None, refusal) of a planned NOT NULL: set, with no helper check left (the runner's action
    unchanged), on a column whose NOT NULL no primary key, identity, replica identity or parent gives it (C(facts): the
    column's refusal_rules.COLUMN_FACTS_QUERY row). Recorded with prior {"nullable": true}: what a rollback gives
    back."""
    schema, table, column = entry['schema'], entry['table'], entry['column']
    refused = not_in_place(plan, 'not_null', schema, table, column, decision, owner, entry.get('problem'))
    if refused:
        return None, refused
    for fact, reason in NOT_NULL_OWNERS:
        if (facts or {}).get(fact):
            return None, refusal('not_null', schema, table, column, reason)
    return record('not_null', schema, table, column, 'NOT NULL', prior=dict(nullable=True)), None


def rename_adoptions(plan, constraints, renames, open_rows, audit_name):
    """(records, refusals) of the renames of duplicate keys the audit table still holds (RENAMES_QUERY rows), one
    record per (constraint, audit run): those of the plan's unique constraints (C(constraints), with their schema), by
    a run of the plan (run id <plan>-...), that no open ledger row (C(open_rows), any plan) holds yet."""
    planned = set((c['schema'], c['table'], c['name']) for c in constraints)
    records, refusals = [], []
    for rename in renames:
        key = (rename['table_schema'], rename['table_name'], rename['constraint_name'])
        if key not in planned:
            continue
        schema, table, name = key
        owner = ledger_owner(open_rows, ('renamed_rows',), schema, table, name, rename['run_id'])
        if not rename['run_id'].startswith(plan + '-'):
            refusals.append(refusal('renamed_rows', schema, table, name, (
                '%d row(s) renamed by run %s, not a run of plan %s (its runs are %s-...)'
                % (rename['rows'], rename['run_id'], plan, plan))))
        elif owner is not None:
            refusals.append(refusal('renamed_rows', schema, table, name, owned_reason(plan, owner)))
        else:
            records.append(record('renamed_rows', schema, table, name,
                                  renamed_rows_definition(rename['rows'], schema, table, audit_name),
                                  prior=dict(audit_table=audit_name, audit_run_id=rename['run_id'],
                                             rows=rename['rows'], column=rename['column_name'])))
    return records, refusals


def summary_lines(plan, run_id, records, refusals, check_mode):
    """What the play prints: each object adopted (or to adopt, in check mode), then each one not adopted, and why."""
    if not records:
        lines = ['Nothing to adopt into the ledger of plan %s%s.'
                 % (plan, '' if refusals else ' (the plan names no object in place)')]
    else:
        lines = ['%s %d object(s) into the ledger of plan %s, run %s:' % (
            'Would adopt' if check_mode else 'Adopted', len(records), plan, run_id)]
    for row in records:
        lines.append('  %(kind)s %(name)s on %(schema)s.%(table)s: %(definition)s' % row)
        if row['kind'] == 'replaced_index':
            lines.append('    replaced: %s; its 0.16 record comment %s: the ledger holds it, and a rollback '
                         'restores that index with its own comment' % (
                             row['prior']['definition'], 'is to be cleared' if check_mode else 'was cleared'))
    if refusals:
        lines.append('Not adopted: %d object(s) (a rollback of the plan leaves alone what its ledger does not hold):'
                     % len(refusals))
        lines.extend('  %(kind)s %(name)s on %(schema)s.%(table)s: %(reason)s' % row for row in refusals)
    return lines


class Adoption(object):
    """Reads what a plan has in place through the runners (C(runner), an online_constraint.ConstraintRunner over an
    autocommit connection), decides what to adopt, and writes it in one transaction."""

    def __init__(self, runner, plan, run_id, audit_schema='pgzd_audit', audit_table='duplicate_resolution'):
        self.runner = runner
        self.cursor = runner.cursor
        self.sql = runner.sql
        self.plan = plan
        self.run_id = run_id
        self.ledger = Ledger(self.cursor, plan, run_id)
        self.audit = (audit_schema, audit_table)
        self.audit_name = '%s.%s' % self.audit

    # -- reading -----------------------------------------------------------------------------------

    def open_rows(self):
        if not self.ledger.exists():
            return []
        return fetch_dicts(self.cursor, OPEN_ROWS_QUERY)

    def decide(self, tables, constraints, default_schema):
        """(records, refusals) of the whole plan, in plan order: the tables' indexes, then each constraint (a foreign
        key's index before it), then the renames of duplicates."""
        rows = self.open_rows()
        records, refusals = [], []

        def add(outcome):
            made, refused = outcome
            (records if made else refusals).append(made or refused)

        for table in tables or []:
            schema = table.get('schema') or default_schema
            for index in table['indexes']:
                spec = dict(index, schema=schema, table=table['name'])
                add(index_adoption(self.plan, spec, self._index_decision(spec),
                                   ledger_owner(rows, INDEX_KINDS, schema, table['name'], index['name'])))
        uniques = []
        for position, constraint in enumerate(constraints or []):
            entry = dict(constraint, schema=constraint.get('schema') or default_schema)
            kind = entry.get('type') or 'unique'
            decision = self._constraint_decision(entry, kind, tables, constraints[:position], default_schema)
            if kind == 'unique':
                uniques.append(entry)
            if kind == 'foreign_key' and entry.get('index'):
                index = dict(name=entry['index'], schema=entry['schema'], table=entry['table'],
                             problem='its foreign key %s: %s' % (entry['name'], entry.get('problem')))
                add(index_adoption(self.plan, index, decision and decision['index_decision'],
                                   ledger_owner(rows, INDEX_KINDS, entry['schema'], entry['table'], entry['index'])))
            if kind == 'not_null':
                facts = self.runner.column_facts(entry['schema'], entry['table']).get(entry['column'])
                add(not_null_adoption(self.plan, entry, decision, ledger_owner(
                    rows, ('not_null',), entry['schema'], entry['table'], entry['column']), facts))
            else:
                add(constraint_adoption(self.plan, entry, decision, ledger_owner(
                    rows, ('constraint',), entry['schema'], entry['table'], entry['name'])))
        made, refused = rename_adoptions(self.plan, uniques, self.read_renames(uniques), rows, self.audit_name)
        return records + made, refusals + refused

    def _index_decision(self, spec):
        """The index runner's decision of one planned index (one at a time: an index that differs from the plan stops
        only its own adoption), or None with C(spec)['problem']."""
        try:
            return self.runner.plan(spec['schema'], spec['table'], [spec], 'present')[0]
        except OnlineIndexError as error:
            spec['problem'] = _one_line(error)
            return None

    def _constraint_decision(self, entry, kind, tables, earlier, default_schema):
        """The constraint runner's decision of one planned constraint, or None with C(entry)['problem']. A foreign key
        may reference a unique key the plan makes before it (as the preflight proves it)."""
        try:
            if kind == 'unique':
                return self.runner.plan_constraint(entry['name'], entry['schema'], entry['table'], entry['columns'],
                                                   'present')
            return self.runner.plan_entry(entry, 'present', default_schema, unique_indexes(tables, default_schema)
                                          | planned_unique_keys(earlier, default_schema))
        except OnlineIndexError as error:
            entry['problem'] = _one_line(error)
            return None

    def read_renames(self, uniques):
        """RENAMES_QUERY rows of the plan's unique constraints, [] without an audit table."""
        if not uniques:
            return []
        present = fetch_dicts(self.cursor, 'SELECT pg_catalog.to_regclass(%(name)s) IS NOT NULL AS present',
                              dict(name=self.render(self._audit_ref())))[0]['present']
        if not present:
            return []
        return fetch_dicts(self.cursor, self.sql.SQL(RENAMES_QUERY).format(audit=self._audit_ref()),
                           dict(names=sorted(set(entry['name'] for entry in uniques))))

    def _audit_ref(self):
        return self.sql.SQL('{}.{}').format(self.sql.Identifier(self.audit[0]), self.sql.Identifier(self.audit[1]))

    def render(self, statement):
        return statement.as_string(self.cursor.connection)

    # -- writing -----------------------------------------------------------------------------------

    def statements(self, records):
        """The transaction that records C(records): the ledger created when missing, a row each, and the 0.16
        replacement comments cleared; [] when there is nothing to record."""
        if not records:
            return []
        sql = self.sql
        statements = [sql.SQL('BEGIN')]
        if not self.ledger.exists():
            statements.extend(sql.SQL(statement) for statement in CREATE_STATEMENTS)
        for row in records:
            values = dict(plan=self.plan, run=self.run_id, kind=row['kind'], schema=row['schema'],
                          table=row['table'], name=row['name'], definition=row['definition'],
                          prior=json.dumps(row['prior'], sort_keys=True))
            statements.append(sql.SQL(ADOPTED_ROW_STATEMENT).format(
                **dict((key, sql.Literal(value)) for key, value in values.items())))
            if row['cleared_comment'] is not None:
                statements.append(sql.SQL('COMMENT ON INDEX {}.{} IS NULL').format(
                    sql.Identifier(row['schema']), sql.Identifier(row['name'])))
        statements.append(sql.SQL('COMMIT'))
        return statements

    def prove_writable(self):
        """AdoptionError when the login cannot keep the ledger (in check mode too: its answer must be the real one)."""
        problem = self.ledger.writable_problem()
        if problem:
            raise AdoptionError('Nothing was adopted: %s.' % problem)

    def write(self, records, lock_session_pid):
        """Run the transaction of C(records), once the run is proven to hold its migration lock still (and the login
        to be able to keep the ledger): the statements run, as text. AdoptionError when nothing was recorded."""
        self.prove_writable()
        statements = self.statements(records)
        lost = migration_lock_error(self.cursor, lock_session_pid)
        if lost:
            raise AdoptionError('Nothing was adopted: %s' % lost)
        done = []
        for statement in statements:
            text = self.render(statement)
            try:
                self.cursor.execute(statement)
            except Exception as error:  # psycopg2 and psycopg 3 errors share no importable base here
                self.cursor.execute('ROLLBACK')
                raise AdoptionError('Nothing was adopted: `%s` failed (%s), and the transaction was rolled back. Rerun '
                                    'once that is fixed: adoption reads the catalog again.' % (text, error_text(error)))
            done.append(text)
        return done


def _one_line(error):
    """A runner's problem (table ...:\\n  - problem) as one line."""
    return ' '.join(str(error).split())
