# -*- coding: utf-8 -*-
"""plugins/filter/migration_report_view.py: the SQL of a run with each statement's lock, the chart's logarithmic bars;
and the report of a refused run (plugins/filter/migration_report.py)."""

import importlib

import pytest

import helpers

view = importlib.import_module(helpers.collection_path('plugins.filter.migration_report_view'))
report = importlib.import_module(helpers.collection_path('plugins.filter.migration_report'))


@pytest.mark.parametrize('statement,mode', [
    ('CREATE INDEX CONCURRENTLY IF NOT EXISTS "a" ON "public"."Job" USING "btree" ("x")', 'SHARE UPDATE EXCLUSIVE'),
    ('CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS "k" ON "public"."Class" ("name")', 'SHARE UPDATE EXCLUSIVE'),
    ('DROP INDEX CONCURRENTLY IF EXISTS "public"."a"', 'SHARE UPDATE EXCLUSIVE'),
    ('CREATE INDEX IF NOT EXISTS "p" ON ONLY "public"."Log" USING "btree" ("x")', 'SHARE'),
    ('ALTER INDEX "public"."p" ATTACH PARTITION "public"."p1"', 'SHARE UPDATE EXCLUSIVE'),
    ('ALTER TABLE "public"."Class" ADD CONSTRAINT "k" UNIQUE USING INDEX "k"', 'ACCESS EXCLUSIVE'),
    ('ALTER TABLE "public"."Item" ADD CONSTRAINT "c" CHECK (price > 0) NOT VALID', 'ACCESS EXCLUSIVE'),
    ('ALTER TABLE "public"."Job" ADD CONSTRAINT "f" FOREIGN KEY ("c") REFERENCES "public"."Class" ("id") NOT VALID',
     'SHARE ROW EXCLUSIVE'),
    ('ALTER TABLE "public"."Job" VALIDATE CONSTRAINT "f"', 'SHARE UPDATE EXCLUSIVE'),
    ('ALTER TABLE "public"."Class" ALTER COLUMN "teacherId" SET NOT NULL', 'ACCESS EXCLUSIVE'),
    ('ALTER TABLE "public"."Class" DROP CONSTRAINT IF EXISTS "k"', 'ACCESS EXCLUSIVE'),
    ('LOCK TABLE ONLY "public"."Class" IN ROW SHARE MODE', 'ROW SHARE'),
    ('BEGIN', None),
    ("SET LOCAL lock_timeout = '500ms'", None),
])
def test_each_statement_kind_has_its_lock(statement, mode):
    assert view.statement_lock(statement)[0] == mode


def test_the_sql_that_ran_counts_what_ran_of_a_failed_entry_and_nothing_of_one_not_done():
    entries = [dict(name='a', action='created', statements=['CREATE INDEX CONCURRENTLY IF NOT EXISTS "a" ON "t" ("x")']),
               dict(name='b', action='unchanged', statements=[]),
               dict(name='c', action='failed', planned_action='created', statements=['X', 'Y'],
                    statements_run=['ALTER TABLE "t" ADD CONSTRAINT "c" CHECK (x) NOT VALID']),
               dict(name='d', action='not_started', planned_action='created', statements=['Z'])]
    rows = view.statements_run(entries)
    assert [(row['object'], row['lock']) for row in rows] == [('a', 'SHARE UPDATE EXCLUSIVE'), ('c', 'ACCESS EXCLUSIVE')]


def test_the_bars_are_logarithmic_and_keep_their_order():
    bars = view.chart_bars([dict(before_ms=1.4, after_ms=0.02), dict(before_ms=0.2, after_ms=0.05)], 480)
    assert bars[0][0] == 480 and all(width >= 48 for pair in bars for width in pair)
    assert bars[0][1] < bars[1][1] < bars[1][0] < bars[0][0]
    assert view.chart_bars([dict(before_ms=0, after_ms=0)], 480) == [(2, 2)]


def test_a_refused_report_has_the_run_and_its_problems_only():
    refused = report.refused_report('t12', '/p/t12.yml', 'r1', 't12', None, 'now', ['one', 'two'])
    assert refused == dict(plan='t12', plan_file='/p/t12.yml', run_id='r1', database='t12', host='localhost',
                           written_at='now', status='refused', problems=['one', 'two'])
