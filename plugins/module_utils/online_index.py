# -*- coding: utf-8 -*-
# The index runner: the catalog reads an index change needs and OnlineIndexRunner, which plans a table's
# indexes against the catalog (index_plan decides) and runs the concurrent DDL through the run's DDL session
# (ddl_session: the migration lock proven before each statement, lock-timeout retries, builds watched).

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.ddl_session import DdlSession
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.index_plan import (
    ACTION_CREATE, ACTION_DROP, ACTION_REBUILD, ACTION_REPLACE, ACTION_RESTORE, ACTION_RESUME, ACTION_UNCHANGED,
    INDEXABLE_RELKINDS, PARTITIONED, column_errors, compare_index,
    decide_actions, estimate_index_bytes, index_expressions, partition_index_name, replacement_names,
    same_index_definition, validate_specs,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.lock_order import ORDERED_STATEMENTS
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.plan_trust import refusal_message
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.refusal_rules import (
    ATTACH_INDEX, CREATE_INDEX, CREATE_INDEX_ON_ONLY, DROP_INDEX, RELATIONS_QUERY, RENAME_INDEX, SERVER_VERSION_QUERY,
    index_facts, refusal_messages, relation_facts,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session import OnlineIndexError, error_text


# ---------------------------------------------------------------------------------------------------
# Catalog reads and SQL, against a live connection.
# ---------------------------------------------------------------------------------------------------

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


# What to do when a step that runs under lock_timeout gave up after every retry (formatted with the step).
CATALOG_STEP_ADVICE = dict(
    create_on_only='What to do: let those sessions finish (or end them), or raise lock_timeout / lock_retries, then '
                   'rerun; nothing was changed by this step.',
    attach='What to do: let those sessions finish (or end them), or raise lock_timeout / lock_retries, then rerun: '
           'the partition indexes built so far are kept, and the rerun attaches %(partition_index)s and the rest.',
    swap='What to do: let those sessions finish (or end them), or raise lock_timeout / lock_retries, then rerun: the '
         'new index %(next)s is built and kept, so the rerun only swaps the names (and drops the index replaced).',
    drop_partitioned='What to do: let those sessions finish (or end them), or raise lock_timeout / lock_retries, then '
                     'rerun; nothing was dropped by this step.',
)

# The statement each kind of step sends (index_plan._step), as the refusal rules name it.
STEP_STATEMENTS = dict(build=CREATE_INDEX, build_definition=CREATE_INDEX, create_on_only=CREATE_INDEX_ON_ONLY,
                       attach=ATTACH_INDEX, swap=RENAME_INDEX, drop=DROP_INDEX, drop_partitioned=DROP_INDEX)
# The steps that give a relation a name: a new index, and the name a swap gives the index it replaces.
NAMING_STEPS = ('build', 'build_definition', 'create_on_only')


def created_names(decision):
    """(schema, name, what creates it) of every relation name a decision's steps create (index_plan._step): new
    indexes, partition indexes, and the names a replacement builds under and gives the index it replaces."""
    spec = decision['spec']
    label = 'index "%s" of %s.%s' % (spec['name'], spec['schema'], spec['table'])
    names = []
    for step in decision['steps']:
        if step['kind'] in NAMING_STEPS:
            names.append((step['schema'], step['name'], label))
        elif step['kind'] == 'swap':
            names.append((step['schema'], step['previous'], label))
    return names


def step_facts(schema, decisions, existing, partitions, relations, dropped_first):
    """[(subject, statement, facts)] of every step of C(decisions), for the refusal rules (plain data, no I/O).

    Each step is judged on the facts of the relation it acts on (C(relations): refusal_rules.relation_facts), and a drop
    on the index it drops at that point: after a swap, the index that held the planned name holds the replacement's
    previous name. C(existing) and C(partitions) are what decide_actions got; C(dropped_first) as for
    OnlineIndexRunner.plan (None: the dependent foreign keys are not known).
    """
    indexes = dict(((schema, name), row) for name, row in existing.items())
    nodes = {}
    for tree in (partitions or {}).values():
        for node in tree:
            nodes[(node['schema'], node['table'])] = node
            if node.get('index') is not None:
                indexes[(node['schema'], node['index']['name'])] = node['index']
    found = []
    for decision in decisions:
        spec, holds = decision['spec'], dict(indexes)
        for step in decision['steps']:
            where = (step['schema'], step['name'])
            statement = STEP_STATEMENTS[step['kind']]
            facts = dict(relation=relations.get((step['schema'], step['table'])))
            if statement == DROP_INDEX:
                facts['index'] = index_facts(holds.pop(where, None))
                if facts['index'] is not None and dropped_first is not None:
                    facts['dependents'] = [name for name in facts['index']['referenced_by'] if name not in dropped_first]
            elif step['kind'] == 'create_on_only':
                facts.update(unique=bool(spec.get('unique')), columns=list(spec.get('columns') or []),
                             partition_key=(nodes.get((step['schema'], step['table'])) or {}).get('key_columns'))
            if step['kind'] == 'swap':
                holds[(step['schema'], step['previous'])] = holds.pop(where, None)
                holds[where] = holds.pop((step['schema'], step['next']), None)
            elif step['kind'] in NAMING_STEPS:
                holds[where] = None
            if facts['relation'] is None:
                continue
            subject = 'index "%s.%s"' % (spec['schema'], spec['name'])
            if where != (spec['schema'], spec['name']):
                subject += ' (its step on "%s.%s")' % where
            found.append((subject, statement, facts))
    return found


def table_problems(schema, table, errors):
    """The message of the problems a kind found planning on one table."""
    return 'table %s.%s:\n  - %s' % (schema, table, '\n  - '.join(errors))


class OnlineIndexRunner(object):
    """Plans and applies one table's index specs over an autocommit connection."""

    def __init__(self, connection, session=None, **options):
        """Its statements go through C(session), or a DdlSession of its own over C(connection) with C(options)."""
        self.session = session or DdlSession(connection, **options)
        session = self.session
        self.connection, self.cursor, self.sql = connection, session.cursor, session.sql
        self.trust, self.ledger, self.log, self.lock_timeout = session.trust, session.ledger, session.log, \
            session.lock_timeout
        # The session's records (the same lists): what ran, what only cleaned up, what a failure left, the waits.
        self.executed_queries, self.cleanup_queries = session.executed_queries, session.cleanup_queries
        self.leftovers, self.waits = session.leftovers, session.waits
        self._methods = None
        self._server_version = None
        # (schema, name, what creates it) of every relation name the decisions planned so far create: the preflight
        # proves them unique across the whole plan (refusal_rules.name_clash_messages).
        self.created_names = []

    @property
    def retries_used(self):
        """Lock-timeout retries used so far (the session's)."""
        return self.session.retries_used

    def connection_lost(self):
        return self.session.connection_lost()


    # -- reading -----------------------------------------------------------------------------------

    def _query(self, query, params=None):
        return self.session.query(query, params)

    def render(self, statement):
        return self.session.render(statement)

    def index_methods(self):
        if self._methods is None:
            self._methods = set(row['amname'] for row in self._query(INDEX_METHODS_QUERY))
        return self._methods

    def read_table(self, schema, table):
        rows = self._query(TABLE_QUERY, dict(schema=schema, table=table))
        return rows[0] if rows else None

    def estimate_sizes(self, schema, table, specs):
        """{index name: estimated bytes} of the given specs, from the table's statistics."""
        rows = self._query(SIZE_QUERY, dict(schema=schema, table=table))
        widths = dict((row['column_name'], int(row['width'])) for row in rows)
        count = int(rows[0]['rows']) if rows else 0
        return dict((spec['name'], estimate_index_bytes(count, [
            widths.get(c, 32) for c in list(spec.get('columns') or []) + list(spec.get('include') or [])]))
            for spec in specs)

    def server_version(self):
        """server_version_num, read once: some refusal rules hold for some versions only."""
        if self._server_version is None:
            self._server_version = int(self._query(SERVER_VERSION_QUERY)[0]['version'])
        return self._server_version

    def read_relation_facts(self, pairs):
        """{(schema, name): facts} (refusal_rules.relation_facts) of the relations of C(pairs) that exist."""
        pairs = sorted(set(pairs))
        if not pairs:
            return {}
        return relation_facts(self._query(RELATIONS_QUERY, dict(schemas=[schema for schema, dummy_ in pairs],
                                                                names=[name for dummy_, name in pairs])))

    def refused(self, judged):
        """The lines of the refusal rules that refuse C(judged), [(subject, statement, facts)], on this server."""
        return refusal_messages(judged, self.server_version())

    def read_existing_indexes(self, schema, names):
        rows = self._query(EXISTING_INDEXES_QUERY, dict(schema=schema, names=list(names)))
        return dict((row['name'], row) for row in rows)

    def prove_definitions(self, table, decisions):
        """Problems of the recorded index definitions the decisions build again (a replacement's rollback): their key
        expressions and predicate run on every row of the build, so they are proven as a predicate is, on an empty
        temporary copy of the table, before anything runs."""
        recorded = [(decision['spec'], step['statement']) for decision in decisions for step in decision['steps']
                    if step['kind'] == 'build_definition']
        errors = []
        if not recorded:
            return errors
        sql = self.sql
        self.cursor.execute('BEGIN')
        try:
            self.cursor.execute(sql.SQL('CREATE TEMPORARY TABLE {} (LIKE {}.{})').format(
                sql.Identifier(table), sql.Identifier(recorded[0][0]['schema']), sql.Identifier(table)))
            for spec, definition in recorded:
                keys, predicate = index_expressions(definition)
                problems = [problem for key in keys
                            for problem in self.trust.prove_expression('predicate', table, key, value=True)]
                problems += self.trust.prove_expression('predicate', table, predicate) if predicate else []
                if problems:
                    errors.append('index "%s": %s' % (spec['name'], refusal_message(
                        'the recorded definition it would build again', definition, problems)))
                else:
                    self.trust.also_proven('definition', definition, None, force=True)
        finally:
            self.cursor.execute('ROLLBACK')
        return errors

    def probe_definitions(self, schema, table, specs):
        """Build every planned index on an empty temporary copy of the table, in a rolled-back transaction.

        A predicate is first proven by the server's resolution (PlanTrust: what it calls, built-in or trusted,
        IMMUTABLE), before anything of it is evaluated: the probe's own CREATE INDEX folds constant calls on
        PostgreSQL 16+. This then proves each definition acceptable to PostgreSQL before any DDL on the real table
        (access method limits such as hash being single-column, missing operator classes, invalid or mutable
        predicates) and returns PostgreSQL's own rendering of each predicate, as pg_get_expr shows it for an existing
        index. The copy has the table's name (in pg_temp), so a predicate may name the table; the real table is only
        read-locked for an instant by LIKE.
        Returns ({name: normalized predicate or None}, [errors]).
        """
        sql = self.sql
        normalized, errors = {}, []
        self.cursor.execute('BEGIN')
        try:
            try:
                self.cursor.execute(sql.SQL('CREATE TEMPORARY TABLE {} (LIKE {}.{})').format(
                    sql.Identifier(table), sql.Identifier(schema), sql.Identifier(table)))
            except Exception as error:  # the driver's errors have no common base class to name here
                return normalized, ['cannot check the index definitions on an empty copy of the table (%s); the '
                                    'migration user needs the TEMPORARY privilege on the database'
                                    % error_text(error)]
            for spec in specs:
                problems = self.trust.prove_expression('predicate', table, spec['where']) if spec.get('where') else []
                if problems:
                    errors.append('index "%s": %s' % (spec['name'], refusal_message(
                        'its where predicate', spec['where'], problems)))
                    continue
                try:
                    probe = self.session.checked(self.create_statement('pg_temp', table, spec, concurrently=False), 'IndexStmt')
                except OnlineIndexError as error:
                    errors.append('index "%s": %s' % (spec['name'], error))
                    continue
                self.cursor.execute('SAVEPOINT pgzd_probe')
                try:
                    self.cursor.execute(probe)
                    rows = self._query("SELECT pg_catalog.pg_get_expr(i.indpred, i.indrelid) AS predicate "
                                       "FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid "
                                       "WHERE c.relname = %(name)s AND c.relnamespace = pg_catalog.pg_my_temp_schema()",
                                       dict(name=spec['name']))
                    normalized[spec['name']] = rows[0]['predicate']
                    if rows[0]['predicate'] is not None:
                        # The server's own rendering of the proven predicate (the partitions' builds use it).
                        self.trust.also_proven('predicate', rows[0]['predicate'], spec['where'])
                    self.cursor.execute('RELEASE SAVEPOINT pgzd_probe')
                except Exception as error:  # as above
                    self.cursor.execute('ROLLBACK TO SAVEPOINT pgzd_probe')
                    errors.append('index "%s": PostgreSQL refuses its definition (%s): %s'
                                  % (spec['name'],
                                     self.render(self.create_statement(schema, table, spec, concurrently=False,
                                                                       display=True)),
                                     str(error).strip().splitlines()[0]))
        finally:
            self.cursor.execute('ROLLBACK')
        return normalized, errors

    # -- SQL ---------------------------------------------------------------------------------------

    def create_statement(self, schema, table, spec, concurrently=True, only=False, display=False):
        """CREATE INDEX of C(spec) on C(schema).C(table): CONCURRENTLY, or ON ONLY a partitioned table (C(only)), both
        IF NOT EXISTS; or a plain CREATE INDEX (the probe on an empty copy, and the definition the plan shows). A
        predicate goes in only once proven (plan_text), but for C(display): the text shown in a message."""
        sql = self.sql
        parts = [sql.SQL('CREATE UNIQUE INDEX' if spec.get('unique') else 'CREATE INDEX')]
        if concurrently:
            parts.append(sql.SQL('CONCURRENTLY IF NOT EXISTS'))
        elif only:
            parts.append(sql.SQL('IF NOT EXISTS'))
        parts.append(sql.SQL('{} ON {}{}.{} USING {} ({})').format(
            sql.Identifier(spec['name']), sql.SQL('ONLY ' if only else ''), sql.Identifier(schema), sql.Identifier(table),
            sql.Identifier(spec.get('method') or 'btree'),
            sql.SQL(', ').join(sql.Identifier(c) for c in spec['columns'])))
        if spec.get('include'):
            parts.append(sql.SQL('INCLUDE ({})').format(
                sql.SQL(', ').join(sql.Identifier(c) for c in spec['include'])))
        if spec.get('where'):
            where = sql.SQL(spec['where']) if display else self.session.plan_text('predicate', spec['where'])
            parts.append(sql.SQL('WHERE ({})').format(where))
        return sql.SQL(' ').join(parts)

    def drop_statement(self, schema, name, concurrently=True):
        sql = self.sql
        return sql.SQL('DROP INDEX {}IF EXISTS {}.{}').format(
            sql.SQL('CONCURRENTLY ' if concurrently else ''), sql.Identifier(schema), sql.Identifier(name))

    def step_statements(self, decision, step):
        """The statements of one step of a decision (see index_plan.decide_actions), in order, as composed SQL."""
        sql, spec, kind = self.sql, decision['spec'], step['kind']
        index = sql.SQL('{}.{}').format(sql.Identifier(step['schema']), sql.Identifier(step['name']))
        target = dict(spec, name=step['name'])
        if step.get('partition'):
            # PostgreSQL's own rendering of the predicate names no table, so it holds on every partition.
            target['where'] = spec.get('normalized_where') or spec.get('where')
        if kind == 'build':
            return [self.create_statement(step['schema'], step['table'], target)]
        if kind == 'build_definition':
            return [self.session.plan_text('definition', step['statement'])]
        if kind == 'drop':
            return [self.drop_statement(step['schema'], step['name'])]
        if kind == 'drop_partitioned':
            return self.session.in_lock_order('drop_partitioned', step['schema'], step['table'], self.drop_statement(
                step['schema'], step['name'], concurrently=False), self.lock_timeout)
        if kind == 'create_on_only':
            return [self.create_statement(step['schema'], step['table'], target, concurrently=False, only=True)]
        if kind == 'attach':
            return self.session.in_lock_order('attach', step['schema'], step['table'], sql.SQL(
                'ALTER INDEX {} ATTACH PARTITION {}.{}').format(
                index, sql.Identifier(step['partition_schema']), sql.Identifier(step['partition_index'])),
                self.lock_timeout)
        if kind == 'swap':
            return [sql.SQL('BEGIN'),
                    sql.SQL('ALTER INDEX {} RENAME TO {}').format(index, sql.Identifier(step['previous'])),
                    sql.SQL('ALTER INDEX {}.{} RENAME TO {}').format(
                        sql.Identifier(step['schema']), sql.Identifier(step['next']), sql.Identifier(step['name'])),
                    sql.SQL('COMMENT ON INDEX {} IS {}').format(
                        index, sql.SQL('NULL') if step['comment'] is None else sql.Literal(step['comment']))] + \
                self.swap_ledger_statements(decision, step) + [sql.SQL('COMMIT')]
        raise ValueError('unknown step %r' % kind)

    # -- planning ----------------------------------------------------------------------------------

    def plan(self, schema, table, specs, state, dropped_first=None):
        """Validate one table's specs against the catalog and decide every action; no DDL runs.

        Every step is then proven against the refusal rules (what PostgreSQL would refuse). C(dropped_first) names the
        foreign keys a rollback drops before this table's indexes: a foreign key that depends on an index to drop and
        is not among them stops the rollback. Rolling back without it (None), that rule is not evaluated (the preflight
        evaluates it with the plan's foreign keys; a module run after it, or in check mode, cannot tell).
        Raises OnlineIndexError listing every problem found.
        """
        specs = [dict(spec, schema=schema, table=table) for spec in specs]
        errors = validate_specs(schema, table, specs, state)
        if errors:
            raise OnlineIndexError(table_problems(schema, table, errors))
        qualified_table = '%s.%s' % (schema, table)
        table_row = self.read_table(schema, table)
        if state == 'present':
            if table_row is None:
                raise OnlineIndexError(table_problems(schema, table, [
                    'table %s does not exist: check the plan\'s schema and table name (names are case-sensitive, '
                    'Prisma models are quoted CamelCase)' % qualified_table]))
            errors.extend(column_errors(qualified_table, specs, set(table_row['columns'])))
            methods = self.index_methods()
            for spec in specs:
                if spec.get('method') not in methods:
                    errors.append('index "%s": access method "%s" does not exist here (available: %s)'
                                  % (spec['name'], spec.get('method'), ', '.join(sorted(methods))))
            if errors:
                raise OnlineIndexError(table_problems(schema, table, errors))
        replacing = [spec for spec in specs if spec.get('on_mismatch') == 'replace']
        existing = self.read_existing_indexes(schema, [spec['name'] for spec in specs] + [
            name for spec in replacing for name in replacement_names(spec['name'])])
        # Only what will be built, and predicates to compare, need the probe: a valid existing index was accepted by
        # PostgreSQL already, and skipping it keeps a no-op rerun cheap. A rollback compares only where a replacement
        # may have to tell the planned index from the one it found.
        if state == 'present':
            to_probe = [spec for spec in specs if spec.get('where') or spec['name'] not in existing
                        or not existing[spec['name']]['valid']]
        else:
            to_probe = [spec for spec in replacing if spec.get('where') and spec['name'] in existing] \
                if table_row is not None else []
        if table_row is not None and table_row['relkind'] not in INDEXABLE_RELKINDS + (PARTITIONED,):
            to_probe = []  # nothing to copy for it; the refusal rules refuse its builds (index-relkind)
        normalized, errors = self.probe_definitions(schema, table, to_probe) if to_probe else ({}, [])
        for spec in specs:
            spec['normalized_where'] = normalized.get(spec['name'])
            if spec.get('columns'):
                spec['display_definition'] = self.render(self.create_statement(schema, table, spec, concurrently=False,
                                                                               display=True))
        if errors:
            raise OnlineIndexError(table_problems(schema, table, errors))
        partitions = self.read_partitions(table_row, specs, existing) \
            if table_row is not None and table_row['relkind'] == PARTITIONED else None
        ledger = dict(((kind, name), row) for kind in ('index', 'replaced_index')
                      for name, row in self.ledger.open_rows(kind, schema, [spec['name'] for spec in specs],
                                                             table).items())
        decisions, errors = decide_actions(specs, existing, state, partitions, ledger, self.ledger.plan)
        errors.extend(self.prove_definitions(table, decisions))
        if errors:
            raise OnlineIndexError(table_problems(schema, table, errors))
        errors = self.step_refusals(schema, decisions, existing, partitions,
                                    () if state == 'present' else dropped_first)
        if errors:
            raise OnlineIndexError(table_problems(schema, table, errors))
        for decision in decisions:
            self.created_names.extend(created_names(decision))
            decision['table_oid'] = table_row['oid'] if table_row else None
            decision['statements'] = self.statements_for(decision)
        return decisions

    def step_refusals(self, schema, decisions, existing, partitions, dropped_first):
        """What PostgreSQL would refuse of the decisions' steps (refusal_rules), one line per rule and index."""
        relations = self.read_relation_facts((step['schema'], step['table']) for decision in decisions
                                             for step in decision['steps'])
        return self.refused(step_facts(schema, decisions, existing, partitions, relations, dropped_first))

    def read_partitions(self, table_row, specs, existing):
        """{planned name: its partition tree} of a partitioned table, as index_plan.partition_steps reads it: every
        partition with the index of the name derived for it (if any) and the index attached for it (if any)."""
        tree = self._query(PARTITION_TREE_QUERY, dict(oid=table_row['oid']))
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
                                for row in self._query(ATTACHED_INDEXES_QUERY, dict(oid=planned['oid'])))
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

    def statements_for(self, decision):
        return [self.render(statement) for step in decision['steps'] for statement in self.step_statements(decision, step)]

    # -- applying ----------------------------------------------------------------------------------

    def apply(self, decision):
        """Run one decision's steps, recorded in the ledger. Returns (seconds, lock retries); raises OnlineIndexError
        on failure."""
        started = time.monotonic()
        self._intend(decision)
        retries = sum(self._run_step(decision, step) for step in decision['steps'])
        self._verify(decision)
        self._recorded(decision)
        return round(time.monotonic() - started, 3), retries

    def _intend(self, decision):
        """Before the first statement: the ledger row of what the decision makes (an index; a replacement, with the
        definition and comment it replaces)."""
        spec, action, existing = decision['spec'], decision['action'], decision['existing']
        if action in (ACTION_CREATE, ACTION_REBUILD, ACTION_RESUME):
            decision['ledger_row'] = dict(id=self.ledger.intend('index', spec['schema'], spec['table'], spec['name'],
                                                                spec['display_definition']), state='intended')
        elif action == ACTION_REPLACE and any(step['kind'] == 'swap' for step in decision['steps']):
            decision['ledger_row'] = dict(id=self.ledger.intend(
                'replaced_index', spec['schema'], spec['table'], spec['name'], spec['display_definition'],
                prior=dict(definition=existing['definition'], comment=existing.get('comment'))), state='intended')

    def _recorded(self, decision):
        """After the steps: the ledger row applied (what was made, as PostgreSQL renders it) or undone (what a
        rollback dropped). A swap records its own row in its transaction (swap_ledger_statements)."""
        spec, action, row = decision['spec'], decision['action'], decision.get('ledger_row')
        if not row or any(step['kind'] == 'swap' for step in decision['steps']):
            return
        if action in (ACTION_CREATE, ACTION_REBUILD, ACTION_RESUME):
            self.ledger.applied(row['id'], definition_sql=self.ledger.indexdef_sql(spec['schema'], spec['name']))
        elif action in (ACTION_DROP, ACTION_RESTORE):
            self.ledger.undone(row['id'])

    def swap_ledger_statements(self, decision, step):
        """In the swap's own transaction, so that a swap is never without its record: a replacement's row applied
        (with the definition now of the planned name), a restore's row undone."""
        row = decision.get('ledger_row')
        if not row:
            return []
        if decision['action'] == ACTION_REPLACE:
            definition = self.ledger.indexdef_sql(step['schema'], step['name'])
            return [self.ledger.applied_statement(row['id'], definition_sql=definition)]
        return [self.ledger.undone_statement(row['id'])]

    def _run_step(self, decision, step):
        """One step: a concurrent build or drop without lock_timeout, watched; anything else (catalog only, a brief
        lock the application may queue behind) under lock_timeout, retried. Returns the lock retries it needed."""
        spec, kind, session = decision['spec'], step['kind'], self.session
        statements = self.step_statements(decision, step)
        target = dict(spec, schema=step['schema'], table=step['table'], name=step['name'])
        label = spec['name']
        if kind == 'drop':
            return session.with_retries(target, decision, statements[0], lambda: session.execute_concurrently(
                target, statements[0], label=label))
        if kind in ('build', 'build_definition'):
            return self.build_index(target, decision, statements[0], label=label)
        step_decision = dict(decision, retry_advice=CATALOG_STEP_ADVICE.get(kind, '') % step)
        if kind in ORDERED_STATEMENTS:
            step_decision['lock_timeout'] = session.deadlock_safe_timeout(self.lock_timeout)['note']
            return session.with_retries(target, step_decision, statements[3], lambda: session.in_transaction(statements))
        if kind == 'swap':
            return session.with_retries(target, step_decision, statements[1], lambda: session.in_transaction(statements))
        return session.with_retries(target, step_decision, statements[0], lambda: session.execute(
            statements[0], 'IndexStmt' if kind == 'create_on_only' else None))

    def _verify(self, decision):
        """After the steps: the index of the planned name is valid (pg_index.indisvalid: for a partitioned index, every
        partition has its index attached) and has the definition the decision gives it."""
        spec, action = decision['spec'], decision['action']
        if action in (ACTION_DROP, ACTION_UNCHANGED) or (action == ACTION_RESTORE and not decision.get('planned_definition')):
            return
        index = self.read_existing_indexes(spec['schema'], [spec['name']]).get(spec['name'])
        if index is not None and index['valid'] and (
                same_index_definition(index['definition'], decision['planned_definition'])
                if action == ACTION_RESTORE else not compare_index(index, spec)):
            return
        raise OnlineIndexError('index "%s.%s" is %s after its steps ran (%s): rerun to finish it' % (
            spec['schema'], spec['name'], 'missing' if index is None else 'not valid' if not index['valid'] else
            'not as planned', index['definition'] if index else 'absent'))

    def build_index(self, spec, decision, create, label=None, explain=None):
        """C(create), the concurrent build of C(spec), retried; an INVALID leftover of an earlier attempt is dropped
        before each attempt, and after a failure (C(explain) as for DdlSession.with_retries). Raises unless the index
        is valid after it. Returns the retries."""
        retries = self.session.with_retries(spec, decision, create, lambda: self._build_once(spec, create, label=label),
                                            self._cleanup_after_failure, explain)
        built = self.read_existing_indexes(spec['schema'], [spec['name']]).get(spec['name'])
        if built is None or not built['valid']:
            raise OnlineIndexError('index "%s.%s" is not valid after its build: rerun to drop and rebuild it'
                                   % (spec['schema'], spec['name']))
        return retries


    def _build_once(self, spec, create, label=None):
        # CREATE INDEX ... IF NOT EXISTS would silently keep an INVALID leftover of the same name (from an
        # earlier attempt whose cleanup timed out), so every attempt starts by dropping one.
        self._drop_invalid_leftover(spec)
        self.session.execute_concurrently(spec, create, 'IndexStmt', label)

    def _drop_invalid_leftover(self, spec):
        state = self.read_existing_indexes(spec['schema'], [spec['name']]).get(spec['name'])
        if state is not None and not state['valid']:
            self.session.execute(self.drop_statement(spec['schema'], spec['name']))
            return True
        return False



    def _cleanup_after_failure(self, spec):
        """Drop the INVALID index a failed concurrent build leaves behind; say what happened."""
        try:
            ran = len(self.executed_queries)
            if self._drop_invalid_leftover(spec):
                self.cleanup_queries.extend(self.executed_queries[ran:])
                return 'the INVALID index the failed build left was dropped'
            return None
        except Exception as error:  # same as above: any driver error
            self.leftovers.append('%s.%s' % (spec['schema'], spec['name']))
            return ('the INVALID index the failed build left could not be dropped (%s); the next run drops and '
                    'rebuilds it' % error_text(error))
