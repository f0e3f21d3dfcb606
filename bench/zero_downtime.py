#!/usr/bin/env python3
"""Zero downtime under a concurrent write load (issue 5), measured on a dedicated local cluster.

The cluster (.local/bench-load-scale<N>, port 55437) is seeded at --scale N with playbooks/local_cluster.yml.
Then, for each scenario: the database is brought to the scenario's starting state outside the measured window
(no plan index or constraint: rollback.yml when needed; for `rollback`, the migrated state), a CHECKPOINT is
taken, the load of bench/load.py starts (4 threads, 400 operations/s in all), a warm-up passes (3 s), the
command runs (wall clock timed), a cool-down passes (3 s), the load stops. Reported per scenario: ops, errors,
p50/p99/max latency, the longest stall (no operation completed at all; whole window, and within the command),
the command's wall time, what the load sessions waited on (pg_stat_activity samples), and for playbooks the
report's phase times and the slowest tasks (bench/callback_plugins/bench_task_timer.py).

Scenarios, in this order:
  blocking          the blocking way, one transaction: the 26 CREATE INDEX without CONCURRENTLY and the
                    ALTER TABLE "Class" ADD CONSTRAINT ... UNIQUE, through `psql -v ON_ERROR_STOP=1 -1`
  seed_psql         `psql -f fixtures/t12/seed_migration.sql` (26 CREATE INDEX CONCURRENTLY, the duplicate
                    check, ALTER TABLE ... ADD CONSTRAINT UNIQUE), with \timing for each statement's time
  migrate           `ansible-playbook playbooks/migrate.yml -e backup_enabled=false` (no backup: the wall time
                    is compared with psql -f, which takes none)
  rollback          `ansible-playbook playbooks/rollback.yml`, right after migrate
  migrate_parallelN migrate.yml with -e pgzd_index_build_parallelism=N (--parallel N, default 2)
  idle              `sleep` as long as this run's migrate.yml took (--idle-seconds to choose): the load's own noise

Targets: under migrate.yml zero errors and a longest stall at most 2x the idle run's; the blocking way stalls
the load for seconds (the benchmark discriminates); at scale >= 10, migrate.yml wall time at most 1.15x
seed_psql's. Results: stdout and bench/results/zero_downtime_scale<N>.json.

    .venv/bin/python bench/zero_downtime.py --scale 1          # or: make bench-load
    .venv/bin/python bench/zero_downtime.py --scale 10
"""

import argparse
import glob
import json
import os
import re
import subprocess
import sys
import time

import psycopg2

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import load as load_module  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED_INDEXES_SQL = os.path.join(ROOT, 'bench', 't12_seed_indexes.sql')
SEED_MIGRATION_SQL = os.path.join(ROOT, 'fixtures', 't12', 'seed_migration.sql')
CONSTRAINT_NAME = 'Class_name_grade_key'
ADD_CONSTRAINT = 'ALTER TABLE "Class" ADD CONSTRAINT "Class_name_grade_key" UNIQUE ("name", "grade");'
DEFAULT_IDLE_SECONDS = 20
STALL_FACTOR, WALL_FACTOR, BLOCKING_STALL_MS = 2.0, 1.15, 1000.0


def plan_index_names():
    with open(SEED_INDEXES_SQL) as sql:
        return re.findall(r'CREATE INDEX CONCURRENTLY "([^"]+)"', sql.read())


def blocking_sql():
    """The blocking way: the seed's 26 statements without CONCURRENTLY, then the constraint (psql -1 wraps it)."""
    with open(SEED_INDEXES_SQL) as sql:
        statements = sql.read().replace('CREATE INDEX CONCURRENTLY', 'CREATE INDEX')
    return statements + ADD_CONSTRAINT + '\n'


class Bench:
    CLUSTER = 'bench-load'          # the cluster's folder: .local/<CLUSTER>-scale<N>
    IDLE_AS_LONG_AS = 'migrate'     # the scenario whose wall time the idle scenario lasts

    def __init__(self, args):
        self.args = args
        self.scale = args.scale
        self.cluster_dir = os.path.join(ROOT, '.local', '%s-scale%s' % (self.CLUSTER, args.scale))
        self.artifacts_dir = os.path.join(self.cluster_dir, 'artifacts')
        self.extra = ['-e', 'local_cluster_dir=%s' % self.cluster_dir, '-e', 'pg_port=%d' % args.port,
                      '-e', 'local_cluster_scale=%s' % args.scale]
        self.env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, 'ansible.cfg'),
                        PATH=os.path.join(ROOT, '.venv', 'bin') + os.pathsep + os.environ.get('PATH', ''))
        self.index_names = plan_index_names()
        self.connect_kwargs = None

    # --- commands -------------------------------------------------------------------------------------------
    def playbook(self, name, *more):
        return ['ansible-playbook', 'playbooks/%s.yml' % name] + self.extra + list(more)

    def psql(self, *more):
        return ['psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-h', '127.0.0.1', '-p', str(self.args.port),
                '-U', 'pgzd', '-d', 't12'] + list(more)

    def run(self, argv, stdin=None, env=None, check=True):
        """(seconds, returncode, output) of a command, timed with the wall clock."""
        started = time.monotonic()
        completed = subprocess.run(argv, cwd=ROOT, env=env or self.env, input=stdin, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        elapsed = time.monotonic() - started
        if check and completed.returncode != 0:
            sys.exit('command failed (%d): %s\n%s' % (completed.returncode, ' '.join(argv), completed.stdout[-5000:]))
        return elapsed, completed.returncode, completed.stdout

    # --- database state -------------------------------------------------------------------------------------
    def query(self, sql, params=None, fetch=True):
        conn = psycopg2.connect(application_name='pgzd-bench-control', **self.connect_kwargs)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall() if fetch else None
        finally:
            conn.close()

    def plan_state(self):
        """(planned indexes present, of which valid, constraint present)."""
        rows = self.query(
            'SELECT count(*), count(*) FILTER (WHERE i.indisvalid)'
            ' FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = ANY(%s)', (self.index_names,))
        constraint = self.query('SELECT count(*) FROM pg_constraint WHERE conname = %s', (CONSTRAINT_NAME,))[0][0]
        return rows[0][0], rows[0][1], constraint > 0

    def ensure(self, migrated):
        present, valid, constraint = self.plan_state()
        if migrated and not (valid == len(self.index_names) and constraint):
            print('  (setup) migrate.yml to reach the migrated state', flush=True)
            self.run(self.playbook('migrate', '-e', 'backup_enabled=false',
                                   '-e', 'pgzd_artifacts_dir=' + self.artifacts_dir))
        elif not migrated and (present or constraint):
            print('  (setup) rollback.yml to reach the state before the migration', flush=True)
            self.run(self.playbook('rollback'))
            if self.plan_state() != (0, 0, False):
                # Left by seed_psql or blocking: the ledger has no row of them, so rollback.yml leaves them alone.
                print('  (setup) psql drops what psql made', flush=True)
                self.run(self.psql('-f', '-'), stdin=load_module.drop_outside_sql(
                    self.index_names, [('Class', CONSTRAINT_NAME)]))
        present, valid, constraint = self.plan_state()
        expected = (len(self.index_names), len(self.index_names), True) if migrated else (0, 0, False)
        if (present, valid, constraint) != expected:
            sys.exit('could not reach the starting state: %d indexes (%d valid), constraint %s'
                     % (present, valid, constraint))

    # --- scenarios ------------------------------------------------------------------------------------------
    def scenarios(self):
        migrate = self.playbook('migrate', '-e', 'backup_enabled=false', '-e', 'pgzd_artifacts_dir=' + self.artifacts_dir,
                                *self.args.migrate_arg)
        table = dict(
            blocking=(False, self.psql('-1', '-f', '-'), blocking_sql()),
            # \timing only adds a "Time:" line per statement: the build time of each index, for the comparison.
            seed_psql=(False, self.psql('-c', '\\timing on', '-f', SEED_MIGRATION_SQL), None),
            migrate=(False, migrate, None),
            rollback=(True, self.playbook('rollback'), None),
        )
        for n in self.args.parallel:
            table['migrate_parallel%d' % n] = (False, migrate + ['-e', 'pgzd_index_build_parallelism=%d' % n], None)
        # Last, so that it can last as long as this run's migrate.yml took (the longest gap grows with the length).
        table['idle'] = (False, None, None)
        return table

    def measure(self, name, migrated, argv, stdin):
        self.ensure(migrated)
        self.query('CHECKPOINT', fetch=False)
        env = dict(self.env)
        times_file = None
        if argv[0] == 'ansible-playbook':
            times_file = os.path.join(self.cluster_dir, 'task_times-%s.json' % name)
            env.update(ANSIBLE_CALLBACK_PLUGINS=os.path.join(ROOT, 'bench', 'callback_plugins'),
                       ANSIBLE_CALLBACKS_ENABLED='bench_task_timer', BENCH_TASK_TIMES=times_file)
        before_runs = set(glob.glob(os.path.join(self.artifacts_dir, 'runs', '*')))
        load = self.new_load().start()
        time.sleep(self.args.warmup)
        loadavg_before = os.getloadavg()[0]
        command_start = time.monotonic() - load.started
        seconds, returncode, output = self.run(argv, stdin=stdin, env=env, check=False)
        time.sleep(self.args.cooldown)
        result = load.stop()
        result.update(scenario=name, command=' '.join(argv) + (' < (generated SQL)' if stdin else ''),
                      command_seconds=round(seconds, 2), command_returncode=returncode,
                      command_window_s=[round(command_start, 3), round(command_start + seconds, 3)],
                      # The machine is shared: its 1-minute load average before and after the command.
                      loadavg_1m=[round(loadavg_before, 2), round(os.getloadavg()[0], 2)])
        # The same measure inside the command's window alone (the whole window also holds warm-up and cool-down).
        begin, end = load.started + command_start, load.started + command_start + seconds
        gap, gap_from, _ = load_module.longest_stall([r[3] for r in load.records if r[4] is None], begin, end)
        result['longest_stall_during_command_ms'] = round(gap * 1000.0, 2)
        result['longest_stall_during_command_at_s'] = round(gap_from - load.started, 3)
        if '\\timing on' in argv:
            result['psql_statement_ms'] = [float(ms) for ms in re.findall(r'^Time: ([0-9.]+) ms', output, re.M)]
        if returncode != 0:
            result['command_output_tail'] = output.splitlines()[-40:]
        if times_file and os.path.exists(times_file):
            result['ansible_tasks'] = summarize_tasks(times_file)
        new_runs = sorted(set(glob.glob(os.path.join(self.artifacts_dir, 'runs', '*'))) - before_runs)
        for run_dir in new_runs:
            report = os.path.join(run_dir, 'report.json')
            if os.path.exists(report):
                with open(report) as report_file:
                    data = json.load(report_file)
                builds = sum(index.get('seconds') or 0 for index in data.get('indexes') or [])
                result['report'] = dict(status=data.get('status'), phase_seconds=data.get('phase_seconds'),
                                        failure=data.get('failure'), index_seconds=round(builds, 2),
                                        constraint_seconds=[(c.get('name'), c.get('seconds'))
                                                            for c in data.get('constraints') or []])
        if not self.args.by_kind:
            result.pop('by_kind')
        return result

    def new_load(self):
        """The write load of one scenario (a bench of its own may shape it: a pause, other weights)."""
        return load_module.Load(self.connect_kwargs, threads=self.args.threads, rate=self.args.rate,
                                statement_timeout=self.args.statement_timeout)

    def setup(self):
        """Seed the cluster (first time only) and connect to it; the seeding's seconds."""
        print('seeding a scale-%s cluster on port %d (first time only) ...' % (self.scale, self.args.port), flush=True)
        seed_seconds, _, _ = self.run(self.playbook('local_cluster'))
        with open(os.path.join(self.cluster_dir, 'superuser.password')) as password_file:
            password = password_file.read().strip()
        self.env['PGPASSWORD'] = password
        self.connect_kwargs = dict(host='127.0.0.1', port=self.args.port, user='pgzd', dbname='t12',
                                   password=password)
        self.query('ANALYZE', fetch=False)
        return seed_seconds

    def chosen_scenarios(self):
        """[(name, (migrated, argv, stdin))] of --scenarios, in its order (default: all)."""
        table = self.scenarios()
        wanted = self.args.scenarios.split(',') if self.args.scenarios else list(table)
        unknown = [name for name in wanted if name not in table]
        if unknown:
            sys.exit('unknown scenario(s) %s; known: %s' % (', '.join(unknown), ', '.join(table)))
        return [(name, table[name]) for name in wanted]

    def run_round(self, chosen):
        """Measure each scenario once; {name: result}."""
        results = self.results = {}
        for name, (migrated, argv, stdin) in chosen:
            if name == 'idle':
                argv = ['sleep', '%g' % self.idle_seconds]
            print('scenario %s: %s' % (name, ' '.join(argv)), flush=True)
            results[name] = self.measure(name, migrated, argv, stdin)
            print('  ' + line(results[name]), flush=True)
        return results

    def write(self, summary, default_name):
        os.makedirs(os.path.join(ROOT, 'bench', 'results'), exist_ok=True)
        out_path = self.args.output or os.path.join(ROOT, 'bench', 'results', default_name)
        with open(out_path, 'w') as out:
            json.dump(summary, out, indent=2)
        print('written: %s' % os.path.relpath(out_path, ROOT))

    def teardown(self):
        if not self.args.keep:
            self.run(self.playbook('local_cluster', '-e', 'local_cluster_state=absent'))

    def main(self):
        args = self.args
        seed_seconds = self.setup()
        results = self.run_round(self.chosen_scenarios())
        summary = dict(scale=self.scale, git=git_state(), threads=args.threads, rate=args.rate, warmup_s=args.warmup,
                       cooldown_s=args.cooldown, idle_seconds=self.idle_seconds, seed_seconds=round(seed_seconds, 1),
                       targets=targets(results, self.scale), scenarios=results)
        print()
        print(table_text(results))
        for target in summary['targets']:
            print('%-75s %s' % (target['target'], target['verdict']))
        self.write(summary, 'zero_downtime_scale%s.json' % self.scale)
        self.teardown()

    @property
    def idle_seconds(self):
        """--idle-seconds, else as long as this round's IDLE_AS_LONG_AS scenario took, else 20 s."""
        if self.args.idle_seconds:
            return self.args.idle_seconds
        if self.IDLE_AS_LONG_AS in getattr(self, 'results', {}):
            return round(self.results[self.IDLE_AS_LONG_AS]['command_seconds'])
        return DEFAULT_IDLE_SECONDS


def git_state():
    """The commit measured, and the files that differed from it (the checkout may hold work in progress)."""
    def git(*argv):
        return subprocess.run(['git'] + list(argv), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True).stdout.rstrip('\n')
    return dict(commit=git('rev-parse', 'HEAD'),
                modified=[line[3:] for line in git('status', '--porcelain').splitlines()
                          if not line[3:].startswith('bench/')])


def summarize_tasks(path, top=15):
    """The slowest tasks of an ansible-playbook run (summed over repeats, e.g. one per table)."""
    with open(path) as times_file:
        data = json.load(times_file)
    sums = {}
    for task in data['tasks']:
        key = '%s : %s' % (task['role'], task['task']) if task['role'] else task['task']
        entry = sums.setdefault(key, [0.0, 0])
        entry[0] += task['seconds']
        entry[1] += 1
    slowest = sorted(sums.items(), key=lambda item: -item[1][0])[:top]
    return dict(total_seconds=data['total'], task_count=len(data['tasks']),
                slowest=[dict(task=key, seconds=round(value[0], 2), times=value[1]) for key, value in slowest])


def targets(results, scale):
    out = []

    def add(target, met, evidence):
        out.append(dict(target=target, met=met, verdict=('met' if met else 'NOT MET') if met is not None
                        else 'not measured', evidence=evidence))

    idle = results.get('idle')
    for name in [n for n in results if n.startswith('migrate')]:
        run = results[name]
        if idle:
            limit = STALL_FACTOR * idle['longest_stall_ms']
            add('%s: zero errors and longest stall <= %gx idle (%.0f ms)' % (name, STALL_FACTOR, limit),
                run['errors'] == 0 and run['longest_stall_ms'] <= limit and run['command_returncode'] == 0,
                '%d errors, longest stall %.1f ms, command exit %d'
                % (run['errors'], run['longest_stall_ms'], run['command_returncode']))
    if 'blocking' in results:
        run = results['blocking']
        add('blocking: the load stalls for seconds (>= %.0f ms): the benchmark discriminates' % BLOCKING_STALL_MS,
            run['longest_stall_ms'] >= BLOCKING_STALL_MS, 'longest stall %.1f ms' % run['longest_stall_ms'])
    if 'migrate' in results and 'seed_psql' in results:
        ratio = results['migrate']['command_seconds'] / results['seed_psql']['command_seconds']
        evidence = 'migrate.yml %.2f s / psql -f %.2f s = %.2f' % (
            results['migrate']['command_seconds'], results['seed_psql']['command_seconds'], ratio)
        add('scale >= 10: migrate.yml wall time <= %gx seed_psql' % WALL_FACTOR,
            ratio <= WALL_FACTOR if float(scale) >= 10 else None,
            evidence + ('' if float(scale) >= 10 else ' (target applies at scale 10)'))
    return out


def line(r):
    return ('%d ops, %d errors, p50 %.2f ms, p99 %.2f ms, max %.1f ms, longest stall %.1f ms at %s s, '
            'command %.2f s (exit %d) at %s s'
            % (r['ops'], r['errors'], r['p50_ms'] or 0, r['p99_ms'] or 0, r['max_ms'] or 0, r['longest_stall_ms'],
               r['longest_stall_window_s'], r['command_seconds'], r['command_returncode'], r['command_window_s']))


def table_text(results):
    rows = ['| scenario | ops | errors | p50 ms | p99 ms | max ms | longest stall ms | command s |',
            '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |']
    for name, r in results.items():
        rows.append('| %s | %d | %d | %.2f | %.2f | %.1f | %.1f | %.2f |'
                    % (name, r['ops'], r['errors'], r['p50_ms'] or 0, r['p99_ms'] or 0, r['max_ms'] or 0,
                       r['longest_stall_ms'], r['command_seconds']))
    return '\n'.join(rows)


def add_arguments(parser, port, idle_as_long_as):
    """The options every bench under load shares: the cluster, the load, the scenario window, the output."""
    parser.add_argument('--scale', default='1', help='sample data scale (1 = 200k rows per large table)')
    parser.add_argument('--port', type=int, default=port)
    parser.add_argument('--threads', type=int, default=4, help='load threads (default 4)')
    parser.add_argument('--rate', type=float, default=load_module.DEFAULT_RATE,
                        help='load operations started per second, all threads together (0: back to back); '
                             'default %(default)s')
    parser.add_argument('--warmup', type=float, default=3.0, help='seconds of load before the command')
    parser.add_argument('--cooldown', type=float, default=3.0, help='seconds of load after the command')
    parser.add_argument('--idle-seconds', type=float,
                        help='length of the idle scenario (default: as long as %s took in this round, else %d)'
                             % (idle_as_long_as, DEFAULT_IDLE_SECONDS))
    parser.add_argument('--statement-timeout', default='120s', help='statement_timeout of the load connections')
    parser.add_argument('--scenarios', help='comma-separated subset, in this order (default: all)')
    parser.add_argument('--output', help='results file (default: see above)')
    parser.add_argument('--by-kind', action='store_true', help='keep the numbers of each operation kind')
    parser.add_argument('--keep', action='store_true', help='keep the bench cluster afterwards')


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser, port=55437, idle_as_long_as='migrate.yml')
    parser.add_argument('--parallel', type=int, action='append',
                        help='add a migrate_parallel<N> scenario (-e pgzd_index_build_parallelism=N); default 2')
    parser.add_argument('--migrate-arg', action='append', default=[],
                        help='one more argument for the migrate scenarios, for analysis '
                             '(e.g. --migrate-arg=--skip-tags=baseline)')
    args = parser.parse_args()
    args.parallel = args.parallel or [2]
    Bench(args).main()


if __name__ == '__main__':
    main()
