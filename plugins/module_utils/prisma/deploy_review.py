# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a deploy of Prisma migrations shows: per migration, every statement as it runs (or, in check mode, will run),
with its class, the lock it takes and on which tables, and its timeouts; and the planned SQL file of check mode.
Pure functions over the deploy's outcomes (deploy_steps), so tests/unit runs them."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import math

# How fast a concurrent build (or a VALIDATE) goes through a table, in bytes of the table's heap per second: the T12
# plan's 26 CREATE INDEX CONCURRENTLY by psql -f (bench/t12_seed_indexes.sql) took 3.42 s at scale 1 on the bench's
# 2-core machine (bench/README.md, run A; 3.59 s measured again for this), over tables of 566 MiB in all (each
# index's table counted once per index), and 33.4 s at scale 10: about 160 MiB/s. The review rounds its estimates up
# and says they are estimates; a busy server, a wide key or an expression index builds slower.
BUILD_BYTES_PER_SECOND = 160 * 1048576
ONLINE_SCANS = ('create_index', 'add_unique', 'add_primary_key', 'add_foreign_key', 'add_check', 'set_not_null')
ACTION_WORDS = dict(done='done', unchanged='already done', skipped='left out', planned='to run', failed='FAILED')


def lock_words(statement, timeouts):
    """How the statement locks, in words: the lock held while it runs, and the brief stronger one under the short
    lock_timeout."""
    tables = ', '.join(statement.get('lock_on') or []) or 'no table'
    if statement['cls'] == 'skip':
        return 'no lock'
    if statement['cls'] == 'online':
        words = '%s on %s while it runs (reads and writes go on)' % (statement['lock'], tables)
        if statement.get('brief_lock'):
            words += ', then %s for an instant under lock_timeout %s' % (
                statement['brief_lock'], timeouts['lock_timeout'])
        return words
    if not statement.get('lock_as_written'):
        return 'no table lock'
    return '%s on %s, under lock_timeout %s (%d retries)' % (
        statement['lock_as_written'], tables, timeouts['lock_timeout'], timeouts['lock_retries'])


def estimate(kind, table_bytes):
    """(seconds the statement's long part takes, words): an online kind scans its table (a build, a VALIDATE) at
    BUILD_BYTES_PER_SECOND, with reads and writes going on; a catalog statement holds its lock for an instant once it
    has it. None when the table's size is not known (a table an earlier statement of the deploy creates)."""
    if kind not in ONLINE_SCANS:
        return 0.0, 'its lock held for an instant once granted'
    if table_bytes is None:
        return None, 'its time not estimated (the table is created or changed earlier in the deploy)'
    seconds = table_bytes / float(BUILD_BYTES_PER_SECOND)
    return round(seconds, 1), 'about %s (table %.0f MiB, at the bench\'s build rate)' % (
        '%d s' % math.ceil(seconds) if seconds >= 1 else 'under a second', table_bytes / 1048576.0)


def review_lines(outcomes, timeouts, check_mode):
    """One block per migration: its name and what happened to it, then each statement: its line, class, kind, what
    happened (or will), its lock, and why where the class has a reason (a table created in the same migration, an
    acknowledgement)."""
    lines = []
    for migration in outcomes:
        lines.append('%s %s (%d statement(s))' % (
            'Migration' if not check_mode else 'Pending migration', migration['name'] if migration['action'] in (
                'applied', 'planned') else '%s: %s' % (migration['name'], migration['action']),
            len(migration['statements'])))
        for statement in migration['statements']:
            flag = ' ACKNOWLEDGED' if statement.get('acknowledged') else ''
            lines.append('  line %d [%s%s] %s: %s; %s%s' % (
                statement['line'], statement['cls'], flag, statement['kind'],
                ACTION_WORDS.get(statement['action'], statement['action']), lock_words(statement, timeouts),
                '; %s' % statement['estimate'] if check_mode and statement.get('estimate') else ''))
            if statement['cls'] == 'catalog' and statement.get('why'):
                lines.append('    plain form: %s' % statement['why'])
            if statement.get('error'):
                lines.append('    %s' % statement['error'].splitlines()[0])
    return lines


def planned_sql(outcomes, timeouts):
    """The planned SQL file of check mode: every statement in order, as the deploy will run it, under the comments
    that say where it comes from, its class and its lock."""
    parts = ['-- Prisma migrations to deploy, in order, as pg-zero-downtime runs them (check mode: nothing ran).',
             '-- Statements run as written use lock_timeout %s with %d retries; concurrent builds wait without it.'
             % (timeouts['lock_timeout'], timeouts['lock_retries'])]
    for migration in outcomes:
        parts.append('')
        parts.append('-- Migration %s' % migration['name'])
        for statement in migration['statements']:
            parts.append('-- line %d [%s] %s: %s%s' % (statement['line'], statement['cls'], statement['kind'],
                                                       lock_words(statement, timeouts),
                                                       '; %s' % statement['estimate'] if statement.get('estimate') else ''))
            if statement['action'] == 'unchanged':
                parts.append('-- already done')
            for text in statement.get('statements') or []:
                parts.append(text if text.startswith('--') else text.rstrip(';') + ';')
    return '\n'.join(parts) + '\n'


def deploy_summary(history, outcomes, check_mode):
    """The few lines the play prints first: what was pending and what this run did of it."""
    if not outcomes:
        return ['Prisma migrations: nothing pending (%d applied).' % len(history['applied'])]
    done = [m['name'] for m in outcomes if m['action'] in ('applied', 'resumed')]
    if check_mode:
        return ['Prisma migrations: %d pending, to be deployed in order (check mode: nothing ran): %s.'
                % (len(outcomes), ', '.join(m['name'] for m in outcomes))]
    lines = ['Prisma migrations: %d deployed online%s.' % (len(done), ': ' + ', '.join(done) if done else '')]
    failed = [m['name'] for m in outcomes if m['action'] == 'failed']
    if failed:
        lines.append('Stopped in migration %s: its row in _prisma_migrations stays unfinished, and the statements done '
                     'before the failure are recorded; fix the cause and rerun to resume it.' % failed[0])
    return lines
