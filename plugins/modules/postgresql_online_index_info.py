#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: postgresql_online_index_info
short_description: Check a whole index plan against a live database and report what each table needs
description:
  - Read-only preflight for M(pg_zero_downtime.migrations.postgresql_online_index), over every table of a plan in one connection.
    It applies the same validation (tables, columns, identifiers, duplicates, methods, predicates) and the
    same decisions, so one call proves the whole plan applicable before the first DDL of a migration, and
    tells which tables have work left (a rerun of a finished migration then touches no table).
  - Fails, listing every problem of every table, when any part of the plan cannot be applied. A schema that does
    not exist is one problem, not one per table. Before a unique index is built, the data is checked for duplicate
    keys (among the rows its predicate covers), reported like a unique constraint's. O(baseline_queries) are read
    by PostgreSQL's parser (one read-only SELECT each, its parameter queries too) so that a plan whose baseline
    would be refused fails here, before the first DDL.
  - Changes nothing, in check mode or not. To prove each definition acceptable (method limits, operator
    classes, predicates) it builds it on an empty temporary copy of the table inside a transaction that is
    rolled back; the real table is only read-locked for an instant.
version_added: '0.2.0'
options:
  schema:
    description:
      - Default schema of the tables.
    type: str
    default: public
  baseline_queries:
    description:
      - The plan's baseline queries (C(name), C(sql), C(params)), checked as M(pg_zero_downtime.migrations.postgresql_query_baseline) will
        check them; nothing of them runs here.
    type: list
    elements: dict
    default: []
  sample_ids:
    description: Row ids shown per duplicate key of a planned unique index (0 or more; every key is counted anyway).
    type: int
    default: 5
  state:
    description:
      - The state the plan should reach. V(absent) checks a rollback.
    type: str
    choices: [present, absent]
    default: present
  lock_timeout:
    description:
      - C(lock_timeout) of the session; the catalog reads take no lock that waits, but a predicate check
        briefly read-locks its table.
    type: str
    default: 5s
extends_documentation_fragment:
  - pg_zero_downtime.migrations.common
  - pg_zero_downtime.migrations.ledger
  - pg_zero_downtime.migrations.plan_tables
  - pg_zero_downtime.migrations.plan_trust
  - pg_zero_downtime.migrations.connection
  - community.postgresql.postgres
'''

EXAMPLES = r'''
- name: Prove the whole plan applicable before any DDL
  pg_zero_downtime.migrations.postgresql_online_index_info:
    login_db: app
    tables:
      - name: Job
        indexes:
          - name: Job_createdAt_idx
            columns: [createdAt]
  register: preflight

- name: Show the tables with work left
  ansible.builtin.debug:
    var: preflight.pending_tables
'''

RETURN = r'''
tables:
  description: One entry per table, in plan order.
  returned: always
  type: list
  elements: dict
  contains:
    schema:
      description: Schema of the table.
      type: str
    name:
      description: Table name.
      type: str
    pending:
      description: Names of the indexes that need DDL.
      type: list
      elements: str
    indexes:
      description:
        - Per index, C(name), C(action) (created, rebuilt, unchanged, dropped), C(statements) and
          C(estimated_bytes) (the estimated size of an index to build, from the table's statistics).
      type: list
      elements: dict
estimated_bytes:
  description:
    - Estimated total size of the indexes still to build (rows from C(pg_class.reltuples), column widths from
      C(pg_stats)), for the disk-space check. It is a b-tree estimate, so run ANALYZE first for a good one.
  returned: always
  type: int
data_directory:
  description: The server's data directory, when the login may read it (superuser or pg_read_all_settings); else null.
  returned: always
  type: str
pending_tables:
  description: Names of the tables with at least one index to create, rebuild or drop.
  returned: always
  type: list
  elements: str
  sample: [Job, XPAudit]
queries:
  description: The DDL statements the plan needs now, in order (nothing is executed).
  returned: always
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.connection import (
    connect_or_fail, connection_argument_spec,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.plan.plan_schema import module_option
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.online_index import OnlineIndexRunner
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.plan.plan_proof import (
    index_problems_message, prove_indexes,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.statements import fetch_dicts
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.evidence.query_baseline import query_problems
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.unique_keys import sample_size_errors


def main():
    argument_spec = connection_argument_spec(
        tables=module_option('tables'),
        schema=dict(type='str', default='public'),
        baseline_queries=dict(type='list', elements='dict', default=[]),
        sample_ids=dict(type='int', default=5),
        state=dict(type='str', default='present', choices=['present', 'absent']),
        lock_timeout=dict(type='str', default='5s'),
        trusted=dict(type='list', elements='str', default=[]),
        plan_name=dict(type='str', default='manual'),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    params['tables'] = params['tables'] or []  # a plan of constraints only has no tables to read
    errors = sample_size_errors(params)
    if errors:
        module.fail_json(msg='Invalid options; nothing was read:\n- %s' % '\n- '.join(errors), changed=False)
    connection = connect_or_fail(module)
    runner = OnlineIndexRunner(connection, lock_timeout=params['lock_timeout'], trusted=params['trusted'],
                               plan_name=params['plan_name'])

    proof = prove_indexes(runner, params['tables'], params['schema'], params['state'], params['sample_ids'])
    problems = query_problems(params['baseline_queries']) + proof.pop('problems')
    result = dict(proof, changed=False, data_directory=None)
    if params['state'] == 'present':
        # Readable by superusers and pg_read_all_settings members only; the disk check falls back to a budget.
        try:
            result['data_directory'] = fetch_dicts(runner.cursor, "SELECT pg_catalog.current_setting('data_directory') "
                                                                  "AS path")[0]['path']
        except Exception:  # psycopg2 and psycopg 3 errors share no importable base here
            result['data_directory'] = None
    connection.close()
    if problems:
        module.fail_json(msg=index_problems_message(problems), **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
