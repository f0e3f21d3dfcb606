# -*- coding: utf-8 -*-
"""The concurrency guard: one migrate/rollback run per database at a time, on real PostgreSQL.

A run holds a session-level advisory lock (postgresql_migration_lock) from before its preflight to its end;
a second run fails at once naming the first; a killed run's lock goes away with its ansible-playbook.
"""

import json
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
    return dict(dict(local_cluster_dir=pg_cluster['dir'], pg_port=pg_cluster['port'], pgzd_artifacts_dir=str(tmp_path),
                     backup_enabled='false'), **extra)


@pytest.mark.majors()
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


@pytest.mark.majors()
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
        session_pid = taken['ansible_facts']['pgzd_lock_session_pid']
        assert session_pid == taken['holder']['pid'] == lock_sessions(db)[0][0]
        # The lock is the session's: the same run id without that session is another run, and is refused.
        same_name = run_module('postgresql_migration_lock', run_id='t12-holder')
        assert same_name['failed'] and 'session pid %d' % session_pid in same_name['msg']
        # With the session, it is the proof that this run still holds the lock.
        again = run_module('postgresql_migration_lock', run_id='t12-holder', lock_session_pid=session_pid)
        assert not again.get('failed') and not again['changed']
        check = run_module('postgresql_migration_lock', check=True, run_id='t12-other')
        assert not check.get('failed') and 'holds the migration lock' in ' '.join(check.get('warnings', []))
        other = run_module('postgresql_migration_lock', state='released', run_id='t12-other')
        assert not other['changed']
        assert len(lock_sessions(db)) == 1  # another run's release did not touch the holder
        other_session = run_module('postgresql_migration_lock', state='released', run_id='t12-holder',
                                   lock_session_pid=session_pid + 100000)
        assert not other_session['changed'] and len(lock_sessions(db)) == 1
    finally:
        released = run_module('postgresql_migration_lock', state='released', run_id='t12-holder',
                              lock_session_pid=session_pid)
    assert released['changed'] and released['ansible_facts']['pgzd_lock_session_pid'] == 0
    wait_for(lambda: not lock_sessions(db), timeout=30)
    # session_pid, the option's old name, still works until 0.19.0, with a deprecation.
    gone = run_module('postgresql_migration_lock', run_id='t12-holder', session_pid=session_pid)
    assert gone['failed'] and 'no longer holds the migration lock' in gone['msg']
    assert 'backend pid %d' % session_pid in gone['msg']


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


RACE_ROUNDS = int(os.environ.get('PGZD_LOCK_RACE_ROUNDS', '10'))
RACE_RUNS = 5


def race_plan(tmp_path):
    path = tmp_path / 'race.yml'
    path.write_text('name: race\ntables:\n  - name: Item\n    indexes:\n'
                    '      - {name: pt_race_idx, columns: [type]}\n')
    return str(path)


def test_runs_started_at_once_one_proceeds_the_others_fail_at_once_naming_it(db, pg_cluster, tmp_path, connect):
    """5 runs at once, RACE_ROUNDS times: exactly one takes the lock and migrates, the others fail naming it.

    Run ids used to be the plan and the start time to the second, and a holder of the same id counted as the run
    itself: two runs started in the same second both went on, into one artifacts folder.
    """
    plan = race_plan(tmp_path)
    for round_ in range(RACE_ROUNDS):
        artifacts = tmp_path / ('round%d' % round_)
        blocker = connect()
        with blocker.cursor() as cursor:
            # Holds the winner's build (SHARE conflicts with the build's SHARE UPDATE EXCLUSIVE) while the others
            # reach the lock; the longest lock_timeout allowed (1min) keeps it waiting rather than retrying.
            cursor.execute('BEGIN')
            cursor.execute('LOCK TABLE "Item" IN SHARE MODE')
        runs = [start_playbook('playbooks/migrate.yml', settings(
            pg_cluster, artifacts, pgzd_plan=plan, online_indexes_lock_timeout='60s')) for _ in range(RACE_RUNS)]
        try:
            deadline = time.monotonic() + 240
            while sum(run.poll() is not None for run in runs) < RACE_RUNS - 1 and time.monotonic() < deadline:
                time.sleep(0.2)
            finished = [run for run in runs if run.poll() is not None]
            assert len(finished) == RACE_RUNS - 1, 'round %d: %d runs ended' % (round_, len(finished))
            ((_pid, holder_name),) = lock_sessions(db)
            winner_run = holder_name.split()[1]  # run=race-<UTC time>-<random suffix>
            for run in finished:
                output = ' '.join(run.stdout.read().split())
                assert run.returncode != 0, output[-3000:]
                assert 'migration lock of database t12' in output and winner_run in output, output[-3000:]
                assert 'Start building or dropping the planned indexes' not in output
        finally:
            blocker.close()
            outputs = [run.communicate(timeout=300)[0] for run in runs]
        (winner,) = [run for run in runs if run.returncode == 0]
        assert 'pt_race_idx' in outputs[runs.index(winner)]
        assert helpers.index_info(db, 'pt_race_idx')['valid'] is True
        helpers.drop_index(db, 'pt_race_idx')
        assert lock_sessions(db) == []
        # Each run wrote its report into a folder of its own run id: the one that proceeded its migration, each of
        # the others its refusal naming the lock (issue 22: a refused run writes report.json for pipelines).
        folders = sorted(os.listdir(str(artifacts / 'runs')))
        assert len(folders) == RACE_RUNS and winner_run[len('run='):] in folders, folders
        for folder in folders:
            with open(str(artifacts / 'runs' / folder / 'report.json')) as handle:
                report = json.load(handle)
            assert 'race-' + report['run_id'] == folder
            if folder == winner_run[len('run='):]:
                assert report['status'] == 'succeeded'
            else:
                assert report['status'] == 'refused', report
                assert any('migration lock' in problem and winner_run in problem for problem in report['problems'])


def test_a_run_whose_lock_session_is_terminated_stops_before_its_next_ddl_and_the_rerun_converges(
        db, pg_cluster, tmp_path, connect):
    blocker = connect()
    with blocker.cursor() as cursor:
        cursor.execute('BEGIN')
        cursor.execute('LOCK TABLE "Job" IN SHARE MODE')  # holds Job's first build
    run = start_playbook('playbooks/indexes.yml', settings(pg_cluster, tmp_path, online_indexes_lock_timeout='60s'))
    try:
        wait_for(lambda: helpers.query(db, "SELECT 1 FROM pg_stat_activity WHERE query LIKE 'CREATE INDEX CONCURRENTLY%' "
                                           "AND wait_event_type = 'Lock'"), timeout=180)
        ((holder_pid, _name),) = lock_sessions(db)
        helpers.query(db, 'SELECT pg_terminate_backend(%s)', (holder_pid,))
        wait_for(lambda: not lock_sessions(db), timeout=30)
    finally:
        blocker.close()  # the build in flight goes on; nothing after it may run unlocked
    out, _ = run.communicate(timeout=300)
    output = ' '.join(out.split())
    assert run.returncode != 0, output[-4000:]
    assert 'no longer holds the migration lock' in output and 'backend pid %d' % holder_pid in output, output[-4000:]
    built = [name for name in helpers.droppable_indexes(db) if name.endswith('_idx')]
    assert built == ['Job_teacherId_status_idx'], built  # the build in flight, and nothing after it
    rerun = helpers.run_playbook('playbooks/indexes.yml', settings(pg_cluster, tmp_path))
    assert rerun.returncode == 0, rerun.stdout[-4000:]
    indexes = helpers.all_indexes(db)
    assert len([name for name in indexes if name.endswith('_idx')]) == 26
    assert all(valid for valid, _definition in indexes.values())
