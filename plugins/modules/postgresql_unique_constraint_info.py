#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: postgresql_unique_constraint_info
short_description: Prove planned unique constraints applicable, duplicate keys first
description:
  - Read-only preflight of a plan's unique constraints, in one read-only transaction, before any DDL.
  - For each constraint, checks the identifiers, the table and its columns. A constraint or index of the same
    name that differs from the planned one is an error. It decides what the constraint still needs
    (C(created), C(rebuilt), C(attached), C(unchanged), or C(dropped) for O(state=absent)).
  - With O(state=present), groups the rows of every constraint not yet in place by its columns. It reports
    every key held by more than one row, with its row count and up to O(sample_ids) row ids (the primary key,
    or C(ctid) for a table without one), largest groups first, and the totals.
  - Rows with a NULL in any key column are not duplicates, as for PostgreSQL's default C(NULLS DISTINCT).
  - The duplicate scan reads each table in full, so it takes as long as a sequential scan. A constraint
    already in place needs no scan.
  - With O(fail_on_duplicates=true), duplicates fail the task with the report, so a migration stops before
    any DDL. A constraint with C(on_duplicates=rename) is the exception. Its duplicates are reported, the
    rename is checked to be possible (primary key, text column), and the task does not fail for them.
version_added: '0.1.0'
requirements:
  - pglast (PostgreSQL's parser), to check plan SQL and every statement that carries it
options:
  login_db:
    description: Name of the database to connect to.
    type: str
    aliases: [db]
  constraints:
    description: The planned unique constraints.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Constraint name.
        type: str
        required: true
      table:
        description: Table name, exactly as in the catalog.
        type: str
        required: true
      schema:
        description: Schema of the table; defaults to O(schema).
        type: str
      columns:
        description: The constraint's columns.
        type: list
        elements: str
        required: true
      type:
        description: Constraint type; only unique constraints have duplicates to find.
        type: str
        choices: [unique]
        default: unique
      on_duplicates:
        description:
          - C(fail) stops the run on duplicates. C(rename) means the run will rename them
            (postgresql_duplicate_resolution), so they are only reported.
        type: str
        choices: [fail, rename]
        default: fail
      rename_column:
        description: With C(on_duplicates=rename), the column that takes the suffix.
        type: str
      keep_oldest_by:
        description: With C(on_duplicates=rename), the columns that say which row of a group is the oldest.
        type: list
        elements: str
  schema:
    description: Default schema of the constraints' tables.
    type: str
    default: public
  state:
    description: C(present) checks the constraints can be added, C(absent) that they can be dropped (no duplicate scan).
    type: str
    choices: [present, absent]
    default: present
  sample_ids:
    description: How many row ids to list per duplicate key.
    type: int
    default: 5
  max_groups:
    description: How many duplicate keys to list per constraint (the totals count all of them).
    type: int
    default: 20
  fail_on_duplicates:
    description: Fail the task, with the report, when any constraint has duplicates.
    type: bool
    default: true
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
- name: Prove Class(name, grade) can become unique
  pg_zero_downtime.migrations.postgresql_unique_constraint_info:
    login_db: app
    constraints:
      - name: Class_name_grade_key
        table: Class
        columns: [name, grade]
'''

RETURN = r'''
constraints:
  description:
    - Per constraint, C(name), C(schema), C(table), C(columns), C(action) (what it still needs), C(statements)
      (the DDL that would run), C(on_duplicates), C(row_id) (the column(s) naming a row), C(total_groups),
      C(total_rows) and C(groups) (C(key), C(rows), C(sample_ids)).
  returned: always
  type: list
  elements: dict
pending:
  description: Names of the constraints with work left, in the order given.
  returned: always
  type: list
  elements: str
queries:
  description: The DDL the constraints still need, in order (nothing is run).
  returned: always
  type: list
  elements: str
duplicates_found:
  description: Whether any constraint has a duplicate key.
  returned: always
  type: bool
report:
  description: The human report, one line per constraint and per listed key.
  returned: always
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.connection import connect_or_fail
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.index_plan import ACTION_UNCHANGED
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session import (
    OnlineIndexError, error_text, fetch_dicts, sql_module,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.unique_constraint import (
    UniqueConstraintRunner,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.unique_keys import (
    COLUMN_TYPES_QUERY,
    PRIMARY_KEY_QUERY,
    find_duplicates,
    format_duplicate_report,
    rename_plan,
)
from ansible_collections.community.postgresql.plugins.module_utils.postgres import (
    ensure_required_libs,
    get_conn_params,
    postgres_common_argument_spec,
)


def main():
    argument_spec = postgres_common_argument_spec()
    argument_spec.update(
        login_db=dict(type='str', aliases=['db']),
        constraints=dict(type='list', elements='dict', required=True, options=dict(
            name=dict(type='str', required=True),
            table=dict(type='str', required=True),
            schema=dict(type='str'),
            columns=dict(type='list', elements='str', required=True),
            type=dict(type='str', choices=['unique'], default='unique'),
            on_duplicates=dict(type='str', choices=['fail', 'rename'], default='fail'),
            rename_column=dict(type='str'),
            keep_oldest_by=dict(type='list', elements='str'),
        )),
        schema=dict(type='str', default='public'),
        state=dict(type='str', choices=['present', 'absent'], default='present'),
        sample_ids=dict(type='int', default=5),
        max_groups=dict(type='int', default=20),
        fail_on_duplicates=dict(type='bool', default=True),
        session_role=dict(type='str'),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    ensure_required_libs(module)
    connection = connect_or_fail(module, get_conn_params(module, params))
    sql = sql_module()
    runner = UniqueConstraintRunner(connection)
    cursor = connection.cursor()
    result = dict(changed=False, constraints=[], pending=[], queries=[], duplicates_found=False, report=[])
    problems = []
    blocking = []
    cursor.execute('BEGIN TRANSACTION READ ONLY')
    try:
        names = [c['name'] for c in params['constraints']]
        problems.extend('constraint "%s" is planned twice' % name for name in sorted(set(names))
                        if names.count(name) > 1)
        for constraint in params['constraints']:
            schema, table, columns = constraint['schema'] or params['schema'], constraint['table'], constraint['columns']
            try:
                decision = runner.plan_constraint(constraint['name'], schema, table, columns, params['state'])
            except OnlineIndexError as error:
                problems.append('constraint "%s" on %s' % (constraint['name'], error))
                continue
            entry = dict(name=constraint['name'], schema=schema, table=table, columns=columns,
                         action=decision['action'], statements=decision['statements'],
                         on_duplicates=constraint['on_duplicates'], row_id=None, total_groups=0, total_rows=0, groups=[])
            result['constraints'].append(entry)
            if decision['action'] != ACTION_UNCHANGED:
                result['pending'].append(entry['name'])
                result['queries'].extend(decision['statements'])
            # A constraint in place has no duplicates; dropping one needs no scan.
            if params['state'] != 'present' or decision['action'] == ACTION_UNCHANGED:
                continue
            # The rename options are proven whether or not there are duplicates now: rows written before the
            # constraint phase may still need them, and a wrong option must not surface after the index phase.
            renaming = None
            if constraint['on_duplicates'] == 'rename' or constraint['rename_column'] or constraint['keep_oldest_by']:
                types = dict((row['name'], row['type']) for row in fetch_dicts(
                    cursor, COLUMN_TYPES_QUERY, dict(schema=schema, table=table)))
                primary_key = [row['column_name'] for row in fetch_dicts(
                    cursor, PRIMARY_KEY_QUERY, dict(schema=schema, table=table))]
                named = [c for c in [constraint['rename_column']] + list(constraint['keep_oldest_by'] or []) if c]
                missing = [c for c in named if c not in types]
                try:
                    if missing:
                        raise ValueError('column(s) %s named by rename_column/keep_oldest_by do not exist in %s.%s'
                                         % (', '.join(missing), schema, table))
                    if constraint['on_duplicates'] == 'rename':
                        renaming = rename_plan(schema, table, columns, types, primary_key,
                                               constraint['rename_column'], constraint['keep_oldest_by'])
                except ValueError as error:
                    problems.append('constraint "%s": on_duplicates=%s with these options is not possible: %s'
                                    % (constraint['name'], constraint['on_duplicates'], error))
                    continue
            cursor.execute('SAVEPOINT pgzd_duplicates')
            try:
                found = find_duplicates(cursor, sql, schema, table, columns, params['sample_ids'], params['max_groups'])
            except Exception as error:  # psycopg2 and psycopg 3 errors share no importable base here
                cursor.execute('ROLLBACK TO SAVEPOINT pgzd_duplicates')
                problems.append('constraint "%s" on %s.%s (%s): %s' % (constraint['name'], schema, table,
                                                                       ', '.join(columns), error_text(error)))
                continue
            found.pop('primary_key')
            entry.update(found)
            if not entry['groups']:
                continue
            result['duplicates_found'] = True
            report = format_duplicate_report(constraint['name'], schema, table, columns, entry['row_id'],
                                             entry['groups'], entry['total_groups'], entry['total_rows'])
            if constraint['on_duplicates'] == 'rename':
                rename, order = renaming
                report[0] += ('; on_duplicates=rename: all but the oldest row of each key (by %s) get a suffix on '
                              '"%s", recorded in the audit table' % (', '.join(order), rename))
            else:
                blocking.append(constraint['name'])
            result['report'].extend(report)
    finally:
        cursor.execute('ROLLBACK')
        connection.close()
    if problems:
        module.fail_json(msg='The planned constraints cannot be %s; nothing was changed:\n- %s'
                             % ('applied' if params['state'] == 'present' else 'rolled back', '\n- '.join(problems)),
                         **result)
    if blocking and params['fail_on_duplicates']:
        module.fail_json(msg='Duplicate keys block the planned unique constraint(s) %s; nothing was changed.\n%s\n'
                             'What to do: resolve the duplicates (merge or rename the rows listed, by id), then '
                             'rerun; the run checks again before any DDL. Or opt in to the audited rename with '
                             'on_duplicates: rename (README.md, "Duplicate keys").'
                             % (', '.join(blocking), '\n'.join(result['report'])), **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
