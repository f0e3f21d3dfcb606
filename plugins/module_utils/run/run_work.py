# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a run does, decided from the preflight's proof, without a database.

Which phases the run's tag selection runs, the work each phase has (the tables and constraints it is handed),
whether the run has anything to do at all (when not, it takes no lock and ends after the preflight), the disk
verdict, and the lines that tell the operator. Pure functions over plain data: tests/unit runs them.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

# The phases of migrate.yml and rollback.yml, each also the tag that selects it.
PHASES = ('backup', 'baseline', 'indexes', 'constraints', 'validate', 'prisma')
# The phases that change the schema or the history: the others only make sense around them.
DDL_PHASES = ('indexes', 'constraints', 'prisma')
MIB = 1048576.0


def selected_phases(run_tags, skip_tags):
    """The phases a tag selection runs (ansible_run_tags, ansible_skip_tags), in phase order.

    No selection runs all ('all'); 'tagged' runs every phase, since each phase is tagged. A tag that names no phase
    (preflight, always) selects none of them.
    """
    run_tags = set(run_tags or ['all'])
    skip_tags = set(skip_tags or [])
    if 'all' in skip_tags or 'tagged' in skip_tags:
        return []
    everything = bool(run_tags & set(['all', 'tagged']))
    return [phase for phase in PHASES if (everything or phase in run_tags) and phase not in skip_tags]


def index_work(tables, pending_tables, only_tables):
    """The plan's table entries the index phase works on: those with work left, limited to only_tables when given.

    The index module orders them (last to first when state is absent).
    """
    names = set(pending_tables)
    if only_tables:
        names &= set(only_tables)
    return [table for table in tables if table['name'] in names]


def constraint_work(constraints, pending, restore_pending, state):
    """The plan's constraint entries the constraint phase works on, in the order it works on them.

    Migrating: those with work left, in plan order. Rolling back: last to first, each one still in place or with
    renamed duplicate values still to restore.
    """
    if state == 'present':
        return [c for c in constraints if c['name'] in pending]
    wanted = set(pending) | set(restore_pending)
    return [c for c in reversed(constraints) if c['name'] in wanted]


def prisma_work(prisma_action, state, phases, pending_tables, pending_constraints, plan_tables, plan_constraints):
    """Whether the Prisma phase has a record to write (migrating) or remove (rolling back) in this run.

    Migrating, the record is written once the whole plan is in place: when it already is, or when this run's index and
    constraint phases do all that is left.
    """
    if 'prisma' not in phases or prisma_action in (None, 'unchanged', 'absent'):
        return False
    if state != 'present':
        return True
    done_tables = set(t['name'] for t in plan_tables) if 'indexes' in phases else set()
    done_constraints = set(c['name'] for c in plan_constraints) if 'constraints' in phases else set()
    return set(pending_tables) <= done_tables and set(pending_constraints) <= done_constraints


def run_work(plan, state, phases, only_tables, pending_tables, pending_constraints, restore_pending, prisma_action):
    """The work of this run: dict(index_tables, constraints, prisma, pending, plan_pending).

    C(pending) is whether the run has anything to do: DDL in a selected phase. A selection without any DDL phase
    (--tags backup, --tags validate) keeps the run going when the plan has work left, as before the tags.
    """
    plan_tables = index_work(plan.get('tables') or [], pending_tables, only_tables)
    plan_constraints = constraint_work(plan.get('constraints') or [], pending_constraints, restore_pending, state)
    tables = plan_tables if 'indexes' in phases else []
    constraints = plan_constraints if 'constraints' in phases else []
    prisma = prisma_work(prisma_action, state, phases, pending_tables, pending_constraints, plan_tables,
                         plan_constraints)
    plan_pending = bool(pending_tables or pending_constraints or restore_pending
                        or prisma_action not in (None, 'unchanged', 'absent'))
    if any(phase in phases for phase in DDL_PHASES):
        pending = bool(tables or constraints or prisma)
    else:
        pending = plan_pending and bool(phases)
    return dict(index_tables=tables, constraints=constraints, prisma=prisma, pending=pending,
                plan_pending=plan_pending)


def disk_verdict(estimated_bytes, factor, budget_bytes, free_bytes, data_directory):
    """Whether the index builds fit: dict(ok, needed_bytes, available_bytes, source, message).

    The need (the estimate times factor, for the build's sort) is compared with the budget when one is set, else with
    the free space of the data directory when it could be read, else only reported (ok, with a message saying so).
    """
    needed = int(estimated_bytes * factor)
    verdict = dict(ok=True, needed_bytes=needed, available_bytes=None, source=None, message=None)
    if estimated_bytes <= 0:
        return verdict
    if budget_bytes > 0:
        verdict.update(available_bytes=budget_bytes, source='the budget preflight_disk_budget_bytes')
    elif free_bytes is not None:
        verdict.update(available_bytes=free_bytes, source='free space on %s' % data_directory)
    else:
        verdict['message'] = (
            'The index builds need about %.1f MiB of disk. The free space of the database server cannot be read from '
            'here: make sure it is there, or set preflight_disk_budget_bytes to have the run refuse when the estimate '
            'exceeds it.' % (needed / MIB))
        return verdict
    if needed > verdict['available_bytes']:
        verdict['ok'] = False
        verdict['message'] = (
            'Not enough disk for the index builds: they need about %.1f MiB (estimated index size %.1f MiB x %s for '
            'sorting), but %s allows %.1f MiB. Nothing was changed. Free space, raise the budget, or migrate fewer '
            'tables at a time (-e pgzd_only_tables=...).'
            % (needed / MIB, estimated_bytes / MIB, factor, verdict['source'], verdict['available_bytes'] / MIB))
    else:
        verdict['message'] = 'Disk: the index builds need about %.1f MiB; %s allows %.1f MiB.' % (
            needed / MIB, verdict['source'], verdict['available_bytes'] / MIB)
    return verdict


def summary_lines(plan, state, phases, work, pending_tables, pending_constraints, statements, prisma_action,
                  check_mode):
    """What the preflight found, for the play's output: one line per kind of work, and what this run does of it."""
    gone = state != 'present'
    prisma = (plan.get('prisma_migration') or {}).get('name')
    lines = ['Plan %s (%s): %d tables, %d indexes, %d constraint(s), %d baseline queries.' % (
        plan.get('name'), plan.get('file') or 'given inline', len(plan.get('tables') or []),
        sum(len(t.get('indexes') or []) for t in plan.get('tables') or []), len(plan.get('constraints') or []),
        len(plan.get('baseline_queries') or []))]
    if not work['plan_pending']:
        line = ('Nothing to do: nothing the ledger of plan %s records is left to undo (anything else of a planned name '
                'is left alone).' % plan.get('name')) if gone else \
            'Nothing to do: every index of the plan is already in place and valid, every constraint in place.'
        if prisma and prisma_action == 'unchanged':
            line += ' The Prisma migration %s is already recorded as applied.' % prisma
        lines.append(line)
        return lines
    if pending_tables:
        lines.append('%d statement(s) to run on %s' % (len(statements), ', '.join(pending_tables)))
    if pending_constraints:
        lines.append('Constraints to %s: %s' % ('drop' if gone else 'add', ', '.join(pending_constraints)))
    if prisma and prisma_action not in (None, 'unchanged', 'absent'):
        if work['prisma']:
            lines.append('Prisma migration %s: to be %s once the plan is in place.' % (prisma, prisma_action)
                         if not gone else 'Prisma migration %s: its record to be removed first.' % prisma)
        elif not gone:
            lines.append('NOT recorded in Prisma\'s history by this run: %s. The plan is not complete after it (still '
                         'pending: %s), as after -e pgzd_only_tables or --tags. Run migrate.yml for the whole plan; it '
                         'records the migration then.' % (prisma, ', '.join(
                             [t for t in pending_tables if t not in [w['name'] for w in work['index_tables']]]
                             + [c for c in pending_constraints if c not in [w['name'] for w in work['constraints']]])
                             or 'the phases not selected'))
    if not work['pending']:
        lines.append('Nothing to do in the phases selected (%s): run without --tags/--skip-tags (or without '
                     'pgzd_only_tables) to do the rest.' % (', '.join(phases) or 'none'))
    elif check_mode:
        lines.append('Check mode: nothing is changed; the phases below show what a real run would do.')
    return lines
