# -*- coding: utf-8 -*-
# The decisions of the index kind without a database: the index spec and its validation, the comparison of a planned
# index with an existing one, and the action each needs (applying or rolling back a plan), with the size of a new
# b-tree. An index on a partitioned table is decided by partitioned_index, a replacement (on_mismatch: replace) by
# index_replacement. Plain data in, plain data out, so tests/unit runs it without a server.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.index_actions import (
    ACTION_CREATE, ACTION_DROP, ACTION_REBUILD, ACTION_RESUME, ACTION_UNCHANGED, left_alone_decision, ledger_matches,
    new_decision, new_step,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.index_definitions import compare_index
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.index_replacement import (
    replacement_decision, replacement_indexes, restore_decision,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.partitioned_index import partition_leftover_steps, partitioned_decision
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.plan.identifiers import identifier_error
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.plan.plan_sql import expression_error
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.run.ledger import NO_PLAN, attribution
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.plan import plan_schema


# Relation kinds CREATE INDEX CONCURRENTLY accepts: tables and materialized views. A partitioned table ('p') takes
# the partition procedure instead (partition_steps): PostgreSQL refuses CONCURRENTLY on its parent.
INDEXABLE_RELKINDS = ('r', 'm')


ON_MISMATCH = ('fail', 'replace')


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


def _present_decision(spec, existing, existing_by_name, nodes, ledger):
    """(decision, None) or (None, the problem) of one planned index when the plan is applied."""
    qualified = '%s.%s' % (spec['schema'], spec['name'])
    if existing is None:
        return partitioned_decision(spec, None, nodes, ACTION_CREATE) if nodes is not None else \
            (new_decision(spec, None, ACTION_CREATE, [new_step('build', spec)]), None)
    if existing['build_in_progress_pid']:
        return None, ('index "%s" is being built right now by backend pid %s: wait for that build to finish '
                      '(see pg_stat_progress_create_index) and rerun' % (qualified, existing['build_in_progress_pid']))
    same_table = (existing['table_schema'], existing['table']) == (spec['schema'], spec['table'])
    if same_table and existing['valid'] and existing['relkind'] == 'i' and spec.get('on_mismatch') == 'replace':
        return replacement_decision(spec, existing, *replacement_indexes(spec, existing_by_name),
                                    replaced=ledger.get(('replaced_index', spec['name'])))
    differences = compare_index(existing, spec)
    if differences and (existing['valid'] or not same_table or existing['relkind'] == 'I'):
        return None, mismatch_message(qualified, differences, existing, spec)
    if nodes is not None:
        return partitioned_decision(spec, existing, nodes, ACTION_UNCHANGED if existing['valid'] else ACTION_RESUME)
    if not existing['valid']:
        return new_decision(spec, existing, ACTION_REBUILD, [new_step('drop', spec), new_step('build', spec)]), None
    return new_decision(spec, existing, ACTION_UNCHANGED), None


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
        return restore_decision(spec, existing, *replacement_indexes(spec, existing_by_name),
                                replaced=ledger.get(('replaced_index', spec['name'])),
                                created=ledger.get(('index', spec['name'])), plan=plan)
    row = ledger.get(('index', spec['name']))
    if existing is not None and (existing['table_schema'], existing['table']) != (spec['schema'], spec['table']):
        return left_alone_decision(spec, existing, 'index "%s.%s" belongs to table %s.%s, not %s.%s: it is not this plan\'s '
                                   'index, so it is left alone' % (spec['schema'], spec['name'], existing['table_schema'],
                                                                   existing['table'], spec['schema'], spec['table'])), None
    undo, reason = attribution(plan, 'index', spec['name'], row, existing is not None,
                               existing is not None and row is not None and ledger_matches(existing, row),
                               existing['definition'] if existing else None)
    if reason:
        return left_alone_decision(spec, existing, reason), None
    if nodes is not None:
        # The partition indexes of a stopped build are the run's own only when the ledger has its row.
        steps = partition_leftover_steps(spec, nodes) if row is not None else []
        if undo:
            steps.append(new_step('drop_partitioned', spec))
        return new_decision(spec, existing, ACTION_DROP if steps else ACTION_UNCHANGED, steps, ledger_row=row), None
    if not undo:
        return new_decision(spec, None, ACTION_UNCHANGED), None
    return new_decision(spec, existing, ACTION_DROP, [new_step('drop', spec)], ledger_row=row), None


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
