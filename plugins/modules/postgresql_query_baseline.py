#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: postgresql_query_baseline
short_description: Measure read-only queries with EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)
description:
  - Runs each query O(runs) times under C(EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)). For each query it returns
    the median execution time, the buffers and the plan shape (which nodes, which index). A migration compares
    the figures before and after.
  - Only read-only statements are accepted, and anything else is refused before it runs. First, PostgreSQL's own
    parser (pglast, needed on the host that runs the module) must read the text as exactly one SELECT (WITH,
    TABLE and VALUES are SELECTs too) with no data-modifying WITH, no FOR UPDATE/SHARE, no INTO and no call of
    a function that signals or changes the server (C(pg_terminate_backend), C(set_config), C(pg_sleep), advisory
    locks, large objects, file access, C(query_to_xml) and the like). Second, its plain C(EXPLAIN) (which
    executes nothing) must contain no node that writes or locks rows (ModifyTable, LockRows). Third, every run
    happens in a READ ONLY transaction that is rolled back, in a session whose C(default_transaction_read_only)
    is on, and every statement sent is first parsed again as exactly one statement.
  - "Parameters are written C(%(name)s) and given in C(params). A value is either a literal, or a dict with a
    C(query) key holding a read-only query, whose first column of the first row is used (for example a real
    id). The values used are returned, so a later run can reuse them."
  - Changes nothing, so it runs in check mode too.
version_added: '0.1.0'
requirements:
  - pglast (PostgreSQL's parser), to check plan SQL and every statement that carries it
options:
  login_db:
    description: Name of the database to connect to.
    type: str
    aliases: [db]
  queries:
    description: The queries to measure.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Short name of the query (unique), used in reports.
        type: str
        required: true
      sql:
        description: The query, with C(%(name)s) parameters.
        type: str
        required: true
      params:
        description: Parameter values; a value may be a dict whose C(query) key holds a read-only query.
        type: dict
        default: {}
  compare_with:
    description:
      - The result (C(queries)) of an earlier run, usually the baseline before the migration. Each query of
        the same name is compared with it, and the outcome is returned in C(comparison). A parameter given
        there is reused, so both runs measure the same rows.
    type: list
    elements: dict
  tolerance:
    description:
      - With O(compare_with), the median-time ratio (after / before) above which a query counts as slower, when it
        also lost more than O(min_regression_ms) and does more work. A ratio below its inverse (1 / 1.2) counts as
        improved, when the query also gained more than O(min_regression_ms) or does less work.
    type: float
    default: 1.2
  min_regression_ms:
    description: With O(compare_with), a query is only slower if it also lost more than this many milliseconds.
    type: float
    default: 0.5
  runs:
    description: How many times each query runs at most; the median counts.
    type: int
    default: 5
  budget_ms:
    description:
      - Stop repeating a query once its runs together took this many milliseconds (their C(Execution Time));
        it always runs at least once. A sequential scan of millions of rows that takes 150 ms is then
        measured twice rather than O(runs) times, where repeats add time to the run but nothing to the
        comparison. V(0) always runs O(runs) times.
    type: float
    default: 200
  statement_timeout:
    description: statement_timeout of each run, so a bad baseline query cannot run for ever.
    type: str
    default: 60s
  session_role:
    description: Switch to this role after connecting.
    type: str
attributes:
  check_mode:
    support: full
  diff_mode:
    description: Returns no diff.
    support: none
author:
  - pg-zero-downtime maintainers (!UNKNOWN)
extends_documentation_fragment:
  - community.postgresql.postgres
'''

EXAMPLES = r'''
- name: Measure the T12 seed's query on Job
  pg_zero_downtime.migrations.postgresql_query_baseline:
    login_db: app
    queries:
      - name: open_jobs_of_a_teacher
        sql: SELECT * FROM "Job" WHERE "teacherId" = %(teacher)s AND "status" = 'OPEN'
        params:
          teacher: {query: SELECT "teacherId" FROM "Job" WHERE "status" = 'OPEN' LIMIT 1}
'''

RETURN = r'''
queries:
  description:
    - Per query, C(name), C(sql), C(params) (the values used), C(statement) (as run), C(runs), C(execution_ms),
      C(median_ms), C(planning_median_ms), C(shared_hit_blocks), C(shared_read_blocks), C(buffers), C(rows),
      C(top_node), C(plan_shape) and C(scans) (node, relation and index of every scan).
  returned: always
  type: list
  elements: dict
comparison:
  description:
    - With O(compare_with), per query C(name), C(ratio) (after / before median), C(verdict) (improved, held,
      slower), C(before_ms), C(after_ms), C(before_buffers), C(after_buffers), C(plan_changed), C(scans_before),
      C(scans_after) and C(seq_scan_to_index).
  returned: always
  type: list
  elements: dict
slower:
  description: Names of the queries that got slower beyond the tolerance.
  returned: always
  type: list
  elements: str
'''

import json

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.connection import connect_or_fail
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session import (
    error_text, option_errors, sql_module,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.plan_sql import (
    HAS_PGLAST, MISSING_PARSER, statement_error,
)
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
from ansible_collections.community.postgresql.plugins.module_utils.postgres import (
    ensure_required_libs,
    get_conn_params,
    postgres_common_argument_spec,
)


class BaselineError(Exception):
    """A query that cannot be measured; the message says which and why."""


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


def main():
    argument_spec = postgres_common_argument_spec()
    argument_spec.update(
        login_db=dict(type='str', aliases=['db']),
        queries=dict(type='list', elements='dict', required=True, options=dict(
            name=dict(type='str', required=True),
            sql=dict(type='str', required=True),
            params=dict(type='dict', default={}),
        )),
        runs=dict(type='int', default=5),
        budget_ms=dict(type='float', default=200.0),
        compare_with=dict(type='list', elements='dict'),
        tolerance=dict(type='float', default=1.2),
        min_regression_ms=dict(type='float', default=0.5),
        statement_timeout=dict(type='str', default='60s'),
        session_role=dict(type='str'),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    result = dict(changed=False, queries=[], comparison=[], slower=[])
    before = dict((q['name'], q) for q in params['compare_with'] or [])
    # Measure the same rows as the earlier run: its resolved parameter values win.
    queries = [dict(q, params=dict(q['params'] or {}, **before[q['name']].get('params', {})))
               if q['name'] in before else q for q in params['queries']]
    if not HAS_PGLAST:
        module.fail_json(msg='The baseline queries cannot be checked; nothing was run: %s' % MISSING_PARSER, **result)
    errors = input_errors(queries, params['runs'], params['budget_ms'])
    if errors:
        module.fail_json(msg='The baseline queries are refused; nothing was run:\n- %s' % '\n- '.join(errors), **result)

    ensure_required_libs(module)
    connection = connect_or_fail(module, get_conn_params(module, params))
    errors = option_errors(connection.cursor(), params, [('statement_timeout', 'statement_timeout')])
    if errors:
        connection.close()
        module.fail_json(msg='Invalid options; nothing was run:\n- %s' % '\n- '.join(errors), **result)
    baseline = Baseline(connection, params['runs'], params['budget_ms'])
    # Read-only for the whole session, not only in the transaction each query runs in: defence in depth, should
    # a query's text ever end that transaction.
    baseline.cursor.execute("SELECT pg_catalog.set_config('statement_timeout', %(value)s, false), "
                            "pg_catalog.set_config('application_name', 'pg-zero-downtime', false), "
                            "pg_catalog.set_config('default_transaction_read_only', 'on', false)",
                            dict(value=params['statement_timeout']))
    try:
        for query in queries:
            result['queries'].append(baseline.measure(query))
    except BaselineError as error:
        module.fail_json(msg='Baseline refused: %s' % error, **result)
    except Exception as error:  # psycopg2 and psycopg 3 errors share no importable base here
        module.fail_json(msg='Baseline query "%s" failed: %s' % (query['name'], error_text(error)), **result)
    finally:
        connection.close()
    for after in result['queries']:
        if after['name'] in before:
            outcome = compare(before[after['name']], after, params['tolerance'], params['min_regression_ms'])
            result['comparison'].append(dict(outcome, name=after['name']))
            if outcome['verdict'] == 'slower':
                result['slower'].append(after['name'])
    module.exit_json(**result)


if __name__ == '__main__':
    main()
