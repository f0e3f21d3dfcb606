# -*- coding: utf-8 -*-
"""Every module's DOCUMENTATION, EXAMPLES and RETURN parse as YAML: what ansible-doc shows users first."""

import ast
import glob
import json
import os
import subprocess

import pytest
import yaml

import helpers

MODULES = sorted(glob.glob(os.path.join(helpers.REPO_ROOT, 'plugins', 'modules', '*.py')))


def documentation_strings(path):
    with open(path) as handle:
        tree = ast.parse(handle.read())
    return dict((node.targets[0].id, node.value.value) for node in tree.body
                if isinstance(node, ast.Assign) and len(node.targets) == 1
                and getattr(node.targets[0], 'id', None) in ('DOCUMENTATION', 'EXAMPLES', 'RETURN'))


@pytest.mark.parametrize('path', MODULES, ids=[os.path.basename(p) for p in MODULES])
def test_module_documentation_parses(path):
    strings = documentation_strings(path)
    assert set(strings) == {'DOCUMENTATION', 'EXAMPLES', 'RETURN'}
    documentation = yaml.safe_load(strings['DOCUMENTATION'])
    assert documentation['module'] == os.path.basename(path)[:-3]
    assert documentation['short_description'] and documentation['description']
    for name, option in (documentation.get('options') or {}).items():
        assert option.get('description'), name
    assert isinstance(yaml.safe_load(strings['EXAMPLES']), list)
    assert isinstance(yaml.safe_load(strings['RETURN']), dict)


PLUGINS = {
    'module': [os.path.basename(path)[:-3] for path in MODULES],
    'filter': ['migration_report', 'migration_report_view', 'plan_errors', 'stopped_message', 'success_criteria'],
    'lookup': ['migration_plan', 'run_owner', 'working_dir'],
    'callback': ['progress'],
}


@pytest.mark.parametrize('plugin_type', sorted(PLUGINS))
def test_ansible_doc_renders_every_plugin_by_its_fqcn(plugin_type):
    """What a user types: ansible-doc <fqcn>, through the checkout's collection link (scripts/bootstrap)."""
    names = ['%s.%s' % (helpers.COLLECTION, name) for name in PLUGINS[plugin_type]]
    process = subprocess.run([helpers._tool('ansible-doc'), '--json', '-t', plugin_type] + names,
                             cwd=helpers.REPO_ROOT, env=helpers.ansible_env(), capture_output=True, text=True,
                             timeout=120)
    assert process.returncode == 0, process.stderr
    rendered = json.loads(process.stdout)
    assert sorted(rendered) == sorted(names), process.stderr
    for name, entry in rendered.items():
        doc = entry['doc']
        assert doc['short_description'] and doc['description'], name
        assert doc['collection'] == helpers.COLLECTION, name
        for option, spec in (doc.get('options') or {}).items():
            assert spec.get('description'), (name, option)
    if plugin_type == 'module':
        # The doc fragment reaches the modules that change the database during a run (the ledger's adoption too).
        with_lock = [name for name, entry in rendered.items() if 'lock_session_pid' in entry['doc']['options']]
        assert sorted(with_lock) == ['%s.postgresql_%s' % (helpers.COLLECTION, name) for name in
                                     ('duplicate_resolution', 'migration_ledger', 'online_constraint', 'online_index',
                                      'online_unique_constraint',
                                      'prisma_migration')]
