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
version_added: '0.1.0'
options:
  login_db:
    description: Name of the database to connect to.
    type: str
    aliases: [db]
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
  - pg_zero_downtime.migrations.lock_retries
  - community.postgresql.postgres
  - pg_zero_downtime.migrations.migration_lock
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
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.connection import connect_or_fail
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.identifiers import identifier_error
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.advisory_locks import migration_lock_error
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session import (
    error_text, fetch_dicts, option_errors, run_transaction, sql_module, sqlstate,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.unique_constraint import (
    CONSTRAINT_OPTIONS, validate_constraint,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.unique_keys import (
    COLUMN_TYPES_QUERY, PRIMARY_KEY_QUERY, find_duplicates, rename_plan,
)
from ansible_collections.community.postgresql.plugins.module_utils.postgres import (
    ensure_required_libs,
    get_conn_params,
    postgres_common_argument_spec,
)


class ResolutionError(Exception):
    """A problem the operator has to act on; the transaction was rolled back."""


class Resolver(object):
    def __init__(self, module, connection):
        self.module = module
        self.params = module.params
        self.connection = connection
        self.cursor = connection.cursor()
        self.sql = sql_module()
        self.queries = []
        p = self.params
        self.table_ref = self.sql.SQL('{}.{}').format(self.sql.Identifier(p['schema']), self.sql.Identifier(p['table']))
        self.audit_ref = self.sql.SQL('{}.{}').format(self.sql.Identifier(p['audit_schema']),
                                                      self.sql.Identifier(p['audit_table']))
        self.audit_name = '%s.%s' % (p['audit_schema'], p['audit_table'])

    def rows(self, query, params=None, record=True):
        if record:
            self.queries.append(query.as_string(self.connection) if hasattr(query, 'as_string') else query)
        return fetch_dicts(self.cursor, query, params)

    # -- shared ------------------------------------------------------------------------------------

    def read_table(self):
        p = self.params
        types = dict((row['name'], row['type']) for row in fetch_dicts(
            self.cursor, COLUMN_TYPES_QUERY, dict(schema=p['schema'], table=p['table'])))
        if not types:
            raise ResolutionError('table %s.%s does not exist' % (p['schema'], p['table']))
        primary_key = [row['column_name'] for row in fetch_dicts(
            self.cursor, PRIMARY_KEY_QUERY, dict(schema=p['schema'], table=p['table']))]
        return types, primary_key

    def row_key(self, primary_key, alias):
        sql = self.sql
        return sql.SQL('jsonb_build_object({})').format(sql.SQL(', ').join(
            sql.SQL('{}, {}.{}').format(sql.Literal(c), sql.Identifier(alias), sql.Identifier(c)) for c in primary_key))

    # -- resolved ----------------------------------------------------------------------------------

    def resolve_plan(self, types, primary_key):
        """Check the table can be resolved; returns (rename_column, order columns)."""
        p = self.params
        try:
            return rename_plan(p['schema'], p['table'], p['columns'], types, primary_key, p['rename_column'],
                               p['keep_oldest_by'])
        except ValueError as error:
            raise ResolutionError(str(error))

    def renames_query(self, rename, order, primary_key, apply):
        """The rows to rename (apply=False) or the UPDATE that renames them and returns each change."""
        sql, p = self.sql, self.params
        ident = sql.Identifier
        keys = sql.SQL(', ').join(ident(c) for c in p['columns'])
        not_null = sql.SQL(' AND ').join(sql.SQL('{} IS NOT NULL').format(ident(c)) for c in p['columns'])
        row_text = sql.SQL(" || ',' || ").join(sql.SQL('t.{}::text').format(ident(c)) for c in primary_key)
        ranked = sql.SQL(
            'WITH ranked AS (SELECT {pk}, {rename} AS old_value, row_number() OVER (PARTITION BY {keys} ORDER BY {order}) '
            'AS position FROM {table} WHERE {not_null}) ').format(
                pk=sql.SQL(', ').join(ident(c) for c in primary_key), rename=ident(rename), keys=keys,
                order=sql.SQL(', ').join(sql.SQL('{} ASC NULLS LAST').format(ident(c)) for c in order),
                table=self.table_ref, not_null=not_null)
        match = sql.SQL(' AND ').join(sql.SQL('t.{0} = r.{0}').format(ident(c)) for c in primary_key)
        new_value = sql.SQL("r.old_value || ' [duplicate ' || {} || ']'").format(row_text)
        if not apply:
            return ranked + sql.SQL(
                'SELECT {key} AS row_key, r.old_value AS old, {new} AS new FROM ranked r JOIN {table} t ON {match} '
                'WHERE r.position > 1 ORDER BY 1::text').format(
                    key=self.row_key(primary_key, 't'), new=new_value, table=self.table_ref, match=match)
        return ranked + sql.SQL(
            ', renamed AS (UPDATE {table} t SET {rename} = {new} FROM ranked r WHERE {match} AND r.position > 1 '
            'RETURNING {key} AS row_key, r.old_value, t.{rename} AS new_value) '
            'INSERT INTO {audit} (run_id, constraint_name, table_schema, table_name, column_name, row_key, old_value, '
            'new_value) SELECT {run_id}, {name}, {schema}, {table_name}, {column}, row_key, old_value, new_value '
            'FROM renamed RETURNING row_key, old_value AS old, new_value AS new').format(
                table=self.table_ref, rename=ident(rename), new=new_value, match=match,
                key=self.row_key(primary_key, 't'), audit=self.audit_ref, run_id=sql.Literal(p['run_id']),
                name=sql.Literal(p['name']), schema=sql.Literal(p['schema']), table_name=sql.Literal(p['table']),
                column=sql.Literal(rename))

    def remaining_duplicates(self):
        p = self.params
        return find_duplicates(self.cursor, self.sql, p['schema'], p['table'], p['columns'], 1, 1)['total_groups']

    def create_audit_statements(self):
        sql = self.sql
        return [
            sql.SQL('CREATE SCHEMA IF NOT EXISTS {}').format(sql.Identifier(self.params['audit_schema'])),
            sql.SQL('CREATE TABLE IF NOT EXISTS {} (id bigserial PRIMARY KEY, run_id text NOT NULL, '
                    'constraint_name text NOT NULL, table_schema text NOT NULL, table_name text NOT NULL, '
                    'column_name text NOT NULL, row_key jsonb NOT NULL, old_value text, new_value text, '
                    'resolved_at timestamptz NOT NULL DEFAULT now(), restored_at timestamptz)').format(self.audit_ref),
        ]

    def resolve(self, check_mode):
        p = self.params
        types, primary_key = self.read_table()
        rename, order = self.resolve_plan(types, primary_key)
        planned = self.rows(self.renames_query(rename, order, primary_key, apply=False), record=False)
        changes = [dict(schema=p['schema'], table=p['table'], column=rename, row_key=row['row_key'], old=row['old'],
                        new=row['new']) for row in planned]
        if not changes or check_mode:
            statements = [] if not changes else [s.as_string(self.connection) for s in self.create_audit_statements()] + \
                [self.renames_query(rename, order, primary_key, apply=True).as_string(self.connection)]
            return changes, statements
        for statement in self.create_audit_statements():
            self.rows(statement)
        done = self.rows(self.renames_query(rename, order, primary_key, apply=True))
        left = self.remaining_duplicates()
        if left:
            raise ResolutionError('%d duplicate key(s) are still there after renaming (a suffixed value collides with '
                                  'an existing one, or rows were written meanwhile); the renames were rolled back'
                                  % left)
        return [dict(schema=p['schema'], table=p['table'], column=rename, row_key=row['row_key'], old=row['old'],
                     new=row['new']) for row in done], self.queries

    # -- restored ----------------------------------------------------------------------------------

    def restore(self, check_mode):
        sql, p = self.sql, self.params
        exists = self.rows('SELECT pg_catalog.to_regclass(%(name)s) IS NOT NULL AS present',
                           dict(name=self.audit_ref.as_string(self.connection)), record=False)[0]['present']
        if not exists:
            return [], [], []
        types, primary_key = self.read_table()
        pending = self.rows(sql.SQL(
            'SELECT id, column_name, row_key, old_value, new_value FROM {} WHERE constraint_name = %(name)s AND '
            'table_schema = %(schema)s AND table_name = %(table)s AND restored_at IS NULL ORDER BY id').format(
                self.audit_ref), dict(name=p['name'], schema=p['schema'], table=p['table']), record=False)
        restored, skipped = [], []
        for column in sorted(set(row['column_name'] for row in pending)):
            if column not in types:
                skipped.extend(dict(row_key=row['row_key'], column=column, reason='column no longer exists')
                               for row in pending if row['column_name'] == column)
                continue
            restored.extend(self.rows(self.restore_query(column, primary_key, check_mode), record=not check_mode))
        done = set(row['id'] for row in restored)
        skipped.extend(dict(row_key=row['row_key'], column=row['column_name'],
                            reason='the row is gone, or its value was changed since the resolution (now not %r)'
                            % row['new_value'])
                       for row in pending if row['id'] not in done and row['column_name'] in types)
        changes = [dict(schema=p['schema'], table=p['table'], column=row['column_name'], row_key=row['row_key'],
                        old=row['new_value'], new=row['old_value']) for row in restored]
        statements = self.queries if not check_mode else (
            [self.restore_query(c, primary_key, False).as_string(self.connection)
             for c in sorted(set(r['column'] for r in changes))])
        return changes, skipped, statements

    def restore_query(self, column, primary_key, check_mode):
        """Old values back where the row still holds the resolution's value; audit rows marked restored."""
        sql = self.sql
        ident = sql.Identifier
        pk_of_record = sql.SQL(' AND ').join(
            sql.SQL('t.{0} = (pg_catalog.jsonb_populate_record(NULL::{1}, a.row_key)).{0}').format(ident(c), self.table_ref)
            for c in primary_key)
        candidates = sql.SQL(
            'SELECT a.id, a.column_name, a.row_key, a.old_value, a.new_value FROM {audit} a JOIN {table} t ON {match} '
            'WHERE a.constraint_name = {name} AND a.table_schema = {schema} AND a.table_name = {table_name} '
            'AND a.column_name = {column_name} AND a.restored_at IS NULL AND t.{column} = a.new_value').format(
                audit=self.audit_ref, table=self.table_ref, match=pk_of_record, column=ident(column),
                name=sql.Literal(self.params['name']), schema=sql.Literal(self.params['schema']),
                table_name=sql.Literal(self.params['table']), column_name=sql.Literal(column))
        if check_mode:
            return candidates
        return sql.SQL(
            'WITH candidates AS ({candidates}), '
            'restored AS (UPDATE {table} t SET {column} = c.old_value FROM candidates c, {audit} a '
            'WHERE a.id = c.id AND {match} RETURNING c.id) '
            'UPDATE {audit} a SET restored_at = now() FROM candidates c WHERE a.id = c.id '
            'AND a.id IN (SELECT id FROM restored) '
            'RETURNING a.id, a.column_name, a.row_key, a.old_value, a.new_value').format(
                candidates=candidates, table=self.table_ref, column=ident(column), audit=self.audit_ref,
                match=pk_of_record)


def run_in_transaction(module, resolver, work):
    """Run C(work) in one transaction, retried after lock timeouts and deadlocks; commit unless check mode."""
    params = module.params

    def attempt():
        resolver.queries = []
        lost = None if module.check_mode else migration_lock_error(resolver.cursor, params['lock_session_pid'])
        if lost:
            raise ResolutionError(lost)
        return work()

    try:
        return run_transaction(resolver.cursor, attempt, params['lock_timeout'], params['lock_retries'],
                               params['lock_retry_delay'], module.check_mode, module.warn, params['name'],
                               operator_errors=(ResolutionError,))
    except ResolutionError:
        raise
    except Exception as error:  # psycopg2 and psycopg 3 errors share no importable base here
        if sqlstate(error) == '23505':
            raise ResolutionError('restoring the old values would duplicate a key that a unique constraint or index '
                                  'on %s.%s enforces (%s): drop the constraint first (rollback.yml does, before '
                                  'it restores)' % (params['schema'], params['table'], error_text(error)))
        raise ResolutionError(error_text(error))


def main():
    argument_spec = postgres_common_argument_spec()
    argument_spec.update(CONSTRAINT_OPTIONS)
    argument_spec.update(
        login_db=dict(type='str', aliases=['db']),
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
        session_role=dict(type='str'),
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

    ensure_required_libs(module)
    connection = connect_or_fail(module, get_conn_params(module, params))
    errors = option_errors(connection.cursor(), params, [('lock_timeout', 'lock_timeout')])
    if errors:
        connection.close()
        module.fail_json(msg='Invalid options; nothing was changed:\n- %s' % '\n- '.join(errors),
                         changed=False, queries=[], rows=[], not_restored=[])
    resolver = Resolver(module, connection)
    result = dict(changed=False, rows=[], not_restored=[], audit=resolver.audit_name, queries=[])
    try:
        if params['state'] == 'resolved':
            result['rows'], result['queries'] = run_in_transaction(
                module, resolver, lambda: resolver.resolve(module.check_mode))
        else:
            result['rows'], result['not_restored'], result['queries'] = run_in_transaction(
                module, resolver, lambda: resolver.restore(module.check_mode))
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
