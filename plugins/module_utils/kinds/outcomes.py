# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the entries of a run (its per-index and per-constraint results) say was done, in one place.

An entry's C(action) is what happened to it. An entry that failed is C(failed) and one queued behind that failure is
C(not_started); both keep what they were to be as C(planned_action). The summaries, the failure messages, the stop
message of the play and the report all read the actions through done(), so that none of them calls a failed or
skipped entry created, and "nothing was changed" is said only of what changed nothing (unchanged_note). Plain data, no
I/O: the modules and the controller's filters both use it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

FAILED = 'failed'
NOT_STARTED = 'not_started'
# Actions that say nothing was done to the entry: decided to need nothing, failed, or never reached.
NOT_DONE = (None, 'unchanged', FAILED, NOT_STARTED)


def done(entry):
    """Whether C(entry)'s action says it was done (created, dropped, validated, ...)."""
    return entry.get('action') not in NOT_DONE


def mark(entry, action):
    """C(entry) marked C(action) (FAILED or NOT_STARTED), keeping what it was to be as C(planned_action)."""
    if entry.get('action') not in (FAILED, NOT_STARTED):
        entry['planned_action'] = entry.get('action')
    entry['action'] = action
    return entry


def kept_queries(queries, cleanup):
    """C(queries) (every statement run, in order) without those of C(cleanup): the statements that undid what a failed
    step left (the drop of the INVALID index of a build that failed). Each cleanup statement came after what it cleaned
    up, so the last statement of its text is the one taken out."""
    kept = list(queries)
    for statement in cleanup:
        for position in range(len(kept) - 1, -1, -1):
            if kept[position] == statement:
                del kept[position]
                break
    return kept


def unchanged_note(kept, scope=''):
    """What a failure says changed (on C(scope), e.g. " on it"): "nothing was changed" only when nothing ran and was
    kept, else what did."""
    if not kept:
        return 'nothing was changed%s' % scope
    return 'nothing more was changed%s; before it, this ran and is kept: %s' % (scope, '; '.join(kept))


def stopped_entry(entry):
    """How the stop message of a play names an entry that failed after some of its statements ran (and are kept)."""
    return 'partly %s %s' % (entry.get('planned_action') or 'done', entry['name'])


def planned_note(entry):
    """What a summary adds to a failed or skipped entry: what it was to be (nothing when that was never decided)."""
    return ' (was to be %s)' % entry['planned_action'] if entry.get('planned_action') else ''


def statements_diff(before, after, statements, check_mode):
    """The --diff of a task: the catalog before and after (definitions as pg_get_indexdef and pg_get_constraintdef
    show them, never with CONCURRENTLY or NOT VALID) and, as C(prepared), the exact statements the run sends (check
    mode) or sent, in order: CREATE INDEX CONCURRENTLY, ADD CONSTRAINT ... NOT VALID then VALIDATE CONSTRAINT."""
    diff = dict(before=before, after=after)
    if statements:
        diff['prepared'] = '%s\n%s\n' % (
            '-- The statements a real run would send, in order:' if check_mode else '-- The statements sent, in order:',
            '\n'.join(statement.rstrip(';') + ';' for statement in statements))
    return diff
