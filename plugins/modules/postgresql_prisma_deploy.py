#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: postgresql_prisma_deploy
short_description: Deploy the pending migrations of a prisma/migrations folder online, statement by statement
description:
  - Does what C(prisma migrate deploy) does, without blocking the application. The pending migrations of the folder
    O(migrations_dir) (by Prisma's rules, read from C(_prisma_migrations)) are applied in folder order, each
    statement in the order written, and each migration is recorded in C(_prisma_migrations) as Prisma records it. A
    row when it starts, finished when its last statement is done, so C(prisma migrate status) tells the truth at every
    moment.
  - Every statement is parsed by PostgreSQL's parser (pglast) and put in a class. B(online) statements go through the
    tool's kinds. C(CREATE [UNIQUE] INDEX) is built CONCURRENTLY, C(DROP INDEX) runs CONCURRENTLY. C(ADD CONSTRAINT
    UNIQUE / FOREIGN KEY / CHECK) and C(SET NOT NULL) take the constraint kinds' paths. C(ADD PRIMARY KEY) becomes a
    unique index built CONCURRENTLY, then attached.
  - B(catalog) statements (C(CREATE TABLE), C(CREATE TYPE), C(ALTER TYPE ... ADD VALUE), C(ADD COLUMN) without a
    volatile default, defaults, C(DROP NOT NULL), C(DROP CONSTRAINT), renames of indexes and constraints, anything on a
    table created earlier in the same migration) run as written. Each runs in a transaction under the short
    O(lock_timeout), retried with backoff, with its ledger row, so it is done exactly once.
  - B(refused) statements (table rewrites, renames of columns or tables, drops of columns, tables or types, data
    changes, anything unknown) stop the deploy before any change, naming the line, the lock, why, and the safe way.
    An acknowledgement in O(allow) runs one as written.
  - A run stopped in the middle of a migration (a failure, C(kill -9)) leaves its row unfinished. The next run
    resumes it where it stopped, as every kind reads the catalog before it acts.
  - Check mode runs nothing and returns the review of every statement, its class, lock and timeouts, and the planned
    SQL.
version_added: '0.19.0'
notes:
  - Run it after M(pg_zero_downtime.migrations.postgresql_migration_preflight), which proves the same and reads the
    rows that would break a planned constraint, before any change; C(playbooks/migrate.yml) does both with
    C(-e pgzd_prisma_migrations_dir=<dir>). docs/prisma.md has the walkthrough and the table of statement classes.
  - The controller reads O(migrations_dir) (the action plugin); the module gets the migrations it holds.
  - The ledger keeps every Prisma deploy's rows under the plan V(prisma), however the deploy is run, so that a rerun,
    a resume and a rollback find them.
extends_documentation_fragment:
  - pg_zero_downtime.migrations.common
  - pg_zero_downtime.migrations.plan_trust
  - pg_zero_downtime.migrations.lock_retries
  - pg_zero_downtime.migrations.build_waits
  - pg_zero_downtime.migrations.migration_lock
  - pg_zero_downtime.migrations.connection
  - community.postgresql.postgres
options:
  migrations_dir:
    description:
      - The prisma/migrations folder on the controller, with C(migration_lock.toml) (provider C(postgresql)) and one
        folder per migration holding C(migration.sql). Relative to the directory ansible-playbook runs in.
    type: path
    required: true
  migrations:
    description:
      - The migrations of O(migrations_dir), each C(name) and C(sql), in folder order. The action plugin fills it from
        O(migrations_dir) on the controller; not set by hand.
    type: list
    elements: dict
    default: []
  allow:
    description:
      - Acknowledgements of refused statements, each C(<migration folder>:<line>:<kind>) as the refusal prints it. An
        acknowledged statement runs as written, under the short O(lock_timeout), and is shown loudly. One that
        matches no refused statement of a pending migration is an error.
    type: list
    elements: str
    default: []
  state:
    description:
      - V(present) deploys the pending migrations. V(absent) rolls back the migrations after O(rollback_to), last
        first. Each statement is undone from what the ledger recorded of its run (an index built is dropped
        CONCURRENTLY, a dropped one built again, constraints and NOT NULL dropped, defaults and names put back, a
        created table or column dropped while it holds no data), then the migration's row is removed from
        C(_prisma_migrations), so Prisma shows it pending again.
      - What cannot be undone without losing data or online (an enum value, a dropped column, a narrowed type, a
        table with rows), and a migration Prisma applied itself, are listed and refused before any change.
    type: str
    choices: [present, absent]
    default: present
  rollback_to:
    description: With O(state=absent), the last migration to keep (its folder name); required then.
    type: str
  schema:
    description: The schema Prisma migrates (unqualified names in the migrations) and where C(_prisma_migrations) is.
    type: str
    default: public
  table:
    description: Prisma's migrations table.
    type: str
    default: _prisma_migrations
  run_id:
    description: The run id recorded in the ledger and in the C(logs) of the rows written.
    type: str
    default: manual
  lock_timeout:
    description:
      - lock_timeout of each statement readers or writers would queue behind (catalog statements, and the brief
        catalog step of the online ones). From 1ms to 1min; a short wait is retried (O(lock_retries)).
    type: str
    default: 2s
  index_lock_timeout:
    description: lock_timeout of the session's other statements (VALIDATE waiting for its lock, catalog reads).
    type: str
    default: 5s
  statement_timeout:
    description: statement_timeout of the session. C(0) disables it, which a long build or validation needs.
    type: str
    default: '0'
  sample_ids:
    description: How many row ids to list per duplicate key or violation when a step fails on the data.
    type: int
    default: 5
  max_groups:
    description: How many duplicate or missing keys to list when a step fails on the data.
    type: int
    default: 20
  owner_pid:
    description: The run's ansible-playbook; once it is gone, no further statement starts. 0 watches nothing.
    type: int
    default: 0
'''

EXAMPLES = r'''
- name: Deploy the pending Prisma migrations online
  pg_zero_downtime.migrations.postgresql_prisma_deploy:
    login_db: app
    migrations_dir: prisma/migrations

- name: The same, with a reviewed DROP COLUMN acknowledged
  pg_zero_downtime.migrations.postgresql_prisma_deploy:
    login_db: app
    migrations_dir: prisma/migrations
    allow: ['20261201000000_drop_notes:2:drop_column']
'''

RETURN = r'''
queries:
  description: The statements executed, in order (in check mode, the statements a real run would execute).
  returned: always
  type: list
  elements: str
migrations:
  description:
    - One entry per pending migration worked on, in order. C(name), C(action) (C(applied), C(resumed), C(planned) in
      check mode, C(failed)), C(seconds) and C(statements).
    - Each statement has C(line), C(kind), C(cls) (online, catalog, refused, skip), C(text), C(action) (C(done),
      C(unchanged), C(skipped), C(planned), C(failed)), C(lock), C(brief_lock), C(lock_as_written), C(lock_on),
      C(acknowledged), C(statements) (what ran for it), C(seconds) and C(retries).
    - A C(DROP INDEX) also has C(last_used), the index's C(pg_stat_user_indexes) read before it was dropped, with
      C(idx_scan), C(last_idx_scan) (UTC, PostgreSQL 16 and later), C(last_idx_scan_available) and C(note) (why
      C(last_idx_scan) is null).
  returned: always
  type: list
  elements: dict
applied:
  description: The migrations recorded as applied before this run.
  returned: always
  type: list
  elements: str
pending:
  description: The migrations pending before this run, in order.
  returned: always
  type: list
  elements: str
review:
  description: The lines of the review, per migration and statement (class, what happened or will, lock, timeouts).
  returned: always
  type: list
  elements: str
planned_sql:
  description: In check mode, the whole deploy as it will run, in order, with its comments (the planned SQL file).
  returned: always
  type: str
summary:
  description: What was pending and what this run did of it.
  returned: always
  type: list
  elements: str
lock_retries_used:
  description: Total lock-timeout retries of the task.
  returned: always
  type: int
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.constraint_phase import (
    checked_connection, new_runner, phase_options,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.prisma.deploy_proof import (
    catalog_problems, prove_deploy,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.prisma.rollback_steps import (
    PrismaRollback, prove_rollback, rollback_refused_message,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.prisma.deploy_review import (
    deploy_summary, planned_sql, review_lines,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.prisma.deploy_steps import (
    LEDGER_PLAN, DeployFailed, PrismaDeploy,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.prisma.migration_records import (
    MigrationRecords, resumed_row_ids,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.connection import (
    conn_params_of, connection_argument_spec,
)


# The options it shares with the constraint phase (the same runner, over the same DDL session), by name.
PHASE_OPTIONS = ('run_id', 'lock_timeout', 'index_lock_timeout', 'statement_timeout', 'lock_retries',
                 'lock_retry_delay', 'build_wait_timeout', 'build_wait_warn', 'sample_ids', 'max_groups',
                 'lock_session_pid', 'owner_pid', 'trusted')


def argument_spec():
    options = dict((name, spec) for name, spec in phase_options().items() if name in PHASE_OPTIONS)
    return connection_argument_spec(
        migrations_dir=dict(type='path', required=True),
        # Filled by the action plugin from migrations_dir: [dict(name, sql)] in folder order.
        migrations=dict(type='list', elements='dict', default=[]),
        allow=dict(type='list', elements='str', default=[]),
        schema=dict(type='str', default='public'),
        table=dict(type='str', default='_prisma_migrations'),
        state=dict(type='str', default='present', choices=['present', 'absent']),
        rollback_to=dict(type='str'),
        **options)


def new_result():
    return dict(changed=False, queries=[], migrations=[], applied=[], pending=[], review=[], planned_sql='',
                summary=[], lock_retries_used=0)


def refused_message(proof):
    """Why nothing is deployed: the folder's or the history's problems, then every refused statement."""
    lines = []
    if proof['problems']:
        lines.append('The Prisma migrations cannot be deployed; nothing was changed:')
        lines.extend('- %s' % problem for problem in proof['problems'])
    if proof['refusals']:
        lines.append('Statements refused before any change (docs/prisma.md, "Statement classes"); nothing was changed:')
        lines.extend(proof['refusals'])
    return '\n'.join(lines)


def deploy(module, work, runner, records, proof, result):
    """Every pending migration, in order; the first failure stops the rest (its migration stays unfinished)."""
    if not module.check_mode:
        runner.ledger.ensure_current()
        if not records.exists():
            runner.session.execute(records.create_statement())
    failure = None
    for migration in proof['deploy']:
        try:
            result['migrations'].append(work.migrate(migration, resumed=migration['name'] == proof['history']['resumed']))
        except DeployFailed as error:
            result['migrations'].append(error.outcome)
            failure = str(error)
            break
    return failure


def deploy_pending(module, runner, records, result):
    """What is pending proven (nothing changes when anything is refused), then deployed. Returns the failure, or
    None."""
    params = module.params
    proof = prove_deploy(params['migrations'], records.rows(), params['allow'], params['schema'], trust=runner.trust,
                         cursor=runner.cursor)
    history = proof['history'] or dict(applied=[], pending=[])
    result.update(applied=history['applied'], pending=history['pending'])
    work = PrismaDeploy(runner, records, params['schema'], params['run_id'], module.check_mode,
                        row_ids=resumed_row_ids(records, history))
    proof['problems'].extend(catalog_problems(runner.session.query, proof['deploy'], params['schema'], work.recorded))
    if proof['problems'] or proof['refusals']:
        return refused_message(proof)
    for line in proof['acknowledged']:
        module.warn(line)
    return deploy(module, work, runner, records, proof, result)


def roll_back(module, runner, records, rows, result):
    """The migrations after O(rollback_to), last first, each undone from the ledger; everything that cannot be undone,
    or whose undo would lose data, is refused before any change. Returns the failure, or None."""
    params = module.params
    work = PrismaRollback(runner, records, params['schema'], params['run_id'], module.check_mode)
    proof = prove_rollback(work, params['migrations'], rows, params['rollback_to'], params['schema'])
    result.update(applied=proof['history']['applied'], pending=proof['undo'])
    if proof['problems']:
        return rollback_refused_message(params['rollback_to'], proof['problems'])
    for migration, forms in proof['planned']:
        try:
            result['migrations'].append(work.undo(migration, forms))
        except DeployFailed as error:
            result['migrations'].append(error.outcome)
            return str(error)
    return None


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True,
                           required_if=[('state', 'absent', ['rollback_to'])])
    params = module.params
    # Every Prisma deploy keeps its ledger rows under one plan, however it is run (a plan file, -e, this module).
    params['plan_name'] = LEDGER_PLAN
    result = new_result()
    conn_params = conn_params_of(module)
    connection = checked_connection(module, conn_params)
    runner = new_runner(module, connection, conn_params)
    records = MigrationRecords(runner.cursor, params['schema'], params['table'])
    problem = records.table_problem() or (None if module.check_mode else records.lock())
    if problem:
        connection.close()
        module.fail_json(msg=problem, **result)
    try:
        if params['state'] == 'absent':
            failure = roll_back(module, runner, records, records.rows(), result)
        else:
            failure = deploy_pending(module, runner, records, result)
    finally:
        if not module.check_mode and not runner.connection_lost():
            records.unlock()
    timeouts = dict(lock_timeout=params['lock_timeout'], lock_retries=params['lock_retries'])
    result['queries'] = [text for migration in result['migrations'] for statement in migration['statements']
                         for text in statement['statements']]
    result['changed'] = any(statement['action'] in ('done', 'planned') for migration in result['migrations']
                            for statement in migration['statements']) or any(
        migration['action'] in ('applied', 'resumed', 'rolled back') for migration in result['migrations'])
    result['review'] = review_lines(result['migrations'], timeouts, module.check_mode)
    result['planned_sql'] = planned_sql(result['migrations'], timeouts) if module.check_mode else ''
    result['summary'] = deploy_summary(dict(applied=result['applied']), result['migrations'], module.check_mode)
    result['lock_retries_used'] = runner.retries_used
    connection.close()
    if failure:
        module.fail_json(msg=failure, **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
