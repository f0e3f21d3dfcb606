# -*- coding: utf-8 -*-
"""The real Prisma CLI reads the record of the T12 Prisma migration that migrate.yml writes, on real PostgreSQL.

After playbooks/migrate.yml with the plan imported from the migration (scripts/plan_import.py --prisma),
`prisma migrate status` says the database schema is up to date and `prisma migrate deploy` applies nothing; after
playbooks/rollback.yml, `status` lists the migration as not yet applied. And the row is the one
`prisma migrate resolve --applied` writes. The tool's ledger (pgzd_audit.ledger) stays invisible to Prisma: what
`prisma db pull` reads of the database after the runs is what it read before, and `prisma migrate diff` of the two
finds no difference.

The CLI is Prisma 6.19.3 with its WebAssembly schema engine (tests/prisma_cli: package-lock.json, prisma.config.ts,
schema.prisma), installed by scripts/bootstrap; without it these tests fail, saying what to do. Each test has a copy
of the seeded database of its own. `deploy` and `resolve` exit only about 10 s after their work is done (a timer of
Prisma's schema engine that nothing cancels), hence so few CLI runs.
"""

import hashlib
import json
import os
import shutil
import subprocess
from urllib.parse import quote

import pytest

import helpers

pytestmark = pytest.mark.integration

PRISMA_CLI_DIR = os.path.join(helpers.TESTS_DIR, 'prisma_cli')
NAME = helpers.PRISMA_MIGRATION
DATABASE = 'pt_prisma_cli'
CLI_TIMEOUT = 120

with open(helpers.PRISMA_MIGRATION_SQL_PATH, 'rb') as _handle:
    SCRIPT_BYTES = _handle.read()


def _installed_version(package_json):
    with open(package_json, encoding='utf-8') as handle:
        return json.load(handle)['version']


@pytest.fixture(scope='module')
def prisma_cli():
    """The entry point of the Prisma CLI that scripts/bootstrap installed; the tests fail (not skip) without it."""
    with open(os.path.join(PRISMA_CLI_DIR, 'package.json'), encoding='utf-8') as handle:
        pinned = json.load(handle)['devDependencies']
    if shutil.which('node') is None:
        pytest.fail('node is not on PATH: this test runs the real Prisma CLI and needs Node.js 18.18 or later with '
                    'npm; install them, then run scripts/bootstrap', pytrace=False)
    for package, version in sorted(pinned.items()):
        package_json = os.path.join(PRISMA_CLI_DIR, 'node_modules', package, 'package.json')
        installed = _installed_version(package_json) if os.path.exists(package_json) else 'nothing'
        if installed != version:
            pytest.fail('%s %s is not installed in %s/node_modules (found: %s): run scripts/bootstrap, which runs '
                        '`npm ci` there (it needs npm and the npm registry)'
                        % (package, version, os.path.relpath(PRISMA_CLI_DIR, helpers.REPO_ROOT), installed),
                        pytrace=False)
    return os.path.join(PRISMA_CLI_DIR, 'node_modules', 'prisma', 'build', 'index.js')


@pytest.fixture
def prisma_dir(tmp_path):
    """The application's prisma/ folder: schema.prisma, and in migrations/ the sample database's first migration
    and the T12 migration (fixtures/t12/prisma/migrations), as the application's repository would hold them."""
    directory = tmp_path / 'prisma'
    shutil.copytree(helpers.PRISMA_MIGRATIONS_DIR, str(directory / 'migrations'))
    shutil.copy(os.path.join(PRISMA_CLI_DIR, 'schema.prisma'), str(directory))
    init = directory / 'migrations' / helpers.PRISMA_INIT_MIGRATION
    init.mkdir()
    # The sample database's _prisma_migrations has this migration as applied (fixtures/t12/schema.sql); a folder
    # without it would make `status` report a history that diverged. Prisma runs no applied migration again.
    (init / 'migration.sql').write_text('-- Stands for the first migration of the schema in fixtures/t12/schema.sql.\n')
    return directory


@pytest.fixture
def database(t12_copy):
    """A copy of the seeded T12 database (with Prisma's _prisma_migrations holding the init migration), dropped after
    the test: its connection info, with an autocommit connection as 'conn'."""
    info = t12_copy(DATABASE)
    conn = helpers.connect(info)
    try:
        yield dict(info, conn=conn)
    finally:
        conn.close()
        t12_copy.drop(DATABASE)


def prisma(cli, database, prisma_dir, *args):
    """`prisma <args>` on C(database) with the schema and migrations of C(prisma_dir); the finished process."""
    url = 'postgresql://%s:%s@%s:%s/%s?schema=public' % (
        quote(database['user'], safe=''), quote(database['password'], safe=''), database['host'], database['port'],
        quote(database['dbname'], safe=''))
    env = dict(os.environ, DATABASE_URL=url, CHECKPOINT_DISABLE='1', PRISMA_HIDE_UPDATE_MESSAGE='1', NO_COLOR='1')
    argv = ['node', cli] + list(args) + ['--config', os.path.join(PRISMA_CLI_DIR, 'prisma.config.ts')]
    if 'diff' not in args:  # migrate diff compares the data models it is given, and takes no --schema
        argv += ['--schema', str(prisma_dir / 'schema.prisma')]
    return subprocess.run(argv, cwd=str(prisma_dir.parent), env=env, capture_output=True, text=True,
                          timeout=CLI_TIMEOUT)


def shown(process):
    """What a CLI run printed, for an assertion's message."""
    return 'prisma %s: rc %s\nstdout:\n%s\nstderr:\n%s' % (
        ' '.join(process.args[2:4]), process.returncode, process.stdout[-4000:], process.stderr[-4000:])


def whole_history(conn):
    return helpers.query(conn, 'SELECT * FROM "_prisma_migrations" ORDER BY started_at')


def test_prisma_sees_the_migration_applied_after_migrate_and_pending_after_rollback(
        prisma_cli, database, prisma_dir, pg_cluster, tmp_path):
    conn = database['conn']
    settings = dict(local_cluster_dir=pg_cluster['dir'], pg_port=database['port'], pg_database=database['dbname'],
                    pgzd_plan=helpers.import_prisma_plan(tmp_path), pgzd_artifacts_dir=str(tmp_path / 'artifacts'),
                    backup_enabled='false')
    before = pulled(prisma_cli, database, prisma_dir, 'before.prisma')
    run = helpers.run_playbook('playbooks/migrate.yml', settings)
    assert run.returncode == 0, run.stdout[-6000:]
    (recorded,) = helpers.prisma_history_rows(conn)
    assert recorded[3].startswith('pg-zero-downtime:'), recorded
    history, indexes = whole_history(conn), helpers.all_indexes(conn)

    status = prisma(prisma_cli, database, prisma_dir, 'migrate', 'status')
    assert status.returncode == 0, shown(status)
    assert '2 migrations found in prisma/migrations' in status.stdout, shown(status)
    assert 'Database schema is up to date!' in status.stdout, shown(status)

    deploy = prisma(prisma_cli, database, prisma_dir, 'migrate', 'deploy')
    assert deploy.returncode == 0, shown(deploy)
    assert 'No pending migrations to apply.' in deploy.stdout, shown(deploy)
    # Not a row added, changed or marked rolled back, and not an index built or dropped.
    assert whole_history(conn) == history
    assert helpers.all_indexes(conn) == indexes

    run = helpers.run_playbook('playbooks/rollback.yml', settings)
    assert run.returncode == 0, run.stdout[-6000:]
    assert helpers.prisma_history_rows(conn) == []

    status = prisma(prisma_cli, database, prisma_dir, 'migrate', 'status')
    assert status.returncode == 1, shown(status)
    assert 'Following migration have not yet been applied:\n%s\n' % NAME in status.stdout, shown(status)
    assert 'To apply migrations in production run prisma migrate deploy.' in status.stdout, shown(status)

    # The ledger is there, with the runs' rows; Prisma, which reads its own schema, sees none of it.
    assert ('t12', 'index', 'Job_teacherId_status_idx', 'undone') in helpers.ledger_rows(conn)
    after = pulled(prisma_cli, database, prisma_dir, 'after.prisma')
    assert 'ledger' not in after.read_text() and 'pgzd_audit' not in after.read_text()
    diff = prisma(prisma_cli, database, prisma_dir, 'migrate', 'diff', '--from-schema-datamodel', str(before),
                  '--to-schema-datamodel', str(after), '--script')
    assert diff.returncode == 0 and '-- This is an empty migration.' in diff.stdout, shown(diff)


def pulled(prisma_cli, database, prisma_dir, name):
    """The data model `prisma db pull --print` reads from C(database), written to prisma_dir/C(name)."""
    pull = prisma(prisma_cli, database, prisma_dir, 'db', 'pull', '--print')
    assert pull.returncode == 0 and 'model Job {' in pull.stdout, shown(pull)
    path = prisma_dir / name
    path.write_text(pull.stdout[pull.stdout.index('generator client'):])
    return path


def test_the_record_is_the_row_prisma_migrate_resolve_applied_writes(prisma_cli, database, prisma_dir, run_module):
    conn = database['conn']
    resolve = prisma(prisma_cli, database, prisma_dir, 'migrate', 'resolve', '--applied', NAME)
    assert resolve.returncode == 0, shown(resolve)
    assert 'Migration %s marked as applied.' % NAME in resolve.stdout, shown(resolve)
    (prisma_row,) = helpers.prisma_history_rows(conn)

    # The module that migrate.yml runs takes Prisma's own row for its record: the same checksum of the same file.
    script = SCRIPT_BYTES.decode('utf-8')
    args = dict(login_db=database['dbname'], migration_name=NAME, migration_sql=script, run_id='prisma-cli-test')
    result = run_module('postgresql_prisma_migration', **args)
    assert not result['changed'] and result['action'] == 'unchanged', result
    assert helpers.prisma_history_rows(conn) == [prisma_row]

    helpers.query(conn, 'DELETE FROM "_prisma_migrations" WHERE migration_name = %s', (NAME,))
    result = run_module('postgresql_prisma_migration', **args)
    assert result['changed'] and result['action'] == 'recorded', result
    (our_row,) = helpers.prisma_history_rows(conn)

    columns = ('id', 'checksum', 'migration_name', 'logs', 'started_at', 'finished_at', 'rolled_back_at',
               'applied_steps_count')
    ours, theirs = dict(zip(columns, our_row)), dict(zip(columns, prisma_row))
    for row in (ours, theirs):
        assert helpers.UUID_V4.match(row['id']), row
        assert row['checksum'] == hashlib.sha256(SCRIPT_BYTES).hexdigest(), row
        assert row['migration_name'] == NAME
        assert row['started_at'] == row['finished_at'] and row['rolled_back_at'] is None, row
        assert row['applied_steps_count'] == 0, row
    assert ours['id'] != theirs['id']
    # The one difference: our logs name the tool and the run, so that a rollback removes only the rows it wrote.
    # (Prisma's timestamps have whole milliseconds: it writes them through a JavaScript Date here.)
    assert theirs['logs'] == ''
    assert ours['logs'].startswith('pg-zero-downtime:') and 'prisma-cli-test' in ours['logs'], ours


# Which migrations are pending (module_utils/prisma/pending_migrations.py) is decided as `prisma migrate deploy`
# decides it, proven on the same folder and the same rows: deploy applies exactly what ours calls pending, in the same
# order, or refuses where ours refuses. A few harmless statements stand for the migrations' SQL.
PENDING_FOLDER = {'20260101000000_a': 'SELECT 1;\n', '20260201000000_b': 'SELECT 2;\n',
                  '20260301000000_c': 'SELECT 3;\n'}
A, B, C = sorted(PENDING_FOLDER)


def _history(conn, rows):
    """_prisma_migrations holding exactly C(rows), each (name, finished, rolled back); returned as dicts."""
    helpers.query(conn, 'DELETE FROM "_prisma_migrations"')
    for name, finished, rolled_back in rows:
        helpers.query(conn, 'INSERT INTO "_prisma_migrations" (id, checksum, migration_name, logs, started_at, '
                            'finished_at, rolled_back_at, applied_steps_count) VALUES (gen_random_uuid()::text, '
                            '%s, %s, %s, now(), CASE WHEN %s THEN now() END, CASE WHEN %s THEN now() END, 1)',
                      (hashlib.sha256(PENDING_FOLDER[name].encode()).hexdigest(), name, '', finished, rolled_back))
    return [dict(migration_name=name, checksum=hashlib.sha256(PENDING_FOLDER[name].encode()).hexdigest(),
                 finished_at='t' if finished else None, rolled_back_at='t' if rolled_back else None, logs='',
                 started_at='t') for name, finished, rolled_back in rows]


@pytest.mark.parametrize('rows', [
    pytest.param([(A, True, False)], id='a-applied'),
    pytest.param([(A, True, False), (B, False, False)], id='b-failed'),
    pytest.param([(A, True, False), (B, False, True)], id='b-rolled-back'),
    pytest.param([(A, True, False), (B, False, True), (B, True, False), (C, True, False)], id='all-applied'),
])
def test_pending_migrations_are_those_prisma_migrate_deploy_applies(prisma_cli, database, prisma_dir, rows):
    pending_migrations = helpers.load_module_utils('prisma.pending_migrations').pending_migrations
    migrations_dir = prisma_dir / 'migrations'
    shutil.rmtree(str(migrations_dir))
    migrations_dir.mkdir()
    (migrations_dir / 'migration_lock.toml').write_text('provider = "postgresql"\n')
    for name, sql in PENDING_FOLDER.items():
        (migrations_dir / name).mkdir()
        (migrations_dir / name / 'migration.sql').write_text(sql)
    conn = database['conn']
    rows = _history(conn, rows)
    ours = pending_migrations([dict(name=name, sql=sql) for name, sql in PENDING_FOLDER.items()], rows)

    deploy = prisma(prisma_cli, database, prisma_dir, 'migrate', 'deploy')
    applied = [name for (name,) in helpers.query(
        conn, 'SELECT migration_name FROM "_prisma_migrations" WHERE finished_at IS NOT NULL ORDER BY started_at')]
    deployed = applied[len([row for row in rows if row['finished_at']]):]
    if ours['problems']:
        assert deploy.returncode == 1 and 'P3009' in deploy.stdout + deploy.stderr, shown(deploy)
        assert deployed == [] and len(ours['problems']) == 1 and 'P3009' in ours['problems'][0], ours
    else:
        assert deploy.returncode == 0, shown(deploy)
        assert deployed == ours['pending'], (ours, shown(deploy))


HISTORY_DIR = os.path.join(helpers.TESTS_DIR, 'fixtures', 'prisma_history')
HISTORY_INIT_CHECKSUM = 'cce982d78ff3f419d435b70436de4b68bafd3c7e5d499cdf819d1ea854f41a11'
ALLOW_DROP_NOTE = '20260114000000_drop_money_tx_note:2:drop_column'


def test_the_deployed_history_is_what_prisma_migrate_deploy_builds_and_prisma_agrees(prisma_cli, t12_copy, tmp_path):
    """The 14 migrations of tests/fixtures/prisma_history deployed online by migrate.yml, and by the real `prisma
    migrate deploy` on another copy: Prisma's status and deploy agree with ours, and both schemas are the same."""
    app = tmp_path / 'prisma'
    shutil.copytree(os.path.join(HISTORY_DIR, 'migrations'), str(app / 'migrations'))
    shutil.copy(os.path.join(PRISMA_CLI_DIR, 'schema.prisma'), str(app))
    databases = {}
    for name in ('pt_history_ours', 'pt_history_prisma'):
        info = t12_copy(name)
        conn = helpers.connect(info)
        helpers.query(conn, 'UPDATE "_prisma_migrations" SET checksum = %s WHERE migration_name = %s',
                      (HISTORY_INIT_CHECKSUM, helpers.PRISMA_INIT_MIGRATION))
        databases[name] = dict(info, conn=conn)
    try:
        ours, theirs = databases['pt_history_ours'], databases['pt_history_prisma']
        run = helpers.run_playbook('playbooks/migrate.yml', dict(
            local_cluster_dir=ours['dir'], pg_port=ours['port'], pg_database=ours['dbname'],
            pgzd_prisma_migrations_dir=str(app / 'migrations'), pgzd_prisma_allow='["%s"]' % ALLOW_DROP_NOTE,
            pgzd_artifacts_dir=str(tmp_path / 'artifacts'), backup_enabled='false'))
        assert run.returncode == 0, run.stdout[-6000:]
        history = whole_history(ours['conn'])

        status = prisma(prisma_cli, ours, app, 'migrate', 'status')
        assert status.returncode == 0, shown(status)
        assert '15 migrations found in prisma/migrations' in status.stdout, shown(status)
        assert 'Database schema is up to date!' in status.stdout, shown(status)
        deploy = prisma(prisma_cli, ours, app, 'migrate', 'deploy')
        assert deploy.returncode == 0 and 'No pending migrations to apply.' in deploy.stdout, shown(deploy)
        assert whole_history(ours['conn']) == history

        deploy = prisma(prisma_cli, theirs, app, 'migrate', 'deploy')
        assert deploy.returncode == 0 and 'All migrations have been successfully applied.' in deploy.stdout, \
            shown(deploy)
        assert helpers.schema_dump(ours, ours['dbname']) == helpers.schema_dump(theirs, theirs['dbname'])
    finally:
        for name, info in databases.items():
            info['conn'].close()
            t12_copy.drop(name)


def test_after_a_rollback_of_the_folder_prisma_lists_the_undone_migrations_as_pending(prisma_cli, t12_copy, tmp_path):
    """rollback.yml of a deployed folder to a migration: the real `prisma migrate status` lists the migrations after it
    as not yet applied (their rows are gone), and the others as applied."""
    app = tmp_path / 'prisma'
    (app / 'migrations').mkdir(parents=True)
    shutil.copy(os.path.join(HISTORY_DIR, 'migrations', 'migration_lock.toml'), str(app / 'migrations'))
    kept = sorted(name for name in os.listdir(os.path.join(HISTORY_DIR, 'migrations')) if name < '20260110')
    for name in kept:
        shutil.copytree(os.path.join(HISTORY_DIR, 'migrations', name), str(app / 'migrations' / name))
    shutil.copy(os.path.join(PRISMA_CLI_DIR, 'schema.prisma'), str(app))
    info = t12_copy('pt_history_rollback')
    conn = helpers.connect(info)
    try:
        helpers.query(conn, 'UPDATE "_prisma_migrations" SET checksum = %s WHERE migration_name = %s',
                      (HISTORY_INIT_CHECKSUM, helpers.PRISMA_INIT_MIGRATION))
        settings = dict(local_cluster_dir=info['dir'], pg_port=info['port'], pg_database=info['dbname'],
                        pgzd_prisma_migrations_dir=str(app / 'migrations'),
                        pgzd_artifacts_dir=str(tmp_path / 'artifacts'), backup_enabled='false')
        run = helpers.run_playbook('playbooks/migrate.yml', settings)
        assert run.returncode == 0, run.stdout[-6000:]
        keep = '20260105000000_replace_job_created_at_index'
        run = helpers.run_playbook('playbooks/rollback.yml', dict(settings, pgzd_prisma_rollback_to=keep))
        assert run.returncode == 0, run.stdout[-6000:]

        status = prisma(prisma_cli, info, app, 'migrate', 'status')
        assert status.returncode == 1, shown(status)
        undone = [name for name in kept if name > keep]
        assert 'Following migrations have not yet been applied:\n%s\n' % '\n'.join(undone) in status.stdout, \
            shown(status)
        assert [row[0] for row in helpers.query(conn, 'SELECT migration_name FROM "_prisma_migrations" ORDER BY 1')] \
            == [name for name in kept if name <= keep]
    finally:
        conn.close()
        t12_copy.drop('pt_history_rollback')
