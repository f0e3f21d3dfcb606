# -*- coding: utf-8 -*-
"""Foreign keys, CHECK and NOT NULL done online (postgresql_online_constraint, the preflight and the playbooks)
against a real cluster (see tests/conftest.py).

Each test works in a database of its own, a copy of the seeded T12 database (t12_copy), so the constraints it adds
need no cleanup. The sample data satisfies every constraint planned here: each JobAssignment's job exists, each Job's
class exists, every Item price is positive and no Class lacks its teacherId.
"""

import os

import psycopg2
import pytest
import yaml

import helpers

pytestmark = pytest.mark.integration

MODULE = 'postgresql_online_constraint'

FK = dict(name='JobAssignment_jobId_fkey', type='foreign_key', table='JobAssignment', columns=['jobId'],
          references=dict(table='Job', columns=['id']), on_delete='CASCADE', on_update='CASCADE',
          index='JobAssignment_jobId_idx')
FK_NULLABLE = dict(name='Job_classId_fkey', type='foreign_key', table='Job', columns=['classId'],
                   references=dict(table='Class', columns=['id']), on_delete='SET NULL', on_update='CASCADE')
CHECK = dict(name='Item_price_check', type='check', table='Item', expression='price > 0')
NOT_NULL = dict(name='Class_teacherId_not_null', type='not_null', table='Class', column='teacherId')
EVERY_KIND = [FK, FK_NULLABLE, CHECK, NOT_NULL]


@pytest.fixture
def copy(t12_copy, request):
    """A fresh copy of the seeded T12 database, dropped after the test: (connection info, autocommit connection)."""
    with helpers.database_copy(t12_copy, 'pt_kinds_%s' % request.node.name[5:40].lower()) as database:
        yield database['cluster'], database['conn']


def constraints_of(conn):
    """{name: (type, validated, definition)} of every FOREIGN KEY and CHECK constraint of public."""
    rows = helpers.query(conn, """
        SELECT conname::text, contype::text, convalidated, pg_catalog.pg_get_constraintdef(oid)
        FROM pg_catalog.pg_constraint WHERE connamespace = 'public'::regnamespace AND contype IN ('f', 'c')""")
    return dict((name, (kind, valid, definition)) for name, kind, valid, definition in rows)


def not_null(conn, table, column):
    return helpers.query(conn, "SELECT attnotnull FROM pg_catalog.pg_attribute WHERE attrelid = %s::regclass "
                               "AND attname = %s", ('"%s"' % table, column))[0][0]


def schema_dump(info):
    return helpers.schema_dump(info, info['dbname'])


def run(info, check=False, diff=False, **args):
    return helpers.run_ansible_module(MODULE, dict(helpers.login_of(info, info['dbname']), **args), check=check, diff=diff)


RELATIONS_PLAN = os.path.join(helpers.REPO_ROOT, 'fixtures', 'relations', 'plan.yml')


def playbook(info, tmp_path, name, constraints, options=(), playbook_file='playbooks/migrate.yml'):
    plan = tmp_path / ('%s.yml' % name)
    plan.write_text(yaml.safe_dump(dict(name=name, schema='public', tables=[], constraints=constraints)))
    return helpers.run_playbook(playbook_file, dict(local_cluster_dir=info['dir'], pg_port=info['port'],
                                                    pg_database=info['dbname'], pgzd_plan=str(plan),
                                                    pgzd_artifacts_dir=str(tmp_path / 'artifacts'), backup_enabled='false'),
                                options=options)


@pytest.mark.majors()
def test_an_imported_prisma_migration_of_every_kind_migrates_online_reruns_unchanged_and_rolls_back(copy, tmp_path):
    """fixtures/relations: a Prisma migration.sql with an index, a required column, two relations and a check,
    imported whole by scripts/plan_import.py (tests/unit/test_plan_import.py proves plan.yml is its import)."""
    info, conn = copy
    before = schema_dump(info)
    rows = helpers.query(conn, 'SELECT count(*) FROM "JobAssignment"')[0][0]
    variables = dict(local_cluster_dir=info['dir'], pg_port=info['port'], pg_database=info['dbname'],
                     pgzd_plan=RELATIONS_PLAN, pgzd_artifacts_dir=str(tmp_path / 'artifacts'), backup_enabled='false')

    checked = helpers.run_playbook('playbooks/migrate.yml', variables, options=['--check', '--diff'])
    assert checked.returncode == 0, checked.stdout[-5000:]
    text = ' '.join(checked.stdout.split())
    for statement in (
            'CREATE INDEX CONCURRENTLY IF NOT EXISTS "JobAssignment_jobId_idx" ON "public"."JobAssignment"',
            'ALTER TABLE "public"."JobAssignment" ADD CONSTRAINT "JobAssignment_jobId_fkey" FOREIGN KEY ("jobId") '
            'REFERENCES "public"."Job" ("id") ON DELETE CASCADE ON UPDATE CASCADE NOT VALID',
            'ALTER TABLE "public"."JobAssignment" VALIDATE CONSTRAINT "JobAssignment_jobId_fkey"',
            'ALTER TABLE "public"."Item" ADD CONSTRAINT "Item_price_check" CHECK (price > 0) NOT VALID',
            'ALTER TABLE "public"."Class" ADD CONSTRAINT "Class_teacherId_not_null" CHECK ("teacherId" IS NOT NULL) '
            'NOT VALID',
            'ALTER TABLE "public"."Class" ALTER COLUMN "teacherId" SET NOT NULL',
            'ALTER TABLE "public"."Class" DROP CONSTRAINT IF EXISTS "Class_teacherId_not_null"'):
        assert statement in text, (statement, text[-6000:])
    assert schema_dump(info) == before

    migrated = helpers.run_playbook('playbooks/migrate.yml', variables)
    assert migrated.returncode == 0, migrated.stdout[-6000:]
    # The preflight names the index a foreign key lacks, unless the plan's index phase builds one.
    warned = ' '.join((migrated.stdout + migrated.stderr).split())
    assert 'foreign key "Job_classId_fkey": no index on public.Job (classId)' in warned
    assert 'Add `index: Job_classId_idx` to the entry' in warned
    assert 'foreign key "JobAssignment_jobId_fkey": no index' not in warned
    found = constraints_of(conn)
    assert found['JobAssignment_jobId_fkey'] == (
        'f', True, 'FOREIGN KEY ("jobId") REFERENCES "Job"(id) ON UPDATE CASCADE ON DELETE CASCADE')
    assert found['Job_classId_fkey'] == (
        'f', True, 'FOREIGN KEY ("classId") REFERENCES "Class"(id) ON UPDATE CASCADE ON DELETE SET NULL')
    assert found['Item_price_check'] == ('c', True, 'CHECK ((price > 0))')
    assert 'Class_teacherId_not_null' not in found  # the helper check is gone once SET NOT NULL used it
    assert not_null(conn, 'Class', 'teacherId')
    assert helpers.index_info(conn, 'JobAssignment_jobId_idx')['valid']
    assert helpers.query(conn, 'SELECT count(*) FROM "JobAssignment"')[0][0] == rows
    assert helpers.query(conn, 'SELECT count(*) FROM "_prisma_migrations" WHERE migration_name = %s '
                               'AND finished_at IS NOT NULL', ('20261201000000_relations',))[0][0] == 1

    again = helpers.run_playbook('playbooks/migrate.yml', variables)
    assert again.returncode == 0, again.stdout[-4000:]
    assert 'changed=0' in again.stdout, again.stdout[-3000:]

    rolled = helpers.run_playbook('playbooks/rollback.yml', variables)
    assert rolled.returncode == 0, rolled.stdout[-6000:]
    assert schema_dump(info) == before
    assert helpers.query(conn, 'SELECT count(*) FROM "_prisma_migrations" WHERE migration_name = %s',
                         ('20261201000000_relations',))[0][0] == 0


def test_a_foreign_key_with_its_index_option_builds_the_index_first_and_rollback_drops_it(copy):
    info, conn = copy
    result = run(info, constraints=[FK])
    assert not result.get('failed'), result
    assert result['constraints'][0]['steps_done'] == ['build_index', 'add', 'validate']
    assert result['queries'][0].startswith('CREATE INDEX CONCURRENTLY IF NOT EXISTS "JobAssignment_jobId_idx"')
    assert helpers.index_info(conn, 'JobAssignment_jobId_idx')['valid']
    assert constraints_of(conn)['JobAssignment_jobId_fkey'][1] is True
    dropped = run(info, constraints=[FK], state='absent')
    assert dropped['constraints'][0]['steps_done'] == ['drop', 'drop_index'], dropped
    # Dropping a foreign key locks the referenced table too (ACCESS EXCLUSIVE): Job first, then the statement (issue 21).
    assert dropped['queries'] == [
        'BEGIN', "SET LOCAL lock_timeout = '500ms'", 'LOCK TABLE ONLY "public"."Job" IN ACCESS EXCLUSIVE MODE',
        'ALTER TABLE "public"."JobAssignment" DROP CONSTRAINT IF EXISTS "JobAssignment_jobId_fkey"', 'COMMIT',
        'DROP INDEX CONCURRENTLY IF EXISTS "public"."JobAssignment_jobId_idx"']
    assert 'JobAssignment_jobId_fkey' not in constraints_of(conn)
    assert not helpers.relation_exists(conn, 'JobAssignment_jobId_idx')


@pytest.mark.majors()
def test_rows_that_break_a_planned_constraint_are_reported_before_any_ddl(copy, tmp_path):
    info, conn = copy
    helpers.query(conn, 'INSERT INTO "JobAssignment" ("id", "jobId", "studentId", "updatedAt") VALUES '
                        "('pt_orphan_1', 'pt_no_such_job', 's1', now()), ('pt_orphan_2', 'pt_no_such_job', 's2', now())")
    helpers.query(conn, 'UPDATE "Class" SET "teacherId" = NULL WHERE id IN (SELECT id FROM "Class" ORDER BY id LIMIT 3)')
    helpers.query(conn, 'UPDATE "Item" SET price = -1 WHERE id = (SELECT min(id) FROM "Item")')
    before = schema_dump(info)
    refused = playbook(info, tmp_path, 'pt_bad_rows', EVERY_KIND)
    assert refused.returncode != 0
    text = ' '.join(refused.stdout.split())
    for fragment in (
            'Rows in the database break the planned constraint(s) JobAssignment_jobId_fkey, Item_price_check, '
            'Class_teacherId_not_null; nothing was changed.',
            'foreign key "JobAssignment_jobId_fkey" (jobId) -> public.Job (id): 2 row(s) of public.JobAssignment '
            'reference no row (1 missing key(s))',
            '(jobId) = (pt_no_such_job): 2 row(s), id pt_orphan_1, pt_orphan_2',
            'check "Item_price_check" CHECK (price > 0): 1 row(s) of public.Item violate it',
            'NOT NULL on public.Class."teacherId": 3 row(s) of public.Class hold NULL it',
            'What to do: insert the missing referenced rows'):
        assert fragment in text, (fragment, text[-5000:])
    assert schema_dump(info) == before
    assert not helpers.relation_exists(conn, 'JobAssignment_jobId_idx')


@pytest.mark.majors()
def test_a_run_stopped_between_steps_resumes_from_the_catalog(copy):
    info, conn = copy
    # What a run stopped after its catalog steps leaves: the key NOT VALID, the NOT NULL's helper check valid.
    helpers.query(conn, 'ALTER TABLE "Job" ADD CONSTRAINT "Job_classId_fkey" FOREIGN KEY ("classId") REFERENCES '
                        '"Class"(id) ON DELETE SET NULL ON UPDATE CASCADE NOT VALID')
    helpers.query(conn, 'ALTER TABLE "Class" ADD CONSTRAINT "Class_teacherId_not_null" CHECK ("teacherId" IS NOT NULL)')
    result = run(info, constraints=[FK_NULLABLE, NOT_NULL])
    assert not result.get('failed'), result
    assert [(e['name'], e['action'], e['steps_done']) for e in result['constraints']] == [
        ('Job_classId_fkey', 'validated', ['validate']),
        ('Class_teacherId_not_null', 'completed', ['set_not_null', 'drop'])]
    assert result['queries'] == [
        'BEGIN', "SET LOCAL lock_timeout = '500ms'", 'LOCK TABLE ONLY "public"."Class" IN ROW SHARE MODE',
        'ALTER TABLE "public"."Job" VALIDATE CONSTRAINT "Job_classId_fkey"', 'COMMIT',
        'ALTER TABLE "public"."Class" ALTER COLUMN "teacherId" SET NOT NULL',
        'ALTER TABLE "public"."Class" DROP CONSTRAINT IF EXISTS "Class_teacherId_not_null"']
    assert constraints_of(conn)['Job_classId_fkey'][1] is True
    assert 'Class_teacherId_not_null' not in constraints_of(conn)
    assert not_null(conn, 'Class', 'teacherId')
    again = run(info, constraints=[FK_NULLABLE, NOT_NULL])
    assert again['changed'] is False and again['queries'] == []
    assert [e['action'] for e in again['constraints']] == ['unchanged', 'unchanged']


def test_a_different_constraint_of_the_planned_name_is_refused_and_kept(copy):
    info, conn = copy
    helpers.query(conn, 'ALTER TABLE "Job" ADD CONSTRAINT "Job_classId_fkey" FOREIGN KEY ("classId") REFERENCES '
                        '"Class"(id) ON DELETE RESTRICT')
    helpers.query(conn, 'ALTER TABLE "Item" ADD CONSTRAINT "Item_price_check" CHECK (price >= 0)')
    before = constraints_of(conn)
    for entry, fragments in ((FK_NULLABLE, ['its ON DELETE is RESTRICT, planned SET NULL',
                                            'its ON UPDATE is NO ACTION, planned CASCADE']),
                             (CHECK, ['its expression differs', 'existing: CHECK ((price >= 0))',
                                      'planned:  CHECK (price > 0)'])):
        for state in ('present', 'absent'):
            result = run(info, constraints=[entry], state=state)
            assert result.get('failed'), result
            assert result['queries'] == [] and not result['changed']
            for fragment in ['a different constraint named "%s" already exists' % entry['name']] + fragments:
                assert fragment in result['msg'], (fragment, result['msg'])
    assert constraints_of(conn) == before


def test_an_equivalent_check_written_differently_is_unchanged(copy):
    info, conn = copy
    helpers.query(conn, 'ALTER TABLE "Item" ADD CONSTRAINT "Item_price_check" CHECK ((("price")>0))')
    result = run(info, constraints=[CHECK])
    assert not result.get('failed'), result
    assert result['constraints'][0]['action'] == 'unchanged' and result['queries'] == []


def test_check_mode_and_diff_show_the_steps_and_change_nothing(copy):
    info, conn = copy
    before = constraints_of(conn)
    result = run(info, check=True, diff=True, constraints=[FK_NULLABLE, NOT_NULL])
    assert result['changed'] is True
    # A foreign key's steps take the referenced table first, under lock_timeout capped at half of deadlock_timeout.
    assert result['queries'] == [
        'BEGIN', "SET LOCAL lock_timeout = '500ms'", 'LOCK TABLE ONLY "public"."Class" IN SHARE ROW EXCLUSIVE MODE',
        'ALTER TABLE "public"."Job" ADD CONSTRAINT "Job_classId_fkey" FOREIGN KEY ("classId") REFERENCES "public"."Class" '
        '("id") ON DELETE SET NULL ON UPDATE CASCADE NOT VALID', 'COMMIT',
        'BEGIN', "SET LOCAL lock_timeout = '500ms'", 'LOCK TABLE ONLY "public"."Class" IN ROW SHARE MODE',
        'ALTER TABLE "public"."Job" VALIDATE CONSTRAINT "Job_classId_fkey"', 'COMMIT',
        'ALTER TABLE "public"."Class" ADD CONSTRAINT "Class_teacherId_not_null" CHECK ("teacherId" IS NOT NULL) NOT VALID',
        'ALTER TABLE "public"."Class" VALIDATE CONSTRAINT "Class_teacherId_not_null"',
        'ALTER TABLE "public"."Class" ALTER COLUMN "teacherId" SET NOT NULL',
        'ALTER TABLE "public"."Class" DROP CONSTRAINT IF EXISTS "Class_teacherId_not_null"']
    assert result['diff']['before'] == '-- Job_classId_fkey: absent\n-- Class."teacherId": nullable\n'
    assert result['diff']['after'] == (
        'CONSTRAINT Job_classId_fkey FOREIGN KEY ("classId") REFERENCES "public"."Class"("id") ON UPDATE CASCADE '
        'ON DELETE SET NULL\n-- Class."teacherId": NOT NULL\n')
    # Beside the definitions, the diff shows every statement a real run sends: NOT VALID, then VALIDATE, in order.
    assert result['diff']['prepared'] == '-- The statements a real run would send, in order:\n%s\n' % '\n'.join(
        statement + ';' for statement in result['queries'])
    assert constraints_of(conn) == before and not not_null(conn, 'Class', 'teacherId')
    # Rolling back a NOT NULL in place that no run of the plan set: it stays, and the result says why.
    helpers.query(conn, 'ALTER TABLE "Class" ALTER COLUMN "teacherId" SET NOT NULL')
    back = run(info, check=True, diff=True, constraints=[NOT_NULL], state='absent')
    assert back['queries'] == [] and 'NOT NULL of column "Class.teacherId" is not in the ledger of plan manual' in \
        back['constraints'][0]['left_alone'], back
    # One the ledger attributes to the plan: the diff says what the column is now, and what it becomes.
    helpers.record_in_ledger(conn, 'not_null', 'Class', 'teacherId', 'NOT NULL', prior=dict(nullable=True))
    back = run(info, check=True, diff=True, constraints=[NOT_NULL], state='absent')
    assert back['queries'] == ['ALTER TABLE "public"."Class" ALTER COLUMN "teacherId" DROP NOT NULL']
    assert (back['diff']['before'], back['diff']['after']) == ('-- Class."teacherId": NOT NULL\n',
                                                               '-- Class."teacherId": nullable\n')
    assert not_null(conn, 'Class', 'teacherId')
    helpers.query(conn, 'DROP SCHEMA pgzd_audit CASCADE')


def test_a_lock_that_cannot_be_taken_in_time_fails_naming_the_holder_and_changes_nothing(copy, connect, pg_cluster):
    info, conn = copy
    holder = psycopg2.connect(host=info['host'], port=info['port'], user=info['user'], password=info['password'],
                              dbname=info['dbname'], application_name='pt_lock_holder')
    try:
        with holder.cursor() as cursor:
            cursor.execute('BEGIN')
            cursor.execute('SELECT count(*) FROM "Item"')  # ACCESS SHARE, held: ADD CHECK needs ACCESS EXCLUSIVE
        result = run(info, constraints=[CHECK], lock_timeout='100ms', lock_retries=1, lock_retry_delay=0.1)
    finally:
        holder.close()
    assert result.get('failed'), result
    assert 'Item_price_check' not in constraints_of(conn)
    for fragment in ('ADD CONSTRAINT "Item_price_check" CHECK (price > 0) NOT VALID failed after 2 attempt(s)',
                     'lock holder: pid', 'app=pt_lock_holder', 'Steps done before it, and kept: none'):
        assert fragment in result['msg'], (fragment, result['msg'])


def test_a_foreign_key_on_a_partitioned_table_or_to_a_column_without_a_unique_key_is_refused(copy):
    info, conn = copy
    helpers.query(conn, 'CREATE TABLE pt_parted (id text, "jobId" text) PARTITION BY LIST (id)')
    entries = [dict(FK, name='pt_parted_jobId_fkey', table='pt_parted', index=None),
               dict(FK_NULLABLE, name='Job_class_name_fkey', references=dict(table='Class', columns=['name']))]
    for entry, fragment in zip(entries, ['public.pt_parted is a partitioned table',
                                         'the referenced columns public.Class (name) must be exactly the key columns']):
        result = run(info, constraints=[dict((k, v) for k, v in entry.items() if v is not None)])
        assert result.get('failed') and result['queries'] == [], result
        assert fragment in result['msg'], result['msg']


def test_rows_written_after_the_preflight_fail_validate_are_listed_and_the_key_stays_not_valid(copy):
    info, conn = copy
    # The module alone, without the preflight's scan: as if the rows came in between.
    helpers.query(conn, 'INSERT INTO "JobAssignment" ("id", "jobId", "studentId", "updatedAt") VALUES '
                        "('pt_late_orphan', 'pt_no_such_job', 's1', now())")
    entry = dict(FK, index=None)
    result = run(info, constraints=[dict((k, v) for k, v in entry.items() if v is not None)])
    assert result.get('failed'), result
    for fragment in ('VALIDATE CONSTRAINT "JobAssignment_jobId_fkey" failed after 1 attempt(s)',
                     'Rows written since the preflight break it:',
                     '(jobId) = (pt_no_such_job): 1 row(s), id pt_late_orphan',
                     'Steps done before it, and kept: add',
                     'the NOT VALID constraint "JobAssignment_jobId_fkey" is kept'):
        assert fragment in result['msg'], (fragment, result['msg'])
    assert result['constraints'][0]['action'] == 'failed'
    # NOT VALID, it checks every new row already; the rerun validates it once the row is fixed.
    assert constraints_of(conn)['JobAssignment_jobId_fkey'][1] is False
    with pytest.raises(psycopg2.errors.ForeignKeyViolation):
        helpers.query(conn, 'INSERT INTO "JobAssignment" ("id", "jobId", "studentId", "updatedAt") VALUES '
                            "('pt_new_orphan', 'pt_no_such_job', 's1', now())")
    helpers.query(conn, "DELETE FROM \"JobAssignment\" WHERE id = 'pt_late_orphan'")
    rerun = run(info, constraints=[dict((k, v) for k, v in entry.items() if v is not None)])
    assert not rerun.get('failed'), rerun
    assert rerun['constraints'][0]['action'] == 'validated'
    assert constraints_of(conn)['JobAssignment_jobId_fkey'][1] is True
