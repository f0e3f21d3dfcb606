# -*- coding: utf-8 -*-
# Statements that lock two tables: the locks each takes (read from pg_locks on PostgreSQL 15, tests/integration/
# test_lock_order.py keeps this table true), the one order they are taken in, and the lock_timeout they wait under.
#
# Why an order. A foreign key's ADD ... NOT VALID locks the table, then the referenced one; its DROP does the same, in
# ACCESS EXCLUSIVE. The application's typical transaction writes the referenced (parent) row first, then the child
# (UPDATE "Job", then INSERT INTO "JobAssignment"). The two cross: the tool holds the child and waits for the parent,
# the application holds the parent and waits for the child, and PostgreSQL aborts one of them after deadlock_timeout.
# So the tool first takes the referenced (parent) table itself, with LOCK TABLE in the statement's own mode, in the
# same transaction, and only then runs the statement: while it waits for the parent it holds nothing the application
# needs, and once it has the parent no application transaction that starts with the parent can hold the child against
# it. A partitioned table's steps likewise take the partitioned table first, then its partitions: the order a write
# through the partitioned table takes them.
#
# Why the lock_timeout. An application that takes them the other way round (child first) can still cross the tool.
# PostgreSQL checks for a deadlock in a session only once that session has waited deadlock_timeout, and aborts the
# session that found it. Under a lock_timeout below deadlock_timeout the tool's wait ends first, by lock_timeout (a
# retry with backoff), and the application's transaction goes on: it is never the one aborted. The effective
# lock_timeout of such a statement is the configured one, capped at half of the server's deadlock_timeout.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

# The lock modes, weakest first (a stronger one held makes a weaker request on the same table a no-op).
MODES = ('ACCESS SHARE', 'ROW SHARE', 'ROW EXCLUSIVE', 'SHARE UPDATE EXCLUSIVE', 'SHARE', 'SHARE ROW EXCLUSIVE',
         'EXCLUSIVE', 'ACCESS EXCLUSIVE')

# Per statement that locks two tables: the tables in the order the tool takes them, each (role, mode). The first is
# taken explicitly (LOCK TABLE ... IN <mode> MODE) before the statement, which then takes the rest itself. C(only):
# whether LOCK TABLE leaves the first table's partitions or children out (a foreign key locks the referenced table
# alone; DROP INDEX of a partitioned index locks every partition, as LOCK TABLE without ONLY does, in the same order).
ORDERED_STATEMENTS = dict(
    foreign_key_add=dict(locks=(('the referenced table', 'SHARE ROW EXCLUSIVE'), ('the table', 'SHARE ROW EXCLUSIVE')),
                         only=True),
    foreign_key_validate=dict(locks=(('the referenced table', 'ROW SHARE'), ('the table', 'SHARE UPDATE EXCLUSIVE')),
                              only=True),
    foreign_key_drop=dict(locks=(('the referenced table', 'ACCESS EXCLUSIVE'), ('the table', 'ACCESS EXCLUSIVE')),
                          only=True),
    attach=dict(locks=(('the partitioned table', 'ACCESS SHARE'), ('the partition', 'ACCESS SHARE')), only=True),
    drop_partitioned=dict(locks=(('the partitioned table', 'ACCESS EXCLUSIVE'), ('every partition', 'ACCESS EXCLUSIVE')),
                          only=False),
)

# The lock_timeout a session would run under once set to a value (PostgreSQL parses it: 2s, 500ms, 1min, 2000) and the
# server's deadlock_timeout, both in milliseconds. Run right after set_config('lock_timeout', value, true).
TIMEOUTS_QUERY = """
SELECT (extract(epoch FROM pg_catalog.current_setting('lock_timeout')::interval) * 1000)::bigint AS lock_ms,
       (extract(epoch FROM pg_catalog.current_setting('deadlock_timeout')::interval) * 1000)::bigint AS deadlock_ms
"""


def lock_text(kind):
    """The locks of an ordered statement as the docs and --check say them: each mode on each table, in order."""
    locks = ORDERED_STATEMENTS[kind]['locks']
    return '%s on %s (LOCK TABLE, first), then %s' % (
        locks[0][1], locks[0][0], ' and '.join('%s on %s' % (mode, role) for role, mode in locks[1:]))


def capped_lock_timeout(configured, configured_ms, deadlock_ms):
    """The lock_timeout an ordered statement waits under: the configured one (C(configured) as given, C(configured_ms)
    as PostgreSQL reads it, 0 for none), at most half of deadlock_timeout (C(deadlock_ms)), so that the tool's wait
    always ends before any session's deadlock check. Returns dict(value (for set_config), ms, note (for the output))."""
    cap = max(1, int(deadlock_ms) // 2)
    configured_ms = int(configured_ms)
    if 0 < configured_ms <= cap:
        return dict(value='%dms' % configured_ms, ms=configured_ms,
                    note='%dms (as configured, %s: under half of deadlock_timeout %dms)'
                         % (configured_ms, configured, deadlock_ms))
    return dict(value='%dms' % cap, ms=cap,
                note='%dms (the configured %s capped at half of deadlock_timeout %dms, so the tool '
                     'gives up before PostgreSQL picks a deadlock victim)' % (cap, configured, deadlock_ms))


def strongest(modes):
    """The strongest of some lock modes (pg_locks shows a table once per mode a statement took on it)."""
    return max(modes, key=MODES.index)
