# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which migrations of a prisma/migrations folder are pending on a database, by the rules `prisma migrate deploy`
follows, decided from the folder and the rows of _prisma_migrations. Pure: no file and no server is read here (the
controller reads the folder, the preflight the rows).

Prisma's rules, as its schema engine applies them (and as `prisma migrate status` reports them):
- the folder's migrations are taken in the order of their folder names;
- a row finished and not rolled back records its migration as applied; a row rolled back (`prisma migrate resolve
  --rolled-back`) does not count;
- a row neither finished nor rolled back is a failed migration: Prisma applies nothing until it is resolved (P3009);
- a migration applied but missing from the folder is reported, not an error.
Stricter than Prisma on one point: an applied migration whose migration.sql changed since (another checksum) is an
error, since the folder then no longer describes the database.
One exception to P3009 is this tool's own: an unfinished row it wrote itself (logs starting with LOG_MARKER) is a
run of ours stopped mid-migration, which a rerun resumes (every kind reads the catalog before it acts).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.prisma.prisma_history import (
    accepted_checksums, is_ours, migration_name_error, render_checksum,
)

RESOLVE_ADVICE = (
    'Find out what the failed migration did to the database, then tell Prisma with `prisma migrate resolve '
    '--rolled-back %(name)s` (after undoing what it did, so that it runs again) or `prisma migrate resolve --applied '
    '%(name)s` (after finishing it by hand), and rerun (https://pris.ly/d/migrate-resolve)')


def folder_problems(migrations):
    """Why the folder's migrations (a list of dicts with C(name) and C(sql), C(sql) None when the folder has no
    migration.sql) cannot be deployed, as a list of strings; empty when they can."""
    problems = []
    for migration in migrations:
        error = migration_name_error(migration['name'])
        if error:
            problems.append(error)
        elif migration.get('sql') is None:
            problems.append('migration %s has no migration.sql (Prisma refuses such a folder, P3015): add the file '
                            'or remove the folder' % migration['name'])
    return problems


def _is_failed(row):
    return row.get('finished_at') is None and row.get('rolled_back_at') is None


def pending_migrations(migrations, rows):
    """What a deploy of C(migrations) (the folder's, each a dict with C(name) and C(sql)) does on a database whose
    _prisma_migrations holds C(rows) (dicts with Prisma's columns; an empty list when the table does not exist).

    Returns dict(applied=[names], pending=[names, in folder order], resumed=name or None (an unfinished run of ours,
    first of pending), missing=[names applied but not in the folder], problems=[why nothing may be deployed]).
    """
    ordered = sorted(migrations, key=lambda migration: migration['name'])
    names = set(migration['name'] for migration in ordered)
    live = [row for row in rows if row.get('rolled_back_at') is None]
    result = dict(applied=[], pending=[], resumed=None, missing=[], problems=[])

    failed = [row for row in live if _is_failed(row) and not is_ours(row)]
    for row in failed:
        result['problems'].append(
            'migration %s started at %s and did not finish (Prisma records it as failed, P3009): nothing is applied '
            'until it is resolved. %s.' % (row['migration_name'], row.get('started_at'),
                                           RESOLVE_ADVICE % dict(name=row['migration_name'])))
    ours_unfinished = set(row['migration_name'] for row in live if _is_failed(row) and is_ours(row))

    for migration in ordered:
        name = migration['name']
        finished = [row for row in live if row['migration_name'] == name and row.get('finished_at') is not None]
        if finished:
            result['applied'].append(name)
            checksums = accepted_checksums(migration.get('sql') or '')
            if migration.get('sql') is not None and not any(row.get('checksum') in checksums for row in finished):
                result['problems'].append(
                    'migration %s was applied with checksum %s, but its migration.sql now has checksum %s: the file '
                    'changed after it was applied, so the folder no longer describes the database. Restore the file '
                    'as it was applied (git history), or, if the database has the new content, record it with '
                    '`prisma migrate resolve`' % (name, finished[0].get('checksum'),
                                                  render_checksum(migration['sql'])))
            continue
        result['pending'].append(name)
        if name in ours_unfinished and result['resumed'] is None and len(result['pending']) == 1:
            result['resumed'] = name
            started = [row for row in live if row['migration_name'] == name and _is_failed(row)]
            if migration.get('sql') is not None and not any(
                    row.get('checksum') in accepted_checksums(migration['sql']) for row in started):
                result['problems'].append(
                    'migration %s was left unfinished by a run of pg-zero-downtime with checksum %s, but its '
                    'migration.sql now has checksum %s: the file changed in the middle of its deploy, so what ran of '
                    'it may not be what the file says. Restore the file as it was and rerun to finish it, or roll it '
                    'back (rollback.yml to the migration before it) and deploy the new file' % (
                        name, started[0].get('checksum'), render_checksum(migration['sql'])))
    unfinished_not_first = ours_unfinished - set([result['resumed']]) - set(result['applied'])
    for name in sorted(unfinished_not_first):
        if name in names:
            result['problems'].append(
                'migration %s was left unfinished by a run of pg-zero-downtime, but it is not the next pending '
                'migration: the history is out of order. %s.' % (name, RESOLVE_ADVICE % dict(name=name)))
        else:
            result['problems'].append(
                'migration %s was left unfinished by a run of pg-zero-downtime and is not in the folder: restore its '
                'folder and rerun to finish it, or roll it back. %s.' % (name, RESOLVE_ADVICE % dict(name=name)))
    applied_names = set(row['migration_name'] for row in live if row.get('finished_at') is not None)
    result['missing'] = sorted(applied_names - names)
    return result


def pending_summary(result):
    """The lines the preflight prints about the folder's history."""
    lines = ['%d migration(s) applied, %d pending%s.' % (
        len(result['applied']), len(result['pending']),
        ': ' + ', '.join(result['pending']) if result['pending'] else '')]
    if result['resumed']:
        lines.append('%s was left unfinished by an earlier run of pg-zero-downtime: it is resumed where it stopped '
                     '(each statement reads the catalog before it acts).' % result['resumed'])
    if result['missing']:
        lines.append('Applied but not in the folder (left as they are, as Prisma does): %s.'
                     % ', '.join(result['missing']))
    return lines
