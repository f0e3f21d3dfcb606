# -*- coding: utf-8 -*-
"""The deploy of a real Prisma history (tests/fixtures/prisma_history: 14 migrations Prisma 6.19.3 wrote for the T12
models) onto the seeded T12 database at its first migration, by postgresql_prisma_deploy, on real PostgreSQL.

What the database holds afterwards is read from the catalogs: every index valid, the foreign key validated, the NOT
NULL in place, the enum value, the renamed index, the widened column, the dropped column; and _prisma_migrations holds
one finished row per migration, as `prisma migrate deploy` writes them. A rerun changes nothing. A refused statement
stops the deploy before any change, and its acknowledgement lets it through. A stop in the middle of a migration
leaves its row unfinished, and the next run resumes it.
"""

import json
import os
import re
import shutil
import signal
import subprocess

import pytest

import helpers

pytestmark = pytest.mark.integration

DATABASE = 'pt_prisma_deploy'
HISTORY_DIR = os.path.join(helpers.TESTS_DIR, 'fixtures', 'prisma_history', 'migrations')
INIT = '20240101000000_init'
# The checksum of the init migration of the fixture history (its migration.sql as Prisma wrote it): the seeded
# database's row has a stand-in (fixtures/t12/schema.sql), which the history's folder would report as changed.
INIT_CHECKSUM = 'cce982d78ff3f419d435b70436de4b68bafd3c7e5d499cdf819d1ea854f41a11'
DROP_NOTE = '20260114000000_drop_money_tx_note'
ALLOW_DROP_NOTE = DROP_NOTE + ':2:drop_column'
MIGRATIONS = sorted(name for name in os.listdir(HISTORY_DIR) if os.path.isdir(os.path.join(HISTORY_DIR, name)))


@pytest.fixture
def database(t12_copy):
    """A copy of the seeded T12 database whose _prisma_migrations holds the history's first migration."""
    with helpers.database_copy(t12_copy, DATABASE) as copy:
        helpers.query(copy['conn'], 'UPDATE "_prisma_migrations" SET checksum = %s WHERE migration_name = %s',
                      (INIT_CHECKSUM, INIT))
        yield copy


def deploy(database, check=False, allow=(ALLOW_DROP_NOTE,), **args):
    args.setdefault('migrations_dir', HISTORY_DIR)
    return helpers.run_ansible_module('pg_zero_downtime.migrations.postgresql_prisma_deploy', dict(
        database['login'], allow=list(allow), run_id='deploy-test', **args), check=check, timeout=300)


def rows_of(conn, sql, params=None):
    """The rows of a query as dicts."""
    with conn.cursor() as cursor:
        cursor.execute(sql, params)
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]


def clean_schema(t12_copy, folder, allow=()):
    """pg_dump --schema-only of another copy of the seeded database after a deploy of C(folder) nothing stopped."""
    clean = t12_copy('pt_prisma_deploy_clean')
    try:
        conn = helpers.connect(clean)
        helpers.query(conn, 'UPDATE "_prisma_migrations" SET checksum = %s WHERE migration_name = %s',
                      (INIT_CHECKSUM, INIT))
        conn.close()
        result = deploy(dict(login=helpers.login_of(clean, clean['dbname'])), migrations_dir=folder, allow=allow)
        assert not result.get('failed'), result.get('msg')
        return helpers.schema_dump(clean, clean['dbname'])
    finally:
        t12_copy.drop('pt_prisma_deploy_clean')


def prisma_rows(conn):
    return rows_of(conn, 'SELECT migration_name, finished_at IS NOT NULL AS finished, applied_steps_count, '
                               'checksum, logs FROM "_prisma_migrations" WHERE rolled_back_at IS NULL '
                               'ORDER BY migration_name')


def index_state(conn, name):
    rows = rows_of(conn, 'SELECT i.indisvalid AS valid, pg_catalog.pg_get_indexdef(i.indexrelid) AS definition '
                               'FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid '
                               'WHERE c.relname = %s', (name,))
    return rows[0] if rows else None


def column(conn, table, name):
    rows = rows_of(conn, 'SELECT a.attnotnull AS not_null, pg_catalog.format_type(a.atttypid, a.atttypmod) AS '
                               'type FROM pg_catalog.pg_attribute a WHERE a.attrelid = pg_catalog.to_regclass(%s) '
                               'AND a.attname = %s AND NOT a.attisdropped', ('public."%s"' % table, name))
    return rows[0] if rows else None


@pytest.mark.majors()
def test_the_history_deploys_online_and_is_recorded_as_prisma_records_it(database):
    conn = database['conn']
    result = deploy(database)
    assert not result.get('failed'), result.get('msg')
    assert result['changed'] and result['pending'] == MIGRATIONS[1:] and result['applied'] == [INIT]
    assert [m['action'] for m in result['migrations']] == ['applied'] * 14, result['review']
    rows = prisma_rows(conn)
    assert [r['migration_name'] for r in rows] == MIGRATIONS
    assert all(r['finished'] and r['applied_steps_count'] == 1 for r in rows[1:]), rows
    assert all(r['logs'].startswith('pg-zero-downtime') for r in rows[1:]), rows
    # Online: built CONCURRENTLY (the statements say so), valid; the dropped index gone, the renamed one renamed.
    queries = '\n'.join(result['queries'])
    assert 'CREATE INDEX CONCURRENTLY IF NOT EXISTS "Job_priority_idx"' in queries, queries
    assert 'DROP INDEX CONCURRENTLY IF EXISTS "public"."Job_createdAt_idx"' in queries, queries
    for name in ('Job_teacher_status_idx', 'Job_priority_idx', 'Item_name_key', 'Job_createdAt_status_idx',
                 'JobAssignment_studentId_status_idx', 'JobComment_jobId_createdAt_idx'):
        assert index_state(conn, name) and index_state(conn, name)['valid'], name
    assert index_state(conn, 'Job_createdAt_idx') is None and index_state(conn, 'Job_teacherId_status_idx') is None
    fks = rows_of(conn, "SELECT conname, convalidated FROM pg_catalog.pg_constraint WHERE contype = 'f' AND "
                              "conname IN ('Job_classId_fkey', 'JobComment_jobId_fkey') ORDER BY conname")
    assert [(r['conname'], r['convalidated']) for r in fks] == [('JobComment_jobId_fkey', True),
                                                               ('Job_classId_fkey', True)]
    assert column(conn, 'Class', 'room') == dict(not_null=True, type='text')
    assert column(conn, 'Event', 'location') == dict(not_null=False, type='character varying(200)')
    assert column(conn, 'SystemLog', 'message')['not_null'] is False
    assert column(conn, 'MoneyTx', 'note') is None
    assert rows_of(conn, "SELECT 'ARCHIVED' = ANY(enum_range(NULL::\"JobStatus\")::text[]) AS has")[0]['has']
    # No helper check of the NOT NULL is left behind.
    assert not helpers.query(conn, "SELECT 1 FROM pg_catalog.pg_constraint WHERE contype = 'c' AND "
                                    "conname LIKE '%%not_null%%'")
    # Rows are untouched: the T12 data keeps its counts.
    assert rows_of(conn, 'SELECT count(*) AS n FROM "Job"')[0]['n'] > 0

    again = deploy(database)
    assert not again.get('failed'), again.get('msg')
    assert not again['changed'] and again['pending'] == [] and again['migrations'] == [], again
    assert prisma_rows(conn) == rows


def test_a_refused_statement_stops_the_deploy_before_any_change(database):
    conn = database['conn']
    before = prisma_rows(conn)
    result = deploy(database, allow=())
    assert result.get('failed')
    assert 'migration %s, line 2: ALTER TABLE "MoneyTx" DROP COLUMN "note"' % DROP_NOTE in result['msg'], result['msg']
    assert 'ACCESS EXCLUSIVE' in result['msg'] and 'Safe way' in result['msg']
    assert '"%s"' % ALLOW_DROP_NOTE in result['msg'], result['msg']
    assert prisma_rows(conn) == before and result['migrations'] == []
    assert index_state(conn, 'Job_priority_idx') is None and column(conn, 'Job', 'priority') is None

    stale = deploy(database, allow=(DROP_NOTE + ':3:drop_column',))
    assert stale.get('failed') and 'matches no refused statement' in stale['msg'], stale['msg']
    assert prisma_rows(conn) == before


def test_check_mode_reviews_every_statement_and_changes_nothing(database):
    conn = database['conn']
    before = prisma_rows(conn)
    result = deploy(database, check=True)
    assert not result.get('failed'), result.get('msg')
    assert [m['action'] for m in result['migrations']] == ['planned'] * 14
    assert prisma_rows(conn) == before and column(conn, 'Job', 'priority') is None
    review = '\n'.join(result['review'])
    assert 'line 2 [catalog] add_column: to run; ACCESS EXCLUSIVE on Job, under lock_timeout 2s (5 retries); its lock ' \
           'held for an instant once granted' in review, review
    # Every build on a table that exists now has its estimate from the table's size.
    assert re.search(r'line 2 \[online\] create_index: to run; SHARE UPDATE EXCLUSIVE on Job while it runs \(reads and '
                     r'writes go on\); about (under a second|\d+ s) \(table \d+ MiB, at the bench\'s build rate\)',
                     review), review
    assert 'its time not estimated (the table is created or changed earlier in the deploy)' in review
    assert '[refused ACKNOWLEDGED] drop_column' in review, review
    planned = result['planned_sql']
    assert planned.index('-- Migration 20260101000000_job_indexes') < planned.index('-- Migration %s' % DROP_NOTE)
    assert 'CREATE INDEX CONCURRENTLY IF NOT EXISTS "Job_teacherId_status_idx"' in planned, planned
    # What an earlier migration of the deploy adds is not there yet: the index on the column migration 02 adds, the
    # drop of the index migration 01 creates, are proven by their kind when they run.
    for name in ('"Job_priority_idx"', '"Job_createdAt_idx"'):
        assert '-- proven by its kind when it runs (an earlier statement of this deploy creates or changes what it ' \
               'needs): %s' % ('CREATE INDEX ' if 'priority' in name else 'DROP INDEX ') + name in planned, planned



def test_a_deploy_stopped_mid_migration_is_resumed_where_it_stopped(database, t12_copy):
    conn = database['conn']
    blocker = helpers.connect(database['cluster'])
    try:
        # An application transaction holds "Event": migration 07 adds Class.room (line 2), then gives up on
        # Event.location (line 5) after its retries.
        helpers.query(blocker, 'BEGIN')
        helpers.query(blocker, 'LOCK TABLE "Event" IN ROW EXCLUSIVE MODE')
        stopped = deploy(database, lock_timeout='100ms', lock_retries=1, lock_retry_delay=0.1)
    finally:
        blocker.close()
    assert stopped.get('failed')
    assert 'migration 20260107000000_event_location_class_room, line 5 (add_column)' in stopped['msg'], stopped['msg']
    assert [m['action'] for m in stopped['migrations']][-2:] == ['applied', 'failed']
    rows = dict((r['migration_name'], r) for r in prisma_rows(conn))
    assert not rows['20260107000000_event_location_class_room']['finished']
    assert '20260108000000_item_price_default_job_xp_reward_no_default' not in rows
    assert column(conn, 'Class', 'room') is not None and column(conn, 'Event', 'location') is None

    resumed = deploy(database)
    assert not resumed.get('failed'), resumed.get('msg')
    first = resumed['migrations'][0]
    assert first['name'] == '20260107000000_event_location_class_room' and first['action'] == 'resumed'
    assert [s['action'] for s in first['statements']] == ['unchanged', 'done'], first
    rows = prisma_rows(conn)
    assert len(rows) == 15 and all(r['finished'] for r in rows)
    # One row per migration: the resumed one kept its row.
    assert len(set(r['migration_name'] for r in rows)) == 15
    assert column(conn, 'Event', 'location') == dict(not_null=False, type='character varying(200)')


def test_a_ledger_of_0_18_takes_the_statement_rows_of_a_deploy(database):
    conn = database['conn']
    # The ledger as 0.18.0 created it: its kind check knows no 'statement'.
    helpers.query(conn, 'CREATE SCHEMA pgzd_audit')
    helpers.query(conn, "CREATE TABLE pgzd_audit.ledger (id bigserial PRIMARY KEY, plan text NOT NULL, run_id text NOT "
                        "NULL, kind text NOT NULL CHECK (kind IN ('index', 'constraint', 'not_null', 'replaced_index', "
                        "'renamed_rows')), schema_name text NOT NULL, table_name text NOT NULL, object_name text NOT "
                        "NULL, definition text NOT NULL, prior jsonb, state text NOT NULL DEFAULT 'intended' CHECK "
                        "(state IN ('intended', 'applied', 'undone', 'gone')), recorded_at timestamptz NOT NULL "
                        "DEFAULT now(), applied_at timestamptz, undone_at timestamptz, undone_by text)")
    result = deploy(database)
    assert not result.get('failed'), result.get('msg')
    statements = rows_of(conn, "SELECT object_name, state, table_name FROM pgzd_audit.ledger WHERE kind = 'statement' "
                               "AND object_name LIKE '20260107%%' ORDER BY id")
    row_id = [r for r in rows_of(conn, 'SELECT id, migration_name FROM "_prisma_migrations"')
              if r['migration_name'] == '20260107000000_event_location_class_room'][0]['id']
    # Each statement's row names its migration, its line and the migration's row in _prisma_migrations.
    assert statements == [
        dict(object_name='20260107000000_event_location_class_room:2@%s' % row_id, state='applied', table_name='Class'),
        dict(object_name='20260107000000_event_location_class_room:5@%s' % row_id, state='applied', table_name='Event')]


def test_migrate_yml_deploys_the_folder_with_its_preflight_check_mode_and_rerun(database, tmp_path):
    conn, cluster = database['conn'], database['cluster']
    settings = dict(local_cluster_dir=cluster['dir'], pg_port=cluster['port'], pg_database=DATABASE,
                    pgzd_prisma_migrations_dir=HISTORY_DIR, pgzd_artifacts_dir=str(tmp_path / 'artifacts'),
                    backup_enabled='false', pgzd_run_id='refused')
    before = prisma_rows(conn)

    refused = helpers.run_playbook('playbooks/migrate.yml', settings)
    text = ' '.join(refused.stdout.split())
    assert refused.returncode != 0 and 'Prove the plan applicable' in text, refused.stdout[-3000:]
    assert 'migration %s, line 2: ALTER TABLE "MoneyTx" DROP COLUMN "note"' % DROP_NOTE in text, text[-3000:]
    assert prisma_rows(conn) == before and column(conn, 'Job', 'priority') is None
    assert os.path.exists(str(tmp_path / 'artifacts' / 'runs' / 'prisma-refused' / 'report.json'))

    settings['pgzd_prisma_allow'] = '["%s"]' % ALLOW_DROP_NOTE
    checked = helpers.run_playbook('playbooks/migrate.yml', dict(settings, pgzd_run_id='check'), options=['--check'])
    assert checked.returncode == 0, checked.stdout[-4000:]
    assert prisma_rows(conn) == before and column(conn, 'Job', 'priority') is None
    with open(str(tmp_path / 'artifacts' / 'runs' / 'prisma-check' / 'planned-prisma.sql')) as handle:
        planned = handle.read()
    assert '-- Migration %s' % DROP_NOTE in planned and 'ALTER TABLE "MoneyTx" DROP COLUMN "note";' in planned
    assert 'ACKNOWLEDGED, run as written: migration %s, line 2 (drop_column)' % DROP_NOTE in checked.stdout
    # A schema backup saves none of the rows the deploy's statements may change: the backup says so (issue 25).
    schema = helpers.run_playbook('playbooks/migrate.yml', dict(settings, pgzd_run_id='check-schema', backup_enabled='true',
                                                                backup_mode='schema'), options=['--check'])
    assert schema.returncode == 0, schema.stdout[-4000:]
    assert ('A schema backup does not save the rows that the statements of the pending Prisma migrations %s'
            % ', '.join(sorted(name for name in os.listdir(HISTORY_DIR)
                               if os.path.isdir(os.path.join(HISTORY_DIR, name)))[1:3])) \
        in ' '.join(schema.stdout.split()), schema.stdout[-4000:]

    run = helpers.run_playbook('playbooks/migrate.yml', dict(settings, pgzd_run_id='deploy'))
    assert run.returncode == 0, run.stdout[-4000:]
    assert 'Prisma migrations: 14 deployed online' in run.stdout, run.stdout[-4000:]
    rows = prisma_rows(conn)
    assert len(rows) == 15 and all(r['finished'] for r in rows)

    again = helpers.run_playbook('playbooks/migrate.yml', dict(settings, pgzd_run_id='again'))
    assert again.returncode == 0, again.stdout[-4000:]
    assert '15 migration(s) applied, 0 pending.' in again.stdout, again.stdout[-3000:]
    assert 'Deploy the pending Prisma migrations online' not in again.stdout
    assert prisma_rows(conn) == rows


def start_migrate(settings, tmp_path, label):
    """migrate.yml in the background, in a process group of its own (killed whole with SIGKILL)."""
    argv = [helpers._tool('ansible-playbook'), 'playbooks/migrate.yml']
    for name, value in settings.items():
        argv += ['-e', '%s=%s' % (name, value)]
    out = open(str(tmp_path / ('%s.out' % label)), 'w')
    return subprocess.Popen(argv, cwd=helpers.REPO_ROOT, env=helpers.ansible_env(), stdout=out,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)


def kill_when(run, conn, condition, what):
    """SIGKILL the run's whole process group once C(condition)(conn) holds."""
    try:
        helpers.wait_until(lambda: run.poll() is not None or condition(conn), timeout=240, what=what)
        assert run.poll() is None, 'the run ended before %s' % what
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
        run.wait(timeout=60)


def sessions_ended(conn):
    """Wait until the server has ended the killed run's sessions (the rerun's migration lock waits for no dead run):
    it notices the dead client within client_connection_check_interval."""
    helpers.wait_until(lambda: not rows_of(conn, "SELECT pid FROM pg_catalog.pg_stat_activity WHERE "
                                                 "application_name = 'pg-zero-downtime'"),
                       timeout=60, what='the killed run\'s sessions to end')


def waiting_statement(prefix):
    return lambda conn: bool(rows_of(conn, "SELECT pid FROM pg_catalog.pg_stat_activity WHERE query LIKE %s AND "
                                           "wait_event_type IS NOT NULL AND application_name = 'pg-zero-downtime'",
                                     (prefix + '%',)))


def test_kill_9_at_three_points_of_the_history_converges_on_rerun(database, t12_copy, tmp_path):
    conn, cluster = database['conn'], database['cluster']
    settings = dict(local_cluster_dir=cluster['dir'], pg_port=cluster['port'], pg_database=DATABASE,
                    pgzd_prisma_migrations_dir=HISTORY_DIR, pgzd_prisma_allow='["%s"]' % ALLOW_DROP_NOTE,
                    pgzd_artifacts_dir=str(tmp_path / 'artifacts'), backup_enabled='false',
                    prisma_deploy_lock_retries=60)
    blocker = helpers.connect(cluster)
    try:
        # 1. In the first concurrent build, which waits for an older transaction (its INVALID index is left).
        helpers.query(blocker, 'BEGIN ISOLATION LEVEL REPEATABLE READ')
        helpers.query(blocker, 'SELECT count(*) FROM "Item"')
        run = start_migrate(dict(settings, pgzd_run_id='kill-1'), tmp_path, 'kill-1')
        kill_when(run, conn, waiting_statement('CREATE INDEX CONCURRENTLY'), 'the first build to wait')
        helpers.query(blocker, 'ROLLBACK')
        sessions_ended(conn)
        assert [r['finished'] for r in prisma_rows(conn)] == [True, False]

        # 2. In migration 07's ADD COLUMN on Class, retried under lock_timeout while the application holds Class.
        helpers.query(blocker, 'BEGIN')
        helpers.query(blocker, 'LOCK TABLE "Class" IN ACCESS SHARE MODE')
        run = start_migrate(dict(settings, pgzd_run_id='kill-2'), tmp_path, 'kill-2')
        kill_when(run, conn, lambda c: any(r['migration_name'].startswith('20260107') for r in prisma_rows(c)),
                  'migration 07 to start')
        helpers.query(blocker, 'ROLLBACK')
        sessions_ended(conn)
        rows = prisma_rows(conn)
        assert rows[-1]['migration_name'].startswith('20260107') and not rows[-1]['finished'], rows
        assert all(r['finished'] for r in rows[:-1])

        # 3. Wherever the run is once migration 10 is finished.
        run = start_migrate(dict(settings, pgzd_run_id='kill-3'), tmp_path, 'kill-3')
        kill_when(run, conn, lambda c: sum(r['finished'] for r in prisma_rows(c)) >= 11, 'migration 10 to finish')
        sessions_ended(conn)
    finally:
        blocker.close()

    rerun = helpers.run_playbook('playbooks/migrate.yml', dict(settings, pgzd_run_id='rerun'))
    assert rerun.returncode == 0, rerun.stdout[-4000:]
    rows = prisma_rows(conn)
    assert len(rows) == 15 and all(r['finished'] and r['applied_steps_count'] == 1 for r in rows), rows
    assert not rows_of(conn, 'SELECT indexrelid FROM pg_catalog.pg_index WHERE NOT indisvalid')

    # The same schema as a deploy that nothing stopped.
    assert helpers.schema_dump(cluster, DATABASE) == clean_schema(t12_copy, HISTORY_DIR, allow=(ALLOW_DROP_NOTE,))


def folder_until(tmp_path, last, label):
    """A copy of the history's folder with its migrations up to C(last) (a migration name), as an application's
    repository held it then."""
    folder = tmp_path / label
    folder.mkdir()
    shutil.copy(os.path.join(HISTORY_DIR, 'migration_lock.toml'), str(folder))
    for name in MIGRATIONS:
        if name <= last:
            shutil.copytree(os.path.join(HISTORY_DIR, name), str(folder / name))
    return str(folder)


def add_migration(folder, name, sql):
    """A migration of the application's own, C(name)/migration.sql holding C(sql), added to C(folder)."""
    os.makedirs(os.path.join(folder, name))
    with open(os.path.join(folder, name, 'migration.sql'), 'w') as handle:
        handle.write(sql)


@pytest.mark.majors()
def test_rollback_to_an_earlier_migration_gives_its_schema_exactly(database, t12_copy, tmp_path, pg_major):
    conn, cluster = database['conn'], database['cluster']
    until_09 = folder_until(tmp_path, '20260109000000_system_log_message_optional', 'until-09')
    result = deploy(database, migrations_dir=until_09, allow=())
    assert not result.get('failed') and len(result['migrations']) == 9, result.get('msg')
    # A DROP INDEX says when the index was last used, read before it went (before 16, that last_idx_scan is not
    # available; from 16, its time, or a note that it was never scanned).
    (dropped,) = [s for m in result['migrations'] for s in m['statements'] if s['kind'] == 'drop_index']
    used = dropped['last_used']
    assert used['idx_scan'] >= 0 and used['last_idx_scan_available'] is (pg_major >= 16), used
    if pg_major < 16:
        assert 'not available on PostgreSQL %d' % pg_major in used['note'], used
    else:
        assert bool(used['last_idx_scan']) != bool(used['note']), used

    checked = deploy(database, check=True, migrations_dir=until_09, allow=(), state='absent',
                     rollback_to='20260101000000_job_indexes')
    assert not checked.get('failed'), checked.get('msg')
    assert [m['name'] for m in checked['migrations']] == sorted(MIGRATIONS[2:10], reverse=True)
    assert len(prisma_rows(conn)) == 10

    rolled = deploy(database, migrations_dir=until_09, allow=(), state='absent',
                    rollback_to='20260101000000_job_indexes')
    assert not rolled.get('failed'), rolled.get('msg')
    assert [m['action'] for m in rolled['migrations']] == ['rolled back'] * 8, rolled['review']
    # The indexes the migrations created, dropped by the rollback, each with when it was last used.
    undone = [s for m in rolled['migrations'] for s in m['statements']
              if s['kind'] == 'create_index' and s['action'] == 'done']
    assert undone and all(s['last_used']['idx_scan'] >= 0 and (s['last_used']['note'] or
                                                               s['last_used']['last_idx_scan']) for s in undone), undone
    assert [r['migration_name'] for r in prisma_rows(conn)] == MIGRATIONS[:2]

    assert helpers.schema_dump(cluster, DATABASE) == clean_schema(
        t12_copy, folder_until(tmp_path, MIGRATIONS[1], 'until-01'))

    # Deployed again after the rollback: the same migrations go through.
    again = deploy(database, migrations_dir=until_09, allow=())
    assert not again.get('failed') and len(again['migrations']) == 8, again.get('msg')


def test_a_rollback_that_would_lose_data_is_refused_before_any_change(database):
    conn = database['conn']
    assert not deploy(database).get('failed')
    before, dump = prisma_rows(conn), helpers.schema_dump(database['cluster'], DATABASE)
    refused = deploy(database, state='absent', rollback_to='20260109000000_system_log_message_optional')
    assert refused.get('failed')
    message = refused['msg']
    assert '%s, line 2 (drop_column): cannot be undone' % DROP_NOTE in message, message
    assert '20260112000000_widen_event_location, line 2 (alter_column_type): cannot be undone' in message, message
    assert '20260110000000_job_status_archived, line 2 (add_enum_value): cannot be undone' in message, message
    assert prisma_rows(conn) == before and helpers.schema_dump(database['cluster'], DATABASE) == dump


def test_rollback_yml_undoes_the_folder_after_the_migration_to_keep(database, tmp_path):
    conn, cluster = database['conn'], database['cluster']
    folder = folder_until(tmp_path, '20260108000000_item_price_default_job_xp_reward_no_default', 'until-08')
    settings = dict(local_cluster_dir=cluster['dir'], pg_port=cluster['port'], pg_database=DATABASE,
                    pgzd_prisma_migrations_dir=folder, pgzd_artifacts_dir=str(tmp_path / 'artifacts'),
                    backup_enabled='false')
    run = helpers.run_playbook('playbooks/migrate.yml', settings)
    assert run.returncode == 0, run.stdout[-4000:]
    deployed = helpers.schema_dump(cluster, DATABASE)
    keep = '20260105000000_replace_job_created_at_index'
    back = helpers.run_playbook('playbooks/rollback.yml', dict(settings, pgzd_prisma_rollback_to=keep))
    assert back.returncode == 0, back.stdout[-4000:]
    assert 'To roll back, last first: 20260108000000_item_price_default_job_xp_reward_no_default, ' \
           '20260107000000_event_location_class_room, 20260106000000_job_comments.' in back.stdout, back.stdout[-3000:]
    assert [r['migration_name'] for r in prisma_rows(conn)] == MIGRATIONS[:6]
    assert column(conn, 'Class', 'room') is None and not rows_of(conn, "SELECT 1 FROM pg_catalog.pg_type WHERE "
                                                                       "typname = 'CommentVisibility'")
    again = helpers.run_playbook('playbooks/rollback.yml', dict(settings, pgzd_prisma_rollback_to=keep))
    assert again.returncode == 0 and 'To roll back, last first: nothing' in again.stdout, again.stdout[-3000:]
    # And forward again: the same schema as the first deploy.
    run = helpers.run_playbook('playbooks/migrate.yml', settings)
    assert run.returncode == 0, run.stdout[-4000:]
    assert helpers.schema_dump(cluster, DATABASE) == deployed


def test_a_plan_file_may_name_the_folder_and_time_baseline_queries_around_it(database, tmp_path):
    conn, cluster = database['conn'], database['cluster']
    folder = folder_until(tmp_path, '20260103000000_item_name_unique', 'until-03')
    plan = tmp_path / 'release.yml'
    plan.write_text('name: release\nprisma_migrations_dir: until-03\nbaseline_queries:\n  - name: item_by_name\n'
                    '    sql: SELECT id FROM "Item" WHERE name = %(name)s\n    params: {name: Sword}\n')
    settings = dict(local_cluster_dir=cluster['dir'], pg_port=cluster['port'], pg_database=DATABASE,
                    pgzd_plan=str(plan), pgzd_artifacts_dir=str(tmp_path / 'artifacts'), backup_enabled='false',
                    pgzd_run_id='release')
    run = helpers.run_playbook('playbooks/migrate.yml', settings)
    assert run.returncode == 0, run.stdout[-4000:]
    assert 'Prisma migrations folder %s:' % folder in run.stdout and 'Prisma migrations: 3 deployed' in run.stdout
    assert [r['migration_name'] for r in prisma_rows(conn)] == MIGRATIONS[:4]
    with open(str(tmp_path / 'artifacts' / 'runs' / 'release-release' / 'report.json')) as handle:
        report = json.load(handle)
    assert [q['name'] for q in report['baseline_before']] == ['item_by_name'], report['baseline_before']
    deployed = report['prisma_deploy']
    assert deployed['state'] == 'present' and [m['name'] for m in deployed['migrations']] == MIGRATIONS[1:4]
    assert deployed['migrations'][1]['statements'][0] == dict(
        line=2, kind='add_column', action='done', lock='ACCESS EXCLUSIVE', lock_on=['Job'], acknowledged=False,
        seconds=deployed['migrations'][1]['statements'][0]['seconds'], retries=0, **{'class': 'catalog'})
    with open(str(tmp_path / 'artifacts' / 'runs' / 'release-release' / 'report.md')) as handle:
        markdown = handle.read()
    assert '## Prisma migrations deployed' in markdown and '- `20260102000000_job_priority`: applied in' in markdown
    assert '  - line 5 [online] create_index: done, SHARE UPDATE EXCLUSIVE on Job' in markdown, markdown


def test_a_name_the_database_already_has_stops_the_deploy_before_any_change(database):
    conn = database['conn']
    # Made by hand, not by the history's migration 06 (which creates JobComment).
    helpers.query(conn, 'CREATE TABLE "JobComment" ("id" text)')
    before = prisma_rows(conn)
    result = deploy(database)
    assert result.get('failed')
    assert 'migration 20260106000000_job_comments, line 5: public.JobComment already exists as a relation' \
        in result['msg'], result['msg']
    assert prisma_rows(conn) == before and index_state(conn, 'Job_teacherId_status_idx') is None


def test_a_rollback_refuses_what_the_ledger_does_not_attribute_to_the_deploy(database, tmp_path):
    conn = database['conn']
    until_03 = folder_until(tmp_path, '20260103000000_item_name_unique', 'until-03')
    assert not deploy(database, migrations_dir=until_03, allow=()).get('failed')
    # The index migration 03 built, dropped and made again by someone else: the ledger's definition no longer holds.
    helpers.query(conn, 'DROP INDEX "Item_name_key"')
    helpers.query(conn, 'CREATE UNIQUE INDEX "Item_name_key" ON "Item" ("name", "id")')
    before = prisma_rows(conn)
    refused = deploy(database, migrations_dir=until_03, allow=(), state='absent',
                     rollback_to='20260102000000_job_priority')
    assert refused.get('failed') and '20260103000000_item_name_unique, line 2 (create_index): cannot be undone' \
        in refused['msg'], refused['msg']
    assert prisma_rows(conn) == before and index_state(conn, 'Item_name_key') is not None


def test_a_primary_key_on_an_existing_table_is_a_concurrent_unique_index_then_attached(database, tmp_path):
    conn = database['conn']
    # A table the application made without a key (a join table, say), holding rows; "code" may hold NULL.
    helpers.query(conn, 'CREATE TABLE "Tag" ("id" TEXT NOT NULL, "code" TEXT, "label" TEXT)')
    helpers.query(conn, 'INSERT INTO "Tag" SELECT \'t\' || n, \'c\' || n, \'l\' || n FROM generate_series(1, 500) n')
    folder = folder_until(tmp_path, INIT, 'pk')
    add_migration(folder, '20260201000000_tag_id',
                  '-- AlterTable\nALTER TABLE "Tag" ADD CONSTRAINT "Tag_pkey" PRIMARY KEY ("id");\n')
    result = deploy(database, migrations_dir=folder, allow=())
    assert not result.get('failed'), result.get('msg')
    queries = '\n'.join(result['queries'])
    assert 'CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS "Tag_pkey" ON "public"."Tag"' in queries, queries
    assert 'ADD CONSTRAINT "Tag_pkey" PRIMARY KEY USING INDEX "Tag_pkey"' in queries, queries
    assert rows_of(conn, "SELECT contype, convalidated FROM pg_catalog.pg_constraint WHERE conname = 'Tag_pkey'") == \
        [dict(contype='p', convalidated=True)]
    assert index_state(conn, 'Tag_pkey')['valid']

    # On a column that may hold NULL, ADD PRIMARY KEY would scan under ACCESS EXCLUSIVE: refused, nothing changed.
    add_migration(folder, '20260202000000_tag_code',
                  '-- AlterTable\nALTER TABLE "Tag" ADD CONSTRAINT "Tag_code_pkey" PRIMARY KEY ("code");\n')
    before = prisma_rows(conn)
    refused = deploy(database, migrations_dir=folder, allow=())
    assert refused.get('failed') and 'is on column(s) code, which may hold NULL' in refused['msg'], refused['msg']
    assert index_state(conn, 'Tag_code_pkey') is None and prisma_rows(conn) == before


@pytest.mark.majors(18)
def test_a_primary_key_over_a_not_valid_not_null_is_refused_before_any_change(database, tmp_path):
    """On 18 a NOT NULL added NOT VALID already sets attnotnull, but PRIMARY KEY USING INDEX refuses the column: the
    deploy must not build the index and then stop at the attach, every run."""
    conn = database['conn']
    helpers.query(conn, 'CREATE TABLE "Badge" ("code" TEXT, "label" TEXT)')
    helpers.query(conn, 'INSERT INTO "Badge" SELECT \'c\' || n, \'l\' || n FROM generate_series(1, 100) n')
    helpers.query(conn, 'ALTER TABLE "Badge" ADD CONSTRAINT "Badge_code_not_null" NOT NULL "code" NOT VALID')
    folder = folder_until(tmp_path, INIT, 'pk-not-valid')
    add_migration(folder, '20260201000000_badge_code',
                  '-- AlterTable\nALTER TABLE "Badge" ADD CONSTRAINT "Badge_pkey" PRIMARY KEY ("code");\n')
    before = prisma_rows(conn)
    refused = deploy(database, migrations_dir=folder, allow=())
    assert refused.get('failed') and refused['queries'] == [], refused
    for fragment in ('is on column(s) code, which may hold NULL', 'a NOT NULL left NOT VALID needs its VALIDATE'):
        assert fragment in ' '.join(refused['msg'].split()), refused['msg']
    assert index_state(conn, 'Badge_pkey') is None and prisma_rows(conn) == before
    helpers.query(conn, 'DROP TABLE "Badge"')


@pytest.mark.majors(17, 18)
def test_a_required_column_takes_the_servers_not_null_path_in_the_review_and_the_deploy(database, tmp_path, pg_major):
    """SET NOT NULL of a Prisma migration goes through the not_null kind: on 18 a NOT NULL constraint added NOT VALID
    and validated (named as PostgreSQL would name it), before 18 the helper check's steps; check mode's planned SQL
    shows the statements of the server's path, and the deploy sends them."""
    conn = database['conn']
    folder = folder_until(tmp_path, INIT, 'required')
    add_migration(folder, '20260201000000_class_teacher_required',
                  '-- AlterTable\nALTER TABLE "Class" ALTER COLUMN "teacherId" SET NOT NULL;\n')
    table = 'ALTER TABLE "public"."Class" '
    steps = [table + 'ADD CONSTRAINT "Class_teacherId_not_null" NOT NULL "teacherId" NOT VALID',
             table + 'VALIDATE CONSTRAINT "Class_teacherId_not_null"'] if pg_major >= 18 else [
        table + 'ADD CONSTRAINT "Class_teacherId_not_null" CHECK ("teacherId" IS NOT NULL) NOT VALID',
        table + 'VALIDATE CONSTRAINT "Class_teacherId_not_null"', table + 'ALTER COLUMN "teacherId" SET NOT NULL',
        table + 'DROP CONSTRAINT IF EXISTS "Class_teacherId_not_null"']

    checked = deploy(database, check=True, migrations_dir=folder, allow=())
    assert not checked.get('failed'), checked.get('msg')
    planned = checked['planned_sql']
    assert [line.rstrip(';') for line in planned.splitlines() if line.startswith(table)] == steps, planned
    assert 'line 2 [online] set_not_null: to run' in '\n'.join(checked['review']), checked['review']
    assert not column(conn, 'Class', 'teacherId')['not_null']

    deployed = deploy(database, migrations_dir=folder, allow=())
    assert not deployed.get('failed'), deployed.get('msg')
    assert [query for query in deployed['queries'] if query.startswith(table)] == steps
    assert column(conn, 'Class', 'teacherId')['not_null']
    constraints = rows_of(conn, "SELECT conname::text AS name, contype::text AS type, convalidated AS valid "
                                "FROM pg_catalog.pg_constraint WHERE conrelid = '\"Class\"'::regclass "
                                "AND conname LIKE 'Class_teacherId%%'")
    assert constraints == ([dict(name='Class_teacherId_not_null', type='n', valid=True)] if pg_major >= 18 else [])
