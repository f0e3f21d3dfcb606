# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a statement run as written changes, read from the catalog right before it runs, so that the ledger row that
records it holds what a rollback puts back: a column's default (SET DEFAULT, DROP DEFAULT), its type (ALTER COLUMN
TYPE), a constraint's definition (DROP CONSTRAINT). The other kinds carry what their undo needs in their own details
(the old name of a rename), or need nothing (a created table is dropped while empty)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.statements import fetch_dicts

COLUMN_QUERY = """
SELECT pg_catalog.format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS not_null,
       pg_catalog.pg_get_expr(d.adbin, d.adrelid) AS "default"
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE n.nspname = %(schema)s AND c.relname = %(table)s AND a.attname = %(column)s AND a.attnum > 0
  AND NOT a.attisdropped
"""

CONSTRAINT_QUERY = """
SELECT con.contype::text AS type, pg_catalog.pg_get_constraintdef(con.oid) AS definition
FROM pg_catalog.pg_constraint con
JOIN pg_catalog.pg_class c ON c.oid = con.conrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relname = %(table)s AND con.conname = %(name)s
"""

COLUMN_KINDS = ('set_default', 'drop_default', 'alter_column_type', 'drop_not_null')


def prior_state(cursor, entry, schema):
    """What C(entry) (a statement about to run as written) changes, as it is now: {} when its undo needs nothing."""
    details = entry.get('details') or {}
    table_schema = details.get('schema') or schema
    if entry['kind'] in COLUMN_KINDS:
        rows = fetch_dicts(cursor, COLUMN_QUERY, dict(schema=table_schema, table=details['table'],
                                                      column=details['column']))
        return dict(column=rows[0]) if rows else {}
    if entry['kind'] == 'drop_constraint':
        rows = fetch_dicts(cursor, CONSTRAINT_QUERY, dict(schema=table_schema, table=details['table'],
                                                          name=details['constraint']))
        return dict(constraint=rows[0]) if rows else {}
    return {}
