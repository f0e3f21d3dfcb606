# -*- coding: utf-8 -*-
# What the catalog holds about the tables and columns a foreign key, check or NOT NULL names: ConstraintCatalog reads
# it through the run's DDL session, for the planner (online_constraint): the columns and their facts, what a foreign
# key's ADD CONSTRAINT depends on, what an entry names that does not exist, and whether a foreign key has an index.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.constraint_decisions import entry_columns
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.plan.refusal_rules import COLUMN_FACTS_QUERY, UNIQUE_INDEXES_QUERY

# A column proven NOT NULL: attnotnull, and (PostgreSQL 18+) no NOT VALID NOT NULL constraint behind it, for 18 sets
# attnotnull as soon as one is added NOT VALID, and PRIMARY KEY USING INDEX refuses such a column.
NOT_NULL_PROVEN = ("a.attnotnull AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint nn WHERE nn.conrelid = "
                   "a.attrelid AND nn.contype = 'n' AND NOT nn.convalidated AND a.attnum = ANY(nn.conkey))")

COLUMNS_QUERY = """
SELECT a.attname::text AS name, a.atttypid::bigint AS type_oid, pg_catalog.format_type(a.atttypid, a.atttypmod) AS type,
       a.attnotnull AS not_null, """ + NOT_NULL_PROVEN + """ AS not_null_valid
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relname = %(table)s AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""

# The NOT NULL constraint of a column (PostgreSQL 18+ records one, contype 'n', possibly NOT VALID; before 18 none).
NOT_NULL_CONSTRAINT_QUERY = """
SELECT con.conname::text AS name, con.convalidated AS valid
FROM pg_catalog.pg_constraint con
JOIN pg_catalog.pg_class c ON c.oid = con.conrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_attribute a ON a.attrelid = con.conrelid AND a.attname = %(column)s
WHERE n.nspname = %(schema)s AND c.relname = %(table)s AND con.contype = 'n' AND con.conkey = ARRAY[a.attnum]
"""

# Whether values of the first type can be compared with = to values of the second (directly, or through a binary
# coercion), as a foreign key needs.
COMPARABLE_QUERY = """
SELECT EXISTS (
  SELECT 1 FROM pg_catalog.pg_operator o
  WHERE o.oprname = '='
    AND (o.oprleft = %(a)s OR EXISTS (SELECT 1 FROM pg_catalog.pg_cast WHERE castsource = %(a)s
                                      AND casttarget = o.oprleft AND castmethod = 'b'))
    AND (o.oprright = %(b)s OR EXISTS (SELECT 1 FROM pg_catalog.pg_cast WHERE castsource = %(b)s
                                       AND casttarget = o.oprright AND castmethod = 'b'))) AS comparable
"""

# Indexes of a table whose leading key columns are exactly a given set (any order): they serve a foreign key's
# lookups when a referenced row is deleted or its key updated.
LEADING_INDEX_QUERY = """
SELECT c.relname::text AS name
FROM pg_catalog.pg_index i
JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
JOIN pg_catalog.pg_class t ON t.oid = i.indrelid
JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace
WHERE n.nspname = %(schema)s AND t.relname = %(table)s AND i.indisvalid AND i.indpred IS NULL
  AND (SELECT array_agg(a.attname::text ORDER BY a.attname)
       FROM unnest((i.indkey::int2[])[0:%(count)s - 1]) AS k(attnum)
       JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum) = %(columns)s::text[]
"""

# The leaf partitions of a partitioned table (oid), each with the foreign key the parent's key %(name)s gave it, found
# through pg_constraint.conparentid (PostgreSQL names it otherwise on a partition where the name is taken, or attaches
# an equal key the partition had), and whether it is valid. Before the parent's key exists a partition gets the
# planned name (--check shows it). Foreign-table partitions hold no key: PostgreSQL refuses the ADD.
PARTITION_KEYS_QUERY = """
WITH RECURSIVE fk(oid) AS (
    SELECT con.oid FROM pg_catalog.pg_constraint con
    WHERE con.conrelid = %(oid)s AND con.conname = %(name)s AND con.contype = 'f'
  UNION ALL
    SELECT child.oid FROM pg_catalog.pg_constraint child JOIN fk ON child.conparentid = fk.oid
)
SELECT n.nspname::text AS schema, c.relname::text AS partition, c.oid::bigint AS oid,
       coalesce(con.conname::text, %(name)s) AS name, coalesce(con.convalidated, false) AS valid
FROM pg_catalog.pg_partition_tree(%(oid)s::oid::regclass) t
JOIN pg_catalog.pg_class c ON c.oid = t.relid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_constraint con ON con.conrelid = c.oid AND con.oid IN (SELECT fk.oid FROM fk)
WHERE t.isleaf AND c.relkind = 'r'
ORDER BY t.level, n.nspname, c.relname
"""


class ConstraintCatalog(object):
    """The catalog reads of the foreign key, check and NOT NULL kinds, over the index kind's (C(indexes)) session."""

    def __init__(self, indexes):
        self.indexes, self.session = indexes, indexes.session

    def read_columns(self, schema, table):
        return dict((row['name'], row) for row in self.session.query(COLUMNS_QUERY, dict(schema=schema, table=table)))

    def not_null_constraint(self, schema, table, column):
        """The NOT NULL constraint of a column, dict(name, valid), or None (none; always before PostgreSQL 18)."""
        rows = self.session.query(NOT_NULL_CONSTRAINT_QUERY, dict(schema=schema, table=table, column=column))
        return rows[0] if rows else None

    def column_facts(self, schema, table):
        """{column: its facts} (refusal_rules.COLUMN_FACTS_QUERY) of a table."""
        return dict((row['name'], row) for row in self.session.query(COLUMN_FACTS_QUERY, dict(schema=schema, table=table)))

    def partition_keys(self, table_oid, name):
        """The not yet valid foreign keys of the leaf partitions of partitioned table C(table_oid) that its key C(name)
        gave them (PARTITION_KEYS_QUERY): [dict(schema, partition, oid, name, valid)], in partition tree order."""
        return [row for row in self.session.query(PARTITION_KEYS_QUERY, dict(oid=table_oid, name=name))
                if not row['valid']]

    def foreign_key_facts(self, spec, planned_unique):
        """The facts a foreign key's ADD CONSTRAINT depends on: the referenced relation and its unique keys (or one
        the plan adds before it), whether the key types compare, REFERENCES privileges and generated columns."""
        references = spec['references']
        ref_schema, ref_table, ref_columns = references['schema'], references['table'], list(references['columns'])
        referenced = self.indexes.read_relation_facts([(ref_schema, ref_table)])[(ref_schema, ref_table)]
        columns, parent = self.read_columns(spec['schema'], spec['table']), self.read_columns(ref_schema, ref_table)
        incomparable = []
        for column, ref_column in zip(spec['columns'], ref_columns):
            mine, theirs = columns[column], parent[ref_column]
            if mine['type_oid'] != theirs['type_oid'] and not self.session.query(
                    COMPARABLE_QUERY, dict(a=mine['type_oid'], b=theirs['type_oid']))[0]['comparable']:
                incomparable.append('column "%s" (%s) cannot be compared with %s.%s."%s" (%s)' % (
                    column, mine['type'], ref_schema, ref_table, ref_column, theirs['type']))
        own, theirs = self.column_facts(spec['schema'], spec['table']), self.column_facts(ref_schema, ref_table)
        return dict(referenced=referenced, ref_columns=ref_columns,
                    keys=self.session.query(UNIQUE_INDEXES_QUERY, dict(oid=referenced['oid'])),
                    planned_key=(ref_schema, ref_table, frozenset(ref_columns)) in planned_unique,
                    incomparable=incomparable,
                    missing_references=[c for c in ref_columns if not theirs[c]['references_privilege']],
                    generated=[c for c in spec['columns'] if own[c]['generated']],
                    on_delete=spec['on_delete'], on_update=spec['on_update'])

    def catalog_errors(self, spec, table_row, columns):
        """What the entry names that does not exist: its table, its columns, the referenced table and columns. What
        PostgreSQL would refuse of what exists is the refusal rules' (step_refusals_of_entry)."""
        schema, table = spec['schema'], spec['table']
        if table_row is None:
            return ['table %s.%s does not exist: check the plan\'s schema and table name (names are case-sensitive, '
                    'Prisma models are quoted CamelCase)' % (schema, table)]
        missing = [c for c in entry_columns(spec) if c not in columns]
        if missing:
            return ['constraint "%s": column(s) %s not found in %s.%s (its columns: %s)' % (
                spec['name'], ', '.join('"%s"' % c for c in missing), schema, table, ', '.join(columns))]
        if spec['type'] != 'foreign_key':
            return []
        references = spec['references']
        ref_schema, ref_table, ref_columns = references['schema'], references['table'], references['columns']
        if self.indexes.read_table(ref_schema, ref_table) is None:
            return ['foreign key "%s": the referenced table %s.%s does not exist' % (spec['name'], ref_schema, ref_table)]
        parent = self.read_columns(ref_schema, ref_table)
        missing = [c for c in ref_columns if c not in parent]
        if missing:
            return ['foreign key "%s": referenced column(s) %s not found in %s.%s (its columns: %s)' % (
                spec['name'], ', '.join('"%s"' % c for c in missing), ref_schema, ref_table, ', '.join(parent))]
        return []

    def index_advice(self, spec, state, table_row, index_decision):
        """A foreign key without an index on its columns: deleting or updating a referenced row scans the table."""
        if spec['type'] != 'foreign_key' or state != 'present' or index_decision is not None or table_row is None:
            return None
        columns = sorted(spec['columns'])
        if self.session.query(LEADING_INDEX_QUERY, dict(schema=spec['schema'], table=spec['table'], count=len(columns),
                                                        columns=columns)):
            return None
        name = '%s_%s_idx' % (spec['table'], '_'.join(spec['columns']))
        return ('foreign key "%s": no index on %s.%s (%s); each delete or key update of a %s row will scan %s. Add '
                '`index: %s` to the entry to build one concurrently before the key is added.'
                % (spec['name'], spec['schema'], spec['table'], ', '.join(spec['columns']),
                   spec['references']['table'], spec['table'], name[:63]))
