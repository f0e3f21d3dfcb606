# -*- coding: utf-8 -*-
"""plugins/module_utils/evidence/backup_files.py, backup_clients.py and restore_checks.py: backup names, retention,
pg_dump's version against the server's, how pg_dump and pg_restore get the login, and what a restore drill's row
counts say; no server needed."""

import datetime
import hashlib

from helpers import load_module_utils

backup_files = load_module_utils('evidence.backup_files')
backup_clients = load_module_utils('evidence.backup_clients')
restore_checks = load_module_utils('evidence.restore_checks')

MOMENT = datetime.datetime(2026, 11, 25, 3, 0, 7, tzinfo=datetime.timezone.utc)


def test_a_backup_is_named_after_its_database_and_utc_time_with_its_format_as_extension():
    assert backup_files.backup_name('t12', 'custom', MOMENT) == 't12-20261125T030007Z.pgc'
    assert backup_files.backup_name('t12', 'directory', MOMENT) == 't12-20261125T030007Z.dir'


def test_only_the_backups_of_the_database_count_oldest_first():
    names = ['t12-20261125T030007Z.pgc', 't12-20261124T030007Z.dir', 't12-eu-20261126T000000Z.pgc',
             't12-20261127T000000Z.pgc.partial', 'notes.txt', 't12_restore_drill', 'T12-20261128T000000Z.pgc']
    assert backup_files.backups_of(names, 't12') == ['t12-20261124T030007Z.dir', 't12-20261125T030007Z.pgc']
    assert backup_files.backups_of(names, 't12-eu') == ['t12-eu-20261126T000000Z.pgc']
    assert backup_files.newest_backup(names, 't12') == 't12-20261125T030007Z.pgc'
    assert backup_files.newest_backup(['notes.txt'], 't12') is None


def test_a_database_name_with_regex_characters_matches_only_itself():
    assert backup_files.backups_of(['a.b-20261125T030007Z.pgc', 'axb-20261125T030007Z.pgc'], 'a.b') == [
        'a.b-20261125T030007Z.pgc']


def test_retention_deletes_the_oldest_beyond_keep_and_nothing_when_within():
    names = ['t12-2026112%dT000000Z.pgc' % day for day in range(1, 6)] + ['other-20261101T000000Z.pgc']
    assert backup_files.backups_beyond(names, 't12', 2) == ['t12-20261121T000000Z.pgc', 't12-20261122T000000Z.pgc',
                                                       't12-20261123T000000Z.pgc']
    assert backup_files.backups_beyond(names, 't12', 5) == []
    assert backup_files.backups_beyond(names, 't12', 9) == []


def test_client_major_versions_are_read_from_the_version_output():
    assert backup_clients.client_major('pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)') == 15
    assert backup_clients.client_major('pg_restore (PostgreSQL) 18.6') == 18
    assert backup_clients.client_major('pg_dump (PostgreSQL) 17devel') == 17
    assert backup_clients.client_major('') is None and backup_clients.client_major(None) is None
    assert backup_clients.version_text('pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)') == '15.18'
    assert backup_clients.version_text('') == 'unknown'


DEBIAN_15 = '/usr/lib/postgresql/15/bin'
DEBIAN_16 = '/usr/lib/postgresql/16/bin'
DEBIAN_17 = '/usr/lib/postgresql/17/bin'
NEWEST = '/opt/pg18/bin'


def test_the_client_of_the_servers_major_is_chosen_wherever_it_is_in_the_search_order():
    candidates = [('/usr/bin', 15), (NEWEST, 18), (DEBIAN_17, 17)]
    assert backup_clients.choose_client(candidates, 17) == (DEBIAN_17, 17)
    assert backup_clients.choose_client(candidates, 15) == ('/usr/bin', 15)  # the first of the major, as the PATH orders it
    assert backup_clients.choose_client(candidates + [(DEBIAN_15, 15)], 15) == ('/usr/bin', 15)


def test_without_the_servers_major_the_newest_newer_client_is_chosen():
    assert backup_clients.choose_client([(DEBIAN_15, 15), (DEBIAN_17, 17), (NEWEST, 18)], 16) == (NEWEST, 18)
    assert backup_clients.choose_client([(NEWEST, 18), (DEBIAN_17, 17), ('/else/bin', 18)], 14) == (NEWEST, 18)


def test_only_older_or_unknown_clients_choose_nothing():
    assert backup_clients.choose_client([(DEBIAN_15, 15), (DEBIAN_16, 16), ('/broken/bin', None)], 18) is None
    assert backup_clients.choose_client([], 15) is None


def test_the_search_order_is_extra_dirs_then_the_path_then_the_packaged_dirs_each_once():
    real = {'/bin': '/usr/bin', '/sbin': '/usr/sbin'}
    found = backup_clients.candidate_dirs(['/opt/pg/bin'], ['/usr/local/bin', '/usr/bin', '/bin', '', '/opt/pg/bin'],
                                   [DEBIAN_15, NEWEST], lambda directory: real.get(directory, directory))
    assert found == ['/opt/pg/bin', '/usr/local/bin', '/usr/bin', DEBIAN_15, NEWEST]


def test_no_fitting_client_names_those_found_and_what_to_install():
    message = backup_clients.no_client_message('pg_dump', [(DEBIAN_15, 'pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)'),
                                                    ('/usr/bin', 'pg_dump (PostgreSQL) 15.18')], 18, '18.1 (Debian)',
                                        'backup_bin_dir')
    assert message.startswith('No pg_dump on the control node can handle the server, PostgreSQL 18.1: found only '
                              'pg_dump 15.18 in /usr/lib/postgresql/15/bin, pg_dump 15.18 in /usr/bin, and an older '
                              'pg_dump cannot dump a newer server.')
    assert 'apt-get install postgresql-client-18 (from apt.postgresql.org)' in message
    assert 'dnf install postgresql18' in message and 'set backup_bin_dir to the bin directory' in message
    assert message.endswith('nothing was changed.')
    none = backup_clients.no_client_message('pg_restore', [], 16, '16.4', 'restore_drill_bin_dir')
    assert 'found none (looked on the PATH, in /usr/lib/postgresql/*/bin and /usr/pgsql-*/bin' in none
    assert 'cannot restore the dump of a newer server' in none and 'set restore_drill_bin_dir' in none


def test_an_older_pg_dump_is_refused_with_the_client_to_install():
    message = backup_clients.pg_dump_too_old('pg_dump (PostgreSQL) 13.9', 15, '15.10 (Debian 15.10-1.pgdg120+1)')
    assert message.startswith('pg_dump on the control node is version 13 but the server is 15.10: an older pg_dump '
                              'cannot dump a newer server. Install postgresql-client-15 on the control node')
    assert message.endswith('and rerun; nothing was changed.')


def test_the_same_or_a_newer_pg_dump_may_dump_the_server():
    assert backup_clients.pg_dump_too_old('pg_dump (PostgreSQL) 15.1', 15, '15.10') is None
    assert backup_clients.pg_dump_too_old('pg_dump (PostgreSQL) 17.2', 15, '15.10') is None


def test_unreadable_pg_dump_version_output_is_refused_and_quoted():
    assert "version unknown ('garbage')" in backup_clients.pg_dump_too_old('garbage\n', 15, '15.10')


def test_a_missing_client_names_where_it_was_looked_for_and_the_role_variable():
    message = backup_clients.missing_client_message('pg_restore', '/opt/pg/bin', 16, 'restore_drill_bin_dir')
    assert message.startswith('pg_restore not found in /opt/pg/bin on the host the module runs on. Install '
                              'postgresql-client-16 there (or set bin_dir, restore_drill_bin_dir in the role,')


def test_a_pg_restore_too_old_for_the_archive_is_told_where_the_newer_one_is():
    client = dict(version='pg_restore (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)', bin_dir=DEBIAN_15)
    advice = backup_clients.older_pg_restore_advice(
        'pg_restore: error: unsupported version (1.16) in file header', client)
    assert advice.startswith(' pg_restore 15.18 of /usr/lib/postgresql/15/bin cannot read an archive made by a newer '
                             'pg_dump')
    assert backup_clients.older_pg_restore_advice('pg_restore: error: could not connect', client) == ''


def test_the_login_goes_to_pg_dump_in_the_environment_password_included():
    environment, without = backup_clients.libpq_environment(
        dict(host='db.internal', port=5433, user='migrator', password='s3cret', dbname='app', sslmode='verify-full',
             sslrootcert='/etc/ca.pem', keepalives=1, application_name='mine'), 'pg-zero-downtime backup')
    assert environment == dict(PGHOST='db.internal', PGPORT='5433', PGUSER='migrator', PGPASSWORD='s3cret',
                               PGDATABASE='app', PGSSLMODE='verify-full', PGSSLROOTCERT='/etc/ca.pem',
                               PGAPPNAME='mine')
    assert without == ['keepalives']
    assert backup_clients.libpq_environment(dict(host=''), 'pg-zero-downtime backup')[0] == dict(
        PGAPPNAME='pg-zero-downtime backup')


def test_no_command_line_carries_the_login():
    dump = backup_clients.dump_command('/usr/bin/pg_dump', '/b/t12-20261125T030007Z.pgc', 'custom', 4)
    assert dump == ['/usr/bin/pg_dump', '--format=custom', '--file=/b/t12-20261125T030007Z.pgc']
    assert backup_clients.dump_command('pg_dump', '/b/x.dir', 'directory', 4)[-1] == '--jobs=4'
    restore = backup_clients.restore_command('pg_restore', '/b/x.dir', 't12_restore_drill', 2)
    assert restore == ['pg_restore', '--no-owner', '--exit-on-error', '--jobs=2', '--dbname=t12_restore_drill',
                       '/b/x.dir']
    assert backup_clients.command_line(['pg_dump', '--file=/b/a b.pgc']) == "pg_dump '--file=/b/a b.pgc'"


def test_a_scratch_name_libpq_would_read_as_a_connection_string_is_given_as_one():
    assert backup_clients.dbname_argument('a=b') == "--dbname=dbname='a=b'"
    assert backup_clients.dbname_argument("postgres://x'y") == "--dbname=dbname='postgres://x\\'y'"


def test_the_toc_listing_counts_entries_not_comments():
    listing = ';\n; Archive created at 2026-11-25\n;\n\n215; 1259 16390 TABLE public Class pgzd\n3412; 0 16390 ' \
              'TABLE DATA public Class pgzd\n'
    assert backup_files.toc_entries(listing) == 2


def test_size_and_sha256_of_a_file_and_of_a_directory_backup(tmp_path):
    single = tmp_path / 't12-20261125T030007Z.pgc'
    single.write_bytes(b'x' * 10)
    assert backup_files.size_bytes(str(single)) == 10
    assert backup_files.sha256_target(str(single), 'custom') == (str(single), 'the file')
    assert backup_files.sha256_of_file(str(single)) == hashlib.sha256(b'x' * 10).hexdigest()
    directory = tmp_path / 't12-20261125T030007Z.dir'
    directory.mkdir()
    (directory / 'toc.dat').write_bytes(b'toc')
    (directory / '3412.dat.gz').write_bytes(b'12345')
    assert backup_files.size_bytes(str(directory)) == 8
    assert backup_files.sha256_target(str(directory), 'directory') == (str(directory / 'toc.dat'), 'toc.dat')


def test_the_backup_line_has_path_size_seconds_entries_and_sha256():
    line = backup_files.backup_summary('t12', dict(path='/b/t12-20261125T030007Z.pgc', format='custom',
                                              size_bytes=3 * 1048576, seconds=1.25, toc_entries=214, sha256='ab' * 32))
    assert line == ('Backup of t12: /b/t12-20261125T030007Z.pgc (custom format, 3.0 MiB, 1.25s, 214 entries, sha256 '
                    + 'ab' * 32 + '), verified with pg_restore --list.')
    assert backup_files.deleted_summary([], 5) == ''
    assert backup_files.deleted_summary(['/b/t12-20261120T000000Z.pgc'], 2) == (
        ' Deleted 1 older backup(s), keeping the newest 2: t12-20261120T000000Z.pgc.')
    assert backup_files.deleted_summary(['/b/a-20261120T000000Z.dir'], 1, check_mode=True).startswith(' Would delete 1 ')


def test_the_drill_never_drops_the_source_or_a_system_database():
    assert 'cannot be the source database t12' in restore_checks.scratch_database_problem('t12', 't12')
    assert 'cannot be template1' in restore_checks.scratch_database_problem('template1', 't12')
    assert restore_checks.scratch_database_problem('t12_restore_drill', 't12') is None


def test_matching_counts_pass_with_the_tables_and_rows():
    rows = [dict(table_name='public."Class"', row_count=50), dict(table_name='public.job', row_count='4000')]
    source = restore_checks.row_counts(rows)
    assert source == {'public."Class"': 50, 'public.job': 4000}
    assert restore_checks.count_differences(source, dict(source)) == []
    assert restore_checks.drill_passed_message('/b/x.pgc', 't12_restore_drill', source, False) == (
        "Restore drill passed: /b/x.pgc restored into t12_restore_drill, and all 2 tables (4050 rows) have the "
        "source's exact row counts.")
    assert restore_checks.drill_passed_message('/b/x.pgc', 'copy', source, True).endswith('The scratch database copy is kept.')


def test_a_differing_count_or_a_table_only_one_side_has_is_named_with_both_counts():
    source = {'public."Class"': 51, 'public.job': 4000, 'public.gone': 3}
    restored = {'public."Class"': 50, 'public.job': 4000, 'public.extra': 7}
    differences = restore_checks.count_differences(source, restored)
    assert differences == ['public."Class"', 'public.gone', 'public.extra']
    message = restore_checks.drill_mismatch_message('/b/x.pgc', 't12', source, restored, differences)
    assert message == ('The restore of /b/x.pgc does not match t12: public."Class" has 51 rows in the source, 50 '
                       'restored; public.gone has 3 rows in the source, and was not restored; public.extra is not in '
                       'the source, 7 rows restored; rows written since the backup explain a difference on a live '
                       'database: drill against a quiet copy, or a fresh backup.')


def test_no_backup_says_how_to_get_one():
    assert restore_checks.no_backup_message('t12', '/a/backups/t12') == (
        'No backup of t12 in /a/backups/t12: take one with playbooks/backup.yml, or name one with '
        '-e restore_drill_backup=<path>.')


def test_a_drill_that_stopped_early_never_reads_as_no_difference():
    stopped = restore_checks.not_compared('pg_restore of /b/x.pgc failed (exit 1):\n  error: out of memory')
    assert stopped == ['not compared: pg_restore of /b/x.pgc failed (exit 1): error: out of memory']
    assert restore_checks.is_not_compared(stopped)
    assert not restore_checks.is_not_compared(['public."Class"']) and not restore_checks.is_not_compared([])


def test_a_pg_restore_of_17_or_newer_is_refused_for_a_server_older_than_17():
    server = lambda num, text: dict(server_version_num=num, server_version=text)  # noqa: E731
    client = lambda major: dict(major=major, version='pg_restore (PostgreSQL) %d.1' % major,  # noqa: E731
                                bin_dir='/opt/pg%d/bin' % major)
    refusal = backup_clients.pg_restore_too_new(client(18), server(140019, '14.19'))
    assert refusal.startswith('pg_restore 18.1 (/opt/pg18/bin) cannot restore into this server, PostgreSQL 14.19: a '
                              'pg_restore of 17 or newer sets transaction_timeout')
    assert 'postgresql-client-14' in refusal and 'restore_drill_bin_dir' in refusal
    assert backup_clients.pg_restore_too_new(client(18), server(160010, '16.10')) is not None
    assert backup_clients.pg_restore_too_new(client(18), server(170002, '17.2')) is None
    assert backup_clients.pg_restore_too_new(client(16), server(140019, '14.19')) is None
    assert backup_clients.pg_restore_too_new(dict(client(18), major=None), server(140019, '14.19')) is None


def test_a_schema_backup_is_a_directory_named_like_the_others_and_counts_in_retention():
    assert backup_files.backup_name('t12', 'schema', MOMENT) == 't12-20261125T030007Z.schema'
    names = ['t12-20261125T030007Z.schema', 't12-20261124T030007Z.pgc', 't12-20261126T000000Z.schema',
             't12-20261127T000000Z.schema.partial', 't12-eu-20261126T000000Z.schema', 't12-20261128T000000Z.schemas']
    assert backup_files.backups_of(names, 't12') == ['t12-20261124T030007Z.pgc', 't12-20261125T030007Z.schema',
                                                    't12-20261126T000000Z.schema']
    assert backup_files.newest_backup(names, 't12') == 't12-20261126T000000Z.schema'
    assert backup_files.backups_beyond(names, 't12', 1) == ['t12-20261124T030007Z.pgc', 't12-20261125T030007Z.schema']


# Two tables of the source as SHAPE_SQL reads them (ORDER BY table, kind, name).
SHAPE_ROWS = [
    dict(table_name='public."Class"', kind='column', name='grade', definition='integer NOT NULL'),
    dict(table_name='public."Class"', kind='column', name='id',
         definition='integer NOT NULL DEFAULT nextval(\'"Class_id_seq"\'::regclass)'),
    dict(table_name='public."Class"', kind='column', name='name', definition='text NOT NULL'),
    dict(table_name='public."Class"', kind='constraint', name='Class_pkey', definition='PRIMARY KEY (id)'),
    dict(table_name='public."Class"', kind='index', name='Class_pkey',
         definition='CREATE UNIQUE INDEX "Class_pkey" ON public."Class" USING btree (id)'),
    dict(table_name='public.job', kind='column', name='id', definition='bigint NOT NULL'),
    dict(table_name='public.job', kind='index', name='job_pkey',
         definition='CREATE UNIQUE INDEX job_pkey ON public.job USING btree (id)'),
]


def test_the_shape_of_each_table_is_its_columns_constraints_and_indexes_by_kind_and_name():
    shapes = restore_checks.table_shapes(SHAPE_ROWS)
    assert shapes == {
        'public."Class"': {'column grade': 'integer NOT NULL',
                           'column id': 'integer NOT NULL DEFAULT nextval(\'"Class_id_seq"\'::regclass)',
                           'column name': 'text NOT NULL', 'constraint Class_pkey': 'PRIMARY KEY (id)',
                           'index Class_pkey': 'CREATE UNIQUE INDEX "Class_pkey" ON public."Class" USING btree (id)'},
        'public.job': {'column id': 'bigint NOT NULL',
                       'index job_pkey': 'CREATE UNIQUE INDEX job_pkey ON public.job USING btree (id)'}}
    assert restore_checks.table_shapes([]) == {}
    assert restore_checks.shape_counts(shapes) == (2, 4, 1, 2)
    assert restore_checks.shape_counts({}) == (0, 0, 0, 0)


def test_an_identical_restored_schema_has_no_difference():
    source = restore_checks.table_shapes(SHAPE_ROWS)
    assert restore_checks.shape_differences(source, restore_checks.table_shapes(list(reversed(SHAPE_ROWS)))) == []


def test_every_missing_extra_or_different_table_and_item_is_named_in_name_order():
    source = restore_checks.table_shapes(SHAPE_ROWS + [
        dict(table_name='public.gone', kind='column', name='id', definition='integer')])
    restored = restore_checks.table_shapes(
        [row for row in SHAPE_ROWS if row['name'] != 'name' and row['kind'] != 'constraint']
        + [dict(table_name='public."Class"', kind='constraint', name='Class_pkey',
                definition='PRIMARY KEY (id, grade)'),
           dict(table_name='public."Class"', kind='index', name='Class_name_idx',
                definition='CREATE INDEX "Class_name_idx" ON public."Class" USING btree (name)'),
           dict(table_name='public.extra', kind='column', name='id', definition='integer')])
    assert restore_checks.shape_differences(source, restored) == [
        'public."Class": column name (text NOT NULL) was not restored',
        'public."Class": constraint Class_pkey is PRIMARY KEY (id) in the source, PRIMARY KEY (id, grade) restored',
        'public."Class": index Class_name_idx (CREATE INDEX "Class_name_idx" ON public."Class" USING btree (name)) is '
        'not in the source',
        'public.extra is not in the source, but restored',
        'public.gone is in the source and was not restored',
    ]


def test_a_passed_schema_drill_counts_what_it_compared_and_the_rows_it_loaded():
    shapes = restore_checks.table_shapes(SHAPE_ROWS)
    rows = [dict(schema='public', table='Class', rows=4), dict(schema='public', table='job', rows=2)]
    assert restore_checks.schema_drill_passed_message('/b/t12-20261204T030000Z.schema', 't12_restore_drill', shapes,
                                                      rows, False) == (
        "Restore drill passed: the schema of /b/t12-20261204T030000Z.schema restored into t12_restore_drill, and all 2 "
        "tables have the source's 4 columns, 1 constraints and 2 indexes as they were before the run; the 6 touched "
        "rows of 2 tables loaded into their tables' columns.")
    kept = restore_checks.schema_drill_passed_message('/b/x.schema', 'copy', shapes, [], True)
    assert kept.endswith('as they were before the run; the run touches no row. The scratch database copy is kept.')
