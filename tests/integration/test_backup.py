# -*- coding: utf-8 -*-
"""The backup phase and the restore drill, through the real playbooks against the test cluster."""

import glob
import hashlib
import os
import re
import subprocess

import helpers


def cluster_vars(pg_cluster, tmp_path, **extra):
    return dict(dict(local_cluster_dir=pg_cluster['dir'], pg_port=pg_cluster['port'], artifacts_dir=str(tmp_path)),
                **extra)


def backups(tmp_path):
    return sorted(glob.glob(os.path.join(str(tmp_path), 'backups', 't12', 't12-*')))


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
