# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Measuring a plan's baseline queries on a live connection: each in a read-only transaction, its parameters resolved,
its plan checked to write and lock nothing, then EXPLAIN (ANALYZE, BUFFERS) run until its runs or its time budget are
used up; and the comparison with an earlier measurement. Used by postgresql_query_baseline (the "before") and
postgresql_migration_validation (the "after"). The summaries and verdicts themselves are query_baseline's.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.plan_sql import statement_error
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.query_baseline import (
    PARAMETER,
    compare,
    query_problems,
    read_only_error,
    runs_needed,
    strip_statement,
    summarize,
    writing_nodes,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session import error_text, sql_module


class BaselineError(Exception):
    """A query that cannot be measured; the message says which and why (and, second, what was measured before)."""


class Baseline(object):
    def __init__(self, connection, runs, budget_ms=0):
        self.connection = connection
        self.cursor = connection.cursor()
        self.sql = sql_module()
        self.runs = runs
        self.budget_ms = budget_ms

    def send(self, statement, kind):
        """Execute C(statement) once PostgreSQL's parser proved it exactly one statement of C(kind).

        psycopg2 sends a string holding several statements as they are: this is the last stop for plan text that
        hid a second statement from the checks before.
        """
        problem = statement_error(statement, kind)
        if problem:
            raise BaselineError('refusing to send %s: %s' % (statement, problem))
        self.cursor.execute(statement)

    def scalar(self, statement, kind='SelectStmt'):
        self.send(statement, kind)
        row = self.cursor.fetchone()
        if row is None:
            return None
        return list(row.values())[0] if isinstance(row, dict) else row[0]

    def render(self, text, values):
        """The statement with each %(name)s replaced by the literal of its value."""
        return PARAMETER.sub(lambda m: self.sql.Literal(values[m.group(1)]).as_string(self.connection),
                             strip_statement(text))

    def explain(self, statement, analyze):
        options = 'ANALYZE, BUFFERS, FORMAT JSON' if analyze else 'FORMAT JSON'
        document = self.scalar('EXPLAIN (%s) %s' % (options, statement), 'ExplainStmt')
        return json.loads(document) if isinstance(document, str) else document

    def check_plan(self, label, statement):
        """Refuse a statement whose plan writes or locks rows, before it runs."""
        nodes = writing_nodes(self.explain(statement, analyze=False)[0]['Plan'])
        if nodes:
            raise BaselineError('%s: its plan has %s, so it writes or locks rows; only read-only queries are '
                                'allowed in a baseline, and it was not run' % (label, ', '.join(nodes)))

    def resolve(self, query):
        values = {}
        for name, value in sorted((query['params'] or {}).items()):
            if isinstance(value, dict):
                source = value.get('query')
                label = 'query "%s", parameter %s' % (query['name'], name)
                problem = read_only_error(source)
                if problem:
                    raise BaselineError('%s: its query %s' % (label, problem))
                self.check_plan(label, strip_statement(source))
                value = self.scalar(strip_statement(source))
                if value is None:
                    raise BaselineError('%s: its query returned no row; pick a query that finds a value' % label)
            values[name] = value if isinstance(value, (int, float, bool)) or value is None else str(value)
        return values

    def measure(self, query):
        label = 'query "%s"' % query['name']
        self.cursor.execute('BEGIN TRANSACTION READ ONLY')
        try:
            values = self.resolve(query)
            statement = self.render(query['sql'], values)
            self.check_plan(label, statement)
            explains = []
            while len(explains) < runs_needed(explains, self.runs, self.budget_ms):
                explains.append(self.explain(statement, analyze=True))
        finally:
            self.cursor.execute('ROLLBACK')
        summary = summarize(explains)
        summary.update(name=query['name'], sql=strip_statement(query['sql']), params=values, statement=statement)
        return summary


def input_errors(queries, runs, budget_ms=0):
    errors = []
    names = [q['name'] for q in queries]
    errors.extend('query "%s" is listed twice' % name for name in sorted(set(names)) if names.count(name) > 1)
    if runs < 1:
        errors.append('runs must be 1 or more, not %s' % runs)
    if budget_ms < 0:
        errors.append('budget_ms must be 0 or more, not %s' % budget_ms)
    return errors + query_problems(queries)


def with_earlier_params(queries, compare_with):
    """The queries, each with the parameter values an earlier measurement resolved: the same rows are measured."""
    before = dict((q['name'], q) for q in compare_with or [])
    return [dict(q, params=dict(q.get('params') or {}, **before[q['name']].get('params', {})))
            if q['name'] in before else q for q in queries]


def measure_all(connection, queries, runs, budget_ms, statement_timeout, compare_with=None, tolerance=1.2,
                min_regression_ms=0.5):
    """Measure every query (read-only session); dict(queries, comparison, slower). Raises BaselineError."""
    baseline = Baseline(connection, runs, budget_ms)
    # Read-only for the whole session, not only in the transaction each query runs in: defence in depth, should
    # a query's text ever end that transaction.
    baseline.cursor.execute("SELECT pg_catalog.set_config('statement_timeout', %(value)s, false), "
                            "pg_catalog.set_config('application_name', 'pg-zero-downtime', false), "
                            "pg_catalog.set_config('default_transaction_read_only', 'on', false)",
                            dict(value=statement_timeout))
    result = dict(queries=[], comparison=[], slower=[])
    query = None
    try:
        for query in with_earlier_params(queries, compare_with):
            result['queries'].append(baseline.measure(query))
    except BaselineError as error:
        raise BaselineError('Baseline refused: %s' % error, result)
    except Exception as error:  # psycopg2 and psycopg 3 errors share no importable base here
        raise BaselineError('Baseline query "%s" failed: %s' % (query['name'], error_text(error)), result)
    before = dict((q['name'], q) for q in compare_with or [])
    for after in result['queries']:
        if after['name'] in before:
            outcome = compare(before[after['name']], after, tolerance, min_regression_ms)
            result['comparison'].append(dict(outcome, name=after['name']))
            if outcome['verdict'] == 'slower':
                result['slower'].append(after['name'])
    return result


def baseline_lines(queries, comparison):
    """The measurement as the play prints it: each query's median and plan, then each comparison's verdict."""
    if not queries:
        return ['No baseline queries in the plan: nothing was measured.']
    lines = ['%-30s median %8.3f ms  buffers %6d  %s' % (q['name'], q['median_ms'], q['buffers'], q['plan_shape'])
             for q in queries]
    for c in comparison:
        if c.get('seq_scan_to_index'):
            note = ', Seq Scan on %s became an index scan' % ', '.join(c['seq_scan_to_index'])
        else:
            note = ', plan changed' if c.get('plan_changed') else ''
        lines.append('%-30s %-8s %8.3f -> %8.3f ms (x%s)%s' % (c['name'], c['verdict'], c['before_ms'], c['after_ms'],
                                                               c['ratio'], note))
    return lines
