# -*- coding: utf-8 -*-
"""Hostile plan SQL against the real cluster: a predicate or a baseline query that hides "; COMMIT; DELETE ...;
CREATE TABLE ..." in a quoting form PostgreSQL has (E'' strings, dollar quotes, U& strings, nested comments) is
refused before anything runs, with --check and without, and not one row or catalog entry changes."""

import pytest
import yaml

import helpers

pytestmark = pytest.mark.integration

CANARY = 'pgzd_canary'
SMUGGLED = '; COMMIT; DELETE FROM %s; CREATE TABLE pgzd_pwned (x int); SELECT (1' % CANARY

# Each one fooled the hand-written lexer of earlier versions, or would fool one that knows fewer quoting forms.
WHERE_TRICKS = [
    "\"status\" = E'\\'' %s" % SMUGGLED,
    "\"status\" = E'\\\\' %s" % SMUGGLED,
    "\"status\" = $1$ %s" % SMUGGLED,
    "\"status\" = U&'\\0041' %s" % SMUGGLED,
    "true /* /* */ */ %s" % SMUGGLED,
    '"a;b" IS NULL %s' % SMUGGLED,
    "pg_catalog.pg_terminate_backend(pg_catalog.pg_backend_pid())",
]
QUERY_TRICKS = [
    "SELECT E'\\'' %s" % SMUGGLED,
    "SELECT E'\\''; COMMIT; DELETE FROM %s" % CANARY,
    "SELECT 1 /* /* */ */; COMMIT; DELETE FROM %s" % CANARY,
    "WITH gone AS (DELETE FROM %s RETURNING 1) SELECT count(*) FROM gone" % CANARY,
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid()",
    "SELECT set_config('default_transaction_read_only', 'off', false)",
]


@pytest.fixture
def canary(db):
    """A table whose rows, checksum and catalog must survive every trick."""
    helpers.query(db, 'DROP TABLE IF EXISTS pgzd_pwned')
    helpers.query(db, 'CREATE TABLE %s AS SELECT g AS id, md5(g::text) AS note FROM generate_series(1, 50) g' % CANARY)

    def state():
        rows = helpers.query(db, 'SELECT count(*), md5(string_agg(note, \',\' ORDER BY id)) FROM %s' % CANARY)[0]
        return rows, helpers.all_indexes(db), helpers.relation_exists(db, 'pgzd_pwned')

    before = state()
    assert before[2] is False
    yield state, before
    helpers.query(db, 'DROP TABLE IF EXISTS %s' % CANARY)
    helpers.query(db, 'DROP TABLE IF EXISTS pgzd_pwned')


@pytest.mark.majors()
@pytest.mark.parametrize('check', [True, False])
def test_a_hostile_predicate_is_refused_by_the_preflight_and_by_the_build(canary, run_module, check):
    state, before = canary
    for where in WHERE_TRICKS:
        indexes = [dict(name='pt_hostile_idx', columns=['status'], where=where)]
        for module, args in (('postgresql_online_index_info', dict(tables=[dict(name='Job', indexes=indexes)])),
                             ('postgresql_online_index', dict(table='Job', indexes=indexes))):
            result = run_module(module, check=check, **args)
            assert result.get('failed') is True, (module, where, result)
            assert 'pt_hostile_idx' in result['msg'] and 'where predicate' in result['msg'], result['msg']
            assert result['queries'] == []
            assert state() == before, (module, where)


def test_a_hostile_baseline_query_or_parameter_query_is_refused_and_nothing_runs(canary, run_module):
    state, before = canary
    for text in QUERY_TRICKS:
        for queries in ([dict(name='hostile', sql=text)],
                        [dict(name='hostile', sql='SELECT %(x)s::int', params=dict(x=dict(query=text)))]):
            result = run_module('postgresql_query_baseline', queries=queries, runs=1)
            assert result.get('failed') is True, (text, result)
            assert 'hostile' in result['msg'], result['msg']
            assert result['queries'] == []
            assert state() == before, text


@pytest.mark.majors()
def test_the_baseline_session_is_read_only_and_a_writing_function_cannot_write(canary, db, run_module):
    state, before = canary
    # default_transaction_read_only is the session's default, not the transaction's own setting: 'on' means the
    # whole session is read-only, should any text ever end the READ ONLY transaction a query runs in.
    result = run_module('postgresql_query_baseline', queries=[dict(
        name='session_setting', sql="SELECT 1 WHERE current_setting('default_transaction_read_only') = 'on'")], runs=1)
    assert result.get('failed') is not True, result
    assert result['queries'][0]['rows'] == 1
    # A user-defined function is refused unless the plan trusts it; one the plan trusts, that says it is STABLE and
    # tries to write all the same, is stopped by PostgreSQL (a non-volatile function runs read-only), and the session
    # and the transaction are read-only besides.
    helpers.query(db, 'CREATE FUNCTION pgzd_wipe() RETURNS int STABLE LANGUAGE plpgsql AS $$ BEGIN DELETE FROM %s; '
                      'RETURN 0; END $$' % CANARY)
    try:
        result = run_module('postgresql_query_baseline', queries=[dict(name='wiper', sql='SELECT pgzd_wipe()')], runs=1)
        assert result.get('failed') is True, result
        assert 'function pgzd_wipe() is user-defined, and the plan does not trust it' in result['msg'], result['msg']
        result = run_module('postgresql_query_baseline', queries=[dict(name='wiper', sql='SELECT pgzd_wipe()')], runs=1,
                            trusted=['pgzd_wipe()'])
        assert result.get('failed') is True, result
        assert 'not allowed in a non-volatile function' in result['msg'] or 'read-only transaction' in result['msg'], \
            result['msg']
    finally:
        helpers.query(db, 'DROP FUNCTION pgzd_wipe()')
    assert state() == before


def write_plan(tmp_path, **extra):
    plan = dict(name='hostile', tables=[dict(name='Job', indexes=[
        dict(name='pt_hostile_ok_idx', columns=['status'])])], baseline_queries=[])
    plan.update(extra)
    path = tmp_path / 'hostile.yml'
    path.write_text(yaml.safe_dump(plan))
    return str(path)


@pytest.mark.majors()
@pytest.mark.parametrize('options', [['--check'], []])
def test_migrate_refuses_a_plan_with_a_hostile_predicate_before_any_ddl(canary, pg_cluster, tmp_path, options):
    state, before = canary
    plan = write_plan(tmp_path, tables=[dict(name='Job', indexes=[
        dict(name='pt_hostile_ok_idx', columns=['status']),
        dict(name='pt_hostile_idx', columns=['status'], where=WHERE_TRICKS[0])])])
    run = helpers.run_playbook('playbooks/migrate.yml', dict(
        local_cluster_dir=pg_cluster['dir'], pg_port=pg_cluster['port'], pgzd_artifacts_dir=str(tmp_path / 'artifacts'), pgzd_plan=plan),
        options=options)
    assert run.returncode != 0, run.stdout[-4000:]
    assert 'pt_hostile_idx' in run.stdout and 'where predicate' in run.stdout, run.stdout[-4000:]
    assert state() == before


def test_migrate_check_refuses_a_plan_with_a_hostile_baseline_query_before_any_ddl(canary, pg_cluster, tmp_path):
    state, before = canary
    plan = write_plan(tmp_path, baseline_queries=[dict(name='hostile_baseline', sql=QUERY_TRICKS[1])])
    run = helpers.run_playbook('playbooks/migrate.yml', dict(
        local_cluster_dir=pg_cluster['dir'], pg_port=pg_cluster['port'], pgzd_artifacts_dir=str(tmp_path / 'artifacts'), pgzd_plan=plan),
        options=['--check'])
    assert run.returncode != 0, run.stdout[-4000:]
    assert 'hostile_baseline' in run.stdout, run.stdout[-4000:]
    assert state() == before
