# -*- coding: utf-8 -*-
# What a concurrent build (CREATE [UNIQUE] INDEX CONCURRENTLY, DROP INDEX CONCURRENTLY) waits for, and the watch
# that bounds those waits when asked.
#
# Such a build waits for its SHARE UPDATE EXCLUSIVE table lock, for every transaction writing the table ("waiting
# for writers") and for every transaction older than its snapshots ("waiting for old snapshots"). None of these
# waits blocks the application: row reads and writes neither conflict with that lock nor queue behind it, and
# nobody waits for the build's own waits. So a build is never cancelled by lock_timeout nor retried for waiting
# (each retry would repeat all the scanning and sorting); its waits are named while they last, and only an
# explicit build_wait_timeout ends it.
#
# describe_session and wait_summary take plain rows, so tests/unit runs them without a server; BuildWatcher runs
# the query on a connection of its own while the build's session is busy with the build.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import threading
import time

# The sessions the backend C(pid) waits for right now (lock holders, and for the waits of a concurrent build the
# transaction it waits to end), and how long its current wait has lasted (pg_locks.waitstart, PostgreSQL 14+).
WAITING_ON_QUERY = """
SELECT a.pid, a.usename::text AS usename, a.application_name, a.client_addr::text AS client_addr, a.state,
       round(extract(epoch FROM now() - a.xact_start))::int AS xact_seconds,
       left(regexp_replace(coalesce(a.query, ''), '\\s+', ' ', 'g'), 160) AS query,
       (SELECT round(extract(epoch FROM now() - min(l.waitstart))::numeric, 1)::float
        FROM pg_catalog.pg_locks l WHERE l.pid = %(pid)s AND NOT l.granted) AS waiting_seconds
FROM pg_catalog.pg_stat_activity a
WHERE a.pid = ANY(pg_catalog.pg_blocking_pids(%(pid)s)
                  || ARRAY(SELECT p.current_locker_pid FROM pg_catalog.pg_stat_progress_create_index p
                           WHERE p.pid = %(pid)s AND p.current_locker_pid <> 0))
ORDER BY a.xact_start NULLS LAST, a.pid
"""


# The run's DDL sessions (application pg-zero-downtime) that wait for a lock right now, whatever their statement: a
# concurrent build still waiting for its table lock (PostgreSQL reports a build's progress only once it holds it),
# DROP INDEX CONCURRENTLY waiting for the transactions that use its table, and the steps under lock_timeout (ADD, DROP
# and VALIDATE CONSTRAINT, SET NOT NULL, ATTACH PARTITION, the renames of a swap, the LOCK TABLE that takes a foreign
# key's referenced table first, a duplicate rename). A build that reports its progress is left out: the progress
# watch shows it, with its waits. Only the sessions that hold or wait for a lock on a followed table count (an index
# counts for its table, a partition for its root); the tables come as two arrays, %(schemas)s and %(tables)s.
RUN_LOCK_WAITS_QUERY = """
SELECT a.pid, a.wait_event, left(regexp_replace(coalesce(a.query, ''), '\\s+', ' ', 'g'), 200) AS query,
       round(extract(epoch FROM now() - a.query_start)::numeric, 1)::float AS seconds,
       (SELECT pg_catalog.format('%%I.%%I', n.nspname, c.relname) FROM pg_catalog.pg_locks l
        JOIN pg_catalog.pg_class c ON c.oid = l.relation JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE l.pid = a.pid AND NOT l.granted AND l.locktype = 'relation' LIMIT 1) AS waiting_on
FROM pg_catalog.pg_stat_activity a
WHERE a.datname = pg_catalog.current_database() AND a.application_name = 'pg-zero-downtime'
  AND a.wait_event_type = 'Lock' AND a.pid <> pg_catalog.pg_backend_pid()
  AND a.pid NOT IN (SELECT p.pid FROM pg_catalog.pg_stat_progress_create_index p)
  AND EXISTS (
      SELECT 1 FROM pg_catalog.pg_locks l
      JOIN pg_catalog.pg_class c ON c.oid = l.relation
      LEFT JOIN pg_catalog.pg_index i ON i.indexrelid = c.oid
      CROSS JOIN LATERAL (SELECT coalesce(i.indrelid, c.oid) AS oid) t
      JOIN pg_catalog.pg_class tc ON tc.oid IN (t.oid, pg_catalog.pg_partition_root(t.oid))
      JOIN pg_catalog.pg_namespace tn ON tn.oid = tc.relnamespace
      JOIN unnest(%(schemas)s::text[], %(tables)s::text[]) AS w(schema_name, table_name)
        ON w.schema_name = tn.nspname AND w.table_name = tc.relname
      WHERE l.pid = a.pid AND l.locktype = 'relation')
ORDER BY a.query_start, a.pid
"""


def lock_wait_phase(row):
    """What a session of RUN_LOCK_WAITS_QUERY waits for, in words: the relation it waits to lock, or the transactions
    it waits to end (pg_stat_activity.wait_event)."""
    if row.get('waiting_on'):
        return 'waiting for a lock on %s' % row['waiting_on']
    if row.get('wait_event') == 'virtualxid':
        return 'waiting for the transactions that use its table to end'
    if row.get('wait_event') == 'transactionid':
        return 'waiting for a transaction that holds its rows to end'
    return 'waiting for a lock (%s)' % (row.get('wait_event') or 'of an unknown kind')


def describe_session(row):
    """One session a build waits for, as an operator needs it to find and judge it."""
    return ('pid %s (user %s, application %s, client %s, %s, transaction open %ss): %s'
            % (row.get('pid'), row.get('usename') or '?', row.get('application_name') or '-',
               row.get('client_addr') or 'local', row.get('state') or '?',
               row.get('xact_seconds') if row.get('xact_seconds') is not None else '?',
               (row.get('query') or '').strip() or '-'))


def wait_summary(rows):
    """How long the current wait has lasted (seconds, or None when not waiting) and the sessions it waits for."""
    if not rows:
        return None, []
    seconds = rows[0].get('waiting_seconds')
    return (float(seconds) if seconds is not None else None), [describe_session(row) for row in rows]


def warn_about_waits(module, entry, warn_after):
    """Warn (module.warn) when the index or constraint of C(entry) waited C(warn_after) seconds or more."""
    if warn_after and entry.get('waited_seconds', 0) >= warn_after:
        module.warn('%s waited %ss for other sessions before it could finish%s' % (
            entry['name'], entry['waited_seconds'],
            ': ' + '; '.join(entry.get('waited_for') or []) if entry.get('waited_for') else ''))


def seconds_option_error(name, value):
    """Why a build wait option (seconds; 0 = none) is unusable, or None."""
    if value is not None and value < 0:
        return '%s must be 0 (none) or a number of seconds, not %s' % (name, value)
    return None


class BuildWatcher(object):
    """Watches one build's session from a second connection while the build's statement runs.

    It records how long the build waited in all (C(waited_seconds)) and for whom (C(sessions), the last ones
    seen); with a C(timeout) (seconds, 0 = none) it ends the build with pg_cancel_backend once the waits add up
    to more, and says so in C(gave_up) ({seconds, sessions}), so the runner can fail with the reason instead of
    retrying.
    """

    def __init__(self, connect, build_pid, timeout=0, interval=0.5, fetch=None, clock=time.monotonic):
        self.connect = connect
        self.build_pid = build_pid
        self.timeout = timeout or 0
        self.interval = interval
        self.fetch = fetch
        self.clock = clock
        self.waited_seconds = 0.0
        self.sessions = []
        self.gave_up = None
        self.error = None
        self._stop = threading.Event()
        self._thread = None
        self._connection = None

    def __enter__(self):
        self._connection = self.connect()
        self._connection.cursor().execute(
            "SELECT pg_catalog.set_config('application_name', 'pg-zero-downtime watch', false)")
        self._thread = threading.Thread(target=self._run, name='pgzd-build-watch')
        self._thread.daemon = True
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)
        try:
            self._connection.close()
        except Exception:  # an already closed connection
            pass
        return False

    def _run(self):
        cursor = self._connection.cursor()
        last = self.clock()
        while not self._stop.wait(self.interval):
            now = self.clock()
            try:
                rows = self.fetch(cursor, WAITING_ON_QUERY, dict(pid=self.build_pid))
            except Exception as error:  # the watch must never break the build: note it and stop watching
                self.error = str(error)
                return
            seconds, sessions = wait_summary(rows)
            if seconds is not None:
                self.waited_seconds += now - last
                self.sessions = sessions
            last = now
            if self.timeout and self.waited_seconds > self.timeout and self.gave_up is None:
                self.gave_up = dict(seconds=round(self.waited_seconds, 1), sessions=sessions)
                cursor.execute('SELECT pg_catalog.pg_cancel_backend(%(pid)s)', dict(pid=self.build_pid))
                cursor.fetchall()
                return
