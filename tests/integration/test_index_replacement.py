# -*- coding: utf-8 -*-
"""on_mismatch: replace on real PostgreSQL: an index of the planned name with another definition is rebuilt beside it
under a temporary name concurrently, swapped in by renames in one short transaction under lock_timeout, and the old
one dropped concurrently; the ledger records the old definition and comment, so a rollback run by a new
ansible-playbook process puts the old index back, to the same pg_dump --schema-only. Without it (on_mismatch: fail,
the default) the run is refused showing both definitions.

A database of its own (a copy of the seeded T12 database, the fixture file_database) holding, before each test, the
index "pt_Job_status_idx" on "Job" (status) with a comment of its own.
"""

import glob
import os

import pytest
import yaml

import helpers

pytestmark = pytest.mark.integration

DATABASE = 'pt_replacement'
MODULE = 'postgresql_online_index'
INDEX, NEXT, PREVIOUS = 'pt_Job_status_idx', 'pt_Job_status_idx_pgzd_next', 'pt_Job_status_idx_pgzd_prev'
OLD = 'CREATE INDEX "pt_Job_status_idx" ON public."Job" USING btree (status)'
NEW = 'CREATE INDEX "pt_Job_status_idx" ON public."Job" USING btree (status, "teacherId")'
SPEC = dict(name=INDEX, columns=['status', 'teacherId'], on_mismatch='replace')
REPLACEMENT_SQL = [
    'CREATE INDEX CONCURRENTLY IF NOT EXISTS "pt_Job_status_idx_pgzd_next" ON "public"."Job" USING "btree" '
    '("status", "teacherId")',
    'BEGIN',
    'ALTER INDEX "public"."pt_Job_status_idx" RENAME TO "pt_Job_status_idx_pgzd_prev"',
    'ALTER INDEX "public"."pt_Job_status_idx_pgzd_next" RENAME TO "pt_Job_status_idx"',
    'COMMENT ON INDEX "public"."pt_Job_status_idx" IS NULL',
    'COMMIT',
    'DROP INDEX CONCURRENTLY IF EXISTS "public"."pt_Job_status_idx_pgzd_prev"',
]
# In a real run the swap's transaction also marks the ledger's row of the replacement applied (check mode has none).
LEDGER_UPDATE = "UPDATE pgzd_audit.ledger SET state = 'applied'"


def ran(queries):
    """The queries of a real run without the ledger's update inside the swap (checked there, and by ledger())."""
    updates = [q for q in queries if q.startswith(LEDGER_UPDATE)]
    assert len(updates) == ('COMMIT' in queries), queries
    if updates:
        assert queries.index(updates[0]) == queries.index('COMMIT') - 1, queries
    return [q for q in queries if not q.startswith(LEDGER_UPDATE)]


def ledger(conn):
    """(kind, state, definition, prior) of the ledger's rows of the index, oldest first."""
    return helpers.query(conn, "SELECT kind, state, definition, prior FROM pgzd_audit.ledger WHERE object_name = %s "
                               "ORDER BY id", (INDEX,))


def record_stopped_replacement(conn, state):
    """The ledger row a run (standalone: plan "manual") stopped in its replacement left: intended before the swap,
    applied after it."""
    helpers.record_in_ledger(conn, 'replaced_index', 'Job', INDEX, NEW, state=state,
                             prior=dict(definition=OLD, comment='kept by ops'))


@pytest.fixture
def old_index(file_database):
    """The index the plan finds: its name, another definition, a comment. Whatever of it a test leaves is dropped."""
    conn = file_database['conn']
    helpers.query(conn, 'CREATE INDEX "pt_Job_status_idx" ON "Job" (status)')
    helpers.query(conn, 'COMMENT ON INDEX "pt_Job_status_idx" IS \'kept by ops\'')
    yield conn
    for name in (INDEX, NEXT, PREVIOUS):
        helpers.drop_index(conn, name)
    helpers.query(conn, 'DROP SCHEMA IF EXISTS pgzd_audit CASCADE')


def run(file_database, check=False, **args):
    return helpers.run_ansible_module(MODULE, dict(file_database['login'], table='Job', **args), check=check)


def state(conn):
    """{name: (definition, comment)} of the index and the two names a replacement uses, as they are now."""
    rows = helpers.query(conn, """
        SELECT c.relname::text, pg_catalog.pg_get_indexdef(c.oid), pg_catalog.obj_description(c.oid, 'pg_class'),
               i.indisvalid
        FROM pg_catalog.pg_class c JOIN pg_catalog.pg_index i ON i.indexrelid = c.oid
        WHERE c.relname = ANY(%s)""", ([INDEX, NEXT, PREVIOUS],))
    assert all(valid for _name, _definition, _comment, valid in rows), rows
    return dict((name, (definition, comment)) for name, definition, comment, _valid in rows)


def test_by_default_another_definition_is_refused_showing_both(file_database, old_index):
    before = helpers.all_indexes(old_index)
    result = run(file_database, indexes=[dict(SPEC, on_mismatch='fail')])
    helpers.assert_failed_without_change(result, before, helpers.all_indexes(old_index), 'different definition')
    assert 'existing: ' + OLD in result['msg']
    assert 'planned:  CREATE INDEX "pt_Job_status_idx" ON "public"."Job" USING "btree" ("status", "teacherId")' \
        in result['msg']
    assert 'or set on_mismatch: replace on this index in the plan' in result['msg']


@pytest.mark.majors()
def test_replace_builds_beside_swaps_in_and_drops_the_old_index_and_shows_both_definitions(file_database, old_index):
    check = run(file_database, check=True, indexes=[SPEC])
    assert check.get('failed') is not True, check
    assert check['queries'] == REPLACEMENT_SQL
    assert state(old_index) == {INDEX: (OLD, 'kept by ops')}

    result = run(file_database, indexes=[SPEC])

    assert result.get('failed') is not True, result
    assert result['changed'] is True and ran(result['queries']) == REPLACEMENT_SQL
    (entry,) = result['indexes']
    assert entry['action'] == 'replaced'
    assert (entry['previous_definition'], entry['definition']) == (OLD, NEW)
    assert entry['planned_definition'] == ('CREATE INDEX "pt_Job_status_idx" ON "public"."Job" USING "btree" '
                                           '("status", "teacherId")')
    assert result['summary'][1:] == ['         before: ' + OLD, '         after:  ' + NEW]
    # Only the planned name is left, valid, with the planned definition; the ledger holds what it replaced.
    assert state(old_index) == {INDEX: (NEW, None)}
    assert ledger(old_index) == [('replaced_index', 'applied', NEW, dict(definition=OLD, comment='kept by ops'))]

    again = run(file_database, indexes=[SPEC])
    assert again['changed'] is False and again['queries'] == [] and again['indexes'][0]['action'] == 'unchanged'


def test_a_stopped_replacement_goes_on_from_its_last_step(file_database, old_index):
    # A name the replacement uses, taken by an index no run of the plan made: refused, and left as it is.
    helpers.query(old_index, REPLACEMENT_SQL[0])
    refused = run(file_database, indexes=[SPEC])
    assert refused.get('failed') is True and refused['queries'] == [], refused
    assert 'the ledger of the plan holds no replacement of it' in refused['msg']
    # Stopped after the build (its ledger row intended): the rerun swaps without building again.
    record_stopped_replacement(old_index, 'intended')
    result = run(file_database, indexes=[SPEC])
    assert result.get('failed') is not True, result
    assert ran(result['queries']) == REPLACEMENT_SQL[1:]
    assert state(old_index)[INDEX][0] == NEW and set(state(old_index)) == {INDEX}

    # Stopped after the swap (the replaced index not dropped yet): the rerun only drops it.
    helpers.query(old_index, 'ALTER INDEX "pt_Job_status_idx" RENAME TO "pt_Job_status_idx_other"')
    helpers.query(old_index, 'CREATE INDEX "pt_Job_status_idx_pgzd_prev" ON "Job" (status)')
    helpers.query(old_index, 'ALTER INDEX "pt_Job_status_idx_other" RENAME TO "pt_Job_status_idx"')
    result = run(file_database, indexes=[SPEC])
    assert ran(result['queries']) == REPLACEMENT_SQL[-1:] and result['indexes'][0]['action'] == 'replaced'
    assert result['indexes'][0]['previous_definition'] == OLD
    assert set(state(old_index)) == {INDEX}


def test_the_swap_waits_at_most_lock_timeout_and_the_rerun_only_swaps(file_database, old_index):
    # An uncommitted COMMENT holds SHARE UPDATE EXCLUSIVE on the old index: the rename must not queue behind it long.
    blocker = helpers.connect(file_database['cluster'], DATABASE, autocommit=False)
    try:
        helpers.query(blocker, 'COMMENT ON INDEX "pt_Job_status_idx" IS \'kept by ops\'')
        result = run(file_database, lock_timeout='200ms', lock_retries=1, lock_retry_delay=0.1, indexes=[SPEC])
    finally:
        blocker.close()
    assert result.get('failed') is True and result['lock_retries_used'] == 1
    assert 'failed after 2 attempt(s)' in result['msg'] and 'lock_timeout=200ms' in result['msg']
    assert 'the new index pt_Job_status_idx_pgzd_next is built and kept, so the rerun only swaps' in result['msg']
    assert result['queries'] == REPLACEMENT_SQL[:1]  # the swap's statements were rolled back
    assert state(old_index) == {INDEX: (OLD, 'kept by ops'),
                                NEXT: (NEW.replace('"pt_Job_status_idx"', '"%s"' % NEXT), None)}

    rerun = run(file_database, indexes=[SPEC])
    assert ran(rerun['queries']) == REPLACEMENT_SQL[1:], rerun


@pytest.mark.majors()
def test_a_migration_and_its_rollback_from_a_new_process_give_back_the_same_schema(file_database, old_index, tmp_path):
    before = helpers.schema_dump(file_database['cluster'], DATABASE)
    plan = tmp_path / 'replace.yml'
    plan.write_text(yaml.safe_dump(dict(name='pt_replace', schema='public', tables=[dict(name='Job', indexes=[SPEC])])))
    variables = dict(local_cluster_dir=file_database['cluster']['dir'], pg_port=file_database['cluster']['port'],
                     pg_database=DATABASE, pgzd_plan=str(plan), pgzd_artifacts_dir=str(tmp_path / 'artifacts'))

    checked = helpers.run_playbook('playbooks/migrate.yml', variables, options=['--check'])
    assert checked.returncode == 0, checked.stdout[-3000:]
    migrated = helpers.run_playbook('playbooks/migrate.yml', variables)
    assert migrated.returncode == 0, migrated.stdout[-4000:]
    assert 'replaced pt_Job_status_idx' in migrated.stdout and 'before: ' + OLD in migrated.stdout
    assert state(old_index)[INDEX][0] == NEW
    (report,) = glob.glob(os.path.join(str(tmp_path), 'artifacts', 'runs', 'pt_replace-*', 'report.md'))
    with open(report) as handle:
        markdown = handle.read()
    assert '- `pt_Job_status_idx` replaced:\n  - before: `%s`\n  - after: `%s`' % (OLD, NEW) in markdown
    with open(report.replace('report.md', 'report.html')) as handle:
        page = helpers.ReportPage(handle.read())
    assert page.problems == [] and page.tables['replaced-indexes'][1] == ['pt_Job_status_idx', 'replaced', OLD, NEW]

    # The rollback is a new ansible-playbook process: the old definition and comment come from the ledger.
    planned = helpers.run_playbook('playbooks/rollback.yml', variables, options=['--check'])
    assert planned.returncode == 0, planned.stdout[-3000:]
    (planned_sql,) = glob.glob(os.path.join(str(tmp_path), 'artifacts', 'runs', 'pt_replace-*', 'planned-rollback.sql'))
    with open(planned_sql) as handle:
        text = handle.read()
    assert ('CREATE INDEX CONCURRENTLY IF NOT EXISTS "pt_Job_status_idx_pgzd_next" ON public."Job" USING btree '
            '(status);') in text
    assert 'COMMENT ON INDEX "public"."pt_Job_status_idx" IS \'kept by ops\';' in text
    rolled_back = helpers.run_playbook('playbooks/rollback.yml', variables)
    assert rolled_back.returncode == 0, rolled_back.stdout[-4000:]
    assert 'restored pt_Job_status_idx' in rolled_back.stdout
    assert state(old_index) == {INDEX: (OLD, 'kept by ops')}
    assert helpers.schema_dump(file_database['cluster'], DATABASE) == before
    assert [(kind, state_) for kind, state_, _definition, _prior in ledger(old_index)] == [('replaced_index', 'undone')]

    again = helpers.run_playbook('playbooks/rollback.yml', variables)
    assert again.returncode == 0 and 'changed=0' in again.stdout, again.stdout[-3000:]
