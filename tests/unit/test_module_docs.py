# -*- coding: utf-8 -*-
"""Every module's DOCUMENTATION, EXAMPLES and RETURN parse as YAML: what ansible-doc shows users first."""

import ast
import glob
import importlib
import json
import os
import subprocess

import pytest
import yaml

import helpers

PLUGINS_DIR = os.path.join(helpers.REPO_ROOT, 'plugins')
MODULES = sorted(glob.glob(os.path.join(PLUGINS_DIR, 'modules', '*.py')))


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
    'filter': sorted(os.path.basename(path)[:-3] for path in glob.glob(os.path.join(PLUGINS_DIR, 'filter', '*.py'))),
    'lookup': sorted(os.path.basename(path)[:-3] for path in glob.glob(os.path.join(PLUGINS_DIR, 'lookup', '*.py'))),
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
        # The doc fragment reaches the modules that change the database during a run (the ledger's adoption too);
        # the lock's own module names the lock's session the same way.
        with_lock = [name for name, entry in rendered.items() if 'lock_session_pid' in entry['doc']['options']]
        assert sorted(with_lock) == ['%s.postgresql_%s' % (helpers.COLLECTION, name) for name in
                                     ('duplicate_resolution', 'migration_ledger', 'migration_lock',
                                      'online_constraint', 'online_index',
                                      'online_unique_constraint',
                                      'prisma_deploy', 'prisma_migration')]


def test_shared_documentation_comes_from_the_doc_fragments():
    """The authors, the attributes and the connection's login_db and session_role are written once, in the doc
    fragments common and connection, and every module takes them from there: what the modules share cannot drift."""
    for path in MODULES:
        documentation = yaml.safe_load(documentation_strings(path)['DOCUMENTATION'])
        name = os.path.basename(path)
        fragments = documentation['extends_documentation_fragment']
        assert 'author' not in documentation, name
        # common.ddl_diff before common: of two fragments, the one listed first wins (plugin_docs.merge_fragment).
        assert fragments[:1] == ['%s.common' % helpers.COLLECTION] or \
            fragments[:2] == ['%s.common.ddl_diff' % helpers.COLLECTION, '%s.common' % helpers.COLLECTION], name
        with open(path) as handle:
            connects = 'connection_argument_spec(' in handle.read()
        # The connection's options follow the spec that adds them (session.connection.connection_argument_spec);
        # a module may say more of one (its description only), never redefine it.
        assert (fragments[-2:] == ['%s.connection' % helpers.COLLECTION, 'community.postgresql.postgres']) == connects, \
            name
        for option in ('login_db', 'session_role'):
            assert set((documentation.get('options') or {}).get(option, {})) <= {'description'}, (name, option)


def test_ansible_doc_merges_the_shared_documentation_into_every_module():
    """What ansible-doc shows of the shared parts, merged: every module's authors and check mode, the diff the
    DDL modules return, login_db (alias db) and session_role wherever a module connects, and pglast wherever it
    proves plan SQL."""
    names = ['%s.%s' % (helpers.COLLECTION, name) for name in PLUGINS['module']]
    process = subprocess.run([helpers._tool('ansible-doc'), '--json', '-t', 'module'] + names,
                             cwd=helpers.REPO_ROOT, env=helpers.ansible_env(), capture_output=True, text=True,
                             timeout=120)
    assert process.returncode == 0, process.stderr
    rendered = json.loads(process.stdout)
    ddl = ['%s.postgresql_%s' % (helpers.COLLECTION, name)
           for name in ('online_constraint', 'online_index', 'online_unique_constraint', 'prisma_migration')]
    for name, entry in rendered.items():
        doc = entry['doc']
        assert doc['author'] == ['pg-zero-downtime maintainers (!UNKNOWN)'], name
        assert doc['attributes']['check_mode']['support'] == 'full', name
        assert doc['attributes']['diff_mode']['support'] == ('full' if name in ddl else 'none'), name
        assert doc['attributes']['diff_mode']['description'], name
        if 'login_host' in doc['options']:
            assert doc['options']['login_db']['type'] == 'str' and doc['options']['login_db']['aliases'] == ['db'], name
            assert doc['options']['session_role']['type'] == 'str', name
            assert doc['options']['login_db']['description'] and doc['options']['session_role']['description'], name
        else:
            assert 'login_db' not in doc['options'] and 'session_role' not in doc['options'], name
        # The parser that proves plan SQL comes with the option of what the plan trusts (doc fragment plan_trust).
        if 'trusted' in doc['options']:
            assert any(requirement.startswith('pglast ') for requirement in doc['requirements']), name


def test_the_connection_fragments_document_exactly_the_options_the_connection_spec_adds():
    """connection_argument_spec adds community.postgresql's options, login_db and session_role; the doc fragments
    community.postgresql.postgres and connection, which every module that uses it extends, document just those, with
    the same types and aliases: validate-modules compares the two for each module, this says where they come from."""
    connection = helpers.load_module_utils('session.connection')
    spec = connection.connection_argument_spec(schema=dict(type='str', default='public'))
    assert spec['schema'] == dict(type='str', default='public')
    fragments = {}
    for module_name in ('ansible_collections.pg_zero_downtime.migrations.plugins.doc_fragments.connection',
                        'ansible_collections.community.postgresql.plugins.doc_fragments.postgres'):
        fragment = importlib.import_module(module_name).ModuleDocFragment
        fragments.update(yaml.safe_load(fragment.DOCUMENTATION)['options'])
    assert sorted(fragments) == sorted(name for name in spec if name != 'schema')
    for name in ('login_db', 'session_role'):
        assert spec[name]['type'] == fragments[name]['type'], name
        assert spec[name].get('aliases', []) == fragments[name].get('aliases', []), name
