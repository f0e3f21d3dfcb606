# -*- coding: utf-8 -*-
"""postgresql_online_index_info (read-only whole-plan preflight) through real Ansible, real cluster."""

import copy

import pytest
import yaml

import helpers
from helpers import index_info, relation_exists

pytestmark = pytest.mark.integration

MODULE = 'postgresql_online_index_info'


@pytest.fixture(scope='module')
def t12_plan():
    with open(helpers.PLAN_T12_PATH) as handle:
        plan = yaml.safe_load(handle)
    # What the tests below rely on: the plan's shape (26 indexes, one entry per table).
    names = [table['name'] for table in plan['tables']]
    assert len(names) == len(set(names))
    assert sum(len(table['indexes']) for table in plan['tables']) == 26
    return plan


def plan_args(plan, **extra):
    args = dict(tables=plan['tables'], schema=plan.get('schema', 'public'))
    args.update(extra)
    return args


def test_t12_plan_on_a_fresh_database_has_every_table_pending(db, run_module, t12_plan):
    before = helpers.all_indexes(db)
    result = run_module(MODULE, **plan_args(t12_plan))

    assert result.get('failed') is not True, result
    assert result['changed'] is False
    table_names = [table['name'] for table in t12_plan['tables']]
    assert result['pending_tables'] == table_names
    assert len(result['pending_tables']) == 11
    assert [t['name'] for t in result['tables']] == table_names
    for planned, reported in zip(t12_plan['tables'], result['tables']):
        assert reported['schema'] == 'public'
        assert reported['pending'] == [index['name'] for index in planned['indexes']]
        assert all(index['action'] == 'created' for index in reported['indexes'])
    assert len(result['queries']) == 26
    assert result['queries'][0] == ('CREATE INDEX CONCURRENTLY IF NOT EXISTS "Job_teacherId_status_idx" ON '
                                    '"public"."Job" USING "btree" ("teacherId", "status")')
    assert all(q.startswith('CREATE INDEX CONCURRENTLY IF NOT EXISTS ') for q in result['queries'])
    # Read-only: the catalog is exactly as before.
    assert helpers.all_indexes(db) == before


def test_finished_table_is_not_pending(db, run_module, t12_plan):
    xp = next(table for table in t12_plan['tables'] if table['name'] == 'XPAudit')
    built = run_module('postgresql_online_index', table='XPAudit', indexes=xp['indexes'])
    assert built.get('failed') is not True, built

    result = run_module(MODULE, **plan_args(t12_plan))

    assert result.get('failed') is not True, result
    assert 'XPAudit' not in result['pending_tables']
    assert len(result['pending_tables']) == len(t12_plan['tables']) - 1
    reported = next(t for t in result['tables'] if t['name'] == 'XPAudit')
    assert reported['pending'] == []
    assert [i['action'] for i in reported['indexes']] == ['unchanged', 'unchanged']
    assert len(result['queries']) == 26 - 2
    assert not any('XPAudit' in q for q in result['queries'])


def test_rollback_check_lists_only_existing_indexes(db, run_module, t12_plan):
    xp = next(table for table in t12_plan['tables'] if table['name'] == 'XPAudit')
    run_module('postgresql_online_index', table='XPAudit', indexes=xp['indexes'])

    result = run_module(MODULE, **plan_args(t12_plan, state='absent'))

    assert result.get('failed') is not True, result
    assert result['pending_tables'] == ['XPAudit']
    assert result['queries'] == ['DROP INDEX CONCURRENTLY IF EXISTS "public"."XPAudit_userId_createdAt_idx"',
                                 'DROP INDEX CONCURRENTLY IF EXISTS "public"."XPAudit_createdAt_idx"']
    assert index_info(db, 'XPAudit_createdAt_idx')['valid'] is True


def test_plan_with_missing_columns_fails_listing_them_all(db, run_module, t12_plan):
    plan = copy.deepcopy(t12_plan)
    plan['tables'][0]['indexes'][1]['columns'] = ['subjectId', 'noSuchJobColumn']
    item = next(table for table in plan['tables'] if table['name'] == 'Item')
    item['indexes'][0]['columns'] = ['kind']
    before = helpers.all_indexes(db)

    result = run_module(MODULE, **plan_args(plan))

    assert result.get('failed') is True, result
    assert result['changed'] is False
    message = result['msg']
    assert 'nothing was changed' in message
    assert 'Job_subjectId_status_idx' in message and '"noSuchJobColumn" do not exist in table public.Job' in message
    assert 'Item_type_rarity_idx' in message and '"kind" do not exist in table public.Item' in message
    # The healthy tables are still reported.
    assert 'Job' not in result['pending_tables'] and 'Item' not in result['pending_tables']
    assert len(result['pending_tables']) == len(plan['tables']) - 2
    assert helpers.all_indexes(db) == before


def test_plan_with_missing_table_and_bad_predicate_fails(db, run_module, t12_plan):
    plan = copy.deepcopy(t12_plan)
    plan['tables'].append(dict(name='NoSuchTable', indexes=[dict(name='NoSuchTable_x_idx', columns=['x'])]))
    plan['tables'][0]['indexes'].append(dict(name='Job_open_idx', columns=['createdAt'], where='"nope" IS NULL'))
    before = helpers.all_indexes(db)

    result = run_module(MODULE, **plan_args(plan))

    assert result.get('failed') is True
    assert 'table public.NoSuchTable does not exist' in result['msg']
    assert 'Job_open_idx' in result['msg'] and 'nope' in result['msg']
    assert helpers.all_indexes(db) == before
    # The predicate check's temporary table is gone with its transaction.
    assert not relation_exists(db, 'pgzd_predicate_probe')


def test_same_index_name_on_two_tables_fails(db, run_module, t12_plan):
    plan = copy.deepcopy(t12_plan)
    plan['tables'][1]['indexes'].append(dict(name='Job_createdAt_idx', columns=['createdAt']))
    result = run_module(MODULE, **plan_args(plan))
    assert result.get('failed') is True
    assert ('the plan creates relation "public.Job_createdAt_idx" twice (index "Job_createdAt_idx" of public.Job and '
            'index "Job_createdAt_idx" of public.JobAssignment)') in result['msg']


def test_info_check_mode_matches_normal_mode(db, run_module, t12_plan):
    normal = run_module(MODULE, **plan_args(t12_plan))
    checked = run_module(MODULE, check=True, **plan_args(t12_plan))
    assert checked.get('failed') is not True, checked
    assert checked['changed'] is False
    for key in ('pending_tables', 'tables', 'queries'):
        assert checked[key] == normal[key]


def test_stacked_statement_in_where_is_refused_by_the_preflight(db, run_module):
    result = run_module(MODULE, tables=[dict(name='Job', indexes=[
        dict(name='pt_Job_stacked_idx', columns=['status'], where='true; SELECT true')])])
    assert result.get('failed') is True
    assert 'pt_Job_stacked_idx' in result['msg']
