#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: postgresql_migration_preflight
short_description: Prove a whole migration plan applicable in one process, take the migration lock, say what the run does
description:
  - The first step of every run of a plan (migrate.yml, rollback.yml and the phase playbooks), in one module process,
    before any change. In order, it
  - (1) asks whether the server is a primary or a replica. On a replica nothing else happens. With
    O(on_replica=skip) the result says so (RV(replica)) and the play leaves the host out; with V(fail) the task fails.
  - (2) takes the migration lock of the database in its own session, unless O(lock=false). Another run holding it, or
    DDL of an earlier run still running, fails the task at once, naming them. In check mode nothing is taken, and a
    lock held by another run is a warning.
  - (3) proves the whole plan against the live catalog and data, read-only. Every table, column, index, method and
    predicate (as M(pg_zero_downtime.migrations.postgresql_online_index_info) does). Every constraint, and when
    migrating the duplicate keys that would block it (as M(pg_zero_downtime.migrations.postgresql_unique_constraint_info)
    does). The baseline queries, read by PostgreSQL's parser. The Prisma migration record, proven writable (or
    removable) in a transaction that is rolled back. The disk the index builds need. Every statement the run would
    send, migrating or rolling back, against the refusal rules (what PostgreSQL would refuse, docs/constraints.md, "What
    PostgreSQL would refuse"), and every name the plan creates, unique in its schema.
  - (4) decides the work of this run from what is pending and the phases the run's tag selection runs (O(phases)), and
    with O(only_tables). When the run has work, the lock passes to the detached holder of
    M(pg_zero_downtime.migrations.postgresql_migration_lock), which keeps it for the rest of the run (RV(lock)). When it
    has none, the lock goes with the module's session, so a rerun of a finished migration costs this one process.
  - Every problem fails the task listing all of them, and nothing was changed; the lock taken in (2) goes with it.
  - With the action plugin of the same name (the controller side), O(plan_file) loads the plan from a YAML file on the
    controller and checks its format before anything connects. It returns the loaded plan (RV(plan)), the run id
    (RV(run_id)) and the run's ansible-playbook process (RV(owner_pid)) for the phases after it.
version_added: '0.15.0'
options:
  login_db:
    description: Name of the database to connect to; the lock is per database.
  plan_file:
    description:
      - Path of the plan's YAML file on the controller, absolute or relative to the directory ansible-playbook runs in.
        Read by the action plugin, which fills O(plan_name), O(schema), O(tables), O(constraints), O(baseline_queries)
        and O(prisma_migration) from it (the Prisma C(migration.sql) is read too, relative to the plan file).
    type: path
  on_duplicates:
    description:
      - With O(plan_file), sets C(on_duplicates) of every constraint of the plan (C(-e pgzd_on_duplicates=rename)).
    type: str
    choices: [fail, rename]
  plan_name:
    description: The plan's name (it names the run's files).
    type: str
    default: plan
  schema:
    description: Default schema of the plan's tables and constraints.
    type: str
    default: public
  baseline_queries:
    description:
      - The plan's baseline queries (C(name), C(sql), C(params)), read by PostgreSQL's parser as
        M(pg_zero_downtime.migrations.postgresql_query_baseline) reads them; nothing of them runs here.
    type: list
    elements: dict
    default: []
  prisma_migration:
    description:
      - The plan's Prisma migration, whose record in Prisma's history is proven writable (or removable) here.
    type: dict
    suboptions:
      name:
        description: The migration's folder name under C(prisma/migrations).
        type: str
        required: true
      migration_sql:
        description: The content of its C(migration.sql) (the action plugin reads it). Needed to migrate.
        type: str
      file:
        description: Where the C(migration.sql) was read (for messages).
        type: str
      schema:
        description: Schema of Prisma's migrations table; defaults to O(schema).
        type: str
      table:
        description: Name of Prisma's migrations table.
        type: str
        default: _prisma_migrations
      create_table:
        description: The table may be created, as Prisma does, when it does not exist.
        type: bool
        default: false
  prisma_create_table:
    description:
      - Overrides O(prisma_migration.create_table) (C(-e pgzd_prisma_create_table=true)); unset keeps the plan's.
    type: bool
  prisma_deploy:
    description:
      - A prisma/migrations folder whose pending migrations the run deploys (C(-e pgzd_prisma_migrations_dir=...)),
        as the action plugin read it on the controller. The preflight finds the pending migrations by Prisma's rules,
        classifies every statement, proves on the server what the files cannot tell, checks the acknowledgements, and
        proves the online statements on tables no earlier statement reshapes against today's catalog and rows. A
        refused statement stops the run here, before any change.
    type: dict
    suboptions:
      migrations_dir:
        description: The folder, as read.
        type: path
        required: true
      migrations:
        description: Its migrations, each C(name) and C(sql), in folder order.
        type: list
        elements: dict
        default: []
      allow:
        description: Acknowledgements of refused statements, each C(<migration>:<line>:<kind>).
        type: list
        elements: str
        default: []
      schema:
        description: The schema Prisma migrates, where C(_prisma_migrations) is.
        type: str
        default: public
      table:
        description: Prisma's migrations table.
        type: str
        default: _prisma_migrations
      rollback_to:
        description:
          - With O(state=absent), the last migration to keep. The preflight proves the rollback of the migrations after
            it (what cannot be undone, and data a drop would lose, refuse it before any change).
        type: str
  state:
    description: V(present) proves a migration, V(absent) a rollback (no duplicate scan, no disk check).
    type: str
    choices: [present, absent]
    default: present
  phases:
    description:
      - The phases this run runs (the playbooks pass the ones their tag selection runs). Only the work of these
        phases counts for RV(work).
    type: list
    elements: str
    choices: [backup, baseline, indexes, constraints, validate, prisma]
    default: [backup, baseline, indexes, constraints, validate, prisma]
  only_tables:
    description: Limits the index work of this run to these tables of the plan (the whole plan is still proven).
    type: list
    elements: str
  on_replica:
    description: What to do on a replica. V(skip) reports it and leaves it out (RV(replica)), V(fail) fails the task.
    type: str
    choices: [skip, fail]
    default: skip
  lock:
    description: Take the migration lock when the run has work (not in check mode).
    type: bool
    default: true
  run_id:
    description:
      - Id of this run, unique per run. The action plugin makes one of the UTC time and a random suffix when none is
        given; whoever finds the lock taken sees it after the plan's name.
      - It names the run's folder under O(artifacts_dir), so the action plugin refuses anything but 1 to 63 letters,
        digits, C(_), C(.) and C(-), starting with a letter or digit (no C(/), no C(..)).
    type: str
    default: manual
  owner_pid:
    description:
      - A process on the module's host whose end gives the lock back (the run's ansible-playbook, when the module runs
        on the control node). 0 watches nothing.
    type: int
    default: 0
  lock_max_seconds:
    description: Longest time the lock is held, however the run goes.
    type: int
    default: 43200
  disk_check:
    description:
      - Refuse index builds that would not fit on disk (see O(disk_factor), O(disk_budget_bytes)). The need is that of
        this run's builds (the tables of RV(work), so O(only_tables) lowers it).
    type: bool
    default: true
  disk_factor:
    description: Multiplier of the estimated index size (sort and temporary files of the build).
    type: float
    default: 2.0
  disk_budget_bytes:
    description:
      - Bytes the indexes may take. 0 compares with the free space of the data directory when the database runs on
        the module's host (login_host is a loopback address or a socket) and the login may read where it is; else
        the need is only reported.
    type: int
    default: 0
  sample_ids:
    description:
      - Row ids shown per duplicate key or violation (0 or more). It limits the report only; every row that would stop
        a constraint is counted whatever it is.
    type: int
    default: 5
  max_groups:
    description: Duplicate or missing keys listed per constraint (0 or more; the totals count all).
    type: int
    default: 20
  index_parallelism:
    description:
      - How many tables the index phase works on at a time (C(-e pgzd_index_build_parallelism)). Each holds two
        connections (the build and its watch), and the run two more (the lock holder and the progress follower); when
        the run has index work, that must be at most half of the connections the server has free (C(max_connections)
        less the reserved ones and the client sessions connected now), or the preflight fails with the numbers.
    type: int
    default: 1
  index_phase_lock_timeout:
    description:
      - The C(lock_timeout) the index phase will run its brief blocking steps under (C(online_indexes_lock_timeout),
        for C(ON ONLY), C(ATTACH PARTITION), the swap of a replacement, the C(DROP INDEX) of a partitioned index),
        vetted here so that a run is refused before it builds anything. From 1ms to 1min; C(0) (wait forever) and
        longer waits are refused, as the application queues behind those steps.
    type: str
    default: 5s
  constraint_phase_lock_timeout:
    description:
      - The C(lock_timeout) of the constraint phase's catalog steps (C(constraints_lock_timeout), for ADD
        CONSTRAINT, SET NOT NULL, DROP), vetted here like O(index_phase_lock_timeout), from 1ms to 1min.
    type: str
    default: 2s
  artifacts_dir:
    description:
      - The run's artifacts directory on the controller, checked by the action plugin before anything connects (the
        module itself writes nothing). It must be a directory of the run's own. Either it does not exist yet (its
        nearest existing parent must be a writable directory), or it is a writable directory that is empty or holds
        only what pg-zero-downtime writes there (C(backups/), C(runs/) and the audit files
        C(<run id>-<constraint>-resolved.json) and C(-restored.json)). C(/etc), C(/) or a home directory are refused.
    type: path
  audit_schema:
    description: Schema of the audit table of duplicate renames (a rollback restores what it lists).
    type: str
    default: pgzd_audit
  audit_table:
    description: The audit table of duplicate renames.
    type: str
    default: duplicate_resolution
  lock_timeout:
    description:
      - C(lock_timeout) of the session; the catalog reads take no lock that waits, but a predicate check briefly
        read-locks its table.
    type: str
    default: 5s
extends_documentation_fragment:
  - pg_zero_downtime.migrations.common
  - pg_zero_downtime.migrations.plan_tables
  - pg_zero_downtime.migrations.plan_trust
  - pg_zero_downtime.migrations.plan_constraints
  - pg_zero_downtime.migrations.connection
  - community.postgresql.postgres
'''

EXAMPLES = r'''
- name: Prove the plan applicable and take the migration lock
  pg_zero_downtime.migrations.postgresql_migration_preflight:
    plan_file: plans/shop.yml
    run_id: "shop-{{ now(utc=true, fmt='%Y%m%dT%H%M%SZ') }}"
  register: preflight

- name: Stop here when there is nothing to do
  ansible.builtin.meta: end_host
  when: not preflight.work.pending
'''

RETURN = r'''
replica:
  description: The server is a replica and was left out (O(on_replica=skip)); nothing else was done.
  returned: always
  type: bool
message:
  description: Why a replica was left out.
  returned: when RV(replica) is true
  type: str
in_recovery:
  description: What C(pg_is_in_recovery()) said.
  returned: always
  type: bool
plan:
  description: With O(plan_file), the loaded plan with its defaults (without the Prisma migration's text).
  returned: success
  type: dict
run_id:
  description: The run id (O(run_id), or a new one of the UTC time and a random suffix); the lock shows it after the plan's name.
  returned: success
  type: str
owner_pid:
  description: The run's ansible-playbook process, on a local connection; else 0.
  returned: success
  type: int
phases:
  description: The phases this run runs, from O(phases) or the tag selection.
  returned: success
  type: list
  elements: str
replicated:
  description: The primary has replicas or physical replication slots (the phases then watch the replica lag).
  returned: always
  type: bool
tables:
  description: Per table of the plan, what its indexes need (as M(pg_zero_downtime.migrations.postgresql_online_index_info) returns it).
  returned: always
  type: list
  elements: dict
pending_tables:
  description: Names of the tables with index work left.
  returned: always
  type: list
  elements: str
constraints:
  description: Per constraint, what it needs and the duplicate keys found (as M(pg_zero_downtime.migrations.postgresql_unique_constraint_info) returns it).
  returned: always
  type: list
  elements: dict
pending_constraints:
  description: Names of the constraints with work left.
  returned: always
  type: list
  elements: str
restore_pending:
  description: When rolling back, the constraints whose renamed duplicate values are still to be restored.
  returned: always
  type: list
  elements: str
prisma:
  description: What the Prisma migration record needs (C(action) recorded, unchanged, removed or absent), or null without one.
  returned: always
  type: dict
work:
  description:
    - This run's work. C(index_tables) and C(constraints) are the plan entries the index and constraint phases are
      handed, C(prisma) whether the Prisma phase writes or removes the record, C(pending) whether the run has anything
      to do, C(plan_pending) whether the plan has anything left at all.
    - With O(prisma_deploy), C(prisma_deploy) lists the pending migrations the deploy applies, in order.
  returned: always
  type: dict
statements:
  description: The DDL the plan needs now, in order (nothing is executed).
  returned: always
  type: list
  elements: str
estimated_bytes:
  description: Estimated size of the indexes still to build.
  returned: always
  type: int
disk:
  description: The disk verdict (C(needed_bytes), C(available_bytes), C(source), C(message)).
  returned: always
  type: dict
duplicates_report:
  description: Lines on the duplicate keys a constraint with C(on_duplicates=rename) will rename.
  returned: always
  type: list
  elements: str
problems:
  description:
    - When the proof refused the run, each problem it found (of the plan, of the database), one string each; else
      empty. The action plugin writes them to the refused run's C(report.json) (status C(refused)).
  returned: always
  type: list
  elements: str
report_file:
  description: The C(report.json) written for a refused run (status C(refused), its problems), when there is one.
  returned: when the preflight refused the run and O(artifacts_dir) was usable
  type: str
summary:
  description: What the preflight found and what this run does, as lines for the play's output.
  returned: always
  type: list
  elements: str
trusted:
  description:
    - What the plan trusts (O(trusted)), as the server resolved each signature (C(function util.normalize(text))).
  returned: success
  type: list
  elements: str
lock:
  description: The migration lock this run holds (C(session_pid), C(holder_pid)), or C(session_pid) 0 when none.
  returned: always
  type: dict
ansible_facts:
  description: C(pgzd_lock_session_pid), the backend pid of the session holding this run's lock (0 when none).
  returned: always
  type: dict
queries:
  description: The statements that took the lock, if any (the proof itself only reads).
  returned: always
  type: list
  elements: str
'''

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.advisory_locks import MIGRATION_LOCK_KEY
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.server_features import (
    unsupported_message,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.evidence.baseline_runs import prove_queries
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.connection import (
    conn_params_of, connect_or_fail, connection_argument_spec, connection_slots, target_of,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.plan.plan_schema import (
    PRISMA_MIGRATION_SQL, module_option,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.index_runs import connection_budget
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.run.migration_lock import (
    PREFLIGHT_PREFIX, LockRefused, application_name, hand_over, lock_in_session, refusal, take,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.plan.plan_proof import (
    constraint_problems_message, data_message, index_problems_message, name_problems, prove_constraints, prove_indexes,
    left_alone_report, restores_pending,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.prisma.prisma_history import (
    History, HistoryError, run_in_transaction,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.evidence.query_baseline import query_problems
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.prisma.deploy_proof import (
    acknowledged_lines, catalog_problems, provable_now, refusal_lines,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.prisma.deploy_steps import (
    LEDGER_PLAN, PrismaDeploy,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.prisma.deploy_proof import prove_deploy
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.prisma.migration_records import (
    MigrationRecords, resumed_row_ids,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.prisma.pending_migrations import (
    pending_summary,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.prisma.rollback_steps import (
    PrismaRollback, prove_rollback, rollback_refused_message,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.replication import (
    read_server_role, replica_left_out_message,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.run.run_work import (
    PHASES, disk_verdict, run_work, summary_lines,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.statements import (
    blocking_lock_timeout_errors, fetch_dicts,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.online_constraint import ConstraintRunner
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.unique_constraint import PLAN_CONSTRAINT_OPTIONS
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.unique_keys import sample_size_errors

LOCAL_HOSTS = ('', 'localhost', '127.0.0.1', '::1')
KNOBS_REFUSED = 'Invalid options; nothing was changed:\n- %s'
# What a failed preflight returns besides its message.
FAILURE_KEYS = ('changed', 'queries', 'lock', 'pending_tables', 'pending_constraints', 'disk', 'duplicates_report',
                'problems')


def free_bytes(login_host, data_directory):
    """Free bytes of the data directory, when the database runs on this host and the path can be read; else None."""
    if not data_directory or not ((login_host or '') in LOCAL_HOSTS or (login_host or '').startswith('/')):
        return None
    try:
        stat = os.statvfs(data_directory)
    except OSError:
        return None
    return stat.f_bavail * stat.f_frsize


def failure_fields(result):
    """What a failed preflight returns besides its message: the operator reads the message, not pages of the proof."""
    return dict((key, result[key]) for key in FAILURE_KEYS)


def work_bytes(proven_tables, work_tables, default_schema):
    """Estimated bytes of the indexes this run builds: those of the tables the index phase is handed."""
    wanted = set(((t.get('schema') or default_schema), t['name']) for t in work_tables)
    return sum(index['estimated_bytes'] for table in proven_tables if (table['schema'], table['name']) in wanted
               for index in table['indexes'])


def prove_prisma(connection, params, state, module):
    """What the Prisma record needs, proven in a transaction that is rolled back; (action, problem)."""
    prisma = params['prisma_migration']
    history_params = dict(migration_name=prisma['name'], migration_sql=prisma.get('migration_sql'), state=state,
                          schema=prisma.get('schema') or params['schema'], table=prisma.get('table'),
                          create_table=prisma.get('create_table') if params['prisma_create_table'] is None
                          else params['prisma_create_table'], run_id=params['run_id'], lock_timeout='2s',
                          lock_retries=0, lock_retry_delay=1.0)
    if state == 'present' and not (history_params['migration_sql'] or '').strip():
        return None, 'Prisma migration %s: its migration.sql is empty or was not read' % prisma['name']
    try:
        outcome = run_in_transaction(History(connection, history_params), module.warn, rollback=True)
    except HistoryError as error:
        return None, 'Prisma migration %s cannot be %s: %s' % (
            prisma['name'], 'recorded' if state == 'present' else 'removed', error)
    return outcome['action'], None


def argument_spec():
    """The module's options: the connection's (community.postgresql) and the plan's."""
    return connection_argument_spec(
        plan_file=dict(type='path'),
        on_duplicates=dict(type='str', choices=['fail', 'rename']),
        plan_name=dict(type='str', default='plan'),
        schema=dict(type='str', default='public'),
        tables=module_option('tables'),
        constraints=dict(type='list', elements='dict', default=[], options=PLAN_CONSTRAINT_OPTIONS),
        baseline_queries=dict(type='list', elements='dict', default=[]),
        trusted=dict(type='list', elements='str', default=[]),
        prisma_migration=module_option('prisma_migration', extra=[PRISMA_MIGRATION_SQL]),
        prisma_create_table=dict(type='bool'),
        prisma_deploy=dict(type='dict', options=dict(
            migrations_dir=dict(type='path', required=True), migrations=dict(type='list', elements='dict', default=[]),
            allow=dict(type='list', elements='str', default=[]), schema=dict(type='str', default='public'),
            table=dict(type='str', default='_prisma_migrations'), rollback_to=dict(type='str'))),
        state=dict(type='str', default='present', choices=['present', 'absent']),
        phases=dict(type='list', elements='str', choices=list(PHASES), default=list(PHASES)),
        only_tables=dict(type='list', elements='str'),
        on_replica=dict(type='str', default='skip', choices=['skip', 'fail']),
        lock=dict(type='bool', default=True),
        run_id=dict(type='str', default='manual'),
        owner_pid=dict(type='int', default=0),
        lock_max_seconds=dict(type='int', default=43200),
        disk_check=dict(type='bool', default=True),
        disk_factor=dict(type='float', default=2.0),
        disk_budget_bytes=dict(type='int', default=0),
        sample_ids=dict(type='int', default=5),
        max_groups=dict(type='int', default=20),
        index_parallelism=dict(type='int', default=1),
        index_phase_lock_timeout=dict(type='str', default='5s'),
        constraint_phase_lock_timeout=dict(type='str', default='2s'),
        artifacts_dir=dict(type='path'),
        audit_schema=dict(type='str', default='pgzd_audit'),
        audit_table=dict(type='str', default='duplicate_resolution'),
        lock_timeout=dict(type='str', default='5s'),
    )


def new_result():
    """What the preflight returns, before anything is proven."""
    return dict(changed=False, replica=False, replicated=False, tables=[], pending_tables=[], constraints=[],
                pending_constraints=[], restore_pending=[], prisma=None, statements=[], estimated_bytes=0,
                disk={}, duplicates_report=[], summary=[], lock=dict(session_pid=0), queries=[],
                work=dict(index_tables=[], constraints=[], prisma=False, pending=False, plan_pending=False),
                ansible_facts=dict(pgzd_lock_session_pid=0), problems=[])


def refuse_bad_options(module, params, result):
    """Before any connection: only_tables must name tables of the plan, and the knobs must be in range."""
    unknown = sorted(set(params['only_tables'] or []) - set(t['name'] for t in params['tables']))
    if unknown:
        module.fail_json(msg='pgzd_only_tables names %s, not in plan %s; its tables are %s' % (
            ', '.join(unknown), params['plan_name'], ', '.join(t['name'] for t in params['tables'])), **result)
    knob_errors = sample_size_errors(params)
    if params['index_parallelism'] < 1:
        knob_errors.append('pgzd_index_build_parallelism must be a whole number of at least 1, not %s'
                           % params['index_parallelism'])
    if knob_errors:
        module.fail_json(msg=KNOBS_REFUSED % '\n- '.join(knob_errors), **result)


def refuse_bad_lock_timeouts(module, connection, cursor, params, result):
    """The lock timeouts of the phases' blocking steps, vetted now: a run must not build indexes, then be refused."""
    knob_errors = blocking_lock_timeout_errors(cursor, [
        ('online_indexes_lock_timeout', params['index_phase_lock_timeout']),
        ('constraints_lock_timeout', params['constraint_phase_lock_timeout'])])
    if knob_errors:
        connection.close()
        module.fail_json(msg=KNOBS_REFUSED % '\n- '.join(knob_errors), **result)


def refuse_unsupported_server(module, connection, cursor, result):
    """(0) A server older than the oldest supported major is refused before anything is proven (server_features)."""
    row = fetch_dicts(cursor, "SELECT pg_catalog.current_setting('server_version_num')::int AS num, "
                              "pg_catalog.current_setting('server_version') AS text")[0]
    message = unsupported_message(row['num'], row['text'])
    if message:
        connection.close()
        module.fail_json(msg=message, **failure_fields(result))


def leave_out_replica(module, connection, cursor, conn_params, params, result):
    """(1) A replica gets no lock and no DDL: the plan reaches it by replication. The module ends here on one."""
    server = read_server_role(lambda query: fetch_dicts(cursor, query))
    result['in_recovery'] = server['in_recovery']
    if server['in_recovery']:
        connection.close()
        message = replica_left_out_message(target_of(conn_params), server['standby'])
        if params['on_replica'] == 'fail':
            module.fail_json(msg='%s Remove it from the inventory, or let the run leave it out (on_replica=skip, '
                                 '-e pgzd_on_replica=skip).' % message, **result)
        result.update(replica=True, message=message, summary=[message])
        module.exit_json(**result)
    result['replicated'] = bool(server['replicas'] or server['slots'])


def lock_first(module, connection, cursor, params, result):
    """(2) The lock first, in this session, so that what is proven next still holds when the DDL runs. It passes to
    a holder process only when the run has work (hand_lock_over): a run with nothing to do starts none, and its lock
    goes with this session. Returns whether this session holds it."""
    if not params['lock']:
        return False
    refused = refusal(cursor, params['login_db'])
    if refused and module.check_mode:
        module.warn(refused)
        return False
    if refused:
        connection.close()
        module.fail_json(msg=refused, **result)
    if module.check_mode:
        return False
    if not lock_in_session(cursor):
        refused = refusal(cursor, params['login_db']) or 'Another pg-zero-downtime run took the migration ' \
            'lock of database %s at this very moment: wait for it to finish, then rerun.' % params['login_db']
        connection.close()
        module.fail_json(msg=refused, **result)
    # Whoever finds the lock taken meanwhile is told which run holds it, as by the holder later.
    cursor.execute("SELECT pg_catalog.set_config('application_name', %(name)s, false)",
                   dict(name=application_name(params['run_id'], params['owner_pid'], PREFLIGHT_PREFIX)))
    return True


def prove_folder(runner, params):
    """(2b) A prisma/migrations folder to deploy: which migrations are pending (Prisma's rules), every statement
    classified, proven by the server and acknowledged (deploy_proof). Its online statements on tables no earlier
    statement reshapes become the plan's tables and constraints, so that the kinds' own proofs below read today's
    catalog and rows for them (names, duplicate keys, orphans, NULLs, violating rows). Returns (the folder's proof or
    None, problems: one a refused statement)."""
    deploy = params['prisma_deploy']
    records = MigrationRecords(runner.cursor, deploy['schema'], deploy['table'])
    problem = records.table_problem()
    if problem:
        return None, [problem]
    if params['state'] == 'absent':
        if not deploy.get('rollback_to'):
            return None, ['a rollback of a Prisma migrations folder needs the last migration to keep: '
                          '-e pgzd_prisma_rollback_to=<its folder name>']
        work = PrismaRollback(runner, records, deploy['schema'], params['run_id'], check_mode=True)
        proof = prove_rollback(work, deploy['migrations'], records.rows(), deploy['rollback_to'], deploy['schema'])
        proof['deploy'] = [migration for migration, _forms in proof['planned']]
        proof['problems'] = [rollback_refused_message(deploy['rollback_to'], proof['problems'])] \
            if proof['problems'] else []
        return proof, proof['problems']
    proof = prove_deploy(deploy['migrations'], records.rows(), deploy['allow'], deploy['schema'], trust=runner.trust,
                         cursor=runner.cursor)
    problems = list(proof['problems'])
    problems.extend(catalog_problems(runner.session.query, proof['deploy'], deploy['schema'], PrismaDeploy(
        runner, records, deploy['schema'], params['run_id'], check_mode=True,
        row_ids=resumed_row_ids(records, proof['history'] or {})).recorded))
    problems.extend('\n'.join(refusal_lines(migration['name'], entry)) for migration in proof['deploy']
                    for entry in migration['entries'] if entry['class'] == 'refused' and not entry.get('acknowledged'))
    params['tables'], params['constraints'] = provable_now(proof['deploy'], deploy['schema'])
    return proof, problems


def folder_work(work, folder, phases):
    """The work of a run given a folder: its pending migrations, deployed by the Prisma phase (the index and
    constraint phases get none: the deploy runs every statement in the order written)."""
    pending = [migration['name'] for migration in folder['deploy']] if folder else []
    return dict(work, index_tables=[], constraints=[], prisma=False, prisma_deploy=pending,
                pending=bool(pending) and 'prisma' in phases, plan_pending=bool(pending))


def folder_summary(folder, work, check_mode):
    """What the preflight says of a folder: what is applied and pending, and every acknowledgement, loudly."""
    if 'undo' in folder:
        lines = ['To roll back, last first: %s.' % (', '.join(folder['undo']) or 'nothing (every migration after the '
                                                    'one to keep is already undone)')]
    else:
        lines = pending_summary(folder['history']) + acknowledged_lines(folder['deploy'])
    if work['plan_pending'] and not work['pending']:
        lines.append('Nothing to do in the phases selected: the deploy is the prisma phase (--tags prisma).')
    elif check_mode and work['pending']:
        lines.append('Check mode: nothing is changed; the deploy below reviews every statement as it would run.')
    return lines


def prove_plan(module, connection, runner, params, result):
    """(3) The proof, read-only, composed of the kinds' own proofs (plan_proof): the indexes', the constraints', the
    names they create, and the Prisma record's. Plan SQL is proven by the server's resolution before anything of it
    is evaluated: the baseline queries here, predicates and checks by the kinds as they plan them. Fills the
    result's proof; returns what the verdict needs: problems, blocking, violations, constraint_problems, indexes,
    constraints, restore_pending and prisma_action."""
    state = params['state']
    problems = query_problems(params['baseline_queries']) if state == 'present' else []
    problems.extend(runner.trust.trusted()[1])
    # The ledger records what the run does (and a rollback undoes only what it records): it must be writable.
    ledger_problem = runner.ledger.writable_problem()
    if ledger_problem:
        problems.append(ledger_problem)
    if state == 'present' and not problems:
        problems.extend(prove_queries(connection, params['baseline_queries'], params['trusted']))
    # Rolling back, the constraint phase drops the plan's foreign keys before the index phase drops any index.
    indexes = prove_indexes(runner, params['tables'], params['schema'], state, params['sample_ids'],
                            dropped_first=[c['name'] for c in params['constraints'] if c['type'] == 'foreign_key'])
    problems.extend(indexes.pop('problems'))
    constraints = prove_constraints(runner, params['constraints'], params['schema'], state, params['sample_ids'],
                                    params['max_groups'], params['tables'])
    # Every name the plan creates, its indexes' and its constraints' together, once in its schema.
    problems.extend(line for line in name_problems(runner) if line not in problems)
    proof = dict(problems=problems, constraint_problems=constraints.pop('problems'),
                 blocking=constraints.pop('blocking'), violations=constraints.pop('violations'), indexes=indexes,
                 constraints=constraints, prisma_action=None)
    for advice in constraints.pop('advice'):
        module.warn(advice)
    proof['restore_pending'] = restores_pending(runner.ledger, params['constraints'], params['schema']) \
        if state == 'absent' else []
    if params['prisma_migration']:
        proof['prisma_action'], problem = prove_prisma(connection, params, state, module)
        if problem:
            problems.append(problem)
    result.update(tables=indexes['tables'], pending_tables=indexes['pending_tables'],
                  constraints=constraints['constraints'], pending_constraints=constraints['pending'],
                  restore_pending=proof['restore_pending'], statements=indexes['queries'] + constraints['queries'],
                  estimated_bytes=indexes['estimated_bytes'], duplicates_report=constraints['report'],
                  prisma=dict(action=proof['prisma_action']) if params['prisma_migration'] else None)
    return proof


def verdict(cursor, params, proof, result):
    """(4) Why the run must not go on, or None: every problem at once (the plan's and the database's, indexes and
    constraints alike), then the rows that stop a constraint, the disk its own index builds need, and the
    connections of its index phase."""
    state = params['state']
    messages = [index_problems_message(proof['problems'])] if proof['problems'] else []
    if proof['constraint_problems']:
        messages.append(constraint_problems_message(proof['constraint_problems'], state))
    failure = '\n'.join(messages) or None
    if not failure and (proof['blocking'] or proof['violations']):
        failure = data_message(proof['blocking'], proof['violations'], set(
            c['type'] for c in params['constraints'] if c['name'] in proof['violations']),
            proof['constraints']['report'])
    needed = work_bytes(proof['indexes']['tables'], result['work']['index_tables'], params['schema'])
    if not failure and state == 'present' and params['disk_check'] and needed:
        try:
            data_directory = fetch_dicts(cursor, "SELECT pg_catalog.current_setting('data_directory') AS path")[0]['path']
        except Exception:  # superusers and pg_read_all_settings only: the disk check falls back to a budget
            data_directory = None
        result['disk'] = disk_verdict(needed, params['disk_factor'], params['disk_budget_bytes'],
                                      free_bytes(params['login_host'], data_directory), data_directory)
        if not result['disk']['ok']:
            failure = result['disk']['message']
    if not failure and result['work']['index_tables']:
        # This session ends once the lock's holder (one of the run's own sessions) takes over.
        budget = connection_budget(params['index_parallelism'], len(result['work']['index_tables']),
                                   connection_slots(cursor, []))
        failure = budget['message']
    return failure


def hand_lock_over(module, connection, cursor, conn_params, params, result):
    """Handed over without a gap: this session gives the lock up only once the holder waits for it."""
    try:
        session_pid, holder_pid, dummy_ = take(params, conn_params, params['login_db'], params['run_id'],
                                               params['owner_pid'], params['lock_max_seconds'],
                                               on_waiting=lambda waiting: hand_over(cursor, waiting))
    except LockRefused as error:
        connection.close()
        module.fail_json(msg=str(error), **failure_fields(result))
    result['queries'].append('SELECT pg_catalog.pg_try_advisory_lock(%d, %d)' % MIGRATION_LOCK_KEY)
    result['lock'] = dict(session_pid=session_pid, holder_pid=holder_pid)


def summarize(module, params, plan, proof, runner, result, folder=None):
    """The lines the play prints: what the run will do (of a prisma/migrations C(folder): its pending migrations),
    the duplicates, what it trusts and leaves alone, the disk."""
    if folder is not None:
        result['summary'] = ['Prisma migrations folder %s:' % params['prisma_deploy']['migrations_dir']] + \
            folder_summary(folder, result['work'], module.check_mode)
    else:
        result['summary'] = summary_lines(plan, params['state'], params['phases'], result['work'],
                                          proof['indexes']['pending_tables'], proof['constraints']['pending'],
                                          proof['indexes']['queries'], proof['prisma_action'], module.check_mode)
    result['summary'].extend(result['duplicates_report'])
    result['trusted'] = runner.trust.trusted_lines()
    result['summary'].extend(left_alone_report(result['tables'], result['constraints']))
    if params['state'] == 'present':
        result['summary'].append('Plan SQL proven by the server to reach only the built-ins of pg_catalog%s.' % (
            ' and what the plan trusts: %s' % ', '.join(result['trusted']) if result['trusted'] else
            ' (the plan trusts nothing user-defined)'))
    if result['disk'].get('message') and result['work']['pending']:
        result['summary'].append(result['disk']['message'])
    result['ansible_facts'] = dict(pgzd_lock_session_pid=result['lock']['session_pid'])


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params
    params['tables'] = params['tables'] or []  # a plan of constraints only has no tables
    result = new_result()
    refuse_bad_options(module, params, result)
    conn_params = conn_params_of(module)
    connection = connect_or_fail(module, conn_params)
    cursor = connection.cursor()
    refuse_unsupported_server(module, connection, cursor, result)
    refuse_bad_lock_timeouts(module, connection, cursor, params, result)
    leave_out_replica(module, connection, cursor, conn_params, params, result)
    # A folder's deploy keeps its ledger rows under one plan (deploy_steps.LEDGER_PLAN), whatever names the run.
    runner = ConstraintRunner(connection, lock_timeout=params['lock_timeout'], trusted=params['trusted'],
                              plan_name=LEDGER_PLAN if params['prisma_deploy'] else params['plan_name'],
                              run_id=params['run_id'])
    locked = lock_first(module, connection, cursor, params, result)
    folder, folder_problems = prove_folder(runner, params) if params['prisma_deploy'] else (None, [])
    proof = prove_plan(module, connection, runner, params, result)
    proof['problems'] = folder_problems + proof['problems']
    # This run's work (pure decisions, run/run_work.py); the disk it needs is that of its own index builds.
    plan = dict(name=params['plan_name'], file=params['plan_file'], tables=params['tables'],
                constraints=params['constraints'], baseline_queries=params['baseline_queries'],
                prisma_migration=params['prisma_migration'])
    result['work'] = run_work(plan, params['state'], params['phases'], params['only_tables'],
                              proof['indexes']['pending_tables'], proof['constraints']['pending'],
                              proof['restore_pending'], proof['prisma_action'])
    if params['prisma_deploy']:
        result['work'] = folder_work(result['work'], folder, params['phases'])
    failure = verdict(cursor, params, proof, result)
    if failure:
        connection.close()
        # One string a problem, for report.json of the refused run: the plan's and the database's, or the one reason.
        result['problems'] = proof['problems'] + proof['constraint_problems'] or [failure]
        module.fail_json(msg=failure, **failure_fields(result))
    if locked and result['work']['pending']:
        hand_lock_over(module, connection, cursor, conn_params, params, result)
    connection.close()
    summarize(module, params, plan, proof, runner, result, folder)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
