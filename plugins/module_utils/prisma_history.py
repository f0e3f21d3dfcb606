# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Prisma's migration history (the _prisma_migrations table), kept in step with an online migration.

After the plan is applied online, the Prisma migration it came from is recorded as applied with the row
`prisma migrate resolve --applied` writes, so a later `prisma migrate deploy` does not run the blocking SQL.
Pure functions here (checksums, the decision); the module postgresql_prisma_migration does the I/O.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib

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


def log_entry(run_id):
    return '%s: applied online (CREATE INDEX CONCURRENTLY, constraints attached USING INDEX), run %s' % (LOG_MARKER, run_id)
