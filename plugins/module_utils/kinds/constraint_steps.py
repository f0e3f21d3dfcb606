# -*- coding: utf-8 -*-
# The steps of foreign keys, CHECK constraints and NOT NULL (constraint_decisions decides them): ConstraintSteps composes
# each step's SQL and runs it through the run's DDL session (ddl_session) -- the catalog steps under the short
# constraint lock_timeout, VALIDATE's scan, a foreign key's steps in lock_order's order, its own index through the
# index kind -- recorded in the ledger; and it finds the rows that break a constraint.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.constraint_catalog import ConstraintCatalog
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.constraint_decisions import (
    NOT_NULL_CONSTRAINT, VIOLATION_SQLSTATES, not_null_path, ordered_kind, violation_report, violations_advice,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.plan.plan_sql import statement_error
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.statements import (
    OnlineIndexError, error_text, sqlstate,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.unique_keys import (
    PRIMARY_KEY_QUERY, group_totals, groups_limit,
)


class ConstraintSteps(object):
    """The statements of a foreign key, check or NOT NULL decision's steps, and their run, over the DDL session of the
    index kind (C(indexes)) and the unique kind (C(unique)), whose constraints it reads."""

    def __init__(self, indexes, unique, constraint_lock_timeout, sample_ids, max_groups):
        self.indexes, self.unique, self.session = indexes, unique, indexes.session
        self.sql, self.ledger = self.session.sql, self.session.ledger
        self.lock_timeout, self.constraint_lock_timeout = self.session.lock_timeout, constraint_lock_timeout
        self.sample_ids, self.max_groups = sample_ids, max_groups
        self.catalog = ConstraintCatalog(indexes)

    def not_null_path(self):
        """How this server adds a NOT NULL (constraint_decisions.not_null_path of its server_version_num)."""
        return not_null_path(self.indexes.server_version())

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

    def planned_text(self, spec, helper=False):
        """The planned constraint as a definition (diff, messages); a NOT NULL by its helper check if C(helper)."""
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
        if not helper and self.not_null_path() == NOT_NULL_CONSTRAINT:
            return 'NOT NULL on column %s (constraint %s, added NOT VALID, then validated)' % (spec['column'], spec['name'])
        return 'NOT NULL on column %s (through CHECK (%s))' % (spec['column'], self.check_expression(spec))

    def step_sql(self, spec, step, index_decision=None, partitions=()):
        """The statements of one step, in order: a step that locks two tables runs in a transaction of its own that
        takes the referenced table first (DdlSession.in_lock_order); any other step is one statement. A foreign key's
        validate_partitions is such a transaction per partition of C(partitions) (ConstraintCatalog.partition_keys)."""
        if step == 'validate_partitions':
            return [statement for partition in partitions
                    for statement in partition_sql(self.session, spec, partition, self.lock_timeout)]
        statement = self.step_statement(spec, step, index_decision)
        ordered = ordered_kind(spec['type'], step)
        if not ordered:
            return [statement]
        references = spec['references']
        return self.session.in_lock_order(ordered, references['schema'], references['table'], statement,
                                          self.lock_timeout if step == 'validate' else self.constraint_lock_timeout)

    def step_statement(self, spec, step, index_decision=None):
        if step == 'build_index':
            return self.indexes.create_statement(spec['schema'], spec['table'], index_decision['spec'])
        if step == 'drop_index':
            return self.indexes.drop_statement(spec['schema'], spec['index'])
        if step == 'validate_partitions':
            return None  # a statement per partition: partition_sql
        condition = self.checked_condition(spec) if step == 'add' and spec['type'] != 'foreign_key' else None
        return alter_statement(self.sql, spec, step, condition)

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
                self.session.connection)
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
                elif step == 'validate_partitions':
                    retries += self._validate_partitions(decision)
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
        if spec['type'] == 'not_null' and 'add_not_null' in decision['steps']:
            return self.ledger.intend('not_null', spec['schema'], spec['table'], spec['column'], 'NOT NULL',
                                      prior=dict(nullable=True, not_null_constraint=spec['name']))
        if spec['type'] == 'not_null' and 'add' not in decision['steps'] and \
                set(decision['steps']) & set(['validate', 'set_not_null']):
            # A stopped run's NOT NULL, resumed: its row, if the ledger has one, is the one to confirm.
            row = self.ledger.open_rows('not_null', spec['schema'], [spec['column']], spec['table']).get(spec['column'])
            return row['id'] if row is not None else None
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
        if spec['type'] == 'not_null' and step == 'validate' and 'set_not_null' not in decision['steps']:
            # The NOT NULL constraint (PostgreSQL 18+) validated: the column is NOT NULL.
            self.ledger.applied(intent, definition='NOT NULL')
        elif step == 'add' and spec['type'] != 'not_null':
            added = self.unique.read_constraint(spec['schema'], spec['table'], spec['name'])
            self.ledger.applied(intent, definition=added['definition'] if added else None)
        elif step == 'set_not_null':
            self.ledger.applied(intent, definition='NOT NULL')

    def _step_decision(self, decision, step):
        advice = ('What to do: let those sessions finish (or end them), or raise the constraint lock_timeout / '
                  'lock_retries, then rerun.')
        return dict(decision, retry_advice=advice, step=step)

    def _validate_partitions(self, decision):
        """Each partition's NOT VALID foreign key (read now: the parent's ADD named them) validated in a transaction of
        its own, locking one partition at a time (constraint_decisions.validates_by_partition says why)."""
        retries = 0
        for partition in self.catalog.partition_keys(decision['table_oid'], decision['spec']['name']):
            retries += self._in_lock_order(decision, 'validate_partitions', partition)
        return retries

    def _in_lock_order(self, decision, step, partition=None):
        """A step that locks two tables (or C(partition)'s VALIDATE): the referenced table first, then the statement, in
        one transaction under the lock_timeout capped below deadlock_timeout, retried with backoff as a whole."""
        spec = decision['spec']
        statements = partition_sql(self.session, spec, partition, self.lock_timeout) if partition else \
            self.step_sql(spec, step)
        validating = step in ('validate', 'validate_partitions')
        configured = self.lock_timeout if validating else self.constraint_lock_timeout
        timeout = self.session.deadlock_safe_timeout(configured)
        kept = ('the constraint "%s" is kept NOT VALID (it already checks every new row), and the rerun validates it'
                % spec['name'] if validating else 'this step had not changed anything, it runs again')
        referenced = self.indexes.read_table(spec['references']['schema'], spec['references']['table'])
        step_decision = dict(decision, step=step, lock_timeout=timeout['note'], retry_advice=(
            'What to do: let those sessions finish (or end them), or raise lock_retries (its lock_timeout, %s, stays '
            'below deadlock_timeout, so that the application is never the deadlock victim), then rerun: %s.'
            % (timeout['value'], kept)), lock_oids=[referenced['oid'] if referenced else None,
                                                    partition['oid'] if partition else decision['table_oid']])
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
        if step in ('add', 'add_not_null', 'drop', 'drop_not_null', 'drop_index'):
            return 'this step had not changed anything; it runs again.'
        if step == 'validate':
            return 'the NOT VALID constraint "%s" is kept (new rows are checked already), and is validated.' % spec['name']
        if step == 'validate_partitions':
            return 'the NOT VALID constraint "%s" is kept; the partitions not yet valid are validated.' % spec['name']
        return 'the valid check "%s" is kept; SET NOT NULL runs again.' % spec['name']


def partition_sql(session, spec, partition, lock_timeout):
    """The transaction that validates one partition's foreign key (a ConstraintCatalog.partition_keys row) through
    C(session): the referenced table first, as the parent's VALIDATE."""
    sql, references = session.sql, spec['references']
    statement = sql.SQL('ALTER TABLE {}.{} VALIDATE CONSTRAINT {}').format(
        sql.Identifier(partition['schema']), sql.Identifier(partition['partition']), sql.Identifier(partition['name']))
    return session.in_lock_order(ordered_kind(spec['type'], 'validate_partitions'), references['schema'],
                                 references['table'], statement, lock_timeout)


def alter_statement(sql, spec, step, condition=None):
    """The ALTER TABLE of a catalog or scan step of C(spec): add (a foreign key, or a CHECK of C(condition)),
    add_not_null, validate, set_not_null, drop_not_null or drop."""
    table = sql.SQL('ALTER TABLE {}.{} ').format(sql.Identifier(spec['schema']), sql.Identifier(spec['table']))
    name = sql.Identifier(spec['name'])
    if step == 'add' and spec['type'] == 'foreign_key':
        references = spec['references']
        return table + sql.SQL('ADD CONSTRAINT {} FOREIGN KEY ({}) REFERENCES {}.{} ({}) ON DELETE {} ON UPDATE {} '
                               'NOT VALID').format(
            name, sql.SQL(', ').join(sql.Identifier(c) for c in spec['columns']),
            sql.Identifier(references['schema']), sql.Identifier(references['table']),
            sql.SQL(', ').join(sql.Identifier(c) for c in references['columns']),
            sql.SQL(spec['on_delete']), sql.SQL(spec['on_update']))
    if step == 'add_not_null':
        return table + sql.SQL('ADD CONSTRAINT {} NOT NULL {} NOT VALID').format(name, sql.Identifier(spec['column']))
    if step == 'add':
        return table + sql.SQL('ADD CONSTRAINT {} CHECK ({}) NOT VALID').format(name, condition)
    if step == 'validate':
        return table + sql.SQL('VALIDATE CONSTRAINT {}').format(name)
    if step == 'set_not_null':
        return table + sql.SQL('ALTER COLUMN {} SET NOT NULL').format(sql.Identifier(spec['column']))
    if step == 'drop_not_null':
        return table + sql.SQL('ALTER COLUMN {} DROP NOT NULL').format(sql.Identifier(spec['column']))
    return table + sql.SQL('DROP CONSTRAINT IF EXISTS {}').format(name)
