#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: postgresql_prisma_migration
short_description: Record a Prisma migration as applied in _prisma_migrations (or remove that record)
description:
  - Keeps Prisma's migration history in step with a migration applied online. With O(state=present) it writes
    the row C(prisma migrate resolve --applied) writes, so a later C(prisma migrate deploy) does not run the
    blocking SQL of that migration. The row has a new UUID as id, the checksum of O(migration_sql) (hex
    SHA-256, as Prisma computes it), the migration name, C(started_at) = C(finished_at) = now and
    C(applied_steps_count) 0. Its C(logs) says that pg-zero-downtime applied it, with the run id.
  - Idempotent. A row already recorded as applied with the same checksum (line ends LF or CRLF, as Prisma
    compares) changes nothing. A row recorded with another checksum fails, because the file changed after it
    was applied. Unfinished attempts (a failed C(prisma migrate deploy)) are marked rolled back first, as
    C(prisma migrate resolve --applied) does.
  - With O(state=absent) (rollback) it deletes only the rows this tool wrote (C(logs) starting with
    C(pg-zero-downtime)). A row Prisma wrote itself is left alone and reported in RV(kept).
  - Works in one transaction that holds Prisma's own migration lock (advisory lock 72707369) for its duration.
    When a C(prisma migrate) command holds that lock, the module fails at once and names the session.
  - Refuses when the table does not exist, unless O(create_table=true), which creates it as Prisma does.
version_added: '0.6.0'
options:
  migration_name:
    description: The migration's folder name under C(prisma/migrations), for example C(20241125000000_t12_indexes).
    type: str
    required: true
  migration_sql:
    description:
      - The content of the migration's C(migration.sql), exactly as in the file (read it with
        C(lookup('ansible.builtin.file', path, rstrip=false))). Required with O(state=present).
    type: str
  state:
    description: C(present) records the migration as applied; C(absent) removes the record this tool wrote.
    type: str
    choices: [present, absent]
    default: present
  schema:
    description: Schema of Prisma's migrations table (the schema of the Prisma datasource).
    type: str
    default: public
  table:
    description: Name of Prisma's migrations table.
    type: str
    default: _prisma_migrations
  create_table:
    description: Create the table, as Prisma does, when it does not exist (otherwise the module refuses).
    type: bool
    default: false
  run_id:
    description: Label of this run, written to the row's C(logs).
    type: str
    default: manual
  lock_timeout:
    description: lock_timeout of the transaction; it is retried after a lock timeout or deadlock.
    type: str
    default: 2s
attributes:
  diff_mode:
    description: Returns the catalog state before and after (what would change, in check mode) with C(--diff).
    support: full
extends_documentation_fragment:
  - pg_zero_downtime.migrations.common
  - pg_zero_downtime.migrations.migration_lock
  - pg_zero_downtime.migrations.lock_retries
  - pg_zero_downtime.migrations.connection
  - community.postgresql.postgres
'''

EXAMPLES = r'''
- name: Record the T12 migration as applied, so prisma migrate deploy skips its blocking SQL
  pg_zero_downtime.migrations.postgresql_prisma_migration:
    login_db: app
    migration_name: 20241125000000_t12_indexes
    migration_sql: "{{ lookup('ansible.builtin.file', 'prisma/migrations/20241125000000_t12_indexes/migration.sql', rstrip=false) }}"
    run_id: t12-20261125T030000Z

- name: Remove that record again (rollback)
  pg_zero_downtime.migrations.postgresql_prisma_migration:
    login_db: app
    migration_name: 20241125000000_t12_indexes
    state: absent
'''

RETURN = r'''
action:
  description: C(recorded), C(unchanged) (already recorded with this checksum), C(removed), or C(absent) (nothing to remove).
  returned: always
  type: str
  sample: recorded
checksum:
  description: The checksum of O(migration_sql), as Prisma computes it.
  returned: when O(state=present)
  type: str
migration:
  description: The row recorded (or found) for the migration, when there is one.
  returned: always
  type: dict
rolled_back:
  description: Ids of unfinished attempts marked rolled back before the record was written.
  returned: always
  type: list
  elements: str
removed:
  description: Ids of the rows removed (O(state=absent)).
  returned: always
  type: list
  elements: str
kept:
  description: Rows of this migration left in place by O(state=absent) because Prisma wrote them, with the reason.
  returned: always
  type: list
  elements: dict
table:
  description: Prisma's migrations table, schema-qualified.
  returned: always
  type: str
  sample: public._prisma_migrations
queries:
  description: The statements executed (in check mode, the ones a real run would execute).
  returned: always
  type: list
  elements: str
summary:
  description: What happened to the record, in one sentence for the play's output.
  returned: success
  type: str
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.connection import (
    connect_checked, connection_argument_spec,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.plan.identifiers import identifier_error
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.prisma.prisma_history import (
    ACTION_RECORDED,
    ACTION_REMOVED,
    History,
    HistoryError,
    history_summary,
    migration_name_error,
    render_checksum,
    run_in_transaction,
)


def main():
    argument_spec = connection_argument_spec(
        migration_name=dict(type='str', required=True),
        migration_sql=dict(type='str'),
        state=dict(type='str', default='present', choices=['present', 'absent']),
        schema=dict(type='str', default='public'),
        table=dict(type='str', default='_prisma_migrations'),
        create_table=dict(type='bool', default=False),
        run_id=dict(type='str', default='manual'),
        lock_timeout=dict(type='str', default='2s'),
        lock_retries=dict(type='int', default=5),
        lock_retry_delay=dict(type='float', default=1.0),
        lock_session_pid=dict(type='int', default=0),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           required_if=[('state', 'present', ['migration_sql'])])
    params = module.params
    errors = [error for error in (migration_name_error(params['migration_name']),
                                  identifier_error('schema', params['schema']),
                                  identifier_error('table', params['table'])) if error]
    if params['state'] == 'present' and not (params['migration_sql'] or '').strip():
        errors.append('migration_sql is empty: pass the content of the migration.sql, not its path')
    result = dict(changed=False, action=None, migration={}, rolled_back=[], removed=[], kept=[], queries=[],
                  table='%s.%s' % (params['schema'], params['table']))
    if params['state'] == 'present' and params['migration_sql']:
        result['checksum'] = render_checksum(params['migration_sql'])
    if errors:
        module.fail_json(msg='Prisma history change refused; nothing was changed:\n- %s' % '\n- '.join(errors), **result)

    connection = connect_checked(module, [('lock_timeout', 'lock_timeout')], **result)
    history = History(connection, params, dry_run=module.check_mode)
    try:
        result.update(run_in_transaction(history, module.warn))
    except HistoryError as error:
        connection.close()
        module.fail_json(msg='Prisma migration %s was not %s; nothing was changed: %s' % (
            params['migration_name'], 'recorded' if params['state'] == 'present' else 'removed', error), **result)
    connection.close()
    result['queries'] = history.queries
    result['changed'] = result['action'] in (ACTION_RECORDED, ACTION_REMOVED)
    result['summary'] = history_summary(result, params['migration_name'])
    for row in result['kept']:
        module.warn('kept %s row %s: %s' % (result['table'], row['id'], row['reason']))
    if module._diff:
        recorded = result['action'] in (ACTION_RECORDED, 'unchanged')
        result['diff'] = dict(
            before=dict(migration_name=params['migration_name'],
                        recorded=result['action'] in ('unchanged', ACTION_REMOVED)),
            after=dict(migration_name=params['migration_name'], recorded=recorded))
    module.exit_json(**result)


if __name__ == '__main__':
    main()
