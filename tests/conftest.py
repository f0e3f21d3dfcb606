# -*- coding: utf-8 -*-
"""Fixtures of the pg-zero-downtime test suite.

Unit tests (tests/unit) need nothing. Integration tests (tests/integration, marker ``integration``)
run against a real, dedicated PostgreSQL cluster started once per session with the project's own
playbook (playbooks/local_cluster.yml) on 127.0.0.1:55434 and deleted at the end.

    .venv/bin/python -m pytest tests -q                  # everything
    .venv/bin/python -m pytest tests -q -m 'not integration'   # no server needed
"""

import os

import pytest

import helpers

CLUSTER_PORT = int(os.environ.get('PGZD_TEST_PORT', '55434'))
CLUSTER_DIR = os.path.join(helpers.REPO_ROOT, '.local', 'pytest-cluster' + ('' if CLUSTER_PORT == 55434 else '-%d' % CLUSTER_PORT))
# 0.02 = 4,000 rows in each large table: enough for real concurrent builds, seeded in a few seconds.
CLUSTER_SCALE = '0.02'
CLUSTER_DB = 't12'
CLUSTER_USER = 'pgzd'


def pytest_configure(config):
    config.addinivalue_line('markers', 'integration: needs a real PostgreSQL cluster (started by the session '
                                       'fixture with playbooks/local_cluster.yml on port %d)' % CLUSTER_PORT)
    config.addinivalue_line('markers', 'unit: pure logic, no server')


def pytest_collection_modifyitems(config, items):
    for item in items:
        path = str(item.path)
        if os.sep + 'integration' + os.sep in path:
            item.add_marker(pytest.mark.integration)
        elif os.sep + 'unit' + os.sep in path:
            item.add_marker(pytest.mark.unit)


def _cluster_vars(state):
    return dict(local_cluster_dir=CLUSTER_DIR, pg_port=CLUSTER_PORT, local_cluster_scale=CLUSTER_SCALE,
                local_cluster_state=state)


def _remove_cluster():
    return helpers.run_playbook('playbooks/local_cluster.yml', _cluster_vars('absent'))


@pytest.fixture(scope='session')
def pg_cluster():
    """Connection info of a fresh throwaway cluster holding the seeded T12 database."""
    # A cluster left by an interrupted session may hold stray indexes: start from scratch.
    if os.path.exists(CLUSTER_DIR):
        _remove_cluster()
    try:
        started = helpers.run_playbook('playbooks/local_cluster.yml', _cluster_vars('started'))
        if started.returncode != 0:
            pytest.fail('could not start the test cluster (rc %s):\n%s\n%s'
                        % (started.returncode, started.stdout[-6000:], started.stderr[-3000:]), pytrace=False)
        with open(os.path.join(CLUSTER_DIR, 'superuser.password')) as handle:
            password = handle.readline().strip()
        yield dict(host='127.0.0.1', port=CLUSTER_PORT, user=CLUSTER_USER, password=password, dbname=CLUSTER_DB,
                   dir=CLUSTER_DIR)
    finally:
        removed = _remove_cluster()
        if removed.returncode != 0:
            print('WARNING: could not remove the test cluster in %s:\n%s' % (CLUSTER_DIR, removed.stdout[-3000:]))


def _connect(pg_cluster):
    import psycopg2
    conn = psycopg2.connect(host=pg_cluster['host'], port=pg_cluster['port'], user=pg_cluster['user'],
                            password=pg_cluster['password'], dbname=pg_cluster['dbname'],
                            application_name='pgzd-pytest')
    # Autocommit: an idle open transaction here would make every CREATE INDEX CONCURRENTLY wait for it.
    conn.autocommit = True
    return conn


@pytest.fixture(scope='session')
def db_session(pg_cluster):
    conn = _connect(pg_cluster)
    yield conn
    conn.close()


@pytest.fixture
def db(db_session):
    """Autocommit psycopg2 connection; every index, unique constraint and audit table a test leaves is dropped after it."""
    leftovers = helpers.droppable_indexes(db_session) + helpers.unique_constraints(db_session)
    assert not leftovers, 'indexes or unique constraints left over by an earlier test: %s' % leftovers
    yield db_session
    for table, name in helpers.unique_constraints(db_session):
        helpers.query(db_session, 'ALTER TABLE "public"."%s" DROP CONSTRAINT "%s"'
                      % (table.replace('"', '""'), name.replace('"', '""')))
    for name in helpers.droppable_indexes(db_session):
        helpers.drop_index(db_session, name)
    helpers.query(db_session, 'DROP SCHEMA IF EXISTS pgzd_audit CASCADE')


@pytest.fixture
def connect(pg_cluster):
    """Factory of extra autocommit connections (closed after the test), e.g. to hold a lock."""
    opened = []

    def factory():
        conn = _connect(pg_cluster)
        opened.append(conn)
        return conn

    yield factory
    for conn in opened:
        conn.close()  # ends any transaction a test opened with an explicit BEGIN


@pytest.fixture
def login(pg_cluster):
    """The login_* options of the modules for the test cluster."""
    return dict(login_host=pg_cluster['host'], login_port=pg_cluster['port'], login_user=pg_cluster['user'],
                login_password=pg_cluster['password'], login_db=pg_cluster['dbname'])


@pytest.fixture
def run_module(login):
    """run_module(name, check=False, diff=False, **args): the module's result through real Ansible."""
    def runner(module, check=False, diff=False, **args):
        return helpers.run_ansible_module(module, dict(login, **args), check=check, diff=diff)
    return runner
