# -*- coding: utf-8 -*-
"""The SQL a run would execute (check mode, planned-<direction>.sql) passes squawk, the PostgreSQL migration linter.

squawk's blocking-index, blocking-unique and missing-concurrently rules must find nothing. What squawk flags
that we deliberately accept is listed in ACCEPTED with the reason (also in docs/prisma.md, "Linting what we run").
"""

import glob
import json
import os
import subprocess

import yaml

import helpers

# Rules that would mean the tool blocks the application; none may fire.
FORBIDDEN = {
    'require-concurrent-index-creation',    # CREATE INDEX without CONCURRENTLY blocks writes
    'require-concurrent-index-deletion',    # DROP INDEX without CONCURRENTLY blocks reads and writes
    'disallowed-unique-constraint',         # ADD CONSTRAINT UNIQUE (cols) builds the index under ACCESS EXCLUSIVE
    'constraint-missing-not-valid',         # a constraint that scans the table under its lock
    'ban-concurrent-index-creation-in-transaction',
    'require-lock-timeout',                 # every lock wait is bounded
    'require-statement-timeout',            # statement_timeout is set (to 0 on purpose for builds)
    'adding-foreign-key-constraint',        # ADD FOREIGN KEY that scans under SHARE ROW EXCLUSIVE on both tables
    'adding-not-nullable-field',            # SET NOT NULL that scans under ACCESS EXCLUSIVE
}

# (rule, statement prefix): why it is accepted.
ACCEPTED = {
    ('prefer-robust-stmts', 'ALTER TABLE "public"."Class" ADD CONSTRAINT'):
        'PostgreSQL has no ADD CONSTRAINT IF NOT EXISTS; the module reads the catalog right before and runs it only '
        'when the constraint is absent, and if it fails the valid unique index stays for the rerun to attach.',
    ('ban-drop-constraint', 'ALTER TABLE "public"."Class" DROP CONSTRAINT IF EXISTS'):
        'Dropping the constraint is what a rollback is for; it runs under the 2s lock_timeout. Migrating a NOT NULL, '
        'the constraint dropped is the helper check that SET NOT NULL has just used.',
}

# The same, for the relations plan (fixtures/relations): foreign keys, a check and a NOT NULL.
ACCEPTED_RELATIONS = {
    ('prefer-robust-stmts', 'ALTER TABLE "public".'):
        'Each step runs on its own in autocommit and the catalog is read before each one, so a rerun resumes where a '
        'failure stopped (a NOT VALID constraint is validated, a valid helper check gets SET NOT NULL); one '
        'transaction would hold the first step\'s lock through the whole validation.',
    ('ban-drop-constraint', 'ALTER TABLE "public".'):
        'Migrating: the NOT NULL\'s helper check, dropped once SET NOT NULL used it. Rolling back: the planned '
        'constraint, which is what a rollback is for; under the 2s lock_timeout.',
    ('ban-drop-not-null', 'ALTER TABLE "public"."Class" ALTER COLUMN "teacherId" DROP NOT NULL'):
        'Rolling back a planned NOT NULL; an instant under the 2s lock_timeout.',
}


def squawk(path):
    process = subprocess.run([helpers._tool('squawk'), '--pg-version=15', '--reporter', 'json', path],
                             capture_output=True, text=True, timeout=120)
    assert process.returncode in (0, 1), process.stderr
    findings = json.loads(process.stdout or '[]')
    with open(path) as handle:
        lines = handle.read().splitlines()
    # squawk numbers lines from 0.
    return [(finding['rule_name'], lines[finding['line']]) for finding in findings]


def planned_sql(tmp_path, direction):
    (found,) = glob.glob(os.path.join(str(tmp_path), 'runs', '*', 'planned-%s.sql' % direction))
    with open(found) as handle:
        return found, handle.read()


def assert_only_accepted(findings, accepted=None, forbidden_but=()):
    """Every finding is accepted; a forbidden rule fires only on the statements C(forbidden_but) names ((rule,
    statement prefix) pairs, each accepted in docs/prisma.md with its reason)."""
    assert not [f for f in findings if f[0] in FORBIDDEN
                and not any(f[0] == rule and f[1].startswith(prefix) for rule, prefix in forbidden_but)], findings
    unexpected = [f for f in findings if not any(f[0] == rule and f[1].startswith(prefix)
                                                 for rule, prefix in accepted or ACCEPTED)]
    assert unexpected == [], unexpected


def assert_the_diff_shows_schema_changes_and_no_after_baseline(stdout, artifacts_dir):
    """migrate.yml --check --diff, what a new user runs first: the diff is each table's index definitions and the
    constraint, not the run's files (a baseline JSON was hundreds of lines), and nothing is measured "after"."""
    assert '+CREATE INDEX "Job_teacherId_status_idx" ON "public"."Job" USING "btree" ("teacherId", "status")' in stdout
    assert '+CONSTRAINT Class_name_grade_key UNIQUE (name, grade)' in stdout
    assert [line for line in stdout.splitlines() if line.startswith('+++ after: ')] == []  # no file's diff
    assert '"median_ms"' not in stdout and 'baseline_after' not in stdout
    # The "before" baseline is measured (read-only: what the queries cost now); no "after" run compares with it.
    measured = [name for name in helpers.task_names(stdout) if name.startswith('Measure the baseline queries with')]
    assert len(measured) == 1, measured
    text = ' '.join(stdout.split())
    assert 'Check mode changed nothing, so the baseline queries are not measured again' in text
    # What a real run still has to build is its work, not a failed validation.
    assert 'Validation failed' not in text and 'still needed' not in text
    assert 'Check mode: a real run would first run 26 index statement(s) on Job, ' in text
    assert 'and add the constraint(s) Class_name_grade_key, then validate that every planned index (26) is valid and ' \
           'ready and every planned constraint (1) is in place.' in text
    # Beside the definitions, the diff shows the exact statements the run sends: CONCURRENTLY, the unique index
    # first, then the constraint that uses it.
    assert '-- The statements a real run would send, in order:\nCREATE INDEX CONCURRENTLY IF NOT EXISTS ' \
           '"Job_teacherId_status_idx" ON "public"."Job" USING "btree" ("teacherId", "status");\n' in stdout
    assert '-- The statements a real run would send, in order:\nCREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS ' \
           '"Class_name_grade_key" ON "public"."Class" USING "btree" ("name", "grade");\nALTER TABLE "public"."Class" ' \
           'ADD CONSTRAINT "Class_name_grade_key" UNIQUE USING INDEX "Class_name_grade_key";\n' in stdout
    assert glob.glob(os.path.join(str(artifacts_dir), 'runs', '*', '*.json')) == []


def test_the_planned_migration_and_rollback_sql_pass_squawk(db, pg_cluster, tmp_path):
    settings = dict(local_cluster_dir=pg_cluster['dir'], pg_port=pg_cluster['port'])
    before = helpers.all_indexes(db)

    migrate_dir = tmp_path / 'migrate'
    run = helpers.run_playbook('playbooks/migrate.yml', dict(settings, pgzd_artifacts_dir=str(migrate_dir)),
                               options=['--check', '--diff'])
    assert run.returncode == 0, run.stdout[-4000:]
    assert helpers.all_indexes(db) == before  # check mode changed nothing
    assert_the_diff_shows_schema_changes_and_no_after_baseline(run.stdout, migrate_dir)
    path, text = planned_sql(migrate_dir, 'migrate')
    assert text.count('CREATE INDEX CONCURRENTLY IF NOT EXISTS') == 26
    assert text.count('CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS "Class_name_grade_key"') == 1
    assert "SET lock_timeout = '2s';\nALTER TABLE \"public\".\"Class\" ADD CONSTRAINT" in text
    # The builds wait without lock_timeout (their waits block nobody); only the ACCESS EXCLUSIVE step has one.
    assert "SET lock_timeout = '0';\nCREATE INDEX CONCURRENTLY" in text
    assert text.count('SET lock_timeout') == 2
    findings = squawk(path)
    assert_only_accepted(findings)
    assert [rule for rule, _line in findings] == ['prefer-robust-stmts']  # the linter did read the file

    run = helpers.run_playbook('playbooks/migrate.yml', dict(settings, pgzd_artifacts_dir=str(tmp_path / 'real'),
                                                             backup_enabled='false'))
    assert run.returncode == 0, run.stdout[-4000:]
    rollback_dir = tmp_path / 'rollback'
    run = helpers.run_playbook('playbooks/rollback.yml', dict(settings, pgzd_artifacts_dir=str(rollback_dir)),
                               options=['--check'])
    assert run.returncode == 0, run.stdout[-4000:]
    path, text = planned_sql(rollback_dir, 'rollback')
    assert text.index('DROP CONSTRAINT IF EXISTS') < text.index('DROP INDEX CONCURRENTLY IF EXISTS')
    assert text.count('DROP INDEX CONCURRENTLY IF EXISTS') == 26
    assert_only_accepted(squawk(path))


def test_squawk_does_flag_the_blocking_way(tmp_path):
    """The same lint on the seed's Phase 2 as written (and a plain CREATE INDEX) fails: the check discriminates."""
    path = tmp_path / 'blocking.sql'
    path.write_text('CREATE INDEX "Job_createdAt_idx" ON "Job"("createdAt");\n'
                    'ALTER TABLE "Class" ADD CONSTRAINT "Class_name_grade_key" UNIQUE ("name", "grade");\n')
    rules = set(rule for rule, _line in squawk(str(path)))
    assert {'require-concurrent-index-creation', 'disallowed-unique-constraint'} <= rules


def test_the_planned_sql_of_foreign_keys_a_check_and_a_not_null_passes_squawk(t12_copy, pg_cluster, tmp_path):
    """fixtures/relations/plan.yml (imported from a Prisma migration): migrate and rollback, in check mode."""
    database = t12_copy('pt_lint_relations')
    settings = dict(local_cluster_dir=pg_cluster['dir'], pg_port=pg_cluster['port'], pg_database=database['dbname'],
                    pgzd_plan=os.path.join(helpers.REPO_ROOT, 'fixtures', 'relations', 'plan.yml'), backup_enabled='false')
    run = helpers.run_playbook('playbooks/migrate.yml', dict(settings, pgzd_artifacts_dir=str(tmp_path / 'migrate')),
                               options=['--check'])
    assert run.returncode == 0, run.stdout[-4000:]
    path, text = planned_sql(tmp_path / 'migrate', 'migrate')
    assert "SET lock_timeout = '2s';\nALTER TABLE \"public\".\"Class\" ADD CONSTRAINT" in text
    assert "SET lock_timeout = '5s';\nALTER TABLE \"public\".\"Class\" VALIDATE CONSTRAINT" in text
    findings = squawk(path)
    assert_only_accepted(findings, ACCEPTED_RELATIONS)
    assert set(rule for rule, _line in findings) == {'prefer-robust-stmts', 'ban-drop-constraint'}

    run = helpers.run_playbook('playbooks/migrate.yml', dict(settings, pgzd_artifacts_dir=str(tmp_path / 'real')))
    assert run.returncode == 0, run.stdout[-4000:]
    run = helpers.run_playbook('playbooks/rollback.yml', dict(settings, pgzd_artifacts_dir=str(tmp_path / 'rollback')),
                               options=['--check'])
    assert run.returncode == 0, run.stdout[-4000:]
    path, text = planned_sql(tmp_path / 'rollback', 'rollback')
    assert text.index('DROP NOT NULL') < text.index('DROP INDEX CONCURRENTLY IF EXISTS')
    assert_only_accepted(squawk(path), ACCEPTED_RELATIONS)
    t12_copy.drop('pt_lint_relations')


def test_squawk_does_flag_the_blocking_foreign_key_and_not_null(tmp_path):
    """The relations migration as Prisma wrote it fails the same lint."""
    path = os.path.join(helpers.REPO_ROOT, 'fixtures', 'relations', 'prisma', 'migrations', '20261201000000_relations',
                        'migration.sql')
    rules = set(rule for rule, _line in squawk(path))
    assert {'adding-foreign-key-constraint', 'adding-not-nullable-field', 'constraint-missing-not-valid',
            'require-concurrent-index-creation'} <= rules


# A partitioned table's index and a replaced index: what PostgreSQL offers no concurrent form of (docs/prisma.md).
ACCEPTED_INDEX_KINDS = {
    ('require-concurrent-index-creation', 'CREATE INDEX IF NOT EXISTS "Reading_deviceId_idx" ON ONLY "public"."Reading"'):
        'PostgreSQL refuses CONCURRENTLY on a partitioned table; ON ONLY builds nothing (catalog only), under '
        'lock_timeout with retries, and each partition\'s index is built CONCURRENTLY.',
    ('require-concurrent-index-creation', 'CREATE INDEX IF NOT EXISTS "Reading_deviceId_idx_Reading_2025" ON ONLY'):
        'The same, for the sub-partitioned partition.',
    ('require-concurrent-index-deletion', 'DROP INDEX IF EXISTS "public"."Reading_deviceId_idx"'):
        'PostgreSQL cannot drop a partitioned index concurrently; it runs under lock_timeout with retries.',
    ('renaming-object', 'ALTER INDEX "public"."pt_Job_status_idx'):
        'The swap of on_mismatch: replace; the index keeps its planned name.',
    ('prefer-robust-stmts', 'ALTER INDEX '):
        'ATTACH PARTITION and the swap\'s renames: the catalog is read before each, so a rerun resumes.',
    ('prefer-robust-stmts', 'COMMENT ON INDEX '):
        'The record of the replaced definition, written in the swap\'s transaction.',
}


def test_the_planned_sql_of_a_partitioned_index_and_a_replacement_passes_squawk(t12_copy, pg_cluster, tmp_path):
    with helpers.database_copy(t12_copy, 'pt_lint_index_kinds') as database:
        helpers.query(database['conn'], helpers.PARTITIONED_READINGS_SQL)
        helpers.query(database['conn'], 'CREATE INDEX "pt_Job_status_idx" ON "Job" (status)')
        plan = tmp_path / 'index_kinds.yml'
        plan.write_text(yaml.safe_dump(dict(name='pt_index_kinds', schema='public', tables=[
            dict(name='Reading', indexes=[dict(name='Reading_deviceId_idx', columns=['deviceId'])]),
            dict(name='Job', indexes=[dict(name='pt_Job_status_idx', columns=['status', 'teacherId'],
                                           on_mismatch='replace')])])))
        settings = dict(local_cluster_dir=pg_cluster['dir'], pg_port=pg_cluster['port'],
                        pg_database='pt_lint_index_kinds', pgzd_plan=str(plan), backup_enabled='false')
        for direction, playbook in (('migrate', 'migrate'), ('rollback', 'rollback')):
            run = helpers.run_playbook('playbooks/%s.yml' % playbook,
                                       dict(settings, pgzd_artifacts_dir=str(tmp_path / direction)), options=['--check'])
            assert run.returncode == 0, run.stdout[-4000:]
            path, text = planned_sql(tmp_path / direction, direction)
            findings = squawk(path)
            forbidden_but = [key for key in ACCEPTED_INDEX_KINDS if key[0] in FORBIDDEN]
            assert_only_accepted(findings, ACCEPTED_INDEX_KINDS, forbidden_but)
            if direction == 'migrate':
                assert 'ON ONLY "public"."Reading"' in text and 'ATTACH PARTITION' in text, text
                assert 'RENAME TO "pt_Job_status_idx"' in text, text
                assert {'require-concurrent-index-creation', 'renaming-object'} <= set(r for r, _line in findings)
                run = helpers.run_playbook('playbooks/migrate.yml', dict(settings, pgzd_artifacts_dir=str(tmp_path / 'real')))
                assert run.returncode == 0, run.stdout[-4000:]
            else:
                assert 'DROP INDEX IF EXISTS "public"."Reading_deviceId_idx"' in text, text
