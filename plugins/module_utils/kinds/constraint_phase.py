# -*- coding: utf-8 -*-
# The constraint phase of a plan, in one module process: every planned constraint (unique, foreign_key, check,
# not_null) brought to its state in plan order (last to first rolling back), the first failure stopping the rest.
# The modules postgresql_online_constraint (a plan's constraints) and postgresql_online_unique_constraint (one
# unique constraint, or a plan's) share it: their options (argument_spec), the checks of those options, the work on
# one entry (bring: unique; bring_other: the rest, through online_constraint.ConstraintRunner) and the result.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.build_waits import (
    seconds_option_error, warn_about_waits,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.connection import (
    connect_or_fail, watch_connection_factory,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.duplicate_resolution import (
    ResolutionError, Resolver, run_in_transaction,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.index_actions import (
    ACTION_DROP, ACTION_UNCHANGED,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.constraint_decisions import (
    entry_columns, planned_unique_keys,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.online_constraint import ConstraintRunner
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.outcomes import (
    FAILED, kept_queries, mark, statements_diff, unchanged_note,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.plan.plan_proof import unique_indexes
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.replication import (
    REPLICATION_LAG_OPTIONS, replica_wait_problem,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.statements import (
    OnlineIndexError, blocking_lock_timeout_errors, option_errors,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.unique_constraint import (
    PLAN_CONSTRAINT_OPTIONS, constraint_summary, plan_failure_message, planned_definition,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.unique_keys import sample_size_errors

TIMEOUT_KEYS = ('lock_timeout', 'index_lock_timeout', 'statement_timeout')


def phase_options():
    """The options of the modules that run a constraint phase (connection options aside:
    session.connection.connection_argument_spec)."""
    return dict(
        schema=dict(type='str', default='public'),
        constraints=dict(type='list', elements='dict', default=[], options=PLAN_CONSTRAINT_OPTIONS),
        index_tables=dict(type='list', elements='dict', default=[]),
        replication_lag=dict(type='dict', options=REPLICATION_LAG_OPTIONS),
        audit_schema=dict(type='str', default='pgzd_audit'),
        audit_table=dict(type='str', default='duplicate_resolution'),
        run_id=dict(type='str', default='manual'),
        restore_duplicates=dict(type='bool', default=True),
        state=dict(type='str', default='present', choices=['present', 'absent']),
        lock_timeout=dict(type='str', default='2s'),
        index_lock_timeout=dict(type='str', default='5s'),
        lock_retries=dict(type='int', default=5),
        lock_retry_delay=dict(type='float', default=1.0),
        statement_timeout=dict(type='str', default='0'),
        build_wait_timeout=dict(type='float', default=0),
        build_wait_warn=dict(type='float', default=60),
        sample_ids=dict(type='int', default=5),
        max_groups=dict(type='int', default=20),
        lock_session_pid=dict(type='int', default=0),
        owner_pid=dict(type='int', default=0),
        trusted=dict(type='list', elements='str', default=[]),
        plan_name=dict(type='str', default='manual'),
    )


def checked_connection(module, conn_params):
    """The connection, once the timeouts are proven settings PostgreSQL accepts; fails the module otherwise.

    lock_timeout bounds the steps the application queues behind (ADD CONSTRAINT, SET NOT NULL, DROP): it must be a
    wait from 1ms to 1min. index_lock_timeout bounds waits nobody queues behind (VALIDATE's lock, which no reader or
    writer conflicts with): 0 (no limit) is allowed there."""
    params = module.params
    connection = connect_or_fail(module, conn_params)
    errors = option_errors(connection.cursor(), params, [('index_lock_timeout', 'lock_timeout'),
                                                         ('statement_timeout', 'statement_timeout')])
    errors += blocking_lock_timeout_errors(connection.cursor(), [('lock_timeout', params['lock_timeout'])])
    errors += [e for e in (seconds_option_error(name, params[name])
                           for name in ('build_wait_timeout', 'build_wait_warn')) if e]
    errors += sample_size_errors(params)
    if errors:
        connection.close()
        module.fail_json(msg='Invalid options; nothing was changed:\n- %s' % '\n- '.join(errors),
                         changed=False, queries=[], lock_retries_used=0)
    return connection


class ConstraintFailed(Exception):
    """One constraint failed: C(entry) so far, the statements it ran, those of them that only undid what a failed
    build left (C(cleanup)), and whether it changed the database."""

    def __init__(self, message, entry, queries=(), changed=False, cleanup=()):
        super(ConstraintFailed, self).__init__(message)
        self.entry = entry
        self.queries = list(queries)
        self.changed = changed
        self.cleanup = list(cleanup)


def describe(decision):
    """The diff line of a unique constraint as it is: its definition, a bare index, or absent."""
    spec = decision['spec']
    if decision['constraint']:
        return 'CONSTRAINT %s %s' % (spec['name'], decision['constraint']['definition'])
    index = decision['index']
    if index is not None and index['relkind'] in ('i', 'I') and (index['table_schema'], index['table']) == (
            spec['schema'], spec['table']):
        return '-- %s: no constraint; index %s%s' % (spec['name'], index['definition'],
                                                     '' if index['valid'] else '  -- INVALID')
    return '-- %s: absent' % spec['name']


def planned(decision):
    if decision['action'] == ACTION_DROP:
        return '-- %s: absent' % decision['spec']['name']
    if decision['action'] == ACTION_UNCHANGED:
        return describe(decision)
    return 'CONSTRAINT %s %s' % (decision['spec']['name'], planned_definition(decision['spec']['columns']))


def new_runner(module, connection, conn_params):
    params = module.params
    return ConstraintRunner(connection, constraint_lock_timeout=params['lock_timeout'],
                            sample_ids=params['sample_ids'], max_groups=params['max_groups'],
                            lock_timeout=params['index_lock_timeout'],
                            statement_timeout=params['statement_timeout'], lock_retries=params['lock_retries'],
                            lock_retry_delay=params['lock_retry_delay'], log=module.warn,
                            ddl_session=not module.check_mode, lock_session_pid=params['lock_session_pid'],
                            owner_pid=params['owner_pid'],
                            build_wait_timeout=params['build_wait_timeout'], trusted=params['trusted'],
                            plan_name=params['plan_name'], run_id=params['run_id'],
                            watch_connect=None if module.check_mode else watch_connection_factory(module, conn_params))


def new_entry(spec, params):
    """The result of one constraint, before anything is decided."""
    return dict(name=spec['name'], type=spec.get('type') or 'unique', schema=spec['schema'], table=spec['table'],
                columns=entry_columns(spec) if spec.get('type', 'unique') != 'unique' else spec['columns'],
                action=None, seconds=0.0, retries=0, waited_seconds=0.0, waited_for=[], statements=[],
                definition=None, lock_timeout=str(params['lock_timeout']),
                index_lock_timeout=str(params['index_lock_timeout']),
                statement_timeout=str(params['statement_timeout']))


def describe_other(decision):
    """The diff line of a foreign key, check or NOT NULL as it is."""
    spec, existing = decision['spec'], decision['constraint']
    lines = []
    if spec['type'] == 'not_null':
        lines.append('-- %s."%s": %s' % (spec['table'], spec['column'],
                                         'NOT NULL' if decision.get('column_not_null') else 'nullable'))
    if existing is not None:
        lines.append('CONSTRAINT %s %s' % (spec['name'], existing['definition']))
    elif spec['type'] != 'not_null':
        lines.append('-- %s: absent' % spec['name'])
    return '\n'.join(lines)


def bring(module, runner, spec, state, before=()):
    """One unique constraint to C(state), after the statements C(before) that ran for it (its duplicate renames);
    returns (entry, statements run, (diff before, diff after)). Raises ConstraintFailed."""
    params = module.params
    entry = dict(new_entry(spec, params), **runner.session.timeout_settings)
    try:
        decision = runner.plan_constraint(spec['name'], spec['schema'], spec['table'], spec['columns'], state)
    except OnlineIndexError as error:
        raise ConstraintFailed('The unique constraint cannot be %s; %s. Fix the plan (or the database) and rerun:\n%s'
                               % ('added' if state == 'present' else 'dropped', unchanged_note(before, ' on it'),
                                  error), entry)
    entry.update(action=decision['action'], statements=decision['statements'], left_alone=decision.get('left_alone'),
                 definition=decision['constraint']['definition'] if decision['constraint'] else None)
    diff = (describe(decision) + '\n', planned(decision) + '\n')
    if module.check_mode or decision['action'] == ACTION_UNCHANGED:
        return entry, decision['statements'] if module.check_mode else [], diff
    try:
        entry['seconds'], entry['retries'] = runner.apply_constraint(decision)
    except OnlineIndexError as error:
        raise apply_failure(entry, runner, error)
    entry['waited_seconds'], entry['waited_for'] = runner.waits.get(entry['name'], (0.0, []))
    warn_about_waits(module, entry, params['build_wait_warn'])
    return applied(entry, runner, spec), runner.executed_queries, diff


def apply_failure(entry, runner, error):
    """The ConstraintFailed of a constraint whose DDL failed: what ran is kept (C(statements_run) of the entry), but
    the drop of the INVALID index its failed build left. A build that timed out after creating its catalog entry,
    whose INVALID index could not be dropped, changed the database too."""
    entry['retries'] = runner.retries_used
    entry['statements_run'] = kept_queries(runner.executed_queries, runner.cleanup_queries)
    return ConstraintFailed('Constraint "%s" on %s.%s: %s' % (entry['name'], entry['schema'], entry['table'], error),
                            entry, runner.executed_queries, bool(entry['statements_run'] or runner.leftovers),
                            runner.cleanup_queries)


def applied(entry, runner, spec):
    """C(entry) with the constraint's definition as the catalog holds it after the DDL (None when gone)."""
    after = runner.read_constraint(spec['schema'], spec['table'], spec['name'])
    entry['definition'] = after['definition'] if after else None
    return entry


def bring_other(module, runner, spec, state, planned_unique=()):
    """One foreign key, check or NOT NULL to C(state), step by step; returns (entry, statements run, (diff before,
    diff after)). Raises ConstraintFailed. Nothing runs for it before (no duplicate renames)."""
    params = module.params
    entry = dict(new_entry(spec, params), **runner.session.timeout_settings)
    entry.update(steps=[], steps_done=[], locks=[], planned=None, advice=None)
    try:
        decision = runner.plan_entry(spec, state, spec['schema'], planned_unique)
    except OnlineIndexError as error:
        raise ConstraintFailed('The %s cannot be %s; nothing was changed on it. Fix the plan (or the database) and '
                               'rerun:\n%s' % (KIND_NAMES[spec['type']], 'added' if state == 'present' else 'dropped',
                                               error), entry)
    entry.update(action=decision['action'], statements=decision['statements'], steps=decision['steps'],
                 locks=decision['locks'],
                 planned=decision['planned'], advice=decision['advice'], left_alone=decision.get('left_alone'),
                 definition=decision['constraint']['definition'] if decision['constraint'] else None)
    diff = (describe_other(decision) + '\n', planned_other(decision) + '\n')
    if module.check_mode or decision['action'] == ACTION_UNCHANGED:
        return entry, decision['statements'] if module.check_mode else [], diff
    try:
        entry['seconds'], entry['retries'], entry['steps_done'] = runner.apply_entry(decision)
    except OnlineIndexError as error:
        raise apply_failure(entry, runner, error)
    if spec.get('index'):
        entry['waited_seconds'], entry['waited_for'] = runner.waits.get(spec['index'], (0.0, []))
        warn_about_waits(module, entry, params['build_wait_warn'])
    return applied(entry, runner, spec), runner.executed_queries, diff


KIND_NAMES = dict(foreign_key='foreign key', check='check constraint', not_null='NOT NULL')


def planned_other(decision):
    spec = decision['spec']
    if spec['type'] == 'not_null':
        return '-- %s."%s": %s' % (spec['table'], spec['column'],
                                   'nullable' if decision['action'] == ACTION_DROP else 'NOT NULL')
    if decision['action'] == ACTION_DROP:
        return '-- %s: absent' % spec['name']
    return 'CONSTRAINT %s %s' % (spec['name'], decision['planned'])


def resolver_params(params, spec):
    return dict(name=spec['name'], schema=spec['schema'], table=spec['table'], columns=spec['columns'],
                rename_column=spec.get('rename_column'), keep_oldest_by=spec.get('keep_oldest_by'),
                audit_schema=params['audit_schema'], audit_table=params['audit_table'], run_id=params['run_id'],
                plan_name=params['plan_name'],
                lock_timeout=params['lock_timeout'], lock_retries=params['lock_retries'],
                lock_retry_delay=params['lock_retry_delay'], lock_session_pid=params['lock_session_pid'],
                owner_pid=params['owner_pid'])


def bring_planned(module, connection, conn_params, spec, planned_unique=()):
    """One constraint of a plan: a unique one's duplicates renamed first (migrating, on_duplicates=rename), the
    replica lag waited for, the constraint itself, then the renamed values restored (rolling back). Returns (entry,
    queries, (diff before, diff after))."""
    params, state = module.params, module.params['state']
    unique = spec.get('type', 'unique') == 'unique'
    extra = dict(renamed_rows=0, restored_rows=0, rows=[], not_restored=[],
                 audit='%s.%s' % (params['audit_schema'], params['audit_table']))
    queries = []
    try:
        if unique and state == 'present' and spec['on_duplicates'] == 'rename':
            resolver = Resolver(connection, resolver_params(params, spec))
            extra['rows'], ran = run_in_transaction(resolver, lambda: resolver.resolve(module.check_mode),
                                                    module.check_mode, module.warn)
            extra['renamed_rows'] = len(extra['rows'])
            queries.extend(ran)
        before = [] if module.check_mode else list(queries)
        problem = replica_wait_problem(connection, params['replication_lag'], state, module.check_mode,
                                       params['login_user'], module.warn)
        if problem:
            raise ConstraintFailed('Constraint "%s" on %s.%s not started, %s: %s' % (
                spec['name'], spec['schema'], spec['table'], unchanged_note(before, ' on it'), problem),
                dict(name=spec['name'], action=None))
        runner = new_runner(module, connection, conn_params)
        entry, ran, diff = bring(module, runner, spec, state, before) if unique else \
            bring_other(module, runner, spec, state, planned_unique)
        queries.extend(ran)
        if unique and state == 'absent' and params['restore_duplicates']:
            resolver = Resolver(connection, resolver_params(params, spec))
            restored, extra['not_restored'], ran = run_in_transaction(
                resolver, lambda: resolver.restore(module.check_mode), module.check_mode, module.warn)
            extra['rows'], extra['restored_rows'] = restored, len(restored)
            queries.extend(ran if not module.check_mode or restored else [])
            for skipped in extra['not_restored']:
                module.warn('not restored: %s row %s: %s' % (skipped['column'], skipped['row_key'], skipped['reason']))
    except ResolutionError as error:
        # The rename (or restore) is rolled back; what ran before it for this constraint (a restore follows the drop)
        # is kept.
        before = [] if module.check_mode else list(queries)
        raise ConstraintFailed('Duplicate %s of constraint "%s" on %s.%s failed and was rolled back (%s): %s' % (
            'resolution' if state == 'present' else 'restore', spec['name'], spec['schema'], spec['table'],
            unchanged_note(before, ' by it'), error),
            dict(name=spec['name'], action=None, statements_run=before, **extra), queries, bool(before))
    except ConstraintFailed as failure:
        failure.entry.update(extra)
        if not module.check_mode:
            failure.entry['statements_run'] = queries + failure.entry.get('statements_run', [])
        failure.queries = queries + failure.queries
        failure.changed = failure.changed or bool(queries and not module.check_mode)
        raise
    entry.update(extra)
    return entry, queries, diff


def audit_files(entries, run_id, state):
    """A JSON copy, beside the audit table, of the rows each duplicate rename (or restore) changed: file name -> data."""
    kind = 'resolved' if state == 'present' else 'restored'
    return dict(('%s-%s-%s.json' % (run_id, entry['name'], kind),
                 dict(constraint=entry['name'], run_id=run_id, kind=kind, audit_table=entry.get('audit'),
                      rows=entry['rows'], not_restored=entry.get('not_restored') or []))
                for entry in entries if entry.get('rows'))


def run_constraints(module, connection, conn_params):
    """Every constraint of O(constraints), in order, in this one process; the first failure stops the rest."""
    params = module.params
    result = dict(changed=False, queries=[], constraints=[], constraint={}, lock_retries_used=0)
    started = time.monotonic()
    failure = None
    diffs = []
    specs = [dict(spec, schema=spec.get('schema') or params['schema']) for spec in params['constraints']]
    for position, spec in enumerate(specs):
        try:
            # The keys a foreign key may reference before they exist (check mode): the unique constraints before it,
            # and the full unique indexes of the index phase of this run.
            entry, queries, diff = bring_planned(module, connection, conn_params, spec,
                                                 planned_unique_keys(specs[:position], params['schema'])
                                                 | unique_indexes(params['index_tables'], params['schema']))
            diffs.append(diff)
        except ConstraintFailed as error:
            result['queries'].extend(error.queries)
            result['cleanup_queries'] = error.cleanup
            result['changed'] = result['changed'] or error.changed
            # Not what was planned for it: what happened to it.
            result['constraints'].append(mark(error.entry, FAILED))
            failure = plan_failure_message(str(error), result['constraints'][:-1],
                                           [s['name'] for s in specs[position + 1:]])
            break
        result['constraints'].append(entry)
        result['queries'].extend(queries)
        result['lock_retries_used'] += entry.get('retries') or 0
    connection.close()
    if not module.check_mode:
        result['changed'] = result['changed'] or bool(kept_queries(result['queries'], result.get('cleanup_queries', [])))
    else:
        result['changed'] = any(e.get('action') not in (None, ACTION_UNCHANGED) or e.get('rows')
                                for e in result['constraints'])
    result['constraint'] = result['constraints'][-1] if result['constraints'] else {}
    result['seconds'] = round(time.monotonic() - started, 2)
    result['audit_files'] = {} if module.check_mode else audit_files(result['constraints'], params['run_id'],
                                                                     params['state'])
    result['summary'] = constraint_summary(result['constraints'], module.check_mode)
    if module._diff:
        result['diff'] = statements_diff(''.join(d[0] for d in diffs), ''.join(d[1] for d in diffs),
                                         result['queries'], module.check_mode)
    if failure:
        module.fail_json(msg=failure, **result)
    module.exit_json(**result)
