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
version_added: '0.3.0'
options:
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
    description: How many row ids to list per duplicate key (0 or more; every row is counted whatever it is).
    type: int
    default: 5
  max_groups:
    description: How many duplicate keys to list per constraint (0 or more; the totals count all of them).
    type: int
    default: 20
  fail_on_duplicates:
    description: Fail the task, with the report, when any constraint has duplicates.
    type: bool
    default: true
extends_documentation_fragment:
  - pg_zero_downtime.migrations.common
  - pg_zero_downtime.migrations.ledger
  - pg_zero_downtime.migrations.plan_constraints
  - pg_zero_downtime.migrations.plan_trust
  - pg_zero_downtime.migrations.connection
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
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.connection import (
    connect_or_fail, connection_argument_spec,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.plan.plan_proof import (
    constraint_problems_message, duplicates_message, prove_constraints,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.online_constraint import ConstraintRunner
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.unique_constraint import PLAN_CONSTRAINT_OPTIONS
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.unique_keys import sample_size_errors


def main():
    argument_spec = connection_argument_spec(
        constraints=dict(type='list', elements='dict', default=[], options=PLAN_CONSTRAINT_OPTIONS),
        schema=dict(type='str', default='public'),
        state=dict(type='str', choices=['present', 'absent'], default='present'),
        sample_ids=dict(type='int', default=5),
        max_groups=dict(type='int', default=20),
        fail_on_duplicates=dict(type='bool', default=True),
        trusted=dict(type='list', elements='str', default=[]),
        plan_name=dict(type='str', default='manual'),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    errors = sample_size_errors(params)
    if errors:
        module.fail_json(msg='Invalid options; nothing was read:\n- %s' % '\n- '.join(errors), changed=False)
    connection = connect_or_fail(module)
    runner = ConstraintRunner(connection, trusted=params['trusted'], plan_name=params['plan_name'])
    try:
        proof = prove_constraints(runner, params['constraints'], params['schema'], params['state'], params['sample_ids'],
                                  params['max_groups'])
    finally:
        connection.close()
    problems, blocking = proof.pop('problems'), proof.pop('blocking')
    result = dict(proof, changed=False)
    if problems:
        module.fail_json(msg=constraint_problems_message(problems, params['state']), **result)
    if blocking and params['fail_on_duplicates']:
        module.fail_json(msg=duplicates_message(blocking, result['report']), **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
