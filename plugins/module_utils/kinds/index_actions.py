# -*- coding: utf-8 -*-
# What an index decision is made of: the action it takes (created, rebuilt, resumed, replaced, restored, unchanged,
# dropped), its steps in order, and whether an index is still what its ledger row records. The planners of the
# index kind (index_decisions, partitioned_index, index_replacement) build decisions from these.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.index_definitions import same_index_definition


ACTION_CREATE = 'created'
ACTION_REBUILD = 'rebuilt'
ACTION_UNCHANGED = 'unchanged'
ACTION_DROP = 'dropped'
# A partitioned index whose earlier run stopped half way (some partitions built or attached): the rest is done.
ACTION_RESUME = 'resumed'
# on_mismatch: replace swapped the planned definition in; a rollback swaps the recorded previous one back.
ACTION_REPLACE = 'replaced'
ACTION_RESTORE = 'restored'
# The actions that remove an index in use (dropped; replaced and restored drop the index of that name after the swap):
# the report shows when each was last used (IndexCatalog.read_last_use).
ACTIONS_REMOVING = (ACTION_DROP, ACTION_REPLACE, ACTION_RESTORE)


def new_decision(spec, existing, action, steps=None, previous_definition=None, planned_definition=None, ledger_row=None,
                 left_alone=None):
    """A decision; a replacement or restore also says what the name held (C(previous_definition)) and what it gets
    (C(planned_definition)); a rollback's names the ledger row of what it undoes (C(ledger_row)), or why it leaves
    the index alone (C(left_alone))."""
    decision = dict(spec=spec, existing=existing, action=action, steps=steps or [], ledger_row=ledger_row)
    if previous_definition is not None:
        decision.update(previous_definition=previous_definition, planned_definition=planned_definition)
    if left_alone:
        decision['left_alone'] = left_alone
    return decision


def new_step(kind, spec, **fields):
    """One step of a decision: its C(kind) and the index it is about, by default the planned one (see decide_actions).

    Kinds: build (CREATE INDEX CONCURRENTLY of the spec under C(name); C(partition) when on a partition),
    build_definition (a recorded C(statement)), drop (DROP INDEX CONCURRENTLY), drop_partitioned (DROP INDEX of a
    partitioned index), create_on_only (CREATE INDEX ... ON ONLY), attach (ALTER INDEX C(name) ATTACH PARTITION
    C(partition_schema).C(partition_index)) and swap (the renames, C(next) to C(name) and C(name) to C(previous),
    and C(comment) on the result, in one transaction).
    """
    step = dict(kind=kind, schema=spec['schema'], table=spec['table'], name=spec['name'])
    step.update(fields)
    return step


def left_alone_decision(spec, existing, reason):
    return new_decision(spec, existing, ACTION_UNCHANGED, left_alone=reason)


def ledger_matches(existing, row):
    """Whether the index C(existing) is still what the ledger row C(row) records: the definition PostgreSQL rendered
    once it was made (applied), or the planned one (intended: a run stopped before it recorded the result); an INVALID
    index of an intended row is the leftover of that run's build."""
    if row['state'] == 'intended' and not existing['valid']:
        return True
    try:
        return existing['definition'] == row['definition'] or same_index_definition(existing['definition'],
                                                                                    row['definition'])
    except ValueError:
        return False
