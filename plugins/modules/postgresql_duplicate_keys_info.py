#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: postgresql_duplicate_keys_info
short_description: Find the rows that would block a planned unique constraint
description:
  - Read-only. For each planned unique constraint, groups the table's rows by the constraint's columns and
    reports every key held by more than one row, with its row count and up to O(sample_ids) row ids (the
    primary key, or C(ctid) for a table without one), largest groups first, and the totals.
  - Rows with a NULL in any key column are not duplicates, as for PostgreSQL's default C(NULLS DISTINCT).
  - Runs in a read-only transaction. It reads each table in full, so it takes as long as a sequential scan.
  - With O(fail_on_duplicates=true) the task fails with the report, so a migration stops before any DDL.
version_added: '0.1.0'
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
  schema:
    description: Default schema of the constraints' tables.
    type: str
    default: public
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
    support: none
author:
  - pg-zero-downtime maintainers
extends_documentation_fragment:
  - community.postgresql.postgres
'''

EXAMPLES = r'''
- name: Prove Class(name, grade) can become unique
  postgresql_duplicate_keys_info:
    login_db: app
    constraints:
      - name: Class_name_grade_key
        table: Class
        columns: [name, grade]
'''

RETURN = r'''
constraints:
  description: Per constraint, C(name), C(schema), C(table), C(columns), C(row_id) (the column(s) naming a
    row), C(total_groups), C(total_rows) and C(groups) (C(key), C(rows), C(sample_ids)).
  returned: always
  type: list
  elements: dict
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
from ansible.module_utils.online_index import error_text, fetch_dicts, identifier_error, sql_module
from ansible.module_utils.unique_keys import PRIMARY_KEY_QUERY, duplicate_groups_query, format_duplicate_report
from ansible_collections.community.postgresql.plugins.module_utils.postgres import (
    connect_to_db,
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
        )),
        schema=dict(type='str', default='public'),
        sample_ids=dict(type='int', default=5),
        max_groups=dict(type='int', default=20),
        fail_on_duplicates=dict(type='bool', default=True),
        session_role=dict(type='str'),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    problems = []
    for constraint in params['constraints']:
        for kind, value in [('constraint name', constraint['name']), ('table', constraint['table'])] + \
                [('column', column) for column in constraint['columns']]:
            error = identifier_error(kind, value)
            if error:
                problems.append('constraint "%s": %s' % (constraint['name'], error))
        if not constraint['columns']:
            problems.append('constraint "%s" has no columns' % constraint['name'])
    if problems:
        module.fail_json(msg='The planned constraints are malformed; nothing was read:\n- %s' % '\n- '.join(problems))

    ensure_required_libs(module)
    connection, dummy = connect_to_db(module, get_conn_params(module, params), autocommit=True)
    sql = sql_module()
    cursor = connection.cursor()
    result = dict(changed=False, constraints=[], duplicates_found=False, report=[])
    cursor.execute('BEGIN TRANSACTION READ ONLY')
    try:
        for constraint in params['constraints']:
            schema, table, columns = constraint['schema'] or params['schema'], constraint['table'], constraint['columns']
            primary_key = [row['column_name'] for row in fetch_dicts(cursor, PRIMARY_KEY_QUERY,
                                                               dict(schema=schema, table=table))]
            if primary_key:
                row_id = sql.SQL(" || ',' || ").join(sql.SQL('{}::text').format(sql.Identifier(c)) for c in primary_key)
                id_label = '/'.join(primary_key)
            else:
                row_id, id_label = sql.SQL('ctid::text'), 'ctid'
            cursor.execute('SAVEPOINT pgzd_duplicates')
            try:
                groups = fetch_dicts(cursor, duplicate_groups_query(sql, schema, table, columns, row_id,
                                                              params['sample_ids'], params['max_groups']))
            except Exception as error:  # psycopg2 and psycopg 3 errors share no importable base here
                cursor.execute('ROLLBACK TO SAVEPOINT pgzd_duplicates')
                problems.append('constraint "%s" on %s.%s (%s): %s' % (constraint['name'], schema, table,
                                                                     ', '.join(columns), error_text(error)))
                continue
            total_groups = int(groups[0]['total_groups']) if groups else 0
            total_rows = int(groups[0]['total_rows']) if groups else 0
            entry = dict(name=constraint['name'], schema=schema, table=table, columns=columns, row_id=id_label,
                         total_groups=total_groups, total_rows=total_rows,
                         groups=[dict(key=g['key'], rows=int(g['rows']), sample_ids=g['sample_ids']) for g in groups])
            result['constraints'].append(entry)
            if groups:
                result['duplicates_found'] = True
                result['report'].extend(format_duplicate_report(constraint['name'], schema, table, columns, id_label,
                                                                entry['groups'], total_groups, total_rows))
    finally:
        cursor.execute('ROLLBACK')
        connection.close()
    if problems:
        module.fail_json(msg='The planned constraints cannot be checked; nothing was changed:\n- %s'
                             % '\n- '.join(problems), **result)
    if result['duplicates_found'] and params['fail_on_duplicates']:
        module.fail_json(msg='Duplicate keys block the planned unique constraint(s); nothing was changed.\n%s\n'
                             'What to do: resolve the duplicates (merge or rename the rows listed, by id), then '
                             'rerun; the run checks again before any DDL.' % '\n'.join(result['report']),
                         **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
