# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Prisma's migration history (the _prisma_migrations table), kept in step with an online migration.

After the plan is applied online, the Prisma migration it came from is recorded as applied with the row
`prisma migrate resolve --applied` writes, so a later `prisma migrate deploy` does not run the blocking SQL.
The pure functions (checksums, the decision) come first, then History, which reads and writes the table in one
transaction holding Prisma's own migration lock (postgresql_prisma_migration writes; the preflight proves a write
possible in a transaction it rolls back).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import uuid

from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.advisory_locks import (
    advisory_lock_holders, migration_lock_error,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.statements import (
    error_text, fetch_dicts, run_transaction, sql_module,
)

# The key of the session-level advisory lock every `prisma migrate` command holds while it works.
PRISMA_ADVISORY_LOCK = 72707369
# Prisma refuses longer migration names (error P3010).
MAX_MIGRATION_NAME_BYTES = 200
# The logs column of the rows this tool writes starts with this, so a rollback removes only its own rows.
LOG_MARKER = 'pg-zero-downtime'

# The columns Prisma's migrations table has, and the table as Prisma creates it on PostgreSQL.
PRISMA_COLUMNS = ('id', 'checksum', 'finished_at', 'migration_name', 'logs', 'rolled_back_at', 'started_at',
                  'applied_steps_count')
CREATE_TABLE_TEMPLATE = (
    'CREATE TABLE {table} ('
    '"id" VARCHAR(36) PRIMARY KEY NOT NULL, '
    '"checksum" VARCHAR(64) NOT NULL, '
    '"finished_at" TIMESTAMPTZ, '
    '"migration_name" VARCHAR(255) NOT NULL, '
    '"logs" TEXT, '
    '"rolled_back_at" TIMESTAMPTZ, '
    '"started_at" TIMESTAMPTZ NOT NULL DEFAULT now(), '
    '"applied_steps_count" INTEGER NOT NULL DEFAULT 0)')

ACTION_RECORDED = 'recorded'
ACTION_UNCHANGED = 'unchanged'
ACTION_REMOVED = 'removed'
ACTION_ABSENT = 'absent'


def render_checksum(script):
    """Prisma's checksum of a migration script: the hex SHA-256 of its UTF-8 text."""
    return hashlib.sha256(script.encode('utf-8')).hexdigest()


def accepted_checksums(script):
    """Checksums Prisma takes as the same script: as is, with LF line ends, with CRLF line ends.

    (git may turn one into the other on checkout; `prisma migrate` compares all three.)
    """
    return set(render_checksum(variant) for variant in
               (script, script.replace('\r\n', '\n'), script.replace('\r\n', '\n').replace('\n', '\r\n')))


def migration_name_error(name):
    """Why C(name) cannot be a Prisma migration name, or None."""
    if not name or not name.strip():
        return 'the Prisma migration name is empty'
    if name != name.strip() or '/' in name or any(ord(char) < 32 for char in name):
        return ('the Prisma migration name %r is not a folder name of prisma/migrations (no slash, white space at '
                'the ends or control characters)' % name)
    if len(name.encode('utf-8')) > MAX_MIGRATION_NAME_BYTES:
        return 'the Prisma migration name is longer than %d bytes, which Prisma refuses (P3010)' % MAX_MIGRATION_NAME_BYTES
    return None


def is_ours(row):
    return (row.get('logs') or '').startswith(LOG_MARKER)


def decide(rows, state, script=None):
    """What to do with the rows of one migration name.

    Returns dict(action, roll_back=[ids of failed attempts to mark rolled back], delete=[ids], kept=[rows
    left alone, with the reason], error=None or the reason nothing may change).
    """
    decision = dict(action=ACTION_UNCHANGED, roll_back=[], delete=[], kept=[], error=None)
    live = [row for row in rows if row.get('rolled_back_at') is None]
    if state == 'present':
        applied = [row for row in live if row.get('finished_at') is not None]
        if applied:
            accepted = accepted_checksums(script)
            if any(row['checksum'] in accepted for row in applied):
                return decision
            row = applied[0]
            decision['error'] = (
                'migration %s is already recorded as applied (id %s, at %s) with checksum %s, but the migration.sql '
                'given now has checksum %s: the file changed after it was applied. Compare it with what was applied; '
                'if the new content is what the database has, record it with `prisma migrate resolve`, otherwise '
                'restore the file' % (row['migration_name'], row['id'], row['finished_at'], row['checksum'],
                                      render_checksum(script)))
            return decision
        # Unfinished attempts (a failed `prisma migrate deploy`) are marked rolled back, as resolve --applied does.
        decision['roll_back'] = [row['id'] for row in live]
        decision['action'] = ACTION_RECORDED
        return decision
    ours = [row for row in rows if is_ours(row)]
    decision['delete'] = [row['id'] for row in ours]
    decision['kept'] = [dict(row, reason='recorded by Prisma itself, not by pg-zero-downtime: left in place')
                        for row in live if not is_ours(row)]
    decision['action'] = ACTION_REMOVED if ours else ACTION_ABSENT
    return decision


def history_summary(result, name):
    """What happened to Prisma's history, as the play says it."""
    action = result.get('action')
    if action == ACTION_RECORDED:
        return ('Recorded %s as applied in %s (checksum %s)%s: `prisma migrate deploy` will not run its SQL.' % (
            name, result['table'], result.get('checksum'), ', after marking %d failed attempt(s) rolled back'
            % len(result['rolled_back']) if result.get('rolled_back') else ''))
    if action == ACTION_UNCHANGED:
        return '%s is already recorded as applied in %s.' % (name, result['table'])
    if action == ACTION_REMOVED:
        return ('Removed the record of %s from %s: `prisma migrate deploy` would apply it again.'
                % (name, result['table']))
    return 'No record of %s written by pg-zero-downtime in %s.' % (name, result['table'])


def log_entry(run_id):
    return '%s: applied online (CREATE INDEX CONCURRENTLY, constraints attached USING INDEX), run %s' % (LOG_MARKER, run_id)


TABLE_COLUMNS_QUERY = (
    "SELECT a.attname AS name FROM pg_catalog.pg_attribute a "
    "WHERE a.attrelid = pg_catalog.to_regclass(%(qualified)s) AND a.attnum > 0 AND NOT a.attisdropped")


class HistoryError(Exception):
    """A problem the operator has to act on; the transaction was rolled back."""


class History(object):
    """Reads and writes the rows of one migration name in Prisma's migrations table, holding Prisma's lock.

    C(params): migration_name, migration_sql, state, schema, table, create_table, run_id. With C(dry_run) nothing
    is written (the statements are still recorded in C(queries)); the caller rolls the transaction back.
    """

    def __init__(self, connection, params, dry_run=False):
        self.params = params
        self.dry_run = dry_run
        self.cursor = connection.cursor()
        self.connection = connection
        self.sql = sql_module()
        self.table_ref = self.sql.SQL('{}.{}').format(self.sql.Identifier(self.params['schema']),
                                                      self.sql.Identifier(self.params['table']))
        self.queries = []

    def _run(self, statement, fetch=True):
        """Execute a composed statement (recorded in queries) unless check mode; return its rows."""
        self.queries.append(statement.as_string(self.connection))
        if self.dry_run:
            return []
        self.cursor.execute(statement)
        return [dict(zip([column[0] for column in self.cursor.description], row)) for row in self.cursor.fetchall()] \
            if fetch and self.cursor.description else []

    def work(self):
        """Everything, in the caller's transaction. Returns the result fields."""
        sql = self.sql
        params = self.params
        lost = None if self.dry_run else migration_lock_error(self.cursor, params.get('lock_session_pid') or 0)
        if lost:
            raise HistoryError(lost)
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
                                   '(-e pgzd_prisma_create_table=true) to create it as Prisma does' % qualified)
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


def run_in_transaction(history, warn, rollback=None):
    """history.work() in one transaction, retried after lock timeouts and deadlocks; rolled back with C(rollback)
    (default: when dry_run). The preflight runs every statement for real and rolls back: proof that the login may
    write the record, not only read it."""
    params = history.params

    def attempt():
        history.queries = []
        return history.work()

    try:
        return run_transaction(history.cursor, attempt, params['lock_timeout'], params['lock_retries'],
                               params['lock_retry_delay'], history.dry_run if rollback is None else rollback, warn,
                               params['migration_name'],
                               operator_errors=(HistoryError,))
    except HistoryError:
        raise
    except Exception as error:  # psycopg2 and psycopg 3 errors share no importable base here
        raise HistoryError(error_text(error))
