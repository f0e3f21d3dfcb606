# -*- coding: utf-8 -*-
"""plugins/plugin_utils/renamed_variables.py: which old names a run sets, and what to write instead."""

import importlib

import helpers

renamed_variables = importlib.import_module(helpers.collection_path('plugins.plugin_utils.renamed_variables'))
preflight_action = importlib.import_module(helpers.collection_path('plugins.action.postgresql_migration_preflight'))

PREFIXES = {'unique_constraint_': 'constraints_'}
NAMES = {'unique_constraint_constraints': 'constraints_entries'}


def test_every_old_name_set_is_reported_with_its_new_name_whether_or_not_the_new_one_is_set():
    defined = {'unique_constraint_lock_timeout': '1s', 'unique_constraint_constraints': [1], 'other': 2,
               'constraints_lock_timeout': '2s'}
    assert renamed_variables.renamed(defined, NAMES, PREFIXES) == [
        ('unique_constraint_constraints', 'constraints_entries'),
        ('unique_constraint_lock_timeout', 'constraints_lock_timeout')]


def test_internal_ignored_and_bare_prefix_names_are_never_reported():
    defined = {'__unique_constraint_run': 1, 'unique_constraint_result': 2, 'unique_constraint_': 3}
    assert renamed_variables.renamed(defined, NAMES, PREFIXES, ignore=['unique_constraint_result']) == []


def test_the_longest_prefix_wins_and_exact_names_win_over_prefixes():
    prefixes = {'a_': 'x_', 'a_b_': 'y_'}
    assert renamed_variables.new_name('a_b_c', {}, prefixes) == 'y_c'
    assert renamed_variables.new_name('a_c', {}, prefixes) == 'x_c'
    assert renamed_variables.new_name('a_b_c', {'a_b_c': 'z'}, prefixes) == 'z'
    assert renamed_variables.new_name('b_c', {}, prefixes) is None


def test_the_warning_says_what_to_set_instead():
    message = renamed_variables.deprecation_message('unique_constraint_lock_timeout', 'constraints_lock_timeout',
                                                    'the role unique_constraint')
    assert 'unique_constraint_lock_timeout' in message and 'set constraints_lock_timeout instead' in message


def test_the_preflight_warns_of_old_knobs_but_not_of_the_old_results_the_wrapper_keeps():
    warnings = preflight_action.renamed_warnings({'unique_constraint_lock_timeout': '0', 'unique_constraint_results': [],
                                                  'online_indexes_lock_timeout': '5s'})
    assert len(warnings) == 1 and 'set constraints_lock_timeout instead' in warnings[0]


# -- the global knobs: one prefix, pgzd_, since 0.18.0 (issue 22, point 3) ---------------------------------------------

def test_every_global_knob_is_renamed_to_one_prefix_and_no_new_name_is_itself_an_old_one():
    knobs = renamed_variables.RENAMED_KNOBS
    assert all(new.startswith('pgzd_') and not old.startswith('pgzd_') for old, new in knobs.items())
    assert len(set(knobs.values())) == len(knobs) and not set(knobs.values()) & set(knobs)
    assert knobs['plan'] == 'pgzd_plan' and knobs['run_restore_drill'] == 'pgzd_restore_drill'
    assert knobs['primary_only_on_replica'] == 'pgzd_on_replica'
    assert renamed_variables.KNOBS_REMOVED_IN == '0.19.0'


def test_the_connection_and_role_variables_are_not_knobs_and_are_never_warned_of():
    defined = dict(pg_host='db', pg_port=5432, pg_user='u', pg_database='d', pg_password='p', backup_enabled=False,
                   online_indexes_lock_timeout='5s', pgzd_plan='p.yml', pgzd_lock=False, plan_name='x')
    assert renamed_variables.knob_warnings(defined) == []


def test_one_warning_per_old_knob_set_naming_its_new_name():
    warnings = renamed_variables.knob_warnings(dict(plan='p.yml', only_tables='Job', pgzd_plan='q.yml',
                                                    primary_only_on_replica='fail', pgzd_serial=2))
    assert warnings == ['The variable only_tables is deprecated: set pgzd_only_tables instead.',
                        'The variable plan is deprecated: set pgzd_plan instead.',
                        'The variable primary_only_on_replica is deprecated: set pgzd_on_replica instead.']


def test_the_preflight_warns_of_old_knobs_beside_the_old_constraint_variables():
    warnings = preflight_action.renamed_warnings({'run_restore_drill': 'true', 'unique_constraint_lock_timeout': '1s',
                                                  'pgzd_artifacts_dir': '/tmp/a'})
    assert len(warnings) == 2
    assert 'set constraints_lock_timeout instead' in warnings[0]
    assert warnings[1] == 'The variable run_restore_drill is deprecated: set pgzd_restore_drill instead.'
