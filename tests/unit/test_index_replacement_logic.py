# -*- coding: utf-8 -*-
"""Unit tests of on_mismatch: replace (index_plan, no server): the steps that replace an index of the planned name by
the planned definition (a build beside it, a swap by renames, a concurrent drop), resumed from any state a stopped run
leaves; its rollback from the record the new index keeps in its comment; what is refused; the summary's two
definitions."""

import pytest

import helpers
from test_online_index_logic import existing, spec

plan = helpers.load_module_utils('index_plan')
runs = helpers.load_module_utils('index_runs')

NEXT, PREVIOUS = 'Job_status_idx_pgzd_next', 'Job_status_idx_pgzd_prev'
OLD = 'CREATE INDEX "Job_status_idx" ON public."Job" USING btree (status)'


def kinds(steps):
    return [(step['kind'], step['name']) for step in steps]


def test_the_names_a_replacement_uses():
    assert plan.replacement_names('Job_status_idx') == (NEXT, PREVIOUS)
    assert plan.replacement_names('x' * 63)[0].endswith('_pgzd_next') and len(plan.replacement_names('x' * 63)[1]) == 63


def job_spec(**extra):
    return spec('Job_status_idx', ['status', 'teacherId'], on_mismatch='replace', **extra)


def old_index(name='Job_status_idx', **extra):
    return existing(name, ['status'], definition=OLD, **extra)


def new_index(name='Job_status_idx', **extra):
    return existing(name, ['status', 'teacherId'], **extra)


def replace(found, **extra):
    return plan.decide_actions([job_spec(**extra)], found, 'present')


class TestReplacement(object):

    def test_the_planned_definition_is_built_beside_swapped_in_and_the_old_one_dropped(self):
        (decision,), errors = replace({'Job_status_idx': old_index(comment='kept by ops')})
        assert errors == [] and decision['action'] == 'replaced'
        assert kinds(decision['steps']) == [('build', NEXT), ('swap', 'Job_status_idx'), ('drop', PREVIOUS)]
        swap = decision['steps'][1]
        assert (swap['next'], swap['previous']) == (NEXT, PREVIOUS)
        assert plan.read_replacement_record(swap['comment']) == (dict(definition=OLD, comment='kept by ops'), None)
        assert decision['previous_definition'] == OLD
        assert decision['planned_definition'] == job_spec()['display_definition']

    def test_a_rerun_keeps_a_finished_build_and_rebuilds_an_invalid_one(self):
        (decision,), errors = replace({'Job_status_idx': old_index(), NEXT: new_index(NEXT)})
        assert kinds(decision['steps']) == [('swap', 'Job_status_idx'), ('drop', PREVIOUS)]
        (decision,), errors = replace({'Job_status_idx': old_index(), NEXT: new_index(NEXT, valid=False)})
        assert kinds(decision['steps']) == [('drop', NEXT), ('build', NEXT), ('swap', 'Job_status_idx'), ('drop', PREVIOUS)]
        (decision,), errors = replace({'Job_status_idx': old_index(), NEXT: existing(NEXT, ['id'])})
        assert kinds(decision['steps']) == [('drop', NEXT), ('build', NEXT), ('swap', 'Job_status_idx'), ('drop', PREVIOUS)]

    def test_a_rerun_after_the_swap_only_drops_the_replaced_index(self):
        record = plan.replacement_record(OLD, None)
        (decision,), errors = replace({'Job_status_idx': new_index(comment=record), PREVIOUS: old_index(name=PREVIOUS)})
        assert errors == [] and decision['action'] == 'replaced'
        assert kinds(decision['steps']) == [('drop', PREVIOUS)]
        assert decision['previous_definition'] == OLD

    def test_a_previous_index_in_the_way_of_the_rename_is_dropped_first(self):
        (decision,), errors = replace({'Job_status_idx': old_index(), PREVIOUS: existing(PREVIOUS, ['id'])})
        assert kinds(decision['steps'])[0] == ('drop', PREVIOUS)

    def test_once_replaced_a_rerun_is_unchanged(self):
        (decision,), errors = replace({'Job_status_idx': new_index(comment=plan.replacement_record(OLD, None))})
        assert errors == [] and decision['action'] == 'unchanged' and decision['steps'] == []

    def test_without_on_mismatch_the_mismatch_is_refused_with_both_definitions_and_the_option_named(self):
        decisions, (error,) = plan.decide_actions([dict(job_spec(), on_mismatch='fail')],
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


def restore(found, **extra):
    return plan.decide_actions([job_spec(**extra)], found, 'absent')


class TestRestore(object):

    def test_a_replaced_index_gets_its_recorded_definition_and_comment_back(self):
        record = plan.replacement_record(OLD, 'kept by ops')
        (decision,), errors = restore({'Job_status_idx': new_index(comment=record)})
        assert errors == [] and decision['action'] == 'restored'
        assert kinds(decision['steps']) == [('build_definition', NEXT), ('swap', 'Job_status_idx'), ('drop', PREVIOUS)]
        assert decision['steps'][0]['statement'] == (
            'CREATE INDEX CONCURRENTLY IF NOT EXISTS "%s" ON public."Job" USING btree (status)' % NEXT)
        assert decision['steps'][1]['comment'] == 'kept by ops'
        assert decision['planned_definition'] == OLD

    def test_a_rerun_keeps_a_finished_build_of_the_old_definition(self):
        record = plan.replacement_record(OLD, None)
        following = existing(NEXT, ['status'], definition=OLD.replace('"Job_status_idx"', NEXT))
        (decision,), errors = restore({'Job_status_idx': new_index(comment=record), NEXT: following})
        assert kinds(decision['steps']) == [('swap', 'Job_status_idx'), ('drop', PREVIOUS)]

    def test_after_the_swap_only_the_previous_index_is_dropped(self):
        (decision,), errors = restore({'Job_status_idx': old_index(), PREVIOUS: new_index(PREVIOUS)})
        assert decision['action'] == 'restored' and kinds(decision['steps']) == [('drop', PREVIOUS)]

    def test_an_index_the_plan_found_and_never_replaced_stays(self):
        (decision,), errors = restore({'Job_status_idx': old_index()})
        assert errors == [] and decision['action'] == 'unchanged' and decision['steps'] == []
        (decision,), errors = restore({'Job_status_idx': old_index(), NEXT: new_index(NEXT, valid=False)})
        assert decision['action'] == 'restored' and kinds(decision['steps']) == [('drop', NEXT)]

    def test_an_index_the_plan_created_is_dropped(self):
        (decision,), errors = restore({'Job_status_idx': new_index()})
        assert decision['action'] == 'dropped' and kinds(decision['steps']) == [('drop', 'Job_status_idx')]

    @pytest.mark.parametrize('comment, fragment', [
        (plan.RECORD_PREFIX + '{not json', 'starts like a replacement record but is not one'),
        (plan.RECORD_PREFIX + '{"comment": null}', 'does not hold a definition'),
        (plan.replacement_record('CREATE INDEX "Job_status_idx" ON public."Job" USING btree (status); DROP TABLE "Job"',
                                 None), 'not one CREATE INDEX'),
        (plan.replacement_record(OLD.replace('"Job"', '"Item"'), None), 'not a plain CREATE INDEX'),
    ])
    def test_a_record_that_cannot_be_trusted_is_refused_and_nothing_runs(self, comment, fragment):
        decisions, (error,) = restore({'Job_status_idx': new_index(comment=comment)})
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
        (decision,), errors = restore({'Job_status_idx': new_index(comment=plan.replacement_record(definition, None))})
        assert errors == [] and plan.restored_unique_columns(decision) == columns
        (decision,), errors = replace({'Job_status_idx': old_index()})
        assert plan.restored_unique_columns(decision) is None

    def test_its_rollback_needs_the_columns(self):
        errors = plan.validate_specs('public', 'Job', [dict(job_spec(), columns=None)], 'absent')
        assert len(errors) == 1 and 'rollback needs them too' in errors[0]


class TestDefinitions(object):

    def test_same_index_definition_ignores_the_name_and_concurrently(self):
        assert plan.same_index_definition(OLD, 'CREATE INDEX CONCURRENTLY x ON public."Job" USING btree (status)')
        assert not plan.same_index_definition(OLD, OLD.replace('(status)', '(status DESC)'))

    def test_a_name_that_needs_no_quotes_is_found_too(self):
        statement = plan.restore_statement('CREATE UNIQUE INDEX job_x ON public."Job" USING btree (status)', 'job_x',
                                           'job_x_pgzd_next', 'public', 'Job')
        assert statement == ('CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS "job_x_pgzd_next" ON public."Job" USING '
                             'btree (status)')

    def test_a_comment_that_is_not_a_record_is_no_record(self):
        assert plan.read_replacement_record('kept by ops') == (None, None)
        assert plan.read_replacement_record(None) == (None, None)


def test_the_summary_shows_both_definitions_of_a_replacement():
    entry = dict(action='replaced', name='Job_status_idx', schema='public', table='Job', seconds=1.5,
                 previous_definition=OLD, planned_definition='CREATE INDEX planned', definition='CREATE INDEX now',
                 statements=['BEGIN', 'COMMIT'])
    assert runs.index_summary([entry], False)[1:] == ['         before: %s' % OLD, '         after:  CREATE INDEX now']
    assert runs.index_summary([entry], True)[2:4] == ['         before: %s' % OLD,
                                                      '         after:  CREATE INDEX planned']
