# -*- coding: utf-8 -*-
"""What a concurrent build waits for (plugins/module_utils/session/build_waits.py): the descriptions, and the watch that
ends a build once its waits add up to build_wait_timeout, driven here by a scripted catalog instead of a server."""

import importlib
import time

import helpers

bw = helpers.load_module_utils('session.build_waits')

SNAPSHOT_HOLDER = dict(pid=4242, usename='report', application_name='metabase', client_addr='10.1.2.3/32',
                       state='idle in transaction', xact_seconds=75, query='SELECT sum(amount) FROM "MoneyTx"',
                       waiting_seconds=12.5)


def test_a_session_is_described_with_what_an_operator_needs_to_find_it():
    assert bw.describe_session(SNAPSHOT_HOLDER) == (
        'pid 4242 (user report, application metabase, client 10.1.2.3/32, idle in transaction, transaction open '
        '75s): SELECT sum(amount) FROM "MoneyTx"')
    assert bw.describe_session(dict(pid=7, query=None)) == (
        'pid 7 (user ?, application -, client local, ?, transaction open ?s): -')


def test_the_wait_summary_is_how_long_and_for_whom_or_nothing():
    assert bw.wait_summary([]) == (None, [])
    seconds, sessions = bw.wait_summary([SNAPSHOT_HOLDER, dict(SNAPSHOT_HOLDER, pid=4243)])
    assert seconds == 12.5 and [s.split()[1] for s in sessions] == ['4242', '4243']


def test_build_wait_options_must_not_be_negative():
    assert bw.seconds_option_error('build_wait_timeout', 0) is None
    assert bw.seconds_option_error('build_wait_timeout', 30.5) is None
    assert 'build_wait_timeout must be 0' in bw.seconds_option_error('build_wait_timeout', -1)


class FakeCursor(object):
    def __init__(self, log):
        self.log = log

    def execute(self, statement, params=None):
        self.log.append((statement, params))

    def fetchall(self):
        return []


class FakeConnection(object):
    def __init__(self):
        self.log, self.closed = [], False

    def cursor(self):
        return FakeCursor(self.log)

    def close(self):
        self.closed = True


def watch(script, timeout, seconds_to_watch):
    """Run a BuildWatcher against a catalog that answers from C(script) (one answer per poll, the last repeated)."""
    connection = FakeConnection()
    answers = list(script)

    def fetch(cursor, query, params):
        assert params == dict(pid=99)
        return answers.pop(0) if len(answers) > 1 else answers[0]

    with bw.BuildWatcher(lambda: connection, 99, timeout=timeout, interval=0.01, fetch=fetch) as watcher:
        deadline = time.monotonic() + seconds_to_watch
        while time.monotonic() < deadline and watcher.gave_up is None:
            time.sleep(0.01)
    return watcher, connection


def test_a_build_that_does_not_wait_is_left_alone():
    watcher, connection = watch([[]], timeout=0.05, seconds_to_watch=0.3)
    assert watcher.gave_up is None and watcher.waited_seconds == 0
    assert not any('pg_cancel_backend' in statement for statement, _ in connection.log)
    assert connection.closed


def test_without_a_timeout_the_waits_are_only_recorded():
    watcher, connection = watch([[SNAPSHOT_HOLDER]], timeout=0, seconds_to_watch=0.3)
    assert watcher.gave_up is None and watcher.waited_seconds > 0.1
    assert watcher.sessions and 'pid 4242' in watcher.sessions[0]
    assert not any('pg_cancel_backend' in statement for statement, _ in connection.log)


def test_past_the_timeout_the_build_is_cancelled_once_naming_the_sessions():
    watcher, connection = watch([[], [SNAPSHOT_HOLDER]], timeout=0.1, seconds_to_watch=5)
    assert watcher.gave_up is not None and watcher.gave_up['seconds'] >= 0.1
    assert 'pid 4242' in watcher.gave_up['sessions'][0]
    cancels = [params for statement, params in connection.log if 'pg_cancel_backend' in statement]
    assert cancels == [dict(pid=99)]


def test_a_watch_whose_query_fails_stops_watching_and_never_breaks_the_build():
    connection = FakeConnection()

    def fetch(cursor, query, params):
        raise RuntimeError('connection lost')

    with bw.BuildWatcher(lambda: connection, 99, timeout=0.01, interval=0.01, fetch=fetch) as watcher:
        time.sleep(0.1)
    assert watcher.error == 'connection lost' and watcher.gave_up is None


# -- the lock waits of a run's other statements, as the progress watch shows them (issue 21, point 7) ------------------

progress = importlib.import_module(helpers.collection_path('plugins.modules.postgresql_online_index_progress'))
DROP = 'DROP INDEX CONCURRENTLY IF EXISTS "public"."Job_createdAt_idx"'


def test_a_lock_wait_says_what_it_waits_for():
    assert bw.lock_wait_phase(dict(waiting_on='public."Job"', wait_event='relation')) == \
        'waiting for a lock on public."Job"'
    assert bw.lock_wait_phase(dict(waiting_on=None, wait_event='virtualxid')) == \
        'waiting for the transactions that use its table to end'
    assert bw.lock_wait_phase(dict(waiting_on=None, wait_event='transactionid')) == \
        'waiting for a transaction that holds its rows to end'
    assert bw.lock_wait_phase(dict(waiting_on=None, wait_event='advisory')) == 'waiting for a lock (advisory)'


def test_a_waiting_drop_is_shown_with_the_session_it_waits_for_like_a_build():
    row = dict(pid=99, query=DROP, seconds=4.5, phase='waiting for the transactions that use its table to end')
    row['waiting_seconds'], row['waiting_for'] = bw.wait_summary([SNAPSHOT_HOLDER])
    assert progress.lock_wait_line(row) == (
        '%s: waiting for the transactions that use its table to end, 4.5s; waiting 12.5s for: pid 4242 (user report, '
        'application metabase, client 10.1.2.3/32, idle in transaction, transaction open 75s): SELECT sum(amount) '
        'FROM "MoneyTx"' % DROP)


def test_a_short_lock_wait_seen_between_two_reports_is_shown_once_it_is_over():
    step = dict(pid=7, query='LOCK TABLE ONLY "public"."Job" IN ACCESS EXCLUSIVE MODE', seconds=0.4,
                phase='waiting for a lock on public."Job"', waiting_seconds=0.3,
                waiting_for=[bw.describe_session(SNAPSHOT_HOLDER)])
    still = dict(step, pid=8, query=DROP)
    seen = {(7, step['query']): step, (8, DROP): still}
    (ended,) = progress.ended_waits(seen, [still])
    assert ended['pid'] == 7 and ended['ended'] is True
    assert progress.lock_wait_line(ended) == (
        'LOCK TABLE ONLY "public"."Job" IN ACCESS EXCLUSIVE MODE: waited for a lock on public."Job" for 0.3s (over by '
        'now), behind: %s' % bw.describe_session(SNAPSHOT_HOLDER))
    assert progress.ended_waits({}, [still]) == []


def test_the_watch_of_a_constraint_phase_follows_its_tables_and_the_tables_its_foreign_keys_reference():
    jobs = [dict(schema='public', constraints=[
        dict(name='fk', type='foreign_key', table='JobAssignment', references=dict(table='Job', columns=['id'])),
        dict(name='c', type='check', table='Item', schema='shop'),
        dict(name='fk2', table='A', schema='s', references=dict(table='B', schema='t'))])]
    assert sorted(set(progress.watched_tables(jobs))) == [
        ('public', 'Job'), ('public', 'JobAssignment'), ('s', 'A'), ('shop', 'Item'), ('t', 'B')]
    assert list(progress.watched_tables([dict(schema='public', tables=[dict(name='Job')])])) == [('public', 'Job')]
