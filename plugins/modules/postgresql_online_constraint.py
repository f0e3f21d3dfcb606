#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: postgresql_online_constraint
short_description: Add or drop a plan's constraints (unique, foreign key, check, NOT NULL) without blocking
description:
  - Brings every constraint of a plan (O(constraints)) to the planned state, in one process, in plan order (last to
    first with O(state=absent)). The first failure stops the rest; the result says what was done before it, and kept.
  - C(unique), as M(pg_zero_downtime.migrations.postgresql_online_unique_constraint) does it. C(CREATE UNIQUE INDEX
    CONCURRENTLY) under the constraint's name, then C(ADD CONSTRAINT ... UNIQUE USING INDEX) under the short
    O(lock_timeout). Duplicate keys renamed first where the entry says C(on_duplicates=rename).
  - C(foreign_key). C(ADD CONSTRAINT ... FOREIGN KEY ... NOT VALID) under the short O(lock_timeout) (SHARE ROW
    EXCLUSIVE on the referenced table and on the table, for an instant; no rows are checked). Then C(VALIDATE
    CONSTRAINT), which checks the existing rows holding ROW SHARE on the referenced table and SHARE UPDATE
    EXCLUSIVE on the table, so reads and writes go on. With O(state=absent), C(DROP CONSTRAINT) (ACCESS EXCLUSIVE
    on both tables). With C(index), the index on the key columns is first built concurrently.
  - A C(foreign_key) on a partitioned table, on PostgreSQL 18 and later, is added C(NOT VALID) on the partitioned
    table, then each partition's key is validated in a transaction of its own (step C(validate_partitions), SHARE
    UPDATE EXCLUSIVE on that partition only), then the partitioned table's, which scans nothing more. Before 18
    PostgreSQL cannot add it C(NOT VALID), and the entry is refused, naming the server's version.
  - Each of those three steps locks two tables, so it runs in a transaction of its own that takes the referenced
    table first (C(LOCK TABLE) in the step's mode, the order of an application transaction that writes the parent,
    then the child), under its lock_timeout capped at half of the server's C(deadlock_timeout); the step gives up
    and retries before PostgreSQL could pick the application's transaction as a deadlock victim. The migration user
    needs UPDATE, DELETE or TRUNCATE on the referenced table for that C(LOCK TABLE).
  - C(check). C(ADD CONSTRAINT ... CHECK (...) NOT VALID) under the short O(lock_timeout) (ACCESS EXCLUSIVE for an
    instant), then C(VALIDATE CONSTRAINT) as above.
  - C(not_null). A helper C(CHECK (column IS NOT NULL) NOT VALID) named as the entry, C(VALIDATE CONSTRAINT), then
    C(ALTER COLUMN ... SET NOT NULL), which PostgreSQL 12+ proves from the valid check without a scan (ACCESS
    EXCLUSIVE for an instant), then the helper is dropped. With O(state=absent), C(DROP NOT NULL).
  - Every step that takes a lock readers or writers wait for runs under the short O(lock_timeout), retried up to
    O(lock_retries) times with backoff and jitter. C(VALIDATE) waits for its lock under O(index_lock_timeout), then
    scans under O(statement_timeout) (C(0), none, by default).
  - Idempotent, and a stopped run resumes. The catalog says which steps are left. A C(NOT VALID) constraint of the
    planned definition is validated. A NOT NULL whose helper check is valid only gets C(SET NOT NULL). A constraint
    of that name that differs from the planned one is refused, never dropped.
  - Rows that break a foreign key, a check or a NOT NULL are counted and listed by the preflight
    (M(pg_zero_downtime.migrations.postgresql_migration_preflight)) before any DDL. Rows written after it make
    C(VALIDATE) fail. The task then lists them, and the constraint stays C(NOT VALID), checking new rows.
  - Runs over an autocommit connection. Check mode returns the statements a real run would execute.
version_added: '0.16.0'
notes:
  - The migration user must own the tables (and have REFERENCES on a referenced table).
  - Run the preflight first. It proves the plan against the catalog and lists every row that breaks a planned
    constraint, before any DDL.
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
- name: A relation, a required column and a check, the way a Prisma migration adds them, without blocking
  pg_zero_downtime.migrations.postgresql_online_constraint:
    login_db: app
    constraints:
      - name: Job_teacherId_fkey
        type: foreign_key
        table: Job
        columns: [teacherId]
        references: {table: User, columns: [id]}
        on_delete: RESTRICT
        on_update: CASCADE
        index: Job_teacherId_idx
      - name: Job_title_not_null
        type: not_null
        table: Job
        column: title
      - name: Item_price_check
        type: check
        table: Item
        expression: price >= 0

- name: Roll them back (last to first)
  pg_zero_downtime.migrations.postgresql_online_constraint:
    login_db: app
    state: absent
    constraints:
      - {name: Job_teacherId_fkey, type: foreign_key, table: Job, columns: [teacherId],
         references: {table: User, columns: [id]}, on_delete: RESTRICT, on_update: CASCADE}
'''

RETURN = r'''
queries:
  description: The statements executed, in order (in check mode, the statements a real run would execute).
  returned: always
  type: list
  elements: str
cleanup_queries:
  description:
    - After a failure, the statements of RV(queries) that only undid what a failed index build left (the drop of its
      INVALID index), so nothing of them is kept.
  returned: when a constraint failed
  type: list
  elements: str
  sample:
    - >-
      ALTER TABLE "public"."Job" ADD CONSTRAINT "Job_teacherId_fkey" FOREIGN KEY ("teacherId")
      REFERENCES "public"."User" ("id") ON DELETE RESTRICT ON UPDATE CASCADE NOT VALID
    - ALTER TABLE "public"."Job" VALIDATE CONSTRAINT "Job_teacherId_fkey"
constraints:
  description:
    - One entry per constraint worked on, in the order worked on. C(name), C(type), C(schema), C(table), C(columns),
      C(action), C(seconds), C(retries), C(statements), C(definition) (C(pg_get_constraintdef) after the task, null
      when absent). Foreign keys, checks and NOT NULL add C(steps) (the steps decided), C(locks) (the lock each step takes), C(steps_done), C(planned)
      (the planned definition) and C(advice) (a missing index on a foreign key's columns). Unique ones add what
      M(pg_zero_downtime.migrations.postgresql_online_unique_constraint) returns. On PostgreSQL 17 and later each also
      has C(transaction_timeout) (C(0)), which the session set so that a server or role default cannot end a
      VALIDATE or a build.
    - C(action) is C(created), C(validated) (a NOT VALID leftover validated), C(completed) (NOT NULL finished from a
      valid helper check), C(unchanged), C(dropped), or for a unique constraint C(rebuilt) or C(attached); C(failed)
      for the one that stopped the phase (C(planned_action) says what it was to be, C(statements_run) what of it ran
      before the failure and is kept, such as its index or the constraint added NOT VALID).
  returned: always
  type: list
  elements: dict
constraint:
  description: The last constraint worked on, as in RV(constraints).
  returned: always
  type: dict
seconds:
  description: How long the whole phase took.
  returned: always
  type: float
audit_files:
  description:
    - A JSON copy of the rows each duplicate rename (or restore) changed, as file name to content; empty in check mode.
  returned: always
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
    checked_connection, phase_options, run_constraints,
)


def main():
    module = AnsibleModule(argument_spec=connection_argument_spec(**phase_options()), supports_check_mode=True)
    conn_params = conn_params_of(module)
    run_constraints(module, checked_connection(module, conn_params), conn_params)


if __name__ == '__main__':
    main()
