# -*- coding: utf-8 -*-
"""backup_mode=archive (issue 25) against a real WAL archive: a cluster of this module's own archives every WAL segment
into a local folder (tests/integration/archive_cluster.py). A fresh archive proves point-in-time recovery and the run
records its target; a stale, failing or empty archive is refused before any change."""

import json
import os

import pytest
import yaml

import helpers
from archive_cluster import (  # noqa: F401  (archive_cluster is a fixture)
    archive_cluster, archive_now, make_archive_stale, make_archiving_fail, reset_archiver_statistics,
    restore_archiving,
)

CONSTRAINT = 'pt_ar_item_code_key'


@pytest.fixture(scope='module')
def archived_db(archive_cluster):  # noqa: F811
    """The archiving cluster's database with a small table whose key has duplicates."""
    conn = helpers.connect(archive_cluster)
    helpers.query(conn, 'CREATE TABLE pt_ar_item (id int PRIMARY KEY, code text NOT NULL)')
    helpers.query(conn, "INSERT INTO pt_ar_item VALUES (1, 'x'), (2, 'x'), (3, 'y'), (4, 'z')")
    yield conn
    conn.close()


@pytest.fixture
def item_table(archived_db):
    yield archived_db
    helpers.query(archived_db, 'ALTER TABLE pt_ar_item DROP CONSTRAINT IF EXISTS %s' % CONSTRAINT)
    helpers.query(archived_db, "UPDATE pt_ar_item SET code = 'x' WHERE id IN (1, 2)")


def variables(cluster, tmp_path, **extra):
    plan = tmp_path / 'pt_ar.yml'
    plan.write_text(yaml.safe_dump(dict(name='pt_ar', schema='public', tables=[], constraints=[
        dict(name=CONSTRAINT, table='pt_ar_item', type='unique', columns=['code'], on_duplicates='rename')])))
    return dict(dict(local_cluster_dir=cluster['dir'], pg_port=cluster['port'], pg_database=cluster['dbname'],
                     pgzd_plan=str(plan), pgzd_artifacts_dir=str(tmp_path / 'artifacts')), **extra)


def flat(stdout):
    return ' '.join(stdout.split())


def constraint_exists(conn):
    return bool(helpers.query(conn, 'SELECT 1 FROM pg_catalog.pg_constraint WHERE conname = %s', (CONSTRAINT,)))


def the_report(tmp_path):
    (found,) = list((tmp_path / 'artifacts' / 'runs').glob('pt_ar-*/report.json'))
    report = json.loads(found.read_text())
    assert helpers.report_schema_errors(report) == []
    return report


def test_a_fresh_archive_proves_recovery_and_the_run_records_its_target_before_the_first_ddl(archive_cluster,
                                                                                            item_table, tmp_path):
    archived = archive_now(archive_cluster)['last_archived_wal']
    assert os.path.getsize(os.path.join(archive_cluster['archive_dir'], archived)) == 16 * 1024 * 1024

    run = helpers.run_playbook('playbooks/migrate.yml', variables(archive_cluster, tmp_path,
                                                                  backup_mode='schema+archive', pgzd_restore_drill=True))

    assert run.returncode == 0, run.stdout[-6000:]
    assert constraint_exists(item_table)
    report = the_report(tmp_path)
    backup = report['backup']
    assert backup['backup_mode'] == 'schema+archive'
    archiver = backup['archive']['archiver']
    assert archiver['archive_mode'] == 'on' and archiver['last_archived_wal'] >= archived
    assert os.path.exists(os.path.join(archive_cluster['archive_dir'], archiver['last_archived_wal']))
    assert backup['rows'][0]['rows'] == 2  # the two rows of the duplicate key 'x'
    target, proven = backup['pitr_target'], backup['archive']['proven_at']
    assert helpers.query(item_table, 'SELECT %s::pg_lsn >= %s::pg_lsn', (target['lsn'], proven['lsn']))[0][0]
    assert target['wal_file'] == helpers.query(item_table, 'SELECT pg_walfile_name(%s::pg_lsn)', (target['lsn'],))[0][0]
    drill = report['restore_drill']
    assert drill['kind'] == 'schema' and drill['differences'] == [] and drill['rows'] == 2
    assert any('the WAL archiver is archiving (archive_mode=on' in line for line in drill['verified'])
    assert any('no base backup was restored' in line for line in drill['not_verified'])
    ready = [c for c in report['success_criteria'] if c['criterion'] == 'Rollback plan tested and ready'][0]
    assert ready['status'] == 'met', ready
    assert 'point-in-time recovery proven (WAL archiving (archive_mode=on)' in ready['evidence']
    assert 'recovery target LSN %s' % target['lsn'] in ready['evidence']
    markdown = next((tmp_path / 'artifacts' / 'runs').glob('pt_ar-*/report.md')).read_text()
    assert 'Recovery target (right before the first DDL): LSN `%s`' % target['lsn'] in markdown


def test_a_stale_archive_is_refused_and_a_wal_switch_proves_it_works_now(archive_cluster, item_table, tmp_path):
    make_archive_stale(archive_cluster, 2)

    stale = helpers.run_playbook('playbooks/backup.yml', variables(archive_cluster, tmp_path, backup_mode='archive',
                                                                   backup_archive_max_age='2s'))

    assert stale.returncode != 0
    assert 'The archive is stale: the last WAL segment archived' in flat(stale.stdout)
    assert 'more than backup_archive_max_age (2s)' in flat(stale.stdout)
    assert 'SELECT pg_switch_wal()' in flat(stale.stdout)

    switched = helpers.run_playbook('playbooks/backup.yml', variables(archive_cluster, tmp_path, backup_mode='archive',
                                                                      backup_archive_max_age='2s',
                                                                      backup_archive_switch_wal=True))

    assert switched.returncode == 0, switched.stdout[-4000:]
    assert 'closed by pg_switch_wal for this proof' in flat(switched.stdout)
    assert not (tmp_path / 'artifacts' / 'backups').exists()  # archive alone dumps nothing


def test_failing_archiving_is_refused_before_any_change(archive_cluster, item_table, tmp_path):
    make_archiving_fail(archive_cluster)
    try:
        run = helpers.run_playbook('playbooks/migrate.yml', variables(archive_cluster, tmp_path,
                                                                      backup_mode='archive'))
    finally:
        restore_archiving(archive_cluster)
    assert run.returncode != 0
    text = flat(run.stdout)
    assert 'WAL archiving is failing: the archiver\'s last attempt, on' in text
    assert 'Fix archive_command (the server log says why it failed)' in text
    assert not constraint_exists(item_table)
    assert helpers.query(item_table, "SELECT count(*) FROM pt_ar_item WHERE code = 'x'")[0][0] == 2


def test_an_archive_that_never_archived_is_refused(archive_cluster, item_table, tmp_path):
    reset_archiver_statistics(archive_cluster)
    run = helpers.run_playbook('playbooks/backup.yml', variables(archive_cluster, tmp_path, backup_mode='archive'))
    assert run.returncode != 0
    assert 'archive_mode is on but the server has archived no WAL segment yet' in flat(run.stdout)
