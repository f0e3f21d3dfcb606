#!/usr/bin/env python3
"""Timing targets of the index phase (issue 2), measured on a dedicated local cluster.

  1. a no-op rerun of migrate.yml over the whole T12 plan: ansible-playbook wall time (target <= 3 s);
  2. the first migrate.yml run against the seed's 26 CREATE INDEX CONCURRENTLY statements run with
     `psql -f` on the same data (target: ratio <= 1.3).

Each measurement is repeated (--repeat, default 3) and the median is reported. The indexes are dropped
between runs with rollback.yml. Results go to stdout and to bench/results/index_phase_scale<N>.json.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED_SQL = os.path.join(ROOT, 'bench', 't12_seed_indexes.sql')


def run(argv, env, quiet=True):
    started = time.monotonic()
    completed = subprocess.run(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE if quiet else None,
                               stderr=subprocess.STDOUT if quiet else None, text=True)
    elapsed = time.monotonic() - started
    if completed.returncode != 0:
        sys.exit('command failed (%d): %s\n%s' % (completed.returncode, ' '.join(argv), completed.stdout or ''))
    return elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--scale', default='1', help='sample data scale (1 = 200k rows per large table)')
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--port', type=int, default=55435)
    parser.add_argument('--keep', action='store_true', help='keep the bench cluster afterwards')
    args = parser.parse_args()

    cluster_dir = os.path.join(ROOT, '.local', 'bench-cluster-scale%s' % args.scale)
    extra = ['-e', 'local_cluster_dir=%s' % cluster_dir, '-e', 'pg_port=%d' % args.port,
             '-e', 'local_cluster_scale=%s' % args.scale]
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, 'ansible.cfg'),
               PATH=os.path.join(ROOT, '.venv', 'bin') + os.pathsep + os.environ.get('PATH', ''))
    playbook = lambda name: ['ansible-playbook', 'playbooks/%s.yml' % name] + extra  # noqa: E731

    print('seeding a scale-%s cluster on port %d (first time only) ...' % (args.scale, args.port), flush=True)
    run(playbook('local_cluster'), env)
    with open(os.path.join(cluster_dir, 'superuser.password')) as password_file:
        env['PGPASSWORD'] = password_file.read().strip()
    psql = ['psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-h', '127.0.0.1', '-p', str(args.port), '-U', 'pgzd',
            '-d', 't12', '-f', SEED_SQL]

    psql_runs, first_runs, noop_runs = [], [], []
    for attempt in range(1, args.repeat + 1):
        run(playbook('rollback'), env)
        psql_runs.append(run(psql, env))
        run(playbook('rollback'), env)
        # The index phase only (indexes.yml): since the backup and constraint phases joined migrate.yml, it is
        # the part of migrate.yml that the seed's psql -f file does.
        first_runs.append(run(playbook('indexes'), env))
        noop_runs.append(run(playbook('indexes'), env))
        print('run %d: psql -f %.2fs, migrate.yml first %.2fs, rerun %.2fs'
              % (attempt, psql_runs[-1], first_runs[-1], noop_runs[-1]), flush=True)

    result = dict(scale=args.scale, repeat=args.repeat,
                  psql_seconds=statistics.median(psql_runs),
                  migrate_first_seconds=statistics.median(first_runs),
                  migrate_noop_seconds=statistics.median(noop_runs))
    result['first_run_ratio'] = round(result['migrate_first_seconds'] / result['psql_seconds'], 2)
    result['targets'] = dict(noop_at_most_3s=result['migrate_noop_seconds'] <= 3.0,
                             first_run_ratio_at_most_1_3=result['first_run_ratio'] <= 1.3)
    print(json.dumps(result, indent=2))
    os.makedirs(os.path.join(ROOT, 'bench', 'results'), exist_ok=True)
    with open(os.path.join(ROOT, 'bench', 'results', 'index_phase_scale%s.json' % args.scale), 'w') as out:
        json.dump(result, out, indent=2)
    if not args.keep:
        run(playbook('local_cluster') + ['-e', 'local_cluster_state=absent'], env)


if __name__ == '__main__':
    main()
