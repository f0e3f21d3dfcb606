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
  - Every EXPLAIN option is given explicitly (RV(explain_options)), the same on every PostgreSQL version, so that a
    server's defaults (PostgreSQL 18 shows buffers unasked) never change what is compared. Each measurement records
    the server's C(server_version_num), and a comparison (O(compare_with)) with a measurement taken on another major
    is refused before anything runs, as plans and timings of different majors are not comparable.
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
version_added: '0.4.0'
options:
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
extends_documentation_fragment:
  - pg_zero_downtime.migrations.common
  - pg_zero_downtime.migrations.plan_trust
  - pg_zero_downtime.migrations.connection
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
      C(top_node), C(plan_shape), C(scans) (node, relation and index of every scan), C(server_version_num) and
      C(server_version) (of the server measured on).
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
server_version_num:
  description: C(server_version_num) of the server measured on (also in each query of RV(queries)).
  returned: success
  type: int
  sample: 150014
server_version:
  description: C(server_version) of that server.
  returned: success
  type: str
  sample: '15.14'
explain_options:
  description: The options of every measured EXPLAIN, the same on every version.
  returned: success
  type: str
  sample: ANALYZE true, BUFFERS true, COSTS true, TIMING true, SUMMARY true, VERBOSE false, SETTINGS false, WAL false, FORMAT JSON
seconds:
  description: How long the measurement took.
  returned: success
  type: float
summary:
  description: Each query's median and plan, then each comparison's verdict, as lines for the play's output.
  returned: always
  type: list
  elements: str
'''

import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.evidence.baseline_runs import (
    BaselineError, baseline_lines, input_errors, measure_all, with_earlier_params,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.connection import (
    connect_checked, connection_argument_spec,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.plan.plan_sql import HAS_PGLAST, MISSING_PARSER


def main():
    argument_spec = connection_argument_spec(
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
        trusted=dict(type='list', elements='str', default=[]),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    started = time.monotonic()
    result = dict(changed=False, queries=[], comparison=[], slower=[], summary=[])
    if not HAS_PGLAST:
        module.fail_json(msg='The baseline queries cannot be checked; nothing was run: %s' % MISSING_PARSER, **result)
    errors = input_errors(with_earlier_params(params['queries'], params['compare_with']), params['runs'],
                          params['budget_ms'])
    if errors:
        module.fail_json(msg='The baseline queries are refused; nothing was run:\n- %s' % '\n- '.join(errors), **result)

    connection = connect_checked(module, [('statement_timeout', 'statement_timeout')], 'run', **result)
    try:
        result.update(measure_all(connection, params['queries'], params['runs'], params['budget_ms'],
                                  params['statement_timeout'], params['compare_with'], params['tolerance'],
                                  params['min_regression_ms'], params['trusted']))
    except BaselineError as error:
        result.update(error.args[1] if len(error.args) > 1 else {})
        module.fail_json(msg=str(error.args[0]), **result)
    finally:
        connection.close()
    result['seconds'] = round(time.monotonic() - started, 2)
    result['summary'] = baseline_lines(result['queries'], result['comparison'])
    module.exit_json(**result)


if __name__ == '__main__':
    main()
