#!/usr/bin/env python3
"""A long transaction during a concurrent build (issue 13, point 4), measured on a dedicated local cluster.

A REPEATABLE READ session takes a snapshot and holds it --hold seconds (120); one second after it starts, the
real postgresql_online_index module (through `ansible localhost -m ...`, as the index phase runs it) builds the
T12 indexes of XPAudit. Earlier versions cut the build's wait for that snapshot short with lock_timeout (5 s),
dropped the index and built it again, up to six times, then failed. Now the build waits, blocking nobody, and
finishes once the snapshot is gone. Reported: the module's wall time, when it finished after the snapshot
ended, lock retries, how many CREATE INDEX statements ran, and how long each index waited; plus the same
build with no snapshot held, for reference. Medians over --runs runs.

    .venv/bin/python bench/build_waits.py --scale 3          # results: bench/results/build_waits_scale3.json
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time

import psycopg2

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TABLE = 'XPAudit'
INDEXES = [dict(name='XPAudit_userId_createdAt_idx', columns=['userId', 'createdAt']),
           dict(name='XPAudit_createdAt_idx', columns=['createdAt'])]


def ansible_env():
    return dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, 'ansible.cfg'), ANSIBLE_STDOUT_CALLBACK='pgzd_test_json',
                ANSIBLE_CALLBACK_PLUGINS=os.path.join(ROOT, 'tests', 'callback_plugins'),
                ANSIBLE_LOAD_CALLBACK_PLUGINS='1', PATH=os.path.join(ROOT, '.venv', 'bin') + os.pathsep
                + os.environ.get('PATH', ''))


def start_cluster(args, cluster_dir):
    subprocess.run([os.path.join(ROOT, '.venv', 'bin', 'ansible-playbook'), 'playbooks/local_cluster.yml',
                    '-e', 'local_cluster_dir=%s' % cluster_dir, '-e', 'pg_port=%d' % args.port,
                    '-e', 'local_cluster_scale=%s' % args.scale], cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
                   env=dict(ansible_env(), ANSIBLE_STDOUT_CALLBACK='default'))
    with open(os.path.join(cluster_dir, 'superuser.password')) as handle:
        password = handle.readline().strip()
    return dict(host='127.0.0.1', port=args.port, user='pgzd', password=password, dbname='t12')


def build(login, lock_timeout='5s'):
    """Run the module for the XPAudit indexes; its result dict and wall seconds."""
    args = dict(login_host=login['host'], login_port=login['port'], login_user=login['user'],
                login_password=login['password'], login_db=login['dbname'], table=TABLE, indexes=INDEXES,
                lock_timeout=lock_timeout)
    started = time.monotonic()
    process = subprocess.run([os.path.join(ROOT, '.venv', 'bin', 'ansible'), 'localhost', '-m',
                              'pg_zero_downtime.migrations.postgresql_online_index', '-a', json.dumps(args)],
                             cwd=ROOT, env=ansible_env(), capture_output=True, text=True, timeout=3600)
    ended = time.monotonic()
    line = next(line for line in reversed(process.stdout.splitlines()) if line.startswith('{"plays"'))
    result = json.loads(line)['plays'][0]['tasks'][0]['hosts']['localhost']
    return result, started, ended


def drop(conn):
    with conn.cursor() as cursor:
        for index in INDEXES:
            cursor.execute('DROP INDEX CONCURRENTLY IF EXISTS "%s"' % index['name'])


def hold_snapshot(login, seconds, marks):
    conn = psycopg2.connect(application_name='bench-report-query', **login)
    with conn.cursor() as cursor:
        cursor.execute('BEGIN ISOLATION LEVEL REPEATABLE READ')
        cursor.execute('SELECT count(*) FROM "Item"')  # takes the snapshot (no lock on XPAudit)
        marks['taken'] = time.monotonic()
        time.sleep(seconds)
        cursor.execute('COMMIT')
        marks['released'] = time.monotonic()
    conn.close()


def one_run(login, conn, hold):
    drop(conn)
    marks = {}
    holder = threading.Thread(target=hold_snapshot, args=(login, hold, marks))
    holder.start()
    while 'taken' not in marks:
        time.sleep(0.05)
    time.sleep(1)
    result, started, ended = build(login)
    holder.join()
    creates = [q for q in result.get('queries', []) if q.startswith('CREATE INDEX CONCURRENTLY')]
    return dict(ok=not result.get('failed'), msg=(result.get('msg') or '')[:300], wall_seconds=round(ended - started, 2),
                seconds_after_snapshot_ended=round(ended - marks['released'], 2),
                lock_retries=result.get('lock_retries_used'), create_statements=len(creates),
                waited_seconds=[i.get('waited_seconds') for i in result.get('indexes', [])])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--scale', default='3')
    parser.add_argument('--port', type=int, default=55439)
    parser.add_argument('--hold', type=float, default=120.0)
    parser.add_argument('--runs', type=int, default=3)
    args = parser.parse_args()
    cluster_dir = os.path.join(ROOT, '.local', 'bench-waits-scale%s' % args.scale)
    login = start_cluster(args, cluster_dir)
    conn = psycopg2.connect(**login)
    conn.autocommit = True
    rows = conn.cursor()
    rows.execute('SELECT count(*) FROM "XPAudit"')
    table_rows = rows.fetchone()[0]

    reference = []
    for _ in range(args.runs):
        drop(conn)
        result, started, ended = build(login)
        assert not result.get('failed'), result.get('msg')
        reference.append(round(ended - started, 2))
    runs = [one_run(login, conn, args.hold) for _ in range(args.runs)]
    drop(conn)
    conn.close()
    summary = dict(
        scale=args.scale, table=TABLE, table_rows=table_rows, hold_seconds=args.hold, runs=args.runs,
        no_snapshot_wall_median=statistics.median(reference), no_snapshot_wall=reference,
        with_snapshot_wall_median=statistics.median(r['wall_seconds'] for r in runs),
        finished_after_snapshot_ended_median=statistics.median(r['seconds_after_snapshot_ended'] for r in runs),
        all_succeeded=all(r['ok'] for r in runs), lock_retries=[r['lock_retries'] for r in runs],
        create_statements=[r['create_statements'] for r in runs], details=runs)
    summary['built_exactly_once'] = all(r['create_statements'] == len(INDEXES) for r in runs)
    print(json.dumps(summary, indent=2))
    out = os.path.join(ROOT, 'bench', 'results', 'build_waits_scale%s.json' % args.scale)
    with open(out, 'w') as handle:
        json.dump(summary, handle, indent=2)
        handle.write('\n')
    return 0 if summary['all_succeeded'] and summary['built_exactly_once'] else 1


if __name__ == '__main__':
    sys.exit(main())
