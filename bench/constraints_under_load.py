#!/usr/bin/env python3
"""A foreign key, a NOT NULL and a check added under a concurrent write load (issue 15, point 9).

The plan is fixtures/relations/plan.yml, imported from the Prisma migration beside it: an index on
JobAssignment(jobId), NOT NULL on Class.teacherId, the foreign keys JobAssignment(jobId) -> Job(id) and
Job(classId) -> Class(id), and the check Item price > 0. Its migration.sql is the blocking way, run with psql for
contrast. Everything else is bench/zero_downtime.py's: a dedicated cluster (.local/bench-constraints-scale<N>,
port 55490) seeded with playbooks/local_cluster.yml, the load of bench/load.py (4 threads, 400 operations/s),
3 s of load before and after the command, the same measures. The load writes rows every new constraint accepts
(assignments of existing jobs, jobs of existing classes, classes with a teacher, items with a positive price),
into all four tables, so an error is the migration's and a lock on any of them stalls it.

Before each scenario, outside the measured window, the database is put in the scenario's starting state: the
plan's constraints, index and NOT NULL dropped with SQL, its Prisma record deleted (a bench, not the product), or
for constraints_rollback, migrate.yml run. Scenarios, in this order, each round:
  constraints_blocking  `psql -1 -f migration.sql`: the blocking way in one transaction (as a tool that sends the
                        whole file as one query gets it: PostgreSQL runs a multi-statement query as one
                        transaction); each table's lock is held from its statement to the commit
  constraints_psql      `psql -f migration.sql`, statement by statement with \\timing: the reference of the wall
                        time ratio; each statement blocks alone
  constraints_migrate   `ansible-playbook playbooks/migrate.yml -e pgzd_plan=fixtures/relations/plan.yml
                        -e backup_enabled=false`
  constraints_rollback  `ansible-playbook playbooks/rollback.yml -e pgzd_plan=fixtures/relations/plan.yml`
  idle                  `sleep` as long as this round's constraints_migrate took: the load's own noise

Targets: under constraints_migrate zero errors and a longest stall at most 2x idle's (the medians; each round's
pair is listed too); the blocking forms stall the load for at least a second (the bench discriminates);
constraints_migrate's wall time as a ratio to constraints_psql's (same round). Every statement the migration was
seen running (50 ms samples) is listed with the longest stall inside it, so the plain ADD FOREIGN KEY stands
beside the NOT VALID and VALIDATE steps; psql's \\timing gives every blocking statement's time, the short ones too.
Medians of --repeat rounds, and every round: bench/results/constraints_scale<N>.json.

    .venv/bin/python bench/constraints_under_load.py --scale 10 --repeat 3   # or: make bench-constraints (~16 min)
"""

import argparse
import os
import re
import statistics
import sys

import yaml
from psycopg2 import sql

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import zero_downtime  # noqa: E402

ROOT = zero_downtime.ROOT
PLAN = os.path.join(ROOT, 'fixtures', 'relations', 'plan.yml')
BLOCKING_SCENARIOS = ('constraints_blocking', 'constraints_psql')
NUMBERS = ('ops', 'errors', 'p50_ms', 'p99_ms', 'max_ms', 'longest_stall_ms', 'longest_stall_during_command_ms',
           'command_seconds')


def load_plan(path=PLAN):
    with open(path) as plan_file:
        plan = yaml.safe_load(plan_file)
    plan['migration_sql'] = os.path.join(os.path.dirname(path), plan['prisma_migration']['file'])
    return plan


class ConstraintsBench(zero_downtime.Bench):
    CLUSTER = 'bench-constraints'
    IDLE_AS_LONG_AS = 'constraints_migrate'

    def __init__(self, args):
        super().__init__(args)
        self.plan = load_plan()
        self.schema = self.plan.get('schema', 'public')
        self.plan_indexes = [(table.get('schema', self.schema), index['name'])
                             for table in self.plan['tables'] for index in table.get('indexes', [])]

    def scenarios(self):
        plan = ['-e', 'pgzd_plan=' + PLAN]
        migration_sql = self.plan['migration_sql']
        return dict(
            constraints_blocking=(False, self.psql('-1', '-c', '\\timing on', '-f', migration_sql), None),
            constraints_psql=(False, self.psql('-c', '\\timing on', '-f', migration_sql), None),
            constraints_migrate=(False, self.playbook('migrate', *plan, '-e', 'backup_enabled=false',
                                                      '-e', 'pgzd_artifacts_dir=' + self.artifacts_dir), None),
            constraints_rollback=(True, self.playbook('rollback', *plan), None),
            idle=(False, None, None),
        )

    # --- the plan's state: nothing of it (the start), or all of it (migrated) -------------------------------
    def plan_state(self):
        """{'index <name>': valid, 'constraint <name>': validated, 'not null <table>.<column>': attnotnull}, for what
        exists (NOT NULL: always listed)."""
        state = {}
        for name, valid in self.query(
                'SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid'
                ' WHERE c.relname = ANY(%s)', ([name for _, name in self.plan_indexes],)):
            state['index ' + name] = valid
        for name, validated in self.query('SELECT conname, convalidated FROM pg_constraint WHERE conname = ANY(%s)',
                                          ([c['name'] for c in self.plan['constraints']],)):
            state['constraint ' + name] = validated
        for entry in self.not_nulls():
            state['not null %s.%s' % (entry['table'], entry['column'])] = self.query(
                'SELECT attnotnull FROM pg_attribute'
                " WHERE attrelid = (quote_ident(%s) || '.' || quote_ident(%s))::regclass AND attname = %s",
                (entry.get('schema', self.schema), entry['table'], entry['column']))[0][0]
        return state

    def migrated_state(self):
        state = {'index ' + name: True for _, name in self.plan_indexes}
        for entry in self.plan['constraints']:
            if entry['type'] == 'not_null':     # its helper check is dropped once SET NOT NULL used it
                state['not null %s.%s' % (entry['table'], entry['column'])] = True
            else:
                state['constraint ' + entry['name']] = True
        return state

    def start_state(self):
        return {'not null %s.%s' % (entry['table'], entry['column']): False for entry in self.not_nulls()}

    def not_nulls(self):
        return [entry for entry in self.plan['constraints'] if entry['type'] == 'not_null']

    def reset_sql(self):
        """Back to the start, in reverse plan order: constraints (and NOT NULL), indexes, the Prisma record."""
        statements = []
        for entry in reversed(self.plan['constraints']):
            table = sql.Identifier(entry.get('schema', self.schema), entry['table'])
            statements.append(sql.SQL('ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}').format(
                table, sql.Identifier(entry['name'])))
            if entry['type'] == 'not_null':
                statements.append(sql.SQL('ALTER TABLE {} ALTER COLUMN {} DROP NOT NULL').format(
                    table, sql.Identifier(entry['column'])))
        for schema, name in self.plan_indexes:
            statements.append(sql.SQL('DROP INDEX IF EXISTS {}').format(sql.Identifier(schema, name)))
        statements.append(sql.SQL('DELETE FROM {} WHERE migration_name = {}').format(
            sql.Identifier(self.schema, '_prisma_migrations'), sql.Literal(self.plan['prisma_migration']['name'])))
        return statements

    def ensure(self, migrated):
        expected = self.migrated_state() if migrated else self.start_state()
        if self.plan_state() == expected:
            return
        if migrated:
            print('  (setup) migrate.yml to reach the migrated state', flush=True)
            self.run(self.playbook('migrate', '-e', 'pgzd_plan=' + PLAN, '-e', 'backup_enabled=false',
                                   '-e', 'pgzd_artifacts_dir=' + self.artifacts_dir))
        else:
            print('  (setup) the plan dropped with SQL to reach the state before the migration', flush=True)
            for statement in self.reset_sql():
                self.query(statement, fetch=False)
        found = self.plan_state()
        if found != expected:
            sys.exit('could not reach the starting state: %r, expected %r' % (found, expected))

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
        medians = {name: median_numbers([r[name] for r in rounds]) for name, _ in chosen}
        summary = dict(scale=self.scale, git=zero_downtime.git_state(), repeat=args.repeat, threads=args.threads,
                       rate=args.rate, warmup_s=args.warmup, cooldown_s=args.cooldown,
                       seed_seconds=round(seed_seconds, 1), rows=self.row_counts(), medians=medians,
                       psql_statement_ms=psql_statement_ms(rounds, self.plan['migration_sql']),
                       statement_stalls=statement_stalls(rounds), targets=targets(rounds, medians), rounds=rounds)
        print()
        print(zero_downtime.table_text(medians))
        print()
        for name, statements in summary['psql_statement_ms'].items():
            for entry in statements:
                print('%-22s %8.1f ms  %s' % (name, entry['ms_median'], entry['statement'][:100]))
        print()
        for name, statements in summary['statement_stalls'].items():
            for entry in statements[:6]:
                print('%-22s %8.1f ms  %s' % (name, entry['longest_stall_ms_median'], entry['statement']))
        print()
        for target in summary['targets']:
            print('%-80s %s  (%s)' % (target['target'], target['verdict'], target['evidence']))
        self.write(summary, 'constraints_scale%s.json' % self.scale)
        self.teardown()

    def row_counts(self):
        tables = sorted({entry['table'] for entry in self.plan['constraints']}
                        | {entry['references']['table'] for entry in self.plan['constraints'] if 'references' in entry})
        return {table: self.query(sql.SQL('SELECT count(*) FROM {}').format(sql.Identifier(self.schema, table)))[0][0]
                for table in tables}


def median_numbers(results, numbers=NUMBERS):
    out = {key: round(statistics.median(r[key] for r in results), 2) for key in numbers}
    out['errors_total'] = sum(r['errors'] for r in results)
    out['command_exit_codes'] = [r['command_returncode'] for r in results]
    out['loadavg_1m'] = [r['loadavg_1m'] for r in results]
    return out


def statement_text(query):
    """A statement's text without its leading comments and spacing, to match it across rounds."""
    lines = [line for line in (query or '').splitlines() if not line.strip().startswith('--')]
    return re.sub(r'\s+', ' ', ' '.join(lines)).strip()


def psql_statement_ms(rounds, migration_sql):
    """Per psql scenario, each statement of migration.sql with the median of its \\timing over the rounds that
    reached it (a statement after a failed one is not run)."""
    with open(migration_sql) as sql_file:
        statements = [text for text in (statement_text(part) for part in sql_file.read().split(';\n')) if text]
    out = {}
    for name in BLOCKING_SCENARIOS:
        timings = [results[name]['psql_statement_ms'] for results in rounds if name in results]
        entries = out[name] = []
        for i, text in enumerate(statements):
            reached = [t[i] for t in timings if len(t) > i]
            if reached:
                entries.append(dict(statement=text, ms_median=round(statistics.median(reached), 1), ms=reached))
    return out


def statement_stalls(rounds):
    """Per scenario, each statement the migration was seen running: the median (over the rounds it was seen in)
    of the longest stall inside it, longest first."""
    out = {}
    for name in rounds[0]:
        stalls = {}
        for results in rounds:
            for entry in results[name].get('migration_statements') or []:
                stalls.setdefault(statement_text(entry['query']), []).append(entry['longest_stall_ms'])
        out[name] = sorted((dict(statement=text, longest_stall_ms_median=round(statistics.median(values), 1),
                                 longest_stall_ms=values) for text, values in stalls.items()),
                           key=lambda entry: -entry['longest_stall_ms_median'])
    return out


def targets(rounds, medians):
    out = []

    def add(target, met, evidence):
        out.append(dict(target=target, met=met, verdict='met' if met else 'NOT MET', evidence=evidence))

    if 'constraints_migrate' in medians and 'idle' in medians:
        per_round = [(r['constraints_migrate']['longest_stall_ms'], r['idle']['longest_stall_ms']) for r in rounds]
        migrate, idle = medians['constraints_migrate'], medians['idle']
        add('constraints_migrate: zero errors, exit 0', migrate['errors_total'] == 0
            and not any(migrate['command_exit_codes']),
            '%d errors in %d rounds, exits %s' % (migrate['errors_total'], len(rounds), migrate['command_exit_codes']))
        limit = zero_downtime.STALL_FACTOR * idle['longest_stall_ms']
        add('constraints_migrate: longest stall <= %gx idle (medians)' % zero_downtime.STALL_FACTOR,
            migrate['longest_stall_ms'] <= limit,
            '%.1f ms against %.1f ms (2x idle %.1f ms); rounds (migrate, idle): %s'
            % (migrate['longest_stall_ms'], limit, idle['longest_stall_ms'], per_round))
    for name in BLOCKING_SCENARIOS:
        if name in medians:
            add('%s: the load stalls >= %.0f ms (the bench discriminates)' % (name, zero_downtime.BLOCKING_STALL_MS),
                medians[name]['longest_stall_ms'] >= zero_downtime.BLOCKING_STALL_MS,
                'median longest stall %.1f ms; psql exits %s' % (medians[name]['longest_stall_ms'],
                                                                 medians[name]['command_exit_codes']))
    if 'constraints_migrate' in medians and 'constraints_psql' in medians:
        ratios = [round(r['constraints_migrate']['command_seconds'] / r['constraints_psql']['command_seconds'], 2)
                  for r in rounds]
        out.append(dict(target='constraints_migrate wall time / constraints_psql (same round)', met=None,
                        verdict='ratio %.2f (median)' % statistics.median(ratios),
                        evidence='rounds: %s' % ratios))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    zero_downtime.add_arguments(parser, port=55490, idle_as_long_as='constraints_migrate')
    parser.add_argument('--repeat', type=int, default=3, help='rounds of every scenario (default 3)')
    ConstraintsBench(parser.parse_args()).main()


if __name__ == '__main__':
    main()
