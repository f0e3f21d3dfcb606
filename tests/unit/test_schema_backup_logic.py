# -*- coding: utf-8 -*-
"""plugins/module_utils/evidence/schema_backup.py: which tables' rows a schema backup saves, the statements that save
and load them, the rows a COPY file holds, and the manifest written and read back; no server needed.

psycopg2 quotes an identifier only through a connection, so the composed statements are rendered here by their parts:
every identifier double-quoted, as quote_ident would for the names below."""

import datetime
import json

from psycopg2 import sql

from helpers import load_module_utils

schema_backup = load_module_utils('evidence.schema_backup')


def rendered(composable):
    """The text of a psycopg2.sql composition, each identifier part double-quoted."""
    if isinstance(composable, sql.Composed):
        return ''.join(rendered(part) for part in composable.seq)
    if isinstance(composable, sql.Identifier):
        return '.'.join('"%s"' % name.replace('"', '""') for name in composable.strings)
    return composable.string


def test_each_table_and_key_is_saved_once_in_the_order_given_with_public_by_default():
    specs = [dict(schema='public', table='Class', columns=['name', 'grade']),
             dict(schema=None, table='Class', columns=['name', 'grade']),  # a second constraint on the same key
             dict(table='Job', columns=['externalId']),
             dict(schema='billing', table='Class', columns=['name', 'grade']),
             dict(schema='public', table='Class', columns=['grade', 'name'])]  # another key: other rows
    assert schema_backup.touched_tables(specs) == [('public', 'Class', ('name', 'grade')),
                                                   ('public', 'Job', ('externalId',)),
                                                   ('billing', 'Class', ('name', 'grade')),
                                                   ('public', 'Class', ('grade', 'name'))]
    assert schema_backup.touched_tables([]) == []


def test_the_touched_rows_are_those_whose_key_appears_more_than_once_ordered_by_key():
    statement = schema_backup.touched_rows_statement(sql, 'public', 'Class', ('name', 'grade'))
    assert rendered(statement) == (
        'COPY (SELECT t.* FROM "public"."Class" t WHERE ("name", "grade") IN (SELECT "name", "grade" FROM '
        '"public"."Class" GROUP BY "name", "grade" HAVING count(*) > 1) ORDER BY "name", "grade") TO STDOUT')
    identifiers = [part for part in statement.seq if isinstance(part, sql.Identifier)]
    assert [part.strings for part in identifiers] == [('public', 'Class'), ('public', 'Class')]


def test_an_identifier_never_reaches_the_statement_as_text():
    hostile = 'x"; DROP TABLE "Job'
    statement = schema_backup.touched_rows_statement(sql, 'public', hostile, (hostile,))
    assert hostile not in [part.string for part in statement.seq if isinstance(part, sql.SQL)]
    assert '"x""; DROP TABLE ""Job"' in rendered(statement)


def test_the_drill_loads_a_rows_file_into_a_temporary_copy_of_the_restored_table_in_the_files_column_order():
    like, load = schema_backup.load_rows_statement(sql, 'billing', 'Class', ['id', 'name', 'grade'])
    assert rendered(like) == ('CREATE TEMPORARY TABLE pgzd_touched_rows (LIKE "billing"."Class") ON COMMIT DROP')
    assert rendered(load) == 'COPY pgzd_touched_rows ("id", "name", "grade") FROM STDIN'


def test_the_schema_dump_is_schema_only_custom_format_with_no_login_on_the_command_line():
    assert schema_backup.schema_dump_command('/opt/pg18/bin/pg_dump', '/b/t12-20261204T030000Z.schema/schema.pgc') == [
        '/opt/pg18/bin/pg_dump', '--schema-only', '--format=custom',
        '--file=/b/t12-20261204T030000Z.schema/schema.pgc']


def test_rows_files_are_numbered_in_the_rows_directory():
    assert schema_backup.rows_file(1) == 'rows/001.copy'
    assert schema_backup.rows_file(12) == 'rows/012.copy'


def test_a_copy_file_counts_one_line_per_row_whatever_its_values_hold(tmp_path):
    # COPY's text format escapes a newline, a tab and a backslash within a value: every row is one line.
    rows = tmp_path / '001.copy'
    rows.write_bytes(b'1\tAlgebra\\nII\t10\n2\tAlgebra\\nII\t10\n3\tC:\\\\temp\\tx\t\\N\n')
    assert schema_backup.count_lines(str(rows)) == 3
    empty = tmp_path / '002.copy'
    empty.write_bytes(b'')
    assert schema_backup.count_lines(str(empty)) == 0


SHAPE = [dict(table_name='public."Class"', kind='column', name='id', definition='integer NOT NULL'),
         dict(table_name='public."Class"', kind='index', name='Class_pkey',
              definition='CREATE UNIQUE INDEX "Class_pkey" ON public."Class" USING btree (id)')]


def test_the_manifest_round_trips_through_its_file(tmp_path):
    schema = dict(path=str(tmp_path / 'schema.pgc'), size_bytes=20480, sha256='ab' * 32, toc_entries=214)
    rows = [dict(schema='public', table='Class', columns=['name', 'grade'], copy_columns=['id', 'name', 'grade'],
                 rows=4, path=str(tmp_path / 'rows' / '001.copy'), sha256='cd' * 32)]
    data = schema_backup.manifest('t12', '15.10', schema, rows, SHAPE)
    assert data == dict(format=schema_backup.MANIFEST_FORMAT, database='t12', server_version='15.10', schema=schema,
                        rows=rows, shape=SHAPE)
    schema_backup.write_manifest(str(tmp_path), data)
    assert json.loads((tmp_path / 'manifest.json').read_text()) == data
    assert schema_backup.read_manifest(str(tmp_path)) == data


def test_what_json_cannot_hold_is_written_as_text(tmp_path):
    moment = datetime.datetime(2026, 12, 4, 3, 0, 0, tzinfo=datetime.timezone.utc)
    schema_backup.write_manifest(str(tmp_path), dict(taken=moment))
    assert schema_backup.read_manifest(str(tmp_path)) == dict(taken='2026-12-04 03:00:00+00:00')


def test_a_directory_without_a_manifest_is_not_a_schema_backup(tmp_path):
    (tmp_path / 'toc.dat').write_bytes(b'toc')  # a directory-format full dump
    assert schema_backup.read_manifest(str(tmp_path)) is None
    (tmp_path / 'manifest.json').mkdir()
    assert schema_backup.read_manifest(str(tmp_path)) is None


def test_the_schema_backup_line_sums_the_touched_rows_or_says_there_are_none():
    backup = dict(path='/b/t12-20261204T030000Z.schema', seconds=1.25,
                  schema=dict(size_bytes=20480, toc_entries=214, sha256='ab' * 32),
                  rows=[dict(rows=4), dict(rows=2)])
    assert schema_backup.schema_summary('t12', backup) == (
        'Schema backup of t12: /b/t12-20261204T030000Z.schema (schema 20.0 KiB, 214 entries, sha256 ' + 'ab' * 32
        + '; 6 rows of 2 tables this run may change), verified with pg_restore --list, in 1.25s.')
    assert '; no row: this run changes none)' in schema_backup.schema_summary('t12', dict(backup, rows=[]))
