# -*- coding: utf-8 -*-
"""How a NOT NULL is added, by server version (issue 24): on PostgreSQL 18+ a NOT NULL constraint added NOT VALID, then
validated; on 14-17 the helper CHECK, VALIDATE, SET NOT NULL and the helper's drop. The choice, from
server_version_num, and the steps each catalog state still needs on either side (a 14-17 run resumed on 18 too)."""

import pytest

import helpers

oc = helpers.load_module_utils('kinds.constraint_decisions')
rules = helpers.load_module_utils('plan.refusal_rules')

NEW, OLD = oc.NOT_NULL_CONSTRAINT, oc.NOT_NULL_HELPER_CHECK
HELPER = dict(name='Class_teacherId_not_null', type='c', columns=['teacherId'],
              definition='CHECK (("teacherId" IS NOT NULL))')
CONSTRAINT = dict(name='Class_teacherId_not_null', type='n', columns=['teacherId'],
                  definition='NOT NULL "teacherId"')


@pytest.mark.parametrize('version_num, path', [(140000, OLD), (150018, OLD), (160014, OLD), (170010, OLD),
                                               (179999, OLD), (180000, NEW), (180004, NEW), (190000, NEW)])
def test_the_path_is_chosen_by_server_version_num_18_being_the_first_with_not_valid_not_null(version_num, path):
    assert oc.not_null_path(version_num) == path


def decide(state, existing=None, valid=True, column_not_null=False, column_constraint=None, path=NEW):
    row = dict(existing, valid=valid) if existing is not None else None
    return oc.decide_not_null_steps(state, row, [], column_not_null, column_constraint, path)


@pytest.mark.parametrize('arguments, expected', [
    # A nullable column: the path of the server.
    (dict(path=NEW), ('created', ['add_not_null', 'validate'])),
    (dict(path=OLD), ('created', ['add', 'validate', 'set_not_null', 'drop'])),
    # 18: a run stopped after ADD ... NOT NULL ... NOT VALID (attnotnull is true already): the rerun validates it.
    (dict(existing=CONSTRAINT, valid=False, column_not_null=True, column_constraint=dict(name=CONSTRAINT['name'],
                                                                                        valid=False)),
     ('validated', ['validate'])),
    # 18: done.
    (dict(existing=CONSTRAINT, column_not_null=True, column_constraint=dict(name=CONSTRAINT['name'], valid=True)),
     ('unchanged', [])),
    # A column NOT NULL already (a valid NOT NULL of another name on 18, PostgreSQL's own name after SET NOT NULL).
    (dict(column_not_null=True, column_constraint=dict(name='Class_teacherId_not_null1', valid=True)),
     ('unchanged', [])),
    (dict(column_not_null=True, path=OLD), ('unchanged', [])),
    # A 14-17 run stopped with its helper check NOT VALID, or valid, or after SET NOT NULL, resumed on 18: finished
    # the old way (SET NOT NULL proves the column from the valid check, no second scan).
    (dict(existing=HELPER, valid=False), ('validated', ['validate', 'set_not_null', 'drop'])),
    (dict(existing=HELPER, valid=True), ('completed', ['set_not_null', 'drop'])),
    (dict(existing=HELPER, valid=True, column_not_null=True,
          column_constraint=dict(name='Class_teacherId_not_null1', valid=True)), ('completed', ['drop'])),
    # The same on 14-17: today's steps.
    (dict(existing=HELPER, valid=False, path=OLD), ('validated', ['validate', 'set_not_null', 'drop'])),
])
def test_the_steps_left_follow_from_the_catalog_on_either_path(arguments, expected):
    action, steps, errors = decide('present', **arguments)
    assert errors == []
    assert (action, steps) == expected


@pytest.mark.parametrize('arguments, expected', [
    # 18: DROP NOT NULL removes the NOT NULL constraint, valid or NOT VALID; no DROP CONSTRAINT after it.
    (dict(existing=CONSTRAINT, column_not_null=True), ('dropped', ['drop_not_null'])),
    (dict(existing=CONSTRAINT, valid=False, column_not_null=True), ('dropped', ['drop_not_null'])),
    (dict(column_not_null=True), ('dropped', ['drop_not_null'])),
    # A 14-17 run's helper, on either path.
    (dict(existing=HELPER, valid=False), ('dropped', ['drop'])),
    (dict(existing=HELPER, column_not_null=True, path=OLD), ('dropped', ['drop_not_null', 'drop'])),
    (dict(), ('unchanged', [])),
])
def test_rolling_back_undoes_either_form(arguments, expected):
    action, steps, errors = decide('absent', **arguments)
    assert errors == []
    assert (action, steps) == expected


def test_a_not_valid_not_null_of_another_name_is_refused_saying_what_to_do():
    # PostgreSQL 18 keeps one NOT NULL constraint a column and refuses a second name beside it.
    action, steps, errors = decide('present', column_not_null=True, column_constraint=dict(name='mine', valid=False))
    assert (action, steps) == (None, [])
    assert errors == ['the column already has a NOT VALID NOT NULL constraint "mine", not of the planned name: validate '
                      'it (ALTER TABLE ... VALIDATE CONSTRAINT "mine"), or give the plan\'s entry its name, and rerun; '
                      'nothing was changed on it']


def test_a_not_null_constraint_of_the_name_on_another_column_differs():
    assert oc.not_null_differences(CONSTRAINT, 'teacherId') == []
    assert oc.not_null_differences(dict(CONSTRAINT, columns=['name']), 'teacherId') == [
        'it is NOT NULL on column name, planned teacherId']
    action, steps, errors = oc.decide_not_null_steps('absent', dict(CONSTRAINT, valid=True), ['differs'], True, None,
                                                     NEW)
    assert (action, steps, errors) == (None, [], ['differs'])


def test_the_new_step_is_judged_and_locked_like_a_check():
    assert oc.entry_statement('not_null', 'add_not_null') == rules.ADD_NOT_NULL
    assert rules.ADD_NOT_NULL in rules.RULES_BY_ID['constraint-relkind'].statements
    assert oc.step_lock('not_null', 'add_not_null') == 'ACCESS EXCLUSIVE on the table, an instant (NOT VALID: no scan)'
    assert oc.step_lock('not_null', 'validate') == (
        'SHARE UPDATE EXCLUSIVE on the table: a scan that blocks no reads or writes')
