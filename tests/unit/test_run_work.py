# -*- coding: utf-8 -*-
"""plugins/module_utils/run/run_work.py: what a run does, decided from the preflight's proof, without a database."""

import pytest

import helpers

rp = helpers.load_module_utils('run.run_work')

PLAN = dict(name='t', file='/plans/t.yml',
            tables=[dict(name='Job', indexes=[dict(name='a')]), dict(name='Item', indexes=[dict(name='b')])],
            constraints=[dict(name='c1', table='Class'), dict(name='c2', table='Item')], baseline_queries=[])
ALL = list(rp.PHASES)


@pytest.mark.parametrize('run_tags,skip_tags,expected', [
    (['all'], [], ALL),
    (None, None, ALL),
    (['tagged'], [], ALL),
    (['indexes'], [], ['indexes']),
    (['indexes', 'constraints'], [], ['indexes', 'constraints']),
    (['all'], ['constraints', 'prisma'], ['backup', 'baseline', 'indexes', 'validate']),
    (['preflight'], [], []),
    (['always'], [], []),
    (['all'], ['all'], []),
])
def test_the_phases_a_tag_selection_runs(run_tags, skip_tags, expected):
    assert rp.selected_phases(run_tags, skip_tags) == expected


def test_a_finished_plan_is_no_work_at_all():
    work = rp.run_work(PLAN, 'present', ALL, None, [], [], [], None)
    assert work == dict(index_tables=[], constraints=[], prisma=False, pending=False, plan_pending=False)


def test_migrating_hands_each_phase_its_pending_entries_in_plan_order():
    work = rp.run_work(PLAN, 'present', ALL, None, ['Item', 'Job'], ['c2'], [], None)
    assert [t['name'] for t in work['index_tables']] == ['Job', 'Item']
    assert [c['name'] for c in work['constraints']] == ['c2']
    assert work['pending'] and work['plan_pending']


def test_only_tables_limits_the_index_phase_but_not_what_is_pending():
    work = rp.run_work(PLAN, 'present', ALL, ['Item'], ['Job', 'Item'], [], [], None)
    assert [t['name'] for t in work['index_tables']] == ['Item']
    assert work['pending']


def test_tags_indexes_with_only_the_constraint_pending_has_nothing_to_do():
    work = rp.run_work(PLAN, 'present', ['indexes'], None, [], ['c1'], [], None)
    assert work['pending'] is False and work['plan_pending'] is True
    assert work['constraints'] == []


def test_a_selection_without_ddl_phases_goes_on_while_the_plan_has_work_left():
    assert rp.run_work(PLAN, 'present', ['backup'], None, ['Job'], [], [], None)['pending'] is True
    assert rp.run_work(PLAN, 'present', ['validate'], None, [], [], [], None)['pending'] is False
    assert rp.run_work(PLAN, 'present', [], None, ['Job'], [], [], None)['pending'] is False


def test_rolling_back_walks_the_constraints_last_to_first_restores_included():
    work = rp.run_work(PLAN, 'absent', ALL, None, [], ['c1'], ['c2'], None)
    assert [c['name'] for c in work['constraints']] == ['c2', 'c1']
    assert work['pending']


@pytest.mark.parametrize('phases,pending_tables,pending_constraints,expected', [
    (ALL, [], [], True),                          # the plan is in place, the record is missing
    (ALL, ['Job'], ['c1'], True),                 # this run completes the plan, then records it
    (['prisma'], ['Job'], [], False),             # --tags prisma while indexes are pending: not complete
    (['indexes', 'prisma'], ['Job'], ['c1'], False),  # the constraint stays pending
    (['indexes', 'prisma'], ['Job'], [], True),
])
def test_the_prisma_record_is_written_once_the_whole_plan_is_in_place(phases, pending_tables, pending_constraints,
                                                                      expected):
    work = rp.run_work(PLAN, 'present', phases, None, pending_tables, pending_constraints, [], 'recorded')
    assert work['prisma'] is expected


def test_a_prisma_record_already_in_place_is_no_work():
    assert rp.run_work(PLAN, 'present', ALL, None, [], [], [], 'unchanged')['pending'] is False
    assert rp.run_work(PLAN, 'absent', ALL, None, [], [], [], 'removed')['prisma'] is True


def test_the_disk_verdict():
    assert rp.disk_verdict(0, 2.0, 0, None, None)['ok'] is True
    refused = rp.disk_verdict(1048576, 2.0, 100000, None, None)
    assert refused['ok'] is False
    assert 'the budget preflight_disk_budget_bytes allows 0.1 MiB' in refused['message']
    assert 'Nothing was changed' in refused['message']
    fits = rp.disk_verdict(1048576, 2.0, 0, 10 * 1048576, '/data')
    assert fits['ok'] and fits['message'] == 'Disk: the index builds need about 2.0 MiB; free space on /data allows 10.0 MiB.'
    unknown = rp.disk_verdict(1048576, 2.0, 0, None, None)
    assert unknown['ok'] and 'cannot be read from here' in unknown['message']


def test_the_summary_says_nothing_to_do_or_what_the_run_does():
    done = rp.run_work(PLAN, 'present', ALL, None, [], [], [], None)
    lines = rp.summary_lines(PLAN, 'present', ALL, done, [], [], [], None, False)
    assert lines[0] == 'Plan t (/plans/t.yml): 2 tables, 2 indexes, 2 constraint(s), 0 baseline queries.'
    assert lines[1].startswith('Nothing to do: every index of the plan is already in place and valid')
    tagged = rp.run_work(PLAN, 'present', ['indexes'], None, [], ['c1'], [], None)
    lines = rp.summary_lines(PLAN, 'present', ['indexes'], tagged, [], ['c1'], [], None, False)
    assert 'Constraints to add: c1' in lines
    assert lines[-1].startswith('Nothing to do in the phases selected (indexes)')
    work = rp.run_work(PLAN, 'present', ALL, None, ['Job'], [], [], None)
    lines = rp.summary_lines(PLAN, 'present', ALL, work, ['Job'], [], ['CREATE INDEX ...'], None, True)
    assert '1 statement(s) to run on Job' in lines and lines[-1].startswith('Check mode')


def test_the_disk_the_run_needs_is_that_of_its_own_index_builds():
    import importlib
    preflight = importlib.import_module(helpers.collection_path('plugins.modules.postgresql_migration_preflight'))
    proven = [dict(schema='public', name='Job', indexes=[dict(estimated_bytes=100), dict(estimated_bytes=50)]),
              dict(schema='public', name='Item', indexes=[dict(estimated_bytes=7)])]
    assert preflight.work_bytes(proven, [dict(name='Job')], 'public') == 150
    assert preflight.work_bytes(proven, [dict(name='Job'), dict(name='Item', schema='public')], 'public') == 157
    assert preflight.work_bytes(proven, [], 'public') == 0


def test_a_constraint_phase_keeps_a_json_copy_of_each_rename_beside_the_audit_table():
    import importlib
    module = importlib.import_module(helpers.collection_path('plugins.module_utils.kinds.constraint_phase'))
    renamed = dict(name='k', rows=[dict(row_key={'id': 2}, old='a', new='a [duplicate 2]')], audit='pgzd_audit.t')
    assert module.audit_files([renamed, dict(name='k2', rows=[])], 'run-1', 'present') == {
        'run-1-k-resolved.json': dict(constraint='k', run_id='run-1', kind='resolved', audit_table='pgzd_audit.t',
                                      rows=renamed['rows'], not_restored=[])}
    assert list(module.audit_files([renamed], 'run-1', 'absent')) == ['run-1-k-restored.json']
