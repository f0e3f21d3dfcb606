# -*- coding: utf-8 -*-
# What the catalog holds about the relations and indexes an index change acts on: IndexCatalog reads it (the table,
# its indexes, its partition tree, the access methods, the facts the refusal rules judge) through the run's DDL
# session, for the index planner (online_index) and the kinds built on indexes.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.index_decisions import (
    estimate_index_bytes,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.partitioned_index import (
    partition_index_name,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.plan.refusal_rules import (
    RELATIONS_QUERY, refusal_messages, relation_facts,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.server_features import (
    first_major_with, has, major,
)

TABLE_QUERY = """
SELECT c.oid, c.relkind,
       ARRAY(SELECT a.attname::text FROM pg_catalog.pg_attribute a
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY a.attnum) AS columns
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relname = %(table)s
"""

# Row estimate of a table (of its partitions, for a partitioned one) and the average width of each column: from
# pg_stats after ANALYZE, else the type's fixed length, else 32 bytes.
SIZE_QUERY = """
SELECT greatest(coalesce((SELECT sum(p.reltuples) FILTER (WHERE p.reltuples > 0)
                          FROM pg_catalog.pg_partition_tree(c.oid) t JOIN pg_catalog.pg_class p ON p.oid = t.relid
                          WHERE t.isleaf), c.reltuples), 0)::bigint AS rows, a.attname::text AS column_name,
       coalesce(s.avg_width, nullif(a.attlen, -1), 32) AS width
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_catalog.pg_stats s ON s.schemaname = n.nspname AND s.tablename = c.relname AND s.attname = a.attname
WHERE n.nspname = %(schema)s AND c.relname = %(table)s
"""

INDEX_METHODS_QUERY = "SELECT amname::text FROM pg_catalog.pg_am WHERE amtype = 'i'"

# Everything about an existing index that can make it differ from a plan entry. Expression columns
# come back as NULL names; ordering, operator class, collation and NULLS NOT DISTINCT as "extras".
EXISTING_INDEXES_QUERY = """
SELECT c.oid::bigint AS oid, c.relname::text AS name, c.relkind::text AS relkind,
       t.relname::text AS "table", tn.nspname::text AS table_schema,
       i.indisvalid AS valid, i.indisready AS ready, i.indisunique AS "unique",
       am.amname::text AS method,
       ARRAY(SELECT a.attname::text
             FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
             LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
             WHERE k.ord <= i.indnkeyatts ORDER BY k.ord) AS key_columns,
       ARRAY(SELECT a.attname::text
             FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
             LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
             WHERE k.ord > i.indnkeyatts ORDER BY k.ord) AS include_columns,
       pg_catalog.pg_get_expr(i.indpred, i.indrelid) AS predicate,
       pg_catalog.pg_get_indexdef(c.oid) AS definition,
       (SELECT con.conname::text FROM pg_catalog.pg_constraint con
        WHERE con.conindid = c.oid AND con.contype IN ('p', 'u', 'x') LIMIT 1) AS "constraint",
       ARRAY(SELECT con.conname::text FROM pg_catalog.pg_constraint con
             WHERE con.conindid = c.oid AND con.contype = 'f' ORDER BY 1) AS referenced_by,
       coalesce(i.indisreplident, false) AS replica_identity, coalesce(i.indisclustered, false) AS clustered,
       pg_catalog.obj_description(c.oid, 'pg_class') AS comment,
       (SELECT ARRAY[pn.nspname::text, p.relname::text] FROM pg_catalog.pg_inherits inh
        JOIN pg_catalog.pg_class p ON p.oid = inh.inhparent JOIN pg_catalog.pg_namespace pn ON pn.oid = p.relnamespace
        WHERE inh.inhrelid = c.oid) AS attached_to,
       (SELECT p.pid FROM pg_catalog.pg_stat_progress_create_index p
        WHERE p.index_relid = c.oid AND p.pid <> pg_catalog.pg_backend_pid() LIMIT 1) AS build_in_progress_pid,
       array_remove(ARRAY[
           CASE WHEN EXISTS (SELECT 1 FROM unnest(i.indoption::int2[]) AS o(opt) WHERE o.opt <> 0)
                THEN 'a DESC or NULLS FIRST ordering' END,
           CASE WHEN EXISTS (SELECT 1 FROM unnest(i.indclass::oid[]) AS oc(oid)
                             JOIN pg_catalog.pg_opclass opc ON opc.oid = oc.oid WHERE NOT opc.opcdefault)
                THEN 'a non-default operator class' END,
           CASE WHEN EXISTS (SELECT 1 FROM unnest(i.indcollation::oid[], i.indkey::int2[]) AS x(coll, attnum)
                             JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = x.attnum
                             WHERE x.coll <> 0 AND x.coll <> a.attcollation)
                THEN 'a non-default collation' END,
           CASE WHEN coalesce((to_jsonb(i) ->> 'indnullsnotdistinct')::boolean, false)
                THEN 'NULLS NOT DISTINCT' END
       ], NULL) AS extras
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_index i ON i.indexrelid = c.oid
LEFT JOIN pg_catalog.pg_class t ON t.oid = i.indrelid
LEFT JOIN pg_catalog.pg_namespace tn ON tn.oid = t.relnamespace
LEFT JOIN pg_catalog.pg_am am ON am.oid = c.relam
WHERE n.nspname = %(schema)s AND c.relname = ANY(%(names)s)
"""

# A partitioned table's tree, the table first, each partitioned relation with its partition key (NULL for an
# expression).
PARTITION_TREE_QUERY = """
SELECT n.nspname::text AS schema, c.relname::text AS "table", c.relkind::text AS relkind,
       pn.nspname::text AS parent_schema, p.relname::text AS parent_table,
       CASE WHEN c.relkind = 'p' THEN ARRAY(
           SELECT a.attname::text FROM unnest(pt.partattrs::int2[]) WITH ORDINALITY AS k(attnum, ord)
           LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum ORDER BY k.ord)
       END AS key_columns
FROM pg_catalog.pg_partition_tree(%(oid)s::pg_catalog.oid::pg_catalog.regclass) t
JOIN pg_catalog.pg_class c ON c.oid = t.relid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_class p ON p.oid = t.parentrelid
LEFT JOIN pg_catalog.pg_namespace pn ON pn.oid = p.relnamespace
LEFT JOIN pg_catalog.pg_partitioned_table pt ON pt.partrelid = c.oid
ORDER BY t.level, n.nspname, c.relname
"""

# The indexes attached, at any depth, to a partitioned index, each with the partition it is on.
ATTACHED_INDEXES_QUERY = """
SELECT tn.nspname::text AS table_schema, t.relname::text AS "table", c.relname::text AS name, i.indisvalid AS valid
FROM pg_catalog.pg_partition_tree(%(oid)s::pg_catalog.oid::pg_catalog.regclass) it
JOIN pg_catalog.pg_class c ON c.oid = it.relid
JOIN pg_catalog.pg_index i ON i.indexrelid = c.oid
JOIN pg_catalog.pg_class t ON t.oid = i.indrelid
JOIN pg_catalog.pg_namespace tn ON tn.oid = t.relnamespace
WHERE it.level > 0
"""


def index_usage_query(version_num):
    """The statistics of the named indexes of a schema (pg_stat_user_indexes): idx_scan, and on PostgreSQL 16+
    last_idx_scan as UTC text (NULL below 16, where the column does not exist)."""
    last = ("pg_catalog.to_char(s.last_idx_scan AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
            if has(version_num, 'last_idx_scan') else 'NULL::text')
    return ('SELECT s.indexrelname::text AS name, s.idx_scan, %s AS last_idx_scan '
            'FROM pg_catalog.pg_stat_user_indexes s '
            'WHERE s.schemaname = %%(schema)s AND s.indexrelname = ANY(%%(names)s)' % last)


def last_use(version_num, row):
    """What the report says of an index about to be dropped or replaced, from its pg_stat_user_indexes C(row) (None:
    no statistics) on a server of C(version_num): its scans, and when it was last scanned (PostgreSQL 16+), or why
    that is not known, so that a blank is never silent."""
    if row is None:
        return dict(idx_scan=None, last_idx_scan=None, last_idx_scan_available=False,
                    note='no statistics in pg_stat_user_indexes (a partitioned index keeps none of its own)')
    available = has(version_num, 'last_idx_scan')
    note = None
    if not available:
        note = 'last_idx_scan is not available on PostgreSQL %d (pg_stat_user_indexes has it from PostgreSQL %d)' % (
            major(version_num), first_major_with('last_idx_scan'))
    elif row['last_idx_scan'] is None:
        note = 'not scanned since the statistics were last reset'
    return dict(idx_scan=row['idx_scan'], last_idx_scan=row['last_idx_scan'], last_idx_scan_available=available,
                note=note)


class IndexCatalog(object):
    """The catalog reads of the index kind, over a DdlSession (read once where it cannot change in a run)."""

    def __init__(self, session):
        self.session = session
        self._methods = None

    def index_methods(self):
        if self._methods is None:
            self._methods = set(row['amname'] for row in self.session.query(INDEX_METHODS_QUERY))
        return self._methods

    def read_table(self, schema, table):
        rows = self.session.query(TABLE_QUERY, dict(schema=schema, table=table))
        return rows[0] if rows else None

    def estimate_sizes(self, schema, table, specs):
        """{index name: estimated bytes} of the given specs, from the table's statistics."""
        rows = self.session.query(SIZE_QUERY, dict(schema=schema, table=table))
        widths = dict((row['column_name'], int(row['width'])) for row in rows)
        count = int(rows[0]['rows']) if rows else 0
        return dict((spec['name'], estimate_index_bytes(count, [
            widths.get(c, 32) for c in list(spec.get('columns') or []) + list(spec.get('include') or [])]))
            for spec in specs)

    def server_version(self):
        """server_version_num (the session read it when it connected): some refusal rules hold for some versions only."""
        return self.session.server_version_num

    def read_relation_facts(self, pairs):
        """{(schema, name): facts} (refusal_rules.relation_facts) of the relations of C(pairs) that exist."""
        pairs = sorted(set(pairs))
        if not pairs:
            return {}
        return relation_facts(self.session.query(RELATIONS_QUERY, dict(schemas=[schema for schema, dummy_ in pairs],
                                                                       names=[name for dummy_, name in pairs])))

    def refused(self, judged):
        """The lines of the refusal rules that refuse C(judged), [(subject, statement, facts)], on this server."""
        return refusal_messages(judged, self.server_version())

    def read_last_use(self, schema, names):
        """{index name: last_use} of the named indexes of C(schema), read before they are dropped or replaced."""
        version = self.server_version()
        rows = dict((row['name'], row) for row in self.session.query(index_usage_query(version),
                                                                     dict(schema=schema, names=list(names))))
        return dict((name, last_use(version, rows.get(name))) for name in names)

    def read_existing_indexes(self, schema, names):
        rows = self.session.query(EXISTING_INDEXES_QUERY, dict(schema=schema, names=list(names)))
        return dict((row['name'], row) for row in rows)

    def read_partitions(self, table_row, specs, existing):
        """{planned name: its partition tree} of a partitioned table, as index_decisions.partition_steps reads it: every
        partition with the index of the name derived for it (if any) and the index attached for it (if any)."""
        tree = self.session.query(PARTITION_TREE_QUERY, dict(oid=table_row['oid']))
        wanted = {}
        for spec in specs:
            for node in tree[1:]:
                wanted.setdefault(node['schema'], set()).add(partition_index_name(spec['name'], node['table']))
        found = {}
        for node_schema, names in wanted.items():
            for name, row in self.read_existing_indexes(node_schema, sorted(names)).items():
                found[(node_schema, name)] = row
        partitions = {}
        for spec in specs:
            planned = existing.get(spec['name'])
            attached = {}
            if planned is not None and planned['relkind'] == 'I':
                attached = dict(((row['table_schema'], row['table']), row)
                                for row in self.session.query(ATTACHED_INDEXES_QUERY, dict(oid=planned['oid'])))
            nodes = []
            for node in tree:
                entry = dict(schema=node['schema'], table=node['table'], relkind=node['relkind'],
                             key_columns=node['key_columns'], parent=None)
                if node['parent_table'] is not None:
                    entry.update(parent=(node['parent_schema'], node['parent_table']),
                                 index=found.get((node['schema'], partition_index_name(spec['name'], node['table']))),
                                 attached=attached.get((node['schema'], node['table'])))
                nodes.append(entry)
            partitions[spec['name']] = nodes
        return partitions
