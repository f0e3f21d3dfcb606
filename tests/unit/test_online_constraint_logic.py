# -*- coding: utf-8 -*-
"""Pure logic of foreign keys, checks and NOT NULL: which steps each catalog state still needs, when an existing
constraint differs from the planned one, what a bad entry is told, and the report on rows that break a constraint."""

import pytest

import helpers

oc = helpers.load_module_utils('kinds.constraint_decisions')

FK = dict(name='Job_classId_fkey', type='foreign_key', schema='public', table='Job', columns=['classId'],
          references=dict(table='Class', columns=['id']), on_delete='SET NULL', on_update='CASCADE')


def existing(**overrides):
    row = dict(name='Job_classId_fkey', type='f', schema='public', table='Job', valid=True, deferrable=False,
               match_type='s', on_update='c', on_delete='n', columns=['classId'], ref_schema='public',
               ref_table='Class', ref_columns=['id'],
               definition='FOREIGN KEY ("classId") REFERENCES "Class"(id) ON UPDATE CASCADE ON DELETE SET NULL')
    row.update(overrides)
    return row


@pytest.mark.parametrize('kind, state, found, column_not_null, index_action, expected', [
    # Nothing yet: every step.
    ('foreign_key', 'present', None, False, None, ('created', ['add', 'validate'])),
    ('foreign_key', 'present', None, False, 'created', ('created', ['build_index', 'add', 'validate'])),
    ('check', 'present', None, False, None, ('created', ['add', 'validate'])),
    ('not_null', 'present', None, False, None, ('created', ['add', 'validate', 'set_not_null', 'drop'])),
    # A run stopped after ADD ... NOT VALID: the rerun validates (and, for NOT NULL, goes on).
    ('foreign_key', 'present', dict(valid=False), False, None, ('validated', ['validate'])),
    ('not_null', 'present', dict(valid=False), False, None, ('validated', ['validate', 'set_not_null', 'drop'])),
    # A run stopped after VALIDATE, or after SET NOT NULL.
    ('not_null', 'present', dict(valid=True), False, None, ('completed', ['set_not_null', 'drop'])),
    ('not_null', 'present', dict(valid=True), True, None, ('completed', ['drop'])),
    # Done.
    ('foreign_key', 'present', dict(valid=True), False, None, ('unchanged', [])),
    ('foreign_key', 'present', dict(valid=True), False, 'unchanged', ('unchanged', [])),
    ('not_null', 'present', None, True, None, ('unchanged', [])),
    # Rolling back.
    ('foreign_key', 'absent', dict(valid=True), False, 'dropped', ('dropped', ['drop', 'drop_index'])),
    ('foreign_key', 'absent', None, False, 'dropped', ('dropped', ['drop_index'])),
    ('check', 'absent', None, False, None, ('unchanged', [])),
    ('not_null', 'absent', None, True, None, ('dropped', ['drop_not_null'])),
    ('not_null', 'absent', dict(valid=False), False, None, ('dropped', ['drop'])),
    ('not_null', 'absent', None, False, None, ('unchanged', [])),
])
def test_the_steps_left_follow_from_the_catalog(kind, state, found, column_not_null, index_action, expected):
    row = existing(**found) if found is not None else None
    action, steps, errors = oc.decide_steps(kind, state, row, [], column_not_null, index_action)
    assert errors == []
    assert (action, steps) == expected


def test_a_different_constraint_of_the_name_stops_both_ways():
    for state in ('present', 'absent'):
        action, steps, errors = oc.decide_steps('foreign_key', state, existing(), ['it is DEFERRABLE'])
        assert (action, steps, errors) == (None, [], ['it is DEFERRABLE'])


def test_foreign_key_differences_name_every_difference():
    assert oc.foreign_key_differences(existing(), FK, 'public') == []
    # The words of a plan are normalized: Prisma's "SetNull", lower case, underscores.
    assert oc.foreign_key_differences(existing(), dict(FK, on_delete='set_null', on_update='Cascade'), 'public') == []
    found = existing(on_delete='r', on_update='a', columns=['teacherId'], ref_table='User', match_type='f',
                     deferrable=True)
    assert oc.foreign_key_differences(found, FK, 'public') == [
        'its columns are (teacherId), planned (classId)',
        'it references public.User (id), planned public.Class (id)',
        'its ON DELETE is RESTRICT, planned SET NULL',
        'its ON UPDATE is NO ACTION, planned CASCADE',
        'it is MATCH FULL', 'it is DEFERRABLE']
    assert oc.foreign_key_differences(existing(type='c'), FK, 'public') == ['it is a CHECK constraint, not FOREIGN KEY']


def test_check_differences_compare_postgresql_renderings_valid_or_not():
    row = existing(type='c', definition='CHECK ((price > 0)) NOT VALID')
    assert oc.check_differences(row, 'CHECK ((price > 0)) NOT VALID') == []
    assert oc.check_differences(row, 'CHECK ((price > 0))') == []
    assert oc.check_differences(row, 'CHECK ((price >= 0))') == ['its expression differs']
    assert oc.check_differences(existing(type='u'), 'CHECK ((price > 0))') == ['it is a UNIQUE constraint, not CHECK']


@pytest.mark.parametrize('value, expected', [
    (None, 'NO ACTION'), ('Restrict', 'RESTRICT'), ('set_null', 'SET NULL'), ('SET  DEFAULT', 'SET DEFAULT'),
    ('cascade', 'CASCADE'), ('DROP', None), ('', None)])
def test_referential_actions_are_read_as_prisma_and_postgresql_write_them(value, expected):
    assert oc.referential_action(value) == expected


def test_entry_errors_say_what_is_wrong_with_an_entry_alone():
    assert oc.entry_errors(FK) == []
    assert oc.entry_errors(dict(FK, references=dict(table='Class', columns=['id', 'name']))) == [
        'foreign key "Job_classId_fkey": 1 column(s) reference 2 column(s); give as many referenced columns as columns']
    assert oc.entry_errors(dict(FK, on_update='DROP'))[0].startswith(
        'foreign key "Job_classId_fkey": on_update must be one of NO ACTION, RESTRICT, CASCADE, SET NULL, SET DEFAULT')
    check = dict(name='Item_price_check', type='check', schema='public', table='Item', expression='price > 0')
    assert oc.entry_errors(check) == []
    assert 'expression is not one SQL expression' in oc.entry_errors(dict(check, expression='true); DROP TABLE x; --'))[0]
    assert 'subquer' in oc.entry_errors(dict(check, expression='price > (SELECT 1)'))[0]
    assert oc.entry_errors(dict(name='n', type='not_null', schema='public', table='Job', column='a' * 64))[0].startswith(
        'column "%s" is 64 bytes long' % ('a' * 64))
    assert oc.entry_errors(dict(name='n', type='exclusion', table='Job')) == [
        'constraint "n": type exclusion is not one of foreign_key, check, not_null']


def test_the_violation_report_names_rows_and_keys():
    found = dict(row_id='id', total_rows=3, total_groups=2, sample_ids=[],
                 groups=[dict(key=['c1'], rows=2, sample_ids=['a', 'b'])])
    assert oc.violation_report(FK, found) == [
        'foreign key "Job_classId_fkey" (classId) -> public.Class (id): 3 row(s) of public.Job reference no row '
        '(2 missing key(s))',
        '  (classId) = (c1): 2 row(s), id a, b',
        '  ... and 1 more missing key(s)']
    nulls = dict(row_id='id', total_rows=7, total_groups=7, groups=[], sample_ids=['a', 'b'])
    assert oc.violation_report(dict(name='n', type='not_null', schema='public', table='Job', column='title'), nulls) == [
        'NOT NULL on public.Job."title": 7 row(s) of public.Job hold NULL it: id a, b, ...']
    assert oc.violations_advice(['check', 'foreign_key']) == (
        'What to do: insert the missing referenced rows, or delete (or set to NULL) the rows that reference them; fix or '
        'delete the rows that violate the check, then rerun; the run checks again before any DDL.')


def test_each_step_says_the_lock_it_takes():
    # A foreign key's steps lock two tables: the referenced one first (issue 21: a dropped foreign key takes ACCESS
    # EXCLUSIVE on the referenced table, not SHARE ROW EXCLUSIVE as this said before).
    assert oc.step_lock('foreign_key', 'add') == (
        'SHARE ROW EXCLUSIVE on the referenced table (LOCK TABLE, first), then SHARE ROW EXCLUSIVE on the table, an '
        'instant (NOT VALID: no scan), under a lock_timeout capped at half of deadlock_timeout')
    assert oc.step_lock('foreign_key', 'drop').startswith(
        'ACCESS EXCLUSIVE on the referenced table (LOCK TABLE, first), then ACCESS EXCLUSIVE on the table, an instant')
    assert oc.step_lock('foreign_key', 'validate').startswith(
        'ROW SHARE on the referenced table (LOCK TABLE, first), then SHARE UPDATE EXCLUSIVE on the table, a scan that '
        'blocks no reads or writes')
    assert oc.step_lock('check', 'add').startswith('ACCESS EXCLUSIVE on the table, an instant')
    assert oc.step_lock('check', 'validate') == 'SHARE UPDATE EXCLUSIVE on the table: a scan that blocks no reads or writes'
    assert oc.step_lock('check', 'drop') == 'ACCESS EXCLUSIVE on the table, an instant'
    assert oc.step_lock('not_null', 'set_not_null').endswith('(the valid check proves the column, no scan)')
    assert [oc.ordered_kind(kind, step) for kind, step in [('foreign_key', 'add'), ('foreign_key', 'drop'),
                                                           ('foreign_key', 'build_index'), ('check', 'add')]] == [
        'foreign_key_add', 'foreign_key_drop', None, None]


def test_the_plans_own_indexes_count_as_keys_and_as_a_foreign_keys_index():
    proof = helpers.load_module_utils('plan.plan_proof')
    tables = [dict(name='JobAssignment', indexes=[dict(name='a', columns=['jobId', 'status']),
                                                   dict(name='b', columns=['studentId'], where='x')]),
              dict(name='Class', schema='other', indexes=[dict(name='c', columns=['name', 'grade'], unique=True),
                                                          dict(name='d', columns=['id'], unique=True, where='x')])]
    assert proof.planned_index_leads(tables, 'public', 'public', 'JobAssignment', ['jobId'])
    assert proof.planned_index_leads(tables, 'public', 'public', 'JobAssignment', ['status', 'jobId'])
    assert not proof.planned_index_leads(tables, 'public', 'public', 'JobAssignment', ['status'])
    assert not proof.planned_index_leads(tables, 'public', 'public', 'JobAssignment', ['studentId'])  # partial
    assert not proof.planned_index_leads(tables, 'public', 'other', 'JobAssignment', ['jobId'])
    # A partial unique index cannot be referenced.
    assert proof.unique_indexes(tables, 'public') == {('other', 'Class', frozenset(['name', 'grade']))}


@pytest.mark.parametrize('kind, relkind, version_num, expected', [
    # A partitioned table on 18+: partition by partition (the measurements are in validates_by_partition's docstring).
    ('foreign_key', 'p', 180000, True), ('foreign_key', 'p', 180004, True), ('foreign_key', 'p', 190001, True),
    # Below 18 the ADD ... NOT VALID is refused (rule foreign-key-not-valid-on-partitioned-table), so no path.
    ('foreign_key', 'p', 170010, False), ('foreign_key', 'p', 140023, False),
    # A plain table, or another kind: its own VALIDATE.
    ('foreign_key', 'r', 180004, False), ('check', 'p', 180004, False), ('not_null', 'p', 180004, False),
])
def test_a_foreign_key_on_a_partitioned_table_is_validated_partition_by_partition_on_18_and_later(
        kind, relkind, version_num, expected):
    assert oc.validates_by_partition(kind, relkind, version_num) is expected


@pytest.mark.parametrize('found, expected', [
    (None, ('created', ['add', 'validate_partitions', 'validate'])),
    # A run stopped during the partitions: the rerun validates the rest, then the parent.
    (existing(valid=False), ('validated', ['validate_partitions', 'validate'])),
])
def test_the_partitions_keys_are_validated_before_the_parents(found, expected):
    assert oc.decide_steps('foreign_key', 'present', found, [], by_partition=True) == expected + ([],)
    assert oc.decide_steps('foreign_key', 'present', existing(), [], by_partition=True) == ('unchanged', [], [])
    # Rolling back drops the parent's key alone: PostgreSQL drops its partitions' with it.
    assert oc.decide_steps('foreign_key', 'absent', found or existing(), [], by_partition=True) == ('dropped', ['drop'],
                                                                                                    [])


def test_a_partitions_validate_takes_the_referenced_table_first_and_locks_one_partition():
    assert oc.ordered_kind('foreign_key', 'validate_partitions') == 'foreign_key_validate'
    assert oc.entry_statement('foreign_key', 'validate_partitions') == oc.VALIDATE
    assert oc.step_lock('foreign_key', 'validate_partitions') == (
        'ROW SHARE on the referenced table (LOCK TABLE, first), then SHARE UPDATE EXCLUSIVE on the table, each '
        'partition in a transaction of its own (the table: that partition), a scan of it alone that blocks no reads '
        'or writes, under a lock_timeout capped at half of deadlock_timeout')
    assert oc.STEP_ORDER.index('add') < oc.STEP_ORDER.index('validate_partitions') < oc.STEP_ORDER.index('validate')
