# -*- coding: utf-8 -*-
"""postgresql_online_index through real Ansible against a real PostgreSQL cluster (see tests/conftest.py).

Every index these tests create is named pt_*; the ``db`` fixture drops whatever a test leaves behind.
"""

import re
import time

import psycopg2
import pytest

import helpers
from helpers import index_info, pg_indexes_def, relation_exists

pytestmark = pytest.mark.integration

MODULE = 'postgresql_online_index'


def created_index_names(db):
    return [name for name in helpers.droppable_indexes(db) if name.startswith(helpers.TEST_INDEX_PREFIX)]


def problem_count(message):
    """Number of listed problems ("- ..." lines) in a plan failure message."""
    return len(re.findall(r'^\s*- ', message, flags=re.MULTILINE))


def assert_failed_without_change(result, db, before, *fragments):
    """The task failed, ran no DDL, left the catalog as it was, and its message names every fragment."""
    helpers.assert_failed_without_change(result, before, helpers.all_indexes(db), *fragments)


# -- create, rerun, check mode, diff -----------------------------------------------------------------

JOB_SPECS = [
    dict(name='pt_Job_teacherId_status_idx', columns=['teacherId', 'status']),
    dict(name='pt_Job_createdAt_idx', columns=['createdAt']),
]


def test_create_camel_case_indexes(db, run_module):
    result = run_module(MODULE, table='Job', indexes=JOB_SPECS)

    assert result.get('failed') is not True, result
    assert result['changed'] is True
    assert [(i['name'], i['action'], i['schema'], i['table']) for i in result['indexes']] == [
        ('pt_Job_teacherId_status_idx', 'created', 'public', 'Job'),
        ('pt_Job_createdAt_idx', 'created', 'public', 'Job')]
    assert result['queries'] == [
        'CREATE INDEX CONCURRENTLY IF NOT EXISTS "pt_Job_teacherId_status_idx" ON "public"."Job" USING "btree" '
        '("teacherId", "status")',
        'CREATE INDEX CONCURRENTLY IF NOT EXISTS "pt_Job_createdAt_idx" ON "public"."Job" USING "btree" '
        '("createdAt")']
    assert all(q.startswith('CREATE INDEX CONCURRENTLY') for q in result['queries'])
    assert result['lock_retries_used'] == 0

    first = index_info(db, 'pt_Job_teacherId_status_idx')
    assert first['valid'] is True and first['ready'] is True and first['unique'] is False
    assert first['table'] == 'Job'
    # PostgreSQL quotes the camelCase names itself: the module quoted them, so case was kept.
    expected = 'CREATE INDEX "pt_Job_teacherId_status_idx" ON public."Job" USING btree ("teacherId", status)'
    assert first['definition'] == expected
    assert pg_indexes_def(db, 'pt_Job_teacherId_status_idx') == expected
    assert index_info(db, 'pt_Job_createdAt_idx')['valid'] is True
    # The result reports the catalog's definition and a timing per index.
    assert result['indexes'][0]['definition'] == expected
    assert result['indexes'][0]['statements'] == [result['queries'][0]]
    assert all(i['seconds'] > 0 and i['retries'] == 0 for i in result['indexes'])


def test_rerun_is_unchanged(db, run_module):
    first = run_module(MODULE, table='Job', indexes=JOB_SPECS)
    assert first['changed'] is True
    before = helpers.all_indexes(db)

    again = run_module(MODULE, table='Job', indexes=JOB_SPECS)

    assert again.get('failed') is not True, again
    assert again['changed'] is False
    assert again['queries'] == []
    assert [i['action'] for i in again['indexes']] == ['unchanged', 'unchanged']
    assert all(i['statements'] == [] and i['seconds'] == 0 for i in again['indexes'])
    assert again['indexes'][0]['definition'] == index_info(db, 'pt_Job_teacherId_status_idx')['definition']
    assert helpers.all_indexes(db) == before


def test_rerun_with_one_new_index_creates_only_that_one(db, run_module):
    run_module(MODULE, table='Job', indexes=JOB_SPECS[:1])
    result = run_module(MODULE, table='Job', indexes=JOB_SPECS)
    assert result['changed'] is True
    assert [i['action'] for i in result['indexes']] == ['unchanged', 'created']
    assert len(result['queries']) == 1 and '"pt_Job_createdAt_idx"' in result['queries'][0]


def test_check_mode_reports_the_exact_statement_and_changes_nothing(db, run_module):
    before = helpers.all_indexes(db)
    result = run_module(MODULE, check=True, table='Job',
                        indexes=[dict(name='pt_Job_check_idx', columns=['subjectId', 'status'])])

    assert result.get('failed') is not True, result
    assert result['changed'] is True
    statement = ('CREATE INDEX CONCURRENTLY IF NOT EXISTS "pt_Job_check_idx" ON "public"."Job" USING "btree" '
                 '("subjectId", "status")')
    assert result['queries'] == [statement]
    assert result['indexes'][0]['action'] == 'created'
    assert result['indexes'][0]['statements'] == [statement]
    assert result['indexes'][0]['definition'] is None
    assert not relation_exists(db, 'pt_Job_check_idx')
    assert helpers.all_indexes(db) == before


def test_check_mode_diff_gives_before_and_after(db, run_module):
    result = run_module(MODULE, check=True, diff=True, table='Job',
                        indexes=[dict(name='pt_Job_diff_idx', columns=['createdAt'])])
    assert result['changed'] is True
    # before/after: the catalog's definitions; prepared: the exact statement a real run sends, CONCURRENTLY.
    assert result['diff'] == dict(
        before='-- pt_Job_diff_idx: absent\n',
        after='CREATE INDEX "pt_Job_diff_idx" ON "public"."Job" USING "btree" ("createdAt")\n',
        prepared='-- The statements a real run would send, in order:\n'
                 'CREATE INDEX CONCURRENTLY IF NOT EXISTS "pt_Job_diff_idx" ON "public"."Job" USING "btree" ("createdAt");\n')
    assert not relation_exists(db, 'pt_Job_diff_idx')


def test_check_mode_on_an_existing_index_plans_nothing(db, run_module):
    run_module(MODULE, table='Job', indexes=JOB_SPECS[:1])
    result = run_module(MODULE, check=True, diff=True, table='Job', indexes=JOB_SPECS[:1])
    assert result['changed'] is False
    assert result['queries'] == []
    definition = index_info(db, 'pt_Job_teacherId_status_idx')['definition']
    assert result['diff'] == dict(before=definition + '\n', after=definition + '\n')


def test_check_mode_absent_does_not_drop(db, run_module):
    run_module(MODULE, table='Job', indexes=JOB_SPECS[:1])
    result = run_module(MODULE, check=True, diff=True, table='Job', state='absent',
                        indexes=[dict(name='pt_Job_teacherId_status_idx')])
    assert result['changed'] is True
    assert result['queries'] == ['DROP INDEX CONCURRENTLY IF EXISTS "public"."pt_Job_teacherId_status_idx"']
    assert result['diff']['after'] == '-- pt_Job_teacherId_status_idx: absent\n'
    assert result['diff']['prepared'].endswith(
        '\nDROP INDEX CONCURRENTLY IF EXISTS "public"."pt_Job_teacherId_status_idx";\n')
    assert index_info(db, 'pt_Job_teacherId_status_idx')['valid'] is True


# -- INVALID leftovers and mismatches ----------------------------------------------------------------

def make_invalid_unique_index(db, name, table, column):
    """A failed concurrent UNIQUE build on duplicate data leaves an INVALID index behind."""
    with pytest.raises(psycopg2.errors.UniqueViolation):
        helpers.query(db, 'CREATE UNIQUE INDEX CONCURRENTLY "%s" ON "%s" ("%s")' % (name, table, column))
    info = index_info(db, name)
    assert info is not None and info['valid'] is False and info['unique'] is True
    return info


@pytest.mark.majors()
def test_invalid_index_is_rebuilt(db, run_module):
    make_invalid_unique_index(db, 'pt_Job_status_idx', 'Job', 'status')

    result = run_module(MODULE, table='Job', indexes=[dict(name='pt_Job_status_idx', columns=['status'])])

    assert result.get('failed') is not True, result
    assert result['changed'] is True
    assert result['indexes'][0]['action'] == 'rebuilt'
    assert result['queries'] == [
        'DROP INDEX CONCURRENTLY IF EXISTS "public"."pt_Job_status_idx"',
        'CREATE INDEX CONCURRENTLY IF NOT EXISTS "pt_Job_status_idx" ON "public"."Job" USING "btree" ("status")']
    info = index_info(db, 'pt_Job_status_idx')
    assert info['valid'] is True and info['unique'] is False
    assert info['definition'] == 'CREATE INDEX "pt_Job_status_idx" ON public."Job" USING btree (status)'

    again = run_module(MODULE, table='Job', indexes=[dict(name='pt_Job_status_idx', columns=['status'])])
    assert again['changed'] is False and again['indexes'][0]['action'] == 'unchanged'


def test_invalid_index_diff_marks_it_invalid(db, run_module):
    make_invalid_unique_index(db, 'pt_Job_status_idx', 'Job', 'status')
    result = run_module(MODULE, check=True, diff=True, table='Job',
                        indexes=[dict(name='pt_Job_status_idx', columns=['status'])])
    assert result['indexes'][0]['action'] == 'rebuilt'
    assert result['diff']['before'].rstrip('\n').endswith('-- INVALID')
    assert 'UNIQUE' in result['diff']['before']
    assert result['diff']['after'] == 'CREATE INDEX "pt_Job_status_idx" ON "public"."Job" USING "btree" ("status")\n'
    assert index_info(db, 'pt_Job_status_idx')['valid'] is False  # check mode left it alone


def test_failed_unique_build_leaves_no_invalid_index(db, run_module):
    result = run_module(MODULE, table='Job', lock_retries=0,
                        indexes=[dict(name='pt_Job_status_uq', columns=['status'], unique=True)])
    assert result.get('failed') is True
    assert 'pt_Job_status_uq' in result['msg']
    assert 'could not create unique index' in result['msg']
    assert 'INVALID index the failed build left was dropped' in result['msg']
    assert not relation_exists(db, 'pt_Job_status_uq')


def test_mismatched_definition_fails_with_both_definitions(db, run_module):
    helpers.query(db, 'CREATE INDEX "pt_Job_mismatch_idx" ON "Job" ("status")')
    old = index_info(db, 'pt_Job_mismatch_idx')['definition']
    before = helpers.all_indexes(db)

    result = run_module(MODULE, table='Job', indexes=[
        dict(name='pt_Job_other_idx', columns=['createdAt']),
        dict(name='pt_Job_mismatch_idx', columns=['teacherId'])])

    assert_failed_without_change(result, db, before, 'pt_Job_mismatch_idx', 'different definition')
    assert 'existing: ' + old in result['msg']
    assert 'planned:  CREATE INDEX "pt_Job_mismatch_idx" ON "public"."Job" USING "btree" ("teacherId")' in result['msg']
    assert 'key columns are (status), planned (teacherId)' in result['msg']
    assert index_info(db, 'pt_Job_mismatch_idx')['definition'] == old
    # The valid first index was not built either: validation precedes any DDL.
    assert not relation_exists(db, 'pt_Job_other_idx')


def test_name_taken_by_an_index_of_another_table_fails(db, run_module):
    helpers.query(db, 'CREATE INDEX "pt_shared_name_idx" ON "JobAssignment" ("status")')
    before = helpers.all_indexes(db)
    result = run_module(MODULE, table='Job', indexes=[dict(name='pt_shared_name_idx', columns=['status'])])
    assert_failed_without_change(result, db, before, 'pt_shared_name_idx', 'public.JobAssignment')


def test_name_taken_by_a_table_fails(db, run_module):
    before = helpers.all_indexes(db)
    result = run_module(MODULE, table='Job', indexes=[dict(name='XPAudit', columns=['status'])])
    assert_failed_without_change(result, db, before, '"public.XPAudit" already exists and is not an index')


# -- partial indexes with INCLUDE ---------------------------------------------------------------------

PARTIAL = dict(name='pt_Job_open_createdAt_idx', columns=['createdAt'], where='"closedAt" IS NULL',
               include=['teacherId'])


def test_partial_index_with_include(db, run_module):
    result = run_module(MODULE, table='Job', indexes=[PARTIAL])
    assert result.get('failed') is not True, result
    assert result['indexes'][0]['action'] == 'created'
    assert result['queries'] == [
        'CREATE INDEX CONCURRENTLY IF NOT EXISTS "pt_Job_open_createdAt_idx" ON "public"."Job" USING "btree" '
        '("createdAt") INCLUDE ("teacherId") WHERE ("closedAt" IS NULL)']
    info = index_info(db, 'pt_Job_open_createdAt_idx')
    assert info['valid'] is True
    assert info['definition'] == ('CREATE INDEX "pt_Job_open_createdAt_idx" ON public."Job" USING btree ("createdAt") '
                                  'INCLUDE ("teacherId") WHERE ("closedAt" IS NULL)')

    # PostgreSQL renders the predicate its own way; the comparison must not see a difference.
    again = run_module(MODULE, table='Job', indexes=[PARTIAL])
    assert again.get('failed') is not True, again
    assert again['changed'] is False and again['indexes'][0]['action'] == 'unchanged'

    # Another spelling of the same predicate is the same predicate.
    respelled = dict(PARTIAL, where='("closedAt") is  null')
    again = run_module(MODULE, table='Job', indexes=[respelled])
    assert again['changed'] is False and again['indexes'][0]['action'] == 'unchanged', again


def test_partial_index_with_enum_predicate_is_idempotent(db, run_module):
    spec = dict(name='pt_Job_open_status_idx', columns=['teacherId'], where="\"status\" = 'OPEN'")
    first = run_module(MODULE, table='Job', indexes=[spec])
    assert first['indexes'][0]['action'] == 'created', first
    assert "WHERE (status = 'OPEN'::\"JobStatus\")" in index_info(db, 'pt_Job_open_status_idx')['definition']
    again = run_module(MODULE, table='Job', indexes=[spec])
    assert again['changed'] is False and again['indexes'][0]['action'] == 'unchanged', again


def test_predicate_naming_its_table_is_accepted_and_idempotent(db, run_module):
    # The definition check builds the index on an empty copy named like the table, so "Job"."closedAt" works.
    spec = dict(name='pt_Job_qualified_idx', columns=['createdAt'], where='"Job"."closedAt" IS NULL')
    first = run_module(MODULE, table='Job', indexes=[spec])
    assert first.get('failed') is not True, first
    assert first['indexes'][0]['action'] == 'created'
    assert index_info(db, 'pt_Job_qualified_idx')['valid'] is True
    again = run_module(MODULE, table='Job', indexes=[spec])
    assert again['changed'] is False and again['indexes'][0]['action'] == 'unchanged', again


def test_partial_index_with_another_predicate_is_a_mismatch(db, run_module):
    run_module(MODULE, table='Job', indexes=[PARTIAL])
    old = index_info(db, 'pt_Job_open_createdAt_idx')['definition']
    before = helpers.all_indexes(db)

    result = run_module(MODULE, table='Job', indexes=[dict(PARTIAL, where='"closedAt" IS NOT NULL')])

    assert_failed_without_change(result, db, before, 'pt_Job_open_createdAt_idx', 'different definition',
                                 'predicate is ("closedAt" IS NULL), planned ("closedAt" IS NOT NULL)')
    assert 'existing: ' + old in result['msg']
    assert 'WHERE ("closedAt" IS NOT NULL)' in result['msg']
    assert index_info(db, 'pt_Job_open_createdAt_idx')['definition'] == old


def test_partial_index_without_predicate_in_plan_is_a_mismatch(db, run_module):
    run_module(MODULE, table='Job', indexes=[PARTIAL])
    before = helpers.all_indexes(db)
    plain = dict(PARTIAL)
    del plain['where']
    result = run_module(MODULE, table='Job', indexes=[plain])
    assert_failed_without_change(result, db, before, 'predicate is ("closedAt" IS NULL), planned none')


# -- bad input: refused before any DDL ----------------------------------------------------------------

GOOD = dict(name='pt_Job_good_idx', columns=['createdAt'])

BAD_INPUTS = [
    pytest.param('NoSuchTable', [dict(name='pt_x_idx', columns=['id'])],
                 ['table public.NoSuchTable does not exist'], id='missing-table'),
    pytest.param('Job', [GOOD, dict(name='pt_Job_bad_idx', columns=['teacherId', 'noSuchColumn'])],
                 ['pt_Job_bad_idx', '"noSuchColumn" do not exist in table public.Job'], id='missing-column'),
    pytest.param('Job', [GOOD, dict(name='pt_' + 'x' * 61, columns=['status'])],
                 ['pt_' + 'x' * 61, 'is 64 bytes long', 'at most 63 bytes'], id='name-over-63-bytes'),
    pytest.param('Job', [GOOD, dict(name='pt_' + '\u00e9' * 31, columns=['status'])],
                 ['pt_' + '\u00e9' * 31, 'is 65 bytes long'], id='name-over-63-bytes-multibyte'),
    pytest.param('Job', [GOOD, dict(name='pt_Job_dup_idx', columns=['status']),
                         dict(name='pt_Job_dup_idx', columns=['teacherId'])],
                 ['"pt_Job_dup_idx" is listed twice'], id='duplicate-names'),
    pytest.param('Job', [GOOD, dict(name=' pt_Job_lead_idx', columns=['status'])],
                 ['" pt_Job_lead_idx" has leading or trailing white space'], id='leading-space'),
    pytest.param('Job', [GOOD, dict(name='', columns=['status'])],
                 ['index #2 of table "Job": index name is empty'], id='empty-name'),
    pytest.param('Job', [GOOD, dict(name='pt_Job_am_idx', columns=['status'], method='nosuchmethod')],
                 ['pt_Job_am_idx', 'access method "nosuchmethod" does not exist'], id='unknown-access-method'),
    pytest.param('Job', [GOOD, dict(name='pt_Job_where_idx', columns=['status'], where='"noSuchColumn" IS NULL')],
                 ['pt_Job_where_idx', 'its where predicate `"noSuchColumn" IS NULL` is refused by PostgreSQL',
                  'column "noSuchColumn" does not exist'], id='invalid-where-column'),
    pytest.param('Job', [GOOD, dict(name='pt_Job_where_idx', columns=['status'], where='"closedAt" IS')],
                 ['pt_Job_where_idx', "PostgreSQL's parser refuses it", 'syntax error'], id='invalid-where-syntax'),
    pytest.param('Job', [GOOD, dict(name='pt_Job_where_idx', columns=['status'], where='"createdAt" > now()')],
                 ['pt_Job_where_idx', 'IMMUTABLE'], id='where-not-immutable'),
]


@pytest.mark.parametrize('table, indexes, fragments', BAD_INPUTS)
def test_bad_input_is_refused_and_nothing_changes(db, run_module, table, indexes, fragments):
    before = helpers.all_indexes(db)
    result = run_module(MODULE, table=table, indexes=indexes)
    assert_failed_without_change(result, db, before, 'cannot be applied', *fragments)
    assert result['indexes'] == []
    assert created_index_names(db) == []
    assert not relation_exists(db, GOOD['name'])


def test_all_input_problems_are_listed_at_once(db, run_module):
    # Problems visible in the input alone are all reported by one run, before the catalog is read.
    before = helpers.all_indexes(db)
    result = run_module(MODULE, table='Job', indexes=[
        GOOD,
        dict(name='pt_Job\x07bell_idx', columns=['status']),
        dict(name='pt_Job_uq_idx', columns=['status'], unique=True, method='hash'),
        dict(name='pt_Job_where_idx', columns=['status'], where='  '),
        dict(name='pt_Job_rep_idx', columns=['status', 'teacherId', 'status']),
        dict(name='pt_Job_ovl_idx', columns=['status'], include=['status'])])
    assert_failed_without_change(
        result, db, before, 'cannot be applied',
        "index #2 of table \"Job\": index name 'pt_Job\\x07bell_idx' contains a control character",
        'index "pt_Job_uq_idx": only btree indexes can be unique',
        'index "pt_Job_where_idx" has an empty where predicate',
        'index "pt_Job_rep_idx" lists column(s) status more than once',
        'index "pt_Job_ovl_idx" has column(s) status both as key and in include')
    assert problem_count(result['msg']) == 5
    assert not relation_exists(db, GOOD['name'])


def test_all_catalog_problems_are_listed_at_once(db, run_module):
    before = helpers.all_indexes(db)
    result = run_module(MODULE, table='Job', indexes=[
        GOOD,
        dict(name='pt_a_idx', columns=['teacherid']),  # names are case-sensitive
        dict(name='pt_b_idx', columns=['status'], method='nosuchmethod'),
        dict(name='pt_c_idx', columns=['createdAt'], include=['nope'])])
    assert_failed_without_change(result, db, before, 'cannot be applied',
                                 'index "pt_a_idx": column(s) "teacherid" do not exist in table public.Job',
                                 'index "pt_b_idx": access method "nosuchmethod" does not exist',
                                 'index "pt_c_idx": column(s) "nope" do not exist')
    assert problem_count(result['msg']) == 3
    assert not relation_exists(db, GOOD['name'])


def test_access_method_limits_are_refused_before_any_ddl(db, run_module):
    result = run_module(MODULE, table='Job', indexes=[
        GOOD, dict(name='pt_Job_hash2_idx', columns=['status', 'teacherId'], method='hash')])
    assert result.get('failed') is True
    assert 'multicolumn' in result['msg']
    assert not relation_exists(db, GOOD['name'])


def test_where_cannot_smuggle_a_second_statement(db, run_module):
    # The predicate is spliced as SQL (plan data). Today the stacked statement passes the predicate check
    # (it runs inside the check's rolled-back transaction) and the CREATE fails on it; whichever stage
    # refuses it, the task must fail and leave nothing behind.
    before = helpers.all_indexes(db)
    result = run_module(MODULE, table='Job', indexes=[
        dict(name='pt_Job_inj_idx', columns=['status'],
             where='true; CREATE INDEX "pt_smuggled_idx" ON "Job" ("title"); SELECT true')])
    assert result.get('failed') is True
    assert not relation_exists(db, 'pt_smuggled_idx')
    assert not relation_exists(db, 'pt_Job_inj_idx')
    assert helpers.all_indexes(db) == before


# -- state absent ------------------------------------------------------------------------------------

def test_absent_drops_then_is_unchanged(db, run_module):
    run_module(MODULE, table='Job', indexes=JOB_SPECS)
    assert index_info(db, 'pt_Job_teacherId_status_idx') is not None

    absent = [dict(name='pt_Job_createdAt_idx'), dict(name='pt_Job_teacherId_status_idx')]
    result = run_module(MODULE, table='Job', state='absent', indexes=absent)

    assert result.get('failed') is not True, result
    assert result['changed'] is True
    assert [i['action'] for i in result['indexes']] == ['dropped', 'dropped']
    assert result['queries'] == [
        'DROP INDEX CONCURRENTLY IF EXISTS "public"."pt_Job_createdAt_idx"',
        'DROP INDEX CONCURRENTLY IF EXISTS "public"."pt_Job_teacherId_status_idx"']
    assert all(i['definition'] is None for i in result['indexes'])
    assert not relation_exists(db, 'pt_Job_createdAt_idx')
    assert not relation_exists(db, 'pt_Job_teacherId_status_idx')
    assert pg_indexes_def(db, 'pt_Job_teacherId_status_idx') is None

    again = run_module(MODULE, table='Job', state='absent', indexes=absent)
    assert again.get('failed') is not True, again
    assert again['changed'] is False
    assert again['queries'] == []
    assert [i['action'] for i in again['indexes']] == ['unchanged', 'unchanged']


def test_absent_drops_the_invalid_leftover_of_a_stopped_build_of_its_plan_and_leaves_anyone_elses(db, run_module):
    make_invalid_unique_index(db, 'pt_Job_status_idx', 'Job', 'status')
    result = run_module(MODULE, table='Job', state='absent', indexes=[dict(name='pt_Job_status_idx')])
    assert result['changed'] is False and result['indexes'][0]['action'] == 'unchanged'
    assert 'is not in the ledger of plan manual' in result['indexes'][0]['left_alone']
    assert relation_exists(db, 'pt_Job_status_idx')
    helpers.record_in_ledger(db, 'index', 'Job', 'pt_Job_status_idx', 'CREATE UNIQUE INDEX "pt_Job_status_idx" ...',
                             state='intended')
    result = run_module(MODULE, table='Job', state='absent', indexes=[dict(name='pt_Job_status_idx')])
    assert result['indexes'][0]['action'] == 'dropped'
    assert not relation_exists(db, 'pt_Job_status_idx')
    assert helpers.query(db, "SELECT state, undone_by FROM pgzd_audit.ledger WHERE object_name = 'pt_Job_status_idx'") \
        == [('undone', 'manual')]


def test_absent_leaves_a_primary_key_index_alone(db, run_module):
    before = helpers.all_indexes(db)
    result = run_module(MODULE, table='Job', state='absent', indexes=[dict(name='Job_pkey')])
    assert result.get('failed') is not True and result['changed'] is False, result
    assert 'index "Job_pkey" is not in the ledger' in result['indexes'][0]['left_alone']
    assert any(line.startswith('left alone: Job_pkey on public.Job') for line in result['summary'])
    assert helpers.all_indexes(db) == before
    assert index_info(db, 'Job_pkey')['valid'] is True


def test_absent_leaves_an_index_of_another_table_alone(db, run_module):
    helpers.query(db, 'CREATE INDEX "pt_JobAssignment_status_idx" ON "JobAssignment" ("status")')
    before = helpers.all_indexes(db)
    result = run_module(MODULE, table='Job', state='absent', indexes=[dict(name='pt_JobAssignment_status_idx')])
    assert result.get('failed') is not True and result['changed'] is False, result
    assert 'belongs to table public.JobAssignment' in result['indexes'][0]['left_alone']
    assert helpers.all_indexes(db) == before


# -- lock timeout ------------------------------------------------------------------------------------

def end_transaction(conn):
    # The connection is in autocommit, where psycopg2's rollback() is a no-op: the transaction was
    # opened with an explicit BEGIN, so it is ended with an explicit ROLLBACK.
    helpers.query(conn, 'ROLLBACK')


def test_a_build_waits_for_a_table_lock_without_retrying_and_build_wait_timeout_ends_it(db, connect, run_module):
    """A conflicting table lock (SHARE) makes the build wait: never cut short by lock_timeout nor retried; only
    build_wait_timeout ends it, naming the holder."""
    blocker = connect()
    blocker_pid = blocker.get_backend_pid()
    spec = dict(name='pt_XPAudit_userId_idx', columns=['userId'])
    args = dict(table='XPAudit', indexes=[spec], lock_timeout='200ms', lock_retries=2, lock_retry_delay=0.1,
                build_wait_timeout=2)
    with blocker.cursor() as cursor:
        cursor.execute('BEGIN; LOCK TABLE "XPAudit" IN SHARE MODE;')
    try:
        started = time.monotonic()
        result = run_module(MODULE, **args)
        elapsed = time.monotonic() - started

        assert result.get('failed') is True, result
        message = result['msg']
        assert 'pt_XPAudit_userId_idx' in message
        assert 'gave up after waiting' in message and 'build_wait_timeout=2.0s' in message, message
        assert 'not retried' in message and 'retry' not in ' '.join(result.get('warnings', []))
        assert 'pid %d (user pgzd' % blocker_pid in message and 'LOCK TABLE' in message, message
        assert result['queries'] == [] and result['lock_retries_used'] == 0
        assert 2 <= elapsed < 30  # waited past the 200 ms lock_timeout, up to build_wait_timeout
        assert not relation_exists(db, 'pt_XPAudit_userId_idx')
    finally:
        end_transaction(blocker)

    rerun = run_module(MODULE, **args)
    assert rerun.get('failed') is not True, rerun
    assert rerun['indexes'][0]['action'] == 'created'
    assert rerun['indexes'][0]['retries'] == 0 and rerun['indexes'][0]['waited_seconds'] == 0
    assert index_info(db, 'pt_XPAudit_userId_idx')['valid'] is True


def test_an_old_snapshot_is_waited_for_and_the_index_built_exactly_once(db, connect, run_module, login):
    """A REPEATABLE READ snapshot older than the build: the build waits for it (it used to hit lock_timeout, drop
    the index and build it again, up to six times), then finishes once the snapshot is gone."""
    import threading

    blocker = connect()
    blocker_pid = blocker.get_backend_pid()
    watcher = connect()
    helpers.query(blocker, 'BEGIN ISOLATION LEVEL REPEATABLE READ')
    helpers.query(blocker, 'SELECT count(*) FROM "Item"')
    seen = {}

    def end_snapshot_later():
        # While it waits, the progress module names the session; then the snapshot ends.
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not seen:
                rows = helpers.query(watcher, "SELECT p.phase FROM pg_stat_progress_create_index p "
                                              "JOIN pg_stat_activity a ON a.pid = p.pid "
                                              "WHERE a.application_name = 'pg-zero-downtime'")
                if rows and rows[0][0] == 'waiting for old snapshots':
                    time.sleep(3)  # well past the 300 ms lock_timeout
                    seen['progress'] = helpers.run_ansible_module('postgresql_online_index_progress', dict(
                        login, jobs=[dict(results_file='/nonexistent', schema='public', table='MoneyTx')],
                        wait=0, build_wait_warn=1))
                time.sleep(0.05)
        finally:
            end_transaction(blocker)

    thread = threading.Thread(target=end_snapshot_later)
    thread.start()
    try:
        result = run_module(MODULE, table='MoneyTx', lock_timeout='300ms', lock_retries=5, lock_retry_delay=0.1,
                            build_wait_warn=1, indexes=[dict(name='pt_MoneyTx_userId_idx', columns=['userId'])])
    finally:
        thread.join()
    assert result.get('failed') is not True, result.get('msg')
    (entry,) = result['indexes']
    assert entry['action'] == 'created' and entry['retries'] == 0 and result['lock_retries_used'] == 0
    assert result['queries'] == [entry['statements'][0]]  # one CREATE INDEX CONCURRENTLY, built once
    assert entry['waited_seconds'] >= 2, entry
    assert any('pid %d' % blocker_pid in session for session in entry['waited_for']), entry
    assert any('waited' in warning and 'pid %d' % blocker_pid in warning for warning in result['warnings'])
    assert index_info(db, 'pt_MoneyTx_userId_idx')['valid'] is True
    progress = seen['progress']
    assert progress.get('failed') is not True, progress
    (line,) = progress['progress_lines']
    assert line.startswith('WARNING: pt_MoneyTx_userId_idx on public.MoneyTx: waiting for old snapshots'), line
    assert 'pid %d (user pgzd' % blocker_pid in line and 'idle in transaction' in line, line


def test_build_wait_timeout_ends_a_build_waiting_for_an_old_snapshot_and_drops_its_invalid_leftover(
        db, connect, run_module):
    blocker = connect()
    blocker_pid = blocker.get_backend_pid()
    helpers.query(blocker, 'BEGIN ISOLATION LEVEL REPEATABLE READ')
    helpers.query(blocker, 'SELECT count(*) FROM "Item"')
    args = dict(table='MoneyTx', indexes=[dict(name='pt_MoneyTx_userId_idx', columns=['userId'])],
                lock_timeout='300ms', lock_retries=3, lock_retry_delay=0.1, build_wait_timeout=1.5)
    try:
        result = run_module(MODULE, **args)
        assert result.get('failed') is True, result
        message = result['msg']
        assert 'pt_MoneyTx_userId_idx' in message and 'gave up after waiting' in message
        assert 'pid %d' % blocker_pid in message
        assert 'INVALID index the failed build left was dropped' in message
        assert result['lock_retries_used'] == 0
        assert not relation_exists(db, 'pt_MoneyTx_userId_idx')
    finally:
        end_transaction(blocker)

    rerun = run_module(MODULE, **args)
    assert rerun.get('failed') is not True, rerun.get('msg')
    assert rerun['indexes'][0]['action'] == 'created'
    assert index_info(db, 'pt_MoneyTx_userId_idx')['valid'] is True
