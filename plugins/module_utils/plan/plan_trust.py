# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Plan SQL trusted only as far as PostgreSQL proves it.

A plan's index predicates, check expressions, baseline queries and parameter queries are text an operator wrote; the
names in it mean what the server resolves them to: an overloaded function, an operator (whose code is a function), an
implicit cast, a domain whose CHECK calls a function. Only the server knows, so only the server decides, and a list
of names to refuse cannot: the text is proven here before anything of it is evaluated, on live rows or not.

How the server's resolution is read: the text is stored as a temporary view and never run. CREATE VIEW parses,
resolves and rewrites it, as the real statement will be, but plans and executes nothing (unlike CREATE INDEX, whose
predicate check folds constant IMMUTABLE calls on PostgreSQL 16+, or EXPLAIN, which evaluates STABLE ones while
planning). Its stored rule gives two things: pg_depend, every object it references that PostgreSQL does not pin (all
user-defined ones: functions, operators, types and domains, relations, collations), and the stored expression tree,
every function and operator it calls, built-in ones included (pinned objects have no pg_depend rows). What those
objects imply is followed too: an operator's function, an aggregate's support functions, a domain's CHECK, a view's
own query, a row-level security policy, the element, base and sub-types of a type. Each is then judged:

- allowed: objects of pg_catalog with an OID below FirstNormalObjectId (16384), and user-defined objects that hold no
  code of their own (enum types, domains and composite, array and range types of allowed types whose CHECKs and
  support functions are allowed, collations, tables, partitioned tables, materialized views, sequences; a view whose
  own query is allowed);
- trusted: what the plan trusts by signature (plan key C(trusted), for example C(util.normalize(text)),
  C(operator public.===(integer,integer)), C(type public.citext)); what a trusted object implies is trusted with it;
- refused: anything else user-defined, a foreign table, and a short explicit list of built-ins that qualify by
  volatility but run SQL or code given as text (REFUSED_BUILTINS);
- volatility: every function a predicate or a check calls must be IMMUTABLE (PostgreSQL requires it of index
  predicates), a baseline query's at most STABLE.

The pure functions (trusted_entry, tree_references, function_problems, ...) take plain data, so tests/unit runs them
without a server; PlanTrust reads the catalog.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.plan.plan_sql import statement_error
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.statements import (
    fetch_dicts, sql_module,
)

FIRST_NORMAL_OBJECT_ID = 16384

# What each place of plan SQL may call, by pg_proc.provolatile.
VOLATILITY = dict(i='IMMUTABLE', s='STABLE', v='VOLATILE')
# A column default that is at most STABLE is evaluated once by ADD COLUMN and stored in the catalog (no rewrite).
ALLOWED_VOLATILITY = dict(predicate='i', check='i', query='is', column_default='is')
CONTEXT_NAMES = dict(predicate='an index predicate', check='a check expression', query='a baseline query',
                     column_default='a column default added to a live table')

# Built-ins of pg_catalog that are IMMUTABLE or STABLE (or reach no further than the volatility check would let
# them) and yet run SQL or code given as text, read whole tables or views behind a name given as a value, or assign a
# transaction id. The allowlist above is the boundary; this list closes what volatility does not.
_RUNS_SQL = 'runs SQL given as text'
_READS_NAMED = 'reads whole relations (views included, whose code runs) named by a value'
REFUSED_BUILTINS = dict(
    [(name, _RUNS_SQL) for name in ('query_to_xml', 'query_to_xmlschema', 'query_to_xml_and_xmlschema', 'cursor_to_xml',
                                    'cursor_to_xmlschema', 'ts_stat', 'ts_rewrite')]
    + [(name, _READS_NAMED) for name in ('table_to_xml', 'table_to_xmlschema', 'table_to_xml_and_xmlschema',
                                         'schema_to_xml', 'schema_to_xmlschema', 'schema_to_xml_and_xmlschema',
                                         'database_to_xml', 'database_to_xmlschema', 'database_to_xml_and_xmlschema')]
    + [(name, 'runs the input function (a domain\'s CHECK) of a type named by a value')
       for name in ('pg_input_is_valid', 'pg_input_error_info')]
    + [(name, 'assigns a transaction id') for name in ('txid_current', 'pg_current_xact_id')])

TRUST_KINDS = ('function', 'operator', 'type')
# A trusted entry: "[function |operator |type ]<signature>".
TRUSTED_ENTRY = re.compile(r'^\s*(?:(function|operator|type)\s+)?(\S.*?)\s*$', re.IGNORECASE | re.DOTALL)

# Fields of PostgreSQL's stored expression trees (nodeToString) that hold the OID of a function or an operator.
# An operator's own function (OpExpr's opfuncid) is reached through the operator, with the operator's trust.
TREE_FUNCTION_FIELDS = ('funcid', 'aggfnoid', 'winfnoid', 'hashfuncid', 'negfuncid', 'tsmhandler',
                        'startInRangeFunc', 'endInRangeFunc')
TREE_OPERATOR_FIELDS = ('opno', 'eqop', 'sortop')
TREE_OPERATOR_LISTS = ('opnos',)
_TREE_FIELD = re.compile(r':(%s) (\d+)\b' % '|'.join(TREE_FUNCTION_FIELDS + TREE_OPERATOR_FIELDS))
_TREE_LIST = re.compile(r':(%s) \(o((?: \d+)*)\)' % '|'.join(TREE_OPERATOR_LISTS))
# Nodes that call built-in code of a fixed volatility without naming a function: CURRENT_DATE, CURRENT_USER, ...
TREE_STABLE_NODES = ('SQLVALUEFUNCTION',)

PROBE_VIEW = 'pgzd_trust_probe'


# ---------------------------------------------------------------------------------------------------
# Plain data.
# ---------------------------------------------------------------------------------------------------

def trusted_entry(text):
    """(kind, signature) of one entry of a plan's C(trusted) list; ValueError saying what is wrong."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError('a trusted entry is a string such as "util.normalize(text)", "operator public.===(integer, '
                         'integer)" or "type public.citext", not %r' % (text,))
    match = TRUSTED_ENTRY.match(text)
    kind = (match.group(1) or 'function').lower()
    signature = match.group(2)
    if kind in ('function', 'operator') and not re.search(r'\(.*\)\s*$', signature, re.DOTALL):
        raise ValueError('trusted %s %r needs its argument types, as in %s' % (
            kind, signature, 'util.normalize(text)' if kind == 'function' else 'operator public.===(integer, integer)'))
    return kind, signature


def trusted_errors(entries):
    """What is wrong with a plan's C(trusted) list on its own (no server): each problem a sentence."""
    if entries is None:
        return []
    if not isinstance(entries, list):
        return ['trusted must be a list of signatures such as ["util.normalize(text)"]']
    errors = []
    for entry in entries:
        try:
            trusted_entry(entry)
        except ValueError as error:
            errors.append(str(error))
    return errors


def tree_references(text):
    """dict(functions, operators, stable): the OIDs of the functions and operators a stored expression tree (the text
    of a pg_node_tree: pg_rewrite.ev_action, pg_constraint.conbin, pg_policy.polqual) calls, built-in ones included,
    and the STABLE nodes it has that name no function (CURRENT_TIMESTAMP)."""
    references = dict(functions=set(), operators=set(),
                      stable=sorted(set(node for node in TREE_STABLE_NODES if '{%s ' % node in (text or ''))))
    for field, oid in _TREE_FIELD.findall(text or ''):
        if int(oid):
            references['functions' if field in TREE_FUNCTION_FIELDS else 'operators'].add(int(oid))
    for dummy_field, oids in _TREE_LIST.findall(text or ''):
        references['operators'].update(int(oid) for oid in oids.split() if int(oid))
    return references


def builtin(row):
    """An object of pg_catalog that initdb made (OID below FirstNormalObjectId)."""
    return row['schema'] == 'pg_catalog' and int(row['oid']) < FIRST_NORMAL_OBJECT_ID


def function_problems(row, context, trusted, via=None, volatility_matters=True):
    """Why a plan's text may not call the function C(row) (a FUNCTIONS_QUERY row) in C(context), as sentences.

    C(trusted): the function is trusted by the plan, or implied by a trusted object. C(via): the object that calls it
    (an operator, an aggregate, a domain), for the message. C(volatility_matters) is false for a function PostgreSQL
    calls only while planning (an operator's selectivity estimator)."""
    what = 'function %s%s' % (row['signature'], ' (%s)' % via if via else '')
    problems = []
    if builtin(row):
        if row['name'] in REFUSED_BUILTINS:
            problems.append('%s %s, which plan SQL may never do' % (what, REFUSED_BUILTINS[row['name']]))
    elif not trusted:
        problems.append('%s is user-defined, and the plan does not trust it' % what)
    allowed = ALLOWED_VOLATILITY[context]
    if volatility_matters and row['volatility'] not in allowed:
        problems.append('%s is %s; %s may call only %s functions' % (
            what, VOLATILITY.get(row['volatility'], row['volatility']), CONTEXT_NAMES[context],
            ' or '.join(VOLATILITY[v] for v in allowed)))
    return problems


def operator_problems(row, trusted, via=None):
    if builtin(row) or trusted:
        return []
    return ['operator %s%s is user-defined, and the plan does not trust it'
            % (row['signature'], ' (%s)' % via if via else '')]


# Types that hold no code of their own: what they imply (base, element, sub-types, CHECKs) is judged instead.
CODE_FREE_TYPTYPES = dict(e='an enum', d='a domain', c='a composite type', r='a range type', m='a multirange type')


def type_problems(row, trusted, via=None):
    """Why the type C(row) (a TYPES_QUERY row) may not be used, or []: a user-defined base type has input, output and
    comparison functions of its own (C code)."""
    if builtin(row) or trusted or row['typtype'] in CODE_FREE_TYPTYPES or row['element']:
        return []
    return ['type %s%s is a user-defined base type (its input, output and comparison functions are its own code), and '
            'the plan does not trust it' % (row['signature'], ' (%s)' % via if via else '')]


RELATION_KINDS = dict(r='table', p='partitioned table', m='materialized view', S='sequence', v='view', c='composite type',
                      f='foreign table', i='index', I='partitioned index', t='TOAST table')


def relation_problems(row, via=None):
    if builtin(row) or row['relkind'] in ('r', 'p', 'm', 'S', 'v', 'c', 'i', 'I'):
        return []
    return ['%s %s%s: reading it runs code outside this database\'s proof (its foreign-data wrapper), so a plan may '
            'not read it' % (RELATION_KINDS.get(row['relkind'], 'relation of kind %s' % row['relkind']), row['name'],
                             ' (%s)' % via if via else '')]


REFUSED_BY_SERVER = 'PostgreSQL refuses it: '


def refusal_message(what, text, problems):
    """The sentence an operator reads when plan SQL is refused: by PostgreSQL itself (it does not resolve: a missing
    column, a type mismatch), or by what it reaches."""
    text = ' '.join(text.split())
    if all(problem.startswith(REFUSED_BY_SERVER) for problem in problems):
        return '%s `%s` is refused by PostgreSQL: %s; nothing of it was run' % (
            what, text, '; '.join(problem[len(REFUSED_BY_SERVER):] for problem in problems))
    return ('%s `%s` is refused: %s. Plan SQL may use the built-ins of pg_catalog (IMMUTABLE ones in predicates and '
            'checks, at most STABLE ones in baseline queries) and what the plan trusts by signature (trusted: '
            '["util.normalize(text)"], docs/trust-and-ledger.md, "What plan SQL may reference"); nothing of it was run'
            % (what, text, '; '.join(problems)))


# ---------------------------------------------------------------------------------------------------
# The catalog.
# ---------------------------------------------------------------------------------------------------

FUNCTIONS_QUERY = """
SELECT p.oid::bigint AS oid, n.nspname::text AS schema, p.proname::text AS name, p.oid::pg_catalog.regprocedure::text
       AS signature, p.provolatile::text AS volatility, p.prokind::text AS kind,
       ARRAY(SELECT f::bigint FROM pg_catalog.pg_aggregate a,
                   unnest(ARRAY[a.aggtransfn, a.aggfinalfn, a.aggcombinefn, a.aggserialfn, a.aggdeserialfn,
                                a.aggmtransfn, a.aggminvtransfn, a.aggmfinalfn]::pg_catalog.oid[]) AS f
             WHERE a.aggfnoid = p.oid AND f <> 0) AS support
FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
WHERE p.oid = ANY(%(oids)s::pg_catalog.oid[])
"""

OPERATORS_QUERY = """
SELECT o.oid::bigint AS oid, n.nspname::text AS schema, o.oid::pg_catalog.regoperator::text AS signature,
       o.oprcode::pg_catalog.oid::bigint AS code, o.oprrest::pg_catalog.oid::bigint AS restrict,
       o.oprjoin::pg_catalog.oid::bigint AS "join"
FROM pg_catalog.pg_operator o JOIN pg_catalog.pg_namespace n ON n.oid = o.oprnamespace
WHERE o.oid = ANY(%(oids)s::pg_catalog.oid[])
"""

TYPES_QUERY = """
SELECT t.oid::bigint AS oid, n.nspname::text AS schema, t.oid::pg_catalog.regtype::text AS signature,
       t.typtype::text AS typtype, t.typbasetype::bigint AS base,
       CASE WHEN t.typcategory = 'A' THEN t.typelem::bigint ELSE 0 END AS element,
       t.typrelid::bigint AS relation,
       (SELECT ARRAY[r.rngtypid::bigint, r.rngsubtype::bigint, r.rngcanonical::pg_catalog.oid::bigint,
                     r.rngsubdiff::pg_catalog.oid::bigint]
        FROM pg_catalog.pg_range r WHERE r.rngtypid = t.oid OR r.rngmultitypid = t.oid) AS range,
       ARRAY(SELECT con.oid::bigint FROM pg_catalog.pg_constraint con WHERE con.contypid = t.oid) AS constraints
FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
WHERE t.oid = ANY(%(oids)s::pg_catalog.oid[])
"""

RELATIONS_QUERY = """
SELECT c.oid::bigint AS oid, n.nspname::text AS schema, c.oid::pg_catalog.regclass::text AS name,
       c.relkind::text AS relkind, c.relrowsecurity AS row_security, c.relnamespace = pg_catalog.pg_my_temp_schema()
       AS temporary,
       ARRAY(SELECT r.oid::bigint FROM pg_catalog.pg_rewrite r WHERE r.ev_class = c.oid) AS rules,
       ARRAY(SELECT pol.oid::bigint FROM pg_catalog.pg_policy pol WHERE pol.polrelid = c.oid) AS policies,
       ARRAY(SELECT a.atttypid::bigint FROM pg_catalog.pg_attribute a
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS column_types
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = ANY(%(oids)s::pg_catalog.oid[])
"""

# Every object a stored rule, constraint or policy references that PostgreSQL does not pin, and its stored trees.
DEPENDENCIES_QUERY = """
SELECT DISTINCT d.refclassid::pg_catalog.regclass::text AS catalog, d.refobjid::bigint AS oid
FROM pg_catalog.pg_depend d
WHERE d.classid = %(catalog)s::pg_catalog.regclass AND d.objid = ANY(%(oids)s::pg_catalog.oid[]) AND d.deptype = 'n'
"""

TREES = dict(
    pg_rewrite='SELECT ev_action::text AS tree FROM pg_catalog.pg_rewrite WHERE oid = ANY(%(oids)s::pg_catalog.oid[])',
    pg_constraint='SELECT conbin::text AS tree FROM pg_catalog.pg_constraint WHERE oid = ANY(%(oids)s::pg_catalog.oid[])',
    pg_policy='SELECT concat_ws(\' \', polqual::text, polwithcheck::text) AS tree FROM pg_catalog.pg_policy '
              'WHERE oid = ANY(%(oids)s::pg_catalog.oid[])',
)

RESOLVE = dict(function='pg_catalog.regprocedure', operator='pg_catalog.regoperator', type='pg_catalog.regtype')


class PlanTrust(object):
    """Proves plan SQL by the server's resolution, on a connection of a module (autocommit or in a transaction the
    caller opened; every probe runs in a savepoint or a transaction of its own, rolled back).

    C(trusted) is the plan's list of trusted signatures. Proven texts are remembered (proven()), so the statements
    that carry them can check, right before they are sent, that nothing unproven is in them.
    """

    def __init__(self, cursor, trusted=()):
        self.cursor = cursor
        self.sql = sql_module()
        self.trusted_entries = list(trusted or [])
        self._trusted = None
        self._proven = set()

    # -- what the plan trusts ------------------------------------------------------------------------

    def trusted(self):
        """dict(kind: {oid: signature as the server writes it}) of the plan's trusted entries, and the problems of
        entries the server cannot resolve. Resolved once."""
        if self._trusted is None:
            resolved = dict((kind, {}) for kind in TRUST_KINDS)
            problems = []
            for entry in self.trusted_entries:
                try:
                    kind, signature = trusted_entry(entry)
                except ValueError as error:
                    problems.append(str(error))
                    continue
                row, error = self._savepoint(lambda: fetch_dicts(self.cursor, (
                    'SELECT %%(signature)s::%s::pg_catalog.oid::bigint AS oid, %%(signature)s::%s::text AS written'
                    % (RESOLVE[kind], RESOLVE[kind])), dict(signature=signature))[0])
                if error:
                    problems.append('trusted %s "%s" is not one PostgreSQL knows here: %s' % (kind, signature, error))
                else:
                    resolved[kind][row['oid']] = row['written']
            self._trusted = (resolved, problems)
        return self._trusted

    def trusted_lines(self):
        """What the plan trusts, as the preflight, check mode, the planned SQL file and the report show it."""
        resolved, problems = self.trusted()
        lines = ['%s %s' % (kind, signature) for kind in TRUST_KINDS for signature in sorted(resolved[kind].values())]
        return lines + ['unresolved: %s' % problem for problem in problems]

    # -- proofs ---------------------------------------------------------------------------------------

    def proven(self, context, text):
        return (context, text) in self._proven

    def also_proven(self, context, text, original, force=False):
        """C(text), the server's own rendering of the proven C(original) (pg_get_expr of what it stored), is proven
        too; with C(force), C(text) is proven by the caller's own proofs of its parts."""
        if force or (context, original) in self._proven:
            self._proven.add((context, text))

    def prove_expression(self, context, table, text, value=False):
        """Problems of C(text), a predicate or check expression on C(table) (a table of the session's temporary schema:
        the caller's empty copy of the real one, so the expression resolves against its columns), or []. With
        C(value), C(text) is any expression, not a condition (an index's key expression)."""
        sql = self.sql
        view = sql.SQL('CREATE TEMPORARY VIEW {} AS SELECT {} FROM pg_temp.{}{}').format(
            sql.Identifier(PROBE_VIEW), sql.SQL('(%s)' % text if value else '1'), sql.Identifier(table),
            sql.SQL('' if value else ' WHERE (%s)' % text))
        return self._prove(context, text, view)

    def prove_query(self, text, context='query'):
        """Problems of C(text), a whole query (a baseline query with its parameters written as typed NULLs, or a
        parameter query), or []."""
        view = self.sql.SQL('CREATE TEMPORARY VIEW {} AS {}').format(self.sql.Identifier(PROBE_VIEW),
                                                                     self.sql.SQL(text))
        return self._prove(context, text, view)

    def _prove(self, context, text, view):
        if (context, text) in self._proven:
            return []
        resolved, problems = self.trusted()
        if problems:
            return ['the plan\'s trusted list does not resolve (%s)' % '; '.join(problems)]
        statement = view.as_string(self.cursor.connection)
        problem = statement_error(statement, 'ViewStmt')
        if problem:
            return ['refusing to send %s: %s' % (statement, problem)]
        outcome, error = self._savepoint(lambda: self._judge_view(statement, context, resolved))
        if error:
            return [REFUSED_BY_SERVER + error]
        if not outcome:
            self._proven.add((context, text))
        return outcome

    def _savepoint(self, work):
        """(work(), None), or (None, the driver's error) with its effects rolled back. In a transaction block of the
        caller's, or in one of its own."""
        own = not self._in_transaction()
        self.cursor.execute('BEGIN READ WRITE' if own else 'SAVEPOINT pgzd_trust')
        try:
            outcome = work()
        except Exception as error:  # psycopg2 and psycopg 3 errors share no importable base here
            self.cursor.execute('ROLLBACK' if own else 'ROLLBACK TO SAVEPOINT pgzd_trust')
            return None, ' '.join((str(error).strip().splitlines() or [''])[0].split())
        self.cursor.execute('ROLLBACK' if own else 'ROLLBACK TO SAVEPOINT pgzd_trust')
        return outcome, None

    def _in_transaction(self):
        status = getattr(self.cursor.connection, 'info', None)
        status = getattr(status, 'transaction_status', None)
        if status is None:  # psycopg2 before 2.8: get_transaction_status()
            status = self.cursor.connection.get_transaction_status()
        return int(status) != 0  # IDLE

    def _judge_view(self, statement, context, resolved):
        self.cursor.execute(statement)
        rule = fetch_dicts(self.cursor, "SELECT r.oid::bigint AS oid FROM pg_catalog.pg_rewrite r "
                                        "WHERE r.ev_class = %(view)s::pg_catalog.regclass",
                           dict(view='pg_temp.%s' % PROBE_VIEW))
        return self._closure([('pg_rewrite', rule[0]['oid'], None, True, False)], context, resolved)

    def _closure(self, start, context, resolved):
        """Judge every object C(start) reaches. Each pending item: (catalog, oid, via, volatility matters, trusted by
        implication)."""
        pending, seen, problems = list(start), set(), []
        while pending:
            batch, pending = pending, []
            grouped = {}
            for catalog, oid, via, volatile, implied in batch:
                # Reached by another path, an object is judged again: a function the text calls by name needs trust
                # of its own even when a trusted operator implies it too.
                if (catalog, oid, volatile, implied) in seen or not oid:
                    continue
                seen.add((catalog, oid, volatile, implied))
                grouped.setdefault(catalog, []).append((oid, via, volatile, implied))
            for catalog, items in sorted(grouped.items()):
                judged, more = self._judge(catalog, items, context, resolved)
                problems.extend(judged)
                pending.extend(more)
        return sorted(set(problems), key=problems.index)

    def _rows(self, query, items):
        return dict((row['oid'], row) for row in fetch_dicts(self.cursor, query, dict(oids=[i[0] for i in items])))

    def _judge(self, catalog, items, context, resolved):
        """(problems, more items to judge) of the objects C(items) of C(catalog)."""
        problems, more = [], []
        if catalog in TREES:
            for oid, via, volatile, implied in items:
                for row in fetch_dicts(self.cursor, DEPENDENCIES_QUERY, dict(catalog=catalog, oids=[oid])):
                    more.append((row['catalog'], row['oid'], via, True, implied))
                for row in fetch_dicts(self.cursor, TREES[catalog], dict(oids=[oid])):
                    references = tree_references(row['tree'])
                    if references['stable'] and 's' not in ALLOWED_VOLATILITY[context]:
                        problems.append('it uses CURRENT_DATE, CURRENT_TIMESTAMP, CURRENT_USER or another SQL value '
                                        'function%s, which is STABLE; %s may call only IMMUTABLE functions'
                                        % (' (%s)' % via if via else '', CONTEXT_NAMES[context]))
                    more.extend(('pg_proc', f, via, True, implied) for f in references['functions'])
                    more.extend(('pg_operator', o, via, True, implied) for o in references['operators'])
        elif catalog == 'pg_proc':
            rows = self._rows(FUNCTIONS_QUERY, items)
            for oid, via, volatile, implied in items:
                row = rows[oid]
                trusted = implied or oid in resolved['function']
                problems.extend(function_problems(row, context, trusted, via, volatile))
                more.extend(('pg_proc', f, 'support function of aggregate %s' % row['signature'], True,
                             trusted or builtin(row)) for f in row['support'])
        elif catalog == 'pg_operator':
            rows = self._rows(OPERATORS_QUERY, items)
            for oid, via, volatile, implied in items:
                row = rows[oid]
                trusted = implied or oid in resolved['operator']
                problems.extend(operator_problems(row, trusted, via))
                through = 'the code of operator %s' % row['signature']
                more.append(('pg_proc', row['code'], through, True, trusted or builtin(row)))
                for estimator in (row['restrict'], row['join']):
                    more.append(('pg_proc', estimator, 'the estimator of operator %s' % row['signature'], False,
                                 trusted or builtin(row)))
        elif catalog == 'pg_type':
            rows = self._rows(TYPES_QUERY, items)
            for oid, via, volatile, implied in items:
                row = rows[oid]
                trusted = implied or oid in resolved['type'] or builtin(row)
                problems.extend(type_problems(row, trusted, via))
                if trusted:
                    continue
                through = '%s %s' % (CODE_FREE_TYPTYPES.get(row['typtype'], 'type'), row['signature'])
                more.extend(('pg_type', t, through, True, False) for t in (row['base'], row['element']))
                if row['range']:
                    range_type, subtype, canonical, subdiff = row['range']
                    more.extend([('pg_type', range_type, through, True, False), ('pg_type', subtype, through, True, False),
                                 ('pg_proc', canonical, through, True, False), ('pg_proc', subdiff, through, False, False)])
                more.extend(('pg_constraint', c, 'the CHECK of %s' % through, True, False) for c in row['constraints'])
                if row['relation']:
                    more.append(('pg_class:columns', row['relation'], through, True, False))
        elif catalog == 'pg_class:columns':
            # A composite type (of a table, or a type of its own): comparing or printing its values runs the code of
            # its columns' types.
            rows = self._rows(RELATIONS_QUERY, items)
            for oid, via, volatile, implied in items:
                more.extend(('pg_type', t, via, True, implied) for t in rows[oid]['column_types'])
        elif catalog == 'pg_class':
            rows = self._rows(RELATIONS_QUERY, items)
            for oid, via, volatile, implied in items:
                row = rows[oid]
                if row['temporary'] or builtin(row):
                    continue
                problems.extend(relation_problems(row, via))
                through = '%s %s' % (RELATION_KINDS.get(row['relkind'], 'relation'), row['name'])
                if row['relkind'] == 'v':
                    more.extend(('pg_rewrite', r, 'the query of ' + through, True, implied) for r in row['rules'])
                if row['row_security']:
                    more.extend(('pg_policy', p, 'a row-level security policy of ' + through, True, implied)
                                for p in row['policies'])
        elif catalog not in ('pg_collation', 'pg_namespace'):
            for oid, via, volatile, implied in items:
                row = fetch_dicts(self.cursor, 'SELECT pg_catalog.pg_describe_object(%(catalog)s::pg_catalog.regclass, '
                                               '%(oid)s, 0) AS description', dict(catalog=catalog, oid=oid))[0]
                if oid >= FIRST_NORMAL_OBJECT_ID and not implied:
                    problems.append('%s%s is user-defined, and plan SQL may not reference it' % (
                        row['description'], ' (%s)' % via if via else ''))
        return problems, more
