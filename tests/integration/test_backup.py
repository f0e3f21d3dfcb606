# -*- coding: utf-8 -*-
"""The backup phase and the restore drill, through the real playbooks against the test cluster."""

import glob
import hashlib
import os
import re
import json
import subprocess

import pytest

import helpers

backup_clients = helpers.load_module_utils('evidence.backup_clients')


def cluster_vars(pg_cluster, tmp_path, **extra):
    # The artifacts folder is the run's own (what else tmp_path holds, such as a fake client, is not the tool's).
    return dict(dict(local_cluster_dir=pg_cluster['dir'], pg_port=pg_cluster['port'],
                     pgzd_artifacts_dir=str(tmp_path / 'artifacts')), **extra)


def backups(tmp_path):
    return sorted(glob.glob(os.path.join(str(tmp_path), 'artifacts', 'backups', 't12', 't12-*')))


def sha256(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        for block in iter(lambda: handle.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def test_a_verified_backup_is_recorded_and_only_the_newest_are_kept(db, pg_cluster, tmp_path):
    for run in range(3):
        result = helpers.run_playbook('playbooks/backup.yml', cluster_vars(pg_cluster, tmp_path, backup_keep=2))
        assert result.returncode == 0, result.stdout[-4000:]
    kept = backups(tmp_path)
    assert len(kept) == 2 and all(path.endswith('.pgc') for path in kept)
    newest = kept[-1]
    assert newest in result.stdout.replace('\n        ', ' ')
    # The recorded sha256 is the file's, and pg_restore can read the file.
    recorded = re.search(r'sha256 ([0-9a-f]{64})', result.stdout).group(1)
    assert recorded == sha256(newest)
    listing = subprocess.run(['pg_restore', '--list', newest], capture_output=True, text=True, check=True).stdout
    assert 'TABLE public Class pgzd' in listing and 'TABLE DATA public Job pgzd' in listing


def test_the_restore_drill_matches_every_row_count_then_catches_a_difference(db, pg_cluster, tmp_path):
    taken = helpers.run_playbook('playbooks/backup.yml', cluster_vars(pg_cluster, tmp_path, backup_format='directory',
                                                                       backup_jobs=2))
    assert taken.returncode == 0, taken.stdout[-4000:]
    (backup,) = backups(tmp_path)
    assert backup.endswith('.dir') and os.path.exists(os.path.join(backup, 'toc.dat'))
    class_rows = helpers.query(db, 'SELECT count(*) FROM "Class"')[0][0]

    drill = helpers.run_playbook('playbooks/restore_drill.yml', cluster_vars(pg_cluster, tmp_path))
    assert drill.returncode == 0, drill.stdout[-4000:]
    assert 'Restore drill passed' in drill.stdout
    assert re.search(r'all\s+1[0-9] tables', drill.stdout)
    assert not helpers.query(db, "SELECT 1 FROM pg_database WHERE datname = 't12_restore_drill'")  # dropped after

    # A row written after the backup makes the drill fail, naming the table and both counts.
    helpers.query(db, 'INSERT INTO "Class" ("id", "name", "grade", "updatedAt") VALUES (%s, %s, %s, now())',
                  ('pt_drill_row', 'Drill', 99))
    try:
        drifted = helpers.run_playbook('playbooks/restore_drill.yml', cluster_vars(pg_cluster, tmp_path))
    finally:
        helpers.query(db, 'DELETE FROM "Class" WHERE "id" = %s', ('pt_drill_row',))
    assert drifted.returncode != 0
    text = ' '.join(drifted.stdout.split())
    assert 'public."Class" has %d rows in the source, %d restored' % (class_rows + 1, class_rows) in text


def test_a_pg_dump_older_than_the_server_stops_before_the_backup_and_before_any_ddl(db, pg_cluster, tmp_path):
    fake_bin = tmp_path / 'old-client'
    fake_bin.mkdir()
    fake = fake_bin / 'pg_dump'
    fake.write_text('#!/bin/sh\necho "pg_dump (PostgreSQL) 13.9"\n')
    fake.chmod(0o755)
    before = helpers.all_indexes(db)
    run = helpers.run_playbook('playbooks/migrate.yml', cluster_vars(pg_cluster, tmp_path, backup_bin_dir=str(fake_bin)))
    assert run.returncode != 0
    text = ' '.join(run.stdout.split())
    assert 'pg_dump on the control node is version 13 but the server is 15' in text
    assert 'Install postgresql-client-15' in text
    assert backups(tmp_path) == []
    assert helpers.all_indexes(db) == before  # no index was built


def test_skipping_the_backup_needs_the_flag_and_is_loud(db, pg_cluster, tmp_path):
    run = helpers.run_playbook('playbooks/backup.yml', cluster_vars(pg_cluster, tmp_path, backup_enabled='false'))
    assert run.returncode == 0, run.stdout[-4000:]
    assert '!!! NO BACKUP: backup_enabled=false was given' in run.stdout
    assert backups(tmp_path) == []


# -- the modules themselves (postgresql_backup, postgresql_restore_drill) ------------------------------------

def test_the_backup_module_returns_the_report_fields_and_keeps_the_newest(run_module, pg_cluster, tmp_path):
    directory = tmp_path / 'shop'
    first = run_module('postgresql_backup', dir=str(directory), format='directory', jobs=2, keep=1)
    assert first['changed'] and not first.get('failed') and not first.get('skipped'), first.get('msg')
    path = first['path']
    assert re.match(r'^t12-\d{8}T\d{6}Z\.dir$', os.path.basename(path)) and os.path.dirname(path) == str(directory)
    assert first['format'] == 'directory' and first['sha256_of'] == 'toc.dat'
    assert first['sha256'] == sha256(os.path.join(path, 'toc.dat'))
    assert first['size_bytes'] == sum(os.path.getsize(os.path.join(path, name)) for name in os.listdir(path))
    assert first['toc_entries'] > 20 and first['seconds'] > 0 and first['deleted'] == []
    assert first['pg_dump_version'].startswith('pg_dump (PostgreSQL) 15')
    assert first['server_version'].startswith('15')
    assert first['database'] == 't12' and 'Backup of t12: %s (directory format' % path in first['msg']
    assert first['msg'].startswith('Backup mode full: the database (') and first['backup_mode'] == 'full'
    # The login reaches pg_dump in its environment: no command line carries the password.
    assert first['commands'][1].endswith('--format=directory --file=%s --jobs=2' % path)
    assert not [command for command in first['commands'] if pg_cluster['password'] in command]

    second = run_module('postgresql_backup', dir=str(directory), keep=1)
    assert second['changed'] and second['path'].endswith('.pgc') and second['deleted'] == [path]
    # Beside the one backup kept, the measure of the last full dump: this control node's dump rate (issue 25).
    assert sorted(os.listdir(str(directory))) == ['full-dump-rate.json', os.path.basename(second['path'])]
    with open(str(directory / 'full-dump-rate.json')) as handle:
        measured = json.load(handle)
    assert measured['taken'] == os.path.basename(second['path']) and measured['size_bytes'] == second['size_bytes']
    assert measured['seconds'] == second['seconds'] and measured['database_bytes'] == second['database_bytes']


def test_the_backup_module_in_check_mode_checks_the_versions_and_writes_nothing(run_module, tmp_path):
    (tmp_path / 't12').mkdir()
    old = tmp_path / 't12' / 't12-20200101T000000Z.pgc'
    old.write_bytes(b'old backup')
    result = run_module('postgresql_backup', check=True, root_dir=str(tmp_path), keep=1)
    assert result['changed'] and not result.get('failed'), result.get('msg')
    assert result['path'].startswith(str(tmp_path / 't12' / 't12-')) and result['path'].endswith('.pgc')
    assert result['deleted'] == [str(old)] and 'Check mode: would back t12 up into ' in result['msg']
    assert result['size_bytes'] is None and result['sha256'] is None and result['server_version'].startswith('15')
    assert os.listdir(str(tmp_path / 't12')) == ['t12-20200101T000000Z.pgc']  # nothing written, nothing deleted


def test_the_backup_module_refuses_an_older_pg_dump_in_check_mode_too(run_module, tmp_path):
    fake_bin = tmp_path / 'old-client'
    fake_bin.mkdir()
    (fake_bin / 'pg_dump').write_text('#!/bin/sh\necho "pg_dump (PostgreSQL) 13.9"\n')
    (fake_bin / 'pg_dump').chmod(0o755)
    result = run_module('postgresql_backup', check=True, root_dir=str(tmp_path), bin_dir=str(fake_bin))
    assert result['failed'] and not result['changed']
    assert result['msg'].startswith('pg_dump on the control node is version 13 but the server is 15')
    # Registered, the failed result reads as "no backup" (skipped) with the reason, as the report shows it.
    assert result['reason'].startswith('the backup failed: pg_dump on the control node is version 13')


def test_a_disabled_backup_module_records_the_skip_without_connecting(run_module, tmp_path):
    result = run_module('postgresql_backup', enabled=False, root_dir=str(tmp_path), login_port=1)
    assert result['skipped'] is True and result['reason'] == 'enabled=false was given' and not result['changed']
    assert os.listdir(str(tmp_path)) == []


def test_the_drill_module_in_check_mode_restores_nothing(db, run_module, tmp_path):
    taken = run_module('postgresql_backup', root_dir=str(tmp_path))
    assert taken['changed'], taken
    result = run_module('postgresql_restore_drill', check=True, root_dir=str(tmp_path),
                        scratch_database='pt_drill_check')
    assert result['changed'] and not result.get('failed'), result.get('msg')
    assert result['backup'] == taken['path'] and result['scratch_database'] == 'pt_drill_check'
    assert result['msg'].startswith('Check mode: would restore %s into pt_drill_check' % taken['path'])
    assert result['source'] == {} and result['differences'] == []
    assert not helpers.query(db, "SELECT 1 FROM pg_database WHERE datname = 'pt_drill_check'")


def test_the_drill_module_keeps_the_scratch_database_when_asked(db, run_module, tmp_path):
    taken = run_module('postgresql_backup', root_dir=str(tmp_path))
    try:
        result = run_module('postgresql_restore_drill', backup=taken['path'], scratch_database='pt_drill_kept',
                            keep=True)
        assert result['changed'] and not result.get('failed') and result['differences'] == [], result
        assert result['backup'] == taken['path'] and result['kept'] is True
        assert result['tables'] == len(result['source']) >= 10 and result['rows'] == sum(result['source'].values())
        assert result['restored'] == result['source']
        assert helpers.query(db, "SELECT 1 FROM pg_database WHERE datname = 'pt_drill_kept'")
        assert not [command for command in result['commands'] if 'password' in command.lower()]
    finally:
        helpers.query(db, 'DROP DATABASE IF EXISTS pt_drill_kept')


def test_the_drill_never_uses_the_source_as_its_scratch_database(db, run_module, tmp_path):
    taken = run_module('postgresql_backup', root_dir=str(tmp_path))
    rows = helpers.query(db, 'SELECT count(*) FROM "Class"')[0][0]
    result = run_module('postgresql_restore_drill', backup=taken['path'], scratch_database='t12')
    assert result['failed'] and not result['changed']
    assert 'cannot be the source database t12' in result['msg']
    assert helpers.query(db, 'SELECT count(*) FROM "Class"')[0][0] == rows


def test_a_backup_pg_restore_cannot_read_fails_the_drill_as_not_compared_and_drops_the_copy(db, run_module, tmp_path):
    broken = tmp_path / 't12-20200101T000000Z.pgc'
    broken.write_bytes(b'not a pg_dump archive')
    result = run_module('postgresql_restore_drill', backup=str(broken), scratch_database='pt_drill_broken')
    assert result['failed'] and result['changed']
    assert result['msg'].startswith('pg_restore of %s into pt_drill_broken failed (exit 1): ' % broken)
    assert result['msg'].endswith('The scratch database pt_drill_broken was dropped.')
    (said,) = result['differences']
    assert said.startswith('not compared: pg_restore of %s' % broken)
    assert not helpers.query(db, "SELECT 1 FROM pg_database WHERE datname = 'pt_drill_broken'")


def test_the_drill_without_a_backup_fails_clearly(db, pg_cluster, tmp_path):
    drill = helpers.run_playbook('playbooks/restore_drill.yml', cluster_vars(pg_cluster, tmp_path))
    assert drill.returncode != 0
    text = ' '.join(drill.stdout.split())
    assert ('No backup of t12 in %s: take one with playbooks/backup.yml, or name one with -e '
            'restore_drill_backup=<path>.' % os.path.join(str(tmp_path), 'artifacts', 'backups', 't12')) in text
    assert not helpers.query(db, "SELECT 1 FROM pg_database WHERE datname = 't12_restore_drill'")


def test_each_role_is_one_module_task_and_declares_no_connection(pg_cluster, tmp_path):
    run = helpers.run_playbook('playbooks/backup.yml', cluster_vars(pg_cluster, tmp_path))
    assert run.returncode == 0, run.stdout[-4000:]
    drill = helpers.run_playbook('playbooks/restore_drill.yml', cluster_vars(pg_cluster, tmp_path))
    assert drill.returncode == 0, drill.stdout[-4000:]
    names = [name for name in helpers.task_names(run.stdout + drill.stdout) if not name.startswith('Validating')]
    assert names == ['Protect the database before any DDL (backup_mode) from the control node',
                     'Show the backup, or warn loudly that there is none',
                     'Restore the backup into a scratch database and compare it with the source (row counts, or a schema '
                     "backup's shape)",
                     'Show how the restore drill went']
    for role in ('backup', 'restore_drill'):
        for path in glob.glob(os.path.join(helpers.REPO_ROOT, 'roles', role, '*', '*.yml')):
            with open(path) as handle:
                text = handle.read()
            assert '_login_' not in text and '_ssl_mode' not in text, path


# -- the client matched to the server's major (issue 24) -----------------------------------------------------

DEBIAN_CLIENT_BIN = '/usr/lib/postgresql/%d/bin' % helpers.MAIN_MAJOR


def public_tables(info, dbname):
    """{table: exact rows} of the public tables of database C(dbname) of the cluster."""
    conn = helpers.connect(info, dbname)
    try:
        tables = [name for (name,) in helpers.query(
            conn, "SELECT tablename FROM pg_catalog.pg_tables WHERE schemaname = 'public' ORDER BY 1")]
        return dict((name, helpers.query(conn, 'SELECT count(*) FROM public."%s"' % name.replace('"', '""'))[0][0])
                    for name in tables)
    finally:
        conn.close()


def run_report(tmp_path):
    (found,) = glob.glob(os.path.join(str(tmp_path), 'artifacts', 'runs', '*', 'report.json'))
    with open(found) as handle:
        return json.load(handle)


@pytest.mark.majors(15, 18)
def test_the_backup_and_the_drill_use_the_client_of_the_servers_major(db, pg_cluster, pg_major, run_module, tmp_path):
    taken = run_module('postgresql_backup', root_dir=str(tmp_path))
    assert taken['changed'] and not taken.get('failed'), taken.get('msg')
    client = taken['client']
    assert client['major'] == pg_major and client['chosen_by'] == "the server's major", client
    assert client['version'].startswith('pg_dump (PostgreSQL) %d.' % pg_major) and client['version'] == \
        taken['pg_dump_version']
    assert client['program'] == os.path.join(client['bin_dir'], 'pg_dump')
    assert taken['commands'][0] == '%s --version' % client['program']
    assert taken['commands'][1].startswith('%s --format=custom' % client['program'])
    if pg_major == 18:  # the only 18 client installed; Debian's 15, first on the PATH, cannot dump an 18 server
        assert client['bin_dir'] == helpers.NEWEST_CLIENT_BIN
    # The archive is that pg_dump's: the pg_restore of its directory lists the tables and their data.
    listing = subprocess.run([os.path.join(client['bin_dir'], 'pg_restore'), '--list', taken['path']],
                             capture_output=True, text=True, check=True).stdout
    assert 'Dumped by pg_dump version: %d.' % pg_major in listing and 'Dumped from database version: %d.' % pg_major \
        in listing
    assert 'TABLE public Class pgzd' in listing and 'TABLE DATA public Job pgzd' in listing

    try:
        drill = run_module('postgresql_restore_drill', backup=taken['path'], scratch_database='pt_drill_matched',
                           keep=True)
        assert drill['changed'] and not drill.get('failed') and drill['differences'] == [], drill.get('msg')
        assert drill['client']['bin_dir'] == client['bin_dir'] and drill['client']['major'] == pg_major
        assert drill['commands'][1].startswith(os.path.join(client['bin_dir'], 'pg_restore') + ' --no-owner')
        restored = public_tables(pg_cluster, 'pt_drill_matched')
        assert restored == public_tables(pg_cluster, 't12') and len(restored) >= 10 and restored['Job'] > 0
    finally:
        helpers.query(db, 'DROP DATABASE IF EXISTS pt_drill_matched')


@pytest.mark.majors(15, 18)
def test_a_migration_drills_its_backup_with_the_pg_restore_of_the_backups_client(db, pg_cluster, pg_major, tmp_path):
    before = helpers.all_indexes(db)
    run = helpers.run_playbook('playbooks/migrate.yml', cluster_vars(pg_cluster, tmp_path, pgzd_restore_drill='true'),
                               options=['--tags', 'backup'])
    assert run.returncode == 0, run.stdout[-4000:]
    report = run_report(tmp_path)
    client = report['backup']['client']
    assert client['major'] == pg_major and client['chosen_by'] == "the server's major"
    assert report['restore_drill']['client']['bin_dir'] == client['bin_dir']
    assert report['restore_drill']['client']['chosen_by'] == 'restore_drill_bin_dir'  # handed over by the backup
    assert report['restore_drill']['differences'] == [] and report['restore_drill']['tables'] >= 10
    (backup,) = backups(tmp_path)
    assert report['backup']['path'] == backup
    listing = subprocess.run([os.path.join(client['bin_dir'], 'pg_restore'), '--list', backup],
                             capture_output=True, text=True, check=True).stdout
    assert 'Dumped by pg_dump version: %d.' % pg_major in listing
    with open(os.path.join(os.path.dirname(glob.glob(os.path.join(str(tmp_path), 'artifacts', 'runs', '*',
                                                                  'report.json'))[0]), 'report.md')) as handle:
        assert '- Client: `%s` in `%s` (chosen by the server\'s major)' % (client['version'], client['bin_dir']) \
            in handle.read()
    assert helpers.all_indexes(db) == before  # --tags backup: no DDL


@pytest.mark.majors(18)
def test_an_older_backup_bin_dir_is_refused_before_any_change(db, pg_cluster, tmp_path):
    before = helpers.all_indexes(db), helpers.unique_constraints(db)
    run = helpers.run_playbook('playbooks/migrate.yml', cluster_vars(pg_cluster, tmp_path, pgzd_restore_drill='true',
                                                                       backup_bin_dir=DEBIAN_CLIENT_BIN))
    assert run.returncode != 0
    text = ' '.join(run.stdout.split())
    assert 'pg_dump on the control node is version 15 but the server is 18.' in text
    assert 'Install postgresql-client-18 on the control node' in text
    assert backups(tmp_path) == []
    assert (helpers.all_indexes(db), helpers.unique_constraints(db)) == before  # no index, no constraint
    assert not helpers.query(db, "SELECT 1 FROM pg_database WHERE datname = 't12_restore_drill'")
    assert not helpers.query(db, "SELECT 1 FROM pg_locks WHERE locktype = 'advisory'")  # the migration lock is back
    report = run_report(tmp_path)
    assert report['status'] == 'failed' and report['backup']['skipped'] and report['restore_drill'] is None
    assert report['backup']['reason'].startswith('the backup failed: pg_dump on the control node is version 15')


@pytest.mark.majors(18)
def test_only_older_installed_clients_refuse_the_backup_saying_what_to_install(run_module, login, tmp_path):
    # The PATH without the 18 client: Debian's 15 (/usr/bin, /usr/lib/postgresql/15/bin) is all there is.
    result = helpers.run_ansible_module('postgresql_backup', dict(login, root_dir=str(tmp_path)),
                                        env=dict(PATH=os.environ['PATH']))
    assert result['failed'] and not result['changed']
    assert result['reason'].startswith('the backup failed: No pg_dump on the control node')  # reads as no backup
    assert result['msg'].startswith('No pg_dump on the control node can handle the server, PostgreSQL 18.'), result
    assert 'pg_dump 15.' in result['msg'] and 'in %s' % DEBIAN_CLIENT_BIN in result['msg']
    assert 'apt-get install postgresql-client-18 (from apt.postgresql.org)' in result['msg']
    assert 'client' not in result and os.listdir(str(tmp_path)) == []  # nothing written
    # Only the server's version and the database's size (which auto's choice of the mode reads) were read.
    assert result['queries'] == [backup_clients.SERVER_SQL, 'SELECT pg_catalog.pg_database_size('
                                 'pg_catalog.current_database()) AS database_bytes']
    # The drill too, before it creates its scratch database.
    archive = tmp_path / 'made-elsewhere' / 't12-20260101T000000Z.pgc'
    archive.parent.mkdir()
    archive.write_bytes(b'PGDMP')
    drill = helpers.run_ansible_module('postgresql_restore_drill',
                                       dict(login, backup=str(archive), scratch_database='pt_drill_refused'),
                                       env=dict(PATH=os.environ['PATH']))
    assert drill['failed'] and not drill['changed'] and drill['queries'] == [backup_clients.SERVER_SQL]
    assert drill['msg'].startswith('No pg_restore on the control node can handle the server, PostgreSQL 18.')


@pytest.mark.majors(18)
def test_a_pg_restore_older_than_the_archive_fails_the_drill_saying_which_to_use(db, run_module, tmp_path):
    taken = run_module('postgresql_backup', root_dir=str(tmp_path))
    assert taken['client']['bin_dir'] == helpers.NEWEST_CLIENT_BIN, taken.get('msg')
    drill = run_module('postgresql_restore_drill', backup=taken['path'], scratch_database='pt_drill_old_client',
                       bin_dir=DEBIAN_CLIENT_BIN)
    assert drill['failed'] and drill['client']['major'] == 15
    assert 'unsupported version' in drill['msg'] and (
        'pg_restore 15.' in drill['msg'] and 'cannot read an archive made by a newer pg_dump' in drill['msg'])
    assert not helpers.query(db, "SELECT 1 FROM pg_database WHERE datname = 'pt_drill_old_client'")
