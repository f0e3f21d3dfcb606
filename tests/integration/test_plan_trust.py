# -*- coding: utf-8 -*-
"""Plan SQL trusted only as far as the server proves it (issue 21, points 1 and 2), against the real cluster.

A database holds what an attacker (or a careless application) could have created: user-defined functions, an
operator, an implicit cast and domains whose code kills a `victim` session or deletes the rows of a canary table.
Plans reach that code in each place plan SQL goes (an index's where predicate, a check expression, a baseline query,
a baseline parameter's query), and through built-ins that run SQL given as text. Every such plan goes through the
real migrate.yml, with --check and for real: each is refused by the preflight, naming what it reaches, before the
first change; the victim lives, no canary row changes, not one catalog object changes (helpers.Guard). The modules
of the phases refuse the same text on their own (the last check before a statement is sent covers the allowlist).
What the plan trusts by signature passes, and is shown. Baseline parameters are bound, never spliced: a placeholder
inside quotes is refused with its position, and a value read from application data that holds SQL stays a value.
"""

import json

import pytest
import yaml

import helpers

pytestmark = pytest.mark.integration

SCHEMA = 'hostile'

# What an attacker left in the database: every function kills the victim session or empties the canary; each is
# declared IMMUTABLE (a lie PostgreSQL does not check), so nothing but its resolution can tell.
HOSTILE_SQL = """
DROP SCHEMA IF EXISTS hostile CASCADE;
CREATE SCHEMA hostile;
CREATE FUNCTION hostile.wipe(integer) RETURNS integer IMMUTABLE LANGUAGE plpgsql
    AS $$ BEGIN DELETE FROM public.pgzd_canary; RETURN $1; END $$;
CREATE FUNCTION hostile.kill(integer) RETURNS boolean IMMUTABLE LANGUAGE sql
    AS $$ SELECT pg_catalog.pg_terminate_backend(%(victim)d) OR $1 IS NOT NULL $$;
CREATE FUNCTION hostile.kill2(integer, integer) RETURNS boolean IMMUTABLE LANGUAGE sql
    AS $$ SELECT pg_catalog.pg_terminate_backend(%(victim)d) OR $1 = $2 $$;
CREATE FUNCTION hostile.wipe2(integer, integer) RETURNS boolean IMMUTABLE LANGUAGE plpgsql
    AS $$ BEGIN DELETE FROM public.pgzd_canary; RETURN $1 = $2; END $$;
CREATE OPERATOR hostile.=== (LEFTARG = integer, RIGHTARG = integer, FUNCTION = hostile.kill2);
CREATE OPERATOR hostile.#-# (LEFTARG = integer, RIGHTARG = integer, FUNCTION = hostile.wipe2);
CREATE TYPE hostile.wrapped AS (x text);
CREATE FUNCTION hostile.wrap(text) RETURNS hostile.wrapped IMMUTABLE LANGUAGE sql
    AS $$ SELECT ROW($1)::hostile.wrapped FROM (SELECT pg_catalog.pg_terminate_backend(%(victim)d)) k $$;
CREATE CAST (text AS hostile.wrapped) WITH FUNCTION hostile.wrap(text) AS IMPLICIT;
CREATE DOMAIN hostile.alive AS integer CHECK (hostile.kill(VALUE));
CREATE DOMAIN hostile.awake AS integer CHECK (hostile.kill2(VALUE, VALUE));
CREATE VIEW hostile.evil_view AS SELECT hostile.kill(1) AS k;
CREATE FUNCTION hostile.tidy(text) RETURNS text IMMUTABLE LANGUAGE sql AS $$ SELECT lower($1) $$;
"""

KILL_SQL_TEXT = "SELECT ''a''::tsquery, ''b''::tsquery FROM (SELECT pg_catalog.pg_terminate_backend(%(victim)d)) k"


def payloads(victim):
    """(id, where the text goes, the text, what the refusal must name): two payloads or more per kind."""
    cases = [
        # Built-ins that run SQL given as text, or read a relation whose code runs.
        ('builtin-ts_rewrite', 'check', "ts_rewrite('a'::tsquery, '%s') IS NOT NULL" % KILL_SQL_TEXT,
         'ts_rewrite(tsquery,text) runs SQL given as text'),
        ('builtin-ts_stat', 'baseline',
         "SELECT count(*) FROM ts_stat('SELECT to_tsvector(''x'') FROM (SELECT pg_catalog.pg_terminate_backend("
         "%(victim)d)) k')", 'ts_stat(text) runs SQL given as text'),
        ('builtin-table_to_xml', 'parameter', "SELECT table_to_xml('hostile.evil_view', true, true, '')::text",
         'table_to_xml(regclass,boolean,boolean,text) reads whole relations'),
        # User-defined functions.
        ('function-wipe', 'predicate', 'hostile.wipe(1) = 1', 'function hostile.wipe(integer) is user-defined'),
        ('function-kill', 'check', 'hostile.kill(length(name))', 'function hostile.kill(integer) is user-defined'),
        ('function-kill-baseline', 'baseline', 'SELECT count(*) FROM "Item" WHERE hostile.kill(price)',
         'function hostile.kill(integer) is user-defined'),
        # User-defined operators (their code: pg_terminate_backend, a DELETE).
        ('operator-kill', 'check', 'length(name) OPERATOR(hostile.===) 1',
         'operator hostile.===(integer,integer) is user-defined'),
        ('operator-wipe', 'predicate', '1 OPERATOR(hostile.#-#) 1', 'operator hostile.#-#(integer,integer) is user-defined'),
        # A user-defined implicit cast.
        ('cast-check', 'check', '(name::text::hostile.wrapped) IS NOT NULL', 'function hostile.wrap(text) is user-defined'),
        ('cast-baseline', 'baseline', 'SELECT count(*) FROM "Item" WHERE (name::hostile.wrapped) IS NOT NULL',
         'function hostile.wrap(text) is user-defined'),
        # Domains whose CHECK calls such a function.
        ('domain-check', 'check', '(price::hostile.alive) > 0', 'the CHECK of a domain hostile.alive'),
        ('domain-parameter', 'parameter', 'SELECT count(*)::integer FROM "Item" WHERE (price::hostile.awake) > 0',
         'the CHECK of a domain hostile.awake'),
    ]
    return [(case_id, place, text % dict(victim=victim) if '%(victim)' in text else text, fragment)
            for case_id, place, text, fragment in cases]


def plan_for(case_id, place, text):
    """A minimal plan that puts C(text) in C(place)."""
    name = 'trust-%s' % case_id
    safe_index = dict(name='Job', indexes=[dict(name='pt_trust_ok_idx', columns=['status'])])
    if place == 'predicate':
        return dict(name=name, tables=[dict(name='Job', indexes=[dict(name='pt_trust_idx', columns=['status'],
                                                                       where=text)])])
    if place == 'check':
        return dict(name=name, tables=[], constraints=[dict(name='pt_trust_check', type='check', table='Item',
                                                            expression=text)])
    if place == 'baseline':
        return dict(name=name, tables=[safe_index], baseline_queries=[dict(name='hostile_query', sql=text)])
    return dict(name=name, tables=[safe_index], baseline_queries=[dict(
        name='hostile_parameter', sql='SELECT count(*) FROM "Item" WHERE price > %(x)s', params=dict(x=dict(query=text)))])


@pytest.fixture
def hostile(db, guard):
    helpers.query(db, HOSTILE_SQL % dict(victim=guard.victim_pid))
    # The attacker's objects are part of the database the runs must leave as they found it.
    guard.before = guard.snapshot()
    yield guard
    helpers.query(db, 'DROP SCHEMA IF EXISTS hostile CASCADE')


def run_plans(pg_cluster, tmp_path, plans, check, extra=None):
    """One migrate.yml run with each plan as an inventory host of its own (as tests/integration/test_bad_plans.py);
    returns {plan name: (failed, the failure messages, the names of the tasks it ran)}."""
    hosts = {}
    for plan in plans:
        path = tmp_path / ('%s.yml' % plan['name'])
        path.write_text(yaml.safe_dump(plan))
        hosts[plan['name']] = dict(pgzd_plan=str(path), ansible_connection='local',
                                   ansible_python_interpreter='{{ ansible_playbook_python }}')
    inventory = tmp_path / ('trust-%s.yml' % ('check' if check else 'real'))
    inventory.write_text(yaml.safe_dump(dict(trust_plans=dict(hosts=hosts))))
    variables = dict(local_cluster_dir=pg_cluster['dir'], pg_port=pg_cluster['port'],
                     pgzd_artifacts_dir=str(tmp_path / 'artifacts'), pgzd_lock='false', backup_enabled='false')
    variables.update(extra or {})
    run = helpers.run_playbook('playbooks/migrate.yml', variables, timeout=900, stdout_callback='pgzd_test_json',
                               options=['-i', 'inventories/local', '-i', str(inventory), '--limit', 'trust_plans',
                                        '--forks', '8'] + (['--check'] if check else []))
    document = json.loads(next(line for line in reversed(run.stdout.splitlines()) if line.startswith('{"plays"')))
    outcome = {}
    for host in hosts:
        results = [(task['task']['name'], task['hosts'][host]) for task in document['plays'][0]['tasks']
                   if host in task['hosts']]
        messages = ' '.join(' '.join(str(result.get('msg', '')).split()) for _name, result in results
                            if result.get('failed'))
        outcome[host] = (bool(messages), messages, [name for name, _result in results])
    return outcome


# Tasks that start changing something (or run plan SQL on rows): no refused plan may reach them.
CHANGING_TASKS = helpers.CHANGING_TASKS


@pytest.mark.parametrize('check', [True, False], ids=['check', 'real'])
def test_plan_sql_reaching_code_the_server_does_not_prove_is_refused_before_any_change(hostile, pg_cluster, tmp_path,
                                                                                     check):
    cases = payloads(hostile.victim_pid)
    outcome = run_plans(pg_cluster, tmp_path, [plan_for(*case[:3]) for case in cases], check)
    wrong = []
    for case_id, place, text, fragment in cases:
        failed, messages, tasks = outcome['trust-%s' % case_id]
        reached = [task for task in tasks if task.startswith(CHANGING_TASKS)]
        if not failed or fragment not in messages or reached or 'nothing of it was run' not in messages:
            wrong.append('%s (%s): %s' % (case_id, place, 'reached %s' % reached if reached else messages[-900:]
                                          or 'not refused'))
    assert wrong == [], '\n'.join(wrong)
    hostile.assert_untouched('hostile plans, %s' % ('--check' if check else 'for real'))


def test_the_phase_modules_refuse_unproven_plan_sql_on_their_own(hostile, run_module):
    """Without the preflight (a pipeline calling a module): the same proof, before the statement is sent."""
    victim = hostile.victim_pid
    attempts = [
        ('postgresql_online_index', dict(table='Job', indexes=[dict(name='pt_trust_idx', columns=['status'],
                                                                     where='hostile.wipe(1) = 1')]),
         'function hostile.wipe(integer) is user-defined'),
        ('postgresql_online_index', dict(table='Job', indexes=[dict(name='pt_trust_idx', columns=['status'],
                                                                     where='1 OPERATOR(hostile.#-#) 1')]),
         'operator hostile.#-#(integer,integer) is user-defined'),
        ('postgresql_online_constraint', dict(constraints=[dict(name='pt_trust_check', type='check', table='Item',
                                                                 expression='hostile.kill(length(name))')]),
         'function hostile.kill(integer) is user-defined'),
        ('postgresql_online_constraint', dict(constraints=[dict(name='pt_trust_check', type='check', table='Item',
                                                                 expression='(price::hostile.alive) > 0')]),
         'the CHECK of a domain hostile.alive'),
        ('postgresql_query_baseline', dict(queries=[dict(name='q', sql='SELECT hostile.kill(%d)' % victim)], runs=1),
         'function hostile.kill(integer) is user-defined'),
        ('postgresql_query_baseline', dict(queries=[dict(
            name='q', sql="SELECT count(*) FROM ts_stat('SELECT to_tsvector(''x'') FROM (SELECT "
                          "pg_catalog.pg_terminate_backend(%d)) k')" % victim)], runs=1),
         'ts_stat(text) runs SQL given as text'),
    ]
    for module, args, fragment in attempts:
        for check in (True, False):
            result = run_module(module, check=check, **args)
            assert result.get('failed') is True, (module, args, result)
            assert fragment in ' '.join(result['msg'].split()), (fragment, result['msg'])
            assert result['queries'] == [] or module == 'postgresql_query_baseline'
            hostile.assert_untouched('%s %s' % (module, args))


def test_what_the_plan_trusts_passes_is_shown_and_the_rest_is_still_refused(hostile, db, pg_cluster, tmp_path):
    plan = dict(name='trusting', trusted=['hostile.tidy(text)'], tables=[dict(name='Job', indexes=[dict(
        name='pt_trusting_idx', columns=['status'], where="hostile.tidy(title) <> 'x'")])],
        baseline_queries=[dict(name='normalized', sql='SELECT count(*) FROM "Job" WHERE hostile.tidy(title) = '
                                                       '%(title)s', params=dict(title='a title'))])
    path = tmp_path / 'trusting.yml'
    path.write_text(yaml.safe_dump(plan))
    variables = dict(local_cluster_dir=pg_cluster['dir'], pg_port=pg_cluster['port'],
                     pgzd_artifacts_dir=str(tmp_path / 'artifacts'), pgzd_plan=str(path), backup_enabled='false')
    check = helpers.run_playbook('playbooks/migrate.yml', variables, options=['--check'])
    assert check.returncode == 0, check.stdout[-4000:]
    assert 'what the plan trusts: function hostile.tidy(text)' in ' '.join(check.stdout.split()), check.stdout
    planned = list((tmp_path / 'artifacts' / 'runs').glob('trusting-*/planned-migrate.sql'))
    assert len(planned) == 1 and '--   trusted: hostile.tidy(text)' in planned[0].read_text()
    run = helpers.run_playbook('playbooks/migrate.yml', variables)
    assert run.returncode == 0, run.stdout[-4000:]
    assert helpers.index_info(db, 'pt_trusting_idx')['valid'] is True
    reports = list((tmp_path / 'artifacts' / 'runs').glob('trusting-*/report.json'))
    assert [json.loads(r.read_text())['trusted'] for r in reports] == [['hostile.tidy(text)']]
    # Trusting one function trusts nothing else: the same plan reaching hostile.wipe as well is refused.
    plan['tables'][0]['indexes'][0].update(name='pt_trusting2_idx',
                                           where="hostile.tidy(title) <> 'x' AND hostile.wipe(1) = 1")
    path.write_text(yaml.safe_dump(plan))
    refused = helpers.run_playbook('playbooks/migrate.yml', variables)
    assert refused.returncode != 0, refused.stdout[-4000:]
    assert 'function hostile.wipe(integer) is user-defined' in ' '.join(refused.stdout.split()), refused.stdout[-4000:]
    helpers.drop_index(db, 'pt_trusting_idx')
    hostile.assert_untouched('trusting plans')


NICK = "' || pg_catalog.pg_terminate_backend(%d)::text || '"


@pytest.mark.parametrize('check', [True, False], ids=['check', 'real'])
def test_a_placeholder_inside_quotes_is_refused_with_its_position_and_a_value_holding_sql_stays_a_value(
        hostile, db, pg_cluster, tmp_path, check):
    # Application data: a user's nickname that is SQL when spliced between quotes.
    helpers.query(db, 'CREATE TABLE pgzd_nick (nick text)')
    helpers.query(db, 'INSERT INTO pgzd_nick VALUES (%s)', (NICK % hostile.victim_pid,))
    hostile.before = hostile.snapshot()
    nick = dict(query='SELECT nick FROM pgzd_nick')
    job = dict(name='Job', indexes=[dict(name='pt_nick_idx', columns=['status'])])
    quoted = [
        ('quoted', 'SELECT count(*) FROM "Class" WHERE name = \'%(nick)s\'', 'line 1, column 44', 'a quoted literal'),
        ('escaped', 'SELECT count(*)\nFROM "Class" WHERE name = E\'x%(nick)s\'', 'line 2, column 30',
         'a quoted literal'),
        ('identifier', 'SELECT count(*) FROM "Class" WHERE "%(nick)s" IS NULL', 'line 1, column 37',
         'a quoted identifier'),
    ]
    for _case, sql, position, _where in quoted:  # the positions above, counted from 1
        line = sql[:sql.index('%(')].count('\n') + 1
        assert position == 'line %d, column %d' % (line, sql.index('%(') - (sql.rfind('\n', 0, sql.index('%(')) + 1) + 1)
    plans = [dict(name='nick-%s' % case, tables=[job], baseline_queries=[dict(name='by_nick', sql=sql,
                                                                               params=dict(nick=nick))])
             for case, sql, _position, _where in quoted]
    try:
        outcome = run_plans(pg_cluster, tmp_path, plans, check)
        for case, _sql, position, where in quoted:
            failed, messages, tasks = outcome['nick-%s' % case]
            assert failed and '%(nick)s at ' + position in messages and where in messages, (case, messages[-1500:])
            assert not [task for task in tasks if task.startswith(CHANGING_TASKS)], (case, tasks)
        hostile.assert_untouched('placeholders inside quotes')
        # The same value where a value goes: bound to the prepared query, it is a nickname, nothing more.
        bound = dict(name='nick-bound', tables=[job], baseline_queries=[dict(
            name='by_nick', sql='SELECT count(*) FROM "Class" WHERE name = %(nick)s', params=dict(nick=nick))])
        outcome = run_plans(pg_cluster, tmp_path, [bound], check)
        assert outcome['nick-bound'][0] is False, outcome['nick-bound'][1][-3000:]
        assert hostile.victim_alive()
        if not check:
            assert helpers.index_info(db, 'pt_nick_idx')['valid'] is True
            before = json.loads(next((tmp_path / 'artifacts' / 'runs').glob('nick-bound-*/baseline_before.json'))
                                .read_text())
            measured = before['queries'][0]
            assert measured['params'] == dict(nick=NICK % hostile.victim_pid)
            assert measured['statement'] == 'SELECT count(*) FROM "Class" WHERE name = $1' and measured['rows'] == 1
    finally:
        helpers.drop_index(db, 'pt_nick_idx')
        helpers.query(db, 'DROP TABLE pgzd_nick')
