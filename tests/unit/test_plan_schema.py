# -*- coding: utf-8 -*-
"""The plan's keys are defined once, in module_utils/plan/plan_schema.py: the controller's check, the modules' argument
specs, their documentation (ansible-doc, with the doc fragments merged in) and docs/plan-format.md all agree with it."""

import glob
import importlib
import json
import os
import re
import subprocess

import pytest
import yaml

import helpers

schema = importlib.import_module(helpers.collection_path('plugins.module_utils.plan.plan_schema'))
mp = importlib.import_module(helpers.collection_path('plugins.plugin_utils.migration_plan'))

MODULES = sorted(os.path.basename(path)[:-3] for path in glob.glob(os.path.join(helpers.REPO_ROOT, 'plugins', 'modules',
                                                                                '*.py')))
# The module options that take a part of a plan, named as the plan's top-level keys.
PLAN_PARTS = ('schema', 'tables', 'constraints', 'baseline_queries', 'trusted', 'prisma_migration')
# The modules that take the whole plan get its baseline queries as the controller checked them, as mappings without a
# spec of their own; postgresql_query_baseline, which runs them, declares their keys (option queries).
TAKEN_AS_CHECKED = ('baseline_queries',)
ENTRIES = dict(plan=schema.PLAN, table=schema.TABLE, index=schema.INDEX, constraint=schema.CONSTRAINT,
               references=schema.REFERENCES, baseline_query=schema.BASELINE_QUERY,
               prisma_migration=schema.PRISMA_MIGRATION)


def every_key(entries=schema.PLAN, path=()):
    """(path, definition) of every key, nested keys too: ('tables', 'indexes', 'name'), ..."""
    for name, definition in entries:
        yield path + (name,), definition
        if 'options' in definition:
            for item in every_key(definition['options'], path + (name,)):
                yield item


EVERY_KEY = list(every_key())


class _Spec(Exception):
    def __init__(self, argument_spec):
        super(_Spec, self).__init__('argument_spec')
        self.argument_spec = argument_spec


def _capture(argument_spec, **_kwargs):
    raise _Spec(argument_spec)


def argument_spec_of(name):
    """The argument spec a module hands AnsibleModule, as it runs (main() is stopped right there); None for the
    documentation of an action plugin that has no module code."""
    module = importlib.import_module(helpers.collection_path('plugins.modules.%s' % name))
    if not hasattr(module, 'AnsibleModule'):
        return None
    original = module.AnsibleModule
    module.AnsibleModule = _capture
    try:
        module.main()
    except _Spec as spec:
        return spec.argument_spec
    finally:
        module.AnsibleModule = original
    raise AssertionError('%s did not build an AnsibleModule' % name)


SPECS = dict((name, spec) for name, spec in ((name, argument_spec_of(name)) for name in MODULES) if spec is not None)
TAKING_A_PLAN = sorted(name for name, spec in SPECS.items()
                       if any(part in spec for part in PLAN_PARTS if part != 'schema'))


def expected_option(name, part):
    """What the schema says module C(name)'s option C(part) is."""
    extra = [schema.PRISMA_MIGRATION_SQL] if name == 'postgresql_migration_preflight' else []
    option = schema.module_option(part, extra=extra if part == 'prisma_migration' else ())
    if part in TAKEN_AS_CHECKED:
        option.pop('options')
    return option


@pytest.mark.parametrize('path,definition', EVERY_KEY, ids=['.'.join(path) for path, _d in EVERY_KEY])
def test_every_key_is_well_defined(path, definition):
    assert definition['type'] in ('str', 'bool', 'int', 'list', 'dict')
    assert definition.get('elements') in ((None,) if definition['type'] != 'list' else ('str', 'dict'))
    assert ('options' in definition) == (definition.get('elements', definition['type']) == 'dict'
                                         and path[-1] != 'params')
    description = definition['description']
    assert description.endswith('.') and '\n' not in description and len(description) <= 100
    allowed = definition.get('choices') or definition.get('values')
    if allowed and definition.get('default') is not None:
        assert definition['default'] in allowed
    assert not (definition.get('required') and definition.get('default') is not None)
    assert set(definition.get('types', ())) <= set(schema.CONSTRAINT_TYPES)
    if 'types' in definition:
        assert path[:-1] == ('constraints',)


def test_the_plan_check_takes_its_key_lists_and_values_from_the_schema():
    assert mp.TOP_KEYS == ('name', 'description', 'schema', 'tables', 'constraints', 'baseline_queries',
                           'prisma_migration', 'trusted', 'prisma_migrations_dir')
    assert mp.CONSTRAINT_KEYS == ('name', 'table', 'schema', 'type', 'columns', 'on_duplicates', 'rename_column',
                                  'keep_oldest_by', 'references', 'on_delete', 'on_update', 'index', 'expression',
                                  'column')
    assert mp.TYPE_KEYS == dict(unique=('columns', 'on_duplicates', 'rename_column', 'keep_oldest_by'),
                                foreign_key=('columns', 'references', 'on_delete', 'on_update', 'index'),
                                check=('expression',), not_null=('column',))
    assert mp.COMMON_CONSTRAINT_KEYS == ('name', 'table', 'schema', 'type')
    assert mp.PRISMA_REQUIRED == ('name', 'file')
    assert mp.ON_DUPLICATES == ('fail', 'rename') and mp.ON_MISMATCH == ('fail', 'replace')
    assert mp.PLAN_DEFAULTS == dict(schema='public', description='', constraints=[], baseline_queries=[], trusted=[])
    index_decisions = importlib.import_module(helpers.collection_path('plugins.module_utils.kinds.index_decisions'))
    assert tuple(index_decisions.ON_MISMATCH) == mp.ON_MISMATCH


UNKNOWN_KEY = [
    ('plan', lambda plan: plan, 'unknown key(s) bogus (the keys of this entry are %s)'),
    ('table', lambda plan: plan['tables'][0], 'table "Job": unknown key(s) bogus (the keys of this entry are %s)'),
    ('index', lambda plan: plan['tables'][0]['indexes'][0],
     'table "Job", index "Job_status_idx": unknown key(s) bogus (the keys of this entry are %s)'),
    ('constraint', lambda plan: plan['constraints'][0],
     'constraint "Job_code_key": unknown key(s) bogus (the keys of this entry are %s)'),
    ('references', lambda plan: plan['constraints'][1]['references'],
     'constraint "Job_ownerId_fkey", references: unknown key(s) bogus (the keys of this entry are %s)'),
    ('baseline_query', lambda plan: plan['baseline_queries'][0],
     'baseline query "open_jobs": unknown key(s) bogus (the keys of this entry are %s)'),
    ('prisma_migration', lambda plan: plan['prisma_migration'],
     'prisma_migration: unknown key(s) bogus (the keys of this entry are %s)'),
]


def small_plan():
    return dict(name='small', tables=[dict(name='Job', indexes=[dict(name='Job_status_idx', columns=['status'])])],
                constraints=[dict(name='Job_code_key', table='Job', columns=['code']),
                             dict(name='Job_ownerId_fkey', type='foreign_key', table='Job', columns=['ownerId'],
                                  references=dict(table='User', columns=['id']))],
                baseline_queries=[dict(name='open_jobs', sql='SELECT 1')],
                prisma_migration=dict(name='20261204_small', file='migration.sql'))


def test_a_small_plan_with_every_kind_of_entry_passes():
    assert mp.plan_errors(small_plan()) == []


@pytest.mark.parametrize('kind,entry,message', UNKNOWN_KEY, ids=[kind for kind, _e, _m in UNKNOWN_KEY])
def test_the_plan_check_accepts_exactly_the_keys_of_the_schema(kind, entry, message):
    plan = small_plan()
    entry(plan)['bogus'] = 1
    assert mp.plan_errors(plan) == [message % ', '.join(schema.keys(ENTRIES[kind]))]


CHOICES = [(path, definition) for path, definition in EVERY_KEY if definition.get('choices')]


@pytest.mark.parametrize('path,definition', CHOICES, ids=['.'.join(path) for path, _d in CHOICES])
def test_the_plan_check_refuses_a_value_the_schema_does_not_allow(path, definition):
    plan = small_plan()
    entry = dict(tables=lambda: plan['tables'][0]['indexes'][0], constraints=lambda: plan['constraints'][0])[path[0]]()
    for value in definition['choices']:
        entry[path[-1]] = value
        assert not [error for error in mp.plan_errors(plan) if ' %s must be' % path[-1] in error], value
    entry[path[-1]] = 'bogus'
    assert [error for error in mp.plan_errors(plan) if (' %s must be' % path[-1]) in error
            and "'bogus'" in error], mp.plan_errors(plan)


def test_the_modules_taking_a_plan_are_found():
    assert {'postgresql_migration_preflight', 'postgresql_migration_validation', 'postgresql_migration_ledger',
            'postgresql_online_index', 'postgresql_online_index_info', 'postgresql_online_constraint',
            'postgresql_online_unique_constraint', 'postgresql_unique_constraint_info'} <= set(TAKING_A_PLAN)


@pytest.mark.parametrize('name', TAKING_A_PLAN)
def test_the_argument_specs_of_the_plan_parts_are_the_schemas(name):
    spec = SPECS[name]
    for part in PLAN_PARTS:
        if part in spec:
            assert spec[part] == expected_option(name, part), (name, part)


def test_the_argument_specs_of_single_entries_are_the_schemas():
    assert SPECS['postgresql_online_index']['indexes'] == dict(type='list', elements='dict',
                                                               options=schema.argument_options(schema.INDEX))
    assert SPECS['postgresql_query_baseline']['queries']['options'] == schema.argument_options(schema.BASELINE_QUERY)


def documented(option):
    """An option as ansible-doc shows it, in the shape of an argument spec."""
    spec = dict((field, option[field]) for field in schema.SPEC_FIELDS if option.get(field) is not None)
    if option.get('required'):
        spec['required'] = True
    if 'suboptions' in option:
        spec['options'] = dict((key, documented(value)) for key, value in option['suboptions'].items())
    return spec


@pytest.fixture(scope='module')
def module_docs():
    names = ['%s.%s' % (helpers.COLLECTION, name) for name in TAKING_A_PLAN + ['postgresql_query_baseline']]
    process = subprocess.run([helpers._tool('ansible-doc'), '--json', '-t', 'module'] + names, cwd=helpers.REPO_ROOT,
                             env=helpers.ansible_env(), capture_output=True, text=True, timeout=120)
    assert process.returncode == 0, process.stderr
    return dict((name.rsplit('.', 1)[1], entry['doc']['options']) for name, entry in json.loads(process.stdout).items())


def test_the_docs_of_the_plan_parts_are_the_schemas(module_docs):
    """The doc fragments plan_tables, plan_constraints and plan_trust, and the modules' own options, as ansible-doc
    merges them: name, type, elements, default, choices and required of every plan key, nested ones too."""
    for name in TAKING_A_PLAN:
        for part in PLAN_PARTS:
            if part in SPECS[name]:
                assert documented(module_docs[name][part]) == expected_option(name, part), (name, part)
    assert documented(module_docs['postgresql_online_index']['indexes']) == SPECS['postgresql_online_index']['indexes']
    assert documented(module_docs['postgresql_query_baseline']['queries'])['options'] == \
        schema.argument_options(schema.BASELINE_QUERY)


def plan_format_examples():
    with open(os.path.join(helpers.REPO_ROOT, 'docs', 'plan-format.md')) as handle:
        text = handle.read()
    return text, [yaml.safe_load(block) for block in re.findall(r'```yaml\n(.*?)```', text, re.S)]


def example_values(value, path):
    """Every value the example gives at C(path), through lists."""
    if not path:
        return [value]
    if isinstance(value, list):
        return [found for item in value for found in example_values(item, path)]
    if isinstance(value, dict) and path[0] in value:
        return example_values(value[path[0]], path[1:])
    return []


def test_the_plan_format_example_is_a_plan_with_every_key():
    """docs/plan-format.md shows every key of the schema where it goes, in plans the check accepts (a plan of
    tables and constraints, and a plan of a Prisma migrations folder)."""
    text, examples = plan_format_examples()
    assert len(examples) == 2
    for example in examples:
        assert mp.plan_errors(example) == []
    missing = ['.'.join(path) for path, _definition in EVERY_KEY
               if not any(example_values(example, path) for example in examples)]
    assert missing == []
    assert 'plugins/module_utils/plan/plan_schema.py' in text


def test_the_role_argument_specs_of_index_entries_are_the_schemas():
    """A role's meta/argument_specs.yml (Ansible checks a role's variables against it before its first task)."""
    with open(os.path.join(helpers.REPO_ROOT, 'roles', 'online_indexes', 'meta', 'argument_specs.yml')) as handle:
        specs = yaml.safe_load(handle)['argument_specs']['main']['options']['online_indexes_specs']['options']
    assert dict((key, dict((field, value) for field, value in spec.items() if field != 'description'))
                for key, spec in specs.items()) == schema.argument_options(schema.INDEX)
