# -*- coding: utf-8 -*-
"""Unit tests of the refusal rules (refusal_rules, no server): each rule's predicate on catalog facts, refused and
accepted, the versions a rule holds for, the messages, the facts the index runner gives each step of a decision
(online_index.step_facts: the index a drop drops, after a swap too), the plan-wide rule on the names a plan creates,
and the namespaces of constraint names. tests/integration/test_refusal_rules.py proves each rule against PostgreSQL."""

import pytest

import helpers
from test_online_index_logic import existing, spec
from test_partition_steps import ev_spec, partition_index, tree

rules = helpers.load_module_utils('plan.refusal_rules')
index_decisions = helpers.load_module_utils('kinds.index_decisions')
online_index = helpers.load_module_utils('kinds.online_index')

PG15, PG18 = 150018, 180000


def relation(name='Job', schema='public', relkind='r', persistence='p', system=False, owned=True, owner='app',
             user='app', partition=False):
    row = dict(schema=schema, name=name, oid=16500, relkind=relkind, persistence=persistence, system=system,
               owned=owned, owner=owner, user=user, partition=partition)
    return rules.relation_facts([row])[(schema, name)]


def key(name, columns, valid=True, immediate=True, partial=False, expressions=False):
    return dict(name=name, key_columns=list(columns), valid=valid, immediate=immediate, partial=partial,
                expressions=expressions)


def foreign_key(**extra):
    """The facts of ADD CONSTRAINT ... FOREIGN KEY (classId) REFERENCES public.Class (id), which PostgreSQL accepts."""
    facts = dict(relation=relation('Job'), referenced=relation('Class'), ref_columns=['id'],
                 keys=[key('Class_pkey', ['id'])], planned_key=False, incomparable=[], missing_references=[],
                 generated=[], on_delete='NO ACTION', on_update='NO ACTION')
    facts.update(extra)
    return facts


def column(name='teacherId', **extra):
    facts = dict(name=name, generated='', identity='', references_privilege=True, in_primary_key=False,
                 in_replica_identity=False, parent_not_null=False)
    facts.update(extra)
    return facts


def index(name='public.Job_status_idx', constraint=None, referenced_by=(), attached_to=None):
    return dict(name=name, constraint=constraint, referenced_by=list(referenced_by), attached_to=attached_to)


def on_only(keys, columns=('id',), unique=True):
    return dict(relation=relation('ev', relkind='p'), unique=unique, columns=list(columns), partition_key=keys)


# Per rule: (statement, facts PostgreSQL refuses, the same statement on facts it accepts, a fragment of the reason).
CASES = {
    'system-catalog': (rules.CREATE_INDEX, dict(relation=relation('pg_description', 'pg_catalog', system=True)),
                       dict(relation=relation()), 'pg_catalog.pg_description is a system catalog'),
    'table-owner': (rules.ADD_CHECK, dict(relation=relation(owned=False, owner='postgres')), dict(relation=relation()),
                    'the current user app does not own public.Job (its owner is postgres)'),
    'index-relkind': (rules.CREATE_INDEX, dict(relation=relation('v', relkind='v')),
                      dict(relation=relation('mv', relkind='m')), 'public.v is a view: indexes go on tables'),
    'unique-key-operator-class': (rules.CREATE_INDEX, dict(relation=relation(), no_btree_class=[
        dict(name='payload', type='json')]), dict(relation=relation(), no_btree_class=[]), 'payload (json) has none'),
    'constraint-relkind': (rules.ADD_CHECK, dict(relation=relation('mv', relkind='m')),
                           dict(relation=relation('ft', relkind='f')),
                           'public.mv is a materialized view: a check or NOT NULL goes on a table'),
    'key-constraint-relkind': (rules.ADD_FOREIGN_KEY, foreign_key(relation=relation('ft', relkind='f')), foreign_key(),
                               'public.ft is a foreign table: unique constraints and foreign keys go on tables'),
    'unique-using-index-on-partitioned-table': (rules.ADD_UNIQUE, dict(relation=relation('ev', relkind='p')),
                                                dict(relation=relation()), 'public.ev is a partitioned table'),
    'unique-index-partition-key': (rules.CREATE_INDEX_ON_ONLY, on_only(['at']), on_only(['at'], ['id', 'at']),
                                   'its key columns (id) must include at'),
    'foreign-key-not-valid-on-partitioned-table': (
        rules.ADD_FOREIGN_KEY, foreign_key(relation=relation('ev', relkind='p')), foreign_key(),
        'public.ev is a partitioned table, and the server is PostgreSQL 15.'),
    'foreign-key-referenced-relkind': (rules.ADD_FOREIGN_KEY, foreign_key(referenced=relation('mv', relkind='m')),
                                       foreign_key(referenced=relation('ev', relkind='p')),
                                       'the referenced relation public.mv is a materialized view'),
    'foreign-key-referenced-system-catalog': (
        rules.ADD_FOREIGN_KEY, foreign_key(referenced=relation('pg_namespace', 'pg_catalog', system=True)),
        foreign_key(), 'pg_catalog.pg_namespace is a system catalog'),
    'foreign-key-persistence': (rules.ADD_FOREIGN_KEY, foreign_key(referenced=relation('Class', persistence='u')),
                                foreign_key(relation=relation(persistence='u')),
                                'constraints on permanent tables may reference only permanent tables, and '
                                'public.Class is unlogged'),
    'foreign-key-referenced-key': (rules.ADD_FOREIGN_KEY, foreign_key(keys=[key('Class_id_key', ['id'], partial=True)]),
                                   foreign_key(keys=[], planned_key=True), 'Class_id_key (id), partial'),
    'foreign-key-deferrable-key': (rules.ADD_FOREIGN_KEY, foreign_key(keys=[key('Class_id_key', ['id'],
                                                                                immediate=False)]),
                                   foreign_key(keys=[key('a', ['id'], immediate=False), key('b', ['id'])]),
                                   'is DEFERRABLE (Class_id_key)'),
    'foreign-key-column-types': (rules.ADD_FOREIGN_KEY, foreign_key(incomparable=['column "classId" (text) ...']),
                                 foreign_key(), 'the key columns cannot be compared'),
    'foreign-key-references-privilege': (rules.ADD_FOREIGN_KEY, foreign_key(missing_references=['id']), foreign_key(),
                                         'no REFERENCES privilege on public.Class column(s) id'),
    'foreign-key-generated-column-action': (
        rules.ADD_FOREIGN_KEY, foreign_key(generated=['classId'], on_delete='SET NULL'),
        foreign_key(generated=['classId'], on_delete='CASCADE'), 'ON DELETE SET NULL with generated column(s) classId'),
    'drop-not-null-primary-key': (rules.DROP_NOT_NULL, dict(relation=relation(), column=column(in_primary_key=True)),
                                  dict(relation=relation(), column=column()), 'is in its primary key'),
    'drop-not-null-replica-identity': (rules.DROP_NOT_NULL,
                                       dict(relation=relation(), column=column(in_replica_identity=True)),
                                       dict(relation=relation(), column=column()), 'used as its replica identity'),
    'drop-not-null-identity': (rules.DROP_NOT_NULL, dict(relation=relation(), column=column(identity='a')),
                               dict(relation=relation(), column=column()), 'is an identity column'),
    'drop-not-null-partition': (rules.DROP_NOT_NULL, dict(relation=relation(), column=column(parent_not_null=True)),
                                dict(relation=relation(), column=column()), 'NOT NULL in its parent table'),
    'drop-inherited-constraint': (rules.DROP_CONSTRAINT, dict(relation=relation(), constraint=dict(name='c',
                                                                                                   local=False)),
                                  dict(relation=relation(), constraint=dict(name='c', local=True)),
                                  'is inherited from its parent table'),
    'drop-index-of-constraint': (rules.DROP_INDEX, dict(relation=relation(), index=index(constraint='Job_pkey')),
                                 dict(relation=relation(), index=index()), 'backs constraint "Job_pkey"'),
    'drop-with-dependent-foreign-keys': (rules.DROP_INDEX, dict(relation=relation(), index=index(),
                                                                dependents=['Item_job_fkey']),
                                         dict(relation=relation(), index=index(referenced_by=['Item_job_fkey'])),
                                         'foreign key(s) Item_job_fkey depend on index public.Job_status_idx'),
    'drop-attached-index': (rules.DROP_INDEX, dict(relation=relation(), index=index(attached_to='public.ev_idx')),
                            dict(relation=relation(), index=index()), 'attached to partitioned index public.ev_idx'),
    'plan-names-unique': (rules.CREATE_INDEX, dict(name='public.x', created_by=['index "a"', 'index "b"']),
                          dict(name='public.x', created_by=['index "a"']), 'creates relation "public.x" twice'),
}


def test_every_rule_has_a_case_here_and_an_id_of_its_own():
    assert sorted(CASES) == sorted(rule.id for rule in rules.RULES)
    assert len(rules.RULES_BY_ID) == len(rules.RULES)
    for rule in rules.RULES:
        assert rule.statements and set(rule.statements) <= set(rules.STATEMENTS), rule.id
        assert rule.reason and rule.advice, rule.id


@pytest.mark.parametrize('rule_id', sorted(CASES))
def test_each_rule_refuses_what_postgresql_refuses_and_names_its_reason_and_what_to_do(rule_id):
    statement, refused, accepted, fragment = CASES[rule_id]
    rule = rules.RULES_BY_ID[rule_id]
    found = rules.refusals(statement, refused, PG15, rules=(rule,))
    assert len(found) == 1, found
    message = found[0][1]
    assert fragment in message and '[rule %s]' % rule_id in message and 'What to do: ' in message, message
    assert message.startswith(statement + ' would be refused: ')
    assert rules.refusals(statement, accepted, PG15, rules=(rule,)) == []


@pytest.mark.parametrize('rule_id', sorted(CASES))
def test_a_rule_is_about_its_statements_only(rule_id):
    statement, refused, dummy_, dummy_ = CASES[rule_id]
    rule = rules.RULES_BY_ID[rule_id]
    for other in rules.STATEMENTS:
        if other not in rule.statements:
            assert rules.refusals(other, refused, PG15, rules=(rule,)) == [], other


def test_postgresql_18_accepts_a_not_valid_foreign_key_on_a_partitioned_table():
    facts = foreign_key(relation=relation('ev', relkind='p'))
    ids = lambda version: [rule.id for rule, dummy_ in rules.refusals(rules.ADD_FOREIGN_KEY, facts, version)]
    assert ids(PG15) == ['foreign-key-not-valid-on-partitioned-table']
    assert ids(140000) == ids(170005) == ids(PG15)
    assert ids(PG18) == ids(180001) == []
    # Below 18 the refusal names the server's version and the first that accepts it.
    (found,) = rules.refusals(rules.ADD_FOREIGN_KEY, facts, 170010)
    assert 'public.ev is a partitioned table, and the server is PostgreSQL 17.10: NOT VALID foreign keys on ' \
           'partitioned tables need 18' in found[1], found[1]
    assert 'or migrate on PostgreSQL 18 or later' in found[1]
    (found,) = rules.refusals(rules.ADD_FOREIGN_KEY, facts)
    assert 'the server is PostgreSQL older than 18' in found[1], found[1]


def test_a_key_counts_with_its_key_columns_only_in_any_order():
    two = foreign_key(ref_columns=['name', 'grade'], keys=[key('Class_name_grade_key', ['grade', 'name'])])
    assert rules.refusals(rules.ADD_FOREIGN_KEY, two, PG15) == []
    # An index (name) INCLUDE (grade) is a key of (name), not of (name, grade): its key_columns hold name only.
    include = foreign_key(ref_columns=['name', 'grade'], keys=[key('Class_name_key', ['name'])])
    (found,) = rules.refusals(rules.ADD_FOREIGN_KEY, include, PG15)
    assert found[0].id == 'foreign-key-referenced-key' and 'INCLUDE columns are not key columns' in found[1]
    assert rules.refusals(rules.ADD_FOREIGN_KEY, foreign_key(ref_columns=['name'], keys=[key('k', ['name'])]),
                          PG15) == []


@pytest.mark.parametrize('keys, reason', [
    ([key('k', ['id'], valid=False)], 'k (id), INVALID'),
    ([key('k', ['id'], expressions=True)], 'k (id), on expressions'),
    ([], 'its unique keys: none'),
])
def test_a_key_that_is_invalid_partial_or_on_expressions_does_not_count(keys, reason):
    (found,) = rules.refusals(rules.ADD_FOREIGN_KEY, foreign_key(keys=keys), PG15)
    assert found[0].id == 'foreign-key-referenced-key' and reason in found[1]


@pytest.mark.parametrize('mine, theirs, refused', [
    ('p', 'p', False), ('p', 'u', True), ('p', 't', True), ('u', 'p', False), ('u', 'u', False), ('u', 't', True),
    ('t', 't', False), ('t', 'p', True),
])
def test_persistence_of_both_tables(mine, theirs, refused):
    facts = foreign_key(relation=relation(persistence=mine), referenced=relation('Class', persistence=theirs))
    assert bool(rules.refusals(rules.ADD_FOREIGN_KEY, facts, PG15)) is refused


@pytest.mark.parametrize('option, action, refused', [
    ('on_update', 'CASCADE', True), ('on_update', 'SET NULL', True), ('on_update', 'SET DEFAULT', True),
    ('on_update', 'RESTRICT', False), ('on_delete', 'CASCADE', False), ('on_delete', 'SET DEFAULT', True),
])
def test_referential_actions_that_would_write_a_generated_column(option, action, refused):
    facts = foreign_key(generated=['classId'], **{option: action})
    assert bool(rules.refusals(rules.ADD_FOREIGN_KEY, facts, PG15)) is refused
    assert rules.refusals(rules.ADD_FOREIGN_KEY, foreign_key(**{option: action}), PG15) == []


def test_a_unique_index_on_a_partitioned_table_covers_every_level_and_no_expression():
    (found,) = rules.refusals(rules.CREATE_INDEX_ON_ONLY, on_only([None]), PG15)
    assert 'partitioned by an expression' in found[1]
    assert rules.refusals(rules.CREATE_INDEX_ON_ONLY, on_only(['at'], unique=False), PG15) == []


def test_the_messages_name_the_subject_and_every_rule_that_refuses():
    facts = dict(relation=relation('pg_description', 'pg_catalog', relkind='r', system=True, owned=False,
                                   owner='postgres'))
    lines = rules.refusal_messages([('index "pg_catalog.x"', rules.CREATE_INDEX, facts)], PG15)
    assert len(lines) == 2 and all(line.startswith('index "pg_catalog.x": CREATE INDEX CONCURRENTLY would be '
                                                   'refused: ') for line in lines)
    assert '[rule system-catalog]' in lines[0] and '[rule table-owner]' in lines[1]
    # A rule that refuses several statements of one subject says so once, at the first.
    table = dict(relation=relation(owned=False))
    lines = rules.refusal_messages([('check "c"', rules.ADD_CHECK, table), ('check "c"', rules.VALIDATE, table),
                                    ('check "d"', rules.VALIDATE, table)], PG15)
    assert [line.split(' would')[0] for line in lines] == [
        'check "c": ' + rules.ADD_CHECK, 'check "d": ' + rules.VALIDATE]


def test_names_created_twice_in_a_schema_are_refused_and_one_entry_may_name_a_name_twice():
    created = [('public', 'ev_idx_ev_2024', 'index "ev_idx" of public.ev'),
               ('public', 'ev_idx_ev_2024', 'index "ev_idx_ev_2024" of public.Job'),
               ('other', 'ev_idx_ev_2024', 'index "ev_idx_ev_2024" of other.Job'),
               ('public', 'Job_idx', 'index "Job_idx" of public.Job'), ('public', 'Job_idx', 'index "Job_idx" of public.Job')]
    (line,) = rules.name_clash_messages(created, PG15)
    assert line.startswith('relation "public.ev_idx_ev_2024": ') and '[rule plan-names-unique]' in line
    assert 'index "ev_idx" of public.ev and index "ev_idx_ev_2024" of public.Job' in line


def test_constraint_names_are_per_table_except_a_unique_constraint_s_which_is_its_index_s():
    check = dict(name='positive', type='check', table='Item')
    keys = lambda constraint: set(rules.constraint_name_keys(constraint, 'public'))
    assert not keys(check) & keys(dict(check, table='Job'))
    assert keys(check) & keys(dict(check, type='unique', columns=['price']))
    unique = dict(name='k', type='unique', table='Item')
    assert keys(unique) & keys(dict(unique, table='Job'))
    assert not keys(unique) & keys(dict(unique, table='Job', schema='other'))


# -- the facts of each step of an index decision (online_index.step_facts) ---------------------------------------

def refused_ids(decisions, found, partitions=None, dropped_first=(), relations=None):
    relations = relations or {}
    for decision in decisions:
        for step in decision['steps']:
            relations.setdefault((step['schema'], step['table']),
                                 relation(step['table'], step['schema'],
                                          relkind='p' if step['kind'] == 'create_on_only' else 'r'))
    facts = online_index.step_facts('public', decisions, found, partitions, relations, dropped_first)
    return [(subject, rule.id) for subject, statement, step in facts for rule, dummy_ in rules.refusals(
        statement, step, PG15)]


OLD = 'CREATE INDEX "Job_status_idx" ON public."Job" USING btree (status)'


def attributed(found):
    """Ledger rows of plan t12 that attribute C(found) to it as it is now: a rollback would undo them."""
    return dict((('index', name), dict(id=n, run_id='t12-1', state='applied', definition=index['definition'], prior=None))
                for n, (name, index) in enumerate(sorted(found.items()), start=1))


def replacement(found, ledger=None):
    decisions, errors = index_decisions.decide_actions([spec('Job_status_idx', ['status', 'teacherId'], on_mismatch='replace')],
                                            found, 'present', ledger=ledger, plan='t12')
    assert errors == []
    return decisions


@pytest.mark.parametrize('extra, rule_id', [
    (dict(constraint='Job_status_key'), 'drop-index-of-constraint'),
    (dict(referenced_by=['Item_job_fkey']), 'drop-with-dependent-foreign-keys'),
    (dict(attached_to=['public', 'ev_status_idx']), 'drop-attached-index'),
])
def test_a_replacement_is_refused_when_the_index_it_replaces_cannot_be_dropped(extra, rule_id):
    # The swap gives the replaced index the name _pgzd_prev; the drop of that name is the drop of the replaced index.
    found = {'Job_status_idx': existing('Job_status_idx', ['status'], definition=OLD, **extra)}
    assert refused_ids(replacement(found), found) == [
        ('index "public.Job_status_idx" (its step on "public.Job_status_idx_pgzd_prev")', rule_id)]


def test_a_replacement_of_a_plain_index_is_accepted_and_a_leftover_previous_index_is_judged_as_itself():
    found = {'Job_status_idx': existing('Job_status_idx', ['status'], definition=OLD)}
    assert refused_ids(replacement(found), found) == []
    # A stopped replacement left _pgzd_prev attached (an older version's stuck state): its drop is refused, named.
    found = {'Job_status_idx': existing('Job_status_idx', ['status', 'teacherId']),
             'Job_status_idx_pgzd_prev': existing('Job_status_idx_pgzd_prev', ['status'],
                                                  attached_to=['public', 'ev_status_idx'])}
    replaced = {('replaced_index', 'Job_status_idx'): dict(id=1, run_id='t12-1', state='applied', definition='x',
                                                           prior=dict(definition=OLD, comment=None))}
    assert refused_ids(replacement(found, replaced), found) == [
        ('index "public.Job_status_idx" (its step on "public.Job_status_idx_pgzd_prev")', 'drop-attached-index')]


def test_an_invalid_index_that_backs_a_constraint_is_not_rebuilt_and_a_rollback_does_not_drop_one():
    found = {'Job_uniq': existing('Job_uniq', ['status'], valid=False, constraint='Job_uniq')}
    (decision,), errors = index_decisions.decide_actions([spec('Job_uniq', ['status'])], found, 'present')
    assert decision['action'] == 'rebuilt'
    assert refused_ids([decision], found) == [('index "public.Job_uniq"', 'drop-index-of-constraint')]
    found = {'Job_pkey': existing('Job_pkey', ['id'], constraint='Job_pkey')}
    decisions, errors = index_decisions.decide_actions([spec('Job_pkey', ['id'])], found, 'absent', ledger=attributed(found),
                                            plan='t12')
    assert refused_ids(decisions, found) == [('index "public.Job_pkey"', 'drop-index-of-constraint')]


def test_a_rollback_drop_counts_only_the_foreign_keys_it_does_not_drop_first():
    found = {'Job_status_key': existing('Job_status_key', ['status'], referenced_by=['Item_job_fkey', 'App_fkey'])}
    decisions, errors = index_decisions.decide_actions([spec('Job_status_key', ['status'])], found, 'absent',
                                            ledger=attributed(found), plan='t12')
    assert refused_ids(decisions, found, dropped_first=['Item_job_fkey']) == [
        ('index "public.Job_status_key"', 'drop-with-dependent-foreign-keys')]
    assert refused_ids(decisions, found, dropped_first=['Item_job_fkey', 'App_fkey']) == []
    assert refused_ids(decisions, found, dropped_first=None) == []  # not known: the preflight judges it


def test_a_unique_index_on_a_partitioned_table_is_refused_on_each_level_whose_key_it_misses():
    decisions, errors = index_decisions.decide_actions([ev_spec('ev_id_key', ['id'], unique=True)], {},
                                            'present', {'ev_id_key': tree()})
    assert errors == []
    assert refused_ids(decisions, {}, {'ev_id_key': tree()}) == [
        ('index "public.ev_id_key"', 'unique-index-partition-key'),
        ('index "public.ev_id_key" (its step on "public.ev_id_key_ev_2025")', 'unique-index-partition-key')]
    decisions, errors = index_decisions.decide_actions([ev_spec('ev_id_key', ['id', 'at', 'kind'], unique=True)], {},
                                            'present', {'ev_id_key': tree()})
    assert refused_ids(decisions, {}, {'ev_id_key': tree()}) == []


def test_a_rollback_of_an_index_attached_by_someone_else_to_a_partitioned_index_is_refused():
    found = {'Job_status_idx': existing('Job_status_idx', ['status'], attached_to=['public', 'ev_status_idx'])}
    decisions, errors = index_decisions.decide_actions([spec('Job_status_idx', ['status'])], found, 'absent',
                                            ledger=attributed(found), plan='t12')
    assert refused_ids(decisions, found) == [('index "public.Job_status_idx"', 'drop-attached-index')]
    # The leftovers of a stopped partitioned build that are attached go with the partitioned index: not dropped alone.
    nodes = tree(ev_2024=dict(index=partition_index('ev_v_idx_ev_2024', 'ev_2024', attached_to=['public', 'ev_v_idx'])))
    found = {'ev_v_idx': existing('ev_v_idx', ['v'], table='ev', relkind='I')}
    decisions, errors = index_decisions.decide_actions([ev_spec()], found, 'absent', {'ev_v_idx': nodes}, ledger=attributed(found),
                                            plan='t12')
    assert [step['kind'] for step in decisions[0]['steps']] == ['drop_partitioned']
    assert refused_ids(decisions, found, {'ev_v_idx': nodes}) == []


def test_the_names_a_decision_creates_include_partition_and_replacement_names():
    decisions, errors = index_decisions.decide_actions([ev_spec()], {}, 'present', {'ev_v_idx': tree()})
    names = [name for dummy_, name, dummy_ in online_index.created_names(decisions[0])]
    assert names == ['ev_v_idx', 'ev_v_idx_ev_2024', 'ev_v_idx_ev_2025', 'ev_v_idx_ev_2025_a', 'ev_v_idx_ev_2025_b']
    found = {'Job_status_idx': existing('Job_status_idx', ['status'], definition=OLD)}
    names = [name for dummy_, name, dummy_ in online_index.created_names(replacement(found)[0])]
    assert names == ['Job_status_idx_pgzd_next', 'Job_status_idx_pgzd_prev']
