# -*- coding: utf-8 -*-
"""Pure logic of the performance baseline: the read-only gate, the summary of EXPLAIN runs, the comparison."""

import pytest

import helpers

qb = helpers.load_module_utils('evidence.query_baseline')


@pytest.mark.parametrize('text', [
    'SELECT 1', '  select * from "Job";  ', 'WITH x AS (SELECT 1) SELECT * FROM x', 'TABLE "Job"', 'VALUES (1)',
    '(SELECT 1) UNION (SELECT 2)', "SELECT ';' AS semicolon_in_a_string", 'SELECT 1 -- a closing comment',
    'SELECT * FROM "Job" WHERE id = %(id)s',
])
def test_read_only_queries_pass_the_parser_gate(text):
    assert qb.read_only_error(text) is None


@pytest.mark.parametrize('text,expected', [
    ('UPDATE "Job" SET reward = 1', 'it is an UPDATE, not a SELECT'),
    ('DELETE FROM "Job"', 'it is a DELETE'),
    ('CREATE INDEX i ON "Job" (id)', 'it is a CREATE INDEX'),
    ('SELECT 1; DROP TABLE "Job"', 'a baseline query is one statement'),
    ('', 'it is empty'),
    ('SELECT (1', "PostgreSQL's parser refuses it"),
])
def test_anything_else_is_refused_with_the_reason(text, expected):
    assert expected in qb.read_only_error(text)


def test_parameters_are_named_once_each():
    assert qb.parameter_names('SELECT %(a)s, %(b)s, %(a)s') == ['a', 'b']


PLAN_SEQ = {'Node Type': 'Seq Scan', 'Relation Name': 'Job', 'Shared Hit Blocks': 200, 'Shared Read Blocks': 33,
            'Actual Rows': 4}
PLAN_INDEX = {'Node Type': 'Bitmap Heap Scan', 'Relation Name': 'Job', 'Shared Hit Blocks': 20, 'Shared Read Blocks': 2,
              'Actual Rows': 4, 'Plans': [{'Node Type': 'Bitmap Index Scan', 'Index Name': 'Job_teacherId_status_idx'}]}


def explains(plan, times):
    return [[{'Plan': plan, 'Execution Time': t, 'Planning Time': 0.1}] for t in times]


def test_writing_or_locking_nodes_are_found_anywhere_in_the_plan():
    plan = {'Node Type': 'Aggregate', 'Plans': [{'Node Type': 'LockRows', 'Plans': [PLAN_SEQ]}]}
    assert qb.writing_nodes(plan) == ['LockRows']
    assert qb.writing_nodes(PLAN_INDEX) == []


def test_the_summary_keeps_the_median_buffers_and_shape():
    summary = qb.summarize(explains(PLAN_SEQ, [9.0, 1.0, 2.0, 3.0, 2.5]))
    assert summary['median_ms'] == 2.5 and summary['runs'] == 5
    assert summary['buffers'] == 233 and summary['shared_read_blocks'] == 33
    assert summary['plan_shape'] == 'Seq Scan on Job'
    assert qb.summarize(explains(PLAN_INDEX, [1.0]))['plan_shape'] == \
        'Bitmap Heap Scan on Job [Bitmap Index Scan using Job_teacherId_status_idx]'


def test_a_seq_scan_that_became_an_index_scan_is_named():
    before = qb.summarize(explains(PLAN_SEQ, [2.0, 2.0, 2.0]))
    after = qb.summarize(explains(PLAN_INDEX, [0.05, 0.05, 0.05]))
    outcome = qb.compare(before, after, 1.2, 0.5)
    assert outcome['verdict'] == 'improved' and outcome['seq_scan_to_index'] == ['Job']
    assert outcome['plan_changed'] and outcome['ratio'] == 0.025


@pytest.mark.parametrize('before_ms,after_ms,verdict', [
    (2.0, 4.0, 'slower'),      # twice as slow and 2 ms lost
    (0.02, 0.2, 'held'),       # ten times, but 0.18 ms: noise
    (2.0, 2.3, 'held'),        # within the 1.2 tolerance
    (2.0, 0.5, 'improved'),
])
def test_slower_needs_the_ratio_the_milliseconds_and_a_changed_plan(before_ms, after_ms, verdict):
    before = qb.summarize(explains(PLAN_INDEX, [before_ms]))
    after = qb.summarize(explains(PLAN_SEQ, [after_ms]))
    assert qb.compare(before, after, 1.2, 0.5)['verdict'] == verdict


def test_the_same_plan_and_buffers_running_slower_is_noise_not_a_regression():
    before = qb.summarize(explains(PLAN_SEQ, [1.1]))
    after = qb.summarize(explains(PLAN_SEQ, [1.65]))
    assert qb.compare(before, after, 1.2, 0.5)['verdict'] == 'held'
    # More buffers for the same plan is more work, and counts.
    heavier = dict(PLAN_SEQ, **{'Shared Hit Blocks': 400})
    assert qb.compare(before, qb.summarize(explains(heavier, [1.65])), 1.2, 0.5)['verdict'] == 'slower'


def test_a_new_plan_reading_fewer_buffers_is_not_a_regression_when_its_time_is_noise():
    # Seen in CI: Seq Scan -> Index Only Scan, 580 -> 302 buffers, 3.7 -> 4.5 ms (cold index pages).
    before = qb.summarize(explains(PLAN_SEQ, [3.7]))
    after = qb.summarize(explains(PLAN_INDEX, [4.5]))
    assert before['buffers'] > after['buffers']
    outcome = qb.compare(before, after, 1.2, 0.5)
    assert outcome['plan_changed'] and outcome['verdict'] == 'held'


def test_a_query_five_times_faster_through_a_new_index_is_improved_however_few_milliseconds_it_gained():
    # Seen in a T12 run: a Seq Scan became an index scan, 0.243 -> 0.051 ms, and was reported as "held".
    before = qb.summarize(explains(PLAN_SEQ, [0.243]))
    after = qb.summarize(explains(PLAN_INDEX, [0.051]))
    outcome = qb.compare(before, after, 1.2, 0.5)
    assert outcome['verdict'] == 'improved' and outcome['ratio'] == 0.21
    assert (outcome['before_buffers'], outcome['after_buffers']) == (233, 22)
    # The other way round it is not a regression: 0.19 ms is below the floor that lets a regression fail a run.
    assert qb.compare(after, before, 1.2, 0.5)['verdict'] == 'held'


def test_the_same_plan_and_buffers_running_faster_is_noise_as_when_it_runs_slower():
    fast, slow = qb.summarize(explains(PLAN_SEQ, [0.051])), qb.summarize(explains(PLAN_SEQ, [0.243]))
    assert qb.compare(slow, fast, 1.2, 0.5)['verdict'] == 'held'
    assert qb.compare(fast, slow, 1.2, 0.5)['verdict'] == 'held'


@pytest.mark.parametrize('speedup,verdict', [(1.19, 'held'), (1.21, 'improved'), (1.5, 'improved')])
def test_improved_needs_the_speedup_the_tolerance_asks_of_a_regression(speedup, verdict):
    # Less work (233 -> 22 buffers) but fewer milliseconds than the floor: the ratio alone decides.
    before = qb.summarize(explains(PLAN_SEQ, [0.3]))
    after = qb.summarize(explains(PLAN_INDEX, [0.3 / speedup]))
    assert qb.compare(before, after, 1.2, 0.5)['verdict'] == verdict
    # A regression by the same factor, with more work and the milliseconds to count, is slower past the tolerance.
    assert qb.compare(qb.summarize(explains(PLAN_INDEX, [3.0])), qb.summarize(explains(PLAN_SEQ, [3.0 * speedup])),
                      1.2, 0.5)['verdict'] == ('slower' if verdict == 'improved' else 'held')


def _runs(*milliseconds):
    return [[{'Execution Time': ms, 'Plan': PLAN_SEQ}] for ms in milliseconds]


@pytest.mark.parametrize('so_far,expected', [
    ((), 5),                     # nothing measured yet: plan for all of them
    ((2.0, 3.0), 5),             # fast: every run
    ((1200.0,), 1),              # one slow sequential scan is enough
    ((400.0, 700.0), 2),         # the budget ran out after the second
    ((999.0,), 5),               # just under it: go on
])
def test_a_query_repeats_only_while_its_runs_stay_within_the_budget(so_far, expected):
    assert qb.runs_needed(_runs(*so_far), 5, 1000.0) == expected


def test_a_budget_of_zero_always_runs_them_all():
    assert qb.runs_needed(_runs(5000.0), 5, 0) == 5


def test_measuring_stops_at_the_budget():
    """The module's loop: runs are added while fewer than runs_needed; it ends with the slow query measured twice."""
    explains = []
    while len(explains) < qb.runs_needed(explains, 5, 1000.0):
        explains.append(_runs(600.0)[0])
    assert len(explains) == 2
    assert qb.summarize(explains)['runs'] == 2


def test_the_measurement_lines():
    runs = helpers.load_module_utils('evidence.baseline_runs')
    assert runs.baseline_lines([], []) == ['No baseline queries in the plan: nothing was measured.']
    queries = [dict(name='q', median_ms=0.5, buffers=40, plan_shape='Seq Scan on Job')]
    comparison = [dict(name='q', verdict='improved', before_ms=0.5, after_ms=0.05, ratio=0.1, plan_changed=True,
                       seq_scan_to_index=['Job'])]
    assert runs.baseline_lines(queries, comparison) == [
        '%-30s median %8.3f ms  buffers %6d  %s' % ('q', 0.5, 40, 'Seq Scan on Job'),
        '%-30s %-8s %8.3f -> %8.3f ms (x%s)%s' % ('q', 'improved', 0.5, 0.05, 0.1,
                                                 ', Seq Scan on Job became an index scan')]


def test_a_remeasure_uses_the_parameter_values_of_the_earlier_run():
    runs = helpers.load_module_utils('evidence.baseline_runs')
    queries = [dict(name='q', sql='SELECT %(id)s', params=dict(id=dict(query='SELECT 1'))), dict(name='r', sql='x')]
    assert runs.with_earlier_params(queries, [dict(name='q', params=dict(id=42))]) == [
        dict(name='q', sql='SELECT %(id)s', params=dict(id=42)), dict(name='r', sql='x')]


def test_each_verdict_says_why_in_the_terms_of_the_validation():
    # Seen in a report: "held" beside x0.244. The same plan and buffers, 0.18 ms faster: within the noise floor.
    fast, slow = qb.summarize(explains(PLAN_SEQ, [0.051])), qb.summarize(explains(PLAN_SEQ, [0.209]))
    held = qb.compare(slow, fast, 1.2, 0.5)
    assert (held['verdict'], held['ratio']) == ('held', 0.244)
    assert held['reason'] == ('faster (x0.244), but by 0.158 ms, within the 0.5 ms noise floor, with no less work '
                              '(233 -> 233 buffers): not counted as an improvement')
    noise = qb.compare(fast, slow, 1.2, 0.5)
    assert noise['verdict'] == 'held' and noise['reason'].startswith('slower (x4.098), but by 0.158 ms, within')
    improved = qb.compare(slow, qb.summarize(explains(PLAN_INDEX, [0.051])), 1.2, 0.5)
    assert improved['reason'] == 'x0.244 below x0.833, with less work (233 -> 22 buffers, another plan)'
    regressed = qb.compare(qb.summarize(explains(PLAN_INDEX, [2.0])), qb.summarize(explains(PLAN_SEQ, [4.0])), 1.2, 0.5)
    assert regressed['reason'] == 'x2.0 beyond x1.2, 2.0 ms lost beyond the 0.5 ms floor, and more work ' \
                                  '(22 -> 233 buffers, another plan)'
    assert qb.compare(slow, slow, 1.2, 0.5)['reason'] == 'within x0.833 to x1.2 of the time before'
