#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: postgresql_online_unique_constraint
short_description: Add or drop a unique constraint without blocking reads or writes
description:
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
    description: Constraint name, also the name of its index (at most 63 bytes).
    type: str
    required: true
  table:
    description: Table name, exactly as in the catalog (case-sensitive).
    type: str
    required: true
  schema:
    description: Schema of the table.
    type: str
    default: public
  columns:
    description: The constraint's columns, in order.
    type: list
    elements: str
    required: true
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
  description: What the task did.
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
          (an existing valid unique index attached), C(unchanged) or C(dropped).
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
lock_retries_used:
  description: Total lock-timeout retries of the task.
  returned: always
  type: int
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.connection import connect_or_fail, watch_connection_factory
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.build_waits import (
    seconds_option_error, warn_about_waits,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.index_plan import (
    ACTION_DROP, ACTION_UNCHANGED,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session import OnlineIndexError, option_errors
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.unique_constraint import (
    CONSTRAINT_OPTIONS, UniqueConstraintRunner, planned_definition,
)
from ansible_collections.community.postgresql.plugins.module_utils.postgres import (
    ensure_required_libs,
    get_conn_params,
    postgres_common_argument_spec,
)


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


def main():
    argument_spec = postgres_common_argument_spec()
    argument_spec.update(CONSTRAINT_OPTIONS)
    argument_spec.update(
        login_db=dict(type='str', aliases=['db']),
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
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
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

    runner = UniqueConstraintRunner(connection, constraint_lock_timeout=params['lock_timeout'],
                                    sample_ids=params['sample_ids'], max_groups=params['max_groups'],
                                    lock_timeout=params['index_lock_timeout'],
                                    statement_timeout=params['statement_timeout'], lock_retries=params['lock_retries'],
                                    lock_retry_delay=params['lock_retry_delay'], log=module.warn,
                                    ddl_session=not module.check_mode, lock_session_pid=params['lock_session_pid'],
                                    build_wait_timeout=params['build_wait_timeout'],
                                    watch_connect=None if module.check_mode else watch_connection_factory(module,
                                                                                                          conn_params))
    entry = dict(name=params['name'], schema=params['schema'], table=params['table'], columns=params['columns'],
                 action=None, seconds=0.0, retries=0, waited_seconds=0.0, waited_for=[], statements=[], definition=None)
    result = dict(changed=False, queries=[], constraint=entry, lock_retries_used=0)
    try:
        decision = runner.plan_constraint(params['name'], params['schema'], params['table'], params['columns'],
                                          params['state'])
    except OnlineIndexError as error:
        connection.close()
        module.fail_json(msg='The unique constraint cannot be %s; nothing was changed. Fix the plan (or the database) '
                             'and rerun:\n%s' % ('added' if params['state'] == 'present' else 'dropped', error), **result)

    entry.update(action=decision['action'], statements=decision['statements'],
                 definition=decision['constraint']['definition'] if decision['constraint'] else None)
    # In check mode: whether a real run would change something. Otherwise set from what really ran.
    result['changed'] = decision['action'] != ACTION_UNCHANGED
    if module._diff:
        result['diff'] = dict(before=describe(decision) + '\n', after=planned(decision) + '\n')
    if module.check_mode or decision['action'] == ACTION_UNCHANGED:
        result['queries'] = decision['statements'] if module.check_mode else []
        connection.close()
        module.exit_json(**result)

    try:
        entry['seconds'], entry['retries'] = runner.apply_constraint(decision)
    except OnlineIndexError as error:
        result['queries'] = runner.executed_queries
        # A build that timed out after creating its catalog entry, whose INVALID index could not be dropped,
        # changed the database too.
        result['changed'] = bool(runner.executed_queries or runner.leftovers)
        result['lock_retries_used'] = entry['retries'] = runner.retries_used
        connection.close()
        module.fail_json(msg='Constraint "%s" on %s.%s: %s' % (entry['name'], entry['schema'], entry['table'], error),
                         **result)
    result['lock_retries_used'] = entry['retries']
    entry['waited_seconds'], entry['waited_for'] = runner.waits.get(entry['name'], (0.0, []))
    warn_about_waits(module, entry, params['build_wait_warn'])
    after = [c for c in runner.read_constraints(params['schema'], params['name'])
             if (c['schema'], c['table']) == (params['schema'], params['table'])]
    entry['definition'] = after[0]['definition'] if after else None
    result['queries'] = runner.executed_queries
    result['changed'] = bool(runner.executed_queries)
    connection.close()
    module.exit_json(**result)


if __name__ == '__main__':
    main()
