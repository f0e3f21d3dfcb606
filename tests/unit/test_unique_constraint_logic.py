# -*- coding: utf-8 -*-
"""Pure logic of unique constraints: what each catalog state needs, and how duplicates would be renamed."""

import pytest

import helpers

uc = helpers.load_module_utils('kinds.unique_constraint')
uk = helpers.load_module_utils('kinds.unique_keys')

NAME, SCHEMA, TABLE, COLUMNS = 'Class_name_grade_key', 'public', 'Class', ['name', 'grade']


def constraint(**overrides):
    row = dict(name=NAME, type='u', schema=SCHEMA, table=TABLE, deferrable=False, columns=list(COLUMNS),
               index_name=NAME, nulls_not_distinct=False, definition='UNIQUE (name, grade)')
    row.update(overrides)
    return row


def index(**overrides):
    row = dict(name=NAME, relkind='i', table=TABLE, table_schema=SCHEMA, valid=True, ready=True, unique=True,
               method='btree', key_columns=list(COLUMNS), include_columns=[], predicate=None,
               definition='CREATE UNIQUE INDEX "Class_name_grade_key" ON public."Class" USING btree (name, grade)',
               constraint=None, build_in_progress_pid=None, extras=[])
    row.update(overrides)
    return row


def decide(state='present', constraints=(), existing_index=None):
    return uc.decide_constraint_action(NAME, SCHEMA, TABLE, COLUMNS, state, list(constraints), existing_index)


# --- present -----------------------------------------------------------------------------------------

def test_nothing_there_means_build_then_attach():
    assert decide() == ('created', [])


def test_the_planned_constraint_in_place_is_unchanged():
    assert decide(constraints=[constraint()], existing_index=index(constraint=NAME)) == ('unchanged', [])


def test_a_valid_equivalent_unique_index_is_attached_without_a_rebuild():
    assert decide(existing_index=index()) == ('attached', [])


def test_an_invalid_leftover_is_dropped_and_rebuilt_whatever_its_definition():
    assert decide(existing_index=index(valid=False)) == ('rebuilt', [])
    assert decide(existing_index=index(valid=False, key_columns=['name'])) == ('rebuilt', [])


@pytest.mark.parametrize('overrides,expected', [
    (dict(type='c', columns=[], definition='CHECK (grade > 0)'), 'it is a CHECK constraint, not UNIQUE'),
    (dict(columns=['name'], definition='UNIQUE (name)'), 'its columns are (name), planned (name, grade)'),
    (dict(columns=['grade', 'name']), 'its columns are (grade, name), planned (name, grade)'),
    (dict(deferrable=True), 'it is DEFERRABLE'),
    (dict(nulls_not_distinct=True), 'it has NULLS NOT DISTINCT'),
])
def test_a_different_constraint_of_the_same_name_is_refused_in_both_directions(overrides, expected):
    for state in ('present', 'absent'):
        action, errors = decide(state, constraints=[constraint(**overrides)])
        assert action is None
        assert len(errors) == 1 and expected in errors[0]
        assert 'different constraint named "Class_name_grade_key"' in errors[0]
        assert 'nothing was changed' in errors[0]


def test_a_constraint_of_that_name_on_another_table_is_not_this_one():
    assert decide(constraints=[constraint(table='Teacher')]) == ('created', [])


@pytest.mark.parametrize('overrides,expected', [
    (dict(unique=False), 'it is not unique'),
    (dict(method='hash'), 'its method is hash, not btree'),
    (dict(key_columns=['name']), 'its key columns are (name), planned (name, grade)'),
    (dict(key_columns=['name', None]), 'its key columns are (name, expression)'),
    (dict(include_columns=['teacherId']), 'it has INCLUDE columns'),
    (dict(predicate='(grade > 0)'), 'it is partial (WHERE (grade > 0))'),
    (dict(extras=['a DESC or NULLS FIRST ordering']), 'it has a DESC or NULLS FIRST ordering'),
    (dict(table='Teacher'), 'it is on table public.Teacher, not public.Class'),
])
def test_an_index_of_that_name_that_cannot_back_the_constraint_is_refused(overrides, expected):
    action, errors = decide(existing_index=index(**overrides))
    assert action is None and len(errors) == 1
    assert expected in errors[0] and 'nothing was changed' in errors[0]


def test_a_table_of_that_name_is_refused():
    action, errors = decide(existing_index=index(relkind='r'))
    assert action is None and 'is not an index (relation kind r)' in errors[0]


def test_an_index_backing_another_constraint_is_refused():
    action, errors = decide(existing_index=index(constraint='Other_key'))
    assert action is None and 'already backs constraint "Other_key"' in errors[0]


def test_an_index_being_built_by_another_session_is_refused():
    action, errors = decide(existing_index=index(valid=False, build_in_progress_pid=4242))
    assert action is None and 'backend pid 4242' in errors[0]


# --- absent ------------------------------------------------------------------------------------------

def test_absent_drops_the_planned_constraint():
    assert decide('absent', constraints=[constraint()], existing_index=index(constraint=NAME)) == ('dropped', [])


def test_absent_drops_the_unique_index_a_failed_attach_left():
    assert decide('absent', existing_index=index()) == ('dropped', [])
    assert decide('absent', existing_index=index(valid=False)) == ('dropped', [])


def test_absent_with_nothing_there_is_unchanged():
    assert decide('absent') == ('unchanged', [])


@pytest.mark.parametrize('existing', [index(table='Teacher'), index(relkind='r'), index(constraint='Other_key')])
def test_absent_leaves_what_is_not_this_plans_alone(existing):
    assert decide('absent', existing_index=existing) == ('unchanged', [])


def test_absent_refuses_to_drop_an_index_of_that_name_with_another_definition():
    action, errors = decide('absent', existing_index=index(key_columns=['name']))
    assert action is None and 'left alone' in errors[0]


# --- input -------------------------------------------------------------------------------------------

@pytest.mark.parametrize('name,schema,table,columns,expected', [
    ('x' * 64, 'public', 'Class', ['name'], '64 bytes long'),
    ('k', 'public', ' Class', ['name'], 'leading or trailing white space'),
    ('k', 'public', 'Class', [], 'has no columns'),
    ('k', 'public', 'Class', ['name', 'name'], 'names a column twice'),
    ('k', 'public', 'Class', ['na\nme'], 'control character'),
])
def test_malformed_constraints_are_refused_before_any_catalog_read(name, schema, table, columns, expected):
    errors = uc.validate_constraint(name, schema, table, columns)
    assert any(expected in error for error in errors), errors


def test_the_planned_definition_is_rendered_like_pg_get_constraintdef():
    assert uc.planned_definition(['name', 'grade']) == 'UNIQUE (name, grade)'
    assert uc.planned_definition(['teacherId', 'grade']) == 'UNIQUE ("teacherId", grade)'


# --- how duplicates would be renamed -----------------------------------------------------------------

TYPES = dict(id='text', name='text', grade='integer', createdAt='timestamp(3) without time zone')


def test_the_rename_takes_the_first_text_column_and_keeps_the_oldest_by_created_at_then_key():
    assert uk.rename_plan('public', 'Class', ['grade', 'name'], TYPES, ['id']) == ('name', ['createdAt', 'id'])


def test_without_created_at_the_primary_key_orders_the_group():
    types = dict(TYPES)
    del types['createdAt']
    assert uk.rename_plan('public', 'Class', ['name', 'grade'], types, ['id']) == ('name', ['id'])


def test_explicit_rename_column_and_order_are_kept():
    assert uk.rename_plan('public', 'Class', ['name', 'grade'], TYPES, ['id'], 'name', ['grade']) == \
        ('name', ['grade', 'id'])


@pytest.mark.parametrize('columns,primary_key,rename,order,expected', [
    (['name', 'grade'], [], None, None, 'has no primary key'),
    (['grade'], ['id'], None, None, 'none of the columns (grade integer) is text or varchar'),
    (['name', 'grade'], ['id'], 'grade', None, 'only text or varchar can take a suffix'),
    (['name', 'grade'], ['id'], 'id', None, 'is not one of the constraint\'s columns'),
    (['name', 'level'], ['id'], None, None, 'column(s) level not found'),
    (['name', 'grade'], ['id'], None, ['updatedAt'], 'keep_oldest_by names column(s) updatedAt'),
])
def test_a_rename_that_cannot_work_says_why(columns, primary_key, rename, order, expected):
    with pytest.raises(ValueError, match=None) as raised:
        uk.rename_plan('public', 'Class', columns, TYPES, primary_key, rename, order)
    assert expected in str(raised.value)


def test_the_constraint_summary_and_the_failure_of_a_plan_of_constraints():
    created = dict(name='Class_name_grade_key', schema='public', table='Class', action='created', seconds=0.06,
                   retries=1, renamed_rows=2, statements=['CREATE UNIQUE INDEX CONCURRENTLY x', 'ALTER TABLE y'])
    assert uc.constraint_summary([created], False) == [
        '%-9s %-40s on %s.%s in %6.2fs (1 lock retries)' % ('created', 'Class_name_grade_key', 'public', 'Class', 0.06),
        'Class_name_grade_key: 2 duplicate row(s) renamed, recorded in the audit table']
    checked = uc.constraint_summary([created], True)
    assert checked[0].startswith('Check mode') and 'Class_name_grade_key: 2 duplicate row(s) to rename, recorded in ' \
        'the audit table' in checked and checked[-2:] == ['CREATE UNIQUE INDEX CONCURRENTLY x;', 'ALTER TABLE y;']
    restored = dict(name='k', schema='public', table='Class', action='unchanged', restored_rows=3)
    assert uc.constraint_summary([restored], False) == ['k: 3 renamed value(s) restored']
    assert uc.constraint_summary([dict(restored, restored_rows=0)], False) == ['No constraint needed a change.']
    assert uc.plan_failure_message('Constraint "k2": gave up', [created, restored], ['k3', 'k4']) == (
        'Constraint "k2": gave up\nDone before it, and kept: created Class_name_grade_key\n'
        'Not started, nothing changed on them: k3, k4 (queued behind the failure above)')
