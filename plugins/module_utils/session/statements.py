# -*- coding: utf-8 -*-
# Running statements on a session: transactions under lock_timeout with retries, backoff with jitter, driver
# error codes and texts, option values PostgreSQL must accept, rows as dicts, the driver's sql module. It holds
# no knowledge of indexes or constraints; every module that talks to PostgreSQL uses it.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import random
import time


# SQLSTATEs a retry can cure: lock_not_available (lock_timeout) and deadlock_detected.
RETRYABLE_SQLSTATES = ('55P03', '40P01')


def backoff_seconds(attempt, base_delay, max_delay=60.0, rand=random.random):
    """Delay before retry C(attempt) (1-based): exponential, capped, with jitter in [50%, 100%].

    The jitter keeps several runs that hit the same lock from retrying in step.
    """
    ceiling = min(max_delay, base_delay * (2 ** (attempt - 1)))
    return ceiling * (0.5 + rand() / 2)


def sqlstate(error):
    """SQLSTATE of a driver error, for psycopg2 (pgcode) and psycopg 3 (sqlstate)."""
    return getattr(error, 'sqlstate', None) or getattr(error, 'pgcode', None)


def error_text(error):
    """One-line message of a driver error."""
    return ' '.join(str(error).split())


def run_transaction(cursor, work, lock_timeout, lock_retries, lock_retry_delay, check_mode, warn, label,
                    operator_errors=(), sleep=time.sleep, rand=random.random):
    """Run work() in one transaction under lock_timeout; commit, or roll back in check mode. Returns its result.

    A lock timeout or deadlock rolls back and retries the whole transaction, up to lock_retries times with
    exponential backoff and jitter (each retry is announced through warn). Exceptions of the operator_errors
    types roll back and propagate as they are; any other error rolls back and propagates after the retries.
    """
    attempts = lock_retries + 1
    for attempt in range(1, attempts + 1):
        cursor.execute('BEGIN')
        try:
            cursor.execute("SELECT pg_catalog.set_config('lock_timeout', %(value)s, true), "
                           "pg_catalog.set_config('application_name', 'pg-zero-downtime', true)",
                           dict(value=str(lock_timeout)))
            outcome = work()
            cursor.execute('ROLLBACK' if check_mode else 'COMMIT')
            return outcome
        except operator_errors:
            cursor.execute('ROLLBACK')
            raise
        except Exception as error:  # psycopg2 and psycopg 3 errors share no importable base here
            cursor.execute('ROLLBACK')
            if sqlstate(error) in RETRYABLE_SQLSTATES and attempt < attempts:
                delay = backoff_seconds(attempt, lock_retry_delay, rand=rand)
                warn('%s: %s; retry %d of %d in %.1fs' % (label, error_text(error), attempt, lock_retries, delay))
                sleep(delay)
                continue
            raise


def setting_errors(cursor, settings):
    """Check option values PostgreSQL itself must accept, before anything else runs.

    C(settings) is a list of (option name, GUC name, value). Each value is tried with set_config in a
    one-statement transaction, so nothing stays set. Returns error strings naming the option.
    """
    errors = []
    for option, guc, value in settings:
        try:
            cursor.execute('SELECT pg_catalog.set_config(%(guc)s, %(value)s, true)', dict(guc=guc, value=str(value)))
            cursor.fetchall()
        except Exception as error:  # psycopg2 and psycopg 3 errors share no importable base here
            errors.append('%s: PostgreSQL refuses %r as a %s value (%s); use a duration such as 2s, 500ms or 1min'
                          % (option, str(value), guc, error_text(error)))
    return errors


# The longest wait for a lock that the application queues behind: a statement that takes ACCESS EXCLUSIVE (or SHARE)
# waits for it while every later query of the table waits behind the statement. 0 (wait forever) or a long wait lets
# a slow transaction of the application stop all the others; a short wait, retried, costs them at most that long.
MAX_BLOCKING_LOCK_TIMEOUT_MS = 60000


def blocking_lock_timeout_problem(option, milliseconds):
    """Why a lock_timeout of C(milliseconds) is unsafe for a statement the application queues behind, or None."""
    if milliseconds <= 0:
        return ('%s: 0 lets the statement wait for its lock forever, and every query of the table waits behind it '
                'meanwhile; give a duration from 1ms to 1min, such as 2s (each attempt waits at most that long and is '
                'retried)' % option)
    if milliseconds > MAX_BLOCKING_LOCK_TIMEOUT_MS:
        return ('%s: %dms is over 1min, and every query of the table waits behind the statement that long; give a '
                'duration from 1ms to 1min, such as 2s (each attempt waits at most that long and is retried)'
                % (option, milliseconds))
    return None


def blocking_lock_timeout_errors(cursor, settings):
    """Errors of the lock_timeout values of statements the application queues behind (C(settings): (option, value)):
    PostgreSQL parses each (set_config in a transaction that is rolled back, and the milliseconds read back from
    pg_settings), then blocking_lock_timeout_problem judges it. Before anything else runs; nothing stays set."""
    errors = []
    for option, value in settings:
        refused = setting_errors(cursor, [(option, 'lock_timeout', value)])
        if refused:
            errors.extend(refused)
            continue
        cursor.execute('BEGIN')
        try:
            cursor.execute("SELECT pg_catalog.set_config('lock_timeout', %(value)s, true)", dict(value=str(value)))
            milliseconds = int(fetch_dicts(cursor, "SELECT setting FROM pg_catalog.pg_settings "
                                                   "WHERE name = 'lock_timeout'")[0]['setting'])
        finally:
            cursor.execute('ROLLBACK')
        problem = blocking_lock_timeout_problem(option, milliseconds)
        if problem:
            errors.append(problem)
    return errors


def option_errors(cursor, params, settings):
    """Errors of the retry and timeout options of a module (C(settings): (option, GUC) pairs), before any DDL."""
    errors = []
    for option in ('lock_retries', 'lock_retry_delay'):
        if option in params and params[option] is not None and params[option] < 0:
            errors.append('%s must be 0 or more, not %s' % (option, params[option]))
    return errors + setting_errors(cursor, [(option, guc, params[option]) for option, guc in settings])


def fetch_dicts(cursor, query, params=None):
    """Execute C(query) and return its rows as dicts, whichever driver and row factory are in use."""
    cursor.execute(query, params)
    if cursor.description is None:
        return []
    names = [column[0] for column in cursor.description]
    # psycopg 3's dict_row gives dicts, psycopg2's plain cursor gives sequences.
    return [dict(zip(names, [row[name] for name in names] if isinstance(row, dict) else row))
            for row in cursor.fetchall()]


def sql_module():
    """The C(sql) composition module of the driver community.postgresql's module_utils picked."""
    from ansible_collections.community.postgresql.plugins.module_utils import postgres
    from ansible_collections.community.postgresql.plugins.module_utils.version import LooseVersion
    if postgres.PSYCOPG_VERSION >= LooseVersion('3.0'):
        from psycopg import sql
    else:
        from psycopg2 import sql
    return sql


def copy_out(cursor, statement, handle):
    """Run C(statement), a COPY ... TO STDOUT, writing its bytes to the binary file C(handle), with either driver."""
    if hasattr(cursor, 'copy_expert'):  # psycopg2
        cursor.copy_expert(statement, handle)
        return
    with cursor.copy(statement) as copy:  # psycopg 3
        for data in copy:
            handle.write(bytes(data))


def copy_in(cursor, statement, handle):
    """Run C(statement), a COPY ... FROM STDIN, reading the binary file C(handle), with either driver."""
    if hasattr(cursor, 'copy_expert'):  # psycopg2
        cursor.copy_expert(statement, handle)
        return
    with cursor.copy(statement) as copy:  # psycopg 3
        for data in iter(lambda: handle.read(1 << 16), b''):
            copy.write(data)


class OnlineIndexError(Exception):
    """A problem an operator has to act on; the message says what and what to do."""
