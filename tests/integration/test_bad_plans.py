# -*- coding: utf-8 -*-
"""Every bad plan of tests/bad_plans.py (over 60) through the real migrate.yml against the real cluster: each is
refused before any DDL, with a message that names its entry, and the catalog and every row stay as they were.

One ansible-playbook run walks them all: each bad plan is an inventory host of its own (a local connection with
its own `plan`), so the walk costs one playbook start instead of seventy. The migration lock is off for the walk
(-e pgzd_lock=false): it would let only one of the hosts, which share the database, past it. It is not needed to
prove the point either: nothing may reach DDL, and the catalog and row checksums below prove none did.
"""

import json

import pytest
import yaml

import bad_plans
import helpers

pytestmark = pytest.mark.integration

# Tasks that start changing something: no bad plan may reach them.
DDL_TASKS = helpers.CHANGING_TASKS

CHECKSUMS = """
SELECT c.relname, (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %I.%I', n.nspname,
       c.relname), false, true, '')))[1]::text::bigint
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind = 'r' ORDER BY 1
"""


def database_state(db):
    """Every relation, index (with validity), constraint and every table's row count and content checksum."""
    relations = helpers.query(db, "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON "
                                  "n.oid = c.relnamespace WHERE n.nspname = 'public' ORDER BY 1")
    constraints = helpers.query(db, "SELECT conname, contype, convalidated FROM pg_constraint c JOIN pg_namespace n "
                                    "ON n.oid = c.connamespace WHERE n.nspname = 'public' ORDER BY 1")
    rows = helpers.query(db, "SELECT 'Job', count(*), md5(string_agg(j::text, ',' ORDER BY id)) FROM \"Job\" j "
                             "UNION ALL SELECT 'Class', count(*), md5(string_agg(c::text, ',' ORDER BY id)) "
                             "FROM \"Class\" c UNION ALL SELECT 'Item', count(*), md5(string_agg(i::text, ',' ORDER BY "
                             "id)) FROM \"Item\" i")
    return relations, helpers.all_indexes(db), constraints, rows, helpers.query(db, CHECKSUMS)


def test_over_sixty_bad_plans_are_each_refused_before_any_ddl_naming_the_entry(db, pg_cluster, tmp_path):
    assert len(bad_plans.ALL) >= 60
    hosts = {}
    for position, (name, plan, _fragments) in enumerate(bad_plans.ALL):
        path = tmp_path / ('%02d-%s.yml' % (position, name))
        path.write_text(plan if isinstance(plan, str) else yaml.safe_dump(plan))
        hosts['bad%02d' % position] = dict(pgzd_plan=str(path), ansible_connection='local',
                                           ansible_python_interpreter='{{ ansible_playbook_python }}')
    inventory = tmp_path / 'bad_plans.yml'
    inventory.write_text(yaml.safe_dump(dict(bad_plans=dict(hosts=hosts))))
    before = database_state(db)

    argv = ['-i', 'inventories/local', '-i', str(inventory), '--limit', 'bad_plans', '--forks', '8']
    run = helpers.run_playbook('playbooks/migrate.yml', dict(
        local_cluster_dir=pg_cluster['dir'], pg_port=pg_cluster['port'], pgzd_artifacts_dir=str(tmp_path / 'artifacts'),
        pgzd_lock='false', backup_enabled='false'), options=argv, timeout=900, stdout_callback='pgzd_test_json')
    document = json.loads(next(line for line in reversed(run.stdout.splitlines()) if line.startswith('{"plays"')))
    tasks = document['plays'][0]['tasks']

    assert database_state(db) == before  # not one DDL statement, not one row changed
    wrong = []
    for position, (name, _plan, fragments) in enumerate(bad_plans.ALL):
        host = 'bad%02d' % position
        results = [(task['task']['name'], task['hosts'][host]) for task in tasks if host in task['hosts']]
        reached = [task for task, _result in results if task.startswith(DDL_TASKS)]
        messages = ' '.join(' '.join(str(result.get('msg', '')).split()) for _task, result in results
                            if result.get('failed'))
        missing = [fragment for fragment in fragments if ' '.join(fragment.split()) not in messages]
        # A file that is not a plan is refused without showing what it holds, in any result of its host.
        echoed = [secret for secret in bad_plans.NOT_ECHOED.get(name, [])
                  if any(secret in json.dumps(result) for _task, result in results)]
        if reached or not messages or missing or echoed:
            wrong.append((name, 'reached %s' % reached if reached else 'not refused' if not messages else
                          'message lacks %s: %s' % (missing, messages[-1500:]) if missing else
                          'echoed %s' % echoed))
    assert wrong == [] and run.returncode != 0, '\n'.join('%s: %s' % case for case in wrong)

    # The control: the good plan each bad one breaks in one place passes the same checks (in check mode).
    good = tmp_path / 'good.yml'
    good.write_text(yaml.safe_dump(bad_plans.GOOD))
    control = helpers.run_playbook('playbooks/migrate.yml', dict(
        local_cluster_dir=pg_cluster['dir'], pg_port=pg_cluster['port'], pgzd_artifacts_dir=str(tmp_path / 'artifacts'),
        pgzd_plan=str(good)), options=['--check'])
    assert control.returncode == 0, control.stdout[-4000:]
    assert database_state(db) == before


@pytest.mark.majors(helpers.REFUSED_MAJOR)
def test_a_server_past_its_end_of_life_is_refused_in_the_preflight_before_any_change(db, pg_cluster, tmp_path):
    before = database_state(db)
    run = helpers.run_playbook('playbooks/migrate.yml', dict(
        local_cluster_dir=pg_cluster['dir'], pg_port=pg_cluster['port'], pgzd_artifacts_dir=str(tmp_path / 'artifacts')))
    assert run.returncode != 0
    output = ' '.join(run.stdout.split())
    assert 'The server is PostgreSQL 13.23, which this tool does not support: PostgreSQL 13 reached its end of life ' \
           'in November 2025, and the tool needs 14 or later' in output, run.stdout[-4000:]
    # Refused before the migration lock, the backup or anything else: no ledger, no backup, nothing changed.
    assert not [name for name in helpers.task_names(run.stdout) if name.startswith(DDL_TASKS)]
    assert not helpers.relation_exists(db, 'ledger', schema='pgzd_audit')
    assert not (tmp_path / 'artifacts' / 'backups').exists()
    assert database_state(db) == before
