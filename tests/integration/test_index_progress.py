# -*- coding: utf-8 -*-
"""Progress in the play output while an index builds, and parallel builds across tables, on real PostgreSQL.

Two tables (made by the test, dropped after), each with an application transaction that wrote to it before
its build: the build waits for it, so it is in flight long enough to watch on any machine. The
play runs with the project's stdout callback (pg_zero_downtime.migrations.progress), which prints each poll of
pg_stat_progress_create_index: index, phase, percent.
"""

import re
import subprocess
import threading
import time

import pytest
import yaml

import helpers

pytestmark = pytest.mark.integration

TABLES = ('pt_progress_a', 'pt_progress_b')
ROWS = 200000
PROGRESS = re.compile(r'\[localhost\] progress: (pt_progress_[ab]_wide_idx) on public\.(pt_progress_[ab]): '
                      r'([a-z :]+?)\s+(\d+\.\d)%')


@pytest.fixture
def big_tables(db):
    with db.cursor() as cursor:
        for table in TABLES:
            cursor.execute('CREATE TABLE %s (id bigint PRIMARY KEY, a text NOT NULL, b text NOT NULL)' % table)
            cursor.execute("INSERT INTO %s SELECT g, md5(g::text), md5((g * 7)::text) "
                           "FROM generate_series(1, %d) g" % (table, ROWS))
            cursor.execute('ANALYZE %s' % table)
    yield
    with db.cursor() as cursor:
        for table in TABLES:
            cursor.execute('DROP TABLE IF EXISTS %s' % table)


def plan_file(tmp_path):
    plan = dict(name='pt_progress', schema='public', tables=[
        dict(name=table, indexes=[dict(name='%s_wide_idx' % table, columns=['a', 'b'])]) for table in TABLES])
    path = tmp_path / 'plan.yml'
    path.write_text(yaml.safe_dump(plan))
    return str(path)


def run_indexes(pg_cluster, tmp_path, parallelism):
    extra = dict(local_cluster_dir=pg_cluster['dir'], pg_port=pg_cluster['port'], pgzd_plan=plan_file(tmp_path),
                 pgzd_artifacts_dir=str(tmp_path / 'artifacts'), pgzd_index_build_parallelism=parallelism,
                 online_indexes_progress_interval=1)
    argv = [helpers._tool('ansible-playbook'), 'playbooks/indexes.yml']
    for name, value in extra.items():
        argv += ['-e', '%s=%s' % (name, value)]
    return subprocess.run(argv, cwd=helpers.REPO_ROOT, capture_output=True, text=True, timeout=900,
                          env=helpers.ansible_env(ANSIBLE_STDOUT_CALLBACK='pg_zero_downtime.migrations.progress'))


def polls(output):
    """Progress lines grouped by poll: each retry of the follow task prints one line per build in flight."""
    groups, current = [], []
    for line in output.splitlines():
        match = PROGRESS.search(line)
        if match:
            current.append(match.groups())
        elif current:
            groups.append(current)
            current = []
    if current:
        groups.append(current)
    return groups


def valid(db, name):
    rows = helpers.query(db, "SELECT i.indisvalid AND i.indisready FROM pg_index i JOIN pg_class c "
                             "ON c.oid = i.indexrelid WHERE c.relname = %s", (name,))
    return rows == [(True,)]


class BuildSampler(threading.Thread):
    """Samples, every 0.1 s, which of the test tables have an index build in flight."""

    def __init__(self, connection):
        threading.Thread.__init__(self, daemon=True)
        self.connection, self.samples, self.done = connection, [], threading.Event()

    def run(self):
        with self.connection.cursor() as cursor:
            while not self.done.is_set():
                cursor.execute("SELECT c.relname FROM pg_stat_progress_create_index p JOIN pg_class c ON c.oid = p.relid "
                               "WHERE c.relname LIKE 'pt_progress_%'")
                self.samples.append(set(row[0] for row in cursor.fetchall()))
                time.sleep(0.1)

    def stop(self):
        self.done.set()
        self.join(timeout=10)
        return self.samples


class Writer(threading.Thread):
    """An application transaction that wrote to a table before its build started: the concurrent build waits
    for it (phase "waiting for writers before build"), as long as it takes. It ends 2.5 s after the build shows
    up, so every build is in flight for a few seconds on any machine."""

    def __init__(self, connection, watcher, table):
        threading.Thread.__init__(self, daemon=True)
        # The watcher is a connection of its own: inside the open transaction, pg_stat views keep their first snapshot.
        self.connection, self.watcher, self.table, self.done = connection, watcher, table, threading.Event()
        with self.connection.cursor() as cursor:
            cursor.execute('BEGIN')
            cursor.execute('INSERT INTO %s VALUES (-1, %%s, %%s)' % table, ('w', 'w'))

    def run(self):
        with self.watcher.cursor() as cursor:
            deadline = time.monotonic() + 600
            while not self.done.is_set() and time.monotonic() < deadline:
                cursor.execute("SELECT 1 FROM pg_stat_progress_create_index p JOIN pg_class c ON c.oid = p.relid "
                               "WHERE c.relname = %s", (self.table,))
                if cursor.fetchall():
                    time.sleep(2.5)
                    break
                time.sleep(0.1)
        with self.connection.cursor() as cursor:
            cursor.execute('ROLLBACK')

    def stop(self):
        self.done.set()
        self.join(timeout=30)


def build_with_writers(pg_cluster, tmp_path, parallelism, connect):
    sampler = BuildSampler(connect())
    writers = [Writer(connect(), connect(), table) for table in TABLES]
    sampler.start()
    for writer in writers:
        writer.start()
    try:
        run = run_indexes(pg_cluster, tmp_path, parallelism)
    finally:
        for writer in writers:
            writer.stop()
    return run, sampler.stop()


def test_the_operator_sees_index_phase_and_percent_while_it_builds(db, pg_cluster, tmp_path, big_tables, connect):
    run, samples = build_with_writers(pg_cluster, tmp_path, 1, connect)
    assert run.returncode == 0, run.stdout[-4000:]
    seen = [line for group in polls(run.stdout) for line in group]
    assert seen, run.stdout[-4000:]
    index, table, phase, percent = seen[0]
    assert index == table + '_wide_idx' and phase.split(':')[0] in (
        'building index', 'waiting for writers before build', 'index validation', 'waiting for old snapshots')
    assert 0.0 <= float(percent) <= 100.0
    # One table at a time (the default): the two builds never ran together.
    assert any(samples) and not any(sample == set(TABLES) for sample in samples)
    assert all(valid(db, '%s_wide_idx' % table) for table in TABLES)


def test_parallel_builds_on_different_tables_run_at_the_same_time(db, pg_cluster, tmp_path, big_tables, connect):
    run, samples = build_with_writers(pg_cluster, tmp_path, 2, connect)
    assert run.returncode == 0, run.stdout[-4000:]
    assert 'Follow the index builds of pt_progress_a, pt_progress_b' in run.stdout
    assert any(sample == set(TABLES) for sample in samples), samples
    assert all(valid(db, '%s_wide_idx' % table) for table in TABLES)
    assert not helpers.query(db, "SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                                 "WHERE NOT i.indisvalid")


def test_a_failed_background_build_fails_the_play_with_its_own_message(db, pg_cluster, tmp_path):
    plan = dict(name='pt_progress_bad', schema='public', tables=[
        dict(name='Job', indexes=[dict(name='pt_progress_dup_idx', columns=['teacherId'], unique=True)])])
    path = tmp_path / 'bad.yml'
    path.write_text(yaml.safe_dump(plan))
    run = helpers.run_playbook('playbooks/indexes.yml', dict(local_cluster_dir=pg_cluster['dir'],
                                                              pg_port=pg_cluster['port'], pgzd_plan=str(path)))
    output = ' '.join(run.stdout.split())
    assert run.returncode != 0
    assert 'pt_progress_dup_idx' in output and 'duplicate' in output.lower()
    assert helpers.query(db, "SELECT count(*) FROM pg_class WHERE relname = 'pt_progress_dup_idx'") == [(0,)]
