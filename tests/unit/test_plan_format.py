# -*- coding: utf-8 -*-
"""The controller-side plan check (plugins/plugin_utils/migration_plan.py, also the filter plan_errors): every
structural problem, naming its entry."""

import importlib
import os

import pytest
import yaml

import bad_plans
import helpers


mp = importlib.import_module(helpers.collection_path('plugins.filter.plan_errors'))


def test_the_shipped_and_the_walk_plans_are_well_formed():
    with open(helpers.PLAN_T12_PATH) as handle:
        assert mp.plan_errors(yaml.safe_load(handle)) == []
    assert mp.plan_errors(bad_plans.GOOD) == []
    with open(os.path.join(helpers.REPO_ROOT, 'fixtures', 'relations', 'plan.yml')) as handle:
        relations = yaml.safe_load(handle)
    assert mp.plan_errors(relations) == []
    assert sorted(set(c['type'] for c in relations['constraints'])) == ['check', 'foreign_key', 'not_null']


@pytest.mark.parametrize('name,plan,fragments', bad_plans.FORMAT, ids=[case[0] for case in bad_plans.FORMAT])
def test_a_malformed_plan_is_refused_naming_the_entry(name, plan, fragments):
    errors = mp.plan_errors(plan)
    assert errors, name
    text = '\n'.join(errors)
    for fragment in fragments:
        assert fragment in text, (fragment, errors)


@pytest.mark.parametrize('name,plan,fragments', bad_plans.CATALOG, ids=[case[0] for case in bad_plans.CATALOG])
def test_what_needs_the_catalog_passes_the_format_check(name, plan, fragments):
    # These are the preflight's to refuse (tests/integration/test_bad_plans.py): the format check lets them by.
    assert mp.plan_errors(plan) == [], name


def test_checks_and_foreign_keys_of_one_name_may_stand_on_different_tables():
    # Their names are per table in PostgreSQL; only a unique constraint's (its index's) is per schema.
    plan = dict(bad_plans.GOOD, constraints=bad_plans.GOOD['constraints'] + [
        dict(name='positive', type='check', table='Item', expression='price > 0'),
        dict(name='positive', type='check', table='Job', expression='reward >= 0'),
        dict(name='positive', type='check', table='Job', schema='other', expression='reward >= 0'),
        dict(name='class_fkey', type='foreign_key', table='Job', columns=['classId'],
             references=dict(table='Class', columns=['id'])),
        dict(name='class_fkey', type='foreign_key', table='JobAssignment', columns=['jobId'],
             references=dict(table='Job', columns=['id'])),
        dict(name='pt_walk_job_title_not_null', type='not_null', table='Job', column='title'),
        dict(name='pt_walk_job_title_not_null', type='not_null', table='Class', column='name')])
    assert mp.plan_errors(plan) == []


def test_every_problem_is_listed_at_once():
    plan = dict(name='x', tables=[dict(name='Job', indexes=[dict(name='a', columns='a,b', unique='yes')])],
                constraints=[dict(name='a', table='Job', columns=['a'])],
                baseline_queries=[dict(name='q', sql='SELECT %(x)s', params=dict(y=1))])
    errors = mp.plan_errors(plan)
    assert len(errors) == 5, errors


def test_the_filter_is_registered_under_its_name():
    assert mp.FilterModule().filters()['plan_errors'] is mp.plan_errors
