# -*- coding: utf-8 -*-
"""The version-aware paths of issue 24 that are not a kind's: transaction_timeout off on PostgreSQL 17+ (ddl_session),
when a dropped or replaced index was last used on 16+ (index_catalog, the report's view), and baselines compared only
within one major with the same EXPLAIN options on every version (query_baseline, baseline_runs)."""

import importlib
import os

import jinja2
import pytest

import helpers

sessions = helpers.load_module_utils('session.ddl_session')
catalog = helpers.load_module_utils('kinds.index_catalog')
qb = helpers.load_module_utils('evidence.query_baseline')
runs = helpers.load_module_utils('evidence.baseline_runs')
view = importlib.import_module(helpers.collection_path('plugins.filter.migration_report_view'))
report = importlib.import_module(helpers.collection_path('plugins.filter.migration_report'))


# -- transaction_timeout ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize('version_num', [140023, 150014, 160014, 169999])
def test_below_17_the_session_sets_no_transaction_timeout_the_server_would_not_know(version_num):
    assert sessions.session_timeouts(version_num) == {}


@pytest.mark.parametrize('version_num', [170000, 170010, 180004, 190000])
def test_from_17_the_session_turns_transaction_timeout_off(version_num):
    assert sessions.session_timeouts(version_num) == dict(transaction_timeout='0')


def test_the_settings_are_sent_as_bound_values_and_returned_for_the_report():
    sent = []
    assert sessions.set_session_timeouts(lambda text, values: sent.append((text, values)), 180004) == dict(
        transaction_timeout='0')
    assert sent == [('SELECT pg_catalog.set_config(%(name)s, %(value)s, false)',
                     dict(name='transaction_timeout', value='0'))]
    sent[:] = []
    assert sessions.set_session_timeouts(lambda text, values: sent.append((text, values)), 160014) == {} and sent == []


def test_the_planned_sql_sets_transaction_timeout_only_where_the_session_did():
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(os.path.join(helpers.REPO_ROOT, 'roles', 'report',
                                                                                 'templates')),
                                     trim_blocks=True, undefined=jinja2.StrictUndefined)
    template = environment.get_template('planned.sql.j2')
    entry = dict(name='a', action='created', statements=['CREATE INDEX CONCURRENTLY "a" ON "public"."Job" ("x")'],
                 lock_timeout='5s', statement_timeout='0')

    def planned(**extra):
        return template.render(pgzd_run=dict(plan=dict(name='p', trusted=[])), report_direction='migrate',
                               pg_database='app',
                               online_indexes_results=[dict(entry, **extra)], constraints_results=[])
    assert "SET transaction_timeout = '0';" in planned(transaction_timeout='0')
    assert 'transaction_timeout' not in planned()


# -- last_idx_scan ---------------------------------------------------------------------------------------------------

def test_the_usage_query_reads_last_idx_scan_only_from_16():
    assert 'last_idx_scan AT TIME ZONE' in catalog.index_usage_query(160000)
    assert 's.last_idx_scan' not in catalog.index_usage_query(150014)
    assert 'NULL::text AS last_idx_scan' in catalog.index_usage_query(150014)


def test_on_16_the_last_scan_is_the_timestamp():
    assert catalog.last_use(160014, dict(idx_scan=3, last_idx_scan='2026-12-04T21:00:00Z')) == dict(
        idx_scan=3, last_idx_scan='2026-12-04T21:00:00Z', last_idx_scan_available=True, note=None)


def test_on_16_an_index_never_scanned_says_so():
    used = catalog.last_use(180004, dict(idx_scan=0, last_idx_scan=None))
    assert used['last_idx_scan'] is None and used['last_idx_scan_available']
    assert used['note'] == 'not scanned since the statistics were last reset'


def test_below_16_the_last_scan_is_marked_unavailable_naming_the_versions():
    used = catalog.last_use(150014, dict(idx_scan=7, last_idx_scan=None))
    assert used == dict(idx_scan=7, last_idx_scan=None, last_idx_scan_available=False,
                        note='last_idx_scan is not available on PostgreSQL 15 (pg_stat_user_indexes has it from '
                             'PostgreSQL 16)')


def test_an_index_without_statistics_says_why():
    used = catalog.last_use(170000, None)
    assert used['idx_scan'] is None and used['last_idx_scan'] is None and 'no statistics' in used['note']


def test_the_report_lists_each_index_that_went_with_its_last_scan_or_why_there_is_none():
    result = dict(indexes=[
        dict(name='kept', action='created'),
        dict(name='old', action='replaced', last_used=catalog.last_use(160000, dict(idx_scan=2,
                                                                                 last_idx_scan='2026-12-04T21:00:00Z'))),
        dict(name='gone', action='dropped', last_used=catalog.last_use(150014, dict(idx_scan=0, last_idx_scan=None))),
        dict(name='never', action='not_started', last_used=catalog.last_use(160000, None))],
        prisma_deploy=dict(state='present', migrations=[dict(name='2_drop', action='applied', statements=[
            dict(line=1, kind='drop_index', action='done',
                 last_used=catalog.last_use(170000, dict(idx_scan=1, last_idx_scan='2026-12-01T00:00:00Z')))])]))
    assert view.last_used_rows(result) == [
        dict(object='old', action='replaced', idx_scan=2, last_scan='2026-12-04T21:00:00Z'),
        dict(object='gone', action='dropped', idx_scan=0,
             last_scan='last_idx_scan is not available on PostgreSQL 15 (pg_stat_user_indexes has it from '
                       'PostgreSQL 16)'),
        dict(object='2_drop line 1', action='drop_index (done)', idx_scan=1, last_scan='2026-12-01T00:00:00Z')]


def test_a_prisma_drop_index_keeps_its_last_use_in_report_json_and_matches_the_schema():
    used = catalog.last_use(160000, dict(idx_scan=1, last_idx_scan='2026-12-01T00:00:00Z'))
    deploy = dict(migrations=[dict(name='2_drop', action='applied', seconds=0.1, statements=[
        dict(line=1, kind='drop_index', action='done', cls='online', lock='SHARE UPDATE EXCLUSIVE', lock_on=['x'],
             last_used=used),
        dict(line=2, kind='create_table', action='done', cls='as_written', lock_as_written='ACCESS EXCLUSIVE')])])
    record = report.deploy_record(deploy, 'present')
    assert record['migrations'][0]['statements'][0]['last_used'] == used
    assert 'last_used' not in record['migrations'][0]['statements'][1]
    written = report.migration_report(dict(plan=dict(name='p'), prisma_deploy=deploy, indexes=[
        dict(name='old', schema='public', table='Job', action='dropped', last_used=used, transaction_timeout='0')]),
        '2026-12-04T21:00:00Z')
    assert helpers.report_schema_errors(written) == []


# -- baselines -------------------------------------------------------------------------------------------------------

def test_every_version_gets_the_same_explicit_explain_options():
    options = [option.strip() for option in qb.EXPLAIN_ANALYZE_OPTIONS.split(',')]
    # Explicit values, 18's default BUFFERS included: no option is left to a server's defaults.
    assert options[:2] == ['ANALYZE true', 'BUFFERS true'] and options[-1] == 'FORMAT JSON'
    assert all(len(option.split()) == 2 for option in options)


def test_a_baseline_of_the_same_major_is_compared_whatever_the_minor():
    before = [dict(name='q', server_version_num=150010, server_version='15.10')]
    assert qb.baseline_version_error(before, 150014, '15.14 (Debian 15.14-1.pgdg120+1)') is None


def test_a_baseline_of_another_major_is_refused_naming_both_versions():
    before = [dict(name='q', server_version_num=150018, server_version='15.18 (Debian 15.18-1.pgdg120+1)')]
    assert qb.baseline_version_error(before, 180004, '18.4') == (
        'the baseline was taken on PostgreSQL 15.18 and this server is 18.4: plans and timings of different majors are '
        'not comparable (another planner, another EXPLAIN); take a new baseline on this server (baseline.yml) and '
        'compare with that. Nothing was measured.')
    # Without the text, the major names the version.
    assert 'taken on PostgreSQL 18 and this server is 14' in qb.baseline_version_error(
        [dict(name='q', server_version_num=180004)], 140023)


def test_one_query_of_another_major_is_enough_to_refuse():
    before = [dict(name='a', server_version_num=160014), dict(name='b', server_version_num=170010)]
    assert 'taken on PostgreSQL 17' in qb.baseline_version_error(before, 160003)


def test_a_baseline_that_recorded_no_version_is_compared_as_before():
    assert qb.baseline_version_error([dict(name='q', median_ms=1.0)], 180004) is None
    assert qb.baseline_version_error(None, 180004) is None and qb.baseline_version_error([], 180004) is None


def test_the_measurement_lines_say_the_version_and_the_options():
    queries = [dict(name='q', median_ms=0.5, buffers=40, plan_shape='Seq Scan on Job', server_version_num=180004,
                    server_version='18.4')]
    lines = runs.baseline_lines(queries, [])
    assert lines[0] == 'Measured on PostgreSQL 18.4 with EXPLAIN (%s), the same options on every version.' % (
        qb.EXPLAIN_ANALYZE_OPTIONS)
    assert lines[1].startswith('q ')
