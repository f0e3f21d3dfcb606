# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The report of a migration run, assembled from what its phases registered.

roles/report passes the phases' results (`phases | pg_zero_downtime.migrations.migration_report`) and writes what
comes back as report.json, report.md and report.html. A phase that did not run in this run (a --tags selection, a
`when` that was false, a run that stopped early) is left out, so its criteria are "not checked".
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: migration_report
short_description: The report of a pg-zero-downtime run, from what its phases registered
description:
  - Takes what the phases of a run registered and returns the report, a dict with the plan, the run id, the status,
    the backup and restore drill, the Prisma record, each phase's seconds, the per-index and per-constraint results,
    the index sizes and usage, the baseline before and the comparison after, and the five success criteria
    (P(pg_zero_downtime.migrations.success_criteria#filter)).
  - A phase result that Ansible skipped, or that is missing, counts as a phase that did not run.
options:
  _input:
    description:
      - The run, a dict with C(plan) (the loaded plan), C(run_id), C(database), C(host), C(failure) (what stopped
        the run, or null), and what the phases registered, each null when the phase did not run. C(backup),
        C(restore_drill), C(baseline), C(index_run) (the index phase's result), C(indexes) (the per-index results),
        C(constraint_run), C(constraints) (the per-constraint results), C(validate), C(prisma), C(prisma_deploy)
        (and C(prisma_deploy_state)).
    type: dict
    required: true
  written_at:
    description: When the report is written (UTC, ISO 8601).
    type: str
    required: true
'''

EXAMPLES = r'''
- name: Assemble the report
  ansible.builtin.set_fact:
    report_result: "{{ run | pg_zero_downtime.migrations.migration_report(now(utc=true, fmt='%Y-%m-%dT%H:%M:%SZ')) }}"
'''

RETURN = r'''
_value:
  description: The report, as report.json holds it.
  type: dict
'''


from ansible_collections.pg_zero_downtime.migrations.plugins.filter.success_criteria import success_criteria

BACKUP_FIELDS = ('skipped', 'reason', 'backup_mode', 'mode_reason', 'database_bytes', 'full_estimate', 'protects', 'path',
                 'format', 'size_bytes', 'seconds', 'sha256', 'sha256_of', 'toc_entries', 'schema', 'rows', 'archive',
                 'not_protected', 'client', 'pg_dump_version', 'server_version', 'deleted')
DRILL_FIELDS = ('backup', 'kind', 'scratch_database', 'source', 'restored', 'tables', 'rows', 'differences',
                'rows_loaded', 'verified', 'not_verified', 'seconds', 'client')
VALIDATE_FIELDS = ('objects_valid', 'comparison', 'slower', 'index_usage', 'seconds')


def ran(result):
    """The phase's result, or None when the phase did not run (missing, or skipped by Ansible)."""
    if not isinstance(result, dict) or not result:
        return None
    if result.get('skipped') and ('skip_reason' in result or 'false_condition' in result):
        return None
    return result


def _pick(result, fields):
    return dict((key, result[key]) for key in fields if key in result) if result is not None else None


def _seconds(result):
    return float((result or {}).get('seconds') or 0.0)


def deploy_record(result, state):
    """What the report keeps of a Prisma folder's deploy (or rollback): per migration, what happened to each
    statement, with its class and the lock it took."""
    if result is None:
        return None
    return dict(state=state or 'present', migrations=[dict(
        name=migration['name'], action=migration['action'], seconds=float(migration.get('seconds') or 0.0),
        statements=[dict(line=statement['line'], kind=statement['kind'], action=statement['action'],
                         lock=statement.get('lock') if statement['cls'] == 'online' else statement.get('lock_as_written'),
                         lock_on=list(statement.get('lock_on') or []), acknowledged=bool(statement.get('acknowledged')),
                         seconds=float(statement.get('seconds') or 0.0), retries=int(statement.get('retries') or 0),
                         **dict({'class': statement['cls']}, **_pick(statement, ('last_used',)) or {}))
                    for statement in migration.get('statements') or []])
        for migration in result.get('migrations') or []])


def migration_report(run, written_at):
    plan = run.get('plan') or {}
    backup = _pick(ran(run.get('backup')), BACKUP_FIELDS)
    target = ran(run.get('pitr_target'))
    if backup is not None and target is not None and target.get('current_lsn'):
        backup['pitr_target'] = dict(lsn=target['current_lsn'], wal_file=target.get('current_wal_file'),
                                     time=target.get('server_time'))
    drill = _pick(ran(run.get('restore_drill')), DRILL_FIELDS)
    baseline, validate = ran(run.get('baseline')), ran(run.get('validate'))
    validate_record = _pick(validate, VALIDATE_FIELDS)
    indexes = list(run.get('indexes') or [])
    constraints = list(run.get('constraints') or [])
    prisma = ran(run.get('prisma'))
    failure = run.get('failure')
    criteria = success_criteria(dict(
        indexes=indexes, constraints=constraints, validate=validate_record, backup=backup, restore_drill=drill,
        failure=failure, planned_indexes=sum(len(t.get('indexes') or []) for t in plan.get('tables') or [])))
    usage = (validate_record or {}).get('index_usage') or []
    return dict(
        plan=plan.get('name'), plan_file=plan.get('file'), trusted=list(plan.get('trusted') or []),
        run_id=run.get('run_id') or 'manual',
        database=run.get('database'), host=run.get('host') or 'localhost', written_at=written_at,
        status='failed' if failure is not None else 'succeeded', failure=failure,
        backup=backup if backup is not None else dict(skipped=True, reason='no backup was taken in this run'),
        restore_drill=drill,
        prisma_migration=dict(
            migration_name=(prisma.get('migration') or {}).get('migration_name'), action=prisma.get('action'),
            table=prisma.get('table'), checksum=prisma.get('checksum'),
            id=(prisma.get('migration') or {}).get('id')) if prisma is not None else None,
        prisma_deploy=deploy_record(ran(run.get('prisma_deploy')), run.get('prisma_deploy_state')),
        phase_seconds=dict(backup=_seconds(backup), baseline=_seconds(baseline),
                           indexes=_seconds(ran(run.get('index_run'))),
                           constraints=_seconds(ran(run.get('constraint_run'))), validate=_seconds(validate)),
        indexes=indexes, index_sizes=dict((row['index'], row['size_bytes']) for row in usage),
        constraints=constraints, baseline_before=(baseline or {}).get('queries') or [],
        comparison=(validate_record or {}).get('comparison') or [], index_usage=usage, success_criteria=criteria,
        criteria_line='; '.join('[%s] %s' % (c['status'].upper(), c['criterion']) for c in criteria))


def refused_report(plan, plan_file, run_id, database, host, written_at, problems):
    """The report of a run its preflight refused: nothing ran, so only who, when and why (report.json's shape with
    status refused: plan, plan_file, run_id, database, host, written_at, status, problems, a list of strings)."""
    return dict(plan=plan, plan_file=plan_file, run_id=run_id, database=database, host=host or 'localhost',
                written_at=written_at, status='refused', problems=[str(problem) for problem in problems])


class FilterModule(object):
    def filters(self):
        return dict(migration_report=migration_report)
