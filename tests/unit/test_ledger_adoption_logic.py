# -*- coding: utf-8 -*-
"""The decisions of plugins/module_utils/run/ledger_adoption.py on plain data: what an adoption records of a plan's objects
that an older version made, and what it leaves, and why (tests/integration/test_ledger_adoption.py proves the whole on
the real cluster). The decisions it starts from are the runners' own (index_decisions.decide_actions, decide_steps)."""

import datetime
import json

import pytest

import helpers
from test_online_index_logic import existing, spec

adoption = helpers.load_module_utils('run.ledger_adoption')
index_decisions = helpers.load_module_utils('kinds.index_decisions')
replacement = helpers.load_module_utils('kinds.index_replacement')
online_constraint = helpers.load_module_utils('kinds.constraint_decisions')

PLAN = 'shop'
OLD = 'CREATE INDEX "Job_status_idx" ON public."Job" USING btree (status)'
NEW = 'CREATE INDEX "Job_status_idx" ON public."Job" USING btree (status, "teacherId")'


def record_comment(definition=OLD, comment='kept by ops'):
    """The comment version 0.16 wrote on the index a replacement swapped in."""
    return replacement.RECORD_PREFIX + json.dumps(dict(definition=definition, comment=comment), sort_keys=True)


def index_decision(planned, found):
    """The index runner's decision of C(planned) for the present state, given the index C(found) (or None)."""
    decisions, errors = index_decisions.decide_actions([planned], {planned['name']: found} if found else {}, 'present')
    assert errors == []
    return decisions[0]


def open_row(kind, name, plan=PLAN, table='Job', state='applied', **prior):
    return dict(plan=plan, run_id='%s-20261204T000000Z-abcdef' % plan, kind=kind, schema_name='public',
                table_name=table, object_name=name, state=state, prior=prior or None)


# -- indexes -------------------------------------------------------------------------------------------

def test_an_index_in_place_as_planned_is_adopted_with_its_definition():
    planned = spec()
    made, refused = adoption.index_adoption(PLAN, planned, index_decision(planned, existing()), None)
    assert refused is None
    assert made == dict(kind='index', schema='public', table='Job', name='Job_teacherId_status_idx',
                        definition=existing()['definition'], prior=dict(adopted=True), cleared_comment=None)


@pytest.mark.parametrize('found, fragment', [
    (None, 'absent: no run made it'),
    (existing(valid=False), 'not in place as planned yet: a migration would finish it (rebuilt)'),
])
def test_an_index_absent_or_unfinished_is_not_adopted(found, fragment):
    planned = spec()
    made, refused = adoption.index_adoption(PLAN, planned, index_decision(planned, found), None)
    assert made is None and refused['kind'] == 'index' and fragment in refused['reason']


def test_an_index_of_the_planned_name_that_differs_is_not_adopted_with_the_runner_s_words():
    # The runner refuses it (on_mismatch: fail): the adoption lists it with that refusal.
    planned = dict(spec(), problem='table public.Job: - index "public.Job_teacherId_status_idx" differs')
    made, refused = adoption.index_adoption(PLAN, planned, None, None)
    assert made is None
    assert refused['reason'] == 'not as the plan defines it: table public.Job: - index ' \
                                '"public.Job_teacherId_status_idx" differs'


def test_an_index_the_ledger_holds_already_is_not_adopted_again():
    planned = spec()
    made, refused = adoption.index_adoption(PLAN, planned, index_decision(planned, existing()),
                                            open_row('index', planned['name']))
    assert made is None
    assert refused['reason'].startswith('already in the ledger of plan shop (run shop-20261204T000000Z-abcdef, '
                                        'applied)')


def test_an_index_another_plan_s_ledger_holds_is_not_adopted_for_this_one():
    planned = spec()
    made, refused = adoption.index_adoption(PLAN, planned, index_decision(planned, existing()),
                                            open_row('index', planned['name'], plan='other'))
    assert made is None and 'the ledger attributes it to plan other' in refused['reason']
    assert 'not adopted for plan shop too' in refused['reason']


def replace_spec():
    return spec('Job_status_idx', ['status', 'teacherId'], on_mismatch='replace')


def test_a_0_16_replacement_is_adopted_with_the_recorded_definition_and_comment_and_the_comment_cleared():
    planned = replace_spec()
    found = existing('Job_status_idx', ['status', 'teacherId'], definition=NEW, comment=record_comment())
    made, refused = adoption.index_adoption(PLAN, planned, index_decision(planned, found), None)
    assert refused is None
    assert made == dict(kind='replaced_index', schema='public', table='Job', name='Job_status_idx', definition=NEW,
                        prior=dict(definition=OLD, comment='kept by ops', adopted=True),
                        cleared_comment=record_comment())


def test_a_replace_entry_without_a_record_is_an_index_the_plan_made():
    planned = replace_spec()
    found = existing('Job_status_idx', ['status', 'teacherId'], definition=NEW, comment='an operator note')
    made, _refused = adoption.index_adoption(PLAN, planned, index_decision(planned, found), None)
    assert (made['kind'], made['prior'], made['cleared_comment']) == ('index', dict(adopted=True), None)


@pytest.mark.parametrize('comment, fragment', [
    (replacement.RECORD_PREFIX + '{not json', 'starts like a replacement record but is not one'),
    (replacement.RECORD_PREFIX + '{"comment": null}', 'does not hold a definition'),
    (record_comment(definition='CREATE INDEX "other_idx" ON public."Job" USING btree (status)'),
     'a rollback could not build that again'),
    (record_comment(definition='DROP TABLE "Job"'), 'a rollback could not build that again'),
])
def test_a_replacement_record_a_rollback_could_not_use_is_not_adopted(comment, fragment):
    planned = replace_spec()
    found = existing('Job_status_idx', ['status', 'teacherId'], definition=NEW, comment=comment)
    made, refused = adoption.index_adoption(PLAN, planned, index_decision(planned, found), None)
    assert made is None and refused['kind'] == 'replaced_index' and fragment in refused['reason']


def test_a_replacement_in_place_is_not_adopted_when_the_ledger_holds_its_index():
    planned = replace_spec()
    found = existing('Job_status_idx', ['status', 'teacherId'], definition=NEW, comment=record_comment())
    row = open_row('replaced_index', 'Job_status_idx')
    made, refused = adoption.index_adoption(PLAN, planned, index_decision(planned, found), row)
    assert made is None and refused['reason'].startswith('already in the ledger of plan shop')


def test_the_ledger_owner_of_an_object_is_its_open_row_of_the_kinds_asked_on_its_table():
    rows = [open_row('index', 'Job_idx', state='undone'), open_row('index', 'Job_idx', table='Item'),
            open_row('constraint', 'Job_idx'), open_row('replaced_index', 'Job_idx', state='intended')]
    assert adoption.ledger_owner(rows, adoption.INDEX_KINDS, 'public', 'Job', 'Job_idx') is rows[3]
    assert adoption.ledger_owner(rows, ('index',), 'public', 'Job', 'Job_idx') is None
    renames = [open_row('renamed_rows', 'Class_key', table='Class', audit_run_id='shop-1')]
    assert adoption.ledger_owner(renames, ('renamed_rows',), 'public', 'Class', 'Class_key', 'shop-1') is renames[0]
    assert adoption.ledger_owner(renames, ('renamed_rows',), 'public', 'Class', 'Class_key', 'shop-2') is None


# -- constraints ---------------------------------------------------------------------------------------

UNIQUE = dict(name='Class_name_grade_key', schema='public', table='Class', type='unique', columns=['name', 'grade'])
IN_PLACE = dict(type='u', definition='UNIQUE (name, grade)')


@pytest.mark.parametrize('action, constraint, fragment', [
    ('created', None, 'absent: no run made it'),
    ('attached', None, 'not in place as planned yet: a migration would finish it (attached)'),
    ('validated', dict(IN_PLACE, definition='UNIQUE (name, grade) NOT VALID'), 'would finish it (validated)'),
])
def test_a_constraint_absent_or_unfinished_is_not_adopted(action, constraint, fragment):
    made, refused = adoption.constraint_adoption(PLAN, UNIQUE, dict(action=action, constraint=constraint), None)
    assert made is None and refused['kind'] == 'constraint' and fragment in refused['reason']


def test_a_constraint_in_place_as_planned_is_adopted_with_its_definition():
    made, refused = adoption.constraint_adoption(PLAN, UNIQUE, dict(action='unchanged', constraint=IN_PLACE), None)
    assert refused is None
    assert made == dict(kind='constraint', schema='public', table='Class', name='Class_name_grade_key',
                        definition='UNIQUE (name, grade)', prior=dict(adopted=True), cleared_comment=None)


def test_a_constraint_that_differs_or_is_in_the_ledger_is_not_adopted():
    made, refused = adoption.constraint_adoption(PLAN, dict(UNIQUE, problem='a different constraint named ...'),
                                                 None, None)
    assert made is None and refused['reason'] == 'not as the plan defines it: a different constraint named ...'
    made, refused = adoption.constraint_adoption(PLAN, UNIQUE, dict(action='unchanged', constraint=IN_PLACE),
                                                 open_row('constraint', UNIQUE['name'], table='Class'))
    assert made is None and refused['reason'].startswith('already in the ledger')


# -- NOT NULL ------------------------------------------------------------------------------------------

NOT_NULL = dict(name='Class_teacherId_not_null', schema='public', table='Class', type='not_null', column='teacherId')
PLAIN = dict(name='teacherId', identity='', in_primary_key=False, in_replica_identity=False, parent_not_null=False)


def not_null_decision(column_not_null, helper=None):
    """The constraint runner's decision of a not_null entry for the present state (decide_steps)."""
    action, steps, problems = online_constraint.decide_steps('not_null', 'present', helper, [], column_not_null)
    assert problems == []
    return dict(action=action, steps=steps, constraint=helper)


def test_a_not_null_that_is_set_is_adopted_with_the_nullable_column_as_its_prior():
    made, refused = adoption.not_null_adoption(PLAN, NOT_NULL, not_null_decision(True), None, PLAIN)
    assert refused is None
    assert made == dict(kind='not_null', schema='public', table='Class', name='teacherId', definition='NOT NULL',
                        prior=dict(nullable=True, adopted=True), cleared_comment=None)


@pytest.mark.parametrize('facts, fragment', [
    (dict(PLAIN, in_primary_key=True), 'a column of the primary key'),
    (dict(PLAIN, identity='a'), 'an identity column'),
    (dict(PLAIN, in_replica_identity=True), 'the replica identity index'),
    (dict(PLAIN, parent_not_null=True), 'inherited from the partitioned table'),
])
def test_a_not_null_no_plan_can_have_set_is_never_adopted(facts, fragment):
    made, refused = adoption.not_null_adoption(PLAN, NOT_NULL, not_null_decision(True), None, facts)
    assert made is None and refused['name'] == 'teacherId' and fragment in refused['reason']


def test_a_not_null_not_set_or_unfinished_or_recorded_is_not_adopted():
    made, refused = adoption.not_null_adoption(PLAN, NOT_NULL, not_null_decision(False), None, PLAIN)
    assert made is None and refused['reason'] == 'not set: the column is nullable'
    helper = dict(type='c', valid=True, definition='CHECK (("teacherId" IS NOT NULL))')
    made, refused = adoption.not_null_adoption(PLAN, NOT_NULL, not_null_decision(True, helper), None, PLAIN)
    assert made is None and 'would finish it (completed)' in refused['reason']
    made, refused = adoption.not_null_adoption(PLAN, NOT_NULL, not_null_decision(True), open_row(
        'not_null', 'teacherId', table='Class', state='intended'), PLAIN)
    assert made is None and refused['reason'].startswith('already in the ledger of plan shop')


# -- renamed duplicates --------------------------------------------------------------------------------

def rename(run_id, rows=2, constraint='Class_name_grade_key', table='Class'):
    return dict(constraint_name=constraint, table_schema='public', table_name=table, run_id=run_id,
                column_name='name', rows=rows)


def test_each_rename_of_a_run_of_the_plan_is_adopted_once_per_constraint_and_run():
    made, refused = adoption.rename_adoptions(
        PLAN, [UNIQUE], [rename('shop-20250101T000000Z-aaaaaa', 3), rename('shop-20250102T000000Z-bbbbbb', 1)],
        [], 'pgzd_audit.duplicate_resolution')
    assert refused == []
    assert [(row['kind'], row['name'], row['definition'], row['prior']) for row in made] == [
        ('renamed_rows', 'Class_name_grade_key', '3 row(s) of public.Class renamed, recorded in '
         'pgzd_audit.duplicate_resolution', dict(audit_table='pgzd_audit.duplicate_resolution',
                                                 audit_run_id='shop-20250101T000000Z-aaaaaa', rows=3, column='name',
                                                 adopted=True)),
        ('renamed_rows', 'Class_name_grade_key', '1 row(s) of public.Class renamed, recorded in '
         'pgzd_audit.duplicate_resolution', dict(audit_table='pgzd_audit.duplicate_resolution',
                                                 audit_run_id='shop-20250102T000000Z-bbbbbb', rows=1, column='name',
                                                 adopted=True)),
    ]


def test_a_rename_of_another_plan_or_one_in_the_ledger_or_of_another_table_is_not_adopted():
    held = open_row('renamed_rows', 'Class_name_grade_key', table='Class', audit_run_id='shop-20250101T000000Z-aaaaaa')
    made, refused = adoption.rename_adoptions(
        PLAN, [UNIQUE], [rename('shop-20250101T000000Z-aaaaaa'), rename('shopping-20250101T000000Z-cccccc'),
                         rename('manual'), rename('shop-1', table='Other')],
        [held], 'pgzd_audit.duplicate_resolution')
    assert made == []
    assert [row['reason'].split(':')[0] for row in refused] == [
        'already in the ledger of plan shop (run shop-20261204T000000Z-abcdef, applied)',
        '2 row(s) renamed by run shopping-20250101T000000Z-cccccc, not a run of plan shop (its runs are shop-...)',
        '2 row(s) renamed by run manual, not a run of plan shop (its runs are shop-...)']


# -- run id, summary -----------------------------------------------------------------------------------

def test_an_adoption_is_named_as_a_run_of_its_plan():
    when = datetime.datetime(2026, 12, 4, 10, 15, 0, tzinfo=datetime.timezone.utc)
    assert adoption.adopted_run_id('t12', when) == 't12-adopted-20261204T101500Z'


def test_the_summary_lists_what_is_adopted_and_what_is_not_and_why():
    made = adoption.record('replaced_index', 'public', 'Job', 'Job_status_idx', NEW,
                           prior=dict(definition=OLD, comment=None), cleared_comment=record_comment())
    refused = adoption.refusal('not_null', 'public', 'Job', 'id', 'it is a column of the primary key')
    lines = adoption.summary_lines(PLAN, 'shop-adopted-1', [made], [refused], check_mode=True)
    assert lines == [
        'Would adopt 1 object(s) into the ledger of plan shop, run shop-adopted-1:',
        '  replaced_index Job_status_idx on public.Job: ' + NEW,
        '    replaced: %s; its 0.16 record comment is to be cleared: the ledger holds it, and a rollback restores '
        'that index with its own comment' % OLD,
        'Not adopted: 1 object(s) (a rollback of the plan leaves alone what its ledger does not hold):',
        '  not_null id on public.Job: it is a column of the primary key']
    assert adoption.summary_lines(PLAN, 'r', [made], [], check_mode=False)[0].startswith('Adopted 1 object(s)')
    assert adoption.summary_lines(PLAN, 'r', [], [refused], check_mode=False)[0] == \
        'Nothing to adopt into the ledger of plan shop.'
