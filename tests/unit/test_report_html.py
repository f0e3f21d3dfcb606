# -*- coding: utf-8 -*-
"""report.html rendered from its template with made-up runs: the chart fits its longest labels, the backup table
has the restore drill. (tests/integration/test_report.py checks the page of a real run.)"""

import importlib
import os

import jinja2
import pytest

import helpers

TEMPLATES = os.path.join(helpers.REPO_ROOT, 'roles', 'report', 'templates')
view = importlib.import_module(helpers.collection_path('plugins.filter.migration_report_view'))


def comparison(name, before_ms, after_ms):
    return dict(name=name, before_ms=before_ms, after_ms=after_ms, ratio=round(after_ms / before_ms, 3),
                verdict='improved', before_buffers=62, after_buffers=4, scans_after=['Index Scan on Job'],
                seq_scan_to_index=['Job'])


def report(queries, backup=None, restore_drill=None):
    return dict(plan='t12', database='t12', host='127.0.0.1', run_id='20261202T000000Z-000000', written_at='now',
                plan_file='plans/t12.yml', status='succeeded', failure=None, success_criteria=[],
                comparison=queries, phase_seconds={}, indexes=[], index_sizes={}, constraints=[], index_usage=[],
                prisma_migration=None, restore_drill=restore_drill,
                backup=backup or dict(path='artifacts/backups/t12/t12.pgc', format='custom', size_bytes=1024,
                                      seconds=0.5, sha256='ab' * 32, sha256_of='file', toc_entries=120))


def render(report_result):
    # As roles/report's template task renders it (Ansible's defaults: trim_blocks, no autoescape).
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), trim_blocks=True,
                                     undefined=jinja2.StrictUndefined)
    return helpers.ReportPage(environment.get_template('report.html.j2').render(
        report_result=report_result, report_view=view.report_view(report_result)))


@pytest.mark.parametrize('queries', [
    # The label that was clipped: the slowest bar ends at the right edge, its "90.505 ms" past it.
    [comparison('system_log_errors_last_day', 90.505, 0.735), comparison('job_open_by_teacher', 0.243, 0.051)],
    [comparison('q', 1234567.891, 0.001)],
    [comparison('a_baseline_query_with_a_name_much_longer_than_any_of_t12', 0.5, 0.25)],
    [],
])
def test_the_chart_fits_its_longest_labels(queries):
    page = render(report(queries))
    assert page.problems == [] and page.open == []
    values = [t['text'] for t in page.texts if t.get('class') == 'value']
    assert values == [label for q in queries for label in ('%s ms' % q['before_ms'], '%s ms' % q['after_ms'])]
    assert page.clipped_chart_texts() == []


def test_the_fit_check_sees_a_clipped_label():
    page = render(report([comparison('system_log_errors_last_day', 90.505, 0.735)]))
    page.svg['width'] = str(float(page.svg['width']) - 20)
    assert [text.split(' (')[0] for text in page.clipped_chart_texts()] == ['90.505 ms']


def test_the_backup_table_has_the_restore_drill_of_the_markdown_report():
    drill = dict(tables=19, rows=1800123, differences=[])
    assert render(report([], restore_drill=drill)).tables['backup'][-1] == [
        'Restore drill', '19 tables, 1800123 rows, every row count matches']
    differed = render(report([], restore_drill=dict(drill, differences=['Job', 'SystemLog'])))
    assert differed.tables['backup'][-1] == ['Restore drill', '19 tables, 1800123 rows, DIFFERENT: Job, SystemLog']
    # Without a drill in the run there is no such row, as in report.md.
    assert [row[0] for row in render(report([])).tables['backup']] == ['Path', 'Size', 'sha256', 'Verified']


def test_a_small_after_bar_is_seen_on_the_logarithmic_chart():
    # Linear, 0.02 ms beside 90.505 ms was a bar of 0.1 px: the one that shows the migration's effect.
    page = render(report([comparison('system_log_errors_last_day', 90.505, 0.735),
                          comparison('job_open_by_teacher', 0.243, 0.02)]))
    widths = [float(rect['width']) for rect in page.rects if rect.get('class') in ('before', 'after')]
    assert max(widths) == 480 and min(widths) >= 48, widths
    assert widths[1] < widths[0] and widths[3] < widths[2]  # shorter is still faster
    assert page.clipped_chart_texts() == []


def test_the_page_shows_the_sql_that_ran_with_each_lock_and_human_sizes():
    entry = dict(name='Job_createdAt_idx', schema='public', table='Job', action='created', seconds=1.0, retries=0,
                 statements=['CREATE INDEX CONCURRENTLY IF NOT EXISTS "Job_createdAt_idx" ON "public"."Job" USING '
                             '"btree" ("createdAt")'])
    result = report([])
    result.update(indexes=[entry], index_sizes={'Job_createdAt_idx': 1536000})
    page = render(result)
    assert page.tables['sql'][1:] == [['Job_createdAt_idx', entry['statements'][0], 'SHARE UPDATE EXCLUSIVE',
                                       'no reads or writes blocked']]
    assert page.tables['indexes'][1][-1] == '1.5 MiB'
    assert page.tables['backup'][1] == ['Size', '1.0 KiB in 0.5 s']
