#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: postgresql_online_unique_constraint
short_description: Add or drop unique constraints without blocking reads or writes
description:
  - Brings one constraint (O(name), O(table), O(columns)), or every constraint of a plan in one process
    (O(constraints)), to the planned state.
  - Adds C(UNIQUE (columns)) the non-blocking way. First C(CREATE UNIQUE INDEX CONCURRENTLY) under the
    constraint's name, which blocks no reads or writes. Then C(ALTER TABLE ... ADD CONSTRAINT ... UNIQUE USING
    INDEX), a catalog-only change that needs a brief ACCESS EXCLUSIVE lock.
  - That lock is requested under the short O(lock_timeout) (2s by default), so other sessions never queue
    behind the request longer than that. A timed-out attempt is retried up to O(lock_retries) times, with
    exponential backoff and jitter from O(lock_retry_delay). If every attempt times out, the task fails and
    names the lock holders. The valid unique index is kept, so a rerun only runs the ALTER TABLE.
  - If rows with a duplicate key are written while the index builds, the build fails. The INVALID index it
    leaves is dropped, and the task fails listing the offending keys and row ids.
  - Idempotent. A constraint of that name that is already the planned one is left unchanged, and a
    different constraint of that name is an error. A valid equivalent unique index of that name is attached
    without a rebuild, and an INVALID one is dropped and rebuilt.
  - With O(state=absent), drops the constraint (and with it its index) under the same short lock_timeout. A
    unique index of that name left by an earlier run whose ADD CONSTRAINT never ran is dropped with DROP
    INDEX CONCURRENTLY. A constraint or index of that name that differs from the planned one is never
    dropped.
  - With O(constraints), the plan's constraints are worked on in the order given, and the first failure stops the
    rest (the result says what was done before it, and kept). Migrating, a constraint with C(on_duplicates=rename)
    first gets its duplicate keys renamed, audited, in one transaction
    (as M(pg_zero_downtime.migrations.postgresql_duplicate_resolution) does), and each unique index waits for the
    replicas first (O(replication_lag)). Rolling back (O(state=absent)), the values such a rename changed are put
    back after the constraint is dropped (O(restore_duplicates)).
  - Runs over an autocommit connection (a concurrent build cannot run in a transaction block). Check mode
    returns the statements a real run would execute.
version_added: '0.1.0'
requirements:
  - pglast (PostgreSQL's parser), to check plan SQL and every statement that carries it
options:
  login_db:
    description: Name of the database to connect to.
    type: str
    aliases: [db]
  name:
    description:
      - Constraint name, also the name of its index (at most 63 bytes). Give O(name), O(table) and O(columns), or
        O(constraints).
    type: str
  table:
    description: Table name, exactly as in the catalog (case-sensitive).
    type: str
  schema:
    description: Schema of the table (with O(constraints), of those that name none).
    type: str
    default: public
  columns:
    description: The constraint's columns, in order.
    type: list
    elements: str
  audit_schema:
    description: With O(constraints), schema of the audit table of duplicate renames.
    type: str
    default: pgzd_audit
  audit_table:
    description: With O(constraints), the audit table of duplicate renames.
    type: str
    default: duplicate_resolution
  run_id:
    description: With O(constraints), the run id the audit table records with each rename.
    type: str
    default: manual
  restore_duplicates:
    description: With O(constraints) and O(state=absent), put back the values a duplicate rename changed.
    type: bool
    default: true
  state:
    description: C(present) adds the constraint, C(absent) drops it.
    type: str
    choices: [present, absent]
    default: present
  lock_timeout:
    description:
      - lock_timeout of each ALTER TABLE attempt (ADD or DROP CONSTRAINT), the only step that takes an ACCESS
        EXCLUSIVE lock. Sessions that queue behind the request wait at most this long.
    type: str
    default: 2s
  index_lock_timeout:
    description:
      - lock_timeout of the session's other statements (catalog reads, the drop of a failed build's INVALID
        leftover).
      - The concurrent build and drop of the unique index are not bounded by it. They block no reads or writes
        while they wait (for writers, for older transactions), and a retry would build the index all over again;
        they wait as long as it takes, watched (O(build_wait_warn), O(build_wait_timeout)).
    type: str
    default: 5s
  statement_timeout:
    description: statement_timeout of the session. C(0) disables it, which is what a long build needs.
    type: str
    default: '0'
  sample_ids:
    description: How many row ids to list per duplicate key when a build fails on duplicates.
    type: int
    default: 5
  max_groups:
    description: How many duplicate keys to list when a build fails on duplicates.
    type: int
    default: 20
  session_role:
    description: Switch to this role after connecting.
    type: str
attributes:
  check_mode:
    support: full
  diff_mode:
    description: Returns the catalog state before and after (what would change, in check mode) with C(--diff).
    support: full
notes:
  - The migration user must own the table.
  - Run the duplicate check (M(pg_zero_downtime.migrations.postgresql_unique_constraint_info)) first. It lists every duplicate before any DDL
    starts. This module only catches duplicates written during its own build.
author:
  - pg-zero-downtime maintainers (!UNKNOWN)
extends_documentation_fragment:
  - pg_zero_downtime.migrations.plan_constraints
  - pg_zero_downtime.migrations.replication_lag
  - pg_zero_downtime.migrations.lock_retries
  - pg_zero_downtime.migrations.build_waits
  - community.postgresql.postgres
  - pg_zero_downtime.migrations.migration_lock
'''

EXAMPLES = r'''
- name: Make Class(name, grade) unique without blocking the application
  pg_zero_downtime.migrations.postgresql_online_unique_constraint:
    login_db: app
    name: Class_name_grade_key
    table: Class
    columns: [name, grade]

- name: Every constraint of a plan, in one process, duplicates renamed where the plan says so
  pg_zero_downtime.migrations.postgresql_online_unique_constraint:
    login_db: app
    constraints:
      - name: Class_name_grade_key
        table: Class
        columns: [name, grade]
        on_duplicates: rename
        rename_column: name
    run_id: t12-20261125T030000Z

- name: Drop it again (rollback)
  pg_zero_downtime.migrations.postgresql_online_unique_constraint:
    login_db: app
    name: Class_name_grade_key
    table: Class
    columns: [name, grade]
    state: absent
'''

RETURN = r'''
queries:
  description: The statements executed, in order (in check mode, the statements a real run would execute).
  returned: always
  type: list
  elements: str
  sample:
    - CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS "Class_name_grade_key" ON "public"."Class" USING "btree" ("name", "grade")
    - ALTER TABLE "public"."Class" ADD CONSTRAINT "Class_name_grade_key" UNIQUE USING INDEX "Class_name_grade_key"
constraint:
  description: What the task did (with O(constraints), the last constraint worked on).
  returned: always
  type: dict
  contains:
    name:
      description: Constraint name.
      type: str
    schema:
      description: Schema of the table.
      type: str
    table:
      description: Table name.
      type: str
    columns:
      description: The constraint's columns.
      type: list
      elements: str
    action:
      description:
        - C(created) (index built, then attached), C(rebuilt) (an INVALID leftover dropped first), C(attached)
          (an existing valid unique index attached), C(unchanged) or C(dropped); with O(constraints), C(failed) for
          the constraint that stopped the phase (its C(planned_action) says what it was to be).
      type: str
    seconds:
      description: Wall-clock seconds the DDL took, retries included.
      type: float
    retries:
      description: Lock-timeout retries used.
      type: int
    waited_seconds:
      description: Seconds the concurrent build or drop spent waiting for other sessions.
      type: float
    waited_for:
      description: The sessions it waited for last, when it waited.
      type: list
      elements: str
    statements:
      description: The statements of this constraint (run, or to run in check mode).
      type: list
      elements: str
    definition:
      description: C(pg_get_constraintdef) after the task; null when the constraint does not exist.
      type: str
      sample: UNIQUE (name, grade)
constraints:
  description:
    - With O(constraints), one entry per constraint worked on, as RV(constraint), plus C(renamed_rows) and
      C(restored_rows) (how many values a duplicate rename changed or put back), C(rows) (those changes, each a row key,
      column, old and new value), C(not_restored) and C(audit) (the audit table).
  returned: always
  type: list
  elements: dict
seconds:
  description: With O(constraints), how long the whole phase took.
  returned: with O(constraints)
  type: float
audit_files:
  description:
    - With O(constraints), a JSON copy of the rows each duplicate rename (or restore) changed, for the controller to
      keep beside the audit table, as file name (C(<run_id>-<constraint>-resolved.json) or C(-restored.json)) to
      content. Empty in check mode.
  returned: with O(constraints)
  type: dict
summary:
  description: One line per constraint changed and per duplicate rename or restore; in check mode, the SQL too.
  returned: always
  type: list
  elements: str
lock_retries_used:
  description: Total lock-timeout retries of the task.
  returned: always
  type: int
'''

import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.connection import (
    connect_or_fail, watch_connection_factory,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.build_waits import (
    seconds_option_error, warn_about_waits,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.duplicate_resolution import (
    ResolutionError, Resolver, run_in_transaction,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.index_plan import (
    ACTION_DROP, ACTION_UNCHANGED,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.replication import (
    REPLICATION_LAG_OPTIONS, replica_wait_problem,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session import (
    OnlineIndexError, option_errors,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.unique_constraint import (
    PLAN_CONSTRAINT_OPTIONS, UniqueConstraintRunner, constraint_summary, plan_failure_message, planned_definition,
)
from ansible_collections.community.postgresql.plugins.module_utils.postgres import (
    ensure_required_libs,
    get_conn_params,
    postgres_common_argument_spec,
)


class ConstraintFailed(Exception):
    """One constraint failed: C(entry) so far, the statements it ran (kept), and whether it changed the database."""

    def __init__(self, message, entry, queries=(), changed=False):
        super(ConstraintFailed, self).__init__(message)
        self.entry = entry
        self.queries = list(queries)
        self.changed = changed


def describe(decision):
    """The diff line of the constraint as it is: its definition, a bare index, or absent."""
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
    return UniqueConstraintRunner(connection, constraint_lock_timeout=params['lock_timeout'],
                                  sample_ids=params['sample_ids'], max_groups=params['max_groups'],
                                  lock_timeout=params['index_lock_timeout'],
                                  statement_timeout=params['statement_timeout'], lock_retries=params['lock_retries'],
                                  lock_retry_delay=params['lock_retry_delay'], log=module.warn,
                                  ddl_session=not module.check_mode, lock_session_pid=params['lock_session_pid'],
                                  build_wait_timeout=params['build_wait_timeout'],
                                  watch_connect=None if module.check_mode else watch_connection_factory(module,
                                                                                                        conn_params))


def bring(module, runner, spec, state):
    """One constraint to C(state); returns (entry, statements run, (diff before, diff after)). Raises
    ConstraintFailed."""
    params = module.params
    entry = dict(name=spec['name'], schema=spec['schema'], table=spec['table'], columns=spec['columns'], action=None,
                 seconds=0.0, retries=0, waited_seconds=0.0, waited_for=[], statements=[], definition=None,
                 lock_timeout=str(params['lock_timeout']), index_lock_timeout=str(params['index_lock_timeout']),
                 statement_timeout=str(params['statement_timeout']))
    try:
        decision = runner.plan_constraint(spec['name'], spec['schema'], spec['table'], spec['columns'], state)
    except OnlineIndexError as error:
        raise ConstraintFailed('The unique constraint cannot be %s; nothing was changed. Fix the plan (or the '
                               'database) and rerun:\n%s' % ('added' if state == 'present' else 'dropped', error), entry)
    entry.update(action=decision['action'], statements=decision['statements'],
                 definition=decision['constraint']['definition'] if decision['constraint'] else None)
    diff = (describe(decision) + '\n', planned(decision) + '\n')
    if module.check_mode or decision['action'] == ACTION_UNCHANGED:
        return entry, decision['statements'] if module.check_mode else [], diff
    try:
        entry['seconds'], entry['retries'] = runner.apply_constraint(decision)
    except OnlineIndexError as error:
        # A build that timed out after creating its catalog entry, whose INVALID index could not be dropped,
        # changed the database too.
        entry['retries'] = runner.retries_used
        raise ConstraintFailed('Constraint "%s" on %s.%s: %s' % (entry['name'], entry['schema'], entry['table'], error),
                               entry, runner.executed_queries, bool(runner.executed_queries or runner.leftovers))
    entry['waited_seconds'], entry['waited_for'] = runner.waits.get(entry['name'], (0.0, []))
    warn_about_waits(module, entry, params['build_wait_warn'])
    after = [c for c in runner.read_constraints(spec['schema'], spec['name'])
             if (c['schema'], c['table']) == (spec['schema'], spec['table'])]
    entry['definition'] = after[0]['definition'] if after else None
    return entry, runner.executed_queries, diff


def resolver_params(params, spec):
    return dict(name=spec['name'], schema=spec['schema'], table=spec['table'], columns=spec['columns'],
                rename_column=spec.get('rename_column'), keep_oldest_by=spec.get('keep_oldest_by'),
                audit_schema=params['audit_schema'], audit_table=params['audit_table'], run_id=params['run_id'],
                lock_timeout=params['lock_timeout'], lock_retries=params['lock_retries'],
                lock_retry_delay=params['lock_retry_delay'], lock_session_pid=params['lock_session_pid'])


def bring_planned(module, connection, conn_params, spec):
    """One constraint of a plan: its duplicates renamed first (migrating, on_duplicates=rename), the replica lag
    waited for, the constraint itself, then the renamed values restored (rolling back). Returns (entry, queries,
    (diff before, diff after))."""
    params, state = module.params, module.params['state']
    extra = dict(renamed_rows=0, restored_rows=0, rows=[], not_restored=[],
                 audit='%s.%s' % (params['audit_schema'], params['audit_table']))
    queries = []
    try:
        if state == 'present' and spec['on_duplicates'] == 'rename':
            resolver = Resolver(connection, resolver_params(params, spec))
            extra['rows'], ran = run_in_transaction(resolver, lambda: resolver.resolve(module.check_mode),
                                                    module.check_mode, module.warn)
            extra['renamed_rows'] = len(extra['rows'])
            queries.extend(ran)
        problem = replica_wait_problem(connection, params['replication_lag'], state, module.check_mode,
                                       params['login_user'], module.warn)
        if problem:
            raise ConstraintFailed('Constraint "%s" on %s.%s not started, nothing more was changed on it: %s' % (
                spec['name'], spec['schema'], spec['table'], problem), dict(name=spec['name'], action=None))
        entry, ran, diff = bring(module, new_runner(module, connection, conn_params), spec, state)
        queries.extend(ran)
        if state == 'absent' and params['restore_duplicates']:
            resolver = Resolver(connection, resolver_params(params, spec))
            restored, extra['not_restored'], ran = run_in_transaction(
                resolver, lambda: resolver.restore(module.check_mode), module.check_mode, module.warn)
            extra['rows'], extra['restored_rows'] = restored, len(restored)
            queries.extend(ran if not module.check_mode or restored else [])
            for skipped in extra['not_restored']:
                module.warn('not restored: %s row %s: %s' % (skipped['column'], skipped['row_key'], skipped['reason']))
    except ResolutionError as error:
        raise ConstraintFailed('Duplicate %s of constraint "%s" on %s.%s failed and was rolled back; nothing was '
                               'changed by it: %s' % ('resolution' if state == 'present' else 'restore', spec['name'],
                                                      spec['schema'], spec['table'], error),
                               dict(name=spec['name'], action=None, **extra), queries, bool(queries))
    except ConstraintFailed as failure:
        failure.entry.update(extra)
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


def run_plan(module, connection, conn_params):
    """Every constraint of O(constraints), in order, in this one process; the first failure stops the rest."""
    params = module.params
    result = dict(changed=False, queries=[], constraints=[], constraint={}, lock_retries_used=0)
    started = time.monotonic()
    failure = None
    diffs = []
    specs = [dict(spec, schema=spec.get('schema') or params['schema']) for spec in params['constraints']]
    for position, spec in enumerate(specs):
        try:
            entry, queries, diff = bring_planned(module, connection, conn_params, spec)
            diffs.append(diff)
        except ConstraintFailed as error:
            result['queries'].extend(error.queries)
            result['changed'] = result['changed'] or error.changed
            # Not what was planned for it: what happened to it.
            error.entry.update(planned_action=error.entry.get('action'), action='failed')
            result['constraints'].append(error.entry)
            failure = plan_failure_message(str(error), result['constraints'][:-1],
                                           [s['name'] for s in specs[position + 1:]])
            break
        result['constraints'].append(entry)
        result['queries'].extend(queries)
        result['lock_retries_used'] += entry.get('retries') or 0
    connection.close()
    if not module.check_mode:
        result['changed'] = result['changed'] or bool(result['queries'])
    else:
        result['changed'] = any(e.get('action') not in (None, ACTION_UNCHANGED) or e.get('rows')
                                for e in result['constraints'])
    result['constraint'] = result['constraints'][-1] if result['constraints'] else {}
    result['seconds'] = round(time.monotonic() - started, 2)
    result['audit_files'] = {} if module.check_mode else audit_files(result['constraints'], params['run_id'],
                                                                     params['state'])
    result['summary'] = constraint_summary(result['constraints'], module.check_mode)
    if module._diff:
        result['diff'] = dict(before=''.join(d[0] for d in diffs), after=''.join(d[1] for d in diffs))
    if failure:
        module.fail_json(msg=failure, **result)
    module.exit_json(**result)


def main():
    argument_spec = postgres_common_argument_spec()
    argument_spec.update(
        login_db=dict(type='str', aliases=['db']),
        name=dict(type='str'),
        table=dict(type='str'),
        schema=dict(type='str', default='public'),
        columns=dict(type='list', elements='str'),
        constraints=dict(type='list', elements='dict', default=[], options=PLAN_CONSTRAINT_OPTIONS),
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
        session_role=dict(type='str'),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           mutually_exclusive=[('constraints', 'name')],
                           required_together=[('name', 'table', 'columns')])
    params = module.params
    if not params['constraints'] and not params['name']:
        module.fail_json(msg='give name, table and columns (one constraint), or constraints (a plan\'s)',
                         changed=False, queries=[], lock_retries_used=0)
    ensure_required_libs(module)
    conn_params = get_conn_params(module, params)
    connection = connect_or_fail(module, conn_params)
    errors = option_errors(connection.cursor(), params, [('lock_timeout', 'lock_timeout'),
                                                         ('index_lock_timeout', 'lock_timeout'),
                                                         ('statement_timeout', 'statement_timeout')])
    errors += [e for e in (seconds_option_error(name, params[name]) for name in ('build_wait_timeout', 'build_wait_warn')) if e]
    if errors:
        connection.close()
        module.fail_json(msg='Invalid options; nothing was changed:\n- %s' % '\n- '.join(errors),
                         changed=False, queries=[], lock_retries_used=0)
    if params['constraints']:
        run_plan(module, connection, conn_params)

    spec = dict(name=params['name'], schema=params['schema'], table=params['table'], columns=params['columns'])
    result = dict(changed=False, queries=[], constraint={}, lock_retries_used=0)
    try:
        entry, queries, diff = bring(module, new_runner(module, connection, conn_params), spec, params['state'])
    except ConstraintFailed as error:
        connection.close()
        entry = dict((k, v) for k, v in error.entry.items()
                     if k not in ('lock_timeout', 'index_lock_timeout', 'statement_timeout'))
        result.update(constraint=entry, queries=error.queries, changed=error.changed,
                      lock_retries_used=entry.get('retries') or 0)
        module.fail_json(msg=str(error), **result)
    connection.close()
    entry = dict((k, v) for k, v in entry.items() if k not in ('lock_timeout', 'index_lock_timeout', 'statement_timeout'))
    result.update(constraint=entry, queries=queries, lock_retries_used=entry['retries'],
                  summary=constraint_summary([entry], module.check_mode))
    # In check mode: whether a real run would change something. Otherwise set from what really ran.
    result['changed'] = entry['action'] != ACTION_UNCHANGED if module.check_mode else bool(queries)
    if module._diff:
        result['diff'] = dict(before=diff[0], after=diff[1])
    module.exit_json(**result)


if __name__ == '__main__':
    main()
