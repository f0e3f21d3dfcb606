#!/usr/bin/env python3
"""What each backup mode costs on the sample at scale 10 (issue 25): `schema` against `full`, both against a plain
`pg_dump -Fc`, under the application's write load.

The cluster (.local/bench-backup-scale<N>, port 55515) is seeded at --scale N with playbooks/local_cluster.yml. Each
round, in this order, each run inside its own window of bench/load.py's load (4 threads, 400 operations/s: the
application's writes), 3 s of load before and after the command, a CHECKPOINT before the load starts:
  pg_dump   `pg_dump -Fc` of the database, the program the backup module chooses for this server (the reference of
            the time ratio, as `psql -f` is in the other benches)
  full      `ansible-playbook playbooks/backup.yml -e backup_mode=full`: the verified full dump, as a user runs it
  schema    `ansible-playbook playbooks/backup.yml -e backup_mode=schema`, with the rows migrate.yml would save for
            the T12 plan run with pgzd_on_duplicates=rename (the duplicate keys of "Class" (name, grade), given as
            __backup_touched_rows; --no-touched-rows leaves them out, as backup.yml alone does)
Each run writes into a folder of its own (backup_dir), measured and deleted after the run.

Recorded per run: the command's wall time; the bytes it wrote (the dump file; the schema backup's folder); the
database's size (pg_database_size) just before; for the playbooks, the module's own seconds (dump and verification);
the load's operations completed and failed during the command and over its whole window, its longest stall. Printed:
the medians of each, the ratios schema/full and full/pg_dump (each round's pair, then the median) of time and bytes,
and from the full runs the dump rate (the database's bytes per second of the module's dump, as the module measures
it: database_bytes / seconds) and the dump's size against the database's, the numbers
plugins/module_utils/evidence/backup_modes.py assumes (ASSUMED_DUMP_RATE, ASSUMED_DUMP_RATIO) until a full dump of
the database was measured on the control node. Target: the backups never block the application's writes (no load
error in any run, every command exits 0). Medians and every round: bench/results/backup_modes.json (at scale 10;
backup_modes_scale<N>.json otherwise).

    .venv/bin/python bench/backup_modes.py --scale 10 --repeat 5
"""

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import load as load_module  # noqa: E402
import zero_downtime  # noqa: E402

ROOT = zero_downtime.ROOT
SCENARIOS = ('pg_dump', 'full', 'schema')
# The rows the T12 plan's rename would change: migrate.yml hands them to the backup role (roles/backup/vars).
T12_TOUCHED_ROWS = [dict(schema='public', table='Class', columns=['name', 'grade'])]
DUMP_RATE_FILE = 'full-dump-rate.json'     # postgresql_backup's measure of a full dump, in its backup folder
NUMBERS = ('command_seconds', 'module_seconds', 'written_bytes', 'database_bytes', 'ops', 'errors',
           'ops_during_command', 'errors_during_command', 'p99_ms', 'longest_stall_ms',
           'longest_stall_during_command_ms')
MIB = 1024.0 * 1024.0


def tree_bytes(path):
    """Bytes of a file, or of every file under a folder."""
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(folder, name)) for folder, _, names in os.walk(path) for name in names)


def significant(value):
    """C(value) to 4 significant digits (a schema backup is a few ten-thousandths of a full one)."""
    return float('%.4g' % value)


def median_or_none(values):
    values = [value for value in values if value is not None]
    return round(statistics.median(values), 4) if values else None


class BackupBench(zero_downtime.Bench):
    CLUSTER = 'bench-backup'

    def __init__(self, args):
        super().__init__(args)
        self.backups_dir = os.path.join(self.cluster_dir, 'backups')
        self.pg_dump = None

    def setup(self):
        seed_seconds = super().setup()
        os.makedirs(self.backups_dir, exist_ok=True)
        # The pg_dump the backup module chooses for this server, from its check-mode line ("... with pg_dump
        # (PostgreSQL) 15.x (Debian ...) (/usr/bin/pg_dump) and verify ..."): the reference runs the same program.
        _, _, output = self.run(self.backup_playbook('full', os.path.join(self.backups_dir, 'check'), '--check'))
        found = re.search(r'with (pg_dump \(PostgreSQL\) .*?) \((/[^()\s]*pg_dump)\) and verify',
                          ' '.join(output.split()))
        if not found:
            sys.exit('the check-mode run of backup.yml did not name its pg_dump:\n' + output[-3000:])
        self.pg_dump_version, self.pg_dump = found.group(1), found.group(2)
        return seed_seconds

    def backup_playbook(self, mode, folder, *more):
        argv = self.playbook('backup', '-e', 'backup_mode=%s' % mode, '-e', 'backup_dir=%s' % folder)
        if mode == 'schema' and not self.args.no_touched_rows:
            argv += ['-e', json.dumps(dict(__backup_touched_rows=T12_TOUCHED_ROWS))]
        return argv + list(more)

    def command(self, name, target):
        if name == 'pg_dump':
            return [self.pg_dump, '-Fc', '-h', '127.0.0.1', '-p', str(self.args.port), '-U', 'pgzd', '-d', 't12',
                    '-f', target]
        return self.backup_playbook(name, target)

    def measure_backup(self, name, number):
        """One run of C(name) under the load: its numbers."""
        target = os.path.join(self.backups_dir, '%s-%d' % (name, number) + ('.pgc' if name == 'pg_dump' else ''))
        argv = self.command(name, target)
        database_bytes = self.query('SELECT pg_database_size(current_database())')[0][0]
        self.query('CHECKPOINT', fetch=False)
        load = self.new_load().start()
        time.sleep(self.args.warmup)
        loadavg_before = os.getloadavg()[0]
        begin = time.monotonic()
        seconds, returncode, output = self.run(argv, check=False)
        end = begin + seconds
        time.sleep(self.args.cooldown)
        result = load.stop()
        result.pop('by_kind')
        records = load.records
        gap, _, _ = load_module.longest_stall([r[3] for r in records if r[4] is None], begin, end)
        result.update(
            scenario=name, round=number, command=' '.join(argv), command_seconds=round(seconds, 2),
            command_returncode=returncode, command_window_s=[round(begin - load.started, 3),
                                                             round(end - load.started, 3)],
            # The application's writes (and reads) that ended while the backup ran, and those that failed then.
            ops_during_command=sum(1 for r in records if r[4] is None and begin <= r[3] <= end),
            errors_during_command=sum(1 for r in records if r[4] is not None and begin <= r[3] <= end),
            longest_stall_during_command_ms=round(gap * 1000.0, 2), database_bytes=database_bytes,
            written_bytes=tree_bytes(target) if os.path.exists(target) else None, module_seconds=None,
            loadavg_1m=[round(loadavg_before, 2), round(os.getloadavg()[0], 2)])
        flat = ' '.join(output.split())
        if name == 'full':
            backups = [entry for entry in (os.listdir(target) if os.path.isdir(target) else [])
                       if entry != DUMP_RATE_FILE]
            result['written_bytes'] = sum(tree_bytes(os.path.join(target, entry)) for entry in backups) or None
            rate_file = os.path.join(target, DUMP_RATE_FILE)
            if os.path.exists(rate_file):
                with open(rate_file) as handle:
                    measured = json.load(handle)
                # What the module measured and keeps as this control node's rate (dump and pg_restore --list).
                result.update(module_seconds=measured['seconds'], module_database_bytes=measured['database_bytes'],
                              module_size_bytes=measured['size_bytes'])
        elif name == 'schema':
            found = re.search(r'Schema backup of .*? verified with pg_restore --list, in ([0-9.]+)s\.', flat)
            result['module_seconds'] = float(found.group(1)) if found else None
            rows = re.search(r'; (\d+) rows of (\d+) tables this run may change\)', flat)
            result['touched_rows'] = [int(rows.group(1)), int(rows.group(2))] if rows else None
        if returncode != 0:
            result['command_output_tail'] = output.splitlines()[-40:]
        if os.path.exists(target):
            if os.path.isdir(target):
                shutil.rmtree(target)
            else:
                os.remove(target)
        return result

    def main(self):
        args = self.args
        seed_seconds = self.setup()
        print('reference: %s (%s)' % (self.pg_dump, self.pg_dump_version), flush=True)
        chosen = [name for name in (args.scenarios.split(',') if args.scenarios else SCENARIOS)]
        unknown = [name for name in chosen if name not in SCENARIOS]
        if unknown:
            sys.exit('unknown scenario(s) %s; known: %s' % (', '.join(unknown), ', '.join(SCENARIOS)))
        rounds = []
        for number in range(1, args.repeat + 1):
            print('round %d of %d' % (number, args.repeat), flush=True)
            rounds.append({})
            for name in chosen:
                result = rounds[-1][name] = self.measure_backup(name, number)
                print('  %-7s %s' % (name, line(result)), flush=True)
        medians = {name: median_numbers([r[name] for r in rounds]) for name in chosen}
        summary = dict(scale=self.scale, git=zero_downtime.git_state(), repeat=args.repeat, threads=args.threads,
                       rate=args.rate, warmup_s=args.warmup, cooldown_s=args.cooldown,
                       seed_seconds=round(seed_seconds, 1), pg_dump=self.pg_dump, pg_dump_version=self.pg_dump_version,
                       touched_rows=None if args.no_touched_rows else T12_TOUCHED_ROWS,
                       server_version=self.query('SHOW server_version')[0][0], medians=medians,
                       ratios=ratios(rounds), dump_rate=dump_rate(rounds), targets=targets(rounds), rounds=rounds)
        print()
        print(table_text(medians))
        print()
        for key, value in summary['ratios'].items():
            print('%-45s %s  (rounds: %s)' % (key, value['median'], value['rounds']))
        for key, value in summary['dump_rate'].items():
            print('%-45s %s' % (key, value))
        for target in summary['targets']:
            print('%-70s %s  (%s)' % (target['target'], target['verdict'], target['evidence']))
        self.write(summary, 'backup_modes.json' if float(self.scale) == 10
                   else 'backup_modes_scale%s.json' % self.scale)
        self.teardown()


def median_numbers(results):
    out = {key: median_or_none(r.get(key) for r in results) for key in NUMBERS}
    # The application's pace while the backup ran (the load starts 400 operations/s): a blocked write lowers it.
    out['ops_per_second_during_command'] = round(statistics.median(
        r['ops_during_command'] / r['command_seconds'] for r in results if r['command_seconds']), 1)
    out['errors_total'] = sum(r['errors'] for r in results)
    out['errors_during_command_total'] = sum(r['errors_during_command'] for r in results)
    out['command_exit_codes'] = [r['command_returncode'] for r in results]
    out['loadavg_1m'] = [r['loadavg_1m'] for r in results]
    return out


def ratios(rounds):
    """Each round's ratio of two runs of that round (the machine is shared: same round, same conditions), and the
    median; a round where either failed is left out."""
    pairs = (('schema / full, wall time', 'schema', 'full', 'command_seconds'),
             ('full / pg_dump, wall time', 'full', 'pg_dump', 'command_seconds'),
             ('schema / pg_dump, wall time', 'schema', 'pg_dump', 'command_seconds'),
             ('full module seconds / pg_dump wall time', 'full', 'pg_dump', 'module_seconds'),
             ('schema / full, bytes written', 'schema', 'full', 'written_bytes'),
             ('full / pg_dump, bytes written', 'full', 'pg_dump', 'written_bytes'))
    out = {}
    for label, top, bottom, key in pairs:
        values = []
        for results in rounds:
            if top in results and bottom in results and not (results[top]['command_returncode']
                                                              or results[bottom]['command_returncode']):
                numerator = results[top].get(key)
                denominator = results[bottom].get('command_seconds' if key == 'module_seconds' else key)
                if numerator is not None and denominator:
                    values.append(significant(numerator / float(denominator)))
        if values:
            out[label] = dict(median=significant(statistics.median(values)), rounds=values)
    return out


def dump_rate(rounds):
    """From the full runs: the database's bytes per second of the module's dump (database_bytes / seconds, what it
    writes to full-dump-rate.json), and the dump's bytes against the database's; the same of the plain pg_dump."""
    out = {}
    full = [r['full'] for r in rounds if 'full' in r and r['full'].get('module_seconds')]
    if full:
        rates = [r['module_database_bytes'] / float(r['module_seconds']) for r in full]
        sizes = [r['module_size_bytes'] / float(r['module_database_bytes']) for r in full]
        out.update(full_rate_bytes_per_second=round(statistics.median(rates)),
                   full_rate_mib_per_second=round(statistics.median(rates) / MIB, 2),
                   full_rate_mib_per_second_rounds=[round(rate / MIB, 2) for rate in rates],
                   full_size_ratio=round(statistics.median(sizes), 4),
                   full_size_ratio_rounds=[round(size, 4) for size in sizes])
    plain = [r['pg_dump'] for r in rounds
             if 'pg_dump' in r and r['pg_dump']['command_returncode'] == 0 and r['pg_dump'].get('written_bytes')]
    if plain:
        out.update(pg_dump_rate_mib_per_second=round(statistics.median(
                       r['database_bytes'] / r['command_seconds'] / MIB for r in plain), 2),
                   pg_dump_size_ratio=round(statistics.median(r['written_bytes'] / float(r['database_bytes'])
                                                              for r in plain), 4))
    return out


def targets(rounds):
    out = []
    for name in ('full', 'schema'):
        runs = [r[name] for r in rounds if name in r]
        if runs:
            errors = sum(r['errors'] for r in runs)
            exits = [r['command_returncode'] for r in runs]
            met = errors == 0 and not any(exits)
            out.append(dict(target='%s: no write of the load fails, exit 0, in every run' % name, met=met,
                            verdict='met' if met else 'NOT MET',
                            evidence='%d load errors (%d during the backup) in %d runs, %d operations completed '
                                     'during the backups; exits %s'
                                     % (errors, sum(r['errors_during_command'] for r in runs), len(runs),
                                        sum(r['ops_during_command'] for r in runs), exits)))
    return out


def line(r):
    written = r['written_bytes']
    return ('%.2f s (exit %d)%s, wrote %s, database %.1f MiB; load: %d ops (%d during the command), %d errors '
            '(%d during), longest stall %.1f ms (%.1f during)'
            % (r['command_seconds'], r['command_returncode'],
               ', module %.2f s' % r['module_seconds'] if r['module_seconds'] is not None else '',
               '%.2f MiB' % (written / MIB) if written is not None else 'nothing', r['database_bytes'] / MIB,
               r['ops'], r['ops_during_command'], r['errors'], r['errors_during_command'], r['longest_stall_ms'],
               r['longest_stall_during_command_ms']))


def table_text(medians):
    rows = ['| run | wall s | module s | written MiB | database MiB | load ops during | load errors (all runs) | '
            'longest stall during ms | exits |',
            '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |']
    for name, m in medians.items():
        rows.append('| %s | %.2f | %s | %.2f | %.1f | %d | %d | %.1f | %s |' % (
            name, m['command_seconds'], '%.2f' % m['module_seconds'] if m['module_seconds'] is not None else '',
            (m['written_bytes'] or 0) / MIB, m['database_bytes'] / MIB, m['ops_during_command'], m['errors_total'],
            m['longest_stall_during_command_ms'], m['command_exit_codes']))
    return '\n'.join(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    zero_downtime.add_arguments(parser, port=55515, idle_as_long_as='(no idle scenario here)')
    parser.set_defaults(scale='10')
    parser.add_argument('--repeat', type=int, default=5, help='rounds of every run (default 5)')
    parser.add_argument('--no-touched-rows', action='store_true',
                        help='schema without the rows the T12 rename would change (as backup.yml alone runs it)')
    BackupBench(parser.parse_args()).main()


if __name__ == '__main__':
    main()
