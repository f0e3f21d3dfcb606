# -*- coding: utf-8 -*-
# Planned unique constraints and their duplicate keys: the duplicate query, the report an operator acts on,
# and how an opt-in resolution would rename them. rename_plan and format_duplicate_report take plain data,
# so tests/unit runs them without a server.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.statements import fetch_dicts
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.plan.plan_sql import statement_error

PRIMARY_KEY_QUERY = """
SELECT a.attname::text AS column_name
FROM pg_catalog.pg_constraint con
JOIN pg_catalog.pg_class c ON c.oid = con.conrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord) ON true
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
WHERE n.nspname = %(schema)s AND c.relname = %(table)s AND con.contype = 'p'
ORDER BY k.ord
"""

COLUMN_TYPES_QUERY = """
SELECT a.attname::text AS name, pg_catalog.format_type(a.atttypid, NULL) AS type
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relname = %(table)s AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""

# Column types a visible suffix can be appended to.
RENAMABLE_TYPES = ('text', 'character varying', 'citext')


def rename_plan(schema, table, columns, types, primary_key, rename_column=None, keep_oldest_by=None):
    """How duplicates of UNIQUE (columns) would be renamed: (column that takes the suffix, ordering columns).

    C(types) maps each column of the table to its type name, C(primary_key) lists the primary key
    columns. Raises ValueError saying why the table cannot be resolved this way.
    """
    missing = [c for c in columns if c not in types]
    if missing:
        raise ValueError('column(s) %s not found in %s.%s' % (', '.join(missing), schema, table))
    if not primary_key:
        raise ValueError('%s.%s has no primary key, so the audit could not name the renamed rows; resolve the '
                         'duplicates by hand' % (schema, table))
    rename = rename_column or next((c for c in columns if types[c] in RENAMABLE_TYPES), None)
    if rename is None:
        raise ValueError('none of the columns (%s) is text or varchar, so no suffix can be added: set rename_column, '
                         'or resolve the duplicates by hand' % ', '.join('%s %s' % (c, types[c]) for c in columns))
    if rename not in columns:
        raise ValueError('rename_column "%s" is not one of the constraint\'s columns (%s)' % (rename, ', '.join(columns)))
    if types[rename] not in RENAMABLE_TYPES:
        raise ValueError('rename_column "%s" is %s; only text or varchar can take a suffix' % (rename, types[rename]))
    order = list(keep_oldest_by) if keep_oldest_by is not None else (['createdAt'] if 'createdAt' in types else [])
    missing = [c for c in order if c not in types]
    if missing:
        raise ValueError('keep_oldest_by names column(s) %s not in %s.%s' % (', '.join(missing), schema, table))
    return rename, order + [c for c in primary_key if c not in order]


def duplicate_groups_query(sql, schema, table, columns, row_id_sql, sample_ids, max_groups, where=None):
    """Groups of rows sharing a key, largest first, with the total over all groups.

    Rows with a NULL in any key column are left out: a unique constraint (NULLS DISTINCT, the
    default) accepts them. C(row_id_sql) is a composable naming each row (its primary key, or ctid).
    C(where), a partial unique index's predicate (already proven one expression), limits it to the rows
    the index covers.
    """
    keys = sql.SQL(', ').join(sql.Identifier(c) for c in columns)
    not_null = sql.SQL(' AND ').join(sql.SQL('{} IS NOT NULL').format(sql.Identifier(c)) for c in columns)
    if where:
        not_null = sql.SQL('{} AND ({})').format(not_null, sql.SQL(where))
    key_text = sql.SQL(', ').join(sql.SQL('{}::text').format(sql.Identifier(c)) for c in columns)
    return sql.SQL(
        'SELECT ARRAY[{key_text}] AS key, count(*) AS rows, '
        '(array_agg({row_id} ORDER BY {row_id}))[1:{sample}] AS sample_ids, '
        'count(*) OVER () AS total_groups, sum(count(*)) OVER () AS total_rows '
        'FROM {schema}.{table} WHERE {not_null} GROUP BY {keys} HAVING count(*) > 1 '
        'ORDER BY count(*) DESC, {keys} LIMIT {limit}').format(
            key_text=key_text, row_id=row_id_sql, sample=sql.Literal(int(sample_ids)),
            schema=sql.Identifier(schema), table=sql.Identifier(table), not_null=not_null, keys=keys,
            limit=sql.Literal(groups_limit(max_groups)))


def groups_limit(max_groups):
    """The LIMIT of a query of groups whose window totals (count(*) OVER ()) count every group: at least one row,
    since LIMIT 0 returns no row to read the totals from. C(max_groups) only limits what is listed (group_totals)."""
    return max(int(max_groups), 1)


def group_totals(rows, max_groups):
    """The totals of a query of groups (groups_limit) and its first C(max_groups) groups: dict(total_groups,
    total_rows, groups). The totals never depend on how many groups are listed."""
    return dict(total_groups=int(rows[0]['total_groups']) if rows else 0,
                total_rows=int(rows[0]['total_rows']) if rows else 0,
                groups=[dict(key=g['key'], rows=int(g['rows']), sample_ids=g['sample_ids'])
                        for g in rows[:max(int(max_groups), 0)]])


def sample_size_errors(params):
    """Errors of the options that limit what a report lists (sample_ids, max_groups): 0 lists none, and the proofs
    count every row whatever they are; a negative number is a mistake."""
    return ['%s must be 0 or more (it only limits how many are listed; every row is counted anyway), not %s'
            % (name, params[name]) for name in ('sample_ids', 'max_groups')
            if params.get(name) is not None and params[name] < 0]


def find_duplicates(cursor, sql, schema, table, columns, sample_ids, max_groups, where=None):
    """The duplicate groups of UNIQUE (columns) on a table, rows named by primary key (or ctid without one).

    With C(where), only among the rows that satisfy that predicate (a partial unique index).

    Returns dict(row_id (the label of the row ids), primary_key, total_groups, total_rows (over every group, whatever
    C(max_groups) lists), groups); raises the driver's error when the table or a column does not exist.
    """
    primary_key = [row['column_name'] for row in fetch_dicts(cursor, PRIMARY_KEY_QUERY, dict(schema=schema, table=table))]
    if primary_key:
        row_id = sql.SQL(" || ',' || ").join(sql.SQL('{}::text').format(sql.Identifier(c)) for c in primary_key)
        id_label = '/'.join(primary_key)
    else:
        row_id, id_label = sql.SQL('ctid::text'), 'ctid'
    query = duplicate_groups_query(sql, schema, table, columns, row_id, sample_ids, max_groups, where)
    if where:
        # Plan text inside: sent only once PostgreSQL's parser proves the whole text one SELECT.
        query = query.as_string(cursor)
        problem = statement_error(query, 'SelectStmt')
        if problem:
            raise ValueError('refusing to send %s: %s' % (query, problem))
    return dict(group_totals(fetch_dicts(cursor, query), max_groups), row_id=id_label, primary_key=primary_key)


def format_duplicate_report(constraint, schema, table, columns, id_label, groups, total_groups, total_rows):
    """The lines an SRE reads when duplicates block a unique constraint."""
    lines = ['constraint "%s" UNIQUE (%s) on %s.%s: %d duplicate key(s) over %d rows'
             % (constraint, ', '.join(columns), schema, table, total_groups, total_rows)]
    for group in groups:
        lines.append('  (%s) = (%s): %d rows, %s %s%s'
                     % (', '.join(columns), ', '.join(str(value) for value in group['key']), group['rows'],
                        id_label, ', '.join(str(value) for value in group['sample_ids']),
                        ', ...' if group['rows'] > len(group['sample_ids']) else ''))
    if total_groups > len(groups):
        lines.append('  ... and %d more duplicate key(s)' % (total_groups - len(groups)))
    return lines
