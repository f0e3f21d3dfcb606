# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The index phase of a plan in one process: which tables go in which order, in how many lanes, and what a
failure means for the tables after it.

No database here: the caller passes the function that brings one table to the plan, so the unit tests run the
pipeline with fakes.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import threading

from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.outcomes import (
    NOT_STARTED, done, kept_queries, planned_note,
)


def ordered_tables(tables, default_schema, state):
    """The plan's tables as (schema, table, index specs), in the order of C(state).

    A plan builds its tables first to last, each table's indexes in order; its rollback (C(absent)) undoes them
    last to first, so every table and its indexes are reversed.
    """
    entries = [((table.get('schema') or default_schema), table['name'], list(table['indexes'])) for table in tables]
    if state == 'absent':
        entries = [(schema, name, specs[::-1]) for schema, name, specs in entries[::-1]]
    return entries


def lane_count(parallelism, table_count):
    """How many lanes a run of C(table_count) tables works in with C(parallelism): never more than tables."""
    return max(1, min(int(parallelism), table_count or 1))


def lanes(entries, parallelism):
    """C(entries) dealt into C(parallelism) lanes: entry i goes to lane i mod parallelism, as the old pipeline
    chained each table's run to the one C(parallelism) places before it."""
    count = lane_count(parallelism, len(entries))
    return [entries[lane::count] for lane in range(count)]


# The connections an index run holds at once: per lane, the session that builds and the one that watches its waits
# (build_waits.BuildWatcher); besides the lanes, the migration lock's holder and the progress follower.
SESSIONS_PER_LANE = 2
RUN_SESSIONS = 2


def connection_budget(parallelism, table_count, slots):
    """Whether the index run's connections leave the application enough: dict(lanes, needed, free, allowed, message).

    C(slots) is what the server reads (connection.connection_slots): max_connections, superuser_reserved (and
    reserved, PostgreSQL 16+) connections, and the client backends connected now other than this run's own. The rule:
    the run takes at most half of the free slots, so the application keeps the other half for its own growth.
    C(message) is None when the run fits; else it gives the numbers and what to do.
    """
    count = lane_count(parallelism, table_count)
    needed = count * SESSIONS_PER_LANE + RUN_SESSIONS
    free = slots['max_connections'] - slots['superuser_reserved'] - slots['reserved'] - slots['connected']
    allowed = max(free, 0) // 2
    budget = dict(lanes=count, needed=needed, free=free, allowed=allowed, message=None)
    if needed <= allowed:
        return budget
    fits = (allowed - RUN_SESSIONS) // SESSIONS_PER_LANE
    budget['message'] = (
        'pgzd_index_build_parallelism=%d would work on %d table(s) at a time, holding %d connections: %d per table '
        '(the build and its watch) and %d for the run (the lock holder and the progress follower). The server has %d free: '
        'max_connections %d - superuser_reserved_connections %d - reserved_connections %d - %d connected now; a run '
        'takes at most half of them (%d), so the application keeps the rest. What to do: %s; nothing was changed.' % (
            int(parallelism), count, needed, SESSIONS_PER_LANE, RUN_SESSIONS, free, slots['max_connections'],
            slots['superuser_reserved'], slots['reserved'], slots['connected'], allowed,
            'lower pgzd_index_build_parallelism to %d or less, or run when fewer sessions are connected' % fits
            if fits >= 1 else 'run when fewer sessions are connected (or raise max_connections)'))
    return budget


def not_started(schema, table, root):
    """The result of a table that did not start because of the failure C(root) before it in its lane."""
    return dict(failed=True, changed=False, not_started=True, table='%s.%s' % (schema, table), first_failure=root,
                msg='Indexes of %s.%s not started, nothing was changed on it: a run before it failed (%s); fix that '
                    'and rerun' % (schema, table, root),
                queries=[], indexes=[], lock_retries_used=0)


def first_failure(result):
    """The first line of a failed table's message: what the tables queued behind it are told."""
    return result.get('first_failure') or (result.get('msg') or 'no message').splitlines()[0]


def run_lane(entries, run_table):
    """Runs the tables of one lane in order; after a failure, none of the rest starts."""
    results, root = [], None
    for schema, table, specs in entries:
        if root is not None:
            results.append(not_started(schema, table, root))
            continue
        result = run_table(schema, table, specs)
        results.append(result)
        if result.get('failed'):
            root = first_failure(result)
    return results


def run_pipeline(entries, parallelism, run_table, start_lane=None):
    """Every table's result, in the order of C(entries).

    With one lane, the tables run in this thread. With more, each lane runs in a thread of its own (each table's
    builds stay sequential; builds on different tables do not wait for each other on PostgreSQL 14+).
    C(start_lane(number)) gives a lane its own C(run_table) (its own connection); without it all share C(run_table).
    """
    dealt = lanes(entries, parallelism)
    runners = [start_lane(number) if start_lane else run_table for number in range(len(dealt))]
    outcomes = [None] * len(dealt)

    def work(number):
        try:
            outcomes[number] = run_lane(dealt[number], runners[number])
        except Exception as error:  # a bug, not a table's failure: every table of the lane says so
            schema, table = dealt[number][0][:2]
            crashed = dict(failed=True, changed=False, table='%s.%s' % (schema, table), queries=[], indexes=[],
                           lock_retries_used=0, msg='Indexes of %s.%s: the run crashed: %r' % (schema, table, error))
            outcomes[number] = [crashed] + [not_started(s, t, crashed['msg']) for s, t, _ in dealt[number][1:]]

    if len(dealt) == 1:
        work(0)
    else:
        threads = [threading.Thread(target=work, args=(number,)) for number in range(len(dealt))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    by_table = {}
    for lane, results in zip(dealt, outcomes):
        for (schema, table, _), result in zip(lane, results):
            by_table[(schema, table)] = result
    return [by_table[(schema, table)] for schema, table, _ in entries]


def failure_message(results):
    """What a phase whose tables failed says: each failure once, what was kept (not what a cleanup undid), the
    indexes that failed or did not start, the tables that did not start."""
    failed = [r for r in results if r.get('failed') and not r.get('not_started')]
    waiting = [r for r in results if r.get('not_started')]
    lines = []
    for result in failed:
        lines.append(result.get('msg') or 'failed')
        kept = kept_queries(result.get('queries') or [], result.get('cleanup_queries') or [])
        if kept:
            lines.append('Done by that run before it stopped, and kept: %s' % '; '.join(kept))
        elif result.get('indexes') and not result.get('changed'):
            lines.append('Nothing of that run is kept on %s.' % result.get('table', 'its table'))
        skipped = [i for i in result.get('indexes', []) if i['action'] == NOT_STARTED]
        if skipped:
            lines.append('Not started after it: %s' % ', '.join(i['name'] + planned_note(i) for i in skipped))
    built = ['%s %s on %s.%s' % (i['action'], i['name'], i['schema'], i['table'])
             for r in results if not r.get('failed') for i in r.get('indexes', []) if done(i)]
    if built:
        lines.append('Done by the runs that succeeded, and kept: %s' % ', '.join(built))
    if waiting:
        roots = sorted(set(r['first_failure'] for r in waiting))
        lines.append('Not started, nothing changed on them: %s (%s)' % (
            ', '.join(r['table'] for r in waiting),
            'queued behind the failure above' if failed or len(roots) > 1 else roots[0]))
    return '\n'.join(lines)


def left_alone_lines(entries):
    """What a rollback leaves alone, because the ledger does not attribute it to the plan (or it changed since), and
    why: one line each."""
    return ['left alone: %s on %s.%s: %s' % (entry['name'], entry['schema'], entry['table'], entry['left_alone'])
            for entry in entries if entry.get('left_alone')]


def index_summary(entries, check_mode, parallelism=1):
    """The index phase as the play prints it: one line per index changed (or to change, in check mode), and in check
    mode the SQL a real run would execute, in order."""
    changed = [entry for entry in entries if entry['action'] != 'unchanged']
    lines = ['Check mode: nothing was changed. A real run would do this:'] if check_mode else []
    if parallelism > 1 and not check_mode:
        lines.append('Worked on %d tables at a time (pgzd_index_build_parallelism).' % parallelism)
    if not changed:
        lines.append('No index needed a change.')
    for entry in changed:
        if not done(entry):
            # Failed, or queued behind a failure: what it was to be, never as if it were done.
            lines.append('%-8s %-45s on %s.%s%s' % (entry['action'].replace('_', ' '), entry['name'], entry['schema'],
                                                    entry['table'], planned_note(entry)))
            continue
        lines.append('%-8s %-45s on %s.%s in %6.2fs%s%s' % (
            entry['action'], entry['name'], entry['schema'], entry['table'], entry.get('seconds') or 0.0,
            ' (%s lock retries)' % entry['retries'] if entry.get('retries') else '',
            ' (waited %ss for other sessions)' % entry['waited_seconds'] if (entry.get('waited_seconds') or 0) > 0
            else ''))
        if entry.get('previous_definition'):
            # A replacement or its rollback: both definitions, so the log shows what the name held and holds.
            lines.append('         before: %s' % entry['previous_definition'])
            after = entry['planned_definition'] if check_mode else entry.get('definition')
            lines.append('         after:  %s' % (after or entry['planned_definition']))
    lines.extend(left_alone_lines(entries))
    if check_mode and changed:
        lines.append('SQL it would run, in order:')
        lines.extend('%s;' % statement for entry in changed for statement in entry.get('statements') or [])
    return lines
