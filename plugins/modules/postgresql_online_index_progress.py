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
  - Follows the background (async) runs of postgresql_online_index that O(jobs) lists. It waits up to O(wait)
    seconds for them to finish, returning as soon as all have. It returns the progress of each build in
    flight from C(pg_stat_progress_create_index) (index, phase, percent, blocks, tuples, lockers waited for),
    and when all have finished, the result of each run.
  - Meant for a task retried C(until) RV(finished) is true, with a short C(delay). The project's stdout
    callback (C(pg_zero_downtime)) prints RV(progress_lines) at every retry, so the operator sees each build move.
  - Read-only on the database.
version_added: '0.1.0'
options:
  login_db:
    description: Name of the database to connect to.
    type: str
    aliases: [db]
  jobs:
    description: The background runs, each with C(results_file) (from the async task's result), C(schema) and C(table).
    type: list
    elements: dict
    required: true
  wait:
    description: Longest time in seconds to wait for the runs to finish before reporting.
    type: float
    default: 3.0
  cleanup:
    description: Remove the results files of finished runs.
    type: bool
    default: true
  session_role:
    description: Switch to this role after connecting.
    type: str
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
author:
  - pg-zero-downtime maintainers
extends_documentation_fragment:
  - community.postgresql.postgres
'''

EXAMPLES = r'''
- name: Start the build in the background
  postgresql_online_index:
    login_db: app
    table: Job
    indexes: [{name: Job_createdAt_idx, columns: [createdAt]}]
  async: 86400
  poll: 0
  register: build

- name: Follow it
  postgresql_online_index_progress:
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
      C(blocks_total), C(tuples_done), C(tuples_total), C(lockers_done), C(lockers_total), C(seconds) and C(pid).
  returned: always
  type: list
  elements: dict
progress_lines:
  description: RV(progress) as one readable line per build (what the stdout callback prints).
  returned: always
  type: list
  elements: str
results:
  description: When RV(finished), the result of each run, in the order of O(jobs) (each has C(failed) when it failed).
  returned: always
  type: list
  elements: dict
failed_jobs:
  description: How many runs failed.
  returned: always
  type: int
'''

import os
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.online_index import fetch_dicts, read_async_result
from ansible_collections.community.postgresql.plugins.module_utils.postgres import (
    connect_to_db,
    ensure_required_libs,
    get_conn_params,
    postgres_common_argument_spec,
)

PROGRESS_QUERY = (
    "SELECT p.pid, n.nspname AS schema, c.relname AS table, i.relname AS index, p.phase, "
    "p.blocks_done, p.blocks_total, p.tuples_done, p.tuples_total, p.lockers_done, p.lockers_total, "
    "round(extract(epoch FROM now() - a.query_start)::numeric, 1)::float AS seconds "
    "FROM pg_catalog.pg_stat_progress_create_index p "
    "JOIN pg_catalog.pg_class c ON c.oid = p.relid "
    "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
    "LEFT JOIN pg_catalog.pg_class i ON i.oid = p.index_relid "
    "LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = p.pid "
    "WHERE p.datid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()) "
    "ORDER BY n.nspname, c.relname, i.relname")


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
    return '%s on %s.%s: %s%s%s, %ss' % (row['index'] or '(index)', row['schema'], row['table'], row['phase'], share,
                                       ' (%s)' % ', '.join(counters) if counters else '', row['seconds'])


def main():
    argument_spec = postgres_common_argument_spec()
    argument_spec.update(
        login_db=dict(type='str', aliases=['db']),
        jobs=dict(type='list', elements='dict', required=True),
        wait=dict(type='float', default=3.0),
        cleanup=dict(type='bool', default=True),
        session_role=dict(type='str'),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    missing = [job for job in params['jobs'] if not job.get('results_file')]
    if missing:
        module.fail_json(msg='every job needs its results_file (register the async task and pass results_file)')

    deadline = time.monotonic() + max(params['wait'], 0)
    while True:
        outcomes = [read_async_result(job['results_file']) for job in params['jobs']]
        if all(outcome is not None for outcome in outcomes) or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    finished = all(outcome is not None for outcome in outcomes)

    progress = []
    if not finished:
        ensure_required_libs(module)
        connection, dummy = connect_to_db(module, get_conn_params(module, params), autocommit=True)
        tables = set((job.get('schema', 'public'), job.get('table')) for job in params['jobs'])
        for row in fetch_dicts(connection.cursor(), PROGRESS_QUERY):
            if (row['schema'], row['table']) in tables:
                row['percent'] = percent(row)
                progress.append(row)
        connection.close()
        progress_lines = [progress_line(row) for row in progress] or [
            'waiting: no build of %s in progress right now (locks, catalog checks or between indexes)'
            % ', '.join('%s.%s' % table for table in sorted(tables))]
    else:
        progress_lines = []
        if params['cleanup']:
            for job in params['jobs']:
                try:
                    os.unlink(os.path.expanduser(job['results_file']))
                except OSError:
                    pass
    results = outcomes if finished else []
    module.exit_json(changed=False, finished=finished, progress=progress, progress_lines=progress_lines,
                     results=results, failed_jobs=len([r for r in results if r.get('failed')]))


if __name__ == '__main__':
    main()
