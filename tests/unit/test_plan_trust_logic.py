# -*- coding: utf-8 -*-
"""The decisions of plugins/module_utils/plan/plan_trust.py on plain data: what a plan's trusted entries say, what a stored
expression tree calls, and the verdict on each object the server resolved (tests/integration/test_plan_trust.py proves
the whole on the real cluster)."""

import pytest

import helpers

pt = helpers.load_module_utils('plan.plan_trust')


@pytest.mark.parametrize('text,kind,signature', [
    ('util.normalize(text)', 'function', 'util.normalize(text)'),
    ('  function util.f(integer, text)  ', 'function', 'util.f(integer, text)'),
    ('operator public.===(integer, integer)', 'operator', 'public.===(integer, integer)'),
    ('OPERATOR ===(int,int)', 'operator', '===(int,int)'),
    ('type public.citext', 'type', 'public.citext'),
])
def test_a_trusted_entry_says_its_kind_and_signature(text, kind, signature):
    assert pt.trusted_entry(text) == (kind, signature)


@pytest.mark.parametrize('entries,fragment', [
    ('util.f(text)', 'must be a list'),
    ([3], 'not 3'),
    (['util.normalize'], 'needs its argument types'),
    (['operator ==='], 'needs its argument types'),
    ([''], 'a trusted entry is a string'),
])
def test_a_malformed_trusted_list_is_refused_before_anything_connects(entries, fragment):
    errors = pt.trusted_errors(entries)
    assert len(errors) == 1 and fragment in errors[0], errors


# A piece of a pg_rewrite.ev_action as PostgreSQL 15 writes it.
TREE = ('({QUERY :jointree {FROMEXPR :quals {BOOLEXPR :boolop and :args ({OPEXPR :opno 3516 :opfuncid 3508 '
        ':opresulttype 16} {OPEXPR :opno 96 :opfuncid 65 :args ({FUNCEXPR :funcid 16404 :funcresulttype 23}) } '
        '{SCALARARRAYOPEXPR :opno 98 :opfuncid 67 :hashfuncid 0 :negfuncid 0} {ROWCOMPAREEXPR :rctype 1 :opnos (o 97 '
        '521) :opfamilies (o 1976 1976)} {AGGREF :aggfnoid 2803 :aggtype 20} {SQLVALUEFUNCTION :op 3 :type 1184})}} '
        ':sortClause ({SORTGROUPCLAUSE :tleSortGroupRef 1 :eqop 98 :sortop 664 :nulls_first false})})')


def test_the_tree_gives_every_function_and_operator_called_built_in_ones_included():
    references = pt.tree_references(TREE)
    # The operators' own functions (opfuncid) are reached through the operators, with their trust.
    assert references['functions'] == {16404, 2803}
    assert references['operators'] == {3516, 96, 98, 97, 521, 664}
    assert references['stable'] == ['SQLVALUEFUNCTION']
    assert pt.tree_references('') == dict(functions=set(), operators=set(), stable=[])


def function(oid, schema='pg_catalog', name='f', volatility='i'):
    return dict(oid=oid, schema=schema, name=name, signature='%s(integer)' % name, volatility=volatility)


@pytest.mark.parametrize('row,context,trusted,fragments', [
    (function(100), 'predicate', False, []),
    (function(100, volatility='s'), 'query', False, []),
    (function(100, volatility='s'), 'predicate', False, ['is STABLE; an index predicate may call only IMMUTABLE']),
    (function(100, volatility='v'), 'query', False, ['is VOLATILE; a baseline query may call only IMMUTABLE or '
                                                     'STABLE']),
    (function(3685, name='ts_rewrite', volatility='i'), 'check', False, ['runs SQL given as text']),
    (function(2923, name='table_to_xml', volatility='s'), 'query', False, ['reads whole relations']),
    (function(2943, name='txid_current', volatility='s'), 'query', False, ['assigns a transaction id']),
    # Built-in means pg_catalog AND an OID initdb gave it.
    (function(16500, schema='public', name='f'), 'predicate', False, ['is user-defined, and the plan does not trust']),
    (function(16500, schema='pg_catalog', name='f'), 'predicate', False, ['is user-defined']),
    (function(12500, schema='information_schema', name='f'), 'predicate', False, ['is user-defined']),
    (function(16500, schema='util'), 'predicate', True, []),
    (function(16500, schema='util', volatility='v'), 'check', True, ['is VOLATILE; a check expression may call only']),
])
def test_the_verdict_on_a_function(row, context, trusted, fragments):
    problems = pt.function_problems(row, context, trusted)
    assert len(problems) == len(fragments) and all(f in p for f, p in zip(fragments, problems)), problems


def test_a_planner_estimator_is_judged_for_trust_not_volatility():
    estimator = function(16600, schema='util', volatility='s')
    assert pt.function_problems(estimator, 'predicate', True, 'the estimator of operator x', False) == []
    assert 'user-defined' in pt.function_problems(estimator, 'predicate', False, 'via', False)[0]


def test_the_verdict_on_operators_types_and_relations():
    operator = dict(oid=16407, schema='public', signature='===(integer,integer)')
    assert 'user-defined' in pt.operator_problems(operator, False)[0]
    assert pt.operator_problems(operator, True) == [] and pt.operator_problems(dict(operator, oid=96, schema='pg_catalog'),
                                                                             False) == []
    base = dict(oid=16800, schema='public', signature='citext', typtype='b', element=0)
    assert 'user-defined base type' in pt.type_problems(base, False)[0]
    assert pt.type_problems(base, True) == []
    for typtype in ('e', 'd', 'c', 'r', 'm'):  # hold no code of their own: what they imply is judged instead
        assert pt.type_problems(dict(base, typtype=typtype), False) == []
    assert pt.type_problems(dict(base, element=16801), False) == []  # an array: its element type is judged
    table = dict(oid=16900, schema='public', name='"Job"', relkind='r')
    assert pt.relation_problems(table) == [] and pt.relation_problems(dict(table, relkind='v')) == []
    assert 'foreign table' in pt.relation_problems(dict(table, relkind='f'))[0]


def test_a_refusal_says_what_and_how_to_trust():
    message = pt.refusal_message('its where predicate', 'util.f(1)\n  = 1', ['function util.f(integer) is user-defined'])
    assert message.startswith('its where predicate `util.f(1) = 1` is refused: function util.f(integer) is user-defined.')
    assert 'trusted: ["util.normalize(text)"]' in message and 'nothing of it was run' in message


def test_what_postgresql_itself_refuses_is_said_without_the_trust_advice():
    message = pt.refusal_message('its where predicate', '"nope" IS NULL',
                                 [pt.REFUSED_BY_SERVER + 'column "nope" does not exist'])
    assert message == ('its where predicate `"nope" IS NULL` is refused by PostgreSQL: column "nope" does not exist; '
                       'nothing of it was run')
