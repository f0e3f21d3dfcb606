# -*- coding: utf-8 -*-
# Plan SQL vetted by PostgreSQL's own parser: a plan's partial-index predicates, its baseline queries and their
# parameter queries are text an operator wrote, and each is sent to the server inside a statement of ours. A
# hand-written lexer cannot follow every quoting form PostgreSQL has (E'' strings with backslash escapes, dollar
# quotes, U& strings, nested comments), and a text that hides "; COMMIT; DELETE ..." from it runs as statements
# of their own. So the text is parsed with libpg_query (through pglast), the parser of PostgreSQL itself:
#   - expression_error: a predicate is exactly one expression, with no subquery and no refused function;
#   - query_error: a baseline query is exactly one SELECT, with no data-modifying WITH, no locking clause, no
#     INTO and no refused function;
#   - statement_error: the statement about to be sent, plan text included, is exactly one statement of the
#     expected kind (checked at the last moment, so a composition mistake cannot smuggle a second one).
# The functions take text and return text, so tests/unit runs them without a server.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import re

try:
    from pglast.parser import ParseError, parse_sql_json
    HAS_PGLAST = True
except ImportError:  # reported by the modules with what to install
    HAS_PGLAST = False

MISSING_PARSER = ('the Python package pglast (PostgreSQL\'s parser) is not installed on the host that runs the '
                  'modules: install it there (pip install pglast), it is needed to check the plan\'s SQL')

# Functions a plan's SQL may not call, even where the session is read-only: they signal or stop other sessions,
# change settings, take locks, sleep, reach files or large objects, or run SQL given as text (whose own
# statements no parser here would see). Matched on the unqualified, lower-case name.
REFUSED_FUNCTIONS = frozenset((
    'set_config', 'pg_sleep', 'pg_sleep_for', 'pg_sleep_until',
    'pg_terminate_backend', 'pg_cancel_backend', 'pg_reload_conf', 'pg_rotate_logfile', 'pg_switch_wal',
    'pg_promote', 'pg_notify', 'pg_log_backend_memory_contexts', 'pg_import_system_collations',
    'pg_export_snapshot', 'pg_stat_file', 'nextval', 'setval', 'loread', 'lowrite',
    'query_to_xml', 'query_to_xmlschema', 'query_to_xml_and_xmlschema', 'cursor_to_xml', 'cursor_to_xmlschema',
    'table_to_xml', 'table_to_xmlschema', 'table_to_xml_and_xmlschema', 'schema_to_xml', 'schema_to_xmlschema',
    'schema_to_xml_and_xmlschema', 'database_to_xml', 'database_to_xmlschema', 'database_to_xml_and_xmlschema',
))
REFUSED_FUNCTION_PREFIXES = (
    'pg_advisory_', 'pg_try_advisory_', 'lo_', 'pg_create_', 'pg_drop_', 'pg_copy_', 'pg_replication_',
    'pg_logical_', 'pg_wal_', 'pg_stat_reset', 'pg_backup_', 'pg_start_', 'pg_stop_', 'pg_ls_', 'pg_read_',
    'pg_file_', 'dblink',
)

DATA_MODIFYING = ('InsertStmt', 'UpdateStmt', 'DeleteStmt', 'MergeStmt')
STATEMENT_NAMES = dict(
    InsertStmt='an INSERT', UpdateStmt='an UPDATE', DeleteStmt='a DELETE', MergeStmt='a MERGE',
    IndexStmt='a CREATE INDEX', CreateStmt='a CREATE TABLE', DropStmt='a DROP', TransactionStmt='transaction control',
    VariableSetStmt='a SET', CallStmt='a CALL', DoStmt='a DO block', ExplainStmt='an EXPLAIN', CopyStmt='a COPY',
    AlterTableStmt='an ALTER TABLE', TruncateStmt='a TRUNCATE')

# A baseline parameter, %(name)s: parsed as a $n placeholder, replaced by a literal when the query runs.
PARAMETER = re.compile(r'%\((\w+)\)s')


def refused_function(name):
    name = name.lower()
    return name in REFUSED_FUNCTIONS or name.startswith(REFUSED_FUNCTION_PREFIXES)


def parse(text):
    """The statements of C(text) as parsed by PostgreSQL's parser: a list of {node kind: fields} dicts.

    Raises ValueError with the parser's message (and the character position) when it is not valid SQL.
    """
    if not HAS_PGLAST:
        raise ValueError(MISSING_PARSER)
    try:
        document = json.loads(parse_sql_json(text))
    except ParseError as error:
        raise ValueError('PostgreSQL\'s parser refuses it: %s' % error)
    return [entry['stmt'] for entry in document.get('stmts') or [] if entry.get('stmt')]


def nodes(tree):
    """Every (node kind, fields) pair of a parse tree, depth first."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            if isinstance(value, dict) and key[:1].isupper():
                yield key, value
            yield from nodes(value)
    elif isinstance(tree, list):
        for item in tree:
            yield from nodes(item)


def function_name(fields):
    return '.'.join(part['String']['sval'] for part in fields.get('funcname') or [] if 'String' in part)


def tree_problems(tree, subqueries_allowed):
    """What a parse tree does that plan SQL may not do, as sentences (empty when nothing)."""
    problems = []
    for kind, fields in nodes(tree):
        if kind == 'FuncCall':
            name = function_name(fields)
            if refused_function(name.rsplit('.', 1)[-1]):
                problems.append('it calls %s(), which a plan may not call (it signals or changes the server, takes '
                                'a lock, sleeps, reaches files or runs SQL given as text)' % name)
        elif kind in DATA_MODIFYING:
            problems.append('it holds a data-modifying statement (%s)' % kind[:-4].upper())
        elif kind == 'SelectStmt' and fields.get('lockingClause'):
            problems.append('it has a locking clause (FOR UPDATE / FOR SHARE), which takes row locks')
        elif kind == 'SelectStmt' and fields.get('intoClause'):
            problems.append('it has SELECT ... INTO, which creates a table')
        elif kind == 'SubLink' and not subqueries_allowed:
            problems.append('it has a subquery, which an index predicate cannot have')
    return sorted(set(problems), key=problems.index)


def _is_plain_select_where(statement):
    """Whether a parsed statement is exactly `SELECT 1 WHERE <one expression>`, nothing appended."""
    select = statement.get('SelectStmt')
    if select is None or select.get('op') != 'SETOP_NONE':
        return False
    return set(select) <= set(('targetList', 'whereClause', 'limitOption', 'op')) and 'whereClause' in select


def expression_error(text):
    """Why C(text) is not exactly one SQL expression a plan may use as a predicate, or None.

    The text goes into our statement as `WHERE (<text>)`: it must be a whole expression both with and without
    those parentheses, so it can neither end the statement, nor close the parenthesis, nor swallow it with a
    `--` comment.
    """
    text = text if isinstance(text, str) else str(text)
    if not text.strip():
        return 'it is empty'
    for wrapped in ('SELECT 1 WHERE %s', 'SELECT 1 WHERE (%s)'):
        try:
            statements = parse(wrapped % text)
        except ValueError as error:
            # The parser's position counts from the start of the wrapped text, not of the predicate.
            return '%s; a predicate is one expression (a -- comment or an unbalanced parenthesis or quote ' \
                   'breaks it)' % re.sub(r', at index \d+$', '', str(error))
        if len(statements) != 1:
            return 'it holds %d statements; a predicate is one expression, not statements' % len(statements)
        if not _is_plain_select_where(statements[0]):
            return 'it does not end where the expression ends (a UNION, GROUP BY, ORDER BY, LIMIT or other clause ' \
                   'follows it); a predicate is one expression'
    problems = tree_problems(statements[0]['SelectStmt']['whereClause'], subqueries_allowed=False)
    return '; '.join(problems) if problems else None


def query_error(text):
    """Why C(text) is not exactly one read-only query a baseline may run, or None.

    One SELECT (VALUES and TABLE are SELECTs too; a trailing semicolon is allowed), with %(name)s parameters,
    no data-modifying WITH, no FOR UPDATE/SHARE, no INTO and no refused function.
    """
    text = text if isinstance(text, str) else ''
    if not text.strip():
        return 'it is empty'
    try:
        statements = parse(PARAMETER.sub('$1', text))
    except ValueError as error:
        return str(error)
    if len(statements) != 1:
        return 'it holds %d statements; a baseline query is one statement' % len(statements)
    kind = list(statements[0])[0]
    if kind != 'SelectStmt':
        return ('it is %s, not a SELECT; only read-only queries (SELECT, WITH ... SELECT, TABLE, VALUES) are '
                'allowed in a baseline' % STATEMENT_NAMES.get(kind, 'a %s statement' % re.sub(r'Stmt$', '', kind)))
    problems = tree_problems(statements[0], subqueries_allowed=True)
    return '%s; a baseline query is one read-only SELECT' % '; '.join(problems) if problems else None


def statement_error(text, kind=None):
    """Why C(text), about to be sent, is not exactly one statement (of node kind C(kind), e.g. IndexStmt), or None."""
    try:
        statements = parse(text)
    except ValueError as error:
        return str(error)
    kinds = [list(statement)[0] for statement in statements]
    if len(kinds) != 1 or kind not in (None, kinds[0]):
        return 'it parses as %s, not as one %s' % (', '.join(kinds) or 'nothing', kind or 'statement')
    return None
