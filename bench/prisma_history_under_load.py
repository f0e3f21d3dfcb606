#!/usr/bin/env python3
"""A team's Prisma history deployed under a concurrent write load: migrate.yml against `prisma migrate deploy`
(issue 23, point 7).

The history is tests/fixtures/prisma_history: 14 migrations the real Prisma CLI 6.19.3 wrote for the T12 models
(indexes built and dropped, a column with a default and its index, a unique index, a relation, a new table with its
enum, index and relation, columns, defaults, a NOT NULL dropped and one added, an enum value, a renamed index, a
widened column, a dropped column). Everything else is bench/zero_downtime.py's: a dedicated cluster
(.local/bench-prisma-scale<N>, port 55500) seeded with playbooks/local_cluster.yml, the load of bench/load.py
(4 threads, 400 operations/s, writing every table the history changes), 3 s of load before and after the command,
the same measures.

Each scenario starts from the same database: a copy of the seeded one at the history's first migration
(CREATE DATABASE ... TEMPLATE, outside the measured window). Scenarios, in this order, each round:
  prisma_deploy    `prisma migrate deploy` of the folder (the real CLI of tests/prisma_cli): each migration as one
                   script, every statement as written (the indexes without CONCURRENTLY)
  history_migrate  `ansible-playbook playbooks/migrate.yml -e pgzd_prisma_migrations_dir=<folder>
                   -e pgzd_prisma_allow=[the DROP COLUMN] -e backup_enabled=false`
  idle             `sleep` as long as this round's history_migrate took: the load's own noise

Targets (medians of --repeat rounds): under history_migrate zero errors, a longest stall at most 2x idle's, and a
wall time at most 1.5x prisma_deploy's; Prisma's stalls stand beside ours. Prisma's CLI exits about 10 s after its
work is done (a timer of its schema engine), so its span in _prisma_migrations (first started_at to last
finished_at) is reported too, and ours beside it. Every round: bench/results/prisma_history_scale<N>.json.

    .venv/bin/python bench/prisma_history_under_load.py --scale 5 --repeat 3   # or: make bench-prisma (about 8 minutes)
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from urllib.parse import quote

import psycopg2

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import zero_downtime  # noqa: E402

ROOT = zero_downtime.ROOT
HISTORY = os.path.join(ROOT, 'tests', 'fixtures', 'prisma_history')
PRISMA_CLI_DIR = os.path.join(ROOT, 'tests', 'prisma_cli')
INIT = '20240101000000_init'
ALLOW = '20260114000000_drop_money_tx_note:2:drop_column'
PRISTINE = 't12_history_start'
NUMBERS = ('ops', 'errors', 'p50_ms', 'p99_ms', 'max_ms', 'longest_stall_ms', 'longest_stall_during_command_ms',
           'command_seconds', 'history_span_seconds')


def render_checksum(path):
    import hashlib
    with open(path, 'rb') as handle:
        return hashlib.sha256(handle.read()).hexdigest()


class PrismaHistoryBench(zero_downtime.Bench):
    CLUSTER = 'bench-prisma'
    IDLE_AS_LONG_AS = 'history_migrate'

    def __init__(self, args):
        super().__init__(args)
        self.app = tempfile.mkdtemp(prefix='pgzd-bench-prisma-')
        shutil.copytree(os.path.join(HISTORY, 'migrations'), os.path.join(self.app, 'prisma', 'migrations'))
        shutil.copy(os.path.join(PRISMA_CLI_DIR, 'schema.prisma'), os.path.join(self.app, 'prisma'))
        self.migrations = os.path.join(self.app, 'prisma', 'migrations')

    def scenarios(self):
        cli = os.path.join(PRISMA_CLI_DIR, 'node_modules', 'prisma', 'build', 'index.js')
        return dict(
            # From the application's folder, as a pipeline runs it (from the checkout's root the CLI looks for a query
            # engine to download).
            prisma_deploy=(False, ['env', '-C', self.app, 'node', cli, 'migrate', 'deploy', '--config',
                                   os.path.join(PRISMA_CLI_DIR, 'prisma.config.ts'), '--schema',
                                   os.path.join(self.app, 'prisma', 'schema.prisma')], None),
            history_migrate=(False, self.playbook('migrate', '-e', 'pgzd_prisma_migrations_dir=' + self.migrations,
                                                  '-e', 'pgzd_prisma_allow=["%s"]' % ALLOW, '-e', 'backup_enabled=false',
                                                  '-e', 'pgzd_artifacts_dir=' + self.artifacts_dir), None),
            idle=(False, None, None),
        )

    def admin(self, statement):
        conn = psycopg2.connect(application_name='pgzd-bench-control', **dict(self.connect_kwargs, dbname='postgres'))
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(statement)
        finally:
            conn.close()

    def setup(self):
        seconds = super().setup()
        self.env.update(DATABASE_URL='postgresql://pgzd:%s@127.0.0.1:%d/t12?schema=public' % (
            quote(self.connect_kwargs['password'], safe=''), self.args.port), CHECKPOINT_DISABLE='1',
            PRISMA_HIDE_UPDATE_MESSAGE='1', NO_COLOR='1')
        # The seeded database at the history's first migration: its row has the checksum of the history's file.
        self.query('UPDATE "_prisma_migrations" SET checksum = %s WHERE migration_name = %s',
                   (render_checksum(os.path.join(self.migrations, INIT, 'migration.sql')), INIT), fetch=False)
        self.query('CHECKPOINT', fetch=False)
        self.admin('DROP DATABASE IF EXISTS %s' % PRISTINE)
        self.admin('CREATE DATABASE %s TEMPLATE t12 STRATEGY FILE_COPY' % PRISTINE)
        return seconds

    def ensure(self, migrated):
        """Every scenario starts from a fresh copy of the database at the history's first migration."""
        self.admin('DROP DATABASE IF EXISTS t12 WITH (FORCE)')
        self.admin('CREATE DATABASE t12 TEMPLATE %s STRATEGY FILE_COPY' % PRISTINE)
        self.query('ANALYZE', fetch=False)

    def measure(self, name, migrated, argv, stdin):
        result = super().measure(name, migrated, argv, stdin)
        if name != 'idle':
            rows = self.query('SELECT count(*), extract(epoch FROM max(finished_at) - min(started_at)) FROM '
                              '"_prisma_migrations" WHERE migration_name <> %s', (INIT,))
            result['migrations_finished'] = rows[0][0]
            result['history_span_seconds'] = round(float(rows[0][1] or 0.0), 2)
        else:
            result['history_span_seconds'] = 0.0
        return result

    def main(self):
        args = self.args
        seed_seconds = self.setup()
        chosen = self.chosen_scenarios()
        rounds = []
        for number in range(args.repeat):
            print('round %d of %d' % (number + 1, args.repeat), flush=True)
            rounds.append(self.run_round(chosen))
        medians = dict((name, dict((key, round(statistics.median(r[name][key] for r in rounds), 2))
                                   for key in NUMBERS)) for name, _ in chosen)
        for name, _ in chosen:
            medians[name]['errors_total'] = sum(r[name]['errors'] for r in rounds)
            medians[name]['command_exit_codes'] = [r[name]['command_returncode'] for r in rounds]
            medians[name]['loadavg_1m'] = [r[name]['loadavg_1m'] for r in rounds]
        summary = dict(scale=self.scale, git=zero_downtime.git_state(), repeat=args.repeat, threads=args.threads,
                       rate=args.rate, warmup_s=args.warmup, cooldown_s=args.cooldown,
                       seed_seconds=round(seed_seconds, 1), medians=medians, targets=targets(rounds, medians),
                       rounds=rounds)
        print()
        print(zero_downtime.table_text(medians))
        for name in medians:
            print('%-16s history span %.2f s' % (name, medians[name]['history_span_seconds']))
        print()
        for target in summary['targets']:
            print('%-80s %s  (%s)' % (target['target'], target['verdict'], target['evidence']))
        self.write(summary, 'prisma_history_scale%s.json' % self.scale)
        shutil.rmtree(self.app, ignore_errors=True)
        self.teardown()


def targets(rounds, medians):
    ours, prisma, idle = medians['history_migrate'], medians['prisma_deploy'], medians['idle']
    finished = [r['history_migrate'].get('migrations_finished') for r in rounds] + \
        [r['prisma_deploy'].get('migrations_finished') for r in rounds]
    return [
        dict(target='every round deploys the 14 migrations, both ways', verdict='MET' if set(finished) == {14}
             else 'MISSED', evidence='migrations finished per run: %s' % finished),
        dict(target='history_migrate: 0 application errors', verdict='MET' if ours['errors_total'] == 0 else 'MISSED',
             evidence='%d errors in %d rounds (prisma_deploy: %d)' % (ours['errors_total'], len(rounds),
                                                                     prisma['errors_total'])),
        dict(target='history_migrate: longest stall at most 2x idle (medians)',
             verdict='MET' if ours['longest_stall_ms'] <= 2 * idle['longest_stall_ms'] else 'MISSED',
             evidence='%.0f ms vs idle %.0f ms (prisma_deploy: %.0f ms; during the command %.0f vs %.0f ms)' % (
                 ours['longest_stall_ms'], idle['longest_stall_ms'], prisma['longest_stall_ms'],
                 ours['longest_stall_during_command_ms'], prisma['longest_stall_during_command_ms'])),
        dict(target='history_migrate: wall time at most 1.5x prisma_deploy (medians)',
             verdict='MET' if ours['command_seconds'] <= 1.5 * prisma['command_seconds'] else 'MISSED',
             evidence='%.2f s vs %.2f s, ratio %.2f (history spans: ours %.2f s, Prisma %.2f s)' % (
                 ours['command_seconds'], prisma['command_seconds'], ours['command_seconds'] / prisma['command_seconds'],
                 ours['history_span_seconds'], prisma['history_span_seconds'])),
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    zero_downtime.add_arguments(parser, port=55500, idle_as_long_as='history_migrate')
    parser.add_argument('--repeat', type=int, default=3, help='rounds (default 3); medians are reported')
    PrismaHistoryBench(parser.parse_args()).main()


if __name__ == '__main__':
    main()
