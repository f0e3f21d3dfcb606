# -*- coding: utf-8 -*-
"""The baseline and validate phases: real EXPLAIN ANALYZE runs, the read-only gate, the comparison."""

import glob
import json
import os

import helpers

MODULE = 'postgresql_query_baseline'
JOB_QUERY = dict(name='job_open_by_teacher',
                 sql='SELECT * FROM "Job" WHERE "teacherId" = %(teacher)s AND "status" = \'OPEN\'',
                 params=dict(teacher=dict(query='SELECT "teacherId" FROM "Job" WHERE "status" = \'OPEN\' '
                                                'ORDER BY "id" LIMIT 1')))


def cluster_vars(pg_cluster, tmp_path, **extra):
    return dict(dict(local_cluster_dir=pg_cluster['dir'], pg_port=pg_cluster['port'],
                     pgzd_artifacts_dir=str(tmp_path / 'artifacts')), **extra)


def run_files(tmp_path, name):
    return sorted(glob.glob(os.path.join(str(tmp_path), 'artifacts', 'runs', '*', name)))


def job_rows(db):
    return helpers.query(db, 'SELECT count(*), sum("reward") FROM "Job"')[0]


def test_a_baseline_measures_every_run_and_resolves_parameters(db, run_module):
    result = run_module(MODULE, queries=[JOB_QUERY], runs=3)
    assert result.get('failed') is not True, result
    (query,) = result['queries']
    assert query['runs'] == 3 and len(query['execution_ms']) == 3
    assert query['median_ms'] > 0 and query['buffers'] > 0
    assert query['top_node'] and 'Job' in query['plan_shape']
    teacher = helpers.query(db, 'SELECT "teacherId" FROM "Job" WHERE "status" = \'OPEN\' ORDER BY "id" LIMIT 1')[0][0]
    assert query['params'] == dict(teacher=teacher)
    assert query['rows'] == helpers.query(db, 'SELECT count(*) FROM "Job" WHERE "teacherId" = %s AND "status" = '
                                              '\'OPEN\'', (teacher,))[0][0]


def test_writing_queries_are_refused_before_they_run(db, run_module):
    before = job_rows(db)
    for sql in ['UPDATE "Job" SET "reward" = 0',
                'WITH gone AS (DELETE FROM "Job" RETURNING 1) SELECT count(*) FROM gone',
                'SELECT * FROM "Job" LIMIT 1 FOR UPDATE',
                'SELECT 1; DELETE FROM "Job"']:
        result = run_module(MODULE, queries=[dict(name='bad', sql=sql)], runs=1)
        assert result.get('failed') is True, (sql, result)
        assert 'read-only' in result['msg'] or 'one statement' in result['msg'], result['msg']
        assert result['queries'] == []
    assert job_rows(db) == before  # not one row was touched


def test_migrate_records_the_baseline_and_validation_sees_seq_scans_become_index_scans(db, pg_cluster, tmp_path):
    run = helpers.run_playbook('playbooks/migrate.yml', cluster_vars(pg_cluster, tmp_path))
    try:
        assert run.returncode == 0, run.stdout[-6000:]
        (before_file,) = run_files(tmp_path, 'baseline_before.json')
        (after_file,) = run_files(tmp_path, 'baseline_after.json')
        (validate_file,) = run_files(tmp_path, 'validate.json')
        with open(before_file) as handle:
            before = json.load(handle)
        with open(validate_file) as handle:
            validation = json.load(handle)
        assert len(before['queries']) == 11
        assert before['queries'][0]['plan_shape'] == 'Seq Scan on Job'
        job = [c for c in validation['comparison'] if c['name'] == 'job_open_by_teacher'][0]
        assert job['seq_scan_to_index'] == ['Job'] and job['verdict'] in ('improved', 'held')  # small test data
        assert validation['objects_valid'] is True and validation['slower'] == []
        assert {row['index'] for row in validation['index_usage']} >= {'Job_teacherId_status_idx'}
        assert 'Seq Scan on Job became an index scan' in run.stdout
    finally:
        helpers.run_playbook('playbooks/rollback.yml', cluster_vars(pg_cluster, tmp_path))


def test_a_regressed_query_fails_validation_and_warns_when_asked(db, pg_cluster, tmp_path):
    # The "before" baseline is taken with the index in place; then the index goes away.
    helpers.query(db, 'CREATE INDEX "Job_teacherId_status_idx" ON "Job" ("teacherId", "status")')
    baseline = helpers.run_playbook('playbooks/baseline.yml', cluster_vars(pg_cluster, tmp_path))
    assert baseline.returncode == 0, baseline.stdout[-4000:]
    (before_file,) = run_files(tmp_path, 'baseline_before.json')
    helpers.drop_index(db, 'Job_teacherId_status_idx')
    regressed = dict(validate_baseline_file=before_file, validate_min_regression_ms=0, validate_tolerance=1.5)

    failed = helpers.run_playbook('playbooks/validate.yml', cluster_vars(pg_cluster, tmp_path, **regressed))
    assert failed.returncode != 0
    text = ' '.join(failed.stdout.split())
    assert 'Validation failed' in text  # the planned indexes are not there either
    # Only the performance verdict: validate the objects of an empty plan.
    plan = tmp_path / 'baseline_only.yml'
    plan.write_text(json.dumps(dict(name='regression', tables=[], baseline_queries=[JOB_QUERY])))
    slower = helpers.run_playbook('playbooks/validate.yml', cluster_vars(pg_cluster, tmp_path, pgzd_plan=str(plan), **regressed))
    assert slower.returncode != 0, slower.stdout[-4000:]
    text = ' '.join(slower.stdout.split())
    assert 'Slower than before' in text and 'job_open_by_teacher' in text
    assert 'Seq Scan on Job' in text
    warned = helpers.run_playbook('playbooks/validate.yml', cluster_vars(pg_cluster, tmp_path, pgzd_plan=str(plan),
                                                                       validate_on_regression='warn', **regressed))
    assert warned.returncode == 0, warned.stdout[-4000:]
    assert 'WARNING: Slower than before' in ' '.join(warned.stdout.split())


def test_validate_checks_only_the_tables_only_tables_names_and_refuses_one_the_plan_lacks(db, pg_cluster, tmp_path):
    """validate.yml takes -e pgzd_only_tables as the run context holds it (pgzd_run.only_tables), parsed and checked once."""
    plan = tmp_path / 'two_tables.yml'
    plan.write_text(json.dumps(dict(name='two-tables', tables=[
        dict(name='Job', indexes=[dict(name='Job_pgzd_only_idx', columns=['teacherId', 'status'])]),
        dict(name='Item', indexes=[dict(name='Item_pgzd_only_idx', columns=['type', 'rarity'])])])))
    limited = cluster_vars(pg_cluster, tmp_path, pgzd_plan=str(plan), pgzd_only_tables='Job')
    built = helpers.run_playbook('playbooks/indexes.yml', limited)
    try:
        assert built.returncode == 0, built.stdout[-4000:]
        assert helpers.index_info(db, 'Job_pgzd_only_idx')['valid'] is True
        assert not helpers.relation_exists(db, 'Item_pgzd_only_idx')
        validated = helpers.run_playbook('playbooks/validate.yml', limited)
        assert validated.returncode == 0, validated.stdout[-4000:]
        whole = helpers.run_playbook('playbooks/validate.yml', cluster_vars(pg_cluster, tmp_path, pgzd_plan=str(plan)))
        assert whole.returncode != 0 and 'still needed on Item' in whole.stdout, whole.stdout[-4000:]
        unknown = helpers.run_playbook('playbooks/validate.yml', dict(limited, pgzd_only_tables='Job,Nope'))
        assert unknown.returncode != 0
        assert 'only_tables names Nope, not in plan two-tables; its tables are Job, Item' in unknown.stdout, \
            unknown.stdout[-4000:]
    finally:
        helpers.run_playbook('playbooks/rollback.yml', cluster_vars(pg_cluster, tmp_path, pgzd_plan=str(plan)))
    assert not helpers.relation_exists(db, 'Job_pgzd_only_idx')
