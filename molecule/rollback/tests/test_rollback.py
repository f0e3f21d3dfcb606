"""Verify of the rollback scenario: after migrate then rollback, pg_dump --schema-only equals the original."""

import os
import re
import subprocess

import psycopg2
import pytest
import yaml

PROJECT = os.environ.get('MOLECULE_PROJECT_DIRECTORY', os.path.join(os.path.dirname(__file__), '..', '..', '..'))
CLUSTER_DIR = os.path.join(PROJECT, '.local', 'molecule-rollback')
DUMPS_DIR = os.path.join(PROJECT, '.local', 'molecule-rollback-dumps')
PORT = int(os.environ.get('PGZD_MOLECULE_ROLLBACK_PORT', '55436'))

with open(os.path.join(PROJECT, 'plans', 't12.yml')) as plan_file:
    PLAN = yaml.safe_load(plan_file)
PLANNED_INDEXES = [index['name'] for table in PLAN['tables'] for index in table['indexes']]
PLANNED_CONSTRAINTS = [constraint['name'] for constraint in PLAN['constraints']]


def password():
    with open(os.path.join(CLUSTER_DIR, 'superuser.password')) as password_file:
        return password_file.read().strip()


def normalized(dump):
    """The dump without pg_dump's per-run \\restrict key lines (random on every run)."""
    return '\n'.join(line for line in dump.splitlines() if not re.match(r'\\(un)?restrict ', line))


def recorded(name):
    with open(os.path.join(DUMPS_DIR, name + '.sql')) as dump_file:
        return normalized(dump_file.read())


@pytest.fixture(scope='module')
def current_schema():
    dump = subprocess.run(['pg_dump', '--schema-only', '--exclude-schema=pgzd_audit', '-h', '127.0.0.1', '-p', str(PORT), '-U', 'pgzd', 't12'],
                          env=dict(os.environ, PGPASSWORD=password()), capture_output=True, text=True, check=True)
    return normalized(dump.stdout)


@pytest.fixture(scope='module')
def db():
    connection = psycopg2.connect(host='127.0.0.1', port=PORT, user='pgzd', password=password(), dbname='t12')
    connection.autocommit = True
    yield connection.cursor()
    connection.close()


def test_the_migration_really_changed_the_schema():
    """Without this the equality below would prove nothing."""
    migrated = recorded('migrated')
    assert migrated != recorded('before')
    for name in PLANNED_INDEXES:
        assert 'CREATE INDEX "%s"' % name in migrated
    for name in PLANNED_CONSTRAINTS:
        assert 'ADD CONSTRAINT "%s" UNIQUE' % name in migrated


def test_the_partial_migration_changed_part_of_the_schema():
    partial = recorded('partial')
    assert partial != recorded('before')
    assert 'CREATE INDEX "Job_createdAt_idx"' in partial
    assert 'CREATE INDEX "Item_type_rarity_idx"' not in partial


def test_rolling_back_the_partial_migration_restored_the_schema_exactly():
    assert recorded('after_partial_rollback') == recorded('before')


def test_rolling_back_the_whole_migration_restored_the_schema_exactly(current_schema):
    assert current_schema == recorded('before')


def test_the_ledger_recorded_every_object_and_its_rollback(db):
    """Each migration recorded what it made; each rollback undid exactly that: nothing is left open in the ledger."""
    db.execute("SELECT kind, object_name, state FROM pgzd_audit.ledger ORDER BY id")
    rows = db.fetchall()
    assert set(name for kind, name, state in rows) >= set(PLANNED_INDEXES + PLANNED_CONSTRAINTS)
    assert [row for row in rows if row[2] in ('intended', 'applied')] == []


def test_no_planned_index_or_constraint_is_left(db):
    db.execute("SELECT relname FROM pg_class WHERE relname = ANY(%s)", (PLANNED_INDEXES + PLANNED_CONSTRAINTS,))
    assert db.fetchall() == []
    db.execute("SELECT indexrelid::regclass::text FROM pg_index WHERE NOT indisvalid")
    assert db.fetchall() == []
