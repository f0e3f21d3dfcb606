# -*- coding: utf-8 -*-
"""The pure part of the Prisma deploy: what it proves before any change (module_utils/prisma/deploy_proof.py) and
what it shows (deploy_review.py), over the real classifier's entries. The deploy itself runs on a real server:
tests/integration/test_prisma_deploy.py."""

import os

import helpers

proof = helpers.load_module_utils('prisma.deploy_proof')
review = helpers.load_module_utils('prisma.deploy_review')

ADD = '-- AlterTable\nALTER TABLE "Event" ADD COLUMN "location" VARCHAR(100);\n'
WIDEN = '-- AlterTable\nALTER TABLE "Event" ALTER COLUMN "location" SET DATA TYPE VARCHAR(200);\n'
NARROW = '-- AlterTable\nALTER TABLE "Event" ALTER COLUMN "location" SET DATA TYPE VARCHAR(50);\n'
INDEX = '-- CreateIndex\nCREATE INDEX "Event_location_idx" ON "Event"("location");\n'
OTHER_INDEX = '-- CreateIndex\nCREATE INDEX "Job_createdAt_idx" ON "Job"("createdAt");\n'
DROP = '-- AlterTable\nALTER TABLE "MoneyTx" DROP COLUMN "note";\n'
NOT_NULL = '-- AlterTable\nALTER TABLE "Class" ALTER COLUMN "room" SET NOT NULL;\n'


def folder(*sqls):
    return [dict(name='2026010%d000000_m%d' % (number, number), sql=sql) for number, sql in enumerate(sqls, start=1)]


def test_a_later_migration_is_judged_with_the_column_types_the_earlier_ones_leave():
    migrations = folder(ADD, WIDEN, NARROW)
    result = proof.prove_deploy(migrations, [], [], 'public')
    classes = [[entry['class'] for entry in m['entries']] for m in result['deploy']]
    # varchar(100) to varchar(200): binary-coercible, from the file alone; to varchar(50): a rewrite, refused.
    assert classes == [['catalog'], ['catalog'], ['refused']], result['deploy']
    assert result['refusals'][0] == 'migration %s, line 2: %s' % (migrations[2]['name'], NARROW.splitlines()[1].rstrip(';')), \
        result['refusals']
    assert result['deploy'][0]['checksum'] == helpers.load_module_utils(
        'prisma.prisma_history').render_checksum(ADD)


def test_a_refusal_says_the_lock_why_the_safe_way_and_its_acknowledgement():
    migrations = folder(DROP)
    result = proof.prove_deploy(migrations, [], [], 'public')
    text = '\n'.join(result['refusals'])
    assert 'Takes ACCESS EXCLUSIVE on MoneyTx as written: refused.' in text, text
    assert 'Safe way: first deploy code that no longer reads or writes the column' in text, text
    assert "-e 'pgzd_prisma_allow=[\"%s:2:drop_column\"]'" % migrations[0]['name'] in text, text

    acknowledged = proof.prove_deploy(migrations, [], ['%s:2:drop_column' % migrations[0]['name']], 'public')
    assert acknowledged['refusals'] == [] and acknowledged['problems'] == []
    assert acknowledged['acknowledged'] == ['ACKNOWLEDGED, run as written: migration %s, line 2 (drop_column), taking '
                                            'ACCESS EXCLUSIVE on MoneyTx' % migrations[0]['name']]


def test_an_acknowledgement_that_matches_nothing_pending_is_an_error_unless_its_migration_is_applied():
    migrations = folder(DROP, INDEX)
    applied = [dict(migration_name=migrations[0]['name'], checksum=proof.render_checksum(DROP),
                    finished_at='2026-01-01', rolled_back_at=None, logs=None)]
    stale = '%s:3:drop_column' % migrations[1]['name']
    result = proof.prove_deploy(migrations, applied, ['%s:2:drop_column' % migrations[0]['name'], stale,
                                                      'nothing:2:drop_column', 'no-colon'], 'public')
    assert [m['name'] for m in result['deploy']] == [migrations[1]['name']]
    assert len(result['problems']) == 3, result['problems']
    assert "'%s' matches no refused statement" % stale in result['problems'][2]
    assert all('names no migration of the folder' in problem for problem in result['problems'][:2])


def test_the_preflight_proves_now_only_what_no_earlier_statement_reshapes():
    migrations = folder(OTHER_INDEX, ADD, INDEX, NOT_NULL)
    deploy = proof.prove_deploy(migrations, [], [], 'public')['deploy']
    tables, constraints = proof.provable_now(deploy, 'public')
    # The index on Event comes after Event gets its column: proven by its kind when it runs.
    assert [(t['name'], [i['name'] for i in t['indexes']]) for t in tables] == [('Job', ['Job_createdAt_idx'])]
    assert constraints == [dict(schema='public', table='Class', name='Class_room_not_null', type='not_null',
                                column='room')]


def test_a_not_null_step_name_fits_postgresql():
    name = proof.not_null_name('T' * 40, 'c' * 40)
    assert len(name.encode('utf-8')) == 63 and name.startswith('T' * 40)


def statement(**values):
    base = dict(line=2, kind='add_column', cls='catalog', text='ALTER TABLE "Job" ADD COLUMN "a" INT', lock=None,
                brief_lock=None, lock_as_written='ACCESS EXCLUSIVE', lock_on=['Job'], how=None, why=None,
                acknowledged=False, statements=['ALTER TABLE "Job" ADD COLUMN "a" INT;'], action='planned')
    base.update(values)
    return base


def test_the_review_and_the_planned_sql_show_each_statement_with_its_lock_in_order():
    timeouts = dict(lock_timeout='2s', lock_retries=5)
    outcomes = [dict(name='20260101000000_a', action='planned', statements=[
        statement(),
        statement(line=5, kind='create_index', cls='online', lock='SHARE UPDATE EXCLUSIVE',
                  statements=['CREATE INDEX CONCURRENTLY IF NOT EXISTS "i" ON "public"."Job" ("a")']),
        statement(line=8, kind='drop_column', cls='refused', acknowledged=True, statements=['ALTER TABLE x'])])]
    lines = review.review_lines(outcomes, timeouts, check_mode=True)
    assert lines == [
        'Pending migration 20260101000000_a (3 statement(s))',
        '  line 2 [catalog] add_column: to run; ACCESS EXCLUSIVE on Job, under lock_timeout 2s (5 retries)',
        '  line 5 [online] create_index: to run; SHARE UPDATE EXCLUSIVE on Job while it runs (reads and writes go on)',
        '  line 8 [refused ACKNOWLEDGED] drop_column: to run; ACCESS EXCLUSIVE on Job, under lock_timeout 2s '
        '(5 retries)']
    planned = review.planned_sql(outcomes, timeouts)
    assert planned.index('ALTER TABLE "Job" ADD COLUMN "a" INT;') < planned.index('CREATE INDEX CONCURRENTLY') \
        < planned.index('ALTER TABLE x;')
    assert planned.count('ADD COLUMN "a" INT;') == 1, 'a statement keeps one semicolon'


def test_the_summary_says_where_a_stopped_deploy_resumes():
    outcomes = [dict(name='a', action='applied', statements=[]), dict(name='b', action='failed', statements=[])]
    lines = review.deploy_summary(dict(applied=[]), outcomes, check_mode=False)
    assert lines[0] == 'Prisma migrations: 1 deployed online: a.'
    assert 'Stopped in migration b' in lines[1] and 'rerun to resume it' in lines[1]
    assert review.deploy_summary(dict(applied=['x']), [], False) == ['Prisma migrations: nothing pending (1 applied).']


undo = helpers.load_module_utils('prisma.undo_forms')
classes = helpers.load_module_utils('prisma.statement_classes')


def one(sql):
    (entry,) = classes.classify(sql)
    return entry


def ran(before=None):
    """A ledger 'statement' row of a statement the deploy ran as written."""
    return dict(id=1, prior=dict(before=before or {}))


def test_each_statement_run_as_written_has_its_undo_or_its_refusal():
    table = undo.undo_form(one('CREATE TABLE "T" ("id" TEXT NOT NULL, CONSTRAINT "T_pkey" PRIMARY KEY ("id"));'),
                           ran())
    assert table == dict(form='sql', check='empty', statements=['DROP TABLE "public"."T"'])
    column = undo.undo_form(one('ALTER TABLE "Job" ADD COLUMN "p" INTEGER NOT NULL DEFAULT 0;'), ran())
    assert column == dict(form='sql', check='default_only', statements=['ALTER TABLE "public"."Job" DROP COLUMN "p"'])
    default = undo.undo_form(one('ALTER TABLE "Job" ALTER COLUMN "xp" DROP DEFAULT;'),
                             ran(dict(column=dict(type='integer', not_null=True, default='10'))))
    assert default['statements'] == ['ALTER TABLE "public"."Job" ALTER COLUMN "xp" SET DEFAULT 10']
    renamed = undo.undo_form(one('ALTER INDEX "a" RENAME TO "b";'), ran())
    assert renamed['statements'] == ['ALTER INDEX "public"."b" RENAME TO "a"']
    optional = undo.undo_form(one('ALTER TABLE "S" ALTER COLUMN "m" DROP NOT NULL;'), ran())
    assert optional['form'] == 'kind' and optional['state'] == 'present' and optional['spec']['type'] == 'not_null'
    enum = undo.undo_form(one('ALTER TYPE "S" ADD VALUE \'X\';'), ran())
    assert enum['form'] == 'refused' and 'cannot remove a value from an enum' in enum['why']
    assert undo.undo_form(one('CREATE SCHEMA IF NOT EXISTS "public";'), ran())['form'] == 'kept'
    # Not run yet by a migration left unfinished: nothing to undo; but of a finished one, the ledger must have it.
    dropped_default = one('ALTER TABLE "Job" ALTER COLUMN "xp" DROP DEFAULT;')
    assert undo.undo_form(dropped_default, None, finished=False)['form'] == 'nothing'
    unknown = undo.undo_form(dropped_default, None, finished=True)
    assert unknown['form'] == 'refused' and 'the ledger has no row of it' in unknown['why']


def test_a_widened_type_is_not_narrowed_back_and_a_dropped_column_stays_dropped():
    widen = classes.classify('ALTER TABLE "E" ALTER COLUMN "l" SET DATA TYPE VARCHAR(200);',
                             column_types={(None, 'E', 'l'): 'varchar(100)'})[0]
    form = undo.undo_form(widen, ran(dict(column=dict(type='character varying(100)', not_null=False, default=None))))
    assert form['form'] == 'refused' and 'not binary-coercible' in form['why'], form
    drop = one('ALTER TABLE "M" DROP COLUMN "note";')
    assert undo.undo_form(drop, ran())['form'] == 'refused' and undo.undo_form(drop, None)['form'] == 'nothing'


def test_online_statements_are_undone_by_their_kind_and_a_dropped_index_is_built_again_from_its_definition():
    index = undo.undo_form(one('CREATE INDEX "i" ON "Job"("a");'), None)
    assert (index['form'], index['state'], index['shape']) == ('kind', 'absent', 'index')
    dropped = undo.undo_form(one('DROP INDEX "Job_createdAt_idx";'), dict(id=3, prior=dict(
        definition='CREATE INDEX "Job_createdAt_idx" ON public."Job" USING btree ("createdAt")')))
    assert (dropped['form'], dropped['state']) == ('kind', 'present')
    assert dropped['spec']['indexes'] == [dict(name='Job_createdAt_idx', columns=['createdAt'], unique=False,
                                               method='btree', where=None, include=[], on_mismatch='fail')]
    lines = undo.undo_problems('m', [(one('ALTER TYPE "S" ADD VALUE \'X\';'), dict(form='refused', why='no'))])
    assert lines == ['migration m, line 1 (add_enum_value): cannot be undone: no']


def test_an_estimate_scans_the_table_at_the_bench_rate_and_a_catalog_lock_is_an_instant():
    rate = review.BUILD_BYTES_PER_SECOND
    seconds, words = review.estimate('create_index', 10 * rate)
    assert seconds == 10.0 and words.startswith('about 10 s (table ') and 'bench' in words
    assert review.estimate('create_index', rate // 10)[1].startswith('about under a second')
    assert review.estimate('create_index', rate + 1)[1].startswith('about 2 s')
    assert review.estimate(None, 10 * rate) == (0.0, 'its lock held for an instant once granted')
    assert review.estimate('add_foreign_key', None)[0] is None


def test_a_name_the_database_already_has_is_refused_unless_the_ledger_made_it_or_the_deploy_drops_it_first():
    table = '-- CreateTable\nCREATE TABLE "Note" ("id" TEXT NOT NULL, CONSTRAINT "Note_pkey" PRIMARY KEY ("id"));\n'
    drop_then_create = '-- DropTable\nDROP TABLE "Old";\n' + table.replace('"Note"', '"Old"').replace('Note_pkey', 'O')
    migrations = folder(table, drop_then_create)
    acks = ['%s:2:drop_table' % migrations[1]['name']]
    deploy = proof.prove_deploy(migrations, [], acks, 'public')['deploy']
    asked = []

    def fetch(query, params):
        asked.append(params['name'])
        return [dict(taken=True)]

    problems = proof.taken_names(fetch, deploy, 'public', lambda migration, entry: False)
    assert asked == ['"public"."Note"'] and len(problems) == 1, (asked, problems)
    assert problems[0].startswith('migration %s, line 2: public.Note already exists as a relation' % migrations[0]['name'])
    assert 'prisma migrate resolve --applied' in problems[0]
    assert proof.taken_names(fetch, deploy, 'public', lambda migration, entry: True) == []


def test_a_changed_primary_key_is_refused_before_any_change():
    with open(os.path.join(helpers.TESTS_DIR, 'fixtures', 'prisma_migrations', 'change_primary_key',
                                   'migration.sql')) as handle:
        sql = handle.read()
    result = proof.prove_deploy(folder(sql), [], [], 'public')
    assert len(result['problems']) == 1 and 'the primary key Teacher_pkey of public.Teacher is dropped and added ' \
        'again' in result['problems'][0], result['problems']
