# -*- coding: utf-8 -*-
# pg-zero-downtime's advisory locks: their keys, who holds them, and what a run that lost its migration lock is told.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.statements import fetch_dicts


# The advisory lock keys of pg-zero-downtime ('pgzd' as a 32-bit integer): (key, 0) is the migration lock
# of a run (postgresql_migration_lock); (key, 1) is held shared by every session running its DDL.
MIGRATION_LOCK_KEY = (1886415972, 0)
DDL_SESSION_LOCK_KEY = (1886415972, 1)


ADVISORY_LOCK_HOLDERS_QUERY = (
    "SELECT a.pid, a.application_name, a.usename, a.client_addr::text AS client_addr, "
    "a.backend_start::text AS backend_start, a.query_start::text AS query_start, a.query "
    "FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid "
    "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %(classid)s AND l.objid = %(objid)s "
    "AND l.objsubid = %(objsubid)s "
    "AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())")


def advisory_lock_holders(cursor, key, since='backend_start', with_query=False):
    """The sessions of this database that hold the advisory lock C(key).

    C(key) is the (int, int) pair of pg_advisory_lock(int, int) or the bigint of pg_advisory_lock(bigint),
    which pg_locks shows split into two 32-bit halves. Each row has pid, application_name, usename,
    client_addr and since: when the session connected (C(since=backend_start)) or began its statement
    (C(since=query_start)); with C(with_query), also the statement.
    """
    if isinstance(key, (tuple, list)):
        params = dict(classid=key[0], objid=key[1], objsubid=2)
    else:
        params = dict(classid=key >> 32, objid=key & 0xFFFFFFFF, objsubid=1)
    rows = fetch_dicts(cursor, ADVISORY_LOCK_HOLDERS_QUERY, params)
    for row in rows:
        row['since'] = row[since]
        for column in ('backend_start', 'query_start') + (() if with_query else ('query',)):
            del row[column]
    return rows


def describe_lock_holder(holder):
    return ('session pid %(pid)s (%(application_name)s; user %(usename)s, client %(client_addr)s, since %(since)s)'
            % holder)


def lock_lost_message(session_pid, current):
    """What to tell an operator whose run lost its migration lock (C(current): the holders now)."""
    text = ('this run no longer holds the migration lock of the database: the session that held it (backend pid %s) '
            'is gone, terminated (pg_terminate_backend, an administrator, a baseline query of an older version) or '
            'lost with a server restart' % session_pid)
    if current:
        text += '; %s holds it now' % describe_lock_holder(current[0])
    return text + ('. Nothing more was done, so that no other run can interleave its DDL with this one; what was '
                   'done before is kept. Find out what ended the session (the server log names it), then rerun: the '
                   'rerun takes the lock again and goes on where this run stopped.')


def migration_lock_error(cursor, session_pid):
    """Why the run whose migration lock the session C(session_pid) took no longer holds it, or None.

    Checked before each table's DDL and each constraint step: the lock lives as long as its session, and a
    session can be terminated under a run. Without the check the run would go on unlocked. 0 checks nothing.
    """
    if not session_pid:
        return None
    current = advisory_lock_holders(cursor, MIGRATION_LOCK_KEY)
    if any(holder['pid'] == session_pid for holder in current):
        return None
    return lock_lost_message(session_pid, current)
