# -*- coding: utf-8 -*-
"""The archiving cluster of tests/integration/archive_cluster.py does what the archive backup mode's tests rely on
(issue 25): its WAL lands whole in a real folder, and pg_stat_archiver shows success, failure, recovery from the
failure, an archive growing stale and statistics that know of no archive."""

import contextlib
import os
import struct

import psycopg2
import pytest

import helpers
from archive_cluster import (WAL_SEGMENT_BYTES, archive_cluster, archive_command, archive_now,  # noqa: F401
                             make_archive_stale, make_archiving_fail, reset_archiver_statistics, restore_archiving)

# Of the long header of a segment's first page (src/include/access/xlog_internal.h): xlp_tli at 4, xlp_pageaddr at 8,
# xlp_sysid at 24, xlp_seg_size at 32.
LONG_PAGE_HEADER = struct.Struct('<HHIQI4xQI')


@pytest.fixture
def admin(archive_cluster):
    with contextlib.closing(helpers.connect(archive_cluster, dbname='postgres')) as conn:
        yield conn


def segment_start(name, segment_bytes):
    """The LSN a segment file starts at, from its name (timeline, then the LSN's high 32 bits, then the segment)."""
    return int(name[8:16], 16) * (1 << 32) + int(name[16:24], 16) * segment_bytes


def assert_archived_whole(admin, archive_dir, name):
    """The file C(name) in C(archive_dir) is that WAL segment of this server: its size, and the header of its first
    page (timeline, start address, system identifier, segment size), read from the copy alone."""
    segment_bytes = int(helpers.query(admin, "SELECT setting FROM pg_catalog.pg_settings "
                                             "WHERE name = 'wal_segment_size'")[0][0])
    system_id = helpers.query(admin, 'SELECT system_identifier FROM pg_catalog.pg_control_system()')[0][0]
    path = os.path.join(archive_dir, name)
    assert os.path.getsize(path) == segment_bytes == WAL_SEGMENT_BYTES
    with open(path, 'rb') as handle:
        _magic, _info, tli, pageaddr, _rem_len, sysid, seg_size = LONG_PAGE_HEADER.unpack(
            handle.read(LONG_PAGE_HEADER.size))
    assert (tli, pageaddr, sysid, seg_size) == (int(name[:8], 16), segment_start(name, segment_bytes), system_id,
                                                segment_bytes)


def test_the_cluster_archives_with_the_folders_cp_and_the_settings_say_so(admin, archive_cluster):
    assert helpers.query(admin, 'SHOW archive_mode') == [('on',)]
    assert helpers.query(admin, 'SHOW wal_level') == [('replica',)]
    assert helpers.query(admin, "SELECT pg_catalog.current_setting('archive_command')") == [
        ('cp "%%p" "%s/%%f"' % archive_cluster['archive_dir'],)]
    # The folder belongs to the OS user the server runs as, who owns the data directory.
    owner = os.stat(os.path.join(archive_cluster['dir'], 'data')).st_uid
    assert os.stat(archive_cluster['archive_dir']).st_uid == owner


def test_a_switched_segment_lands_whole_in_the_archive_and_pg_stat_archiver_names_it(admin, archive_cluster):
    first = archive_now(archive_cluster)
    second = archive_now(archive_cluster)

    assert second['last_archived_wal'] > first['last_archived_wal']
    assert second['archived_count'] > first['archived_count']
    assert first['last_archived_time'] < second['last_archived_time'] <= second['now']
    assert second['last_failed_time'] is None or second['last_failed_time'] < first['last_archived_time']
    for row in (first, second):
        assert_archived_whole(admin, archive_cluster['archive_dir'], row['last_archived_wal'])
    # The server marked it done: the archiver, not the test, copied it.
    assert os.path.exists(os.path.join(archive_cluster['dir'], 'data', 'pg_wal', 'archive_status',
                                       second['last_archived_wal'] + '.done'))


def test_a_failing_archive_command_is_seen_then_restoring_it_archives_the_failed_segment(archive_cluster):
    archived = archive_now(archive_cluster)
    try:
        failing = make_archiving_fail(archive_cluster)

        assert failing['archive_command'] == 'false'
        assert failing['failed_count'] >= 1
        assert failing['last_failed_time'] > failing['last_archived_time'] == archived['last_archived_time']
        assert failing['last_failed_wal'] > archived['last_archived_wal']
        assert not os.path.exists(os.path.join(archive_cluster['archive_dir'], failing['last_failed_wal']))
        with open(os.path.join(archive_cluster['dir'], 'postgresql.log')) as log:
            assert 'archive command failed with exit code 1' in log.read()
    finally:
        restored = restore_archiving(archive_cluster)

    assert restored['archive_command'] == archive_command(archive_cluster['archive_dir'])
    assert restored['last_archived_time'] >= restored['last_failed_time'] >= failing['last_failed_time']
    assert restored['last_archived_wal'] >= failing['last_failed_wal']
    # The counters keep the failure: only the times tell that it is over.
    assert restored['failed_count'] >= failing['failed_count']
    with contextlib.closing(helpers.connect(archive_cluster, dbname='postgres')) as conn:
        assert_archived_whole(conn, archive_cluster['archive_dir'], failing['last_failed_wal'])


def test_an_archive_left_alone_grows_older_than_the_bound_with_nothing_archived_after_it(archive_cluster):
    stale = make_archive_stale(archive_cluster, 2)

    assert (stale['now'] - stale['last_archived_time']).total_seconds() > 2
    assert stale['last_failed_time'] is None or stale['last_failed_time'] <= stale['last_archived_time']
    assert os.path.exists(os.path.join(archive_cluster['archive_dir'], stale['last_archived_wal']))


def test_reset_statistics_know_of_no_archive_until_the_next_one(archive_cluster):
    reset = reset_archiver_statistics(archive_cluster)

    assert (reset['archived_count'], reset['last_archived_wal'], reset['last_archived_time'], reset['failed_count'],
            reset['last_failed_wal'], reset['last_failed_time']) == (0, None, None, 0, None, None)
    assert reset['stats_reset'] <= reset['now']
    # The archive folder keeps its files: only the server's statistics forgot them.
    assert os.listdir(archive_cluster['archive_dir'])
    assert archive_now(archive_cluster)['archived_count'] == 1


def test_a_role_without_privileges_reads_the_archiver_but_cannot_switch_wal(admin, archive_cluster):
    archive_now(archive_cluster)
    helpers.query(admin, "CREATE ROLE pgzd_archive_reader LOGIN PASSWORD 'reader'")
    try:
        login = dict(archive_cluster, user='pgzd_archive_reader', password='reader')
        with contextlib.closing(helpers.connect(login, dbname='postgres')) as reader:
            assert helpers.query(reader, 'SHOW archive_mode') == [('on',)]
            assert helpers.query(reader, "SELECT pg_catalog.current_setting('archive_command')") == [
                (archive_command(archive_cluster['archive_dir']),)]
            assert helpers.query(reader, 'SELECT last_archived_wal IS NOT NULL FROM pg_catalog.pg_stat_archiver') == [
                (True,)]
            denied = 'permission denied for function pg_switch_wal'
            with pytest.raises(psycopg2.errors.InsufficientPrivilege, match=denied):
                helpers.query(reader, 'SELECT pg_catalog.pg_switch_wal()')
    finally:
        helpers.query(admin, 'DROP ROLE pgzd_archive_reader')
