# -*- coding: utf-8 -*-
"""Renamed roles and variables keep working for one release, with a deprecation warning (issue 22, points 3 and 4).

The role unique_constraint is now constraints, and its unique_constraint_* variables are constraints_*. A pipeline that
still includes the old role, or passes the old variables to migrate.yml, gets the same change in the database, and a
deprecation warning that says what to write instead. So does a pipeline that passes the global knobs under their old
bare names (plan, artifacts_dir, only_tables, ...; now pgzd_<name>).
"""

import glob
import importlib
import json
import os
import subprocess

import pytest

import helpers

pytestmark = pytest.mark.integration

RENAMED_KNOBS = importlib.import_module(helpers.collection_path('plugins.plugin_utils.renamed_variables')).RENAMED_KNOBS

TABLE = 'pt_renamed'
CONSTRAINT = 'pt_renamed_a_b_key'


@pytest.fixture
def scratch_table(db):
    helpers.query(db, 'DROP TABLE IF EXISTS %s' % TABLE)
    helpers.query(db, 'CREATE TABLE %s (id serial PRIMARY KEY, a int NOT NULL, b int NOT NULL)' % TABLE)
    helpers.query(db, 'INSERT INTO %s (a, b) SELECT n, n %% 7 FROM generate_series(1, 500) AS n' % TABLE)
    yield
    helpers.query(db, 'DROP TABLE IF EXISTS %s' % TABLE)


def run_with_deprecations(playbook, variables, options=()):
    """ansible-playbook with deprecation warnings shown (the tests' environment hides them)."""
    argv = [helpers._tool('ansible-playbook'), str(playbook)] + list(options)
    for name, value in variables.items():
        argv += ['-e', '%s=%s' % (name, value if isinstance(value, str) else json.dumps(value))]
    env = helpers.ansible_env(ANSIBLE_STDOUT_CALLBACK='default', ANSIBLE_DEPRECATION_WARNINGS='1')
    run = subprocess.run(argv, cwd=helpers.REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    return run, ' '.join((run.stdout + run.stderr).split())


def old_role_playbook(directory, **role_vars):
    """A pipeline's playbook of the 0.17 days: the old role with its old variables."""
    playbook = directory / 'old_role.yml'
    tasks = [dict(name='Add one unique constraint through the old role', **{
        'ansible.builtin.include_role': dict(name='pg_zero_downtime.migrations.unique_constraint'),
        'vars': role_vars})]
    tasks.append(dict(name='Show the old names of the results', **{
        'ansible.builtin.debug': dict(msg='results: {{ unique_constraint_results | map(attribute="name") | list }}')}))
    play = dict(name='A pipeline that still uses unique_constraint', hosts='all', gather_facts=False,
                vars_files=[os.path.join(helpers.REPO_ROOT, 'playbooks', 'vars', 'connection.yml')],
                module_defaults={'group/pg_zero_downtime.migrations.postgresql': '{{ pgzd_connection }}'},
                tasks=tasks)
    playbook.write_text(json.dumps([play]))
    return playbook


def unique_constraint_of(db, name):
    return helpers.query(db, """SELECT con.contype, pg_get_constraintdef(con.oid), i.indisvalid
                                FROM pg_constraint con JOIN pg_index i ON i.indexrelid = con.conindid
                                WHERE con.conname = %s""", (name,))


def test_the_old_role_adds_the_constraint_through_the_new_one_and_says_it_is_deprecated(pg_cluster, db, tmp_path,
                                                                                       scratch_table):
    playbook = old_role_playbook(tmp_path, unique_constraint_name=CONSTRAINT, unique_constraint_table=TABLE,
                                 unique_constraint_columns=['a', 'b'], unique_constraint_lock_timeout='3s',
                                 unique_constraint_artifacts_dir=str(tmp_path / 'artifacts'))
    run, output = run_with_deprecations(playbook, dict(local_cluster_dir=pg_cluster['dir'], pg_port=pg_cluster['port']))
    assert run.returncode == 0, output[-4000:]
    assert unique_constraint_of(db, CONSTRAINT) == [('u', 'UNIQUE (a, b)', True)]
    assert 'pg_zero_downtime.migrations.unique_constraint is now pg_zero_downtime.migrations.constraints' in output
    assert 'The variable unique_constraint_lock_timeout is deprecated: set constraints_lock_timeout instead' in output
    assert 'Show the old names of the results' in output and ('results: [%r]' % CONSTRAINT in output.replace("''", "'")), output[-3000:]


def test_an_old_variable_reaches_the_new_role_through_the_old_one(pg_cluster, db, tmp_path, scratch_table):
    """A lock_timeout of 0 under the old name is refused by the module: the old name's value reached it."""
    playbook = old_role_playbook(tmp_path, unique_constraint_name=CONSTRAINT, unique_constraint_table=TABLE,
                                 unique_constraint_columns=['a', 'b'], unique_constraint_lock_timeout='0',
                                 unique_constraint_artifacts_dir=str(tmp_path / 'artifacts'))
    run, output = run_with_deprecations(playbook, dict(local_cluster_dir=pg_cluster['dir'], pg_port=pg_cluster['port']))
    assert run.returncode != 0, output[-4000:]
    assert 'lock_timeout' in output and 'forever' in output, output[-4000:]
    assert unique_constraint_of(db, CONSTRAINT) == []


@pytest.mark.parametrize('options', [pytest.param(['--check'], id='check'), pytest.param([], id='real')])
def test_migrate_takes_the_old_name_of_a_knob_and_warns(pg_cluster, db, tmp_path, options):
    """-e unique_constraint_lock_timeout=0 to migrate.yml is refused in the preflight as constraints_lock_timeout."""
    variables = dict(local_cluster_dir=pg_cluster['dir'], pg_port=pg_cluster['port'], backup_enabled='false',
                     pgzd_artifacts_dir=str(tmp_path / 'artifacts'), unique_constraint_lock_timeout='0')
    before = helpers.droppable_indexes(db) + helpers.unique_constraints(db)
    run, output = run_with_deprecations(os.path.join('playbooks', 'migrate.yml'), variables, options)
    assert run.returncode != 0, output[-4000:]
    assert 'constraints_lock_timeout: 0 lets the statement wait for its lock forever' in output, output[-4000:]
    assert 'The variable unique_constraint_lock_timeout' in output, output[-4000:]
    assert 'is deprecated: set constraints_lock_timeout instead' in output, output[-4000:]
    assert helpers.droppable_indexes(db) + helpers.unique_constraints(db) == before


def test_tasks_from_plan_of_online_indexes_still_builds_and_says_it_is_now_tables(pg_cluster, db, tmp_path,
                                                                                 scratch_table):
    playbook = tmp_path / 'old_entry_point.yml'
    tables = [dict(name=TABLE, schema='public', indexes=[dict(name='pt_renamed_b_idx', columns=['b'])])]
    play = dict(name='A pipeline that still uses tasks_from plan', hosts='all', gather_facts=False,
                vars_files=[os.path.join(helpers.REPO_ROOT, 'playbooks', 'vars', 'connection.yml')],
                module_defaults={'group/pg_zero_downtime.migrations.postgresql': '{{ pgzd_connection }}'},
                tasks=[dict(name='Build through the old entry point', **{
                    'ansible.builtin.include_role': dict(name='pg_zero_downtime.migrations.online_indexes',
                                                         tasks_from='plan'),
                    'vars': dict(online_indexes_tables=tables)})])
    playbook.write_text(json.dumps([play]))
    run, output = run_with_deprecations(playbook, dict(local_cluster_dir=pg_cluster['dir'], pg_port=pg_cluster['port']))
    assert run.returncode == 0, output[-4000:]
    assert helpers.index_info(db, 'pt_renamed_b_idx')['valid']
    assert 'tasks_from: plan of the role pg_zero_downtime.migrations.online_indexes is now tasks_from: tables' in output


# -- the global knobs: pgzd_<name> since 0.18.0, the old bare names until 0.19.0 (issue 22, point 3) ----------------

KNOB_TABLES = ('pt_knob_a', 'pt_knob_b')


@pytest.fixture
def knob_tables(db):
    for table in KNOB_TABLES:
        helpers.query(db, 'DROP TABLE IF EXISTS %s' % table)
        helpers.query(db, 'CREATE TABLE %s (id bigint PRIMARY KEY, k integer NOT NULL)' % table)
        helpers.query(db, 'INSERT INTO %s SELECT g, g %% 100 FROM generate_series(1, 5000) g' % table)
    yield
    for table in KNOB_TABLES:
        helpers.query(db, 'DROP TABLE IF EXISTS %s' % table)


def knob_plan(directory, names):
    """A plan of one index on each of the two tables, its name of its own (so that the ledger of one test's run does
    not speak for the other's)."""
    plan = dict(name='pt_knobs_%s' % names, schema='public', tables=[
        dict(name=table, indexes=[dict(name='%s_%s_k_idx' % (table, names), columns=['k'])]) for table in KNOB_TABLES])
    path = directory / 'plan.yml'
    path.write_text(json.dumps(plan))
    return str(path)


def knob_variables(pg_cluster, tmp_path, names):
    """migrate.yml limited to the first table, written into a folder of the test's own, two builds at a time and the
    replication wait off: under the old names (names='old') or the new ones."""
    values = dict(plan=knob_plan(tmp_path, names), artifacts_dir=str(tmp_path / 'artifacts'), only_tables=KNOB_TABLES[0],
                  index_build_parallelism='2', build_wait_timeout='120', replication_lag_enabled='false')
    if names == 'new':
        values = dict((RENAMED_KNOBS[old], value) for old, value in values.items())
    return dict(values, local_cluster_dir=pg_cluster['dir'], pg_port=pg_cluster['port'], backup_enabled='false')


def knob_indexes(db, names):
    """Each table's planned index: None when absent, else whether it is valid."""
    state = []
    for table in KNOB_TABLES:
        info = helpers.index_info(db, '%s_%s_k_idx' % (table, names))
        state.append(None if info is None else info['valid'])
    return state


@pytest.mark.parametrize('names', ['old', 'new'])
def test_migrate_does_the_same_under_the_old_knob_names_and_warns_once_of_each(pg_cluster, db, tmp_path, knob_tables,
                                                                              names):
    run, output = run_with_deprecations(os.path.join('playbooks', 'migrate.yml'),
                                        knob_variables(pg_cluster, tmp_path, names))
    assert run.returncode == 0, output[-4000:]
    # only_tables reached the preflight (the second table was left alone) and the validation (which would fail on
    # the second table's missing index otherwise); plan and artifacts_dir chose the plan and the run's folder.
    assert knob_indexes(db, names) == [True, None]
    (report_file,) = glob.glob(str(tmp_path / 'artifacts' / 'runs' / '*' / 'report.json'))
    with open(report_file) as handle:
        report = json.load(handle)
    assert report['plan'] == 'pt_knobs_%s' % names and report['status'] == 'succeeded', report['status']
    used = ('plan', 'artifacts_dir', 'only_tables', 'index_build_parallelism', 'build_wait_timeout',
            'replication_lag_enabled')
    for old in used:
        warning = 'The variable %s is deprecated: set %s instead.' % (old, RENAMED_KNOBS[old])
        assert output.count(warning) == (1 if names == 'old' else 0), (warning, output[-4000:])
    if names == 'new':
        assert 'is deprecated: set pgzd_' not in output, output[-4000:]
    # validate.yml, which has no preflight, loads the plan through the migration_plan lookup: the same names reach it
    # (only_tables: the second table's index, never built, is not asked for) and are warned of there.
    variables = knob_variables(pg_cluster, tmp_path, names)
    run, output = run_with_deprecations(os.path.join('playbooks', 'validate.yml'), variables)
    assert run.returncode == 0, output[-4000:]
    # Its validate.json beside the migration's, in a run folder of its own under the same artifacts directory.
    assert len(glob.glob(str(tmp_path / 'artifacts' / 'runs' / ('pt_knobs_%s-*' % names) / 'validate.json'))) == 2
    for old in ('plan', 'artifacts_dir', 'only_tables'):
        warning = 'The variable %s is deprecated: set %s instead.' % (old, RENAMED_KNOBS[old])
        assert output.count(warning) == (1 if names == 'old' else 0), (warning, output[-4000:])


@pytest.mark.parametrize('names', ['old', 'new'])
def test_an_old_knob_name_reaches_the_preflight_which_refuses_it_under_its_new_name(pg_cluster, db, tmp_path,
                                                                                    knob_tables, names):
    """index_build_parallelism=0 is refused before any change, whichever name gave it."""
    old = dict(plan=knob_plan(tmp_path, names), artifacts_dir=str(tmp_path / 'artifacts'), index_build_parallelism='0')
    variables = old if names == 'old' else dict((RENAMED_KNOBS[name], value) for name, value in old.items())
    variables.update(local_cluster_dir=pg_cluster['dir'], pg_port=pg_cluster['port'], backup_enabled='false')
    run, output = run_with_deprecations(os.path.join('playbooks', 'migrate.yml'), variables, ['--check'])
    assert run.returncode != 0, output[-4000:]
    assert 'pgzd_index_build_parallelism must be a whole number of at least 1, not 0' in output, output[-4000:]
    assert knob_indexes(db, names) == [None, None]
    warned = 'The variable index_build_parallelism is deprecated: set pgzd_index_build_parallelism instead.'
    assert output.count(warned) == (1 if names == 'old' else 0), output[-4000:]
