# -*- coding: utf-8 -*-
"""Honest outcomes (issue 21, point 7): a failed build or constraint is never reported as done, what did not start is
never listed as done, and "nothing was changed" is said only of what changed nothing. The pure functions: outcomes,
the index phase's summary and failure message, the constraint phase's, the play's stop message and the report's
success criteria."""

import importlib

import helpers
from helpers import load_module_utils

outcomes = load_module_utils('kinds.outcomes')
runs = load_module_utils('kinds.index_runs')
uc = load_module_utils('kinds.unique_constraint')
stopped = importlib.import_module(helpers.collection_path('plugins.filter.stopped_message')).stopped_message
criteria = importlib.import_module(helpers.collection_path('plugins.filter.success_criteria')).success_criteria

CREATE_A = 'CREATE INDEX CONCURRENTLY IF NOT EXISTS "a" ON "public"."T" USING "btree" ("x")'
CREATE_B = 'CREATE INDEX CONCURRENTLY IF NOT EXISTS "b" ON "public"."T" USING "btree" ("note")'
DROP_B = 'DROP INDEX CONCURRENTLY IF EXISTS "public"."b"'


def index(name, action, **more):
    return dict(dict(name=name, schema='public', table='T', action=action, seconds=0.5, retries=0,
                     waited_seconds=0.0, statements=['CREATE INDEX CONCURRENTLY %s' % name]), **more)


def failed_table():
    """A table whose second build failed (a row too large for the index), whose INVALID leftover was dropped, with a
    third index queued behind it: what postgresql_online_index's run_table returns."""
    entries = [index('a', 'created'), index('b', 'created'), index('c', 'created'), index('d', 'unchanged')]
    outcomes.mark(entries[1], outcomes.FAILED)
    entries[1]['statements_run'] = []
    outcomes.mark(entries[2], outcomes.NOT_STARTED)
    return dict(failed=True, changed=True, table='public.T', indexes=entries, queries=[CREATE_A, DROP_B],
                cleanup_queries=[DROP_B], msg='Index "b" on public.T: %s failed after 1 attempt(s): index row size '
                                              '3216 exceeds btree version 4 maximum 2704\nThe INVALID index the '
                                              'failed build left was dropped.' % CREATE_B)


def test_only_an_action_that_did_something_counts_as_done():
    assert [outcomes.done(dict(action=action)) for action in ('created', 'dropped', 'validated', 'replaced')] == \
        [True] * 4
    assert [outcomes.done(dict(action=action)) for action in (None, 'unchanged', 'failed', 'not_started')] == \
        [False] * 4
    assert outcomes.done({}) is False


def test_a_failed_or_skipped_entry_keeps_what_it_was_to_be():
    entry = outcomes.mark(dict(name='b', action='created'), outcomes.FAILED)
    assert entry == dict(name='b', action='failed', planned_action='created')
    assert outcomes.mark(entry, outcomes.FAILED)['planned_action'] == 'created', 'marking twice keeps the plan'
    assert outcomes.mark(dict(name='k', action=None), outcomes.FAILED) == dict(name='k', action='failed',
                                                                               planned_action=None)


def test_the_cleanup_of_a_failed_build_is_not_a_kept_change():
    # The second DROP of "b" dropped a leftover of an earlier run before the build (kept); the last one undid the
    # failed build (not kept).
    assert outcomes.kept_queries([DROP_B, CREATE_A, DROP_B], [DROP_B]) == [DROP_B, CREATE_A]
    assert outcomes.kept_queries([CREATE_A, DROP_B], [DROP_B]) == [CREATE_A]
    assert outcomes.kept_queries([DROP_B], [DROP_B]) == []
    assert outcomes.kept_queries([CREATE_A], []) == [CREATE_A]


def test_nothing_was_changed_is_said_only_when_nothing_ran_and_was_kept():
    assert outcomes.unchanged_note([]) == 'nothing was changed'
    assert outcomes.unchanged_note([], ' on it') == 'nothing was changed on it'
    note = outcomes.unchanged_note(['UPDATE "Class" SET name = ...'], ' on it')
    assert 'nothing was changed' not in note
    assert note == 'nothing more was changed on it; before it, this ran and is kept: UPDATE "Class" SET name = ...'


def test_the_index_summary_never_lists_a_failed_or_skipped_index_as_created():
    lines = runs.index_summary(failed_table()['indexes'], False)
    assert lines[0].startswith('created  a ')
    assert lines[1] == '%-8s %-45s on public.T (was to be created)' % ('failed', 'b')
    assert lines[2] == '%-8s %-45s on public.T (was to be created)' % ('not started', 'c')
    assert len(lines) == 3, 'the unchanged index is not listed'
    assert not any(line.startswith('created  b') or line.startswith('created  c') for line in lines)


def test_the_failure_message_keeps_what_ran_and_says_what_the_cleanup_undid():
    lines = runs.failure_message([failed_table()]).splitlines()
    assert lines[-3:] == ['The INVALID index the failed build left was dropped.',
                          'Done by that run before it stopped, and kept: %s' % CREATE_A,
                          'Not started after it: c (was to be created)']
    assert DROP_B not in '\n'.join(lines), 'the cleanup is not a change that was kept'


def test_a_failed_first_build_whose_leftover_was_dropped_says_nothing_of_it_is_kept():
    result = failed_table()
    result.update(queries=[DROP_B], changed=False, indexes=result['indexes'][1:])
    lines = runs.failure_message([result]).splitlines()
    assert 'Nothing of that run is kept on public.T.' in lines
    assert not any(line.startswith('Done by') for line in lines)


def test_the_stop_message_lists_only_what_was_done_and_what_a_failed_entry_left():
    entries = failed_table()['indexes']
    assert stopped('Build: failed', entries) == (
        'The migration stopped. Build: failed\nChanged before it, and kept (a rerun goes on from there): created a.')
    partly = dict(name='fk', action='failed', planned_action='created',
                  statements_run=['ALTER TABLE "T" ADD CONSTRAINT "fk" FOREIGN KEY ... NOT VALID'])
    assert stopped('Constraint "fk": failed', entries + [partly]).endswith(
        'Changed before it, and kept (a rerun goes on from there): created a, partly created fk.')
    assert stopped('Build: failed', entries[1:]).endswith('No index or constraint of the plan was changed before it.')


def test_the_constraint_summary_and_failure_never_call_the_failed_one_done():
    created = dict(name='k1', schema='public', table='Class', action='created', seconds=0.1, retries=0)
    failed = outcomes.mark(dict(name='k2', schema='public', table='Class', action='created', seconds=0.0),
                           outcomes.FAILED)
    assert uc.constraint_summary([created, failed], False)[1] == '%-9s %-40s on public.Class (was to be created)' % (
        'failed', 'k2')
    assert uc.plan_failure_message('Constraint "k2": gave up', [created, failed], []) == (
        'Constraint "k2": gave up\nDone before it, and kept: created k1')


def test_the_success_criteria_count_only_the_indexes_that_were_built():
    run = dict(indexes=failed_table()['indexes'], constraints=[], validate=None, backup=None, restore_drill=None,
               failure='Build: failed', planned_indexes=4)
    downtime = criteria(run)[1]
    assert downtime['evidence'].startswith('1 index statement(s), all CONCURRENTLY'), downtime
