# -*- coding: utf-8 -*-
"""plugins/action/postgresql_migration_preflight.py: the module's options from the task's and the loaded plan."""

import importlib

import helpers

action = importlib.import_module(helpers.collection_path('plugins.action.postgresql_migration_preflight'))

PLAN = dict(name='t12', file='/p/t12.yml', schema='public', description='', tables=[dict(name='Job', indexes=[])],
            constraints=[], baseline_queries=[],
            prisma_migration=dict(name='20240101_a', file='/p/m.sql', migration_sql='SQL', create_table=False))


def test_the_plan_is_spread_into_the_modules_options_and_the_lock_shows_the_plans_name():
    args = action.module_args(dict(plan_file='plans/t12.yml', on_duplicates='rename', state='present'), PLAN,
                              '20261202T030405Z-abcdef', ['indexes'])
    assert 'on_duplicates' not in args
    assert args['plan_file'] == '/p/t12.yml' and args['plan_name'] == 't12' and args['tables'] == PLAN['tables']
    assert args['run_id'] == 't12-20261202T030405Z-abcdef'
    assert args['phases'] == ['indexes']  # from the tag selection, unless the task gives them
    assert args['prisma_migration'] == dict(name='20240101_a', file='/p/m.sql', migration_sql='SQL',
                                            create_table=False)
    given = action.module_args(dict(phases=['constraints'], only_tables='Job,Item'), PLAN, 'r', ['indexes'])
    assert given['phases'] == ['constraints'] and given['only_tables'] == ['Job', 'Item']


def test_the_plan_fact_leaves_out_the_migrations_text():
    fact = action.plan_fact(PLAN)
    assert 'migration_sql' not in fact['prisma_migration'] and fact['prisma_migration']['file'] == '/p/m.sql'
    assert PLAN['prisma_migration']['migration_sql'] == 'SQL'  # the loaded plan itself is left as it is


def test_the_run_context_keeps_only_tables_parsed_once_for_the_later_phases():
    """The validate role selects the plan's tables with pgzd_run.only_tables; it parses no -e only_tables itself."""
    run_context = importlib.import_module(helpers.collection_path('plugins.plugin_utils.run_context')).run_context
    limited = run_context(PLAN, 'r', '/a', only_tables=action.module_args(dict(only_tables='Job, Item'), PLAN, 'r',
                                                                          [])['only_tables'])
    assert limited['only_tables'] == ['Job', 'Item'] and limited['plan']['tables'] == PLAN['tables']
    assert run_context(PLAN, 'r', '/a')['only_tables'] == []
