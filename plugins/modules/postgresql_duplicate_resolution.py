#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: postgresql_duplicate_resolution
short_description: Rename the rows that block a unique constraint, with an audit trail to undo it
description:
  - Opt-in resolution of duplicate keys before a unique constraint is added. It deletes nothing.
  - With O(state=resolved), in each group of rows sharing the constraint's key (rows with a NULL key column
    are not duplicates), the oldest row is kept as it is. Oldest means first by O(keep_oldest_by), then by
    primary key. Every other row of the group gets a visible suffix on O(rename_column), for example
    C(Math) becomes C(Math [duplicate <row id>]). The row id makes the new value unique.
  - Every change is written, in the same transaction as the renames, to the audit table
    O(audit_schema).O(audit_table). Each audit row holds the run id, constraint, table, column, the row's
    primary key (jsonb), the old value and the new value. Nothing is changed when the table has no
    duplicates. The transaction is rolled back if any duplicate is left after the renames.
  - With O(state=restored), puts the old values back for this constraint's audit rows not yet restored.
    It does so only where the row still holds the value the resolution gave it, and marks those audit rows
    restored. A row deleted or edited since then is left alone and reported. Run it after the constraint is
    dropped. With the constraint still in place, restoring the duplicates fails and changes nothing.
  - The table needs a primary key (it names each row in the audit).
version_added: '0.3.0'
options:
  name:
    description: Name of the unique constraint the duplicates block (recorded in the audit).
    type: str
    required: true
  table:
    description: Table name, exactly as in the catalog.
    type: str
    required: true
  schema:
    description: Schema of the table.
    type: str
    default: public
  columns:
    description: The constraint's columns.
    type: list
    elements: str
    required: true
  state:
    description: C(resolved) renames the duplicates, C(restored) puts the recorded old values back.
    type: str
    choices: [resolved, restored]
    default: resolved
  rename_column:
    description:
      - The key column that gets the suffix; it must be of type text or varchar. By default, the first of
        O(columns) of such a type.
    type: str
  keep_oldest_by:
    description:
      - Columns that order each group, oldest first; the first row is kept. By default C(createdAt) when
        the table has it, otherwise the primary key.
    type: list
    elements: str
  audit_schema:
    description: Schema of the audit table; created when missing.
    type: str
    default: pgzd_audit
  audit_table:
    description: Name of the audit table; created when missing.
    type: str
    default: duplicate_resolution
  run_id:
    description: Label of this resolution in the audit (for example the plan name and a timestamp).
    type: str
    default: manual
  lock_timeout:
    description: lock_timeout of the transaction (row locks held by the application); it is retried.
    type: str
    default: 2s
extends_documentation_fragment:
  - pg_zero_downtime.migrations.common
  - pg_zero_downtime.migrations.lock_retries
  - pg_zero_downtime.migrations.migration_lock
  - pg_zero_downtime.migrations.connection
  - community.postgresql.postgres
'''

EXAMPLES = r'''
- name: Rename all but the oldest Class of each (name, grade)
  pg_zero_downtime.migrations.postgresql_duplicate_resolution:
    login_db: app
    name: Class_name_grade_key
    table: Class
    columns: [name, grade]
    run_id: t12-20261125T0300

- name: Put the original names back (after the constraint is dropped)
  pg_zero_downtime.migrations.postgresql_duplicate_resolution:
    login_db: app
    name: Class_name_grade_key
    table: Class
    columns: [name, grade]
    state: restored
'''

RETURN = r'''
rows:
  description:
    - The rows changed (in check mode, the rows a real run would change). Each has C(schema), C(table),
      C(column), C(row_key) (the primary key, a dict), C(old) and C(new) (C(new) is the restored value
      for O(state=restored)).
  returned: always
  type: list
  elements: dict
not_restored:
  description: With O(state=restored), audit rows left as they are (row gone, or its value edited since), with the reason.
  returned: always
  type: list
  elements: dict
audit:
  description: The audit table, schema-qualified.
  returned: always
  type: str
  sample: pgzd_audit.duplicate_resolution
queries:
  description: The statements executed (with O(state=resolved) in check mode, the ones a real run would execute).
  returned: always
  type: list
  elements: str
'''


from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.connection import (
    connect_checked, connection_argument_spec,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.plan.identifiers import identifier_error
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.duplicate_resolution import (
    ResolutionError, Resolver, run_in_transaction,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.unique_constraint import (
    CONSTRAINT_OPTIONS, validate_constraint,
)


def main():
    argument_spec = connection_argument_spec(**CONSTRAINT_OPTIONS)
    argument_spec.update(
        state=dict(type='str', default='resolved', choices=['resolved', 'restored']),
        rename_column=dict(type='str'),
        keep_oldest_by=dict(type='list', elements='str'),
        audit_schema=dict(type='str', default='pgzd_audit'),
        audit_table=dict(type='str', default='duplicate_resolution'),
        run_id=dict(type='str', default='manual'),
        lock_timeout=dict(type='str', default='2s'),
        lock_retries=dict(type='int', default=5),
        lock_retry_delay=dict(type='float', default=1.0),
        lock_session_pid=dict(type='int', default=0),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    errors = validate_constraint(params['name'], params['schema'], params['table'], params['columns'])
    for kind in ('audit_schema', 'audit_table', 'rename_column'):
        error = identifier_error(kind, params[kind]) if params[kind] is not None else None
        if error:
            errors.append(error)
    if errors:
        module.fail_json(msg='Duplicate resolution refused; nothing was changed:\n- %s' % '\n- '.join(errors))

    connection = connect_checked(module, [('lock_timeout', 'lock_timeout')], changed=False, queries=[], rows=[],
                                 not_restored=[])
    resolver = Resolver(connection, params)
    result = dict(changed=False, rows=[], not_restored=[], audit=resolver.audit_name, queries=[])
    try:
        if params['state'] == 'resolved':
            result['rows'], result['queries'] = run_in_transaction(
                resolver, lambda: resolver.resolve(module.check_mode), module.check_mode, module.warn)
        else:
            result['rows'], result['not_restored'], result['queries'] = run_in_transaction(
                resolver, lambda: resolver.restore(module.check_mode), module.check_mode, module.warn)
    except ResolutionError as error:
        connection.close()
        module.fail_json(msg='Duplicate %s of constraint "%s" on %s.%s failed and was rolled back; nothing was '
                             'changed: %s' % ('resolution' if params['state'] == 'resolved' else 'restore',
                                              params['name'], params['schema'], params['table'], error), **result)
    connection.close()
    result['changed'] = bool(result['rows'])
    for entry in result['not_restored']:
        module.warn('not restored: %s row %s: %s' % (entry['column'], entry['row_key'], entry['reason']))
    module.exit_json(**result)


if __name__ == '__main__':
    main()
