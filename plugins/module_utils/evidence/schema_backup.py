# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A schema backup (backup_mode=schema): one directory <database>-<UTC time>.schema holding schema.pgc
(pg_dump --schema-only --format=custom), rows/<n>.copy (the rows this run may change, one COPY text file per table)
and manifest.json (what each file holds, its sha256, and the shape of every table before the run, which the restore
drill compares the restored schema with).

The rows a run may change are those a unique constraint's on_duplicates=rename renames: every row whose key appears
more than once (NULL keys are never duplicates). Pure functions; postgresql_backup runs the statements.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

SCHEMA_FILE = 'schema.pgc'
ROWS_DIR = 'rows'
MANIFEST_FILE = 'manifest.json'
MANIFEST_FORMAT = 1

# The columns of a table in their order, as COPY writes them (SELECT t.*).
TABLE_COLUMNS_SQL = """
SELECT a.attname::text AS name
FROM pg_catalog.pg_attribute a
WHERE a.attrelid = pg_catalog.to_regclass(%(table)s) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
""".strip()


def schema_dump_command(pg_dump, path):
    """pg_dump's argv of the schema; the database and the login come from the environment."""
    return [pg_dump, '--schema-only', '--format=custom', '--file=%s' % path]


def touched_tables(specs):
    """The distinct (schema, table, columns) of C(specs) (the touched_rows option: dicts of schema, table, columns),
    in their order: two constraints on one table and key are dumped once."""
    found = []
    for spec in specs:
        entry = (spec.get('schema') or 'public', spec['table'], tuple(spec['columns']))
        if entry not in found:
            found.append(entry)
    return found


def touched_rows_statement(sql, schema, table, columns):
    """COPY of the rows of C(table) whose key C(columns) appears more than once, ordered by the key (composed SQL)."""
    relation = sql.Identifier(schema, table)
    keys = sql.SQL(', ').join(sql.Identifier(column) for column in columns)
    return sql.SQL('COPY (SELECT t.* FROM {relation} t WHERE ({keys}) IN (SELECT {keys} FROM {relation} GROUP BY {keys} '
                   'HAVING count(*) > 1) ORDER BY {keys}) TO STDOUT').format(relation=relation, keys=keys)


def load_rows_statement(sql, schema, table, columns):
    """The drill's load of a rows file: into a temporary table like the restored one, in its columns' order."""
    like = sql.SQL('CREATE TEMPORARY TABLE pgzd_touched_rows (LIKE {relation}) ON COMMIT DROP').format(
        relation=sql.Identifier(schema, table))
    load = sql.SQL('COPY pgzd_touched_rows ({columns}) FROM STDIN').format(
        columns=sql.SQL(', ').join(sql.Identifier(column) for column in columns))
    return like, load


def rows_file(number):
    return os.path.join(ROWS_DIR, '%03d.copy' % number)


def count_lines(path):
    """Rows in a COPY text file (one line each: COPY escapes newlines within values)."""
    with open(path, 'rb') as handle:
        return sum(1 for dummy in handle)


def manifest(database, server_version, schema_entry, rows, shape_rows):
    """The manifest of a schema backup, as plain data."""
    return dict(format=MANIFEST_FORMAT, database=database, server_version=server_version, schema=schema_entry,
                rows=rows, shape=shape_rows)


def write_manifest(directory, data):
    with open(os.path.join(directory, MANIFEST_FILE), 'w') as handle:
        json.dump(data, handle, indent=1, sort_keys=True, default=str)


def read_manifest(directory):
    """The manifest of the schema backup C(directory), or None when it is not one."""
    path = os.path.join(directory, MANIFEST_FILE)
    if not os.path.isfile(path):
        return None
    with open(path) as handle:
        return json.load(handle)


def schema_summary(database, backup):
    rows = backup['rows']
    return ('Schema backup of %s: %s (schema %.1f KiB, %d entries, sha256 %s; %s), verified with pg_restore --list, '
            'in %ss.' % (database, backup['path'], backup['schema']['size_bytes'] / 1024.0,
                         backup['schema']['toc_entries'], backup['schema']['sha256'],
                         '%d rows of %d tables this run may change' % (sum(entry['rows'] for entry in rows), len(rows))
                         if rows else 'no row: this run changes none', backup['seconds']))
