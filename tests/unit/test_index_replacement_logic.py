# -*- coding: utf-8 -*-
"""Unit tests of on_mismatch: replace (index_decisions, no server): the steps that replace an index of the planned name by
the planned definition (a build beside it, a swap by renames, a concurrent drop), resumed from any state a stopped run
leaves; its rollback from the ledger's record of what it replaced; what is refused; the summary's two definitions."""

import pytest

import helpers
from test_online_index_logic import existing, spec

index_decisions = helpers.load_module_utils('kinds.index_decisions')
definitions = helpers.load_module_utils('kinds.index_definitions')
replacement = helpers.load_module_utils('kinds.index_replacement')
runs = helpers.load_module_utils('kinds.index_runs')

NEXT, PREVIOUS = 'Job_status_idx_pgzd_next', 'Job_status_idx_pgzd_prev'
OLD = 'CREATE INDEX "Job_status_idx" ON public."Job" USING btree (status)'


def kinds(steps):
    return [(step['kind'], step['name']) for step in steps]


def test_the_names_a_replacement_uses():
    assert replacement.replacement_names('Job_status_idx') == (NEXT, PREVIOUS)
    assert replacement.replacement_names('x' * 63)[0].endswith('_pgzd_next') and len(replacement.replacement_names('x' * 63)[1]) == 63


def job_spec(**extra):
    return spec('Job_status_idx', ['status', 'teacherId'], on_mismatch='replace', **extra)


def old_index(name='Job_status_idx', **extra):
    return existing(name, ['status'], definition=OLD, **extra)


def new_index(name='Job_status_idx', **extra):
    return existing(name, ['status', 'teacherId'], **extra)


NEW = 'CREATE INDEX "Job_status_idx" ON public."Job" USING btree (status, "teacherId")'


def replaced_row(definition=OLD, comment=None, state='applied', run_id='t12-1'):
    """The ledger's row of a replacement: what it swapped in, and what was there before (prior)."""
    return dict(id=7, run_id=run_id, state=state, definition=NEW,
                prior=dict(definition=definition, comment=comment))


def created_row(definition=NEW, state='applied'):
    return dict(id=8, run_id='t12-1', state=state, definition=definition, prior=None)


def replace(found, replaced=None, **extra):
    ledger = {('replaced_index', 'Job_status_idx'): replaced} if replaced else {}
    return index_decisions.decide_actions([job_spec(**extra)], found, 'present', ledger=ledger, plan='t12')


class TestReplacement(object):

    def test_the_planned_definition_is_built_beside_swapped_in_and_the_old_one_dropped(self):
        (decision,), errors = replace({'Job_status_idx': old_index(comment='kept by ops')})
        assert errors == [] and decision['action'] == 'replaced'
        assert kinds(decision['steps']) == [('build', NEXT), ('swap', 'Job_status_idx'), ('drop', PREVIOUS)]
        swap = decision['steps'][1]
        assert (swap['next'], swap['previous']) == (NEXT, PREVIOUS)
        # The new index gets no comment: what it replaced is in the ledger (OnlineIndexRunner writes it, with the old
        # comment, before the build, and marks it applied in the swap's transaction).
        assert swap['comment'] is None
        assert decision['previous_definition'] == OLD
        assert decision['planned_definition'] == job_spec()['display_definition']

    def test_a_rerun_keeps_a_finished_build_and_rebuilds_an_invalid_one(self):
        stopped = replaced_row(state='intended')
        (decision,), errors = replace({'Job_status_idx': old_index(), NEXT: new_index(NEXT)}, stopped)
        assert kinds(decision['steps']) == [('swap', 'Job_status_idx'), ('drop', PREVIOUS)]
        (decision,), errors = replace({'Job_status_idx': old_index(), NEXT: new_index(NEXT, valid=False)}, stopped)
        assert kinds(decision['steps']) == [('drop', NEXT), ('build', NEXT), ('swap', 'Job_status_idx'), ('drop', PREVIOUS)]
        (decision,), errors = replace({'Job_status_idx': old_index(), NEXT: existing(NEXT, ['id'])}, stopped)
        assert kinds(decision['steps']) == [('drop', NEXT), ('build', NEXT), ('swap', 'Job_status_idx'), ('drop', PREVIOUS)]

    def test_an_index_under_a_replacement_name_that_no_run_of_the_plan_made_is_refused(self):
        decisions, (error,) = replace({'Job_status_idx': old_index(), NEXT: new_index(NEXT)})
        assert decisions == [] and 'the ledger of the plan holds no replacement of it' in error

    def test_a_rerun_after_the_swap_only_drops_the_replaced_index(self):
        (decision,), errors = replace({'Job_status_idx': new_index(), PREVIOUS: old_index(name=PREVIOUS)},
                                      replaced=replaced_row())
        assert errors == [] and decision['action'] == 'replaced'
        assert kinds(decision['steps']) == [('drop', PREVIOUS)]
        assert decision['previous_definition'] == OLD

    def test_a_previous_index_in_the_way_of_the_rename_is_dropped_first(self):
        (decision,), errors = replace({'Job_status_idx': old_index(), PREVIOUS: existing(PREVIOUS, ['id'])},
                                      replaced_row(state='intended'))
        assert kinds(decision['steps'])[0] == ('drop', PREVIOUS)

    def test_once_replaced_a_rerun_is_unchanged(self):
        (decision,), errors = replace({'Job_status_idx': new_index()}, replaced=replaced_row())
        assert errors == [] and decision['action'] == 'unchanged' and decision['steps'] == []

    def test_without_on_mismatch_the_mismatch_is_refused_with_both_definitions_and_the_option_named(self):
        decisions, (error,) = index_decisions.decide_actions([dict(job_spec(), on_mismatch='fail')],
                                                  {'Job_status_idx': old_index()}, 'present')
        assert decisions == []
        assert 'existing: ' + OLD in error and 'planned:  CREATE INDEX "Job_status_idx"' in error
        assert 'on_mismatch: replace' in error

    # An index that backs a constraint, that foreign keys depend on or that is attached to a partitioned index cannot
    # be dropped, which PostgreSQL refuses: the refusal rules refuse those (test_refusal_rules). Here: what the renames
    # would lose, and what a rollback could not build again.
    @pytest.mark.parametrize('extra, fragment', [
        (dict(replica_identity=True), 'REPLICA IDENTITY'),
        (dict(clustered=True), 'CLUSTERed on it'),
        (dict(definition='CREATE INDEX "Job_status_idx" ON public."Job" USING btree (status) WITH (fillfactor = 10); SELECT 1'),
         'a rollback could not build it again from its definition'),
    ])
    def test_an_index_the_replacement_would_lose_something_of_is_not_replaced(self, extra, fragment):
        decisions, (error,) = replace({'Job_status_idx': existing('Job_status_idx', ['status'], **dict(
            dict(definition=OLD), **extra))})
        assert decisions == [] and fragment in error and 'cannot be replaced' in error

    def test_a_helper_name_taken_by_something_else_is_refused(self):
        decisions, (error,) = replace({'Job_status_idx': old_index(), NEXT: existing(NEXT, ['status'], table='Item')})
        assert decisions == [] and '"public.%s", the name the replacement' % NEXT in error

    def test_an_invalid_index_of_the_planned_name_is_rebuilt_as_before(self):
        (decision,), errors = replace({'Job_status_idx': old_index(valid=False)})
        assert decision['action'] == 'rebuilt'


def restore(found, replaced=None, created=None, **extra):
    ledger = dict(((kind, 'Job_status_idx'), row) for kind, row in (('replaced_index', replaced), ('index', created))
                  if row)
    return index_decisions.decide_actions([job_spec(**extra)], found, 'absent', ledger=ledger, plan='t12')


class TestRestore(object):

    def test_a_replaced_index_gets_its_recorded_definition_and_comment_back(self):
        (decision,), errors = restore({'Job_status_idx': new_index(definition=NEW)},
                                      replaced=replaced_row(comment='kept by ops'))
        assert errors == [] and decision['action'] == 'restored' and decision['ledger_row']['id'] == 7
        assert kinds(decision['steps']) == [('build_definition', NEXT), ('swap', 'Job_status_idx'), ('drop', PREVIOUS)]
        assert decision['steps'][0]['statement'] == (
            'CREATE INDEX CONCURRENTLY IF NOT EXISTS "%s" ON public."Job" USING btree (status)' % NEXT)
        assert decision['steps'][1]['comment'] == 'kept by ops'
        assert decision['planned_definition'] == OLD

    def test_a_rerun_keeps_a_finished_build_of_the_old_definition(self):
        following = existing(NEXT, ['status'], definition=OLD.replace('"Job_status_idx"', NEXT))
        (decision,), errors = restore({'Job_status_idx': new_index(definition=NEW), NEXT: following},
                                      replaced=replaced_row())
        assert kinds(decision['steps']) == [('swap', 'Job_status_idx'), ('drop', PREVIOUS)]

    def test_after_the_swap_back_only_the_previous_index_is_dropped(self):
        # The swap back marked the row undone in its transaction: the ledger has no open row; the previous index is
        # a leftover of the plan's own only while the ledger says so, so the rest is left alone.
        (decision,), errors = restore({'Job_status_idx': old_index(), PREVIOUS: new_index(PREVIOUS)})
        assert decision['action'] == 'unchanged' and decision['steps'] == [] and 'not in the ledger' in \
            decision['left_alone']

    def test_a_replacement_that_never_swapped_leaves_its_leftovers_to_drop_and_the_old_index_as_it_is(self):
        (decision,), errors = restore({'Job_status_idx': old_index(), NEXT: new_index(NEXT, valid=False)},
                                      replaced=replaced_row(state='intended'))
        assert decision['action'] == 'restored' and kinds(decision['steps']) == [('drop', NEXT)]

    def test_an_index_the_ledger_does_not_attribute_to_the_plan_is_left_alone(self):
        (decision,), errors = restore({'Job_status_idx': old_index()})
        assert errors == [] and decision['action'] == 'unchanged' and decision['steps'] == []
        assert 'is not in the ledger of plan t12' in decision['left_alone']
        # Nor are indexes under the names a replacement uses, when no replacement of the plan is recorded.
        (decision,), errors = restore({'Job_status_idx': old_index(), NEXT: new_index(NEXT, valid=False)})
        assert decision['steps'] == [] and decision['left_alone']

    def test_an_index_the_plan_created_is_dropped_and_one_changed_since_is_left_alone(self):
        (decision,), errors = restore({'Job_status_idx': new_index(definition=NEW)}, created=created_row())
        assert decision['action'] == 'dropped' and kinds(decision['steps']) == [('drop', 'Job_status_idx')]
        (decision,), errors = restore({'Job_status_idx': new_index(definition=NEW.replace('btree', 'hash'))},
                                      created=created_row())
        assert decision['action'] == 'unchanged' and 'changed since' in decision['left_alone']

    def test_a_replacement_changed_since_the_swap_is_left_alone(self):
        (decision,), errors = restore({'Job_status_idx': existing('Job_status_idx', ['id'])}, replaced=replaced_row())
        assert decision['action'] == 'unchanged' and 'is not what run t12-1 of plan t12 recorded' in \
            decision['left_alone']

    @pytest.mark.parametrize('definition, fragment', [
        ('CREATE INDEX "Job_status_idx" ON public."Job" USING btree (status); DROP TABLE "Job"', 'not one CREATE INDEX'),
        (OLD.replace('"Job"', '"Item"'), 'not a plain CREATE INDEX'),
    ])
    def test_a_recorded_definition_that_cannot_be_built_again_is_refused_and_nothing_runs(self, definition, fragment):
        decisions, (error,) = restore({'Job_status_idx': new_index(definition=NEW)},
                                      replaced=replaced_row(definition=definition))
        assert decisions == [] and fragment in error

    @pytest.mark.parametrize('definition, columns', [
        ('CREATE UNIQUE INDEX "Job_status_idx" ON public."Job" USING btree (status, "teacherId")', ['status', 'teacherId']),
        (OLD, None),
        ('CREATE UNIQUE INDEX "Job_status_idx" ON public."Job" USING btree (status) WHERE (status IS NOT NULL)', None),
        ('CREATE UNIQUE INDEX "Job_status_idx" ON public."Job" USING btree (lower(title))', None),
    ])
    def test_the_key_of_a_unique_index_the_rollback_builds_again_is_known_when_it_is_plain_columns(self, definition,
                                                                                                  columns):
        # The rollback's preflight counts the duplicate keys written since the replacement on those columns.
        (decision,), errors = restore({'Job_status_idx': new_index(definition=NEW)},
                                      replaced=replaced_row(definition=definition))
        assert errors == [] and replacement.restored_unique_columns(decision) == columns
        (decision,), errors = replace({'Job_status_idx': old_index()})
        assert replacement.restored_unique_columns(decision) is None

    def test_its_rollback_needs_the_columns(self):
        errors = index_decisions.validate_specs('public', 'Job', [dict(job_spec(), columns=None)], 'absent')
        assert len(errors) == 1 and 'rollback needs them too' in errors[0]


class TestDefinitions(object):

    def test_same_index_definition_ignores_the_name_and_concurrently(self):
        assert definitions.same_index_definition(OLD, 'CREATE INDEX CONCURRENTLY x ON public."Job" USING btree (status)')
        assert not definitions.same_index_definition(OLD, OLD.replace('(status)', '(status DESC)'))

    def test_a_name_that_needs_no_quotes_is_found_too(self):
        statement = definitions.restore_statement('CREATE UNIQUE INDEX job_x ON public."Job" USING btree (status)', 'job_x',
                                           'job_x_pgzd_next', 'public', 'Job')
        assert statement == ('CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS "job_x_pgzd_next" ON public."Job" USING '
                             'btree (status)')

    def test_a_comment_that_is_not_a_record_is_no_record(self):
        assert replacement.read_replacement_record('kept by ops') == (None, None)
        assert replacement.read_replacement_record(None) == (None, None)


def test_the_summary_shows_both_definitions_of_a_replacement():
    entry = dict(action='replaced', name='Job_status_idx', schema='public', table='Job', seconds=1.5,
                 previous_definition=OLD, planned_definition='CREATE INDEX planned', definition='CREATE INDEX now',
                 statements=['BEGIN', 'COMMIT'])
    assert runs.index_summary([entry], False)[1:] == ['         before: %s' % OLD, '         after:  CREATE INDEX now']
    assert runs.index_summary([entry], True)[2:4] == ['         before: %s' % OLD,
                                                      '         after:  CREATE INDEX planned']
