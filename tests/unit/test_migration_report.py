# -*- coding: utf-8 -*-
"""plugins/filter/migration_report.py and stopped_message.py: the report of a run, from what its phases registered."""

import importlib

import helpers

report = importlib.import_module(helpers.collection_path('plugins.filter.migration_report')).migration_report
stopped = importlib.import_module(helpers.collection_path('plugins.filter.stopped_message')).stopped_message

PLAN = dict(name='t12', file='/plans/t12.yml', tables=[dict(name='Job', indexes=[dict(name='a'), dict(name='b')])])
SKIPPED = dict(changed=False, skipped=True, false_condition='pgzd_restore_drill | default(run_restore_drill) | default(false) | bool')
BACKUP = dict(changed=True, skipped=False, path='/b/t12.pgc', format='custom', size_bytes=10, seconds=1.5,
              sha256='ab', sha256_of='the file', toc_entries=120, invocation=dict(module_args=dict(login_password='x')))
VALIDATE = dict(objects_valid=True, comparison=[dict(name='q', verdict='improved')], slower=[], seconds=0.7,
                index_usage=[dict(index='a', size_bytes=8192, idx_scan=3)], record={}, summary=[])


def run(**changes):
    base = dict(plan=PLAN, run_id='20261202T030405Z-abcdef', database='t12', host='127.0.0.1', failure=None,
                backup=BACKUP, restore_drill=SKIPPED, baseline=dict(queries=[dict(name='q')], seconds=0.4),
                index_run=dict(seconds=9.5), indexes=[dict(name='a', action='created'), dict(name='b', action='unchanged')],
                constraint_run=None, constraints=[], validate=VALIDATE, prisma=None)
    base.update(changes)
    return base


def test_a_run_with_every_phase_gives_the_report_and_its_criteria():
    result = report(run(), '2026-12-02T03:10:00Z')
    assert result['status'] == 'succeeded' and result['plan'] == 't12' and result['plan_file'] == '/plans/t12.yml'
    assert result['backup']['path'] == '/b/t12.pgc' and 'invocation' not in result['backup']
    assert result['restore_drill'] is None  # skipped by Ansible: did not run
    assert result['phase_seconds'] == dict(backup=1.5, baseline=0.4, indexes=9.5, constraints=0.0, validate=0.7)
    assert result['index_sizes'] == dict(a=8192) and result['baseline_before'] == [dict(name='q')]
    assert [c['status'] for c in result['success_criteria']] == ['met', 'met', 'met', 'met', 'not met']
    assert result['criteria_line'].startswith('[MET] All indexes created successfully; [MET] No service downtime')
    assert not result['criteria_line'].endswith(';')


def test_phases_that_did_not_run_leave_their_criteria_not_checked():
    result = report(run(backup=None, validate=None, baseline=dict(SKIPPED)), '2026-12-02T03:10:00Z')
    assert result['backup'] == dict(skipped=True, reason='no backup was taken in this run')
    assert [c['status'] for c in result['success_criteria']] == [
        'not checked', 'met', 'not checked', 'not checked', 'not checked']
    assert result['baseline_before'] == [] and result['phase_seconds']['validate'] == 0.0


def test_a_failed_run_says_so():
    result = report(run(failure='Dump the database: pg_dump is too old'), '2026-12-02T03:10:00Z')
    assert result['status'] == 'failed' and result['failure'] == 'Dump the database: pg_dump is too old'
    assert result['success_criteria'][1]['status'] == 'not met'


def test_the_prisma_record_is_reported_when_its_phase_ran():
    prisma = dict(action='recorded', table='public._prisma_migrations', checksum='cafe',
                  migration=dict(migration_name='20240101_a', id='1234'))
    assert report(run(prisma=prisma), 'now')['prisma_migration'] == dict(
        migration_name='20240101_a', action='recorded', table='public._prisma_migrations', checksum='cafe', id='1234')


def test_a_stopped_run_says_what_it_changed_before_and_kept():
    assert stopped('Build: gave up', [dict(name='a', action='created'), dict(name='b', action='unchanged'),
                                      dict(name='k', action='created')]) == (
        'The migration stopped. Build: gave up\nChanged before it, and kept (a rerun goes on from there): created a, '
        'created k.')
    assert stopped('Backup: failed', []).endswith('No index or constraint of the plan was changed before it.')


def test_a_constraint_that_failed_is_not_said_to_be_kept():
    assert stopped('Constraint "k": gave up', [dict(name='a', action='created'), dict(name='k', action='failed')]) == (
        'The migration stopped. Constraint "k": gave up\nChanged before it, and kept (a rerun goes on from there): '
        'created a.')
