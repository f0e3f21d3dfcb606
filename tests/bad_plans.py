# -*- coding: utf-8 -*-
"""A table of bad migration plans, each with the words its refusal must contain (the entry it names).

tests/unit/test_plan_format.py checks the structural ones against the controller-side check alone;
tests/integration/test_bad_plans.py walks every one through the real migrate.yml against the real cluster and
proves it refused before any DDL. A plan here is the GOOD plan with one thing broken.
"""

import copy

GOOD = dict(
    name='walk',
    schema='public',
    tables=[
        dict(name='Job', indexes=[dict(name='pt_walk_job_teacher_status_idx', columns=['teacherId', 'status'])]),
        dict(name='Item', indexes=[dict(name='pt_walk_item_type_idx', columns=['type'], include=['name'])]),
    ],
    constraints=[dict(name='pt_walk_class_key', table='Class', type='unique', columns=['name', 'grade'])],
    baseline_queries=[dict(name='open_jobs', sql='SELECT count(*) FROM "Job" WHERE "status" = %(status)s',
                           params=dict(status='OPEN'))],
)


def _with(change):
    plan = copy.deepcopy(GOOD)
    change(plan)
    return plan


def _set(path, value):
    """A change that sets plan[path...] = value (path: keys and list positions)."""
    def change(plan):
        target = plan
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return change


def _drop(path):
    def change(plan):
        target = plan
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]
    return change


def _append(path, value):
    def change(plan):
        target = plan
        for key in path:
            target = target[key]
        target.append(copy.deepcopy(value))
    return change


JOB = ('tables', 0)
JOB_INDEX = JOB + ('indexes', 0)
CONSTRAINT = ('constraints', 0)
QUERY = ('baseline_queries', 0)
JOB_IDX = 'table "Job", index "pt_walk_job_teacher_status_idx"'

# (id, the plan, fragments of the refusal). "format": refused by the controller-side check, before any connection.
FORMAT = [
    ('plan-not-a-mapping', ['name', 'walk'], ['the plan file holds a list']),
    ('unknown-top-key', _with(_set(('tabels',), [])), ['unknown key(s) tabels']),
    ('name-missing', _with(_drop(('name',))), ['name must be a short id']),
    ('name-with-slash', _with(_set(('name',), 'walk/../x')), ['name must be a short id', "'walk/../x'"]),
    ('schema-not-a-string', _with(_set(('schema',), 12)), ['schema 12 is not a string']),
    ('tables-missing', _with(_drop(('tables',))), ['tables must be a list']),
    ('tables-empty', _with(lambda p: p.update(tables=[], constraints=[], baseline_queries=[])),
     ['tables is empty, and the plan has no constraints or baseline queries either']),
    ('tables-a-mapping', _with(_set(('tables',), dict(name='Job'))), ['tables must be a list, not a mapping']),
    ('table-a-string', _with(_set(JOB, 'Job')), ['table #1: must be a mapping']),
    ('table-unknown-key', _with(_set(JOB + ('index',), [])), ['table "Job": unknown key(s) index']),
    ('table-name-missing', _with(_drop(JOB + ('name',))), ['table #1: table name is empty']),
    ('table-name-too-long', _with(_set(JOB + ('name',), 'J' * 64)), ['is 64 bytes long']),
    ('table-listed-twice', _with(_append(('tables',), dict(name='Job', indexes=[dict(name='pt_walk_2_idx',
                                                                                     columns=['title'])]))),
     ['table "Job": is listed twice']),
    ('indexes-missing', _with(_drop(JOB + ('indexes',))), ['table "Job": indexes must be a list']),
    ('indexes-empty', _with(_set(JOB + ('indexes',), [])), ['table "Job": has no indexes']),
    ('index-a-string', _with(_set(JOB_INDEX, 'pt_x_idx')), ['table "Job", index #1: must be a mapping']),
    ('index-unknown-key', _with(_set(JOB_INDEX + ('column',), ['id'])), [JOB_IDX, 'unknown key(s) column']),
    ('index-name-missing', _with(_drop(JOB_INDEX + ('name',))), ['table "Job", index #1: index name is empty']),
    ('index-name-too-long', _with(_set(JOB_INDEX + ('name',), 'pt_' + 'x' * 61)), ['index name', '64 bytes long']),
    ('index-name-trailing-space', _with(_set(JOB_INDEX + ('name',), 'pt_walk_idx ')), ['trailing white space']),
    ('columns-a-string', _with(_set(JOB_INDEX + ('columns',), 'teacherId,status')),
     [JOB_IDX, "not the string 'teacherId,status'"]),
    ('columns-missing', _with(_drop(JOB_INDEX + ('columns',))), [JOB_IDX, 'columns must be a non-empty list']),
    ('columns-empty', _with(_set(JOB_INDEX + ('columns',), [])), [JOB_IDX, 'columns must be a non-empty list']),
    ('column-repeated', _with(_set(JOB_INDEX + ('columns',), ['status', 'status'])), [JOB_IDX, 'more than once']),
    ('column-null', _with(_set(JOB_INDEX + ('columns',), [None])), [JOB_IDX, 'a column of columns is empty']),
    ('column-control-character', _with(_set(JOB_INDEX + ('columns',), ['sta\ttus'])), [JOB_IDX, 'control character']),
    ('unique-a-string', _with(_set(JOB_INDEX + ('unique',), 'yes')), [JOB_IDX, "unique must be true or false"]),
    ('method-not-a-string', _with(_set(JOB_INDEX + ('method',), 5)), [JOB_IDX, 'method 5 is not a string']),
    ('unique-hash', _with(lambda p: p['tables'][0]['indexes'][0].update(unique=True, method='hash')),
     [JOB_IDX, 'only btree indexes can be unique']),
    ('where-not-a-string', _with(_set(JOB_INDEX + ('where',), 5)), [JOB_IDX, 'where must be one SQL expression']),
    ('where-empty', _with(_set(JOB_INDEX + ('where',), '  ')), [JOB_IDX, 'where must be one SQL expression']),
    ('on-mismatch-drop', _with(_set(JOB_INDEX + ('on_mismatch',), 'drop')),
     [JOB_IDX, "on_mismatch must be fail (refuse an index of this name with another definition) or replace", "'drop'"]),
    ('include-a-string', _with(_set(JOB_INDEX + ('include',), 'title')), [JOB_IDX, "include must be a YAML list"]),
    ('include-overlaps-columns', _with(_set(JOB_INDEX + ('include',), ['status'])),
     [JOB_IDX, 'both key columns and in include']),
    ('index-name-on-two-tables', _with(_set(('tables', 1, 'indexes', 0, 'name'), 'pt_walk_job_teacher_status_idx')),
     ['table "Item", index "pt_walk_job_teacher_status_idx": has the name of ' + JOB_IDX]),
    ('constraint-a-string', _with(_set(CONSTRAINT, 'pt_walk_class_key')), ['constraint #1: must be a mapping']),
    ('constraint-unknown-key', _with(_set(CONSTRAINT + ('colums',), ['name'])),
     ['constraint "pt_walk_class_key": unknown key(s) colums']),
    ('constraint-key-of-another-type', _with(_set(CONSTRAINT + ('column',), 'name')),
     ['constraint "pt_walk_class_key": key(s) column do not apply to a unique constraint']),
    ('constraint-name-missing', _with(_drop(CONSTRAINT + ('name',))), ['constraint #1: constraint name is empty']),
    ('constraint-table-missing', _with(_drop(CONSTRAINT + ('table',))), ['constraint "pt_walk_class_key": table is empty']),
    ('constraint-type-exclusion', _with(_set(CONSTRAINT + ('type',), 'exclusion')),
     ['constraint "pt_walk_class_key": type must be one of unique, foreign_key, check, not_null']),
    ('foreign-key-without-references', _with(_append(('constraints',), dict(
        name='pt_walk_job_class_fkey', type='foreign_key', table='Job', columns=['classId']))),
     ['constraint "pt_walk_job_class_fkey": references must be a mapping']),
    ('foreign-key-column-count', _with(_append(('constraints',), dict(
        name='pt_walk_job_class_fkey', type='foreign_key', table='Job', columns=['classId'],
        references=dict(table='Class', columns=['name', 'grade'])))),
     ['constraint "pt_walk_job_class_fkey": 1 column(s) reference 2 column(s)']),
    ('foreign-key-on-delete-drop', _with(_append(('constraints',), dict(
        name='pt_walk_job_class_fkey', type='foreign_key', table='Job', columns=['classId'],
        references=dict(table='Class', columns=['id']), on_delete='DROP'))),
     ['constraint "pt_walk_job_class_fkey": on_delete must be one of NO ACTION, RESTRICT, CASCADE']),
    ('check-without-expression', _with(_append(('constraints',), dict(
        name='pt_walk_item_price_check', type='check', table='Item'))),
     ['constraint "pt_walk_item_price_check": expression must be one boolean SQL expression']),
    ('not-null-without-column', _with(_append(('constraints',), dict(
        name='pt_walk_job_title_not_null', type='not_null', table='Job', columns=['title']))),
     ['constraint "pt_walk_job_title_not_null": key(s) columns do not apply to a not_null constraint',
      'constraint "pt_walk_job_title_not_null": column is empty']),
    ('constraint-columns-a-string', _with(_set(CONSTRAINT + ('columns',), 'name, grade')),
     ['constraint "pt_walk_class_key": columns must be a YAML list']),
    ('on-duplicates-merge', _with(_set(CONSTRAINT + ('on_duplicates',), 'merge')),
     ['constraint "pt_walk_class_key": on_duplicates must be fail or rename']),
    ('rename-column-not-a-key-column', _with(_set(CONSTRAINT + ('rename_column',), 'teacherId')),
     ['constraint "pt_walk_class_key": rename_column "teacherId" is not one of its columns']),
    ('keep-oldest-by-a-string', _with(_set(CONSTRAINT + ('keep_oldest_by',), 'createdAt')),
     ['constraint "pt_walk_class_key": keep_oldest_by must be a YAML list']),
    ('constraint-named-like-a-plan-index', _with(_set(CONSTRAINT + ('name',), 'pt_walk_item_type_idx')),
     ['constraint "pt_walk_item_type_idx": has the name of table "Item", index "pt_walk_item_type_idx"']),
    ('constraint-listed-twice', _with(_append(('constraints',), GOOD['constraints'][0])),
     ['constraint "pt_walk_class_key": is listed twice']),
    ('check-listed-twice-on-one-table', _with(lambda p: p['constraints'].extend([
        dict(name='pt_walk_item_price_check', type='check', table='Item', expression='price > 0'),
        dict(name='pt_walk_item_price_check', type='check', table='Item', expression='price < 1000000')])),
     ['constraint "pt_walk_item_price_check": is listed twice (also as constraint #2): a constraint\'s name is unique '
      'among its table\'s constraints']),
    ('check-named-like-a-unique-constraint-of-its-table', _with(_append(('constraints',), dict(
        name='pt_walk_class_key', type='check', table='Class', expression='grade > 0'))),
     ['constraint "pt_walk_class_key": is listed twice (also as constraint #1): a constraint\'s name is unique among '
      'its table\'s constraints']),
    ('unique-constraint-name-on-two-tables', _with(_append(('constraints',), dict(
        name='pt_walk_class_key', type='unique', table='Job', columns=['title']))),
     ['constraint "pt_walk_class_key": is listed twice (also as constraint #1): a unique constraint\'s name is the '
      'name of its index, unique among the relations of its schema']),
    ('baseline-query-without-name', _with(_drop(QUERY + ('name',))), ['baseline query #1: needs a name']),
    ('baseline-query-without-sql', _with(_drop(QUERY + ('sql',))), ['baseline query "open_jobs": sql must be']),
    ('baseline-query-listed-twice', _with(_append(('baseline_queries',), GOOD['baseline_queries'][0])),
     ['baseline query "open_jobs": is listed twice']),
    ('baseline-parameter-missing', _with(_set(QUERY + ('params',), {})),
     ['baseline query "open_jobs": sql uses %(status)s but params gives no value']),
    ('baseline-parameter-unused', _with(_set(QUERY + ('params',), dict(status='OPEN', other=1))),
     ['baseline query "open_jobs": params gives other, which sql does not use']),
    ('baseline-parameter-a-list', _with(_set(QUERY + ('params',), dict(status=['OPEN']))),
     ['baseline query "open_jobs": parameter status must be a literal']),
    ('baseline-parameter-bad-query-key', _with(_set(QUERY + ('params',), dict(status=dict(sql='SELECT 1')))),
     ['baseline query "open_jobs": parameter status must be a literal or {query']),
    ('prisma-without-file', _with(_set(('prisma_migration',), dict(name='20240101000000_x'))),
     ['prisma_migration: file is required']),
    ('prisma-unknown-key', _with(_set(('prisma_migration',), dict(name='x', file='m.sql', path='m.sql'))),
     ['prisma_migration: unknown key(s) path']),
    ('trusted-not-a-list', _with(_set(('trusted',), 'util.f(text)')), ['trusted: trusted must be a list']),
    ('trusted-without-arguments', _with(_set(('trusted',), ['util.normalize'])),
     ['trusted: trusted function', 'needs its argument types']),
]

# Refused by the preflight modules, against the live catalog and data, still before any DDL.
CATALOG = [
    ('table-does-not-exist', _with(_set(JOB + ('name',), 'Jobs')), ['table public.Jobs does not exist']),
    ('column-does-not-exist', _with(_set(JOB_INDEX + ('columns',), ['teacherID'])),
     ['index "pt_walk_job_teacher_status_idx": column(s) "teacherID" do not exist in table public.Job']),
    ('schema-does-not-exist', _with(_set(('schema',), 'nope')),
     ['schema "nope" does not exist, so none of its tables (Job, Item) can be found']),
    ('method-does-not-exist', _with(_set(JOB_INDEX + ('method',), 'nosuch')),
     ['index "pt_walk_job_teacher_status_idx": access method "nosuch" does not exist']),
    ('where-unknown-column', _with(_set(JOB_INDEX + ('where',), '"closedAT" IS NULL')),
     ['index "pt_walk_job_teacher_status_idx": its where predicate', 'is refused by PostgreSQL', 'closedAT']),
    ('where-smuggles-statements', _with(_set(JOB_INDEX + ('where',), "\"status\" = E'\\'' ; COMMIT; DELETE FROM "
                                                                    "\"Job\"; SELECT (1")),
     ['index "pt_walk_job_teacher_status_idx": where predicate', 'is refused']),
    ('where-not-immutable', _with(_set(JOB_INDEX + ('where',), '"createdAt" > now()')),
     ['index "pt_walk_job_teacher_status_idx"', 'IMMUTABLE']),
    ('where-subquery', _with(_set(JOB_INDEX + ('where',), '"id" IN (SELECT "id" FROM "Item")')),
     ['index "pt_walk_job_teacher_status_idx": where predicate', 'subquery']),
    ('index-named-like-a-table', _with(_set(JOB_INDEX + ('name',), 'Item')),
     ['"public.Item" already exists and is not an index']),
    ('replace-a-primary-key-index', _with(lambda p: p['tables'][0]['indexes'][0].update(name='Job_pkey',
                                                                                        on_mismatch='replace')),
     ['index "public.Job_pkey" (its step on "public.Job_pkey_pgzd_prev"): DROP INDEX would be refused: index '
      'public.Job_pkey backs constraint "Job_pkey"', '[rule drop-index-of-constraint]']),
    ('unique-index-on-duplicates', _with(lambda p: p['tables'][0]['indexes'][0].update(columns=['teacherId'],
                                                                                        unique=True)),
     ['unique index "pt_walk_job_teacher_status_idx" UNIQUE (teacherId) on public.Job', 'duplicate key(s)']),
    ('constraint-table-does-not-exist', _with(_set(CONSTRAINT + ('table',), 'Classes')),
     ['constraint "pt_walk_class_key"', 'Classes']),
    ('constraint-column-does-not-exist', _with(_set(CONSTRAINT + ('columns',), ['name', 'grades'])),
     ['constraint "pt_walk_class_key"', 'grades']),
    ('constraint-on-duplicate-keys', _with(lambda p: p['constraints'][0].update(table='Job', columns=['teacherId'])),
     ['Duplicate keys block the planned unique constraint(s) pt_walk_class_key']),
    ('rename-of-a-non-text-column', _with(lambda p: p['constraints'][0].update(
        table='Job', columns=['status'], on_duplicates='rename')),
     ['constraint "pt_walk_class_key": on_duplicates=rename with these options is not possible', 'text']),
    ('keep-oldest-by-missing-column', _with(lambda p: p['constraints'][0].update(
        on_duplicates='rename', keep_oldest_by=['createdOn'])),
     ['constraint "pt_walk_class_key": on_duplicates=rename', 'createdOn']),
    ('keep-oldest-by-missing-column-on-fail', _with(lambda p: p['constraints'][0].update(keep_oldest_by=['created'])),
     ['constraint "pt_walk_class_key": on_duplicates=fail with these options is not possible', 'created']),
    ('baseline-query-deletes', _with(lambda p: p['baseline_queries'][0].update(params={}, sql=(
        'WITH gone AS (DELETE FROM "Job" RETURNING 1) SELECT count(*) FROM gone'))),
     ['baseline query "open_jobs" is refused', 'data-modifying statement (DELETE)']),
    ('baseline-query-smuggles-statements', _with(lambda p: p['baseline_queries'][0].update(params={}, sql=(
        "SELECT E'\\''; COMMIT; DELETE FROM \"Job\""))),
     ['baseline query "open_jobs" is refused', 'statements']),
    ('baseline-parameter-query-terminates', _with(_set(QUERY + ('params',), dict(status=dict(
        query='SELECT pg_terminate_backend(pid)::text FROM pg_stat_activity LIMIT 1')))),
     ['baseline query "open_jobs", parameter status: its query', 'is refused',
      'pg_terminate_backend(integer,bigint) is VOLATILE']),
    ('baseline-query-runs-sql-given-as-text', _with(lambda p: p['baseline_queries'][0].update(params={}, sql=(
        "SELECT count(*) FROM ts_stat('SELECT to_tsvector(title) FROM \"Job\"')"))),
     ['baseline query "open_jobs"', 'ts_stat(text) runs SQL given as text']),
    ('where-calls-an-unknown-function', _with(_set(JOB_INDEX + ('where',), 'no_such_function(1) = 1')),
     ['index "pt_walk_job_teacher_status_idx": its where predicate', 'is refused by PostgreSQL']),
    ('trusted-unknown-to-the-server', _with(_set(('trusted',), ['public.no_such_function(text)'])),
     ['trusted function "public.no_such_function(text)" is not one PostgreSQL knows here']),
    ('baseline-placeholder-in-quotes', _with(_set(QUERY + ('sql',), 'SELECT count(*) FROM "Job" WHERE "status" = '
                                                                   "'%(status)s'")),
     ['baseline query "open_jobs" is refused', '%(status)s at line 1, column 46 is inside a quoted literal']),
]

# Plan files that are not YAML at all, as text: the parser's own message, with where it stopped.
RAW = [
    ('plan-not-yaml', 'name: walk\ntables: [ {name: Job, indexes: [{name: pt_x_idx, columns: [id]}]\n',
     ['did not find expected', 'line 3, column 1']),
    ('plan-file-tabs', 'name: walk\ntables:\n\t- name: Job\n', ['found character', 'that cannot start any token']),
]

# Files that are not plans at all, given by mistake (-e plan=/etc/shadow): refused without showing their contents. Each
# secret listed in NOT_ECHOED must appear nowhere in the run's output for that file.
SHADOW = ('root:$6$pgzdsalt$ShadowHashSecret0123:19000:0:99999:7:::\n'
          'daemon:*:19000:0:99999:7:::\nbackup:$6$pgzdsalt$OtherHashSecret4567:19000:0:99999:7:::\n')
NOT_PLANS = [
    ('shadow-file', SHADOW, ['it is not a migration plan', 'none of its keys or values is shown']),
    ('secrets-mapping', 'db_password: Hunter2SecretValue\napi_token: tok_SecretToken99\n',
     ['it is not a migration plan', 'none of its keys or values is shown']),
    ('secret-in-a-yaml-tag', 'name: walk\ntables: !!python/object:SecretTagValue42 x\n',
     ['is not valid YAML', 'line 2, column 9']),
    ('binary-file', '\x7fELF\x02\x01\x01\x00\x00BinarySecretBytes\x00\x00', ['is not a UTF-8 text file']),
    ('file-too-large', 'name: walk\n' + ''.join('k%07d: LargeFileSecret\n' % n for n in range(60000)),
     ['more than a plan can be', 'it is not a migration plan']),
]
NOT_ECHOED = {
    'shadow-file': ['ShadowHashSecret0123', 'OtherHashSecret4567', 'root:', 'daemon:'],
    'secrets-mapping': ['Hunter2SecretValue', 'tok_SecretToken99', 'db_password', 'api_token'],
    'secret-in-a-yaml-tag': ['SecretTagValue42'],
    'binary-file': ['BinarySecretBytes', 'ELF'],
    'file-too-large': ['LargeFileSecret', 'k0000001'],
}

ALL = FORMAT + CATALOG + RAW + NOT_PLANS
