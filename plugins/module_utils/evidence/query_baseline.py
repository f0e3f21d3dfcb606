# -*- coding: utf-8 -*-
# Performance baseline of read-only queries: the read-only gate, the summary of EXPLAIN (ANALYZE,
# BUFFERS, FORMAT JSON) runs, and the before/after comparison. Everything here takes plain data, so
# tests/unit runs it without a server; the module runs the statements.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.plan.plan_sql import PARAMETER, query_error
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.server_features import major

# The options of every measured EXPLAIN, each given explicitly, so that a server's defaults never change what is
# compared: PostgreSQL 18 shows buffers under EXPLAIN ANALYZE unasked (explain_buffers_by_default), and every option
# named here exists on each supported major (14+). The plain EXPLAIN that checks a plan for writes needs no figures.
EXPLAIN_ANALYZE_OPTIONS = ('ANALYZE true, BUFFERS true, COSTS true, TIMING true, SUMMARY true, VERBOSE false, '
                           'SETTINGS false, WAL false, FORMAT JSON')
EXPLAIN_PLAIN_OPTIONS = 'FORMAT JSON'

# Plan nodes that write or lock rows: a statement whose plain EXPLAIN has one is refused before it runs.
WRITING_NODES = ('ModifyTable', 'LockRows')


def strip_statement(text):
    """The statement without surrounding white space and one trailing semicolon."""
    text = (text or '').strip()
    return text[:-1].rstrip() if text.endswith(';') else text


def read_only_error(text):
    """Why C(text) is not one read-only query, or None: PostgreSQL's parser decides (plan_sql.query_error)."""
    return query_error(strip_statement(text))


def parameter_names(text):
    return sorted(set(PARAMETER.findall(text or '')))


def query_problems(queries):
    """Why baseline queries would be refused before they run: each one's text, its parameter queries and the
    parameters it uses but does not give. Used by the baseline itself and, before any DDL, by the preflight."""
    problems = []
    for query in queries:
        label = 'baseline query "%s"' % query.get('name')
        problem = read_only_error(query.get('sql'))
        if problem:
            problems.append('%s is refused: %s' % (label, problem))
        for name, value in sorted((query.get('params') or {}).items()):
            if isinstance(value, dict):
                problem = read_only_error(value.get('query'))
                if problem:
                    problems.append('%s, parameter %s: its query is refused: %s' % (label, name, problem))
        missing = [p for p in parameter_names(query.get('sql')) if p not in (query.get('params') or {})]
        if missing:
            problems.append('%s uses %s but params gives no value for it' % (label, ', '.join(missing)))
    return problems


def plan_nodes(node):
    """Every node of a plan tree (the dict under "Plan"), depth first."""
    nodes = [node]
    for child in node.get('Plans') or []:
        nodes.extend(plan_nodes(child))
    return nodes


def writing_nodes(plan):
    return sorted(set(n['Node Type'] for n in plan_nodes(plan) if n.get('Node Type') in WRITING_NODES))


def node_label(node):
    label = node.get('Node Type', '?')
    if node.get('Index Name'):
        label += ' using %s' % node['Index Name']
    if node.get('Relation Name'):
        label += ' on %s' % node['Relation Name']
    return label


def plan_shape(plan):
    """A one-line outline of a plan: node labels, children in brackets."""
    children = plan.get('Plans') or []
    if not children:
        return node_label(plan)
    return '%s [%s]' % (node_label(plan), ', '.join(plan_shape(child) for child in children))


def scans(plan):
    """The scan nodes of a plan: how each relation is read."""
    return [dict(node=n['Node Type'], relation=n.get('Relation Name'), index=n.get('Index Name'))
            for n in plan_nodes(plan) if n.get('Relation Name') or n.get('Index Name')]


def scan_label(scan):
    return '%s%s%s' % (scan['node'], ' using %s' % scan['index'] if scan['index'] else '',
                       ' on %s' % scan['relation'] if scan['relation'] else '')


def median(values):
    ordered = sorted(values)
    middle = len(ordered) // 2
    if not ordered:
        return None
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2.0


def runs_needed(explains, runs, budget_ms):
    """How many runs a query needs, given the EXPLAIN ANALYZE documents of its runs so far.

    C(runs), unless the runs so far together took C(budget_ms) or more (their Execution Time): then no more.
    A slow query (a sequential scan of millions of rows) is measured once or twice; a fast one C(runs) times.
    """
    if not budget_ms:
        return runs
    spent = sum((document[0] if isinstance(document, list) else document)['Execution Time'] for document in explains)
    return len(explains) if explains and spent >= budget_ms else runs


def summarize(explains):
    """One query's summary from its EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) documents (one per run).

    The median execution time, the buffers and the plan shape of the median run; the first run warms
    the cache, so every run counts but the median ignores the outliers.
    """
    runs = [document[0] if isinstance(document, list) else document for document in explains]
    times = [run['Execution Time'] for run in runs]
    middle_time = median(times)
    representative = min(runs, key=lambda run: abs(run['Execution Time'] - middle_time))
    plan = representative['Plan']
    hit, read = plan.get('Shared Hit Blocks', 0), plan.get('Shared Read Blocks', 0)
    return dict(runs=len(runs), execution_ms=[round(t, 3) for t in times], median_ms=round(middle_time, 3),
                planning_median_ms=round(median([run.get('Planning Time', 0.0) for run in runs]), 3),
                shared_hit_blocks=hit, shared_read_blocks=read, buffers=hit + read,
                rows=plan.get('Actual Rows'), top_node=plan.get('Node Type'), plan_shape=plan_shape(plan),
                scans=scans(plan))


def verdict_reason(verdict, ratio, before, after, tolerance, min_regression_ms, plan_changed):
    """Why compare() gave its verdict, in the terms of its criteria: so that "held" beside a ratio of x0.244 reads as
    what it is (faster, but within the noise the validation ignores), not as "unchanged"."""
    gained = round(before['median_ms'] - after['median_ms'], 3)
    work = '%s -> %s buffers%s' % (before['buffers'], after['buffers'], ', another plan' if plan_changed else '')
    if ratio is None:
        return 'no "before" time to compare with'
    if verdict == 'slower':
        return 'x%s beyond x%s, %s ms lost beyond the %s ms floor, and more work (%s)' % (
            ratio, tolerance, -gained, min_regression_ms, work)
    if verdict == 'improved':
        return 'x%s below x%s, with %s' % (ratio, round(1.0 / tolerance, 3), 'less work (%s)' % work
                                           if gained <= min_regression_ms else '%s ms gained' % gained)
    if ratio < 1.0 / tolerance:
        return ('faster (x%s), but by %s ms, within the %s ms noise floor, with no less work (%s): not counted as an '
                'improvement' % (ratio, gained, min_regression_ms, work))
    if ratio > tolerance:
        return ('slower (x%s), but %s: noise, not counted as a regression' % (
            ratio, 'by %s ms, within the %s ms floor' % (-gained, min_regression_ms)
            if -gained <= min_regression_ms else 'with no more work (%s)' % work))
    return 'within x%s to x%s of the time before' % (round(1.0 / tolerance, 3), tolerance)


def compare(before, after, tolerance, min_regression_ms):
    """Compare one query's baseline before and after the migration.

    Slower means: the median time grew beyond C(tolerance) (a ratio, 1.2 = 20% slower) and by more
    than C(min_regression_ms), and the query does more work: more buffers beyond the tolerance, or
    another plan that reads no fewer buffers. So sub-millisecond noise and a busy machine never count.
    Improved is the mirror image: the median time fell beyond the same tolerance (below 1 / C(tolerance)),
    and either by more than C(min_regression_ms) or with less work (fewer buffers beyond the tolerance, or
    another plan that reads no more buffers).
    Returns a dict with the ratio, the verdict (improved, held, slower), why (C(reason), in those terms) and what
    changed in the plan.
    """
    ratio = round(after['median_ms'] / before['median_ms'], 3) if before['median_ms'] else None
    plan_changed = before['plan_shape'] != after['plan_shape']
    # The same plan reading about the same buffers does the same work: a slower time is then noise of
    # the machine (other load, caches), not an effect of the migration, which can only change plans.
    # A new plan that reads fewer buffers (an index instead of a scan) does less work too; a few ms
    # slower then is its index pages still cold, as seen on 2 busy cores (3.7 -> 4.5 ms, 580 -> 302 buffers).
    more_work = (after['buffers'] > before['buffers'] * tolerance
                 or (plan_changed and after['buffers'] >= before['buffers']))
    less_work = (before['buffers'] > after['buffers'] * tolerance
                 or (plan_changed and after['buffers'] <= before['buffers']))
    slower = (ratio is not None and ratio > tolerance and more_work
              and after['median_ms'] - before['median_ms'] > min_regression_ms)
    # Less work is evidence enough for an improvement without the milliseconds: the floor keeps noise from
    # failing a run, and an improvement fails nothing. A small table's Seq Scan become an index scan of a few
    # buffers, 0.243 -> 0.051 ms, is five times faster; calling it "held" told the reader nothing changed.
    improved = (ratio is not None and ratio < 1.0 / tolerance
                and (less_work or before['median_ms'] - after['median_ms'] > min_regression_ms))
    if slower:
        verdict = 'slower'
    elif improved:
        verdict = 'improved'
    else:
        verdict = 'held'
    reason = verdict_reason(verdict, ratio, before, after, tolerance, min_regression_ms, plan_changed)
    before_scans = [scan_label(scan) for scan in before['scans']]
    after_scans = [scan_label(scan) for scan in after['scans']]
    sequential_before = set(scan['relation'] for scan in before['scans'] if scan['node'] == 'Seq Scan')
    sequential_after = set(scan['relation'] for scan in after['scans'] if scan['node'] == 'Seq Scan')
    return dict(ratio=ratio, verdict=verdict, reason=reason, before_ms=before['median_ms'], after_ms=after['median_ms'],
                before_buffers=before['buffers'], after_buffers=after['buffers'],
                plan_changed=plan_changed,
                scans_before=before_scans, scans_after=after_scans,
                # A relation read with a Seq Scan before is read through an index after.
                seq_scan_to_index=sorted(sequential_before - sequential_after) if any(
                    scan['index'] for scan in after['scans']) else [])


def version_text(version_num, server_version=None):
    """A server's version for a message: its server_version text without the packager's suffix ('15.14', not
    '15.14 (Debian 15.14-1.pgdg120+1)'), else its major."""
    return (server_version or '').split(' ')[0] or str(major(version_num))


def baseline_version_error(before, version_num, server_version=None):
    """Why the "before" measurement C(before) (its queries, each with the server_version_num it was taken on) cannot
    be compared on a server of C(version_num), or None. Plans and timings compare only within one major: another
    major has another planner and another EXPLAIN. A query measured before 0.19.0 records no version and is compared
    as before."""
    for query in before or []:
        taken = query.get('server_version_num')
        if taken and major(taken) != major(version_num):
            return ('the baseline was taken on PostgreSQL %s and this server is %s: plans and timings of different '
                    'majors are not comparable (another planner, another EXPLAIN); take a new baseline on this server '
                    '(baseline.yml) and compare with that. Nothing was measured.' % (
                        version_text(taken, query.get('server_version')), version_text(version_num, server_version)))
    return None
