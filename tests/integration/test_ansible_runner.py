# -*- coding: utf-8 -*-
"""migrate.yml driven through the ansible-runner Python package, as AWX / Ansible Automation Platform run it.

Runner starts ansible-playbook under pexpect in the project directory with its own stdout callback (AWX's
awx_display): what an operator sees in AWX is the runner's event stream, so the build progress must reach it.
A job cancelled in AWX is a runner cancelled mid-build: the build in flight may finish, but nothing after it may
start, the migration lock must go with the job, and a rerun must converge.

A REPEATABLE READ transaction holding a snapshot makes the first build wait ("waiting for old snapshots") for
as long as the test needs, instead of relying on how fast this machine builds.
"""

import os
import time

import ansible_runner
import psycopg2
import pytest
import yaml

import helpers

pytestmark = pytest.mark.integration

TABLE = 'pt_runner'
INDEXES = ['pt_runner_payload_idx', 'pt_runner_grp_idx', 'pt_runner_created_at_idx']
SPECS = [dict(name=INDEXES[0], columns=['payload']), dict(name=INDEXES[1], columns=['grp']),
         dict(name=INDEXES[2], columns=['created_at'])]
TIMEOUT = 300


def _connect(cluster):
    conn = psycopg2.connect(host=cluster['host'], port=cluster['port'], user=cluster['user'],
                            password=cluster['password'], dbname=cluster['dbname'], application_name='pgzd-pytest')
    conn.autocommit = True
    return conn


@pytest.fixture(scope='module')
def runner_table(pg_cluster):
    conn = _connect(pg_cluster)
    helpers.query(conn, 'DROP TABLE IF EXISTS public.%s' % TABLE)
    helpers.query(conn, "CREATE TABLE public.%s AS SELECT g AS id, g %% 97 AS grp, md5(g::text) AS payload, "
                        "now() - g * interval '1 second' AS created_at FROM generate_series(1, 200000) AS g" % TABLE)
    helpers.query(conn, 'ANALYZE public.%s' % TABLE)
    yield
    helpers.query(conn, 'DROP TABLE IF EXISTS public.%s' % TABLE)
    conn.close()


def _run(pg_cluster, tmp_path, label, handler=None, cancel=None, **extravars):
    plan = tmp_path / 'runner_plan.yml'
    if not plan.exists():
        plan.write_text(yaml.safe_dump({'name': 'runner', 'tables': [{'name': TABLE, 'indexes': SPECS}]}))
    private = tmp_path / ('runner-%s' % label)
    private.mkdir()
    variables = dict(pgzd_plan=str(plan), local_cluster_dir=pg_cluster['dir'], pg_port=pg_cluster['port'],
                     pgzd_artifacts_dir=str(tmp_path / 'artifacts'))
    variables.update(extravars)
    # AWX's way: the project is the checkout (its ansible.cfg and inventory), the job's files are elsewhere.
    env = dict(PATH=os.pathsep.join([helpers.VENV_BIN, os.environ.get('PATH', '')]), PYTHONDONTWRITEBYTECODE='1')
    return ansible_runner.run(
        private_data_dir=str(private), project_dir=helpers.REPO_ROOT, playbook='playbooks/migrate.yml',
        inventory=os.path.join(helpers.REPO_ROOT, 'inventories', 'local'), extravars=variables, envvars=env,
        quiet=True, event_handler=handler,
        cancel_callback=cancel, settings={'pexpect_timeout': 0.5, 'suppress_ansible_output': True}, timeout=TIMEOUT)


def _progress_lines(events):
    return [line for event in events if event.get('event') in ('runner_retry', 'runner_on_ok')
            for line in (event.get('event_data', {}).get('res') or {}).get('progress_lines') or []]


def _lock_sessions(conn):
    return helpers.query(conn, "SELECT pid FROM pg_catalog.pg_stat_activity WHERE application_name LIKE 'pgzd-lock run=%%'")


def _building(conn, index):
    return helpers.query(conn, """
        SELECT p.phase FROM pg_catalog.pg_stat_progress_create_index p
        JOIN pg_catalog.pg_class c ON c.oid = p.index_relid WHERE c.relname = %s""", (index,))


def _drop_planned(conn):
    for name in INDEXES:
        helpers.query(conn, 'DROP INDEX IF EXISTS public."%s"' % name)


def test_migrate_under_ansible_runner_streams_progress_and_releases_the_lock(db, pg_cluster, runner_table, tmp_path):
    snapshot = helpers.Snapshot(pg_cluster, timeout=TIMEOUT)
    events = []

    def handler(event):
        events.append(event)
        # Seen in the runner's own events: the first build waits for the snapshot. Then let it go.
        if any('waiting for old snapshots' in line for line in _progress_lines([event])):
            snapshot.release()
        return True

    try:
        run = _run(pg_cluster, tmp_path, 'first', handler=handler)
    finally:
        snapshot.release()
    assert (run.status, run.rc) == ('successful', 0), run.stdout.read()[-6000:]
    lines = _progress_lines(events)
    assert any(INDEXES[0] in line and 'waiting for old snapshots' in line for line in lines), lines[-20:]
    # The events carry every task's result; the stdout runner keeps (AWX's job output) has the retries.
    assert 'Follow the index builds of %s' % TABLE in run.stdout.read()
    for name in INDEXES:
        assert helpers.index_info(db, name)['valid'], name
    assert not _lock_sessions(db)
    assert not helpers.query(db, "SELECT 1 FROM pg_catalog.pg_locks WHERE locktype = 'advisory'")

    again = _run(pg_cluster, tmp_path, 'again', backup_enabled='false')
    assert again.status == 'successful'
    assert sum(again.stats['changed'].values()) == 0, again.stats


def test_a_runner_cancelled_mid_build_starts_no_more_ddl_and_the_rerun_converges(db, pg_cluster, runner_table,
                                                                                   tmp_path):
    _drop_planned(db)
    snapshot = helpers.Snapshot(pg_cluster, timeout=TIMEOUT)
    try:
        cancelled = _run(pg_cluster, tmp_path, 'cancelled', backup_enabled='false',
                         cancel=lambda: bool(_building(db, INDEXES[0])))
        assert cancelled.status == 'canceled', (cancelled.status, cancelled.stdout.read()[-4000:])
        # The job is gone; the build in flight waits on, in its own backend.
        assert _building(db, INDEXES[0])
    finally:
        snapshot.release()
    # The migration lock went with the job; the build in flight then ends, and nothing after it starts.
    helpers.wait_until(lambda: not _lock_sessions(db), what="the end of the cancelled job's migration lock")
    helpers.wait_until(lambda: not helpers.pgzd_statements(db), what='the end of every pg-zero-downtime statement')
    time.sleep(3)  # a next build would have started by now
    assert helpers.index_info(db, INDEXES[1]) is None and helpers.index_info(db, INDEXES[2]) is None
    assert not helpers.query(db, "SELECT 1 FROM pg_catalog.pg_locks WHERE locktype = 'advisory'")

    rerun = _run(pg_cluster, tmp_path, 'rerun', backup_enabled='false')
    assert rerun.status == 'successful', rerun.stdout.read()[-6000:]
    for name in INDEXES:
        info = helpers.index_info(db, name)
        assert info['valid'] and info['ready'], name
    quiet = _run(pg_cluster, tmp_path, 'quiet', backup_enabled='false')
    assert quiet.status == 'successful' and sum(quiet.stats['changed'].values()) == 0, quiet.stats
    _drop_planned(db)
