# -*- coding: utf-8 -*-
"""The disk-space preflight: the estimate of the indexes to build, and the refusal when it won't fit."""

import helpers


def test_the_estimate_of_the_indexes_to_build_is_a_near_upper_bound(db, run_module):
    plan = [dict(name='Job', indexes=[dict(name='pt_job_teacher_status', columns=['teacherId', 'status'])])]
    result = run_module('postgresql_online_index_info', tables=plan)
    assert result.get('failed') is not True, result
    estimate = result['estimated_bytes']
    helpers.query(db, 'CREATE INDEX "pt_job_teacher_status" ON "Job" ("teacherId", "status")')
    actual = helpers.query(db, "SELECT pg_relation_size('\"pt_job_teacher_status\"'::regclass)")[0][0]
    # B-tree deduplication packs repeated keys (500 teachers here), so the estimate errs high, not low.
    assert actual <= estimate <= 4 * actual, (estimate, actual)
    again = run_module('postgresql_online_index_info', tables=plan)
    assert again['estimated_bytes'] == 0  # nothing left to build
    assert result['data_directory'].endswith('/data')


def test_a_migration_that_would_not_fit_is_refused_before_any_ddl(db, pg_cluster):
    before = helpers.all_indexes(db)
    run = helpers.run_playbook('playbooks/migrate.yml', dict(local_cluster_dir=pg_cluster['dir'], pg_port=pg_cluster['port'],
                                                             preflight_disk_budget_bytes=100000))
    assert run.returncode != 0
    text = ' '.join(run.stdout.split())
    assert 'Not enough disk for the index builds' in text
    assert 'the budget preflight_disk_budget_bytes allows 0.1 MiB' in text
    assert helpers.all_indexes(db) == before
