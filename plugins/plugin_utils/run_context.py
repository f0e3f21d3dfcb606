# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The run context: the one fact (pgzd_run) every phase of a run reads, made in one place.

The preflight's action plugin makes it for the playbooks that change the database (with the lock's session, the
owning process, replication and the work of each phase); the lookup migration_plan makes its first part for the
read-only playbooks (validate.yml, adopt.yml). Roles read their run id, folders, plan and pids from it, with defaults
for a role used alone.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.pg_zero_downtime.migrations.plugins.plugin_utils.artifacts_dir import run_folder_path


def plan_fact(plan):
    """The loaded plan as the later phases read it: without the Prisma migration's text, which only the preflight and
    the Prisma phase need."""
    fact = dict(plan)
    if plan.get('prisma_migration'):
        fact['prisma_migration'] = dict((key, value) for key, value in plan['prisma_migration'].items()
                                        if key != 'migration_sql')
    return fact


def run_context(plan, run_id, artifacts_dir, owner_pid=0, phases=None, preflight=None, only_tables=None):
    """pgzd_run: id and name (<plan>-<id>), the plan, the tables of the plan this run is limited to (only_tables, as
    -e only_tables gave them, parsed once; [] for all), artifacts_dir and the run's folder dir, the phases, the session
    holding the migration lock (lock_session_pid, 0 when none) and the owning ansible-playbook (owner_pid, 0 when
    none), whether the database is a replica or has replicas, and the preflight's work of each phase."""
    preflight = preflight or {}
    plan_name = plan['name'] if plan is not None else 'adhoc'
    return dict(id=run_id, name='%s-%s' % (plan_name, run_id), plan=plan_fact(plan) if plan is not None else None,
                only_tables=list(only_tables or []),
                artifacts_dir=artifacts_dir, dir=run_folder_path(artifacts_dir, plan_name, run_id),
                phases=phases or [], lock_session_pid=(preflight.get('lock') or {}).get('session_pid') or 0,
                owner_pid=owner_pid or 0, replica=bool(preflight.get('replica')),
                replicated=bool(preflight.get('replicated')), work=preflight.get('work') or {})
