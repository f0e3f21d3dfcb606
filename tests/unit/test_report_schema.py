# -*- coding: utf-8 -*-
"""docs/report.schema.json, the schema of report.json docs/pipelines.md gives pipelines, against the filter that
makes the report (plugins/filter/migration_report.py). The integration tests check every report.json they write
against it too (conftest.py, every_report_matches_its_schema)."""

import importlib
import json
import os

import jsonschema

import helpers

report = importlib.import_module(helpers.collection_path('plugins.filter.migration_report')).migration_report

PLAN = dict(name='t12', file='/plans/t12.yml', trusted=['util.normalize(text)'],
            tables=[dict(name='Job', indexes=[dict(name='a'), dict(name='b')])])
RUN = dict(
    plan=PLAN, run_id='t12-20261202T030405Z-abcdef', database='t12', host='127.0.0.1', failure=None,
    backup=dict(path='/b/t12.pgc', format='custom', size_bytes=10, seconds=1.5, sha256='ab', sha256_of='the file',
                toc_entries=120, deleted=[]),
    restore_drill=dict(backup='/b/t12.pgc', scratch_database='t12_restore_drill', source={'public."Job"': 3},
                       restored={'public."Job"': 3}, tables=1, rows=3, differences=[], seconds=2.0),
    baseline=dict(queries=[dict(name='q', sql='SELECT 1', median_ms=0.4, buffers=3, runs=5, scans=[
        dict(node='Seq Scan', relation='Job', index=None)])], seconds=0.4),
    index_run=dict(seconds=9.5),
    indexes=[dict(name='a', schema='public', table='Job', action='created', seconds=1.0, retries=0,
                  waited_seconds=0.0, waited_for=[], statements=['CREATE INDEX CONCURRENTLY ...'], definition='CREATE'),
             dict(name='b', schema='public', table='Job', action='unchanged', seconds=0.0, retries=0,
                  waited_seconds=0.0, waited_for=[], statements=[], definition='CREATE')],
    constraint_run=dict(seconds=1.0),
    constraints=[dict(name='c', type='unique', schema='public', table='Job', columns=['x'], action='created',
                      seconds=1.0, retries=0, statements=[], definition='UNIQUE (x)', renamed_rows=0, rows=[])],
    validate=dict(objects_valid=True, seconds=0.7, slower=[], comparison=[dict(
        name='q', verdict='improved', ratio=0.1, before_ms=0.4, after_ms=0.04, before_buffers=3, after_buffers=1,
        plan_changed=True, scans_before=['Seq Scan on Job'], scans_after=['Index Scan using a on Job'],
        seq_scan_to_index=['Job'])],
        index_usage=[dict(schema='public', table='Job', index='a', size_bytes=8192, idx_scan=3, idx_tup_read=3,
                          idx_tup_fetch=3)]),
    prisma=dict(action='recorded', table='public._prisma_migrations', checksum='cafe',
                migration=dict(migration_name='20240101_a', id='1234')))


def schema():
    with open(helpers.REPORT_SCHEMA_PATH) as handle:
        return json.load(handle)


def test_the_schema_is_a_valid_draft_2020_12_schema():
    jsonschema.Draft202012Validator.check_schema(schema())


def test_the_schema_names_every_field_of_the_report_and_nothing_more():
    made = report(RUN, '2026-12-02T03:10:00Z')
    # problems: written by a run its preflight refused, which the filter does not make.
    assert set(schema()['properties']) - {'problems'} == set(made)
    assert schema()['additionalProperties'] is False


def test_the_reports_of_a_full_a_failed_and_a_bare_run_match_it():
    assert helpers.report_schema_errors(report(RUN, '2026-12-02T03:10:00Z')) == []
    assert helpers.report_schema_errors(report(dict(RUN, failure='Dump the database: pg_dump is too old'),
                                               '2026-12-02T03:10:00Z')) == []
    bare = dict(plan=PLAN, run_id='t12-x', failure=None)
    assert helpers.report_schema_errors(report(bare, '2026-12-02T03:10:00Z')) == []


def test_a_refused_run_with_its_problems_matches_it():
    refused = dict(report(dict(plan=PLAN, run_id='t12-x', failure='refused'), '2026-12-02T03:10:00Z'),
                   status='refused', problems=['table public.Nope does not exist'])
    assert helpers.report_schema_errors(refused) == []


def test_drift_is_caught():
    made = report(RUN, '2026-12-02T03:10:00Z')
    assert helpers.report_schema_errors(dict(made, surprise=1)) == [
        "(top): Additional properties are not allowed ('surprise' was unexpected)"]
    assert helpers.report_schema_errors(dict(made, status='done'))[0].startswith('status: ')
    wrong = json.loads(json.dumps(made))
    wrong['indexes'][0]['action'] = 'made'
    wrong['success_criteria'][0]['status'] = 'ok'
    assert [error.split(':')[0] for error in helpers.report_schema_errors(wrong)] == [
        'indexes/0/action', 'success_criteria/0/status']
    wrong = json.loads(json.dumps(made))
    wrong['succeeded_but_failed'] = None
    del wrong['run_id']
    assert len(helpers.report_schema_errors(wrong)) == 2
    assert helpers.report_schema_errors(dict(made, problems='not a list'))[0].startswith('problems: ')


def test_the_reports_a_test_wrote_are_found_and_nothing_else(tmp_path):
    def write(*parts):
        path = tmp_path.joinpath(*parts)
        path.parent.mkdir(parents=True)
        path.write_text('{}')
        return str(path)
    new = write('job', 'artifacts', 'runs', 'widgets-1', 'report.json')
    older = write('old', 'artifacts', 'runs', 'widgets-0', 'report.json')
    os.utime(older, (1000, 1000))
    write('venv', 'lib', 'runs', 'x', 'report.json')          # inside a virtualenv
    write('job', 'artifacts', 'elsewhere', 'report.json')     # not a run's folder
    assert helpers.reports_written_since(2000, [str(tmp_path)]) == [new]
