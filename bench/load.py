#!/usr/bin/env python3
"""A concurrent write load on the T12 tables, to see what a schema change does to a live application.

Several threads (default 4), each with its own autocommit psycopg2 connection, run short transactions in a
loop, as an application would: INSERTs into every indexed T12 table and into "Class" (a unique random name, so
the unique constraint on ("name", "grade") is never violated by the load itself), UPDATEs by primary key (Job
status, JobAssignment completion, TeacherDailyBudget spend), one two-statement transaction (assign a job), and
reads by the indexed columns (Job by teacherId+status, XPAudit of a user by createdAt desc, ...). The threads
are paced: 400 operations start per second in all (--rate; 0 runs them back to back).

Every operation is recorded: start and end (time.monotonic), kind and error. Nothing is cut short on the
client: an operation blocked by a lock simply takes long, which is what the benchmark wants to see. The load
connections run with statement_timeout 120 s (--statement-timeout) so that nothing hangs forever. A connection
whose operation fails is closed and opened again; the error is counted and the thread goes on.

The summary: ops, errors (count and the first messages), p50/p99/max latency of the successful operations in
ms, and the longest stall: the largest gap between two consecutive successful completions across all threads,
counting the gap from the start of the load to the first completion and from the last completion to the end
of the load. A stall is the time during which the application got nothing done at all.

A monitor connection samples pg_stat_activity every 0.05 s: the load sessions waiting on anything (a lock, with
the statements of the sessions blocking them; WAL, I/O...) and the statements the other sessions of the database
(the migration) run, so that a stall can be attributed to a statement: the summary lists each statement the
migration was seen running with the longest stall inside it (migration_statements).

    .venv/bin/python bench/load.py --port 55437 --password-file .local/bench-load-scale1/superuser.password \
        --seconds 10
"""

import argparse
import hashlib
import json
import random
import threading
import time
import uuid

import psycopg2

APPLICATION_NAME = 'pgzd-bench-load'
# Operations started per second, all threads together (0: as fast as they go). A steady application load that
# leaves this 2-core machine room for the migration itself; 0 saturates it (see bench/README.md).
DEFAULT_RATE = 400

# The sample data's id spaces (fixtures/t12/sample_data.sql): referenced ids exist, like an application's.
TEACHERS, SUBJECTS, STUDENTS, USERS, ACHIEVEMENTS = 500, 40, 5000, 10000, 120
JOB_STATUSES = ('OPEN', 'ASSIGNED', 'IN_REVIEW', 'CLOSED', 'CANCELLED')
ASSIGNMENT_STATUSES = ('PENDING', 'ACCEPTED', 'SUBMITTED', 'COMPLETED', 'REJECTED')
MONEY_TYPES = ('EARN', 'SPEND', 'TRANSFER', 'REFUND', 'ADJUSTMENT')
ITEM_TYPES = ('AVATAR', 'BADGE', 'THEME', 'BOOST', 'COLLECTIBLE')
RARITIES = ('COMMON', 'UNCOMMON', 'RARE', 'EPIC', 'LEGENDARY')
LOG_LEVELS = ('DEBUG', 'INFO', 'INFO', 'INFO', 'WARN', 'ERROR')
XP_REASONS = ('job_completed', 'daily_login', 'achievement', 'event_bonus')


def sample_id(kind, n):
    """The id the sample data gave row n of a kind: 'c' || substr(md5(kind || ':' || n), 1, 24)."""
    return 'c' + hashlib.md5(('%s:%d' % (kind, n)).encode()).hexdigest()[:24]


def new_id():
    """A fresh cuid-like text id (25 characters, like the sample data's)."""
    return 'c' + uuid.uuid4().hex[:24]


class Workload:
    """The operations of the load: name -> (weight, function(cursor, rng)). Weights are relative."""

    def __init__(self, large_rows, small_rows, pause=0.0, weights=None):
        self.large_rows = large_rows
        self.small_rows = small_rows
        # Seconds assign_job waits between its UPDATE of the parent (Job) and its INSERT of the child (JobAssignment),
        # as an application does work between two statements of a transaction (bench/deadlocks_under_load.py).
        self.pause = pause
        self.operations = {
            # INSERTs into the tables the plan indexes, and into Class (unique constraint of the plan).
            'insert_job': (8, self.insert_job),
            'insert_assignment': (6, self.insert_assignment),
            'insert_budget': (3, self.insert_budget),
            'insert_xp': (8, self.insert_xp),
            'insert_money': (6, self.insert_money),
            'insert_purchase': (4, self.insert_purchase),
            'insert_award': (3, self.insert_award),
            'insert_participation': (3, self.insert_participation),
            'insert_item': (1, self.insert_item),
            'insert_event': (1, self.insert_event),
            'insert_log': (8, self.insert_log),
            'insert_class': (3, self.insert_class),
            # UPDATEs by primary key, and one two-statement transaction.
            'update_job_status': (8, self.update_job_status),
            'update_assignment_done': (4, self.update_assignment_done),
            'update_budget_spent': (3, self.update_budget_spent),
            'assign_job': (4, self.assign_job),
            # Reads by the columns the plan indexes (sequential scans until the indexes exist). XPAudit's latest 10
            # of a user is a full scan and sort until its index exists (0.5 s at scale 10): rare, or the threads
            # would all sit in it at once and the load would stall on its own.
            'read_jobs_of_teacher': (4, self.read_jobs_of_teacher),
            'read_xp_of_user': (0.1, self.read_xp_of_user),
            'read_money_of_user': (2, self.read_money_of_user),
            'read_assignments_of_student': (2, self.read_assignments_of_student),
            'read_class': (2, self.read_class),
        }
        for name, weight in (weights or {}).items():
            self.operations[name] = (weight, self.operations[name][1])
        self.names = list(self.operations)
        self.weights = [self.operations[name][0] for name in self.names]

    def choose(self, rng):
        name = rng.choices(self.names, self.weights)[0]
        return name, self.operations[name][1]

    # --- ids of existing rows -------------------------------------------------------------------------------
    def job(self, rng):
        return sample_id('job', rng.randrange(self.large_rows))

    def user(self, rng):
        return sample_id('user', rng.randrange(USERS))

    def teacher(self, rng):
        return sample_id('teacher', rng.randrange(TEACHERS))

    # --- INSERTs ------------------------------------------------------------------------------------------------
    def insert_job(self, cur, rng):
        cur.execute(
            'INSERT INTO "Job" ("id", "title", "teacherId", "subjectId", "classId", "status", "reward", "xpReward",'
            ' "updatedAt") VALUES (%s, %s, %s, %s, %s, \'OPEN\', %s, %s, CURRENT_TIMESTAMP)',
            (new_id(), 'Load job', self.teacher(rng), sample_id('subject', rng.randrange(SUBJECTS)),
             sample_id('class', rng.randrange(self.small_rows)), rng.randrange(10, 100), rng.randrange(5, 50)))

    def insert_assignment(self, cur, rng):
        cur.execute(
            'INSERT INTO "JobAssignment" ("id", "jobId", "studentId", "status", "updatedAt")'
            ' VALUES (%s, %s, %s, \'PENDING\', CURRENT_TIMESTAMP)',
            (new_id(), self.job(rng), sample_id('student', rng.randrange(STUDENTS))))

    def insert_budget(self, cur, rng):
        cur.execute(
            'INSERT INTO "TeacherDailyBudget" ("id", "teacherId", "subjectId", "date", "budget", "updatedAt")'
            ' VALUES (%s, %s, %s, date_trunc(\'day\', CURRENT_TIMESTAMP), 1000, CURRENT_TIMESTAMP)',
            (new_id(), self.teacher(rng), sample_id('subject', rng.randrange(SUBJECTS))))

    def insert_xp(self, cur, rng):
        cur.execute('INSERT INTO "XPAudit" ("id", "userId", "amount", "reason") VALUES (%s, %s, %s, %s)',
                    (new_id(), self.user(rng), rng.randrange(1, 51), rng.choice(XP_REASONS)))

    def insert_money(self, cur, rng):
        cur.execute('INSERT INTO "MoneyTx" ("id", "userId", "type", "amount") VALUES (%s, %s, %s, %s)',
                    (new_id(), self.user(rng), rng.choice(MONEY_TYPES), rng.randrange(1, 201)))

    def insert_purchase(self, cur, rng):
        cur.execute('INSERT INTO "Purchase" ("id", "userId", "itemId", "price") VALUES (%s, %s, %s, %s)',
                    (new_id(), self.user(rng), sample_id('item', rng.randrange(self.small_rows)),
                     10 * rng.randrange(1, 101)))

    def insert_award(self, cur, rng):
        cur.execute('INSERT INTO "AchievementAward" ("id", "userId", "achievementId") VALUES (%s, %s, %s)',
                    (new_id(), self.user(rng), sample_id('achievement', rng.randrange(ACHIEVEMENTS))))

    def insert_participation(self, cur, rng):
        cur.execute('INSERT INTO "EventParticipation" ("id", "userId", "eventId", "score") VALUES (%s, %s, %s, %s)',
                    (new_id(), self.user(rng), sample_id('event', rng.randrange(self.small_rows)),
                     rng.randrange(1000)))

    def insert_item(self, cur, rng):
        cur.execute(
            'INSERT INTO "Item" ("id", "name", "type", "rarity", "price", "updatedAt")'
            ' VALUES (%s, %s, %s, %s, %s, CURRENT_TIMESTAMP)',
            # A name no other row has: a unique index on Item.name (the Prisma history's migration 03) holds.
            (new_id(), 'Load item ' + uuid.uuid4().hex, rng.choice(ITEM_TYPES), rng.choice(RARITIES),
             10 * rng.randrange(1, 101)))

    def insert_event(self, cur, rng):
        cur.execute(
            'INSERT INTO "Event" ("id", "name", "isActive", "startsAt", "endsAt")'
            ' VALUES (%s, \'Load event\', %s, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP + interval \'7 days\')',
            (new_id(), rng.random() < 0.25))

    def insert_log(self, cur, rng):
        cur.execute('INSERT INTO "SystemLog" ("id", "level", "userId", "message") VALUES (%s, %s, %s, %s)',
                    (new_id(), rng.choice(LOG_LEVELS), self.user(rng) if rng.random() < 0.67 else None,
                     'load request handled'))

    def insert_class(self, cur, rng):
        # A name no other row has: the plan's UNIQUE ("name", "grade") is never violated by the load.
        cur.execute(
            'INSERT INTO "Class" ("id", "name", "grade", "teacherId", "updatedAt")'
            ' VALUES (%s, %s, %s, %s, CURRENT_TIMESTAMP)',
            (new_id(), 'Load class ' + uuid.uuid4().hex, rng.randrange(1, 14), self.teacher(rng)))

    # --- UPDATEs ------------------------------------------------------------------------------------------------
    def update_job_status(self, cur, rng):
        cur.execute('UPDATE "Job" SET "status" = %s, "updatedAt" = CURRENT_TIMESTAMP WHERE "id" = %s',
                    (rng.choice(JOB_STATUSES), self.job(rng)))

    def update_assignment_done(self, cur, rng):
        cur.execute(
            'UPDATE "JobAssignment" SET "status" = \'COMPLETED\', "completedAt" = CURRENT_TIMESTAMP,'
            ' "updatedAt" = CURRENT_TIMESTAMP WHERE "id" = %s',
            (sample_id('assignment', rng.randrange(self.large_rows)),))

    def update_budget_spent(self, cur, rng):
        cur.execute('UPDATE "TeacherDailyBudget" SET "spent" = "spent" + 1, "updatedAt" = CURRENT_TIMESTAMP'
                    ' WHERE "id" = %s', (sample_id('budget', rng.randrange(self.large_rows)),))

    def assign_job(self, cur, rng):
        # Job first, then JobAssignment: the plan's table order. In the other order this transaction deadlocks
        # with the blocking way's single DDL transaction (SHARE on Job, then on JobAssignment), and PostgreSQL
        # may pick the DDL as the victim, so the blocking scenario would not finish.
        job = self.job(rng)
        cur.execute('BEGIN')
        cur.execute('UPDATE "Job" SET "status" = \'ASSIGNED\', "updatedAt" = CURRENT_TIMESTAMP WHERE "id" = %s',
                    (job,))
        if self.pause:
            time.sleep(self.pause)
        cur.execute('INSERT INTO "JobAssignment" ("id", "jobId", "studentId", "status", "updatedAt")'
                    ' VALUES (%s, %s, %s, \'ACCEPTED\', CURRENT_TIMESTAMP)',
                    (new_id(), job, sample_id('student', rng.randrange(STUDENTS))))
        cur.execute('COMMIT')

    # --- reads ---------------------------------------------------------------------------------------------------
    # Keys the sample data has, so that a LIMIT ends the read early even while it is a sequential scan (the
    # idle load stays steady at any scale); XPAudit's latest 10 of a user needs its index, or a full scan.
    def read_jobs_of_teacher(self, cur, rng):
        teacher = rng.randrange(TEACHERS)   # row i: teacher i % 500, status i % 5
        cur.execute('SELECT "id", "title", "status" FROM "Job" WHERE "teacherId" = %s AND "status" = %s LIMIT 20',
                    (sample_id('teacher', teacher), JOB_STATUSES[teacher % 5]))
        cur.fetchall()

    def read_xp_of_user(self, cur, rng):
        cur.execute('SELECT "id", "amount", "reason", "createdAt" FROM "XPAudit" WHERE "userId" = %s'
                    ' ORDER BY "createdAt" DESC LIMIT 10', (self.user(rng),))
        cur.fetchall()

    def read_money_of_user(self, cur, rng):
        user = rng.randrange(USERS)         # row i: user 3i % 10000, type i % 5, so type (2 * user) % 5
        cur.execute('SELECT "id", "amount" FROM "MoneyTx" WHERE "userId" = %s AND "type" = %s LIMIT 5',
                    (sample_id('user', user), MONEY_TYPES[(2 * user) % 5]))
        cur.fetchall()

    def read_assignments_of_student(self, cur, rng):
        student = rng.randrange(STUDENTS)   # row i: student i % 5000, status i % 5
        cur.execute('SELECT "id", "jobId" FROM "JobAssignment" WHERE "studentId" = %s AND "status" = %s LIMIT 5',
                    (sample_id('student', student), ASSIGNMENT_STATUSES[student % 5]))
        cur.fetchall()

    def read_class(self, cur, rng):
        i = rng.randrange(self.small_rows)
        cur.execute('SELECT "id" FROM "Class" WHERE "name" = %s AND "grade" = %s',
                    ('Class %s-%d' % (chr(65 + (i // 13) % 26), i // 338), 1 + i % 13))
        cur.fetchall()


def drop_outside_sql(index_names, constraints=()):
    """SQL that removes the plan's objects made outside the tool (by `psql -f` in a bench scenario), one statement a
    line for `psql -f -` (each in autocommit, as DROP INDEX CONCURRENTLY needs). rollback.yml cannot: it undoes only
    what the tool's ledger says a run made, and leaves alone what psql made."""
    lines = ['ALTER TABLE "%s" DROP CONSTRAINT IF EXISTS "%s";' % (table, name) for table, name in constraints]
    lines += ['DROP INDEX CONCURRENTLY IF EXISTS "%s";' % name for name in index_names]
    return '\n'.join(lines) + '\n'


def percentile(sorted_values, fraction):
    """Nearest-rank percentile of an ascending list (None when empty)."""
    if not sorted_values:
        return None
    rank = max(1, int(-(-fraction * len(sorted_values) // 1)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def longest_stall(ends, started, stopped):
    """(gap seconds, gap start, gap end): the largest gap between consecutive completions in [started, stopped],
    counting start -> first completion and last completion -> stopped."""
    points = [started] + sorted(t for t in ends if started <= t <= stopped) + [stopped]
    best = (0.0, started, started)
    for before, after in zip(points, points[1:]):
        if after - before > best[0]:
            best = (after - before, before, after)
    return best


def summarize(records, started, stopped, samples=(), error_samples=5):
    """The numbers of a load run. records: (thread, kind, start, end, error or None), monotonic seconds; samples:
    the monitor's pg_stat_activity samples."""
    ok = [r for r in records if r[4] is None]
    failed = [r for r in records if r[4] is not None]
    latencies = sorted((r[3] - r[2]) * 1000.0 for r in ok)
    gap, gap_from, gap_to = longest_stall([r[3] for r in ok], started, stopped)
    by_kind = {}
    for kind in sorted({r[1] for r in records}):
        kind_ok = sorted((r[3] - r[2]) * 1000.0 for r in ok if r[1] == kind)
        by_kind[kind] = dict(ops=len(kind_ok), errors=sum(1 for r in failed if r[1] == kind),
                             p50_ms=_round(percentile(kind_ok, 0.50)), p99_ms=_round(percentile(kind_ok, 0.99)),
                             max_ms=_round(kind_ok[-1] if kind_ok else None))
    # The operations in flight during the longest stall, and what the monitor saw then.
    in_flight = sorted(({'kind': r[1], 'thread': r[0], 'started_s': round(r[2] - started, 3),
                         'ended_s': round(r[3] - started, 3), 'error': r[4]}
                        for r in records if r[2] < gap_to and r[3] > gap_from),
                       key=lambda item: item['started_s'])
    in_gap = [sample for sample in samples if gap_from <= sample['t'] <= gap_to]
    seconds = stopped - started
    return dict(
        seconds=round(seconds, 3),
        ops=len(ok),
        ops_per_second=round(len(ok) / seconds, 1) if seconds > 0 else None,
        errors=len(failed),
        error_messages=[dict(kind=r[1], at_s=round(r[3] - started, 3), error=r[4]) for r in failed[:error_samples]],
        p50_ms=_round(percentile(latencies, 0.50)),
        p99_ms=_round(percentile(latencies, 0.99)),
        max_ms=_round(latencies[-1] if latencies else None),
        longest_stall_ms=_round(gap * 1000.0),
        longest_stall_window_s=[round(gap_from - started, 3), round(gap_to - started, 3)],
        in_flight_during_stall=in_flight[:10],
        monitor_during_stall=[dict(t_s=round(sample['t'] - started, 3), load_waits=sample['waits'],
                                   other_sessions=sample['others']) for sample in in_gap[:5]],
        wait_events_sampled=_wait_events(samples),
        lock_waits_sampled=_blockers(samples, started),
        migration_statements=_statements(samples, [r[3] for r in ok], started),
        by_kind=by_kind,
    )


def _round(value, digits=2):
    return None if value is None else round(value, digits)


def _wait_events(samples):
    """How often the monitor saw a load session waiting, by wait event (Lock, LWLock:WALWrite, IO:WALSync...)."""
    counts = {}
    for sample in samples:
        for wait in sample['waits']:
            key = '%s:%s' % (wait['event_type'], wait['event'])
            counts[key] = counts.get(key, 0) + 1
    return dict(samples=len(samples), load_waits=dict(sorted(counts.items(), key=lambda item: -item[1])))


def _statements(samples, ends, started, top=25):
    """The statements the other sessions (the migration) were seen running, each with its window (from the sample
    that first saw it, less how long it had been running, to the last sample that saw it: accurate to a sampling
    interval), the lock or other waits it was seen in, and the longest stall of the load inside that window. A
    statement shorter than the interval may go unseen; so may the stall it caused, when that is as short."""
    seen, current = [], {}
    for sample in samples:
        for other in sample['others']:
            key = (other['pid'], other['query'])
            entry = current.get(key)
            # The same text again with less running time is the statement run again (a retry, the next row).
            if entry is None or other['running_s'] < entry['_running_s'] - 0.01:
                entry = current[key] = dict(pid=other['pid'], app=other['app'], query=other['query'],
                                            _start=sample['t'] - other['running_s'], _end=sample['t'], waits={})
                seen.append(entry)
            entry['_end'], entry['_running_s'] = sample['t'], other['running_s']
            if other['wait']:
                entry['waits'][other['wait']] = entry['waits'].get(other['wait'], 0) + 1
    for entry in seen:
        gap, _, _ = longest_stall(ends, entry['_start'], entry['_end'])
        entry.update(start_s=round(entry['_start'] - started, 3), seen_until_s=round(entry['_end'] - started, 3),
                     longest_stall_ms=_round(gap * 1000.0))
    seen.sort(key=lambda entry: -entry['longest_stall_ms'])
    return sorted(({key: value for key, value in entry.items() if not key.startswith('_')} for entry in seen[:top]),
                  key=lambda entry: entry['start_s'])


def _blockers(samples, started):
    """The distinct blocking statements of the lock waits sampled: how often and when each was seen, how many load
    sessions waited on it at once, and one of the waiting statements. A blocker's statement is the one it runs
    (or ran last, when idle in transaction) when sampled, not necessarily the one that took the lock."""
    seen = {}
    for sample in samples:
        per_blocker = {}
        for wait in sample['waits']:
            if wait['event_type'] != 'Lock':
                continue
            for blocker in wait['blockers'] or [{'query': '(blocker not visible)', 'state': None}]:
                per_blocker.setdefault((blocker['query'], blocker.get('state')), []).append(wait)
        t_s = round(sample['t'] - started, 3)
        for (query, state), waits in per_blocker.items():
            entry = seen.setdefault((query, state), dict(blocker=query, blocker_state=state, samples=0, first_s=t_s,
                                                         last_s=t_s, most_waiting=0, longest_wait_s=0.0,
                                                         example_waiting=waits[0]['query']))
            entry['samples'] += 1
            entry['last_s'] = t_s
            entry['most_waiting'] = max(entry['most_waiting'], len(waits))
            entry['longest_wait_s'] = max(entry['longest_wait_s'], max(w['waiting_s'] for w in waits))
    return sorted(seen.values(), key=lambda e: e['first_s'])[:30]


class Load:
    """Start the threads with start(), end them with stop() (which returns the summary)."""

    def __init__(self, connect_kwargs, threads=4, rate=DEFAULT_RATE, statement_timeout='120s', seed=None,
                 monitor=True, monitor_interval=0.05, pause=0.0, weights=None):
        self.connect_kwargs = dict(connect_kwargs)
        self.pause = pause
        self.weights = weights
        self.threads = threads
        self.rate = rate
        self.statement_timeout = statement_timeout
        self.seed = seed if seed is not None else random.randrange(1 << 30)
        self.monitor = monitor
        self.monitor_interval = monitor_interval
        self._stop = threading.Event()
        self._records = []
        self._samples = []
        self._workers = []
        self._lock = threading.Lock()
        self.started = self.stopped = None
        self.workload = None

    def connect(self, application_name=APPLICATION_NAME):
        conn = psycopg2.connect(application_name=application_name,
                                options='-c statement_timeout=%s' % self.statement_timeout, **self.connect_kwargs)
        conn.autocommit = True
        return conn

    def _sizes(self):
        """The sample data's row counts (its id spaces), not counting the rows an earlier load inserted."""
        conn = self.connect(APPLICATION_NAME + '-setup')
        try:
            with conn.cursor() as cur:
                cur.execute('SELECT count(*) FROM "Item" WHERE "name" NOT LIKE \'Load item%\'')
                small_rows = cur.fetchone()[0]
                cur.execute('SELECT count(*) FROM "Job" WHERE "title" <> \'Load job\'')
                large_rows = cur.fetchone()[0]
        finally:
            conn.close()
        return large_rows, small_rows

    def start(self):
        large_rows, small_rows = self._sizes()
        self.workload = Workload(large_rows, small_rows, self.pause, self.weights)
        # Connected before the clock starts: the first gap of the load is not the connection set-up.
        connections = [self.connect() for _ in range(self.threads)]
        self.started = time.monotonic()
        self.started_at = time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())
        for index in range(self.threads):
            worker = threading.Thread(target=self._run, args=(index, connections[index]), name='load-%d' % index,
                                      daemon=True)
            worker.start()
            self._workers.append(worker)
        if self.monitor:
            worker = threading.Thread(target=self._watch, name='load-monitor', daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def _run(self, index, conn):
        rng = random.Random(self.seed + index)
        records = []
        # Paced: each thread starts an operation every `interval` seconds (threads staggered); a late thread does
        # not catch up with a burst. rate 0: back to back.
        interval = self.threads / float(self.rate) if self.rate else 0.0
        due = self.started + interval * index / self.threads
        while not self._stop.is_set():
            if interval:
                if self._stop.wait(max(0.0, due - time.monotonic())):
                    break
                due = max(due + interval, time.monotonic())
            if conn is None:
                begin = time.monotonic()
                try:
                    conn = self.connect()
                except psycopg2.Error as exc:
                    records.append((index, 'connect', begin, time.monotonic(), _message(exc)))
                    self._stop.wait(0.1)
                    continue
            kind, operation = self.workload.choose(rng)
            begin = time.monotonic()
            try:
                with conn.cursor() as cur:
                    operation(cur, rng)
                records.append((index, kind, begin, time.monotonic(), None))
            except psycopg2.Error as exc:
                records.append((index, kind, begin, time.monotonic(), _message(exc)))
                try:
                    conn.close()
                except psycopg2.Error:
                    pass
                conn = None
        if conn is not None:
            conn.close()
        with self._lock:
            self._records.extend(records)

    def _watch(self):
        """Sample pg_stat_activity: the load sessions waiting on anything (a lock, with the statements of the sessions
        blocking it; WAL, I/O...), and what the other sessions of the database (the migration) are running."""
        try:
            conn = self.connect(APPLICATION_NAME + '-monitor')
        except psycopg2.Error:
            return
        query = """
            SELECT w.application_name = %(app)s, w.pid, w.application_name, w.wait_event_type, w.wait_event,
                   left(w.query, 200), extract(epoch FROM now() - w.query_start)::float8,
                   CASE WHEN w.application_name = %(app)s AND w.wait_event_type = 'Lock' THEN
                     (SELECT json_agg(json_build_object('pid', b.pid, 'app', b.application_name, 'state', b.state,
                                                        'query', left(b.query, 300)))
                      FROM pg_stat_activity b WHERE b.pid = ANY (pg_blocking_pids(w.pid))) END
            FROM pg_stat_activity w
            WHERE w.datname = current_database() AND w.pid <> pg_backend_pid() AND w.backend_type = 'client backend'
              AND w.state <> 'idle'
              AND (w.application_name <> %(app)s OR w.wait_event IS NOT NULL)"""
        try:
            with conn.cursor() as cur:
                while not self._stop.wait(self.monitor_interval):
                    now = time.monotonic()
                    cur.execute(query, dict(app=APPLICATION_NAME))
                    waits, others = [], []
                    for is_load, pid, app, event_type, event, text, age, blockers in cur.fetchall():
                        if is_load:
                            waits.append(dict(pid=pid, event_type=event_type, event=event, query=text,
                                              waiting_s=round(age or 0.0, 3), blockers=blockers))
                        else:
                            others.append(dict(pid=pid, app=app,
                                               wait=('%s:%s' % (event_type, event)) if event else None,
                                               query=text[:120] if text else text, running_s=round(age or 0.0, 3)))
                    self._samples.append(dict(t=now, waits=waits, others=others))
        except psycopg2.Error:
            pass
        finally:
            conn.close()

    def stop(self):
        self.stopped = time.monotonic()
        self._stop.set()
        for worker in self._workers:
            worker.join()
        result = summarize(self._records, self.started, self.stopped, self._samples)
        result['started_at_utc'] = self.started_at
        result['threads'] = self.threads
        result['rate'] = self.rate
        result['seed'] = self.seed
        return result

    @property
    def records(self):
        return list(self._records)


def _message(exc):
    text = (getattr(exc, 'pgerror', None) or str(exc) or exc.__class__.__name__).strip()
    return '%s: %s' % (exc.__class__.__name__, text.splitlines()[0] if text else '')


def connect_kwargs_from(args):
    kwargs = dict(host=args.host, port=args.port, user=args.user, dbname=args.dbname)
    if args.password_file:
        with open(args.password_file) as password_file:
            kwargs['password'] = password_file.read().strip()
    return kwargs


def add_connection_arguments(parser):
    parser.add_argument('--host', default='127.0.0.1')
    parser.add_argument('--port', type=int, default=55437)
    parser.add_argument('--user', default='pgzd')
    parser.add_argument('--dbname', default='t12')
    parser.add_argument('--password-file', help='file holding the password (else libpq: PGPASSWORD, ~/.pgpass)')


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_connection_arguments(parser)
    parser.add_argument('--threads', type=int, default=4)
    parser.add_argument('--seconds', type=float, default=10.0)
    parser.add_argument('--rate', type=float, default=DEFAULT_RATE,
                        help='operations started per second, all threads together (0: back to back); '
                             'default %(default)s')
    parser.add_argument('--statement-timeout', default='120s')
    parser.add_argument('--seed', type=int)
    parser.add_argument('--by-kind', action='store_true', help='print the numbers of each operation kind too')
    args = parser.parse_args()
    load = Load(connect_kwargs_from(args), threads=args.threads, rate=args.rate,
                statement_timeout=args.statement_timeout, seed=args.seed).start()
    time.sleep(args.seconds)
    result = load.stop()
    if not args.by_kind:
        result.pop('by_kind')
    print(json.dumps(result, indent=2))


if __name__ == '__main__':
    main()
