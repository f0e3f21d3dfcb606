"""Verify of the default scenario: the real catalog after migrate.yml ran (twice) on the sample data."""

import os

import psycopg2
import pytest
import yaml

PROJECT = os.environ.get('MOLECULE_PROJECT_DIRECTORY', os.path.join(os.path.dirname(__file__), '..', '..', '..'))
CLUSTER_DIR = os.path.join(PROJECT, '.local', 'molecule-default')
PORT = int(os.environ.get('PGZD_MOLECULE_DEFAULT_PORT', '55433'))
LARGE_ROWS = 20000
LARGE_TABLES = ['Job', 'JobAssignment', 'TeacherDailyBudget', 'XPAudit', 'MoneyTx', 'Purchase',
                'AchievementAward', 'EventParticipation', 'SystemLog']

with open(os.path.join(PROJECT, 'plans', 't12.yml')) as plan_file:
    PLAN = yaml.safe_load(plan_file)
PLANNED = [(table['name'], index) for table in PLAN['tables'] for index in table['indexes']]


@pytest.fixture(scope='module')
def db():
    with open(os.path.join(CLUSTER_DIR, 'superuser.password')) as password_file:
        password = password_file.read().strip()
    connection = psycopg2.connect(host='127.0.0.1', port=PORT, user='pgzd', password=password, dbname='t12')
    connection.autocommit = True
    yield connection.cursor()
    connection.close()


def test_the_plan_has_the_26_t12_indexes():
    assert len(PLANNED) == 26
    assert len({index['name'] for _, index in PLANNED}) == 26


@pytest.mark.parametrize('table,index', PLANNED, ids=[index['name'] for _, index in PLANNED])
def test_every_planned_index_exists_valid_with_the_planned_columns(db, table, index):
    db.execute("""
        SELECT t.relname, i.indisvalid, i.indisready, i.indisunique,
               ARRAY(SELECT a.attname::text FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
                     JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum ORDER BY k.ord)
        FROM pg_index i
        JOIN pg_class c ON c.oid = i.indexrelid
        JOIN pg_class t ON t.oid = i.indrelid
        WHERE c.relname = %s AND c.relnamespace = 'public'::regnamespace""", (index['name'],))
    row = db.fetchone()
    assert row is not None, 'index %s is missing' % index['name']
    relname, valid, ready, unique, columns = row
    assert relname == table
    assert valid and ready
    assert unique is False
    assert columns == index['columns']


def test_no_invalid_index_is_left_anywhere(db):
    db.execute("SELECT indexrelid::regclass::text FROM pg_index WHERE NOT indisvalid OR NOT indisready")
    assert db.fetchall() == []


def test_no_unplanned_index_was_created(db):
    db.execute("""SELECT c.relname FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid
                  WHERE c.relnamespace = 'public'::regnamespace AND NOT i.indisprimary""")
    planned = [index['name'] for _, index in PLANNED] + [constraint['name'] for constraint in PLAN['constraints']]
    assert sorted(row[0] for row in db.fetchall()) == sorted(planned)


@pytest.mark.parametrize('constraint', PLAN['constraints'], ids=[c['name'] for c in PLAN['constraints']])
def test_every_planned_unique_constraint_exists_backed_by_a_valid_index(db, constraint):
    db.execute("""
        SELECT con.contype, t.relname, pg_get_constraintdef(con.oid), ic.relname, i.indisvalid, i.indisunique
        FROM pg_constraint con
        JOIN pg_class t ON t.oid = con.conrelid
        JOIN pg_class ic ON ic.oid = con.conindid
        JOIN pg_index i ON i.indexrelid = con.conindid
        WHERE con.conname = %s AND con.connamespace = 'public'::regnamespace""", (constraint['name'],))
    rows = db.fetchall()
    assert len(rows) == 1, 'constraint %s is missing' % constraint['name']
    contype, table, definition, index_name, valid, unique = rows[0]
    assert (contype, table, index_name) == ('u', constraint['table'], constraint['name'])
    assert definition == 'UNIQUE (%s)' % ', '.join(constraint['columns'])
    assert valid and unique


def test_no_duplicate_was_renamed_on_clean_data(db):
    db.execute("SELECT to_regclass('pgzd_audit.duplicate_resolution')")
    assert db.fetchone()[0] is None
    db.execute("SELECT count(*) FROM pgzd_audit.ledger WHERE kind = 'renamed_rows'")
    assert db.fetchone()[0] == 0


def test_the_ledger_holds_every_planned_object_as_applied(db):
    db.execute("SELECT kind, object_name, state FROM pgzd_audit.ledger WHERE schema_name = 'public'")
    held = {(kind, name): state for kind, name, state in db.fetchall()}
    planned = {('index', index['name']) for _, index in PLANNED}
    planned |= {('constraint', constraint['name']) for constraint in PLAN['constraints']}
    assert set(held) == planned
    assert set(held.values()) == {'applied'}


@pytest.mark.parametrize('table', LARGE_TABLES)
def test_the_sample_rows_are_all_still_there(db, table):
    db.execute('SELECT count(*) FROM "%s"' % table)
    assert db.fetchone()[0] == LARGE_ROWS


def test_the_server_listens_on_loopback_only(host):
    assert host.socket('tcp://127.0.0.1:%d' % PORT).is_listening
    assert not host.socket('tcp://0.0.0.0:%d' % PORT).is_listening


def test_a_connection_without_the_password_is_refused():
    with pytest.raises(psycopg2.OperationalError, match='password'):
        psycopg2.connect(host='127.0.0.1', port=PORT, user='pgzd', password='', dbname='t12')
