# -*- coding: utf-8 -*-
"""plugins/module_utils/evidence/archive_proof.py: what pg_stat_archiver's row and a backup tool's JSON listing
(pgbackrest info --output=json, wal-g backup-list --json --detail) prove of point-in-time recovery; no server needed.

The listings below have the shapes the tools print: pgbackrest's src/command/info/info.c (a list of stanzas, each with
its db history, backups with a label, a type, a timestamp {start, stop} in epoch seconds, an error flag when known, and
a status {code, message}), and WAL-G's BackupDetail (backup_name, time, wal_file_name, storage_name, then with --detail
start_time, finish_time, ...; Go writes times as RFC 3339 with nanoseconds, and a time the metadata lacks as
0001-01-01T00:00:00Z)."""

import datetime
import json

from helpers import load_module_utils

archive_proof = load_module_utils('evidence.archive_proof')

UTC = datetime.timezone.utc
NOW = datetime.datetime(2026, 12, 4, 3, 0, 0, tzinfo=UTC)
FIFTEEN_MINUTES = 900


def seconds_ago(seconds):
    return NOW - datetime.timedelta(seconds=seconds)


def archiver(**changes):
    """pg_stat_archiver's row as ARCHIVER_SQL reads it, of a primary that archived a segment a minute ago."""
    row = dict(archive_mode='on', in_recovery=False, archived_count=42, last_archived_wal='00000001000000000000002A',
               last_archived_time=seconds_ago(60), failed_count=0, last_failed_wal=None, last_failed_time=None,
               stats_reset=datetime.datetime(2026, 12, 1, 0, 0, 0, tzinfo=UTC), server_time=NOW)
    row.update(changes)
    return row


def problem(**changes):
    return archive_proof.archiver_problem(archiver(**changes), FIFTEEN_MINUTES, '15m')


# -- pg_stat_archiver ----------------------------------------------------------------------------------------

def test_a_recent_archive_with_no_failure_proves_archiving():
    assert problem() is None
    assert problem(archive_mode='always') is None


def test_a_replica_is_refused_whatever_its_archiver_says():
    message = problem(in_recovery=True)
    assert message.startswith('The server is a replica (in recovery)')
    assert message.endswith('Point the run at the primary.')


def test_archive_mode_off_is_refused_with_the_ways_to_prove_recovery():
    message = problem(archive_mode='off')
    assert message.startswith('archive_mode is off on the server: its WAL is not archived')
    assert 'backup_archive_command (pgbackrest info --output=json, wal-g backup-list --json)' in message
    assert 'choose backup_mode=schema or full' in message and message.endswith('Nothing was changed.')


def test_nothing_archived_yet_is_refused_and_says_how_often_it_failed():
    never = problem(last_archived_wal=None, last_archived_time=None, archived_count=0)
    assert never.startswith('archive_mode is on but the server has archived no WAL segment yet (pg_stat_archiver): '
                            'nothing proves archiving works. Force one with SELECT pg_switch_wal()')
    failing = problem(last_archived_wal=None, last_archived_time=None, archived_count=0, failed_count=3,
                      last_failed_wal='000000010000000000000001', last_failed_time=seconds_ago(5))
    assert '(pg_stat_archiver, failed 3 times)' in failing


def test_a_failure_after_the_last_success_is_refused_with_both_segments_and_times():
    message = problem(failed_count=3, last_failed_wal='00000001000000000000002B', last_failed_time=seconds_ago(30))
    assert message == (
        "WAL archiving is failing: the archiver's last attempt, on 00000001000000000000002B at "
        "2026-12-04T02:59:30+00:00, failed after its last success (00000001000000000000002A at "
        "2026-12-04T02:59:00+00:00; 3 failures since the statistics were reset). Fix archive_command (the server log "
        "says why it failed), wait for the archiver to catch up, and rerun. Nothing was changed.")


def test_a_failure_before_or_at_the_last_success_is_past():
    before = problem(failed_count=1, last_failed_wal='000000010000000000000029', last_failed_time=seconds_ago(120))
    assert before is None
    at = problem(failed_count=1, last_failed_wal='00000001000000000000002A', last_failed_time=seconds_ago(60))
    assert at is None


def test_an_archive_exactly_at_the_bound_is_fresh_and_a_second_older_is_stale():
    assert problem(last_archived_time=seconds_ago(FIFTEEN_MINUTES)) is None
    stale = problem(last_archived_time=seconds_ago(FIFTEEN_MINUTES + 1))
    assert stale == (
        'The archive is stale: the last WAL segment archived, 00000001000000000000002A, was archived 15 min ago '
        '(2026-12-04T02:44:59+00:00), more than backup_archive_max_age (15m). On a quiet database set '
        'backup_archive_switch_wal=true (the proof then closes a segment itself) or force one with SELECT '
        'pg_switch_wal(); else check the archiver in the server log. Then rerun. Nothing was changed.')


def test_the_age_of_a_stale_archive_reads_in_the_unit_that_fits():
    assert 'archived 3.0 h ago' in problem(last_archived_time=seconds_ago(3 * 3600))
    assert 'archived 3.0 days ago' in problem(last_archived_time=seconds_ago(3 * 86400))
    assert 'was archived 100 s ago' in archive_proof.archiver_problem(archiver(last_archived_time=seconds_ago(100)),
                                                                      30, '30s')


def test_the_evidence_keeps_the_counts_and_segments_with_times_as_text():
    evidence = archive_proof.archiver_evidence(archiver(failed_count=1, last_failed_wal='000000010000000000000029',
                                                        last_failed_time=seconds_ago(120)))
    assert evidence == dict(archive_mode='on', archived_count=42, last_archived_wal='00000001000000000000002A',
                            failed_count=1, last_failed_wal='000000010000000000000029',
                            last_archived_time='2026-12-04T02:59:00+00:00',
                            last_failed_time='2026-12-04T02:58:00+00:00',
                            stats_reset='2026-12-01T00:00:00+00:00', age_seconds=60.0)
    json.dumps(evidence)  # it goes into the module's result as is
    never = archive_proof.archiver_evidence(archiver(last_archived_wal=None, last_archived_time=None, stats_reset=None))
    assert never['last_archived_time'] is None and never['age_seconds'] is None and never['stats_reset'] is None


def test_a_switched_segment_is_archived_when_it_or_a_later_one_was():
    row = archiver()
    assert archive_proof.switched_segment_state(row, '00000001000000000000002A') == 'archived'
    assert archive_proof.switched_segment_state(row, '000000010000000000000029') == 'archived'
    assert archive_proof.switched_segment_state(row, '00000001000000000000002B') == 'waiting'


def test_a_switched_segment_failed_when_a_failure_came_after_the_last_success_or_there_was_none():
    failing = archiver(failed_count=1, last_failed_wal='00000001000000000000002B', last_failed_time=seconds_ago(1))
    assert archive_proof.switched_segment_state(failing, '00000001000000000000002B') == 'failed'
    never = archiver(last_archived_wal=None, last_archived_time=None, failed_count=1,
                     last_failed_wal='000000010000000000000001', last_failed_time=seconds_ago(1))
    assert archive_proof.switched_segment_state(never, '000000010000000000000001') == 'failed'
    past_failure = archiver(failed_count=1, last_failed_wal='000000010000000000000029',
                            last_failed_time=seconds_ago(600))
    assert archive_proof.switched_segment_state(past_failure, '00000001000000000000002B') == 'waiting'
    idle = archiver(last_archived_wal=None, last_archived_time=None)
    assert archive_proof.switched_segment_state(idle, '000000010000000000000001') == 'waiting'


def test_the_switch_timeout_names_the_segment_and_the_last_archived():
    message = archive_proof.switch_wait_message('00000001000000000000002B', 61.4, archiver())
    assert message.startswith('WAL archiving did not archive 00000001000000000000002B within 61 s of the switch that '
                              'closed it (the last archived is 00000001000000000000002A)')


# -- times as the tools write them ---------------------------------------------------------------------------

def test_iso_times_in_utc_with_offsets_and_any_fraction_are_read_as_aware_datetimes():
    moment = datetime.datetime(2026, 12, 4, 1, 2, 3, tzinfo=UTC)
    assert archive_proof.parse_time('2026-12-04T01:02:03Z') == moment
    assert archive_proof.parse_time('2026-12-04T03:02:03+02:00') == moment
    assert archive_proof.parse_time('2026-12-03T19:32:03-0530') == moment
    assert archive_proof.parse_time('2026-12-04 01:02:03') == moment  # no zone: UTC
    assert archive_proof.parse_time('2026-12-04T01:02:03Z').utcoffset() == datetime.timedelta(0)
    assert archive_proof.parse_time('2026-12-04T01:02:03+02:00').utcoffset() == datetime.timedelta(hours=2)


def test_nanoseconds_are_cut_to_microseconds_and_short_fractions_padded():
    assert archive_proof.parse_time('2026-12-04T01:02:03.123456789Z').microsecond == 123456
    assert archive_proof.parse_time('2026-12-04T01:02:03.5Z').microsecond == 500000
    assert archive_proof.parse_time('2026-12-04T01:02:03Z').microsecond == 0


def test_what_is_not_a_time_reads_as_none():
    for text in ('yesterday', '', None, '2026-12-04', '2026-12-04T01:02Z', '04/12/2026 01:02:03',
                 '2026-12-04T01:02:03Z trailing'):
        assert archive_proof.parse_time(text) is None, text


# -- pgbackrest info --output=json ---------------------------------------------------------------------------

# One stanza after a stanza-upgrade from PostgreSQL 14 (db id 1) to 15 (db id 2, a new system id, as pg_upgrade makes):
# a full backup of 14, a full and a differential of 15, and an incremental of 15 with page checksum errors.
PGBACKREST_INFO = '''[
  {
    "archive": [
      {"database": {"id": 1, "repo-key": 1}, "id": "14-1", "max": "00000001000000000000000C",
       "min": "000000010000000000000001"},
      {"database": {"id": 2, "repo-key": 1}, "id": "15-2", "max": "00000001000000000000002A",
       "min": "000000010000000000000010"}
    ],
    "backup": [
      {"archive": {"start": "000000010000000000000002", "stop": "000000010000000000000002"},
       "backrest": {"format": 5, "version": "2.54.0"}, "database": {"id": 1, "repo-key": 1},
       "info": {"delta": 31457280, "repository": {"delta": 4194304, "size": 4194304}, "size": 31457280},
       "label": "20261120-010000F", "lsn": {"start": "0/2000028", "stop": "0/2000100"}, "prior": null,
       "reference": null, "timestamp": {"start": 1795136400, "stop": 1795137600}, "type": "full", "error": false},
      {"archive": {"start": "000000010000000000000010", "stop": "000000010000000000000010"},
       "backrest": {"format": 5, "version": "2.54.0"}, "database": {"id": 2, "repo-key": 1},
       "info": {"delta": 33554432, "repository": {"delta": 4456448, "size": 4456448}, "size": 33554432},
       "label": "20261203-010000F", "lsn": {"start": "0/10000028", "stop": "0/10000138"}, "prior": null,
       "reference": null, "timestamp": {"start": 1796259600, "stop": 1796260170}, "type": "full", "error": false},
      {"archive": {"start": "000000010000000000000020", "stop": "000000010000000000000020"},
       "backrest": {"format": 5, "version": "2.54.0"}, "database": {"id": 2, "repo-key": 1},
       "info": {"delta": 1048576, "repository": {"delta": 131072, "size": 4456448}, "size": 33554432},
       "label": "20261203-010000F_20261203-210000D", "lsn": {"start": "0/20000028", "stop": "0/20000138"},
       "prior": "20261203-010000F", "reference": ["20261203-010000F"],
       "timestamp": {"start": 1796331600, "stop": 1796331700}, "type": "diff", "error": false},
      {"archive": {"start": "000000010000000000000028", "stop": "000000010000000000000028"},
       "backrest": {"format": 5, "version": "2.54.0"}, "database": {"id": 2, "repo-key": 1},
       "info": {"delta": 65536, "repository": {"delta": 8192, "size": 4456448}, "size": 33554432},
       "label": "20261203-010000F_20261204-010000I", "lsn": {"start": "0/28000028", "stop": "0/28000138"},
       "prior": "20261203-010000F_20261203-210000D",
       "reference": ["20261203-010000F", "20261203-010000F_20261203-210000D"],
       "timestamp": {"start": 1796346000, "stop": 1796346020}, "type": "incr", "error": true}
    ],
    "cipher": "none",
    "db": [
      {"id": 1, "repo-key": 1, "system-id": 7300000000000000001, "version": "14"},
      {"id": 2, "repo-key": 1, "system-id": 7310000000000000002, "version": "15"}
    ],
    "name": "main",
    "repo": [{"cipher": "none", "key": 1, "status": {"code": 0, "message": "ok"}}],
    "status": {"code": 0, "lock": {"backup": {"held": false}, "restore": {"held": false}}, "message": "ok"}
  }
]'''

PGBACKREST = 'pgbackrest --stanza=main info --output=json'
TWO_DAYS = 2 * 86400


def pgbackrest_info(**stanza_changes):
    listing = json.loads(PGBACKREST_INFO)
    listing[0].update(stanza_changes)
    return listing


def test_pgbackrest_lists_the_good_backups_of_the_current_database():
    backups, problems = archive_proof.pgbackrest_backups(pgbackrest_info())
    assert problems == []
    assert backups == [
        dict(tool='pgbackrest', stanza='main', name='20261203-010000F', type='full',
             time=datetime.datetime(2026, 12, 3, 1, 9, 30, tzinfo=UTC)),
        dict(tool='pgbackrest', stanza='main', name='20261203-010000F_20261203-210000D', type='diff',
             time=datetime.datetime(2026, 12, 3, 21, 1, 40, tzinfo=UTC))]


def test_a_pgbackrest_backup_with_checksum_errors_is_not_proof():
    listing = pgbackrest_info()
    names = [backup['name'] for backup in archive_proof.pgbackrest_backups(listing)[0]]
    assert '20261203-010000F_20261204-010000I' not in names
    del listing[0]['backup'][3]['error']  # pgbackrest leaves the flag out when it does not know
    names = [backup['name'] for backup in archive_proof.pgbackrest_backups(listing)[0]]
    assert names[-1] == '20261203-010000F_20261204-010000I'


def test_the_backups_of_the_database_before_a_stanza_upgrade_are_not_proof():
    # Only the PostgreSQL 14 backup: it cannot recover the PostgreSQL 15 cluster the run changes.
    listing = pgbackrest_info()
    listing[0]['backup'] = listing[0]['backup'][:1]
    listing[0]['backup'][0]['timestamp'] = dict(start=1796346000, stop=1796346020)  # even when recent
    assert archive_proof.pgbackrest_backups(listing) == ([], [])
    newest, message = archive_proof.command_problem(PGBACKREST, listing, NOW, TWO_DAYS, '2d')
    assert newest is None and message.startswith(PGBACKREST + ' lists no finished backup')


def test_db_ids_of_the_same_system_and_version_are_one_database():
    # A stanza-upgrade back and forth (db ids 1 and 3 are one cluster): pgbackrest info shows them as one, current.
    listing = pgbackrest_info()
    listing[0]['db'].append({'id': 3, 'repo-key': 1, 'system-id': 7300000000000000001, 'version': '14'})
    names = [backup['name'] for backup in archive_proof.pgbackrest_backups(listing)[0]]
    assert names == ['20261120-010000F']


def test_a_listing_without_the_db_history_counts_every_good_backup():
    # A listing that names no database (a minimal one, as a wrapper may print): nothing tells a prior database apart.
    listing = [dict(name='main', status=dict(code=0, message='ok'), backup=[
        dict(label='20261204-010000F', type='full', timestamp=dict(start=1796346000, stop=1796346020))])]
    assert [backup['name'] for backup in archive_proof.pgbackrest_backups(listing)[0]] == ['20261204-010000F']


def test_a_pgbackrest_stanza_whose_status_is_not_ok_is_a_problem():
    listing = pgbackrest_info(status=dict(code=2, message='no valid backups', lock=dict(backup=dict(held=False))),
                              backup=[])
    assert archive_proof.pgbackrest_backups(listing) == ([], ['stanza main: no valid backups (code 2)'])
    newest, message = archive_proof.command_problem(PGBACKREST, listing, NOW, TWO_DAYS, '2d')
    assert newest is None
    assert message == ('pgbackrest --stanza=main info --output=json does not prove a recent backup: stanza main: no '
                       'valid backups (code 2). Fix the backup tool (or backup_archive_command) and rerun. Nothing was '
                       'changed.')


def test_a_pgbackrest_problem_refuses_even_beside_a_fresh_backup_of_another_stanza():
    listing = pgbackrest_info() + [dict(json.loads(PGBACKREST_INFO)[0], name='reports', backup=[], db=[], archive=[],
                                        status=dict(code=1, message='missing stanza path'))]
    newest, message = archive_proof.command_problem(PGBACKREST, listing, NOW, TWO_DAYS, '2d')
    assert newest['name'] == '20261203-010000F_20261203-210000D'
    assert 'stanza reports: missing stanza path (code 1)' in message


# -- wal-g backup-list --json --detail -----------------------------------------------------------------------

WALG_LIST = '''[
  {"backup_name": "base_000000010000000000000010", "time": "2026-12-03T01:09:31.204918733Z",
   "wal_file_name": "000000010000000000000010", "storage_name": "default",
   "start_time": "2026-12-03T01:00:00.118532Z", "finish_time": "2026-12-03T01:09:30.877213904Z",
   "date_fmt": "%Y-%m-%dT%H:%M:%S.%fZ", "hostname": "db1", "data_dir": "/var/lib/postgresql/15/main",
   "pg_version": 150010, "start_lsn": 268435496, "finish_lsn": 268435768, "is_permanent": false,
   "system_identifier": 7310000000000000002, "uncompressed_size": 33554432, "compressed_size": 4456448},
  {"backup_name": "base_000000010000000000000028_D_000000010000000000000010", "time": "2026-12-04T01:00:21.933Z",
   "wal_file_name": "000000010000000000000028", "storage_name": "default",
   "start_time": "2026-12-04T02:00:00.5+01:00", "finish_time": "2026-12-04T02:00:20.410052+01:00",
   "date_fmt": "%Y-%m-%dT%H:%M:%S.%fZ", "hostname": "db1", "data_dir": "/var/lib/postgresql/15/main",
   "pg_version": 150010, "start_lsn": 671088680, "finish_lsn": 671088952, "is_permanent": false,
   "system_identifier": 7310000000000000002, "uncompressed_size": 65536, "compressed_size": 8192}
]'''

WALG = 'wal-g backup-list --json --detail'


def test_walg_reads_the_finish_time_of_each_backup_rather_than_its_upload_time():
    backups = archive_proof.walg_backups(json.loads(WALG_LIST))
    assert [backup['name'] for backup in backups] == ['base_000000010000000000000010',
                                                      'base_000000010000000000000028_D_000000010000000000000010']
    assert backups[0]['time'] == datetime.datetime(2026, 12, 3, 1, 9, 30, 877213, tzinfo=UTC)
    assert backups[1]['time'] == datetime.datetime(2026, 12, 4, 1, 0, 20, 410052, tzinfo=UTC)
    assert all(backup['tool'] == 'wal-g' for backup in backups)


def test_walg_without_detail_reads_the_time():
    plain = [dict((key, backup[key]) for key in ('backup_name', 'time', 'wal_file_name', 'storage_name'))
             for backup in json.loads(WALG_LIST)]
    assert archive_proof.walg_backups(plain)[1]['time'] == datetime.datetime(2026, 12, 4, 1, 0, 21, 933000, tzinfo=UTC)


def test_walg_zero_times_of_missing_metadata_fall_back_to_the_time():
    # WAL-G writes a time its metadata lacks as Go's zero time: read as a time, a fresh backup would be 2025 years old.
    listing = [dict(json.loads(WALG_LIST)[1], start_time='0001-01-01T00:00:00Z', finish_time='0001-01-01T00:00:00Z')]
    uploaded = datetime.datetime(2026, 12, 4, 1, 0, 21, 933000, tzinfo=UTC)
    assert archive_proof.walg_backups(listing)[0]['time'] == uploaded
    assert archive_proof.command_problem(WALG, listing, NOW, TWO_DAYS, '2d')[1] is None
    unknown = [dict(listing[0], time='0001-01-01T00:00:00Z')]
    assert archive_proof.walg_backups(unknown) == []


def test_a_walg_backup_without_a_readable_time_is_left_out():
    listing = json.loads(WALG_LIST)
    listing[0]['finish_time'] = listing[0]['time'] = 'soon'
    assert [backup['name'] for backup in archive_proof.walg_backups(listing)] == [
        'base_000000010000000000000028_D_000000010000000000000010']


# -- which tool, and whether its newest backup is recent -----------------------------------------------------

def test_the_tool_is_told_by_the_shape_of_its_listing():
    assert archive_proof.listed_backups(pgbackrest_info())[0][0]['tool'] == 'pgbackrest'
    assert archive_proof.listed_backups(json.loads(WALG_LIST))[0][0]['tool'] == 'wal-g'


def test_a_pgbackrest_listing_at_detail_level_progress_lists_no_backup():
    # pgbackrest info --output=json --detail-level=progress: each stanza's name and status, no backup list.
    listing = [dict(name='main', status=dict(code=0, message='ok'))]
    assert archive_proof.listed_backups(listing) == ([], [])
    newest, message = archive_proof.command_problem('pgbackrest info', listing, NOW, TWO_DAYS, '2d')
    assert newest is None and message.startswith('pgbackrest info lists no finished backup')


def test_a_listing_of_neither_tool_is_a_problem():
    assert archive_proof.listed_backups(dict(backups=[])) == (
        [], ['its output is not a JSON list of stanzas (pgbackrest) or of backups (wal-g)'])
    assert archive_proof.listed_backups('20261203-010000F') == (
        [], ['its output is not a JSON list of stanzas (pgbackrest) or of backups (wal-g)'])
    assert archive_proof.listed_backups([dict(id=1, created='2026-12-03')]) == (
        [], ['its output is neither pgbackrest info --output=json nor wal-g backup-list --json'])
    assert archive_proof.listed_backups([1, 2]) == (
        [], ['its output is neither pgbackrest info --output=json nor wal-g backup-list --json'])


def test_an_empty_listing_lists_no_backup_without_a_problem():
    # What wal-g backup-list --json prints with no backup, and pgbackrest info --output=json with no stanza.
    assert archive_proof.listed_backups([]) == ([], [])
    newest, message = archive_proof.command_problem(WALG, [], NOW, TWO_DAYS, '2d')
    assert newest is None
    assert message == ('wal-g backup-list --json --detail lists no finished backup: point-in-time recovery needs a '
                       'base backup. Take one with your backup tool and rerun. Nothing was changed.')


def test_a_fresh_newest_backup_is_proof():
    newest, message = archive_proof.command_problem(PGBACKREST, pgbackrest_info(), NOW, TWO_DAYS, '2d')
    assert message is None and newest['name'] == '20261203-010000F_20261203-210000D'
    newest, message = archive_proof.command_problem(WALG, json.loads(WALG_LIST), NOW, TWO_DAYS, '2d')
    assert message is None and newest['name'] == 'base_000000010000000000000028_D_000000010000000000000010'
    assert archive_proof.backup_evidence(newest) == dict(
        tool='wal-g', name='base_000000010000000000000028_D_000000010000000000000010',
        time='2026-12-04T02:00:20.410052+01:00')  # in the zone the tool wrote
    assert archive_proof.backup_evidence(None) is None


def test_a_newest_backup_older_than_the_bound_is_refused_with_its_name_age_and_time():
    newest, message = archive_proof.command_problem(PGBACKREST, pgbackrest_info(), NOW, 4 * 3600, '4h')
    assert newest['name'] == '20261203-010000F_20261203-210000D'
    assert message == ('The newest backup pgbackrest --stanza=main info --output=json lists, '
                       '20261203-010000F_20261203-210000D, finished 6.0 h ago (2026-12-03T21:01:40+00:00), more than '
                       'backup_base_backup_max_age (4h). Take a fresh base backup with your backup tool (or raise the '
                       'bound) and rerun. Nothing was changed.')
    at_bound = (NOW - newest['time']).total_seconds()
    assert archive_proof.command_problem(PGBACKREST, pgbackrest_info(), NOW, at_bound, 'exact')[1] is None
