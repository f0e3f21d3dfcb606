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
version_added: '0.1.0'
options:
  login_db:
    description: Name of the database to connect to.
    type: str
    aliases: [db]
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
  session_role:
    description: Switch to this role after connecting.
    type: str
attributes:
  check_mode:
    support: full
  diff_mode:
    description: Returns the catalog state before and after (what would change, in check mode) with C(--diff).
    support: full
author:
  - pg-zero-downtime maintainers (!UNKNOWN)
extends_documentation_fragment:
  - pg_zero_downtime.migrations.lock_retries
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
'''

import uuid

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.connection import connect_or_fail
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.identifiers import identifier_error
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.advisory_locks import advisory_lock_holders
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session import (
    error_text, fetch_dicts, option_errors, run_transaction, sql_module,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.prisma_history import (
    ACTION_ABSENT,
    ACTION_RECORDED,
    ACTION_REMOVED,
    CREATE_TABLE_TEMPLATE,
    PRISMA_ADVISORY_LOCK,
    PRISMA_COLUMNS,
    decide,
    log_entry,
    migration_name_error,
    render_checksum,
)
from ansible_collections.community.postgresql.plugins.module_utils.postgres import (
    ensure_required_libs,
    get_conn_params,
    postgres_common_argument_spec,
)

TABLE_COLUMNS_QUERY = (
    "SELECT a.attname AS name FROM pg_catalog.pg_attribute a "
    "WHERE a.attrelid = pg_catalog.to_regclass(%(qualified)s) AND a.attnum > 0 AND NOT a.attisdropped")


class HistoryError(Exception):
    """A problem the operator has to act on; the transaction was rolled back."""


class History(object):
    def __init__(self, module, connection):
        self.module = module
        self.params = module.params
        self.cursor = connection.cursor()
        self.connection = connection
        self.sql = sql_module()
        self.table_ref = self.sql.SQL('{}.{}').format(self.sql.Identifier(self.params['schema']),
                                                      self.sql.Identifier(self.params['table']))
        self.queries = []

    def _run(self, statement, fetch=True):
        """Execute a composed statement (recorded in queries) unless check mode; return its rows."""
        self.queries.append(statement.as_string(self.connection))
        if self.module.check_mode:
            return []
        self.cursor.execute(statement)
        return [dict(zip([column[0] for column in self.cursor.description], row)) for row in self.cursor.fetchall()] \
            if fetch and self.cursor.description else []

    def work(self):
        """Everything, in the caller's transaction. Returns the result fields."""
        sql = self.sql
        params = self.params
        got_lock = fetch_dicts(self.cursor, 'SELECT pg_catalog.pg_try_advisory_xact_lock(%(key)s) AS got',
                               dict(key=PRISMA_ADVISORY_LOCK))[0]['got']
        if not got_lock:
            holders = advisory_lock_holders(self.cursor, PRISMA_ADVISORY_LOCK)
            raise HistoryError('a `prisma migrate` command holds Prisma\'s migration lock (advisory lock %d)%s: wait '
                               'for it to finish, then rerun' % (PRISMA_ADVISORY_LOCK, ''.join(
                                   ', session pid %(pid)s of %(usename)s (application_name %(application_name)r, '
                                   'client %(client_addr)s, since %(since)s)' % holder for holder in holders)))
        qualified = '%s.%s' % (params['schema'], params['table'])
        quoted = sql.SQL('{}.{}').format(sql.Identifier(params['schema']), sql.Identifier(params['table']))
        columns = set(row['name'] for row in fetch_dicts(self.cursor, TABLE_COLUMNS_QUERY,
                                                         dict(qualified=quoted.as_string(self.connection))))
        fields = dict(migration={}, rolled_back=[], removed=[], kept=[])
        if not columns:
            if params['state'] == 'absent':
                return dict(fields, action=ACTION_ABSENT)
            if not params['create_table']:
                raise HistoryError('table %s does not exist: this database has no Prisma migration history there. '
                                   'Check schema and table (the schema of the Prisma datasource), or set create_table '
                                   '(prisma_create_table=true) to create it as Prisma does' % qualified)
            self._run(sql.SQL(CREATE_TABLE_TEMPLATE).format(table=self.table_ref), fetch=False)
            rows = []
        else:
            missing = [column for column in PRISMA_COLUMNS if column not in columns]
            if missing:
                raise HistoryError('table %s is not Prisma\'s migrations table: it has no column %s'
                                   % (qualified, ', '.join(missing)))
            rows = fetch_dicts(self.cursor, sql.SQL(
                'SELECT id, checksum, migration_name, logs, started_at::text AS started_at, '
                'finished_at::text AS finished_at, rolled_back_at::text AS rolled_back_at, applied_steps_count '
                'FROM {} WHERE migration_name = %(name)s ORDER BY started_at').format(self.table_ref),
                dict(name=params['migration_name']))
        decision = decide(rows, params['state'], params['migration_sql'])
        if decision['error']:
            raise HistoryError(decision['error'])
        fields['kept'] = decision['kept']
        live = [row for row in rows if row['rolled_back_at'] is None and row['finished_at'] is not None]
        fields['migration'] = live[0] if live else {}
        if decision['roll_back']:
            self._run(sql.SQL('UPDATE {} SET rolled_back_at = now() WHERE id IN ({})').format(
                self.table_ref, sql.SQL(', ').join(sql.Literal(id_) for id_ in decision['roll_back'])), fetch=False)
            fields['rolled_back'] = decision['roll_back']
        if decision['action'] == ACTION_RECORDED:
            inserted = self._run(sql.SQL(
                'INSERT INTO {} (id, checksum, logs, started_at, finished_at, migration_name, applied_steps_count) '
                'VALUES ({}, {}, {}, now(), now(), {}, 0) RETURNING id, checksum, migration_name, logs, '
                'started_at::text AS started_at, finished_at::text AS finished_at, applied_steps_count').format(
                    self.table_ref, sql.Literal(str(uuid.uuid4())), sql.Literal(render_checksum(params['migration_sql'])),
                    sql.Literal(log_entry(params['run_id'])), sql.Literal(params['migration_name'])))
            fields['migration'] = inserted[0] if inserted else dict(migration_name=params['migration_name'],
                                                                    checksum=render_checksum(params['migration_sql']))
        elif decision['action'] == ACTION_REMOVED:
            self._run(sql.SQL('DELETE FROM {} WHERE id IN ({})').format(
                self.table_ref, sql.SQL(', ').join(sql.Literal(id_) for id_ in decision['delete'])), fetch=False)
            fields['removed'] = decision['delete']
        return dict(fields, action=decision['action'])


def run_in_transaction(module, history):
    """history.work() in one transaction, retried after lock timeouts and deadlocks; rolled back in check mode."""
    params = module.params

    def attempt():
        history.queries = []
        return history.work()

    try:
        return run_transaction(history.cursor, attempt, params['lock_timeout'], params['lock_retries'],
                               params['lock_retry_delay'], module.check_mode, module.warn, params['migration_name'],
                               operator_errors=(HistoryError,))
    except HistoryError:
        raise
    except Exception as error:  # psycopg2 and psycopg 3 errors share no importable base here
        raise HistoryError(error_text(error))


def main():
    argument_spec = postgres_common_argument_spec()
    argument_spec.update(
        login_db=dict(type='str', aliases=['db']),
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
        session_role=dict(type='str'),
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

    ensure_required_libs(module)
    connection = connect_or_fail(module, get_conn_params(module, params))
    errors = option_errors(connection.cursor(), params, [('lock_timeout', 'lock_timeout')])
    if errors:
        connection.close()
        module.fail_json(msg='Invalid options; nothing was changed:\n- %s' % '\n- '.join(errors), **result)
    history = History(module, connection)
    try:
        result.update(run_in_transaction(module, history))
    except HistoryError as error:
        connection.close()
        module.fail_json(msg='Prisma migration %s was not %s; nothing was changed: %s' % (
            params['migration_name'], 'recorded' if params['state'] == 'present' else 'removed', error), **result)
    connection.close()
    result['queries'] = history.queries
    result['changed'] = result['action'] in (ACTION_RECORDED, ACTION_REMOVED)
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
