# -*- coding: utf-8 -*-
"""Statement kinds as peers over one DDL session (issue 22, point 1), held by the code's own shape.

No kind subclasses another (the index, unique and foreign key / check / NOT NULL kinds each hold the DdlSession,
and the index kind where they build an index); no class in plugins/ grows past about 250 lines; and the
preflight's main() composes named steps instead of doing them itself. Read with ast, nothing is run.
"""

import ast
import glob
import os

import pytest

from helpers import REPO_ROOT

MAX_CLASS_LINES = 250
MAX_PREFLIGHT_MAIN_LINES = 60
KINDS = [('online_index.py', 'OnlineIndexRunner'), ('unique_constraint.py', 'UniqueConstraintRunner'),
         ('online_constraint.py', 'ConstraintRunner')]


def parsed(path):
    with open(os.path.join(REPO_ROOT, path)) as handle:
        return ast.parse(handle.read(), path)


def top_level(tree, kind, name):
    found = [node for node in tree.body if isinstance(node, kind) and node.name == name]
    assert found, '%s not found' % name
    return found[0]


@pytest.mark.parametrize('filename,name', KINDS)
def test_no_kind_subclasses_another(filename, name):
    cls = top_level(parsed(os.path.join('plugins', 'module_utils', 'kinds', filename)), ast.ClassDef, name)
    assert [ast.unparse(base) for base in cls.bases] == ['object']


def test_every_kind_runs_through_a_ddl_session():
    for filename, name in KINDS:
        source = ast.unparse(top_level(parsed(os.path.join('plugins', 'module_utils', 'kinds', filename)), ast.ClassDef, name))
        assert 'session' in source, name
        # The session's own machinery is called on it, never re-implemented or reached for in another kind.
        for private in ('_with_retries', '_execute_concurrently', '_failure_message', 'set_config'):
            assert private not in source, (name, private)


def test_no_class_in_plugins_is_over_the_limit():
    too_long = []
    for path in sorted(glob.glob(os.path.join(REPO_ROOT, 'plugins', '**', '*.py'), recursive=True)):
        for node in ast.walk(parsed(path)):
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno > MAX_CLASS_LINES:
                too_long.append('%s:%s %s lines' % (os.path.relpath(path, REPO_ROOT), node.name,
                                                    node.end_lineno - node.lineno))
    assert too_long == []


def test_preflight_main_composes_named_steps():
    main = top_level(parsed(os.path.join('plugins', 'modules', 'postgresql_migration_preflight.py')),
                     ast.FunctionDef, 'main')
    assert main.end_lineno - main.lineno <= MAX_PREFLIGHT_MAIN_LINES
    called = set(node.func.id for node in ast.walk(main) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name))
    assert {'refuse_bad_options', 'leave_out_replica', 'lock_first', 'prove_plan', 'verdict', 'summarize'} <= called
