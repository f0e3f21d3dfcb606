# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ledger: what the tool's runs did to a database, recorded in the database itself, so that a rollback undoes
exactly that and nothing that only shares a name with it.

One table, pgzd_audit.ledger (the tool's own schema, beside the audit table of duplicate renames; Prisma, which manages
its own schema, never sees it). One row per object a run created or changed: an index (with its definition), a
constraint, a column's NOT NULL, an index replaced by on_mismatch: replace (with the previous definition and comment),
the duplicate rows a rename changed (the audit table holds the rows), a statement of a Prisma migration run as written
(with the migration, its line and what it did, so that a rerun skips it and a rollback can undo it). Each row has the
plan, the run id and the prior state. Its life:

- intended: written (and committed) right before the first statement that makes the object, with what it will be;
- applied: the object is there, with the definition PostgreSQL renders for it (in the same transaction as the change
  where the change is transactional: a replacement's swap, a duplicate rename);
- undone: a rollback removed it (or gone: it was found absent, or a newer row of the same object took its place).

A rollback undoes an object only when a row of its plan, intended or applied, names it and the object still matches
what that row records (attribution); anything else of the plan's names (an index the application made, a NOT NULL
that predates the plan, a primary key's column) is left alone, and the run says so. An intended row is enough: it
was written under the migration lock when the object did not exist, so an object of that name and the planned
definition found later is the run's own (a run stopped between its DDL and the row's update).

Read it with one query (docs/trust-and-ledger.md, "The ledger"):

    SELECT * FROM pgzd_audit.ledger ORDER BY id;

The functions here take plain data (attribution) or a cursor (Ledger), so tests/unit runs the decisions without a
server.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.statements import (
    fetch_dicts, sql_module, sqlstate,
)

SCHEMA = 'pgzd_audit'
TABLE = 'ledger'
QUALIFIED = '%s.%s' % (SCHEMA, TABLE)
KINDS = ('index', 'constraint', 'not_null', 'replaced_index', 'renamed_rows', 'statement')
KIND_CHECK = 'kind IN (%s)' % ', '.join("'%s'" % kind for kind in KINDS)
OPEN = ('intended', 'applied')
# Standalone module runs, with no plan: their objects are recorded under this plan name, and rolled back under it.
NO_PLAN = 'manual'

CREATE_STATEMENTS = (
    'CREATE SCHEMA IF NOT EXISTS %s' % SCHEMA,
    """CREATE TABLE IF NOT EXISTS %s (
    id bigserial PRIMARY KEY,
    plan text NOT NULL,
    run_id text NOT NULL,
    kind text NOT NULL CONSTRAINT ledger_kind_check CHECK (%s),
    schema_name text NOT NULL,
    table_name text NOT NULL,
    object_name text NOT NULL,
    definition text NOT NULL,
    prior jsonb,
    state text NOT NULL DEFAULT 'intended' CHECK (state IN ('intended', 'applied', 'undone', 'gone')),
    recorded_at timestamptz NOT NULL DEFAULT now(),
    applied_at timestamptz,
    undone_at timestamptz,
    undone_by text)""" % (QUALIFIED, KIND_CHECK),
    'CREATE INDEX IF NOT EXISTS ledger_object_idx ON %s (plan, kind, schema_name, object_name)' % QUALIFIED,
)

# A ledger created before a kind was added (0.18: no 'statement') takes the new list of kinds; the table is the tool's
# own and small, so the check is replaced in one short transaction.
KIND_CHECK_QUERY = ("SELECT pg_catalog.pg_get_constraintdef(oid) AS definition FROM pg_catalog.pg_constraint "
                    "WHERE conrelid = 'pgzd_audit.ledger'::pg_catalog.regclass AND conname = 'ledger_kind_check'")
UPGRADE_STATEMENTS = ('BEGIN', "SET LOCAL lock_timeout = '5s'",
                      'ALTER TABLE %s DROP CONSTRAINT IF EXISTS ledger_kind_check' % QUALIFIED,
                      'ALTER TABLE %s ADD CONSTRAINT ledger_kind_check CHECK (%s)' % (QUALIFIED, KIND_CHECK),
                      'COMMIT')

# The one documented query: what every run did, oldest first.
READ_QUERY = ('SELECT id, plan, run_id, kind, schema_name, table_name, object_name, state, definition, prior, '
              'recorded_at, applied_at, undone_at, undone_by FROM %s ORDER BY id' % QUALIFIED)

# Every open row of some objects (the renames of a constraint's duplicates: one row per run that renamed).
ALL_OPEN_ROWS_QUERY = """
SELECT id, plan, run_id, kind, schema_name, table_name, object_name, definition, prior, state
FROM pgzd_audit.ledger
WHERE plan = %(plan)s AND kind = %(kind)s AND schema_name = %(schema)s AND object_name = ANY(%(names)s)
  AND state IN ('intended', 'applied')
ORDER BY id
"""

OPEN_ROWS_QUERY = """
SELECT DISTINCT ON (kind, object_name) id, plan, run_id, kind, schema_name, table_name, object_name, definition,
       prior, state
FROM pgzd_audit.ledger
WHERE plan = %(plan)s AND kind = %(kind)s AND schema_name = %(schema)s AND object_name = ANY(%(names)s)
  AND (%(table)s::text IS NULL OR table_name = %(table)s) AND state IN ('intended', 'applied')
ORDER BY kind, object_name, id DESC
"""

# Whether the login can keep the ledger: write the table, or create it (and its schema).
WRITABLE_QUERY = """
SELECT CASE
         WHEN pg_catalog.to_regclass('pgzd_audit.ledger') IS NOT NULL THEN
           pg_catalog.has_table_privilege('pgzd_audit.ledger', 'SELECT, INSERT, UPDATE')
           AND pg_catalog.has_sequence_privilege(pg_catalog.pg_get_serial_sequence('pgzd_audit.ledger', 'id'), 'USAGE')
         WHEN pg_catalog.to_regnamespace('pgzd_audit') IS NOT NULL THEN
           pg_catalog.has_schema_privilege('pgzd_audit', 'CREATE, USAGE')
         ELSE pg_catalog.has_database_privilege(pg_catalog.current_database(), 'CREATE')
       END AS writable
"""


def attribution(plan, kind, name, row, present, matches, now=None):
    """Whether a rollback may undo an object: (True, None), or (False, why it is left alone), or (False, None) when
    there is nothing to undo (it is not there).

    C(row) is the plan's open ledger row of the object (or None), C(present) whether the object is there, C(matches)
    whether it still is what C(row) records (C(now): what it is, for the message).
    """
    if not present:
        return False, None
    if row is None:
        return False, ('%s "%s" is not in the ledger of plan %s: no run of this plan made it (it predates the plan, was '
                       'made by hand or by an older version of this tool), so it is left alone. If a run of this plan '
                       'did make it, record it first with playbooks/adopt.yml (docs/trust-and-ledger.md, "The ledger")'
                       % (KIND_WORDS[kind], name, plan))
    if not matches:
        return False, ('%s "%s" is not what run %s of plan %s recorded (recorded: %s; now: %s): it changed since, so it '
                       'is left alone' % (KIND_WORDS[kind], name, row['run_id'], plan, row['definition'],
                                          now or 'different'))
    return True, None


KIND_WORDS = dict(index='index', constraint='constraint', not_null='NOT NULL of column', replaced_index='index',
                  renamed_rows='renamed duplicates of constraint')


def renamed_rows_definition(rows, schema, table, audit_name):
    """The definition of a renamed_rows row: how many rows of which table a rename changed, and where they are."""
    return '%d row(s) of %s.%s renamed, recorded in %s' % (rows, schema, table, audit_name)


def without_not_valid(definition):
    definition = definition or ''
    return definition[:-len(' NOT VALID')] if definition.endswith(' NOT VALID') else definition


class Ledger(object):
    """The ledger of plan C(plan) seen by run C(run_id), over a module's cursor (autocommit, or in the caller's
    transaction for the statements meant to be part of one)."""

    def __init__(self, cursor, plan=NO_PLAN, run_id=NO_PLAN):
        self.cursor = cursor
        self.plan = plan or NO_PLAN
        self.run_id = run_id or NO_PLAN
        self.sql = sql_module()
        self._exists = None
        self._upgraded = False

    def exists(self):
        if not self._exists:
            self._exists = fetch_dicts(self.cursor, "SELECT pg_catalog.to_regclass('pgzd_audit.ledger') IS NOT NULL "
                                                    "AS present")[0]['present']
        return self._exists

    def ensure(self):
        """Create the schema and table when missing (a concurrent creator is no error: IF NOT EXISTS)."""
        if self.exists():
            return
        for statement in CREATE_STATEMENTS:
            try:
                self.cursor.execute(statement)
            except Exception as error:  # psycopg2 and psycopg 3 errors share no importable base here
                # Another lane of the same run created it between the check and the statement (IF NOT EXISTS is not
                # atomic against a concurrent creator); anything else is the caller's to report.
                if sqlstate(error) not in ('23505', '42P06', '42P07'):
                    raise
        self._exists = self._upgraded = True

    def ensure_current(self):
        """ensure(), and a ledger of an older version given the kinds of this one. Runs its own transaction: call it
        outside any (the Prisma deploy does, before its first statement)."""
        self.ensure()
        if self._upgraded:
            return
        rows = fetch_dicts(self.cursor, KIND_CHECK_QUERY)
        if not rows or "'%s'" % KINDS[-1] not in rows[0]['definition']:
            try:
                for statement in UPGRADE_STATEMENTS:
                    self.cursor.execute(statement)
            except Exception:  # the caller reports it; nothing of the upgrade stays
                self.cursor.execute('ROLLBACK')
                raise
        self._upgraded = True

    def open_rows(self, kind, schema, names, table=None):
        """{object name: the plan's newest intended or applied row of it} for C(names) of C(kind) in C(schema) (of
        C(table): the names of checks, foreign keys and columns are per table)."""
        if not names or not self.exists():
            return {}
        rows = fetch_dicts(self.cursor, OPEN_ROWS_QUERY, dict(plan=self.plan, kind=kind, schema=schema,
                                                              names=list(names), table=table))
        return dict((row['object_name'], row) for row in rows)

    def all_open_rows(self, kind, schema, names):
        """Every open row of the plan for C(names) of C(kind) in C(schema), oldest first."""
        if not names or not self.exists():
            return []
        return fetch_dicts(self.cursor, ALL_OPEN_ROWS_QUERY, dict(plan=self.plan, kind=kind, schema=schema,
                                                                  names=list(names)))

    def intend(self, kind, schema, table, name, definition, prior=None, reuse=True):
        """Record, before the first statement that makes it, that this run makes C(name): returns the row id. An older
        open row of the same object (a stopped run's) is kept as the one to confirm, unless not C(reuse) (each rename
        of duplicates is a row of its own)."""
        self.ensure()
        existing = self.open_rows(kind, schema, [name], table).get(name) if reuse else None
        if existing is not None:
            return existing['id']
        return fetch_dicts(self.cursor, (
            'INSERT INTO pgzd_audit.ledger (plan, run_id, kind, schema_name, table_name, object_name, definition, prior) '
            'VALUES (%(plan)s, %(run_id)s, %(kind)s, %(schema)s, %(table)s, %(name)s, %(definition)s, %(prior)s) '
            'RETURNING id'), dict(plan=self.plan, run_id=self.run_id, kind=kind, schema=schema, table=table, name=name,
                                  definition=definition, prior=json.dumps(prior) if prior is not None else None)
        )[0]['id']

    def applied_statement(self, row_id, definition=None, definition_sql=None):
        """The UPDATE that marks row C(row_id) applied, with its definition as a value or as composed SQL the server
        computes (indexdef_sql), to run alone or inside the transaction of the change."""
        sql = self.sql
        value = definition_sql if definition_sql is not None else sql.Literal(definition)
        return sql.SQL("UPDATE pgzd_audit.ledger SET state = 'applied', applied_at = now(), run_id = {run}, "
                       "definition = coalesce({value}, definition) WHERE id = {id}").format(
            run=sql.Literal(self.run_id), value=value, id=sql.Literal(int(row_id)))

    def indexdef_sql(self, schema, name):
        """pg_get_indexdef of index C(schema).C(name), as composed SQL."""
        sql = self.sql
        qualified = sql.SQL('{}.{}').format(sql.Identifier(schema), sql.Identifier(name)).as_string(
            self.cursor.connection)
        return sql.SQL('pg_catalog.pg_get_indexdef({}::pg_catalog.regclass)').format(sql.Literal(qualified))

    def applied(self, row_id, definition=None, definition_sql=None):
        self.cursor.execute(self.applied_statement(row_id, definition, definition_sql))

    def undone_statement(self, row_id, state='undone'):
        sql = self.sql
        return sql.SQL('UPDATE pgzd_audit.ledger SET state = {state}, undone_at = now(), undone_by = {run} '
                       'WHERE id = {id}').format(state=sql.Literal(state), run=sql.Literal(self.run_id),
                                                 id=sql.Literal(int(row_id)))

    def undone(self, row_id, state='undone'):
        self.cursor.execute(self.undone_statement(row_id, state))

    def record_applied(self, kind, schema, table, name, definition, prior=None, reuse=True):
        """A row written applied at once (an adoption, a rename's transaction): returns its id."""
        row_id = self.intend(kind, schema, table, name, definition, prior, reuse)
        self.applied(row_id, definition)
        return row_id

    def writable_problem(self):
        """Why this login cannot keep the ledger, or None."""
        if fetch_dicts(self.cursor, WRITABLE_QUERY)[0]['writable']:
            return None
        return ('the login cannot keep the ledger %s (it records what each run does, so that a rollback undoes exactly '
                'that): grant it CREATE on the database (the first run creates the schema %s), or SELECT, INSERT and '
                'UPDATE on the table and USAGE on its sequence' % (QUALIFIED, SCHEMA))
