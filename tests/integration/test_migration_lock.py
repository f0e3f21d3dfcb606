# -*- coding: utf-8 -*-
"""The concurrency guard: one migrate/rollback run per database at a time, on real PostgreSQL.

A run holds a session-level advisory lock (postgresql_migration_lock) from before its preflight to its end;
a second run fails at once naming the first; a killed run's lock goes away with its ansible-playbook.
"""

import os
import signal
import subprocess
import time

import pytest

import helpers

pytestmark = pytest.mark.integration

LOCK_SESSIONS = "SELECT pid, application_name FROM pg_stat_activity WHERE application_name LIKE 'pgzd-lock run=%'"


def lock_sessions(db):
    return helpers.query(db, LOCK_SESSIONS)


def wait_for(predicate, timeout=120, interval=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError('timed out after %ss' % timeout)


def start_playbook(playbook, extra_vars):
    argv = [helpers._tool('ansible-playbook'), playbook]
    for name, value in extra_vars.items():
        argv += ['-e', '%s=%s' % (name, value)]
    return subprocess.Popen(argv, cwd=helpers.REPO_ROOT, env=helpers.ansible_env(ANSIBLE_STDOUT_CALLBACK='default'),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def settings(pg_cluster, tmp_path, **extra):
    return dict(dict(local_cluster_dir=pg_cluster['dir'], pg_port=pg_cluster['port'], artifacts_dir=str(tmp_path),
                     backup_enabled='false'), **extra)


def test_a_second_run_fails_at_once_naming_the_first_and_the_first_completes(db, pg_cluster, tmp_path):
    first = start_playbook('playbooks/migrate.yml', settings(pg_cluster, tmp_path, pgzd_run_id='first'))
    try:
        ((holder_pid, holder_name),) = wait_for(lambda: lock_sessions(db))
        assert holder_name.startswith('pgzd-lock run=t12-first ')
        before = helpers.all_indexes(db)
        started = time.monotonic()
        second = helpers.run_playbook('playbooks/rollback.yml', settings(pg_cluster, tmp_path, pgzd_run_id='second'))
        elapsed = time.monotonic() - started
        output = ' '.join(second.stdout.split())
        assert second.returncode != 0
        assert 'Another pg-zero-downtime run holds the migration lock of database t12' in output
        assert 'run=t12-first' in output and 'session pid %d' % holder_pid in output
        # It failed before its preflight: nothing of its own ran (the first run may have built meanwhile).
        assert 'Drop the planned unique constraints' not in second.stdout
        assert elapsed < 60, elapsed
        assert set(helpers.all_indexes(db)) >= set(before)  # the second run dropped nothing
    finally:
        out, _ = first.communicate(timeout=900)
    assert first.returncode == 0, out[-4000:]
    assert lock_sessions(db) == []  # given back at the end
    assert all(valid for valid, _definition in helpers.all_indexes(db).values())


def test_the_lock_goes_with_a_killed_run_and_a_rerun_converges(db, pg_cluster, tmp_path):
    run = start_playbook('playbooks/migrate.yml', settings(pg_cluster, tmp_path, pgzd_run_id='killed'))
    wait_for(lambda: lock_sessions(db))
    os.killpg(run.pid, signal.SIGKILL)
    run.wait(timeout=30)
    # The holder watches the run's ansible-playbook and ends its session within seconds.
    wait_for(lambda: not lock_sessions(db), timeout=30)
    rerun = helpers.run_playbook('playbooks/migrate.yml', settings(pg_cluster, tmp_path, pgzd_run_id='rerun'))
    assert rerun.returncode == 0, rerun.stdout[-4000:]
    indexes = helpers.all_indexes(db)
    assert len([name for name in indexes if name.endswith('_idx')]) == 26
    assert all(valid for valid, _definition in indexes.values())
    assert lock_sessions(db) == []


def test_check_mode_only_warns_about_a_held_lock_and_release_leaves_other_runs_alone(db, run_module):
    taken = run_module('postgresql_migration_lock', run_id='t12-holder')
    try:
        assert taken['changed'] and taken['holder']['application_name'].startswith('pgzd-lock run=t12-holder ')
        again = run_module('postgresql_migration_lock', run_id='t12-holder')
        assert not again['changed']  # already ours
        check = run_module('postgresql_migration_lock', check=True, run_id='t12-other')
        assert not check.get('failed') and 'holds the migration lock' in ' '.join(check.get('warnings', []))
        other = run_module('postgresql_migration_lock', state='released', run_id='t12-other')
        assert not other['changed']
        assert len(lock_sessions(db)) == 1  # another run's release did not touch the holder
    finally:
        released = run_module('postgresql_migration_lock', state='released', run_id='t12-holder')
    assert released['changed']
    wait_for(lambda: not lock_sessions(db), timeout=30)


def test_a_run_does_not_start_while_ddl_of_an_earlier_run_goes_on(db, run_module, connect):
    """A killed run's background build keeps its DDL-session lock (shared) until it ends: no new run meanwhile."""
    orphan = connect()
    with orphan.cursor() as cursor:
        cursor.execute("SET application_name = 'pg-zero-downtime'")
        cursor.execute('SELECT pg_advisory_lock_shared(1886415972, 1)')
        cursor.execute('SELECT pg_backend_pid()')
        pid = cursor.fetchone()[0]
    refused = run_module('postgresql_migration_lock', run_id='t12-next')
    assert refused['failed'] and 'DDL of an earlier pg-zero-downtime run is still running' in refused['msg']
    assert 'session pid %d' % pid in refused['msg'] and 'pg_cancel_backend(%d)' % pid in refused['msg']
    assert lock_sessions(db) == []
    orphan.close()
    taken = run_module('postgresql_migration_lock', run_id='t12-next')
    assert taken['changed']
    assert run_module('postgresql_migration_lock', state='released', run_id='t12-next')['changed']
    wait_for(lambda: not lock_sessions(db), timeout=30)
