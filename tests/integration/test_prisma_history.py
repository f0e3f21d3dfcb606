# -*- coding: utf-8 -*-
"""Prisma's history kept in step: postgresql_prisma_migration, and migrate.yml / rollback.yml with a plan imported
from a Prisma migration (scripts/plan_import.py --prisma), on real PostgreSQL.

The sample database has Prisma's _prisma_migrations with the schema's init migration, as `prisma migrate deploy`
leaves it. The ``history`` fixture puts that table back as it was after each test.
"""

import glob
import hashlib
import os

import pytest

import helpers

pytestmark = pytest.mark.integration

MODULE = 'postgresql_prisma_migration'
NAME = helpers.PRISMA_MIGRATION
SQL_PATH = helpers.PRISMA_MIGRATION_SQL_PATH
INIT = helpers.PRISMA_INIT_MIGRATION
PRISMA_LOCK = 72707369

with open(SQL_PATH, encoding='utf-8') as _handle:
    SCRIPT = _handle.read()
CHECKSUM = hashlib.sha256(SCRIPT.encode('utf-8')).hexdigest()


rows = helpers.prisma_history_rows


def table_exists(db):
    return helpers.query(db, "SELECT to_regclass('public._prisma_migrations') IS NOT NULL")[0][0]


@pytest.fixture
def history(db):
    """The sample _prisma_migrations (the init migration only), put back as it was afterwards."""
    assert table_exists(db)
    init = helpers.query(db, 'SELECT * FROM "_prisma_migrations"')
    assert [row[3] for row in init] == [INIT]
    yield db
    with db.cursor() as cursor:
        if not table_exists(db):
            with open(os.path.join(helpers.REPO_ROOT, 'fixtures', 't12', 'schema.sql')) as handle:
                schema = handle.read()
            cursor.execute(schema[schema.index('CREATE TABLE "_prisma_migrations"'):])
        cursor.execute('DELETE FROM "_prisma_migrations"')
        cursor.execute('INSERT INTO "_prisma_migrations" (id, checksum, finished_at, migration_name, logs, '
                       'rolled_back_at, started_at, applied_steps_count) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)',
                       init[0])
    assert helpers.query(db, 'SELECT * FROM "_prisma_migrations"') == init


def test_records_the_row_prisma_migrate_resolve_writes_then_changes_nothing(history, run_module):
    result = run_module(MODULE, migration_name=NAME, migration_sql=SCRIPT, run_id='t12-test')
    assert result['changed'] and result['action'] == 'recorded', result
    (row,) = rows(history)
    row_id, checksum, name, logs, started, finished, rolled_back, steps = row
    assert helpers.UUID_V4.match(row_id)
    assert checksum == CHECKSUM == result['checksum']
    assert name == NAME
    assert started == finished and rolled_back is None
    assert steps == 0
    assert logs.startswith('pg-zero-downtime:') and 't12-test' in logs
    assert any(q.startswith('INSERT INTO "public"."_prisma_migrations"') for q in result['queries'])

    again = run_module(MODULE, migration_name=NAME, migration_sql=SCRIPT)
    assert not again['changed'] and again['action'] == 'unchanged'
    # Prisma compares LF and CRLF line ends as the same script (git may convert them on checkout).
    crlf = run_module(MODULE, migration_name=NAME, migration_sql=SCRIPT.replace('\n', '\r\n'))
    assert not crlf['changed'] and crlf['action'] == 'unchanged'
    assert rows(history) == [row]


def test_check_mode_and_diff_change_nothing(history, run_module):
    result = run_module(MODULE, check=True, diff=True, migration_name=NAME, migration_sql=SCRIPT)
    assert result['changed'] and result['action'] == 'recorded'
    assert result['diff'] == dict(before=dict(migration_name=NAME, recorded=False),
                                  after=dict(migration_name=NAME, recorded=True))
    assert result['queries'][0].startswith('INSERT INTO')
    assert rows(history) == []


def test_a_changed_migration_sql_is_refused(history, run_module):
    run_module(MODULE, migration_name=NAME, migration_sql=SCRIPT)
    before = rows(history)
    result = run_module(MODULE, migration_name=NAME, migration_sql=SCRIPT + '\nCREATE INDEX "x" ON "Job"("id");\n')
    assert result['failed']
    assert 'already recorded as applied' in result['msg'] and 'the file changed after it was applied' in result['msg']
    assert CHECKSUM in result['msg']
    assert rows(history) == before


def test_a_failed_deploy_attempt_is_marked_rolled_back_as_resolve_does(history, run_module):
    with history.cursor() as cursor:
        cursor.execute('INSERT INTO "_prisma_migrations" (id, checksum, migration_name, logs, started_at) '
                       "VALUES ('failed-attempt', %s, %s, 'ERROR: cannot run inside a transaction block', now())",
                       (CHECKSUM, NAME))
    result = run_module(MODULE, migration_name=NAME, migration_sql=SCRIPT)
    assert result['action'] == 'recorded' and result['rolled_back'] == ['failed-attempt']
    failed, recorded = rows(history)
    assert failed[0] == 'failed-attempt' and failed[6] is not None
    assert recorded[5] is not None and recorded[6] is None


def test_absent_removes_only_the_row_this_tool_wrote(history, run_module):
    run_module(MODULE, migration_name=NAME, migration_sql=SCRIPT)
    result = run_module(MODULE, migration_name=NAME, state='absent')
    assert result['changed'] and result['action'] == 'removed' and len(result['removed']) == 1
    assert rows(history) == []
    assert run_module(MODULE, migration_name=NAME, state='absent')['action'] == 'absent'
    # A row Prisma wrote itself is left in place, and said so.
    result = run_module(MODULE, migration_name=INIT, state='absent')
    assert not result['changed'] and result['action'] == 'absent'
    assert [row['id'] for row in result['kept']] == ['5a0f6c3e-2b1d-4c8e-9f7a-1e2d3c4b5a60']
    assert 'recorded by Prisma itself' in result['_stderr'] + str(result.get('warnings'))
    assert len(rows(history, INIT)) == 1


def test_a_missing_table_is_refused_unless_told_to_create_it(history, run_module):
    with history.cursor() as cursor:
        cursor.execute('DROP TABLE "_prisma_migrations"')
    result = run_module(MODULE, migration_name=NAME, migration_sql=SCRIPT)
    assert result['failed'] and 'public._prisma_migrations does not exist' in result['msg']
    assert 'create_table' in result['msg']
    assert not table_exists(history)
    result = run_module(MODULE, migration_name=NAME, migration_sql=SCRIPT, create_table=True)
    assert result['action'] == 'recorded' and result['queries'][0].startswith('CREATE TABLE')
    columns = helpers.query(history, "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
                                     "WHERE table_name = '_prisma_migrations' ORDER BY ordinal_position")
    assert [c[0] for c in columns] == ['id', 'checksum', 'finished_at', 'migration_name', 'logs', 'rolled_back_at',
                                       'started_at', 'applied_steps_count']
    assert len(rows(history)) == 1


def test_a_running_prisma_migrate_is_named_and_nothing_changes(history, run_module, connect):
    holder = connect()
    try:
        with holder.cursor() as cursor:
            cursor.execute("SET application_name = 'prisma-migrate'")
            cursor.execute('SELECT pg_advisory_lock(%s)', (PRISMA_LOCK,))
            cursor.execute('SELECT pg_backend_pid()')
            pid = cursor.fetchone()[0]
        result = run_module(MODULE, migration_name=NAME, migration_sql=SCRIPT)
        assert result['failed']
        assert 'holds Prisma\'s migration lock' in result['msg'] and 'pid %d' % pid in result['msg']
        assert "'prisma-migrate'" in result['msg']
        assert rows(history) == []
    finally:
        holder.close()


@pytest.mark.parametrize('args, fragment', [
    (dict(migration_name='a/b', migration_sql=SCRIPT), 'not a folder name'),
    (dict(migration_name='x' * 201, migration_sql=SCRIPT), 'P3010'),
    (dict(migration_name=NAME, migration_sql='  \n'), 'migration_sql is empty'),
    (dict(migration_name=NAME), 'migration_sql'),
    (dict(migration_name=NAME, migration_sql=SCRIPT, lock_timeout='soon'), 'lock_timeout'),
])
def test_bad_input_is_refused_before_any_change(history, run_module, args, fragment):
    result = run_module(MODULE, **args)
    assert result['failed'] and fragment in result['msg']
    assert rows(history) == []


def output(run):
    """The play output with line wrapping undone."""
    return ' '.join(run.stdout.split())


def test_migrate_records_the_imported_prisma_migration_and_rollback_removes_it(history, pg_cluster, tmp_path):
    plan = helpers.import_prisma_plan(tmp_path)
    settings = dict(local_cluster_dir=pg_cluster['dir'], pg_port=pg_cluster['port'], pgzd_plan=plan,
                    pgzd_artifacts_dir=str(tmp_path / 'artifacts'), backup_enabled='false')

    # Partial run (one table): the plan is not complete, so Prisma's history is left alone.
    run = helpers.run_playbook('playbooks/migrate.yml', dict(settings, pgzd_only_tables='Job'))
    assert run.returncode == 0, run.stdout[-4000:]
    assert 'NOT recorded in Prisma' in output(run)
    assert rows(history) == []

    run = helpers.run_playbook('playbooks/migrate.yml', settings)
    assert run.returncode == 0, run.stdout[-4000:]
    (row,) = rows(history)
    assert row[1] == CHECKSUM and row[5] is not None
    assert len([name for name in helpers.all_indexes(history) if name.endswith('_idx')]) == 26
    report = max(glob.glob(os.path.join(str(tmp_path), 'artifacts', 'runs', '*', 'report.md')), key=os.path.getmtime)
    assert '`%s` recorded in `public._prisma_migrations`' % NAME in open(report).read()

    run = helpers.run_playbook('playbooks/migrate.yml', settings)
    assert run.returncode == 0 and 'is already recorded as applied' in output(run)
    assert rows(history) == [row]

    run = helpers.run_playbook('playbooks/rollback.yml', settings)
    assert run.returncode == 0, run.stdout[-4000:]
    assert rows(history) == []
    assert 'Removed the record of %s' % NAME in output(run)


def test_migrate_refuses_before_any_ddl_when_the_table_is_missing(history, pg_cluster, tmp_path):
    plan = helpers.import_prisma_plan(tmp_path)
    with history.cursor() as cursor:
        cursor.execute('DROP TABLE "_prisma_migrations"')
    before = helpers.all_indexes(history)
    settings = dict(local_cluster_dir=pg_cluster['dir'], pg_port=pg_cluster['port'], pgzd_plan=plan,
                    pgzd_artifacts_dir=str(tmp_path / 'artifacts'), backup_enabled='false')
    run = helpers.run_playbook('playbooks/migrate.yml', settings)
    assert run.returncode != 0
    assert '_prisma_migrations does not exist' in output(run)
    assert helpers.all_indexes(history) == before  # refused in the preflight: no index was built
    assert not table_exists(history)
