# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The deploy of pending Prisma migrations, statement by statement, in the order written, over the run's one DDL
session (the kinds' runner, online_constraint.ConstraintRunner, and its peers).

Each statement of a migration goes the way its class says (statement_classes):
- online: through the tool's kind: an index built CONCURRENTLY (index kind), DROP INDEX CONCURRENTLY, a unique key,
  foreign key, check or NOT NULL on the constraint kinds' paths, a primary key as a unique index built CONCURRENTLY
  then attached (ADD CONSTRAINT ... PRIMARY KEY USING INDEX). Each kind reads the catalog first: what is already
  there is left as it is, an INVALID leftover is built again, a name with another definition is refused.
- catalog (and a refused statement acknowledged, or proven by the server): run as written, in a transaction under the
  short lock_timeout, retried with backoff, together with its ledger row (kind statement), so that it is done exactly
  once: a rerun finds the row and skips it.
- skip: nothing.

Each migration is recorded in _prisma_migrations as `prisma migrate deploy` records it (migration_records): a row when
it starts, finished once its last statement is done. A run stopped in the middle (an error, a lock that could not be
taken, kill -9) leaves the migration's row unfinished and its statements done so far recorded: the next run resumes it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import time
import uuid

from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.constraint_catalog import COLUMNS_QUERY
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.index_actions import (
    ACTION_UNCHANGED, ACTIONS_REMOVING,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.prisma.deploy_proof import (
    _touches, dropped_names, kind_spec, runs_as_planned, touched_tables,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.prisma.deploy_review import estimate
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.prisma.prior_state import prior_state
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.statements import OnlineIndexError, error_text

DONE, UNCHANGED, SKIPPED, PLANNED = 'done', 'unchanged', 'skipped', 'planned'


def last_use(runner, schema, name):
    """When index C(name) of C(schema), about to be dropped, was last used (IndexCatalog.read_last_use)."""
    return runner.indexes.read_last_use(schema, [name])[name]


# The ledger's plan of every Prisma deploy, whatever plan file or run named it: a rerun, a resume and a rollback of a
# folder find the rows of the runs before them under it.
LEDGER_PLAN = 'prisma'


def statement_key(migration, entry, row_id):
    """The ledger's name of a statement: <migration>:<line>, .<subcommand> for one subcommand of several, and @ the id
    of the migration's row in _prisma_migrations: an attempt Prisma was told was rolled back (`migrate resolve
    --rolled-back`) leaves rows that the next attempt, a row of its own, does not take for its own."""
    key = '%s:%d' % (migration, entry['line'])
    return key + ('.%d' % entry['subcommand'] if entry.get('subcommand') else '') + '@%s' % row_id


class DeployFailed(Exception):
    """A statement failed: C(outcome) is its outcome so far; the migration stays unfinished, to be resumed."""

    def __init__(self, message, outcome):
        super(DeployFailed, self).__init__(message)
        self.outcome = outcome


class PrismaDeploy(object):
    """Runs classified migrations (deploy_proof.classified) through C(runner) (a ConstraintRunner over the run's DDL
    session), recording them in C(records) (migration_records.MigrationRecords). C(check_mode): nothing runs; each
    statement says what would."""

    def __init__(self, runner, records, schema, run_id, check_mode=False, row_ids=None):
        self.runner, self.records, self.schema, self.run_id = runner, records, schema, run_id
        # {migration: the id of its row in _prisma_migrations}: a resumed migration's unfinished row of this tool;
        # the others get theirs when they start.
        self.row_ids = dict(row_ids or {})
        self.session, self.ledger, self.sql = runner.session, runner.ledger, runner.sql
        self.check_mode = check_mode
        # Check mode runs nothing: what earlier statements of the deploy create or reshape is not there to read, so
        # the statements on it are shown as they will run and proven by their kind when they do.
        self.touched, self.dropped, self.created = set(), set(), set()
        self.sizes = {}

    # -- one migration ---------------------------------------------------------------------------

    def migrate(self, migration, resumed=False):
        """Every statement of C(migration), between its row started (or its unfinished row, C(resumed)) and
        finished. Returns its outcome; raises DeployFailed with the outcome so far."""
        outcome = dict(name=migration['name'], action='planned' if self.check_mode else 'resumed' if resumed else 'applied',
                       statements=[], seconds=0.0)
        started = time.monotonic()
        if not resumed or migration['name'] not in self.row_ids:
            self.row_ids[migration['name']] = str(uuid.uuid4())
            self._record(self.records.start_statement(migration['name'], migration['checksum'], self.run_id,
                                                      self.row_ids[migration['name']]))
        for entry in migration['entries']:
            try:
                outcome['statements'].append(self.run_entry(migration['name'], entry))
            except Exception as error:  # a kind's OnlineIndexError, or the driver's (no importable common base)
                outcome['seconds'] = round(time.monotonic() - started, 3)
                outcome['action'] = 'failed'
                outcome['statements'].append(dict(self.describe(migration['name'], entry), action='failed',
                                                  error=str(error)))
                raise DeployFailed('migration %s, line %d (%s): %s' % (migration['name'], entry['line'],
                                                                       entry['kind'], error_text(error)), outcome)
        self._record(self.records.finish_statement(migration['name']))
        outcome['seconds'] = round(time.monotonic() - started, 3)
        return outcome

    def _record(self, statement):
        if not self.check_mode:
            self.session.with_retries(dict(name='_prisma_migrations', schema=self.schema), {}, statement,
                                      lambda: self.session.with_lock_timeout(self.runner.constraint_lock_timeout,
                                                                             statement))

    # -- one statement ---------------------------------------------------------------------------

    def describe(self, migration, entry):
        """What the report and --check show of a statement."""
        return dict(migration=migration, line=entry['line'], kind=entry['kind'], cls=entry['class'],
                    text=entry['text'], lock=entry.get('lock'), brief_lock=entry.get('brief_lock'),
                    lock_as_written=entry.get('lock_as_written'), lock_on=entry.get('lock_on') or [],
                    how=entry.get('how'), why=entry.get('why'), acknowledged=bool(entry.get('acknowledged')),
                    statements=[], seconds=0.0, retries=0)

    def table_bytes(self, entry):
        """The heap size of the statement's table now, or None (no table, or one an earlier statement creates or
        changes)."""
        details = entry.get('details') or {}
        if not details.get('table') or self._after_earlier(entry):
            return None
        key = (details.get('schema') or self.schema, details['table'])
        if key not in self.sizes:
            rows = self.session.query(
                'SELECT pg_catalog.pg_relation_size(c.oid) AS bytes FROM pg_catalog.pg_class c JOIN '
                'pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %(schema)s AND c.relname = '
                '%(table)s', dict(schema=key[0], table=key[1]))
            self.sizes[key] = rows[0]['bytes'] if rows else None
        return self.sizes[key]

    def run_entry(self, migration, entry):
        """One statement, the way its class says; returns its outcome (action done, unchanged, skipped, planned)."""
        outcome = self.describe(migration, entry)
        if self.check_mode and entry['class'] != 'skip':
            outcome['estimate_seconds'], outcome['estimate'] = estimate(
                entry['kind'] if entry['class'] == 'online' else None, self.table_bytes(entry))
        started, retries = time.monotonic(), self.session.retries_used
        done = len(self.session.executed_queries)
        if entry['class'] == 'skip':
            outcome['action'] = SKIPPED
        elif runs_as_planned(entry):
            outcome['action'] = self.as_written(migration, entry, outcome)
        elif entry['class'] == 'online' and self.check_mode and self._after_earlier(entry):
            outcome.update(action=PLANNED, statements=['-- proven by its kind when it runs (an earlier statement of '
                                                       'this deploy creates or changes what it needs): %s'
                                                       % ' '.join(entry['text'].split())])
        elif entry['class'] == 'online':
            outcome['action'] = self.online(entry, outcome)
        else:
            raise OnlineIndexError('refused and not acknowledged: the preflight should have stopped the run')
        if not self.check_mode:
            outcome['statements'] = self.session.executed_queries[done:]
        outcome['seconds'] = round(time.monotonic() - started, 3)
        outcome['retries'] = self.session.retries_used - retries
        self.touched |= touched_tables([entry], self.schema)
        self.dropped |= dropped_names([entry], self.schema)
        if (entry.get('details') or {}).get('name'):
            self.created.add(((entry['details'].get('schema') or self.schema), entry['details']['name']))
        return outcome

    def _after_earlier(self, entry):
        details = entry.get('details') or {}
        schema = details.get('schema') or self.schema
        name = (schema, details.get('name'))
        return _touches(entry, self.touched, self.schema) or name in self.dropped or name in self.created

    def key(self, migration, entry):
        return statement_key(migration, entry, self.row_ids.get(migration, 'new'))

    def recorded(self, migration, entry):
        """Whether the ledger has C(entry), a statement run as written, done (by an earlier run of this tool)."""
        key = self.key(migration, entry)
        return bool(self.ledger.open_rows('statement', self.schema, [key]).get(key))

    def as_written(self, migration, entry, outcome):
        """Run as written with its ledger row, in one transaction under the short lock_timeout, unless the ledger says
        an earlier run did it."""
        key = self.key(migration, entry)
        if self.recorded(migration, entry):
            return UNCHANGED
        sql = self.sql
        statement = sql.SQL(entry['text'])
        if self.check_mode:
            outcome['statements'] = [entry['text']]
            return PLANNED
        details = entry.get('details') or {}
        record = sql.SQL(
            'INSERT INTO pgzd_audit.ledger (plan, run_id, kind, schema_name, table_name, object_name, definition, '
            'prior, state, applied_at) VALUES ({plan}, {run}, {kind}, {schema}, {table}, {name}, {definition}, '
            '{prior}, {state}, now())').format(
            plan=sql.Literal(self.ledger.plan), run=sql.Literal(self.ledger.run_id), kind=sql.Literal('statement'),
            schema=sql.Literal(self.schema), table=sql.Literal(details.get('table') or ''), name=sql.Literal(key),
            definition=sql.Literal(entry['text']), prior=sql.Literal(json.dumps(dict(
                prisma_kind=entry['kind'], migration=migration, line=entry['line'], details=details,
                acknowledged=bool(entry.get('acknowledged')), before=prior_state(self.session.cursor, entry, self.schema)),
                default=str)), state=sql.Literal('applied'))
        timeout = self.runner.constraint_lock_timeout
        work = [sql.SQL('BEGIN'), sql.SQL('SET LOCAL lock_timeout = {}').format(sql.Literal(str(timeout))),
                self.search_path(), statement, record, sql.SQL('COMMIT')]
        spec = dict(name=key, schema=details.get('schema') or self.schema)
        self.session.with_retries(spec, dict(lock_timeout=timeout, retry_advice=(
            'What to do: let those sessions finish (or end them), or raise lock_timeout / lock_retries, then rerun: '
            'the statements before it are done and recorded, and the rerun resumes at this one.')), statement,
            lambda: self.session.in_transaction(work))
        return DONE

    def search_path(self):
        """SET LOCAL search_path to the schema Prisma migrates (pg_catalog is searched first all the same, and new
        objects go to the first schema listed): the unqualified names of a statement run as written resolve there, as
        the online kinds' qualified ones do."""
        return self.sql.SQL('SET LOCAL search_path = {}').format(self.sql.Identifier(self.schema))

    def online(self, entry, outcome):
        """Through the tool's kind for it."""
        shape, spec = kind_spec(entry, self.schema)
        if shape == 'drop_index':
            return self._drop_index(spec, outcome, self.key(outcome['migration'], entry))
        if shape == 'primary_key':
            return self._primary_key(spec, outcome)
        return self.through_kind(shape, spec, 'present', outcome)

    def plan_kind(self, shape, spec, state):
        """(decisions, apply) of the tool's kind for C(spec) brought to C(state): the index kind for an index table
        spec, the unique kind, or the foreign key / check / NOT NULL kind. Plans only: nothing runs."""
        if shape == 'index':
            return self.runner.plan(spec['schema'], spec['name'], spec['indexes'], state), self.runner.apply
        if spec['type'] == 'unique':
            return [self.runner.plan_constraint(spec['name'], spec['schema'], spec['table'], spec['columns'],
                                                state)], self.runner.apply_constraint
        return [self.runner.plan_entry(spec, state, spec['schema'])], self.runner.apply_entry

    def through_kind(self, shape, spec, state, outcome):
        decisions, apply = self.plan_kind(shape, spec, state)
        for decision in decisions:  # a rollback's drop of an index: when it was last used, before it goes
            if shape == 'index' and decision['action'] in ACTIONS_REMOVING:
                outcome['last_used'] = last_use(self.runner, decision['spec']['schema'], decision['spec']['name'])
        return self._apply(decisions, apply, outcome)

    def _apply(self, decisions, apply, outcome):
        pending = [decision for decision in decisions if decision['action'] != ACTION_UNCHANGED]
        if self.check_mode:
            outcome['statements'] = [text for decision in pending for text in decision['statements']]
            return PLANNED if pending else UNCHANGED
        for decision in pending:
            apply(decision)
        return DONE if pending else UNCHANGED

    def _drop_index(self, spec, outcome, key):
        """DROP INDEX CONCURRENTLY, with its definition in the ledger (a rollback can build it again)."""
        existing = self.runner.read_existing_indexes(spec['schema'], [spec['name']]).get(spec['name'])
        if existing is None:
            return UNCHANGED
        statement = self.runner.indexes.drop_statement(spec['schema'], spec['name'])
        outcome['last_used'] = last_use(self.runner, spec['schema'], spec['name'])
        if self.check_mode:
            outcome['statements'] = [self.session.render(statement)]
            return PLANNED
        spec = dict(spec, table=existing['table'])
        row = self.ledger.intend('statement', spec['schema'], existing['table'], key, self.session.render(statement),
                                 prior=dict(prisma_kind='drop_index', definition=existing['definition']))
        self.session.with_retries(spec, dict(table_oid=existing.get('table_oid')), statement,
                                  lambda: self.session.execute_concurrently(spec, statement))
        self.ledger.applied(row)
        # An index a run of this plan built is gone now: its row says so (a rollback does not drop it again).
        for name, open_row in self.ledger.open_rows('index', spec['schema'], [spec['name']]).items():
            self.ledger.undone(open_row['id'], state='gone')
        return DONE

    def _primary_key(self, spec, outcome):
        """A unique index built CONCURRENTLY, then ADD CONSTRAINT ... PRIMARY KEY USING INDEX under the short
        lock_timeout (its columns must be NOT NULL already, or that step scans the table under its lock)."""
        sql = self.sql
        existing = [row for row in self.runner.read_constraints(spec['schema'], spec['name'])
                    if row['table'] == spec['table']]
        if existing:
            if existing[0].get('type') != 'p' or list(existing[0].get('columns') or []) != list(spec['columns']):
                raise OnlineIndexError('%s.%s: a constraint named "%s" exists and is not this primary key (%s): '
                                       'nothing was changed by this statement' % (
                                           spec['schema'], spec['table'], spec['name'], existing[0].get('definition')))
            return UNCHANGED
        nullable = [row['name'] for row in self.session.query(COLUMNS_QUERY, dict(schema=spec['schema'],
                                                                                  table=spec['table']))
                    if row['name'] in spec['columns'] and not row['not_null_valid']]
        if nullable:
            raise OnlineIndexError('%s.%s: the primary key\'s column(s) %s may hold NULL: ADD PRIMARY KEY USING INDEX '
                                   'would scan the table under ACCESS EXCLUSIVE to make them NOT NULL. Make them NOT '
                                   'NULL first (SET NOT NULL, which goes online; a NOT NULL left NOT VALID needs its '
                                   'VALIDATE CONSTRAINT) in an earlier migration; nothing was '
                                   'changed by this statement' % (spec['schema'], spec['table'], ', '.join(nullable)))
        index = dict(name=spec['name'], columns=spec['columns'], unique=True, method='btree', include=[],
                     where=None, on_mismatch='fail')
        decisions = self.runner.plan(spec['schema'], spec['table'], [index], 'present')
        attach = sql.SQL('ALTER TABLE {}.{} ADD CONSTRAINT {} PRIMARY KEY USING INDEX {}').format(
            sql.Identifier(spec['schema']), sql.Identifier(spec['table']), sql.Identifier(spec['name']),
            sql.Identifier(spec['name']))
        if self.check_mode:
            outcome['statements'] = [text for decision in decisions if decision['action'] != ACTION_UNCHANGED
                                     for text in decision['statements']] + [self.session.render(attach)]
            return PLANNED
        self._apply(decisions, self.runner.apply, outcome)
        row = self.ledger.intend('constraint', spec['schema'], spec['table'], spec['name'],
                                 'PRIMARY KEY (%s)' % ', '.join(spec['columns']))
        self.session.with_short_lock_timeout(spec, dict(table_oid=decisions[0].get('table_oid')), attach,
                                             self.runner.constraint_lock_timeout)
        self.ledger.applied(row)
        return DONE
