# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Measuring a plan's baseline queries on a live connection: each proven by the server's resolution first (plan_trust:
built-in or trusted objects, at most STABLE), prepared with its parameters as $n and their values bound to them (never
written into the SQL), its parameter queries proven and run, its plan checked to write and lock nothing, then EXPLAIN
(ANALYZE, BUFFERS) of the prepared query run until its runs or its time budget are used up, in a read-only
transaction; and the comparison with an earlier measurement. Used by postgresql_query_baseline (the "before"),
postgresql_migration_validation (the "after") and, to prove them without running them, the preflight. The summaries
and verdicts themselves are query_baseline's.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.plan.plan_sql import (
    bind_placeholders, execute_error, statement_error,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.plan.plan_trust import PlanTrust, refusal_message
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.evidence.query_baseline import (
    EXPLAIN_ANALYZE_OPTIONS,
    EXPLAIN_PLAIN_OPTIONS,
    baseline_version_error,
    compare,
    query_problems,
    read_only_error,
    runs_needed,
    strip_statement,
    summarize,
    version_text,
    writing_nodes,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.ddl_session import set_session_timeouts
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.statements import (
    error_text, fetch_dicts, sql_module,
)

SERVER_QUERY = ("SELECT pg_catalog.current_setting('server_version_num')::int AS version_num, "
                "pg_catalog.current_setting('server_version') AS version, pg_catalog.pg_is_in_recovery() AS replica")

# The name the measured query is prepared under in the module's own session (deallocated after each query).
PREPARED = 'pgzd_baseline_query'


class BaselineError(Exception):
    """A query that cannot be measured; the message says which and why (and, second, what was measured before)."""


class Baseline(object):
    def __init__(self, connection, runs=1, budget_ms=0, trusted=()):
        self.connection = connection
        self.cursor = connection.cursor()
        self.sql = sql_module()
        self.runs = runs
        self.budget_ms = budget_ms
        self.trust = PlanTrust(self.cursor, trusted)

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

    # -- proving --------------------------------------------------------------------------------------

    def prove(self, label, text):
        """BaselineError unless the server proves C(text): what it reaches is built-in (at most STABLE) or trusted."""
        problems = self.trust.prove_query(text)
        if problems:
            raise BaselineError(refusal_message(label, text, problems))

    def prove_parameters(self, query):
        """{parameter: its query} of C(query)'s parameter queries, each proven (nothing of them runs here)."""
        sources = {}
        for name, value in sorted((query.get('params') or {}).items()):
            if isinstance(value, dict):
                label = 'baseline query "%s", parameter %s: its query' % (query['name'], name)
                source = value.get('query')
                problem = read_only_error(source)
                if problem:
                    raise BaselineError('%s %s' % (label, problem))
                self.prove(label, strip_statement(source))
                sources[name] = strip_statement(source)
        return sources

    def prepare(self, query):
        """PREPARE C(query) with $n for its parameters (parse analysis only: nothing runs), then prove it as the server
        resolved it: its parameters as NULLs of the types PostgreSQL gave them. Returns the parameter names, in the
        order of their numbers, and the prepared text."""
        label = 'baseline query "%s"' % query['name']
        try:
            text, names = bind_placeholders(strip_statement(query['sql']), lambda name, number: '$%d' % number)
        except ValueError as error:
            raise BaselineError('%s: %s' % (label, error))
        self.send('PREPARE %s AS %s' % (PREPARED, text), 'PrepareStmt')
        types = fetch_dicts(self.cursor, 'SELECT parameter_types::text[] AS types FROM pg_catalog.pg_prepared_statements '
                                         'WHERE name = %(name)s', dict(name=PREPARED))[0]['types'] or []
        typed = bind_placeholders(strip_statement(query['sql']),
                                  lambda name, number: '(NULL::%s)' % types[number - 1])[0]
        self.prove(label, typed)
        return names, text

    def deallocate(self):
        self.cursor.execute('DEALLOCATE %s' % PREPARED)

    def prove_only(self, query):
        """Prove C(query) and its parameter queries without running anything of them (the preflight)."""
        self.prove_parameters(query)
        self.prepare(query)
        self.deallocate()

    # -- measuring -------------------------------------------------------------------------------------

    def explain(self, names, values, analyze):
        """EXPLAIN of the prepared query with the values bound to its parameters (EXECUTE's arguments: constants that
        PostgreSQL binds to $n, never SQL)."""
        options = EXPLAIN_ANALYZE_OPTIONS if analyze else EXPLAIN_PLAIN_OPTIONS
        arguments = ', '.join(self.sql.Literal(values[name]).as_string(self.connection) for name in names)
        statement = 'EXPLAIN (%s) EXECUTE %s%s' % (options, PREPARED, '(%s)' % arguments if names else '')
        problem = execute_error(statement, PREPARED)
        if problem:
            raise BaselineError('refusing to send %s: %s' % (statement, problem))
        document = self.scalar(statement, 'ExplainStmt')
        return json.loads(document) if isinstance(document, str) else document

    def check_plan(self, label, names, values):
        """Refuse a statement whose plan writes or locks rows, before it runs."""
        nodes = writing_nodes(self.explain(names, values, analyze=False)[0]['Plan'])
        if nodes:
            raise BaselineError('%s: its plan has %s, so it writes or locks rows; only read-only queries are '
                                'allowed in a baseline, and it was not run' % (label, ', '.join(nodes)))

    def resolve(self, query, sources):
        """The value of each parameter: a literal, or what its proven query returns (run here, read-only)."""
        values = {}
        for name, value in sorted((query.get('params') or {}).items()):
            if name in sources:
                label = 'query "%s", parameter %s' % (query['name'], name)
                nodes = writing_nodes(self._plain_explain(sources[name])[0]['Plan'])
                if nodes:
                    raise BaselineError('%s: its plan has %s, so it writes or locks rows; only read-only queries are '
                                        'allowed in a baseline, and it was not run' % (label, ', '.join(nodes)))
                value = self.scalar(sources[name])
                if value is None:
                    raise BaselineError('%s: its query returned no row; pick a query that finds a value' % label)
            values[name] = value if isinstance(value, (int, float, bool)) or value is None else str(value)
        return values

    def _plain_explain(self, text):
        document = self.scalar('EXPLAIN (FORMAT JSON) %s' % text, 'ExplainStmt')
        return json.loads(document) if isinstance(document, str) else document

    def measure(self, query):
        label = 'query "%s"' % query['name']
        sources = self.prove_parameters(query)
        names, text = self.prepare(query)
        try:
            self.cursor.execute('BEGIN TRANSACTION READ ONLY')
            try:
                values = self.resolve(query, sources)
                self.check_plan(label, names, values)
                explains = []
                while len(explains) < runs_needed(explains, self.runs, self.budget_ms):
                    explains.append(self.explain(names, values, analyze=True))
            finally:
                self.cursor.execute('ROLLBACK')
        finally:
            self.deallocate()
        summary = summarize(explains)
        summary.update(name=query['name'], sql=strip_statement(query['sql']), params=values, statement=text)
        return summary


def prove_queries(connection, queries, trusted=()):
    """Why the server refuses baseline queries (and their parameter queries), as sentences; nothing of them runs."""
    baseline = Baseline(connection, trusted=trusted)
    problems = []
    for query in queries:
        try:
            baseline.prove_only(query)
        except BaselineError as error:
            problems.append(str(error))
            baseline.cursor.execute('DEALLOCATE ALL')
        except Exception as error:  # psycopg2 and psycopg 3 errors share no importable base here
            problems.append('baseline query "%s": PostgreSQL refuses it: %s' % (query.get('name'), error_text(error)))
            baseline.cursor.execute('DEALLOCATE ALL')
    return problems


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


def read_server(cursor):
    """dict(version_num, version, replica) of the server the baseline runs on."""
    return fetch_dicts(cursor, SERVER_QUERY)[0]


def check_mode_lines(cursor, compare_with):
    """What a real validation would do with the "before" measurement C(compare_with), said in check mode, where
    nothing is measured: compare it on this server, or refuse it, taken on another major."""
    if not compare_with:
        return []
    server = read_server(cursor)
    refused = baseline_version_error(compare_with, server['version_num'], server['version'])
    if refused:
        return ['A real run would refuse the comparison: %s' % refused]
    return ['A real run would measure the baseline queries on PostgreSQL %s with EXPLAIN (%s) and compare them with '
            'the baseline.' % (version_text(server['version_num'], server['version']), EXPLAIN_ANALYZE_OPTIONS)]


def measure_all(connection, queries, runs, budget_ms, statement_timeout, compare_with=None, tolerance=1.2,
                min_regression_ms=0.5, trusted=()):
    """Measure every query (read-only session); dict(queries, comparison, slower). Raises BaselineError."""
    baseline = Baseline(connection, runs, budget_ms, trusted)
    server = read_server(baseline.cursor)
    if server['replica']:
        raise BaselineError('The baseline queries were not run: plan SQL is proven by the server before it runs, which '
                            'needs a temporary view, and a replica keeps none. Compare them on the primary.', {})
    refused = baseline_version_error(compare_with, server['version_num'], server['version'])
    if refused:
        raise BaselineError('Baseline comparison refused: %s' % refused, {})
    # Read-only for the whole session, not only in the transaction each query runs in: defence in depth, should
    # a query's text ever end that transaction. statement_timeout bounds each run; a server or role default
    # transaction_timeout (PostgreSQL 17+) does not.
    baseline.cursor.execute("SELECT pg_catalog.set_config('statement_timeout', %(value)s, false), "
                            "pg_catalog.set_config('application_name', 'pg-zero-downtime', false), "
                            "pg_catalog.set_config('default_transaction_read_only', 'on', false)",
                            dict(value=statement_timeout))
    set_session_timeouts(lambda text, values: fetch_dicts(baseline.cursor, text, values), server['version_num'])
    result = dict(queries=[], comparison=[], slower=[], server_version_num=server['version_num'],
                  server_version=server['version'], explain_options=EXPLAIN_ANALYZE_OPTIONS)
    query = None
    try:
        for query in with_earlier_params(queries, compare_with):
            result['queries'].append(dict(baseline.measure(query), server_version_num=server['version_num'],
                                          server_version=server['version']))
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
    lines = []
    if queries[0].get('server_version_num'):
        lines.append('Measured on PostgreSQL %s with EXPLAIN (%s), the same options on every version.' % (
            version_text(queries[0]['server_version_num'], queries[0].get('server_version')), EXPLAIN_ANALYZE_OPTIONS))
    lines.extend('%-30s median %8.3f ms  buffers %6d  %s' % (q['name'], q['median_ms'], q['buffers'], q['plan_shape'])
                 for q in queries)
    for c in comparison:
        if c.get('seq_scan_to_index'):
            note = ', Seq Scan on %s became an index scan' % ', '.join(c['seq_scan_to_index'])
        else:
            note = ', plan changed' if c.get('plan_changed') else ''
        lines.append('%-30s %-8s %8.3f -> %8.3f ms (x%s)%s' % (c['name'], c['verdict'], c['before_ms'], c['after_ms'],
                                                               c['ratio'], note))
    return lines
