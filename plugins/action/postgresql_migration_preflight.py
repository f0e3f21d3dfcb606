# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The controller side of postgresql_migration_preflight.

Loads the plan file where it is, on the controller, and refuses a malformed plan before anything connects; names the
run, and refuses a run id or an artifacts directory that would let the run write outside a directory of its own;
works out the phases the run's tag selection runs; then runs the module once on the host, and returns for the later
phases the loaded plan, the run id and the owner process.

A refused run (any failure of the preflight, before any change) writes runs/<plan>-<run id>/report.json under the
artifacts directory, with status refused and its problems, for pipelines: unless the run id or the directory itself
is what was refused.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import time

from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.pg_zero_downtime.migrations.plugins.action.run_records import json_text, write_text
from ansible_collections.pg_zero_downtime.migrations.plugins.filter.migration_report import refused_report
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.plan import plan_schema
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.run.run_work import selected_phases
from ansible_collections.pg_zero_downtime.migrations.plugins.plugin_utils.artifacts_dir import (
    artifacts_dir_error, artifacts_dir_path, run_folder_path)
from ansible_collections.pg_zero_downtime.migrations.plugins.plugin_utils.migration_plan import (
    load_plan, new_run_id, only_tables_list, run_id_error,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.plugin_utils.prisma_folder import (
    folder_plan, migrations_args,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.plugin_utils.renamed_variables import (
    deprecation_message, knob_warnings, renamed)
from ansible_collections.pg_zero_downtime.migrations.plugins.plugin_utils.run_context import plan_fact, run_context
from ansible_collections.pg_zero_downtime.migrations.plugins.plugin_utils.run_owner import controller_pid

MODULE = 'pg_zero_downtime.migrations.postgresql_migration_preflight'
# The Prisma migration's keys the module takes: the plan's, and the text of its migration.sql the plan loader read.
PRISMA_KEYS = plan_schema.keys(plan_schema.PRISMA_MIGRATION) + (plan_schema.PRISMA_MIGRATION_SQL[0],)
# Variables renamed in 0.17.0 that keep working until 0.19.0 (the new names' role defaults take the old values): the
# preflight warns once for each old name the run sets.
RENAMED_PREFIXES = {'unique_constraint_': 'constraints_'}
RENAMED_IGNORE = ('unique_constraint_result', 'unique_constraint_results')
REMOVED_IN = '0.19.0'


def renamed_warnings(task_vars):
    """The deprecation warnings for the old names the run sets: of the constraint phase's variables, and of the
    global knobs (plugin_utils/renamed_variables.py, RENAMED_KNOBS)."""
    return [deprecation_message(old, new, 'the constraint phase of migrate.yml and rollback.yml')
            for old, new in renamed(task_vars, prefixes=RENAMED_PREFIXES, ignore=RENAMED_IGNORE)
            ] + knob_warnings(task_vars)


def module_args(args, plan, run_id, phases):
    """The module's options: the task's, the plan's parts, the run id the lock shows, the phases to run."""
    args = dict(args)
    args.pop('on_duplicates', None)
    if plan is not None:
        args.update(plan_file=plan['file'], plan_name=plan['name'], schema=plan['schema'], tables=plan.get('tables') or [],
                    constraints=plan['constraints'], baseline_queries=plan['baseline_queries'],
                    trusted=plan.get('trusted') or [])
        if plan.get('prisma_migration'):
            args['prisma_migration'] = dict((key, value) for key, value in plan['prisma_migration'].items()
                                            if key in PRISMA_KEYS)
    args['run_id'] = '%s-%s' % (args.get('plan_name') or 'plan', run_id)
    if args.get('phases') is None:
        args['phases'] = phases
    if args.get('only_tables') is not None:
        args['only_tables'] = only_tables_list(args['only_tables'])
    return args


def write_refused_report(args, plan, run_id, result):
    """Writes report.json of a refused run into its run folder (as roles/report names it); returns its path."""
    folder = run_folder_path(artifacts_dir_path(args['artifacts_dir']), (plan or {}).get('name') or 'adhoc', run_id)
    report = refused_report((plan or {}).get('name'), (plan or {}).get('file'), run_id, args.get('login_db'),
                            args.get('login_host'), time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
                            result.get('problems') or [result.get('msg') or 'the preflight failed'])
    os.makedirs(folder, mode=0o750, exist_ok=True)
    path = os.path.join(folder, 'report.json')
    write_text(path, json_text(report), 0o640)
    return path


class ActionModule(ActionBase):

    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super(ActionModule, self).run(tmp, task_vars)
        args = dict(self._task.args)
        run_id = args.pop('run_id', None) or new_run_id()
        # Where the run writes, before anything else: the run id names its folder under artifacts_dir.
        refused = [error for error in (run_id_error(run_id), artifacts_dir_error(args['artifacts_dir'])
                                       if args.get('artifacts_dir') is not None else None) if error]
        if refused:
            result.update(failed=True, changed=False, msg='\n'.join(refused))
            return result
        plan = None
        folder = args.pop('prisma_migrations_dir', None)
        allow = args.pop('prisma_allow', None) or []
        rollback_to = args.pop('prisma_rollback_to', None)
        prisma_schema = args.pop('prisma_schema', None) or 'public'
        if folder and not args.get('plan_file'):
            # A prisma/migrations folder alone: the run's plan is the folder's (no tables, no constraints of its own).
            args.pop('plan_file', None)
            plan = folder_plan(folder, prisma_schema)
        if 'plan_file' in args:
            plan, error = load_plan(args.get('plan_file'), os.getcwd(), on_duplicates=args.get('on_duplicates'),
                                    only_tables=only_tables_list(args.get('only_tables')),
                                    read_prisma_sql=args.get('state', 'present') == 'present')
            if error:
                result.update(failed=True, changed=False, msg=error)
                return self._refused(args, None, run_id, result)
        # A plan file may name the folder; -e pgzd_prisma_migrations_dir names it for this run.
        folder = folder or (plan or {}).get('prisma_migrations_dir')
        if folder:
            own = [key for key in ('tables', 'constraints', 'prisma_migration') if plan.get(key)]
            deploy, problems = migrations_args(dict(migrations_dir=folder, allow=allow, rollback_to=rollback_to or None,
                                                    schema=plan.get('schema') or 'public'), os.getcwd())
            if own:
                problems = ['Plan %s has %s of its own, and the run deploys the Prisma migrations folder %s statement '
                            'by statement: run the plan and the folder separately (without -e pgzd_plan, the folder '
                            'is the plan). Nothing was changed.' % (plan['name'], ', '.join(own), folder)]
            if problems:
                result.update(failed=True, changed=False, msg='\n'.join(problems))
                return self._refused(args, plan, run_id, result)
            args['prisma_deploy'] = deploy
            plan['prisma_migrations_dir'] = deploy['migrations_dir']
        # The run's ansible-playbook watches over the lock and the DDL when the module runs on this machine: once it
        # is gone (stopped, cancelled by AWX), the lock is given back and no DDL starts.
        owner_pid = controller_pid() if self._connection.transport == 'local' else 0
        args.setdefault('owner_pid', owner_pid)
        for message in renamed_warnings(task_vars):
            Display().deprecated(message, version=REMOVED_IN, collection_name='pg_zero_downtime.migrations')
        args = module_args(args, plan, run_id, selected_phases(task_vars.get('ansible_run_tags'),
                                                               task_vars.get('ansible_skip_tags')))
        outcome = self._execute_module(module_name=MODULE, module_args=args, task_vars=task_vars)
        # The module knows the database, not the inventory: a replica's message names the host to --limit.
        host = task_vars.get('inventory_hostname', '<this host>')
        for key in ('message', 'msg'):
            if isinstance(outcome.get(key), str):
                outcome[key] = outcome[key].replace('--limit <this host>', '--limit %s' % host)
        outcome['summary'] = [line.replace('--limit <this host>', '--limit %s' % host)
                              for line in outcome.get('summary') or []]
        result.update(outcome)
        if result.get('failed'):
            return self._refused(args, plan, run_id, result)
        # For the phases after the preflight; roles/preflight keeps them as facts (set_fact, which outranks a
        # module's facts, so a later play of the same playbook gets its own).
        result.update(run_id=run_id, owner_pid=owner_pid, phases=args['phases'],
                      plan=plan_fact(plan) if plan is not None else None,
                      run=run_context(plan, run_id, artifacts_dir_path(args.get('artifacts_dir')), owner_pid,
                                      args['phases'], outcome, only_tables=args.get('only_tables')))
        return result

    def _refused(self, args, plan, run_id, result):
        """C(result) of the refused run, once its report.json is written (in check mode too: a pipeline's dry run
        reads it as well)."""
        if args.get('artifacts_dir'):
            try:
                result['report_file'] = write_refused_report(args, plan, run_id, result)
            except OSError as error:
                self._display.warning('The refusal could not be written to report.json: %s' % error)
        return result
