# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The migration lock of a run: taken by a detached holder process, checked, and given back.

A session-level advisory lock lives as long as its connection, and each Ansible module is a process of its own.
So the lock is taken by a small detached process, the holder, which keeps one connection open with the lock and
an application_name that describes the run, and ends (the lock with it) when its session is terminated (release),
when the run's ansible-playbook is gone, when the connection drops, or after max_seconds. postgresql_migration_lock
and postgresql_migration_preflight both use it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import select
import signal
import socket
import time

from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.advisory_locks import (
    DDL_SESSION_LOCK_KEY, MIGRATION_LOCK_KEY, advisory_lock_holders, describe_lock_holder,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.run.async_runs import process_alive
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.statements import error_text, fetch_dicts

APPLICATION_PREFIX = 'pgzd-lock'
PREFLIGHT_PREFIX = 'pgzd-preflight'
UNLOCK_HINT = ('If that run is dead (its control node crashed), end its session: SELECT pg_terminate_backend(%s); '
               'the lock goes with it.')


class LockRefused(Exception):
    """The lock cannot be taken: another run holds it, or an earlier run's DDL still runs."""


class _ConnectFailed(Exception):
    pass


class _ChildModule(object):
    """What connect_to_db needs of a module, for the holder process (which has no Ansible output)."""

    def __init__(self, params):
        self.params = params

    def fail_json(self, msg, **kwargs):
        raise _ConnectFailed(msg)

    def warn(self, message):
        pass


def application_name(run_id, owner_pid, prefix=APPLICATION_PREFIX):
    """Who holds the lock, as the holder session's application_name (at most 63 bytes are kept); the preflight's
    session, which holds it while it proves the plan, says so with its own prefix (PREFLIGHT_PREFIX)."""
    text = '%s run=%s pid=%d host=%s' % (prefix, run_id, owner_pid or os.getpid(), socket.gethostname())
    return text.encode('utf-8')[:63].decode('utf-8', 'ignore')


def is_run(holder, run_id):
    return (holder['application_name'] + ' ').startswith('%s run=%s ' % (APPLICATION_PREFIX, run_id))


def own_holders(current, run_id, session_pid):
    """The holders that are this run's session: the one of pid C(session_pid), or with 0 every one of C(run_id)."""
    return [holder for holder in current if is_run(holder, run_id)
            and (not session_pid or holder['pid'] == session_pid)]


def holders(cursor):
    return advisory_lock_holders(cursor, MIGRATION_LOCK_KEY)


def ddl_sessions(cursor):
    """Sessions of pg-zero-downtime modules running DDL (they hold the shared DDL-session lock)."""
    return advisory_lock_holders(cursor, DDL_SESSION_LOCK_KEY, since='query_start', with_query=True)


def held_message(database, holder):
    return ('Another pg-zero-downtime run holds the migration lock of database %s: %s. Two runs must not interleave '
            'their DDL: wait for it to finish, then rerun. ' + UNLOCK_HINT) % (
        database, describe_lock_holder(holder), holder['pid'])


def running_ddl_message(database, running):
    return ('DDL of an earlier pg-zero-downtime run is still running in database %s: session pid %s (%s; since %s): '
            '%s. Its run has ended (killed, or its control node lost) but the statement goes on. Wait for it to '
            'finish, then rerun; or end it with SELECT pg_cancel_backend(%s) (a concurrent build then leaves an '
            'INVALID index, which the rerun rebuilds).') % (
        database, running['pid'], running['application_name'], running['since'],
        ' '.join((running['query'] or '').split())[:200], running['pid'])


def refusal(cursor, database, current=None):
    """Why this run may not take the lock now (another run holds it, or an earlier run's DDL runs), or None.

    C(current): the holders, when the caller has just read them."""
    current = holders(cursor) if current is None else current
    if current:
        # Whatever its run id: the lock is its session's, and this run has none yet.
        return held_message(database, current[0])
    # A run killed mid-build leaves its background module running: its DDL must end before another run starts.
    running = ddl_sessions(cursor)
    if running:
        return running_ddl_message(database, running[0])
    return None


def _hold(params, conn_params, run_id, owner_pid, max_seconds, report, handed_over=False):
    """The holder process: take the lock on a connection of its own, report, keep it until told or orphaned.

    With C(handed_over), the lock is the parent's (held in its own session): the holder says which session it is,
    then waits for the lock, which the parent gives up once it sees the holder waiting. PostgreSQL grants a released
    lock to the session waiting for it before any later request, so no other run can take it in between.
    """
    from ansible_collections.community.postgresql.plugins.module_utils.postgres import connect_to_db
    deadline = time.monotonic() + max_seconds
    keys = dict(k1=MIGRATION_LOCK_KEY[0], k2=MIGRATION_LOCK_KEY[1])
    try:
        connection, error = connect_to_db(_ChildModule(params), dict(conn_params), autocommit=True, fail_on_conn=False)
        if connection is None:
            raise _ConnectFailed(error)
        cursor = connection.cursor()
        session_pid = fetch_dicts(cursor, "SELECT pg_catalog.set_config('application_name', %(name)s, false), "
                                          "pg_catalog.pg_backend_pid() AS session_pid",
                                  dict(name=application_name(run_id, owner_pid)))[0]['session_pid']
        if handed_over:
            report(dict(waiting=True, session_pid=session_pid), final=False)
            cursor.execute("SELECT pg_catalog.set_config('lock_timeout', '60s', false)")
            cursor.execute('SELECT pg_catalog.pg_advisory_lock(%(k1)s, %(k2)s)', keys)
            cursor.execute("SELECT pg_catalog.set_config('lock_timeout', '0', false)")
            got = True
        else:
            got = fetch_dicts(cursor, 'SELECT pg_catalog.pg_try_advisory_lock(%(k1)s, %(k2)s) AS got', keys)[0]['got']
        report(dict(got=bool(got), holders=holders(cursor), pid=os.getpid(), session_pid=session_pid))
        if not got:
            connection.close()
            return
    except Exception as error:  # anything: the parent must hear about it
        report(dict(got=False, error=error_text(error)))
        return
    last_check = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        if owner_pid and not process_alive(owner_pid):
            break
        if time.monotonic() - last_check >= 5:
            last_check = time.monotonic()
            try:
                cursor.execute('SELECT 1')
            except Exception:  # terminated by the release, or the server went away: the lock is gone
                break
    try:
        connection.close()
    except Exception:  # closing a dead connection
        pass


def _read_reports(read_end, deadline, on_waiting):
    """The holder's reports, one JSON line each, until its last; C(on_waiting(session_pid)) when it waits for the
    lock. Returns the last report (or the reason there is none)."""
    buffered = b''
    while True:
        while b'\n' in buffered:
            line, buffered = buffered.split(b'\n', 1)
            try:
                outcome = json.loads(line.decode('utf-8'))
            except ValueError:
                return dict(got=False, error='the lock holder process said something unreadable')
            if not outcome.get('waiting'):
                return outcome
            if on_waiting is not None:
                on_waiting(outcome['session_pid'])
        remaining = deadline - time.monotonic()
        # A holder that hangs (a connection that never completes) must not hang the run: 60 s at most.
        if remaining <= 0 or not select.select([read_end], [], [], remaining)[0]:
            return dict(got=False, error='the lock holder process did not answer within 60 s')
        chunk = os.read(read_end, 65536)
        if not chunk:
            return dict(got=False, error='the lock holder process ended without saying why')
        buffered += chunk


def start_holder(params, conn_params, run_id, owner_pid, max_seconds, on_waiting=None):
    """Fork the detached holder; return what it reported (the parent waits for that, at most 60 s).

    The report: C(got) (the lock is taken), C(session_pid) (its backend pid), C(pid) (the holder process),
    C(holders) (the holders then), or C(error). With C(on_waiting), the lock is handed over from the caller's
    session: C(on_waiting(session_pid)) is called once the holder's session C(session_pid) is about to wait for it.
    """
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(read_end)
        os.setsid()
        if os.fork() != 0:
            os._exit(0)
        # The holder: no Ansible pipes held open, no signals of the run's terminal, no connection of the parent's.
        devnull = os.open(os.devnull, os.O_RDWR)
        for descriptor in (0, 1, 2):
            os.dup2(devnull, descriptor)
        os.closerange(3, write_end)
        os.closerange(write_end + 1, 1024)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

        def report(outcome, final=True):
            os.write(write_end, json.dumps(outcome, default=str).encode('utf-8') + b'\n')
            if final:
                os.close(write_end)

        try:
            _hold(params, conn_params, run_id, owner_pid, max_seconds, report, handed_over=on_waiting is not None)
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(child, 0)
    try:
        return _read_reports(read_end, time.monotonic() + 60, on_waiting)
    finally:
        os.close(read_end)


def take(params, conn_params, database, run_id, owner_pid, max_seconds, on_waiting=None):
    """Take the lock in a new holder; returns (session pid, holder pid, holder row). Raises LockRefused.

    With C(on_waiting), the caller holds the lock in its own session and hands it over (see start_holder)."""
    outcome = start_holder(params, conn_params, run_id, owner_pid, max_seconds, on_waiting)
    if outcome.get('error'):
        raise LockRefused('Could not take the migration lock of database %s: %s' % (database, outcome['error']))
    if not outcome.get('got'):
        holder = (outcome.get('holders') or [{}])[0]
        raise LockRefused(('Another pg-zero-downtime run took the migration lock of database %s first: %s. '
                           + UNLOCK_HINT) % (database, describe_lock_holder(holder) if holder else 'unknown',
                                             holder.get('pid', '<pid>')))
    mine = [holder for holder in outcome.get('holders') or [] if holder['pid'] == outcome.get('session_pid')]
    return outcome.get('session_pid') or 0, outcome.get('pid'), mine[0] if mine else {}


WAITING_QUERY = ("SELECT 1 FROM pg_catalog.pg_locks WHERE pid = %(pid)s AND locktype = 'advisory' AND NOT granted "
                 "AND classid = %(k1)s AND objid = %(k2)s AND objsubid = 2")


def hand_over(cursor, lock_session_pid, timeout=30.0):
    """Give up this session's lock once the holder's session C(lock_session_pid) waits for it: PostgreSQL grants it
    to that waiter before any later request. Returns whether it did; a holder that never came to wait is left to
    its lock_timeout, and this session (the caller closes it) takes its lock with it."""
    deadline = time.monotonic() + timeout
    keys = dict(pid=lock_session_pid, k1=MIGRATION_LOCK_KEY[0], k2=MIGRATION_LOCK_KEY[1])
    while time.monotonic() < deadline:
        if fetch_dicts(cursor, WAITING_QUERY, keys):
            unlock_in_session(cursor)
            return True
        time.sleep(0.01)
    return False


def lock_in_session(cursor):
    """Take the migration lock in this cursor's session (it goes with the session); whether it was free."""
    return bool(fetch_dicts(cursor, 'SELECT pg_catalog.pg_try_advisory_lock(%(k1)s, %(k2)s) AS got',
                            dict(k1=MIGRATION_LOCK_KEY[0], k2=MIGRATION_LOCK_KEY[1]))[0]['got'])


def unlock_in_session(cursor):
    fetch_dicts(cursor, 'SELECT pg_catalog.pg_advisory_unlock(%(k1)s, %(k2)s) AS done',
                dict(k1=MIGRATION_LOCK_KEY[0], k2=MIGRATION_LOCK_KEY[1]))


def release(cursor, session_pid):
    """End the holder session C(session_pid) and wait (5 s at most) until its lock is gone."""
    cursor.execute('SELECT pg_catalog.pg_terminate_backend(%(pid)s)', dict(pid=session_pid))
    for dummy_ in range(100):
        if not [holder for holder in holders(cursor) if holder['pid'] == session_pid]:
            return
        time.sleep(0.05)
