# -*- coding: utf-8 -*-
"""scripts/plan_import.py: SQL parsed by PostgreSQL's parser (pglast) into plan entries, or refused by line."""

import importlib
import importlib.util
import os
import subprocess
import sys

import pytest
import yaml

import helpers
from helpers import PLAN_T12_PATH, REPO_ROOT

SCRIPT = os.path.join(REPO_ROOT, 'scripts', 'plan_import.py')
SEED_SQL = os.path.join(REPO_ROOT, 'fixtures', 't12', 'seed_migration.sql')
PRISMA_SQL = os.path.join(REPO_ROOT, 'fixtures', 't12', 'prisma', 'migrations', '20241125000000_t12_indexes',
                          'migration.sql')
RELATIONS = os.path.join(REPO_ROOT, 'fixtures', 'relations')
RELATIONS_SQL = os.path.join(RELATIONS, 'prisma', 'migrations', '20261201000000_relations', 'migration.sql')

_spec = importlib.util.spec_from_file_location('pgzd_plan_import', SCRIPT)
plan_import = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(plan_import)


def shipped_plan():
    with open(PLAN_T12_PATH) as handle:
        return yaml.safe_load(handle)


def run_cli(*args, stdin=None):
    return subprocess.run([sys.executable, SCRIPT] + list(args), input=stdin, capture_output=True, text=True,
                          timeout=60)


def test_the_seed_sql_blocks_import_to_the_shipped_t12_plan(tmp_path):
    shipped = shipped_plan()
    out = tmp_path / 'plan.yml'
    result = run_cli(SEED_SQL, '--name', 't12', '--description', shipped['description'], '-o', str(out))
    assert result.returncode == 0, result.stderr
    imported = yaml.safe_load(out.read_text())
    # Everything SQL can say is equal; baseline queries are not DDL, so they are the one thing it cannot carry.
    assert imported == dict((key, value) for key, value in shipped.items() if key != 'baseline_queries')
    assert sum(len(table['indexes']) for table in imported['tables']) == 26
    assert '26 index(es) on 11 table(s), 1 constraint(s), 1 statement(s) skipped' in result.stderr


def test_with_base_the_import_equals_the_shipped_plan_whole(tmp_path):
    out = tmp_path / 'plan.yml'
    result = run_cli(SEED_SQL, '--base', PLAN_T12_PATH, '-o', str(out))
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(out.read_text()) == shipped_plan()


def test_the_blocking_prisma_migration_imports_to_the_same_entries(tmp_path):
    out = tmp_path / 'plan.yml'
    result = run_cli(PRISMA_SQL, '-o', str(out))
    assert result.returncode == 0, result.stderr
    imported = yaml.safe_load(out.read_text())
    shipped = shipped_plan()
    assert imported['name'] == '20241125000000_t12_indexes'  # a Prisma migration is named by its folder
    assert imported['tables'] == shipped['tables']
    assert imported['constraints'] == shipped['constraints']
    assert 'skipped' not in result.stderr


def test_a_prisma_migration_with_relations_a_required_column_and_a_check_imports_whole(tmp_path):
    """fixtures/relations/plan.yml is exactly its migration.sql imported (and test_online_constraints.py migrates it)."""
    out = tmp_path / 'plan.yml'
    result = run_cli(RELATIONS_SQL, '--prisma', '-o', str(out))
    assert result.returncode == 0, result.stderr
    with open(os.path.join(RELATIONS, 'plan.yml')) as handle:
        shipped = handle.read()
    # The same text but for the plan file's own folder in the Prisma path.
    assert out.read_text().replace(os.path.relpath(os.path.dirname(RELATIONS_SQL), str(tmp_path)),
                                   'prisma/migrations/20261201000000_relations').split('\n')[3:] == shipped.split('\n')[3:]
    plan = yaml.safe_load(shipped)
    assert plan['constraints'] == [
        {'name': 'Class_teacherId_not_null', 'table': 'Class', 'type': 'not_null', 'column': 'teacherId'},
        {'name': 'JobAssignment_jobId_fkey', 'table': 'JobAssignment', 'type': 'foreign_key', 'columns': ['jobId'],
         'references': {'table': 'Job', 'columns': ['id']}, 'on_delete': 'CASCADE', 'on_update': 'CASCADE'},
        {'name': 'Job_classId_fkey', 'table': 'Job', 'type': 'foreign_key', 'columns': ['classId'],
         'references': {'table': 'Class', 'columns': ['id']}, 'on_delete': 'SET NULL', 'on_update': 'CASCADE'},
        {'name': 'Item_price_check', 'table': 'Item', 'type': 'check', 'expression': 'price > 0'}]
    assert plan['tables'] == [{'name': 'JobAssignment', 'indexes': [{'name': 'JobAssignment_jobId_idx',
                                                                     'columns': ['jobId']}]}]


def test_foreign_keys_checks_and_not_null_import_with_their_options():
    tables, constraints, skipped, refused = plan_import.import_sql(
        'ALTER TABLE "A" ADD CONSTRAINT "A_b_fkey" FOREIGN KEY ("b", "c") REFERENCES other."B"("x", "y");\n'
        'ALTER TABLE "A" ALTER COLUMN "d" SET NOT NULL, ADD CONSTRAINT "A_e_check" CHECK (e IN (\'x\', \'y\'));\n'
        'ALTER TABLE "%s" ALTER COLUMN "%s" SET NOT NULL;\n' % ('T' * 40, 'c' * 40))
    assert refused == [] and tables == [] and skipped == []
    assert constraints == [
        {'name': 'A_b_fkey', 'table': 'A', 'type': 'foreign_key', 'columns': ['b', 'c'],
         'references': {'table': 'B', 'schema': 'other', 'columns': ['x', 'y']}},
        {'name': 'A_d_not_null', 'table': 'A', 'type': 'not_null', 'column': 'd'},
        {'name': 'A_e_check', 'table': 'A', 'type': 'check', 'expression': "e IN ('x', 'y')"},
        {'name': ('T' * 40 + '_' + 'c' * 40)[:54] + '_not_null', 'table': 'T' * 40, 'type': 'not_null',
         'column': 'c' * 40}]
    assert len(constraints[-1]['name']) == 63


def test_the_duplicate_check_select_is_listed_as_skipped_with_its_line(tmp_path):
    with open(SEED_SQL) as handle:
        expected_line = [number for number, line in enumerate(handle, 1) if line.startswith('SELECT name, grade')][0]
    out = tmp_path / 'plan.yml'
    result = run_cli(SEED_SQL, '-o', str(out))
    assert 'skipped line %d: SELECT name, grade, COUNT(*) FROM "Class"' % expected_line in result.stderr
    assert '# Skipped line %d, read-only query' % expected_line in out.read_text()


def test_unsupported_statements_are_refused_with_their_lines_and_nothing_is_written(tmp_path):
    sql = ('CREATE INDEX "Job_a_idx" ON "Job"("a");\n'
           '-- a comment\n'
           'ALTER TABLE "Job" ADD COLUMN "x" integer;\n'
           '\n'
           'CREATE INDEX ON "Job"("b");\n'
           'CREATE INDEX "Job_lower_idx" ON "Job"(lower("c") DESC);\n'
           'DROP TABLE "Job";\n'
           'UPDATE "Job" SET "a" = 1;\n'
           'ALTER TABLE "Class" ADD CONSTRAINT "k" UNIQUE ("name") DEFERRABLE;\n')
    out = tmp_path / 'plan.yml'
    result = run_cli('-', '-o', str(out), stdin=sql)
    assert result.returncode == 2
    assert not out.exists()
    for line, fragment in [(3, 'ADD COLUMN'), (5, 'has no name'), (6, 'is an expression'), (7, 'DROP TABLE'),
                           (8, 'UPDATE'), (9, 'DEFERRABLE')]:
        assert 'refused line %d:' % line in result.stderr, (line, result.stderr)
        assert fragment in result.stderr
    assert 'refused line 1' not in result.stderr
    assert '6 statement(s) refused; no plan written' in result.stderr


def test_every_plan_field_is_imported_and_a_foreign_schema_kept():
    tables, constraints, skipped, refused = plan_import.import_sql(
        'BEGIN;\n'
        "SET lock_timeout = '2s';\n"
        'CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS "Job_open_uq" ON public."Job" USING btree ("teacherId")'
        ' INCLUDE ("status") WHERE "closedAt" IS NULL AND "status" = \'OPEN\';\n'
        'CREATE INDEX "Log_data_idx" ON audit."Log" USING gin ("data");\n'
        'ALTER TABLE audit."Log" ADD CONSTRAINT "Log_ref_key" UNIQUE ("ref"), ADD CONSTRAINT "Log_b_key" UNIQUE ("b");\n'
        'COMMIT;\n')
    assert refused == []
    assert [line for line, _text, _reason in skipped] == [1, 2, 6]
    assert tables == [
        {'name': 'Job', 'indexes': [{'name': 'Job_open_uq', 'columns': ['teacherId'], 'unique': True,
                                     'where': '"closedAt" IS NULL AND status = \'OPEN\'', 'include': ['status']}]},
        {'name': 'Log', 'schema': 'audit', 'indexes': [{'name': 'Log_data_idx', 'columns': ['data'],
                                                        'method': 'gin'}]}]
    assert constraints == [
        {'name': 'Log_ref_key', 'table': 'Log', 'type': 'unique', 'columns': ['ref'], 'schema': 'audit'},
        {'name': 'Log_b_key', 'table': 'Log', 'type': 'unique', 'columns': ['b'], 'schema': 'audit'}]


@pytest.mark.parametrize('sql, fragment', [
    ('CREATE INDEX "i" ON "t"("a"); CREATE INDEX "i" ON "t"("b");', 'already defined at line 1'),
    ('CREATE INDEX "i" ON ONLY "t"("a");', 'ON ONLY'),
    ('CREATE INDEX "i" ON "t"("a" text_pattern_ops);', 'operator class'),
    ('CREATE INDEX "i" ON "t"("a") WITH (fillfactor = 70);', 'storage parameters'),
    ('CREATE UNIQUE INDEX "i" ON "t"("a") NULLS NOT DISTINCT;', 'NULLS NOT DISTINCT'),
    ('ALTER TABLE "t" ADD CONSTRAINT "k" UNIQUE USING INDEX "i";', 'USING INDEX'),
    ('ALTER TABLE "t" ADD CONSTRAINT "k" UNIQUE ("a"), DROP COLUMN "b";', 'migration of their own'),
    ('ALTER TABLE "t" ADD CONSTRAINT "k" FOREIGN KEY ("a") REFERENCES "u";', 'REFERENCES names no columns'),
    ('ALTER TABLE "t" ADD CONSTRAINT "k" FOREIGN KEY ("a") REFERENCES "u"("b") MATCH FULL;', 'MATCH FULL'),
    ('ALTER TABLE "t" ADD CONSTRAINT "k" FOREIGN KEY ("a") REFERENCES "u"("b") DEFERRABLE;', 'DEFERRABLE'),
    ('ALTER TABLE "t" ADD CHECK ("a" > 0);', 'the constraint has no name'),
    ('ALTER TABLE "t" ADD CONSTRAINT "k" CHECK ("a" > 0) NO INHERIT;', 'NO INHERIT'),
    ('ALTER TABLE "t" ALTER COLUMN "a" DROP NOT NULL;', 'migration of their own'),
    ("SET search_path = other;", 'not an index'),
    ('WITH gone AS (DELETE FROM "t" RETURNING *) SELECT count(*) FROM gone;', 'not an index'),
    ('SELECT * FROM "t" FOR UPDATE;', 'not an index'),
    ('CREATE INDX "i" ON "t"("a");', 'cannot parse'),
    ('-- nothing but a comment', 'no CREATE INDEX'),
])
def test_what_a_plan_cannot_express_is_refused(sql, fragment):
    result = run_cli('-', stdin=sql)
    assert result.returncode == 2, result.stdout
    assert fragment in result.stderr
    assert result.stdout == ''


def test_an_unreadable_file_is_an_error_of_its_own(tmp_path):
    result = run_cli(str(tmp_path / 'missing.sql'))
    assert result.returncode == 1
    assert 'cannot read the input' in result.stderr


def test_lines_count_multibyte_text_and_block_comments_correctly():
    sql = "/* ünïcode\n comment */\nSELECT 'é';\n\n  DROP TABLE x;\n"
    _tables, _constraints, skipped, refused = plan_import.import_sql(sql)
    assert skipped[0][0] == 3
    assert refused[0][0] == 5 and refused[0][1] == 'DROP TABLE x'


def test_a_migration_of_a_relation_only_imports_into_a_plan_the_plan_loader_accepts(tmp_path):
    """Issue 23: the importer wrote `tables:` with no value, which the loader refused ('tables must be a list')."""
    migration_plan = importlib.import_module(helpers.collection_path('plugins.plugin_utils.migration_plan'))
    relation_sql = os.path.join(REPO_ROOT, 'tests', 'fixtures', 'prisma_migrations', 'relation_only', 'migration.sql')
    out = tmp_path / 'plan.yml'
    result = run_cli(relation_sql, '--prisma', '-o', str(out))
    assert result.returncode == 0, result.stderr
    assert 'tables: []\n' in out.read_text()
    plan, error = migration_plan.load_plan(str(out), str(tmp_path))
    assert error is None
    assert plan['tables'] == []
    assert plan['constraints'] == [
        {'name': 'Class_teacherId_fkey', 'table': 'Class', 'type': 'foreign_key', 'columns': ['teacherId'],
         'references': {'table': 'Teacher', 'columns': ['id']}, 'on_delete': 'SET NULL', 'on_update': 'CASCADE'}]


def test_a_refusal_now_gives_the_class_the_lock_why_and_the_safe_way():
    _tables, _constraints, _skipped, refused = plan_import.import_sql(
        'ALTER TABLE "Job" DROP COLUMN "notes";\nALTER TABLE "Job" ALTER COLUMN "title" DROP NOT NULL;\n')
    (line, text, reason), (line2, _text2, reason2) = refused
    assert (line, text) == (1, 'ALTER TABLE "Job" DROP COLUMN "notes"')
    assert 'a refused statement (drop_column), lock ACCESS EXCLUSIVE' in reason
    assert 'lost for good' in reason and 'The safe way: first deploy code' in reason
    assert line2 == 2 and 'a catalog statement (drop_not_null)' in reason2 and 'not an index' in reason2


def test_an_index_on_a_table_the_migration_creates_is_refused_with_that_reason():
    with open(os.path.join(REPO_ROOT, 'tests', 'fixtures', 'prisma_migrations', 'enum_table_index_relation',
                           'migration.sql'), encoding='utf-8') as handle:
        sql = handle.read()
    _tables, _constraints, _skipped, refused = plan_import.import_sql(sql)
    assert [line for line, _text, _reason in refused] == [2, 5, 14, 17]
    assert 'a catalog statement (create_table)' in refused[1][2]
    assert 'the table was created at line 5 of this migration' in refused[2][2]
    assert 'a plan creates no tables' in refused[3][2]
