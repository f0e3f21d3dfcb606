# -*- coding: utf-8 -*-
"""backup_mode (issue 25) through the real playbooks: full below the size threshold, schema (the schema and exactly
the rows a rename changes) above it, archive proven by a backup tool's listing, none; check mode; bad input refused
before any change; the restore drill by mode; the report's protection and evidence."""

import hashlib
import json
import os
import stat
import subprocess
import sys
import time

import pytest
import yaml

import helpers

DATABASE = 'pt_backup_modes'
CONSTRAINT = 'pt_bm_class_name_grade_key'
# (id, name, grade): two keys with duplicates (three rows of one, two of the other), a NULL key, and unique rows.
ROWS = [('a1', 'Algebra', 1), ('a2', 'Algebra', 1), ('a3', 'Algebra', 1), ('b1', 'Biology', 2), ('b2', 'Biology', 2),
        ('c1', 'Chemistry', 3), ('n1', None, 4), ('n2', None, 4), ('d1', 'Drama', 5)]
DUPLICATE_IDS = {'a1', 'a2', 'a3', 'b1', 'b2'}


@pytest.fixture(scope='module')
def small_db(db_session, pg_cluster):
    """A small database of its own: a table with duplicate keys, one that references it, an index and a check."""
    helpers.query(db_session, 'DROP DATABASE IF EXISTS %s' % DATABASE)
    helpers.query(db_session, 'CREATE DATABASE %s' % DATABASE)
    conn = helpers.connect(pg_cluster, DATABASE)
    helpers.query(conn, 'CREATE TABLE pt_bm_class (id text PRIMARY KEY, name text, grade int NOT NULL, '
                        'created_at timestamptz NOT NULL DEFAULT now(), CONSTRAINT pt_bm_grade_check CHECK (grade > 0))')
    helpers.query(conn, 'CREATE TABLE pt_bm_pupil (id serial PRIMARY KEY, class_id text REFERENCES pt_bm_class (id), '
                        'nick text)')
    helpers.query(conn, 'CREATE INDEX pt_bm_pupil_class_idx ON pt_bm_pupil (class_id)')
    for number, (row_id, name, grade) in enumerate(ROWS):
        helpers.query(conn, "INSERT INTO pt_bm_class VALUES (%s, %s, %s, now() - make_interval(mins => %s))",
                      (row_id, name, grade, 100 - number))
    helpers.query(conn, "INSERT INTO pt_bm_pupil (class_id, nick) SELECT 'a1', 'pupil ' || n FROM generate_series(1, 50) n")
    yield conn
    conn.close()
    helpers.query(db_session, 'DROP DATABASE IF EXISTS %s WITH (FORCE)' % DATABASE)


@pytest.fixture
def fresh(small_db):
    """The small database as the fixture made it, after each test (a migration adds the constraint and renames)."""
    yield small_db
    helpers.query(small_db, 'ALTER TABLE pt_bm_class DROP CONSTRAINT IF EXISTS %s' % CONSTRAINT)
    for row_id, name, dummy in ROWS:
        helpers.query(small_db, 'UPDATE pt_bm_class SET name = %s WHERE id = %s', (name, row_id))


def with_command(command):
    """The backup tool's argv as an extra var: a list needs JSON on the command line."""
    return ['-e', json.dumps(dict(backup_archive_command=command))]


def variables(pg_cluster, tmp_path, **extra):
    plan = tmp_path / 'pt_bm.yml'
    plan.write_text(yaml.safe_dump(dict(name='pt_bm', schema='public', tables=[], constraints=[
        dict(name=CONSTRAINT, table='pt_bm_class', type='unique', columns=['name', 'grade'], on_duplicates='rename')])))
    return dict(dict(local_cluster_dir=pg_cluster['dir'], pg_port=pg_cluster['port'], pg_database=DATABASE,
                     pgzd_plan=str(plan), pgzd_artifacts_dir=str(tmp_path / 'artifacts')), **extra)


def backups_dir(tmp_path):
    return tmp_path / 'artifacts' / 'backups' / DATABASE


def the_report(tmp_path):
    (found,) = list((tmp_path / 'artifacts' / 'runs').glob('pt_bm-*/report.json'))
    with open(str(found)) as handle:
        report = json.load(handle)
    assert helpers.report_schema_errors(report) == []
    return report


def criterion(report, name):
    return [entry for entry in report['success_criteria'] if entry['criterion'] == name][0]


def constraint_exists(conn):
    return bool(helpers.query(conn, 'SELECT 1 FROM pg_catalog.pg_constraint WHERE conname = %s', (CONSTRAINT,)))


def sha256(path):
    with open(str(path), 'rb') as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def flat(stdout):
    return ' '.join(stdout.split())


def fake_backup_tool(tmp_path, finished_seconds_ago, exit_code=0):
    """A stand-in for pgbackrest on the control node: prints pgbackrest info --output=json with one full backup
    that finished that long ago (or fails)."""
    script = tmp_path / 'pgbackrest'
    listing = [dict(name='main', status=dict(code=0, message='ok'), backup=[
        dict(label='20261204-010000F', type='full', error=False,
             timestamp=dict(start=0, stop='STOP'))])]
    script.write_text('#!%s\nimport json, sys, time\n'
                      'if %d:\n    sys.stderr.write("ERROR: [056]: unable to find primary cluster\\n"); sys.exit(%d)\n'
                      'print(%r.replace("\\"STOP\\"", str(int(time.time() - %d))))\n'
                      % (sys.executable, exit_code, exit_code, json.dumps(listing), finished_seconds_ago))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return [str(script), '--stanza=main', 'info', '--output=json']


# -- full, schema, auto --------------------------------------------------------------------------------------

def test_auto_takes_a_full_dump_below_the_threshold_and_a_schema_backup_at_or_above_it(fresh, pg_cluster, tmp_path):
    small = helpers.run_playbook('playbooks/backup.yml', variables(pg_cluster, tmp_path))
    assert small.returncode == 0, small.stdout[-4000:]
    assert 'Backup mode full: the database' in flat(small.stdout)
    assert 'is smaller than backup_full_max_size (5.0 GiB)' in flat(small.stdout)
    (full,) = list(backups_dir(tmp_path).glob('*.pgc'))

    large = helpers.run_playbook('playbooks/backup.yml', variables(pg_cluster, tmp_path, backup_full_max_size='1MiB'))
    assert large.returncode == 0, large.stdout[-4000:]
    assert 'Backup mode schema: the database' in flat(large.stdout)
    assert 'is at least backup_full_max_size (1.0 MiB)' in flat(large.stdout)
    # The full dump measured this control node's rate: the estimate says so.
    assert 'the full dump of %s on this control node' % full.name in flat(large.stdout)
    (schema,) = list(backups_dir(tmp_path).glob('*.schema'))
    listing = subprocess.run(['pg_restore', '--list', str(schema / 'schema.pgc')], capture_output=True, text=True,
                             check=True).stdout
    assert 'TABLE public pt_bm_class' in listing and 'INDEX public pt_bm_pupil_class_idx' in listing
    assert 'TABLE DATA' not in listing  # the schema only
    with open(str(schema / 'manifest.json')) as handle:
        manifest = json.load(handle)
    assert manifest['schema']['sha256'] == sha256(schema / 'schema.pgc')
    assert manifest['rows'] == []  # backup.yml alone runs no plan: no row is touched
    shape = set((row['table_name'], row['kind'], row['name']) for row in manifest['shape'])
    assert ('public.pt_bm_class', 'constraint', 'pt_bm_grade_check') in shape
    assert ('public.pt_bm_pupil', 'index', 'pt_bm_pupil_class_idx') in shape


@pytest.mark.majors(15, 17, 18)
def test_schema_mode_saves_exactly_the_rows_a_rename_changes_and_its_drill_restores_the_shape(fresh, pg_cluster,
                                                                                              tmp_path):
    migrated = helpers.run_playbook('playbooks/migrate.yml', variables(pg_cluster, tmp_path, backup_mode='schema',
                                                                        pgzd_restore_drill=True))
    assert migrated.returncode == 0, migrated.stdout[-6000:]
    assert constraint_exists(fresh)
    # The rename changed the duplicates after the backup saved them as they were.
    renamed = dict(helpers.query(fresh, "SELECT id, name FROM pt_bm_class WHERE name LIKE '%%[duplicate%%'"))
    assert set(renamed) == DUPLICATE_IDS - {'a1', 'b1'}

    (schema,) = list(backups_dir(tmp_path).glob('*.schema'))
    (rows_file,) = list((schema / 'rows').glob('*.copy'))
    saved = [line.split('\t') for line in rows_file.read_text().splitlines()]
    assert sorted((row[0], row[1], row[2]) for row in saved) == sorted(
        (row_id, name, str(grade)) for row_id, name, grade in ROWS if row_id in DUPLICATE_IDS)

    report = the_report(tmp_path)
    backup = report['backup']
    assert backup['backup_mode'] == 'schema' and backup['mode_reason'] == 'schema was asked for (backup_mode=schema)'
    assert backup['rows'] == [dict(schema='public', table='pt_bm_class', columns=['name', 'grade'],
                                   copy_columns=['id', 'name', 'grade', 'created_at'], rows=5, path=str(rows_file),
                                   sha256=sha256(rows_file))]
    assert backup['schema']['sha256'] == sha256(schema / 'schema.pgc')
    drill = report['restore_drill']
    assert drill['kind'] == 'schema' and drill['differences'] == [] and drill['rows'] == 5
    assert drill['tables'] == 2
    ready = criterion(report, 'Rollback plan tested and ready')
    assert ready['status'] == 'met', ready
    assert 'mode schema: schema backup %s' % schema in ready['evidence']
    assert '5 touched rows of 1 tables saved' in ready['evidence']
    assert "restore drill (schema): 2 tables' columns, constraints and indexes match, 5 saved rows loaded" \
        in ready['evidence']
    markdown = (tmp_path / 'artifacts' / 'runs').glob('pt_bm-*/report.md').__next__().read_text()
    assert '- Mode: **schema**' in markdown and 'Saved rows: 5 of `public.pt_bm_class`' in markdown


@pytest.mark.majors(14)
def test_a_drill_whose_pg_restore_is_too_new_for_the_server_is_refused_saying_what_to_install(fresh, pg_cluster,
                                                                                               tmp_path):
    # No client 14 here: the backup takes 18.6's pg_dump (it dumps older servers), whose pg_restore cannot restore into
    # a 14 server (SET transaction_timeout). The drill says so before it creates anything.
    taken = helpers.run_playbook('playbooks/backup.yml', variables(pg_cluster, tmp_path, backup_mode='schema'))
    assert taken.returncode == 0, taken.stdout[-4000:]
    drill = helpers.run_playbook('playbooks/restore_drill.yml', variables(pg_cluster, tmp_path))
    assert drill.returncode != 0
    text = flat(drill.stdout)
    assert 'cannot restore into this server, PostgreSQL 14.' in text
    assert 'Install the client of the server\'s major on the control node (postgresql-client-14' in text
    assert not helpers.query(fresh, "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE + '_restore_drill',))


def test_the_schema_drill_names_what_the_restore_lacks(fresh, pg_cluster, tmp_path):
    taken = helpers.run_playbook('playbooks/backup.yml', variables(pg_cluster, tmp_path, backup_mode='schema'))
    assert taken.returncode == 0, taken.stdout[-4000:]
    (schema,) = list(backups_dir(tmp_path).glob('*.schema'))
    # The source as the manifest recorded it had one more index than the restore will: the drill must see it.
    manifest_path = schema / 'manifest.json'
    manifest = json.loads(manifest_path.read_text())
    manifest['shape'].append(dict(table_name='public.pt_bm_pupil', kind='index', name='pt_bm_pupil_nick_idx',
                                  definition='CREATE INDEX pt_bm_pupil_nick_idx ON public.pt_bm_pupil USING btree (nick)'))
    manifest_path.write_text(json.dumps(manifest))

    drill = helpers.run_playbook('playbooks/restore_drill.yml', variables(pg_cluster, tmp_path,
                                                                          restore_drill_backup=str(schema)))
    assert drill.returncode != 0
    assert ('public.pt_bm_pupil: index pt_bm_pupil_nick_idx (CREATE INDEX pt_bm_pupil_nick_idx ON public.pt_bm_pupil '
            'USING btree (nick)) was not restored') in flat(drill.stdout)
    assert not helpers.query(fresh, "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE + '_restore_drill',))


# -- check mode and bad input --------------------------------------------------------------------------------

def test_check_mode_shows_the_mode_why_a_full_dump_estimate_and_what_each_mode_protects(fresh, pg_cluster, tmp_path):
    checked = helpers.run_playbook('playbooks/migrate.yml', variables(pg_cluster, tmp_path, backup_full_max_size='1kB',
                                                                      pgzd_restore_drill=True), options=['--check'])
    assert checked.returncode == 0, checked.stdout[-6000:]
    text = flat(checked.stdout)
    assert 'Backup mode schema: the database' in text and 'is at least backup_full_max_size (1000 bytes)' in text
    assert 'A full dump of this database' in text and 'no full dump measured here yet' in text
    for mode in ('schema protects', 'full protects', 'archive protects'):
        assert mode in text, mode
    assert "Check mode: would save the schema of %s and the rows of 1 table(s) this run may change" % DATABASE in text
    assert 'columns, constraints and indexes with %s before the run, and load the rows saved' % DATABASE in text
    assert not backups_dir(tmp_path).exists()
    assert not constraint_exists(fresh)


@pytest.mark.parametrize('setting, value, said', [
    ('backup_mode', 'snapshot', 'value of backup_mode must be one of: auto, full, schema, archive, schema+archive, '
                                'full+archive, none, got: snapshot'),
    ('backup_full_max_size', 'big', "full_max_size (backup_full_max_size) must be a size such as 512MiB, 5GiB or 1TB "
                                    "(or a number of bytes), not 'big'"),
    ('backup_archive_max_age', 'soon', "archive_max_age (backup_archive_max_age) must be a duration such as 30s, "
                                       "15min, 2h or 1d"),
])
def test_a_bad_setting_is_refused_before_any_change(fresh, pg_cluster, tmp_path, setting, value, said):
    before = helpers.query(fresh, 'SELECT id, name FROM pt_bm_class ORDER BY id')
    run = helpers.run_playbook('playbooks/migrate.yml', variables(pg_cluster, tmp_path, **{setting: value}))
    assert run.returncode != 0
    assert said in flat(run.stdout), flat(run.stdout)[-3000:]
    assert not constraint_exists(fresh)
    assert helpers.query(fresh, 'SELECT id, name FROM pt_bm_class ORDER BY id') == before
    assert not list(backups_dir(tmp_path).glob('pt_*')) if backups_dir(tmp_path).exists() else True


def test_archive_mode_is_refused_when_the_server_does_not_archive_its_wal(fresh, pg_cluster, tmp_path):
    run = helpers.run_playbook('playbooks/migrate.yml', variables(pg_cluster, tmp_path, backup_mode='archive'))
    assert run.returncode != 0
    assert 'archive_mode is off on the server: its WAL is not archived' in flat(run.stdout)
    assert not constraint_exists(fresh)
    report = the_report(tmp_path)
    assert report['backup']['skipped'] is True and 'archive_mode is off' in report['backup']['reason']


# -- archive, by a backup tool's listing ---------------------------------------------------------------------

def test_archive_mode_with_a_fresh_backup_listed_protects_and_records_the_recovery_target(fresh, pg_cluster,
                                                                                          tmp_path):
    command = fake_backup_tool(tmp_path, finished_seconds_ago=3600)
    started = time.time()
    run = helpers.run_playbook('playbooks/migrate.yml', variables(
        pg_cluster, tmp_path, backup_mode='archive', pgzd_restore_drill=True), options=with_command(command))
    assert run.returncode == 0, run.stdout[-6000:]
    assert constraint_exists(fresh)
    assert not backups_dir(tmp_path).exists()  # nothing dumped
    report = the_report(tmp_path)
    backup = report['backup']
    assert backup['backup_mode'] == 'archive' and 'path' not in backup
    assert backup['archive']['newest_backup']['name'] == '20261204-010000F'
    assert backup['archive']['archiver']['archive_mode'] == 'off'  # the command alone is the proof
    # ... of a base backup only: without WAL archiving, recovery reaches the backup's end, which the run says.
    assert backup['archive']['not_verified'][0].startswith(
        'archive_mode is off: the server archives no WAL, so recovery reaches only the end of the backup '
        '20261204-010000F')
    assert 'Archive_mode is off: the server archives no WAL' in flat(run.stdout + run.stderr)
    target = backup['pitr_target']
    assert target['lsn'] and target['wal_file'] and target['time']
    # The target was read after the proof and before the constraint: its LSN is not behind the proof's.
    proven = backup['archive']['proven_at']['lsn']
    assert helpers.query(fresh, 'SELECT %s::pg_lsn >= %s::pg_lsn', (target['lsn'], proven))[0][0] is True
    drill = report['restore_drill']
    assert drill['kind'] == 'archive' and drill['differences'] == []
    assert drill['not_verified'] == backup['archive']['not_verified']
    assert drill['verified'][0].startswith("the server archives no WAL (archive_mode=off): only the backup tool's "
                                           "listing was the proof; the backup tool listed 20261204-010000F")
    ready = criterion(report, 'Rollback plan tested and ready')
    assert ready['status'] == 'met', ready
    assert 'mode archive: point-in-time recovery proven' in ready['evidence']
    assert 'recovery target LSN %s' % target['lsn'] in ready['evidence']
    assert time.time() - started < 300


@pytest.mark.parametrize('age, exit_code, said', [
    (3 * 86400, 0, 'finished 3.0 days ago'),
    (60, 3, 'failed (exit 3): ERROR: [056]: unable to find primary cluster'),
])
def test_archive_mode_refuses_a_stale_or_failing_backup_tool_before_any_change(fresh, pg_cluster, tmp_path, age,
                                                                               exit_code, said):
    command = fake_backup_tool(tmp_path, finished_seconds_ago=age, exit_code=exit_code)
    run = helpers.run_playbook('playbooks/migrate.yml', variables(pg_cluster, tmp_path, backup_mode='archive'),
                               options=with_command(command))
    assert run.returncode != 0
    assert said in flat(run.stdout), flat(run.stdout)[-3000:]
    assert 'Nothing was changed' in flat(run.stdout)
    assert not constraint_exists(fresh)


def test_backup_mode_none_is_loud_and_recorded(fresh, pg_cluster, tmp_path):
    run = helpers.run_playbook('playbooks/migrate.yml', variables(pg_cluster, tmp_path, backup_mode='none'))
    assert run.returncode == 0, run.stdout[-6000:]
    assert '!!! NO BACKUP: backup_mode=none was given, so %s was NOT backed up' % DATABASE in flat(run.stdout)
    report = the_report(tmp_path)
    assert report['backup']['backup_mode'] == 'none' and report['backup']['skipped'] is True
    assert criterion(report, 'Rollback plan tested and ready')['status'] == 'not met'
    assert os.path.exists(str(tmp_path / 'artifacts' / 'runs'))


def test_a_schema_backup_warns_of_the_row_changes_it_does_not_save_and_the_report_says_not_protected(fresh, run_module,
                                                                                                     tmp_path):
    deploy = 'the statements of the pending Prisma migrations 20261204000000_backfill'
    result = run_module('postgresql_backup', login_db=DATABASE, root_dir=str(tmp_path), mode='schema',
                        uncovered_changes=[deploy])
    assert not result.get('failed'), result.get('msg')
    assert result['not_protected'] == [deploy]
    assert ('A schema backup does not save the rows that %s may change: choose backup_mode=full (or schema+archive) '
            'to protect them.' % deploy) in result['warnings']
    # A full dump (or the archive) protects them: nothing is said.
    full = run_module('postgresql_backup', login_db=DATABASE, root_dir=str(tmp_path), mode='full',
                      uncovered_changes=[deploy])
    assert full['not_protected'] == [] and not full.get('warnings')


def test_a_backup_tool_missing_on_the_control_node_is_refused_as_no_backup(fresh, run_module, tmp_path):
    result = run_module('postgresql_backup', login_db=DATABASE, root_dir=str(tmp_path), mode='archive',
                        archive_command=[str(tmp_path / 'no-such-pgbackrest'), 'info', '--output=json'])
    assert result.get('failed') and result.get('backup_mode') == 'archive', result
    assert ('no-such-pgbackrest is not found on the host the module runs on (the control node, not the database '
            'server)') in result['msg']
    assert result['reason'].startswith('the backup failed: backup_archive_command ')
    assert os.listdir(str(tmp_path)) == []
