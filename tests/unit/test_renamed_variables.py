# -*- coding: utf-8 -*-
"""plugins/plugin_utils/renamed_variables.py: which old names a run sets, and what to write instead."""

import glob
import importlib
import os
import re

import yaml

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


def test_the_docs_table_of_renamed_knobs_is_the_table_of_the_code():
    with open(os.path.join(helpers.REPO_ROOT, 'docs', 'pipelines.md')) as handle:
        text = handle.read()
    rows = re.findall(r'^\| `(\w+)` \| `(\w+)` \| (\S+) \|$', text, re.M)
    assert dict((old, new) for old, new, _ in rows) == renamed_variables.RENAMED_KNOBS
    assert set(removed for _, _, removed in rows) == {renamed_variables.KNOBS_REMOVED_IN}


def conditions(node):
    """The bare Jinja expressions of the conditionals (when, that, ...) of a loaded YAML file."""
    if isinstance(node, list):
        return [found for item in node for found in conditions(item)]
    if not isinstance(node, dict):
        return []
    found = []
    for key, value in node.items():
        if key in ('when', 'that', 'failed_when', 'changed_when', 'until'):
            found += [item for item in (value if isinstance(value, list) else [value]) if isinstance(item, str)]
        else:
            found += conditions(value)
    return found


def jinja_expressions(path):
    """The {{ ... }} expressions and the conditionals of a YAML file, comments and string literals left out."""
    with open(path) as handle:
        text = ''.join(line for line in handle if not line.lstrip().startswith('#'))
    expressions = re.findall(r'\{\{(.*?)\}\}', text, re.S) + conditions(yaml.safe_load(text))
    return [re.sub(r"'[^']*'|\"[^\"]*\"", "''", expression) for expression in expressions]


def test_every_place_that_reads_an_old_knob_reads_its_new_name_first():
    """Wherever a role or playbook reads a knob, the new name is read and the old one is only its fallback
    (C(pgzd_x | default(x))): the old names keep working, and the new ones win."""
    paths = glob.glob(os.path.join(helpers.REPO_ROOT, 'roles', '*', '*', '*.yml')) + glob.glob(
        os.path.join(helpers.REPO_ROOT, 'playbooks', '*.yml'))
    found = set()
    for path in paths:
        for expression in jinja_expressions(path):
            for old, new in renamed_variables.RENAMED_KNOBS.items():
                for match in re.finditer(r'(?<![\w.\'"])%s(?![\w\'"]|\s*=[^=])' % old, expression):
                    where = (os.path.relpath(path, helpers.REPO_ROOT), old, expression.strip())
                    assert expression[max(0, match.start() - 8):match.start()] == 'default(', where
                    assert new in expression[:match.start()], where
                    found.add(old)
    # artifacts_dir is read by the lookup run_folder (after pgzd_artifacts_dir), the others by the roles and playbooks.
    assert found | {'artifacts_dir'} == set(renamed_variables.RENAMED_KNOBS), set(renamed_variables.RENAMED_KNOBS) - found


def test_the_shipped_inventories_set_the_new_names_and_take_an_old_extra_var_first():
    """An inventory's pgzd_artifacts_dir would outrank a pipeline's -e artifacts_dir=... (the new name wins): the
    shipped inventories take the old name's value when a run still gives it."""
    for path in glob.glob(os.path.join(helpers.REPO_ROOT, 'inventories', '*', 'group_vars', '*.yml')):
        with open(path) as handle:
            settings = yaml.safe_load(handle)
        assert not set(settings) & set(renamed_variables.RENAMED_KNOBS), path
        assert settings['pgzd_artifacts_dir'].startswith('{{ artifacts_dir | default('), path
