# -*- coding: utf-8 -*-
"""postgresql_duplicate_resolution, and migrate.yml / rollback.yml with pgzd_on_duplicates=rename, on real PostgreSQL.

The ``duplicates`` fixture seeds rows (ids pt_dup_*) that share (name, grade) with each other or with the sample
data, and afterwards deletes them and puts back every sample value; the ``db`` fixture drops the audit schema.
"""

import glob
import json
import os

import pytest
import yaml

import helpers

pytestmark = pytest.mark.integration

MODULE = 'postgresql_duplicate_resolution'
NAME = 'Class_name_grade_key'
KEY = dict(name=NAME, table='Class', columns=['name', 'grade'])

# (id, name, grade, createdAt). Group A: pt_dup_a1 is older than the sample row ('Class A-0', 1), so the
# sample row is the one renamed. Group B: the sample row ('Class B-0', 2) is the oldest. Group Z: a tie on
# createdAt, broken by the primary key (pt_dup_z1 is kept).
SEEDS = [
    ('pt_dup_a1', 'Class A-0', 1, '2020-01-01 00:00:00'),
    ('pt_dup_a2', 'Class A-0', 1, '2025-01-01 00:00:00'),
    ('pt_dup_a3', 'Class A-0', 1, '2025-02-01 00:00:00'),
    ('pt_dup_b1', 'Class B-0', 2, '2025-01-01 00:00:00'),
    ('pt_dup_z2', 'pt Class Z', 5, '2025-03-01 00:00:00'),
    ('pt_dup_z1', 'pt Class Z', 5, '2025-03-01 00:00:00'),
]


def names(db):
    """{id: name} of every "Class" row."""
    return dict(helpers.query(db, 'SELECT "id", "name" FROM "Class"'))


def row_count(db):
    return helpers.query(db, 'SELECT count(*) FROM "Class"')[0][0]


def duplicate_keys(db):
    return helpers.query(db, 'SELECT "name", "grade", count(*) FROM "Class" GROUP BY 1, 2 HAVING count(*) > 1')


def audit_rows(db):
    """{row id: (run_id, constraint, schema, table, column, old, new, restored)} of the audit table."""
    rows = helpers.query(db, """
        SELECT row_key ->> 'id', run_id, constraint_name, table_schema, table_name, column_name, old_value,
               new_value, restored_at IS NOT NULL
        FROM pgzd_audit.duplicate_resolution ORDER BY id""")
    return dict((row[0], tuple(row[1:])) for row in rows)


def audit_schema_exists(db):
    return helpers.query(db, "SELECT pg_catalog.to_regnamespace('pgzd_audit') IS NOT NULL")[0][0]


def change_set(rows):
    """The changes of a result as {row id: (column, old, new)}."""
    return dict((row['row_key']['id'], (row['column'], row['old'], row['new'])) for row in rows)


def renames(duplicates):
    """The changes a resolution of the seeded duplicates makes, as change_set() gives them."""
    return dict((row_id, ('name', duplicates['seeded'][row_id], new)) for row_id, new in duplicates['renamed'].items())


def restores(duplicates):
    """The changes a restore makes after that resolution: old is the renamed value, new the one put back."""
    return dict((row_id, (column, new, old)) for row_id, (column, old, new) in renames(duplicates).items())


@pytest.fixture
def duplicates(db):
    """Seeds SEEDS; yields dict(original={id: name} before seeding, seeded={id: name} after, renamed={id: new name})."""
    original = names(db)
    sample_a = helpers.query(db, """SELECT "id" FROM "Class" WHERE "name" = 'Class A-0' AND "grade" = 1""")
    assert len(sample_a) == 1, 'the sample data has one row (Class A-0, 1)'
    sample_a = sample_a[0][0]
    try:
        for row_id, name, grade, created_at in SEEDS:
            helpers.query(db, 'INSERT INTO "Class" ("id", "name", "grade", "createdAt", "updatedAt") '
                              'VALUES (%s, %s, %s, %s, now())', (row_id, name, grade, created_at))
        renamed = dict((row_id, '%s [duplicate %s]' % (name, row_id)) for row_id, name in [
            (sample_a, 'Class A-0'), ('pt_dup_a2', 'Class A-0'), ('pt_dup_a3', 'Class A-0'),
            ('pt_dup_b1', 'Class B-0'), ('pt_dup_z2', 'pt Class Z')])
        yield dict(original=original, seeded=names(db), renamed=renamed)
    finally:
        helpers.query(db, "DELETE FROM \"Class\" WHERE \"id\" LIKE 'pt_dup_%'")
        for row_id, name in original.items():
            helpers.query(db, 'UPDATE "Class" SET "name" = %s WHERE "id" = %s AND "name" <> %s', (name, row_id, name))
        assert names(db) == original


def resolve(run_module, **extra):
    result = run_module(MODULE, run_id='pt-run', **dict(KEY, **extra))
    assert result.get('failed') is not True, result
    return result


# -- resolved ------------------------------------------------------------------------------------------

def test_resolved_keeps_the_oldest_row_of_each_key_and_renames_the_others(db, run_module, duplicates):
    seeded, renamed = duplicates['seeded'], duplicates['renamed']
    rows = row_count(db)
    assert len(duplicate_keys(db)) == 3
    sample_b = helpers.query(db, """SELECT "id" FROM "Class" WHERE ("name", "grade") = ('Class B-0', 2)
                                    AND "id" NOT LIKE 'pt_dup_%'""")[0][0]

    result = resolve(run_module)

    assert result['changed'] is True
    assert result['audit'] == 'pgzd_audit.duplicate_resolution'
    assert change_set(result['rows']) == renames(duplicates)
    assert all((row['schema'], row['table']) == ('public', 'Class') for row in result['rows'])
    # Every other row has the suffix; none is lost; each key is left on exactly one row, the oldest of its
    # group: pt_dup_a1 (older than the sample row), the sample row of (Class B-0, 2), and pt_dup_z1 (the
    # createdAt tie goes to the lower id).
    expected = dict(seeded, **renamed)
    assert names(db) == expected
    assert row_count(db) == rows
    for key, kept in [(('Class A-0', 1), 'pt_dup_a1'), (('Class B-0', 2), sample_b), (('pt Class Z', 5), 'pt_dup_z1')]:
        assert helpers.query(db, 'SELECT "id" FROM "Class" WHERE ("name", "grade") = (%s, %s)', key) == [(kept,)]
    assert duplicate_keys(db) == []
    # One audit row per renamed row, in the same transaction.
    assert audit_rows(db) == dict((row_id, ('pt-run', NAME, 'public', 'Class', 'name', seeded[row_id], new, False))
                                  for row_id, new in renamed.items())

    again = resolve(run_module)
    assert again['changed'] is False
    assert again['rows'] == [] and again['queries'] == []
    assert names(db) == expected
    assert len(audit_rows(db)) == len(renamed)


def test_check_mode_lists_the_renames_and_changes_nothing(db, run_module, duplicates):
    seeded = duplicates['seeded']
    result = run_module(MODULE, check=True, **KEY)
    assert result.get('failed') is not True, result
    assert result['changed'] is True
    assert change_set(result['rows']) == renames(duplicates)
    assert result['queries'][0] == 'CREATE SCHEMA IF NOT EXISTS "pgzd_audit"'
    assert any('UPDATE "public"."Class"' in query for query in result['queries'])
    assert names(db) == seeded
    assert not audit_schema_exists(db)


def test_a_suffix_colliding_with_an_existing_value_rolls_everything_back(db, run_module, duplicates):
    # Renaming pt_dup_a2 would give it the (name, grade) this row already has.
    helpers.query(db, 'INSERT INTO "Class" ("id", "name", "grade", "updatedAt") '
                      "VALUES ('pt_dup_taken', 'Class A-0 [duplicate pt_dup_a2]', 1, now())")
    before = names(db)
    result = run_module(MODULE, **KEY)
    assert result.get('failed') is True, result
    assert 'rolled back' in result['msg'] and 'still there after renaming' in result['msg']
    assert result['changed'] is False
    assert names(db) == before
    assert not audit_schema_exists(db)  # the audit table was created in the rolled-back transaction


# -- restored ------------------------------------------------------------------------------------------

def test_restored_puts_every_original_value_back(db, run_module, duplicates):
    seeded = duplicates['seeded']
    resolve(run_module)

    result = run_module(MODULE, state='restored', **KEY)

    assert result.get('failed') is not True, result
    assert result['changed'] is True
    assert result['not_restored'] == []
    # For a restore, old is the renamed value and new the value put back.
    assert change_set(result['rows']) == restores(duplicates)
    assert set(names(db).items()) == set(seeded.items())
    assert all(entry[-1] is True for entry in audit_rows(db).values())

    again = run_module(MODULE, state='restored', **KEY)
    assert again.get('failed') is not True, again
    assert again['changed'] is False
    assert again['rows'] == [] and again['not_restored'] == []
    assert set(names(db).items()) == set(seeded.items())


def test_a_row_edited_after_the_resolution_is_not_overwritten(db, run_module, duplicates):
    seeded, renamed = duplicates['seeded'], duplicates['renamed']
    resolve(run_module)
    helpers.query(db, """UPDATE "Class" SET "name" = 'pt edited by the application' WHERE "id" = 'pt_dup_a2'""")

    result = run_module(MODULE, state='restored', **KEY)

    assert result.get('failed') is not True, result
    assert result['changed'] is True
    assert [(entry['row_key'], entry['column']) for entry in result['not_restored']] == [({'id': 'pt_dup_a2'}, 'name')]
    assert 'changed since the resolution' in result['not_restored'][0]['reason']
    assert any('not restored' in warning and 'pt_dup_a2' in warning for warning in result.get('warnings', []))
    assert set(change_set(result['rows'])) == set(renamed) - {'pt_dup_a2'}
    expected = dict(seeded, pt_dup_a2='pt edited by the application')
    assert names(db) == expected
    audit = audit_rows(db)
    assert audit['pt_dup_a2'][-1] is False
    assert all(entry[-1] is True for row_id, entry in audit.items() if row_id != 'pt_dup_a2')


def test_restore_while_the_constraint_is_in_place_fails_and_changes_nothing(db, run_module, duplicates):
    resolve(run_module)
    helpers.query(db, 'ALTER TABLE "Class" ADD CONSTRAINT "Class_name_grade_key" UNIQUE ("name", "grade")')
    before, audit = names(db), audit_rows(db)

    result = run_module(MODULE, state='restored', **KEY)

    assert result.get('failed') is True, result
    assert 'drop the constraint first' in result['msg']
    assert 'rolled back' in result['msg']
    assert result['changed'] is False
    assert names(db) == before
    assert audit_rows(db) == audit
    assert all(entry[-1] is False for entry in audit.values())


# -- the playbooks -------------------------------------------------------------------------------------

def planned_index_names():
    with open(helpers.PLAN_T12_PATH) as handle:
        plan = yaml.safe_load(handle)
    return [index['name'] for table in plan['tables'] for index in table['indexes']]


def unique_constraint_exists(db):
    return bool(helpers.query(db, """SELECT 1 FROM pg_catalog.pg_constraint WHERE conname = %s AND contype = 'u'
                                     AND conrelid = '"Class"'::regclass""", (NAME,)))


@pytest.mark.majors()
def test_migrate_with_rename_then_rollback_restores_every_value(db, pg_cluster, duplicates, tmp_path):
    seeded, renamed = duplicates['seeded'], duplicates['renamed']
    planned = planned_index_names()
    assert len(planned) == 26
    # The audit file must land in tmp_path, never in the repository's artifacts/.
    extra = dict(local_cluster_dir=pg_cluster['dir'], pg_port=pg_cluster['port'], pgzd_artifacts_dir=str(tmp_path))

    migrate = helpers.run_playbook('playbooks/migrate.yml', dict(extra, pgzd_on_duplicates='rename'))

    assert migrate.returncode == 0, migrate.stdout[-6000:]
    assert '%s: %d duplicate row(s) renamed' % (NAME, len(renamed)) in migrate.stdout
    assert unique_constraint_exists(db)
    assert all(helpers.index_info(db, name)['valid'] for name in planned)
    assert names(db) == dict(seeded, **renamed)
    files = glob.glob(os.path.join(str(tmp_path), '*-%s-resolved.json' % NAME))
    assert len(files) == 1, os.listdir(str(tmp_path))
    with open(files[0]) as handle:
        audit_file = json.load(handle)
    assert audit_file['constraint'] == NAME and audit_file['kind'] == 'resolved'
    assert audit_file['audit_table'] == 'pgzd_audit.duplicate_resolution'
    assert change_set(audit_file['rows']) == renames(duplicates)
    assert os.path.basename(files[0]).startswith(audit_file['run_id'] + '-')

    rollback = helpers.run_playbook('playbooks/rollback.yml', extra)

    assert rollback.returncode == 0, rollback.stdout[-6000:]
    assert not unique_constraint_exists(db)
    assert not helpers.relation_exists(db, NAME)
    assert [name for name in planned if helpers.relation_exists(db, name)] == []
    assert set(names(db).items()) == set(seeded.items())
    assert glob.glob(os.path.join(str(tmp_path), '*-%s-restored.json' % NAME))
