# -*- coding: utf-8 -*-
"""plugins/module_utils/session/replication.py: which replicas lag beyond the thresholds, and how they are named."""

from helpers import load_module_utils

replication = load_module_utils('session.replication')

MIB = 1024 * 1024


def replica(name='standby1', state='streaming', lag_bytes=0, seconds=None, replay_lsn='0/3000000', addr='10.0.0.7'):
    return dict(pid=42, name=name, client_addr=addr, state=state, replay_lsn=replay_lsn, lag_bytes=lag_bytes,
                replay_lag_seconds=seconds)


def test_no_threshold_means_nothing_lags():
    assert replication.lagging_replicas([replica(lag_bytes=10 * 1024 * MIB, seconds=3600)]) == []


def test_a_replica_beyond_the_byte_threshold_lags_and_is_named():
    (found,) = replication.lagging_replicas([replica(lag_bytes=80 * MIB), replica('standby2', lag_bytes=MIB)],
                                            max_lag_bytes=64 * MIB)
    assert found[0]['name'] == 'standby1'
    assert found[1] == '80.0 MiB of WAL not replayed yet (threshold 64.0 MiB)'
    assert replication.describe_lagging([found]) == ('  replica "standby1" (10.0.0.7): 80.0 MiB of WAL not replayed '
                                                    'yet (threshold 64.0 MiB)')


def test_the_threshold_itself_is_still_acceptable():
    assert replication.lagging_replicas([replica(lag_bytes=64 * MIB, seconds=30.0)], 64 * MIB, 30) == []


def test_seconds_and_bytes_are_both_reported():
    (found,) = replication.lagging_replicas([replica(lag_bytes=100 * MIB, seconds=45.25)], 64 * MIB, 30)
    assert found[1] == '100.0 MiB of WAL not replayed yet (threshold 64.0 MiB); replay lag 45.2 s (threshold 30 s)'


def test_an_idle_caught_up_replica_has_no_replay_lag():
    # replay_lag turns NULL once the replica is caught up and nothing is written.
    assert replication.lagging_replicas([replica(lag_bytes=0, seconds=None)], 64 * MIB, 30) == []


def test_a_replica_not_streaming_yet_counts_as_lagging():
    (found,) = replication.lagging_replicas([replica(state='catchup', lag_bytes=None, replay_lsn=None)], 64 * MIB)
    assert found[1] == 'not streaming yet (state catchup)'


def test_wal_senders_that_replay_nothing_are_not_waited_for():
    backup = replica('pg_basebackup', state='backup', lag_bytes=None, replay_lsn=None)
    receivewal = replica('pg_receivewal', lag_bytes=None, replay_lsn=None)
    assert not replication.replays(backup) and not replication.replays(receivewal)
    assert replication.lagging_replicas([backup, receivewal], 0, 0) == []


def test_replicas_hidden_from_a_login_without_pg_read_all_stats_are_found():
    hidden = dict(pid=7, name='standby1', client_addr=None, state=None, replay_lsn=None, lag_bytes=None)
    assert replication.unreadable_replicas([hidden, replica()]) == [hidden]
    assert replication.replica_label(hidden) == '"standby1"'


def test_the_timeout_message_names_every_lagging_replica_and_what_to_do():
    lagging = replication.lagging_replicas([replica(lag_bytes=9 * MIB), replica('standby2', seconds=40)], MIB, 30)
    message = replication.timeout_message(lagging, 300.4, 300)
    assert message.startswith('2 replica(s) still lag behind the primary after waiting 300 s (wait_timeout 300 s)')
    assert 'replica "standby1" (10.0.0.7): 9.0 MiB of WAL not replayed yet (threshold 1.0 MiB)' in message
    assert 'replica "standby2" (10.0.0.7): replay lag 40.0 s (threshold 30 s)' in message
    assert 'nothing more was started' in message and 'paused replay' in message


def test_bytes_are_shown_in_readable_units():
    assert replication.human_bytes(512) == '512 bytes'
    assert replication.human_bytes(1536) == '1.5 KiB'
    assert replication.human_bytes(64 * MIB) == '64.0 MiB'
    assert replication.human_bytes(3 * 1024 * MIB) == '3.0 GiB'


def test_the_standby_query_matches_the_server_version():
    assert 'pg_get_wal_replay_pause_state()' in replication.standby_sql(150004)
    assert 'pg_is_wal_replay_paused()' in replication.standby_sql(130010)


def test_the_lag_wait_polls_until_the_replica_catches_up():
    readings = [[replica(lag_bytes=80 * MIB)], [replica(lag_bytes=80 * MIB)], [replica(lag_bytes=MIB)]]
    clock, slept = [0.0], []

    def sleep(seconds):
        slept.append(seconds)
        clock[0] += seconds
    outcome = replication.wait_within_lag(lambda query: readings.pop(0), 64 * MIB, None, 60, 5, sleep=sleep,
                                          clock=lambda: clock[0])
    assert outcome['error'] is None and outcome['lagging'] == []
    assert outcome['polls'] == 3 and slept == [5, 5] and outcome['waited_seconds'] == 10.0


def test_the_lag_wait_gives_up_at_its_timeout_naming_the_replica():
    clock = [0.0]

    def sleep(seconds):
        clock[0] += seconds
    outcome = replication.wait_within_lag(lambda query: [replica(lag_bytes=80 * MIB)], 64 * MIB, None, 12, 5,
                                          sleep=sleep, clock=lambda: clock[0])
    assert outcome['polls'] == 4 and outcome['waited_seconds'] == 12.0
    assert outcome['error'].startswith('1 replica(s) still lag behind the primary after waiting 12 s')
    assert '"standby1" (10.0.0.7): 80.0 MiB of WAL not replayed yet' in outcome['error']


def test_the_lag_wait_refuses_replicas_whose_positions_it_cannot_read():
    outcome = replication.wait_within_lag(lambda query: [replica(state=None)], 64 * MIB, None, 60, 5,
                                          login_user='migrator', sleep=lambda s: None)
    assert outcome['polls'] == 1
    assert outcome['error'].startswith('The login migrator may not read the positions of the replicas')
