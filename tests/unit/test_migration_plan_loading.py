# -*- coding: utf-8 -*-
"""plugins/plugin_utils/migration_plan.py, load_plan(): a plan file read on the controller, or what is wrong with it."""

import importlib
import re

import yaml

import bad_plans
import helpers

mp = importlib.import_module(helpers.collection_path('plugins.plugin_utils.migration_plan'))


def write(path, data):
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return str(path)


def test_a_relative_plan_is_read_from_the_working_directory_with_its_defaults(tmp_path):
    write(tmp_path / 'walk.yml', bad_plans.GOOD)
    plan, error = mp.load_plan('walk.yml', str(tmp_path))
    assert error is None
    assert plan['file'] == str(tmp_path / 'walk.yml')
    assert plan['schema'] == 'public' and plan['description'] == ''
    assert [t['name'] for t in plan['tables']] == ['Job', 'Item']


def test_no_plan_or_a_missing_file_says_what_to_pass(tmp_path):
    assert mp.load_plan('', str(tmp_path)) == (None, mp.NO_PLAN)
    plan, error = mp.load_plan('nope.yml', str(tmp_path))
    assert plan is None and error.startswith('The plan file %s does not exist' % (tmp_path / 'nope.yml'))


def test_a_file_that_is_not_yaml_gives_the_parsers_line_and_column(tmp_path):
    name, text, fragments = bad_plans.RAW[0]
    path = write(tmp_path / 'raw.yml', text)
    plan, error = mp.load_plan(path, '/')
    assert plan is None and error.startswith('The plan file %s is not valid YAML; nothing was done' % path)
    for fragment in fragments:
        assert fragment in error


def test_a_malformed_plan_lists_every_problem(tmp_path):
    plan = dict(bad_plans.GOOD, tables=[dict(name='Job', indexes=[dict(name='x', columns='a,b', colour='red')])])
    path = write(tmp_path / 'bad.yml', plan)
    loaded, error = mp.load_plan(path, '/')
    assert loaded is None and error.startswith('The plan %s is malformed; nothing was done:\n- ' % path)
    assert 'unknown key(s) colour' in error and 'columns must be a YAML list' in error


def test_on_duplicates_overrides_every_constraint_and_only_tables_must_name_plan_tables(tmp_path):
    path = write(tmp_path / 'walk.yml', bad_plans.GOOD)
    plan, error = mp.load_plan(path, '/', on_duplicates='rename')
    assert error is None and [c['on_duplicates'] for c in plan['constraints']] == ['rename']
    assert mp.load_plan(path, '/', on_duplicates='merge')[1] == 'pgzd_on_duplicates must be fail or rename, not merge'
    assert mp.load_plan(path, '/', only_tables=['Job'])[1] is None
    error = mp.load_plan(path, '/', only_tables=['Jobs'])[1]
    assert error == 'pgzd_only_tables names Jobs, not in plan walk; its tables are Job, Item'
    assert mp.only_tables_list('Job, Item') == ['Job', 'Item'] and mp.only_tables_list(None) is None


def test_the_prisma_migration_is_resolved_against_the_plan_and_read_exactly(tmp_path):
    sql = tmp_path / 'prisma' / 'migration.sql'
    sql.parent.mkdir()
    sql.write_bytes(b'CREATE INDEX "a" ON "Job"("b");\r\n')
    path = write(tmp_path / 'walk.yml', dict(bad_plans.GOOD, prisma_migration=dict(name='20240101_a',
                                                                                     file='prisma/migration.sql')))
    plan, error = mp.load_plan(path, '/')
    assert error is None
    assert plan['prisma_migration']['file'] == str(sql)
    assert plan['prisma_migration']['migration_sql'] == 'CREATE INDEX "a" ON "Job"("b");\r\n'  # CRLF kept
    sql.unlink()
    plan, error = mp.load_plan(path, '/')
    assert plan is None and 'The Prisma migration file %s does not exist' % sql in error
    plan, error = mp.load_plan(path, '/', read_prisma_sql=False)  # a rollback needs no file
    assert error is None and 'migration_sql' not in plan['prisma_migration']


def test_run_ids_are_the_time_and_a_random_suffix():
    import datetime
    now = datetime.datetime(2026, 12, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    assert mp.new_run_id(now, rand=lambda: 0.5) == '20261202T030405Z-7fffff'
    assert re.match(r'^\d{8}T\d{6}Z-[0-9a-f]{6}$', mp.new_run_id())


def test_a_plan_of_a_prisma_folder_has_the_folder_relative_to_it_and_no_work_of_its_own(tmp_path):
    (tmp_path / 'plans').mkdir()
    write(tmp_path / 'plans' / 'release.yml', dict(name='release', prisma_migrations_dir='../prisma/migrations',
                                                  baseline_queries=[dict(name='jobs', sql='SELECT 1')]))
    plan, error = mp.load_plan('plans/release.yml', str(tmp_path))
    assert error is None, error
    assert plan['prisma_migrations_dir'] == str(tmp_path / 'prisma' / 'migrations')
    assert plan['tables'] == [] and plan['constraints'] == []

    write(tmp_path / 'plans' / 'mixed.yml', dict(name='mixed', prisma_migrations_dir='m', constraints=[dict(
        name='c', table='Job', type='check', expression='true')]))
    plan, error = mp.load_plan('plans/mixed.yml', str(tmp_path))
    assert plan is None and 'a plan that names prisma_migrations_dir deploys the folder' in error, error
    assert 'it has no constraints of its own' in error
    assert mp.plan_errors(dict(name='empty', prisma_migrations_dir='')) == [
        "prisma_migrations_dir must be the path of a prisma/migrations folder (relative to the plan file), not ''"]
