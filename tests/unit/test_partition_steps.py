# -*- coding: utf-8 -*-
"""Unit tests of an index planned on a partitioned table (index_decisions, no server): the names of the partitions' indexes,
the steps (ON ONLY, a concurrent build per partition, ATTACH PARTITION) from any state a stopped run leaves, and the
rollback's steps. The partition key a unique index must cover is a refusal rule's (test_refusal_rules)."""

import pytest

import helpers
from test_online_index_logic import existing, spec

index_decisions = helpers.load_module_utils('kinds.index_decisions')
definitions = helpers.load_module_utils('kinds.index_definitions')
partitioned = helpers.load_module_utils('kinds.partitioned_index')


def kinds(steps):
    return [(step['kind'], step['name']) for step in steps]


# -- derived names -------------------------------------------------------------------------------------------------

class TestDerivedName(object):

    def test_short_names_are_joined(self):
        assert definitions.derived_name('ev_v_idx', 'ev_2024') == 'ev_v_idx_ev_2024'

    @pytest.mark.parametrize('base, suffix', [('x' * 63, 'pgzd_next'), ('x' * 40, 'y' * 40), ('\u00e9' * 31, 'p'),
                                              ('a' * 10, '\u00e9' * 40), ('x' * 54, 'pgzd_prev')])
    def test_long_names_fit_in_63_bytes_and_are_the_same_every_time(self, base, suffix):
        name = definitions.derived_name(base, suffix)
        assert len(name.encode('utf-8')) <= 63
        assert name == definitions.derived_name(base, suffix)
        name.encode('utf-8').decode('utf-8')  # no character cut in half

    def test_a_short_suffix_stays_whole_so_the_name_says_what_it_is(self):
        assert definitions.derived_name('x' * 63, 'pgzd_next').endswith('_pgzd_next')

    def test_long_names_that_share_their_beginning_still_differ(self):
        assert definitions.derived_name('x' * 60 + 'a', 'pgzd_next') != definitions.derived_name('x' * 60 + 'b', 'pgzd_next')
        assert partitioned.partition_index_name('i' * 40, 'p' * 30 + '1') != partitioned.partition_index_name('i' * 40, 'p' * 30 + '2')


# -- partitioned tables --------------------------------------------------------------------------------------------

def node(table, relkind='r', parent=('public', 'ev'), key_columns=None, index=None, attached=None, schema='public'):
    return dict(schema=schema, table=table, relkind=relkind, parent=parent, key_columns=key_columns, index=index,
                attached=attached)


def tree(**states):
    """ev (by at) with ev_2024 and the sub-partitioned ev_2025 (by kind: ev_2025_a, ev_2025_b). C(states) gives a
    node's index / attached rows: ev_2024=dict(index=..., attached=...)."""
    nodes = [dict(schema='public', table='ev', relkind='p', parent=None, key_columns=['at']),
             node('ev_2024'), node('ev_2025', relkind='p', key_columns=['kind']),
             node('ev_2025_a', parent=('public', 'ev_2025')), node('ev_2025_b', parent=('public', 'ev_2025'))]
    for entry in nodes:
        entry.update(states.get(entry['table'], {}))
    return nodes


def ev_spec(name='ev_v_idx', columns=('v',), **extra):
    return spec(name, columns, table='ev', **extra)


def partition_index(name, table, key_columns=('v',), **extra):
    return existing(name, list(key_columns), table=table, **extra)


def attached(name, valid=True):
    return dict(name=name, valid=valid)


class TestPartitionSteps(object):

    def test_a_new_index_is_created_on_only_each_partitioned_table_built_on_each_leaf_and_attached_depth_first(self):
        steps, problems = partitioned.partition_steps(ev_spec(), tree(), False)
        assert problems == []
        assert [(s['kind'], s['schema'], s['table'], s['name']) for s in steps] == [
            ('create_on_only', 'public', 'ev', 'ev_v_idx'),
            ('build', 'public', 'ev_2024', 'ev_v_idx_ev_2024'),
            ('attach', 'public', 'ev', 'ev_v_idx'),
            ('create_on_only', 'public', 'ev_2025', 'ev_v_idx_ev_2025'),
            ('build', 'public', 'ev_2025_a', 'ev_v_idx_ev_2025_a'),
            ('attach', 'public', 'ev_2025', 'ev_v_idx_ev_2025'),
            ('build', 'public', 'ev_2025_b', 'ev_v_idx_ev_2025_b'),
            ('attach', 'public', 'ev_2025', 'ev_v_idx_ev_2025'),
            ('attach', 'public', 'ev', 'ev_v_idx')]
        assert [s['partition_index'] for s in steps if s['kind'] == 'attach'] == [
            'ev_v_idx_ev_2024', 'ev_v_idx_ev_2025_a', 'ev_v_idx_ev_2025_b', 'ev_v_idx_ev_2025']
        # The partitions' statements use PostgreSQL's rendering of a predicate; the table's own uses the plan's.
        assert [s.get('partition', False) for s in steps if s['kind'] in ('build', 'create_on_only')] == [
            False, True, True, True, True]

    def test_a_rerun_finishes_a_half_attached_index_and_rebuilds_an_invalid_leftover(self):
        nodes = tree(ev_2024=dict(attached=attached('ev_v_idx_ev_2024')),
                     ev_2025=dict(index=partition_index('ev_v_idx_ev_2025', 'ev_2025', relkind='I', valid=False)),
                     ev_2025_a=dict(index=partition_index('ev_v_idx_ev_2025_a', 'ev_2025_a', valid=False)),
                     ev_2025_b=dict(index=partition_index('ev_v_idx_ev_2025_b', 'ev_2025_b')))
        steps, problems = partitioned.partition_steps(ev_spec(), nodes, True)
        assert problems == []
        assert kinds(steps) == [('drop', 'ev_v_idx_ev_2025_a'), ('build', 'ev_v_idx_ev_2025_a'),
                                ('attach', 'ev_v_idx_ev_2025'), ('attach', 'ev_v_idx_ev_2025'),
                                ('attach', 'ev_v_idx')]

    def test_an_attached_partitioned_index_that_is_not_valid_yet_is_completed_in_place(self):
        nodes = tree(ev_2024=dict(attached=attached('ev_v_idx_ev_2024')),
                     ev_2025=dict(attached=attached('ev_2025_v_idx', valid=False)),
                     ev_2025_a=dict(attached=attached('ev_v_idx_ev_2025_a')))
        steps, problems = partitioned.partition_steps(ev_spec(), nodes, True)
        assert problems == []
        # ev_2025_b's index is attached to the index PostgreSQL named for ev_2025, which is already attached to ev_v_idx.
        assert kinds(steps) == [('build', 'ev_v_idx_ev_2025_b'), ('attach', 'ev_2025_v_idx')]

    def test_a_complete_tree_needs_nothing(self):
        nodes = tree(**dict((table, dict(attached=attached('x_' + table)))
                            for table in ('ev_2024', 'ev_2025', 'ev_2025_a', 'ev_2025_b')))
        assert partitioned.partition_steps(ev_spec(), nodes, True) == ([], [])

    def test_a_valid_unattached_partition_index_of_the_planned_definition_is_attached_without_a_build(self):
        nodes = tree(ev_2024=dict(index=partition_index('ev_v_idx_ev_2024', 'ev_2024')))
        steps, problems = partitioned.partition_steps(ev_spec(), nodes, True)
        assert problems == [] and kinds(steps)[:2] == [('attach', 'ev_v_idx'), ('create_on_only', 'ev_v_idx_ev_2025')]

    def test_under_a_partitioned_index_not_attached_yet_its_own_attached_indexes_count(self):
        nodes = tree(ev_2024=dict(attached=attached('ev_v_idx_ev_2024')),
                     ev_2025=dict(index=partition_index('ev_v_idx_ev_2025', 'ev_2025', relkind='I', valid=False)),
                     ev_2025_a=dict(index=partition_index('ev_v_idx_ev_2025_a', 'ev_2025_a',
                                                          attached_to=['public', 'ev_v_idx_ev_2025'])))
        steps, problems = partitioned.partition_steps(ev_spec(), nodes, True)
        assert problems == []
        assert kinds(steps) == [('build', 'ev_v_idx_ev_2025_b'), ('attach', 'ev_v_idx_ev_2025'), ('attach', 'ev_v_idx')]

    def test_an_attached_invalid_leaf_index_is_refused_with_what_to_do(self):
        nodes = tree(ev_2024=dict(attached=attached('ev_v_idx_ev_2024', valid=False)))
        steps, problems = partitioned.partition_steps(ev_spec(), nodes, True)
        assert len(problems) == 1
        assert 'attached but INVALID' in problems[0] and 'drop the partitioned index "public.ev_v_idx"' in problems[0]

    @pytest.mark.parametrize('state, fragment', [
        (dict(relkind='f'), 'not a table (relation kind f'),
        (dict(index=existing('ev_v_idx_ev_2024', ['v'], relkind='r', table=None, table_schema=None)),
         'is taken by a relation that is not an index'),
        (dict(index=partition_index('ev_v_idx_ev_2024', 'ev_2024', key_columns=['id'])), 'different definition'),
        (dict(index=partition_index('ev_v_idx_ev_2024', 'other', valid=False)), 'different definition'),
        (dict(index=partition_index('ev_v_idx_ev_2024', 'ev_2024', attached_to=['public', 'other_idx'])),
         'attached to another index, public.other_idx'),
        (dict(index=partition_index('ev_v_idx_ev_2024', 'ev_2024', valid=False, build_in_progress_pid=42)),
         'being built right now by backend pid 42'),
    ])
    def test_a_partition_index_name_that_cannot_be_used_is_refused(self, state, fragment):
        steps, problems = partitioned.partition_steps(ev_spec(), tree(ev_2024=state), False)
        assert len(problems) == 1 and fragment in problems[0], problems
        assert 'partition public.ev_2024' in problems[0]


class TestPartitionedDecisions(object):

    def decide(self, specs, found, state='present', nodes=None, ledger=None):
        return index_decisions.decide_actions(specs, found, state, dict((s['name'], nodes or tree()) for s in specs),
                                   ledger=ledger, plan='t12')

    def test_created_resumed_and_unchanged(self):
        planned = existing('ev_v_idx', ['v'], table='ev', relkind='I', valid=False)
        decisions, errors = self.decide([ev_spec('a_idx'), ev_spec(), ev_spec('c_idx')],
                                        {'ev_v_idx': planned, 'c_idx': existing('c_idx', ['v'], table='ev', relkind='I')})
        assert errors == []
        assert [(d['spec']['name'], d['action']) for d in decisions] == [
            ('a_idx', 'created'), ('ev_v_idx', 'resumed'), ('c_idx', 'unchanged')]
        assert decisions[0]['steps'][0]['kind'] == 'create_on_only'
        assert 'create_on_only' not in [s['kind'] for s in decisions[1]['steps'][:1]] and decisions[2]['steps'] == []


    def test_a_partitioned_index_of_another_definition_is_refused_even_when_invalid_and_even_with_replace(self):
        found = existing('ev_v_idx', ['id'], table='ev', relkind='I', valid=False)
        decisions, errors = self.decide([ev_spec(on_mismatch='replace')], {'ev_v_idx': found})
        assert decisions == [] and 'different definition' in errors[0]
        assert 'on_mismatch: replace does not apply to the index of a partitioned table' in errors[0]

    def test_rollback_drops_unattached_leftovers_concurrently_then_the_partitioned_index(self):
        nodes = tree(ev_2024=dict(index=partition_index('ev_v_idx_ev_2024', 'ev_2024', attached_to=['public', 'ev_v_idx'])),
                     ev_2025=dict(index=partition_index('ev_v_idx_ev_2025', 'ev_2025', relkind='I')),
                     ev_2025_a=dict(index=partition_index('ev_v_idx_ev_2025_a', 'ev_2025_a',
                                                          attached_to=['public', 'ev_v_idx_ev_2025'])),
                     ev_2025_b=dict(index=partition_index('ev_v_idx_ev_2025_b', 'ev_2025_b', valid=False)))
        planned = existing('ev_v_idx', ['v'], table='ev', relkind='I', valid=False)
        # The build a stopped run of the plan intended: its leftovers are the run's own.
        ledger = {('index', 'ev_v_idx'): dict(id=1, run_id='t12-1', state='intended', definition='CREATE INDEX ...')}
        decisions, errors = self.decide([ev_spec(columns=None)], {'ev_v_idx': planned}, 'absent', nodes, ledger)
        assert errors == [] and decisions[0]['action'] == 'dropped'
        assert kinds(decisions[0]['steps']) == [('drop', 'ev_v_idx_ev_2025_b'), ('drop_partitioned', 'ev_v_idx_ev_2025'),
                                                ('drop_partitioned', 'ev_v_idx')]
        # Without it, the plan did not make them: nothing is dropped.
        decisions, errors = self.decide([ev_spec(columns=None)], {'ev_v_idx': planned}, 'absent', nodes)
        assert errors == [] and decisions[0]['steps'] == [] and 'not in the ledger' in decisions[0]['left_alone']

    def test_rollback_of_an_index_that_is_gone_is_unchanged(self):
        decisions, errors = self.decide([ev_spec(columns=None)], {}, 'absent')
        assert errors == [] and decisions[0]['action'] == 'unchanged' and decisions[0]['steps'] == []
