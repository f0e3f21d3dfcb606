# -*- coding: utf-8 -*-
# The planner of foreign keys, CHECK constraints and NOT NULL: plain catalog facts in, the steps an entry still needs
# out (decide_steps), with what makes an existing constraint differ from the planned one, the statement and lock of
# each step, and the words of a violation report. No I/O: tests/unit runs it without a server. online_constraint reads
# the catalog for it; constraint_steps runs the steps.
#   foreign_key: ADD CONSTRAINT ... FOREIGN KEY ... NOT VALID  (SHARE ROW EXCLUSIVE on both tables, an instant)
#                VALIDATE CONSTRAINT  (SHARE UPDATE EXCLUSIVE on the table, ROW SHARE on the referenced one: a scan
#                that blocks no reads or writes)
#                Each of its steps (and its DROP, ACCESS EXCLUSIVE on both tables) locks two tables: it takes the
#                referenced one first, under a lock_timeout below deadlock_timeout (lock_order says why).
#                On a partitioned table (PostgreSQL 18+, validates_by_partition), VALIDATE runs on each partition's
#                inherited key first, one partition per transaction, then on the parent, which scans nothing more.
#   check:       ADD CONSTRAINT ... CHECK (...) NOT VALID  (ACCESS EXCLUSIVE, an instant), then VALIDATE
#   not_null:    on PostgreSQL 18+, ADD CONSTRAINT <name> NOT NULL <column> NOT VALID (ACCESS EXCLUSIVE, an instant),
#                then VALIDATE (a NOT NULL constraint, pg_constraint contype 'n'); on 14-17, a helper CHECK (column IS
#                NOT NULL) NOT VALID, VALIDATE, then ALTER COLUMN ... SET NOT NULL (ACCESS EXCLUSIVE, instant:
#                PostgreSQL 12+ proves the column from the valid check instead of scanning), then the helper dropped.
#                not_null_path chooses by server_version_num; decide_not_null_steps knows both forms.
# Where a run stopped between steps, the catalog says which steps are left (decide_steps), so a rerun resumes.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.plan.identifiers import identifier_error
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.index_actions import (
    ACTION_CREATE, ACTION_DROP, ACTION_UNCHANGED,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.lock_order import lock_text
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.plan.plan_sql import expression_error
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.run.ledger import without_not_valid
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.plan.refusal_rules import (
    ADD_CHECK, ADD_FOREIGN_KEY, ADD_NOT_NULL, DROP_CONSTRAINT, DROP_NOT_NULL, SET_NOT_NULL, VALIDATE,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.server_features import has
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.unique_constraint import CONSTRAINT_TYPES

KINDS = ('foreign_key', 'check', 'not_null')
# foreign_key_violation, check_violation, not_null_violation: VALIDATE (or SET NOT NULL) found rows that break it.
VIOLATION_SQLSTATES = ('23503', '23514', '23502')
# A NOT VALID constraint left by an earlier run: the rerun validates it (and, for NOT NULL, goes on from there).
ACTION_VALIDATE = 'validated'
# NOT NULL whose helper check is valid already: only SET NOT NULL and the helper's drop are left.
ACTION_COMPLETE = 'completed'

# pg_constraint.confupdtype / confdeltype, and the words a plan (and Prisma) uses for them.
REFERENTIAL_ACTIONS = dict(a='NO ACTION', r='RESTRICT', c='CASCADE', n='SET NULL', d='SET DEFAULT')

# The steps, in the order they run, and the lock each takes. 'short' steps run under the constraint lock_timeout
# (other sessions queue behind them at most that long); 'scan' steps under validate_lock_timeout, then scan without a
# statement timeout while reads and writes go on; 'build' is a concurrent index build.
STEP_ORDER = ('build_index', 'add', 'add_not_null', 'validate_partitions', 'validate', 'set_not_null', 'drop',
              'drop_not_null', 'drop_index')
STEP_LOCKS = dict(
    build_index='SHARE UPDATE EXCLUSIVE on the table, no reads or writes blocked (CREATE INDEX CONCURRENTLY)',
    add=None,  # by kind, see add_lock
    add_not_null='ACCESS EXCLUSIVE on the table, an instant (NOT VALID: no scan)',
    validate='SHARE UPDATE EXCLUSIVE on the table%s: a scan that blocks no reads or writes',
    set_not_null='ACCESS EXCLUSIVE on the table, an instant (the valid check proves the column, no scan)',
    drop='ACCESS EXCLUSIVE on the table, an instant',
    drop_not_null='ACCESS EXCLUSIVE on the table, an instant',
    drop_index='SHARE UPDATE EXCLUSIVE on the table, no reads or writes blocked (DROP INDEX CONCURRENTLY)',
)


def referential_action(value):
    """The canonical form of ON DELETE / ON UPDATE words (no action, Restrict, SET_NULL, ...), or None."""
    if value is None:
        return 'NO ACTION'
    words = ' '.join(str(value).replace('_', ' ').upper().split())
    return words if words in REFERENTIAL_ACTIONS.values() else None


def entry_columns(entry):
    """The table's columns an entry is about (a NOT NULL's one column, a check's none)."""
    if entry['type'] == 'not_null':
        return [entry['column']] if entry.get('column') else []
    return list(entry.get('columns') or [])


def entry_errors(entry):
    """What is wrong with one foreign_key, check or not_null entry on its own (no catalog needed)."""
    errors = []
    kind = entry.get('type')
    if kind not in KINDS:
        return ['constraint "%s": type %s is not one of %s' % (entry.get('name'), kind, ', '.join(KINDS))]
    for what, value in [('constraint name', entry.get('name')), ('table', entry.get('table')),
                        ('schema', entry.get('schema'))] + [('column', c) for c in entry_columns(entry)]:
        error = identifier_error(what, value)
        if error:
            errors.append(error)
    if kind == 'foreign_key':
        references = entry.get('references') or {}
        if not entry.get('columns'):
            errors.append('foreign key "%s" has no columns' % entry.get('name'))
        for what, value in [('referenced table', references.get('table')),
                            ('referenced schema', references.get('schema') or entry.get('schema'))] + \
                [('referenced column', c) for c in references.get('columns') or []]:
            error = identifier_error(what, value)
            if error:
                errors.append(error)
        if len(references.get('columns') or []) != len(entry.get('columns') or []):
            errors.append('foreign key "%s": %d column(s) reference %d column(s); give as many referenced columns as '
                          'columns' % (entry.get('name'), len(entry.get('columns') or []),
                                       len(references.get('columns') or [])))
        for option in ('on_delete', 'on_update'):
            if referential_action(entry.get(option)) is None:
                errors.append('foreign key "%s": %s must be one of %s, not %r' % (
                    entry.get('name'), option, ', '.join(REFERENTIAL_ACTIONS.values()), entry.get(option)))
        if entry.get('index') is not None:
            error = identifier_error('index', entry.get('index'))
            if error:
                errors.append(error)
    elif kind == 'check':
        problem = expression_error(entry.get('expression') or '')
        if problem:
            errors.append('check "%s": expression is not one SQL expression a plan may use: %s'
                          % (entry.get('name'), problem))
    elif not entry.get('column'):
        errors.append('not_null "%s" names no column' % entry.get('name'))
    return errors


def foreign_key_differences(existing, entry, default_schema):
    """What makes an existing constraint (a CONSTRAINTS_QUERY row) differ from a planned foreign key; empty if equal."""
    if existing['type'] != 'f':
        return ['it is a %s constraint, not FOREIGN KEY' % CONSTRAINT_TYPES.get(existing['type'], existing['type'])]
    references = entry['references']
    differences = []
    if existing['columns'] != list(entry['columns']):
        differences.append('its columns are (%s), planned (%s)' % (', '.join(existing['columns']),
                                                                   ', '.join(entry['columns'])))
    planned_ref = (references.get('schema') or default_schema, references['table'], list(references['columns']))
    if (existing['ref_schema'], existing['ref_table'], existing['ref_columns']) != planned_ref:
        differences.append('it references %s.%s (%s), planned %s.%s (%s)' % (
            existing['ref_schema'], existing['ref_table'], ', '.join(existing['ref_columns']), planned_ref[0],
            planned_ref[1], ', '.join(planned_ref[2])))
    for option in ('on_delete', 'on_update'):
        have = REFERENTIAL_ACTIONS.get(existing[option])
        if have != referential_action(entry.get(option)):
            planned = referential_action(entry.get(option))
            differences.append('its %s is %s, planned %s' % (option.replace('_', ' ').upper(), have, planned))
    if existing['match_type'] != 's':
        differences.append('it is MATCH FULL')
    if existing['deferrable']:
        differences.append('it is DEFERRABLE')
    return differences


def check_differences(existing, planned_definition):
    """What makes an existing constraint differ from a planned CHECK (PostgreSQL's rendering of both); empty if
    equal."""
    if existing['type'] != 'c':
        return ['it is a %s constraint, not CHECK' % CONSTRAINT_TYPES.get(existing['type'], existing['type'])]
    if without_not_valid(existing['definition']) != without_not_valid(planned_definition):
        return ['its expression differs']
    return []


def validates_by_partition(kind, relkind, version_num):
    """Whether a foreign key on a table of C(relkind) is validated partition by partition on a server of
    C(version_num) (server_version_num): on a partitioned table ('p'), where the server can add it NOT VALID (18+;
    below, the rule foreign-key-not-valid-on-partitioned-table refuses its ADD, naming the server's version).

    Measured on PostgreSQL 18.4 (3,000,000 rows in 4 partitions referencing 1,000,000 rows; pg_locks polled every
    10 ms): the parent's VALIDATE took 2.39 s and held SHARE UPDATE EXCLUSIVE on the parent and on every partition for
    all of it (an ANALYZE of the last partition, as autovacuum would run, waited 2.27 s); partition by partition, each
    VALIDATE took 0.50 to 0.70 s holding SHARE UPDATE EXCLUSIVE on its partition alone (the same ANALYZE: 0.11 s),
    then the parent's took 0.004 s (PostgreSQL skips valid partitions), 2.59 s in all. ROW SHARE on the referenced
    table is likewise held for one partition's scan at a time, and a failure keeps the partitions done valid. So:
    partition by partition."""
    return kind == 'foreign_key' and relkind == 'p' and has(version_num, 'foreign_key_not_valid_on_partitioned')


def decide_steps(kind, state, existing, differences, column_not_null=False, index_action=None, by_partition=False):
    """The steps one entry still needs, from what the catalog holds: (action, steps, errors).

    C(existing) is the constraint of the entry's name on its table (a CONSTRAINTS_QUERY row) or None; for not_null it
    is the helper check. C(differences) says how it differs from the planned one. C(column_not_null) is
    pg_attribute.attnotnull of a not_null's column. C(index_action) is what a foreign key's own index (option index)
    needs: created or rebuilt (build it first), dropped (rolling back), or None. C(by_partition): a foreign key
    whose partitions' keys are validated one by one before its own (validates_by_partition, and some are not valid).
    """
    if existing is not None and differences:
        return None, [], differences
    steps = []
    if state == 'present':
        if index_action in (ACTION_CREATE, 'rebuilt'):
            steps.append('build_index')
        if kind == 'not_null' and column_not_null:
            steps.extend(['drop'] if existing is not None else [])
        else:
            if existing is None:
                steps.append('add')
            if existing is None or not existing['valid']:
                steps.append('validate')
            if kind == 'not_null':
                steps.extend(['set_not_null', 'drop'])
        if by_partition and 'validate' in steps:
            steps.insert(steps.index('validate'), 'validate_partitions')
        if 'add' in steps:
            action = ACTION_CREATE
        elif 'validate' in steps:
            action = ACTION_VALIDATE
        elif kind == 'not_null' and steps:
            action = ACTION_COMPLETE
        else:
            action = ACTION_CREATE if steps else ACTION_UNCHANGED
        return action, steps, []
    if kind == 'not_null' and column_not_null:
        steps.append('drop_not_null')
    if existing is not None:
        steps.append('drop')
    if index_action == ACTION_DROP:
        steps.append('drop_index')
    return (ACTION_DROP if steps else ACTION_UNCHANGED), steps, []


# How a NOT NULL is added: as a NOT NULL constraint added NOT VALID, then validated (PostgreSQL 18+), or through a
# helper CHECK (column IS NOT NULL) (14-17).
NOT_NULL_CONSTRAINT = 'not_null_constraint'
NOT_NULL_HELPER_CHECK = 'helper_check'


def not_null_path(version_num):
    """How a NOT NULL is added on a server of C(version_num) (server_version_num): NOT_NULL_CONSTRAINT on 18+ (one short
    ACCESS EXCLUSIVE step, then VALIDATE's scan that blocks no reads or writes), NOT_NULL_HELPER_CHECK before."""
    return NOT_NULL_CONSTRAINT if has(version_num, 'not_null_not_valid') else NOT_NULL_HELPER_CHECK


def not_null_differences(existing, column):
    """What makes an existing NOT NULL constraint (contype 'n', PostgreSQL 18+) of the planned name differ from the
    planned NOT NULL of C(column); empty if it is on that column."""
    if existing['columns'] != [column]:
        return ['it is NOT NULL on column %s, planned %s' % (', '.join(existing['columns']), column)]
    return []


def decide_not_null_steps(state, existing, differences, column_not_null, column_constraint, path):
    """The steps a not_null entry still needs: (action, steps, errors), like decide_steps.

    C(existing) is the constraint of the entry's name on its table: the helper check of a 14-17 run (contype 'c'), the
    NOT NULL constraint of an 18 one (contype 'n'), or None. C(column_not_null) is pg_attribute.attnotnull (on 18, true
    from the moment a NOT NULL is added, valid or not); C(column_constraint) the column's NOT NULL constraint on 18
    (dict(name, valid)) or None; C(path) what not_null_path chose for the server.

    A helper check left by a run stopped on 14-17 (the server upgraded to 18 since) is finished the old way: SET NOT
    NULL proves the column from the valid check without a scan on 18 too, where the new form would scan again.
    Rolling back, DROP NOT NULL removes the column's NOT NULL in either form (the constraint, valid or not).
    """
    if existing is not None and differences:
        return None, [], differences
    named = existing is not None and existing['type'] == 'n'
    if state == 'absent':
        return decide_steps('not_null', state, None if named else existing, [], column_not_null)
    if named:
        return (ACTION_UNCHANGED, [], []) if existing['valid'] else (ACTION_VALIDATE, ['validate'], [])
    if column_constraint is not None and not column_constraint['valid']:
        # PostgreSQL 18 keeps one NOT NULL constraint a column: another name cannot be added beside it.
        return None, [], ['the column already has a NOT VALID NOT NULL constraint "%s", not of the planned name: '
                          'validate it (ALTER TABLE ... VALIDATE CONSTRAINT "%s"), or give the plan\'s entry its name, '
                          'and rerun; nothing was changed on it' % (column_constraint['name'], column_constraint['name'])]
    if existing is not None or column_not_null or path == NOT_NULL_HELPER_CHECK:
        return decide_steps('not_null', state, existing, [], column_not_null)
    return ACTION_CREATE, ['add_not_null', 'validate'], []


def planned_unique_keys(entries, default_schema):
    """(schema, table, frozenset(columns)) of the unique constraints among C(entries): a foreign key after them may
    reference one (in check mode, or in the preflight, before it exists)."""
    return set((entry.get('schema') or default_schema, entry['table'], frozenset(entry['columns']))
               for entry in entries if entry.get('type', 'unique') == 'unique')


def different_message(entry, existing, differences, planned_text):
    return ('a different constraint named "%s" already exists on %s.%s (%s).\n  existing: %s\n  planned:  %s\n'
            'Rename the planned constraint, or drop the existing one deliberately, and rerun; nothing was changed on it.'
            % (entry['name'], entry['schema'], entry['table'], '; '.join(differences), existing['definition'],
               planned_text))


def violation_report(entry, found):
    """The lines an SRE reads when rows stop a planned foreign key, check or NOT NULL."""
    kind = entry['type']
    where = '%s.%s' % (entry['schema'], entry['table'])
    if kind == 'foreign_key':
        references = entry['references']
        lines = ['foreign key "%s" (%s) -> %s.%s (%s): %d row(s) of %s reference no row (%d missing key(s))' % (
            entry['name'], ', '.join(entry['columns']), references.get('schema') or entry['schema'],
            references['table'], ', '.join(references['columns']), found['total_rows'], where,
            found['total_groups'])]
        for group in found['groups']:
            lines.append('  (%s) = (%s): %d row(s), %s %s%s' % (
                ', '.join(entry['columns']), ', '.join(str(v) for v in group['key']), group['rows'], found['row_id'],
                ', '.join(str(v) for v in group['sample_ids']),
                ', ...' if group['rows'] > len(group['sample_ids']) else ''))
        if found['total_groups'] > len(found['groups']):
            lines.append('  ... and %d more missing key(s)' % (found['total_groups'] - len(found['groups'])))
        return lines
    what = ('check "%s" CHECK (%s)' % (entry['name'], entry['expression']) if kind == 'check'
            else 'NOT NULL on %s."%s"' % (where, entry['column']))
    verb = 'violate' if kind == 'check' else 'hold NULL'
    return ['%s: %d row(s) of %s %s it: %s %s%s' % (
        what, found['total_rows'], where, verb, found['row_id'], ', '.join(str(v) for v in found['sample_ids']),
        ', ...' if found['total_rows'] > len(found['sample_ids']) else '')]


def violations_advice(kinds):
    advice = dict(
        foreign_key='insert the missing referenced rows, or delete (or set to NULL) the rows that reference them',
        check='fix or delete the rows that violate the check',
        not_null='fill in the NULL values (or delete those rows)')
    return 'What to do: %s, then rerun; the run checks again before any DDL.' % '; '.join(
        advice[kind] for kind in KINDS if kind in kinds)


KIND_WORDS = dict(foreign_key='foreign key', check='check', not_null='not_null')


def entry_statement(kind, step):
    """The statement a step of a foreign_key, check or not_null entry sends, as the refusal rules name it; None for the
    steps of its own index (the index runner's)."""
    if step == 'add':
        return ADD_FOREIGN_KEY if kind == 'foreign_key' else ADD_CHECK
    return dict(add_not_null=ADD_NOT_NULL, validate=VALIDATE, validate_partitions=VALIDATE, set_not_null=SET_NOT_NULL,
                drop=DROP_CONSTRAINT,
                drop_not_null=DROP_NOT_NULL).get(step)


def ordered_kind(kind, step):
    """The lock_order.ORDERED_STATEMENTS entry of a step that locks two tables (a foreign key's add, validate and
    drop; each partition's validate as its validate), or None."""
    if kind == 'foreign_key' and step == 'validate_partitions':
        return 'foreign_key_validate'
    return 'foreign_key_%s' % step if kind == 'foreign_key' and step in ('add', 'validate', 'drop') else None


def step_lock(kind, step):
    """The lock a step takes, as the docs and the report say it."""
    ordered = ordered_kind(kind, step)
    if ordered:
        return '%s, %s, under a lock_timeout capped at half of deadlock_timeout' % (lock_text(ordered), dict(
            add='an instant (NOT VALID: no scan)', validate='a scan that blocks no reads or writes',
            validate_partitions='each partition in a transaction of its own (the table: that partition), a scan '
                                'of it alone that blocks no reads or writes',
            drop='an instant')[step])
    if step == 'add':
        return 'ACCESS EXCLUSIVE on the table, an instant (NOT VALID: no scan)'
    if step == 'validate':
        return STEP_LOCKS['validate'] % ''
    return STEP_LOCKS[step]
