# -*- coding: utf-8 -*-
"""plugins/module_utils/prisma/pending_migrations.py: which migrations of a prisma/migrations folder are pending, by
the rules of `prisma migrate deploy` (no server, no files)."""

import pytest

import helpers

pm = helpers.load_module_utils('prisma.pending_migrations')
history = helpers.load_module_utils('prisma.prisma_history')

SQL = {'20260101000000_init': 'CREATE TABLE "A" ("id" INTEGER);\n',
       '20260201000000_b': 'CREATE INDEX "A_id_idx" ON "A"("id");\n',
       '20260301000000_c': 'ALTER TABLE "A" ADD COLUMN "x" TEXT;\n'}


def folder(*names):
    return [dict(name=name, sql=SQL[name]) for name in names]


def row(name, finished=True, rolled_back=False, checksum=None, logs=None):
    return dict(id='id-' + name, migration_name=name, checksum=checksum or history.render_checksum(SQL[name]),
                started_at='2026-12-01 10:00:00', finished_at='2026-12-01 10:00:01' if finished else None,
                rolled_back_at='2026-12-01 11:00:00' if rolled_back else None, logs=logs)


def test_an_empty_database_has_every_migration_pending_in_folder_order():
    result = pm.pending_migrations(folder('20260301000000_c', '20260101000000_init', '20260201000000_b'), [])
    assert result == dict(applied=[], pending=['20260101000000_init', '20260201000000_b', '20260301000000_c'],
                          resumed=None, missing=[], problems=[])


def test_finished_rows_are_applied_and_the_rest_pending():
    result = pm.pending_migrations(folder('20260101000000_init', '20260201000000_b', '20260301000000_c'),
                                   [row('20260101000000_init'), row('20260201000000_b')])
    assert (result['applied'], result['pending'], result['problems']) == (
        ['20260101000000_init', '20260201000000_b'], ['20260301000000_c'], [])


def test_a_rolled_back_row_does_not_count():
    result = pm.pending_migrations(folder('20260101000000_init', '20260201000000_b'),
                                   [row('20260101000000_init'), row('20260201000000_b', finished=False,
                                                                    rolled_back=True)])
    assert result['pending'] == ['20260201000000_b'] and result['problems'] == []


def test_a_failed_migration_of_prisma_blocks_with_prismas_advice():
    result = pm.pending_migrations(folder('20260101000000_init', '20260201000000_b'),
                                   [row('20260101000000_init'), row('20260201000000_b', finished=False)])
    assert len(result['problems']) == 1
    problem = result['problems'][0]
    assert '20260201000000_b' in problem and 'P3009' in problem
    assert 'prisma migrate resolve --rolled-back 20260201000000_b' in problem
    assert 'prisma migrate resolve --applied 20260201000000_b' in problem


def test_an_unfinished_run_of_ours_is_resumed_not_refused():
    result = pm.pending_migrations(folder('20260101000000_init', '20260201000000_b', '20260301000000_c'),
                                   [row('20260101000000_init'),
                                    row('20260201000000_b', finished=False, logs=history.LOG_MARKER + ': run x')])
    assert result['problems'] == []
    assert result['resumed'] == '20260201000000_b'
    assert result['pending'] == ['20260201000000_b', '20260301000000_c']


def test_an_unfinished_run_of_ours_that_is_not_next_is_refused():
    result = pm.pending_migrations(folder('20260101000000_init', '20260201000000_b', '20260301000000_c'),
                                   [row('20260301000000_c', finished=False, logs=history.LOG_MARKER + ': run x')])
    assert result['resumed'] is None
    assert len(result['problems']) == 1 and 'not the next pending' in result['problems'][0]


@pytest.mark.parametrize('sql', ['CREATE TABLE "A" ("id" INTEGER);\r\n', 'CREATE TABLE "A" ("id" INTEGER);\n'])
def test_line_ends_do_not_change_an_applied_migration(sql):
    migrations = [dict(name='20260101000000_init', sql=sql)]
    result = pm.pending_migrations(migrations, [row('20260101000000_init')])
    assert result['applied'] == ['20260101000000_init'] and result['problems'] == []


def test_an_applied_migration_whose_file_changed_is_an_error():
    migrations = [dict(name='20260101000000_init', sql='CREATE TABLE "A" ("id" BIGINT);\n')]
    result = pm.pending_migrations(migrations, [row('20260101000000_init')])
    assert len(result['problems']) == 1
    assert 'changed after it was applied' in result['problems'][0]
    assert history.render_checksum(SQL['20260101000000_init']) in result['problems'][0]


def test_applied_migrations_missing_from_the_folder_are_reported():
    result = pm.pending_migrations(folder('20260201000000_b'), [row('20260101000000_init')])
    assert result['missing'] == ['20260101000000_init'] and result['problems'] == []
    assert any('not in the folder' in line for line in pm.pending_summary(result))


@pytest.mark.parametrize('migration,expected', [
    (dict(name='20260101000000_init', sql=None), 'has no migration.sql'),
    (dict(name='a/b', sql=''), 'not a folder name'),
    (dict(name='x' * 201, sql=''), 'P3010'),
])
def test_folder_problems(migration, expected):
    problems = pm.folder_problems([migration])
    assert len(problems) == 1 and expected in problems[0]


def test_a_good_folder_has_no_problems():
    assert pm.folder_problems(folder('20260101000000_init', '20260201000000_b')) == []


def test_summary_counts_and_names_the_pending_ones():
    result = pm.pending_migrations(folder('20260101000000_init', '20260201000000_b'), [row('20260101000000_init')])
    assert pm.pending_summary(result) == ['1 migration(s) applied, 1 pending: 20260201000000_b.']


def test_an_unfinished_run_of_ours_whose_file_changed_since_is_not_resumed():
    result = pm.pending_migrations(folder('20260101000000_init', '20260201000000_b'),
                                   [row('20260101000000_init'),
                                    row('20260201000000_b', finished=False, checksum='0' * 64,
                                        logs=history.LOG_MARKER + ': run x')])
    assert result['resumed'] == '20260201000000_b' and len(result['problems']) == 1
    assert 'the file changed in the middle of its deploy' in result['problems'][0]
