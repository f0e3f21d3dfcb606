# -*- coding: utf-8 -*-
"""plugins/module_utils/kinds/index_runs.py: the index phase of a plan in one process, with fake tables."""

import threading
import time

from helpers import load_module_utils

runs = load_module_utils('kinds.index_runs')

PLAN = [dict(name='Job', indexes=[dict(name='a'), dict(name='b')]),
        dict(name='Item', schema='shop', indexes=[dict(name='c')]),
        dict(name='Event', indexes=[dict(name='d'), dict(name='e')])]


def entries(names):
    return [('public', name, [dict(name=name.lower())]) for name in names]


def ok(schema, table, specs):
    return dict(changed=True, table='%s.%s' % (schema, table), queries=['built %s' % s['name'] for s in specs],
                indexes=[dict(name=s['name'], schema=schema, table=table, action='created') for s in specs])


def failing(names):
    def run(schema, table, specs):
        if table in names:
            return dict(failed=True, changed=False, table='%s.%s' % (schema, table), queries=[], indexes=[],
                        msg='Index "%s" on %s.%s: disk full\nmore detail' % (specs[0]['name'], schema, table))
        return ok(schema, table, specs)
    return run


def test_present_keeps_the_plan_order_and_each_table_names_its_schema():
    assert runs.ordered_tables(PLAN, 'public', 'present') == [
        ('public', 'Job', [dict(name='a'), dict(name='b')]), ('shop', 'Item', [dict(name='c')]),
        ('public', 'Event', [dict(name='d'), dict(name='e')])]


def test_absent_undoes_the_plan_last_to_first_tables_and_indexes():
    assert runs.ordered_tables(PLAN, 'public', 'absent') == [
        ('public', 'Event', [dict(name='e'), dict(name='d')]), ('shop', 'Item', [dict(name='c')]),
        ('public', 'Job', [dict(name='b'), dict(name='a')])]
    assert [spec['name'] for spec in PLAN[0]['indexes']] == ['a', 'b'], 'the plan itself is left as it was'


def test_lanes_deal_the_tables_like_a_chain_n_places_apart():
    assert runs.lanes([1, 2, 3, 4, 5], 2) == [[1, 3, 5], [2, 4]]
    assert runs.lanes([1, 2], 8) == [[1], [2]], 'no empty lane'
    assert runs.lanes([], 3) == [[]]


def test_one_lane_runs_every_table_in_order():
    seen = []

    def run(schema, table, specs):
        seen.append(table)
        return ok(schema, table, specs)
    results = runs.run_pipeline(entries(['A', 'B', 'C']), 1, run)
    assert seen == ['A', 'B', 'C']
    assert [r['table'] for r in results] == ['public.A', 'public.B', 'public.C']
    assert not any(r.get('failed') for r in results)


def test_after_a_failure_the_rest_of_its_lane_does_not_start_and_names_the_first_line():
    results = runs.run_pipeline(entries(['A', 'B', 'C', 'D']), 1, failing({'B'}))
    assert [bool(r.get('failed')) for r in results] == [False, True, True, True]
    assert [bool(r.get('not_started')) for r in results] == [False, False, True, True]
    assert results[2]['first_failure'] == 'Index "b" on public.B: disk full'
    assert results[3]['msg'] == ('Indexes of public.D not started, nothing was changed on it: a run before it failed '
                                 '(Index "b" on public.B: disk full); fix that and rerun')
    assert results[2]['queries'] == [] and results[2]['changed'] is False


def test_lanes_run_at_once_and_a_failure_stops_only_its_own_lane():
    # A, C in lane 0; B, D in lane 1. B fails: D does not start, C still runs.
    inside, most = [0], [0]
    lock = threading.Lock()

    def run(schema, table, specs):
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        time.sleep(0.05)
        with lock:
            inside[0] -= 1
        return failing({'B'})(schema, table, specs)
    started = []

    def start_lane(number):
        started.append(number)
        return run
    results = runs.run_pipeline(entries(['A', 'B', 'C', 'D']), 2, None, start_lane=start_lane)
    assert sorted(started) == [0, 1], 'each lane has a runner (a connection) of its own'
    assert most[0] == 2, 'the two lanes overlap'
    assert [r['table'] for r in results] == ['public.A', 'public.B', 'public.C', 'public.D']
    assert [bool(r.get('failed')) for r in results] == [False, True, False, True]
    assert results[3]['not_started'] and not results[2].get('failed')


def test_a_crash_in_a_lane_fails_its_tables_without_losing_the_other_lane():
    def run(schema, table, specs):
        if table == 'A':
            raise RuntimeError('boom')
        return ok(schema, table, specs)
    results = runs.run_pipeline(entries(['A', 'B', 'C']), 2, run)
    assert results[0]['failed'] and 'boom' in results[0]['msg']
    assert results[2]['not_started']
    assert not results[1].get('failed')


def test_the_failure_message_states_each_failure_once_what_was_kept_and_what_did_not_start():
    results = runs.run_pipeline(entries(['A', 'B', 'C']), 1, failing({'B'}))
    results[1]['queries'] = ['CREATE INDEX CONCURRENTLY "b" ...']
    assert runs.failure_message(results).splitlines() == [
        'Index "b" on public.B: disk full',
        'more detail',
        'Done by that run before it stopped, and kept: CREATE INDEX CONCURRENTLY "b" ...',
        'Done by the runs that succeeded, and kept: created a on public.A',
        'Not started, nothing changed on them: public.C (queued behind the failure above)']


def test_tables_that_did_not_start_for_one_reason_say_it():
    waiting = [runs.not_started('public', 'A', 'the run that started it has ended')]
    assert runs.failure_message(waiting) == ('Not started, nothing changed on them: public.A '
                                             '(the run that started it has ended)')


def test_the_index_summary_lists_each_change_and_in_check_mode_the_sql():
    entries = [dict(name='a', schema='public', table='Job', action='created', seconds=1.25, retries=0,
                    waited_seconds=0.0, statements=['CREATE INDEX CONCURRENTLY a']),
               dict(name='b', schema='public', table='Job', action='unchanged', seconds=0.0, statements=[])]
    lines = runs.index_summary(entries, False)
    assert lines == ['%-8s %-45s on %s.%s in %6.2fs' % ('created', 'a', 'public', 'Job', 1.25)]
    waited = dict(entries[0], retries=2, waited_seconds=3.5)
    assert runs.index_summary([waited], False, parallelism=2) == [
        'Worked on 2 tables at a time (pgzd_index_build_parallelism).',
        '%-8s %-45s on %s.%s in %6.2fs (2 lock retries) (waited 3.5s for other sessions)'
        % ('created', 'a', 'public', 'Job', 1.25)]
    checked = runs.index_summary(entries, True)
    assert checked[0].startswith('Check mode') and checked[-2:] == ['SQL it would run, in order:',
                                                                    'CREATE INDEX CONCURRENTLY a;']
    assert runs.index_summary(entries[1:], False) == ['No index needed a change.']
