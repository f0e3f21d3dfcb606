# -*- coding: utf-8 -*-
# Planning an index change without a database: the index spec and its validation, the comparison of a planned
# index with an existing one, the action each needs, and the size of a new b-tree. Plain data in, plain data out,
# so tests/unit runs it without a server.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib

from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.identifiers import (
    MAX_IDENTIFIER_BYTES, identifier_error,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.plan_sql import expression_error


ACTION_CREATE = 'created'
ACTION_REBUILD = 'rebuilt'
ACTION_UNCHANGED = 'unchanged'
ACTION_DROP = 'dropped'
# A partitioned index whose earlier run stopped half way (some partitions built or attached): the rest is done.
ACTION_RESUME = 'resumed'

# Relation kinds CREATE INDEX CONCURRENTLY accepts: tables and materialized views. A partitioned table ('p') takes
# the partition procedure instead (partition_steps): PostgreSQL refuses CONCURRENTLY on its parent.
INDEXABLE_RELKINDS = ('r', 'm')
PARTITIONED = 'p'

INDEX_SPEC_OPTIONS = dict(
    name=dict(type='str', required=True),
    columns=dict(type='list', elements='str'),
    unique=dict(type='bool', default=False),
    method=dict(type='str', default='btree'),
    where=dict(type='str'),
    include=dict(type='list', elements='str', default=[]),
)


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
        if state == 'absent':
            continue
        columns = spec.get('columns') or []
        include = spec.get('include') or []
        if not columns:
            errors.append('%s has no columns' % label)
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


def decide_actions(desired_specs, existing_by_name, state, partitions=None):
    """Decide, for each planned index, what to do given what the catalog holds.

    C(existing_by_name) holds the indexes (and other relations) of the planned names in the table's schema.
    C(partitions), for a partitioned table, maps each planned name to its partition tree (see partition_steps); None
    for any other table.
    Returns (decisions, errors). A decision is a dict with the spec, the existing index (or None), an C(action)
    among created, rebuilt, resumed, unchanged and dropped, and its C(steps), in order (each a dict: C(kind), the
    index it is about, C(schema), C(table), C(name), and what the kind needs; OnlineIndexRunner writes and runs their
    SQL). Any error means nothing may run.
    """
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
            decision, problem = _absent_decision(spec, existing, nodes)
        else:
            decision, problem = _present_decision(spec, existing, nodes)
        if problem:
            errors.append(problem)
        else:
            decisions.append(decision)
    return decisions, errors


def _decision(spec, existing, action, steps=None):
    return dict(spec=spec, existing=existing, action=action, steps=steps or [])


def _present_decision(spec, existing, nodes):
    """(decision, None) or (None, the problem) of one planned index when the plan is applied."""
    qualified = '%s.%s' % (spec['schema'], spec['name'])
    if existing is None:
        return _partitioned_decision(spec, None, nodes, ACTION_CREATE) if nodes is not None else \
            (_decision(spec, None, ACTION_CREATE, [_step('build', spec)]), None)
    if existing['build_in_progress_pid']:
        return None, ('index "%s" is being built right now by backend pid %s: wait for that build to finish '
                      '(see pg_stat_progress_create_index) and rerun' % (qualified, existing['build_in_progress_pid']))
    same_table = (existing['table_schema'], existing['table']) == (spec['schema'], spec['table'])
    differences = compare_index(existing, spec)
    if differences and (existing['valid'] or not same_table or existing['relkind'] == 'I'):
        return None, mismatch_message(qualified, differences, existing, spec)
    if nodes is not None:
        return _partitioned_decision(spec, existing, nodes, ACTION_UNCHANGED if existing['valid'] else ACTION_RESUME)
    if not existing['valid']:
        if existing['constraint']:
            return None, ('index "%s" is INVALID and backs constraint "%s": repair the constraint first'
                          % (qualified, existing['constraint']))
        return _decision(spec, existing, ACTION_REBUILD, [_step('drop', spec), _step('build', spec)]), None
    return _decision(spec, existing, ACTION_UNCHANGED), None


def mismatch_message(qualified, differences, existing, spec):
    """Why an index of the planned name is refused: both definitions, and what the operator can do."""
    if existing['relkind'] == 'I':
        advice = ('Rename the planned index, or drop the existing one deliberately (DROP INDEX: a partitioned index '
                  'cannot be dropped concurrently) and rerun')
    else:
        advice = 'Rename the planned index, or drop the existing one deliberately (DROP INDEX CONCURRENTLY) and rerun'

    return ('index "%s" exists with a different definition (%s).\n  existing: %s\n  planned:  %s\n%s; nothing was '
            'changed.' % (qualified, '; '.join(differences), existing['definition'], spec['display_definition'], advice))


def _absent_decision(spec, existing, nodes):
    """(decision, None) or (None, the problem) of one planned index when the plan is rolled back."""
    qualified = '%s.%s' % (spec['schema'], spec['name'])
    if existing is not None and (existing['table_schema'], existing['table']) != (spec['schema'], spec['table']):
        return None, ('index "%s" belongs to table %s.%s, not %s.%s: it is not this plan\'s index; nothing was '
                      'dropped' % (qualified, existing['table_schema'], existing['table'], spec['schema'], spec['table']))
    if existing is not None and existing['constraint']:
        return None, ('index "%s" backs constraint "%s": drop the constraint instead (ALTER TABLE ... DROP '
                      'CONSTRAINT); nothing was dropped' % (qualified, existing['constraint']))
    if nodes is not None:
        steps = partition_leftover_steps(spec, nodes)
        if existing is not None:
            steps.append(_step('drop_partitioned', spec))
        return _decision(spec, existing, ACTION_DROP if steps else ACTION_UNCHANGED, steps), None
    if existing is None:
        return _decision(spec, None, ACTION_UNCHANGED), None
    return _decision(spec, existing, ACTION_DROP, [_step('drop', spec)]), None


def _step(kind, spec, **fields):
    """One step of a decision: its C(kind) and the index it is about, by default the planned one (see decide_actions).

    Kinds: build (CREATE INDEX CONCURRENTLY of the spec under C(name); C(partition) when on a partition), drop (DROP
    INDEX CONCURRENTLY), drop_partitioned (DROP INDEX of a partitioned index), create_on_only (CREATE INDEX ... ON
    ONLY) and attach (ALTER INDEX C(name) ATTACH PARTITION C(partition_schema).C(partition_index)).
    """
    step = dict(kind=kind, schema=spec['schema'], table=spec['table'], name=spec['name'])
    step.update(fields)
    return step


# -- partitioned tables --------------------------------------------------------------------------------------------

def derived_name(base, suffix):
    """A name of at most 63 bytes made of C(base) and C(suffix), the same on every run, so that a rerun finds it.

    C(base)_C(suffix) when it fits; else as much of it as fits and 8 hex digits of the SHA-1 of the whole, so two long
    names that share their beginning still differ. A short suffix is kept whole, so the name says what it is.
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


def partition_key_errors(spec, nodes):
    """Why a planned unique index cannot be built on this partition tree: PostgreSQL enforces uniqueness in each
    partition alone, so it needs every partition key column, of every level, among the key columns."""
    if not spec.get('unique'):
        return []
    errors = []
    for node in nodes:
        keys = node.get('key_columns')
        if node['relkind'] != PARTITIONED or keys is None:
            continue
        label = 'unique index "%s" on partitioned table %s.%s' % (spec['name'], node['schema'], node['table'])
        if None in keys:
            errors.append('%s: the table is partitioned by an expression, which a unique index cannot include; make '
                          'the index non-unique' % label)
            continue
        missing = [key for key in keys if key not in (spec.get('columns') or [])]
        if missing:
            errors.append('%s does not cover the partition key: its key columns (%s) must include %s (PostgreSQL '
                          'checks uniqueness within each partition, so only a key that holds the partition key is '
                          'unique across them); add them to columns, or make the index non-unique'
                          % (label, ', '.join(spec.get('columns') or []), ', '.join(missing)))
    return errors


def _partitioned_decision(spec, existing, nodes, action):
    if action == ACTION_UNCHANGED:
        return _decision(spec, existing, action), None
    errors = partition_key_errors(spec, nodes)
    steps, problems = partition_steps(spec, nodes, existing is not None)
    errors.extend(problems)
    if errors:
        return None, '\n  - '.join(errors)
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
