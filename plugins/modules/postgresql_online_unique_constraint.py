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
version_added: '0.3.0'
deprecated:
  removed_in: 1.0.0
  why: >-
    M(pg_zero_downtime.migrations.postgresql_online_constraint) runs the same constraint phase for unique constraints,
    and for foreign keys, checks and NOT NULL too.
  alternative: >-
    Use M(pg_zero_downtime.migrations.postgresql_online_constraint), with a one-entry O(constraints) list for one
    constraint.
options:
  name:
    description:
      - Constraint name, also the name of its index (at most 63 bytes). Give O(name), O(table) and O(columns), or
        O(constraints).
    type: str
  table:
    description: Table name, exactly as in the catalog (case-sensitive).
    type: str
  columns:
    description: The constraint's columns, in order.
    type: list
    elements: str
notes:
  - The migration user must own the table.
  - Run the duplicate check (M(pg_zero_downtime.migrations.postgresql_unique_constraint_info)) first. It lists every duplicate before any DDL
    starts. This module only catches duplicates written during its own build.
extends_documentation_fragment:
  - pg_zero_downtime.migrations.common.ddl_diff
  - pg_zero_downtime.migrations.common
  - pg_zero_downtime.migrations.ledger
  - pg_zero_downtime.migrations.constraint_phase
  - pg_zero_downtime.migrations.plan_constraints
  - pg_zero_downtime.migrations.plan_trust
  - pg_zero_downtime.migrations.replication_lag
  - pg_zero_downtime.migrations.lock_retries
  - pg_zero_downtime.migrations.build_waits
  - pg_zero_downtime.migrations.migration_lock
  - pg_zero_downtime.migrations.connection
  - community.postgresql.postgres
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
cleanup_queries:
  description:
    - After a failure, the statements of RV(queries) that only undid what a failed index build left (the drop of its
      INVALID index), so nothing of them is kept.
  returned: when a constraint failed
  type: list
  elements: str
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
          (an existing valid unique index attached), C(unchanged) or C(dropped); C(failed) for the constraint that
          failed (with O(constraints), the one that stopped the phase). Its C(planned_action) says what it was to be,
          and C(statements_run) what of it ran before the failure and is kept (its duplicate renames, its unique
          index).
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

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.connection import (
    conn_params_of, connection_argument_spec,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.constraint_phase import (
    TIMEOUT_KEYS, ConstraintFailed, bring, checked_connection, new_runner, phase_options, run_constraints,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.index_actions import ACTION_UNCHANGED
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.outcomes import FAILED, mark, statements_diff
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.unique_constraint import constraint_summary


def main():
    argument_spec = connection_argument_spec(**phase_options())
    argument_spec.update(
        name=dict(type='str'),
        table=dict(type='str'),
        columns=dict(type='list', elements='str'),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           mutually_exclusive=[('constraints', 'name')],
                           required_together=[('name', 'table', 'columns')])
    params = module.params
    if not params['constraints'] and not params['name']:
        module.fail_json(msg='give name, table and columns (one constraint), or constraints (a plan\'s)',
                         changed=False, queries=[], lock_retries_used=0)
    conn_params = conn_params_of(module)
    connection = checked_connection(module, conn_params)
    if params['constraints']:
        run_constraints(module, connection, conn_params)

    spec = dict(name=params['name'], schema=params['schema'], table=params['table'], columns=params['columns'])
    result = dict(changed=False, queries=[], constraint={}, lock_retries_used=0)
    try:
        entry, queries, diff = bring(module, new_runner(module, connection, conn_params), spec, params['state'])
    except ConstraintFailed as error:
        connection.close()
        # Not what was planned for it: what happened to it.
        entry = mark(dict((k, v) for k, v in error.entry.items() if k not in TIMEOUT_KEYS), FAILED)
        result.update(constraint=entry, queries=error.queries, cleanup_queries=error.cleanup, changed=error.changed,
                      lock_retries_used=entry.get('retries') or 0)
        module.fail_json(msg=str(error), **result)
    connection.close()
    entry = dict((k, v) for k, v in entry.items() if k not in TIMEOUT_KEYS)
    result.update(constraint=entry, queries=queries, lock_retries_used=entry['retries'],
                  summary=constraint_summary([entry], module.check_mode))
    # In check mode: whether a real run would change something. Otherwise set from what really ran.
    result['changed'] = entry['action'] != ACTION_UNCHANGED if module.check_mode else bool(queries)
    if module._diff:
        result['diff'] = statements_diff(diff[0], diff[1], queries, module.check_mode)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
