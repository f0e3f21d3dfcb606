# -*- coding: utf-8 -*-
"""plugins/filter/success_criteria.py: each criterion met, not met, or not checked when its phase did not run."""

import importlib

import helpers

criteria = importlib.import_module(helpers.collection_path('plugins.filter.success_criteria')).success_criteria

NAMES = ['All indexes created successfully', 'No service downtime during migration',
         'Query performance improved or maintained', 'No data integrity issues', 'Rollback plan tested and ready']
BUILT = dict(name='Job_createdAt_idx', action='created',
             statements=['CREATE INDEX CONCURRENTLY IF NOT EXISTS "Job_createdAt_idx" ON "public"."Job" ("createdAt")'])
CONSTRAINT = dict(name='Class_name_grade_key', retries=1, renamed_rows=2)
VALID = dict(objects_valid=True, slower=[], comparison=[dict(verdict='improved'), dict(verdict='held')])
BACKUP = dict(path='artifacts/backups/t12/t12.pgc', toc_entries=120, skipped=False)
DRILL = dict(tables=19, rows=1800, differences=[])


def run(**changes):
    base = dict(indexes=[BUILT, dict(name='Item_type_idx', action='unchanged', statements=[])],
                constraints=[CONSTRAINT], validate=VALID, backup=BACKUP, restore_drill=DRILL, failure=None,
                planned_indexes=26)
    base.update(changes)
    return base


def statuses(result):
    return dict((c['criterion'], c['status']) for c in result)


def test_a_whole_run_meets_every_criterion_in_report_order():
    result = criteria(run())
    assert [c['criterion'] for c in result] == NAMES
    assert [c['status'] for c in result] == ['met'] * 5 and all(c['met'] for c in result)
    evidence = dict((c['criterion'], c['evidence']) for c in result)
    assert evidence[NAMES[0]].startswith('validate: every planned index (26) exists')
    assert evidence[NAMES[1]].startswith('1 index statement(s), all CONCURRENTLY (reads and writes continue); '
                                         '1 constraint step(s)')
    assert evidence[NAMES[2]] == '1 improved, 1 held, 0 slower of 2 baseline queries'
    assert '2 duplicate row(s) renamed' in evidence[NAMES[3]] and 'Class_name_grade_key enforced' in evidence[NAMES[3]]
    assert 'restore drill: 19 tables, 1800 rows, counts match' in evidence[NAMES[4]]


def test_a_tags_selection_without_validation_or_backup_leaves_those_criteria_not_checked():
    # migrate.yml --tags indexes: no baseline, so no validation; no backup phase.
    result = statuses(criteria(run(validate=None, backup=None, restore_drill=None, constraints=[])))
    assert result == {NAMES[0]: 'not checked', NAMES[1]: 'met', NAMES[2]: 'not checked', NAMES[3]: 'not checked',
                      NAMES[4]: 'not checked'}
    assert not any(c['met'] for c in criteria(run(validate=None)) if c['status'] == 'not checked')


def test_an_empty_validation_counts_as_not_run():
    assert statuses(criteria(run(validate={})))[NAMES[0]] == 'not checked'


def test_a_statement_without_concurrently_or_a_failure_is_downtime_not_met():
    blocking = dict(BUILT, statements=['CREATE INDEX "Job_x_idx" ON "public"."Job" ("x")'])
    assert statuses(criteria(run(indexes=[blocking])))[NAMES[1]] == 'not met'
    failed = statuses(criteria(run(failure='Index "Job_x_idx": disk full')))
    assert failed[NAMES[1]] == 'not met' and failed[NAMES[3]] == 'not met'


def test_invalid_objects_or_a_slower_query_are_not_met():
    result = statuses(criteria(run(validate=dict(VALID, objects_valid=False, slower=[dict(name='q')]))))
    assert result[NAMES[0]] == 'not met' and result[NAMES[2]] == 'not met' and result[NAMES[3]] == 'not met'


def test_a_validation_without_baseline_queries_compared_has_performance_not_checked():
    assert statuses(criteria(run(validate=dict(VALID, comparison=[]))))[NAMES[2]] == 'not checked'


def test_a_skipped_backup_or_a_missing_or_differing_drill_is_not_met():
    skipped = criteria(run(backup=dict(skipped=True, reason='backup_enabled=false was given')))[4]
    assert skipped['status'] == 'not met' and skipped['evidence'].startswith('NO BACKUP: backup_enabled=false')
    no_drill = criteria(run(restore_drill=None))[4]
    assert no_drill['status'] == 'not met' and 'restore drill not run in this run' in no_drill['evidence']
    differ = criteria(run(restore_drill=dict(DRILL, differences=['Job'])))[4]
    assert differ['status'] == 'not met' and 'counts DIFFER' in differ['evidence']
