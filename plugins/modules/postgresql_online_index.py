#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: postgresql_online_index
short_description: Build or drop the planned indexes CONCURRENTLY, idempotently, on a live database
description:
  - Brings the indexes of one table (O(table), O(indexes)), or of every table of a plan (O(tables)), to the
    planned state without blocking writes to them. Every
    statement is C(CREATE INDEX CONCURRENTLY IF NOT EXISTS) or C(DROP INDEX CONCURRENTLY IF EXISTS),
    run in autocommit (never inside a transaction block) with every identifier quoted, so quoted
    camelCase names such as C("teacherId") just work.
  - Before any DDL it validates the whole input against the catalog (table and columns exist, names fit
    in 63 bytes, no name twice, the access method exists) and builds every planned definition on an empty
    temporary copy of the table in a rolled-back transaction, so that anything PostgreSQL would refuse
    (a multicolumn hash index, a missing operator class, an invalid predicate) fails the task with every
    problem listed, changing nothing.
  - An index of the planned name that is INVALID (left by an interrupted or failed concurrent build) is
    dropped concurrently and rebuilt, and the result says C(rebuilt). An index of the planned name with a
    different definition fails the task with both definitions shown; nothing is skipped silently. With
    C(on_mismatch=replace) on that index, the planned definition is built beside it under a temporary name
    concurrently, swapped in by two renames in one short transaction under O(lock_timeout), and the old index is
    dropped concurrently (C(replaced)); the new index records the old definition in its comment, so that
    O(state=absent) puts the old index back the same way (C(restored)).
  - On a partitioned table (PostgreSQL refuses C(CREATE INDEX CONCURRENTLY) on one), the index is created C(ON ONLY)
    the table (INVALID, catalog only, under O(lock_timeout)), built concurrently on each partition under a name
    derived from the planned name and the partition, and each partition's index attached (C(ALTER INDEX ... ATTACH
    PARTITION), under O(lock_timeout)); a sub-partitioned partition is worked on the same way. Attaching the last one
    makes the index valid. A rerun finishes a half-built one (C(resumed)). A unique index must include every
    partition key column. O(state=absent) drops it with C(DROP INDEX) under O(lock_timeout) (PostgreSQL cannot drop
    a partitioned index concurrently), which takes an ACCESS EXCLUSIVE lock on the table and every partition for an
    instant. C(ATTACH PARTITION) and that C(DROP INDEX) lock two tables or more, so each runs in a transaction that
    takes the partitioned table first (C(LOCK TABLE)), under O(lock_timeout) capped at half of the server's
    C(deadlock_timeout), so it never deadlocks with the application.
  - A concurrent build or drop is never cancelled or retried for waiting; its waits (for its table lock, for
    writers, for older snapshots) block no application query, and a retry would repeat the whole build. A
    second connection watches them; the task warns after O(build_wait_warn) seconds and, with
    O(build_wait_timeout), ends the build cleanly after that long, dropping its INVALID leftover and naming the
    sessions it waited for. Other lock waits are bounded by O(lock_timeout) and retried O(lock_retries) times
    with exponential backoff and jitter.
  - The build itself has no statement timeout (O(statement_timeout), default C(0)).
  - In check mode the module reads the catalog only and returns the exact statements it would run.
version_added: '0.2.0'
options:
  schema:
    description:
      - Schema of the table and its indexes.
    type: str
    default: public
  table:
    description:
      - The table whose indexes are managed, exactly as named in the catalog (case-sensitive, unquoted).
      - Give O(table) with O(indexes), or O(tables).
    type: str
  indexes:
    description:
      - The indexes of O(table), processed in the order given.
    type: list
    elements: dict
    suboptions:
      name:
        description: Index name, at most 63 bytes, unique in the schema.
        type: str
        required: true
      columns:
        description: Key columns, in order. Required when O(state=present).
        type: list
        elements: str
      unique:
        description: Build a unique index.
        type: bool
        default: false
      method:
        description: Index access method (C(btree), C(hash), C(gin), C(gist), C(brin), ...).
        type: str
        default: btree
      where:
        description:
          - Predicate of a partial index, as SQL. It is plan data written by the operator and is spliced
            into the statement as written, after checking that it is one expression (no semicolon, no
            unbalanced parenthesis, no C(--) comment) and that PostgreSQL accepts it on the table.
        type: str
      include:
        description: Non-key columns stored in the index (C(INCLUDE)).
        type: list
        elements: str
        default: []
      on_mismatch:
        description:
          - What to do with a valid index of this name on the table that has another definition. V(fail) refuses
            the run, showing both definitions. V(replace) builds the planned one beside it and swaps it in (see the
            description); its rollback needs O(indexes[].columns) too.
        type: str
        choices: [fail, replace]
        default: fail
  parallelism:
    description:
      - With O(tables), how many tables are worked on at a time, each on a connection of its own. Table I(i)
        starts once table I(i - parallelism) has ended; after a failure, the tables queued behind it do not
        start. Each table's indexes stay sequential; builds on different tables do not wait for each other on
        PostgreSQL 14+.
      - Each table worked on holds two connections (the build and its watch), and the run two more (the migration
        lock's holder and the progress follower). That must be at most half of the connections the server has free
        (C(max_connections) less the reserved ones and the client sessions connected now), or the task fails before
        anything runs, with the numbers.
    type: int
    default: 1
  state:
    description:
      - V(present) builds missing indexes and rebuilds INVALID ones; V(absent) drops the named indexes, and puts
        back the index an C(on_mismatch=replace) replaced.
      - With O(tables) and V(absent), the tables, and each one's indexes, are worked on last to first (a
        rollback undoes the plan in reverse).
    type: str
    choices: [present, absent]
    default: present
  lock_timeout:
    description:
      - PostgreSQL C(lock_timeout) for the session's other statements (catalog reads, the drop of a failed
        build's INVALID leftover, and the brief catalog-only steps that take a lock the application may queue
        behind, each retried O(lock_retries) times - C(CREATE INDEX ... ON ONLY), C(ATTACH PARTITION), the rename swap
        of a replacement, the C(DROP INDEX) of a partitioned index). A PostgreSQL interval such as C(5s) or C(500ms).
      - From 1ms to 1min. C(0) (wait forever) and longer waits are refused before anything runs, as the application
        would queue behind those steps that long; a short wait is retried (O(lock_retries)).
      - It does not bound the C(CREATE INDEX CONCURRENTLY) and C(DROP INDEX CONCURRENTLY) statements. Their waits
        (for the table lock, for writers, for older snapshots) block no application query, and a retry would
        scan and sort the table all over again; they wait as long as it takes, watched (O(build_wait_warn),
        O(build_wait_timeout)).
    type: str
    default: 5s
  statement_timeout:
    description:
      - PostgreSQL C(statement_timeout) for the session. C(0), the default, lets a long build finish
        whatever the server or role default is.
    type: str
    default: '0'
  session_role:
    description:
      - Switch to this role after connecting; the DDL runs with its privileges.
  owner_pid:
    description:
      - The run's ansible-playbook, when the module runs on the control node, so that builds do not outlive a run
        that was stopped (cancelled in AWX, killed). Once this process is gone, no further statement starts (the
        one in flight ends on its own). 0 watches nothing.
    type: int
    default: 0
  run_id:
    description: The run id the ledger records with what this task does (plan name and start time, in the playbooks).
    type: str
    default: manual
seealso:
  - module: community.postgresql.postgresql_idx
  - name: Partitioned indexes
    description: PostgreSQL documentation of CREATE INDEX ... ON ONLY and ALTER INDEX ... ATTACH PARTITION.
    link: https://www.postgresql.org/docs/current/ddl-partitioning.html#DDL-PARTITIONING-DECLARATIVE-MAINTENANCE
  - name: Building indexes concurrently
    description: PostgreSQL documentation of CREATE INDEX CONCURRENTLY.
    link: https://www.postgresql.org/docs/current/sql-createindex.html#SQL-CREATEINDEX-CONCURRENTLY
notes:
  - Needs psycopg2 (or psycopg 3.1+) on the host that runs the module.
  - A concurrent build waits for every transaction older than it. A long report query or a C(pg_dump) makes it
    wait that long, blocking nobody; O(build_wait_timeout) bounds such waits when a run must end by a deadline.
extends_documentation_fragment:
  - pg_zero_downtime.migrations.common.ddl_diff
  - pg_zero_downtime.migrations.common
  - pg_zero_downtime.migrations.ledger
  - pg_zero_downtime.migrations.plan_tables
  - pg_zero_downtime.migrations.plan_trust
  - pg_zero_downtime.migrations.replication_lag
  - pg_zero_downtime.migrations.lock_retries
  - pg_zero_downtime.migrations.build_waits
  - pg_zero_downtime.migrations.migration_lock
  - pg_zero_downtime.migrations.connection
  - community.postgresql.postgres
'''

EXAMPLES = r'''
- name: Ensure the Job table's planned indexes are built online
  pg_zero_downtime.migrations.postgresql_online_index:
    login_host: db.internal
    login_user: migrator
    login_password: "{{ vault_migrator_password }}"
    login_db: app
    table: Job
    indexes:
      - name: Job_teacherId_status_idx
        columns: [teacherId, status]
      - name: Job_open_createdAt_idx
        columns: [createdAt]
        where: '"closedAt" IS NULL'
        include: [teacherId]

- name: Drop them again, newest first
  pg_zero_downtime.migrations.postgresql_online_index:
    login_db: app
    table: Job
    state: absent
    lock_timeout: 2s
    indexes:
      - name: Job_open_createdAt_idx
      - name: Job_teacherId_status_idx

- name: Build the indexes of every table of a plan, two tables at a time, each after a replica lag check
  pg_zero_downtime.migrations.postgresql_online_index:
    login_db: app
    tables: "{{ (lookup('ansible.builtin.file', 'plans/t12.yml') | from_yaml).tables }}"
    parallelism: 2
    replication_lag:
      max_bytes: 67108864
      max_seconds: 30
  async: 86400
  poll: 0
  register: index_run
'''

RETURN = r'''
tables:
  description:
    - With O(tables), the result of each table in plan order (in reverse for O(state=absent)), with the keys
      of a one-table run (C(changed), C(queries), C(indexes), C(lock_retries_used)), plus C(table)
      (C(schema.table)) and, for a table that failed, C(failed) and C(msg). A table queued behind a failure has
      C(not_started) and C(first_failure).
  returned: with O(tables)
  type: list
  elements: dict
queries:
  description:
    - The statements executed, in order. In check mode, the statements that would be executed.
  returned: always
  type: list
  elements: str
  sample: ['CREATE INDEX CONCURRENTLY IF NOT EXISTS "Job_createdAt_idx" ON "public"."Job" USING "btree" ("createdAt")']
cleanup_queries:
  description:
    - After a failure, the statements of RV(queries) that only undid what the failed build left (the drop of its
      INVALID index), so nothing of them is kept.
  returned: when a build failed
  type: list
  elements: str
indexes:
  description: One entry per planned index, in input order.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Index name.
      type: str
      sample: Job_createdAt_idx
    schema:
      description: Schema of the index.
      type: str
      sample: public
    table:
      description: Table of the index.
      type: str
      sample: Job
    action:
      description:
        - V(created), V(rebuilt) (an INVALID index was dropped and built again), V(resumed) (a partitioned index a run
          left half built was finished), V(replaced) (C(on_mismatch=replace) swapped the planned definition in),
          V(restored) (its rollback put the replaced index back), V(unchanged) or V(dropped). In check mode, what
          would be done.
        - V(failed) for the index whose step failed, V(not_started) for the indexes of its table after it that had
          something to do; C(planned_action) says what each was to be.
      type: str
      sample: created
    planned_action:
      description: For V(failed) and V(not_started), what the index was to be (V(created), V(dropped), ...).
      type: str
      sample: created
    statements_run:
      description:
        - For V(failed), the statements of its steps that ran before the failure and are kept (the new index of a
          replacement whose swap failed); empty when nothing of it is left.
      type: list
      elements: str
    seconds:
      description: Wall time of this index's DDL, lock retries included; 0 when nothing ran.
      type: float
      sample: 1.42
    waited_seconds:
      description: Seconds its concurrent statements spent waiting (table lock, writers, older snapshots).
      type: float
      sample: 0.0
    waited_for:
      description: The sessions it waited for last, when it waited.
      type: list
      elements: str
    retries:
      description: Lock-timeout retries this index needed.
      type: int
      sample: 0
    statements:
      description: The statements for this index (run, or to run in check mode).
      type: list
      elements: str
    definition:
      description: C(pg_get_indexdef) of the index after the task; null when it does not exist.
      type: str
      sample: CREATE INDEX "Job_createdAt_idx" ON public."Job" USING btree ("createdAt")
    previous_definition:
      description: For V(replaced) and V(restored), the definition the index of this name had before.
      type: str
      sample: CREATE INDEX "Job_status_idx" ON public."Job" USING btree (status)
    planned_definition:
      description: For V(replaced) and V(restored), the definition it gets.
      type: str
      sample: CREATE INDEX "Job_status_idx" ON "public"."Job" USING "btree" ("status", "teacherId")
    lock_timeout:
      description: The O(lock_timeout) it ran under.
      type: str
      sample: 5s
    statement_timeout:
      description: The O(statement_timeout) it ran under.
      type: str
      sample: '0'
    last_used:
      description:
        - For an index V(dropped), V(replaced) or V(restored) (whose index of that name is dropped), its
          C(pg_stat_user_indexes) read before it changed. C(idx_scan), C(last_idx_scan) (UTC, PostgreSQL 16 and later;
          null below 16 or when never scanned since the statistics were reset), C(last_idx_scan_available), and
          C(note), which says why C(last_idx_scan) is null.
      type: dict
      sample: {idx_scan: 42, last_idx_scan: '2026-12-04T21:02:11Z', last_idx_scan_available: true, note: null}
    transaction_timeout:
      description:
        - On PostgreSQL 17 and later, the C(transaction_timeout) the session set (C(0), none), so that a server, database
          or role default cannot end a long build. Absent below 17, where the setting does not exist.
      type: str
      sample: '0'
lock_retries_used:
  description: Total lock-timeout retries of the task.
  returned: always
  type: int
  sample: 0
seconds:
  description: With O(tables), how long the whole run took.
  returned: with O(tables)
  type: float
parallelism:
  description: With O(tables), how many tables were worked on at a time.
  returned: with O(tables)
  type: int
summary:
  description:
    - One line per index changed (action, name, table, seconds, lock retries, waits); in check mode, what a real run
      would do and the SQL it would run, in order.
  returned: always
  type: list
  elements: str
'''

import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.connection import (
    conn_params_of, connect_or_fail, connection_argument_spec, connection_failure_message, connection_slots, target_of,
    watch_connection_factory,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.index_actions import (
    ACTION_RESTORE, ACTION_UNCHANGED, ACTIONS_REMOVING,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.index_decisions import (
    INDEX_SPEC_OPTIONS,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.plan.plan_schema import module_option
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.index_runs import (
    connection_budget, failure_message, index_summary, ordered_tables, run_pipeline,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.outcomes import (
    FAILED, NOT_STARTED, kept_queries, mark, statements_diff,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.replication import (
    REPLICATION_LAG_OPTIONS, replica_wait_problem,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.online_index import OnlineIndexRunner
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.statements import (
    OnlineIndexError, blocking_lock_timeout_errors, option_errors,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.build_waits import (
    seconds_option_error, warn_about_waits,
)
from ansible_collections.community.postgresql.plugins.module_utils.postgres import connect_to_db


def describe(decision):
    """One line of the diff for an index: its definition, marked when INVALID or absent."""
    existing = decision['existing']
    if existing is None:
        return '-- %s: absent' % decision['spec']['name']
    return '%s%s' % (existing['definition'], '' if existing['valid'] else '  -- INVALID')


def planned(decision):
    if decision['action'] == 'dropped':
        return '-- %s: absent' % decision['spec']['name']
    if decision.get('planned_definition'):
        return decision['planned_definition']
    if decision['action'] in (ACTION_UNCHANGED, ACTION_RESTORE):
        return describe(decision)
    return decision['spec']['display_definition']


def index_entries(decisions):
    """The result's C(indexes) of a table, before anything ran."""
    entries = []
    for decision in decisions:
        spec = decision['spec']
        entries.append(dict(
            name=spec['name'], schema=spec['schema'], table=spec['table'], action=decision['action'],
            seconds=0.0, retries=0, waited_seconds=0.0, waited_for=[], statements=decision['statements'],
            definition=decision['existing']['definition'] if decision['existing'] else None))
        if decision.get('previous_definition'):
            entries[-1].update(previous_definition=decision['previous_definition'],
                               planned_definition=decision['planned_definition'])
        if decision.get('left_alone'):
            entries[-1]['left_alone'] = decision['left_alone']
    return entries


def run_table(module, connection, conn_params, schema, table, specs):
    """Brings one table's indexes to the plan on C(connection); its result, with C(failed) and C(msg) on failure.

    A failure changes nothing after it: what ran before it is in C(queries) and is kept.
    """
    params = module.params
    result = dict(changed=False, queries=[], indexes=[], lock_retries_used=0)
    try:
        runner = OnlineIndexRunner(connection, lock_timeout=params['lock_timeout'],
                                   statement_timeout=params['statement_timeout'],
                                   lock_retries=params['lock_retries'], lock_retry_delay=params['lock_retry_delay'],
                                   log=module.warn, ddl_session=not module.check_mode,
                                   lock_session_pid=params['lock_session_pid'], owner_pid=params['owner_pid'],
                                   build_wait_timeout=params['build_wait_timeout'], trusted=params['trusted'],
                                   plan_name=params['plan_name'], run_id=params['run_id'],
                                   watch_connect=None if module.check_mode else watch_connection_factory(
                                       module, conn_params))
        decisions = runner.plan(schema, table, specs, params['state'])
    except OnlineIndexError as error:
        return dict(result, failed=True, msg='The index plan of %s.%s cannot be applied; nothing was changed on it. '
                                             'Fix the plan (or the database) and rerun:\n%s' % (schema, table, error))
    except Exception as error:  # a driver error: only a lost connection is the table's failure, not a bug
        if not connection.closed:
            raise
        return dict(result, failed=True, msg='%s\nNothing was changed on %s.%s.' % (
            connection_failure_message(error, target_of(conn_params), 'keep the connection to'), schema, table))

    # In check mode: whether a real run would change something. Otherwise set from what really ran.
    result['changed'] = any(d['action'] != ACTION_UNCHANGED for d in decisions)
    result['indexes'] = index_entries(decisions)
    # When the indexes that go were last used, read before anything of them changes.
    going = [entry['name'] for entry in result['indexes'] if entry['action'] in ACTIONS_REMOVING]
    last_used = runner.read_last_use(schema, going) if going else {}
    for entry in result['indexes']:
        entry.update(runner.session.timeout_settings)
        if entry['name'] in last_used:
            entry['last_used'] = last_used[entry['name']]
    if module._diff:
        result['diff'] = dict(before='\n'.join(describe(d) for d in decisions) + '\n',
                              after='\n'.join(planned(d) for d in decisions) + '\n')
    if module.check_mode:
        result['queries'] = [statement for d in decisions for statement in d['statements']]
        return result

    for position, (decision, entry) in enumerate(zip(decisions, result['indexes'])):
        if decision['action'] == ACTION_UNCHANGED:
            continue
        ran = len(runner.executed_queries)
        try:
            entry['seconds'], entry['retries'] = runner.apply(decision)
            after = runner.read_existing_indexes(entry['schema'], [entry['name']]).get(entry['name'])
        except Exception as error:  # OnlineIndexError, or a driver error once the connection is gone
            if not isinstance(error, OnlineIndexError) and not runner.connection_lost():
                raise
            reason = error if isinstance(error, OnlineIndexError) else connection_failure_message(
                error, target_of(conn_params), 'keep the connection to')
            return failed_table(result, runner, position, ran, 'Index "%s" on %s.%s: %s' % (
                entry['name'], entry['schema'], entry['table'], reason))
        result['lock_retries_used'] += entry['retries']
        entry['waited_seconds'], entry['waited_for'] = runner.waits.get(entry['name'], (0.0, []))
        warn_about_waits(module, entry, params['build_wait_warn'])
        entry['definition'] = after['definition'] if after else None

    result['queries'] = runner.executed_queries
    result['changed'] = bool(runner.executed_queries)
    return result


def failed_table(result, runner, position, ran, msg):
    """The result of a table whose index at C(position) failed after C(ran) statements of the table: that index
    C(failed), the ones after it that had something to do C(not_started), each keeping its C(planned_action).

    What ran is in C(queries); C(cleanup_queries) are those that only undid what the failed build left, so the table
    changed only if something else ran and is kept (or a leftover could not be dropped).
    """
    entries = result['indexes']
    mark(entries[position], FAILED)
    entries[position]['statements_run'] = kept_queries(runner.executed_queries[ran:], runner.cleanup_queries)
    for entry in entries[position + 1:]:
        if entry['action'] != ACTION_UNCHANGED:
            mark(entry, NOT_STARTED)
    kept = kept_queries(runner.executed_queries, runner.cleanup_queries)
    return dict(result, failed=True, queries=runner.executed_queries, cleanup_queries=list(runner.cleanup_queries),
                changed=bool(kept or runner.leftovers), lock_retries_used=runner.retries_used, msg=msg)


def with_timeouts(result, params):
    """Each index entry says under which lock and statement timeouts it ran (the report shows them)."""
    for entry in result.get('indexes', []):
        entry.update(lock_timeout=str(params['lock_timeout']), statement_timeout=str(params['statement_timeout']))
    return result


def run_tables(module, conn_params, connection):
    """Every table of O(tables) in one process: each lane of tables on a connection of its own, the first lane on
    C(connection), the one the options were checked on."""
    params = module.params
    entries = ordered_tables(params['tables'], params['schema'], params['state'])
    connections = {0: connection}

    def start_lane(number):
        def run(schema, table, specs):
            if number not in connections:
                opened, error = connect_to_db(module, dict(conn_params), autocommit=True, fail_on_conn=False)
                if opened is None:
                    return dict(failed=True, changed=False, queries=[], indexes=[], lock_retries_used=0,
                                msg='%s\nNothing was changed on %s.%s.' % (connection_failure_message(
                                    error, target_of(conn_params)), schema, table))
                connections[number] = opened
            problem = replica_wait_problem(connections[number], params['replication_lag'], params['state'],
                                           module.check_mode, params['login_user'], module.warn)
            if problem:
                return dict(failed=True, changed=False, queries=[], indexes=[], lock_retries_used=0,
                            msg='Indexes of %s.%s not built, nothing was changed on it: %s' % (schema, table, problem))
            result = run_table(module, connections[number], conn_params, schema, table, specs)
            result['table'] = '%s.%s' % (schema, table)
            return with_timeouts(result, params)
        return run

    started = time.monotonic()
    results = run_pipeline(entries, 1 if module.check_mode else params['parallelism'], None, start_lane=start_lane)
    for opened in connections.values():
        opened.close()
    result = dict(changed=any(r.get('changed') for r in results), tables=results,
                  queries=[q for r in results for q in r.get('queries', [])],
                  indexes=[i for r in results for i in r.get('indexes', [])],
                  lock_retries_used=sum(r.get('lock_retries_used', 0) for r in results),
                  seconds=round(time.monotonic() - started, 2), parallelism=params['parallelism'])
    if module._diff:
        result['diff'] = statements_diff(''.join(r.get('diff', {}).get('before', '') for r in results),
                                         ''.join(r.get('diff', {}).get('after', '') for r in results),
                                         result['queries'], module.check_mode)
    result['summary'] = index_summary(result['indexes'], module.check_mode, params['parallelism'])
    if any(r.get('failed') for r in results):
        module.fail_json(msg=failure_message(results), **result)
    module.exit_json(**result)


def main():
    argument_spec = connection_argument_spec(
        schema=dict(type='str', default='public'),
        table=dict(type='str'),
        indexes=dict(type='list', elements='dict', options=INDEX_SPEC_OPTIONS),
        tables=module_option('tables'),
        parallelism=dict(type='int', default=1),
        replication_lag=dict(type='dict', options=REPLICATION_LAG_OPTIONS),
        state=dict(type='str', default='present', choices=['present', 'absent']),
        lock_timeout=dict(type='str', default='5s'),
        lock_retries=dict(type='int', default=5),
        lock_retry_delay=dict(type='float', default=1.0),
        build_wait_timeout=dict(type='float', default=0),
        build_wait_warn=dict(type='float', default=60),
        statement_timeout=dict(type='str', default='0'),
        lock_session_pid=dict(type='int', default=0),
        owner_pid=dict(type='int', default=0),
        trusted=dict(type='list', elements='str', default=[]),
        plan_name=dict(type='str', default='manual'),
        run_id=dict(type='str', default='manual'),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           mutually_exclusive=[('tables', 'table'), ('tables', 'indexes')],
                           required_one_of=[('tables', 'table')], required_together=[('table', 'indexes')])
    params = module.params
    if params['parallelism'] < 1:
        module.fail_json(msg='parallelism must be a whole number of at least 1, not %s' % params['parallelism'],
                         changed=False, queries=[], indexes=[], lock_retries_used=0)
    conn_params = conn_params_of(module)
    connection = connect_or_fail(module, conn_params)
    errors = option_errors(connection.cursor(), params, [('statement_timeout', 'statement_timeout')])
    errors += blocking_lock_timeout_errors(connection.cursor(), [('lock_timeout', params['lock_timeout'])])
    errors += [e for e in (seconds_option_error(name, params[name]) for name in ('build_wait_timeout', 'build_wait_warn')) if e]
    if params['tables'] is not None and not errors:
        # This session is the first lane's and the lock's holder one of the run's own: neither is counted twice.
        budget = connection_budget(1 if module.check_mode else params['parallelism'], len(params['tables']),
                                   connection_slots(connection.cursor(), [params['lock_session_pid']]))
        if budget['message']:
            errors.append(budget['message'])
    if errors:
        connection.close()
        module.fail_json(msg='Invalid options; nothing was changed:\n- %s' % '\n- '.join(errors),
                         changed=False, queries=[], indexes=[], lock_retries_used=0)
    if params['tables'] is not None:
        run_tables(module, conn_params, connection)

    result = with_timeouts(run_table(module, connection, conn_params, params['schema'], params['table'],
                                     params['indexes']), params)
    connection.close()
    if 'diff' in result:
        result['diff'] = statements_diff(result['diff']['before'], result['diff']['after'], result['queries'],
                                         module.check_mode)
    result['summary'] = index_summary(result['indexes'], module.check_mode)
    if result.get('failed'):
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
