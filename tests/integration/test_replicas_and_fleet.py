# -*- coding: utf-8 -*-
"""Replicas and fleets (issue 5, point 6), on real clusters with real ansible-playbook runs.

- A primary and a streaming replica (pg_basebackup -R, with a slot) on loopback: DDL runs only on the primary,
  the replica in the inventory is reported and left out, the indexes reach it by replication, valid, and
  validate.yml verifies them there. Before each build the play waits while the replica lags beyond the threshold:
  with replay paused it times out naming the replica and builds nothing, or blocks until replay resumes.
- A fleet of databases run with serial and max_fail_percentage: the good ones complete, the broken one is
  reported; and a batch over max_fail_percentage stops the rest of the fleet before any DDL.

Ports: PGZD_REPLICA_TEST_PORT (primary, the replica on the next port; default 55450); their clusters live in
.local/replica-*-<port> and are deleted after. The fleet's databases are copies of the session's seeded database
(the ``t12_copy`` fixture), in the session's cluster.
"""

import json
import os
import re
import subprocess
import time

import psycopg2
import pytest
import yaml

import helpers

PRIMARY_PORT = int(os.environ.get('PGZD_REPLICA_TEST_PORT', '55450'))
REPLICA_PORT = PRIMARY_PORT + 1
PRIMARY_DIR = os.path.join(helpers.REPO_ROOT, '.local', 'replica-primary-%d' % PRIMARY_PORT)
REPLICA_DIR = os.path.join(helpers.REPO_ROOT, '.local', 'replica-standby-%d' % REPLICA_PORT)
SCALE = '0.02'
REPLICA = 'standby1'
USER = 'pgzd'
SKIPPED_REPLICA = 'replica: DDL runs only on the primary; it is used to verify'

with open(helpers.PLAN_T12_PATH) as _handle:
    PLAN = yaml.safe_load(_handle)
PLANNED = [index['name'] for table in PLAN['tables'] for index in table['indexes']]
JOB_INDEXES = [index['name'] for table in PLAN['tables'] if table['name'] == 'Job' for index in table['indexes']]
CONSTRAINT = PLAN['constraints'][0]['name']


# -- helpers -----------------------------------------------------------------------------------------------------

def connect(port, password, dbname='t12'):
    conn = psycopg2.connect(host='127.0.0.1', port=port, user=USER, password=password, dbname=dbname,
                            application_name='pgzd-pytest')
    conn.autocommit = True
    return conn


def must(run, what):
    assert run.returncode == 0, '%s failed (rc %s):\n%s\n%s' % (what, run.returncode, run.stdout[-6000:], run.stderr[-3000:])
    return run


def write_inventory(path, password, hosts, artifacts):
    """An inventory of local hosts, each a database: hosts is [(name, port, database)], in order."""
    inventory = {'all': {
        'vars': {'ansible_connection': 'local', 'ansible_python_interpreter': '{{ ansible_playbook_python }}',
                 'pg_host': '127.0.0.1', 'pg_user': USER, 'pg_password': password,
                 # One artifacts directory per host: the hosts of one play share the run id.
                 'pgzd_artifacts_dir': str(artifacts) + '/{{ inventory_hostname }}'},
        'hosts': dict((name, {'pg_port': port, 'pg_database': database}) for name, port, database in hosts)}}
    path.write_text(json.dumps(inventory, indent=2))  # JSON is YAML
    return str(path)


def flat(text):
    """The text with every run of whitespace made one space: messages are wrapped and indented in the output."""
    return ' '.join(text.split())


def recap(stdout):
    """{host: {ok: n, changed: n, failed: n, ...}} from the PLAY RECAP."""
    found = {}
    for host, counts in re.findall(r'^(\S+)\s+:\s+(ok=.*)$', stdout.split('PLAY RECAP')[-1], re.M):
        found[host] = dict((k, int(v)) for k, v in re.findall(r'(\w+)=(\d+)', counts))
    return found


def planned_state(conn, names=PLANNED):
    """{index: (valid, ready)} of the planned indexes that exist."""
    rows = helpers.query(conn, """
        SELECT c.relname, i.indisvalid, i.indisready
        FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
        WHERE c.relname = ANY(%s)""", (list(names),))
    return dict((name, (valid, ready)) for name, valid, ready in rows)


def wait_replayed(primary, replica, timeout=60):
    """Wait until the replica has replayed everything the primary has written so far."""
    (lsn,), = helpers.query(primary, 'SELECT pg_catalog.pg_current_wal_lsn()::text')
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if helpers.query(replica, 'SELECT pg_catalog.pg_last_wal_replay_lsn() >= %s::pg_lsn', (lsn,))[0][0]:
            return
        time.sleep(0.5)
    raise AssertionError('the replica did not replay up to %s within %s s' % (lsn, timeout))


def pause_replay_and_write_wal(primary, replica):
    """Make lag appear: the replica stops replaying, the primary writes about 9 MiB of WAL."""
    helpers.query(replica, 'SELECT pg_catalog.pg_wal_replay_pause()')
    helpers.query(primary, 'DROP TABLE IF EXISTS pt_wal')
    helpers.query(primary, 'CREATE TABLE pt_wal AS SELECT g, md5(g::text) AS t FROM generate_series(1, 100000) AS g')


def resume_replay(primary, replica):
    helpers.query(replica, 'SELECT pg_catalog.pg_wal_replay_resume()')
    helpers.query(primary, 'DROP TABLE IF EXISTS pt_wal')
    wait_replayed(primary, replica)


def lag_options(**values):
    options = dict(pgzd_replication_lag_max_bytes=1048576, pgzd_replication_lag_poll_interval=1)
    options.update(values)
    return options


# -- the primary and its replica -----------------------------------------------------------------------------------

def _primary_vars(state):
    return dict(local_cluster_dir=PRIMARY_DIR, pg_port=PRIMARY_PORT, local_cluster_scale=SCALE,
                local_cluster_replication='true', local_cluster_state=state)


def _replica_vars(state):
    return dict(local_cluster_dir=PRIMARY_DIR, pg_port=PRIMARY_PORT, local_replica_dir=REPLICA_DIR,
                local_replica_port=REPLICA_PORT, local_replica_name=REPLICA, local_replica_slot=REPLICA,
                local_replica_state=state)


@pytest.fixture(scope='module')
def pair(tmp_path_factory):
    """A seeded T12 primary with replication allowed, and its streaming replica made by playbooks/local_replica.yml."""
    if os.path.exists(REPLICA_DIR):
        helpers.run_playbook('playbooks/local_replica.yml', _replica_vars('absent'))
    if os.path.exists(PRIMARY_DIR):
        helpers.run_playbook('playbooks/local_cluster.yml', _primary_vars('absent'))
    opened = []
    try:
        must(helpers.run_playbook('playbooks/local_cluster.yml', _primary_vars('started')), 'starting the primary')
        started = must(helpers.run_playbook('playbooks/local_replica.yml', _replica_vars('started')), 'starting the replica')
        with open(os.path.join(PRIMARY_DIR, 'superuser.password')) as handle:
            password = handle.readline().strip()
        primary, replica = connect(PRIMARY_PORT, password), connect(REPLICA_PORT, password)
        opened += [primary, replica]
        directory = tmp_path_factory.mktemp('pair')
        inventory = write_inventory(directory / 'hosts.yml', password,
                                    [('primary', PRIMARY_PORT, 't12'), (REPLICA, REPLICA_PORT, 't12')],
                                    directory / 'artifacts')
        yield dict(primary=primary, replica=replica, password=password, inventory=inventory, started=started)
    finally:
        for conn in opened:
            conn.close()
        removed = helpers.run_playbook('playbooks/local_replica.yml', _replica_vars('absent'))
        removed_primary = helpers.run_playbook('playbooks/local_cluster.yml', _primary_vars('absent'))
        for run in (removed, removed_primary):
            if run.returncode != 0:
                print('WARNING: could not remove a test cluster:\n%s' % run.stdout[-3000:])


def test_the_replica_streams_from_the_primary_and_only_the_replica_is_in_recovery(pair):
    assert helpers.query(pair['primary'], 'SELECT pg_catalog.pg_is_in_recovery()') == [(False,)]
    assert helpers.query(pair['replica'], 'SELECT pg_catalog.pg_is_in_recovery()') == [(True,)]
    # Rerunning the playbook changes nothing.
    again = must(helpers.run_playbook('playbooks/local_replica.yml', _replica_vars('started')), 'rerunning local_replica')
    assert re.search(r'localhost\s+: ok=\d+\s+changed=0 ', again.stdout), again.stdout[-3000:]

    login = dict(login_host='127.0.0.1', login_user=USER, login_password=pair['password'], login_db='t12')
    on_primary = helpers.run_ansible_module('postgresql_replication_info', dict(login, login_port=PRIMARY_PORT))
    assert on_primary['in_recovery'] is False and on_primary['changed'] is False
    (replica,) = on_primary['replicas']
    assert (replica['name'], replica['state'], replica['slot_name'], replica['client_addr']) == \
        (REPLICA, 'streaming', REPLICA, '127.0.0.1')
    assert isinstance(replica['lag_bytes'], int) and replica['lag_bytes'] >= 0
    assert [(s['slot_name'], s['active']) for s in on_primary['slots']] == [(REPLICA, True)]
    assert on_primary['standby'] is None and on_primary['lagging'] == []

    on_replica = helpers.run_ansible_module('postgresql_replication_info', dict(login, login_port=REPLICA_PORT))
    assert on_replica['in_recovery'] is True and on_replica['replicas'] == []
    assert on_replica['standby']['replay_pause_state'] == 'not paused'
    assert all(q.lstrip().upper().startswith('SELECT') for q in on_primary['queries'] + on_replica['queries'])


def test_the_lag_wait_times_out_naming_the_replica_and_nothing_is_built(pair):
    primary, replica = pair['primary'], pair['replica']
    pause_replay_and_write_wal(primary, replica)
    try:
        run = helpers.run_playbook('playbooks/indexes.yml', dict(lag_options(pgzd_replication_lag_timeout=3), pgzd_only_tables='Job'),
                                   options=['-i', pair['inventory']])
    finally:
        resume_replay(primary, replica)
    assert run.returncode != 0, run.stdout[-4000:]
    text = flat(run.stdout)
    assert re.search(r'replica "%s" \(127\.0\.0\.1\): [0-9.]+ MiB of WAL not replayed yet \(threshold 1\.0 MiB\)'
                     % REPLICA, text), run.stdout[-6000:]
    assert 'still lag behind the primary after waiting 3 s (wait_timeout 3 s), so nothing more was started' in text
    counts = recap(run.stdout)
    assert counts['primary']['failed'] == 1
    # The replica was reported in the preflight and left out, which is no failure.
    assert counts[REPLICA]['failed'] == 0 and SKIPPED_REPLICA in run.stdout
    assert planned_state(primary, JOB_INDEXES) == {}


def test_the_lag_wait_blocks_until_the_replica_replays_then_builds_and_the_replica_gets_the_indexes(pair):
    primary, replica = pair['primary'], pair['replica']
    pause_replay_and_write_wal(primary, replica)
    argv = [helpers._tool('ansible-playbook'), 'playbooks/indexes.yml', '-i', pair['inventory'], '-e', 'pgzd_only_tables=Job']
    for name, value in lag_options(pgzd_replication_lag_timeout=180).items():
        argv += ['-e', '%s=%s' % (name, value)]
    process = subprocess.Popen(argv, cwd=helpers.REPO_ROOT, env=helpers.ansible_env(ANSIBLE_STDOUT_CALLBACK='default'),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # The wait polls pg_stat_replication on the primary: once it does, the play is held before the first build.
        deadline = time.monotonic() + 120
        while not helpers.query(primary, """
                SELECT 1 FROM pg_catalog.pg_stat_activity
                WHERE pid <> pg_catalog.pg_backend_pid() AND query LIKE '%%FROM pg_catalog.pg_stat_replication r%%'"""):
            assert process.poll() is None, 'the play ended before it waited:\n%s' % process.communicate()[0][-6000:]
            assert time.monotonic() < deadline, 'the play never started waiting for the replica'
            time.sleep(0.5)
        time.sleep(4)
        assert process.poll() is None, 'the play did not wait:\n%s' % process.communicate()[0][-6000:]
        assert planned_state(primary, JOB_INDEXES) == {}
        resumed = time.monotonic()
        resume_replay(primary, replica)
        stdout, stderr = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        helpers.query(replica, 'SELECT pg_catalog.pg_wal_replay_resume()')
    assert process.returncode == 0, stdout[-6000:] + stderr[-2000:]
    assert re.search(r'Waited [0-9.]+ s for the replica\(s\) "%s" \(127\.0\.0\.1\) to come within the lag thresholds'
                     % REPLICA, flat(stdout + stderr)), stdout[-6000:]
    assert time.monotonic() - resumed < 200
    assert planned_state(primary, JOB_INDEXES) == dict((name, (True, True)) for name in JOB_INDEXES)
    wait_replayed(primary, replica)
    assert planned_state(replica, JOB_INDEXES) == dict((name, (True, True)) for name in JOB_INDEXES)


def test_migrate_runs_ddl_on_the_primary_only_and_the_replica_verifies_the_result(pair):
    primary, replica = pair['primary'], pair['replica']
    run = helpers.run_playbook('playbooks/migrate.yml', {}, options=['-i', pair['inventory']])
    assert run.returncode == 0, run.stdout[-6000:]
    counts = recap(run.stdout)
    assert counts['primary']['failed'] == 0 and counts['primary']['changed'] > 0
    assert counts[REPLICA]['failed'] == 0 and counts[REPLICA]['changed'] == 0
    assert SKIPPED_REPLICA in run.stdout
    # The replica ended in the preflight: no lock, no backup, no DDL task ran for it.
    assert not re.search(r'(ok|changed|failed|fatal): \[%s[\] ]' % REPLICA,
                         run.stdout.split('End the play for this host')[-1]), run.stdout[-6000:]
    assert planned_state(primary) == dict((name, (True, True)) for name in PLANNED)
    assert helpers.unique_constraints(primary) == [('Class', CONSTRAINT)]

    wait_replayed(primary, replica)
    assert planned_state(replica) == dict((name, (True, True)) for name in PLANNED)
    assert helpers.unique_constraints(replica) == [('Class', CONSTRAINT)]
    verified = helpers.run_playbook('playbooks/validate.yml', {}, options=['-i', pair['inventory'], '--limit', REPLICA])
    assert verified.returncode == 0, verified.stdout[-6000:]
    assert 'Every planned index (%d) is valid and ready, and every planned constraint (1) is in place' % len(PLANNED) \
        in flat(verified.stdout)


# -- a fleet of databases --------------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def fleet(tmp_path_factory, pg_cluster, t12_copy):
    """T12 databases fleet_a..fleet_d in one cluster (the session's: copies of its seeded database), and
    fleet_broken, which lacks the plan's table SystemLog."""
    names = ('fleet_a', 'fleet_b', 'fleet_c', 'fleet_d', 'fleet_broken')
    databases = {}
    try:
        for database in names:
            t12_copy(database)
        broken = connect(pg_cluster['port'], pg_cluster['password'], 'fleet_broken')
        helpers.query(broken, 'DROP TABLE "SystemLog"')
        broken.close()
        for database in names:
            databases[database] = connect(pg_cluster['port'], pg_cluster['password'], database)
        yield dict(password=pg_cluster['password'], port=pg_cluster['port'], db=databases,
                   dir=tmp_path_factory.mktemp('fleet'))
    finally:
        for conn in databases.values():
            conn.close()
        for database in names:
            t12_copy.drop(database)


def test_a_fleet_run_with_serial_completes_the_good_databases_and_reports_the_broken_one(fleet):
    directory = fleet['dir'] / 'tolerant'
    directory.mkdir()
    inventory = write_inventory(directory / 'hosts.yml', fleet['password'],
                                [('fleet-a', fleet['port'], 'fleet_a'), ('fleet-broken', fleet['port'], 'fleet_broken'),
                                 ('fleet-b', fleet['port'], 'fleet_b')], directory / 'artifacts')
    # Batches of 2: [fleet-a, fleet-broken], then [fleet-b]. One failure in a batch of two is 50%, which
    # max_fail_percentage 50 tolerates (only more than 50% stops the play), so the second batch runs.
    run = helpers.run_playbook('playbooks/migrate.yml', dict(pgzd_serial=2, pgzd_max_fail_percentage=50),
                               options=['-i', inventory])
    assert run.returncode == 2, run.stdout[-6000:]
    assert run.stdout.count('PLAY [Migrate the database schema online]') == 2
    counts = recap(run.stdout)
    assert counts['fleet-broken']['failed'] == 1
    failure = run.stdout.split('fatal: [fleet-broken]')[1][:1500]
    assert 'The plan cannot be applied; nothing was changed' in failure
    assert 'table public.SystemLog does not exist' in failure
    assert planned_state(fleet['db']['fleet_broken']) == {}

    for host, database in (('fleet-a', 'fleet_a'), ('fleet-b', 'fleet_b')):
        assert counts[host]['failed'] == 0 and counts[host]['changed'] > 0
        assert planned_state(fleet['db'][database]) == dict((name, (True, True)) for name in PLANNED), host
        assert helpers.unique_constraints(fleet['db'][database]) == [('Class', CONSTRAINT)]
        (report,) = (directory / 'artifacts' / host).glob('runs/*/report.json')
        with open(str(report)) as handle:
            assert json.load(handle)['status'] == 'succeeded', host


def test_a_batch_beyond_max_fail_percentage_ends_but_no_further_batch_starts(fleet):
    directory = fleet['dir'] / 'strict'
    directory.mkdir()
    inventory = write_inventory(directory / 'hosts.yml', fleet['password'],
                                [('fleet-broken', fleet['port'], 'fleet_broken'), ('fleet-c', fleet['port'], 'fleet_c'),
                                 ('fleet-d', fleet['port'], 'fleet_d')], directory / 'artifacts')
    # Batch [fleet-broken, fleet-c]: one failure of two is 50% > 49%. A failure counts once it is final (the run
    # gave the migration lock back in rescue and failed again); the linear strategy runs a failing host's rescue
    # after its batch-mates' tasks, so fleet-c finishes its migration, and then the batch [fleet-d] never starts.
    run = helpers.run_playbook('playbooks/migrate.yml', dict(pgzd_serial=2, pgzd_max_fail_percentage=49),
                               options=['-i', inventory])
    assert run.returncode == 2, run.stdout[-6000:]
    assert run.stdout.count('PLAY [Migrate the database schema online]') == 1
    assert 'NO MORE HOSTS LEFT' in run.stdout
    counts = recap(run.stdout)
    assert counts['fleet-broken']['failed'] == 1 and 'fleet-d' not in counts, run.stdout[-3000:]
    assert 'table public.SystemLog does not exist' in run.stdout
    assert planned_state(fleet['db']['fleet_c']) == dict((name, (True, True)) for name in PLANNED)
    assert planned_state(fleet['db']['fleet_d']) == {}
    assert helpers.unique_constraints(fleet['db']['fleet_d']) == []
