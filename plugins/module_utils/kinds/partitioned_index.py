# -*- coding: utf-8 -*-
# An index planned on a partitioned table, decided without a database: PostgreSQL refuses CONCURRENTLY on a
# partitioned parent, so the index is made ON ONLY the parent, built concurrently on each partition and attached,
# level by level; a half-done run resumes, and a rollback drops what the ledger says a run made.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.index_actions import ACTION_UNCHANGED, new_decision, new_step
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.index_definitions import compare_index, derived_name

PARTITIONED = 'p'


def partition_index_name(index_name, partition):
    """The name of the planned index's own index on one partition (in the partition's schema)."""
    return derived_name(index_name, partition)


def partitioned_decision(spec, existing, nodes, action):
    if action == ACTION_UNCHANGED:
        return new_decision(spec, existing, action), None
    steps, problems = partition_steps(spec, nodes, existing is not None)
    if problems:
        return None, '\n  - '.join(problems)
    return new_decision(spec, existing, action, steps), None


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
            steps.append(new_step('create_on_only', spec, schema=node['schema'], table=node['table'], name=index_name,
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
                steps.append(new_step('drop', spec, schema=child['schema'], table=child['table'], name=name))
                existing = None
            if child['relkind'] == PARTITIONED:
                visit(child, name, existing is not None)
            elif existing is None:
                steps.append(new_step('build', spec, schema=child['schema'], table=child['table'], name=name,
                                      partition=True))
            steps.append(new_step('attach', spec, schema=node['schema'], table=node['table'], name=index_name,
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
        steps.append(new_step('drop_partitioned' if index['relkind'] == 'I' else 'drop', spec, schema=node['schema'],
                              table=node['table'], name=name))
    return sorted(steps, key=lambda step: step['kind'] == 'drop_partitioned')
