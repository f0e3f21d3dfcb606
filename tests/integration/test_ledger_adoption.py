# -*- coding: utf-8 -*-
"""playbooks/adopt.yml (postgresql_migration_ledger) on real PostgreSQL: a database a plan was migrated on by version
0.16, before the ledger existed, is adopted once, and only then does rollback.yml undo the plan's objects.

The "0.16 deployment" is made by SQL in a database of the file's own (a copy of the seeded T12 database): the plan's
indexes and constraints as the plan defines them, a NOT NULL, a replacement with its 0.16 record comment, a rename of
duplicate keys in the audit table; beside them what must never be adopted: an index of a planned name with another
definition (the application's) and the NOT NULL of a primary-key column. A rollback first leaves it all alone and says
so; adopt.yml --check changes nothing; adopt.yml records exactly the plan's objects; a rerun adopts nothing; the
rollback then undoes exactly those and leaves the others, back to the schema (pg_dump) and the rows before the 0.16
migration.
"""

import json

import pytest
import yaml

import helpers

pytestmark = pytest.mark.integration

DATABASE = 'pt_adopt'
PLAN_NAME = 'pt_adopt'
# The run of version 0.16 that renamed the duplicate (audit run ids are <plan>-<run id>).
OLD_RUN = 'pt_adopt-20250101T000000Z-a1b2c3'
STATUS = dict(name='pt_Job_status_idx', columns=['status'])
CREATED_AT = dict(name='pt_Job_createdAt_idx', columns=['createdAt'])   # the application's index has the name
TITLE = dict(name='pt_Job_title_idx', columns=['title', 'status'], on_mismatch='replace')
CLOSED_AT = dict(name='pt_Job_closedAt_idx', columns=['closedAt'])     # never built
UNIQUE = dict(name='Class_name_grade_key', table='Class', type='unique', columns=['name', 'grade'],
              on_duplicates='rename', rename_column='name')
FK = dict(name='JobAssignment_jobId_fkey', type='foreign_key', table='JobAssignment', columns=['jobId'],
          references=dict(table='Job', columns=['id']), on_delete='CASCADE', on_update='CASCADE',
          index='JobAssignment_jobId_idx')
CHECK = dict(name='Item_price_check', type='check', table='Item', expression='price > 0')
NOT_NULL = dict(name='Class_teacherId_not_null', type='not_null', table='Class', column='teacherId')
PRIMARY_KEY_NOT_NULL = dict(name='Job_id_not_null', type='not_null', table='Job', column='id')
PLAN = dict(name=PLAN_NAME, schema='public', tables=[dict(name='Job', indexes=[STATUS, CREATED_AT, TITLE, CLOSED_AT])],
            constraints=[UNIQUE, FK, CHECK, NOT_NULL, PRIMARY_KEY_NOT_NULL])

APP_CREATED_AT = 'CREATE INDEX "pt_Job_createdAt_idx" ON public."Job" USING btree ("closedAt")'
OLD_TITLE = 'CREATE INDEX "pt_Job_title_idx" ON public."Job" USING btree (title)'
NEW_TITLE = 'CREATE INDEX "pt_Job_title_idx" ON public."Job" USING btree (title, status)'
DUPLICATE = 'pt_dup_1'

# What adopt.yml records, in plan order: (kind, object, definition, prior).
ADOPTED = [
    ('index', 'pt_Job_status_idx', 'CREATE INDEX "pt_Job_status_idx" ON public."Job" USING btree (status)',
     dict(adopted=True)),
    ('replaced_index', 'pt_Job_title_idx', NEW_TITLE, dict(definition=OLD_TITLE, comment='kept by ops', adopted=True)),
    ('constraint', 'Class_name_grade_key', 'UNIQUE (name, grade)', dict(adopted=True)),
    ('index', 'JobAssignment_jobId_idx',
     'CREATE INDEX "JobAssignment_jobId_idx" ON public."JobAssignment" USING btree ("jobId")', dict(adopted=True)),
    ('constraint', 'JobAssignment_jobId_fkey',
     'FOREIGN KEY ("jobId") REFERENCES "Job"(id) ON UPDATE CASCADE ON DELETE CASCADE', dict(adopted=True)),
    ('constraint', 'Item_price_check', 'CHECK ((price > 0))', dict(adopted=True)),
    ('not_null', 'teacherId', 'NOT NULL', dict(nullable=True, adopted=True)),
    ('renamed_rows', 'Class_name_grade_key', '1 row(s) of public.Class renamed, recorded in '
     'pgzd_audit.duplicate_resolution', dict(audit_table='pgzd_audit.duplicate_resolution', audit_run_id=OLD_RUN,
                                             rows=1, column='name', adopted=True)),
]


def record_comment(definition, comment):
    """The comment version 0.16 gave the index a replacement swapped in (index_replacement.RECORD_PREFIX)."""
    return helpers.load_module_utils('kinds.index_replacement').RECORD_PREFIX + json.dumps(
        dict(definition=definition, comment=comment), sort_keys=True)


def deploy_with_0_16(conn):
    """What version 0.16 left of PLAN: everything built, one replacement swapped in with its record comment, one
    duplicate renamed with its audit row; no ledger."""
    for statement in (
            'CREATE INDEX "pt_Job_status_idx" ON "Job" (status)',
            'ALTER INDEX "pt_Job_title_idx" RENAME TO "pt_Job_title_idx_pgzd_prev"',
            'CREATE INDEX "pt_Job_title_idx" ON "Job" (title, status)',
            'DROP INDEX "pt_Job_title_idx_pgzd_prev"',
            'CREATE SCHEMA pgzd_audit',
            'CREATE TABLE pgzd_audit.duplicate_resolution (id bigserial PRIMARY KEY, run_id text NOT NULL, '
            'constraint_name text NOT NULL, table_schema text NOT NULL, table_name text NOT NULL, column_name text '
            'NOT NULL, row_key jsonb NOT NULL, old_value text, new_value text, resolved_at timestamptz NOT NULL '
            'DEFAULT now(), restored_at timestamptz)',
            'CREATE INDEX "JobAssignment_jobId_idx" ON "JobAssignment" ("jobId")',
            'ALTER TABLE "JobAssignment" ADD CONSTRAINT "JobAssignment_jobId_fkey" FOREIGN KEY ("jobId") '
            'REFERENCES "Job" (id) ON DELETE CASCADE ON UPDATE CASCADE',
            'ALTER TABLE "Item" ADD CONSTRAINT "Item_price_check" CHECK (price > 0)',
            'ALTER TABLE "Class" ALTER COLUMN "teacherId" SET NOT NULL'):
        helpers.query(conn, statement)
    helpers.query(conn, 'COMMENT ON INDEX "pt_Job_title_idx" IS %s', (record_comment(OLD_TITLE, 'kept by ops'),))
    renamed = 'Class A-0 [duplicate %s]' % DUPLICATE
    helpers.query(conn, 'UPDATE "Class" SET name = %s WHERE id = %s', (renamed, DUPLICATE))
    helpers.query(conn, 'INSERT INTO pgzd_audit.duplicate_resolution (run_id, constraint_name, table_schema, '
                        'table_name, column_name, row_key, old_value, new_value) '
                        'VALUES (%s, %s, %s, %s, %s, %s, %s, %s)',
                  (OLD_RUN, UNIQUE['name'], 'public', 'Class', 'name', json.dumps(dict(id=DUPLICATE)), 'Class A-0',
                   renamed))
    helpers.query(conn, 'CREATE UNIQUE INDEX "Class_name_grade_key" ON "Class" (name, grade)')
    helpers.query(conn, 'ALTER TABLE "Class" ADD CONSTRAINT "Class_name_grade_key" UNIQUE USING INDEX '
                        '"Class_name_grade_key"')


@pytest.fixture(scope='module')
def deployment(file_database, tmp_path_factory):
    """The database as the application had it before the 0.16 migration (its own index of a planned name, the index the
    replacement replaced, a duplicate row), its pg_dump --schema-only and rows then, and the 0.16 migration on it."""
    conn = file_database['conn']
    helpers.query(conn, 'CREATE INDEX "pt_Job_createdAt_idx" ON "Job" ("closedAt")')
    helpers.query(conn, 'CREATE INDEX "pt_Job_title_idx" ON "Job" (title)')
    helpers.query(conn, 'COMMENT ON INDEX "pt_Job_title_idx" IS \'kept by ops\'')
    helpers.query(conn, 'INSERT INTO "Class" ("id", "name", "grade", "teacherId", "createdAt", "updatedAt") '
                        'SELECT %s, "name", "grade", "teacherId", \'2025-06-01\', now() FROM "Class" '
                        'WHERE "name" = \'Class A-0\' AND "grade" = 1', (DUPLICATE,))
    before = dict(schema=helpers.schema_dump(file_database['cluster'], DATABASE), classes=class_names(conn))
    deploy_with_0_16(conn)
    directory = tmp_path_factory.mktemp('adopt')
    plan = directory / 'plan.yml'
    plan.write_text(yaml.safe_dump(PLAN))
    variables = dict(local_cluster_dir=file_database['cluster']['dir'], pg_port=file_database['cluster']['port'],
                     pg_database=DATABASE, pgzd_plan=str(plan), pgzd_artifacts_dir=str(directory / 'artifacts'))
    yield dict(file_database, before=before, variables=variables)


def class_names(conn):
    return dict(helpers.query(conn, 'SELECT id, name FROM "Class"'))


def index_state(conn, name):
    """(definition, comment) of an index, or None."""
    rows = helpers.query(conn, "SELECT pg_catalog.pg_get_indexdef(c.oid), "
                               "pg_catalog.obj_description(c.oid, 'pg_class') FROM pg_catalog.pg_class c "
                               "WHERE c.relnamespace = 'public'::regnamespace AND c.relname = %s AND c.relkind = 'i'",
                         (name,))
    return tuple(rows[0]) if rows else None


def constraint_names(conn):
    return set(row[0] for row in helpers.query(
        conn, "SELECT conname::text FROM pg_catalog.pg_constraint WHERE connamespace = 'public'::regnamespace "
              "AND contype IN ('u', 'f', 'c')"))


def not_null(conn, table, column):
    return helpers.query(conn, 'SELECT attnotnull FROM pg_catalog.pg_attribute WHERE attrelid = %s::regclass AND '
                               'attname = %s', ('"%s"' % table, column))[0][0]


def ledger_details(conn):
    """(kind, object, state, definition, prior) of every ledger row, with the run ids, oldest first."""
    rows = helpers.query(conn, 'SELECT kind, object_name, state, definition, prior, run_id FROM pgzd_audit.ledger '
                               'ORDER BY id')
    return [tuple(row[:5]) for row in rows], set(row[5] for row in rows)


def playbook(deployment, name, check=False):
    run = helpers.run_playbook('playbooks/%s.yml' % name, deployment['variables'], options=['--check'] if check else [])
    assert run.returncode == 0, run.stdout[-6000:]
    return run, ' '.join(run.stdout.split())


def test_adoption_refuses_to_write_once_the_run_lost_its_migration_lock(deployment, connect):
    conn = deployment['conn']
    guard = helpers.Guard(conn, lambda: helpers.connect(deployment['cluster']))
    try:
        # A session that holds no migration lock: the module must prove the lock before its first write.
        result = helpers.run_ansible_module('postgresql_migration_ledger', dict(
            deployment['login'], plan_name=PLAN_NAME, tables=PLAN['tables'], constraints=PLAN['constraints'],
            lock_session_pid=guard.victim_pid))
        assert result.get('failed') is True, result
        assert 'Nothing was adopted: this run no longer holds the migration lock' in result['msg']
        assert result['changed'] is False and result['queries'] == []
        guard.assert_untouched('an adoption without its lock')
        assert helpers.ledger_rows(conn) == []
    finally:
        guard.close()


def test_a_0_16_deployment_is_adopted_once_and_then_rolled_back_exactly(deployment):
    conn = deployment['conn']
    guard = helpers.Guard(conn, lambda: helpers.connect(deployment['cluster']))
    try:
        # Before adoption, the ledger names nothing: the rollback leaves everything alone, and says why.
        _run, text = playbook(deployment, 'rollback')
        guard.assert_untouched('a rollback before adoption')
        assert helpers.ledger_rows(conn) == []
        for name in ('pt_Job_status_idx', 'Class_name_grade_key', 'JobAssignment_jobId_fkey', 'Item_price_check'):
            assert '%s" is not in the ledger of plan pt_adopt' % name in text, (name, text[-6000:])
        assert 'record it first with playbooks/adopt.yml' in text

        # --check: what would be recorded, and nothing changed (not even the ledger created).
        _run, text = playbook(deployment, 'adopt', check=True)
        guard.assert_untouched('adopt.yml --check')
        assert helpers.ledger_rows(conn) == []
        assert 'Would adopt 8 object(s) into the ledger of plan pt_adopt, run pt_adopt-adopted-' in text
        assert 'index pt_Job_createdAt_idx on public.Job: not as the plan defines it' in text
        assert 'index pt_Job_closedAt_idx on public.Job: absent: no run made it' in text
        assert 'not_null id on public.Job: it is a column of the primary key' in text

        run, text = playbook(deployment, 'adopt')
        assert 'changed=1' in run.stdout, text[-3000:]
        assert 'Adopted 8 object(s) into the ledger of plan pt_adopt' in text
        rows, run_ids = ledger_details(conn)
        assert rows == [(kind, name, 'applied', definition, prior) for kind, name, definition, prior in ADOPTED]
        (run_id,) = run_ids
        assert run_id.startswith('pt_adopt-adopted-'), run_id
        assert set(helpers.query(conn, 'SELECT plan, applied_at IS NOT NULL FROM pgzd_audit.ledger')) == {
            (PLAN_NAME, True)}
        # The schema changed in one place only: the 0.16 record comment, which the ledger holds now.
        changed_rows, gone, new = guard.changed_since()
        assert changed_rows == {} and guard.victim_alive()
        assert [line[:2] for line in gone] == [('relation', 'public.pt_Job_title_idx')]
        assert new == [('relation', 'public.pt_Job_title_idx', 'i %s valid=true' % NEW_TITLE)]

        # A rerun adopts nothing more.
        run, text = playbook(deployment, 'adopt')
        assert 'changed=0' in run.stdout and 'Nothing to adopt into the ledger of plan pt_adopt' in text
        assert text.count('already in the ledger of plan pt_adopt') == 8
        assert ledger_details(conn)[0] == rows

        # The rollback undoes exactly what was adopted, and leaves the application's objects alone.
        _run, text = playbook(deployment, 'rollback')
        assert index_state(conn, 'pt_Job_status_idx') is None
        assert index_state(conn, 'pt_Job_title_idx') == (OLD_TITLE, 'kept by ops')
        assert index_state(conn, 'pt_Job_createdAt_idx') == (APP_CREATED_AT, None)
        assert index_state(conn, 'JobAssignment_jobId_idx') is None
        assert constraint_names(conn) == set()
        assert not not_null(conn, 'Class', 'teacherId') and not_null(conn, 'Job', 'id')
        assert 'pt_Job_createdAt_idx" is not in the ledger of plan pt_adopt' in text
        assert class_names(conn) == deployment['before']['classes']
        assert [(kind, state) for kind, _name, state, _definition, _prior in ledger_details(conn)[0]] == [
            (kind, 'undone') for kind, _name, _definition, _prior in ADOPTED]
    finally:
        guard.close()
    assert helpers.schema_dump(deployment['cluster'], DATABASE) == deployment['before']['schema']
