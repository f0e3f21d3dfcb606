#!/usr/bin/env python3
"""No deadlock with the application (issue 21, point 6): a foreign key migrated and rolled back, round after round,
under a write load whose transactions update a parent, pause, then insert a child.

The plan is bench/deadlocks_plan.yml: the foreign key JobAssignment(jobId) -> Job(id). The load is bench/load.py's
(4 threads, 400 operations/s) with its assign_job transaction (UPDATE "Job", then INSERT INTO "JobAssignment") made
frequent (--assign-weight, 40 of about 136) and pausing --pause-ms (5) between its two statements, as an application
does work inside a transaction: a row of "Job" is then locked by the application most of the time, and the plain
ADD FOREIGN KEY and DROP CONSTRAINT (which lock JobAssignment, then Job) cross it. Everything else is
bench/zero_downtime.py's: a dedicated cluster (.local/bench-deadlocks-scale<N>, port 55495) seeded with
playbooks/local_cluster.yml, 3 s of load before and after the command, the same measures.

Scenarios, each round, in this order (the database is put in each one's starting state outside the measured window):
  fk_psql_migrate    `psql -f` of the plan's statements as they are written without the tool: ADD CONSTRAINT ...
                     FOREIGN KEY ... NOT VALID, then VALIDATE CONSTRAINT (the reference of the wall time ratio)
  fk_migrate         `ansible-playbook playbooks/migrate.yml -e pgzd_plan=bench/deadlocks_plan.yml -e backup_enabled=false`
  fk_psql_rollback   `psql -f`: ALTER TABLE ... DROP CONSTRAINT
  fk_rollback        `ansible-playbook playbooks/rollback.yml -e pgzd_plan=bench/deadlocks_plan.yml`

Counted per scenario: the deadlocks PostgreSQL detected in the database (pg_stat_database.deadlocks, read before the
load starts and after every session of the scenario has ended), the application operations that failed (the load's
errors: an application transaction aborted as a deadlock victim is one), the times the tool's output reports a
deadlock or a lock timeout it retried, and the command's exit code. Targets: fk_migrate and fk_rollback, over every
round, 0 deadlocks, 0 application errors, exit 0. Wall time: each round's fk_migrate / fk_psql_migrate and
fk_rollback / fk_psql_rollback (same round: the machine is shared and noisy), medians.
Medians of --repeat rounds, and every round: bench/results/deadlocks_scale<N>.json.

    .venv/bin/python bench/deadlocks_under_load.py --scale 1 --repeat 10    # or: make bench-deadlocks
"""

import argparse
import os
import statistics
import sys
import time

import psycopg2
import yaml
from psycopg2 import sql

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import constraints_under_load  # noqa: E402
import load as load_module  # noqa: E402
import zero_downtime  # noqa: E402

ROOT = zero_downtime.ROOT
PLAN = os.path.join(ROOT, 'bench', 'deadlocks_plan.yml')
TOOL_SCENARIOS = ('fk_migrate', 'fk_rollback')
NUMBERS = ('ops', 'errors', 'deadlocks', 'command_deadlock_errors', 'command_lock_timeouts', 'p99_ms',
           'longest_stall_ms', 'command_seconds')


def load_plan(path=PLAN):
    with open(path) as plan_file:
        plan = yaml.safe_load(plan_file)
    (entry,) = plan['constraints']
    entry['schema'] = plan.get('schema', 'public')
    return entry


class DeadlocksBench(zero_downtime.Bench):
    CLUSTER = 'bench-deadlocks'
    IDLE_AS_LONG_AS = 'fk_migrate'

    def __init__(self, args):
        super().__init__(args)
        self.fk = load_plan()
        self.sql_dir = os.path.join(self.cluster_dir, 'sql')
        self.last_output = ""

    # --- the statements as written without the tool, for psql -f ---------------------------------------------
    def table(self, name):
        return sql.Identifier(self.fk['schema'], name)

    def add_sql(self):
        fk = self.fk
        return sql.SQL('ALTER TABLE {} ADD CONSTRAINT {} FOREIGN KEY ({}) REFERENCES {} ({}) ON DELETE {} ON UPDATE {} '
                       'NOT VALID').format(
            self.table(fk['table']), sql.Identifier(fk['name']), sql.SQL(', ').join(map(sql.Identifier, fk['columns'])),
            self.table(fk['references']['table']),
            sql.SQL(', ').join(map(sql.Identifier, fk['references']['columns'])),
            sql.SQL(fk['on_delete']), sql.SQL(fk['on_update']))

    def validate_sql(self):
        return sql.SQL('ALTER TABLE {} VALIDATE CONSTRAINT {}').format(self.table(self.fk['table']),
                                                                      sql.Identifier(self.fk['name']))

    def drop_sql(self):
        return sql.SQL('ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}').format(self.table(self.fk['table']),
                                                                            sql.Identifier(self.fk['name']))

    def sql_file(self, name, statements):
        os.makedirs(self.sql_dir, exist_ok=True)
        path = os.path.join(self.sql_dir, name)
        conn = self.connection()
        try:
            with open(path, 'w') as out:
                out.write(''.join('%s;\n' % statement.as_string(conn) for statement in statements))
        finally:
            conn.close()
        return path

    def connection(self):
        return psycopg2.connect(application_name='pgzd-bench-control', **self.connect_kwargs)

    def scenarios(self):
        plan = ['-e', 'pgzd_plan=' + PLAN]
        return dict(
            fk_psql_migrate=(False, self.psql('-c', '\\timing on', '-f', self.sql_file(
                'migrate.sql', [self.add_sql(), self.validate_sql()])), None),
            fk_migrate=(False, self.playbook('migrate', *plan, '-e', 'backup_enabled=false',
                                             '-e', 'pgzd_artifacts_dir=' + self.artifacts_dir), None),
            fk_psql_rollback=(True, self.psql('-c', '\\timing on', '-f', self.sql_file('rollback.sql', [self.drop_sql()])),
                              None),
            fk_rollback=(True, self.playbook('rollback', *plan, '-e', 'pgzd_artifacts_dir=' + self.artifacts_dir), None),
        )

    # --- the load: the parent-then-child transaction, frequent, with a pause inside ----------------------------
    def new_load(self):
        return load_module.Load(self.connect_kwargs, threads=self.args.threads, rate=self.args.rate,
                                statement_timeout=self.args.statement_timeout, pause=self.args.pause_ms / 1000.0,
                                weights=dict(assign_job=self.args.assign_weight))

    # --- the plan's state: the key absent (the start), or valid (migrated) ---------------------------------
    def validated(self):
        rows = self.query('SELECT convalidated FROM pg_constraint WHERE conname = %s AND conrelid = '
                          'format(\'%%I.%%I\', %s, %s)::regclass', (self.fk['name'], self.fk['schema'], self.fk['table']))
        return rows[0][0] if rows else None

    def ensure(self, migrated):
        # Without the load: nothing here can deadlock, and a key a failed psql scenario left NOT VALID is dropped.
        if migrated and self.validated() is not True:
            print('  (setup) the foreign key added with SQL to reach the migrated state', flush=True)
            self.query(self.drop_sql(), fetch=False)
            self.query(self.add_sql(), fetch=False)
            self.query(self.validate_sql(), fetch=False)
        elif not migrated and self.validated() is not None:
            print('  (setup) the foreign key dropped with SQL to reach the state before the migration', flush=True)
            self.query(self.drop_sql(), fetch=False)
        if self.validated() is not (True if migrated else None):
            sys.exit('could not reach the starting state (foreign key %s)' % ('valid' if migrated else 'absent'))

    def deadlock_count(self):
        return self.query('SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()')[0][0]

    def sessions_left(self):
        return self.query("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND "
                          "application_name IN ('pg-zero-downtime', %s, 'psql')", (load_module.APPLICATION_NAME,))[0][0]

    def measure(self, name, migrated, argv, stdin):
        self.ensure(migrated)
        before = self.deadlock_count()
        result = super().measure(name, migrated, argv, stdin)
        # A backend reports its deadlock count when it ends: wait for the scenario's sessions (load, tool, psql).
        deadline = time.monotonic() + 30
        while self.sessions_left() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)
        result['deadlocks'] = self.deadlock_count() - before
        # What the command itself said: the tool warns of each retry (a deadlock it was the victim of, or a lock
        # timeout), psql stops at its first error.
        result.update(command_deadlock_errors=self.last_output.count('deadlock detected'),
                      command_lock_timeouts=self.last_output.count('canceling statement due to lock timeout'))
        return result

    def run(self, argv, stdin=None, env=None, check=True):
        seconds, returncode, output = super().run(argv, stdin=stdin, env=env, check=check)
        self.last_output = output
        return seconds, returncode, output

    # --- rounds, medians, targets ---------------------------------------------------------------------------
    def main(self):
        args = self.args
        seed_seconds = self.setup()
        self.ensure(False)
        chosen = self.chosen_scenarios()
        rounds = []
        for number in range(args.repeat):
            print('round %d of %d' % (number + 1, args.repeat), flush=True)
            rounds.append(self.run_round(chosen))
            for name, result in rounds[-1].items():
                print('  %-18s deadlocks %d, application errors %d, the command\'s deadlock errors %d and lock '
                      'timeouts %d, exit %d' % (name, result['deadlocks'], result['errors'],
                                                result['command_deadlock_errors'], result['command_lock_timeouts'],
                                                result['command_returncode']), flush=True)
        medians = {name: median_numbers([r[name] for r in rounds]) for name, _ in chosen}
        summary = dict(scale=self.scale, git=zero_downtime.git_state(), repeat=args.repeat, threads=args.threads,
                       rate=args.rate, pause_ms=args.pause_ms, assign_weight=args.assign_weight,
                       warmup_s=args.warmup, cooldown_s=args.cooldown, seed_seconds=round(seed_seconds, 1),
                       deadlock_timeout=self.query('SHOW deadlock_timeout')[0][0], medians=medians,
                       targets=targets(rounds, medians), rounds=rounds)
        print()
        print(table_text(medians))
        print()
        for target in summary['targets']:
            print('%-70s %s  (%s)' % (target['target'], target['verdict'], target['evidence']))
        self.write(summary, 'deadlocks_scale%s.json' % self.scale)
        self.teardown()


def median_numbers(results):
    """constraints_under_load's medians (errors_total, exit codes, load averages), and the totals of what this bench
    counts."""
    out = constraints_under_load.median_numbers(results, NUMBERS)
    for key in ('deadlocks', 'command_deadlock_errors', 'command_lock_timeouts'):
        out[key + '_total'] = sum(r[key] for r in results)
    return out


def targets(rounds, medians):
    out = []
    for name in TOOL_SCENARIOS:
        if name in medians:
            m = medians[name]
            met = m['deadlocks_total'] == 0 and m['errors_total'] == 0 and not any(m['command_exit_codes'])
            out.append(dict(target='%s: 0 deadlocks, 0 application errors, exit 0 in every round' % name, met=met,
                            verdict='met' if met else 'NOT MET',
                            evidence='%d deadlocks, %d application errors in %d rounds; exits %s' % (
                                m['deadlocks_total'], m['errors_total'], len(rounds), m['command_exit_codes'])))
    for tool, psql in (('fk_migrate', 'fk_psql_migrate'), ('fk_rollback', 'fk_psql_rollback')):
        if tool in medians and psql in medians:
            ratios = [round(r[tool]['command_seconds'] / r[psql]['command_seconds'], 2) for r in rounds]
            out.append(dict(target='%s wall time / %s (same round)' % (tool, psql), met=None,
                            verdict='ratio %.2f (median)' % statistics.median(ratios), evidence='rounds: %s' % ratios))
        if tool == 'fk_migrate' and psql in medians and all((r[tool].get('report') or {}).get('constraint_seconds')
                                                             for r in rounds):
            # The tool's own DDL time (its constraint phase's clock, report.json) against psql's, Ansible aside.
            ratios = [round(sum(seconds for _name, seconds in r[tool]['report']['constraint_seconds'])
                            / r[psql]['command_seconds'], 2) for r in rounds]
            out.append(dict(target='%s constraint phase (report.json) / %s (same round)' % (tool, psql), met=None,
                            verdict='ratio %.2f (median)' % statistics.median(ratios), evidence='rounds: %s' % ratios))
        if psql in medians:
            m = medians[psql]
            out.append(dict(target='%s (the statements without the tool): deadlocks and aborts seen' % psql, met=None,
                            verdict='%d deadlocks, %d application errors' % (m['deadlocks_total'], m['errors_total']),
                            evidence='psql exits %s' % m['command_exit_codes']))
    return out


def table_text(medians):
    rows = ['| scenario | deadlocks (all rounds) | application errors (all rounds) | the command\'s deadlock errors / '
            'lock timeouts (all rounds) | exits | command s (median) | longest stall ms (median) | p99 ms (median) |',
            '| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |']
    for name, m in medians.items():
        rows.append('| %s | %d | %d | %d / %d | %s | %.2f | %.1f | %.2f |' % (
            name, m['deadlocks_total'], m['errors_total'], m['command_deadlock_errors_total'],
            m['command_lock_timeouts_total'], m['command_exit_codes'], m['command_seconds'],
            m['longest_stall_ms'], m['p99_ms']))
    return '\n'.join(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    zero_downtime.add_arguments(parser, port=55495, idle_as_long_as='fk_migrate')
    parser.add_argument('--repeat', type=int, default=10, help='rounds of every scenario (default 10)')
    parser.add_argument('--pause-ms', type=float, default=5.0,
                        help='pause inside each application transaction, between the parent and the child (default 5)')
    parser.add_argument('--assign-weight', type=float, default=40.0,
                        help='weight of the parent-then-child transaction in the load (bench/load.py: 4; default 40)')
    DeadlocksBench(parser.parse_args()).main()


if __name__ == '__main__':
    main()
