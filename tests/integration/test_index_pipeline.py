# -*- coding: utf-8 -*-
"""The index phase's pipeline on real PostgreSQL: every table's run is started up front and waits for the one
before it. A queued run must not start after a failed one, nor outlive the ansible-playbook that started it.

Three small tables made by the test (dropped after). The first test keeps a write to the middle one open past the
run's build_wait_timeout, so its build fails. (Duplicate keys no longer do: the preflight refuses them first.)
"""

import glob
import json
import os
import signal
import subprocess
import time

import pytest
import yaml

import helpers

pytestmark = pytest.mark.integration

TABLES = ('pt_pipe_a', 'pt_pipe_b', 'pt_pipe_c')


@pytest.fixture
def pipe_tables(db):
    with db.cursor() as cursor:
        for table in TABLES:
            cursor.execute('CREATE TABLE %s (id bigint PRIMARY KEY, k integer NOT NULL)' % table)
            cursor.execute('INSERT INTO %s SELECT g, g FROM generate_series(1, 20000) g' % table)
    yield
    with db.cursor() as cursor:
        for table in TABLES:
            cursor.execute('DROP TABLE IF EXISTS %s' % table)


def plan_file(tmp_path):
    plan = dict(name='pt_pipe', schema='public', tables=[
        dict(name=table, indexes=[dict(name='%s_k_key_idx' % table, columns=['k'], unique=True)]) for table in TABLES])
    path = tmp_path / 'plan.yml'
    path.write_text(yaml.safe_dump(plan))
    return str(path)


def extra_vars(pg_cluster, tmp_path):
    return dict(local_cluster_dir=pg_cluster['dir'], pg_port=pg_cluster['port'], pgzd_plan=plan_file(tmp_path),
                pgzd_artifacts_dir=str(tmp_path / 'artifacts'))


def index_state(db, table):
    """None when the table has no planned index, else (valid, ready)."""
    rows = helpers.query(db, "SELECT i.indisvalid, i.indisready FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                             "WHERE c.relname = %s", ('%s_k_key_idx' % table,))
    return rows[0] if rows else None


def test_a_queued_table_does_not_start_after_a_failed_one_and_a_rerun_converges(db, pg_cluster, tmp_path, pipe_tables,
                                                                                   connect):
    writer = connect()
    with writer.cursor() as cursor:
        cursor.execute('BEGIN')
        cursor.execute('UPDATE pt_pipe_b SET k = k WHERE id = 1')  # b's build waits for this writer
    try:
        run = helpers.run_playbook('playbooks/indexes.yml', dict(extra_vars(pg_cluster, tmp_path), pgzd_build_wait_timeout=3))
    finally:
        writer.close()
    output = ' '.join(run.stdout.split())
    assert run.returncode != 0, output[-3000:]
    assert index_state(db, 'pt_pipe_a') == (True, True)
    # b failed with its own message and left nothing valid behind; c was queued behind it and never started.
    assert 'pt_pipe_b_k_key_idx' in output and 'gave up after waiting' in output, output[-3000:]
    assert index_state(db, 'pt_pipe_b') in (None, (False, False), (False, True))
    assert 'Not started, nothing changed on them: public.pt_pipe_c (queued behind the failure above)' in output
    assert 'not started, nothing was changed' not in output  # no queued table restates (or nests) the failure
    assert index_state(db, 'pt_pipe_c') is None
    # What was changed before the failure is said, and kept.
    assert 'Done by the runs that succeeded, and kept: created pt_pipe_a_k_key_idx on public.pt_pipe_a' in output

    rerun = helpers.run_playbook('playbooks/indexes.yml',
                                 dict(extra_vars(pg_cluster, tmp_path), pgzd_index_build_parallelism=2))
    assert rerun.returncode == 0, rerun.stdout[-3000:]
    assert [index_state(db, table) for table in TABLES] == [(True, True)] * 3
    names = helpers.task_names(rerun.stdout)
    assert 'Worked on 2 tables at a time (pgzd_index_build_parallelism).' in rerun.stdout
    assert ('Start building or dropping concurrently the indexes of pt_pipe_a, pt_pipe_b, pt_pipe_c' in names
            or 'Start building or dropping concurrently the indexes of pt_pipe_b, pt_pipe_c' in names), names
    assert helpers.badly_rendered_task_names(rerun.stdout) == []


def test_queued_tables_give_up_when_the_playbook_is_killed(db, pg_cluster, tmp_path, pipe_tables, connect):
    # An application transaction on a: its build waits for it, so the playbook can be killed mid-build.
    writer = connect()
    with writer.cursor() as cursor:
        cursor.execute('BEGIN')
        cursor.execute('INSERT INTO pt_pipe_a VALUES (-1, -1)')
    argv = [helpers._tool('ansible-playbook'), 'playbooks/indexes.yml']
    for name, value in extra_vars(pg_cluster, tmp_path).items():
        argv += ['-e', '%s=%s' % (name, value)]
    # The playbook leads a process group of its own, as it does in a terminal, so the kill ends only it.
    playbook = subprocess.Popen(argv, cwd=helpers.REPO_ROOT, env=helpers.ansible_env(ANSIBLE_STDOUT_CALLBACK='default'),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if helpers.query(db, "SELECT 1 FROM pg_stat_progress_create_index p JOIN pg_class c ON c.oid = p.relid "
                                 "WHERE c.relname = 'pt_pipe_a'"):
                break
            time.sleep(0.2)
        else:
            pytest.fail('the build of pt_pipe_a never started')
        time.sleep(3)  # the runs of b and c are queued by now (started up front, waiting for a)
        os.kill(playbook.pid, signal.SIGKILL)
        playbook.wait(timeout=30)
    finally:
        with writer.cursor() as cursor:
            cursor.execute('ROLLBACK')
        writer.close()
        if playbook.poll() is None:
            playbook.kill()

    # a's build was in flight and finishes (a concurrent build cannot be taken back halfway); b and c never start.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and index_state(db, 'pt_pipe_a') != (True, True):
        time.sleep(0.5)
    assert index_state(db, 'pt_pipe_a') == (True, True)
    time.sleep(3)  # a queued run polls every 0.1 s: it would have started by now
    assert index_state(db, 'pt_pipe_b') is None and index_state(db, 'pt_pipe_c') is None
    assert helpers.query(db, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pg-zero-downtime'") \
        == [(0,)]

    rerun = helpers.run_playbook('playbooks/indexes.yml', extra_vars(pg_cluster, tmp_path))
    assert rerun.returncode == 0, rerun.stdout[-3000:]
    assert [index_state(db, table) for table in TABLES] == [(True, True)] * 3


def test_migrate_tags_indexes_rerun_with_the_constraint_pending_changes_nothing(db, pg_cluster, tmp_path, pipe_tables):
    """--tags indexes builds the indexes and leaves the planned constraint alone; run again while the constraint is
    still pending, it finds nothing to do for the index phase: changed=0, no lock, no report (nothing ran)."""
    plan = dict(name='pt_pipe_tags', schema='public',
                tables=[dict(name=TABLES[0], indexes=[dict(name='pt_pipe_a_k_idx', columns=['k'])])],
                constraints=[dict(name='pt_pipe_b_k_key', table=TABLES[1], type='unique', columns=['k'])])
    (tmp_path / 'tags.yml').write_text(yaml.safe_dump(plan))
    variables = dict(extra_vars(pg_cluster, tmp_path), pgzd_plan=str(tmp_path / 'tags.yml'))
    first = helpers.run_playbook('playbooks/migrate.yml', variables, options=['--tags', 'indexes'])
    assert first.returncode == 0, first.stdout[-4000:]
    assert helpers.index_info(db, 'pt_pipe_a_k_idx')['valid']
    assert helpers.unique_constraints(db) == []

    again = helpers.run_playbook('playbooks/migrate.yml', variables, options=['--tags', 'indexes'])
    assert again.returncode == 0, again.stdout[-4000:]
    assert 'changed=0' in again.stdout, again.stdout[-3000:]
    again_text = ' '.join(again.stdout.split())
    assert 'Constraints to add: pt_pipe_b_k_key' in again_text
    assert 'Nothing to do in the phases selected (indexes)' in again_text, again_text[-3000:]
    assert helpers.unique_constraints(db) == []
    reports = sorted(glob.glob(os.path.join(str(tmp_path), 'artifacts', 'runs', 'pt_pipe_tags-*', 'report.json')))
    assert len(reports) == 1, reports
    with open(reports[0]) as handle:
        first_report = json.load(handle)
    assert [index['action'] for index in first_report['indexes']] == ['created']
    # No validation and no backup ran under --tags indexes: what they prove is not checked, not "not met".
    assert [c['status'] for c in first_report['success_criteria']] == [
        'not checked', 'met', 'not checked', 'not checked', 'not checked'], first_report['success_criteria']
    assert '[NOT CHECKED] All indexes created successfully; [MET] No service downtime during migration' in ' '.join(
        first.stdout.split())
    # The rerun ended after the preflight: no index phase, no lock, no report that could say something changed.
    assert 'Start building or dropping concurrently' not in again.stdout
