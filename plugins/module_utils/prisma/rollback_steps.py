# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rollback of deployed Prisma migrations to an earlier one: the migrations after it, last first, each statement
undone in reverse order by the form undo_forms decides from the ledger, then the migration's row removed from
_prisma_migrations, so that `prisma migrate status` shows it pending again.

Only what the ledger says a run of this tool did is undone: a migration Prisma applied itself is refused, and so is
anything that cannot be undone without losing data or online (undo_forms). The preflight proves the rest before any
change: a created table must hold no rows, an added column nothing but its default.

A migration being undone first loses its finished_at (it is then ours and unfinished, as a deploy stopped in its
middle): a rollback stopped half way is resumed by the next rollback, or finished by the next deploy.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.prisma.deploy_proof import classified
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.prisma.deploy_steps import (
    DONE, UNCHANGED, DeployFailed, PrismaDeploy, last_use,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.prisma.pending_migrations import (
    pending_migrations,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.prisma.prisma_history import is_ours
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.prisma.undo_forms import (
    undo_form, undo_problems,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.statements import (
    OnlineIndexError, error_text, fetch_dicts,
)

KEPT, PLANNED = 'kept', 'planned'


def to_undo(history, rows, rollback_to, names):
    """(the migrations to undo, last first; problems): those applied (or left unfinished by this tool) after
    C(rollback_to), which must be a migration of the folder (C(names)); each must be this tool's (its row's logs)."""
    if rollback_to not in names:
        return [], ['pgzd_prisma_rollback_to names %r, which is not a migration of the folder: name the folder of the '
                    'last migration to keep' % rollback_to]
    wanted = [name for name in history['applied'] + ([history['resumed']] if history['resumed'] else [])
              if name > rollback_to]
    problems = []
    for name in wanted:
        ours = [row for row in rows if row['migration_name'] == name and row.get('rolled_back_at') is None]
        if not any(is_ours(row) for row in ours):
            problems.append('migration %s was applied by Prisma, not by pg-zero-downtime: the ledger holds nothing of '
                            'what it did, so nothing of it can be undone exactly. Roll it back by hand, then `prisma '
                            'migrate resolve --rolled-back %s`' % (name, name))
    return sorted(wanted, reverse=True), problems


class PrismaRollback(PrismaDeploy):
    """Undoes classified migrations (deploy_proof.classified) through the same runner and records as the deploy."""

    def ledger_row(self, migration, entry):
        """The ledger row of what the deploy did for C(entry), or None (the kinds read their own)."""
        details = entry.get('details') or {}
        if entry['class'] in ('catalog', 'refused'):
            key = self.key(migration, entry)
            return self.ledger.open_rows('statement', self.schema, [key]).get(key)
        if entry['kind'] == 'drop_index':
            key = self.key(migration, entry)
            return self.ledger.open_rows('statement', details.get('schema') or self.schema, [key]).get(key)
        if entry['kind'] == 'add_primary_key':
            return self.ledger.open_rows('constraint', details.get('schema') or self.schema, [details['name']],
                                         details['table']).get(details['name'])
        return None

    def forms(self, migration, finished=True):
        """[(entry, its ledger row, its undo form)] of C(migration), in undo order (last statement first). Of a
        migration this tool C(finished), every statement it ran as written has its row: one without is refused."""
        return [(entry, row, undo_form(entry, row, self.schema, finished)) for entry in reversed(migration['entries'])
                for row in [self.ledger_row(migration['name'], entry)]]

    def problems(self, migration, forms):
        """What stops the undo of C(migration): what cannot be undone, what the ledger does not attribute to the
        deploy, and data a drop would lose."""
        problems = undo_problems(migration['name'], [(entry, form) for entry, _row, form in forms])
        for entry, _row, form in forms:
            problem = self.check(entry, form) or self.left_alone(form)
            if problem:
                problems.append('migration %s, line %d (%s): cannot be undone: %s' % (
                    migration['name'], entry['line'], entry['kind'], problem))
        return problems

    def check(self, entry, form):
        """Why the data forbids C(form) now (a table with rows, a column holding more than its default), or None."""
        if form.get('check') not in ('empty', 'default_only'):
            return None
        sql = self.sql
        details = entry['details']
        table = sql.SQL('{}.{}').format(sql.Identifier(details.get('schema') or self.schema),
                                        sql.Identifier(details['table']))
        if form['check'] == 'empty':
            if fetch_dicts(self.session.cursor, sql.SQL('SELECT EXISTS (SELECT 1 FROM {}) AS rows').format(
                    table))[0]['rows']:
                return 'table %s holds rows now: dropping it loses them (empty it first, or keep it)' % details['table']
            return None
        column = details['definition']['name']
        default = fetch_dicts(self.session.cursor, (
            'SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid) AS "default" FROM pg_catalog.pg_attrdef d '
            'JOIN pg_catalog.pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum '
            'WHERE d.adrelid = pg_catalog.to_regclass(%(table)s) AND a.attname = %(column)s'),
            dict(table=table.as_string(self.connection()), column=column))
        if default and self.trust.prove_query('SELECT (%s)' % default[0]['default'], context='predicate'):
            return ('column %s of %s has the default %s, which is not a constant (it gave each row a value of its '
                    'own): dropping it loses those values' % (column, details['table'], default[0]['default']))
        if default:
            condition = sql.SQL('{} IS DISTINCT FROM ({})').format(
                sql.Identifier(column), sql.SQL(default[0]['default']))
        else:
            condition = sql.SQL('{} IS NOT NULL').format(sql.Identifier(column))
        if fetch_dicts(self.session.cursor, sql.SQL('SELECT EXISTS (SELECT 1 FROM {} WHERE {}) AS rows').format(
                table, condition))[0]['rows']:
            return 'column %s of %s holds values other than %s now: dropping it loses them' % (
                column, details['table'], 'its default' if default else 'NULL')
        return None

    def left_alone(self, form):
        """Why the kind would leave what C(form) undoes in place (the ledger does not attribute it to the deploy: the
        application made an object of that name, or it changed since), or None. The migration's row would go while
        its object stays: refused."""
        if form['form'] != 'kind' or form['state'] != 'absent':
            return None
        try:
            decisions, _apply = self.plan_kind(form['shape'], form['spec'], 'absent')
        except OnlineIndexError as error:
            return str(error)
        reasons = [decision['left_alone'] for decision in decisions if decision.get('left_alone')]
        return '; '.join(str(reason) for reason in reasons) or None

    def connection(self):
        return self.session.connection

    @property
    def trust(self):
        return self.runner.trust

    def undo(self, migration, forms):
        """Every statement of C(migration) undone, last first, between its row made unfinished and its row removed.
        Returns its outcome; raises DeployFailed with the outcome so far."""
        outcome = dict(name=migration['name'], action='planned' if self.check_mode else 'rolled back', statements=[],
                       seconds=0.0)
        started = time.monotonic()
        self._record(self.records.unfinish_statement(migration['name']))
        for entry, row, form in forms:
            try:
                outcome['statements'].append(self.undo_entry(migration['name'], entry, row, form))
            except Exception as error:  # a kind's OnlineIndexError, or the driver's (no importable common base)
                outcome.update(action='failed', seconds=round(time.monotonic() - started, 3))
                outcome['statements'].append(dict(self.describe(migration['name'], entry), action='failed',
                                                  error=error_text(error)))
                raise DeployFailed('undoing migration %s, line %d (%s): %s' % (
                    migration['name'], entry['line'], entry['kind'], error_text(error)), outcome)
        self._record(self.records.remove_statement(migration['name']))
        outcome['seconds'] = round(time.monotonic() - started, 3)
        return outcome

    def undo_entry(self, migration, entry, row, form):
        outcome = dict(self.describe(migration, entry), undo=form['form'], why=form.get('why'),
                       entry_details=entry.get('details') or {})
        done = len(self.session.executed_queries)
        kind = form['form']
        if kind in ('nothing', 'kept'):
            outcome['action'] = KEPT if kind == 'kept' else UNCHANGED
        elif kind == 'kind':
            outcome['action'] = self.through_kind(form['shape'], form['spec'], form['state'], outcome)
            if row is not None and outcome['action'] == DONE:
                self.ledger.undone(row['id'])
        elif kind in ('sql', 'concurrent'):
            if entry['kind'] == 'create_index':  # when the index was last used, before it goes
                outcome['last_used'] = last_use(self.runner, outcome['entry_details'].get('schema') or self.schema,
                                                outcome['entry_details']['name'])
            outcome['action'] = self._statements(form, row, outcome)
        else:
            raise OnlineIndexError('cannot be undone: %s' % form.get('why'))
        if not self.check_mode:
            outcome['statements'] = self.session.executed_queries[done:]
        outcome.pop('entry_details', None)
        return outcome

    def _statements(self, form, row, outcome):
        sql = self.sql
        if self.check_mode:
            outcome['statements'] = list(form['statements'])
            return PLANNED
        spec = dict(name=outcome['text'][:40], schema=self.schema)
        if form['form'] == 'concurrent':
            for text in form['statements']:
                statement = sql.SQL(text)
                self.session.with_retries(spec, {}, statement,
                                          lambda: self.session.execute_concurrently(spec, statement))
            if row is not None:
                self.ledger.undone(row['id'])
            return DONE
        timeout = self.runner.constraint_lock_timeout
        head = [sql.SQL('BEGIN'), sql.SQL('SET LOCAL lock_timeout = {}').format(sql.Literal(str(timeout))),
                self.search_path()]
        tail = [sql.SQL(text) for text in form['statements']] + \
            ([self.ledger.undone_statement(row['id'])] if row is not None else []) + [sql.SQL('COMMIT')]

        def attempt():
            if form.get('check'):
                # Proven before any change, and again under the table's lock, in the drop's own transaction: rows
                # the application wrote since stop it (nothing of it stays).
                self.session.in_transaction(head + [self.lock_statement(outcome['entry_details'])])
                problem = self.check(dict(details=outcome['entry_details']), form)
                if problem:
                    self.session.cursor.execute('ROLLBACK')
                    raise OnlineIndexError('not undone: %s (checked again under its lock)' % problem)
                self.session.in_transaction(tail)
            else:
                self.session.in_transaction(head + tail)

        self.session.with_retries(spec, dict(lock_timeout=timeout), sql.SQL(form['statements'][0]), attempt)
        return DONE

    def lock_statement(self, details):
        sql = self.sql
        return sql.SQL('LOCK TABLE {}.{} IN ACCESS EXCLUSIVE MODE').format(
            sql.Identifier(details.get('schema') or self.schema), sql.Identifier(details['table']))


def prove_rollback(work, migrations, rows, rollback_to, schema):
    """What the rollback of C(migrations) (the folder's) to C(rollback_to) undoes, and what stops it, before any
    change: dict(history, undo (names, last first), planned [(migration, forms)], problems). C(work) is a
    PrismaRollback (its reads run; nothing changes)."""
    history = pending_migrations(migrations, rows)
    if history['problems']:
        return dict(history=history, undo=[], planned=[], problems=history['problems'])
    undo, problems = to_undo(history, rows, rollback_to, [migration['name'] for migration in migrations])
    everything, _unused = classified(migrations, sorted(set(history['applied'] + history['pending'])), [], schema)
    by_name = dict((migration['name'], migration) for migration in everything)
    ours = dict((row['migration_name'], row) for row in rows if row.get('rolled_back_at') is None and is_ours(row))
    work.row_ids.update((name, row['id']) for name, row in ours.items())
    planned = [(by_name[name], work.forms(by_name[name], finished=ours[name].get('finished_at') is not None))
               for name in undo if name in by_name and name in ours]
    for migration, forms in planned:
        problems.extend(work.problems(migration, forms))
    return dict(history=history, undo=undo, planned=planned, problems=problems)


def rollback_refused_message(rollback_to, problems):
    return 'The rollback to %s cannot be done; nothing was changed:\n%s' % (
        rollback_to, '\n'.join('- %s' % problem for problem in problems))
