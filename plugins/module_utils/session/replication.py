# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Streaming replication, read from a primary or a replica: the SQL, and which replicas lag too far behind.

The decisions are pure functions over plain dicts, so the unit tests run them without a server; the reads go through
a C(read(query)) callable, and replica_wait_problem() is the one wait before a build that the DDL modules share.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.statements import fetch_dicts
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.server_features import has

# The replica lag a build may start behind, unless a run sets other thresholds (doc fragment replication_lag): 64 MiB of
# WAL not replayed yet, or 30 s of replay lag; the wait polls every 5 s and gives up after 600 s.
LAG_DEFAULTS = dict(max_bytes=67108864, max_seconds=30.0, timeout=600.0, poll_interval=5.0)
REPLICATION_LAG_OPTIONS = dict(
    enabled=dict(type='bool', default=True),
    max_bytes=dict(type='int', default=LAG_DEFAULTS['max_bytes']),
    max_seconds=dict(type='float', default=LAG_DEFAULTS['max_seconds']),
    timeout=dict(type='float', default=LAG_DEFAULTS['timeout']),
    poll_interval=dict(type='float', default=LAG_DEFAULTS['poll_interval']),
)

IN_RECOVERY_SQL = ("SELECT pg_catalog.pg_is_in_recovery() AS in_recovery, "
                   "pg_catalog.current_setting('server_version_num')::int AS server_version_num")

# One row per WAL sender. The position columns are NULL for a login without pg_read_all_stats (or superuser);
# replay_lsn is NULL until the replica first reports. Intervals are turned into seconds here.
PRIMARY_REPLICAS_SQL = """
SELECT r.pid,
       r.application_name AS name,
       host(r.client_addr) AS client_addr,
       r.state,
       r.sync_state,
       s.slot_name,
       r.sent_lsn::text AS sent_lsn,
       r.replay_lsn::text AS replay_lsn,
       pg_catalog.pg_current_wal_lsn()::text AS current_lsn,
       pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), r.replay_lsn)::bigint AS lag_bytes,
       extract(epoch FROM r.write_lag)::float8 AS write_lag_seconds,
       extract(epoch FROM r.flush_lag)::float8 AS flush_lag_seconds,
       extract(epoch FROM r.replay_lag)::float8 AS replay_lag_seconds,
       r.reply_time::text AS reply_time
FROM pg_catalog.pg_stat_replication r
LEFT JOIN pg_catalog.pg_replication_slots s ON s.active_pid = r.pid
ORDER BY r.application_name, r.pid
""".strip()

# Physical slots keep WAL for a replica even while it is disconnected: what they retain fills the primary's disk.
PRIMARY_SLOTS_SQL = """
SELECT slot_name,
       active,
       restart_lsn::text AS restart_lsn,
       pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), restart_lsn)::bigint AS retained_bytes
FROM pg_catalog.pg_replication_slots
WHERE slot_type = 'physical'
ORDER BY slot_name
""".strip()

# The primary's WAL position now, its WAL file, and the server's clock: a point-in-time recovery target.
PRIMARY_LSN_SQL = ("SELECT pg_catalog.pg_current_wal_lsn()::text AS current_lsn, "
                   "pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_lsn()) AS current_wal_file, "
                   "pg_catalog.clock_timestamp() AS server_time")

STANDBY_SQL = """
SELECT pg_catalog.pg_last_wal_receive_lsn()::text AS receive_lsn,
       pg_catalog.pg_last_wal_replay_lsn()::text AS replay_lsn,
       pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_last_wal_receive_lsn(), pg_catalog.pg_last_wal_replay_lsn())::bigint
         AS replay_pending_bytes,
       %s AS replay_pause_state,
       pg_catalog.pg_last_xact_replay_timestamp()::text AS last_replay_at
""".strip()
# pg_get_wal_replay_pause_state() is PostgreSQL 14's; before it, only whether a pause was requested is known.
STANDBY_PAUSE_STATE = "pg_catalog.pg_get_wal_replay_pause_state()"
STANDBY_PAUSE_STATE_BEFORE_14 = "CASE WHEN pg_catalog.pg_is_wal_replay_paused() THEN 'paused' ELSE 'not paused' END"


def standby_sql(server_version_num):
    return STANDBY_SQL % (STANDBY_PAUSE_STATE if has(server_version_num, 'wal_replay_pause_state')
                          else STANDBY_PAUSE_STATE_BEFORE_14)


def replica_label(replica):
    """How a replica is named in messages: its application_name, and where it connects from."""
    name = replica.get('name') or 'unnamed replica (pid %s)' % replica.get('pid')
    return '"%s" (%s)' % (name, replica['client_addr']) if replica.get('client_addr') else '"%s"' % name


def human_bytes(count):
    value = float(count)
    for unit in ('bytes', 'KiB', 'MiB', 'GiB'):
        if abs(value) < 1024 or unit == 'GiB':
            return ('%d %s' % (value, unit)) if unit == 'bytes' else ('%.1f %s' % (value, unit))
        value /= 1024.0
    return '%.1f TiB' % value  # pragma: no cover


def unreadable_replicas(replicas):
    """Replicas whose positions the login may not read (not superuser nor pg_read_all_stats): state is NULL."""
    return [r for r in replicas if r.get('state') is None]


def replays(replica):
    """Whether a WAL sender feeds something that replays WAL: not a base backup, not pg_receivewal (which reports
    no replay position while streaming)."""
    return replica.get('state') != 'backup' and not (replica.get('state') == 'streaming'
                                                     and replica.get('replay_lsn') is None)


def lagging_replicas(replicas, max_lag_bytes=None, max_lag_seconds=None):
    """[(replica, reason)] of the replicas beyond a threshold; none when no threshold is set.

    A replica that is not streaming yet (startup, catchup) counts as lagging: how far behind it is cannot be
    told. WAL senders that replay nothing (see replays()) are not replicas to wait for. replay_lag is NULL once
    a caught-up replica is idle, which is no lag.
    """
    if max_lag_bytes is None and max_lag_seconds is None:
        return []
    found = []
    for replica in replicas:
        if not replays(replica):
            continue
        reasons = []
        if replica.get('state') != 'streaming' or replica.get('lag_bytes') is None:
            reasons.append('not streaming yet (state %s)' % (replica.get('state') or 'unknown'))
        else:
            if max_lag_bytes is not None and replica['lag_bytes'] > max_lag_bytes:
                reasons.append('%s of WAL not replayed yet (threshold %s)'
                               % (human_bytes(replica['lag_bytes']), human_bytes(max_lag_bytes)))
            seconds = replica.get('replay_lag_seconds')
            if max_lag_seconds is not None and seconds is not None and seconds > max_lag_seconds:
                reasons.append('replay lag %.1f s (threshold %s s)' % (seconds, _number(max_lag_seconds)))
        if reasons:
            found.append((replica, '; '.join(reasons)))
    return found


def describe_lagging(lagging):
    return '\n'.join('  replica %s: %s' % (replica_label(replica), reason) for replica, reason in lagging)


def timeout_message(lagging, waited_seconds, wait_timeout):
    return ('%d replica(s) still lag behind the primary after waiting %.0f s (wait_timeout %s s), so nothing more '
            'was started:\n%s\nLet them catch up (or find what holds their replay back: a paused replay, a long query '
            'on the replica, a slow disk or network), then rerun; work already finished is not done again.'
            % (len(lagging), waited_seconds, _number(wait_timeout), describe_lagging(lagging)))


def wait_within_lag(read, max_lag_bytes, max_lag_seconds, wait_timeout, poll_interval, login_user='the login',
                    sleep=time.sleep, clock=time.monotonic):
    """Reads the replicas (C(read(PRIMARY_REPLICAS_SQL))) until none lags beyond the thresholds, or C(wait_timeout)
    seconds have passed.

    Returns dict(replicas, lagging [(replica, reason)], polls, waited_seconds, error): C(error) says why the caller
    must not go on (replicas whose lag cannot be read, or still lagging at the deadline), else None.
    """
    thresholds = max_lag_bytes is not None or max_lag_seconds is not None
    started = clock()
    deadline = started + wait_timeout
    outcome = dict(replicas=[], lagging=[], polls=0, waited_seconds=0.0, error=None)
    while True:
        replicas = read(PRIMARY_REPLICAS_SQL)
        outcome['polls'] += 1
        outcome['replicas'] = replicas
        hidden = unreadable_replicas(replicas)
        if thresholds and hidden:
            outcome['error'] = ('The login %s may not read the positions of the replicas %s: their lag cannot be '
                                'measured, so the step that waits for them does not start. Grant it pg_monitor (or '
                                'pg_read_all_stats), or set no lag threshold.'
                                % (login_user, ', '.join(replica_label(r) for r in hidden)))
            return outcome
        outcome['lagging'] = lagging_replicas(replicas, max_lag_bytes, max_lag_seconds)
        now = clock()
        if not outcome['lagging'] or now >= deadline:
            break
        sleep(min(poll_interval, deadline - now))
    outcome['waited_seconds'] = round(clock() - started, 2) if outcome['polls'] > 1 else 0.0
    if outcome['lagging']:
        outcome['error'] = timeout_message(outcome['lagging'], outcome['waited_seconds'], wait_timeout)
    return outcome


def replica_wait_problem(connection, lag, state, check_mode, login_user, warn):
    """Before a build on C(connection): wait while a replica lags beyond C(lag) (the modules' replication_lag option,
    None or not enabled: no wait; nothing is waited for when rolling back or in check mode). Why the build must not
    start, or None."""
    if not lag or not lag['enabled'] or check_mode or state != 'present':
        return None
    cursor = connection.cursor()
    return wait_for_replicas(lambda query: fetch_dicts(cursor, query), lag, login_user, warn)


def wait_for_replicas(read, lag, login_user, warn):
    """Before a build: wait while a replica lags beyond C(lag) (the modules' replication_lag option). Returns why the
    build must not start, or None; a wait that ended in time is said through C(warn)."""
    outcome = wait_within_lag(read, lag['max_bytes'], lag['max_seconds'], lag['timeout'], lag['poll_interval'],
                              login_user=login_user)
    if outcome['error']:
        return outcome['error']
    if outcome['waited_seconds']:
        warn('Waited %.1f s for the replica(s) %s to come within the lag thresholds.' % (
            outcome['waited_seconds'], ', '.join(replica_label(r) for r in outcome['replicas'] if replays(r))))
    return None


def _number(value):
    return ('%d' % value) if float(value) == int(value) else ('%s' % value)


def read_server_role(read):
    """Whether the server is a replica (in recovery) and what it replicates: C(read(query)) returns rows.

    Returns dict(in_recovery, server_version_num, standby (a replica's replay state, else None), replicas and slots
    (a primary's WAL senders and physical slots)). Read-only.
    """
    server = read(IN_RECOVERY_SQL)[0]
    state = dict(in_recovery=bool(server['in_recovery']), server_version_num=server['server_version_num'],
                 standby=None, replicas=[], slots=[])
    if state['in_recovery']:
        state['standby'] = read(standby_sql(server['server_version_num']))[0]
    else:
        state['replicas'] = read(PRIMARY_REPLICAS_SQL)
        state['slots'] = read(PRIMARY_SLOTS_SQL)
    return state


def replica_left_out_message(target, standby):
    """Why nothing runs on a replica of the inventory, and what to do instead."""
    standby = standby or {}
    return ('replica: DDL runs only on the primary; it is used to verify. %s is in recovery (replayed up to %s, '
            'replay %s), so nothing runs there: the plan\'s indexes reach it by replication from its primary. Once '
            'the primary is done, verify them with playbooks/validate.yml --limit <this host>.'
            % (target, standby.get('replay_lsn') or '?', standby.get('replay_pause_state') or '?'))
