# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rows of Prisma's _prisma_migrations a deploy reads and writes, as `prisma migrate deploy` writes them: a row
when a migration starts (started_at, applied_steps_count 0, finished_at NULL), finished when its last statement is
done (finished_at, applied_steps_count 1). The table is created as Prisma creates it when missing. Prisma's own
migration lock (a session advisory lock) is held for the whole deploy, so no `prisma migrate` runs beside it.

This tool's rows carry LOG_MARKER and the run id in logs: an unfinished row of ours is a run stopped mid-migration,
which the next run resumes (pending_migrations), where Prisma's failed rows block the deploy.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import uuid

from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.prisma.prisma_history import (
    CREATE_TABLE_TEMPLATE, LOG_MARKER, PRISMA_ADVISORY_LOCK, PRISMA_COLUMNS, TABLE_COLUMNS_QUERY,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.advisory_locks import (
    advisory_lock_holders,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.statements import (
    fetch_dicts, sql_module,
)


def deploy_log(run_id):
    """The logs of a row this tool writes (pending_migrations.is_ours reads the marker)."""
    return '%s: deployed online, statement by statement, run %s' % (LOG_MARKER, run_id)


def resumed_row_ids(records, history):
    """{the migration a deploy resumes (pending_migrations' C(resumed)): the id of its unfinished row of this tool},
    or {}."""
    name = history.get('resumed')
    rows = [row for row in records.rows() if row['migration_name'] == name and row.get('finished_at') is None
            and row.get('rolled_back_at') is None] if name else []
    return {name: rows[-1]['id']} if rows else {}


class MigrationRecords(object):
    """Prisma's migrations table C(schema).C(table), over an autocommit cursor."""

    def __init__(self, cursor, schema='public', table='_prisma_migrations'):
        self.cursor, self.schema, self.table = cursor, schema, table
        self.sql = sql = sql_module()
        self.table_ref = sql.SQL('{}.{}').format(sql.Identifier(schema), sql.Identifier(table))
        self.qualified = '%s.%s' % (schema, table)

    def _text(self, statement):
        return statement.as_string(self.cursor.connection)

    def table_problem(self):
        """None when the table is Prisma's (or absent: the deploy creates it), else why it is not."""
        columns = self._columns()
        missing = [column for column in PRISMA_COLUMNS if column not in columns] if columns else []
        if missing:
            return ('table %s is not Prisma\'s migrations table: it has no column %s. Check the schema of the Prisma '
                    'datasource (-e pgzd_prisma_schema=<schema>); nothing was changed' % (self.qualified, ', '.join(missing)))
        return None

    def _columns(self):
        return set(row['name'] for row in fetch_dicts(self.cursor, TABLE_COLUMNS_QUERY,
                                                      dict(qualified=self._text(self.table_ref))))

    def exists(self):
        return bool(self._columns())

    def rows(self):
        """Every row, oldest first ([] when the table does not exist yet)."""
        if not self.exists():
            return []
        return fetch_dicts(self.cursor, self.sql.SQL(
            'SELECT id, checksum, migration_name, logs, started_at::text AS started_at, finished_at::text AS '
            'finished_at, rolled_back_at::text AS rolled_back_at, applied_steps_count FROM {} ORDER BY started_at, '
            'migration_name').format(self.table_ref))

    def create_statement(self):
        return self.sql.SQL(CREATE_TABLE_TEMPLATE).format(table=self.table_ref)

    def lock(self):
        """Take Prisma's migration lock for this session, or say who holds it (a `prisma migrate` running now)."""
        got = fetch_dicts(self.cursor, 'SELECT pg_catalog.pg_try_advisory_lock(%(key)s) AS got',
                          dict(key=PRISMA_ADVISORY_LOCK))[0]['got']
        if got:
            return None
        holders = advisory_lock_holders(self.cursor, PRISMA_ADVISORY_LOCK)
        return ('a `prisma migrate` command holds Prisma\'s migration lock (advisory lock %d)%s: wait for it to '
                'finish, then rerun; nothing was changed' % (PRISMA_ADVISORY_LOCK, ''.join(
                    ', session pid %(pid)s of %(usename)s (application_name %(application_name)r, client '
                    '%(client_addr)s, since %(since)s)' % holder for holder in holders)))

    def unlock(self):
        fetch_dicts(self.cursor, 'SELECT pg_catalog.pg_advisory_unlock(%(key)s) AS released',
                    dict(key=PRISMA_ADVISORY_LOCK))

    def start_statement(self, name, checksum, run_id, row_id=None):
        """The INSERT of the row of migration C(name) starting now (Prisma's first write of a migration)."""
        sql = self.sql
        return sql.SQL('INSERT INTO {} (id, checksum, migration_name, logs, started_at, applied_steps_count) '
                       'VALUES ({}, {}, {}, {}, now(), 0)').format(
            self.table_ref, sql.Literal(row_id or str(uuid.uuid4())), sql.Literal(checksum), sql.Literal(name),
            sql.Literal(deploy_log(run_id)))

    def finish_statement(self, name):
        """The UPDATE that records migration C(name) finished (its unfinished row of this tool)."""
        sql = self.sql
        return sql.SQL('UPDATE {} SET finished_at = now(), applied_steps_count = 1 WHERE finished_at IS NULL AND '
                       '{}').format(self.table_ref, self._ours(name))

    def _ours(self, name):
        sql = self.sql
        return sql.SQL('migration_name = {} AND rolled_back_at IS NULL AND logs LIKE {}').format(
            sql.Literal(name), sql.Literal(LOG_MARKER + '%'))

    def unfinish_statement(self, name):
        """The UPDATE that makes this tool's row of migration C(name) unfinished: a rollback is undoing it."""
        return self.sql.SQL('UPDATE {} SET finished_at = NULL, applied_steps_count = 0 WHERE {}').format(
            self.table_ref, self._ours(name))

    def remove_statement(self, name):
        """The DELETE of this tool's row of migration C(name), once a rollback undid it: Prisma sees it pending."""
        return self.sql.SQL('DELETE FROM {} WHERE {}').format(self.table_ref, self._ours(name))
