# -*- coding: utf-8 -*-
"""The migration report: JSON for pipelines, Markdown and a self-contained HTML page, also after a failure."""

import glob
import json
import os

import helpers

CRITERIA = ['All indexes created successfully', 'No service downtime during migration',
            'Query performance improved or maintained', 'No data integrity issues', 'Rollback plan tested and ready']


def cluster_vars(pg_cluster, tmp_path, **extra):
    return dict(dict(local_cluster_dir=pg_cluster['dir'], pg_port=pg_cluster['port'], pgzd_artifacts_dir=str(tmp_path / 'artifacts')),
                **extra)


def report_dir(tmp_path):
    (found,) = glob.glob(os.path.join(str(tmp_path), 'artifacts', 'runs', '*', 'report.json'))
    return os.path.dirname(found)


def test_a_migration_writes_its_report_with_every_criterion_met(db, pg_cluster, tmp_path):
    run = helpers.run_playbook('playbooks/migrate.yml', cluster_vars(pg_cluster, tmp_path, pgzd_restore_drill='true'),
                               stdout_callback='pg_zero_downtime.migrations.progress')
    try:
        assert run.returncode == 0, run.stdout[-6000:]
        # The shipped callback shows what happened: no banner for a task skipped on every host, nor for a role's
        # argument check that passed (-v shows them); the whole run in at most 44 task headers.
        headers = helpers.task_names(run.stdout)
        assert len(headers) <= 44, headers
        assert not [name for name in headers if name.startswith('Validating arguments')], headers
        assert 'skipping:' not in run.stdout
        directory = report_dir(tmp_path)
        assert os.path.join(directory, 'report.html') in run.stdout
        with open(os.path.join(directory, 'report.json')) as handle:
            report = json.load(handle)
        assert report['status'] == 'succeeded' and report['failure'] is None
        assert [c['criterion'] for c in report['success_criteria']] == CRITERIA
        assert all(c['met'] for c in report['success_criteria']), report['success_criteria']
        assert report['backup']['sha256'] and report['restore_drill']['differences'] == []
        assert len([i for i in report['indexes'] if i['action'] == 'created']) == 26
        assert set(report['phase_seconds']) >= {'backup', 'baseline', 'indexes', 'constraints', 'validate'}
        assert len(report['comparison']) == 11 and report['constraints'][0]['name'] == 'Class_name_grade_key'
        assert all(size > 0 for size in report['index_sizes'].values()) and len(report['index_sizes']) == 26

        with open(os.path.join(directory, 'report.html')) as handle:
            page = helpers.ReportPage(handle.read())
        assert page.problems == [] and page.open == []
        assert page.external == []  # self-contained
        assert {'criteria', 'baseline-chart', 'comparison', 'backup', 'phases', 'indexes', 'constraints', 'usage'} <= page.ids
        assert len([r for r in page.rects if r.get('class') == 'before']) == 11
        assert len([r for r in page.rects if r.get('class') == 'after']) == 11
        # Every label is inside the chart, the longest (that of the slowest bar, at the far right) too.
        values = [t['text'] for t in page.texts if t.get('class') == 'value']
        assert len(values) == 22 and '%s ms' % max(c['before_ms'] for c in report['comparison']) in values
        assert page.clipped_chart_texts() == []
        # A logarithmic chart: each "after" bar is seen, however much faster than its "before" (linear, most were a
        # pixel or two).
        assert min(float(r['width']) for r in page.rects if r.get('class') == 'after') >= 24, page.rects
        # The SQL that ran, each statement with its lock: the 26 builds and the unique constraint's two statements.
        sql = page.tables['sql'][1:]
        assert len(sql) == 28, sql
        assert [row[2] for row in sql].count('SHARE UPDATE EXCLUSIVE') == 27
        assert sql[-1] == ['Class_name_grade_key', 'ALTER TABLE "public"."Class" ADD CONSTRAINT "Class_name_grade_key" '
                           'UNIQUE USING INDEX "Class_name_grade_key"', 'ACCESS EXCLUSIVE',
                           'reads and writes wait, an instant (no scan)']
        # Sizes a reader reads: KiB, MiB (report.json keeps the bytes).
        sizes = [row[-1] for row in page.tables['indexes'][1:]]
        assert sizes and all(size.endswith(('KiB', 'MiB')) for size in sizes), sizes
        size = dict((row[0], row[1]) for row in page.tables['backup'])['Size']
        assert size.endswith(' s') and 'iB in ' in size, size
        # Index usage is read after the validation's baseline queries: the indexes they use show their scans.
        used = [u for u in report['index_usage'] if u['idx_scan'] > 0]
        assert {'Job_teacherId_status_idx', 'XPAudit_userId_createdAt_idx'} <= set(u['index'] for u in used), \
            report['index_usage']
        # Each verdict says why, in the validation's terms: a "held" query faster beyond the tolerance is within noise.
        for c in report['comparison']:
            assert c['reason'], c
            if c['verdict'] == 'held' and c['ratio'] < 1 / 1.2:
                assert 'within the 0.5 ms noise floor' in c['reason'], c
        assert [row[5] for row in page.tables['comparison'][1:]] == [c['reason'] for c in report['comparison']]
        # The backup table has the restore drill, as report.md does.
        drill = report['restore_drill']
        assert page.tables['backup'][-1] == ['Restore drill', '%s tables, %s rows, every row count matches'
                                             % (drill['tables'], drill['rows'])]

        with open(os.path.join(directory, 'report.md')) as handle:
            markdown = handle.read()
        assert markdown.startswith('# Migration report: t12 on t12@127.0.0.1')
        for criterion in CRITERIA:
            assert '| %s | met |' % criterion in markdown
        assert '- Restore drill: %s tables, %s rows,\n  every row count matches' % (drill['tables'], drill['rows']) in markdown
        # The play's last word: every criterion, separated by "; ", and no separator after the last.
        met = '; '.join('[MET] %s' % criterion for criterion in CRITERIA)
        output = ' '.join(run.stdout.split())
        assert met in output and met + ';' not in output, output[-2000:]
        # Task names read as sentences: no trailing " - 1" (the parallelism) or " - Job" (the table).
        names = helpers.task_names(run.stdout)
        assert 'Follow the index builds of Job, JobAssignment, TeacherDailyBudget, XPAudit, MoneyTx, Purchase, ' \
               'AchievementAward, EventParticipation, Item, Event, SystemLog' in names
        assert helpers.badly_rendered_task_names(run.stdout) == []
    finally:
        helpers.run_playbook('playbooks/rollback.yml', cluster_vars(pg_cluster, tmp_path))


def test_a_failed_migration_still_writes_its_report(db, pg_cluster, tmp_path):
    fake_bin = tmp_path / 'old-client'
    fake_bin.mkdir()
    (fake_bin / 'pg_dump').write_text('#!/bin/sh\necho "pg_dump (PostgreSQL) 13.9"\n')
    (fake_bin / 'pg_dump').chmod(0o755)
    # The output an operator sees: the stdout callback of ansible.cfg.
    run = helpers.run_playbook('playbooks/migrate.yml', cluster_vars(pg_cluster, tmp_path, backup_bin_dir=str(fake_bin)),
                               stdout_callback='pg_zero_downtime.migrations.progress')
    assert run.returncode != 0
    output = ' '.join(run.stdout.split())
    assert 'No index or constraint of the plan was changed before it.' in output
    # The failure is printed once, whole: not again as an [ERROR] summary, nor by the rescue's tasks that stop the run
    # (they name the failed task), nor in another field of the result.
    message = ('pg_dump on the control node is version 13 but the server is 15.18: an older pg_dump cannot dump a newer '
               'server. Install postgresql-client-15 on the control node (or set bin_dir, backup_bin_dir in the role, to '
               'its bin directory) and rerun; nothing was changed.')
    assert output.count('an older pg_dump cannot dump a newer server') == 1, output[-4000:]
    assert message in output.replace("'", '')
    assert '[ERROR]' not in run.stdout + run.stderr
    assert '"Protect the database before any DDL (backup_mode) from the control node" failed with the message ' \
           'printed above.' in output
    with open(os.path.join(report_dir(tmp_path), 'report.json')) as handle:
        report = json.load(handle)
    assert report['status'] == 'failed' and 'pg_dump on the control node is version 13' in report['failure']
    assert report['backup']['skipped'] and report['backup']['reason'].startswith(
        'the backup failed: pg_dump on the control node is version 13')
    assert report['indexes'] == [] and not all(c['met'] for c in report['success_criteria'])
    assert helpers.unique_constraints(db) == []


def test_a_migration_that_fails_after_ddl_says_what_it_changed_and_the_rerun_goes_on(db, pg_cluster, tmp_path,
                                                                                   connect):
    # A writer on "Class" outlasts build_wait_timeout: the 26 indexes are built, the unique index is not.
    writer = connect()
    helpers.query(writer, 'BEGIN')
    helpers.query(writer, 'UPDATE "Class" SET "updatedAt" = "updatedAt" WHERE "id" = (SELECT min("id") FROM "Class")')
    try:
        run = helpers.run_playbook('playbooks/migrate.yml', cluster_vars(pg_cluster, tmp_path, backup_enabled='false',
                                                                         pgzd_build_wait_timeout=3))
    finally:
        writer.close()
    output = ' '.join(run.stdout.split())
    assert run.returncode != 0, output[-3000:]
    assert 'The migration stopped.' in output and 'gave up after waiting' in output
    assert 'Changed before it, and kept (a rerun goes on from there): created Job_teacherId_status_idx, ' in output
    assert 'created SystemLog_userId_level_idx.' in output, output[-3000:]
    assert helpers.unique_constraints(db) == []
    rerun = helpers.run_playbook('playbooks/migrate.yml', cluster_vars(pg_cluster, tmp_path, backup_enabled='false'))
    assert rerun.returncode == 0, rerun.stdout[-3000:]
    assert helpers.unique_constraints(db) == [('Class', 'Class_name_grade_key')]
    helpers.run_playbook('playbooks/rollback.yml', cluster_vars(pg_cluster, tmp_path))



def test_a_run_refused_by_its_preflight_writes_a_refused_report_for_pipelines(db, pg_cluster, tmp_path):
    """Refused before any change: exit code 2, and report.json says so, with each problem."""
    before = helpers.all_indexes(db)
    plan = tmp_path / 'refused.yml'
    plan.write_text(
        'name: pt_refused\nschema: public\ntables:\n'
        '  - name: NoSuchTable\n    indexes:\n      - {name: pt_NoSuch_a_idx, columns: [a]}\n'
        '  - name: Job\n    indexes:\n      - {name: pt_Job_nosuch_idx, columns: [noSuchColumn]}\n')
    run = helpers.run_playbook('playbooks/migrate.yml', cluster_vars(pg_cluster, tmp_path, pgzd_plan=str(plan)))
    assert run.returncode == 2, run.stdout[-3000:]
    (path,) = glob.glob(os.path.join(str(tmp_path), 'artifacts', 'runs', 'pt_refused-*', 'report.json'))
    with open(path) as handle:
        report = json.load(handle)
    assert sorted(report) == ['database', 'host', 'plan', 'plan_file', 'problems', 'run_id', 'status', 'written_at']
    assert (report['status'], report['plan'], report['plan_file'], report['database']) == (
        'refused', 'pt_refused', str(plan), 't12')
    assert os.path.basename(os.path.dirname(path)) == 'pt_refused-%s' % report['run_id']
    assert len(report['problems']) == 2 and all(isinstance(problem, str) for problem in report['problems'])
    assert 'table public.NoSuchTable does not exist' in report['problems'][0]
    assert 'column(s) "noSuchColumn" do not exist in table public.Job' in report['problems'][1]
    assert helpers.all_indexes(db) == before

    # A plan refused on the controller, before anything connects: its report has the one reason.
    plan.write_text('name: pt_refused\nschema: public\ntables: 3\n')
    run = helpers.run_playbook('playbooks/migrate.yml', cluster_vars(pg_cluster, tmp_path / 'malformed', pgzd_plan=str(plan)),
                               options=['--check'])
    assert run.returncode == 2, run.stdout[-3000:]
    (path,) = glob.glob(os.path.join(str(tmp_path / 'malformed'), 'artifacts', 'runs', 'adhoc-*', 'report.json'))
    with open(path) as handle:
        report = json.load(handle)
    assert report['status'] == 'refused' and report['plan'] is None and len(report['problems']) == 1
    assert report['problems'][0].startswith('The plan %s is malformed' % plan)
