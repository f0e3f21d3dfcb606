#!/usr/bin/env python3
"""Timing targets of a run's orchestration (issue 14), measured on a dedicated local cluster.

Each repetition, against the same seeded database and in this order:
  1. `psql -f` of the T12 plan's 26 CREATE INDEX CONCURRENTLY statements (bench/t12_seed_indexes.sql), the
     reference every ratio is taken against; then rollback.yml;
  2. `migrate.yml --tags indexes`, first run: its wall time minus the builds' own seconds (the `seconds` of each
     index in its report.json) is what the orchestration costs (target: at most 3 s plus 0.3 s per table);
  3. `migrate.yml --tags indexes` again, the constraint still pending: changed=0 and at most 2.5 s;
  4. the full `migrate.yml -e pgzd_restore_drill=true`: its task headers (target: at most 70);
  5. `migrate.yml` again, a no-op rerun of a finished migration: at most 2.0 s;
  then rollback.yml for the next repetition.

Medians of --repeat runs (default 3) go to stdout and to bench/results/index_phase_scale<N>.json.
"""

import argparse
import glob
import json
import os
import re
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'bench'))
import load  # noqa: E402
SEED_SQL = os.path.join(ROOT, 'bench', 't12_seed_indexes.sql')
TABLES = 11  # of the T12 plan


def run(argv, env, check=True, stdin=None):
    """(seconds, stdout) of a command run to its end."""
    started = time.monotonic()
    completed = subprocess.run(argv, cwd=ROOT, env=env, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    elapsed = time.monotonic() - started
    if check and completed.returncode != 0:
        sys.exit('command failed (%d): %s\n%s' % (completed.returncode, ' '.join(argv), completed.stdout[-6000:]))
    return elapsed, completed.stdout


def headers(stdout):
    return len(re.findall(r'^TASK \[', stdout, re.MULTILINE))


def changed(stdout):
    found = re.search(r'changed=(\d+)', stdout)
    return int(found.group(1)) if found else None


def newest_report(artifacts):
    reports = sorted(glob.glob(os.path.join(artifacts, 'runs', '*', 'report.json')), key=os.path.getmtime)
    with open(reports[-1]) as handle:
        return json.load(handle)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--scale', default='1', help='sample data scale (1 = 200k rows per large table)')
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--port', type=int, default=55445)
    parser.add_argument('--keep', action='store_true', help='keep the bench cluster afterwards')
    args = parser.parse_args()

    cluster_dir = os.path.join(ROOT, '.local', 'bench-cluster-scale%s' % args.scale)
    artifacts = os.path.join(ROOT, '.local', 'bench-artifacts-scale%s' % args.scale)
    extra = ['-e', 'local_cluster_dir=%s' % cluster_dir, '-e', 'pg_port=%d' % args.port,
             '-e', 'local_cluster_scale=%s' % args.scale, '-e', 'pgzd_artifacts_dir=%s' % artifacts]
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, 'ansible.cfg'), ANSIBLE_NOCOLOR='1',
               PATH=os.path.join(ROOT, '.venv', 'bin') + os.pathsep + os.environ.get('PATH', ''))
    playbook = lambda name, *more: ['ansible-playbook', 'playbooks/%s.yml' % name] + extra + list(more)  # noqa: E731

    print('seeding a scale-%s cluster on port %d (first time only) ...' % (args.scale, args.port), flush=True)
    run(playbook('local_cluster'), env)
    with open(os.path.join(cluster_dir, 'superuser.password')) as password_file:
        env['PGPASSWORD'] = password_file.read().strip()
    psql = ['psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-h', '127.0.0.1', '-p', str(args.port), '-U', 'pgzd',
            '-d', 't12', '-f', SEED_SQL]

    # What psql made is not the tool's (its ledger has no row of it): rollback.yml leaves it, psql drops it.
    with open(SEED_SQL) as seed:
        drop_seed = load.drop_outside_sql(re.findall(r'CREATE INDEX CONCURRENTLY "([^"]+)"', seed.read()))
    drop_psql = psql[:-2] + ['-f', '-']
    rounds = []
    run(playbook('rollback'), env)
    run(drop_psql, env, stdin=drop_seed)
    for attempt in range(1, args.repeat + 1):
        measured = {}
        measured['psql'] = run(psql, env)[0]
        run(drop_psql, env, stdin=drop_seed)
        measured['tags_first'], out = run(playbook('migrate', '--tags', 'indexes'), env)
        builds = sum(float(index.get('seconds') or 0) for index in newest_report(artifacts)['indexes'])
        measured['tags_first_builds'] = builds
        measured['tags_first_overhead'] = measured['tags_first'] - builds
        measured['tags_rerun'], out = run(playbook('migrate', '--tags', 'indexes'), env)
        measured['tags_rerun_changed'] = changed(out)
        measured['full'], out = run(playbook('migrate', '-e', 'pgzd_restore_drill=true'), env)
        measured['full_headers'] = headers(out)
        measured['noop'], out = run(playbook('migrate'), env)
        measured['noop_headers'] = headers(out)
        measured['noop_changed'] = changed(out)
        run(playbook('rollback'), env)
        rounds.append(measured)
        print('run %d: psql -f %.2fs | --tags indexes first %.2fs (builds %.2fs, rest %.2fs), rerun %.2fs changed=%s '
              '| full migrate %.2fs, %d task headers | no-op rerun %.2fs, %d headers'
              % (attempt, measured['psql'], measured['tags_first'], builds, measured['tags_first_overhead'],
                 measured['tags_rerun'], measured['tags_rerun_changed'], measured['full'], measured['full_headers'],
                 measured['noop'], measured['noop_headers']), flush=True)

    median = dict((key, statistics.median(r[key] for r in rounds)) for key in rounds[0])
    budget = 3.0 + 0.3 * TABLES
    result = dict(scale=args.scale, repeat=args.repeat, rounds=rounds, medians=median,
                  ratios_to_psql=dict((key, round(median[key] / median['psql'], 2))
                                      for key in ('tags_first', 'tags_rerun', 'full', 'noop')),
                  targets={
                      'full_headers_at_most_70': max(r['full_headers'] for r in rounds) <= 70,
                      'noop_at_most_2s': median['noop'] <= 2.0,
                      'tags_rerun_at_most_2_5s_changed_0': median['tags_rerun'] <= 2.5
                      and all(r['tags_rerun_changed'] == 0 for r in rounds),
                      'tags_first_overhead_at_most_%.1fs' % budget: median['tags_first_overhead'] <= budget})
    text = json.dumps(result, indent=2)
    print(text)
    os.makedirs(os.path.join(ROOT, 'bench', 'results'), exist_ok=True)
    with open(os.path.join(ROOT, 'bench', 'results', 'index_phase_scale%s.json' % args.scale), 'w') as out:
        out.write(text + '\n')
    if not args.keep:
        run(playbook('local_cluster', '-e', 'local_cluster_state=absent'), env)


if __name__ == '__main__':
    main()
