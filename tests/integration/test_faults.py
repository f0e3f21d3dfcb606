# -*- coding: utf-8 -*-
"""Faults in the middle of a concurrent index build, and the rerun that converges (issue 5, point 2).

Each test starts a real run (the module through ``ansible``, or playbooks/indexes.yml through
``ansible-playbook``) that builds three indexes on a table of its own, ``pt_big`` (3 million rows, so a
build takes seconds), and strikes while pg_stat_progress_create_index shows the second build making
progress:

- the build's backend is terminated (pg_terminate_backend);
- ansible-playbook is killed (SIGKILL of its process group; then of the whole control-node side);
- the connection drops (a TCP proxy between the run and the server cuts both sockets);
- the server restarts (pg_ctl restart -m fast), on a cluster of the test's own (see below).

The run must fail (or, for the process-group kill, be gone), then a rerun converges: every planned index
exists, valid and ready, no INVALID index is left on the table, and the table has the rows it had before.

The restart gets a throwaway cluster of its own: restarting the session's cluster would kill the
session-wide connection every later test module uses (the ``db_session`` fixture).
"""

import glob
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

import psycopg2
import pytest

import helpers

pytestmark = pytest.mark.integration

TABLE = 'pt_big'
ROWS = 3000000
# Three builds of a few seconds each; the faults strike during the second one, so a rerun finds one index
# built, one interrupted and one never started.
SPECS = [
    dict(name='pt_big_payload_idx', columns=['payload']),
    dict(name='pt_big_grp_payload_idx', columns=['grp', 'payload']),
    dict(name='pt_big_created_at_idx', columns=['created_at']),
]
TARGET = SPECS[1]['name']
DEFINITIONS = {
    'pt_big_payload_idx': 'CREATE INDEX pt_big_payload_idx ON public.pt_big USING btree (payload)',
    'pt_big_grp_payload_idx': 'CREATE INDEX pt_big_grp_payload_idx ON public.pt_big USING btree (grp, payload)',
    'pt_big_created_at_idx': 'CREATE INDEX pt_big_created_at_idx ON public.pt_big USING btree (created_at)',
}
# Generous bounds for a slow, shared 2-core machine: nothing here measures time, these only stop a hang.
RUN_TIMEOUT = 600
WAIT_TIMEOUT = 300

CREATE_TABLE = """
CREATE TABLE public.pt_big AS
SELECT g::bigint AS id, (g %% 1000)::int AS grp, md5(random()::text) AS payload,
       now() - random() * interval '365 days' AS created_at
FROM generate_series(1, %(rows)s) AS g
"""


# -- the table ------------------------------------------------------------------------------------------

def connect_to(cluster):
    conn = psycopg2.connect(host=cluster['host'], port=cluster['port'], user=cluster['user'],
                            password=cluster['password'], dbname=cluster['dbname'], application_name='pgzd-pytest')
    conn.autocommit = True
    return conn


def create_big_table(conn):
    helpers.query(conn, 'DROP TABLE IF EXISTS public.pt_big')
    helpers.query(conn, CREATE_TABLE, dict(rows=ROWS))
    helpers.query(conn, 'ANALYZE public.pt_big')


def fingerprint(conn):
    """(row count, sum of ids, sum of payload hashes) of pt_big: a lost or changed row shows."""
    return tuple(helpers.query(conn, 'SELECT count(*), sum(id), sum(hashtext(payload)::bigint) FROM public.pt_big')[0])


@pytest.fixture(scope='module')
def big_table(pg_cluster):
    """pt_big on the session's cluster, created once for the module and dropped after it."""
    conn = connect_to(pg_cluster)
    try:
        create_big_table(conn)
        yield fingerprint(conn)
    finally:
        helpers.query(conn, 'DROP TABLE IF EXISTS public.pt_big')
        conn.close()


# -- runs in the background -----------------------------------------------------------------------------

class BackgroundRun(object):
    """An ``ansible`` or ``ansible-playbook`` process of its own session (so its process group is its pid)."""

    started = []  # every run of the current test; the autouse fixture below ends those still running

    def __init__(self, argv, tmp_path, label):
        self.argv = argv
        self.stdout_path = str(tmp_path / ('%s.stdout' % label))
        self.stderr_path = str(tmp_path / ('%s.stderr' % label))
        with open(self.stdout_path, 'w') as out, open(self.stderr_path, 'w') as err:
            self.process = subprocess.Popen(argv, cwd=helpers.REPO_ROOT, env=helpers.ansible_env(), stdout=out,
                                            stderr=err, stdin=subprocess.DEVNULL, start_new_session=True)
        self.pid = self.process.pid
        BackgroundRun.started.append(self)

    def wait(self, timeout=RUN_TIMEOUT):
        return self.process.wait(timeout=timeout)

    def output(self):
        with open(self.stdout_path) as out, open(self.stderr_path) as err:
            return out.read(), err.read()

    def document(self):
        """The JSON document of the test callback (None when the process died before printing it)."""
        for line in reversed(self.output()[0].splitlines()):
            if line.startswith('{"plays"'):
                return json.loads(line)
        return None

    def describe(self):
        stdout, stderr = self.output()
        return 'rc %s of %s\nstdout (end):\n%s\nstderr (end):\n%s' % (
            self.process.returncode, ' '.join(self.argv[:3]), stdout[-6000:], stderr[-3000:])


@pytest.fixture(autouse=True)
def end_background_runs():
    """A test that fails half way must not leave its run building: its process group is killed."""
    yield
    for run in BackgroundRun.started:
        if run.process.poll() is None:
            try:
                os.killpg(run.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            run.process.wait(timeout=60)
    del BackgroundRun.started[:]


def module_args(cluster, port=None):
    return dict(login_host=cluster['host'], login_port=port or cluster['port'], login_user=cluster['user'],
                login_password=cluster['password'], login_db=cluster['dbname'], table=TABLE, indexes=SPECS)


def start_module(cluster, tmp_path, label, port=None):
    argv = [helpers._tool('ansible'), 'localhost', '-m', helpers.fqcn('postgresql_online_index'), '-a',
            json.dumps(module_args(cluster, port))]
    return BackgroundRun(argv, tmp_path, label)


def write_plan(tmp_path):
    plan = dict(name='pt_faults', description='fault tests', schema='public',
                tables=[dict(name=TABLE, indexes=SPECS)])
    path = tmp_path / 'plan.yml'
    path.write_text(json.dumps(plan, indent=2))  # JSON is YAML
    return str(path)


def start_playbook(cluster, tmp_path, label):
    argv = [helpers._tool('ansible-playbook'), 'playbooks/indexes.yml',
            '-e', 'pgzd_plan=%s' % write_plan(tmp_path),
            '-e', 'local_cluster_dir=%s' % cluster['dir'],
            '-e', 'pg_port=%s' % cluster['port'],
            '-e', 'pgzd_artifacts_dir=%s' % (tmp_path / 'artifacts')]
    return BackgroundRun(argv, tmp_path, label)


def module_results(document):
    """Every postgresql_online_index result in a run's JSON document, wherever a task put it (the module's own
    task, or the results of background runs that another task followed)."""
    found = []

    def walk(value):
        if isinstance(value, dict):
            if isinstance(value.get('indexes'), list) and 'lock_retries_used' in value:
                found.append(value)
                return
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(document)
    return found


def run_to_end(run):
    run.wait()
    document = run.document()
    assert document is not None, 'no JSON result: ' + run.describe()
    return document


def rerun_converges(start, before, conn, actions):
    """Run again to the end; it succeeds with the given actions, and the table is as planned.

    With nothing left to do (every action unchanged), a playbook's preflight says so and never starts the module.
    """
    run = start()
    document = run_to_end(run)
    assert run.process.returncode == 0, run.describe()
    results = module_results(document)
    if results or set(actions) != set(['unchanged']):
        assert results, run.describe()
        assert [(i['name'], i['action']) for i in results[-1]['indexes']] == list(zip([s['name'] for s in SPECS],
                                                                                        actions)), results[-1]
    else:
        assert 'Nothing to do: every index of the plan is already in place and valid' in run.output()[0], \
            run.describe()
    assert_converged(conn, before)


# -- the state of the database -------------------------------------------------------------------------

def build_progress(conn, index):
    """The pg_stat_progress_create_index row of the build of C(index), as a dict, or None."""
    rows = helpers.query(conn, """
        SELECT p.pid, p.phase, p.blocks_done, p.blocks_total, p.tuples_done, p.tuples_total
        FROM pg_catalog.pg_stat_progress_create_index p
        JOIN pg_catalog.pg_class c ON c.oid = p.index_relid
        WHERE c.relname = %s AND p.command = 'CREATE INDEX CONCURRENTLY'""", (index,))
    if not rows:
        return None
    return dict(zip(('pid', 'phase', 'blocks_done', 'blocks_total', 'tuples_done', 'tuples_total'), rows[0]))


def wait_for_progress(conn, run, index=TARGET, timeout=WAIT_TIMEOUT):
    """Poll until the build of C(index) reports blocks or tuples done; return its progress row."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        progress = build_progress(conn, index)
        if progress and (progress['blocks_done'] or progress['tuples_done']):
            return progress
        assert run.process.poll() is None, 'the run ended before the build of %s showed progress: %s' % (
            index, run.describe())
        time.sleep(0.05)
    pytest.fail('no progress of the build of %s within %ss: %s' % (index, timeout, run.describe()))


def backend_alive(conn, pid):
    return bool(helpers.query(conn, 'SELECT 1 FROM pg_catalog.pg_stat_activity WHERE pid = %s', (pid,)))


def table_indexes(conn):
    """{name: (indisvalid, indisready)} of every index of pt_big."""
    rows = helpers.query(conn, """
        SELECT c.relname, i.indisvalid, i.indisready
        FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
        WHERE i.indrelid = 'public.pt_big'::regclass""")
    return dict((name, (valid, ready)) for name, valid, ready in rows)


def invalid_indexes(conn):
    """Every index of the database that is not valid and ready."""
    return helpers.query(conn, """
        SELECT n.nspname, c.relname, i.indisvalid, i.indisready
        FROM pg_catalog.pg_index i
        JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE NOT (i.indisvalid AND i.indisready)""")


def assert_converged(conn, before):
    """Every planned index as planned, valid and ready; nothing INVALID anywhere; no build running; no row lost."""
    for spec in SPECS:
        info = helpers.index_info(conn, spec['name'])
        assert info is not None, spec['name']
        assert info['valid'] is True and info['ready'] is True, (spec['name'], info)
        assert info['table'] == TABLE
        assert info['definition'] == DEFINITIONS[spec['name']]
    assert table_indexes(conn) == dict((spec['name'], (True, True)) for spec in SPECS)
    assert invalid_indexes(conn) == []
    assert helpers.query(conn, 'SELECT count(*) FROM pg_catalog.pg_stat_progress_create_index')[0][0] == 0
    assert fingerprint(conn) == before


def assert_interrupted(conn):
    """The damage a rerun has to repair: the first index built, the second INVALID, the third never started."""
    indexes = table_indexes(conn)
    assert sorted(indexes) == sorted(['pt_big_payload_idx', TARGET]), indexes
    assert indexes['pt_big_payload_idx'] == (True, True), indexes
    assert indexes[TARGET][0] is False, indexes  # INVALID (and not ready, unless it stopped in the validation)
    assert build_progress(conn, TARGET) is None


def failure_messages(document):
    """The msg of every failed task of a run."""
    return [result.get('msg', '') for play in document['plays'] for task in play['tasks']
            for result in task['hosts'].values() if result.get('failed')]


def assert_failed_clearly(run):
    """The run failed, and a failed task says which build was lost and that a rerun repairs it."""
    document = run_to_end(run)
    assert run.process.returncode != 0, run.describe()
    messages = failure_messages(document)
    clear = [message for message in messages
             if 'Index "%s" on public.%s' % (TARGET, TABLE) in message
             and 'The connection to the server was lost while the statement ran' in message
             and 'rerun once the server accepts connections again' in message]
    assert clear, messages or run.describe()


# -- processes -----------------------------------------------------------------------------------------

def process_table():
    """{pid: (parent pid, state)} of every process, from /proc."""
    table = {}
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % entry) as handle:
                stat = handle.read()
        except OSError:
            continue
        fields = stat[stat.rindex(')') + 2:].split()
        table[int(entry)] = (int(fields[1]), fields[0])
    return table


def descendants(root):
    """Pids of every living descendant of C(root) (C(root) excluded), ansible's setsid workers included."""
    table = process_table()
    found, frontier = [], [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, state) in table.items():
            if ppid == parent and state != 'Z' and pid not in found:
                found.append(pid)
                frontier.append(pid)
    return found


def alive(pid):
    state = process_table().get(pid)
    return state is not None and state[1] != 'Z'


def kill_all(pids):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def ancestors(pid):
    """Pids of the ancestors of C(pid), nearest first, up to (without) pid 1."""
    table, found = process_table(), []
    while pid in table and table[pid][0] > 1:
        pid = table[pid][0]
        found.append(pid)
    return found


def cmdline(pid):
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as handle:
            return handle.read().replace(b'\0', b' ').decode('utf-8', 'replace')
    except OSError:
        return ''


def client_processes(conn, backend_pid):
    """The local processes of the run that hold the TCP connection of C(backend_pid): the module, and the Ansible
    processes above it (an async job's wrappers are daemons, outside the ansible-playbook process tree)."""
    rows = helpers.query(conn, """
        SELECT client_port, pg_catalog.inet_server_port() FROM pg_catalog.pg_stat_activity WHERE pid = %s""",
                         (backend_pid,))
    if not rows or rows[0][0] is None:
        return []
    client_port, server_port = rows[0]
    inodes = set()
    for table in ('/proc/net/tcp', '/proc/net/tcp6'):
        try:
            with open(table) as handle:
                lines = handle.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local_port = int(fields[1].rsplit(':', 1)[1], 16)
            remote_port = int(fields[2].rsplit(':', 1)[1], 16)
            if local_port == client_port and remote_port == server_port:
                inodes.add('socket:[%s]' % fields[9])
    holders = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            links = [os.readlink('/proc/%s/fd/%s' % (entry, fd)) for fd in os.listdir('/proc/%s/fd' % entry)]
        except OSError:
            continue
        if inodes & set(links):
            holders.append(int(entry))
    found = []
    mine = set([os.getpid()] + ancestors(os.getpid()))
    for pid in holders:
        found.append(pid)
        for parent in ancestors(pid):
            if parent in mine or 'ansible' not in cmdline(parent).lower():
                break
            found.append(parent)
    return sorted(set(found))


def async_job_files(pids):
    """The result files of the Ansible async jobs whose wrappers are among C(pids) (read while they live)."""
    jobs = set()
    for pid in pids:
        words = cmdline(pid).split()
        for position, word in enumerate(words[:-1]):
            if word.endswith('async_wrapper.py') and re.match(r'^j\d+$', words[position + 1]):
                jobs.add(words[position + 1])
    return [os.path.join(os.path.expanduser('~/.ansible_async'), job + '.*') for job in sorted(jobs)]


def remove_files(patterns):
    for pattern in patterns:
        for path in glob.glob(pattern):
            os.unlink(path)


def kill_tree(run, extra=()):
    """SIGKILL the run, every process it started and C(extra), as the loss of the control node would end them.

    They are stopped first (until no new one appears), so none reacts to the death of another.
    """
    stopped = set()
    while True:
        pids = [run.pid] + descendants(run.pid) + list(extra)
        new = [pid for pid in pids if pid not in stopped]
        if not new:
            break
        for pid in new:
            try:
                os.kill(pid, signal.SIGSTOP)
            except ProcessLookupError:
                pass
            stopped.add(pid)
    kill_all(sorted(stopped))
    run.wait(timeout=60)
    return sorted(stopped)


# -- a TCP proxy that can drop its connections ---------------------------------------------------------

class DroppingProxy(object):
    """Forwards 127.0.0.1:<port> to the server; cut() drops every connection at once (both sockets)."""

    def __init__(self, target_host, target_port):
        self.target = (target_host, target_port)
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(('127.0.0.1', 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.pairs = []
        self.lock = threading.Lock()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, dummy = self.listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self.lock:
                if self.closed:
                    client.close()
                    server.close()
                    return
                self.pairs.append((client, server))
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client), daemon=True).start()

    @staticmethod
    def _pump(source, sink):
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def connections(self):
        with self.lock:
            return len(self.pairs)

    def cut(self):
        """Drop every forwarded connection, client side and server side, and accept no new one."""
        with self.lock:
            self.closed = True
            pairs, self.pairs = self.pairs, []
        try:
            self.listener.close()
        except OSError:
            pass
        for pair in pairs:
            for sock in pair:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()


# -- 1. the build's backend is terminated ----------------------------------------------------------------

def test_terminated_build_backend_fails_clearly_and_the_rerun_converges(db, pg_cluster, big_table, tmp_path):
    """pg_terminate_backend of the build: the module fails naming the lost build; the rerun rebuilds it."""
    before = big_table
    run = start_module(pg_cluster, tmp_path, 'first')
    progress = wait_for_progress(db, run)
    assert helpers.query(db, 'SELECT pg_catalog.pg_terminate_backend(%s)', (progress['pid'],)) == [(True,)]

    assert_failed_clearly(run)
    assert_interrupted(db)
    assert fingerprint(db) == before

    rerun_converges(lambda: start_module(pg_cluster, tmp_path, 'rerun'), before, db,
                    ['unchanged', 'rebuilt', 'created'])


# -- 2. ansible-playbook killed ------------------------------------------------------------------------

def test_playbook_process_group_killed_then_the_rerun_converges(db, pg_cluster, big_table, tmp_path):
    """kill -9 of ansible-playbook's process group: the run is gone, but not its build.

    ansible-core's workers run in sessions of their own (setsid), and an async task's job is a daemon of its own:
    neither is in the killed group, so the module of the table goes on with the build in flight. The run's
    migration lock goes with its ansible-playbook, so the module stops before its next DDL instead of going on
    unlocked. A rerun started at once must not break anything: it either finds nothing left to do or refuses,
    naming the build in progress (or the run holding the migration lock).
    Once the orphaned module has ended, a rerun converges, building what the orphan did not start.
    """
    before = big_table
    run = start_playbook(pg_cluster, tmp_path, 'first')
    progress = wait_for_progress(db, run)
    clients = client_processes(db, progress['pid'])
    assert clients, 'no local process holds the connection of backend %s' % progress['pid']
    tree = descendants(run.pid)
    job_files = async_job_files(clients)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait(timeout=60)
    try:
        at_once = start_playbook(pg_cluster, tmp_path, 'at-once')
        at_once.wait()
        text = ' '.join(' '.join(at_once.output()).split())
        refusals = ('DDL of an earlier pg-zero-downtime run is still running', 'is being built right now by backend pid',
                    'holds the migration lock of database')
        assert at_once.process.returncode == 0 or any(refusal in text for refusal in refusals), at_once.describe()
        assert fingerprint(db) == before

        helpers.wait_until(lambda: not helpers.query(db, "SELECT 1 FROM pg_stat_activity WHERE application_name LIKE "
                                                 "'pgzd-lock run=%%'"), what='the end of the killed run\'s lock')
        # Normally the build in flight outlives the lock by seconds: then nothing after it may start.
        in_flight_when_the_lock_went = build_progress(db, TARGET) is not None

        helpers.wait_until(lambda: not any(alive(pid) for pid in clients), what='the end of the orphaned module')
        helpers.wait_until(lambda: not helpers.pgzd_statements(db), what='the end of every pg-zero-downtime statement')
    finally:
        # What is left of the killed run (a worker with nobody to report to) is ended here, and the result
        # file of its async job (nobody will collect it) removed.
        kill_all([pid for pid in set(tree) | set(clients) if alive(pid)])
        remove_files(job_files)

    # The orphan finished the build in flight, and started no other once the lock was gone.
    last = SPECS[-1]['name']
    if in_flight_when_the_lock_went:
        assert not helpers.relation_exists(db, last)
    rerun_converges(lambda: start_playbook(pg_cluster, tmp_path, 'rerun'), before, db,
                    ['unchanged', 'unchanged', 'unchanged' if helpers.relation_exists(db, last) else 'created'])


def test_control_node_killed_then_the_orphaned_build_ends_and_the_rerun_converges(db, pg_cluster, big_table,
                                                                                   tmp_path):
    """The whole control-node side dies at once (ansible-playbook, its workers, the module, an async job).

    The server reads a client's socket only between statements: only client_connection_check_interval (set by
    the module's session) makes it notice the dead client and end the orphaned build. Without it the build runs
    to its end, and a rerun in the meantime refuses ("being built right now").
    """
    before = big_table
    run = start_playbook(pg_cluster, tmp_path, 'first')
    progress = wait_for_progress(db, run)
    clients = client_processes(db, progress['pid'])
    assert clients, 'no local process holds the connection of backend %s' % progress['pid']
    job_files = async_job_files(clients)
    try:
        killed = kill_tree(run, extra=clients)
    finally:
        remove_files(job_files)  # the job died with its wrapper: nobody will collect its result file
    assert set(clients) <= set(killed)
    helpers.wait_until(lambda: not backend_alive(db, progress['pid']), what='the end of the orphaned build backend')
    # The build was ended, not finished: the index is INVALID, and the third one was never started.
    assert_interrupted(db)
    assert fingerprint(db) == before

    rerun_converges(lambda: start_playbook(pg_cluster, tmp_path, 'rerun'), before, db,
                    ['unchanged', 'rebuilt', 'created'])


# -- 3. the connection drops -----------------------------------------------------------------------------

def test_dropped_connection_fails_and_the_direct_rerun_converges(db, pg_cluster, big_table, tmp_path):
    """The run connects through a proxy that drops both sockets mid-build: the module fails naming the lost build,
    the server ends the build once it sees its client gone (client_connection_check_interval), and a rerun
    connected directly rebuilds it."""
    before = big_table
    proxy = DroppingProxy(pg_cluster['host'], pg_cluster['port'])
    run = start_module(pg_cluster, tmp_path, 'first', port=proxy.port)
    try:
        progress = wait_for_progress(db, run)
        assert proxy.connections() >= 1
    finally:
        proxy.cut()

    assert_failed_clearly(run)
    helpers.wait_until(lambda: not backend_alive(db, progress['pid']), what='the end of the cut-off build backend')
    assert_interrupted(db)
    assert fingerprint(db) == before

    rerun_converges(lambda: start_module(pg_cluster, tmp_path, 'rerun'), before, db,
                    ['unchanged', 'rebuilt', 'created'])


# -- 4. the server restarts --------------------------------------------------------------------------------

def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


@pytest.fixture
def own_cluster():
    """A throwaway cluster of this test alone (no seed data), started and removed with the project's playbook.

    The restart kills every connection to the server it restarts; on the session's cluster that would be the
    connection of the ``db_session`` fixture, which every later test module uses.
    """
    port = free_port()
    directory = os.path.join(helpers.REPO_ROOT, '.local', 'pytest-faults-%d' % port)
    settings = dict(local_cluster_dir=directory, pg_port=port)
    no_seed = ['-e', json.dumps(dict(local_cluster_seed_sql=[]))]
    cluster = None
    try:
        started = helpers.run_playbook('playbooks/local_cluster.yml', dict(settings, local_cluster_state='started'),
                                       options=no_seed)
        assert started.returncode == 0, started.stdout[-6000:] + started.stderr[-3000:]
        with open(os.path.join(directory, 'superuser.password')) as handle:
            password = handle.readline().strip()
        cluster = dict(host='127.0.0.1', port=port, user='pgzd', password=password, dbname='t12', dir=directory)
        yield cluster
    finally:
        if cluster:
            try:  # without the table, the shutdown checkpoint of the removal is short
                conn = connect_to(cluster)
                helpers.query(conn, 'DROP TABLE IF EXISTS public.pt_big')
                conn.close()
            except psycopg2.Error:
                pass
        removed = helpers.run_playbook('playbooks/local_cluster.yml', dict(settings, local_cluster_state='absent'),
                                       options=no_seed)
        assert removed.returncode == 0, removed.stdout[-6000:]


def pg_ctl_restart(cluster):
    """pg_ctl restart -m fast, as the OS user that owns the data directory (root cannot run the server)."""
    data = os.path.join(cluster['dir'], 'data')
    with open(os.path.join(data, 'PG_VERSION')) as handle:
        major = handle.read().strip()
    pg_ctl = '/usr/lib/postgresql/%s/bin/pg_ctl' % major
    if not os.path.exists(pg_ctl):
        pg_ctl = shutil.which('pg_ctl')
    owner = os.stat(data).st_uid
    run_as = [] if owner == os.getuid() else ['runuser', '-u', pwd.getpwuid(owner).pw_name, '--']
    # --log: the new server must not inherit this process's output (and the log stays where the role keeps it).
    restarted = subprocess.run(run_as + [pg_ctl, 'restart', '-D', data, '-m', 'fast', '-w', '-t', '300',
                                         '-l', os.path.join(cluster['dir'], 'postgresql.log')],
                               cwd=cluster['dir'], capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert restarted.returncode == 0, (restarted.stdout, restarted.stderr)


def connect_when_up(cluster, timeout=WAIT_TIMEOUT):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return connect_to(cluster)
        except psycopg2.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_server_restarted_mid_build_fails_clearly_and_the_rerun_converges(own_cluster, tmp_path):
    """pg_ctl restart -m fast mid-build: the playbook fails naming the lost build; once the server is back, the
    rerun rebuilds the INVALID index and builds the rest, and every row survived the restart."""
    conn = connect_to(own_cluster)
    try:
        create_big_table(conn)
        before = fingerprint(conn)
        run = start_playbook(own_cluster, tmp_path, 'first')
        wait_for_progress(conn, run)
        started = helpers.query(conn, 'SELECT pg_catalog.pg_postmaster_start_time()')[0][0]
    finally:
        conn.close()

    pg_ctl_restart(own_cluster)
    conn = connect_when_up(own_cluster)
    try:
        assert helpers.query(conn, 'SELECT pg_catalog.pg_postmaster_start_time()')[0][0] > started
        assert_failed_clearly(run)
        assert_interrupted(conn)
        assert fingerprint(conn) == before

        rerun_converges(lambda: start_playbook(own_cluster, tmp_path, 'rerun'), before, conn,
                        ['unchanged', 'rebuilt', 'created'])
    finally:
        conn.close()
