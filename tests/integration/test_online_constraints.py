# -*- coding: utf-8 -*-
"""Foreign keys, CHECK and NOT NULL done online (postgresql_online_constraint, the preflight and the playbooks)
against a real cluster (see tests/conftest.py).

Each test works in a database of its own, a copy of the seeded T12 database (t12_copy), so the constraints it adds
need no cleanup. The sample data satisfies every constraint planned here: each JobAssignment's job exists, each Job's
class exists, every Item price is positive and no Class lacks its teacherId.
"""

import os
import time

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


def not_null_constraints(conn, table):
    """{name: (column, validated)} of the NOT NULL constraints of a table (contype 'n': PostgreSQL 18+ records one per
    NOT NULL column; before 18, none)."""
    rows = helpers.query(conn, """
        SELECT con.conname::text, a.attname::text, con.convalidated FROM pg_catalog.pg_constraint con
        JOIN pg_catalog.pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = con.conkey[1]
        WHERE con.conrelid = %s::regclass AND con.contype = 'n'""", ('"%s"' % table,))
    return dict((name, (column, valid)) for name, column, valid in rows)


def not_null_ledger(conn):
    """(state, prior) of the ledger's rows of Class.teacherId's NOT NULL, oldest first."""
    return [tuple(row) for row in helpers.query(
        conn, "SELECT state, prior FROM pgzd_audit.ledger WHERE kind = 'not_null' AND object_name = 'teacherId' "
              "ORDER BY id")]


# The statements of a NOT NULL on each path (constraint_decisions.not_null_path): 18+ adds the NOT NULL constraint
# NOT VALID, then validates it; 14-17 go through the helper check.
NOT_NULL_STEPS = {
    18: ['ALTER TABLE "public"."Class" ADD CONSTRAINT "Class_teacherId_not_null" NOT NULL "teacherId" NOT VALID',
         'ALTER TABLE "public"."Class" VALIDATE CONSTRAINT "Class_teacherId_not_null"'],
    17: ['ALTER TABLE "public"."Class" ADD CONSTRAINT "Class_teacherId_not_null" CHECK ("teacherId" IS NOT NULL) '
         'NOT VALID',
         'ALTER TABLE "public"."Class" VALIDATE CONSTRAINT "Class_teacherId_not_null"',
         'ALTER TABLE "public"."Class" ALTER COLUMN "teacherId" SET NOT NULL',
         'ALTER TABLE "public"."Class" DROP CONSTRAINT IF EXISTS "Class_teacherId_not_null"'],
}
HELPER_CHECK = 'CHECK ("teacherId" IS NOT NULL)'


def not_null_steps(major):
    return NOT_NULL_STEPS[18 if major >= 18 else 17]


class ServerLog(object):
    """The server's log (<cluster dir>/postgresql.log) from now on, with every DDL statement logged
    (log_statement = 'ddl' for the cluster until close())."""

    def __init__(self, info, conn):
        self.path, self.conn = os.path.join(info['dir'], 'postgresql.log'), conn
        self.offset = os.path.getsize(self.path)
        helpers.query(conn, "ALTER SYSTEM SET log_statement = 'ddl'")
        helpers.query(conn, 'SELECT pg_catalog.pg_reload_conf()')
        deadline = time.time() + 10
        while helpers.query(conn, 'SHOW log_statement')[0][0] != 'ddl' and time.time() < deadline:
            time.sleep(0.1)

    def text(self):
        with open(self.path, 'rb') as handle:
            handle.seek(self.offset)
            return handle.read().decode('utf-8', 'replace')

    def close(self):
        helpers.query(self.conn, 'ALTER SYSTEM RESET log_statement')
        helpers.query(self.conn, 'SELECT pg_catalog.pg_reload_conf()')


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
def test_an_imported_prisma_migration_of_every_kind_migrates_online_reruns_unchanged_and_rolls_back(copy, tmp_path,
                                                                                                    pg_major):
    """fixtures/relations: a Prisma migration.sql with an index, a required column, two relations and a check,
    imported whole by scripts/plan_import.py (tests/unit/test_plan_import.py proves plan.yml is its import).

    The G-style migration of issue 24: on PostgreSQL 18 its required column is a NOT NULL constraint added NOT VALID
    and validated, and the server's own log shows no helper check was ever sent; before 18, the helper check's steps."""
    info, conn = copy
    before = schema_dump(info)
    rows = helpers.query(conn, 'SELECT count(*) FROM "JobAssignment"')[0][0]
    variables = dict(local_cluster_dir=info['dir'], pg_port=info['port'], pg_database=info['dbname'],
                     pgzd_plan=RELATIONS_PLAN, pgzd_artifacts_dir=str(tmp_path / 'artifacts'), backup_enabled='false',
                     backup_bin_dir=helpers.NEWEST_CLIENT_BIN)

    checked = helpers.run_playbook('playbooks/migrate.yml', variables, options=['--check', '--diff'])
    assert checked.returncode == 0, checked.stdout[-5000:]
    text = ' '.join(checked.stdout.split())
    for statement in [
            'CREATE INDEX CONCURRENTLY IF NOT EXISTS "JobAssignment_jobId_idx" ON "public"."JobAssignment"',
            'ALTER TABLE "public"."JobAssignment" ADD CONSTRAINT "JobAssignment_jobId_fkey" FOREIGN KEY ("jobId") '
            'REFERENCES "public"."Job" ("id") ON DELETE CASCADE ON UPDATE CASCADE NOT VALID',
            'ALTER TABLE "public"."JobAssignment" VALIDATE CONSTRAINT "JobAssignment_jobId_fkey"',
            'ALTER TABLE "public"."Item" ADD CONSTRAINT "Item_price_check" CHECK (price > 0) NOT VALID'] + \
            not_null_steps(pg_major):
        assert statement in text, (statement, text[-6000:])
    assert (HELPER_CHECK in text) is (pg_major < 18), text[-6000:]
    assert schema_dump(info) == before

    log = ServerLog(info, conn)
    try:
        migrated = helpers.run_playbook('playbooks/migrate.yml', variables)
        logged = log.text()
    finally:
        log.close()
    assert migrated.returncode == 0, migrated.stdout[-6000:]
    # The server's log: every NOT NULL statement the migration sent, in order; on 18, no helper check at all.
    sent = [line.split('statement: ', 1)[1].strip() for line in logged.splitlines()
            if 'statement: ' in line and '"public"."Class"' in line and 'teacherId' in line]
    assert sent == not_null_steps(pg_major), logged[-6000:]
    assert (HELPER_CHECK in logged) is (pg_major < 18), logged[-6000:]
    if pg_major >= 18:
        assert not_null_constraints(conn, 'Class')['Class_teacherId_not_null'] == ('teacherId', True)
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
    # What a run stopped after its catalog steps leaves: the key NOT VALID, the NOT NULL's helper check valid (on 18:
    # what a run of 14-17 left before the server was upgraded; it is finished the old way, SET NOT NULL scanning
    # nothing).
    helpers.query(conn, 'ALTER TABLE "Job" ADD CONSTRAINT "Job_classId_fkey" FOREIGN KEY ("classId") REFERENCES '
                        '"Class"(id) ON DELETE SET NULL ON UPDATE CASCADE NOT VALID')
    helpers.query(conn, 'ALTER TABLE "Class" ADD CONSTRAINT "Class_teacherId_not_null" CHECK ("teacherId" IS NOT NULL)')
    result = run(info, constraints=[FK_NULLABLE, NOT_NULL])
    assert not result.get('failed'), result
    assert [(e['name'], e['action'], e['steps_done']) for e in result['constraints']] == [
        ('Job_classId_fkey', 'validated', ['validate']),
        ('Class_teacherId_not_null', 'completed', ['set_not_null', 'drop'])]
    # What the result and --check say is planned is the path the steps take: the helper's, on 18 too.
    assert result['constraints'][1]['planned'] == 'NOT NULL on column teacherId (through CHECK ("teacherId" IS NOT NULL))'
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


@pytest.mark.majors(17, 18)
def test_a_not_null_takes_the_servers_path_and_rolls_back_through_the_ledger(copy, pg_major):
    info, conn = copy
    new_form = pg_major >= 18
    checked = run(info, check=True, constraints=[NOT_NULL])
    assert checked['queries'] == not_null_steps(pg_major)
    assert checked['constraints'][0]['steps'] == (['add_not_null', 'validate'] if new_form else
                                                  ['add', 'validate', 'set_not_null', 'drop'])
    assert checked['constraints'][0]['planned'] == (
        'NOT NULL on column teacherId (constraint Class_teacherId_not_null, added NOT VALID, then validated)'
        if new_form else 'NOT NULL on column teacherId (through CHECK ("teacherId" IS NOT NULL))')
    assert not not_null(conn, 'Class', 'teacherId')

    result = run(info, constraints=[NOT_NULL])
    assert not result.get('failed'), result
    assert result['queries'] == not_null_steps(pg_major)
    assert result['constraints'][0]['action'] == 'created'
    assert not_null(conn, 'Class', 'teacherId')
    assert 'Class_teacherId_not_null' not in constraints_of(conn)  # no helper check, on either path
    if new_form:
        assert not_null_constraints(conn, 'Class')['Class_teacherId_not_null'] == ('teacherId', True)
    else:
        assert not_null_constraints(conn, 'Class') == {}
    assert not_null_ledger(conn) == [('applied', dict(nullable=True, **(
        dict(not_null_constraint='Class_teacherId_not_null') if new_form else
        dict(helper_check='Class_teacherId_not_null'))))]

    again = run(info, constraints=[NOT_NULL])
    assert again['changed'] is False and again['queries'] == [] and again['constraints'][0]['action'] == 'unchanged'

    back = run(info, constraints=[NOT_NULL], state='absent')
    assert not back.get('failed'), back
    assert back['queries'] == ['ALTER TABLE "public"."Class" ALTER COLUMN "teacherId" DROP NOT NULL']
    assert not not_null(conn, 'Class', 'teacherId')
    assert 'teacherId' not in [column for column, _valid in not_null_constraints(conn, 'Class').values()]
    assert [state for state, _prior in not_null_ledger(conn)] == ['undone']


@pytest.mark.majors(17, 18)
def test_a_helper_check_left_not_valid_by_a_stopped_run_converges_on_either_server(copy, pg_major):
    """A run of 14-17 stopped after its helper check was added NOT VALID; on 18 as an upgraded server has it. The rerun
    finishes it the old way, and the ledger row the stopped run wrote is the one confirmed, then undone."""
    info, conn = copy
    helpers.record_in_ledger(conn, 'not_null', 'Class', 'teacherId', 'NOT NULL', state='intended',
                             prior=dict(nullable=True, helper_check='Class_teacherId_not_null'))
    helpers.query(conn, 'ALTER TABLE "Class" ADD CONSTRAINT "Class_teacherId_not_null" CHECK ("teacherId" IS NOT NULL) '
                        'NOT VALID')
    result = run(info, constraints=[NOT_NULL])
    assert not result.get('failed'), result
    assert (result['constraints'][0]['action'], result['constraints'][0]['steps_done']) == (
        'validated', ['validate', 'set_not_null', 'drop'])
    assert result['queries'] == NOT_NULL_STEPS[17][1:]
    assert not_null(conn, 'Class', 'teacherId') and 'Class_teacherId_not_null' not in constraints_of(conn)
    if pg_major >= 18:
        # SET NOT NULL made PostgreSQL's own NOT NULL constraint (the helper had its name then), valid.
        assert [valid for column, valid in not_null_constraints(conn, 'Class').values() if column == 'teacherId'] == [
            True]
    assert [state for state, _prior in not_null_ledger(conn)] == ['applied']
    again = run(info, constraints=[NOT_NULL])
    assert again['queries'] == [] and again['constraints'][0]['action'] == 'unchanged'
    back = run(info, constraints=[NOT_NULL], state='absent')
    assert back['queries'] == ['ALTER TABLE "public"."Class" ALTER COLUMN "teacherId" DROP NOT NULL']
    assert not not_null(conn, 'Class', 'teacherId')
    assert 'teacherId' not in [column for column, _valid in not_null_constraints(conn, 'Class').values()]
    assert [state for state, _prior in not_null_ledger(conn)] == ['undone']


@pytest.mark.majors(18)
def test_on_18_a_not_valid_not_null_left_by_a_stopped_run_is_validated_and_rolled_back(copy):
    info, conn = copy
    # What an 18 run stopped after its first step leaves: its ledger row intended, the NOT NULL NOT VALID (attnotnull
    # already true: new rows are checked).
    helpers.record_in_ledger(conn, 'not_null', 'Class', 'teacherId', 'NOT NULL', state='intended',
                             prior=dict(nullable=True, not_null_constraint='Class_teacherId_not_null'))
    helpers.query(conn, 'ALTER TABLE "Class" ADD CONSTRAINT "Class_teacherId_not_null" NOT NULL "teacherId" NOT VALID')
    assert not_null_constraints(conn, 'Class')['Class_teacherId_not_null'] == ('teacherId', False)
    assert not_null(conn, 'Class', 'teacherId')
    checked = run(info, check=True, constraints=[NOT_NULL])
    assert checked['queries'] == NOT_NULL_STEPS[18][1:]
    result = run(info, constraints=[NOT_NULL])
    assert not result.get('failed'), result
    assert (result['constraints'][0]['action'], result['constraints'][0]['steps_done']) == ('validated', ['validate'])
    assert not_null_constraints(conn, 'Class')['Class_teacherId_not_null'] == ('teacherId', True)
    assert [state for state, _prior in not_null_ledger(conn)] == ['applied']

    # Rolling back one left NOT VALID: DROP NOT NULL removes it too.
    helpers.query(conn, 'ALTER TABLE "Class" ALTER COLUMN "teacherId" DROP NOT NULL')
    helpers.query(conn, 'ALTER TABLE "Class" ADD CONSTRAINT "Class_teacherId_not_null" NOT NULL "teacherId" NOT VALID')
    back = run(info, constraints=[NOT_NULL], state='absent')
    assert back['queries'] == ['ALTER TABLE "public"."Class" ALTER COLUMN "teacherId" DROP NOT NULL']
    assert not not_null(conn, 'Class', 'teacherId') and 'Class_teacherId_not_null' not in not_null_constraints(
        conn, 'Class')
    assert [state for state, _prior in not_null_ledger(conn)] == ['undone']

    # One of another name, NOT VALID: PostgreSQL would refuse a second name; the run refuses first, saying what to do.
    helpers.query(conn, 'ALTER TABLE "Class" ADD CONSTRAINT "mine" NOT NULL "teacherId" NOT VALID')
    refused = run(info, constraints=[NOT_NULL])
    assert refused.get('failed') and refused['queries'] == [] and not refused['changed'], refused
    assert 'the column already has a NOT VALID NOT NULL constraint "mine", not of the planned name' in refused['msg']
    assert not_null_constraints(conn, 'Class')['mine'] == ('teacherId', False)


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


def test_a_foreign_key_to_a_column_without_a_unique_key_is_refused(copy):
    info, conn = copy
    entry = dict(FK_NULLABLE, name='Job_class_name_fkey', references=dict(table='Class', columns=['name']))
    result = run(info, constraints=[entry])
    assert result.get('failed') and result['queries'] == [], result
    assert 'the referenced columns public.Class (name) must be exactly the key columns' in result['msg'], result['msg']


# A partitioned table with a sub-partitioned partition, whose rows all reference pt_ref: its leaves are pt_parted_1,
# pt_parted_2 (level 1), pt_parted_3a and pt_parted_3b (partitions of pt_parted_3).
PARTITIONED = [
    'CREATE TABLE pt_ref (id int PRIMARY KEY)',
    'INSERT INTO pt_ref SELECT g FROM generate_series(1, 1000) g',
    'CREATE TABLE pt_parted (id int, ref_id int, k int, PRIMARY KEY (id, k)) PARTITION BY LIST (k)',
    'CREATE TABLE pt_parted_1 PARTITION OF pt_parted FOR VALUES IN (1)',
    'CREATE TABLE pt_parted_2 PARTITION OF pt_parted FOR VALUES IN (2)',
    'CREATE TABLE pt_parted_3 PARTITION OF pt_parted FOR VALUES IN (3) PARTITION BY RANGE (id)',
    'CREATE TABLE pt_parted_3a PARTITION OF pt_parted_3 FOR VALUES FROM (MINVALUE) TO (1500)',
    'CREATE TABLE pt_parted_3b PARTITION OF pt_parted_3 FOR VALUES FROM (1500) TO (MAXVALUE)',
    'INSERT INTO pt_parted SELECT g, 1 + g % 1000, 1 + g % 3 FROM generate_series(1, 3000) g']
PARTITIONED_FK = dict(name='pt_parted_ref_fkey', type='foreign_key', table='pt_parted', columns=['ref_id'],
                      references=dict(table='pt_ref', columns=['id']))
LEAVES = ['pt_parted_1', 'pt_parted_2', 'pt_parted_3a', 'pt_parted_3b']


def partitioned_keys(conn):
    """{table: (name, validated, local)} of the foreign keys of pt_parted and its partitions."""
    rows = helpers.query(conn, """
        SELECT con.conrelid::regclass::text, con.conname::text, con.convalidated, con.conislocal
        FROM pg_catalog.pg_constraint con, pg_catalog.pg_partition_tree('pt_parted') t
        WHERE con.conrelid = t.relid AND con.contype = 'f'""")
    return dict((table, (name, valid, local)) for table, name, valid, local in rows)


def validate_in_lock_order(table, lock='500ms'):
    return ['BEGIN', "SET LOCAL lock_timeout = '%s'" % lock, 'LOCK TABLE ONLY "public"."pt_ref" IN ROW SHARE MODE',
            'ALTER TABLE "public"."%s" VALIDATE CONSTRAINT "pt_parted_ref_fkey"' % table, 'COMMIT']


@pytest.mark.majors(17, 18)
def test_a_foreign_key_on_a_partitioned_table_is_validated_partition_by_partition_on_18_and_refused_before(
        copy, pg_major):
    info, conn = copy
    for statement in PARTITIONED:
        helpers.query(conn, statement)
    checked = run(info, check=True, constraints=[PARTITIONED_FK])
    if pg_major < 18:
        # Below 18 PostgreSQL refuses ADD ... NOT VALID on a partitioned table: the plan is refused first, naming
        # the server's version, and nothing changes.
        version = helpers.query(conn, 'SHOW server_version')[0][0].split()[0]
        for result in (checked, run(info, constraints=[PARTITIONED_FK])):
            assert result.get('failed') and result['queries'] == [], result
            for fragment in ('public.pt_parted is a partitioned table, and the server is PostgreSQL %s: NOT VALID '
                             'foreign keys on partitioned tables need 18' % version,
                             'add the foreign key to each partition instead', '[rule '
                             'foreign-key-not-valid-on-partitioned-table]'):
                assert fragment in result['msg'], (fragment, result['msg'])
        assert partitioned_keys(conn) == {}
        return
    # --check shows the path: ADD on the parent, each leaf's VALIDATE in a transaction of its own, then the parent's.
    validates = [statement for leaf in LEAVES for statement in validate_in_lock_order(leaf)]
    assert checked['queries'] == [
        'BEGIN', "SET LOCAL lock_timeout = '500ms'", 'LOCK TABLE ONLY "public"."pt_ref" IN SHARE ROW EXCLUSIVE MODE',
        'ALTER TABLE "public"."pt_parted" ADD CONSTRAINT "pt_parted_ref_fkey" FOREIGN KEY ("ref_id") REFERENCES '
        '"public"."pt_ref" ("id") ON DELETE NO ACTION ON UPDATE NO ACTION NOT VALID', 'COMMIT'] + validates + \
        validate_in_lock_order('pt_parted'), checked['queries']
    assert checked['constraints'][0]['steps'] == ['add', 'validate_partitions', 'validate']
    locks = [lock for lock in checked['constraints'][0]['locks'] if lock]
    assert len(locks) == 2 + len(LEAVES) and 'each partition in a transaction of its own' in locks[1], locks
    assert partitioned_keys(conn) == {}
    result = run(info, constraints=[PARTITIONED_FK])
    assert not result.get('failed'), result
    assert result['constraints'][0]['steps_done'] == ['add', 'validate_partitions', 'validate']
    assert result['queries'] == checked['queries']
    # The parent's key is the local one; every partition (the sub-partitioned one too) inherits it, all valid.
    assert partitioned_keys(conn) == dict(
        [('pt_parted', ('pt_parted_ref_fkey', True, True))] +
        [(table, ('pt_parted_ref_fkey', True, False)) for table in ['pt_parted_3'] + LEAVES])
    with pytest.raises(psycopg2.errors.ForeignKeyViolation):
        helpers.query(conn, 'INSERT INTO pt_parted VALUES (5000, 5000, 2)')
    again = run(info, constraints=[PARTITIONED_FK])
    assert again['changed'] is False and again['queries'] == [] and again['constraints'][0]['action'] == 'unchanged'
    # Rollback drops the parent's key (the referenced table first); PostgreSQL drops the partitions' with it.
    dropped = run(info, constraints=[PARTITIONED_FK], state='absent')
    assert dropped['constraints'][0]['steps_done'] == ['drop'], dropped
    assert dropped['queries'] == [
        'BEGIN', "SET LOCAL lock_timeout = '500ms'", 'LOCK TABLE ONLY "public"."pt_ref" IN ACCESS EXCLUSIVE MODE',
        'ALTER TABLE "public"."pt_parted" DROP CONSTRAINT IF EXISTS "pt_parted_ref_fkey"', 'COMMIT']
    assert partitioned_keys(conn) == {}


@pytest.mark.majors(18)
def test_a_partition_the_user_does_not_own_refuses_the_partitioned_foreign_key_before_any_change(copy):
    """Validating partition by partition alters each partition: a partition another role owns would let the ADD and
    the parent's VALIDATE through and stop at its own VALIDATE, every run. Its owner is judged before any change."""
    info, conn = copy
    for statement in PARTITIONED:
        helpers.query(conn, statement)
    app, other = 'pt_fk_app', 'pt_fk_other'
    for role in (app, other):
        helpers.query(conn, "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '%s') THEN "
                            "CREATE ROLE %s NOLOGIN; END IF; END $$" % (role, role))
    helpers.query(conn, 'GRANT USAGE, CREATE ON SCHEMA public TO %s' % app)
    for table in ['pt_parted', 'pt_parted_1', 'pt_parted_3', 'pt_parted_3a', 'pt_parted_3b', 'pt_ref']:
        helpers.query(conn, 'ALTER TABLE %s OWNER TO %s' % (table, app))
    helpers.query(conn, 'ALTER TABLE pt_parted_2 OWNER TO %s' % other)
    try:
        for check in (True, False):
            result = run(info, check=check, constraints=[PARTITIONED_FK], session_role=app)
            assert result.get('failed') and result['queries'] == [], result
            assert 'the current user %s does not own public.pt_parted_2 (its owner is %s)' % (app, other) \
                in result['msg'], result['msg']
        assert partitioned_keys(conn) == {}
    finally:
        for table in ['pt_parted', 'pt_parted_1', 'pt_parted_2', 'pt_parted_3', 'pt_parted_3a', 'pt_parted_3b',
                      'pt_ref']:
            helpers.query(conn, 'ALTER TABLE %s OWNER TO %s' % (table, info['user']))
        for role in (app, other):
            helpers.query(conn, 'DROP OWNED BY %s CASCADE' % role)
            helpers.query(conn, 'DROP ROLE %s' % role)


@pytest.mark.majors(18)
def test_a_partitioned_foreign_key_stopped_by_late_rows_keeps_the_partitions_done_and_the_rerun_validates_the_rest(
        copy):
    info, conn = copy
    for statement in PARTITIONED:
        helpers.query(conn, statement)
    # The module alone, without the preflight's scan: as if an orphan came into pt_parted_2 in between.
    helpers.query(conn, 'INSERT INTO pt_parted VALUES (4001, 7777, 2)')
    result = run(info, constraints=[PARTITIONED_FK])
    assert result.get('failed'), result
    for fragment in ('ALTER TABLE "public"."pt_parted_2" VALIDATE CONSTRAINT "pt_parted_ref_fkey" failed',
                     'Rows written since the preflight break it:', '(ref_id) = (7777): 1 row(s), id/k 4001,2',
                     'Steps done before it, and kept: add',
                     'the NOT VALID constraint "pt_parted_ref_fkey" is kept; the partitions not yet valid are validated'):
        assert fragment in result['msg'], (fragment, result['msg'])
    keys = partitioned_keys(conn)
    assert keys['pt_parted'] == ('pt_parted_ref_fkey', False, True)
    assert [keys[leaf][1] for leaf in LEAVES] == [True, False, False, False], keys
    helpers.query(conn, 'DELETE FROM pt_parted WHERE ref_id = 7777')
    rerun = run(info, constraints=[PARTITIONED_FK])
    assert not rerun.get('failed'), rerun
    assert (rerun['constraints'][0]['action'], rerun['constraints'][0]['steps_done']) == (
        'validated', ['validate_partitions', 'validate'])
    # pt_parted_1 stayed valid: only the others are validated, then the parent.
    assert rerun['queries'] == [statement for leaf in LEAVES[1:] for statement in validate_in_lock_order(leaf)] + \
        validate_in_lock_order('pt_parted')
    assert set(valid for dummy_, valid, dummy_ in partitioned_keys(conn).values()) == {True}
    # The ledger has it from the first run: the rollback drops it, and with it every partition's key.
    dropped = run(info, constraints=[PARTITIONED_FK], state='absent')
    assert dropped['constraints'][0]['steps_done'] == ['drop'], dropped
    assert partitioned_keys(conn) == {}


@pytest.mark.majors(17, 18)
def test_orphans_of_a_partitioned_foreign_key_are_refused_by_the_preflight_before_any_change(copy, tmp_path, pg_major):
    info, conn = copy
    for statement in PARTITIONED:
        helpers.query(conn, statement)
    helpers.query(conn, 'INSERT INTO pt_parted VALUES (4001, 7777, 3), (4002, 7777, 1)')
    before = schema_dump(info)
    refused = playbook(info, tmp_path, 'pt_parted_orphans', [PARTITIONED_FK])
    assert refused.returncode != 0
    text = ' '.join(refused.stdout.split())
    if pg_major < 18:
        fragments = ['public.pt_parted is a partitioned table, and the server is PostgreSQL %d.' % pg_major]
    else:
        # The orphan proof scans the partitioned table, so every partition: one in pt_parted_3b, one in pt_parted_1.
        fragments = ['Rows in the database break the planned constraint(s) pt_parted_ref_fkey; nothing was changed.',
                     'foreign key "pt_parted_ref_fkey" (ref_id) -> public.pt_ref (id): 2 row(s) of public.pt_parted '
                     'reference no row (1 missing key(s))', '(ref_id) = (7777): 2 row(s), id/k 4001,3, 4002,1']
    for fragment in fragments:
        assert fragment in text, (fragment, text[-5000:])
    assert schema_dump(info) == before and partitioned_keys(conn) == {}


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
