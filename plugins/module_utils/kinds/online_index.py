# -*- coding: utf-8 -*-
# The index kind: OnlineIndexRunner plans a table's indexes against the catalog (index_catalog reads it, index_decisions
# decides, the refusal rules judge each step) and applies them (index_steps), through the run's DDL session
# (ddl_session: the migration lock proven before each statement, lock-timeout retries, builds watched).

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.ddl_session import DdlSession
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.index_catalog import IndexCatalog
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.index_decisions import (
    INDEXABLE_RELKINDS, column_errors, decide_actions, validate_specs,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.index_definitions import (
    index_expressions,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.index_replacement import (
    replacement_names,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.partitioned_index import PARTITIONED
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.index_steps import IndexSteps
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.plan.plan_trust import refusal_message
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.plan.refusal_rules import (
    ATTACH_INDEX, CREATE_INDEX, CREATE_INDEX_ON_ONLY, DROP_INDEX, RENAME_INDEX, index_facts,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.statements import OnlineIndexError, error_text


# The statement each kind of step sends (index_decisions._step), as the refusal rules name it.
STEP_STATEMENTS = dict(build=CREATE_INDEX, build_definition=CREATE_INDEX, create_on_only=CREATE_INDEX_ON_ONLY,
                       attach=ATTACH_INDEX, swap=RENAME_INDEX, drop=DROP_INDEX, drop_partitioned=DROP_INDEX)
# The steps that give a relation a name: a new index, and the name a swap gives the index it replaces.
NAMING_STEPS = ('build', 'build_definition', 'create_on_only')


def created_names(decision):
    """(schema, name, what creates it) of every relation name a decision's steps create (index_decisions._step): new
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
    """Plans one table's index specs against the catalog (index_decisions decides) and applies them (IndexSteps), over an
    autocommit connection."""

    def __init__(self, connection, session=None, **options):
        """Its statements go through C(session), or a DdlSession of its own over C(connection) with C(options)."""
        self.session = session = session or DdlSession(connection, **options)
        self.catalog = catalog = IndexCatalog(session)
        self.steps = steps = IndexSteps(session, catalog)
        self.connection, self.cursor, self.sql, self.trust, self.ledger = \
            connection, session.cursor, session.sql, session.trust, session.ledger
        # The session's records (the same lists): what ran, what only cleaned up, what a failure left, the waits.
        self.executed_queries, self.cleanup_queries = session.executed_queries, session.cleanup_queries
        self.leftovers, self.waits = session.leftovers, session.waits
        # (schema, name, what creates it) of every relation name the decisions planned so far create: the preflight
        # proves them unique across the whole plan (refusal_rules.name_clash_messages).
        self.created_names = []
        # What the other kinds and the phases use of the catalog and the steps.
        self.read_table, self.read_existing_indexes = catalog.read_table, catalog.read_existing_indexes
        self.estimate_sizes, self.server_version = catalog.estimate_sizes, catalog.server_version
        self.read_relation_facts, self.refused = catalog.read_relation_facts, catalog.refused
        self.read_last_use = catalog.read_last_use
        self.create_statement, self.drop_statement = steps.create_statement, steps.drop_statement
        self.apply, self.build_index, self.connection_lost = steps.apply, steps.build_index, session.connection_lost

    @property
    def retries_used(self):
        """Lock-timeout retries used so far (the session's)."""
        return self.session.retries_used

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
                    rows = self.session.query("SELECT pg_catalog.pg_get_expr(i.indpred, i.indrelid) AS predicate "
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
                                     self.session.render(self.create_statement(schema, table, spec, concurrently=False,
                                                                               display=True)),
                                     str(error).strip().splitlines()[0]))
        finally:
            self.cursor.execute('ROLLBACK')
        return normalized, errors

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
            methods = self.catalog.index_methods()
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
                spec['display_definition'] = self.session.render(self.create_statement(
                    schema, table, spec, concurrently=False, display=True))
        if errors:
            raise OnlineIndexError(table_problems(schema, table, errors))
        partitions = self.catalog.read_partitions(table_row, specs, existing) \
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
            decision['statements'] = self.steps.statements_for(decision)
        return decisions

    def step_refusals(self, schema, decisions, existing, partitions, dropped_first):
        """What PostgreSQL would refuse of the decisions' steps (refusal_rules), one line per rule and index."""
        relations = self.read_relation_facts((step['schema'], step['table']) for decision in decisions
                                             for step in decision['steps'])
        return self.refused(step_facts(schema, decisions, existing, partitions, relations, dropped_first))
