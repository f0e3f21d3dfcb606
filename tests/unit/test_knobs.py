# -*- coding: utf-8 -*-
"""Knobs cannot switch safety off (issue 21, point 5): the pure decisions behind each refusal.

Sample sizes limit what is listed, never what is counted; index_build_parallelism is weighed against the server's free
connections; a lock timeout the application queues behind is from 1ms to 1min; the run id and the artifacts directory
cannot lead the run's files out of a directory of its own; a file that is not a plan is refused without echoing it.
"""

import importlib
import os

import pytest
import yaml

import bad_plans
import helpers

unique_keys = importlib.import_module(helpers.collection_path('plugins.module_utils.kinds.unique_keys'))
plan_proof = importlib.import_module(helpers.collection_path('plugins.module_utils.plan.plan_proof'))
session = importlib.import_module(helpers.collection_path('plugins.module_utils.session.statements'))
index_runs = importlib.import_module(helpers.collection_path('plugins.module_utils.kinds.index_runs'))
mp = importlib.import_module(helpers.collection_path('plugins.plugin_utils.migration_plan'))
artifacts = importlib.import_module(helpers.collection_path('plugins.plugin_utils.artifacts_dir'))


# -- 1. sample sizes only limit what is listed ---------------------------------------------------------------------

GROUPS = [dict(key=['a'], rows=3, sample_ids=[1, 2, 3], total_groups=2, total_rows=5),
          dict(key=['b'], rows=2, sample_ids=[4, 5], total_groups=2, total_rows=5)]


def test_the_totals_of_duplicate_or_orphan_keys_do_not_depend_on_how_many_are_listed():
    assert unique_keys.groups_limit(0) == 1 and unique_keys.groups_limit(20) == 20  # LIMIT 0 would hide the totals
    none_listed = unique_keys.group_totals(GROUPS[:1], 0)
    assert none_listed == dict(total_groups=2, total_rows=5, groups=[])
    all_listed = unique_keys.group_totals(GROUPS, 20)
    assert (all_listed['total_groups'], all_listed['total_rows'], len(all_listed['groups'])) == (2, 5, 2)
    assert unique_keys.group_totals([], 0) == dict(total_groups=0, total_rows=0, groups=[])


def test_negative_sample_sizes_are_refused_and_zero_is_allowed():
    assert unique_keys.sample_size_errors(dict(sample_ids=0, max_groups=0)) == []
    errors = unique_keys.sample_size_errors(dict(sample_ids=-1, max_groups=-5))
    assert len(errors) == 2 and errors[0].startswith('sample_ids must be 0 or more') and 'not -5' in errors[1]


class FakeCursor(object):
    def __init__(self):
        self.executed = []

    def execute(self, statement, params=None):
        self.executed.append(statement)


class NullsRunner(object):
    """A runner whose one NOT NULL entry would be validated over a column holding 3 NULLs."""

    def __init__(self):
        self.cursor = FakeCursor()
        self.scanned = []

    def plan_entry(self, constraint, state, default_schema, keys):
        spec = dict(constraint, schema=default_schema, columns=[constraint['column']])
        return dict(spec=spec, action='created', steps=['add', 'validate', 'set_not_null', 'drop'],
                    statements=['ALTER TABLE ...'], advice=None)

    def find_violations(self, spec, sample_ids, max_groups):
        self.scanned.append((sample_ids, max_groups))
        return dict(row_id='id', total_rows=3, total_groups=3, groups=[], sample_ids=[7, 8, 9][:sample_ids])


NOT_NULL = [dict(name='job_closed_not_null', type='not_null', table='Job', column='closedAt')]


@pytest.mark.parametrize('sample_ids,max_groups', [(0, 0), (5, 20), (0, 20), (5, 0)])
def test_nulls_under_a_planned_not_null_are_counted_whatever_the_sample_sizes(sample_ids, max_groups):
    runner = NullsRunner()
    proof = plan_proof.prove_constraints(runner, NOT_NULL, 'public', 'present', sample_ids, max_groups)
    assert runner.scanned == [(sample_ids, max_groups)]
    assert proof['violations'] == ['job_closed_not_null'] and '3 row(s) of public.Job hold NULL' in proof['report'][0]


def test_only_a_validation_after_the_run_reads_no_rows_and_says_so():
    runner = NullsRunner()
    proof = plan_proof.prove_constraints(runner, NOT_NULL, 'public', 'present', 0, 0, count_rows=False)
    assert runner.scanned == [] and proof['violations'] == [] and proof['pending'] == ['job_closed_not_null']


# -- 2. index_build_parallelism against the connections the server can spare ---------------------------------------

SLOTS = dict(max_connections=100, superuser_reserved=3, reserved=0, connected=7)


def test_a_run_takes_at_most_half_of_the_free_connections_two_per_lane_and_two_for_the_run():
    fits = index_runs.connection_budget(21, 40, SLOTS)  # 90 free, 45 allowed: 21 lanes hold 44
    assert (fits['lanes'], fits['needed'], fits['free'], fits['allowed'], fits['message']) == (21, 44, 90, 45, None)
    refused = index_runs.connection_budget(22, 40, SLOTS)
    assert refused['needed'] == 46 and refused['message'].startswith('pgzd_index_build_parallelism=22 would work on 22 '
                                                                     'table(s) at a time, holding 46 connections')
    for numbers in ('max_connections 100', 'superuser_reserved_connections 3', 'reserved_connections 0',
                    '7 connected now', 'at most half of them (45)', 'lower pgzd_index_build_parallelism to 21 or less'):
        assert numbers in refused['message']


def test_the_lanes_are_never_more_than_the_tables_and_reserved_connections_count():
    assert index_runs.lane_count(250, 3) == 3 and index_runs.lane_count(1, 0) == 1
    assert index_runs.connection_budget(250, 3, SLOTS)['message'] is None  # 3 tables: 8 connections
    issue = dict(max_connections=200, superuser_reserved=3, reserved=5, connected=40)  # the issue's server
    refused = index_runs.connection_budget(250, 400, issue)
    assert refused['needed'] == 502 and refused['free'] == 152 and 'to 37 or less' in refused['message']
    full = index_runs.connection_budget(1, 1, dict(SLOTS, connected=94))  # 3 free: not even one lane
    assert full['message'].endswith('What to do: run when fewer sessions are connected (or raise max_connections); '
                                    'nothing was changed.')


# -- 3. lock timeouts of statements the application queues behind ---------------------------------------------------

def test_a_blocking_lock_timeout_is_from_1ms_to_1min():
    assert session.blocking_lock_timeout_problem('lock_timeout', 1) is None
    assert session.blocking_lock_timeout_problem('lock_timeout', 60000) is None
    forever = session.blocking_lock_timeout_problem('constraints_lock_timeout', 0)
    assert forever.startswith('constraints_lock_timeout: 0 lets the statement wait for its lock forever')
    hour = session.blocking_lock_timeout_problem('lock_timeout', 3600000)
    assert hour.startswith('lock_timeout: 3600000ms is over 1min') and 'such as 2s' in hour


# -- 4. the run id and the artifacts directory ------------------------------------------------------------------------

@pytest.mark.parametrize('run_id', ['first', '20261202T030405Z-abcdef', 'ci.42_retry-1'])
def test_plain_run_ids_are_accepted(run_id):
    assert mp.run_id_error(run_id) is None
    assert mp.run_id_error(mp.new_run_id()) is None


@pytest.mark.parametrize('run_id', ['x/../..', '../escape', '/tmp/abs', '..', '.hidden', 'a b', '', 'x' * 64, None,
                                    12, 'x\\..\\y', 'run\n2'])
def test_run_ids_that_could_lead_out_of_the_artifacts_directory_are_refused(run_id):
    error = mp.run_id_error(run_id)
    assert error.startswith('pgzd_run_id must be 1 to 63 letters, digits, _, . and -') and 'nothing was done' in error


def test_an_artifacts_directory_that_is_new_empty_or_holds_only_the_tools_files_is_the_runs_own(tmp_path):
    assert artifacts.artifacts_dir_error(str(tmp_path / 'new' / 'deeper')) is None  # created by the run
    assert artifacts.artifacts_dir_error(str(tmp_path)) is None  # empty
    (tmp_path / 'runs' / 'walk-first').mkdir(parents=True)
    (tmp_path / 'backups').mkdir()
    (tmp_path / 'walk-first-pt_walk_class_key-resolved.json').write_text('{}')
    (tmp_path / 'walk-second-pt_walk_class_key-restored.json').write_text('{}')
    assert artifacts.artifacts_dir_error(str(tmp_path)) is None


@pytest.mark.parametrize('path', ['/etc', '/', os.path.expanduser('~')])
def test_system_and_home_directories_are_refused(path):
    if not os.listdir(path):
        pytest.skip('%s is empty here: an empty directory is the run\'s own to use' % path)
    error = artifacts.artifacts_dir_error(path)
    assert error.startswith('artifacts_dir %s holds' % os.path.abspath(path)) and 'nothing was done' in error


def test_a_directory_of_other_things_a_file_or_a_link_elsewhere_is_refused(tmp_path):
    (tmp_path / 'plan.yml').write_text('name: x')
    error = artifacts.artifacts_dir_error(str(tmp_path))
    assert error.startswith('artifacts_dir %s holds 1 entry that pg-zero-downtime does not write (plan.yml)' % tmp_path)
    assert 'Pass -e pgzd_artifacts_dir=<a new or empty directory>' in error
    assert artifacts.artifacts_dir_error(str(tmp_path / 'plan.yml')).startswith(
        'artifacts_dir %s is not a directory' % (tmp_path / 'plan.yml'))
    assert 'cannot be created: %s is not a writable directory' % (tmp_path / 'plan.yml') in \
        artifacts.artifacts_dir_error(str(tmp_path / 'plan.yml' / 'runs'))
    linked = tmp_path / 'linked'
    linked.mkdir()
    os.symlink('/etc', str(linked / 'runs'))  # runs/ leading elsewhere is not the tool's own folder
    assert 'holds 1 entry that pg-zero-downtime does not write (runs)' in artifacts.artifacts_dir_error(str(linked))
    assert artifacts.artifacts_dir_error('').startswith('artifacts_dir must be the path of a directory')


# -- 5. a file that is not a plan is refused without echoing it -----------------------------------------------------

@pytest.mark.parametrize('name,text,fragments', bad_plans.NOT_PLANS, ids=[case[0] for case in bad_plans.NOT_PLANS])
def test_a_file_that_is_not_a_plan_is_refused_without_showing_its_contents(tmp_path, name, text, fragments):
    path = tmp_path / 'not-a-plan'
    path.write_text(text)
    plan, error = mp.load_plan(str(path), '/')
    assert plan is None
    for fragment in fragments:
        assert fragment in error, (fragment, error)
    for secret in bad_plans.NOT_ECHOED[name]:
        assert secret not in error, (secret, error)


def test_a_file_that_is_not_utf8_is_refused_as_not_text(tmp_path):
    path = tmp_path / 'image.png'
    path.write_bytes(b'\x89PNG\r\n\x1a\n\xff\xfe secret')
    plan, error = mp.load_plan(str(path), '/')
    assert plan is None and 'is not a UTF-8 text file' in error and 'secret' not in error


def test_the_pure_python_parser_does_not_quote_the_offending_line_either(monkeypatch):
    # Without libyaml, PyYAML's own message shows the line it stopped at: only line and column are kept.
    monkeypatch.delattr(yaml, 'CSafeLoader', raising=False)
    plan, error = mp.parse_plan_text('name: walk\npassword: "S3cretValue\n', '/p/plan.yml')
    assert plan is None and error.startswith('The plan file /p/plan.yml is not valid YAML; nothing was done:')
    assert 'line 2, column 11' in error and 'S3cretValue' not in error and 'password' not in error
    plan, error = mp.parse_plan_text('name: walk\ntables: !!python/object:SecretTag x\n', '/p/plan.yml')
    assert "for the tag '...'" in error and 'SecretTag' not in error and 'line 2, column 9' in error
    plan, error = mp.parse_plan_text('name: walk\ntables:\n\t- name: Job\n', '/p/plan.yml')
    assert "found character '\\t' that cannot start any token (line 3, column 1)" in error


def test_unknown_keys_of_a_real_plan_are_still_listed():
    errors = mp.plan_errors(dict(bad_plans.GOOD, tabels=[]))
    assert errors == ['unknown key(s) tabels (the keys of this entry are %s)' % ', '.join(mp.TOP_KEYS)]
    assert mp.plan_errors(dict(password='x', token='y')) == [mp.NOT_A_PLAN]
    assert mp.plan_errors({1: 'a'}) == [mp.NOT_A_PLAN]
