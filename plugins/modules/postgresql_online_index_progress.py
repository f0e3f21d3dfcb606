#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: postgresql_online_index_progress
short_description: Follow background index builds, with phase and percent from pg_stat_progress_create_index
description:
  - Follows the background (async) runs of postgresql_online_index, postgresql_online_constraint or
    postgresql_online_unique_constraint that O(jobs) lists. It waits up to O(wait) seconds for them to finish,
    returning as soon as all have. It returns the progress of each build in flight from
    C(pg_stat_progress_create_index) (index, phase, percent, blocks, tuples, lockers waited for), and when all have
    finished, the result of each run.
  - A build that waits (for its table lock, for writers, for older snapshots) is shown with how long its current
    wait has lasted and, per session it waits for, the pid, user, application, client, state, transaction age
    and query. Once a wait lasted O(build_wait_warn) seconds the line starts with C(WARNING).
  - So is every other statement of the runs that waits for a lock on a followed table, with the same lines for the
    sessions it waits for (C(pg_blocking_pids)). These are a build still waiting for its table lock (before PostgreSQL
    reports its progress), C(DROP INDEX CONCURRENTLY) waiting for the transactions that use the table, and the steps
    under lock_timeout (C(ADD), C(DROP) and C(VALIDATE CONSTRAINT), C(SET NOT NULL), C(ATTACH PARTITION), a swap's
    renames, the C(LOCK TABLE) of a foreign key's referenced table, a duplicate rename).
  - Meant for a task retried C(until) RV(finished) is true, with a short C(delay). The project's stdout
    callback (C(pg_zero_downtime.migrations.progress)) prints RV(progress_lines) at every retry, so the operator
    sees each build move.
  - Read-only on the database. It reports C(changed) when a finished run changed the database, since the runs
    themselves were started in the background, where Ansible cannot see what they did.
version_added: '0.5.0'
options:
  jobs:
    description:
      - The background runs, each with C(results_file) (from the async task's result), and C(schema) and C(table)
        for a one-table run, C(tables) for a run of a plan's tables or C(constraints) for a run of a constraint
        phase.
    type: list
    elements: dict
    required: true
    suboptions:
      results_file:
        description: The async task's C(results_file).
        type: path
        required: true
      schema:
        description: Schema of the table the run builds indexes of.
        type: str
        default: public
      table:
        description: Table the run builds indexes of.
        type: str
      tables:
        description:
          - The tables of a run of several (its O(pg_zero_downtime.migrations.postgresql_online_index#module:tables)),
            each a dict with C(name) and C(schema) (default the job's C(schema)); other keys, such as C(indexes), are
            not read.
        type: list
        elements: dict
        default: []
      constraints:
        description:
          - The constraints of a run of the constraint phase (its
            O(pg_zero_downtime.migrations.postgresql_online_constraint#module:constraints)), each a dict with C(table),
            C(schema) (default the job's C(schema)) and, for a foreign key, C(references) (C(table), C(schema)). Their
            tables and referenced tables are followed; other keys are not read.
        type: list
        elements: dict
        default: []
  wait:
    description: Longest time in seconds to wait for the runs to finish before reporting.
    type: float
    default: 3.0
  cleanup:
    description: Remove the results files of finished runs.
    type: bool
    default: true
  build_wait_warn:
    description: A build whose current wait has lasted this many seconds is shown as a warning.
    type: float
    default: 60
extends_documentation_fragment:
  - pg_zero_downtime.migrations.common
  - pg_zero_downtime.migrations.connection
  - community.postgresql.postgres
'''

EXAMPLES = r'''
- name: Start the build in the background
  pg_zero_downtime.migrations.postgresql_online_index:
    login_db: app
    table: Job
    indexes: [{name: Job_createdAt_idx, columns: [createdAt]}]
  async: 86400
  poll: 0
  register: build

- name: Follow it
  pg_zero_downtime.migrations.postgresql_online_index_progress:
    login_db: app
    jobs: [{results_file: "{{ build.results_file }}", schema: public, table: Job}]
  register: progress
  until: progress.finished
  retries: 28800
  delay: 0
'''

RETURN = r'''
finished:
  description: Whether every run has finished.
  returned: always
  type: bool
progress:
  description:
    - The builds in flight, each with C(schema), C(table), C(index), C(phase), C(percent) (or null), C(blocks_done),
      C(blocks_total), C(tuples_done), C(tuples_total), C(lockers_done), C(lockers_total), C(seconds), C(pid),
      C(waiting_seconds) (of its current wait, null when it does not wait) and C(waiting_for) (the sessions).
    - Then the other statements of the runs that wait for a lock, each with C(pid), C(query), C(phase) (what it waits
      for), C(seconds), C(waiting_seconds) and C(waiting_for); their C(schema), C(table) and C(index) are null.
  returned: always
  type: list
  elements: dict
progress_lines:
  description: RV(progress) as one readable line per build (what the stdout callback prints).
  returned: always
  type: list
  elements: str
results:
  description:
    - When RV(finished), the result of each table's run, in the order of O(jobs); a run of several tables stands
      for its tables, in its own order (its C(tables) result). Each has C(failed) when it failed.
  returned: always
  type: list
  elements: dict
failed_jobs:
  description: How many runs failed (a run of several tables counts each table that failed or did not start).
  returned: always
  type: int
failure_message:
  description:
    - When a run failed, what to say. Each failure once, what the runs did before it and kept, and the tables
      that did not start because of it. Null otherwise.
  returned: always
  type: str
indexes:
  description: Once every run has finished, the per-index results of all of them (as the runs return them).
  returned: always
  type: list
  elements: dict
seconds:
  description: Once every run has finished, how long the longest of them took.
  returned: always
  type: float
summary:
  description: Once every run has finished, one line per index changed (action, name, table, seconds, waits).
  returned: always
  type: list
  elements: str
'''

import os
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.connection import (
    conn_params_of, connection_argument_spec,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.build_waits import (
    RUN_LOCK_WAITS_QUERY, WAITING_ON_QUERY, lock_wait_phase, wait_summary,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.index_runs import failure_message, index_summary
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.run.async_runs import read_async_result
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.statements import error_text, fetch_dicts
from ansible_collections.community.postgresql.plugins.module_utils.postgres import connect_to_db

PROGRESS_QUERY = (
    "SELECT p.pid, n.nspname AS schema, c.relname AS table, i.relname AS index, p.phase, "
    "rn.nspname AS root_schema, r.relname AS root_table, "
    "p.blocks_done, p.blocks_total, p.tuples_done, p.tuples_total, p.lockers_done, p.lockers_total, "
    "round(extract(epoch FROM now() - a.query_start)::numeric, 1)::float AS seconds "
    "FROM pg_catalog.pg_stat_progress_create_index p "
    "JOIN pg_catalog.pg_class c ON c.oid = p.relid "
    "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
    "LEFT JOIN pg_catalog.pg_class i ON i.oid = p.index_relid "
    "LEFT JOIN pg_catalog.pg_class r ON r.oid = pg_catalog.pg_partition_root(c.oid) "
    "LEFT JOIN pg_catalog.pg_namespace rn ON rn.oid = r.relnamespace "
    "LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = p.pid "
    "WHERE p.datid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()) "
    "ORDER BY n.nspname, c.relname, i.relname")


# How often the watch looks at the runs' lock waits while it waits for the runs to end: a step under lock_timeout
# waits at most that long per attempt (500 ms for a foreign key's), far less than the time between two reports.
SAMPLE_SECONDS = 0.5


def read_progress(cursor, tables):
    """The builds in flight on C(tables) ((schema, table) pairs), and the run's other statements that wait for a lock
    there (read_lock_waits), each with the sessions it waits for."""
    progress = []
    for row in fetch_dicts(cursor, PROGRESS_QUERY):
        if (row['schema'], row['table']) in tables or (row['root_schema'], row['root_table']) in tables:
            row['percent'] = percent(row)
            progress.append(row)
    return with_waits(cursor, progress) + read_lock_waits(cursor, tables)


def read_lock_waits(cursor, tables):
    """The runs' statements that wait for a lock on C(tables) right now (build_waits.RUN_LOCK_WAITS_QUERY: a build
    before it reports progress, DROP INDEX CONCURRENTLY, the steps under lock_timeout), with the sessions each waits
    for."""
    ordered = sorted(tables)
    rows = fetch_dicts(cursor, RUN_LOCK_WAITS_QUERY, dict(schemas=[schema for schema, _table in ordered],
                                                          tables=[table for _schema, table in ordered]))
    return with_waits(cursor, [dict(row, schema=None, table=None, index=None, phase=lock_wait_phase(row))
                               for row in rows])


def with_waits(cursor, rows):
    """C(rows) (backends of the runs), each with how long its current wait has lasted and the sessions it waits for."""
    for row in rows:
        row['waiting_seconds'], row['waiting_for'] = wait_summary(
            fetch_dicts(cursor, WAITING_ON_QUERY, dict(pid=row['pid'])))
    return rows


def ended_waits(seen, current):
    """The lock waits sampled since the last report (C(seen): {(pid, query): row}) that are over by now, each once as it
    was last seen: a step under lock_timeout that gave up (and is retried) or got its lock between two reports."""
    now = set((row['pid'], row.get('query')) for row in current)
    return [dict(row, ended=True) for key, row in seen.items() if key not in now]


def percent(row):
    """Progress of the current phase, in percent, from the counters PostgreSQL fills in for it."""
    for done, total in (('blocks_done', 'blocks_total'), ('tuples_done', 'tuples_total'),
                        ('lockers_done', 'lockers_total')):
        if row.get(total):
            return round(100.0 * row[done] / row[total], 1)
    return None


def progress_line(row):
    share = ' %5.1f%%' % row['percent'] if row['percent'] is not None else ''
    counters = []
    if row.get('blocks_total'):
        counters.append('%s of %s blocks' % (row['blocks_done'], row['blocks_total']))
    if row.get('tuples_total'):
        counters.append('%s of %s tuples' % (row['tuples_done'], row['tuples_total']))
    if row.get('lockers_total'):
        counters.append('waited for %s of %s older transactions' % (row['lockers_done'], row['lockers_total']))
    line = '%s on %s.%s: %s%s%s, %ss' % (row['index'] or '(index)', row['schema'], row['table'], row['phase'], share,
                                         ' (%s)' % ', '.join(counters) if counters else '', row['seconds'])
    return line + wait_text(row)


def lock_wait_line(row):
    """A statement of the runs that waits for a lock (or did, between two reports), and whom it waits for."""
    if row.get('ended'):
        return '%s: %s for %ss (over by now), behind: %s' % (
            row['query'], row['phase'].replace('waiting', 'waited', 1), row.get('waiting_seconds') or row['seconds'],
            '; '.join(row.get('waiting_for') or ['(unseen)']))
    return '%s: %s, %ss%s' % (row['query'], row['phase'], row['seconds'], wait_text(row))


def wait_text(row):
    """What a build waits for, appended to its line: how long, and each session."""
    if row.get('waiting_seconds') is None:
        return ''
    return '; waiting %ss for: %s' % (row['waiting_seconds'], '; '.join(row.get('waiting_for') or ['(unseen)']))


def flagged(line, row, warn_after):
    """The line, marked as a warning once the build's current wait lasted warn_after seconds."""
    if warn_after and (row.get('waiting_seconds') or 0) >= warn_after:
        return 'WARNING: %s (build_wait_warn=%ss; the build blocks nobody while it waits, but cannot finish before '\
               'those sessions end: end them, or wait)' % (line, warn_after)
    return line


def watched_tables(jobs):
    """(schema, table) of every table the runs of C(jobs) work on: a constraint's table, and a foreign key's referenced
    table too (its steps lock that one first)."""
    for job in jobs:
        schema = job.get('schema') or 'public'
        if job.get('tables'):
            for table in job['tables']:
                yield table.get('schema') or schema, table['name']
        elif job.get('table'):
            yield schema, job['table']
        for constraint in job.get('constraints') or []:
            yield constraint.get('schema') or schema, constraint['table']
            references = constraint.get('references') or {}
            if references.get('table'):
                yield references.get('schema') or constraint.get('schema') or schema, references['table']


def warning_text(warning):
    """A warning of a results file as text: ansible-core 2.19 writes each as {"event": {"msg": ...}, ...}."""
    if isinstance(warning, dict):
        event = warning.get('event') if isinstance(warning.get('event'), dict) else warning
        return str(event.get('msg') or warning)
    return str(warning)


def per_table(outcomes):
    """The runs' results, a run of several tables standing for its tables (its C(tables) result)."""
    results = []
    for outcome in outcomes:
        if isinstance(outcome.get('tables'), list):
            results.extend(outcome['tables'])
        else:
            results.append(outcome)
    return results


def main():
    argument_spec = connection_argument_spec(
        jobs=dict(type='list', elements='dict', required=True, options=dict(
            results_file=dict(type='path', required=True),
            schema=dict(type='str', default='public'),
            table=dict(type='str'),
            tables=dict(type='list', elements='dict', default=[]),
            constraints=dict(type='list', elements='dict', default=[]),
        )),
        wait=dict(type='float', default=3.0),
        cleanup=dict(type='bool', default=True),
        build_wait_warn=dict(type='float', default=60),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    missing = [job for job in params['jobs'] if not job.get('results_file')]
    if missing:
        module.fail_json(msg='every job needs its results_file (register the async task and pass results_file)')

    deadline = time.monotonic() + max(params['wait'], 0)
    tables = set(watched_tables(params['jobs']))
    # The runs' results files say how they end; the server only adds what is shown meanwhile. So a server that cannot
    # be read right now (restarting, a dropped network) is said in the line, and the watch goes on.
    watch = dict(connection=None, unreadable=None)

    def cursor():
        """A cursor of the watch's connection, opened once; None once the server could not be read."""
        if watch['connection'] is None and watch['unreadable'] is None:
            watch['connection'], watch['unreadable'] = connect_to_db(
                module, conn_params_of(module), autocommit=True, fail_on_conn=False)
        return watch['connection'].cursor() if watch['connection'] is not None and watch['unreadable'] is None \
            else None

    seen, sampled = {}, None
    while True:
        outcomes = [read_async_result(job['results_file']) for job in params['jobs']]
        if all(outcome is not None for outcome in outcomes) or time.monotonic() >= deadline:
            break
        if sampled is None or time.monotonic() - sampled >= SAMPLE_SECONDS:
            # The lock waits of the steps under lock_timeout last less than the time between two reports: they are
            # looked at meanwhile, so that each is shown with whom it waited for.
            sampled = time.monotonic()
            try:
                if cursor() is not None:
                    seen.update(((row['pid'], row['query']), row) for row in read_lock_waits(cursor(), tables))
            except Exception as error:  # psycopg2 and psycopg 3 errors share no importable base here
                watch['unreadable'] = error_text(error)
        time.sleep(0.1)
    finished = all(outcome is not None for outcome in outcomes)

    progress = []
    if not finished:
        try:
            if cursor() is not None:
                progress = read_progress(cursor(), tables)
                progress += ended_waits(seen, progress)
        except Exception as error:  # as above
            progress = []
            watch.update(unreadable=error_text(error))
        unreadable = watch['unreadable']
        progress_lines = [flagged(progress_line(row) if row['table'] else lock_wait_line(row), row,
                                  params['build_wait_warn'])
                          for row in progress] or [
            'progress not readable right now (%s); still following the runs' % unreadable if unreadable else
            'waiting: no build in progress and no lock waited for on %s right now (catalog checks, a pause between '
            'lock retries, or between steps)'
            % ', '.join('%s.%s' % table for table in sorted(tables))]
    else:
        progress_lines = []
        if params['cleanup']:
            for job in params['jobs']:
                try:
                    os.unlink(job['results_file'])
                except OSError:
                    pass
    if watch['connection'] is not None:
        watch['connection'].close()
    results = per_table(outcomes) if finished else []
    # What the background runs warned about (long build waits, a wait for the replicas) was said where nobody
    # sees it: it is said again here.
    for outcome in outcomes if finished else []:
        for warning in outcome.get('warnings') or []:
            module.warn(warning_text(warning))
    # The runs were started in the background, where Ansible cannot see what they did: the watch that sees them
    # end reports their change.
    changed = any(result.get('changed') for result in results)
    failed = [r for r in results if r.get('failed')]
    indexes = [entry for result in results for entry in result.get('indexes') or []]
    module.exit_json(changed=changed, finished=finished, progress=progress, progress_lines=progress_lines,
                     results=results, failed_jobs=len(failed), indexes=indexes,
                     seconds=max([o.get('seconds') or 0.0 for o in outcomes] or [0.0]) if finished else 0.0,
                     summary=index_summary(indexes, False, max([o.get('parallelism') or 1 for o in outcomes] or [1]))
                     if finished else [],
                     failure_message=failure_message(results) if failed else None)


if __name__ == '__main__':
    main()
