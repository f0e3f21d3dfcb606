# -*- coding: utf-8 -*-
"""Honest outcomes (issue 21, point 7), through the real playbooks and modules against the real cluster.

- A build that PostgreSQL refuses half way (a row too large for a btree index) is reported failed, never created,
  in the phase summary, the failure message, the play's stop message and the report; the indexes queued behind it
  are not listed as done; "nothing was changed" is said only of what changed nothing.
- The constraint phase watches the run's ansible-playbook: once it is gone (a process that has ended, or
  ansible-playbook killed with SIGKILL while a foreign key's index builds), no further statement starts.
- What a run's statements wait for is printed while they wait: a rollback's DROP INDEX CONCURRENTLY behind an open
  transaction, and a foreign key's `index:` build behind an old snapshot (the constraint phase now runs in the
  background, followed by the progress watch).

The guard (helpers.Guard: a canary table, a victim session, a snapshot of catalog and rows) proves what a run must
leave alone. Runs that must be interrupted or watched while they run are started in a session of their own.
"""

import glob
import json
import os
import signal
import subprocess

import psycopg2
import pytest
import yaml

import helpers

pytestmark = pytest.mark.integration

TABLE = 'pt_outcome'
GRP, NOTE, AFTER = 'pt_outcome_grp_idx', 'pt_outcome_note_idx', 'pt_outcome_id_grp_idx'
PROGRESS_CALLBACK = 'pg_zero_downtime.migrations.progress'
FK = dict(name='JobAssignment_jobId_fkey', type='foreign_key', table='JobAssignment', columns=['jobId'],
          references=dict(table='Job', columns=['id']), on_delete='CASCADE', on_update='CASCADE',
          index='JobAssignment_jobId_idx')
CHECK = dict(name='Item_price_check', type='check', table='Item', expression='price > 0')
UNIQUE = dict(name='Class_name_grade_key', table='Class', columns=['name', 'grade'], on_duplicates='rename')


@pytest.fixture(scope='module')
def too_large_row(pg_cluster):
    """pt_outcome: 1,000 rows, one of them with a 3,200-byte note that no btree index can hold (at most 2,704 bytes a
    row): CREATE INDEX CONCURRENTLY over it fails after it started, where the preflight's probe, on an empty copy of
    the table, cannot see it."""
    conn = helpers.connect(pg_cluster)
    helpers.query(conn, 'DROP TABLE IF EXISTS %s' % TABLE)
    helpers.query(conn, 'CREATE TABLE %s (id int PRIMARY KEY, grp int NOT NULL, note text)' % TABLE)
    helpers.query(conn, 'INSERT INTO %s SELECT g, g %% 7, md5(g::text) FROM generate_series(1, 1000) g' % TABLE)
    # Random hex does not compress: the value stays 3,200 bytes in the index tuple.
    helpers.query(conn, "UPDATE %s SET note = (SELECT string_agg(md5(random()::text || i), '') "
                        "FROM generate_series(1, 100) i) WHERE id = 500" % TABLE)
    helpers.query(conn, 'ANALYZE %s' % TABLE)
    yield
    helpers.query(conn, 'DROP TABLE IF EXISTS %s' % TABLE)
    conn.close()


def write_plan(tmp_path, name, tables=(), constraints=()):
    path = tmp_path / ('%s.yml' % name)
    path.write_text(yaml.safe_dump(dict(name=name, schema='public', tables=list(tables),
                                        constraints=list(constraints))))
    return str(path)


def playbook_vars(cluster, tmp_path, plan, **extra):
    variables = dict(local_cluster_dir=cluster['dir'], pg_port=cluster['port'], pg_database=cluster['dbname'],
                     pgzd_plan=plan, pgzd_artifacts_dir=str(tmp_path / 'artifacts'), backup_enabled='false')
    variables.update(extra)
    return variables


def flat(text):
    return ' '.join(text.split())


def the_report(tmp_path):
    (directory,) = glob.glob(str(tmp_path / 'artifacts' / 'runs' / '*'))
    with open(os.path.join(directory, 'report.json')) as handle:
        report = json.load(handle)
    with open(os.path.join(directory, 'report.md')) as handle:
        return report, handle.read()


class Playbook(object):
    """ansible-playbook in a session of its own (its process group is its pid), with the project's progress callback,
    its output in a file that the test reads while it runs."""

    def __init__(self, tmp_path, label, playbook, variables):
        self.output_path = str(tmp_path / ('%s.out' % label))
        argv = [helpers._tool('ansible-playbook'), playbook]
        for name, value in variables.items():
            argv += ['-e', '%s=%s' % (name, value)]
        with open(self.output_path, 'w') as out:
            self.process = subprocess.Popen(argv, cwd=helpers.REPO_ROOT, stdout=out, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True,
                                            env=helpers.ansible_env(ANSIBLE_STDOUT_CALLBACK=PROGRESS_CALLBACK))

    def output(self):
        with open(self.output_path) as handle:
            return handle.read()

    def wait_for_line(self, *fragments):
        """The first output line holding every fragment, once the run printed it (fails the test if it ends first)."""
        found = []

        def printed():
            found[:] = [line for line in self.output().splitlines() if all(f in line for f in fragments)]
            return bool(found) or self.process.poll() is not None
        helpers.wait_until(printed, timeout=300, what='a line with %s' % (fragments,))
        assert found, 'the run ended without printing %s:\n%s' % (fragments, self.output()[-5000:])
        return found[0]

    def end(self):
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait(timeout=60)
        # What ansible-playbook forked (its workers) is in its process group too.
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class Snapshot(object):
    """An open transaction in database C(dbname): REPEATABLE READ holding a snapshot (every concurrent build waits for
    it), or READ COMMITTED after reading C(table) (it holds that table's ACCESS SHARE lock)."""

    def __init__(self, cluster, dbname, table='Item', repeatable=True):
        self.conn = psycopg2.connect(host=cluster['host'], port=cluster['port'], user=cluster['user'],
                                     password=cluster['password'], dbname=dbname,
                                     application_name='pgzd-pytest-blocker')
        if repeatable:
            self.conn.set_session(isolation_level='REPEATABLE READ')
        self.pid = self.conn.get_backend_pid()
        self.conn.cursor().execute('SELECT count(*) FROM "%s"' % table)

    def release(self):
        if not self.conn.closed:
            self.conn.rollback()
            self.conn.close()


def building(conn, index):
    return helpers.query(conn, """
        SELECT p.phase FROM pg_catalog.pg_stat_progress_create_index p
        JOIN pg_catalog.pg_class c ON c.oid = p.index_relid WHERE c.relname = %s""", (index,))


def run_sessions(conn):
    """The backends of a run (DDL sessions, watches, the migration lock's holder) in this database."""
    return helpers.query(conn, """
        SELECT pid, application_name FROM pg_catalog.pg_stat_activity
        WHERE datname = pg_catalog.current_database()
          AND (application_name LIKE 'pg-zero-downtime%%' OR application_name LIKE 'pgzd-lock%%')""")


def foreign_keys(conn):
    return helpers.query(conn, "SELECT conname::text, convalidated FROM pg_catalog.pg_constraint "
                               "WHERE contype = 'f' AND conname = %s", (FK['name'],))


@pytest.fixture
def copy(t12_copy, request):
    """A fresh copy of the seeded T12 database, dropped after the test: (connection info, autocommit connection)."""
    with helpers.database_copy(t12_copy, 'pt_outcomes_%s' % request.node.name[5:40].lower()) as database:
        yield database['cluster'], database['conn']


# -- a failed build is never reported as created ---------------------------------------------------------------------

def test_a_build_over_a_row_too_large_for_the_index_is_reported_failed_never_created(pg_cluster, too_large_row,
                                                                                     guard, tmp_path):
    plan = write_plan(tmp_path, 'pt_outcome', tables=[dict(name=TABLE, indexes=[
        dict(name=GRP, columns=['grp']), dict(name=NOTE, columns=['note']), dict(name=AFTER, columns=['id', 'grp'])])])
    # --check cannot see the row (the probe builds on an empty copy): it shows the plan and changes nothing.
    (tmp_path / 'check').mkdir()
    checked = helpers.run_playbook('playbooks/migrate.yml', playbook_vars(pg_cluster, tmp_path / 'check', plan),
                                   options=['--check'])
    output = flat(checked.stdout)
    assert checked.returncode == 0, output[-4000:]
    assert 'Check mode: nothing was changed. A real run would do this:' in output
    assert 'created %s on public.%s' % (NOTE, TABLE) in output
    guard.assert_untouched('the plan of a too-large row, --check')

    run = helpers.run_playbook('playbooks/migrate.yml', playbook_vars(pg_cluster, tmp_path, plan))
    output = flat(run.stdout)
    assert run.returncode != 0, output[-4000:]
    create_grp = 'CREATE INDEX CONCURRENTLY IF NOT EXISTS "%s" ON "public"."%s" USING "btree" ("grp")' % (GRP, TABLE)
    drop_note = 'DROP INDEX CONCURRENTLY IF EXISTS "public"."%s"' % NOTE
    # The phase summary: the failed index and the one behind it say what they were to be, never "created".
    assert 'created %s on public.%s in' % (GRP, TABLE) in output
    assert 'failed %s on public.%s (was to be created)' % (NOTE, TABLE) in output
    assert 'not started %s on public.%s (was to be created)' % (AFTER, TABLE) in output
    assert 'created %s' % NOTE not in output and 'created %s' % AFTER not in output, output[-4000:]
    # The failure: PostgreSQL's reason, the cleanup of the INVALID leftover said as such, not as a kept change.
    assert 'index row size' in output and 'exceeds btree version 4 maximum 2704' in output
    assert 'The INVALID index the failed build left was dropped.' in output
    assert 'Done by that run before it stopped, and kept: %s Not started after it: %s (was to be created)' % (
        create_grp, AFTER) in output, output[-4000:]
    assert 'kept: %s; %s' % (create_grp, drop_note) not in output
    # The play's stop message lists only what was done; nowhere is "nothing was changed" said after DDL ran.
    assert 'Changed before it, and kept (a rerun goes on from there): created %s.' % GRP in output
    assert 'nothing was changed' not in output.lower()
    # The report.
    report, markdown = the_report(tmp_path)
    assert report['status'] == 'failed' and 'exceeds btree version 4 maximum' in report['failure']
    assert [(i['name'], i['action'], i.get('planned_action')) for i in report['indexes']] == [
        (GRP, 'created', None), (NOTE, 'failed', 'created'), (AFTER, 'not_started', 'created')]
    assert '| %s | public.%s | failed (was to be created) |' % (NOTE, TABLE) in markdown
    assert '| %s | public.%s | not_started (was to be created) |' % (AFTER, TABLE) in markdown
    # The database: what the report says, and nothing else.
    assert helpers.index_info(guard.conn, GRP)['valid']
    assert helpers.index_info(guard.conn, NOTE) is None and helpers.index_info(guard.conn, AFTER) is None
    assert guard.victim_alive()
    rows, gone, new = guard.changed_since()
    assert rows == {} and gone == [] and [line[:2] for line in new] == [('relation', 'public.%s' % GRP)], new


# -- the constraint phase watches the owning ansible-playbook ----------------------------------------------------------

@pytest.mark.parametrize('first', ['foreign_key', 'unique_rename'])
def test_the_constraint_phase_starts_no_statement_once_its_owner_has_ended(guard, run_module, first):
    ended = subprocess.Popen(['true'])
    ended.wait()  # a pid whose process is gone, as the run's ansible-playbook after kill -9
    constraints = [FK, CHECK] if first == 'foreign_key' else [UNIQUE, FK]
    result = run_module('postgresql_online_constraint', constraints=constraints, owner_pid=ended.pid)
    gone = 'the run that started it (ansible-playbook, process %d) has ended, so it does not go on alone' % ended.pid
    assert result.get('failed') is True, result
    message = flat(result['msg'])
    assert gone in message, message
    if first == 'foreign_key':
        # Its index build was the first statement: refused before it was sent.
        assert 'CREATE INDEX CONCURRENTLY IF NOT EXISTS "JobAssignment_jobId_idx"' in message
        assert 'was not run: ' + gone in message
    else:
        # The duplicate rename's transaction was the first: refused before it began.
        assert 'Duplicate resolution of constraint "Class_name_grade_key" on public.Class failed and was rolled back ' \
               '(nothing was changed by it)' in message
    assert 'Not started, nothing changed on them: %s' % constraints[1]['name'] in message
    assert result['queries'] == [] and result['changed'] is False
    (entry,) = result['constraints']
    assert entry['action'] == 'failed' and entry['name'] == constraints[0]['name']
    # The foreign key was planned (it failed applying); the rename failed before its constraint was planned.
    assert entry['planned_action'] == ('created' if first == 'foreign_key' else None)
    assert entry.get('statements_run', []) == []
    guard.assert_untouched('a constraint phase whose ansible-playbook has ended')
    assert not helpers.relation_exists(guard.conn, 'duplicate_resolution', schema='pgzd_audit')


def test_ansible_playbook_killed_while_a_foreign_key_index_builds_starts_no_further_statement(copy, tmp_path):
    info, conn = copy
    snapshot = Snapshot(info, info['dbname'])
    plan = write_plan(tmp_path, 'pt_outcome_kill', constraints=[FK])
    run = Playbook(tmp_path, 'killed', 'playbooks/migrate.yml', playbook_vars(info, tmp_path, plan))
    try:
        helpers.wait_until(lambda: building(conn, FK['index']) or run.process.poll() is not None, timeout=300,
                           what="the foreign key's index build")
        assert building(conn, FK['index']), run.output()[-5000:]
        run.process.send_signal(signal.SIGKILL)  # ansible-playbook alone, as kill -9 <its pid>
        run.process.wait(timeout=60)
        snapshot.release()
        # The build in flight ends on its own; then the phase stops before its next statement, and the migration
        # lock's holder, which watches the same process, lets go.
        helpers.wait_until(lambda: not run_sessions(conn), timeout=300, what='the end of every session of the run')
    finally:
        snapshot.release()
        run.end()
    # What the phase says is the module's message (test_the_constraint_phase_starts_no_statement_once_its_owner_has_
    # ended): the orphaned follow task reads and removes the background run's results file.
    assert helpers.index_info(conn, FK['index'])['valid'], 'the build in flight finished'
    assert foreign_keys(conn) == [], 'no ADD CONSTRAINT after ansible-playbook was killed'


# -- what the run's statements wait for is printed while they wait -----------------------------------------------------

def test_a_foreign_key_index_build_that_waits_is_printed_with_the_session_it_waits_for(copy, tmp_path):
    info, conn = copy
    snapshot = Snapshot(info, info['dbname'])
    plan = write_plan(tmp_path, 'pt_outcome_fk_wait', constraints=[FK])
    run = Playbook(tmp_path, 'fk-wait', 'playbooks/migrate.yml',
                   playbook_vars(info, tmp_path, plan, constraints_progress_interval=1))
    try:
        line = run.wait_for_line('progress: %s on public.JobAssignment: waiting for old snapshots' % FK['index'],
                                 'pid %d (user %s' % (snapshot.pid, info['user']))
        assert 'application pgzd-pytest-blocker' in line and 'idle in transaction' in line, line
        snapshot.release()
        assert run.process.wait(timeout=600) == 0, run.output()[-5000:]
    finally:
        snapshot.release()
        run.end()
    output = run.output()
    assert 'Follow the constraint phase, naming what each step waits for' in output
    assert foreign_keys(conn) == [(FK['name'], True)]
    assert 'created   %s' % FK['name'] in output  # the phase's summary, from the background run's result


def test_a_rollback_whose_drop_waits_behind_an_open_transaction_prints_that_session(copy, tmp_path):
    info, conn = copy
    index = 'pt_outcome_wait_idx'
    plan = write_plan(tmp_path, 'pt_outcome_drop_wait', tables=[dict(name='Item', indexes=[
        dict(name=index, columns=['price'])])])
    migrated = helpers.run_playbook('playbooks/migrate.yml', playbook_vars(info, tmp_path, plan))
    assert migrated.returncode == 0, migrated.stdout[-4000:]
    reader = Snapshot(info, info['dbname'], table='Item', repeatable=False)
    run = Playbook(tmp_path, 'drop-wait', 'playbooks/rollback.yml',
                   playbook_vars(info, tmp_path, plan, online_indexes_progress_interval=1))
    try:
        line = run.wait_for_line('progress: DROP INDEX CONCURRENTLY IF EXISTS "public"."%s": waiting for the '
                                 'transactions that use its table to end' % index,
                                 'pid %d (user %s' % (reader.pid, info['user']))
        assert 'application pgzd-pytest-blocker' in line and 'idle in transaction' in line, line
        assert 'SELECT count(*) FROM "Item"' in line, line
        reader.release()
        assert run.process.wait(timeout=600) == 0, run.output()[-5000:]
    finally:
        reader.release()
        run.end()
    assert 'no build of' not in run.output()
    assert helpers.index_info(conn, index) is None
