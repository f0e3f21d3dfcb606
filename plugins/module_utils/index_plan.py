# -*- coding: utf-8 -*-
# Planning an index change without a database: the index spec and its validation, the comparison of a planned
# index with an existing one, the action each needs, and the size of a new b-tree. Plain data in, plain data out,
# so tests/unit runs it without a server.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.identifiers import identifier_error
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.plan_sql import expression_error


ACTION_CREATE = 'created'
ACTION_REBUILD = 'rebuilt'
ACTION_UNCHANGED = 'unchanged'
ACTION_DROP = 'dropped'

# Relation kinds CREATE INDEX CONCURRENTLY accepts: tables and materialized views. Partitioned
# tables ('p') are refused by PostgreSQL for concurrent builds, so they are refused here first.
INDEXABLE_RELKINDS = ('r', 'm')

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


def decide_actions(desired_specs, existing_by_name, state):
    """Decide, for each planned index, what to do given what the catalog holds.

    Returns (decisions, errors). A decision is a dict with the spec, the existing index (or None)
    and an C(action) among created, rebuilt, unchanged and dropped. Any error means nothing may run.
    """
    decisions = []
    errors = []
    for spec in desired_specs:
        existing = existing_by_name.get(spec['name'])
        qualified = '%s.%s' % (spec['schema'], spec['name'])
        if existing is not None and existing['relkind'] not in ('i', 'I'):
            errors.append('"%s" already exists and is not an index (relation kind %s): choose another index '
                          'name' % (qualified, existing['relkind']))
            continue
        if state == 'absent':
            if existing is None:
                decisions.append(dict(spec=spec, existing=None, action=ACTION_UNCHANGED))
            elif (existing['table_schema'], existing['table']) != (spec['schema'], spec['table']):
                errors.append('index "%s" belongs to table %s.%s, not %s.%s: it is not this plan\'s index; '
                              'nothing was dropped' % (qualified, existing['table_schema'], existing['table'],
                                                       spec['schema'], spec['table']))
            elif existing['constraint']:
                errors.append('index "%s" backs constraint "%s": drop the constraint instead (ALTER TABLE ... '
                              'DROP CONSTRAINT); nothing was dropped' % (qualified, existing['constraint']))
            else:
                decisions.append(dict(spec=spec, existing=existing, action=ACTION_DROP))
            continue
        if existing is None:
            decisions.append(dict(spec=spec, existing=None, action=ACTION_CREATE))
            continue
        if existing['build_in_progress_pid']:
            errors.append('index "%s" is being built right now by backend pid %s: wait for that build to finish '
                          '(see pg_stat_progress_create_index) and rerun' % (qualified, existing['build_in_progress_pid']))
            continue
        differences = compare_index(existing, spec)
        if differences and (existing['valid'] or existing['table'] != spec['table']
                            or existing['table_schema'] != spec['schema']):
            errors.append('index "%s" exists with a different definition (%s).\n  existing: %s\n  planned:  %s\n'
                          'Rename the planned index, or drop the existing one deliberately '
                          '(DROP INDEX CONCURRENTLY) and rerun; nothing was changed.'
                          % (qualified, '; '.join(differences), existing['definition'], spec['display_definition']))
            continue
        if not existing['valid']:
            if existing['constraint']:
                errors.append('index "%s" is INVALID and backs constraint "%s": repair the constraint first'
                              % (qualified, existing['constraint']))
                continue
            decisions.append(dict(spec=spec, existing=existing, action=ACTION_REBUILD))
        else:
            decisions.append(dict(spec=spec, existing=existing, action=ACTION_UNCHANGED))
    return decisions, errors


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
