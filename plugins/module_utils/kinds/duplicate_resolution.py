# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The audited rename of duplicate keys before a unique constraint, and its restore on rollback.

All but the oldest row of each duplicate key get a suffix on one key column, in one transaction that records every
change (row key, old and new value) in an audit table; a rollback puts the old values back where the row still holds
the renamed one. Used by postgresql_duplicate_resolution (one constraint) and postgresql_online_unique_constraint
(a plan's constraints in one process).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.advisory_locks import migration_lock_error
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.run.async_runs import owner_gone
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.run.ledger import Ledger, renamed_rows_definition
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.statements import (
    error_text, fetch_dicts, run_transaction, sql_module, sqlstate,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.unique_keys import (
    COLUMN_TYPES_QUERY, PRIMARY_KEY_QUERY, find_duplicates, rename_plan,
)


class ResolutionError(Exception):
    """A problem the operator has to act on; the transaction was rolled back."""


class Resolver(object):
    """Renames (resolve) or restores (restore) the duplicate keys of one unique constraint, recording each change in
    the audit table. C(params): name, schema, table, columns, rename_column, keep_oldest_by, audit_schema, audit_table,
    run_id, lock_timeout, lock_retries, lock_retry_delay, lock_session_pid, owner_pid (optional: the run's
    ansible-playbook, whose end stops it before its transaction), and plan_name (whose ledger records each rename, in
    its transaction: a rollback restores only the renames its plan's ledger holds)."""

    def __init__(self, connection, params):
        self.params = params
        self.connection = connection
        self.cursor = connection.cursor()
        self.sql = sql_module()
        self.queries = []
        p = self.params
        self.table_ref = self.sql.SQL('{}.{}').format(self.sql.Identifier(p['schema']), self.sql.Identifier(p['table']))
        self.audit_ref = self.sql.SQL('{}.{}').format(self.sql.Identifier(p['audit_schema']),
                                                      self.sql.Identifier(p['audit_table']))
        self.audit_name = '%s.%s' % (p['audit_schema'], p['audit_table'])
        self.ledger = Ledger(self.cursor, p.get('plan_name'), p['run_id'])
        self.run_ids = []  # the runs whose renames a restore puts back (restore)

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
        self.ledger.record_applied('renamed_rows', p['schema'], p['table'], p['name'],
                                   renamed_rows_definition(len(done), p['schema'], p['table'], self.audit_name),
                                   prior=dict(audit_table=self.audit_name, audit_run_id=p['run_id'], rows=len(done),
                                              column=rename), reuse=False)
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
        # Only the renames the plan's ledger holds: a rename of another plan, or one no run recorded, stays.
        entries = self.ledger.all_open_rows('renamed_rows', p['schema'], [p['name']])
        self.run_ids = sorted(set((row.get('prior') or {}).get('audit_run_id') for row in entries) - set([None]))
        pending = self.rows(sql.SQL(
            'SELECT id, column_name, row_key, old_value, new_value FROM {} WHERE constraint_name = %(name)s AND '
            'table_schema = %(schema)s AND table_name = %(table)s AND restored_at IS NULL AND run_id = ANY(%(runs)s) '
            'ORDER BY id').format(self.audit_ref),
            dict(name=p['name'], schema=p['schema'], table=p['table'], runs=self.run_ids), record=False)
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
        if not check_mode:
            # A rename is undone once every row it renamed is back (in this transaction, as the restores are).
            for entry in entries:
                left = self.rows(sql.SQL('SELECT count(*) AS left FROM {} WHERE run_id = %(run)s AND constraint_name = '
                                         '%(name)s AND restored_at IS NULL').format(self.audit_ref),
                                 dict(run=(entry.get('prior') or {}).get('audit_run_id'), name=p['name']),
                                 record=False)[0]['left']
                if not left:
                    self.ledger.undone(entry['id'])
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
            'AND a.column_name = {column_name} AND a.restored_at IS NULL AND t.{column} = a.new_value '
            'AND a.run_id = ANY({runs})').format(
                audit=self.audit_ref, table=self.table_ref, match=pk_of_record, column=ident(column),
                runs=sql.SQL('ARRAY[{}]::text[]').format(sql.SQL(', ').join(sql.Literal(r) for r in self.run_ids)),
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


def run_in_transaction(resolver, work, check_mode, warn):
    """Run C(work) in one transaction, retried after lock timeouts and deadlocks; commit unless check mode."""
    params = resolver.params

    def attempt():
        resolver.queries = []
        lost = None if check_mode else (owner_gone(params.get('owner_pid')) or
                                        migration_lock_error(resolver.cursor, params['lock_session_pid']))
        if lost:
            raise ResolutionError(lost)
        return work()

    try:
        return run_transaction(resolver.cursor, attempt, params['lock_timeout'], params['lock_retries'],
                               params['lock_retry_delay'], check_mode, warn, params['name'],
                               operator_errors=(ResolutionError,))
    except ResolutionError:
        raise
    except Exception as error:  # psycopg2 and psycopg 3 errors share no importable base here
        if sqlstate(error) == '23505':
            raise ResolutionError('restoring the old values would duplicate a key that a unique constraint or index '
                                  'on %s.%s enforces (%s): drop the constraint first (rollback.yml does, before '
                                  'it restores)' % (params['schema'], params['table'], error_text(error)))
        raise ResolutionError(error_text(error))
