# -*- coding: utf-8 -*-
"""Plan SQL vetted by PostgreSQL's own parser (plugins/module_utils/plan/plan_sql.py): every quoting form PostgreSQL has
is read as the server reads it, so no text can hide a second statement, a COMMIT or a DELETE from the checks."""

import pytest

import helpers

ps = helpers.load_module_utils('plan.plan_sql')

# What the smuggled statements would do if they ran; each trick below hides them in a different quoting form.
PAYLOAD = "; COMMIT; DELETE FROM \"Job\"; CREATE TABLE pwned (x int); SELECT (1"

# Texts that a lexer which does not know PostgreSQL's quoting rules reads as one quoted run.
LEXICAL_TRICKS = [
    # E'' string: a backslash escapes the quote, so the string ends later than a doubled-quote lexer thinks.
    "status = E'\\'' %s" % PAYLOAD,
    "status = E'\\\\' %s" % PAYLOAD,
    # The same with a standard string: standard_conforming_strings is on, the backslash is a plain character.
    "status = 'a\\' %s" % PAYLOAD,
    # Dollar quoting with a tag that is not a tag (digit first), and one closed early.
    "status = $1$ %s" % PAYLOAD,
    "status = $a$x$a$ %s" % PAYLOAD,
    # U& strings and identifiers with UESCAPE.
    "status = U&'\\0041' %s" % PAYLOAD,
    "U&\"a\" UESCAPE '!' = 1 %s" % PAYLOAD,
    # Nested comments: /* /* */ is still open in PostgreSQL.
    "true /* /* */ */ %s" % PAYLOAD,
    # A semicolon inside a quoted identifier is fine, one outside is a second statement.
    '"a;b" IS NULL %s' % PAYLOAD,
    # Line comment swallowing the closing parenthesis of WHERE ( ... ).
    "true -- %s" % PAYLOAD,
    # Closing the parenthesis of WHERE ( ... ) and appending clauses.
    'true) WITH (fillfactor = 10',
    'true) UNION SELECT (1',
    'true GROUP BY 1',
    'true ORDER BY 1',
]


@pytest.mark.parametrize('where', [
    '"closedAt" IS NULL',
    "status = 'OPEN'",
    "note = 'a;b' AND (amount > 0)",
    '"odd;name" IS NOT NULL',
    "note = $$x;y)$$",
    "note = $tag$ ; $tag$",
    "note = 'it''s; fine'",
    "note = E'it\\'s; fine'",
    "/* why: only open jobs; /* nested */ */ status = 'OPEN'",
    '("Job"."closedAt" IS NULL)',
    "U&\"d\\0061ta\" IS NULL",
    "amount > 0 AND lower(note) <> 'x'",
    # Nested comments are read as PostgreSQL reads them: all of this is one comment, nothing runs.
    "true /* /* */ %s */" % PAYLOAD,
])
def test_one_expression_is_accepted(where):
    assert ps.expression_error(where) is None


@pytest.mark.parametrize('where', LEXICAL_TRICKS)
def test_a_predicate_that_hides_statements_or_clauses_is_refused(where):
    assert ps.expression_error(where) is not None


@pytest.mark.parametrize('where,reason', [
    ('true; SELECT pg_sleep(3)', '2 statements'),
    ('(true', "parser refuses"),
    ("status = 'OPEN", "parser refuses"),
    ('', 'empty'),
    ('id IN (SELECT id FROM "Job")', 'subquery'),
    ('true GROUP BY 1', 'does not end where the expression ends'),
    ('true) UNION SELECT (1', 'unbalanced parenthesis'),
])
def test_the_reason_is_given(where, reason):
    assert reason in ps.expression_error(where)


@pytest.mark.parametrize('text', [
    'SELECT 1', 'SELECT * FROM "Job" WHERE id = %(id)s;', 'WITH x AS (SELECT 1) SELECT * FROM x', 'TABLE "Job"',
    'VALUES (1)', '(SELECT 1) UNION (SELECT 2)', 'SELECT count(*) FROM "Job" WHERE id IN (SELECT 1)',
    "SELECT E'\\';' AS odd",
])
def test_a_read_only_query_is_accepted(text):
    assert ps.query_error(text) is None


@pytest.mark.parametrize('text,reason', [
    ("SELECT E'\\'' %s" % PAYLOAD, "parser refuses"),
    ("SELECT E'\\'';  COMMIT; DELETE FROM \"Job\"", '3 statements'),
    ('SELECT $x$ $x$; DELETE FROM "Job"', '2 statements'),
    ('SELECT 1 /* /* */ ; DELETE FROM "Job"', "parser refuses"),
    ('SELECT 1 /* /* */ */; DELETE FROM "Job"', '2 statements'),
    ('WITH gone AS (DELETE FROM "Job" RETURNING id) SELECT count(*) FROM gone', 'data-modifying statement (DELETE)'),
    ('WITH x AS (UPDATE "Job" SET id = id RETURNING id) SELECT 1', 'data-modifying statement (UPDATE)'),
    ('WITH x AS (INSERT INTO "Job" DEFAULT VALUES RETURNING id) SELECT 1', 'data-modifying statement (INSERT)'),
    ('SELECT * FROM "Job" FOR UPDATE', 'locking clause'),
    ('SELECT * FROM (SELECT * FROM "Job" FOR SHARE) j', 'locking clause'),
    ('SELECT * INTO stolen FROM "Job"', 'INTO'),
    ('COMMIT', 'transaction control'),
    ('DO $$ BEGIN DELETE FROM "Job"; END $$', 'DO block'),
    ('CALL p()', 'CALL'),
    ("SET lock_timeout = '0'", 'SET'),
    ('EXPLAIN ANALYZE DELETE FROM "Job"', 'EXPLAIN'),
])
def test_anything_but_one_read_only_query_is_refused_with_the_reason(text, reason):
    problem = ps.query_error(text)
    assert problem is not None and reason in problem, problem


@pytest.mark.parametrize('text', [
    'SELECT pg_terminate_backend(42) IS NULL', "SELECT query_to_xml('DELETE FROM t', true, true, '') IS NULL",
    'SELECT "PG_CATALOG".pg_sleep(1) IS NULL', 'SELECT util.anything(1) = 1',
])
def test_which_function_a_name_is_the_parser_does_not_decide_the_server_does(text):
    # A list of names to refuse is no boundary (an overload, an operator, a cast or a domain reaches the same code
    # under another name): plan_trust proves every object by the server's resolution, in the integration tests.
    assert ps.query_error(text) is None
    assert ps.expression_error(text[len('SELECT '):]) is None


@pytest.mark.parametrize('text,names,bound', [
    ('SELECT * FROM "Job" WHERE id = %(id)s', ['id'], 'SELECT * FROM "Job" WHERE id = $1'),
    ('SELECT %(a)s, %(b)s, %(a)s', ['a', 'b'], 'SELECT $1, $2, $1'),
    ('SELECT 1 WHERE x=%(a)s', ['a'], 'SELECT 1 WHERE x=$1'),
])
def test_placeholders_become_numbered_parameters(text, names, bound):
    assert ps.bind_placeholders(text, lambda name, number: '$%d' % number) == (bound, names)


@pytest.mark.parametrize('text,where,position', [
    ("SELECT * FROM \"User\" WHERE nick = '%(nick)s'", 'a quoted literal', 'line 1, column 36'),
    ("SELECT * FROM t WHERE nick = E'x%(nick)s'", 'a quoted literal', 'line 1, column 33'),
    ("SELECT * FROM t WHERE nick = $q$%(nick)s$q$", 'a quoted literal', 'line 1, column 33'),
    ('SELECT "%(col)s" FROM t', 'a quoted identifier', 'line 1, column 9'),
    ('SELECT 1 /* %(x)s */', 'a comment', 'line 1, column 13'),
    ('SELECT 1\n-- %(x)s\n', 'a comment', 'line 2, column 4'),
])
def test_a_placeholder_that_would_be_text_not_a_parameter_is_refused_with_its_position(text, where, position):
    problem = ps.query_error(text)
    assert problem is not None and where in problem and position in problem, problem


@pytest.mark.parametrize('text,kind,ok', [
    ('CREATE INDEX CONCURRENTLY i ON t (a) WHERE (b IS NULL)', 'IndexStmt', True),
    ('CREATE INDEX i ON t (a) WHERE (b IS NULL); DELETE FROM t', 'IndexStmt', False),
    ('CREATE INDEX i ON t (a) WHERE (b -- )', 'IndexStmt', False),
    ('DROP INDEX CONCURRENTLY IF EXISTS "s"."i"', 'IndexStmt', False),
    ('DROP INDEX CONCURRENTLY IF EXISTS "s"."i"', None, True),
    ('EXPLAIN (FORMAT JSON) SELECT 1', 'ExplainStmt', True),
    ('EXPLAIN (FORMAT JSON) SELECT 1; COMMIT', 'ExplainStmt', False),
])
def test_the_statement_sent_is_exactly_one_of_its_kind(text, kind, ok):
    assert (ps.statement_error(text, kind) is None) is ok
