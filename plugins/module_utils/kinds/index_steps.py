# -*- coding: utf-8 -*-
# The steps of the index kind: IndexSteps composes the SQL of each step index_decisions decided (a concurrent build or
# drop, a partitioned index's ON ONLY and ATTACH, a replacement's swap) and runs them through the run's DDL session
# (ddl_session), recorded in the ledger before and after, and verified in the catalog afterwards.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.index_actions import (
    ACTION_CREATE, ACTION_DROP, ACTION_REBUILD, ACTION_REPLACE, ACTION_RESTORE, ACTION_RESUME, ACTION_UNCHANGED,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.index_definitions import (
    compare_index, same_index_definition,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.lock_order import ORDERED_STATEMENTS
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.statements import OnlineIndexError, error_text

# What to do when a step that runs under lock_timeout gave up after every retry (formatted with the step).
CATALOG_STEP_ADVICE = dict(
    create_on_only='What to do: let those sessions finish (or end them), or raise lock_timeout / lock_retries, then '
                   'rerun; nothing was changed by this step.',
    attach='What to do: let those sessions finish (or end them), or raise lock_timeout / lock_retries, then rerun: '
           'the partition indexes built so far are kept, and the rerun attaches %(partition_index)s and the rest.',
    swap='What to do: let those sessions finish (or end them), or raise lock_timeout / lock_retries, then rerun: the '
         'new index %(next)s is built and kept, so the rerun only swaps the names (and drops the index replaced).',
    drop_partitioned='What to do: let those sessions finish (or end them), or raise lock_timeout / lock_retries, then '
                     'rerun; nothing was dropped by this step.',
)


class IndexSteps(object):
    """The statements of an index decision's steps, and their run, over a DdlSession and the IndexCatalog."""

    def __init__(self, session, catalog):
        self.session, self.catalog = session, catalog
        self.sql, self.ledger = session.sql, session.ledger

    def create_statement(self, schema, table, spec, concurrently=True, only=False, display=False):
        """CREATE INDEX of C(spec) on C(schema).C(table): CONCURRENTLY, or ON ONLY a partitioned table (C(only)), both
        IF NOT EXISTS; or a plain CREATE INDEX (the probe on an empty copy, and the definition the plan shows). A
        predicate goes in only once proven (plan_text), but for C(display): the text shown in a message."""
        sql = self.sql
        parts = [sql.SQL('CREATE UNIQUE INDEX' if spec.get('unique') else 'CREATE INDEX')]
        if concurrently:
            parts.append(sql.SQL('CONCURRENTLY IF NOT EXISTS'))
        elif only:
            parts.append(sql.SQL('IF NOT EXISTS'))
        parts.append(sql.SQL('{} ON {}{}.{} USING {} ({})').format(
            sql.Identifier(spec['name']), sql.SQL('ONLY ' if only else ''), sql.Identifier(schema), sql.Identifier(table),
            sql.Identifier(spec.get('method') or 'btree'),
            sql.SQL(', ').join(sql.Identifier(c) for c in spec['columns'])))
        if spec.get('include'):
            parts.append(sql.SQL('INCLUDE ({})').format(
                sql.SQL(', ').join(sql.Identifier(c) for c in spec['include'])))
        if spec.get('where'):
            where = sql.SQL(spec['where']) if display else self.session.plan_text('predicate', spec['where'])
            parts.append(sql.SQL('WHERE ({})').format(where))
        return sql.SQL(' ').join(parts)

    def drop_statement(self, schema, name, concurrently=True):
        sql = self.sql
        return sql.SQL('DROP INDEX {}IF EXISTS {}.{}').format(
            sql.SQL('CONCURRENTLY ' if concurrently else ''), sql.Identifier(schema), sql.Identifier(name))

    def step_statements(self, decision, step):
        """The statements of one step of a decision (see index_decisions.decide_actions), in order, as composed SQL."""
        sql, spec, kind = self.sql, decision['spec'], step['kind']
        index = sql.SQL('{}.{}').format(sql.Identifier(step['schema']), sql.Identifier(step['name']))
        target = dict(spec, name=step['name'])
        if step.get('partition'):
            # PostgreSQL's own rendering of the predicate names no table, so it holds on every partition.
            target['where'] = spec.get('normalized_where') or spec.get('where')
        if kind == 'build':
            return [self.create_statement(step['schema'], step['table'], target)]
        if kind == 'build_definition':
            return [self.session.plan_text('definition', step['statement'])]
        if kind == 'drop':
            return [self.drop_statement(step['schema'], step['name'])]
        if kind == 'drop_partitioned':
            return self.session.in_lock_order('drop_partitioned', step['schema'], step['table'], self.drop_statement(
                step['schema'], step['name'], concurrently=False), self.session.lock_timeout)
        if kind == 'create_on_only':
            return [self.create_statement(step['schema'], step['table'], target, concurrently=False, only=True)]
        if kind == 'attach':
            return self.session.in_lock_order('attach', step['schema'], step['table'], sql.SQL(
                'ALTER INDEX {} ATTACH PARTITION {}.{}').format(
                index, sql.Identifier(step['partition_schema']), sql.Identifier(step['partition_index'])),
                self.session.lock_timeout)
        if kind == 'swap':
            return [sql.SQL('BEGIN'),
                    sql.SQL('ALTER INDEX {} RENAME TO {}').format(index, sql.Identifier(step['previous'])),
                    sql.SQL('ALTER INDEX {}.{} RENAME TO {}').format(
                        sql.Identifier(step['schema']), sql.Identifier(step['next']), sql.Identifier(step['name'])),
                    sql.SQL('COMMENT ON INDEX {} IS {}').format(
                        index, sql.SQL('NULL') if step['comment'] is None else sql.Literal(step['comment']))] + \
                self.swap_ledger_statements(decision, step) + [sql.SQL('COMMIT')]
        raise ValueError('unknown step %r' % kind)

    def statements_for(self, decision):
        return [self.session.render(statement) for step in decision['steps'] for statement in self.step_statements(decision, step)]

    def apply(self, decision):
        """Run one decision's steps, recorded in the ledger. Returns (seconds, lock retries); raises OnlineIndexError
        on failure."""
        started = time.monotonic()
        self._intend(decision)
        retries = sum(self._run_step(decision, step) for step in decision['steps'])
        self._verify(decision)
        self._recorded(decision)
        return round(time.monotonic() - started, 3), retries

    def _intend(self, decision):
        """Before the first statement: the ledger row of what the decision makes (an index; a replacement, with the
        definition and comment it replaces)."""
        spec, action, existing = decision['spec'], decision['action'], decision['existing']
        if action in (ACTION_CREATE, ACTION_REBUILD, ACTION_RESUME):
            decision['ledger_row'] = dict(id=self.ledger.intend('index', spec['schema'], spec['table'], spec['name'],
                                                                spec['display_definition']), state='intended')
        elif action == ACTION_REPLACE and any(step['kind'] == 'swap' for step in decision['steps']):
            decision['ledger_row'] = dict(id=self.ledger.intend(
                'replaced_index', spec['schema'], spec['table'], spec['name'], spec['display_definition'],
                prior=dict(definition=existing['definition'], comment=existing.get('comment'))), state='intended')

    def _recorded(self, decision):
        """After the steps: the ledger row applied (what was made, as PostgreSQL renders it) or undone (what a
        rollback dropped). A swap records its own row in its transaction (swap_ledger_statements)."""
        spec, action, row = decision['spec'], decision['action'], decision.get('ledger_row')
        if not row or any(step['kind'] == 'swap' for step in decision['steps']):
            return
        if action in (ACTION_CREATE, ACTION_REBUILD, ACTION_RESUME):
            self.ledger.applied(row['id'], definition_sql=self.ledger.indexdef_sql(spec['schema'], spec['name']))
        elif action in (ACTION_DROP, ACTION_RESTORE):
            self.ledger.undone(row['id'])

    def swap_ledger_statements(self, decision, step):
        """In the swap's own transaction, so that a swap is never without its record: a replacement's row applied
        (with the definition now of the planned name), a restore's row undone."""
        row = decision.get('ledger_row')
        if not row:
            return []
        if decision['action'] == ACTION_REPLACE:
            definition = self.ledger.indexdef_sql(step['schema'], step['name'])
            return [self.ledger.applied_statement(row['id'], definition_sql=definition)]
        return [self.ledger.undone_statement(row['id'])]

    def _run_step(self, decision, step):
        """One step: a concurrent build or drop without lock_timeout, watched; anything else (catalog only, a brief
        lock the application may queue behind) under lock_timeout, retried. Returns the lock retries it needed."""
        spec, kind, session = decision['spec'], step['kind'], self.session
        statements = self.step_statements(decision, step)
        target = dict(spec, schema=step['schema'], table=step['table'], name=step['name'])
        label = spec['name']
        if kind == 'drop':
            return session.with_retries(target, decision, statements[0], lambda: session.execute_concurrently(
                target, statements[0], label=label))
        if kind in ('build', 'build_definition'):
            return self.build_index(target, decision, statements[0], label=label)
        step_decision = dict(decision, retry_advice=CATALOG_STEP_ADVICE.get(kind, '') % step)
        if kind in ORDERED_STATEMENTS:
            step_decision['lock_timeout'] = session.deadlock_safe_timeout(self.session.lock_timeout)['note']
            return session.with_retries(target, step_decision, statements[3], lambda: session.in_transaction(statements))
        if kind == 'swap':
            return session.with_retries(target, step_decision, statements[1], lambda: session.in_transaction(statements))
        return session.with_retries(target, step_decision, statements[0], lambda: session.execute(
            statements[0], 'IndexStmt' if kind == 'create_on_only' else None))

    def _verify(self, decision):
        """After the steps: the index of the planned name is valid (pg_index.indisvalid: for a partitioned index, every
        partition has its index attached) and has the definition the decision gives it."""
        spec, action = decision['spec'], decision['action']
        if action in (ACTION_DROP, ACTION_UNCHANGED) or (action == ACTION_RESTORE and not decision.get('planned_definition')):
            return
        index = self.catalog.read_existing_indexes(spec['schema'], [spec['name']]).get(spec['name'])
        if index is not None and index['valid'] and (
                same_index_definition(index['definition'], decision['planned_definition'])
                if action == ACTION_RESTORE else not compare_index(index, spec)):
            return
        raise OnlineIndexError('index "%s.%s" is %s after its steps ran (%s): rerun to finish it' % (
            spec['schema'], spec['name'], 'missing' if index is None else 'not valid' if not index['valid'] else
            'not as planned', index['definition'] if index else 'absent'))

    def build_index(self, spec, decision, create, label=None, explain=None):
        """C(create), the concurrent build of C(spec), retried; an INVALID leftover of an earlier attempt is dropped
        before each attempt, and after a failure (C(explain) as for DdlSession.with_retries). Raises unless the index
        is valid after it. Returns the retries."""
        retries = self.session.with_retries(spec, decision, create, lambda: self._build_once(spec, create, label=label),
                                            self._cleanup_after_failure, explain)
        built = self.catalog.read_existing_indexes(spec['schema'], [spec['name']]).get(spec['name'])
        if built is None or not built['valid']:
            raise OnlineIndexError('index "%s.%s" is not valid after its build: rerun to drop and rebuild it'
                                   % (spec['schema'], spec['name']))
        return retries

    def _build_once(self, spec, create, label=None):
        # CREATE INDEX ... IF NOT EXISTS would silently keep an INVALID leftover of the same name (from an
        # earlier attempt whose cleanup timed out), so every attempt starts by dropping one.
        self._drop_invalid_leftover(spec)
        self.session.execute_concurrently(spec, create, 'IndexStmt', label)

    def _drop_invalid_leftover(self, spec):
        state = self.catalog.read_existing_indexes(spec['schema'], [spec['name']]).get(spec['name'])
        if state is not None and not state['valid']:
            self.session.execute(self.drop_statement(spec['schema'], spec['name']))
            return True
        return False

    def _cleanup_after_failure(self, spec):
        """Drop the INVALID index a failed concurrent build leaves behind; say what happened."""
        try:
            ran = len(self.session.executed_queries)
            if self._drop_invalid_leftover(spec):
                self.session.cleanup_queries.extend(self.session.executed_queries[ran:])
                return 'the INVALID index the failed build left was dropped'
            return None
        except Exception as error:  # same as above: any driver error
            self.session.leftovers.append('%s.%s' % (spec['schema'], spec['name']))
            return ('the INVALID index the failed build left could not be dropped (%s); the next run drops and '
                    'rebuilds it' % error_text(error))
