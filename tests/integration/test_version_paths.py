# -*- coding: utf-8 -*-
"""The version-aware paths of issue 24 outside the kinds, each on the majors on both sides of its boundary:
transaction_timeout turned off on PostgreSQL 17+, the last_idx_scan of a dropped or replaced index on 16+, and baselines
compared only within one major, with the same EXPLAIN options on every version.

A database of its own (a copy of the seeded T12 database, the fixture file_database), per major.
"""

import glob
import json
import os
import re
import threading
import time

import psycopg2
import pytest
import yaml

import helpers

pytestmark = pytest.mark.integration

DATABASE = 'pt_version_paths'
MODULE = 'postgresql_online_index'
INDEX = 'pt_Job_status_idx'
TIMESTAMP = re.compile(r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$')
JOB_QUERY = dict(name='job_open_by_teacher',
                 sql='SELECT * FROM "Job" WHERE "teacherId" = %(teacher)s AND "status" = \'OPEN\'',
                 params=dict(teacher=dict(query='SELECT "teacherId" FROM "Job" WHERE "status" = \'OPEN\' '
                                                'ORDER BY "id" LIMIT 1')))


@pytest.fixture
def conn(file_database):
    """The file database's connection; the test's indexes are dropped after it."""
    yield file_database['conn']
    for name in helpers.droppable_indexes(file_database['conn']):
        if name.startswith(helpers.TEST_INDEX_PREFIX):
            helpers.drop_index(file_database['conn'], name)


def server_log(cluster):
    with open(os.path.join(cluster['dir'], 'postgresql.log'), errors='replace') as handle:
        return handle.read()


def hold_writers_for(file_database, seconds):
    """A transaction holding ROW EXCLUSIVE on "Job" (as a writer would) for C(seconds), on a connection of its own
    with no transaction_timeout: a concurrent build of an index on "Job" waits for it that long."""
    holder = helpers.connect(file_database['cluster'], DATABASE)
    if helpers.query(holder, "SELECT pg_catalog.current_setting('transaction_timeout', true) IS NOT NULL")[0][0]:
        helpers.query(holder, "SET transaction_timeout = 0")
    holder.autocommit = False
    holder.cursor().execute('LOCK TABLE "Job" IN ROW EXCLUSIVE MODE')

    def release():
        time.sleep(seconds)
        holder.commit()
        holder.close()
    releaser = threading.Thread(target=release)
    releaser.start()
    return releaser


# -- transaction_timeout (17+) ---------------------------------------------------------------------------------------

@pytest.mark.majors(16, 17)
def test_a_database_default_transaction_timeout_does_not_end_a_long_build(file_database, conn, pg_major):
    cluster = file_database['cluster']
    log_start = len(server_log(cluster))
    spec = dict(name=INDEX, columns=['status'])
    if pg_major >= 17:
        helpers.query(conn, "ALTER DATABASE %s SET transaction_timeout = '1s'" % DATABASE)
    try:
        if pg_major >= 17:
            # The default is in force: a session that does not turn it off has its build ended after 1 s.
            control = helpers.connect(cluster, DATABASE)
            assert helpers.query(control, 'SHOW transaction_timeout')[0][0] == '1s'
            releaser = hold_writers_for(file_database, 4)
            with pytest.raises(psycopg2.Error) as ended:
                helpers.query(control, 'CREATE INDEX CONCURRENTLY "pt_control_idx" ON "Job" (status)')
            releaser.join()
            # The server ends the session (FATAL, in its log below): the client sees its connection closed.
            assert 'transaction timeout' in str(ended.value) or 'closed the connection' in str(ended.value)
            assert 'terminating connection due to transaction timeout' in server_log(cluster)[log_start:]
            control.close()
            helpers.drop_index(conn, 'pt_control_idx')

        releaser = hold_writers_for(file_database, 7)
        result = helpers.run_ansible_module(MODULE, dict(file_database['login'], table='Job', indexes=[spec]))
        releaser.join()
        assert result.get('failed') is not True, result
        # The build waited for the writer (seconds, twice what the default allows a transaction), and finished.
        assert result['indexes'][0]['seconds'] > 2, result['indexes']
        assert helpers.index_info(conn, INDEX)['valid'] is True
        entry = result['indexes'][0]
        if pg_major >= 17:
            assert entry['transaction_timeout'] == '0' and entry['statement_timeout'] == '0'
        else:
            assert 'transaction_timeout' not in entry  # nothing sets a setting 16 does not know
        # In check mode too, the entry says what the session sets (planned.sql writes it).
        checked = helpers.run_ansible_module(MODULE, dict(file_database['login'], table='Job', state='absent',
                                                          indexes=[spec]), check=True)
        assert ('transaction_timeout' in checked['indexes'][0]) is (pg_major >= 17), checked['indexes']
    finally:
        if pg_major >= 17:
            helpers.query(conn, 'ALTER DATABASE %s RESET transaction_timeout' % DATABASE)
    log = server_log(cluster)[log_start:]
    assert 'unrecognized configuration parameter' not in log
    assert ('terminating connection due to transaction timeout' in log) is (pg_major >= 17)  # the control's only


# -- last_idx_scan (16+) ---------------------------------------------------------------------------------------------

def scan_index(file_database, conn):
    """Scan pt_Job_status_idx once and wait until the statistics show it."""
    scanner = helpers.connect(file_database['cluster'], DATABASE)
    helpers.query(scanner, 'SET enable_seqscan = off')
    helpers.query(scanner, 'SET enable_bitmapscan = off')
    plan = '\n'.join(row[0] for row in helpers.query(
        scanner, 'EXPLAIN SELECT count(*) FROM "Job" WHERE status = \'OPEN\''))
    assert INDEX in plan, plan
    helpers.query(scanner, 'SELECT count(*) FROM "Job" WHERE status = \'OPEN\'')
    helpers.query(scanner, 'SELECT pg_catalog.pg_stat_force_next_flush()')
    scanner.close()
    helpers.wait_until(lambda: helpers.query(
        conn, 'SELECT idx_scan FROM pg_catalog.pg_stat_user_indexes WHERE indexrelname = %s', (INDEX,))[0][0] > 0,
        timeout=30, what='the index scan in pg_stat_user_indexes')


def assert_last_used(used, pg_major):
    assert used['idx_scan'] >= 1, used
    if pg_major >= 16:
        assert TIMESTAMP.match(used['last_idx_scan']) and used['last_idx_scan_available'] is True, used
        assert used['note'] is None
    else:
        assert used['last_idx_scan'] is None and used['last_idx_scan_available'] is False, used
        assert used['note'] == ('last_idx_scan is not available on PostgreSQL 15 (pg_stat_user_indexes has it from '
                                'PostgreSQL 16)')


@pytest.mark.majors(15, 16)
def test_a_dropped_index_shows_when_it_was_last_used(file_database, conn, pg_major):
    # Built by the tool (its ledger row is what lets state=absent drop it), then used.
    args = dict(file_database['login'], table='Job', indexes=[dict(name=INDEX, columns=['status'])])
    built = helpers.run_ansible_module(MODULE, args)
    assert built.get('failed') is not True and 'last_used' not in built['indexes'][0], built
    scan_index(file_database, conn)
    args['state'] = 'absent'
    checked = helpers.run_ansible_module(MODULE, args, check=True)
    assert_last_used(checked['indexes'][0]['last_used'], pg_major)
    result = helpers.run_ansible_module(MODULE, args)
    assert result.get('failed') is not True, result
    assert result['indexes'][0]['action'] == 'dropped' and not helpers.relation_exists(conn, INDEX)
    assert_last_used(result['indexes'][0]['last_used'], pg_major)


@pytest.mark.majors(15, 16)
def test_the_report_of_a_replacement_shows_when_the_replaced_index_was_last_used(file_database, conn, pg_major,
                                                                                  tmp_path):
    helpers.query(conn, 'CREATE INDEX "%s" ON "Job" (status)' % INDEX)
    scan_index(file_database, conn)
    plan = tmp_path / 'replace.yml'
    plan.write_text(yaml.safe_dump(dict(name='pt_last_used', schema='public', tables=[dict(name='Job', indexes=[
        dict(name=INDEX, columns=['status', 'teacherId'], on_mismatch='replace')])])))
    variables = dict(local_cluster_dir=file_database['cluster']['dir'], pg_port=file_database['cluster']['port'],
                     pg_database=DATABASE, pgzd_plan=str(plan), pgzd_artifacts_dir=str(tmp_path / 'artifacts'),
                     backup_bin_dir=helpers.client_bin_dir(pg_major))
    try:
        migrated = helpers.run_playbook('playbooks/migrate.yml', variables)
        assert migrated.returncode == 0, migrated.stdout[-4000:]
        (report_file,) = glob.glob(os.path.join(str(tmp_path), 'artifacts', 'runs', 'pt_last_used-*', 'report.json'))
        with open(report_file) as handle:
            report = json.load(handle)
        (entry,) = [i for i in report['indexes'] if i['name'] == INDEX]
        assert entry['action'] == 'replaced'
        assert_last_used(entry['last_used'], pg_major)
        shown = entry['last_used']['last_idx_scan'] or entry['last_used']['note']
        with open(report_file.replace('report.json', 'report.md')) as handle:
            assert '| %s | replaced | %s | %s |' % (INDEX, entry['last_used']['idx_scan'], shown) in handle.read()
        with open(report_file.replace('report.json', 'report.html')) as handle:
            page = helpers.ReportPage(handle.read())
        assert page.problems == []
        assert page.tables['last-used'][1] == [INDEX, 'replaced', str(entry['last_used']['idx_scan']), shown]
    finally:
        rolled_back = helpers.run_playbook('playbooks/rollback.yml', variables)
        assert rolled_back.returncode == 0, rolled_back.stdout[-4000:]
        helpers.query(conn, 'DROP SCHEMA IF EXISTS pgzd_audit CASCADE')


# -- baselines (one major, the same EXPLAIN options) -----------------------------------------------------------------

def tampered(path, tmp_path, version_num, version):
    """A copy of the baseline file at C(path) that says it was taken on another server."""
    with open(path) as handle:
        record = json.load(handle)
    record.update(server_version_num=version_num, server_version=version)
    for query in record['queries']:
        query.update(server_version_num=version_num, server_version=version)
    copy = tmp_path / 'tampered_baseline.json'
    copy.write_text(json.dumps(record))
    return str(copy)


@pytest.mark.majors(15, 18)
def test_a_baseline_is_compared_on_its_own_major_and_refused_on_another(file_database, pg_major, tmp_path):
    cluster = file_database['cluster']
    plan = tmp_path / 'baseline_only.yml'
    plan.write_text(json.dumps(dict(name='pt_baseline', tables=[], baseline_queries=[JOB_QUERY])))
    variables = dict(local_cluster_dir=cluster['dir'], pg_port=cluster['port'], pg_database=DATABASE,
                     pgzd_plan=str(plan), pgzd_artifacts_dir=str(tmp_path / 'artifacts'))
    measured = helpers.run_playbook('playbooks/baseline.yml', variables)
    assert measured.returncode == 0, measured.stdout[-4000:]
    (before_file,) = glob.glob(os.path.join(str(tmp_path), 'artifacts', 'runs', '*', 'baseline_before.json'))
    with open(before_file) as handle:
        before = json.load(handle)
    version_num = helpers.query(file_database['conn'], 'SHOW server_version_num')[0][0]
    assert int(before['server_version_num']) == int(version_num) and int(version_num) // 10000 == pg_major
    (query,) = before['queries']
    assert query['server_version_num'] == int(version_num)
    # Buffers are asked for explicitly on every version (18 shows them unasked, 15 only when asked).
    assert query['buffers'] > 0 and query['shared_hit_blocks'] + query['shared_read_blocks'] == query['buffers']
    text = ' '.join(measured.stdout.split())
    assert 'with EXPLAIN (ANALYZE true, BUFFERS true, COSTS true, TIMING true, SUMMARY true' in text

    # The same major: compared.
    validated = helpers.run_playbook('playbooks/validate.yml', dict(variables, validate_baseline_file=before_file))
    assert validated.returncode == 0, validated.stdout[-4000:]
    (after_file,) = glob.glob(os.path.join(str(tmp_path), 'artifacts', 'runs', '*', 'baseline_after.json'))
    with open(after_file) as handle:
        after = json.load(handle)
    assert after['comparison'][0]['name'] == JOB_QUERY['name'] and after['comparison'][0]['verdict']
    assert after['queries'][0]['server_version_num'] == int(version_num)

    # The same file, as if taken on another major: refused, saying why, before anything is measured.
    other_num, other = (180004, '18.4') if pg_major != 18 else (150018, '15.18')
    forged = tampered(before_file, tmp_path, other_num, other)
    refused = helpers.run_playbook('playbooks/validate.yml', dict(variables, validate_baseline_file=forged))
    assert refused.returncode != 0
    text = ' '.join(refused.stdout.split())
    server_version = helpers.query(file_database['conn'], 'SHOW server_version')[0][0].split(' ')[0]
    assert ('Baseline comparison refused: the baseline was taken on PostgreSQL %s and this server is %s: plans and '
            'timings of different majors are not comparable' % (other, server_version)) in text, text[-3000:]
    # --check says so too, without measuring.
    checked = helpers.run_playbook('playbooks/validate.yml', dict(variables, validate_baseline_file=forged),
                                   options=['--check'])
    assert checked.returncode == 0, checked.stdout[-4000:]
    assert ('A real run would refuse the comparison: the baseline was taken on PostgreSQL %s' % other) in \
        ' '.join(checked.stdout.split())
