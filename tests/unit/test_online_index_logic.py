# -*- coding: utf-8 -*-
"""Unit tests of the pure functions behind the online index modules (no server): index planning (index_decisions),
retries and driver errors (session), background runs (async_runs), advisory lock holders, identifiers."""

import json
import os
import subprocess
import time

import pytest

import helpers

index_decisions = helpers.load_module_utils('kinds.index_decisions')
definitions = helpers.load_module_utils('kinds.index_definitions')
session = helpers.load_module_utils('session.statements')
runs = helpers.load_module_utils('run.async_runs')
locks = helpers.load_module_utils('session.advisory_locks')
identifiers = helpers.load_module_utils('plan.identifiers')


# -- builders ----------------------------------------------------------------------------------------

def spec(name='Job_teacherId_status_idx', columns=('teacherId', 'status'), schema='public', table='Job', **extra):
    """A planned index as OnlineIndexRunner.plan hands it to decide_actions."""
    result = dict(name=name, columns=list(columns) if columns is not None else None, unique=False,
                  method='btree', where=None, include=[], schema=schema, table=table, normalized_where=None)
    result.update(extra)
    result.setdefault('display_definition', 'CREATE INDEX "%s" ON "%s"."%s" USING "btree" (%s)'
                      % (name, schema, table, ', '.join('"%s"' % c for c in (columns or []))))
    return result


def existing(name='Job_teacherId_status_idx', key_columns=('teacherId', 'status'), table='Job',
             table_schema='public', **extra):
    """An existing index as read_existing_indexes returns it."""
    result = dict(name=name, relkind='i', table=table, table_schema=table_schema, valid=True, ready=True,
                  unique=False, method='btree', key_columns=list(key_columns), include_columns=[],
                  predicate=None, constraint=None, build_in_progress_pid=None, extras=[],
                  definition='CREATE INDEX "%s" ON %s."%s" USING btree (%s)'
                             % (name, table_schema, table, ', '.join('"%s"' % c for c in key_columns)))
    result.update(extra)
    return result


# -- identifier_error ---------------------------------------------------------------------------------

class TestIdentifierError(object):

    @pytest.mark.parametrize('value', ['', None])
    def test_empty_is_refused(self, value):
        assert identifiers.identifier_error('index name', value) == 'index name is empty'

    def test_valid_camel_case_is_accepted(self):
        assert identifiers.identifier_error('column', 'teacherId') is None
        assert identifiers.identifier_error('table', 'JobAssignment') is None
        assert identifiers.identifier_error('index name', 'Job_teacherId_status_idx') is None

    def test_exactly_63_bytes_is_accepted(self):
        assert identifiers.identifier_error('index name', 'x' * 63) is None

    def test_64_ascii_bytes_is_refused_with_length_and_name(self):
        name = 'x' * 64
        error = identifiers.identifier_error('index name', name)
        assert error is not None
        assert name in error
        assert '64 bytes' in error
        assert 'at most 63 bytes' in error

    def test_multibyte_utf8_counts_bytes_not_characters(self):
        # 32 characters, but each 'é' is two bytes in UTF-8: 64 bytes.
        name = '\u00e9' * 32
        assert len(name) == 32
        error = identifiers.identifier_error('index name', name)
        assert error is not None and '64 bytes' in error
        # 31 of them (62 bytes) fit; 21 three-byte characters (63 bytes) fit; 22 (66 bytes) do not.
        assert identifiers.identifier_error('index name', '\u00e9' * 31) is None
        assert identifiers.identifier_error('index name', '\u20ac' * 21) is None
        assert '66 bytes' in identifiers.identifier_error('index name', '\u20ac' * 22)

    @pytest.mark.parametrize('value', [' Job_idx', 'Job_idx ', '\tJob_idx', 'Job_idx\n', '\u00a0Job_idx'])
    def test_leading_or_trailing_whitespace_is_refused(self, value):
        error = identifiers.identifier_error('index name', value)
        assert error is not None and 'white space' in error

    def test_inner_space_is_a_legal_quoted_identifier(self):
        assert identifiers.identifier_error('index name', 'Job idx') is None

    @pytest.mark.parametrize('value', ['Job\x00idx', 'Job\x07idx', 'Job\x1bidx', 'Job\x7fidx', 'a\nb'])
    def test_control_character_is_refused(self, value):
        error = identifiers.identifier_error('column', value)
        assert error is not None and 'control character' in error

    def test_non_string_is_refused(self):
        error = identifiers.identifier_error('column', 42)
        assert error is not None and 'not a string' in error

    def test_kind_is_named_in_the_message(self):
        assert identifiers.identifier_error('access method', '').startswith('access method')


# -- validate_specs -----------------------------------------------------------------------------------

def raw(name='Job_idx', columns=('teacherId',), **extra):
    """An index spec as the module receives it (argument defaults applied)."""
    result = dict(name=name, columns=list(columns) if columns is not None else None, unique=False,
                  method='btree', where=None, include=[])
    result.update(extra)
    return result


class TestValidateSpecs(object):

    def test_valid_plan_has_no_errors(self):
        specs = [raw('Job_a_idx', ['teacherId', 'status']),
                 raw('Job_b_idx', ['createdAt'], where='"closedAt" IS NULL', include=['teacherId']),
                 raw('Job_c_idx', ['id'], unique=True)]
        assert index_decisions.validate_specs('public', 'Job', specs, 'present') == []

    def test_duplicate_names_are_refused(self):
        errors = index_decisions.validate_specs('public', 'Job', [raw('Job_idx', ['a']), raw('Job_idx', ['b'])], 'present')
        assert len(errors) == 1
        assert '"Job_idx"' in errors[0] and 'listed twice' in errors[0]

    def test_duplicate_names_are_refused_for_absent_too(self):
        errors = index_decisions.validate_specs('public', 'Job', [raw('Job_idx', None), raw('Job_idx', None)], 'absent')
        assert any('listed twice' in e for e in errors)

    @pytest.mark.parametrize('columns', [None, []])
    def test_missing_columns_refused_for_present(self, columns):
        errors = index_decisions.validate_specs('public', 'Job', [raw('Job_idx', columns)], 'present')
        assert errors == ['index "Job_idx" has no columns']

    @pytest.mark.parametrize('columns', [None, []])
    def test_missing_columns_fine_for_absent(self, columns):
        assert index_decisions.validate_specs('public', 'Job', [raw('Job_idx', columns)], 'absent') == []

    def test_absent_still_checks_the_name(self):
        errors = index_decisions.validate_specs('public', 'Job', [raw('x' * 64, None)], 'absent')
        assert len(errors) == 1 and '64 bytes' in errors[0]

    def test_repeated_column_is_refused(self):
        errors = index_decisions.validate_specs('public', 'Job', [raw('Job_idx', ['status', 'teacherId', 'status'])], 'present')
        assert len(errors) == 1
        assert 'Job_idx' in errors[0] and 'status' in errors[0] and 'more than once' in errors[0]

    def test_key_and_include_overlap_is_refused(self):
        errors = index_decisions.validate_specs('public', 'Job',
                                   [raw('Job_idx', ['teacherId', 'status'], include=['status', 'title'])], 'present')
        assert len(errors) == 1
        assert 'status' in errors[0] and 'both as key and in include' in errors[0]
        assert 'title' not in errors[0]

    @pytest.mark.parametrize('method', ['hash', 'gin', 'brin'])
    def test_unique_non_btree_is_refused(self, method):
        errors = index_decisions.validate_specs('public', 'Job', [raw('Job_idx', ['status'], unique=True, method=method)],
                                   'present')
        assert errors == ['index "Job_idx": only btree indexes can be unique']

    def test_non_unique_non_btree_is_fine(self):
        assert index_decisions.validate_specs('public', 'Job', [raw('Job_idx', ['status'], method='hash')], 'present') == []

    @pytest.mark.parametrize('where', ['', '   ', '\n\t'])
    def test_empty_where_is_refused(self, where):
        errors = index_decisions.validate_specs('public', 'Job', [raw('Job_idx', ['status'], where=where)], 'present')
        assert errors == ['index "Job_idx" has an empty where predicate']

    def test_bad_column_identifiers_are_named(self):
        errors = index_decisions.validate_specs('public', 'Job', [raw('Job_idx', [' status'], include=['x' * 70])], 'present')
        assert len(errors) == 2
        assert 'white space' in errors[0] and '" status"' in errors[0]
        assert '70 bytes' in errors[1]

    def test_empty_method_is_refused(self):
        errors = index_decisions.validate_specs('public', 'Job', [raw('Job_idx', ['status'], method='')], 'present')
        assert any('access method is empty' in e for e in errors)

    def test_bad_index_name_is_reported_by_position(self):
        errors = index_decisions.validate_specs('public', 'Job', [raw('Job_ok', ['a']), raw('', ['b'])], 'present')
        assert errors == ['index #2 of table "Job": index name is empty']

    def test_bad_schema_and_table_are_refused(self):
        errors = index_decisions.validate_specs(' public', '', [raw()], 'present')
        assert any(e.startswith('schema') and 'white space' in e for e in errors)
        assert any(e == 'table is empty' for e in errors)

    def test_no_specs_is_refused(self):
        assert index_decisions.validate_specs('public', 'Job', [], 'present') == ['no indexes given for table "Job"']

    def test_every_problem_is_listed(self):
        specs = [raw('Job_a', ['a', 'a']), raw('Job_a', ['b']), raw('Job_c', [], where=' ')]
        errors = index_decisions.validate_specs('public', 'Job', specs, 'present')
        assert len(errors) == 4, errors


# -- column_errors ------------------------------------------------------------------------------------

class TestColumnErrors(object):
    COLUMNS = {'id', 'teacherId', 'status', 'createdAt', 'closedAt'}

    def test_all_present(self):
        specs = [raw('Job_a', ['teacherId', 'status'], include=['createdAt'])]
        assert index_decisions.column_errors('public.Job', specs, self.COLUMNS) == []

    def test_missing_key_and_include_columns_are_named_with_the_table_columns(self):
        specs = [raw('Job_a', ['teacherid', 'status'], include=['nope'])]
        errors = index_decisions.column_errors('public.Job', specs, self.COLUMNS)
        assert len(errors) == 1
        assert errors[0].startswith('index "Job_a": column(s) "teacherid", "nope" do not exist in table public.Job')
        assert '(it has: closedAt, createdAt, id, status, teacherId)' in errors[0]

    def test_names_are_case_sensitive(self):
        assert index_decisions.column_errors('public.Job', [raw('Job_a', ['TeacherId'])], self.COLUMNS)

    def test_one_error_per_index(self):
        specs = [raw('Job_a', ['x']), raw('Job_b', ['status']), raw('Job_c', ['y'])]
        errors = index_decisions.column_errors('public.Job', specs, self.COLUMNS)
        assert [e.split(':')[0] for e in errors] == ['index "Job_a"', 'index "Job_c"']


# -- compare_index ------------------------------------------------------------------------------------

class TestCompareIndex(object):

    def test_match(self):
        assert definitions.compare_index(existing(), spec()) == []

    def test_match_with_include_and_predicate(self):
        found = existing(key_columns=['createdAt'], include_columns=['teacherId'], predicate='("closedAt" IS NULL)')
        planned = spec(columns=['createdAt'], include=['teacherId'], where='"closedAt" IS NULL',
                       normalized_where='("closedAt" IS NULL)')
        assert definitions.compare_index(found, planned) == []

    def test_unique_differs(self):
        assert definitions.compare_index(existing(unique=True), spec()) == ['unique is True, planned False']

    def test_method_differs(self):
        assert definitions.compare_index(existing(method='hash'), spec()) == ['method is hash, planned btree']

    def test_columns_differ(self):
        assert definitions.compare_index(existing(key_columns=['teacherId']), spec()) == [
            'key columns are (teacherId), planned (teacherId, status)']

    def test_column_order_matters(self):
        differences = definitions.compare_index(existing(key_columns=['status', 'teacherId']), spec())
        assert len(differences) == 1 and differences[0].startswith('key columns')

    def test_expression_column_is_shown_as_expression(self):
        differences = definitions.compare_index(existing(key_columns=[None, 'status']), spec())
        assert differences == ['key columns are (expression, status), planned (teacherId, status)']

    def test_include_differs(self):
        assert definitions.compare_index(existing(include_columns=['title']), spec()) == [
            'include columns are (title), planned ()']

    def test_predicate_differs(self):
        differences = definitions.compare_index(existing(predicate='("closedAt" IS NULL)'), spec())
        assert differences == ['predicate is ("closedAt" IS NULL), planned none']
        differences = definitions.compare_index(existing(), spec(normalized_where='("closedAt" IS NULL)'))
        assert differences == ['predicate is none, planned ("closedAt" IS NULL)']

    def test_extras_are_differences(self):
        differences = definitions.compare_index(existing(extras=['a DESC or NULLS FIRST ordering', 'NULLS NOT DISTINCT']),
                                       spec())
        assert differences == ['it has a DESC or NULLS FIRST ordering, which the plan does not',
                               'it has NULLS NOT DISTINCT, which the plan does not']

    def test_several_differences_are_all_listed(self):
        differences = definitions.compare_index(existing(unique=True, method='hash', key_columns=['id']), spec())
        assert len(differences) == 3

    def test_other_table_short_circuits(self):
        differences = definitions.compare_index(existing(table='JobAssignment', unique=True), spec())
        assert differences == ['it is on table public.JobAssignment, not public.Job']

    def test_other_schema(self):
        differences = definitions.compare_index(existing(table_schema='archive'), spec())
        assert differences == ['it is on table archive.Job, not public.Job']


# -- decide_actions -----------------------------------------------------------------------------------

def one(specs, existing_by_name, state='present', ledger=None):
    decisions, errors = index_decisions.decide_actions(specs, existing_by_name, state, ledger=ledger, plan='t12')
    return decisions, errors


def ledger_of(found, state='applied'):
    """The ledger rows of plan t12 that attribute the indexes C(found) to it, as they are now."""
    return dict((('index', name), dict(id=n, run_id='t12-1', state=state, definition=index['definition'], prior=None))
                for n, (name, index) in enumerate(sorted(found.items()), start=1))


class TestDecideActions(object):

    def test_missing_index_is_created(self):
        decisions, errors = one([spec()], {})
        assert errors == []
        assert [d['action'] for d in decisions] == ['created']
        assert decisions[0]['existing'] is None

    def test_matching_valid_index_is_unchanged(self):
        found = existing()
        decisions, errors = one([spec()], {found['name']: found})
        assert errors == []
        assert decisions[0]['action'] == 'unchanged' and decisions[0]['existing'] is found

    def test_invalid_index_is_rebuilt(self):
        found = existing(valid=False)
        decisions, errors = one([spec()], {found['name']: found})
        assert errors == [] and decisions[0]['action'] == 'rebuilt'

    def test_invalid_index_with_other_definition_is_rebuilt_to_the_plan(self):
        # The brief's scenario: a failed UNIQUE build leaves an INVALID index; the plan is non-unique.
        found = existing(valid=False, unique=True)
        decisions, errors = one([spec()], {found['name']: found})
        assert errors == [] and decisions[0]['action'] == 'rebuilt'

    def test_invalid_index_backing_a_constraint_is_planned_as_a_rebuild_that_the_refusal_rules_refuse(self):
        # Its drop is what PostgreSQL refuses: the rule drop-index-of-constraint refuses it (test_refusal_rules).
        found = existing(valid=False, constraint='Job_uniq')
        (decision,), errors = one([spec()], {found['name']: found})
        assert errors == [] and [step['kind'] for step in decision['steps']] == ['drop', 'build']

    def test_mismatch_is_an_error_with_both_definitions(self):
        found = existing(key_columns=['status'], definition='CREATE INDEX "Job_teacherId_status_idx" ON public."Job" '
                                                            'USING btree (status)')
        planned = spec()
        decisions, errors = one([planned], {found['name']: found})
        assert decisions == []
        assert len(errors) == 1
        message = errors[0]
        assert 'public.Job_teacherId_status_idx' in message
        assert 'exists with a different definition' in message
        assert 'key columns are (status), planned (teacherId, status)' in message
        assert 'existing: ' + found['definition'] in message
        assert 'planned:  ' + planned['display_definition'] in message
        assert 'nothing was changed' in message

    def test_index_on_another_table_is_an_error_even_when_invalid(self):
        found = existing(table='JobAssignment', valid=False)
        decisions, errors = one([spec()], {found['name']: found})
        assert decisions == []
        assert len(errors) == 1 and 'public.JobAssignment' in errors[0]

    def test_build_in_progress_is_refused(self):
        found = existing(valid=False, ready=False, build_in_progress_pid=4242)
        decisions, errors = one([spec()], {found['name']: found})
        assert decisions == []
        assert len(errors) == 1 and 'being built' in errors[0] and '4242' in errors[0]

    @pytest.mark.parametrize('state', ['present', 'absent'])
    @pytest.mark.parametrize('relkind', ['r', 'v', 'S', 'm'])
    def test_non_index_relation_of_that_name_is_refused(self, relkind, state):
        found = existing(relkind=relkind, table=None, table_schema=None)
        decisions, errors = one([spec()], {found['name']: found}, state)
        assert decisions == []
        assert len(errors) == 1 and 'is not an index' in errors[0] and 'kind %s' % relkind in errors[0]

    def test_absent_drops_an_index_the_ledger_attributes_to_the_plan(self):
        found = {'Job_teacherId_status_idx': existing()}
        decisions, errors = one([spec(columns=None)], found, 'absent', ledger_of(found))
        assert errors == [] and decisions[0]['action'] == 'dropped' and decisions[0]['ledger_row']['id'] == 1

    def test_absent_leaves_alone_an_index_the_ledger_does_not_attribute_to_the_plan(self):
        found = {'Job_teacherId_status_idx': existing(unique=True)}
        decisions, errors = one([spec(columns=None)], found, 'absent')
        assert errors == [] and decisions[0]['action'] == 'unchanged' and decisions[0]['steps'] == []
        assert 'is not in the ledger of plan t12' in decisions[0]['left_alone']

    def test_absent_drops_the_invalid_leftover_of_a_stopped_build_the_ledger_intended(self):
        found = {'Job_teacherId_status_idx': existing(valid=False)}
        decisions, errors = one([spec(columns=None)], found, 'absent', ledger_of(found, state='intended'))
        assert errors == [] and decisions[0]['action'] == 'dropped'

    def test_absent_missing_index_is_unchanged(self):
        decisions, errors = one([spec(columns=None)], {}, 'absent')
        assert errors == [] and decisions[0]['action'] == 'unchanged' and decisions[0]['existing'] is None

    def test_absent_leaves_alone_an_index_that_changed_since_the_ledger_recorded_it(self):
        found = {'Job_teacherId_status_idx': existing()}
        ledger = ledger_of(found)
        found['Job_teacherId_status_idx'] = existing(key_columns=['id'], unique=True, method='hash')
        found['Job_teacherId_status_idx']['definition'] = 'CREATE UNIQUE INDEX x ON public."Job" USING hash (id)'
        decisions, errors = one([spec(columns=None)], found, 'absent', ledger)
        assert errors == [] and decisions[0]['action'] == 'unchanged'
        assert 'is not what run t12-1 of plan t12 recorded' in decisions[0]['left_alone']

    def test_absent_leaves_alone_an_index_of_another_table(self):
        found = {'Job_teacherId_status_idx': existing(table='JobAssignment')}
        decisions, errors = one([spec(columns=None)], found, 'absent', ledger_of(found))
        assert errors == [] and decisions[0]['steps'] == []
        assert 'belongs to table public.JobAssignment' in decisions[0]['left_alone']

    def test_absent_plans_the_drop_of_an_index_backing_a_constraint_that_the_refusal_rules_refuse(self):
        # PostgreSQL refuses the drop: the rule drop-index-of-constraint refuses it (test_refusal_rules).
        found = {'Job_pkey': existing(name='Job_pkey', key_columns=['id'], constraint='Job_pkey')}
        (decision,), errors = one([spec(name='Job_pkey', columns=None)], found, 'absent', ledger_of(found))
        assert errors == [] and [step['kind'] for step in decision['steps']] == ['drop']

    def test_order_is_kept_and_all_errors_are_collected(self):
        specs = [spec('a', ['id']), spec('b', ['id']), spec('c', ['id']), spec('d', ['id'])]
        found = {'b': existing('b', ['id']), 'c': existing('c', ['status']), 'd': existing('d', ['id'], relkind='r')}
        decisions, errors = one(specs, found)
        assert [(d['spec']['name'], d['action']) for d in decisions] == [('a', 'created'), ('b', 'unchanged')]
        assert len(errors) == 2
        assert '"public.c"' in errors[0] and '"public.d"' in errors[1]


# -- backoff_seconds ----------------------------------------------------------------------------------

class TestBackoffSeconds(object):

    def test_exponential_without_jitter_at_the_top(self):
        top = lambda: 1.0  # noqa: E731 - rand() is in [0, 1); 1.0 is its upper bound
        assert [session.backoff_seconds(n, 1.0, rand=top) for n in (1, 2, 3, 4, 5)] == [1.0, 2.0, 4.0, 8.0, 16.0]
        assert [session.backoff_seconds(n, 0.25, rand=top) for n in (1, 2, 3)] == [0.25, 0.5, 1.0]

    def test_capped_at_max_delay(self):
        top = lambda: 1.0  # noqa: E731
        assert session.backoff_seconds(7, 1.0, rand=top) == 60.0  # 64 s capped at the default 60 s
        assert session.backoff_seconds(30, 1.0, rand=top) == 60.0
        assert session.backoff_seconds(4, 1.0, max_delay=5.0, rand=top) == 5.0

    def test_jitter_lower_bound_is_half(self):
        assert session.backoff_seconds(1, 2.0, rand=lambda: 0.0) == 1.0
        assert session.backoff_seconds(3, 2.0, rand=lambda: 0.0) == 4.0
        assert session.backoff_seconds(10, 1.0, rand=lambda: 0.0) == 30.0

    def test_jitter_is_linear_in_rand(self):
        assert session.backoff_seconds(2, 1.0, rand=lambda: 0.5) == pytest.approx(1.5)

    def test_default_random_stays_within_bounds(self):
        for attempt in range(1, 10):
            ceiling = min(60.0, 0.5 * 2 ** (attempt - 1))
            for _ in range(50):
                delay = session.backoff_seconds(attempt, 0.5)
                assert ceiling * 0.5 <= delay <= ceiling


# -- sqlstate -----------------------------------------------------------------------------------------

class TestSqlstate(object):

    def test_psycopg2_pgcode(self):
        class Psycopg2Error(Exception):
            pgcode = '55P03'
        assert session.sqlstate(Psycopg2Error()) == '55P03'

    def test_psycopg3_sqlstate(self):
        class Psycopg3Error(Exception):
            sqlstate = '40P01'
        assert session.sqlstate(Psycopg3Error()) == '40P01'

    def test_not_a_driver_error(self):
        assert session.sqlstate(ValueError('x')) is None

    def test_retryable_sqlstates(self):
        assert set(session.RETRYABLE_SQLSTATES) == {'55P03', '40P01'}

    def test_error_text_is_one_line(self):
        assert session.error_text(Exception('ERROR:  boom\nDETAIL:  x  y')) == 'ERROR: boom DETAIL: x y'


# --- a where predicate must be one expression (PostgreSQL's parser decides: tests/unit/test_plan_sql.py) -------

def test_validate_specs_refuses_a_stacked_predicate():
    errors = index_decisions.validate_specs('public', 'Job', [
        dict(name='Job_x_idx', columns=['status'], where='true; SELECT 1', method='btree')], 'present')
    assert len(errors) == 1 and 'Job_x_idx' in errors[0] and '2 statements' in errors[0]


def test_validate_specs_accepts_a_predicate_with_quotes_and_comments():
    assert index_decisions.validate_specs('public', 'Job', [
        dict(name='Job_x_idx', columns=['status'], where="/* open; */ status = 'a;b'", method='btree')],
        'present') == []


# --- the duplicate report of a unique constraint ----------------------------------------------------

def _unique_keys():
    return helpers.load_module_utils('kinds.unique_keys')


def test_the_duplicate_report_lists_keys_counts_and_ids():
    lines = _unique_keys().format_duplicate_report(
        'Class_name_grade_key', 'public', 'Class', ['name', 'grade'], 'id',
        [dict(key=['A', '1'], rows=4, sample_ids=['x', 'y']), dict(key=['B', '2'], rows=2, sample_ids=['p', 'q'])],
        total_groups=3, total_rows=8)
    assert lines == [
        'constraint "Class_name_grade_key" UNIQUE (name, grade) on public.Class: 3 duplicate key(s) over 8 rows',
        '  (name, grade) = (A, 1): 4 rows, id x, y, ...',
        '  (name, grade) = (B, 2): 2 rows, id p, q',
        '  ... and 1 more duplicate key(s)',
    ]


# --- disk estimate -----------------------------------------------------------------------------------

def test_the_index_estimate_grows_with_rows_and_key_width():
    small = index_decisions.estimate_index_bytes(1000, [26, 4])
    assert small == int(1000 * (12 + 32) / 0.9) + 2 * 8192
    assert index_decisions.estimate_index_bytes(2000, [26, 4]) > small > index_decisions.estimate_index_bytes(1000, [8])
    assert index_decisions.estimate_index_bytes(0, [8]) == 2 * 8192


# --- background runs: their results files, and whether their playbook still runs ----------------------------

def _results_file(tmp_path, name, data):
    path = tmp_path / name
    if data is not None:
        path.write_text(json.dumps(data))
    return str(path)


def test_an_unwritten_results_file_counts_as_still_running(tmp_path):
    assert runs.read_async_result(str(tmp_path / 'missing')) is None
    assert runs.read_async_result(_results_file(tmp_path, 'half', {'started': 1, 'finished': 0})) is None
    assert runs.read_async_result(_results_file(tmp_path, 'timeout', {'failed': 1, 'msg': 'Timeout exceeded'}))['failed']


def test_a_killed_playbook_not_yet_reaped_counts_as_gone():
    zombie = subprocess.Popen(['true'])
    time.sleep(0.5)  # it has exited; until wait() it is a zombie
    try:
        assert not runs.process_alive(zombie.pid)
        assert runs.process_alive(os.getpid())
    finally:
        zombie.wait()


class _LockCursor(object):
    """Records the parameters of the advisory-lock holders query and returns one holder row."""
    description = [('pid',), ('application_name',), ('usename',), ('client_addr',), ('backend_start',),
                   ('query_start',), ('query',)]

    def execute(self, query, params=None):
        self.params = params

    def fetchall(self):
        return [(7, 'app', 'u', '127.0.0.1/32', '2026-01-01 10:00', '2026-01-01 10:05', 'CREATE INDEX ...')]


def test_advisory_lock_holders_read_a_pair_key_and_a_bigint_key_as_pg_locks_shows_them():
    cursor = _LockCursor()
    row, = locks.advisory_lock_holders(cursor, (1886415972, 1), since='query_start', with_query=True)
    assert cursor.params == dict(classid=1886415972, objid=1, objsubid=2)
    assert row == dict(pid=7, application_name='app', usename='u', client_addr='127.0.0.1/32',
                       since='2026-01-01 10:05', query='CREATE INDEX ...')
    row, = locks.advisory_lock_holders(cursor, 72707369)
    assert cursor.params == dict(classid=0, objid=72707369, objsubid=1)
    assert row == dict(pid=7, application_name='app', usename='u', client_addr='127.0.0.1/32',
                       since='2026-01-01 10:00')
    locks.advisory_lock_holders(cursor, (5 << 32) + 9)
    assert cursor.params == dict(classid=5, objid=9, objsubid=1)


def test_a_statement_is_refused_once_the_owning_playbook_has_ended_and_says_why():
    ended = subprocess.Popen(['true'])
    ended.wait()
    assert runs.owner_gone(0) is None, '0 watches nothing'
    assert runs.owner_gone(os.getpid()) is None
    assert runs.owner_gone(ended.pid) == ('the run that started it (ansible-playbook, process %d) has ended, so it '
                                          'does not go on alone; rerun the playbook' % ended.pid)
