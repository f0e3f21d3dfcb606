# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a restore drill checks and says: which scratch database it may use, the exact row counts of every table of the
source and of the restored copy, and their differences. Pure functions; postgresql_restore_drill does the I/O.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

# Databases a restore drill must never drop and recreate as its scratch database.
PROTECTED_DATABASES = ('postgres', 'template0', 'template1')

# Exact row counts of every table, in one statement (query_to_xml runs a count(*) per table).
ROW_COUNTS_SQL = """
SELECT format('%I.%I', n.nspname, c.relname) AS table_name,
       (xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM %I.%I', n.nspname, c.relname),
                                            false, true, '')))[1]::text::bigint AS row_count
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg_toast%'
ORDER BY 1
""".strip()

# The source's encoding and locale, so the scratch copy is created like it (from template0, as pg_restore wants).
DATABASE_LOCALE_SQL = ("SELECT pg_catalog.pg_encoding_to_char(encoding) AS encoding, datcollate, datctype "
                       "FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()")
DATABASE_EXISTS_SQL = 'SELECT 1 FROM pg_catalog.pg_database WHERE datname = %(name)s'


# -- the restore drill ---------------------------------------------------------------------------------------

def no_backup_message(database, directory):
    return ('No backup of %s in %s: take one with playbooks/backup.yml, or name one with '
            '-e restore_drill_backup=<path>.' % (database, directory))


def scratch_database_problem(scratch, source):
    """Why C(scratch) cannot be the drill's scratch database (it is dropped and recreated), or None."""
    if scratch == source:
        return ('The scratch database of the restore drill cannot be the source database %s: it is dropped and '
                'recreated. Name another one.' % source)
    if scratch in PROTECTED_DATABASES:
        return ('The scratch database of the restore drill cannot be %s: it is dropped and recreated. Name another '
                'one.' % scratch)
    return None


def not_compared(why):
    """The differences of a drill that stopped before its counts were compared: one item that says why."""
    return ['not compared: %s' % ' '.join(why.split())]


def is_not_compared(differences):
    return len(differences) == 1 and differences[0].startswith('not compared: ')


def row_counts(rows):
    """{table: rows} of the count query's rows, in its order."""
    return dict((row['table_name'], int(row['row_count'])) for row in rows)


def count_differences(source, restored):
    """The tables whose row count differs between the source and the restored copy, or that only one has: the
    source's order first, then the copy's own tables."""
    tables = list(source) + [table for table in restored if table not in source]
    return [table for table in tables if source.get(table) != restored.get(table)]


def _difference(table, source, restored):
    if table not in source:
        return '%s is not in the source, %d rows restored' % (table, restored[table])
    if table not in restored:
        return '%s has %d rows in the source, and was not restored' % (table, source[table])
    return '%s has %d rows in the source, %d restored' % (table, source[table], restored[table])


def drill_mismatch_message(backup, database, source, restored, differences):
    return ('The restore of %s does not match %s: %s; rows written since the backup explain a difference on a live '
            'database: drill against a quiet copy, or a fresh backup.'
            % (backup, database, '; '.join(_difference(table, source, restored) for table in differences)))


def drill_passed_message(backup, scratch, source, kept):
    return ("Restore drill passed: %s restored into %s, and all %d tables (%d rows) have the source's exact row "
            "counts.%s" % (backup, scratch, len(source), sum(source.values()),
                           ' The scratch database %s is kept.' % scratch if kept else ''))

