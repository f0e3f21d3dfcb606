# -*- coding: utf-8 -*-
"""plugins/filter/success_criteria.py: each criterion met, not met, or not checked when its phase did not run."""

import importlib

import helpers

success_criteria = importlib.import_module(helpers.collection_path('plugins.filter.success_criteria'))
criteria = success_criteria.success_criteria

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


# -- the protection each backup mode gives, and the drill that follows it (issue 25) -------------------------

SCHEMA_BACKUP = dict(skipped=False, backup_mode='schema', path='/b/t12-20261204T030000Z.schema', toc_entries=214,
                     rows=[dict(table='Class', rows=4), dict(table='Enrollment', rows=2)])
ARCHIVE = dict(checked=['WAL archiving (archive_mode=on): 00000001000000000000002A archived 12.5 s before, no failure '
                        'since', 'pgbackrest --stanza=main info --output=json lists the backup 20261203-210000D, '
                        'finished 2026-12-03T21:01:40+00:00'],
               proven_at=dict(lsn='0/2A000148', wal_file='00000001000000000000002A', time='2026-12-04T02:59:58+00:00'))
ARCHIVE_BACKUP = dict(skipped=False, backup_mode='archive', path=None, archive=ARCHIVE,
                      pitr_target=dict(lsn='0/2A0001F0', wal_file='00000001000000000000002A',
                                       time='2026-12-04T03:00:01+00:00'))
PROVEN = ('point-in-time recovery proven (WAL archiving (archive_mode=on): 00000001000000000000002A archived 12.5 s '
          'before, no failure since; pgbackrest --stanza=main info --output=json lists the backup 20261203-210000D, '
          'finished 2026-12-03T21:01:40+00:00)')
NOT_VERIFIED = ['no base backup was restored and no WAL was replayed', 'the archived WAL files were not read back']
SCHEMA_DRILL = dict(kind='schema', tables=19, rows=6, differences=[])
ARCHIVE_DRILL = dict(kind='archive', differences=[], not_verified=NOT_VERIFIED,
                     verified=['the WAL archiver is still archiving (archive_mode=on, 57 WAL segments archived, the '
                               'last 00000001000000000000002C, no failure since the backup\'s proof)'])


def rollback(backup, drill):
    return criteria(run(backup=backup, restore_drill=drill))[4]


def test_a_full_backup_is_stated_with_its_path_and_entries_with_or_without_its_mode():
    assert success_criteria.protection_evidence(dict(BACKUP, backup_mode='full')) == (
        'mode full: full backup artifacts/backups/t12/t12.pgc verified by pg_restore --list (120 entries)')
    assert success_criteria.protection_evidence(BACKUP) == success_criteria.protection_evidence(
        dict(BACKUP, backup_mode='full'))  # a result of before the modes reads as full


def test_a_schema_backup_is_stated_with_its_entries_and_the_touched_rows_it_saved():
    assert success_criteria.protection_evidence(SCHEMA_BACKUP) == (
        'mode schema: schema backup /b/t12-20261204T030000Z.schema (schema verified by pg_restore --list, 214 '
        'entries; 6 touched rows of 2 tables saved)')
    assert success_criteria.protection_evidence(dict(SCHEMA_BACKUP, rows=[])).endswith(
        '(schema verified by pg_restore --list, 214 entries; 0 touched rows of 0 tables saved)')


def test_an_archive_proof_is_stated_with_what_was_checked_and_the_recovery_target():
    assert success_criteria.protection_evidence(ARCHIVE_BACKUP) == (
        'mode archive: ' + PROVEN + '; recovery target LSN 0/2A0001F0 at 2026-12-04T03:00:01+00:00')
    # Without the target migrate.yml records before the first DDL (backup.yml alone), the LSN of the proof.
    without_target = dict(ARCHIVE_BACKUP, pitr_target=None)
    assert success_criteria.protection_evidence(without_target).endswith(
        '; recovery target LSN 0/2A000148 at 2026-12-04T02:59:58+00:00')


def test_combined_modes_state_the_dump_then_the_archive():
    both = success_criteria.protection_evidence(dict(SCHEMA_BACKUP, backup_mode='schema+archive', archive=ARCHIVE))
    assert both == ('mode schema+archive: schema backup /b/t12-20261204T030000Z.schema (schema verified by pg_restore '
                    '--list, 214 entries; 6 touched rows of 2 tables saved); ' + PROVEN
                    + '; recovery target LSN 0/2A000148 at 2026-12-04T02:59:58+00:00')
    full = success_criteria.protection_evidence(dict(BACKUP, backup_mode='full+archive', archive=ARCHIVE))
    assert full.startswith('mode full+archive: full backup artifacts/backups/t12/t12.pgc verified by pg_restore '
                           '--list (120 entries); ' + PROVEN)


def test_no_backup_is_stated_with_its_reason_whatever_else_the_result_holds():
    none = dict(skipped=True, backup_mode='none', reason='mode=none (backup_mode) was given')
    assert success_criteria.protection_evidence(none) == 'NO BACKUP: mode=none (backup_mode) was given'
    failed = dict(SCHEMA_BACKUP, skipped=True, reason='the backup failed: The archive is stale')
    assert success_criteria.protection_evidence(failed) == 'NO BACKUP: the backup failed: The archive is stale'
    assert success_criteria.protection_evidence(dict(skipped=True)) == 'NO BACKUP: skipped'
    result = rollback(none, ARCHIVE_DRILL)
    assert result['status'] == 'not met' and result['evidence'].startswith('NO BACKUP: mode=none')


def test_a_schema_backup_with_a_matching_schema_drill_is_ready():
    result = rollback(SCHEMA_BACKUP, SCHEMA_DRILL)
    assert result['status'] == 'met'
    assert result['evidence'] == (
        'mode schema: schema backup /b/t12-20261204T030000Z.schema (schema verified by pg_restore --list, 214 '
        'entries; 6 touched rows of 2 tables saved); restore drill (schema): 19 tables\' columns, constraints and '
        'indexes match, 6 saved rows loaded; rollback.yml is idempotent and covered by the rollback molecule scenario')


def test_a_schema_drill_that_differs_is_not_ready():
    result = rollback(SCHEMA_BACKUP, dict(SCHEMA_DRILL, differences=['public.job: index job_pkey was not restored']))
    assert result['status'] == 'not met'
    assert "restore drill (schema): 19 tables' columns, constraints and indexes DIFFER, 6 saved rows loaded" in (
        result['evidence'])


def test_an_archive_proof_with_an_archive_drill_is_ready_and_says_what_was_not_verified():
    result = rollback(ARCHIVE_BACKUP, ARCHIVE_DRILL)
    assert result['status'] == 'met'
    assert ('; restore drill (archive): the WAL archiver is still archiving (archive_mode=on, 57 WAL segments '
            'archived, the last 00000001000000000000002C, no failure since the backup\'s proof); not verified: no base '
            'backup was restored and no WAL was replayed; the archived WAL files were not read back; rollback.yml'
            ) in result['evidence']
    assert rollback(ARCHIVE_BACKUP, None)['status'] == 'not met'


def test_a_drill_of_a_dump_with_an_archive_says_what_of_the_archive_was_not_verified():
    schema = rollback(dict(SCHEMA_BACKUP, backup_mode='schema+archive', archive=ARCHIVE),
                      dict(SCHEMA_DRILL, not_verified=NOT_VERIFIED))
    assert schema['status'] == 'met'
    assert ('6 saved rows loaded; not verified: no base backup was restored and no WAL was replayed; the archived WAL '
            'files were not read back; rollback.yml') in schema['evidence']
    full = rollback(dict(BACKUP, backup_mode='full+archive', archive=ARCHIVE), dict(DRILL, not_verified=NOT_VERIFIED))
    assert full['status'] == 'met'
    assert 'restore drill: 19 tables, 1800 rows, counts match; not verified: no base backup' in full['evidence']


def test_a_schema_backup_that_leaves_row_changes_unprotected_is_not_ready_and_says_which():
    deploy = 'the statements of the pending Prisma migrations 1_backfill'
    result = rollback(dict(SCHEMA_BACKUP, not_protected=[deploy]), dict(DRILL, kind='schema'))
    assert result['status'] == 'not met'
    assert 'NOT protected: the rows that %s may change' % deploy in result['evidence']
    assert rollback(dict(SCHEMA_BACKUP, not_protected=[]), dict(DRILL, kind='schema'))['status'] == 'met'
