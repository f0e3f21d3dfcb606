# -*- coding: utf-8 -*-
# on_mismatch: replace, decided without a database: the planned definition is built beside the index of the planned
# name under a helper name, swapped in by renames in one short transaction, and the previous index dropped; a
# rollback restores the previous definition from the ledger. Half-done runs converge from their leftovers.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.index_actions import (
    ACTION_DROP, ACTION_REPLACE, ACTION_RESTORE, ACTION_UNCHANGED, ledger_matches, left_alone_decision, new_decision, new_step,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.index_definitions import (
    compare_index, derived_name, index_statement, restore_statement, same_index_definition,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.run.ledger import NO_PLAN, attribution


# The two names a replacement uses beside the planned one: the index being built to take the planned name, and the
# one the planned name is taken from, until it is dropped.
NEXT_SUFFIX = 'pgzd_next'
PREVIOUS_SUFFIX = 'pgzd_prev'
# How version 0.16 recorded, in the comment of the index it swapped in, what a replacement replaced: the ledger holds
# it now (a comment anyone who owns the index can write is no record to rebuild from); adoption still reads it.
RECORD_PREFIX = 'pg-zero-downtime replaced the previous index of this name (on_mismatch: replace); a rollback ' \
                'restores it from this record: '


def replacement_names(name):
    """(the name the new index is built under, the name the replaced one gets until it is dropped)."""
    return derived_name(name, NEXT_SUFFIX), derived_name(name, PREVIOUS_SUFFIX)


def replacement_indexes(spec, existing_by_name):
    following, previous = replacement_names(spec['name'])
    return existing_by_name.get(following), existing_by_name.get(previous)


def read_replacement_record(comment):
    """(dict(definition, comment), None) from an index comment written by replacement_record; (None, None) for any
    other comment; (None, why) for one that starts like a record but cannot be read."""
    if not isinstance(comment, str) or not comment.startswith(RECORD_PREFIX):
        return None, None
    try:
        record = json.loads(comment[len(RECORD_PREFIX):])
    except ValueError as error:
        return None, 'its comment starts like a replacement record but is not one (%s)' % error
    if not isinstance(record, dict) or not isinstance(record.get('definition'), str) \
            or not isinstance(record.get('comment'), (str, type(None))):
        return None, 'its comment starts like a replacement record but does not hold a definition'
    return dict(definition=record['definition'], comment=record['comment']), None


def _replacement_refusal(spec, planned):
    """Why the index of the planned name cannot be replaced by renames, or None. What PostgreSQL would refuse of the
    replacement's steps (dropping an index that backs a constraint, that foreign keys depend on, or that is attached to
    a partitioned index) is the refusal rules' (refusal_rules); this is what the renames would lose, and whether the
    rollback could build the replaced index again from its record."""
    reasons = []
    try:
        restore_statement(planned['definition'], spec['name'], replacement_names(spec['name'])[0], spec['schema'],
                          spec['table'])
    except ValueError as error:
        reasons.append('a rollback could not build it again from its definition (%s)' % error)
    if planned.get('replica_identity'):
        reasons.append('it is the table\'s REPLICA IDENTITY index')
    if planned.get('clustered'):
        reasons.append('the table is CLUSTERed on it')
    if not reasons:
        return None
    return ('index "%s.%s" exists with a different definition and on_mismatch is replace, but it cannot be replaced: '
            '%s; nothing was changed on it.\n  existing: %s\n  planned:  %s'
            % (spec['schema'], spec['name'], '; '.join(reasons), planned['definition'], spec['display_definition']))


def _replacement_leftovers(spec, following, previous):
    """(problems, drop steps) of the indexes found under the two names a replacement uses: a stopped replacement's
    (or restore's) leftovers, to drop; anything else there stops it."""
    problems, steps = [], []
    for index, name in zip((following, previous), replacement_names(spec['name'])):
        problem = _helper_problem(spec, index, name)
        if problem:
            problems.append(problem)
        elif index is not None:
            steps.append(new_step('drop', spec, name=name))
    return problems, steps


def _helper_problem(spec, index, name):
    """Why an index of a name the replacement uses is not a leftover of it, or None."""
    if index is None:
        return None
    qualified = '%s.%s' % (spec['schema'], name)
    if index['relkind'] != 'i' or (index['table_schema'], index['table']) != (spec['schema'], spec['table']):
        return ('"%s", the name the replacement of index "%s" uses, is taken by another relation (not an index of '
                '%s.%s): rename it, then rerun' % (qualified, spec['name'], spec['schema'], spec['table']))
    if index['build_in_progress_pid']:
        return 'index "%s" is being built right now by backend pid %s: wait for it and rerun' % (
            qualified, index['build_in_progress_pid'])
    return None


def replacement_decision(spec, planned, following, previous, replaced=None):
    """(decision, None) or (None, the problem) for a valid index of the planned name on the planned table, when the
    plan says on_mismatch: replace.

    The planned definition is built under the next name (replacement_names) concurrently; then, in one short
    transaction, the index of the planned name takes the previous name, the new one takes the planned name, and the
    ledger row of the replacement (C(replaced), written before the build with the definition and comment it
    replaces) becomes applied; the previous one is dropped concurrently. A rerun starts where a stopped run ended: the
    new index built or not, the swap done or not.
    """
    next_name = replacement_names(spec['name'])[0]
    problems, leftovers = _replacement_leftovers(spec, following, previous)
    if not problems and leftovers and replaced is None:
        # Under the names a replacement uses, yet not a replacement the ledger holds: not this plan's to drop or use.
        problems = ['index "%s.%s" has a name the replacement of index "%s" uses, but the ledger of the plan holds no '
                    'replacement of it: it is not a leftover of this plan; rename it (or drop it deliberately), then '
                    'rerun' % (spec['schema'], step['name'], spec['name']) for step in leftovers]
    if problems:
        return None, '\n  - '.join(problems)
    if not compare_index(planned, spec):
        previous_definition = (replaced.get('prior') or {}).get('definition') if replaced and leftovers else None
        return new_decision(spec, planned, ACTION_REPLACE if leftovers else ACTION_UNCHANGED, leftovers,
                            previous_definition, planned['definition']), None
    refusal = _replacement_refusal(spec, planned)
    if refusal:
        return None, refusal
    ready = following is not None and following['valid'] and not compare_index(following, spec)
    steps = _swap_steps(spec, following, previous, ready, new_step('build', spec, name=next_name), None)
    return new_decision(spec, planned, ACTION_REPLACE, steps, planned['definition'], spec['display_definition']), None


def restore_decision(spec, planned, following, previous, replaced=None, created=None, plan=NO_PLAN):
    """(decision, None) or (None, the problem) of an index with on_mismatch: replace when the plan is rolled back.

    The ledger says what the plan did. A replacement it swapped in (C(replaced) applied) gets the recorded definition
    back, by the same build and swap, and the old index's own comment back, when the index of the planned name is
    still the one it swapped in. A replacement that never swapped (C(replaced) intended) leaves its leftovers under the
    two names a replacement uses, dropped. An index the plan created (C(created), with no replacement) is dropped when
    it still matches. Anything else is left alone.
    """
    next_name = replacement_names(spec['name'])[0]
    ours = replaced is not None or created is not None
    problems, leftovers = _replacement_leftovers(spec, following, previous)
    if problems:
        if not ours:
            return left_alone_decision(spec, planned, 'the names of a replacement are taken by other relations, and the ledger '
                                       'of plan %s has no replacement of index "%s"' % (plan, spec['name'])), None
        return None, '\n  - '.join(problems)
    leftovers = leftovers if ours else []
    if replaced is not None and replaced['state'] == 'applied':
        prior = replaced.get('prior') or {}
        undo, reason = attribution(plan, 'replaced_index', spec['name'], replaced, planned is not None,
                                   planned is not None and ledger_matches(planned, replaced),
                                   planned['definition'] if planned else None)
        if reason:
            return left_alone_decision(spec, planned, reason), None
        if not undo:
            return new_decision(spec, None, ACTION_UNCHANGED, left_alone=(
                'index "%s" that replaced the recorded one is gone, so there is nothing to swap back: build the '
                'recorded one yourself if it is needed (%s)' % (spec['name'], prior.get('definition')))), None
        try:
            statement = restore_statement(prior.get('definition') or '', spec['name'], next_name, spec['schema'],
                                          spec['table'])
        except ValueError as error:
            return None, ('index "%s.%s": the ledger records the definition it replaced, but that cannot be built again '
                          '(%s): %s' % (spec['schema'], spec['name'], error, prior.get('definition')))
        ready = following is not None and following['valid'] and \
            same_index_definition(following['definition'], prior['definition'])
        steps = _swap_steps(spec, following, previous, ready,
                            new_step('build_definition', spec, name=next_name, statement=statement), prior.get('comment'))
        return new_decision(spec, planned, ACTION_RESTORE, steps, planned['definition'], prior['definition'],
                            ledger_row=replaced), None
    if replaced is not None:
        # Intended, never swapped: the index of the planned name is the one it found; only the leftovers go.
        return new_decision(spec, planned, ACTION_RESTORE if leftovers else ACTION_UNCHANGED, leftovers,
                            ledger_row=replaced), None
    undo, reason = attribution(plan, 'index', spec['name'], created, planned is not None,
                               planned is not None and created is not None and ledger_matches(planned, created),
                               planned['definition'] if planned else None)
    if reason:
        return left_alone_decision(spec, planned, reason), None
    return new_decision(spec, planned if undo else None, ACTION_DROP if undo or leftovers else ACTION_UNCHANGED,
                        leftovers + ([new_step('drop', spec)] if undo else []), ledger_row=created), None


def restored_unique_columns(decision):
    """The key columns of the unique index a rollback builds again from a replacement record (build_definition), when
    the record is a full index on plain columns: that build fails on the duplicate keys written since the replacement,
    so the rollback's preflight counts them. None for any other decision (or a partial or expression index)."""
    for step in decision['steps']:
        if step['kind'] == 'build_definition':
            fields = index_statement(step['statement'])
            elements = [param.get('IndexElem') or {} for param in fields.get('indexParams') or []]
            if fields.get('unique') and not fields.get('whereClause') and all(e.get('name') for e in elements):
                return [element['name'] for element in elements]
    return None


def _swap_steps(spec, following, previous, ready, build, comment):
    """Build under the next name (unless C(ready), kept from a stopped run), swap by renames, drop the previous one.

    A previous index left by an earlier replacement is dropped first, so that the rename has its name free.
    """
    next_name, previous_name = replacement_names(spec['name'])
    steps = [new_step('drop', spec, name=previous_name)] if previous is not None else []
    if following is not None and not ready:
        steps.append(new_step('drop', spec, name=next_name))
    if not ready:
        steps.append(build)
    steps.append(new_step('swap', spec, next=next_name, previous=previous_name, comment=comment))
    steps.append(new_step('drop', spec, name=previous_name))
    return steps
