# -*- coding: utf-8 -*-
# Planning an index change without a database: the index spec and its validation, the comparison of a planned
# index with an existing one, the action each needs, and the size of a new b-tree. Plain data in, plain data out,
# so tests/unit runs it without a server.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json

from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.plan.identifiers import (
    MAX_IDENTIFIER_BYTES, identifier_error,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.run.ledger import NO_PLAN, attribution
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.plan import plan_schema
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.plan.plan_sql import (
    expression_error, parse, tree_problems,
)


ACTION_CREATE = 'created'
ACTION_REBUILD = 'rebuilt'
ACTION_UNCHANGED = 'unchanged'
ACTION_DROP = 'dropped'
# A partitioned index whose earlier run stopped half way (some partitions built or attached): the rest is done.
ACTION_RESUME = 'resumed'
# on_mismatch: replace swapped the planned definition in; a rollback swaps the recorded previous one back.
ACTION_REPLACE = 'replaced'
ACTION_RESTORE = 'restored'

# Relation kinds CREATE INDEX CONCURRENTLY accepts: tables and materialized views. A partitioned table ('p') takes
# the partition procedure instead (partition_steps): PostgreSQL refuses CONCURRENTLY on its parent.
INDEXABLE_RELKINDS = ('r', 'm')
PARTITIONED = 'p'
ON_MISMATCH = ('fail', 'replace')
# The two names a replacement uses beside the planned one: the index being built to take the planned name, and the
# one the planned name is taken from, until it is dropped.
NEXT_SUFFIX = 'pgzd_next'
PREVIOUS_SUFFIX = 'pgzd_prev'
# How version 0.16 recorded, in the comment of the index it swapped in, what a replacement replaced: the ledger holds
# it now (a comment anyone who owns the index can write is no record to rebuild from); adoption still reads it.
RECORD_PREFIX = 'pg-zero-downtime replaced the previous index of this name (on_mismatch: replace); a rollback ' \
                'restores it from this record: '

# An index entry of a plan, as the plan schema defines it.
INDEX_SPEC_OPTIONS = plan_schema.argument_options(plan_schema.INDEX)


def validate_specs(schema, table, specs, state):
    """Check the input alone (no catalog): identifiers, duplicates, required columns.

    Returns a list of error strings; empty when the input is usable.
    """
    errors = []
    for kind, value in (('schema', schema), ('table', table)):
        error = identifier_error(kind, value)
        if error:
            errors.append(error)
    if not specs:
        errors.append('no indexes given for table "%s"' % table)
    seen = set()
    for position, spec in enumerate(specs or [], start=1):
        name = spec.get('name')
        label = 'index #%d of table "%s"' % (position, table)
        error = identifier_error('index name', name)
        if error:
            errors.append('%s: %s' % (label, error))
            continue
        label = 'index "%s"' % name
        if name in seen:
            errors.append('%s is listed twice: each index name must be unique' % label)
        seen.add(name)
        replace = spec.get('on_mismatch') == 'replace'
        if state == 'absent' and not replace:
            continue
        columns = spec.get('columns') or []
        include = spec.get('include') or []
        if not columns:
            errors.append('%s has no columns%s' % (label, ': with on_mismatch: replace its rollback needs them too, to '
                                                          'tell the planned index from the one it replaced'
                                                   if state == 'absent' else ''))
        for column in columns + include:
            error = identifier_error('column', column)
            if error:
                errors.append('%s: %s' % (label, error))
        repeated = sorted(set(c for c in columns if columns.count(c) > 1))
        if repeated:
            errors.append('%s lists column(s) %s more than once' % (label, ', '.join(repeated)))
        overlap = sorted(set(columns) & set(include))
        if overlap:
            errors.append('%s has column(s) %s both as key and in include' % (label, ', '.join(overlap)))
        error = identifier_error('access method', spec.get('method'))
        if error:
            errors.append('%s: %s' % (label, error))
        if spec.get('unique') and spec.get('method', 'btree') != 'btree':
            errors.append('%s: only btree indexes can be unique' % label)
        if spec.get('where') is not None:
            if not str(spec['where']).strip():
                errors.append('%s has an empty where predicate' % label)
            else:
                error = expression_error(str(spec['where']))
                if error:
                    errors.append('%s: where predicate `%s` is refused: %s' % (label, spec['where'], error))
    return errors


def column_errors(qualified_table, specs, table_columns):
    """Name every planned column missing from the table (C(table_columns) is a set of names)."""
    errors = []
    for spec in specs:
        missing = [c for c in (spec.get('columns') or []) + (spec.get('include') or [])
                   if c not in table_columns]
        if missing:
            errors.append('index "%s": column(s) %s do not exist in table %s (it has: %s)'
                          % (spec['name'], ', '.join('"%s"' % c for c in missing), qualified_table,
                             ', '.join(sorted(table_columns))))
    return errors


def compare_index(existing, desired):
    """Return the differences between an existing index (catalog facts) and a desired spec.

    C(existing) is a dict as read by read_existing_indexes; C(desired) is an index spec with
    C(schema), C(table) and, when it has a predicate, C(normalized_where) (PostgreSQL's own
    rendering of it). An empty list means the definitions match.
    """
    differences = []
    if (existing['table_schema'], existing['table']) != (desired['schema'], desired['table']):
        differences.append('it is on table %s.%s, not %s.%s'
                           % (existing['table_schema'], existing['table'], desired['schema'], desired['table']))
        return differences
    if existing['unique'] != bool(desired.get('unique')):
        differences.append('unique is %s, planned %s' % (existing['unique'], bool(desired.get('unique'))))
    if existing['method'] != desired.get('method', 'btree'):
        differences.append('method is %s, planned %s' % (existing['method'], desired.get('method', 'btree')))
    if existing['key_columns'] != list(desired.get('columns') or []):
        differences.append('key columns are %s, planned %s'
                           % (_column_list(existing['key_columns']), _column_list(desired.get('columns'))))
    if existing['include_columns'] != list(desired.get('include') or []):
        differences.append('include columns are %s, planned %s'
                           % (_column_list(existing['include_columns']), _column_list(desired.get('include'))))
    planned_predicate = desired.get('normalized_where')
    if existing['predicate'] != planned_predicate:
        differences.append('predicate is %s, planned %s'
                           % (existing['predicate'] or 'none', planned_predicate or 'none'))
    for extra in existing.get('extras') or []:
        differences.append('it has %s, which the plan does not' % extra)
    return differences


def _column_list(columns):
    return '(%s)' % ', '.join('expression' if c is None else c for c in (columns or []))


def decide_actions(desired_specs, existing_by_name, state, partitions=None, ledger=None, plan=NO_PLAN):
    """Decide, for each planned index, what to do given what the catalog holds.

    C(existing_by_name) holds the indexes (and other relations) of the planned names in the table's schema, and of the
    names a replacement uses (replacement_names). C(partitions), for a partitioned table, maps each planned name to
    its partition tree (see partition_steps); None for any other table.
    Returns (decisions, errors). A decision is a dict with the spec, the existing index (or None), an C(action)
    among created, rebuilt, resumed, replaced, restored, unchanged and dropped, and its C(steps), in order (each a
    dict: C(kind), the index it is about, C(schema), C(table), C(name), and what the kind needs; OnlineIndexRunner
    writes and runs their SQL). A replacement or restore also has C(previous_definition) and C(planned_definition).
    C(ledger) holds the open ledger rows of plan C(plan) by (kind, name): rolling back, only what they attribute to the
    plan and what still matches them is undone; anything else is left alone (action unchanged, C(left_alone) says
    why), and a decision that undoes something names its row (C(ledger_row)).
    Any error means nothing may run.
    """
    ledger = ledger or {}
    decisions = []
    errors = []
    for spec in desired_specs:
        existing = existing_by_name.get(spec['name'])
        qualified = '%s.%s' % (spec['schema'], spec['name'])
        nodes = partitions.get(spec['name']) if partitions is not None else None
        if existing is not None and existing['relkind'] not in ('i', 'I'):
            errors.append('"%s" already exists and is not an index (relation kind %s): choose another index '
                          'name' % (qualified, existing['relkind']))
            continue
        if state == 'absent':
            decision, problem = _absent_decision(spec, existing, existing_by_name, nodes, ledger, plan)
        else:
            decision, problem = _present_decision(spec, existing, existing_by_name, nodes, ledger)
        if problem:
            errors.append(problem)
        else:
            decisions.append(decision)
    return decisions, errors


def _decision(spec, existing, action, steps=None, previous_definition=None, planned_definition=None, ledger_row=None,
              left_alone=None):
    """A decision; a replacement or restore also says what the name held (C(previous_definition)) and what it gets
    (C(planned_definition)); a rollback's names the ledger row of what it undoes (C(ledger_row)), or why it leaves
    the index alone (C(left_alone))."""
    decision = dict(spec=spec, existing=existing, action=action, steps=steps or [], ledger_row=ledger_row)
    if previous_definition is not None:
        decision.update(previous_definition=previous_definition, planned_definition=planned_definition)
    if left_alone:
        decision['left_alone'] = left_alone
    return decision


def ledger_matches(existing, row):
    """Whether the index C(existing) is still what the ledger row C(row) records: the definition PostgreSQL rendered
    once it was made (applied), or the planned one (intended: a run stopped before it recorded the result); an INVALID
    index of an intended row is the leftover of that run's build."""
    if row['state'] == 'intended' and not existing['valid']:
        return True
    try:
        return existing['definition'] == row['definition'] or same_index_definition(existing['definition'],
                                                                                    row['definition'])
    except ValueError:
        return False


def _left_alone(spec, existing, reason):
    return _decision(spec, existing, ACTION_UNCHANGED, left_alone=reason)


def _present_decision(spec, existing, existing_by_name, nodes, ledger):
    """(decision, None) or (None, the problem) of one planned index when the plan is applied."""
    qualified = '%s.%s' % (spec['schema'], spec['name'])
    if existing is None:
        return _partitioned_decision(spec, None, nodes, ACTION_CREATE) if nodes is not None else \
            (_decision(spec, None, ACTION_CREATE, [_step('build', spec)]), None)
    if existing['build_in_progress_pid']:
        return None, ('index "%s" is being built right now by backend pid %s: wait for that build to finish '
                      '(see pg_stat_progress_create_index) and rerun' % (qualified, existing['build_in_progress_pid']))
    same_table = (existing['table_schema'], existing['table']) == (spec['schema'], spec['table'])
    if same_table and existing['valid'] and existing['relkind'] == 'i' and spec.get('on_mismatch') == 'replace':
        return replacement_decision(spec, existing, *_replacement_indexes(spec, existing_by_name),
                                    replaced=ledger.get(('replaced_index', spec['name'])))
    differences = compare_index(existing, spec)
    if differences and (existing['valid'] or not same_table or existing['relkind'] == 'I'):
        return None, mismatch_message(qualified, differences, existing, spec)
    if nodes is not None:
        return _partitioned_decision(spec, existing, nodes, ACTION_UNCHANGED if existing['valid'] else ACTION_RESUME)
    if not existing['valid']:
        return _decision(spec, existing, ACTION_REBUILD, [_step('drop', spec), _step('build', spec)]), None
    return _decision(spec, existing, ACTION_UNCHANGED), None


def mismatch_message(qualified, differences, existing, spec):
    """Why an index of the planned name is refused: both definitions, and what the operator can do."""
    if existing['relkind'] == 'I':
        advice = ('Rename the planned index, or drop the existing one deliberately (DROP INDEX: a partitioned index '
                  'cannot be dropped concurrently) and rerun%s' % (
                      ' (on_mismatch: replace does not apply to the index of a partitioned table)'
                      if spec.get('on_mismatch') == 'replace' else ''))
    elif existing['table_schema'] != spec['schema'] or existing['table'] != spec['table']:
        advice = 'Rename the planned index, or drop the existing one deliberately (DROP INDEX CONCURRENTLY) and rerun'
    else:
        advice = ('Rename the planned index, drop the existing one deliberately (DROP INDEX CONCURRENTLY) and rerun, '
                  'or set on_mismatch: replace on this index in the plan to build the planned definition beside it '
                  'and swap it in (docs/indexes.md, "Replacing an index")')
    return ('index "%s" exists with a different definition (%s).\n  existing: %s\n  planned:  %s\n%s; nothing was '
            'changed.' % (qualified, '; '.join(differences), existing['definition'], spec['display_definition'], advice))


def _absent_decision(spec, existing, existing_by_name, nodes, ledger, plan):
    """(decision, None) or (None, the problem) of one planned index when the plan is rolled back: only what the ledger
    attributes to the plan, and still matches, is dropped."""
    if spec.get('on_mismatch') == 'replace' and nodes is None:
        return restore_decision(spec, existing, *_replacement_indexes(spec, existing_by_name),
                                replaced=ledger.get(('replaced_index', spec['name'])),
                                created=ledger.get(('index', spec['name'])), plan=plan)
    row = ledger.get(('index', spec['name']))
    if existing is not None and (existing['table_schema'], existing['table']) != (spec['schema'], spec['table']):
        return _left_alone(spec, existing, 'index "%s.%s" belongs to table %s.%s, not %s.%s: it is not this plan\'s '
                           'index, so it is left alone' % (spec['schema'], spec['name'], existing['table_schema'],
                                                           existing['table'], spec['schema'], spec['table'])), None
    undo, reason = attribution(plan, 'index', spec['name'], row, existing is not None,
                               existing is not None and row is not None and ledger_matches(existing, row),
                               existing['definition'] if existing else None)
    if reason:
        return _left_alone(spec, existing, reason), None
    if nodes is not None:
        # The partition indexes of a stopped build are the run's own only when the ledger has its row.
        steps = partition_leftover_steps(spec, nodes) if row is not None else []
        if undo:
            steps.append(_step('drop_partitioned', spec))
        return _decision(spec, existing, ACTION_DROP if steps else ACTION_UNCHANGED, steps, ledger_row=row), None
    if not undo:
        return _decision(spec, None, ACTION_UNCHANGED), None
    return _decision(spec, existing, ACTION_DROP, [_step('drop', spec)], ledger_row=row), None


def _step(kind, spec, **fields):
    """One step of a decision: its C(kind) and the index it is about, by default the planned one (see decide_actions).

    Kinds: build (CREATE INDEX CONCURRENTLY of the spec under C(name); C(partition) when on a partition),
    build_definition (a recorded C(statement)), drop (DROP INDEX CONCURRENTLY), drop_partitioned (DROP INDEX of a
    partitioned index), create_on_only (CREATE INDEX ... ON ONLY), attach (ALTER INDEX C(name) ATTACH PARTITION
    C(partition_schema).C(partition_index)) and swap (the renames, C(next) to C(name) and C(name) to C(previous),
    and C(comment) on the result, in one transaction).
    """
    step = dict(kind=kind, schema=spec['schema'], table=spec['table'], name=spec['name'])
    step.update(fields)
    return step


# -- partitioned tables --------------------------------------------------------------------------------------------

def derived_name(base, suffix):
    """A name of at most 63 bytes made of C(base) and C(suffix), the same on every run, so that a rerun finds it.

    C(base)_C(suffix) when it fits; else as much of it as fits and 8 hex digits of the SHA-1 of the whole, so two long
    names that share their beginning still differ. A short suffix (pgzd_next) is kept whole, so the name says what
    it is.
    """
    name = '%s_%s' % (base, suffix)
    if len(name.encode('utf-8')) <= MAX_IDENTIFIER_BYTES:
        return name
    digest = hashlib.sha1(name.encode('utf-8')).hexdigest()[:8]
    tail = '_%s_%s' % (digest, suffix)
    if len(tail.encode('utf-8')) > MAX_IDENTIFIER_BYTES // 2:
        tail, base = '_' + digest, name
    return base.encode('utf-8')[:MAX_IDENTIFIER_BYTES - len(tail.encode('utf-8'))].decode('utf-8', 'ignore') + tail


def partition_index_name(index_name, partition):
    """The name of the planned index's own index on one partition (in the partition's schema)."""
    return derived_name(index_name, partition)


def _partitioned_decision(spec, existing, nodes, action):
    if action == ACTION_UNCHANGED:
        return _decision(spec, existing, action), None
    steps, problems = partition_steps(spec, nodes, existing is not None)
    if problems:
        return None, '\n  - '.join(problems)
    return _decision(spec, existing, action, steps), None


def partition_steps(spec, nodes, root_exists):
    """The steps that build C(spec) on a partitioned table without blocking it, or finish a build a run left half
    done; (steps, problems).

    C(nodes) is the partition tree, the table first, each node a dict of schema, table, relkind, parent ((schema,
    table), None for the table), key_columns (a partitioned node's partition key, None for an expression), index
    (the index of its derived name, partition_index_name, if any) and attached (the index of that partition attached
    to the planned index's tree, if any). The index of a partitioned node is created ON ONLY that node (catalog only,
    INVALID until complete), each leaf's is built CONCURRENTLY and attached, and a sub-partitioned partition is
    worked on the same way, depth first, before its own index is attached: attaching the last missing partition
    index makes PostgreSQL mark its parent index valid, up to the planned one.
    """
    children = {}
    for node in nodes[1:]:
        children.setdefault(node['parent'], []).append(node)
    steps, problems = [], []

    def visit(node, index_name, exists):
        if not exists:
            steps.append(_step('create_on_only', spec, schema=node['schema'], table=node['table'], name=index_name,
                               partition=node['parent'] is not None))
        for child in sorted(children.get((node['schema'], node['table']), []), key=lambda c: (c['schema'], c['table'])):
            attached = child.get('attached')
            index = child.get('index')
            if attached is None and index is not None and index.get('attached_to') == [node['schema'], index_name]:
                # Attached to the index of a sub-partitioned partition that is not attached itself yet.
                attached = dict(name=index['name'], valid=index['valid'])
            if attached is not None:
                if not attached['valid'] and child['relkind'] == PARTITIONED:
                    visit(child, attached['name'], True)
                elif not attached['valid']:
                    problems.append('index "%s": %s.%s, the index of partition %s.%s, is attached but INVALID, and an '
                                    'attached index cannot be dropped alone: drop the partitioned index "%s.%s" '
                                    '(rollback) and rerun' % (spec['name'], child['schema'], attached['name'],
                                                              child['schema'], child['table'], spec['schema'],
                                                              spec['name']))
                continue
            name = partition_index_name(spec['name'], child['table'])
            problem = _partition_index_problem(spec, child, name)
            if problem:
                problems.append(problem)
                continue
            existing = child.get('index')
            if existing is not None and child['relkind'] != PARTITIONED and not existing['valid']:
                steps.append(_step('drop', spec, schema=child['schema'], table=child['table'], name=name))
                existing = None
            if child['relkind'] == PARTITIONED:
                visit(child, name, existing is not None)
            elif existing is None:
                steps.append(_step('build', spec, schema=child['schema'], table=child['table'], name=name,
                                   partition=True))
            steps.append(_step('attach', spec, schema=node['schema'], table=node['table'], name=index_name,
                               partition_schema=child['schema'], partition_index=name))

    visit(nodes[0], spec['name'], root_exists)
    return steps, problems


def _partition_index_problem(spec, child, name):
    """Why the derived name of a partition's index cannot be used as it is found, or None."""
    existing = child.get('index')
    qualified = '%s.%s' % (child['schema'], name)
    where = 'index "%s": partition %s.%s' % (spec['name'], child['schema'], child['table'])
    if child['relkind'] not in ('r', PARTITIONED):
        return ('%s is not a table (relation kind %s, a foreign table has no indexes): an index on the partitioned '
                'table needs one on every partition; build it on the other partitions yourself, or leave the table '
                'out of the plan' % (where, child['relkind']))
    if existing is None:
        return None
    if existing['relkind'] not in ('i', 'I'):
        return '%s: the name of its index, "%s", is taken by a relation that is not an index' % (where, qualified)
    if existing['build_in_progress_pid']:
        return '%s: its index "%s" is being built right now by backend pid %s: wait for it and rerun' % (
            where, qualified, existing['build_in_progress_pid'])
    if existing.get('attached_to'):
        return '%s: its index "%s" is attached to another index, %s' % (where, qualified, '.'.join(existing['attached_to']))
    differences = compare_index(existing, dict(spec, schema=child['schema'], table=child['table']))
    if differences and (existing['valid'] or existing['relkind'] == 'I'
                        or (existing['table_schema'], existing['table']) != (child['schema'], child['table'])):
        return ('%s: its index "%s" exists with a different definition (%s); existing: %s. Drop it or rename it, then '
                'rerun' % (where, qualified, '; '.join(differences), existing['definition']))
    return None


def partition_leftover_steps(spec, nodes):
    """On rollback, the steps that drop the partition indexes of a stopped build that are not attached to the
    planned index (the attached ones go with it): concurrently for a leaf's, first, as they block nobody; then with
    DROP INDEX for a partitioned one."""
    steps = []
    for node in nodes[1:]:
        name = partition_index_name(spec['name'], node['table'])
        index = node.get('index')
        if index is None or index['relkind'] not in ('i', 'I') or index.get('attached_to') \
                or (index['table_schema'], index['table']) != (node['schema'], node['table']):
            continue
        steps.append(_step('drop_partitioned' if index['relkind'] == 'I' else 'drop', spec, schema=node['schema'],
                           table=node['table'], name=name))
    return sorted(steps, key=lambda step: step['kind'] == 'drop_partitioned')


# -- replacing an index of the planned name -------------------------------------------------------------------------

def replacement_names(name):
    """(the name the new index is built under, the name the replaced one gets until it is dropped)."""
    return derived_name(name, NEXT_SUFFIX), derived_name(name, PREVIOUS_SUFFIX)


def _replacement_indexes(spec, existing_by_name):
    following, previous = replacement_names(spec['name'])
    return existing_by_name.get(following), existing_by_name.get(previous)


def read_replacement_record(comment):
    """(dict(definition, comment), None) from an index comment written by replacement_record; (None, None) for any
    other comment; (None, why) for one that starts like a record but cannot be read."""
    if not isinstance(comment, str) or not comment.startswith(RECORD_PREFIX):
        return None, None
    try:
        record = json.loads(comment[len(RECORD_PREFIX):])
    except ValueError as error:
        return None, 'its comment starts like a replacement record but is not one (%s)' % error
    if not isinstance(record, dict) or not isinstance(record.get('definition'), str) \
            or not isinstance(record.get('comment'), (str, type(None))):
        return None, 'its comment starts like a replacement record but does not hold a definition'
    return dict(definition=record['definition'], comment=record['comment']), None


def _replacement_refusal(spec, planned):
    """Why the index of the planned name cannot be replaced by renames, or None. What PostgreSQL would refuse of the
    replacement's steps (dropping an index that backs a constraint, that foreign keys depend on, or that is attached to
    a partitioned index) is the refusal rules' (refusal_rules); this is what the renames would lose, and whether the
    rollback could build the replaced index again from its record."""
    reasons = []
    try:
        restore_statement(planned['definition'], spec['name'], replacement_names(spec['name'])[0], spec['schema'],
                          spec['table'])
    except ValueError as error:
        reasons.append('a rollback could not build it again from its definition (%s)' % error)
    if planned.get('replica_identity'):
        reasons.append('it is the table\'s REPLICA IDENTITY index')
    if planned.get('clustered'):
        reasons.append('the table is CLUSTERed on it')
    if not reasons:
        return None
    return ('index "%s.%s" exists with a different definition and on_mismatch is replace, but it cannot be replaced: '
            '%s; nothing was changed on it.\n  existing: %s\n  planned:  %s'
            % (spec['schema'], spec['name'], '; '.join(reasons), planned['definition'], spec['display_definition']))


def _replacement_leftovers(spec, following, previous):
    """(problems, drop steps) of the indexes found under the two names a replacement uses: a stopped replacement's
    (or restore's) leftovers, to drop; anything else there stops it."""
    problems, steps = [], []
    for index, name in zip((following, previous), replacement_names(spec['name'])):
        problem = _helper_problem(spec, index, name)
        if problem:
            problems.append(problem)
        elif index is not None:
            steps.append(_step('drop', spec, name=name))
    return problems, steps


def _helper_problem(spec, index, name):
    """Why an index of a name the replacement uses is not a leftover of it, or None."""
    if index is None:
        return None
    qualified = '%s.%s' % (spec['schema'], name)
    if index['relkind'] != 'i' or (index['table_schema'], index['table']) != (spec['schema'], spec['table']):
        return ('"%s", the name the replacement of index "%s" uses, is taken by another relation (not an index of '
                '%s.%s): rename it, then rerun' % (qualified, spec['name'], spec['schema'], spec['table']))
    if index['build_in_progress_pid']:
        return 'index "%s" is being built right now by backend pid %s: wait for it and rerun' % (
            qualified, index['build_in_progress_pid'])
    return None


def replacement_decision(spec, planned, following, previous, replaced=None):
    """(decision, None) or (None, the problem) for a valid index of the planned name on the planned table, when the
    plan says on_mismatch: replace.

    The planned definition is built under the next name (replacement_names) concurrently; then, in one short
    transaction, the index of the planned name takes the previous name, the new one takes the planned name, and the
    ledger row of the replacement (C(replaced), written before the build with the definition and comment it
    replaces) becomes applied; the previous one is dropped concurrently. A rerun starts where a stopped run ended: the
    new index built or not, the swap done or not.
    """
    next_name = replacement_names(spec['name'])[0]
    problems, leftovers = _replacement_leftovers(spec, following, previous)
    if not problems and leftovers and replaced is None:
        # Under the names a replacement uses, yet not a replacement the ledger holds: not this plan's to drop or use.
        problems = ['index "%s.%s" has a name the replacement of index "%s" uses, but the ledger of the plan holds no '
                    'replacement of it: it is not a leftover of this plan; rename it (or drop it deliberately), then '
                    'rerun' % (spec['schema'], step['name'], spec['name']) for step in leftovers]
    if problems:
        return None, '\n  - '.join(problems)
    if not compare_index(planned, spec):
        previous_definition = (replaced.get('prior') or {}).get('definition') if replaced and leftovers else None
        return _decision(spec, planned, ACTION_REPLACE if leftovers else ACTION_UNCHANGED, leftovers,
                         previous_definition, planned['definition']), None
    refusal = _replacement_refusal(spec, planned)
    if refusal:
        return None, refusal
    ready = following is not None and following['valid'] and not compare_index(following, spec)
    steps = _swap_steps(spec, following, previous, ready, _step('build', spec, name=next_name), None)
    return _decision(spec, planned, ACTION_REPLACE, steps, planned['definition'], spec['display_definition']), None


def restore_decision(spec, planned, following, previous, replaced=None, created=None, plan=NO_PLAN):
    """(decision, None) or (None, the problem) of an index with on_mismatch: replace when the plan is rolled back.

    The ledger says what the plan did. A replacement it swapped in (C(replaced) applied) gets the recorded definition
    back, by the same build and swap, and the old index's own comment back, when the index of the planned name is
    still the one it swapped in. A replacement that never swapped (C(replaced) intended) leaves its leftovers under the
    two names a replacement uses, dropped. An index the plan created (C(created), with no replacement) is dropped when
    it still matches. Anything else is left alone.
    """
    next_name = replacement_names(spec['name'])[0]
    ours = replaced is not None or created is not None
    problems, leftovers = _replacement_leftovers(spec, following, previous)
    if problems:
        if not ours:
            return _left_alone(spec, planned, 'the names of a replacement are taken by other relations, and the ledger '
                                              'of plan %s has no replacement of index "%s"' % (plan, spec['name'])), None
        return None, '\n  - '.join(problems)
    leftovers = leftovers if ours else []
    if replaced is not None and replaced['state'] == 'applied':
        prior = replaced.get('prior') or {}
        undo, reason = attribution(plan, 'replaced_index', spec['name'], replaced, planned is not None,
                                   planned is not None and ledger_matches(planned, replaced),
                                   planned['definition'] if planned else None)
        if reason:
            return _left_alone(spec, planned, reason), None
        if not undo:
            return _decision(spec, None, ACTION_UNCHANGED, left_alone=(
                'index "%s" that replaced the recorded one is gone, so there is nothing to swap back: build the '
                'recorded one yourself if it is needed (%s)' % (spec['name'], prior.get('definition')))), None
        try:
            statement = restore_statement(prior.get('definition') or '', spec['name'], next_name, spec['schema'],
                                          spec['table'])
        except ValueError as error:
            return None, ('index "%s.%s": the ledger records the definition it replaced, but that cannot be built again '
                          '(%s): %s' % (spec['schema'], spec['name'], error, prior.get('definition')))
        ready = following is not None and following['valid'] and \
            same_index_definition(following['definition'], prior['definition'])
        steps = _swap_steps(spec, following, previous, ready,
                            _step('build_definition', spec, name=next_name, statement=statement), prior.get('comment'))
        return _decision(spec, planned, ACTION_RESTORE, steps, planned['definition'], prior['definition'],
                         ledger_row=replaced), None
    if replaced is not None:
        # Intended, never swapped: the index of the planned name is the one it found; only the leftovers go.
        return _decision(spec, planned, ACTION_RESTORE if leftovers else ACTION_UNCHANGED, leftovers,
                         ledger_row=replaced), None
    undo, reason = attribution(plan, 'index', spec['name'], created, planned is not None,
                               planned is not None and created is not None and ledger_matches(planned, created),
                               planned['definition'] if planned else None)
    if reason:
        return _left_alone(spec, planned, reason), None
    return _decision(spec, planned if undo else None, ACTION_DROP if undo or leftovers else ACTION_UNCHANGED,
                     leftovers + ([_step('drop', spec)] if undo else []), ledger_row=created), None


def restored_unique_columns(decision):
    """The key columns of the unique index a rollback builds again from a replacement record (build_definition), when
    the record is a full index on plain columns: that build fails on the duplicate keys written since the replacement,
    so the rollback's preflight counts them. None for any other decision (or a partial or expression index)."""
    for step in decision['steps']:
        if step['kind'] == 'build_definition':
            fields = index_statement(step['statement'])
            elements = [param.get('IndexElem') or {} for param in fields.get('indexParams') or []]
            if fields.get('unique') and not fields.get('whereClause') and all(e.get('name') for e in elements):
                return [element['name'] for element in elements]
    return None


def _swap_steps(spec, following, previous, ready, build, comment):
    """Build under the next name (unless C(ready), kept from a stopped run), swap by renames, drop the previous one.

    A previous index left by an earlier replacement is dropped first, so that the rename has its name free.
    """
    next_name, previous_name = replacement_names(spec['name'])
    steps = [_step('drop', spec, name=previous_name)] if previous is not None else []
    if following is not None and not ready:
        steps.append(_step('drop', spec, name=next_name))
    if not ready:
        steps.append(build)
    steps.append(_step('swap', spec, next=next_name, previous=previous_name, comment=comment))
    steps.append(_step('drop', spec, name=previous_name))
    return steps


def index_statement(text):
    """The fields of the CREATE INDEX that C(text) is, as PostgreSQL's parser reads it; ValueError when it is not
    exactly one CREATE INDEX."""
    statements = parse(text)
    if len(statements) != 1 or 'IndexStmt' not in statements[0]:
        raise ValueError('it is not one CREATE INDEX statement')
    return statements[0]['IndexStmt']


def index_expressions(definition):
    """([key expressions], predicate or None) of the CREATE INDEX C(definition), each as SQL text (PostgreSQL's parser
    reads the definition, pglast writes each expression back): what building it evaluates on every row."""
    from pglast import parse_sql
    from pglast.stream import RawStream
    statement = parse_sql(definition)[0].stmt
    keys = [RawStream()(param.expr) for param in statement.indexParams or () if param.expr is not None]
    return keys, (RawStream()(statement.whereClause) if statement.whereClause is not None else None)


def _definition_key(tree):
    """A parse tree without what does not make two index definitions differ: names, positions, CONCURRENTLY."""
    if isinstance(tree, dict):
        return dict((key, _definition_key(value)) for key, value in tree.items()
                    if key not in ('idxname', 'concurrent', 'if_not_exists', 'location'))
    if isinstance(tree, list):
        return [_definition_key(item) for item in tree]
    return tree


def same_index_definition(one, other):
    """Whether two CREATE INDEX texts define the same index (whatever its name, CONCURRENTLY or not)."""
    return _definition_key(index_statement(one)) == _definition_key(index_statement(other))


def restore_statement(definition, name, new_name, schema, table):
    """C(definition), an index C(name) of C(schema).C(table) as pg_get_indexdef wrote it, as a CREATE INDEX
    CONCURRENTLY IF NOT EXISTS of C(new_name); ValueError saying why it cannot be.

    The text comes back from the database (a replacement record), so it is proven to be exactly one CREATE INDEX of
    that name on that table, and the result to define the same index. What its expressions and predicate call is for
    the server to prove before it is built (index_expressions, OnlineIndexRunner.prove_definitions).
    """
    fields = index_statement(definition)
    relation = fields.get('relation') or {}
    if fields.get('idxname') != name or (relation.get('schemaname'), relation.get('relname')) != (schema, table) \
            or fields.get('concurrent') or not relation.get('inh', True):
        raise ValueError('it is not a plain CREATE INDEX "%s" on %s.%s' % (name, schema, table))
    problems = tree_problems(fields, subqueries_allowed=False)
    if problems:
        raise ValueError('; '.join(problems))
    for head in ('CREATE UNIQUE INDEX ', 'CREATE INDEX '):
        if definition.startswith(head):
            rest = definition[len(head):]
            break
    else:
        raise ValueError('it does not start as pg_get_indexdef writes an index')
    for written in ('"%s"' % name.replace('"', '""'), name):
        if rest.startswith(written + ' ON '):
            statement = '%sCONCURRENTLY IF NOT EXISTS "%s"%s' % (head, new_name.replace('"', '""'),
                                                                 rest[len(written):])
            break
    else:
        raise ValueError('its name is not written where pg_get_indexdef writes it')
    rebuilt = index_statement(statement)
    if rebuilt.get('idxname') != new_name or _definition_key(rebuilt) != _definition_key(fields):
        raise ValueError('it does not read back as the same index')
    return statement


# B-tree leaves are filled to 90% by a build; each entry costs an 8-byte tuple header and a 4-byte line pointer.
BTREE_FILLFACTOR = 0.9
INDEX_TUPLE_OVERHEAD = 12
PAGE_BYTES = 8192


def estimate_index_bytes(rows, column_widths):
    """Estimated size of a new b-tree over C(rows) rows whose key and include columns are C(column_widths) wide.

    Key data is padded to 8 bytes. It ignores b-tree deduplication (PostgreSQL 13+), which packs repeated
    keys, so it errs high: the right side for a disk check. Other access methods differ, but it is the right
    order of magnitude. Two extra pages are added for the metapage and the root.
    """
    data = sum(column_widths)
    entry = INDEX_TUPLE_OVERHEAD + ((data + 7) // 8) * 8
    return int(max(rows, 0) * entry / BTREE_FILLFACTOR) + 2 * PAGE_BYTES
