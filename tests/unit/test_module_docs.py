# -*- coding: utf-8 -*-
"""Every module's DOCUMENTATION, EXAMPLES and RETURN parse as YAML: what ansible-doc shows users first."""

import ast
import glob
import os

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
