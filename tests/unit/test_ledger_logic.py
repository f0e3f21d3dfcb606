# -*- coding: utf-8 -*-
"""The decisions of plugins/module_utils/run/ledger.py on plain data: what a rollback may undo, given the plan's ledger row
of an object and the object as it is (tests/integration/test_ledger.py proves the whole on the real cluster)."""

import pytest

import helpers

ledger = helpers.load_module_utils('run.ledger')

ROW = dict(id=3, run_id='t12-20261204T000000Z-abcdef', state='applied', definition='CREATE INDEX ...', prior=None)


def test_what_the_ledger_attributes_to_the_plan_and_still_matches_is_undone():
    assert ledger.attribution('t12', 'index', 'Job_idx', ROW, True, True) == (True, None)


def test_what_is_not_there_needs_nothing():
    assert ledger.attribution('t12', 'index', 'Job_idx', ROW, False, False) == (False, None)
    assert ledger.attribution('t12', 'index', 'Job_idx', None, False, False) == (False, None)


@pytest.mark.parametrize('kind, name, fragment', [
    ('index', 'Job_email_key', 'index "Job_email_key" is not in the ledger of plan t12'),
    ('not_null', 'User.id', 'NOT NULL of column "User.id" is not in the ledger of plan t12'),
    ('constraint', 'Class_name_grade_key', 'constraint "Class_name_grade_key" is not in the ledger'),
])
def test_what_no_run_of_the_plan_made_is_left_alone_with_how_to_adopt_it(kind, name, fragment):
    undo, reason = ledger.attribution('t12', kind, name, None, True, False)
    assert undo is False and fragment in reason and 'playbooks/adopt.yml' in reason and 'left alone' in reason


def test_what_changed_since_the_run_recorded_it_is_left_alone_with_both_definitions():
    undo, reason = ledger.attribution('t12', 'index', 'Job_idx', ROW, True, False, 'CREATE UNIQUE INDEX ...')
    assert undo is False
    assert 'is not what run t12-20261204T000000Z-abcdef of plan t12 recorded' in reason
    assert 'recorded: CREATE INDEX ...; now: CREATE UNIQUE INDEX ...' in reason


def test_not_valid_does_not_make_a_constraint_another_one():
    assert ledger.without_not_valid('CHECK ((price > 0)) NOT VALID') == 'CHECK ((price > 0))'
    assert ledger.without_not_valid('CHECK ((price > 0))') == 'CHECK ((price > 0))'
    assert ledger.without_not_valid(None) == ''


def test_the_ledger_table_is_created_by_statements_that_can_be_run_again():
    assert all('IF NOT EXISTS' in statement for statement in ledger.CREATE_STATEMENTS)
    assert ledger.QUALIFIED == 'pgzd_audit.ledger' and ledger.READ_QUERY.endswith('ORDER BY id')
    for kind in ledger.KINDS:
        assert "'%s'" % kind in ledger.CREATE_STATEMENTS[1]
