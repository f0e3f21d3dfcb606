#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: postgresql_migration_validation
short_description: Prove a migration in place after the DDL and compare its baseline queries, in one read-only process
description:
  - The validation of a run, read-only, in one module process. It proves every index of the plan in place with its
    planned definition, valid and ready (C(pg_index.indisvalid), C(indisready)), and every constraint in place as
    planned, as M(pg_zero_downtime.migrations.postgresql_online_index_info) and
    M(pg_zero_downtime.migrations.postgresql_unique_constraint_info) do.
  - With O(compare_with) (the "before" measurement of M(pg_zero_downtime.migrations.postgresql_query_baseline)), it runs
    the baseline queries again with the same parameter values and compares plan shape, median time and buffers. A
    query slower beyond O(tolerance) and O(min_regression_ms) fails the task (O(on_regression=fail)) or warns.
  - It reads the usage of the planned indexes (C(pg_stat_user_indexes)) after the baseline queries ran, their own scans
    reported first (C(pg_stat_force_next_flush()) on PostgreSQL 15 and later).
  - An index or constraint not in place fails the task, saying what is still needed; not in check mode, where nothing
    was built, where RV(summary) says what a real run would build, then validate. In check mode the baseline queries
    are not run again, as nothing changed to compare.
version_added: '0.15.0'
options:
  schema:
    description: Default schema of the plan's tables and constraints.
    type: str
    default: public
  baseline_queries:
    description: The plan's baseline queries (C(name), C(sql), C(params)).
    type: list
    elements: dict
    default: []
  compare_with:
    description: The "before" measurement (its C(queries)); without it the baseline queries are not run.
    type: list
    elements: dict
  runs:
    description: Runs per baseline query.
    type: int
    default: 5
  budget_ms:
    description: A query stops repeating once its runs took this long (at least one run). 0 always runs O(runs) times.
    type: float
    default: 200.0
  tolerance:
    description: Median-time ratio (after / before) above which a query is slower; below its inverse, improved.
    type: float
    default: 1.2
  min_regression_ms:
    description: Milliseconds a query must also lose to count as slower.
    type: float
    default: 0.5
  statement_timeout:
    description: statement_timeout of each baseline query.
    type: str
    default: 60s
  on_regression:
    description: What a query slower than before does to the task.
    type: str
    choices: [fail, warn]
    default: fail
  fail_on_problems:
    description:
      - V(false) returns a failed validation in RV(problem) instead of failing the task, so the caller can write the
        validation's records first and fail after.
    type: bool
    default: true
extends_documentation_fragment:
  - pg_zero_downtime.migrations.common
  - pg_zero_downtime.migrations.plan_tables
  - pg_zero_downtime.migrations.plan_trust
  - pg_zero_downtime.migrations.plan_constraints
  - pg_zero_downtime.migrations.connection
  - community.postgresql.postgres
'''

EXAMPLES = r'''
- name: Prove the plan in place and compare the baseline queries with the "before" run
  pg_zero_downtime.migrations.postgresql_migration_validation:
    login_db: app
    tables: "{{ migration_plan_data.tables }}"
    constraints: "{{ migration_plan_data.constraints }}"
    baseline_queries: "{{ migration_plan_data.baseline_queries }}"
    compare_with: "{{ baseline_result.queries }}"
  register: validation
'''

RETURN = r'''
objects_valid:
  description: Every planned index and constraint is in place, valid and as planned.
  returned: always
  type: bool
pending_tables:
  description: Tables whose indexes still need DDL.
  returned: always
  type: list
  elements: str
pending_constraints:
  description: Constraints not in place as planned.
  returned: always
  type: list
  elements: str
queries:
  description: The "after" measurement of each baseline query (as M(pg_zero_downtime.migrations.postgresql_query_baseline) returns it).
  returned: always
  type: list
  elements: dict
comparison:
  description: Per baseline query, the verdict (improved, held, slower), the ratio and what changed in its plan.
  returned: always
  type: list
  elements: dict
slower:
  description: Names of the queries that got slower beyond the tolerance.
  returned: always
  type: list
  elements: str
index_usage:
  description: Scans, tuples and size of each planned index (C(pg_stat_user_indexes)), most used first.
  returned: always
  type: list
  elements: dict
seconds:
  description: How long the validation took.
  returned: always
  type: float
record:
  description: What validate.json holds (C(objects_valid), C(comparison), C(slower), C(index_usage), C(seconds)).
  returned: always
  type: dict
summary:
  description: The validation as lines for the play's output.
  returned: always
  type: list
  elements: str
problem:
  description: Why the validation failed (objects not in place, or a slower query with O(on_regression=fail)), or null.
  returned: always
  type: str
'''

import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.evidence.baseline_runs import (
    BaselineError, baseline_lines, check_mode_lines, input_errors, measure_all, with_earlier_params,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.connection import (
    connect_or_fail, connection_argument_spec,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.plan.plan_schema import module_option
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.plan.plan_proof import (
    prove_constraints, prove_indexes,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.statements import fetch_dicts
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.server_features import has
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.online_constraint import ConstraintRunner
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.unique_constraint import PLAN_CONSTRAINT_OPTIONS

INDEX_USAGE_QUERY = (
    "SELECT schemaname AS schema, relname AS table, indexrelname AS index, idx_scan, idx_tup_read, idx_tup_fetch, "
    "pg_catalog.pg_relation_size(indexrelid) AS size_bytes "
    "FROM pg_catalog.pg_stat_user_indexes WHERE indexrelname = ANY(%(names)s) "
    "ORDER BY idx_scan DESC, indexrelname")


def read_index_usage(cursor, names, measured):
    """The usage of the planned indexes (pg_stat_user_indexes). A session's scans are its pending statistics until it
    reports them, once idle after a transaction (PostgreSQL 15+: at once after pg_stat_force_next_flush(), which each
    statement here ends in autocommit; before 15 within half a second, by the statistics collector), and a
    transaction reads the statistics of a snapshot: so after the baseline queries, the flush is forced and the
    snapshot cleared first."""
    if measured:
        version = fetch_dicts(cursor, "SELECT pg_catalog.current_setting('server_version_num')::int AS num")[0]['num']
        if has(version, 'stat_force_next_flush'):
            cursor.execute('SELECT pg_catalog.pg_stat_force_next_flush()')
        cursor.execute('SELECT pg_catalog.pg_stat_clear_snapshot()')
    return fetch_dicts(cursor, INDEX_USAGE_QUERY, dict(names=names))


def objects_lines(index_count, constraint_count, pending_tables, statements, pending_constraints, check_mode=False):
    if not pending_tables and not pending_constraints:
        return ['Every planned index (%d) is valid and ready, and every planned constraint (%d) is in place.'
                % (index_count, constraint_count)]
    if check_mode:
        # Nothing was built in check mode: what is still needed is what the run does, not a failure.
        return ['Check mode: a real run would first run %d index statement(s) on %s and add the constraint(s) %s, then '
                'validate that every planned index (%d) is valid and ready and every planned constraint (%d) is in '
                'place.' % (len(statements), ', '.join(pending_tables) or 'no table',
                            ', '.join(pending_constraints) or 'none', index_count, constraint_count)]
    return ['Validation failed: %d index statement(s) still needed on %s, constraints not in place: %s. Rerun '
            'migrate.yml (it resumes), then validate.yml.' % (len(statements), ', '.join(pending_tables) or 'no table',
                                                              ', '.join(pending_constraints) or 'none')]


def slower_text(comparison, tolerance, min_regression_ms):
    return 'Slower than before beyond x%s (and by more than %s ms): %s' % (tolerance, min_regression_ms, '; '.join(
        '%s %s -> %s ms (%s -> %s)' % (c['name'], c['before_ms'], c['after_ms'], ', '.join(c['scans_before']),
                                       ', '.join(c['scans_after']))
        for c in comparison if c['verdict'] == 'slower'))


def main():
    argument_spec = connection_argument_spec(
        schema=dict(type='str', default='public'),
        tables=module_option('tables'),
        constraints=dict(type='list', elements='dict', default=[], options=PLAN_CONSTRAINT_OPTIONS),
        baseline_queries=dict(type='list', elements='dict', default=[]),
        compare_with=dict(type='list', elements='dict'),
        runs=dict(type='int', default=5),
        budget_ms=dict(type='float', default=200.0),
        tolerance=dict(type='float', default=1.2),
        min_regression_ms=dict(type='float', default=0.5),
        statement_timeout=dict(type='str', default='60s'),
        on_regression=dict(type='str', default='fail', choices=['fail', 'warn']),
        fail_on_problems=dict(type='bool', default=True),
        trusted=dict(type='list', elements='str', default=[]),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    params['tables'] = params['tables'] or []  # a plan of constraints only has no tables
    started = time.monotonic()
    measure = params['compare_with'] is not None and bool(params['baseline_queries']) and not module.check_mode
    result = dict(changed=False, objects_valid=False, pending_tables=[], pending_constraints=[], queries=[],
                  comparison=[], slower=[], index_usage=[], seconds=0.0, record={}, summary=[], problem=None)
    if measure:
        errors = input_errors(with_earlier_params(params['baseline_queries'], params['compare_with']), params['runs'],
                              params['budget_ms'])
        if errors:
            module.fail_json(msg='The baseline queries are refused; nothing was run:\n- %s' % '\n- '.join(errors),
                             **result)
    connection = connect_or_fail(module)
    runner = ConstraintRunner(connection, trusted=params['trusted'])
    indexes = prove_indexes(runner, params['tables'], params['schema'], 'present', 0)
    # In place or not is all it proves: no rows are read. The plan's tables: their full unique indexes are keys its
    # foreign keys reference (not built yet in check mode).
    constraints = prove_constraints(runner, params['constraints'], params['schema'], 'present', 0, 0,
                                    params['tables'], count_rows=False) if params['constraints'] \
        else dict(pending=[], problems=[])
    problems = indexes['problems'] + constraints['problems']
    if problems:
        connection.close()
        result['problem'] = 'Validation failed: the plan does not match the database:\n%s' % '\n'.join(problems)
        result['summary'] = [result['problem']]
        if params['fail_on_problems']:
            module.fail_json(msg=result['problem'], **result)
        module.exit_json(**result)
    result.update(pending_tables=indexes['pending_tables'], pending_constraints=constraints['pending'])
    result['objects_valid'] = not indexes['pending_tables'] and not constraints['pending']
    names = [index['name'] for table in params['tables'] for index in table['indexes']]
    if measure:
        try:
            result.update(measure_all(connection, params['baseline_queries'], params['runs'], params['budget_ms'],
                                      params['statement_timeout'], params['compare_with'], params['tolerance'],
                                      params['min_regression_ms'], params['trusted']))
        except BaselineError as error:
            connection.close()
            module.fail_json(msg=str(error.args[0]), **result)
    # Read after the baseline queries, so that their scans of the new indexes count.
    result['index_usage'] = read_index_usage(runner.cursor, names, measure)
    # In check mode nothing is measured: what a real run would do with the baseline (compare it, or refuse it).
    check_lines = check_mode_lines(runner.cursor, params['compare_with']) \
        if module.check_mode and params['baseline_queries'] else []
    connection.close()
    result['seconds'] = round(time.monotonic() - started, 2)
    result['record'] = dict(objects_valid=result['objects_valid'], comparison=result['comparison'],
                            slower=result['slower'], index_usage=result['index_usage'], seconds=result['seconds'])
    result['summary'] = objects_lines(len(names), len(params['constraints']), indexes['pending_tables'],
                                      indexes['queries'], constraints['pending'], module.check_mode)
    if module.check_mode:
        result['summary'].append('Check mode changed nothing, so the baseline queries are not measured again and '
                                 'there is nothing to compare.')
        result['summary'].extend(check_lines)
    elif measure:
        result['summary'].extend(baseline_lines(result['queries'], result['comparison']))
    if not result['objects_valid'] and not module.check_mode:
        result['problem'] = result['summary'][0]
    elif result['slower']:
        text = slower_text(result['comparison'], params['tolerance'], params['min_regression_ms'])
        if params['on_regression'] == 'fail':
            result['problem'] = text
        else:
            result['summary'].append('WARNING: %s' % text)
            module.warn(text)
    if result['problem'] and params['fail_on_problems']:
        module.fail_json(msg=result['problem'], **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
