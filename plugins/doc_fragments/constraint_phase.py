# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# The options of the modules that run a constraint phase (module_utils/kinds/constraint_phase.phase_options), besides the
# plan's constraints (plan_constraints) and the connection (community.postgresql.postgres and connection).

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    DOCUMENTATION = r'''
options:
  schema:
    description: Schema of the table (with O(constraints), of the constraints that name none).
    type: str
    default: public
  audit_schema:
    description: With O(constraints), schema of the audit table of duplicate renames (unique constraints).
    type: str
    default: pgzd_audit
  audit_table:
    description: With O(constraints), the audit table of duplicate renames (unique constraints).
    type: str
    default: duplicate_resolution
  run_id:
    description: The run id the ledger and the audit table record with what this task does (each rename, each object).
    type: str
    default: manual
  index_tables:
    description:
      - With O(constraints), the plan's tables (C(name), C(schema), C(indexes)) whose indexes the run's index phase
        brings in place before this phase (the preflight's C(work.index_tables)). Their full unique indexes are keys a
        foreign key may reference, in check mode too, where they are not built.
    type: list
    elements: dict
    default: []
  restore_duplicates:
    description: With O(constraints) and O(state=absent), put back the values a duplicate rename changed.
    type: bool
    default: true
  state:
    description: C(present) adds the constraints, C(absent) drops them (a NOT NULL is dropped from its column).
    type: str
    choices: [present, absent]
    default: present
  lock_timeout:
    description:
      - lock_timeout of each catalog step that readers or writers would queue behind. These are ADD CONSTRAINT (a
        unique index attached, or a foreign key or check added NOT VALID), SET NOT NULL, DROP CONSTRAINT and DROP NOT
        NULL. Sessions that queue behind such a request wait at most this long.
      - From 1ms to 1min. C(0) (wait forever) and longer waits are refused before anything runs, as every query of
        the table would wait behind the step that long; a short wait is retried (O(lock_retries)).
      - A foreign key's C(ADD) and C(DROP) lock two tables, the referenced one first; for them it is capped at half of
        the server's C(deadlock_timeout), so that the step, never the application, gives up first.
    type: str
    default: 2s
  index_lock_timeout:
    description:
      - lock_timeout of the session's other statements. These are C(VALIDATE CONSTRAINT) waiting for its lock (SHARE
        UPDATE EXCLUSIVE, which no reader or writer takes, but autovacuum and other DDL do), the catalog reads, and
        the drop of a failed build's INVALID leftover. For a foreign key's C(VALIDATE) (the referenced table locked
        first) it is capped at half of the server's C(deadlock_timeout).
      - Concurrent index builds and drops are not bounded by it. They block no reads or writes while they wait (for
        writers, for older transactions), and a retry would build the index all over again; they wait as long as it
        takes, watched (O(build_wait_warn), O(build_wait_timeout)).
      - As no reader or writer queues behind what it bounds, C(0) (no limit) is allowed.
    type: str
    default: 5s
  statement_timeout:
    description: statement_timeout of the session. C(0) disables it, which a long build or validation needs.
    type: str
    default: '0'
  sample_ids:
    description:
      - How many row ids to list per duplicate key or violation when a step fails on the data (0 or more; it limits
        the list, never what is counted).
    type: int
    default: 5
  max_groups:
    description: How many duplicate or missing keys to list when a step fails on the data (0 or more).
    type: int
    default: 20
  owner_pid:
    description:
      - The run's ansible-playbook, when the module runs on the control node, so that the phase does not outlive a run
        that was stopped (killed, cancelled in AWX). Before every statement (each step of a constraint, each duplicate
        rename or restore) the process is checked; once it is gone, no further statement starts (the one in flight
        ends on its own) and the phase fails saying why. 0 watches nothing.
    type: int
    default: 0
'''
