# -*- coding: utf-8 -*-
"""No deadlock with the application (issue 21, point 6): the statements that lock two tables take the referenced (or
partitioned) table first, under a lock_timeout below deadlock_timeout; and the locks the tool says each step takes are
the ones PostgreSQL 15 shows in pg_locks.

The application's transaction here is the one that deadlocked in the adversarial run: it updates the parent, then
inserts a child. Each test works in a database of its own (a copy of the seeded T12 database) on a scratch pair of
tables.
"""

import re
import threading

import psycopg2
import pytest

import helpers

pytestmark = pytest.mark.integration

lock_order = helpers.load_module_utils('session.lock_order')

PARENT, CHILD = 'pt_lock_parent', 'pt_lock_child'
FK = dict(name='pt_lock_child_parent_fkey', type='foreign_key', table=CHILD, columns=['parent_id'],
          references=dict(table=PARENT, columns=['id']))
CHECK = dict(name='pt_lock_child_id_check', type='check', table=CHILD, expression='id > 0')
NOT_NULL = dict(name='pt_lock_child_parent_id_not_null', type='not_null', table=CHILD, column='parent_id')
PAIR_SQL = """
CREATE TABLE pt_lock_parent (id int PRIMARY KEY, v int NOT NULL DEFAULT 0);
CREATE TABLE pt_lock_child (id int PRIMARY KEY, parent_id int);
INSERT INTO pt_lock_parent (id) SELECT g FROM generate_series(1, 100) g;
INSERT INTO pt_lock_child SELECT g, g % 100 + 1 FROM generate_series(1, 1000) g;
"""
# A lock mode as the tool writes it, and the table it names.
LOCK_PHRASE = re.compile(r'\b(ACCESS EXCLUSIVE|ACCESS SHARE|SHARE ROW EXCLUSIVE|SHARE UPDATE EXCLUSIVE|ROW EXCLUSIVE|'
                         r'ROW SHARE|EXCLUSIVE|SHARE) on (the referenced table|the table|the partitioned table|'
                         r'the partition|every partition)\b')
# The relation locks of this session on tables of public, each with its mode as the tool writes it.
OWN_TABLE_LOCKS = """
SELECT c.relname::text, upper(regexp_replace(replace(l.mode, 'Lock', ''), '([a-z])([A-Z])', '\\1 \\2', 'g'))
FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_class c ON c.oid = l.relation
WHERE l.pid = pg_catalog.pg_backend_pid() AND l.locktype = 'relation' AND c.relkind IN ('r', 'p')
  AND c.relnamespace = 'public'::regnamespace
"""


@pytest.fixture
def pair(t12_copy, request):
    """A database of the test's own with the scratch parent and child tables: (connection info, autocommit
    connection)."""
    with helpers.database_copy(t12_copy, 'pt_lock_%s' % request.node.name[5:35].lower()) as database:
        helpers.query(database['conn'], PAIR_SQL)
        yield database['cluster'], database['conn']


@pytest.fixture
def watched(pair):
    """The pair, with helpers.Guard on its database (a canary table, a victim session, a snapshot of the catalog and
    of the rows of Job, Class and Item): (connection info, autocommit connection, guard)."""
    info, conn = pair
    guard = helpers.Guard(conn, lambda: helpers.connect(info))
    yield info, conn, guard
    guard.close()


def run(info, check=False, **args):
    return helpers.run_ansible_module('postgresql_online_constraint', dict(helpers.login_of(info, info['dbname']), **args),
                                      check=check)


def strongest_locks(conn):
    """{table: the strongest mode this session holds on it}."""
    held = {}
    for table, mode in helpers.query(conn, OWN_TABLE_LOCKS):
        held.setdefault(table, []).append(mode)
    return dict((table, lock_order.strongest(modes)) for table, modes in held.items())


def run_and_read_locks(conn, statements):
    """Run C(statements) (the tool's SQL, in order) for real on C(conn); for each transaction, the locks it holds on
    tables right before its COMMIT. A statement outside BEGIN ... COMMIT gets a transaction of its own, but a
    CONCURRENTLY one (a build, which cannot run in one) runs alone. Returns [(the statement, {table: mode})]."""
    seen, in_transaction, last = [], False, None
    for statement in statements:
        if statement == 'BEGIN':
            in_transaction = True
        elif statement == 'COMMIT':
            seen.append((last, strongest_locks(conn)))
            in_transaction = False
        elif not in_transaction and ' CONCURRENTLY ' not in statement:
            helpers.query(conn, 'BEGIN')
            helpers.query(conn, statement)
            seen.append((statement, strongest_locks(conn)))
            statement = 'COMMIT'
        last = statement
        helpers.query(conn, statement)
    return seen


def attribute(conn, constraints):
    """What a run of the module records in the ledger for C(constraints), once their statements ran by hand: so that
    the rollback's check mode plans to undo them (it undoes only what the ledger attributes to the plan)."""
    for entry in constraints:
        if entry['type'] == 'not_null':
            helpers.record_in_ledger(conn, 'not_null', entry['table'], entry['column'], 'NOT NULL',
                                     prior=dict(nullable=True))
        else:
            (definition,), = helpers.query(conn, 'SELECT pg_catalog.pg_get_constraintdef(oid) FROM '
                                                 'pg_catalog.pg_constraint WHERE conname = %s', (entry['name'],))
            helpers.record_in_ledger(conn, 'constraint', entry['table'], entry['name'], definition)


def said(text, roles):
    """{table: mode} that a lock text says, the roles it names mapped to tables by C(roles)."""
    return dict((table, mode) for mode, role in LOCK_PHRASE.findall(text) for table in roles[role])


# Each case: the entries and state of a check-mode run, whose steps are then run for real one after the other.
CONSTRAINT_CASES = [
    ('foreign key', [FK], 'present'),
    ('foreign key rollback', [FK], 'absent'),
    ('check', [CHECK], 'present'),
    ('check rollback', [CHECK], 'absent'),
    ('not null', [NOT_NULL], 'present'),
    ('not null rollback', [NOT_NULL], 'absent'),
]


def test_each_constraint_step_takes_exactly_the_locks_check_mode_says(pair):
    """Table-driven: every step of a foreign key, a check and a NOT NULL (and of their rollbacks), run for real, holds
    on each table the strongest lock the --check lock text names, and none on any other table."""
    info, conn = pair
    roles = {'the table': [CHILD], 'the referenced table': [PARENT]}
    compared = []
    for label, constraints, state in CONSTRAINT_CASES:
        check = run(info, check=True, constraints=constraints, state=state)
        assert check.get('failed') is not True, (label, check)
        entry = check['constraints'][0]
        assert len(entry['statements']) == len(entry['locks']), (label, entry)
        # The lock text is printed beside each step's own statement (--check: "<statement>;  -- <lock text>").
        texts = dict((statement, text) for statement, text in zip(entry['statements'], entry['locks']) if text)
        taken = run_and_read_locks(conn, entry['statements'])
        if state == 'present':
            attribute(conn, constraints)
        assert len(taken) == len(entry['steps']) > 0, (label, taken)
        for statement, held in taken:
            assert held == said(texts[statement], roles), (label, statement, texts[statement], held)
            compared.append(statement.split(' "%s" ' % CHILD)[-1][:24])
    assert len(compared) == 11, compared  # 2 + 1 + 2 + 1 + 4 + 1 steps: every step was compared


def test_a_foreign_key_takes_the_referenced_table_first_under_a_lock_timeout_below_deadlock_timeout(pair):
    info, conn = pair
    check = run(info, check=True, constraints=[FK])
    statements = check['constraints'][0]['statements']
    assert statements[:5] == [
        'BEGIN', "SET LOCAL lock_timeout = '500ms'",
        'LOCK TABLE ONLY "public"."pt_lock_parent" IN SHARE ROW EXCLUSIVE MODE',
        'ALTER TABLE "public"."pt_lock_child" ADD CONSTRAINT "pt_lock_child_parent_fkey" FOREIGN KEY ("parent_id") '
        'REFERENCES "public"."pt_lock_parent" ("id") ON DELETE NO ACTION ON UPDATE NO ACTION NOT VALID', 'COMMIT']
    # VALIDATE waits for its locks under the session's lock_timeout (index_lock_timeout, 5s), capped the same way.
    assert statements[5:] == ['BEGIN', "SET LOCAL lock_timeout = '500ms'",
                              'LOCK TABLE ONLY "public"."pt_lock_parent" IN ROW SHARE MODE',
                              'ALTER TABLE "public"."pt_lock_child" VALIDATE CONSTRAINT "pt_lock_child_parent_fkey"',
                              'COMMIT']
    # The summary says so beside the statement.
    assert ('ALTER TABLE "public"."pt_lock_child" VALIDATE CONSTRAINT "pt_lock_child_parent_fkey";  -- ROW SHARE on '
            'the referenced table (LOCK TABLE, first), then SHARE UPDATE EXCLUSIVE on the table, a scan that blocks '
            'no reads or writes, under a lock_timeout capped at half of deadlock_timeout') in check['summary']
    # A lock_timeout under the cap is kept; deadlock_timeout is the server's (1s on the test cluster).
    short = run(info, check=True, constraints=[FK], lock_timeout='200ms')
    assert short['constraints'][0]['statements'][1] == "SET LOCAL lock_timeout = '200ms'"


def test_partitioned_steps_take_the_partitioned_table_first_and_the_locks_lock_order_says(pair):
    """ATTACH PARTITION and the rollback's DROP INDEX of a partitioned index lock two tables or more: the printed SQL
    takes the partitioned table first (LOCK TABLE, in the mode of the statement's strongest lock on it); the rest is
    what lock_order says. CREATE INDEX ... ON ONLY locks one table (SHARE), so it has no order to keep."""
    info, conn = pair
    helpers.query(conn, helpers.PARTITIONED_READINGS_SQL)
    spec = dict(name='pt_Reading_deviceId_idx', columns=['deviceId'])

    def index_run(state):
        result = helpers.run_ansible_module('postgresql_online_index', dict(
            helpers.login_of(info, info['dbname']), table='Reading', state=state, indexes=[spec]), check=True)
        assert result.get('failed') is not True, result
        return result['queries']

    def table_of(index):
        # A partition's index is named after the planned index and the partition (partitioned_index.partition_index_name).
        return 'Reading' if index == spec['name'] else index[len(spec['name']) + 1:]

    partitions = ['Reading_2024', 'Reading_2025', 'Reading_2025_a', 'Reading_2025_b']
    kinds = dict(attach=0, drop_partitioned=0, create_on_only=0)
    for state in ('present', 'absent'):
        statements = index_run(state)  # once the migration's statements ran, the rollback's
        ran = run_and_read_locks(conn, statements)
        if state == 'present':  # what the module's run records, for its rollback to undo
            (definition,), = helpers.query(conn, 'SELECT pg_catalog.pg_get_indexdef(%s::regclass)',
                                           ('"%s"' % spec['name'],))
            helpers.record_in_ledger(conn, 'index', 'Reading', spec['name'], definition)
        for statement, taken in ran:
            if statement.startswith('ALTER INDEX'):
                # ALTER INDEX "public"."<index>" ATTACH PARTITION "public"."<index>_<partition>"
                parent_index, child_index = statement.split('"')[3], statement.split('"')[7]
                kind, roles = 'attach', {'the partitioned table': [table_of(parent_index)],
                                         'the partition': [table_of(child_index)]}
            elif statement.startswith('DROP INDEX'):
                kind, roles = 'drop_partitioned', {'the partitioned table': ['Reading'], 'every partition': partitions}
            else:
                assert statement.startswith('CREATE INDEX IF NOT EXISTS'), statement
                kinds['create_on_only'] += 1
                assert list(taken.values()) == ['SHARE'], (statement, taken)
                continue
            kinds[kind] += 1
            assert taken == said(lock_order.lock_text(kind), roles), (statement, taken)
            first = statements[statements.index(statement) - 1]
            assert first == 'LOCK TABLE %s"public"."%s" IN %s MODE' % (
                'ONLY ' if lock_order.ORDERED_STATEMENTS[kind]['only'] else '', roles['the partitioned table'][0],
                lock_order.ORDERED_STATEMENTS[kind]['locks'][0][1]), statements
    assert kinds == dict(attach=4, drop_partitioned=1, create_on_only=2)


# -- the application's transaction: UPDATE the parent, then (while the tool waits) INSERT a child --------------------

def deadlocks(conn):
    return helpers.query(conn, 'SELECT deadlocks FROM pg_catalog.pg_stat_database WHERE datname = '
                               'pg_catalog.current_database()')[0][0]


def tool_waits_for_a_lock(conn):
    return helpers.query(conn, "SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE application_name = "
                               "'pg-zero-downtime' AND wait_event_type = 'Lock' AND datname = "
                               "pg_catalog.current_database()")[0][0] > 0


def application_transaction_across(info, conn, tool_run):
    """The application updates a parent row, the tool starts (tool_run(), in a thread), and once the tool waits for a
    lock the application inserts a child row of that parent and commits. Returns (the tool's result, the
    application's error or None, how many deadlocks PostgreSQL counted meanwhile)."""
    before = deadlocks(conn)
    application = psycopg2.connect(host=info['host'], port=info['port'], user=info['user'], password=info['password'],
                                   dbname=info['dbname'], application_name='pt_application')
    result, error = {}, None
    try:
        cursor = application.cursor()
        cursor.execute("SET statement_timeout = '60s'")  # bounds a hang, never reached when all goes well
        cursor.execute('UPDATE pt_lock_parent SET v = v + 1 WHERE id = 7')
        tool = threading.Thread(target=lambda: result.update(tool_run()))
        tool.start()
        try:
            helpers.wait_until(lambda: tool_waits_for_a_lock(conn), timeout=120, what='the tool waiting for a lock')
            cursor.execute('INSERT INTO pt_lock_child VALUES (5001, 7)')
            application.commit()
        except psycopg2.Error as failure:
            error = failure
            application.rollback()
        finally:
            tool.join(300)
    finally:
        application.close()
    # Every session that could have counted a deadlock has ended (a backend reports its counts as it exits).
    helpers.wait_until(lambda: helpers.query(conn, "SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE "
                                                   "application_name IN ('pg-zero-downtime', 'pt_application')")[0][0]
                       == 0, timeout=60, what='the sessions of the tool and the application to end')
    return result, error, deadlocks(conn) - before


def child_committed(conn):
    return helpers.query(conn, 'SELECT parent_id FROM pt_lock_child WHERE id = 5001') == [(7,)]


def test_adding_a_foreign_key_under_the_applications_write_never_deadlocks(watched):
    info, conn, guard = watched
    result, error, counted = application_transaction_across(info, conn, lambda: run(
        info, constraints=[FK], lock_retries=30, lock_retry_delay=0.1))
    assert error is None, 'the application\'s transaction was aborted: %s' % error
    assert counted == 0, 'PostgreSQL counted %d deadlock(s)' % counted
    assert child_committed(conn)
    assert result.get('failed') is not True, result
    assert result['constraints'][0]['steps_done'] == ['add', 'validate']
    # The key, valid, is all that changed; the victim session lives on.
    assert guard.changed_since() == ({}, [], [('constraint', 'public.pt_lock_child.pt_lock_child_parent_fkey',
                                               'FOREIGN KEY (parent_id) REFERENCES pt_lock_parent(id) validated=true')])
    assert guard.victim_alive()


def test_the_rollbacks_drop_of_a_foreign_key_under_the_applications_write_never_deadlocks(watched):
    info, conn, guard = watched
    assert run(info, constraints=[FK]).get('failed') is not True
    result, error, counted = application_transaction_across(info, conn, lambda: run(
        info, constraints=[FK], state='absent', lock_retries=30, lock_retry_delay=0.1))
    assert error is None, 'the application\'s transaction was aborted: %s' % error
    assert counted == 0, 'PostgreSQL counted %d deadlock(s)' % counted
    assert child_committed(conn)
    assert result.get('failed') is not True, result
    assert result['constraints'][0]['steps_done'] == ['drop']
    guard.assert_untouched('the rollback of the key it added')  # the catalog as before the migration


def test_a_foreign_key_that_cannot_take_the_referenced_table_in_time_fails_naming_its_holder(watched):
    """The tool now waits for the referenced table, not the table: the failure names who holds that one, and the
    effective lock_timeout with what it was capped from. Nothing is changed and the application's transaction goes
    on."""
    info, conn, guard = watched
    application = psycopg2.connect(host=info['host'], port=info['port'], user=info['user'], password=info['password'],
                                   dbname=info['dbname'], application_name='pt_application')
    try:
        application.cursor().execute('UPDATE pt_lock_parent SET v = v + 1 WHERE id = 7')  # left open
        result = run(info, constraints=[FK], lock_timeout='2s', lock_retries=1, lock_retry_delay=0.1)
        application.commit()
    finally:
        application.close()
    assert result.get('failed') is True, result
    message = ' '.join(result['msg'].split())
    for fragment in ('ADD CONSTRAINT "pt_lock_child_parent_fkey" FOREIGN KEY', 'failed after 2 attempt(s)',
                     'lock_timeout=500ms (the configured 2s capped at half of deadlock_timeout 1000ms',
                     'raise lock_retries', 'Steps done before it, and kept: none'):
        assert fragment in message, (fragment, message)
    # The holder of the referenced table, by its lock (not only as an open transaction).
    assert re.search(r'lock holder: pid \d+ RowExclusiveLock granted=True state=idle in transaction .* '
                     r'app=pt_application query: UPDATE pt_lock_parent', message), message
    guard.assert_untouched('a foreign key step that gave up')
    assert helpers.query(conn, 'SELECT v FROM pt_lock_parent WHERE id = 7') == [(1,)]
