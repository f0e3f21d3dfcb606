# -*- coding: utf-8 -*-
"""A rollback undoes only what the tool's own ledger says a run did (issue 21, point 3), on real PostgreSQL.

Each class of what a rollback used to undo by name alone, with two payloads or more, through the real rollback.yml
(with --check and for real) against a canary table and a victim session (helpers.Guard): an index of a planned name
that the application made (a UNIQUE one among them, whose uniqueness must still hold after), a NOT NULL that predates
the plan (a primary key's column among them), constraints of planned names the application made, even with the
planned definition, and duplicate renames of another plan or of no run at all. Each is left alone, the run says so and
succeeds, and nothing changes; a rerun the same. Then a real migrate.yml and rollback.yml of a plan beside such
objects: the rollback undoes exactly what the migration recorded, and the catalog is back as it was.
"""

import json

import psycopg2
import pytest
import yaml

import helpers

pytestmark = pytest.mark.integration

DATABASE = 'pt_ledger'


@pytest.fixture
def guarded(file_database):
    conn = file_database['conn']
    guard = helpers.Guard(conn, lambda: helpers.connect(file_database['cluster'], DATABASE))
    yield file_database, conn, guard
    guard.close()
    helpers.query(conn, 'DROP SCHEMA IF EXISTS pgzd_audit CASCADE')


def playbook(database, tmp_path, name, plan, options=(), **extra):
    path = tmp_path / ('%s.yml' % plan['name'])
    path.write_text(yaml.safe_dump(plan))
    cluster = database['cluster']
    variables = dict(local_cluster_dir=cluster['dir'], pg_port=cluster['port'], pg_database=DATABASE, pgzd_plan=str(path),
                     pgzd_artifacts_dir=str(tmp_path / 'artifacts'), backup_enabled='false')
    variables.update(extra)
    run = helpers.run_playbook('playbooks/%s.yml' % name, variables, options=options)
    run.text = ' '.join(run.stdout.split())
    return run


def rolled_back_alone(database, tmp_path, plan, guard, fragments):
    """rollback.yml with --check, for real and again: each succeeds, says what it leaves alone and why, and changes
    nothing at all."""
    for options in (['--check'], [], []):
        run = playbook(database, tmp_path, 'rollback', plan, options)
        assert run.returncode == 0, run.stdout[-5000:]
        for fragment in fragments:
            assert fragment in run.text, (fragment, run.stdout[-5000:])
        guard.assert_untouched('rollback.yml %s of %s' % (' '.join(options), plan['name']))
    assert [row for row in guard.ledger() if row[3] in ('intended', 'applied')] == []


APP_INDEXES = [
    # The application's UNIQUE index, of the name the plan gives a plain index on other columns.
    ('CREATE UNIQUE INDEX "pt_ledger_class_idx" ON "Class" ("name", "grade")',
     dict(name='pt_ledger_class_idx', columns=['grade'])),
    # Its partial index, of the name of another entry of the plan.
    ('CREATE INDEX "pt_ledger_job_idx" ON "Job" ("status") WHERE "closedAt" IS NULL',
     dict(name='pt_ledger_job_idx', columns=['status'])),
    # One of exactly the planned definition: no run of the plan made it either.
    ('CREATE INDEX "pt_ledger_item_idx" ON "Item" ("price")', dict(name='pt_ledger_item_idx', columns=['price'])),
]


def test_a_rollback_leaves_alone_the_indexes_of_planned_names_that_no_run_of_the_plan_made(guarded, tmp_path):
    database, conn, guard = guarded
    for statement, _spec in APP_INDEXES:
        helpers.query(conn, statement)
    guard.before = guard.snapshot()
    plan = dict(name='pt_ledger_indexes', tables=[
        dict(name='Class', indexes=[APP_INDEXES[0][1]]), dict(name='Job', indexes=[APP_INDEXES[1][1]]),
        dict(name='Item', indexes=[APP_INDEXES[2][1]])])
    try:
        rolled_back_alone(database, tmp_path, plan, guard, [
            'Left alone (not undone): index %s' % spec['name'] for _statement, spec in APP_INDEXES] + [
            'index "pt_ledger_class_idx" is not in the ledger of plan pt_ledger_indexes'])
        # The application's UNIQUE index still does its job: a duplicate (name, grade) is refused.
        name, grade = helpers.query(conn, 'SELECT name, grade FROM "Class" LIMIT 1')[0]
        with pytest.raises(psycopg2.errors.UniqueViolation):
            helpers.query(conn, 'INSERT INTO "Class" (id, name, grade, "updatedAt") VALUES (%s, %s, %s, now())',
                          ('pt_ledger_dup', name, grade))
    finally:
        for _statement, spec in APP_INDEXES:
            helpers.drop_index(conn, spec['name'])


def test_a_rollback_leaves_alone_the_not_null_and_constraints_that_predate_the_plan(guarded, tmp_path):
    database, conn, guard = guarded
    helpers.query(conn, 'ALTER TABLE "Item" ADD CONSTRAINT "pt_ledger_price_check" CHECK (price >= 0)')
    helpers.query(conn, 'ALTER TABLE "Job" ADD CONSTRAINT "pt_ledger_class_fkey" FOREIGN KEY ("classId") '
                        'REFERENCES "Class" (id)')
    helpers.query(conn, 'ALTER TABLE "Class" ADD CONSTRAINT "pt_ledger_class_key" UNIQUE (id, name)')
    guard.before = guard.snapshot()
    plan = dict(name='pt_ledger_constraints', tables=[], constraints=[
        # NOT NULL of the schema, before any plan: a plain column and primary-key columns.
        dict(name='Job_title_not_null', type='not_null', table='Job', column='title'),
        dict(name='Job_id_not_null', type='not_null', table='Job', column='id'),
        dict(name='Class_id_not_null', type='not_null', table='Class', column='id'),
        # Constraints of the planned names and definitions, made by the application.
        dict(name='pt_ledger_price_check', type='check', table='Item', expression='price >= 0'),
        dict(name='pt_ledger_class_fkey', type='foreign_key', table='Job', columns=['classId'],
             references=dict(table='Class', columns=['id'])),
        dict(name='pt_ledger_class_key', table='Class', columns=['id', 'name'])])
    try:
        rolled_back_alone(database, tmp_path, plan, guard, [
            'NOT NULL of column "Job.title" is not in the ledger of plan pt_ledger_constraints',
            'NOT NULL of column "Job.id" is not in the ledger',
            'NOT NULL of column "Class.id" is not in the ledger',
            'constraint "pt_ledger_price_check" is not in the ledger',
            'constraint "pt_ledger_class_fkey" is not in the ledger',
            'constraint "pt_ledger_class_key" is not in the ledger'])
    finally:
        for table, name in (('Item', 'pt_ledger_price_check'), ('Job', 'pt_ledger_class_fkey'),
                            ('Class', 'pt_ledger_class_key')):
            helpers.query(conn, 'ALTER TABLE "%s" DROP CONSTRAINT IF EXISTS "%s"' % (table, name))


@pytest.mark.majors()
def test_a_rollback_undoes_exactly_what_its_migration_recorded_beside_what_it_did_not_make(guarded, tmp_path, pg_major):
    database, conn, guard = guarded
    # Before the plan: the application's index of a planned name and definition, and Class.teacherId nullable.
    helpers.query(conn, 'CREATE INDEX "pt_ledger_item_idx" ON "Item" ("price")')
    helpers.query(conn, 'UPDATE "Class" SET "teacherId" = coalesce("teacherId", \'t-none\')')
    guard.before = guard.snapshot()
    plan = dict(name='pt_ledger_mixed', tables=[
        dict(name='Job', indexes=[dict(name='pt_ledger_created_idx', columns=['createdAt'])]),
        dict(name='Item', indexes=[dict(name='pt_ledger_item_idx', columns=['price'])])], constraints=[
        dict(name='Class_teacherId_not_null', type='not_null', table='Class', column='teacherId'),
        dict(name='Job_title_not_null', type='not_null', table='Job', column='title'),
        dict(name='pt_ledger_name_check', type='check', table='Class', expression='length(name) > 0')])
    try:
        migrated = playbook(database, tmp_path, 'migrate', plan)
        assert migrated.returncode == 0, migrated.stdout[-5000:]
        rows, gone, new = guard.changed_since()
        # What changed is exactly the plan's work: the new index, the check, Class.teacherId NOT NULL (on 18 a NOT
        # NULL constraint of the planned name: PostgreSQL 18 keeps every NOT NULL as one).
        not_null_constraint = ['public.Class.Class_teacherId_not_null'] if pg_major >= 18 else []
        assert gone == [('not null', 'public.Class.teacherId', 'false')], gone
        assert sorted(name for kind, name, state in new) == not_null_constraint + [
            'public.Class.pt_ledger_name_check', 'public.Class.teacherId', 'public.pt_ledger_created_idx'], new
        # The ledger holds what the run made, and only that.
        assert sorted((kind, name, state) for plan_name, kind, name, state in guard.ledger()) == [
            ('constraint', 'pt_ledger_name_check', 'applied'), ('index', 'pt_ledger_created_idx', 'applied'),
            ('not_null', 'teacherId', 'applied')]
        (prior,), = helpers.query(conn, "SELECT prior FROM pgzd_audit.ledger WHERE kind = 'not_null'")
        assert prior == (dict(nullable=True, not_null_constraint='Class_teacherId_not_null') if pg_major >= 18 else
                         dict(nullable=True, helper_check='Class_teacherId_not_null'))

        rolled_back = playbook(database, tmp_path, 'rollback', plan)
        assert rolled_back.returncode == 0, rolled_back.stdout[-5000:]
        assert 'Left alone (not undone): index pt_ledger_item_idx' in rolled_back.text
        assert 'NOT NULL of column "Job.title" is not in the ledger' in rolled_back.text
        guard.assert_untouched('migrate.yml then rollback.yml')  # the application's index stays; the plan's are gone
        assert helpers.index_info(conn, 'pt_ledger_item_idx') is not None
        assert sorted(state for plan_name, kind, name, state in guard.ledger()) == ['undone'] * 3
        again = playbook(database, tmp_path, 'rollback', plan)
        assert again.returncode == 0 and 'changed=0' in again.stdout, again.stdout[-3000:]
    finally:
        helpers.drop_index(conn, 'pt_ledger_item_idx')


def test_a_rollback_restores_only_the_renames_its_own_plan_recorded(guarded, tmp_path):
    database, conn, guard = guarded
    helpers.query(conn, 'UPDATE "Class" SET name = \'pt dup\', grade = 1 WHERE id IN (SELECT id FROM "Class" ORDER BY '
                        'id LIMIT 3)')
    constraint = dict(name='pt_ledger_dup_key', table='Class', columns=['name', 'grade'], on_duplicates='rename')
    renaming = dict(name='pt_ledger_renaming', tables=[], constraints=[constraint])
    other = dict(name='pt_ledger_other', tables=[], constraints=[constraint])
    migrated = playbook(database, tmp_path, 'migrate', renaming)
    assert migrated.returncode == 0, migrated.stdout[-5000:]
    renamed = helpers.query(conn, 'SELECT id, name FROM "Class" WHERE name LIKE \'pt dup%%\' ORDER BY id')
    assert len([name for _id, name in renamed if '[duplicate' in name]) == 2
    # A row of the audit table no run recorded in the ledger (a hand-made one, or from a version before the ledger).
    helpers.query(conn, "INSERT INTO pgzd_audit.duplicate_resolution (run_id, constraint_name, table_schema, table_name, "
                        "column_name, row_key, old_value, new_value) SELECT 'by-hand', 'pt_ledger_dup_key', 'public', "
                        "'Class', 'name', jsonb_build_object('id', id), 'pt hand', name FROM \"Class\" ORDER BY id "
                        "DESC LIMIT 1")
    guard.before = guard.snapshot()
    # Another plan with a constraint of that name: neither the constraint nor the renames are its own.
    for options in (['--check'], []):
        run = playbook(database, tmp_path, 'rollback', other, options)
        assert run.returncode == 0, run.stdout[-5000:]
        assert 'constraint "pt_ledger_dup_key" is not in the ledger of plan pt_ledger_other' in run.text
        guard.assert_untouched('the rollback of another plan')
    # Its own plan: the constraint goes, and the two renames it recorded come back; the hand-made row stays as it is.
    run = playbook(database, tmp_path, 'rollback', renaming)
    assert run.returncode == 0, run.stdout[-5000:]
    assert helpers.query(conn, 'SELECT id, name FROM "Class" WHERE name LIKE \'pt dup%%\' ORDER BY id') == [
        (row_id, 'pt dup') for row_id, _name in renamed]
    assert helpers.query(conn, "SELECT restored_at IS NULL FROM pgzd_audit.duplicate_resolution WHERE run_id = "
                               "'by-hand'") == [(True,)]
    assert [state for plan_name, kind, name, state in guard.ledger() if kind == 'renamed_rows'] == ['undone']
    files = list((tmp_path / 'artifacts').glob('*-restored.json'))
    assert [len(json.loads(path.read_text())['rows']) for path in files] == [2]
