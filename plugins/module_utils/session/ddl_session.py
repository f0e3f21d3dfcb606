# -*- coding: utf-8 -*-
# The DDL session: the one autocommit connection a statement kind runs its DDL through. Before each statement it
# proves the run still owns it (the migration lock held, the owning ansible-playbook alive); it applies lock_timeout
# and retries lock timeouts and deadlocks with backoff and jitter; it runs CONCURRENTLY builds and drops without
# lock_timeout, watched from a second connection (build_waits); it takes two tables in lock_order's order; and it
# holds the run's ledger, trust and records (what ran, the retries, what a failure left behind). The kinds
# (online_index, unique_constraint, online_constraint) plan their steps and run them through it.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.advisory_locks import (
    DDL_SESSION_LOCK_KEY, migration_lock_error,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.run.async_runs import owner_gone
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.build_waits import BuildWatcher
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.lock_order import (
    ORDERED_STATEMENTS, TIMEOUTS_QUERY, capped_lock_timeout,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.run.ledger import NO_PLAN, Ledger
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.plan.plan_sql import statement_error
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.plan.plan_trust import PlanTrust
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.server_features import has
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.statements import (
    RETRYABLE_SQLSTATES, OnlineIndexError, backoff_seconds, error_text, fetch_dicts, sql_module, sqlstate,
)

LOCK_HOLDERS_QUERY = """
SELECT a.pid, l.mode, l.granted, a.state, a.application_name,
       round(extract(epoch FROM now() - a.xact_start))::int AS xact_seconds,
       left(regexp_replace(a.query, '\\s+', ' ', 'g'), 120) AS query
FROM pg_catalog.pg_locks l
JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
WHERE l.relation = %(oid)s AND l.pid <> pg_catalog.pg_backend_pid()
ORDER BY a.xact_start NULLS LAST
LIMIT 10
"""

# A concurrent build also waits for every transaction older than its snapshots.
OLD_TRANSACTIONS_QUERY = """
SELECT a.pid, a.state, a.application_name,
       round(extract(epoch FROM now() - a.xact_start))::int AS xact_seconds,
       left(regexp_replace(a.query, '\\s+', ' ', 'g'), 120) AS query
FROM pg_catalog.pg_stat_activity a
WHERE a.xact_start IS NOT NULL AND a.pid <> pg_catalog.pg_backend_pid()
  AND a.datname = current_database() AND now() - a.xact_start > interval '1 second'
ORDER BY a.xact_start
LIMIT 5
"""


def lost_connection_message(text, error, attempts):
    """What a statement whose connection was lost says: terminated by pg_terminate_backend, a server restart or
    shutdown, a dropped network. The driver's error (often without a SQLSTATE) says little, and nothing more can be
    done on this connection."""
    return ('%s failed after %d attempt(s): %s\n'
            'The connection to the server was lost while the statement ran (its session was terminated, the '
            'server restarted or shut down, or the network dropped), so nothing more was done. An interrupted '
            'concurrent build leaves an INVALID index behind: rerun once the server accepts connections again; '
            'the rerun drops such a leftover and builds the index again, and keeps the indexes already built.'
            % (text, attempts, error_text(error)))


def build_gave_up_lines(text, gave_up, build_wait_timeout):
    """The lines of a concurrent statement its watch ended after build_wait_timeout (build_waits.BuildWatcher)."""
    lines = ['%s gave up after waiting %ss in all (build_wait_timeout=%ss), not retried' % (
        text, gave_up['seconds'], build_wait_timeout)]
    lines.append('It waited for:' if gave_up['sessions'] else 'It waited (for whom was not seen).')
    lines.extend('  %s' % session for session in gave_up['sessions'])
    lines.append('Its own session ended the statement (pg_cancel_backend): a concurrent build blocks no '
                 'application query while it waits, but it cannot finish before those transactions end.')
    lines.append('What to do: let those sessions finish (or end them), then rerun; or raise '
                 'build_wait_timeout (0 waits as long as it takes). Indexes already built are kept.')
    return lines


def session_timeouts(version_num):
    """The timeouts a DDL session sets besides lock_timeout and statement_timeout, on a server of C(version_num):
    transaction_timeout (PostgreSQL 17+) off, so that a server, database or role default cannot end a long concurrent
    build or VALIDATE that statement_timeout=0 lets run; below 17 the setting does not exist and nothing is set."""
    return dict(transaction_timeout='0') if has(version_num, 'transaction_timeout') else {}


def set_session_timeouts(query, version_num):
    """Set session_timeouts(C(version_num)) for the session through C(query)(text, params); returns them."""
    settings = session_timeouts(version_num)
    for name, value in sorted(settings.items()):
        query('SELECT pg_catalog.set_config(%(name)s, %(value)s, false)', dict(name=name, value=value))
    return settings


class DdlSession(object):
    """The autocommit connection a run's DDL goes through, and what it recorded."""

    def __init__(self, connection, lock_timeout='5s', statement_timeout='0', lock_retries=5,
                 lock_retry_delay=1.0, sleep=time.sleep, log=None, client_connection_check_interval='2s',
                 ddl_session=False, lock_session_pid=0, build_wait_timeout=0, watch_connect=None, owner_pid=0,
                 trusted=(), plan_name=NO_PLAN, run_id=NO_PLAN):
        self.connection = connection
        # Concurrent builds and drops wait without lock_timeout; a watch on a second connection (watch_connect())
        # records their waits and, with build_wait_timeout seconds, ends a build that waited longer.
        self.build_wait_timeout = build_wait_timeout
        self.watch_connect = watch_connect
        self.watcher = None
        # {index name: (seconds waited, [sessions waited for])} of the concurrent statements run so far.
        self.waits = {}
        # The session holding the run's migration lock: every DDL statement first proves it still holds it.
        self.lock_session_pid = lock_session_pid
        # The run's ansible-playbook (0 = none): once it is gone (stopped, cancelled by AWX), no further statement
        # starts; the one in flight ends on its own.
        self.owner_pid = owner_pid
        self.cursor = connection.cursor()
        self.sql = sql_module()
        # Plan SQL (predicates, checks) is proven by the server's resolution before anything of it runs, and only
        # proven text goes into a statement (plan_text).
        self.trust = PlanTrust(self.cursor, trusted)
        # What this run makes is recorded before and after it is made; a rollback undoes only what it records.
        self.ledger = Ledger(self.cursor, plan_name, run_id)
        self.lock_timeout = lock_timeout
        self.lock_retries = lock_retries
        self.lock_retry_delay = lock_retry_delay
        self.sleep = sleep
        self.log = log or (lambda message: None)
        self.executed_queries = []
        # Lock-timeout retries used so far, and INVALID indexes a failure could not clean up (both are
        # reported whether the task succeeds or fails).
        self.retries_used = 0
        self.leftovers = []
        # The statements of executed_queries that only undid what a failed build left (its INVALID index): nothing of
        # the build is kept, so a failure message does not count them as changes (outcomes.kept_queries).
        self.cleanup_queries = []
        # {configured lock_timeout: lock_order.capped_lock_timeout} of the statements that lock two tables.
        self._capped_timeouts = {}
        row = self.query(
            "SELECT pg_catalog.set_config('application_name', 'pg-zero-downtime', false), "
            "pg_catalog.set_config('lock_timeout', %(lock_timeout)s, false), "
            "pg_catalog.set_config('statement_timeout', %(statement_timeout)s, false), "
            "pg_catalog.current_setting('server_version_num')::int AS version_num, "
            "pg_catalog.pg_backend_pid() AS pid",
            dict(lock_timeout=str(lock_timeout), statement_timeout=str(statement_timeout)))[0]
        self.backend_pid, self.server_version_num = row['pid'], row['version_num']  # for server_features.has()
        # The settings the session set beyond lock_timeout and statement_timeout, as the report records them.
        self.timeout_settings = set_session_timeouts(self.query, row['version_num'])
        # A backend reads its client's socket only between statements: when the run dies mid-build (ansible-playbook
        # and its module killed, the control node lost, the connection cut), CREATE INDEX CONCURRENTLY would go on
        # alone for as long as the build takes, and a rerun would find the index "being built right now". With this
        # check (PostgreSQL 14+, where the server's OS supports it) the server notices the dead client within the
        # interval and ends the build; the rerun then rebuilds the INVALID leftover.
        if client_connection_check_interval:
            try:
                self.query("SELECT pg_catalog.set_config('client_connection_check_interval', %(interval)s, false) "
                           "WHERE pg_catalog.current_setting('client_connection_check_interval', true) IS NOT NULL",
                           dict(interval=str(client_connection_check_interval)))
            except Exception as error:  # refused on this platform: the build just cannot notice a dead client
                self.log('client_connection_check_interval is not available (%s): a build whose client dies runs on '
                         'to its end' % error_text(error))

        # A session that will run DDL says so with a shared advisory lock, held until it disconnects. A build
        # can outlive its run (a killed ansible-playbook leaves its background module running): the migration
        # lock of the next run (postgresql_migration_lock) refuses to start while any such session is alive.
        if ddl_session:
            self.query('SELECT pg_catalog.pg_advisory_lock_shared(%(k1)s, %(k2)s)',
                       dict(k1=DDL_SESSION_LOCK_KEY[0], k2=DDL_SESSION_LOCK_KEY[1]))

    def query(self, query, params=None):
        return fetch_dicts(self.cursor, query, params)

    def render(self, statement):
        return statement.as_string(self.connection)

    def plan_text(self, context, text):
        """C(text), plan SQL of C(context) (predicate, check), as SQL to compose into a statement, once the server proved
        it (PlanTrust); the last check before anything holding plan text is sent, as checked() is for its shape."""
        if not self.trust.proven(context, text):
            raise OnlineIndexError('refusing to send plan SQL `%s`: it was not proven by the server\'s resolution '
                                   'first (plan_trust)' % text)
        return self.sql.SQL(text)

    def checked(self, statement, kind=None):
        """The text of C(statement), proven by PostgreSQL's parser to be exactly one statement (of C(kind)).

        The last check before anything holding plan text is sent: psycopg2 sends a string with several statements
        as they are, so a predicate that smuggled a second one past the plan checks must stop here.
        """
        text = self.render(statement)
        problem = statement_error(text, kind)
        if problem:
            raise OnlineIndexError('refusing to send %s: %s' % (text, problem))
        return text

    def execute(self, statement, kind=None):
        text = self.checked(statement, kind)
        gone = owner_gone(self.owner_pid)
        if gone:
            raise OnlineIndexError('%s was not run: %s' % (text, gone))
        lost = migration_lock_error(self.cursor, self.lock_session_pid)
        if lost:
            raise OnlineIndexError('%s was not run: %s' % (text, lost))
        self.cursor.execute(text)
        self.executed_queries.append(text)

    def execute_concurrently(self, spec, statement, kind=None, label=None):
        """Run a CONCURRENTLY build or drop without lock_timeout, watched from a second connection.

        Its waits (for its table lock, for writers, for older snapshots) block no application query, so they are
        not cut short and retried, which would repeat the whole build: they are recorded in self.waits, and only
        build_wait_timeout (through the watch) ends the statement. The session's lock_timeout is back afterwards,
        for the catalog reads and for the cleanup of a failed build. The waits count for C(label), the planned index
        (a partition's build, or the build under a replacement's name, counts for the index it is part of).
        """
        self.watcher = None
        self.query("SELECT pg_catalog.set_config('lock_timeout', '0', false)")
        try:
            if self.watch_connect is None:
                self.execute(statement, kind)
                return
            with BuildWatcher(self.watch_connect, self.backend_pid, self.build_wait_timeout,
                              fetch=fetch_dicts) as self.watcher:
                self.execute(statement, kind)
        finally:
            if self.watcher is not None:
                seconds, sessions = self.waits.get(label or spec['name'], (0.0, []))
                self.waits[label or spec['name']] = (round(seconds + self.watcher.waited_seconds, 1),
                                                     self.watcher.sessions or sessions)
            if not self.connection_lost():
                self.query("SELECT pg_catalog.set_config('lock_timeout', %(value)s, false)",
                           dict(value=str(self.lock_timeout)))

    def in_transaction(self, statements):
        """Run C(statements), BEGIN to COMMIT, as one transaction: on any failure it is rolled back and nothing of it
        counts as run."""
        done = len(self.executed_queries)
        try:
            for statement in statements:
                self.execute(statement)
        except Exception:  # a lock timeout or any other error: nothing of the transaction stays
            del self.executed_queries[done:]
            if not self.connection_lost():
                self.cursor.execute('ROLLBACK')
            raise

    def with_lock_timeout(self, value, statement):
        """Run C(statement) with lock_timeout C(value) (a short one, for a lock other sessions would queue behind); the
        session's own lock_timeout is back afterwards."""
        self.query("SELECT pg_catalog.set_config('lock_timeout', %(value)s, false)", dict(value=str(value)))
        try:
            self.execute(statement)
        finally:
            self.query("SELECT pg_catalog.set_config('lock_timeout', %(value)s, false)",
                       dict(value=str(self.lock_timeout)))

    def with_short_lock_timeout(self, spec, decision, statement, timeout, explain=None):
        """C(statement), which takes a lock other sessions would queue behind, under the short lock_timeout
        C(timeout), retried with backoff and jitter (so the lock queue drains between attempts). Returns the retries."""
        return self.with_retries(spec, dict(decision, lock_timeout=timeout), statement,
                                 lambda: self.with_lock_timeout(timeout, statement), explain=explain)

    def with_retries(self, spec, decision, statement, work, cleanup=None, explain=None):
        """Run C(work), retrying lock timeouts and deadlocks with backoff and jitter. Returns the retries used.

        When it fails for good, C(cleanup)(spec) undoes what a failed attempt left and says what it did (or None), and
        C(explain)(error, decision) gives the kind's own lines for the failure message (e.g. the offending rows)."""
        attempts = max(self.lock_retries, 0) + 1
        for attempt in range(1, attempts + 1):
            try:
                work()
                return attempt - 1
            except Exception as error:  # psycopg2 and psycopg 3 errors share no importable base here
                if self.connection_lost():
                    self.leftovers.append('%s.%s' % (spec['schema'], spec['name']))
                    raise OnlineIndexError(lost_connection_message(self.render(statement), error, attempt))
                if sqlstate(error) is None:
                    raise
                if sqlstate(error) in RETRYABLE_SQLSTATES and attempt < attempts:
                    self.retries_used += 1
                    delay = backoff_seconds(attempt, self.lock_retry_delay)
                    self.log('%s: %s; retry %d of %d in %.1fs' % (spec['name'], error_text(error), attempt,
                                                                  self.lock_retries, delay))
                    self.sleep(delay)
                    continue
                leftover = cleanup(spec) if cleanup else None
                raise OnlineIndexError(self._failure_message(self.render(statement), decision, error, attempt,
                                                             leftover, explain))

    def connection_lost(self):
        """Whether the session is gone (psycopg2 and psycopg 3 both mark such a connection closed)."""
        return bool(getattr(self.connection, 'closed', False))

    def _failure_message(self, text, decision, error, attempts, leftover, explain):
        lines = ['%s failed after %d attempt(s): %s' % (text, attempts, error_text(error))]
        gave_up = self.watcher.gave_up if self.watcher is not None else None
        if gave_up:
            lines = build_gave_up_lines(text, gave_up, self.build_wait_timeout)
        elif sqlstate(error) in RETRYABLE_SQLSTATES:
            lines.append('Each attempt gave up after lock_timeout=%s: another session holds a conflicting lock, or a '
                         'long transaction is still open (a concurrent build waits for every older transaction).'
                         % decision.get('lock_timeout', self.lock_timeout))
            # A statement of lock_order waits for the referenced table first: its holders are named too.
            for oid in decision.get('lock_oids') or [decision.get('table_oid')]:
                holders = self.query(LOCK_HOLDERS_QUERY, dict(oid=oid)) if oid else []
                for row in holders:
                    lines.append('  lock holder: pid %(pid)s %(mode)s granted=%(granted)s state=%(state)s '
                                 'transaction open %(xact_seconds)ss app=%(application_name)s query: %(query)s' % row)
            for row in self.query(OLD_TRANSACTIONS_QUERY):
                lines.append('  open transaction: pid %(pid)s state=%(state)s open %(xact_seconds)ss '
                             'app=%(application_name)s query: %(query)s' % row)
            lines.append(decision.get('retry_advice') or
                         'What to do: let those sessions finish (or end them), or raise lock_timeout / lock_retries, '
                         'then rerun: indexes already built are kept and reported unchanged.')
        if leftover:
            lines.append(leftover[0].upper() + leftover[1:] + '.')
        lines.extend(explain(error, decision) if explain else [])
        return '\n'.join(lines)

    def deadlock_safe_timeout(self, configured):
        """lock_order.capped_lock_timeout of the C(configured) lock_timeout on this server (PostgreSQL parses the value
        and gives its deadlock_timeout), read once per value. Runs outside any transaction."""
        key = str(configured)
        if key not in self._capped_timeouts:
            self.cursor.execute('BEGIN')
            try:
                self.query("SELECT pg_catalog.set_config('lock_timeout', %(value)s, true)", dict(value=key))
                row = self.query(TIMEOUTS_QUERY)[0]
            finally:
                self.cursor.execute('ROLLBACK')
            self._capped_timeouts[key] = capped_lock_timeout(key, row['lock_ms'], row['deadlock_ms'])
        return self._capped_timeouts[key]

    def in_lock_order(self, kind, schema, table, statement, configured):
        """C(statement), which locks two tables, as the transaction that takes them in lock_order's order: C(schema).
        C(table) first with LOCK TABLE (in the mode ORDERED_STATEMENTS gives C(kind)), then the statement, under the
        C(configured) lock_timeout capped below deadlock_timeout. Composed SQL, BEGIN to COMMIT; the statement is the
        fourth."""
        sql = self.sql
        first = ORDERED_STATEMENTS[kind]
        return [sql.SQL('BEGIN'),
                sql.SQL('SET LOCAL lock_timeout = {}').format(sql.Literal(self.deadlock_safe_timeout(configured)['value'])),
                sql.SQL('LOCK TABLE {}{}.{} IN {} MODE').format(
                    sql.SQL('ONLY ' if first['only'] else ''), sql.Identifier(schema), sql.Identifier(table),
                    sql.SQL(first['locks'][0][1])),
                statement,
                sql.SQL('COMMIT')]
