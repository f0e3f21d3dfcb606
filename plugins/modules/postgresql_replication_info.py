#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: postgresql_replication_info
short_description: Tell a primary from a replica, and wait while a streaming replica lags too far behind
description:
  - Read-only. Reports whether the server is in recovery (C(pg_is_in_recovery()), a replica) or not (a primary).
  - On a primary, lists every WAL sender of C(pg_stat_replication) with its replay lag in bytes
    (C(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn))) and in seconds (C(replay_lag)), and every physical
    replication slot with the WAL it retains.
  - With O(max_lag_bytes) and/or O(max_lag_seconds), it polls every O(poll_interval) seconds while any replica
    lags more than a threshold, for at most O(wait_timeout) seconds, and fails naming each replica still beyond
    it then. A replica that is not streaming yet (C(startup), C(catchup)) counts as lagging.
    A disconnected replica is not listed by the primary and so is not waited for (its slot, if any, is listed);
    nor are WAL senders that replay nothing (a base backup, C(pg_receivewal)).
  - On a replica there is nothing to wait for; it returns at once with its receive and replay positions and
    whether replay is paused.
  - The login needs the C(pg_read_all_stats) (or C(pg_monitor)) role, or superuser, to read the replicas'
    positions; without it the module fails when a threshold is given, since no lag can be measured.
version_added: '0.5.0'
options:
  login_db:
    description:
      - Name of the database to connect to (replication is per server; any database will do).
  max_lag_bytes:
    description:
      - Largest acceptable replay lag of a replica, in bytes of WAL not replayed yet. Unset, bytes are not checked.
    type: int
  max_lag_seconds:
    description:
      - Largest acceptable C(replay_lag) of a replica, in seconds. Unset, seconds are not checked.
    type: float
  wait_timeout:
    description:
      - How long to wait, in seconds, for every replica to come within the thresholds. C(0) checks once.
    type: float
    default: 0
  poll_interval:
    description:
      - Seconds between two checks while waiting.
    type: float
    default: 5
notes:
  - C(replay_lag) is measured by the primary from the replica's replies (every C(wal_receiver_status_interval),
    10 s by default, and whenever WAL arrives), so it trails reality by up to that interval; the byte lag is
    exact at each reply.
extends_documentation_fragment:
  - pg_zero_downtime.migrations.common
  - pg_zero_downtime.migrations.connection
  - community.postgresql.postgres
'''

EXAMPLES = r'''
- name: Find out whether the database is a primary
  pg_zero_downtime.migrations.postgresql_replication_info:
    login_db: app
  register: replication

- name: Wait while a replica lags more than 64 MiB or 30 s, at most 10 minutes
  pg_zero_downtime.migrations.postgresql_replication_info:
    login_db: app
    max_lag_bytes: 67108864
    max_lag_seconds: 30
    wait_timeout: 600
    poll_interval: 5
'''

RETURN = r'''
in_recovery:
  description: C(pg_is_in_recovery()) - true on a replica (hot standby), false on a primary.
  returned: always
  type: bool
server_version_num:
  description: C(server_version_num) of the server.
  returned: always
  type: int
current_lsn:
  description: C(pg_current_wal_lsn()) at the last check (primary only, else null).
  returned: always
  type: str
current_wal_file:
  description:
    - The WAL file of C(current_lsn) (C(pg_walfile_name())), primary only, else null. With C(current_lsn) and
      C(server_time) it is a point-in-time recovery target of this moment (roles/backup records one right before the
      first DDL of a run whose backup_mode includes archive).
  returned: always
  type: str
  version_added: '0.19.0'
server_time:
  description: The server's clock (C(clock_timestamp())) when C(current_lsn) was read, ISO 8601 (primary only, else null).
  returned: always
  type: str
  sample: '2026-12-04T03:00:07.123456+00:00'
  version_added: '0.19.0'
replicas:
  description: The WAL senders of a primary at the last check (empty on a replica).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: C(application_name) of the replica's WAL receiver (its C(cluster_name) unless set otherwise).
      type: str
    client_addr:
      description: Address the replica connects from (null over a Unix socket).
      type: str
    state:
      description: C(startup), C(catchup), C(streaming), C(backup) or C(stopping); null without the privilege to read it.
      type: str
    sync_state:
      description: C(async), C(potential), C(sync) or C(quorum).
      type: str
    slot_name:
      description: Replication slot the replica streams from, if any.
      type: str
    sent_lsn:
      description: Last WAL position sent.
      type: str
    replay_lsn:
      description: Last WAL position the replica reported replayed.
      type: str
    lag_bytes:
      description: Bytes of WAL between the primary's current position and the replica's replay position.
      type: int
    replay_lag_seconds:
      description: C(replay_lag) in seconds (null when idle and caught up).
      type: float
    write_lag_seconds:
      description: C(write_lag) in seconds.
      type: float
    flush_lag_seconds:
      description: C(flush_lag) in seconds.
      type: float
slots:
  description: Physical replication slots of a primary, with C(retained_bytes) of WAL each one holds back.
  returned: always
  type: list
  elements: dict
standby:
  description:
    - On a replica, C(receive_lsn), C(replay_lsn), C(replay_pending_bytes) (received but not replayed),
      C(replay_pause_state) (C(not paused), C(pause requested), C(paused)) and C(last_replay_at); null on a primary.
  returned: always
  type: dict
lagging:
  description: The replicas beyond a threshold at the last check, each with C(name), C(client_addr) and C(reason).
  returned: always
  type: list
  elements: dict
waited_seconds:
  description: How long the module waited for lagging replicas.
  returned: always
  type: float
polls:
  description: How many times the replicas were read.
  returned: always
  type: int
queries:
  description: The SQL statements run (each once), all read-only.
  returned: always
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.connection import (
    connect_or_fail, connection_argument_spec,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.statements import fetch_dicts
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.replication import (
    IN_RECOVERY_SQL,
    PRIMARY_LSN_SQL,
    PRIMARY_SLOTS_SQL,
    replays,
    replica_label,
    standby_sql,
    wait_within_lag,
)


class ReplicationReader(object):
    """Runs the read-only queries and remembers each statement once, for the result's C(queries)."""

    def __init__(self, cursor):
        self.cursor = cursor
        self.queries = []

    def read(self, query):
        if query not in self.queries:
            self.queries.append(query)
        return fetch_dicts(self.cursor, query)


def main():
    argument_spec = connection_argument_spec(
        max_lag_bytes=dict(type='int'),
        max_lag_seconds=dict(type='float'),
        wait_timeout=dict(type='float', default=0),
        poll_interval=dict(type='float', default=5),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    for option in ('max_lag_bytes', 'max_lag_seconds', 'wait_timeout'):
        if params[option] is not None and params[option] < 0:
            module.fail_json(msg='%s must be 0 or more, not %s' % (option, params[option]))
    if params['poll_interval'] <= 0:
        module.fail_json(msg='poll_interval must be more than 0, not %s' % params['poll_interval'])
    connection = connect_or_fail(module)
    reader = ReplicationReader(connection.cursor())

    server = reader.read(IN_RECOVERY_SQL)[0]
    result = dict(changed=False, in_recovery=bool(server['in_recovery']), server_version_num=server['server_version_num'],
                  current_lsn=None, current_wal_file=None, server_time=None, replicas=[], slots=[], standby=None, lagging=[], waited_seconds=0.0, polls=0,
                  queries=reader.queries)
    if result['in_recovery']:
        result['standby'] = reader.read(standby_sql(server['server_version_num']))[0]
        connection.close()
        module.exit_json(**result)

    outcome = wait_within_lag(reader.read, params['max_lag_bytes'], params['max_lag_seconds'],
                              params['wait_timeout'], params['poll_interval'], login_user=params['login_user'])
    result['polls'] = outcome['polls']
    result['replicas'] = [dict((k, v) for k, v in r.items() if k not in ('pid', 'current_lsn', 'reply_time'))
                          for r in outcome['replicas']]
    result['lagging'] = [dict(name=r['name'], client_addr=r['client_addr'], reason=reason)
                         for r, reason in outcome['lagging']]
    result['waited_seconds'] = outcome['waited_seconds']
    if outcome['error'] and not outcome['lagging']:  # positions not readable: no lag can be measured
        connection.close()
        module.fail_json(msg=outcome['error'], **result)
    replicas = outcome['replicas']
    position = reader.read(PRIMARY_LSN_SQL)[0]
    result.update(current_lsn=position['current_lsn'], current_wal_file=position['current_wal_file'],
                  server_time=position['server_time'].isoformat())
    result['slots'] = reader.read(PRIMARY_SLOTS_SQL)
    connection.close()
    if outcome['error']:
        module.fail_json(msg=outcome['error'], **result)
    if result['waited_seconds']:
        module.warn('Waited %.1f s for the replica(s) %s to come within the lag thresholds.'
                    % (result['waited_seconds'], ', '.join(replica_label(r) for r in replicas if replays(r))))
    module.exit_json(**result)


if __name__ == '__main__':
    main()
