# -*- coding: utf-8 -*-
"""Duplicate keys that would block a planned unique constraint are reported before any DDL."""

import pytest

import helpers

MODULE = 'postgresql_unique_constraint_info'
CLASS_KEY = dict(name='Class_name_grade_key', table='Class', columns=['name', 'grade'])
# Seven rows share ('Class A-0', 1) with the seeded row, two share ('Class B-0', 2).
SEEDED_A = ['pt_dup_a%d' % i for i in range(6)]
SEEDED_B = ['pt_dup_b0']


@pytest.fixture
def duplicates(db):
    rows = [(row_id, 'Class A-0', 1) for row_id in SEEDED_A] + [(row_id, 'Class B-0', 2) for row_id in SEEDED_B]
    with db.cursor() as cursor:
        for row_id, name, grade in rows:
            cursor.execute('INSERT INTO "Class" ("id", "name", "grade", "updatedAt") VALUES (%s, %s, %s, now())',
                           (row_id, name, grade))
    try:
        yield
    finally:
        with db.cursor() as cursor:
            cursor.execute('DELETE FROM "Class" WHERE "id" LIKE %s', ('pt_dup_%',))


def class_rows(db):
    return helpers.query(db, 'SELECT count(*) FROM "Class"')[0][0]


def test_the_sample_data_has_no_duplicate_class(db, run_module):
    result = run_module(MODULE, constraints=[CLASS_KEY])
    assert result.get('failed') is not True, result
    assert result['duplicates_found'] is False
    assert result['constraints'][0]['total_groups'] == 0
    assert result['constraints'][0]['row_id'] == 'id'


def test_duplicates_fail_with_every_key_its_count_and_row_ids(db, run_module, duplicates):
    before_rows, before_indexes = class_rows(db), helpers.all_indexes(db)
    result = run_module(MODULE, constraints=[CLASS_KEY], sample_ids=3)
    assert result.get('failed') is True
    assert result['changed'] is False
    entry = result['constraints'][0]
    assert (entry['total_groups'], entry['total_rows']) == (2, 9)
    largest, smaller = entry['groups']
    assert largest['key'] == ['Class A-0', '1'] and largest['rows'] == 7
    assert len(largest['sample_ids']) == 3
    assert smaller['key'] == ['Class B-0', '2'] and smaller['rows'] == 2
    assert 'pt_dup_b0' in smaller['sample_ids']
    assert '(name, grade) = (Class A-0, 1): 7 rows, id ' in result['msg']
    assert ', ...' in result['msg']  # more rows than ids listed
    assert 'Class_name_grade_key' in result['msg'] and 'nothing was changed' in result['msg']
    assert class_rows(db) == before_rows
    assert helpers.all_indexes(db) == before_indexes


def test_max_groups_limits_the_listing_not_the_totals(db, run_module, duplicates):
    result = run_module(MODULE, constraints=[CLASS_KEY], max_groups=1, fail_on_duplicates=False)
    assert result.get('failed') is not True, result
    entry = result['constraints'][0]
    assert len(entry['groups']) == 1 and entry['total_groups'] == 2
    assert '  ... and 1 more duplicate key(s)' in result['report']
    assert entry['total_rows'] == 9


def test_rows_with_a_null_key_column_are_not_duplicates(db, run_module):
    # "teacherId" is nullable; rows where it is NULL never collide under NULLS DISTINCT.
    with db.cursor() as cursor:
        cursor.execute('INSERT INTO "Class" ("id", "name", "grade", "teacherId", "updatedAt") '
                       "SELECT 'pt_dup_null' || i, 'Nameless', 1, NULL, now() FROM generate_series(1, 3) AS i")
    try:
        result = run_module(MODULE, constraints=[dict(name='Class_name_teacher_key', table='Class',
                                                      columns=['name', 'teacherId'])])
        assert result.get('failed') is not True, result
        assert result['duplicates_found'] is False
    finally:
        with db.cursor() as cursor:
            cursor.execute("DELETE FROM \"Class\" WHERE \"id\" LIKE 'pt_dup_null%'")


def test_a_missing_column_is_named(db, run_module):
    result = run_module(MODULE, constraints=[dict(CLASS_KEY, columns=['name', 'level'])])
    assert result.get('failed') is True
    assert 'Class_name_grade_key' in result['msg'] and '"level" not found in public.Class' in result['msg']


def test_migrate_stops_before_any_ddl_when_duplicates_block_the_plan(db, pg_cluster, duplicates):
    before = helpers.all_indexes(db)
    run = helpers.run_playbook('playbooks/migrate.yml', dict(local_cluster_dir=pg_cluster['dir'],
                                                             pg_port=pg_cluster['port']))
    assert run.returncode != 0
    assert 'Duplicate keys block the planned unique constraint' in run.stdout
    assert '(name, grade) = (Class A-0, 1): 7 rows' in run.stdout
    assert helpers.all_indexes(db) == before  # not one of the 26 planned indexes was built
