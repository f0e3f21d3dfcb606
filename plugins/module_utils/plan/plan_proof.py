# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Proving a migration plan against the live catalog and data, read-only, before any DDL.

What the plan's indexes and constraints still need (the exact statements), and every problem that would stop them:
a missing schema, table or column, an index planned twice, duplicate keys under a planned unique index or
constraint, options of a duplicate rename that cannot work. Used by the preflight
(postgresql_migration_preflight), which proves the whole plan in one process, and by the read-only modules
postgresql_online_index_info and postgresql_unique_constraint_info.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.index_actions import ACTION_UNCHANGED
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.index_replacement import (
    restored_unique_columns,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.constraint_decisions import (
    entry_columns, planned_unique_keys, violation_report, violations_advice,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.online_constraint import read_violations
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.plan.refusal_rules import (
    constraint_name_keys, name_clash_messages,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.statements import (
    OnlineIndexError, error_text, fetch_dicts, sql_module,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.unique_keys import (
    COLUMN_TYPES_QUERY, PRIMARY_KEY_QUERY, find_duplicates, format_duplicate_report, rename_plan,
)


UNIQUE_BUILD_ADVICE = 'or make the index not unique, then rerun; the build would fail on them.'


def duplicate_problems(runner, schema, table, unique_specs, sample_ids, advice=UNIQUE_BUILD_ADVICE):
    """Duplicate keys that would fail the build of each planned unique index, as the lines to act on."""
    problems = []
    sql = sql_module()
    for spec in unique_specs:
        runner.cursor.execute('BEGIN TRANSACTION READ ONLY')
        try:
            found = find_duplicates(runner.cursor, sql, schema, table, spec['columns'], sample_ids, 20,
                                    where=spec.get('where'))
        except Exception as error:  # psycopg2 and psycopg 3 errors share no importable base here
            problems.append('index "%s" on %s.%s: its duplicate keys could not be counted: %s'
                            % (spec['name'], schema, table, error_text(error)))
            continue
        finally:
            runner.cursor.execute('ROLLBACK')
        if found['total_groups']:
            lines = format_duplicate_report(spec['name'], schema, table, spec['columns'], found['row_id'],
                                            found['groups'], found['total_groups'], found['total_rows'])
            lines[0] = 'unique index ' + lines[0][len('constraint '):]
            problems.append('\n'.join(lines) + '\n  What to do: resolve those rows (merge or delete them), ' + advice)
    return problems


def missing_schemas(cursor, tables, default_schema):
    """{schema: [its tables]} of the plan's schemas that do not exist."""
    wanted = {}
    for table in tables:
        wanted.setdefault(table.get('schema') or default_schema, []).append(table['name'])
    present = set(row['nspname'] for row in fetch_dicts(
        cursor, 'SELECT nspname::text FROM pg_catalog.pg_namespace WHERE nspname = ANY(%(names)s)',
        dict(names=sorted(wanted))))
    return dict((schema, names) for schema, names in wanted.items() if schema not in present)


def prove_indexes(runner, tables, default_schema, state, sample_ids, dropped_first=None):
    """What each table's planned indexes still need, and the problems that stop them.

    C(runner) is an OnlineIndexRunner on an autocommit connection. Rolling back, C(dropped_first) names the plan's
    foreign keys (the constraint phase drops them before the indexes). Returns dict(tables (per table: schema, name,
    pending index names, and per index its action, statements and estimated size), pending_tables, queries,
    estimated_bytes, problems).
    """
    proof = dict(tables=[], pending_tables=[], queries=[], estimated_bytes=0, problems=[])
    absent = missing_schemas(runner.cursor, tables, default_schema)
    for schema in sorted(absent):
        proof['problems'].append('schema "%s" does not exist, so none of its tables (%s) can be found: check the '
                                 'plan\'s schema (and the database it runs on)' % (schema, ', '.join(absent[schema])))
    for table in tables:
        schema = table.get('schema') or default_schema
        if schema in absent:
            continue
        try:
            decisions = runner.plan(schema, table['name'], table['indexes'], state, dropped_first=dropped_first)
        except OnlineIndexError as error:
            proof['problems'].append(str(error))
            continue
        pending = [d['spec']['name'] for d in decisions if d['action'] != ACTION_UNCHANGED]
        # What builds the planned definition (a new index, a rebuild, a replacement, the rest of a partitioned one).
        to_build = [d['spec'] for d in decisions if any(step['kind'] == 'build' for step in d['steps'])]
        if state == 'present':
            proof['problems'].extend(duplicate_problems(runner, schema, table['name'],
                                                        [s for s in to_build if s.get('unique')], sample_ids))
        else:
            # The unique index an on_mismatch: replace replaced is built again: keys duplicated since would stop the
            # rollback at that build, after the steps before it, on every rerun.
            restored = [dict(name=d['spec']['name'], columns=columns) for d in decisions
                        for columns in [restored_unique_columns(d)] if columns]
            proof['problems'].extend(duplicate_problems(
                runner, schema, table['name'], restored, sample_ids, advice='then rerun: the rollback builds the unique '
                'index the plan replaced again, and that build would fail on them.'))
        sizes = runner.estimate_sizes(schema, table['name'], to_build) if to_build else {}
        proof['estimated_bytes'] += sum(sizes.values())
        proof['tables'].append(dict(
            schema=schema, name=table['name'], pending=pending,
            indexes=[dict(name=d['spec']['name'], action=d['action'], statements=d['statements'],
                          estimated_bytes=sizes.get(d['spec']['name'], 0), left_alone=d.get('left_alone'))
                     for d in decisions]))
        if pending:
            proof['pending_tables'].append(table['name'])
        proof['queries'].extend(statement for d in decisions for statement in d['statements'])
    proof['problems'].extend(name_problems(runner))
    return proof


def name_problems(runner):
    """The plan-wide refusal rule on the names the decisions planned so far create (runner.created_names): each
    unique in its schema, derived names (partition indexes, _pgzd_next, _pgzd_prev) included."""
    return name_clash_messages(runner.created_names, runner.server_version()) if runner.created_names else []


def foreign_keys_after(constraints, position):
    """Names of the plan's foreign keys after C(position): a rollback, last to first, drops them before it."""
    return [c['name'] for c in constraints[position + 1:] if c.get('type') == 'foreign_key']


def _rename_problem(cursor, constraint, schema, table, columns):
    """Check the rename options of a constraint against its table; returns (renaming or None, problem or None)."""
    if not (constraint.get('on_duplicates') == 'rename' or constraint.get('rename_column')
            or constraint.get('keep_oldest_by')):
        return None, None
    types = dict((row['name'], row['type'])
                 for row in fetch_dicts(cursor, COLUMN_TYPES_QUERY, dict(schema=schema, table=table)))
    primary_key = [row['column_name'] for row in fetch_dicts(cursor, PRIMARY_KEY_QUERY,
                                                             dict(schema=schema, table=table))]
    named = [c for c in [constraint.get('rename_column')] + list(constraint.get('keep_oldest_by') or []) if c]
    missing = [c for c in named if c not in types]
    try:
        if missing:
            raise ValueError('column(s) %s named by rename_column/keep_oldest_by do not exist in %s.%s'
                             % (', '.join(missing), schema, table))
        if constraint.get('on_duplicates') == 'rename':
            return rename_plan(schema, table, columns, types, primary_key, constraint.get('rename_column'),
                               constraint.get('keep_oldest_by')), None
    except ValueError as error:
        return None, ('constraint "%s": on_duplicates=%s with these options is not possible: %s'
                      % (constraint['name'], constraint.get('on_duplicates') or 'fail', error))
    return None, None


def unique_indexes(tables, default_schema):
    """(schema, table, frozenset(columns)) of a plan's full unique indexes: keys a planned foreign key may reference
    (the index phase builds them before the constraint phase)."""
    return set((table.get('schema') or default_schema, table['name'], frozenset(index['columns']))
               for table in tables or [] for index in table.get('indexes') or []
               if index.get('unique') and not index.get('where'))


def planned_index_leads(tables, default_schema, schema, table, columns):
    """Whether one of a plan's full indexes on C(schema).C(table) leads with C(columns) (in any order): the index phase
    builds it before the constraint phase adds a foreign key on those columns."""
    wanted = frozenset(columns)
    return any((entry.get('schema') or default_schema, entry['name']) == (schema, table) and not index.get('where')
               and frozenset(index['columns'][:len(wanted)]) == wanted
               for entry in tables or [] for index in entry.get('indexes') or [])


def prove_constraints(runner, constraints, default_schema, state, sample_ids, max_groups, tables=(), count_rows=True):
    """What each planned constraint still needs, and whether its data allows it.

    C(runner) is an online_constraint.ConstraintRunner. The unique constraints are proven in one read-only transaction,
    rolled back; then each foreign key, check and NOT NULL (prove_other_constraints). C(tables) are the plan's
    tables: their unique indexes are keys a foreign key may reference, their indexes serve its lookups.
    Migrating, the rows that would stop a pending constraint are counted, every one of them: C(sample_ids) and
    C(max_groups) only limit what the report lists. C(count_rows) false reads no rows at all (a validation after the
    run, which proves the constraints in place and nothing else).
    Returns dict(constraints (per constraint: its action, statements and duplicate keys or violations found), pending,
    queries, duplicates_found, report (lines on the duplicate keys and violating rows), blocking (unique constraints
    whose duplicates stop the run), violations (constraints that rows break), advice (lines on what would help, such
    as a foreign key's missing index, unless the plan's C(tables) build one), problems).
    """
    cursor = runner.cursor
    sql = sql_module()
    proof = dict(constraints=[], pending=[], queries=[], duplicates_found=False, report=[], blocking=[], problems=[],
                 violations=[], advice=[])
    seen = {}
    for constraint in constraints:
        for key in constraint_name_keys(constraint, default_schema):
            if seen.setdefault(key, constraint) is not constraint:
                proof['problems'].append('constraint "%s" is planned twice (its name is unique per %s)'
                                         % (constraint['name'], key[0]))
    cursor.execute('BEGIN TRANSACTION READ ONLY')
    try:
        for position, constraint in enumerate(constraints):
            if constraint.get('type', 'unique') != 'unique':
                continue
            schema, table, columns = constraint.get('schema') or default_schema, constraint['table'], \
                constraint['columns']
            on_duplicates = constraint.get('on_duplicates') or 'fail'
            try:
                decision = runner.plan_constraint(constraint['name'], schema, table, columns, state,
                                                  dropped_first=foreign_keys_after(constraints, position))
            except OnlineIndexError as error:
                proof['problems'].append('constraint "%s" on %s' % (constraint['name'], error))
                continue
            entry = dict(name=constraint['name'], schema=schema, table=table, columns=columns,
                         action=decision['action'], statements=decision['statements'], on_duplicates=on_duplicates,
                         row_id=None, total_groups=0, total_rows=0, groups=[], left_alone=decision.get('left_alone'))
            proof['constraints'].append(entry)
            if decision['action'] != ACTION_UNCHANGED:
                proof['pending'].append(entry['name'])
                proof['queries'].extend(decision['statements'])
            # A constraint in place has no duplicates; dropping one needs no scan.
            if state != 'present' or decision['action'] == ACTION_UNCHANGED or not count_rows:
                continue
            # The rename options are proven whether or not there are duplicates now: rows written before the
            # constraint phase may still need them, and a wrong option must not surface after the index phase.
            renaming, problem = _rename_problem(cursor, constraint, schema, table, columns)
            if problem:
                proof['problems'].append(problem)
                continue
            cursor.execute('SAVEPOINT pgzd_duplicates')
            try:
                found = find_duplicates(cursor, sql, schema, table, columns, sample_ids, max_groups)
            except Exception as error:  # psycopg2 and psycopg 3 errors share no importable base here
                cursor.execute('ROLLBACK TO SAVEPOINT pgzd_duplicates')
                proof['problems'].append('constraint "%s" on %s.%s (%s): %s' % (
                    constraint['name'], schema, table, ', '.join(columns), error_text(error)))
                continue
            found.pop('primary_key')
            entry.update(found)
            if not entry['total_groups']:
                continue
            proof['duplicates_found'] = True
            report = format_duplicate_report(constraint['name'], schema, table, columns, entry['row_id'],
                                             entry['groups'], entry['total_groups'], entry['total_rows'])
            if on_duplicates == 'rename':
                rename, order = renaming
                report[0] += ('; on_duplicates=rename: all but the oldest row of each key (by %s) get a suffix on '
                              '"%s", recorded in the audit table' % (', '.join(order), rename))
            else:
                proof['blocking'].append(constraint['name'])
            proof['report'].extend(report)
    finally:
        cursor.execute('ROLLBACK')
    prove_other_constraints(runner, constraints, default_schema, state, sample_ids, max_groups, tables, proof,
                            count_rows)
    return proof


def prove_other_constraints(runner, constraints, default_schema, state, sample_ids, max_groups, tables, proof,
                            count_rows=True):
    """The foreign keys, checks and NOT NULL of a plan, into C(proof) (see prove_constraints).

    Each is decided outside a transaction (a check's expression is proven on an empty temporary copy of its table, in
    a transaction of its own). Migrating, the rows that would fail its VALIDATE are then counted in a read-only
    transaction: orphan keys, rows where a check is false, NULLs, whatever C(sample_ids) and C(max_groups) list.
    With C(count_rows) false (a validation after the run), no rows are read.
    """
    keys = unique_indexes(tables, default_schema)
    for position, constraint in enumerate(constraints):
        schema = constraint.get('schema') or default_schema
        if constraint.get('type', 'unique') == 'unique':
            continue
        try:
            decision = runner.plan_entry(constraint, state, default_schema,
                                         keys | planned_unique_keys(constraints[:position], default_schema))
        except OnlineIndexError as error:
            proof['problems'].append('constraint "%s" on %s' % (constraint['name'], error))
            continue
        spec = decision['spec']
        entry = dict(name=spec['name'], type=spec['type'], schema=schema, table=spec['table'],
                     columns=entry_columns(spec), action=decision['action'], steps=decision['steps'],
                     statements=decision['statements'], total_rows=0, left_alone=decision.get('left_alone'))
        proof['constraints'].append(entry)
        if decision['advice'] and not planned_index_leads(tables, default_schema, schema, spec['table'],
                                                          spec['columns']):
            proof['advice'].append(decision['advice'])
        if decision['action'] != ACTION_UNCHANGED:
            proof['pending'].append(entry['name'])
            proof['queries'].extend(decision['statements'])
        if state != 'present' or 'validate' not in decision['steps'] or not count_rows:
            continue
        runner.cursor.execute('BEGIN TRANSACTION READ ONLY')
        try:
            found, problem = read_violations(runner, spec, sample_ids, max_groups)
        finally:
            runner.cursor.execute('ROLLBACK')
        if problem:
            proof['problems'].append(problem)
            continue
        entry['total_rows'] = found['total_rows']
        if found['total_rows']:
            proof['violations'].append(entry['name'])
            proof['report'].extend(violation_report(spec, found))


def constraint_problems_message(problems, state):
    return 'The planned constraints cannot be %s; nothing was changed:\n- %s' % (
        'applied' if state == 'present' else 'rolled back', '\n- '.join(problems))


def data_message(blocking, violations, kinds, report):
    """What the preflight says when rows break planned constraints: duplicate keys, orphan keys, violating rows."""
    if not violations:
        return duplicates_message(blocking, report)
    lines = ['Rows in the database break the planned constraint(s) %s; nothing was changed.'
             % ', '.join(list(blocking) + list(violations))]
    lines.extend(report)
    lines.append(violations_advice(kinds))
    if blocking:
        lines.append('For the duplicate keys: resolve them, or opt in to the audited rename with on_duplicates: rename '
                     '(docs/constraints.md, "Duplicate keys").')
    return '\n'.join(lines)


def duplicates_message(blocking, report):
    return ('Duplicate keys block the planned unique constraint(s) %s; nothing was changed.\n%s\nWhat to do: resolve '
            'the duplicates (merge or rename the rows listed, by id), then rerun; the run checks again before any DDL. '
            'Or opt in to the audited rename with on_duplicates: rename (docs/constraints.md, "Duplicate keys").'
            % (', '.join(blocking), '\n'.join(report)))


def index_problems_message(problems):
    return ('The plan cannot be applied; nothing was changed. Fix the plan (or the database) and rerun:\n%s'
            % '\n'.join(problems))


def restores_pending(ledger, constraints, default_schema):
    """Names of the plan's constraints whose renamed duplicate values are still to be restored (a rollback's work
    even when the constraint itself is already gone): the renames the plan's ledger holds and has not undone."""
    return [c['name'] for c in constraints or []
            if ledger.all_open_rows('renamed_rows', c.get('schema') or default_schema, [c['name']])]


def left_alone_report(tables, constraints):
    """What a rollback leaves alone, and why, as the preflight prints it (the ledger does not attribute it to the plan,
    or it changed since a run recorded it)."""
    lines = ['Left alone (not undone): index %s on %s.%s: %s'
             % (index['name'], table['schema'], table['name'], index['left_alone'])
             for table in tables for index in table['indexes'] if index.get('left_alone')]
    lines.extend('Left alone (not undone): constraint %s on %s.%s: %s'
                 % (entry['name'], entry['schema'], entry['table'], entry['left_alone'])
                 for entry in constraints if entry.get('left_alone'))
    return lines
