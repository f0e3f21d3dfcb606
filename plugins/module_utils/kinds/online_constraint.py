# -*- coding: utf-8 -*-
# Foreign keys, CHECK constraints and NOT NULL added without a long lock (constraint_decisions says how, step by step).
# ConstraintRunner is their planner: it reads the catalog, proves a check's expression on an empty copy of the table,
# judges each step by the refusal rules and hands plain facts to constraint_decisions.decide_steps; ConstraintSteps
# (constraint_steps) runs the steps through the DDL session (ddl_session: the migration lock proof before each
# statement, retries with backoff), a foreign key's index through the index kind (online_index). Its peers, the index
# and unique kinds, are reached through it.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.constraint_decisions import (
    KIND_WORDS, check_differences, decide_not_null_steps, decide_steps, different_message, entry_errors,
    entry_statement, foreign_key_differences, not_null_differences, referential_action, step_lock,
    validates_by_partition,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.constraint_catalog import ConstraintCatalog
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.constraint_steps import ConstraintSteps
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.index_actions import (
    ACTION_DROP, ACTION_UNCHANGED,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.plan.plan_sql import statement_error
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.run.ledger import attribution, without_not_valid
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.plan.plan_trust import refusal_message
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.plan.refusal_rules import (
    ADD_FOREIGN_KEY, DROP_CONSTRAINT, DROP_NOT_NULL,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.statements import OnlineIndexError, error_text
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.online_index import (
    OnlineIndexRunner, table_problems,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.unique_constraint import UniqueConstraintRunner


class ConstraintRunner(object):
    """Plans and applies foreign keys, checks and NOT NULL; the index kind (C(indexes), online_index.OnlineIndexRunner)
    and the unique kind (C(unique), unique_constraint.UniqueConstraintRunner) are its peers over the same DDL session,
    and a run reaches every kind through it (plan, plan_constraint, plan_entry; apply, apply_constraint, apply_entry).

    C(constraint_lock_timeout) bounds each catalog step (ADD ... NOT VALID, SET NOT NULL, DROP), C(lock_timeout) the
    wait of VALIDATE for its lock (SHARE UPDATE EXCLUSIVE, which no reader or writer conflicts with) and of a
    concurrent index build; the scan itself runs under C(statement_timeout) (0: none).
    """

    def __init__(self, connection, constraint_lock_timeout='2s', sample_ids=5, max_groups=20, **options):
        self.indexes = OnlineIndexRunner(connection, **options)
        self.unique = UniqueConstraintRunner(self.indexes, constraint_lock_timeout, sample_ids, max_groups)
        self.session = session = self.indexes.session
        self.connection, self.cursor, self.sql, self.trust, self.ledger = \
            connection, session.cursor, session.sql, session.trust, session.ledger
        self.lock_timeout, self.constraint_lock_timeout = session.lock_timeout, constraint_lock_timeout
        self.sample_ids, self.max_groups = sample_ids, max_groups
        # The session's records and the names planned, as a run reads them.
        self.executed_queries, self.cleanup_queries = session.executed_queries, session.cleanup_queries
        self.leftovers, self.waits, self.created_names = session.leftovers, session.waits, self.indexes.created_names
        # The other kinds, as the phases and the preflight call them.
        self.plan, self.apply = self.indexes.plan, self.indexes.apply
        self.read_existing_indexes, self.estimate_sizes = self.indexes.read_existing_indexes, self.indexes.estimate_sizes
        self.server_version, self.connection_lost = self.indexes.server_version, session.connection_lost
        self.plan_constraint, self.apply_constraint = self.unique.plan_constraint, self.unique.apply_constraint
        self.read_constraints, self.read_constraint = self.unique.read_constraints, self.unique.read_constraint
        self.catalog = ConstraintCatalog(self.indexes)
        self.column_facts = self.catalog.column_facts
        self.steps = steps = ConstraintSteps(self.indexes, self.unique, constraint_lock_timeout, sample_ids, max_groups)
        self.apply_entry, self.find_violations, self.step_sql = steps.apply_entry, steps.find_violations, steps.step_sql

    @property
    def retries_used(self):
        """Lock-timeout retries used so far (the session's)."""
        return self.session.retries_used

    # -- reading -----------------------------------------------------------------------------------

    def check_definition(self, schema, table, expression, context='check'):
        """PostgreSQL's own rendering of CHECK (expression) on the table, from an empty temporary copy of it (of the
        same name, so the expression may name the table), in a rolled-back transaction: (definition, None) or (None,
        why it is refused). Runs outside any transaction (the probe needs a writable one).

        A plan's check expression (C(context) check) is first proven by the server's resolution (PlanTrust: built-in
        or trusted objects only, IMMUTABLE), then PostgreSQL itself proves it IMMUTABLE as an index predicate on the
        copy (a CHECK does not have to be, but a plan's must: its VALIDATE and every later write evaluate it), and
        only then is it added to the copy. Nothing of it is evaluated on a row before.
        """
        sql = self.sql
        self.cursor.execute('BEGIN')
        try:
            self.cursor.execute(sql.SQL('CREATE TEMPORARY TABLE {} (LIKE {}.{})').format(
                sql.Identifier(table), sql.Identifier(schema), sql.Identifier(table)))
            if context:
                problems = self.trust.prove_expression(context, table, expression)
                if problems:
                    return None, refusal_message('check expression', expression, problems)
                immutable = self.session.checked(sql.SQL('CREATE INDEX pgzd_check_immutable ON pg_temp.{} ((1)) WHERE ({})').format(
                    sql.Identifier(table), self.session.plan_text(context, expression)), 'IndexStmt')
                self.cursor.execute('SAVEPOINT pgzd_immutable')
                try:
                    self.cursor.execute(immutable)
                except Exception as error:  # psycopg2 and psycopg 3 errors share no importable base here
                    self.cursor.execute('ROLLBACK TO SAVEPOINT pgzd_immutable')
                    return None, refusal_message('check expression', expression, [
                        'PostgreSQL does not accept it as IMMUTABLE (%s)' % error_text(error).splitlines()[0]])
            probe = sql.SQL('ALTER TABLE pg_temp.{} ADD CONSTRAINT pgzd_check_probe CHECK ({}) NOT VALID').format(
                sql.Identifier(table), self.session.plan_text(context, expression) if context else sql.SQL(expression))
            text = self.session.render(probe)
            problem = statement_error(text, 'AlterTableStmt')
            if problem:
                return None, 'refusing to send %s: %s' % (text, problem)
            self.cursor.execute(text)
            rows = self.session.query("SELECT pg_catalog.pg_get_constraintdef(con.oid) AS definition "
                                      "FROM pg_catalog.pg_constraint con JOIN pg_catalog.pg_class c ON c.oid = con.conrelid "
                                      "WHERE c.relnamespace = pg_catalog.pg_my_temp_schema() AND c.relname = %(table)s "
                                      "AND con.conname = 'pgzd_check_probe'", dict(table=table))
            return rows[0]['definition'], None
        except OnlineIndexError as error:
            return None, str(error)
        except Exception as error:  # psycopg2 and psycopg 3 errors share no importable base here
            reason = error_text(error).splitlines()[0]
            return None, 'PostgreSQL refuses CHECK (%s) on %s.%s: %s' % (expression, schema, table, reason)
        finally:
            self.cursor.execute('ROLLBACK')
    # -- planning ----------------------------------------------------------------------------------

    def plan_entry(self, entry, state, default_schema='public', planned_unique=()):
        """Validate one foreign_key, check or not_null entry against the catalog and decide its steps; no DDL runs.

        Runs outside any transaction: a check's expression is proven on an empty temporary copy of the table, in a
        transaction of its own (rolled back). C(planned_unique) lists (schema, table, frozenset(columns)) of the
        unique keys the plan adds before this entry (a foreign key may reference one). Raises OnlineIndexError
        listing every problem found.
        """
        spec = dict(entry, schema=entry.get('schema') or default_schema)
        if spec['type'] == 'foreign_key':
            references = dict(spec['references'], schema=spec['references'].get('schema') or spec['schema'])
            spec.update(references=references, on_delete=referential_action(spec.get('on_delete')) or spec.get(
                'on_delete'), on_update=referential_action(spec.get('on_update')) or spec.get('on_update'))
        schema, table = spec['schema'], spec['table']
        errors = entry_errors(spec)
        if errors:
            raise OnlineIndexError(table_problems(schema, table, errors))
        table_row = self.indexes.read_table(schema, table)
        columns = self.catalog.read_columns(schema, table) if table_row else {}
        if state == 'present':
            errors = self.catalog.catalog_errors(spec, table_row, columns)
            if errors:
                raise OnlineIndexError(table_problems(schema, table, errors))
        existing = self.read_constraint(schema, table, spec['name'])
        planned_text = self.steps.planned_text(spec)
        differences = []
        if existing is not None and spec['type'] == 'foreign_key':
            differences = foreign_key_differences(existing, spec, schema)
        elif existing is not None and spec['type'] == 'not_null' and existing['type'] == 'n':
            differences = not_null_differences(existing, spec['column'])
        elif existing is not None or (spec['type'] == 'check' and state == 'present'):
            # PostgreSQL's own rendering, to compare with an existing one; for a new check, the proof that
            # PostgreSQL accepts the expression on this table (its columns, its types) before any DDL.
            definition, problem = self.check_definition(schema, table, self.steps.check_expression(spec),
                                                        'check' if spec['type'] == 'check' else None)
            if problem:
                raise OnlineIndexError(table_problems(schema, table, [problem]))
            differences = check_differences(existing, definition) if existing is not None else []
        index_decision = self._index_decision(spec, state) if spec.get('index') else None
        column_not_null = bool(columns.get(spec.get('column'), {}).get('not_null'))
        partitions = []
        if spec['type'] == 'not_null':
            action, steps, problems = decide_not_null_steps(
                state, existing, differences, column_not_null,
                self.catalog.not_null_constraint(schema, table, spec['column']) if table_row else None,
                self.steps.not_null_path())
        else:
            # A foreign key on a partitioned table (18+): the partitions' keys not valid yet, validated one by one first.
            partitions = self.catalog.partition_keys(table_row['oid'], spec['name']) if state == 'present' and \
                table_row and validates_by_partition(spec['type'], table_row['relkind'], self.server_version()) else []
            action, steps, problems = decide_steps(spec['type'], state, existing, differences, column_not_null,
                                                   index_action=index_decision['action'] if index_decision else None,
                                                   by_partition=bool(partitions))
        if problems and existing is None:
            raise OnlineIndexError(table_problems(schema, table, problems))
        if 'set_not_null' in steps:  # the helper check's path, on 18 too when a 14-17 run left its helper
            planned_text = self.steps.planned_text(spec, helper=True)
        if problems:
            raise OnlineIndexError(table_problems(schema, table, [
                different_message(spec, existing, problems, planned_text)]))
        ledger_rows, left_alone = [], None
        if state == 'absent':
            # What the ledger does not attribute to the plan is left alone before the rules judge the rest.
            action, steps, ledger_rows, left_alone = self._attributed_steps(spec, action, steps, existing,
                                                                            column_not_null)
        errors = self.step_refusals_of_entry(spec, steps, existing, planned_unique, partitions)
        if errors:
            raise OnlineIndexError(table_problems(schema, table, errors))
        decision = dict(spec=spec, action=action, steps=steps, constraint=existing, index_decision=index_decision,
                        column_not_null=column_not_null, table_oid=table_row['oid'] if table_row else None,
                        planned=planned_text, ledger_rows=ledger_rows,
                        advice=self.catalog.index_advice(spec, state, table_row, index_decision))
        if left_alone:
            decision['left_alone'] = left_alone
        rendered = [(step, [self.session.render(statement) for statement in self.step_sql(spec, step, index_decision,
                                                                                          partitions)])
                    for step in steps]
        decision['statements'] = [text for _step, texts in rendered for text in texts]
        # The lock each step takes, beside its own statement (in each transaction of lock_order, the fourth of five).
        decision['locks'] = [step_lock(spec['type'], step) if len(texts) == 1 or position % 5 == 3 else None
                             for step, texts in rendered for position in range(len(texts))]
        return decision

    def _attributed_steps(self, spec, action, steps, existing, column_not_null):
        """A rollback's steps, kept only where the ledger attributes what they undo to the plan and it still matches:
        (action, steps, the ledger rows they undo, why the rest is left alone or None). A NOT NULL that predates the
        plan, a constraint of the name the application made, or one changed since the run recorded it, stays."""
        schema, table, kind = spec['schema'], spec['table'], spec['type']
        plan = self.ledger.plan
        kept, rows, reasons = [], [], []
        not_null_row = self.ledger.open_rows('not_null', schema, [spec['column']], table).get(spec['column']) \
            if kind == 'not_null' else None
        for step in steps:
            if step == 'drop_not_null':
                undo, reason = attribution(plan, 'not_null', '%s.%s' % (table, spec['column']), not_null_row,
                                           column_not_null, True)
            elif step == 'drop' and kind == 'not_null':
                # The helper check of a NOT NULL a stopped run was adding: the run's own when the ledger has the NOT NULL.
                undo, reason = attribution(plan, 'not_null', '%s.%s' % (table, spec['column']), not_null_row, True, True)
            elif step == 'drop':
                row = self.ledger.open_rows('constraint', schema, [spec['name']], table).get(spec['name'])
                undo, reason = attribution(plan, 'constraint', spec['name'], row, existing is not None,
                                           row is not None and without_not_valid(existing['definition'])
                                           == without_not_valid(row['definition']),
                                           existing['definition'] if existing else None)
                rows.extend([row] if undo else [])
            else:  # drop_index: the index runner decided it from the ledger already
                undo, reason = True, None
            if undo:
                kept.append(step)
            elif reason:
                reasons.append(reason)
        if not_null_row is not None and ('drop_not_null' in kept or ('drop' in kept and not column_not_null)):
            rows.append(not_null_row)
        if kept == steps:
            return action, steps, rows, None
        return (ACTION_DROP if kept else ACTION_UNCHANGED), kept, rows, '; '.join(sorted(set(reasons))) or None

    def step_refusals_of_entry(self, spec, steps, existing, planned_unique, partitions=()):
        """What PostgreSQL would refuse of an entry's steps (refusal_rules), one line per rule. A foreign key's own
        index (build_index, drop_index) is the index runner's to prove (OnlineIndexRunner.plan). validate_partitions
        alters each leaf of C(partitions) itself, so each is judged as well (its owner may not be the parent's)."""
        schema, table = spec['schema'], spec['table']
        relation = self.indexes.read_relation_facts([(schema, table)]).get((schema, table))
        if relation is None:
            return []
        subject = '%s "%s"' % (KIND_WORDS[spec['type']], spec['name'])
        judged = []
        for step in steps:
            statement = entry_statement(spec['type'], step)
            if statement is None:
                continue
            facts = dict(relation=relation)
            if statement == ADD_FOREIGN_KEY:
                facts.update(self.catalog.foreign_key_facts(spec, planned_unique))
            elif statement == DROP_CONSTRAINT and existing is not None:
                facts['constraint'] = dict(name=existing['name'], local=existing.get('local', True))
            elif statement == DROP_NOT_NULL:
                facts['column'] = self.catalog.column_facts(schema, table).get(spec['column'])
                if facts['column'] is None:
                    continue
            judged.append((subject, statement, facts))
            if step == 'validate_partitions':
                leaves = [(partition['schema'], partition['partition']) for partition in partitions]
                judged.extend((subject, statement, dict(relation=facts)) for facts in
                              self.indexes.read_relation_facts(leaves).values())
        return self.indexes.refused(judged)

    def _index_decision(self, spec, state):
        index = dict(name=spec['index'], columns=list(spec['columns']), unique=False, method='btree', include=[],
                     where=None)
        return self.indexes.plan(spec['schema'], spec['table'], [index], state)[0]


def read_violations(runner, spec, sample_ids, max_groups):
    """find_violations in a savepoint of the caller's transaction: (found, problem)."""
    cursor = runner.cursor
    cursor.execute('SAVEPOINT pgzd_violations')
    try:
        found = runner.find_violations(spec, sample_ids, max_groups)
        cursor.execute('RELEASE SAVEPOINT pgzd_violations')
        return found, None
    except Exception as error:  # psycopg2 and psycopg 3 errors share no importable base here
        cursor.execute('ROLLBACK TO SAVEPOINT pgzd_violations')
        return None, 'constraint "%s" on %s.%s: the rows could not be checked: %s' % (
            spec['name'], spec['schema'], spec['table'], error_text(error))
