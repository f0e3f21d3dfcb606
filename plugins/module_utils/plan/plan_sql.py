# -*- coding: utf-8 -*-
# Plan SQL vetted by PostgreSQL's own parser: a plan's partial-index predicates, its baseline queries and their
# parameter queries are text an operator wrote, and each is sent to the server inside a statement of ours. A
# hand-written lexer cannot follow every quoting form PostgreSQL has (E'' strings with backslash escapes, dollar
# quotes, U& strings, nested comments), and a text that hides "; COMMIT; DELETE ..." from it runs as statements
# of their own. So the text is parsed with libpg_query (through pglast), the parser of PostgreSQL itself:
#   - expression_error: a predicate is exactly one expression, with no subquery;
#   - query_error: a baseline query is exactly one SELECT, with no data-modifying WITH, no locking clause, no
#     INTO, and its %(name)s parameters where a value goes (placeholders), never inside a quoted literal, a quoted
#     identifier or a comment;
#   - statement_error: the statement about to be sent, plan text included, is exactly one statement of the
#     expected kind (checked at the last moment, so a composition mistake cannot smuggle a second one).
# Which functions, operators, casts and types the text reaches is not a question of names the parser can answer:
# the server proves that (plan_trust). The functions take text and return text, so tests/unit runs them without a
# server.

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

DATA_MODIFYING = ('InsertStmt', 'UpdateStmt', 'DeleteStmt', 'MergeStmt')
STATEMENT_NAMES = dict(
    InsertStmt='an INSERT', UpdateStmt='an UPDATE', DeleteStmt='a DELETE', MergeStmt='a MERGE',
    IndexStmt='a CREATE INDEX', CreateStmt='a CREATE TABLE', DropStmt='a DROP', TransactionStmt='transaction control',
    VariableSetStmt='a SET', CallStmt='a CALL', DoStmt='a DO block', ExplainStmt='an EXPLAIN', CopyStmt='a COPY',
    AlterTableStmt='an ALTER TABLE', TruncateStmt='a TRUNCATE')

# A baseline parameter, %(name)s: the statement is prepared with a $n in its place, and its value is bound to it.
PARAMETER = re.compile(r'%\((\w+)\)s')
# Tokens of PostgreSQL's scanner a placeholder must not be inside: there it would be text, not a parameter.
QUOTED_TOKENS = dict(SCONST='a quoted literal', USCONST='a quoted literal', BCONST='a quoted literal',
                     XCONST='a quoted literal', IDENT='a quoted identifier', UIDENT='a quoted identifier',
                     SQL_COMMENT='a comment', C_COMMENT='a comment')


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


def tree_problems(tree, subqueries_allowed):
    """What a parse tree does that plan SQL may not do, by its shape, as sentences (empty when nothing). What the
    functions, operators and types in it are is for the server to say (plan_trust)."""
    problems = []
    for kind, fields in nodes(tree):
        if kind in DATA_MODIFYING:
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


def position(text, offset):
    """'line L, column C' of character C(offset) of C(text) (both from 1)."""
    line = text.count('\n', 0, offset) + 1
    return 'line %d, column %d' % (line, offset - (text.rfind('\n', 0, offset) + 1) + 1)


def placeholders(text):
    """([(name, start, end)], problems): the %(name)s parameters of C(text), each where a value may go.

    A placeholder inside a quoted literal ('%(nick)s'), a quoted identifier or a comment would not be a parameter but
    text of the statement: it is refused, with its position, since the value meant for it would otherwise become
    SQL. PostgreSQL's own scanner says where each literal, identifier and comment begins and ends.
    """
    if not HAS_PGLAST:
        raise ValueError(MISSING_PARSER)
    from pglast.parser import scan
    try:
        tokens = scan(text)
    except ParseError as error:
        raise ValueError('PostgreSQL\'s parser refuses it: %s' % error)
    found, problems = [], []
    for match in PARAMETER.finditer(text):
        start, end = match.span()
        inside = [token for token in tokens if token.start < end and token.end >= start
                  and token.name in QUOTED_TOKENS and (token.name != 'IDENT' or text[token.start] == '"')]
        if inside:
            problems.append('%s at %s is inside %s, where it would be text, not a parameter: write it where a value '
                            'goes, without quotes (its value is bound as a parameter, never written into the SQL)'
                            % (match.group(0), position(text, start), QUOTED_TOKENS[inside[0].name]))
        else:
            found.append((match.group(1), start, end))
    return found, problems


def bind_placeholders(text, replacement):
    """C(text) with each placeholder replaced by C(replacement(name, number)) (number from 1, the same for every use
    of a name), and the names in the order of their numbers. ValueError for a placeholder that is not a parameter
    (see placeholders)."""
    found, problems = placeholders(text)
    if problems:
        raise ValueError('; '.join(problems))
    names, pieces, last = [], [], 0
    for name, start, end in found:
        if name not in names:
            names.append(name)
        pieces.extend([text[last:start], replacement(name, names.index(name) + 1)])
        last = end
    pieces.append(text[last:])
    return ''.join(pieces), names


def query_error(text):
    """Why C(text) is not exactly one read-only query a baseline may run, or None.

    One SELECT (VALUES and TABLE are SELECTs too; a trailing semicolon is allowed), with %(name)s parameters where
    values go, no data-modifying WITH, no FOR UPDATE/SHARE and no INTO.
    """
    text = text if isinstance(text, str) else ''
    if not text.strip():
        return 'it is empty'
    try:
        statements = parse(bind_placeholders(text, lambda name, number: '$%d' % number)[0])
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


def execute_error(text, prepared):
    """Why C(text) is not exactly EXPLAIN (...) EXECUTE C(prepared)(constants): the values of a baseline query's
    parameters reach the server as the arguments of its prepared statement, constants bound to its $n, never as SQL
    (checked right before it is sent)."""
    try:
        statements = parse(text)
    except ValueError as error:
        return str(error)
    explained = statements[0].get('ExplainStmt', {}).get('query', {}) if len(statements) == 1 else {}
    execute = explained.get('ExecuteStmt')
    if execute is None or execute.get('name') != prepared:
        return 'it is not one EXPLAIN EXECUTE %s' % prepared
    for argument in execute.get('params') or []:
        if 'TypeCast' in argument:
            argument = argument['TypeCast'].get('arg') or {}
        if 'A_Const' not in argument:
            return 'an argument of EXECUTE is not a constant'
    return None
