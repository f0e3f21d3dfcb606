# -*- coding: utf-8 -*-
# An index definition as PostgreSQL writes it (pg_get_indexdef): parsed by PostgreSQL's own parser, compared with
# another whatever their names, rewritten as a concurrent build under another name; and the names derived from a
# planned index's name within 63 bytes. Pure functions, unit-tested without a server.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib

from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.plan.identifiers import MAX_IDENTIFIER_BYTES
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.plan.plan_sql import parse, tree_problems


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


def _column_list(columns):
    return '(%s)' % ', '.join('expression' if c is None else c for c in (columns or []))


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
