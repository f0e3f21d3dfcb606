# -*- coding: utf-8 -*-
"""Knobs cannot switch safety off (issue 21, point 5), through the real playbooks against the real cluster.

Each knob an operator (or a copied command line) can set is tried with values that once switched a safety off: sample
sizes of 0 (the data proof was skipped), an index_build_parallelism the server has no connections for, a lock timeout
of 0 or of an hour on a step the application queues behind, a run id or an artifacts directory that leads the run's
files elsewhere, and a file that is not a plan. Each is refused by the preflight before any change, with --check and
for real, and the guard (helpers.Guard: a canary table, a victim session, a snapshot of catalog and rows) proves that
nothing changed.
"""

import os

import pytest
import yaml

import bad_plans
import helpers

pytestmark = pytest.mark.integration

# Tasks that change something: no refused run may reach them.
CHANGING_TASKS = helpers.CHANGING_TASKS
MODES = [pytest.param(['--check'], id='check'), pytest.param([], id='real')]
# Scratch tables for the parallelism tests: enough that many lanes are really used.
LANE_TABLES = ['pt_knobs_lane_%02d' % n for n in range(1, 31)]


@pytest.fixture(autouse=True)
def no_leftover_checks(db):
    """What a run that was not refused would leave besides indexes and unique constraints (which the db fixture drops):
    the helper check of a NOT NULL that failed to validate."""
    yield
    helpers.query(db, 'ALTER TABLE "Job" DROP CONSTRAINT IF EXISTS pt_knobs_closed_not_null')


def write_plan(directory, name, **parts):
    plan = dict(name=name, tables=[], constraints=[], baseline_queries=[])
    plan.update(parts)
    directory.mkdir(exist_ok=True)
    path = directory / ('%s.yml' % name)
    path.write_text(yaml.safe_dump(plan))
    return str(path)


def migrate(pg_cluster, tmp_path, plan, options=(), **extra):
    """migrate.yml with the plan, its own artifacts directory (beside the plans, not holding them), no backup."""
    variables = dict(local_cluster_dir=pg_cluster['dir'], pg_port=pg_cluster['port'], pgzd_plan=plan,
                     pgzd_artifacts_dir=str(tmp_path / 'artifacts'), backup_enabled='false')
    variables.update(extra)
    run = helpers.run_playbook('playbooks/migrate.yml', variables, options=list(options))
    return run, ' '.join(run.stdout.split())


def assert_refused_before_any_change(run, output, guard, *fragments):
    assert run.returncode != 0, output[-4000:]
    for fragment in fragments:
        assert ' '.join(fragment.split()) in output, (fragment, output[-4000:])
    reached = [name for name in helpers.task_names(run.stdout) if name.startswith(CHANGING_TASKS)]
    assert reached == [], reached
    guard.assert_untouched(output[-3000:])


# -- 1. sample sizes only limit what is listed ---------------------------------------------------------------------

@pytest.mark.parametrize('options', MODES)
def test_a_not_null_over_nulls_is_refused_with_sample_sizes_of_zero(guard, pg_cluster, tmp_path, db, options):
    assert helpers.query(db, 'SELECT count(*) > 0 FROM "Job" WHERE "closedAt" IS NULL') == [(True,)]
    plan = write_plan(tmp_path / 'plans', 'pt_knobs_nulls', constraints=[
        dict(name='pt_knobs_closed_not_null', table='Job', type='not_null', column='closedAt')])
    run, output = migrate(pg_cluster, tmp_path, plan, options, preflight_duplicate_sample_ids=0,
                          preflight_duplicate_max_groups=0)
    assert_refused_before_any_change(run, output, guard, 'Rows in the database break the planned constraint(s) '
                                     'pt_knobs_closed_not_null; nothing was changed', 'NOT NULL on public.Job.',
                                     'closedAt', 'row(s) of public.Job hold NULL it')


@pytest.mark.parametrize('options', MODES)
def test_duplicate_keys_are_refused_when_no_key_is_listed(guard, pg_cluster, tmp_path, db, options):
    assert helpers.query(db, 'SELECT count(*) > count(DISTINCT "teacherId") FROM "Job"') == [(True,)]
    plan = write_plan(tmp_path / 'plans', 'pt_knobs_dups', constraints=[
        dict(name='pt_knobs_teacher_key', table='Job', columns=['teacherId'])], tables=[
        dict(name='Item', indexes=[dict(name='pt_knobs_item_type_idx', columns=['type'])])])
    run, output = migrate(pg_cluster, tmp_path, plan, options, preflight_duplicate_sample_ids=0,
                          preflight_duplicate_max_groups=0)
    assert_refused_before_any_change(run, output, guard, 'Duplicate keys block the planned unique constraint(s) '
                                     'pt_knobs_teacher_key', 'duplicate key(s) over', 'more duplicate key(s)')


def test_a_negative_sample_size_is_refused(guard, pg_cluster, tmp_path):
    plan = write_plan(tmp_path / 'plans', 'pt_knobs_negative', tables=[
        dict(name='Item', indexes=[dict(name='pt_knobs_item_type_idx', columns=['type'])])])
    run, output = migrate(pg_cluster, tmp_path, plan, preflight_duplicate_max_groups=-1)
    assert_refused_before_any_change(run, output, guard, 'max_groups must be 0 or more')


# -- 2. index_build_parallelism against the connections the server can spare ---------------------------------------

@pytest.fixture
def lane_tables(db):
    """30 small tables (made before the guard's snapshot), one planned index each."""
    for name in LANE_TABLES:
        helpers.query(db, 'CREATE TABLE "%s" AS SELECT g AS id FROM generate_series(1, 20) g' % name)
    yield [dict(name=name, indexes=[dict(name='%s_id_idx' % name, columns=['id'])]) for name in LANE_TABLES]
    for name in LANE_TABLES:
        helpers.query(db, 'DROP TABLE IF EXISTS "%s"' % name)


def free_connections(db):
    return helpers.query(db, "SELECT current_setting('max_connections')::int - current_setting("
                             "'superuser_reserved_connections')::int - (SELECT count(*) FROM pg_stat_activity WHERE "
                             "backend_type = 'client backend')::int")[0][0]


@pytest.mark.parametrize('options', MODES)
def test_a_parallelism_the_server_has_no_connections_for_is_refused(lane_tables, guard, pg_cluster, tmp_path,
                                                                     db, options):
    assert 2 * len(LANE_TABLES) + 2 > free_connections(db) // 2  # 30 lanes cannot fit on this 100-slot cluster
    plan = write_plan(tmp_path / 'plans', 'pt_knobs_lanes', tables=lane_tables)
    run, output = migrate(pg_cluster, tmp_path, plan, options, pgzd_index_build_parallelism=250)
    assert_refused_before_any_change(run, output, guard, 'pgzd_index_build_parallelism=250 would work on 30 table(s) at a '
                                     'time, holding 62 connections', 'max_connections 100',
                                     'lower pgzd_index_build_parallelism to')


def test_the_connections_other_sessions_hold_count_against_the_parallelism(lane_tables, guard, pg_cluster, tmp_path,
                                                                           db, connect):
    # The largest parallelism that fits now, then a few more application sessions: refused.
    fits = (free_connections(db) // 2 - 2) // 2
    assert 1 < fits < len(LANE_TABLES)
    plan = write_plan(tmp_path / 'plans', 'pt_knobs_busy', tables=lane_tables)
    control, output = migrate(pg_cluster, tmp_path, plan, ['--check'], pgzd_index_build_parallelism=fits)
    assert control.returncode == 0, output[-4000:]
    application = [connect() for _ in range(4)]
    assert all(helpers.query(conn, 'SELECT 1') == [(1,)] for conn in application)
    run, output = migrate(pg_cluster, tmp_path, plan, pgzd_index_build_parallelism=fits)
    assert_refused_before_any_change(run, output, guard, 'pgzd_index_build_parallelism=%d would work on %d table(s)'
                                     % (fits, fits), 'lower pgzd_index_build_parallelism to %d or less' % (fits - 1))


def test_the_index_module_itself_refuses_a_parallelism_the_server_cannot_hold(lane_tables, guard, run_module):
    result = run_module('postgresql_online_index', tables=lane_tables, parallelism=250)
    assert result['failed'] and result['changed'] is False and result['queries'] == []
    assert 'pgzd_index_build_parallelism=250 would work on 30 table(s) at a time' in result['msg']
    guard.assert_untouched(result['msg'])


# -- 3. lock timeouts of the steps the application queues behind ----------------------------------------------------

TIMEOUT_PLAN = dict(tables=[dict(name='Item', indexes=[dict(name='pt_knobs_item_type_idx', columns=['type'])])],
                    constraints=[dict(name='pt_knobs_class_key', table='Class', columns=['name', 'grade'])])


@pytest.mark.parametrize('knob,value,options', [
    pytest.param('constraints_lock_timeout', '0', [], id='constraint-0-real'),
    pytest.param('constraints_lock_timeout', '1h', ['--check'], id='constraint-1h-check'),
    pytest.param('online_indexes_lock_timeout', '0', ['--check'], id='index-0-check'),
    pytest.param('online_indexes_lock_timeout', '90s', [], id='index-90s-real'),
])
def test_a_lock_timeout_of_zero_or_over_a_minute_is_refused_before_any_index_is_built(guard, pg_cluster, tmp_path,
                                                                                      knob, value, options):
    plan = write_plan(tmp_path / 'plans', 'pt_knobs_timeouts', **TIMEOUT_PLAN)
    run, output = migrate(pg_cluster, tmp_path, plan, options, **{knob: value})
    assert_refused_before_any_change(run, output, guard, 'Invalid options; nothing was changed', '%s: ' % knob,
                                     'give a duration from 1ms to 1min')


def test_the_modules_refuse_a_blocking_lock_timeout_of_zero_and_allow_it_where_nobody_queues(guard, run_module):
    index = run_module('postgresql_online_index', table='Item', lock_timeout='0',
                       indexes=[dict(name='pt_knobs_item_type_idx', columns=['type'])])
    assert index['failed'] and index['queries'] == [] and 'lock_timeout: 0 lets the statement wait' in index['msg']
    constraint = run_module('postgresql_online_constraint', lock_timeout='2h',
                            constraints=[dict(name='pt_knobs_class_key', table='Class', columns=['name', 'grade'])])
    assert constraint['failed'] and constraint['queries'] == [] and 'lock_timeout: 7200000ms is over 1min' in \
        constraint['msg']
    guard.assert_untouched(index['msg'] + constraint['msg'])
    # VALIDATE's wait (index_lock_timeout) blocks no reader or writer: 0 stays allowed.
    allowed = run_module('postgresql_online_constraint', check=True, index_lock_timeout='0', constraints=[
        dict(name='pt_knobs_item_price_check', table='Item', type='check', expression='price >= 0')])
    assert not allowed.get('failed'), allowed.get('msg')
    guard.assert_untouched('check mode')


# -- 4. the run id and the artifacts directory ------------------------------------------------------------------------

SMALL_PLAN = dict(tables=[dict(name='Item', indexes=[dict(name='pt_knobs_item_type_idx', columns=['type'])])])


@pytest.mark.parametrize('run_id,options', [
    pytest.param('x/../../../escaped', ['--check'], id='dot-dot-check'),
    pytest.param('x/../../../escaped', [], id='dot-dot-real'),
    pytest.param('/tmp/pgzd-knobs-escaped', [], id='absolute-real'),
])
def test_a_run_id_that_leads_out_of_the_artifacts_directory_is_refused(guard, pg_cluster, tmp_path, run_id, options):
    plan = write_plan(tmp_path / 'plans', 'pt_knobs_run_id', **SMALL_PLAN)
    run, output = migrate(pg_cluster, tmp_path, plan, options, pgzd_run_id=run_id)
    assert_refused_before_any_change(run, output, guard, 'pgzd_run_id must be 1 to 63 letters, digits')
    assert not os.path.exists(str(tmp_path / 'escaped')) and not os.path.exists('/tmp/pgzd-knobs-escaped')
    assert not os.path.exists(str(tmp_path / 'artifacts'))  # nothing written anywhere


def test_validate_refuses_such_a_run_id_too(guard, pg_cluster, tmp_path):
    # validate.yml has no preflight: roles/migration_plan checks the run id and the artifacts directory with the plan.
    plan = write_plan(tmp_path / 'plans', 'pt_knobs_validate', **SMALL_PLAN)
    run = helpers.run_playbook('playbooks/validate.yml', dict(
        local_cluster_dir=pg_cluster['dir'], pg_port=pg_cluster['port'], pgzd_plan=plan,
        pgzd_artifacts_dir=str(tmp_path / 'artifacts'), pgzd_run_id='x/../../../escaped'))
    output = ' '.join(run.stdout.split())
    assert run.returncode != 0 and 'pgzd_run_id must be 1 to 63 letters, digits' in output, output[-4000:]
    assert not os.path.exists(str(tmp_path / 'escaped')) and not os.path.exists(str(tmp_path / 'artifacts'))
    guard.assert_untouched(output[-3000:])


def _foreign(tmp_path):
    directory = tmp_path / 'project'
    directory.mkdir()
    (directory / 'notes.txt').write_text('not the run\'s')
    return str(directory)


def _file(tmp_path):
    (tmp_path / 'a-file').write_text('not a directory')
    return str(tmp_path / 'a-file')


@pytest.mark.parametrize('where,options,fragment', [
    pytest.param(lambda tmp_path: '/etc', ['--check'], 'artifacts_dir /etc holds', id='etc-check'),
    pytest.param(lambda tmp_path: os.path.expanduser('~'), ['--check'], 'artifacts_dir %s holds'
                 % os.path.expanduser('~'), id='home-check'),
    pytest.param(_foreign, [], 'holds 1 entry that pg-zero-downtime does not write (notes.txt)', id='foreign-real'),
    pytest.param(_file, [], 'a-file is not a directory', id='file-real'),
])
def test_an_artifacts_directory_that_is_not_the_runs_own_is_refused(guard, pg_cluster, tmp_path, where, options,
                                                                    fragment):
    plan = write_plan(tmp_path / 'plans', 'pt_knobs_artifacts', **SMALL_PLAN)
    directory = where(tmp_path)
    if os.path.isdir(directory) and not os.listdir(directory):
        pytest.skip('%s is empty here: an empty directory is the run\'s own to use' % directory)
    before = sorted(os.listdir(directory)) if os.path.isdir(directory) else None
    run, output = migrate(pg_cluster, tmp_path, plan, options, pgzd_artifacts_dir=directory)
    assert_refused_before_any_change(run, output, guard, fragment, 'Pass -e pgzd_artifacts_dir=<a new or empty directory>')
    assert (sorted(os.listdir(directory)) if os.path.isdir(directory) else None) == before


# -- 5. a file that is not a plan -------------------------------------------------------------------------------------

@pytest.mark.parametrize('case,options', [
    pytest.param('shadow-file', ['--check'], id='shadow-check'),
    pytest.param('secrets-mapping', [], id='secrets-real'),
    pytest.param('secret-in-a-yaml-tag', [], id='yaml-tag-real'),
])
def test_a_file_that_is_not_a_plan_is_refused_without_echoing_it(guard, pg_cluster, tmp_path, case, options):
    text, fragments = [(text, fragments) for name, text, fragments in bad_plans.NOT_PLANS if name == case][0]
    path = tmp_path / 'not-a-plan'
    path.write_text(text)
    run, output = migrate(pg_cluster, tmp_path, str(path), options)
    assert_refused_before_any_change(run, output, guard, *fragments)
    for secret in bad_plans.NOT_ECHOED[case]:
        assert secret not in run.stdout and secret not in run.stderr, secret
