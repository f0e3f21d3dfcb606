# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a deploy of a prisma/migrations folder will do, proven before any change: which migrations are pending (by
Prisma's rules, pending_migrations), every statement of each in its class (statement_classes), the facts only the
server can prove (server_proofs), the acknowledgements of refused statements, and what stops the deploy.

The pending migrations are classified in order, each with the column types the earlier ones create or change, so that
a later ALTER COLUMN TYPE of a column an earlier pending migration added is judged from the file, not from a catalog
that does not have the column yet.

prove_deploy() is the one entry point (the preflight and the deploy module call it); the rest are plain functions over
plain data, unit-tested without a server.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.constraint_catalog import NOT_NULL_PROVEN
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.prisma.pending_migrations import (
    folder_problems, pending_migrations,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.prisma.prisma_history import render_checksum
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.prisma.server_proofs import prove_entries
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.prisma.statement_classes import (
    acknowledge, classify,
)

ALLOW_OPTION = 'pgzd_prisma_allow'


def column_types_after(entries, schema, column_types):
    """C(column_types) ({(schema, table, column): type}) with what C(entries) create or change: the columns of their
    new tables, their added columns, their type changes that run."""
    types = dict(column_types)
    for entry in entries:
        details = entry.get('details') or {}
        key = (details.get('schema') or schema, details.get('table'))
        if entry['kind'] == 'create_table':
            for column in details['columns']:
                types[key + (column['name'],)] = column['type']
        elif entry['kind'] == 'add_column':
            types[key + (details['definition']['name'],)] = details['definition']['type']
        elif entry['kind'] == 'alter_column_type' and entry['class'] != 'refused':
            types[key + (details['column'],)] = details['type']
    return types


# The kinds after which today's catalog or data no longer tells what a later statement on the same table meets.
RESHAPING_KINDS = ('create_table', 'add_column', 'add_column_volatile_default', 'add_column_required',
                   'add_column_with_constraint', 'alter_column_type', 'drop_column', 'rename_column', 'rename_table',
                   'drop_table', 'update', 'insert', 'delete', 'unknown')


def touched_tables(entries, schema):
    """(schema, table) of every table C(entries) create or reshape (a later statement on one of them cannot be proven
    against today's catalog: it is proven when it runs)."""
    return set((entry['details'].get('schema') or schema, entry['details']['table']) for entry in entries
               if entry['kind'] in RESHAPING_KINDS and (entry.get('details') or {}).get('table'))


def dropped_names(entries, schema):
    """(schema, name) of the indexes and constraints C(entries) drop: a later statement may create the name again."""
    return set((entry['details'].get('schema') or schema, entry['details'].get('name') or entry['details'].get(
        'constraint')) for entry in entries if entry['kind'] in ('drop_index', 'drop_constraint'))


def acknowledgement_problems(allow, names, pending, unused):
    """Why acknowledgements are wrong: one naming no migration of the folder, or one of a pending migration that
    matches no refused statement (C(unused), acknowledge()'s). One of an applied migration is harmless (it stays in a
    pipeline's settings after its deploy) and ignored."""
    problems = []
    for key in allow:
        migration = key.split(':', 1)[0]
        if ':' not in key or migration not in names:
            problems.append('the acknowledgement %r names no migration of the folder: write it as '
                            '"<migration folder>:<line>:<kind>", as the refusal prints it' % key)
    for key in unused:
        if key.split(':', 1)[0] in pending:
            problems.append('the acknowledgement %r matches no refused statement of its migration (the file changed, '
                            'or the line or kind is wrong): remove it, or write the key the refusal prints' % key)
    return problems


def refusal_lines(name, entry):
    """The refusal of one statement, as strong_migrations words one: where, what lock on what, why, the safe way, and
    the acknowledgement that runs it as written."""
    lock = entry.get('lock_as_written')
    why = (entry.get('why') or 'no reason is known').rstrip('.')
    lines = ['migration %s, line %d: %s' % (name, entry['line'], ' '.join(entry['text'].split())),
             '  %s %s: refused. %s.' % (
                 'Takes %s on %s' % (lock, ', '.join(entry.get('lock_on') or []) or 'it') if lock else 'Its locks are '
                 'unknown', 'as written' if lock else '', why[:1].upper() + why[1:])]
    if entry.get('safe_way'):
        lines.append('  Safe way: %s.' % entry['safe_way'].rstrip('.'))
    if entry.get('ack'):
        lines.append('  To run it as written anyway (after reading the above): -e \'%s=["%s:%s"]\''
                     % (ALLOW_OPTION, name, entry['ack']))
    return lines


def classified(migrations, pending, allow, schema, prove=None):
    """[dict(name, checksum, sql, entries)] of the C(pending) migrations (names, in order) of C(migrations) (dicts
    with name and sql), each statement classified with the column types the earlier ones leave, proven by
    C(prove)(entries, proven_tables) when given (server_proofs over the live server), and acknowledged; and the
    acknowledgements that matched nothing."""
    by_name = dict((migration['name'], migration) for migration in migrations)
    result, unused, types, touched = [], [], {}, set()
    for name in pending:
        sql = by_name[name]['sql']
        entries = classify(sql, schema, column_types=types)
        if prove is not None:
            entries = prove(entries, touched)
        entries, stale = acknowledge(entries, allow, prefix=name + ':')
        unused.extend(stale)
        types = column_types_after(entries, schema, types)
        touched |= touched_tables(entries, schema)
        result.append(dict(name=name, checksum=render_checksum(sql), sql=sql, entries=entries))
    return result, unused


def primary_key_swaps(deploy, schema):
    """A migration that drops a table's primary key and adds one again (Prisma's change of an @id): refused. Run
    statement by statement, the table would have no primary key while the new key's index builds, and a failure of
    that build (duplicate or NULL keys) would leave it without one."""
    problems = []
    for migration in deploy:
        dropped = {}
        for entry in migration['entries']:
            details = entry.get('details') or {}
            table = (details.get('schema') or schema, details.get('table'))
            if entry['kind'] == 'drop_constraint':
                dropped[table + (details.get('constraint'),)] = entry['line']
            elif entry['kind'] == 'add_primary_key' and table + (details.get('name'),) in dropped:
                problems.append(
                    'migration %s, lines %d and %d: the primary key %s of %s is dropped and added again (a changed '
                    '@id): statement by statement, the table would have no primary key while the new key\'s index '
                    'builds, and a failure of that build (duplicate or NULL keys) would leave it without one. Not done '
                    'online: make the new key\'s columns NOT NULL and give them a unique index in an earlier release '
                    '(both go online), then change the key; or change it yourself in a maintenance window and record '
                    'the migration with `prisma migrate resolve --applied %s`' % (
                        migration['name'], dropped[table + (details.get('name'),)], entry['line'], details.get('name'),
                        '.'.join(table), migration['name']))
    return problems


def refusals(deploy):
    """The lines of every refused, unacknowledged statement of the classified migrations C(deploy)."""
    lines = []
    for migration in deploy:
        for entry in migration['entries']:
            if entry['class'] == 'refused' and not entry.get('acknowledged'):
                lines.extend(refusal_lines(migration['name'], entry))
    return lines


def acknowledged_lines(deploy):
    """One loud line per acknowledged statement: it runs as written, with the lock it takes."""
    return ['ACKNOWLEDGED, run as written: migration %s, line %d (%s), taking %s on %s' % (
        migration['name'], entry['line'], entry['kind'], entry.get('lock_as_written') or 'unknown locks',
        ', '.join(entry.get('lock_on') or []) or 'it')
        for migration in deploy for entry in migration['entries'] if entry.get('acknowledged')]


def prove_deploy(migrations, rows, allow, schema, trust=None, cursor=None):
    """Everything the deploy of C(migrations) (the folder's, dicts with name and sql) does on a database whose
    _prisma_migrations holds C(rows), and why it may not: dict(history (pending_migrations'), deploy (classified()),
    problems, refusals, acknowledged). With C(trust) and C(cursor) (a plan_trust.PlanTrust and its cursor) the server
    proves what the files cannot tell, for the tables no earlier pending statement touches."""
    problems = folder_problems(migrations)
    if problems:
        return dict(history=None, deploy=[], problems=problems, refusals=[], acknowledged=[])
    history = pending_migrations(migrations, rows)
    if history['problems']:
        return dict(history=history, deploy=[], problems=history['problems'], refusals=[], acknowledged=[])

    def prove(entries, touched):
        untouched = [entry for entry in entries if not _touches(entry, touched, schema)]
        proven = iter(prove_entries(trust, cursor, untouched, schema))
        return [next(proven) if not _touches(entry, touched, schema) else entry for entry in entries]

    deploy, unused = classified(migrations, history['pending'], list(allow or []), schema,
                                prove if trust is not None else None)
    problems = acknowledgement_problems(list(allow or []), set(m['name'] for m in migrations), history['pending'],
                                        unused) + primary_key_swaps(deploy, schema)
    return dict(history=history, deploy=deploy, problems=problems, refusals=refusals(deploy),
                acknowledged=acknowledged_lines(deploy))


def _touches(entry, touched, schema):
    """Whether C(entry) is on, or references, a table of C(touched)."""
    details = entry.get('details') or {}
    tables = [(details.get('schema') or schema, details.get('table'))]
    if details.get('references'):
        tables.append((details['references'].get('schema') or details.get('schema') or schema,
                       details['references']['table']))
    return any(table[1] and table in touched for table in tables)


def not_null_name(table, column):
    """The name of the NOT NULL step of C(table).C(column) (its helper check while it is validated), at most 63 bytes."""
    name = '%s_%s_not_null' % (table, column)
    while len(name.encode('utf-8')) > 63:
        name = name[:-1]
    return name


def kind_spec(entry, schema):
    """The spec the tool's kind takes for an online C(entry): ('index', table spec) for an index,
    ('constraint', plan constraint) for a unique key, foreign key, check or NOT NULL, ('primary_key', spec), or
    ('drop_index', spec)."""
    details = entry['details']
    table_schema = details.get('schema') or schema
    kind = entry['kind']
    if kind == 'create_index':
        return 'index', dict(schema=table_schema, name=details['table'], indexes=[dict(
            name=details['name'], columns=list(details['columns']), unique=bool(details.get('unique')),
            method=details.get('method') or 'btree', where=details.get('where'), include=list(details.get('include') or []),
            on_mismatch='fail')])
    if kind == 'drop_index':
        return 'drop_index', dict(schema=table_schema, name=details['name'])
    if kind == 'add_primary_key':
        return 'primary_key', dict(schema=table_schema, table=details['table'], name=details['name'],
                                   columns=list(details['columns']))
    spec = dict(schema=table_schema, table=details['table'])
    if kind == 'add_unique':
        spec.update(name=details['name'], type='unique', columns=list(details['columns']), on_duplicates='fail')
    elif kind == 'add_foreign_key':
        references = details['references']
        spec.update(name=details['name'], type='foreign_key', columns=list(details['columns']),
                    references=dict(table=references['table'], schema=references.get('schema') or table_schema,
                                    columns=list(references['columns'])),
                    on_delete=details.get('on_delete') or 'NO ACTION', on_update=details.get('on_update') or 'NO ACTION')
    elif kind == 'add_check':
        spec.update(name=details['name'], type='check', expression=details['expression'])
    elif kind == 'set_not_null':
        spec.update(name=not_null_name(details['table'], details['column']), type='not_null', column=details['column'])
    else:
        raise ValueError('no kind carries %s' % kind)
    return 'constraint', spec


def provable_now(deploy, schema):
    """The online statements of C(deploy) the preflight can prove against today's catalog and data (those on tables
    no earlier statement of the deploy creates or reshapes, of names no earlier statement drops), in the shapes
    plan_proof takes: (tables, constraints). The others are proven by their kind when they run."""
    tables, constraints, touched, dropped = [], [], set(), set()
    for migration in deploy:
        for entry in migration['entries']:
            if entry['class'] == 'online' and not _touches(entry, touched, schema) and (
                    (entry['details'].get('schema') or schema, entry['details'].get('name')) not in dropped):
                shape, spec = kind_spec(entry, schema)
                if shape == 'index':
                    tables.append(spec)
                elif shape == 'constraint':
                    constraints.append(spec)
            touched |= touched_tables([entry], schema)
            dropped |= dropped_names([entry], schema)
    return tables, constraints


# The statements run as written that create a name: the catalog says whether the name is taken already.
NAME_QUERIES = dict(
    create_table=("SELECT pg_catalog.to_regclass(%(name)s) IS NOT NULL AS taken", 'table', 'a relation'),
    create_index=("SELECT pg_catalog.to_regclass(%(name)s) IS NOT NULL AS taken", 'name', 'a relation'),
    create_enum=("SELECT pg_catalog.to_regtype(%(name)s) IS NOT NULL AS taken", 'enum', 'a type'),
)
DROPPING_KINDS = ('drop_table', 'drop_index', 'drop_type')


def _quoted(schema, name):
    return '"%s"."%s"' % (schema.replace('"', '""'), name.replace('"', '""'))


def taken_names(fetch, deploy, schema, recorded):
    """The statements run as written that would create a name the database already has (no earlier statement of the
    deploy drops it, no run of this tool recorded the statement as done): PostgreSQL would refuse them half way
    through the deploy, so the preflight refuses them first. C(fetch)(query, params) reads the catalog;
    C(recorded)(migration, entry) says whether the ledger has the statement done."""
    problems, dropped = [], set()
    for migration in deploy:
        for entry in migration['entries']:
            details = entry.get('details') or {}
            kind = entry['kind']
            if kind in DROPPING_KINDS:
                dropped.add((details.get('schema') or schema, details.get('table') or details.get('name')))
            if kind not in NAME_QUERIES or details.get('if_not_exists') or not runs_as_planned(entry):
                continue
            query, key, what = NAME_QUERIES[kind]
            name = (details.get('schema') or schema, details.get(key))
            if not name[1] or name in dropped or recorded(migration['name'], entry):
                continue
            if fetch(query, dict(name=_quoted(*name)))[0]['taken']:
                problems.append(
                    'migration %s, line %d: %s already exists as %s, and no run of this tool made it (the ledger '
                    'has no row of this statement): PostgreSQL would refuse `%s` half way through the deploy. Find '
                    'out what made it: drop it if it is a leftover, or, if the database already has what the '
                    'migration makes, record the migration with `prisma migrate resolve --applied %s`'
                    % (migration['name'], entry['line'], '.'.join(name), what, ' '.join(entry['text'].split())[:120],
                       migration['name']))
    return problems


def runs_as_planned(entry):
    """Whether the deploy runs C(entry) as written (catalog, or refused and acknowledged)."""
    return entry['class'] == 'catalog' or (entry['class'] == 'refused' and bool(entry.get('acknowledged')))


# Columns of a planned primary key not proven NOT NULL (a NOT VALID NOT NULL of PostgreSQL 18 counts as nullable).
NULLABLE_QUERY = ("SELECT a.attname::text AS name FROM pg_catalog.pg_attribute a WHERE a.attrelid = "
                  "pg_catalog.to_regclass(%(table)s) AND a.attnum > 0 AND NOT a.attisdropped AND NOT (" +
                  NOT_NULL_PROVEN + ") AND a.attname = ANY(%(columns)s)")


def nullable_key_problems(fetch, deploy, schema):
    """ADD PRIMARY KEY on a table no earlier statement of the deploy reshapes, over columns that may hold NULL: the
    attach would scan the table under ACCESS EXCLUSIVE to make them NOT NULL. Refused before any change."""
    problems, touched = [], set()
    for migration in deploy:
        for entry in migration['entries']:
            details = entry.get('details') or {}
            if entry['kind'] == 'add_primary_key' and entry['class'] == 'online' and not _touches(entry, touched, schema):
                table = (details.get('schema') or schema, details['table'])
                found = fetch(NULLABLE_QUERY, dict(table=_quoted(*table), columns=list(details['columns'])))
                nullable = [row['name'] for row in found]
                if nullable:
                    problems.append(
                        'migration %s, line %d: the primary key %s of %s is on column(s) %s, which may hold NULL: '
                        'ADD PRIMARY KEY would scan the table under ACCESS EXCLUSIVE to make them NOT NULL. Make them '
                        'required in an earlier migration (SET NOT NULL goes online; a NOT NULL left NOT VALID needs '
                        'its VALIDATE CONSTRAINT), then add the key'
                        % (migration['name'], entry['line'], details['name'], '.'.join(table), ', '.join(nullable)))
            touched |= touched_tables([entry], schema)
    return problems


def catalog_problems(fetch, deploy, schema, recorded):
    """What the catalog says stops the deploy before any change (taken_names, nullable_key_problems)."""
    return taken_names(fetch, deploy, schema, recorded) + nullable_key_problems(fetch, deploy, schema)
