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


# -- the shape of every table (a schema backup's drill) ------------------------------------------------------

# Every table's columns, constraints and indexes, as text that two databases of the same server can compare: what a
# schema-only dump must restore. Invalid indexes are left out: pg_dump does not dump them (but an invalid index of a
# partitioned table, which it does).
SHAPE_SQL = """
SELECT format('%I.%I', n.nspname, c.relname) AS table_name, 'column' AS kind, a.attname::text AS name,
       pg_catalog.format_type(a.atttypid, a.atttypmod) || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END
       || coalesce(' DEFAULT ' || pg_catalog.pg_get_expr(d.adbin, d.adrelid), '') AS definition
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg_toast%' AND c.relpersistence <> 't'
UNION ALL
SELECT format('%I.%I', n.nspname, c.relname), 'constraint', k.conname::text, pg_catalog.pg_get_constraintdef(k.oid)
FROM pg_catalog.pg_constraint k
JOIN pg_catalog.pg_class c ON c.oid = k.conrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg_toast%' AND c.relpersistence <> 't'
UNION ALL
SELECT format('%I.%I', n.nspname, c.relname), 'index', i.relname::text, pg_catalog.pg_get_indexdef(i.oid)
FROM pg_catalog.pg_index x
JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid
JOIN pg_catalog.pg_class c ON c.oid = x.indrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg_toast%' AND c.relpersistence <> 't' AND (x.indisvalid OR c.relkind = 'p')
ORDER BY 1, 2, 3
""".strip()


# The definitions name a table without its schema when the schema is on the search_path: read both shapes with only
# pg_catalog on it, so a search_path of the source database (not restored by a schema-only pg_restore) changes nothing.
SHAPE_SEARCH_PATH_SQL = 'SET search_path = pg_catalog'


def table_shapes(rows):
    """{table: {'column <name>': definition, 'constraint <name>': ..., 'index <name>': ...}} of SHAPE_SQL's rows."""
    shapes = {}
    for row in rows:
        shapes.setdefault(row['table_name'], {})['%s %s' % (row['kind'], row['name'])] = row['definition']
    return shapes


def shape_differences(source, restored):
    """What the restored schema lacks, adds or has otherwise than the source's (table_shapes of each), one line each,
    in the order of the tables' names, then of their items."""
    differences = []
    for table in sorted(set(source) | set(restored)):
        if table not in restored:
            differences.append('%s is in the source and was not restored' % table)
            continue
        if table not in source:
            differences.append('%s is not in the source, but restored' % table)
            continue
        was, now = source[table], restored[table]
        for item in sorted(set(was) | set(now)):
            if item not in now:
                differences.append('%s: %s (%s) was not restored' % (table, item, was[item]))
            elif item not in was:
                differences.append('%s: %s (%s) is not in the source' % (table, item, now[item]))
            elif was[item] != now[item]:
                differences.append('%s: %s is %s in the source, %s restored' % (table, item, was[item], now[item]))
    return differences


def shape_counts(shapes):
    """(tables, columns, constraints, indexes) of table_shapes' result, for the drill's message."""
    items = [item.split(' ', 1)[0] for shape in shapes.values() for item in shape]
    return len(shapes), items.count('column'), items.count('constraint'), items.count('index')


def schema_drill_passed_message(backup, scratch, shapes, rows, kept):
    tables, columns, constraints, indexes = shape_counts(shapes)
    return ("Restore drill passed: the schema of %s restored into %s, and all %d tables have the source's %d columns, "
            "%d constraints and %d indexes as they were before the run; %s.%s"
            % (backup, scratch, tables, columns, constraints, indexes,
               'the %d touched rows of %d tables loaded into their tables\' columns' % (
                   sum(entry['rows'] for entry in rows), len(rows)) if rows else 'the run touches no row',
               ' The scratch database %s is kept.' % scratch if kept else ''))
