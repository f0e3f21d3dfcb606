#!/usr/bin/env python3
"""How to validate a foreign key on a partitioned table on PostgreSQL 18 (issue 24): the partitioned table's VALIDATE
alone, or each partition's, then the partitioned table's. What constraint_decisions.validates_by_partition chose from.

On a throwaway PostgreSQL 18 cluster (.local/bench-partitioned-fk, port 55505, the server scripts/bootstrap installs
under tests/pg_servers), a table of --rows rows in --partitions range partitions references a table of --referenced
rows. For each way: ADD ... NOT VALID on the partitioned table, then the VALIDATE(s), each in a transaction that locks
the referenced table first (as the tool does); another session polls pg_locks every 10 ms for what the DDL session
holds on each table and for how long, and a third starts an ANALYZE of the last partition (as autovacuum would) 0.2 s
into the first VALIDATE and times how long it takes. Prints the steps and writes bench/results/partitioned_fk_pg18.json.
"""

import argparse
import json
import os
import subprocess
import threading
import time

import psycopg2

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLUSTER_DIR = os.path.join(ROOT, '.local', 'bench-partitioned-fk')
BIN_DIR = os.path.join(ROOT, 'tests', 'pg_servers', 'node_modules', 'pg18', 'native', 'bin')
RESULTS = os.path.join(ROOT, 'bench', 'results', 'partitioned_fk_pg18.json')


def cluster(port, state):
    argv = [os.path.join(ROOT, '.venv', 'bin', 'ansible-playbook'), 'playbooks/local_cluster.yml', '-e',
            'local_cluster_dir=%s' % CLUSTER_DIR, '-e', 'pg_port=%d' % port, '-e', 'local_cluster_bindir=%s' % BIN_DIR,
            '-e', 'local_cluster_scale=0.02', '-e', 'local_cluster_state=%s' % state]
    subprocess.run(argv, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)


class Bench(object):
    def __init__(self, args):
        self.args = args
        with open(os.path.join(CLUSTER_DIR, 'superuser.password')) as handle:
            self.password = handle.read().strip()

    def connect(self):
        connection = psycopg2.connect(host='127.0.0.1', port=self.args.port, user='pgzd', password=self.password,
                                      dbname='t12')
        connection.autocommit = True
        return connection

    @staticmethod
    def query(connection, text, args=None):
        with connection.cursor() as cursor:
            cursor.execute(text, args)
            return cursor.fetchall() if cursor.description else None

    def seed(self):
        a, conn = self.args, self.connect()
        per = a.rows // a.partitions
        for statement in ['DROP TABLE IF EXISTS bench_child, bench_ref',
                          'CREATE TABLE bench_ref (id int PRIMARY KEY)',
                          'INSERT INTO bench_ref SELECT g FROM generate_series(1, %d) g' % a.referenced,
                          'CREATE TABLE bench_child (id bigint, ref_id int, pad text) PARTITION BY RANGE (id)'] + [
                'CREATE TABLE bench_child_p%d PARTITION OF bench_child FOR VALUES FROM (%d) TO (%d)'
                % (p, p * per, (p + 1) * per if p < a.partitions - 1 else a.rows) for p in range(a.partitions)] + [
                "INSERT INTO bench_child SELECT g, 1 + g %% %d, repeat('x', 40) FROM generate_series(0, %d) g"
                % (a.referenced, a.rows - 1), 'VACUUM ANALYZE bench_ref, bench_child']:
            self.query(conn, statement)
        conn.close()

    def watch(self, pid, seen, stop):
        conn = self.connect()
        while not stop.is_set():
            now = time.monotonic()
            for table, mode in self.query(conn, "SELECT c.relname::text, l.mode FROM pg_catalog.pg_locks l "
                                                "JOIN pg_catalog.pg_class c ON c.oid = l.relation WHERE l.pid = %s "
                                                "AND l.granted AND c.relname LIKE 'bench\\_%%' AND c.relkind IN ('r', 'p')",
                                          (pid,)):
                first, _ = seen.get((table, mode), (now, now))
                seen[(table, mode)] = (first, now)
            time.sleep(0.01)
        conn.close()

    def analyze_after(self, delay, waited):
        time.sleep(delay)
        conn = self.connect()
        started = time.monotonic()
        self.query(conn, 'ANALYZE bench_child_p%d' % (self.args.partitions - 1))
        waited.append(round(time.monotonic() - started, 3))
        conn.close()

    def step(self, conn, label, statements, analyze=False):
        pid = self.query(conn, 'SELECT pg_catalog.pg_backend_pid()')[0][0]
        seen, stop, waited = {}, threading.Event(), []
        watcher = threading.Thread(target=self.watch, args=(pid, seen, stop))
        watcher.start()
        time.sleep(0.05)
        competitor = threading.Thread(target=self.analyze_after, args=(0.2, waited)) if analyze else None
        if competitor:
            competitor.start()
        started = time.monotonic()
        for statement in ['BEGIN'] + statements + ['COMMIT']:
            self.query(conn, statement)
        seconds = round(time.monotonic() - started, 3)
        time.sleep(0.05)
        stop.set()
        watcher.join()
        if competitor:
            competitor.join()
        locks = dict(('%s %s' % (table, mode), round(last - first, 2)) for (table, mode), (first, last) in seen.items())
        result = dict(step=label, seconds=seconds, locks_held_seconds=dict(sorted(locks.items())))
        if waited:
            result['analyze_of_last_partition_seconds'] = waited[0]
        print('%-52s %7.3f s%s' % (label, seconds, '   ANALYZE of the last partition: %.3f s' % waited[0]
                                   if waited else ''))
        for lock, held in sorted(locks.items()):
            print('    %-44s held ~%.2f s' % (lock, held))
        return result

    def way(self, conn, by_partition):
        steps = [self.step(conn, 'ADD FOREIGN KEY ... NOT VALID', [
            'LOCK TABLE ONLY bench_ref IN SHARE ROW EXCLUSIVE MODE',
            'ALTER TABLE bench_child ADD CONSTRAINT bench_fk FOREIGN KEY (ref_id) REFERENCES bench_ref (id) NOT VALID'])]
        self.query(conn, 'SELECT count(*) FROM bench_child')  # the same cache for both ways
        tables = ['bench_child_p%d' % p for p in range(self.args.partitions)] if by_partition else []
        for position, table in enumerate(tables + ['bench_child']):
            steps.append(self.step(conn, 'VALIDATE CONSTRAINT on %s' % table, [
                'LOCK TABLE ONLY bench_ref IN ROW SHARE MODE', 'ALTER TABLE %s VALIDATE CONSTRAINT bench_fk' % table],
                analyze=position == 0))
        valid = self.query(conn, "SELECT bool_and(convalidated), count(*) FROM pg_catalog.pg_constraint "
                                 "WHERE conname = 'bench_fk'")[0]
        assert valid == (True, self.args.partitions + 1), valid
        self.query(conn, 'ALTER TABLE bench_child DROP CONSTRAINT bench_fk')
        return dict(steps=steps, validate_seconds=round(sum(s['seconds'] for s in steps[1:]), 3))

    def main(self):
        self.seed()
        conn = self.connect()
        version = self.query(conn, 'SHOW server_version')[0][0]
        print('PostgreSQL %s: %d rows in %d partitions referencing %d rows' % (
            version, self.args.rows, self.args.partitions, self.args.referenced))
        print('\n== the partitioned table\'s VALIDATE alone')
        parent = self.way(conn, False)
        print('\n== each partition\'s VALIDATE, then the partitioned table\'s')
        partitions = self.way(conn, True)
        conn.close()
        result = dict(server_version=version, rows=self.args.rows, partitions=self.args.partitions,
                      referenced=self.args.referenced, parent_alone=parent, partition_by_partition=partitions)
        with open(RESULTS, 'w') as handle:
            json.dump(result, handle, indent=2)
        print('\nVALIDATE in all: %.3f s alone, %.3f s partition by partition; %s' % (
            parent['validate_seconds'], partitions['validate_seconds'], os.path.relpath(RESULTS, ROOT)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--rows', type=int, default=3000000)
    parser.add_argument('--partitions', type=int, default=4)
    parser.add_argument('--referenced', type=int, default=1000000)
    parser.add_argument('--port', type=int, default=55505)
    args = parser.parse_args()
    cluster(args.port, 'started')
    try:
        Bench(args).main()
    finally:
        cluster(args.port, 'absent')


if __name__ == '__main__':
    main()
