# -*- coding: utf-8 -*-
"""An index planned on a partitioned table, on real PostgreSQL: CREATE INDEX ... ON ONLY the table, CREATE INDEX
CONCURRENTLY on each partition, ALTER INDEX ... ATTACH PARTITION, a sub-partitioned partition worked on the same way;
a rerun finishes what a stopped run left; a unique index that does not cover the partition key is refused before any
DDL; the rollback drops it with DROP INDEX under lock_timeout, back to the same pg_dump --schema-only.

A database of its own (a copy of the seeded T12 database, the fixture file_database) with the partitioned table "Reading":
    "Reading" by RANGE ("takenAt")
      "Reading_2024"
      "Reading_2025" by LIST ("kind")
        "Reading_2025_a"
        "Reading_2025_b" (DEFAULT)
"""

import json
import os
import re

import psycopg2
import pytest
import yaml

import helpers

pytestmark = pytest.mark.integration

DATABASE = 'pt_partitioned'
MODULE = 'postgresql_online_index'
INDEX = 'Reading_deviceId_idx'
# The index of each partition: the planned name and the partition's.
PARTITION_INDEXES = ['Reading_deviceId_idx_Reading_2024', 'Reading_deviceId_idx_Reading_2025',
                     'Reading_deviceId_idx_Reading_2025_a', 'Reading_deviceId_idx_Reading_2025_b']
SPEC = dict(name=INDEX, columns=['deviceId'], where='"value" IS NOT NULL')
TABLE_SQL = helpers.PARTITIONED_READINGS_SQL


@pytest.fixture
def readings(file_database):
    """The partitioned table, made for the test and dropped after it (its indexes with it)."""
    helpers.query(file_database['conn'], TABLE_SQL)
    yield file_database['conn']
    helpers.query(file_database['conn'], 'DROP TABLE IF EXISTS "Reading"')


def run(file_database, check=False, **args):
    return helpers.run_ansible_module(MODULE, dict(file_database['login'], **args), check=check)


def index_tree(conn, name=INDEX):
    """[(index, its table, pg_index.indisvalid, the index it is attached to)] of C(name) and every index attached
    under it (pg_inherits), level by level; [] when it does not exist."""
    if not helpers.relation_exists(conn, name):
        return []
    return [tuple(row) for row in helpers.query(conn, """
        SELECT c.relname::text, t.relname::text, i.indisvalid, p.relname::text
        FROM pg_catalog.pg_partition_tree(pg_catalog.format('%%I.%%I', 'public', %s)::regclass) it
        JOIN pg_catalog.pg_class c ON c.oid = it.relid
        JOIN pg_catalog.pg_index i ON i.indexrelid = c.oid
        JOIN pg_catalog.pg_class t ON t.oid = i.indrelid
        LEFT JOIN pg_catalog.pg_inherits inh ON inh.inhrelid = c.oid
        LEFT JOIN pg_catalog.pg_class p ON p.oid = inh.inhparent
        ORDER BY it.level, 1""", (name,))]


COMPLETE_TREE = [
    (INDEX, 'Reading', True, None),
    ('Reading_deviceId_idx_Reading_2024', 'Reading_2024', True, INDEX),
    ('Reading_deviceId_idx_Reading_2025', 'Reading_2025', True, INDEX),
    ('Reading_deviceId_idx_Reading_2025_a', 'Reading_2025_a', True, 'Reading_deviceId_idx_Reading_2025'),
    ('Reading_deviceId_idx_Reading_2025_b', 'Reading_2025_b', True, 'Reading_deviceId_idx_Reading_2025'),
]

# Each step's statement, in order.
STEPS = [
    'CREATE INDEX IF NOT EXISTS "Reading_deviceId_idx" ON ONLY "public"."Reading" USING "btree" ("deviceId") '
    'WHERE ("value" IS NOT NULL)',
    'CREATE INDEX CONCURRENTLY IF NOT EXISTS "Reading_deviceId_idx_Reading_2024" ON "public"."Reading_2024" USING '
    '"btree" ("deviceId") WHERE ((value IS NOT NULL))',
    'ALTER INDEX "public"."Reading_deviceId_idx" ATTACH PARTITION "public"."Reading_deviceId_idx_Reading_2024"',
    'CREATE INDEX IF NOT EXISTS "Reading_deviceId_idx_Reading_2025" ON ONLY "public"."Reading_2025" USING "btree" '
    '("deviceId") WHERE ((value IS NOT NULL))',
    'CREATE INDEX CONCURRENTLY IF NOT EXISTS "Reading_deviceId_idx_Reading_2025_a" ON "public"."Reading_2025_a" USING '
    '"btree" ("deviceId") WHERE ((value IS NOT NULL))',
    'ALTER INDEX "public"."Reading_deviceId_idx_Reading_2025" ATTACH PARTITION '
    '"public"."Reading_deviceId_idx_Reading_2025_a"',
    'CREATE INDEX CONCURRENTLY IF NOT EXISTS "Reading_deviceId_idx_Reading_2025_b" ON "public"."Reading_2025_b" USING '
    '"btree" ("deviceId") WHERE ((value IS NOT NULL))',
    'ALTER INDEX "public"."Reading_deviceId_idx_Reading_2025" ATTACH PARTITION '
    '"public"."Reading_deviceId_idx_Reading_2025_b"',
    'ALTER INDEX "public"."Reading_deviceId_idx" ATTACH PARTITION "public"."Reading_deviceId_idx_Reading_2025"',
]


def in_lock_order(statement, table, mode, only=True):
    """A statement that locks two tables, as the run sends it (lock_order, issue 21): in a transaction that takes the
    partitioned table first, under the lock_timeout (5s) capped at half of the test cluster's deadlock_timeout (1s)."""
    return ['BEGIN', "SET LOCAL lock_timeout = '500ms'",
            'LOCK TABLE %s"public"."%s" IN %s MODE' % ('ONLY ' if only else '', table, mode), statement, 'COMMIT']


def sent(steps):
    """The statements of C(steps) as the run sends them: each ATTACH PARTITION in lock order."""
    out = []
    for statement in steps:
        if ' ATTACH PARTITION ' in statement:
            parent_index = statement.split('"')[3]
            out.extend(in_lock_order(statement, 'Reading' if parent_index == INDEX else parent_index[len(INDEX) + 1:],
                                     'ACCESS SHARE'))
        else:
            out.append(statement)
    return out


PLANNED_SQL = sent(STEPS)


def test_check_mode_shows_the_statements_the_run_then_runs_and_the_index_becomes_valid(file_database, readings):
    check = run(file_database, check=True, table='Reading', indexes=[SPEC])
    assert check.get('failed') is not True, check
    assert check['changed'] is True and check['queries'] == PLANNED_SQL
    assert index_tree(readings) == []  # check mode changed nothing

    result = run(file_database, table='Reading', indexes=[SPEC])

    assert result.get('failed') is not True, result
    assert result['queries'] == PLANNED_SQL
    (entry,) = result['indexes']
    assert entry['action'] == 'created' and entry['statements'] == PLANNED_SQL
    assert entry['definition'] == ('CREATE INDEX "Reading_deviceId_idx" ON ONLY public."Reading" USING btree '
                                   '("deviceId") WHERE (value IS NOT NULL)')
    # Valid, every partition's index attached to its parent's (pg_inherits), the sub-partitioned one's too.
    assert index_tree(readings) == COMPLETE_TREE
    plan = helpers.query(readings, 'EXPLAIN SELECT * FROM "Reading" WHERE "deviceId" = 5 AND value IS NOT NULL')
    assert 'Reading_deviceId_idx_Reading_2024' in ' '.join(row[0] for row in plan)

    again = run(file_database, table='Reading', indexes=[SPEC])
    assert again['changed'] is False and again['queries'] == [] and again['indexes'][0]['action'] == 'unchanged'


@pytest.mark.majors()
def test_a_rerun_finishes_a_half_attached_index_and_rebuilds_an_invalid_partition_index(file_database, readings):
    # As a stopped run leaves it: the index ON ONLY the table, 2024's built and attached, 2025's ON ONLY its table,
    # and an INVALID leftover under the name of 2025_a's (a failed unique build on duplicate keys).
    for statement in STEPS[:4]:
        helpers.query(readings, statement)
    with pytest.raises(psycopg2.errors.UniqueViolation):
        helpers.query(readings, 'CREATE UNIQUE INDEX CONCURRENTLY "Reading_deviceId_idx_Reading_2025_a" '
                                'ON "Reading_2025_a" (kind)')
    assert index_tree(readings)[0] == (INDEX, 'Reading', False, None)
    assert helpers.index_info(readings, 'Reading_deviceId_idx_Reading_2025_a')['valid'] is False

    result = run(file_database, table='Reading', indexes=[SPEC])

    assert result.get('failed') is not True, result
    assert result['indexes'][0]['action'] == 'resumed'
    assert result['queries'] == [
        'DROP INDEX CONCURRENTLY IF EXISTS "public"."Reading_deviceId_idx_Reading_2025_a"'] + sent(STEPS[4:])
    assert index_tree(readings) == COMPLETE_TREE


def test_a_unique_index_must_cover_the_partition_key_and_is_refused_before_any_ddl(file_database, readings):
    before = helpers.all_indexes(readings)
    result = run(file_database, table='Reading', indexes=[
        dict(name='Reading_deviceId_takenAt_key', columns=['deviceId', 'takenAt'], unique=True),
        dict(name='Reading_id_key', columns=['id'], unique=True)])
    assert result.get('failed') is True and result['queries'] == [] and result['changed'] is False
    assert ('index "public.Reading_deviceId_takenAt_key" (its step on "public.Reading_deviceId_takenAt_key_Reading_2025"):'
            ' CREATE INDEX ... ON ONLY would be refused: a unique index on partitioned table public.Reading_2025 must '
            'cover its partition key (PostgreSQL checks uniqueness within each partition only): its key columns '
            '(deviceId, takenAt) must include kind') in result['msg']
    assert ('index "public.Reading_id_key": CREATE INDEX ... ON ONLY would be refused: a unique index on partitioned '
            'table public.Reading must cover its partition key (PostgreSQL checks uniqueness within each partition '
            'only): its key columns (id) must include takenAt') in result['msg']
    assert helpers.all_indexes(readings) == before

    covered = run(file_database, table='Reading', indexes=[dict(name='Reading_id_key', columns=['id', 'takenAt', 'kind'],
                                                           unique=True)])
    assert covered.get('failed') is not True, covered
    assert all(valid for _index, _table, valid, _parent in index_tree(readings, 'Reading_id_key'))
    assert helpers.index_info(readings, 'Reading_id_key')['unique'] is True


def test_the_catalog_steps_wait_at_most_lock_timeout_and_are_retried(file_database, readings):
    # A writer through the table holds ROW EXCLUSIVE on it: CREATE INDEX ... ON ONLY (SHARE) must not queue behind it
    # for long, since the application's writes would queue behind that request.
    writer = helpers.connect(file_database['cluster'], DATABASE, autocommit=False)
    try:
        helpers.query(writer, 'INSERT INTO "Reading" VALUES (-1, \'2024-05-05\', \'b\', 1, 1)')  # left open
        result = run(file_database, table='Reading', lock_timeout='200ms', lock_retries=2, lock_retry_delay=0.1,
                     indexes=[SPEC])
    finally:
        writer.close()
    assert result.get('failed') is True
    assert result['lock_retries_used'] == 2 and result['queries'] == []
    assert 'failed after 3 attempt(s)' in result['msg'] and 'lock_timeout=200ms' in result['msg']
    assert 'lock holder: pid' in result['msg'] and 'RowExclusiveLock' in result['msg']
    assert index_tree(readings) == []
    assert run(file_database, table='Reading', indexes=[SPEC])['indexes'][0]['action'] == 'created'


def test_rollback_drops_the_index_with_drop_index_under_lock_timeout(file_database, readings):
    before = helpers.schema_dump(file_database['cluster'], DATABASE)
    run(file_database, table='Reading', indexes=[SPEC])
    absent = [dict(name=INDEX)]
    # A reader's open transaction holds ACCESS SHARE on the table and every partition: DROP INDEX (ACCESS EXCLUSIVE on
    # them all) waits at most lock_timeout per attempt, so the application's queries never queue behind it for longer.
    reader = helpers.connect(file_database['cluster'], DATABASE, autocommit=False)
    try:
        helpers.query(reader, 'SELECT count(*) FROM "Reading"')
        blocked = run(file_database, table='Reading', state='absent', lock_timeout='200ms', lock_retries=1,
                      lock_retry_delay=0.1, indexes=absent)
    finally:
        reader.close()
    assert blocked.get('failed') is True and blocked['lock_retries_used'] == 1
    assert 'DROP INDEX IF EXISTS "public"."Reading_deviceId_idx" failed after 2 attempt(s)' in blocked['msg']
    assert 'nothing was dropped by this step' in blocked['msg']
    assert index_tree(readings) == COMPLETE_TREE

    check = run(file_database, check=True, table='Reading', state='absent', indexes=absent)
    assert check['queries'] == in_lock_order('DROP INDEX IF EXISTS "public"."Reading_deviceId_idx"', 'Reading',
                                             'ACCESS EXCLUSIVE', only=False)
    result = run(file_database, table='Reading', state='absent', indexes=absent)
    assert result.get('failed') is not True, result
    assert result['queries'] == check['queries'] and result['indexes'][0]['action'] == 'dropped'
    assert index_tree(readings) == [] and not any(helpers.relation_exists(readings, n) for n in PARTITION_INDEXES)
    assert helpers.schema_dump(file_database['cluster'], DATABASE) == before
    assert run(file_database, table='Reading', state='absent', indexes=absent)['changed'] is False


def test_rollback_of_a_half_built_index_drops_what_is_not_attached_too(file_database, readings):
    before = helpers.schema_dump(file_database['cluster'], DATABASE)
    # A stopped run: 2024's attached, 2025's ON ONLY its table but not attached yet, 2025_b's built but not attached.
    for statement in STEPS[:4] + STEPS[6:7]:
        helpers.query(readings, statement)
    # No run of the plan is in the ledger: they are not the plan's to drop.
    result = run(file_database, table='Reading', state='absent', indexes=[dict(name=INDEX)])
    assert result.get('failed') is not True and result['queries'] == [], result
    assert 'is not in the ledger of plan manual' in result['indexes'][0]['left_alone']
    # The stopped run's intended row in the ledger (written before its first statement): they are its own.
    helpers.record_in_ledger(readings, 'index', 'Reading', INDEX, 'CREATE INDEX "Reading_deviceId_idx" ...',
                             state='intended')
    result = run(file_database, table='Reading', state='absent', indexes=[dict(name=INDEX)])
    assert result.get('failed') is not True, result
    assert result['queries'] == [
        'DROP INDEX CONCURRENTLY IF EXISTS "public"."Reading_deviceId_idx_Reading_2025_b"'] + in_lock_order(
        'DROP INDEX IF EXISTS "public"."Reading_deviceId_idx_Reading_2025"', 'Reading_2025', 'ACCESS EXCLUSIVE',
        only=False) + in_lock_order('DROP INDEX IF EXISTS "public"."Reading_deviceId_idx"', 'Reading',
                                    'ACCESS EXCLUSIVE', only=False)
    assert not any(helpers.relation_exists(readings, name) for name in [INDEX] + PARTITION_INDEXES)
    assert helpers.schema_dump(file_database['cluster'], DATABASE) == before
    assert helpers.ledger_rows(readings, INDEX)[-1] == ('manual', 'index', INDEX, 'undone')
    assert [row for row in helpers.ledger_rows(readings, INDEX) if row[3] in ('intended', 'applied')] == []


# -- the whole run: migrate.yml (stopped, resumed, rerun), rollback.yml ------------------------------------------------

def plan_file(tmp_path, indexes):
    path = tmp_path / 'partitioned.yml'
    path.write_text(yaml.safe_dump(dict(name='pt_partitioned', schema='public', tables=[
        dict(name='Reading', indexes=indexes)])))
    return str(path)


def playbook(file_database, tmp_path, name, plan, options=(), **extra):
    cluster = file_database['cluster']
    variables = dict(local_cluster_dir=cluster['dir'], pg_port=cluster['port'], pg_database=DATABASE, pgzd_plan=plan,
                     pgzd_artifacts_dir=str(tmp_path / 'artifacts'), online_indexes_progress_interval=1, **extra)
    return helpers.run_playbook('playbooks/%s.yml' % name, variables, options=options,
                                stdout_callback='pg_zero_downtime.migrations.progress')


@pytest.mark.majors()
def test_a_migration_stopped_on_one_partition_resumes_and_its_rollback_restores_the_schema(file_database, readings, tmp_path):
    before = helpers.schema_dump(file_database['cluster'], DATABASE)
    plan = plan_file(tmp_path, [SPEC])
    # An application transaction that wrote to Reading_2025_b: that partition's build waits for it (and says so in
    # its progress lines) until build_wait_timeout stops the run.
    writer = helpers.connect(file_database['cluster'], DATABASE, autocommit=False)
    try:
        helpers.query(writer, 'UPDATE "Reading_2025_b" SET value = value WHERE id = 1')
        stopped = playbook(file_database, tmp_path, 'migrate', plan, backup_enabled='false', pgzd_build_wait_timeout=5)
    finally:
        writer.close()
    output = ' '.join(stopped.stdout.split())
    assert stopped.returncode != 0, output[-3000:]
    assert 'gave up after waiting' in output and 'Reading_deviceId_idx_Reading_2025_b' in output
    assert re.search(r'progress: Reading_deviceId_idx_Reading_2025_b on public\.Reading_2025_b: waiting for writers',
                     output), output[-4000:]
    assert index_tree(readings) == [(INDEX, 'Reading', False, None),
                                    ('Reading_deviceId_idx_Reading_2024', 'Reading_2024', True, INDEX)]
    assert helpers.index_info(readings, 'Reading_deviceId_idx_Reading_2025')['valid'] is False
    # Its INVALID leftover is dropped, or, when the writer still blocks that too, left for the rerun to drop.
    leftover = helpers.index_info(readings, 'Reading_deviceId_idx_Reading_2025_b')
    assert leftover is None or leftover['valid'] is False

    check = playbook(file_database, tmp_path, 'migrate', plan, options=['--check'], backup_enabled='false')
    assert check.returncode == 0, check.stdout[-3000:]
    (planned,) = [path for path in _files(tmp_path, 'planned-migrate.sql')]
    with open(planned) as handle:
        planned_sql = handle.read()
    for statement in STEPS[6:]:
        assert statement + ';' in planned_sql, planned_sql
    assert STEPS[1] + ';' not in planned_sql

    resumed = playbook(file_database, tmp_path, 'migrate', plan)
    assert resumed.returncode == 0, resumed.stdout[-4000:]
    assert 'resumed  Reading_deviceId_idx' in resumed.stdout
    assert index_tree(readings) == COMPLETE_TREE
    with open(max(_files(tmp_path, 'report.json'), key=os.path.getmtime)) as handle:
        assert [i['action'] for i in json.load(handle)['indexes']] == ['resumed']

    again = playbook(file_database, tmp_path, 'migrate', plan)
    assert again.returncode == 0 and 'changed=0' in again.stdout, again.stdout[-3000:]
    assert 'Nothing to do: every index of the plan is already in place and valid' in ' '.join(again.stdout.split())

    rollback = playbook(file_database, tmp_path, 'rollback', plan)
    assert rollback.returncode == 0, rollback.stdout[-4000:]
    assert 'dropped  Reading_deviceId_idx' in rollback.stdout
    assert helpers.schema_dump(file_database['cluster'], DATABASE) == before


def test_the_preflight_refuses_a_unique_index_that_misses_the_partition_key_before_any_ddl(file_database, readings,
                                                                                          tmp_path):
    before = helpers.schema_dump(file_database['cluster'], DATABASE)
    plan = plan_file(tmp_path, [SPEC, dict(name='Reading_id_key', columns=['id'], unique=True)])
    refused = playbook(file_database, tmp_path, 'migrate', plan)
    output = ' '.join(refused.stdout.split())
    assert refused.returncode != 0
    assert 'The plan cannot be applied; nothing was changed' in output
    assert ('index "public.Reading_id_key": CREATE INDEX ... ON ONLY would be refused: a unique index on partitioned '
            'table public.Reading must cover its partition key') in output
    assert 'Start building or dropping concurrently' not in output
    assert helpers.schema_dump(file_database['cluster'], DATABASE) == before


def _files(tmp_path, name):
    return sorted(os.path.join(root, name) for root, _dirs, files in os.walk(str(tmp_path)) if name in files)
