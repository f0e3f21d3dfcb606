#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: postgresql_migration_ledger
short_description: Adopt into the ledger what a plan made before the ledger existed
description:
  - A rollback undoes only what the ledger (C(pgzd_audit.ledger)) attributes to its plan. A database migrated by
    version 0.16 or earlier has objects no ledger row names, and a rollback leaves them all alone. This module
    records them once, so that a rollback of the plan undoes them (docs/trust-and-ledger.md, "The ledger").
  - It records, as C(applied), under run id O(run_id) and with C(adopted) true in C(prior), only what is in
    place exactly as the plan defines it and no open ledger row (of any plan) names yet. Each planned index whose action
    would be C(unchanged) (kind C(index), with C(pg_get_indexdef)); for an C(on_mismatch=replace) entry whose index
    carries the replacement record version 0.16 wrote in its comment, that replacement instead (kind
    C(replaced_index), with the recorded definition and comment as C(prior)). Each planned unique constraint, foreign
    key and check in place as planned (kind C(constraint), with C(pg_get_constraintdef)), and the index of a foreign
    key's C(index). Each planned NOT NULL that is set, with no helper check left (kind C(not_null), C(nullable) true in
    its C(prior)), unless the column is one of the primary key, an identity column, a column of the replica
    identity index or NOT NULL by its partitioned parent. And each rename of duplicates of the plan's unique
    constraints still in the audit table, by a run of the plan (run id C(<plan>-...)), one row per constraint and
    audit run (kind C(renamed_rows)).
  - Anything else is listed in RV(not_adopted) with the reason (absent, not finished, not as the plan defines it,
    already in the ledger). A rerun adopts nothing more.
  - Every row is written in one transaction, after proving that the run still holds its migration lock
    (O(lock_session_pid)). The same transaction clears the replacement record comments of the replacements adopted
    (C(COMMENT ON INDEX ... IS NULL)). The ledger holds that record from then on, and a rollback gives the index it
    restores its own comment back. Nothing else of the schema changes.
  - Check mode returns what would be recorded, and the statements, and changes nothing.
version_added: '0.17.0'
options:
  schema:
    description: Default schema of the plan's tables and constraints.
    type: str
    default: public
  run_id:
    description:
      - The run id the ledger rows get. By default C(<plan_name>-adopted-<UTC time>), as C(playbooks/adopt.yml) names
        it.
    type: str
  audit_schema:
    description: Schema of the audit table of duplicate renames (as the constraint phase's).
    type: str
    default: pgzd_audit
  audit_table:
    description: Name of the audit table of duplicate renames (as the constraint phase's).
    type: str
    default: duplicate_resolution
attributes:
  diff_mode:
    description: Returns no diff; RV(adopted) says what is recorded.
    support: none
notes:
  - Run it through C(playbooks/adopt.yml), which loads the plan and takes the migration lock of the database first.
  - The login needs C(CREATE) on the database when the ledger does not exist yet (or the rights on the table), and to
    own the indexes whose replacement record comment it clears.
extends_documentation_fragment:
  - pg_zero_downtime.migrations.common
  - pg_zero_downtime.migrations.ledger
  - pg_zero_downtime.migrations.plan_tables
  - pg_zero_downtime.migrations.plan_constraints
  - pg_zero_downtime.migrations.plan_trust
  - pg_zero_downtime.migrations.migration_lock
  - pg_zero_downtime.migrations.connection
  - community.postgresql.postgres
'''

EXAMPLES = r'''
- name: Adopt what version 0.16 made of plan t12 into its ledger
  pg_zero_downtime.migrations.postgresql_migration_ledger:
    login_db: app
    plan_name: t12
    run_id: t12-adopted-20261204T101500Z
    lock_session_pid: "{{ ansible_facts.pgzd_lock_session_pid }}"
    tables:
      - name: Job
        indexes:
          - {name: Job_teacherId_status_idx, columns: [teacherId, status]}
    constraints:
      - {name: Class_name_grade_key, table: Class, type: unique, columns: [name, grade]}
      - {name: Class_teacherId_not_null, table: Class, type: not_null, column: teacherId}
'''

RETURN = r'''
run_id:
  description: The run id of the rows recorded.
  returned: always
  type: str
  sample: t12-adopted-20261204T101500Z
adopted:
  description:
    - The rows recorded (in check mode, to record), in plan order. Each has C(kind), C(schema), C(table), C(name) (the
      index, constraint or column), C(definition), C(prior) and C(cleared_comment) (the replacement record comment
      cleared, or null).
  returned: always
  type: list
  elements: dict
  sample:
    - kind: index
      schema: public
      table: Job
      name: Job_teacherId_status_idx
      definition: CREATE INDEX "Job_teacherId_status_idx" ON public."Job" USING btree ("teacherId", status)
      prior: {adopted: true}
      cleared_comment: null
not_adopted:
  description: The plan's objects not recorded, each with C(kind), C(schema), C(table), C(name) and C(reason).
  returned: always
  type: list
  elements: dict
  sample:
    - kind: not_null
      schema: public
      table: Job
      name: id
      reason: 'it is a column of the primary key, which makes it NOT NULL: no plan set it'
queries:
  description: The statements executed, in order (in check mode, the statements a real run would execute).
  returned: always
  type: list
  elements: str
summary:
  description: What was adopted (or would be, in check mode) and what was not, and why, one line each.
  returned: always
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.connection import (
    connect_or_fail, connection_argument_spec,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.plan.plan_schema import module_option
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.run.ledger_adoption import (
    Adoption, AdoptionError, adopted_run_id, summary_lines,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.online_constraint import ConstraintRunner
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.statements import error_text
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.unique_constraint import (
    PLAN_CONSTRAINT_OPTIONS,
)


def main():
    argument_spec = connection_argument_spec(
        schema=dict(type='str', default='public'),
        tables=module_option('tables'),
        constraints=dict(type='list', elements='dict', default=[], options=PLAN_CONSTRAINT_OPTIONS),
        plan_name=dict(type='str', default='manual'),
        run_id=dict(type='str'),
        audit_schema=dict(type='str', default='pgzd_audit'),
        audit_table=dict(type='str', default='duplicate_resolution'),
        lock_session_pid=dict(type='int', default=0),
        trusted=dict(type='list', elements='str', default=[]),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    run_id = params['run_id'] or adopted_run_id(params['plan_name'])
    result = dict(changed=False, run_id=run_id, adopted=[], not_adopted=[], queries=[], summary=[])
    connection = connect_or_fail(module, **result)
    try:
        runner = ConstraintRunner(connection, trusted=params['trusted'], plan_name=params['plan_name'], run_id=run_id)
        adoption = Adoption(runner, params['plan_name'], run_id, params['audit_schema'], params['audit_table'])
        records, refusals = adoption.decide(params['tables'] or [], params['constraints'], params['schema'])
        result.update(adopted=records, not_adopted=refusals, changed=bool(records))
        if module.check_mode:
            if records:
                adoption.prove_writable()
            result['queries'] = [adoption.render(statement) for statement in adoption.statements(records)]
        elif records:
            result['queries'] = adoption.write(records, params['lock_session_pid'])
    except AdoptionError as error:
        result['changed'] = False
        module.fail_json(msg=str(error), **result)
    except Exception as error:  # psycopg2 and psycopg 3 errors share no importable base here
        result['changed'] = False
        module.fail_json(msg='Nothing was adopted: the catalog could not be read (%s). Rerun once that is fixed.'
                         % error_text(error), **result)
    finally:
        connection.close()
    result['summary'] = summary_lines(params['plan_name'], run_id, result['adopted'], result['not_adopted'],
                                      module.check_mode)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
