# -*- coding: utf-8 -*-
"""postgresql_online_unique_constraint through real Ansible against a real PostgreSQL cluster (see tests/conftest.py).

Every test works on "Class" and the constraint Class_name_grade_key (UNIQUE (name, grade)); the sample data
has no duplicate (name, grade). The ``db`` fixture drops the unique constraints and leftover indexes a test
leaves; rows and CHECK constraints a test adds are removed by the test itself.
"""

import threading
import time

import psycopg2
import pytest

import helpers
from helpers import index_info, relation_exists

pytestmark = pytest.mark.integration

MODULE = 'postgresql_online_unique_constraint'
NAME = 'Class_name_grade_key'
KEY = dict(name=NAME, table='Class', columns=['name', 'grade'])

CREATE_SQL = ('CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS "Class_name_grade_key" ON "public"."Class" '
              'USING "btree" ("name", "grade")')
ADD_SQL = ('ALTER TABLE "public"."Class" ADD CONSTRAINT "Class_name_grade_key" UNIQUE USING INDEX '
           '"Class_name_grade_key"')
DROP_CONSTRAINT_SQL = 'ALTER TABLE "public"."Class" DROP CONSTRAINT IF EXISTS "Class_name_grade_key"'
DROP_INDEX_SQL = 'DROP INDEX CONCURRENTLY IF EXISTS "public"."Class_name_grade_key"'
INDEX_DEFINITION = 'CREATE UNIQUE INDEX "Class_name_grade_key" ON public."Class" USING btree (name, grade)'


# -- catalog helpers -----------------------------------------------------------------------------------

def constraint(db, name=NAME):
    """dict(type, definition, table, index, index_valid, index_unique) of constraint C(name) in public, or None."""
    rows = helpers.query(db, """
        SELECT con.contype::text, pg_catalog.pg_get_constraintdef(con.oid), t.relname::text, ic.relname::text,
               i.indisvalid, i.indisunique
        FROM pg_catalog.pg_constraint con
        JOIN pg_catalog.pg_class t ON t.oid = con.conrelid
        LEFT JOIN pg_catalog.pg_class ic ON ic.oid = con.conindid
        LEFT JOIN pg_catalog.pg_index i ON i.indexrelid = con.conindid
        WHERE con.connamespace = 'public'::regnamespace AND con.conname = %s""", (name,))
    if not rows:
        return None
    kind, definition, table, index, valid, unique = rows[0]
    return dict(type=kind, definition=definition, table=table, index=index, index_valid=valid, index_unique=unique)


def catalog(db):
    """Snapshot of everything a run could change: every index of public and every constraint of "Class"."""
    constraints = helpers.query(db, """
        SELECT conname::text, contype::text, pg_catalog.pg_get_constraintdef(oid) FROM pg_catalog.pg_constraint
        WHERE conrelid = '"Class"'::regclass ORDER BY 1""")
    return helpers.all_indexes(db), constraints


def class_rows(db):
    return helpers.query(db, 'SELECT count(*) FROM "Class"')[0][0]


def assert_the_constraint_is_in_place(db):
    found = constraint(db)
    assert found == dict(type='u', definition='UNIQUE (name, grade)', table='Class', index=NAME, index_valid=True,
                         index_unique=True)
    assert index_info(db, NAME)['definition'] == INDEX_DEFINITION


def assert_refused(result, db, before, *fragments):
    """The task failed, ran no DDL, and left the catalog as it was; its message names every fragment."""
    helpers.assert_failed_without_change(result, before, catalog(db), *fragments)


def make_invalid_index(db, name=NAME):
    """A failed concurrent UNIQUE build on duplicate data leaves an INVALID unique index behind."""
    helpers.query(db, 'INSERT INTO "Class" ("id", "name", "grade", "updatedAt") '
                      "SELECT 'pt_invalid_' || id, name, grade, now() FROM \"Class\" ORDER BY id LIMIT 1")
    try:
        with pytest.raises(psycopg2.errors.UniqueViolation):
            helpers.query(db, 'CREATE UNIQUE INDEX CONCURRENTLY "%s" ON "Class" ("name", "grade")' % name)
    finally:
        helpers.query(db, "DELETE FROM \"Class\" WHERE id LIKE 'pt_invalid_%'")
    info = index_info(db, name)
    assert info is not None and info['valid'] is False and info['unique'] is True
    return info


def add_constraint_by_hand(db):
    """The planned constraint, as the module leaves it, its ledger row included (set up directly: quicker than a module
    run)."""
    helpers.query(db, 'CREATE UNIQUE INDEX "Class_name_grade_key" ON "Class" ("name", "grade")')
    helpers.query(db, ADD_SQL)
    helpers.record_in_ledger(db, 'constraint', 'Class', NAME, 'UNIQUE (name, grade)')
    assert_the_constraint_is_in_place(db)


def end_transaction(conn):
    # Autocommit connection whose transaction was opened with an explicit BEGIN: end it explicitly.
    helpers.query(conn, 'ROLLBACK')


class Background(object):
    """Runs C(work) in a thread; join() returns its result or raises its exception."""

    def __init__(self, work):
        self.result = self.error = None
        self.thread = threading.Thread(target=self._run, args=(work,), daemon=True)
        self.thread.start()

    def _run(self, work):
        try:
            self.result = work()
        except BaseException as error:  # handed to the test thread by join()
            self.error = error

    def join(self, timeout=120):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), 'background work still running after %ss' % timeout
        if self.error is not None:
            raise self.error
        return self.result


# -- create, rerun, check mode, diff --------------------------------------------------------------------

@pytest.mark.majors()
def test_create_builds_the_unique_index_concurrently_then_attaches_it(db, run_module):
    rows = class_rows(db)
    result = run_module(MODULE, diff=True, **KEY)

    assert result.get('failed') is not True, result
    assert result['changed'] is True
    assert result['queries'] == [CREATE_SQL, ADD_SQL]
    entry = result['constraint']
    assert (entry['action'], entry['name'], entry['schema'], entry['table'], entry['columns']) == (
        'created', NAME, 'public', 'Class', ['name', 'grade'])
    assert entry['statements'] == [CREATE_SQL, ADD_SQL]
    assert entry['definition'] == 'UNIQUE (name, grade)'
    assert entry['retries'] == 0 and result['lock_retries_used'] == 0
    assert result['diff'] == dict(before='-- Class_name_grade_key: absent\n',
                                  after='CONSTRAINT Class_name_grade_key UNIQUE (name, grade)\n',
                                  prepared='-- The statements sent, in order:\n%s;\n%s;\n' % (CREATE_SQL, ADD_SQL))
    assert_the_constraint_is_in_place(db)
    assert class_rows(db) == rows
    # The constraint enforces uniqueness.
    with pytest.raises(psycopg2.errors.UniqueViolation):
        helpers.query(db, 'INSERT INTO "Class" ("id", "name", "grade", "updatedAt") '
                          "SELECT 'pt_enforced', name, grade, now() FROM \"Class\" ORDER BY id LIMIT 1")

    again = run_module(MODULE, diff=True, **KEY)
    assert again.get('failed') is not True, again
    assert again['changed'] is False
    assert again['queries'] == []
    assert again['constraint']['action'] == 'unchanged' and again['constraint']['statements'] == []
    assert again['diff']['before'] == again['diff']['after'] == 'CONSTRAINT Class_name_grade_key UNIQUE (name, grade)\n'
    assert_the_constraint_is_in_place(db)


def test_check_mode_shows_the_statements_and_changes_nothing(db, run_module):
    before = catalog(db)
    result = run_module(MODULE, check=True, diff=True, **KEY)

    assert result.get('failed') is not True, result
    assert result['changed'] is True
    assert result['queries'] == [CREATE_SQL, ADD_SQL]
    assert result['constraint']['action'] == 'created'
    assert result['constraint']['definition'] is None
    # The diff shows the exact statements a real run sends: the unique index CONCURRENTLY, then the constraint on it.
    assert result['diff'] == dict(before='-- Class_name_grade_key: absent\n',
                                  after='CONSTRAINT Class_name_grade_key UNIQUE (name, grade)\n',
                                  prepared='-- The statements a real run would send, in order:\n%s;\n%s;\n'
                                           % (CREATE_SQL, ADD_SQL))
    assert catalog(db) == before
    assert constraint(db) is None and not relation_exists(db, NAME)


# -- state absent ----------------------------------------------------------------------------------------

def test_absent_drops_the_constraint_and_its_index_then_is_unchanged(db, run_module):
    add_constraint_by_hand(db)

    result = run_module(MODULE, diff=True, state='absent', **KEY)
    assert result.get('failed') is not True, result
    assert result['changed'] is True
    assert result['queries'] == [DROP_CONSTRAINT_SQL]
    assert result['constraint']['action'] == 'dropped' and result['constraint']['definition'] is None
    assert result['diff'] == dict(before='CONSTRAINT Class_name_grade_key UNIQUE (name, grade)\n',
                                  after='-- Class_name_grade_key: absent\n',
                                  prepared='-- The statements sent, in order:\n%s;\n' % DROP_CONSTRAINT_SQL)
    assert constraint(db) is None
    assert not relation_exists(db, NAME)

    again = run_module(MODULE, state='absent', **KEY)
    assert again.get('failed') is not True, again
    assert again['changed'] is False and again['queries'] == []
    assert again['constraint']['action'] == 'unchanged'


def test_absent_drops_a_leftover_unique_index_concurrently(db, run_module):
    # A unique index of the name that no run of the plan made is left alone.
    helpers.query(db, 'CREATE UNIQUE INDEX "Class_name_grade_key" ON "Class" ("name", "grade")')
    result = run_module(MODULE, state='absent', **KEY)
    assert result.get('failed') is not True and result['changed'] is False, result
    assert 'constraint "Class_name_grade_key" is not in the ledger' in result['constraint']['left_alone']
    assert relation_exists(db, NAME)
    # A build whose ADD CONSTRAINT never ran leaves the valid unique index behind, and its intended ledger row.
    helpers.record_in_ledger(db, 'constraint', 'Class', NAME, 'UNIQUE (name, grade)', state='intended')
    result = run_module(MODULE, state='absent', **KEY)
    assert result.get('failed') is not True, result
    assert result['changed'] is True
    assert result['queries'] == [DROP_INDEX_SQL]
    assert result['constraint']['action'] == 'dropped'
    assert not relation_exists(db, NAME)
    assert constraint(db) is None


# -- attach and rebuild ----------------------------------------------------------------------------------

def test_a_valid_equivalent_index_is_attached_without_a_rebuild(db, run_module):
    helpers.query(db, 'CREATE UNIQUE INDEX "Class_name_grade_key" ON "Class" ("name", "grade")')
    oid = helpers.query(db, "SELECT '\"Class_name_grade_key\"'::regclass::oid")[0][0]

    result = run_module(MODULE, diff=True, **KEY)

    assert result.get('failed') is not True, result
    assert result['changed'] is True
    assert result['constraint']['action'] == 'attached'
    assert result['queries'] == [ADD_SQL]
    assert result['diff']['before'] == '-- Class_name_grade_key: no constraint; index %s\n' % INDEX_DEFINITION
    assert_the_constraint_is_in_place(db)
    # The very index built by hand backs the constraint: it was not rebuilt.
    assert helpers.query(db, "SELECT '\"Class_name_grade_key\"'::regclass::oid")[0][0] == oid


def test_an_invalid_leftover_is_dropped_and_rebuilt(db, run_module):
    make_invalid_index(db)
    result = run_module(MODULE, **KEY)
    assert result.get('failed') is not True, result
    assert result['constraint']['action'] == 'rebuilt'
    assert result['queries'] == [DROP_INDEX_SQL, CREATE_SQL, ADD_SQL]
    assert_the_constraint_is_in_place(db)


# -- conflicts and bad input ---------------------------------------------------------------------------

OTHER_CONSTRAINTS = [
    ('UNIQUE ("grade", "name")', 'its columns are (grade, name), planned (name, grade)'),
    ('CHECK ("grade" > 0)', 'it is a CHECK constraint, not UNIQUE'),
]


@pytest.mark.parametrize('definition,difference', OTHER_CONSTRAINTS, ids=['other-columns', 'check'])
def test_a_different_constraint_of_that_name_is_never_replaced_nor_dropped(db, run_module, definition, difference):
    helpers.query(db, 'ALTER TABLE "Class" ADD CONSTRAINT "Class_name_grade_key" %s' % definition)
    try:
        existing = constraint(db)
        before = catalog(db)
        for state in ('present', 'absent'):
            result = run_module(MODULE, state=state, **KEY)
            assert_refused(result, db, before, 'a different constraint named "Class_name_grade_key" already exists '
                                               'on public.Class', difference,
                           'existing: %s' % existing['definition'], 'planned:  UNIQUE (name, grade)')
            assert constraint(db) == existing
    finally:
        helpers.query(db, 'ALTER TABLE "Class" DROP CONSTRAINT IF EXISTS "Class_name_grade_key"')


def test_an_index_of_that_name_with_other_columns_is_refused(db, run_module):
    helpers.query(db, 'CREATE UNIQUE INDEX "Class_name_grade_key" ON "Class" ("grade", "name")')
    before = catalog(db)

    result = run_module(MODULE, **KEY)
    assert_refused(result, db, before, 'index "public.Class_name_grade_key" already exists and cannot back the '
                                       'constraint', 'its key columns are (grade, name), planned (name, grade)')

    absent = run_module(MODULE, state='absent', **KEY)
    assert absent.get('failed') is True, absent
    assert absent['queries'] == [] and absent['changed'] is False
    assert "is not the constraint's index" in absent['msg'] and 'left alone' in absent['msg']
    assert catalog(db) == before
    assert index_info(db, NAME)['valid'] is True and constraint(db) is None


BAD_INPUT = [
    (dict(KEY, table='NoSuchTable'), 'table public.NoSuchTable does not exist'),
    (dict(KEY, columns=['name', 'level']), 'column(s) "level" not found in public.Class'),
    (dict(KEY, name='c' * 70), 'is 70 bytes long'),
]


@pytest.mark.parametrize('args,fragment', BAD_INPUT, ids=['missing-table', 'missing-column', 'long-name'])
def test_bad_input_fails_with_a_clear_message_and_changes_nothing(db, run_module, args, fragment):
    before = catalog(db)
    result = run_module(MODULE, **args)
    assert_refused(result, db, before, 'The unique constraint cannot be added', fragment)
    assert constraint(db, args['name']) is None and not relation_exists(db, args['name'])


BAD_OPTIONS = [('lock_timeout', '2 secs'), ('lock_retries', -1)]


@pytest.mark.parametrize('option,value', BAD_OPTIONS, ids=[option for option, value in BAD_OPTIONS])
def test_a_malformed_option_is_refused_before_any_ddl(db, run_module, option, value):
    before = catalog(db)
    result = run_module(MODULE, **dict(KEY, **{option: value}))
    assert result.get('failed') is True, result
    assert option in result['msg'], result['msg']
    assert result.get('queries') == [] and result['changed'] is False, result
    assert catalog(db) == before


# -- lock contention -------------------------------------------------------------------------------------

class ReaderWriter(object):
    """Short statements on "Class" in a loop on their own connection, each timed, until stop()."""

    def __init__(self, conn, row_id):
        self.conn = conn
        self.row_id = row_id
        self.samples = []  # (started, finished) per statement, time.monotonic()
        self.stopping = threading.Event()
        helpers.query(conn, "SET statement_timeout = '20s'")  # never hang the suite
        self.worker = Background(self._loop)

    def _loop(self):
        statements = [('SELECT count(*) FROM "Class"', None),
                      ('UPDATE "Class" SET "updatedAt" = now() WHERE "id" = %s', (self.row_id,))]
        while not self.stopping.is_set():
            for statement, params in statements:
                started = time.monotonic()
                helpers.query(self.conn, statement, params)
                self.samples.append((started, time.monotonic()))
            time.sleep(0.02)

    def stop(self):
        self.stopping.set()
        self.worker.join(60)

    def between(self, start, end):
        return [finished - started for started, finished in self.samples if started >= start and finished <= end]


def test_lock_contention_on_the_alter_fails_fast_without_blocking_the_application(db, connect, run_module):
    # Only the ALTER TABLE remains (action attached): the step that needs ACCESS EXCLUSIVE.
    helpers.query(db, 'CREATE UNIQUE INDEX "Class_name_grade_key" ON "Class" ("name", "grade")')
    row_id, updated_at = helpers.query(db, 'SELECT "id", "updatedAt" FROM "Class" ORDER BY "id" DESC LIMIT 1')[0]
    blocker = connect()
    blocker_pid = blocker.get_backend_pid()
    helpers.query(blocker, 'BEGIN')
    helpers.query(blocker, 'SELECT count(*) FROM "Class"')  # holds ACCESS SHARE until the transaction ends
    args = dict(KEY, lock_timeout='1s', lock_retries=2, lock_retry_delay=0.2)
    traffic = ReaderWriter(connect(), row_id)
    try:
        time.sleep(0.1)
        started = time.monotonic()
        result = Background(lambda: run_module(MODULE, **args)).join()
        finished = time.monotonic()
        traffic.stop()

        assert result.get('failed') is True, result
        message = result['msg']
        assert ADD_SQL in message
        assert 'failed after 3 attempt(s)' in message
        assert 'lock timeout' in message and 'lock_timeout=1s' in message
        assert 'lock holder: pid %d AccessShareLock granted=True' % blocker_pid in message
        assert 'What to do' in message
        assert 'The unique index "Class_name_grade_key" is kept' in message
        assert result['queries'] == [] and result['changed'] is False
        warnings = ' '.join(result.get('warnings', []))
        assert warnings.count('retry') == 2, result.get('warnings')
        # Nothing half-done: no constraint, the hand-made index still valid and unique.
        assert constraint(db) is None
        info = index_info(db, NAME)
        assert info['valid'] is True and info['unique'] is True

        latencies = traffic.between(started, finished)
        assert len(latencies) >= 5, 'the application traffic did not run during the module run'
        # The readers and writers did queue behind the ALTER (the test is not vacuous) ...
        assert max(latencies) > 0.5, latencies
        # ... but never for much longer than the lock_timeout of one attempt.
        assert max(latencies) < 1.0 + 1.5, latencies
    finally:
        traffic.stop()
        end_transaction(blocker)
        helpers.query(db, 'UPDATE "Class" SET "updatedAt" = %s WHERE "id" = %s', (updated_at, row_id))

    rerun = run_module(MODULE, **args)
    assert rerun.get('failed') is not True, rerun
    assert rerun['constraint']['action'] == 'attached' and rerun['queries'] == [ADD_SQL]
    assert_the_constraint_is_in_place(db)


def test_absent_under_lock_contention_fails_and_keeps_the_constraint(db, connect, run_module):
    add_constraint_by_hand(db)
    blocker = connect()
    helpers.query(blocker, 'BEGIN')
    helpers.query(blocker, 'SELECT count(*) FROM "Class"')
    try:
        result = run_module(MODULE, state='absent', lock_timeout='200ms', lock_retries=1, lock_retry_delay=0.1, **KEY)
    finally:
        end_transaction(blocker)
    assert result.get('failed') is True, result
    assert DROP_CONSTRAINT_SQL in result['msg'] and 'failed after 2 attempt(s)' in result['msg']
    assert 'lock holder: pid %d' % blocker.get_backend_pid() in result['msg']
    assert 'nothing was changed by this step' in result['msg']
    assert result['changed'] is False
    assert_the_constraint_is_in_place(db)


def test_a_failure_after_retries_reports_the_retries_used(db, connect, run_module):
    helpers.query(db, 'CREATE UNIQUE INDEX "Class_name_grade_key" ON "Class" ("name", "grade")')
    blocker = connect()
    helpers.query(blocker, 'BEGIN')
    helpers.query(blocker, 'SELECT count(*) FROM "Class"')
    try:
        result = run_module(MODULE, lock_timeout='100ms', lock_retries=1, lock_retry_delay=0.05, **KEY)
    finally:
        end_transaction(blocker)
    assert result.get('failed') is True, result
    assert 'failed after 2 attempt(s)' in result['msg']
    assert sum('retry 1 of 1' in warning for warning in result.get('warnings', [])) == 1
    assert constraint(db) is None
    assert result['lock_retries_used'] == 1
    assert result['constraint']['retries'] == 1


def test_an_open_read_transaction_does_not_stop_the_build_only_the_alter(db, connect, run_module):
    # The concurrent build does not wait for a READ COMMITTED reader; the ALTER TABLE does.
    blocker = connect()
    helpers.query(blocker, 'BEGIN')
    helpers.query(blocker, 'SELECT count(*) FROM "Class"')
    args = dict(KEY, lock_timeout='300ms', index_lock_timeout='1s', lock_retries=1, lock_retry_delay=0.1)
    try:
        result = run_module(MODULE, **args)
        assert result.get('failed') is True, result
        assert result['queries'] == [CREATE_SQL] and result['changed'] is True
        assert ADD_SQL + ' failed after 2 attempt(s)' in result['msg']
        assert constraint(db) is None
        assert index_info(db, NAME)['valid'] is True
    finally:
        end_transaction(blocker)
    rerun = run_module(MODULE, **args)
    assert rerun['constraint']['action'] == 'attached', rerun
    assert_the_constraint_is_in_place(db)


def open_writer(connect, db):
    """A connection inside a transaction that updated one "Class" row: every concurrent build waits for it."""
    writer = connect()
    helpers.query(writer, 'BEGIN')
    helpers.query(writer, 'UPDATE "Class" SET "updatedAt" = "updatedAt" WHERE "id" = '
                          '(SELECT min("id") FROM "Class")')
    return writer


def test_an_open_writer_makes_the_build_wait_until_build_wait_timeout_and_a_rerun_recovers(db, connect, run_module):
    writer = open_writer(connect, db)
    args = dict(KEY, index_lock_timeout='1s', lock_retries=1, lock_retry_delay=0.1, build_wait_timeout=2)
    try:
        started = time.monotonic()
        result = run_module(MODULE, **args)
        assert time.monotonic() - started >= 2  # past index_lock_timeout: the build is not cut short by it
        assert result.get('failed') is True, result
        message = result['msg']
        assert CREATE_SQL + ' gave up after waiting' in message and 'not retried' in message, message
        assert 'build_wait_timeout=2.0s' in message
        assert 'pid %d (user pgzd' % writer.get_backend_pid() in message and 'UPDATE "Class"' in message
        assert result['lock_retries_used'] == 0
        assert constraint(db) is None
        # Either the failed build's INVALID index was dropped, or (DROP INDEX CONCURRENTLY waits for the same
        # writer) it is left and the message says the next run drops and rebuilds it.
        leftover = index_info(db, NAME)
        if leftover is None:
            assert 'The INVALID index the failed build left was dropped' in message
        else:
            assert leftover['valid'] is False
            assert 'could not be dropped' in message and 'the next run drops and rebuilds it' in message
    finally:
        end_transaction(writer)

    rerun = run_module(MODULE, **args)
    assert rerun.get('failed') is not True, rerun
    if leftover is None:
        assert rerun['constraint']['action'] == 'created' and rerun['queries'] == [CREATE_SQL, ADD_SQL]
    else:
        assert rerun['constraint']['action'] == 'rebuilt'
        assert rerun['queries'] == [DROP_INDEX_SQL, CREATE_SQL, ADD_SQL]
    assert_the_constraint_is_in_place(db)
    assert helpers.droppable_indexes(db) == []  # no INVALID index of any name is left


def test_a_failed_build_that_leaves_an_invalid_index_reports_a_change(db, connect, run_module):
    writer = open_writer(connect, db)
    try:
        result = run_module(MODULE, build_wait_timeout=0.5, lock_retries=0, **KEY)
        assert result.get('failed') is True, result
        assert index_info(db, NAME)['valid'] is False  # the catalog changed ...
    finally:
        end_transaction(writer)
    assert result['changed'] is True  # ... so the result must say so


# -- a duplicate written during the build ------------------------------------------------------------------

def wait_for_the_build_to_wait(watcher, deadline_seconds=30):
    """The module's session, blocked inside CREATE UNIQUE INDEX CONCURRENTLY (phase and waiting lock)."""
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        rows = helpers.query(watcher, """
            SELECT a.pid, p.phase FROM pg_catalog.pg_locks l
            JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
            JOIN pg_catalog.pg_stat_progress_create_index p ON p.pid = a.pid
            WHERE NOT l.granted AND a.application_name = 'pg-zero-downtime'""")
        if rows:
            return rows[0]
        time.sleep(0.02)
    raise AssertionError('the concurrent build never waited for the open transaction')


@pytest.mark.majors()
def test_a_duplicate_written_during_the_build_leaves_no_invalid_index(db, connect, run_module):
    sample_id, name, grade = helpers.query(db, 'SELECT "id", "name", "grade" FROM "Class" ORDER BY "id" LIMIT 1')[0]
    writer = connect()
    helpers.query(writer, 'BEGIN')
    helpers.query(writer, 'INSERT INTO "Class" ("id", "name", "grade", "updatedAt") VALUES (%s, %s, %s, now())',
                  ('pt_race_dup', name, grade))
    module = None
    try:
        module = Background(lambda: run_module(MODULE, index_lock_timeout='30s', lock_retries=0, **KEY))
        pid, phase = wait_for_the_build_to_wait(connect())
        assert phase.startswith('waiting for'), phase
        # Meanwhile a second run sees the build in progress and refuses to touch it.
        second = run_module(MODULE, **KEY)
        assert second.get('failed') is True, second
        assert 'is being built right now by backend pid %d' % pid in second['msg']
        assert second['queries'] == []
        helpers.query(writer, 'COMMIT')  # the duplicate becomes visible to the build
        result = module.join()

        assert result.get('failed') is True, result
        message = result['msg']
        assert 'could not create unique index "Class_name_grade_key"' in message
        assert 'Key (name, grade)=(%s, %d) is duplicated' % (name, grade) in message
        assert 'The INVALID index the failed build left was dropped' in message
        assert '(name, grade) = (%s, %d): 2 rows, id ' % (name, grade) in message
        assert sample_id in message and 'pt_race_dup' in message
        assert 'What to do: resolve those rows' in message
        assert not relation_exists(db, NAME)
        assert constraint(db) is None
    finally:
        end_transaction(writer)  # no-op after COMMIT; ends the transaction if the test failed earlier
        if module is not None:
            module.thread.join(60)
        helpers.query(db, "DELETE FROM \"Class\" WHERE \"id\" = 'pt_race_dup'")
