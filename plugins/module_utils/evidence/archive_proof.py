# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Proof that the database's own point-in-time recovery covers this moment (backup_mode=archive): the server archives
its WAL (pg_stat_archiver: archive_mode on, a segment archived recently, no failure since), and/or a backup tool's
listing (pgbackrest info --output=json, wal-g backup-list --json) has a base backup newer than a bound.

Pure functions over the archiver's row and the tool's parsed JSON; postgresql_backup reads them and refuses the run
before any DDL with the problem these functions name.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import re

# pg_stat_archiver is readable by every role; archive_mode is not a secret (archive_command may be, so it is not read).
ARCHIVER_SQL = """
SELECT pg_catalog.current_setting('archive_mode') AS archive_mode,
       pg_catalog.pg_is_in_recovery() AS in_recovery,
       a.archived_count, a.last_archived_wal, a.last_archived_time,
       a.failed_count, a.last_failed_wal, a.last_failed_time, a.stats_reset,
       pg_catalog.now() AS server_time
FROM pg_catalog.pg_stat_archiver a
""".strip()

# The point-in-time recovery target: recovery_target_lsn (and the time, for recovery_target_time) of this moment.
PITR_TARGET_SQL = ("SELECT pg_catalog.pg_current_wal_lsn()::text AS lsn, "
                   "pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_lsn()) AS wal_file, "
                   "pg_catalog.clock_timestamp() AS time")

# archive_switch_wal: write one WAL record (a logical message, no table or catalog change: a switch with no WAL since
# the last one closes nothing), close the segment that holds it and name it; the archiver must then archive it.
# pg_switch_wal needs superuser or EXECUTE on it.
PROOF_RECORD_SQL = "SELECT pg_catalog.pg_logical_emit_message(false, 'pg-zero-downtime', 'archive proof')"
SWITCH_WAL_SQL = "SELECT pg_catalog.pg_walfile_name(pg_catalog.pg_switch_wal()) AS wal_file"
# pg_stat_archiver is read from a snapshot kept until the end of the transaction, or until cleared.
CLEAR_SNAPSHOT_SQL = 'SELECT pg_catalog.pg_stat_clear_snapshot()'
SWITCH_WAIT_SECONDS = 60

NOT_VERIFIED = [
    'no base backup was restored and no WAL was replayed: only a restore proves a point-in-time recovery',
    'the archived WAL files were not read back (their presence and checksums are the archive\'s and the tool\'s job)',
]


def _ago(seconds):
    if seconds < 120:
        return '%d s' % seconds
    if seconds < 7200:
        return '%d min' % (seconds // 60)
    if seconds < 172800:
        return '%.1f h' % (seconds / 3600.0)
    return '%.1f days' % (seconds / 86400.0)


def archiver_problem(row, max_age_seconds, max_age_text):
    """Why pg_stat_archiver's C(row) (ARCHIVER_SQL, datetimes aware) does not prove WAL archiving works now, or None."""
    if row['in_recovery']:
        return ('The server is a replica (in recovery): point-in-time recovery is proven on the primary, where the '
                'migration runs. Point the run at the primary.')
    if row['archive_mode'] == 'off':
        return ('archive_mode is off on the server: its WAL is not archived, so point-in-time recovery cannot cover '
                'this run. Turn WAL archiving on (archive_mode = on with an archive_command or archive_library; a '
                'restart), or name your backup tool\'s listing in backup_archive_command (pgbackrest info '
                '--output=json, wal-g backup-list --json), or choose backup_mode=schema or full. Nothing was changed.')
    if row['last_archived_time'] is None:
        return ('archive_mode is %s but the server has archived no WAL segment yet (pg_stat_archiver%s): nothing proves '
                'archiving works. Force one with SELECT pg_switch_wal(), check the archiver in the server log, and '
                'rerun. Nothing was changed.'
                % (row['archive_mode'], ', failed %d times' % row['failed_count'] if row['failed_count'] else ''))
    if row['last_failed_time'] is not None and row['last_failed_time'] > row['last_archived_time']:
        return ('WAL archiving is failing: the archiver\'s last attempt, on %s at %s, failed after its last success (%s '
                'at %s; %d failures since the statistics were reset). Fix archive_command (the server log says why '
                'it failed), wait for the archiver to catch up, and rerun. Nothing was changed.'
                % (row['last_failed_wal'], row['last_failed_time'].isoformat(), row['last_archived_wal'],
                   row['last_archived_time'].isoformat(), row['failed_count']))
    age = (row['server_time'] - row['last_archived_time']).total_seconds()
    if age > max_age_seconds:
        return ('The archive is stale: the last WAL segment archived, %s, was archived %s ago (%s), more than '
                'backup_archive_max_age (%s). On a quiet database set backup_archive_switch_wal=true (the proof then '
                'closes a segment itself) or force one with SELECT pg_switch_wal(); else check the archiver in the '
                'server log. Then rerun. Nothing was changed.'
                % (row['last_archived_wal'], _ago(age), row['last_archived_time'].isoformat(), max_age_text))
    return None


def switched_segment_state(row, wal_file):
    """Where the archiver is with the segment C(wal_file) a switch closed: 'archived' (it or a later one was),
    'failed' (its last attempt failed after the last success), or 'waiting'."""
    if row['last_archived_wal'] is not None and row['last_archived_wal'] >= wal_file:
        return 'archived'
    if row['last_failed_time'] is not None and (row['last_archived_time'] is None
                                                or row['last_failed_time'] > row['last_archived_time']):
        return 'failed'
    return 'waiting'


def switch_wait_message(wal_file, waited, row):
    return ('WAL archiving did not archive %s within %d s of the switch that closed it (the last archived is %s): the '
            'archiver is behind or stuck. Check it in the server log, and rerun. Nothing was changed.'
            % (wal_file, waited, row['last_archived_wal']))


def archiver_evidence(row):
    """What the archiver said, for the result and the report (times as ISO text)."""
    kept = ('archive_mode', 'archived_count', 'last_archived_wal', 'failed_count', 'last_failed_wal')
    evidence = dict((key, row[key]) for key in kept)
    for key in ('last_archived_time', 'last_failed_time', 'stats_reset'):
        evidence[key] = row[key].isoformat() if row[key] is not None else None
    evidence['age_seconds'] = (round((row['server_time'] - row['last_archived_time']).total_seconds(), 1)
                               if row['last_archived_time'] is not None else None)
    return evidence


# -- a backup tool's listing ---------------------------------------------------------------------------------

def parse_time(text):
    """An aware datetime of an ISO 8601 time as WAL-G writes it (2026-12-04T01:02:03.123456789Z)."""
    found = re.match(r'^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:?\d{2})?$', text or '')
    if not found:
        return None
    moment = datetime.datetime.strptime('%s %s' % found.group(1, 2), '%Y-%m-%d %H:%M:%S')
    moment = moment.replace(microsecond=int((found.group(3) or '0')[:6].ljust(6, '0')))
    zone = found.group(4) or 'Z'
    if zone == 'Z':
        offset = datetime.timedelta(0)
    else:
        digits = zone.replace(':', '')
        offset = datetime.timedelta(hours=int(digits[1:3]), minutes=int(digits[3:5]))
        offset = -offset if digits[0] == '-' else offset
    return moment.replace(tzinfo=datetime.timezone(offset))


def _epoch(seconds):
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)


def _prior_databases(stanza):
    """The (repo-key, id) of C(stanza)'s databases that are not its current one (the highest id of each repository):
    after a stanza-upgrade to a new PostgreSQL major (or a new cluster), the backups of the old one are still listed,
    and they cannot recover the new one. Ids of one system and version are one database, as pgbackrest info shows."""
    databases = stanza.get('db') or []
    current = {}
    for database in sorted(databases, key=lambda database: database.get('id') or 0):
        current[database.get('repo-key')] = (database.get('system-id'), database.get('version'))
    return set((database.get('repo-key'), database.get('id')) for database in databases
               if (database.get('system-id'), database.get('version')) != current[database.get('repo-key')])


def pgbackrest_backups(listing):
    """([backup], problems) of pgbackrest info --output=json: every good backup of the current database of every
    stanza, and each stanza whose status is not ok."""
    backups, problems = [], []
    for stanza in listing:
        status = stanza.get('status') or {}
        if status.get('code', 0) != 0:
            problems.append('stanza %s: %s (code %s)' % (stanza.get('name'), status.get('message'), status.get('code')))
        prior = _prior_databases(stanza)
        for backup in stanza.get('backup') or []:
            stop = (backup.get('timestamp') or {}).get('stop')
            database = backup.get('database') or {}
            of_prior = (database.get('repo-key'), database.get('id')) in prior
            if stop is not None and not backup.get('error') and not of_prior:
                backups.append(dict(tool='pgbackrest', stanza=stanza.get('name'), name=backup.get('label'),
                                    type=backup.get('type'), time=_epoch(stop)))
    return backups, problems


def walg_backups(listing):
    """[backup] of wal-g backup-list --json (--detail adds finish_time, the end of the backup). A time the backup's
    metadata lacks is written as Go's zero time, 0001-01-01T00:00:00Z: the next time is read instead."""
    backups = []
    for backup in listing:
        times = [parse_time(backup.get(key)) for key in ('finish_time', 'time', 'modify_time')]
        known = [moment for moment in times if moment is not None and moment.year > 1]
        if known:
            backups.append(dict(tool='wal-g', name=backup.get('backup_name'), time=known[0]))
    return backups


def listed_backups(listing):
    """([backup], problems) of a tool's parsed JSON, pgbackrest's or WAL-G's; a shape of neither is a problem."""
    if not isinstance(listing, list):
        return [], ['its output is not a JSON list of stanzas (pgbackrest) or of backups (wal-g)']
    # A stanza of pgbackrest info has its name and status; its backups unless --detail-level=progress left them out.
    if any(isinstance(item, dict) and 'name' in item and ('backup' in item or 'status' in item) for item in listing):
        return pgbackrest_backups(listing)
    if all(isinstance(item, dict) and 'backup_name' in item for item in listing):
        return walg_backups(listing), []
    return [], ['its output is neither pgbackrest info --output=json nor wal-g backup-list --json']


def command_problem(command_text, listing, now, max_age_seconds, max_age_text):
    """(newest backup or None, why the listing does not prove a recent base backup or None)."""
    backups, problems = listed_backups(listing)
    newest = max(backups, key=lambda backup: backup['time']) if backups else None
    if problems:
        return newest, ('%s does not prove a recent backup: %s. Fix the backup tool (or backup_archive_command) and '
                        'rerun. Nothing was changed.' % (command_text, '; '.join(problems)))
    if newest is None:
        return None, ('%s lists no finished backup: point-in-time recovery needs a base backup. Take one with your '
                      'backup tool and rerun. Nothing was changed.' % command_text)
    age = (now - newest['time']).total_seconds()
    if age > max_age_seconds:
        return newest, ('The newest backup %s lists, %s, finished %s ago (%s), more than backup_base_backup_max_age '
                        '(%s). Take a fresh base backup with your backup tool (or raise the bound) and rerun. '
                        'Nothing was changed.' % (command_text, newest['name'], _ago(age), newest['time'].isoformat(),
                                                  max_age_text))
    return newest, None


def backup_evidence(backup):
    return dict(backup, time=backup['time'].isoformat()) if backup else None
