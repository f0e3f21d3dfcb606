# -*- coding: utf-8 -*-
"""The refusal rules (plugins/module_utils/plan/refusal_rules.py) against PostgreSQL itself, table-driven.

Each case of CASES first runs, on scratch tables in a schema of its own, the statement a plan would make the tool send,
and asserts PostgreSQL refuses it; then the preflight (the real module, through Ansible) gets the plan and must refuse
it first, naming the rule, with not one relation, index, constraint, NOT NULL flag or row changed and the victim
session alive (helpers.Guard). Cases run in a few preflight runs, grouped by what they share (migrate or rollback,
indexes or constraints, the role); each case is asserted on its own line of the message. A meta-test asserts every
rule of the table has a case here, so the rules cannot drift from PostgreSQL's.

Some rules also go through the real migrate.yml, with --check and for real. The false refusals (a foreign key to a key
whose other columns are INCLUDE columns, or to a unique index the plan builds first, in check mode too, a check on a
partitioned table, checks of one name on two tables) are migrated and rolled back for real. Check mode and the preflight run while another session holds uncommitted writes on
every table of a plan: neither may wait for it (any lock stronger than ROW EXCLUSIVE would).
"""

import collections

import psycopg2
import pytest
import yaml

import helpers

pytestmark = pytest.mark.integration

DATABASE = 'pgzd_refusal_rules'
ROLE = 'pgzd_rr_app'  # owns nothing it is asked to change: the ownership and privilege rules
SERVER = 'pgzd_rr_files'  # a file_fdw server, for a foreign table

rules = helpers.load_module_utils('plan.refusal_rules')

# One case: the rule it proves; the scratch objects (SQL, {s} is the case's schema); what PostgreSQL refuses, as
# [(statements, a fragment of its error)] (the statements before the last run in a transaction that is rolled back);
# the group (migrate or rollback, tables or constraints, with session_role ROLE or not); the plan's tables or
# constraints; the subject of the preflight's line (a fragment that names the entry).
Case = collections.namedtuple('Case', 'rule setup refused group entries subject')

TABLES, CONSTRAINTS = 'tables', 'constraints'
MIGRATE, ROLLBACK = 'present', 'absent'

PARENT = 'CREATE TABLE {s}.p (id int PRIMARY KEY, a int, b int);'
CHILD = 'CREATE TABLE {s}.c (id int PRIMARY KEY, pid int, pa int, pb int, t text, flag boolean);'
PARTITIONED = ('CREATE TABLE {s}.pt (id int NOT NULL, k int NOT NULL, j int NOT NULL) PARTITION BY LIST (k);'
               'CREATE TABLE {s}.pt1 PARTITION OF {s}.pt FOR VALUES IN (1);'
               'INSERT INTO {s}.pt VALUES (1, 1, 1), (2, 1, 2);')


def fk(name, columns, table, ref_columns, table_of='c', schema=None, **extra):
    references = dict(table=table, columns=ref_columns)
    if schema:
        references['schema'] = schema
    return dict(dict(name='{s}_' + name, type='foreign_key', table=table_of, schema='{s}', columns=columns,
                     references=references), **extra)


def index(table, name, columns, schema='{s}', **extra):
    return dict(name=table, schema=schema, indexes=[dict(dict(name=name, columns=columns), **extra)])


CASES = [
    # -- DDL on a system catalog, and on what the current user does not own ------------------------------------------
    Case('system-catalog', '', [(['CREATE INDEX CONCURRENTLY pgzd_rr_idx ON pg_catalog.pg_description (description)'],
                                 '"pg_description" is a system catalog')],
         (MIGRATE, TABLES, None), [index('pg_description', 'pgzd_rr_idx', ['description'], schema='pg_catalog')],
         'index "pg_catalog.pgzd_rr_idx"'),
    Case('system-catalog', '', [(['ALTER TABLE pg_catalog.pg_description ADD CONSTRAINT pgzd_rr_check CHECK (objoid > 0) '
                                  'NOT VALID'], '"pg_description" is a system catalog')],
         (MIGRATE, CONSTRAINTS, None), [dict(name='pgzd_rr_check', type='check', table='pg_description',
                                             schema='pg_catalog', expression='objoid > 0')], 'check "pgzd_rr_check"'),
    Case('table-owner', 'CREATE TABLE {s}.owned (id int, a int); GRANT SELECT ON {s}.owned TO %s;' % ROLE,
         [(['CREATE INDEX CONCURRENTLY owned_a_idx ON {s}.owned (a)'], 'must be owner of table owned')],
         (MIGRATE, TABLES, ROLE), [index('owned', 'owned_a_idx', ['a'])], 'index "{s}.owned_a_idx"'),
    Case('table-owner', 'CREATE TABLE {s}.owned (id int, a int); GRANT SELECT ON {s}.owned TO %s;' % ROLE,
         [(['ALTER TABLE {s}.owned ADD CONSTRAINT owned_a_nn CHECK (a IS NOT NULL) NOT VALID'],
           'must be owner of table owned')],
         (MIGRATE, CONSTRAINTS, ROLE), [dict(name='{s}_a_nn', type='not_null', table='owned', schema='{s}', column='a')],
         'not_null "{s}_a_nn"'),
    # -- what a statement can go on -------------------------------------------------------------------------------------
    Case('index-relkind', PARENT + 'CREATE VIEW {s}.v AS SELECT * FROM {s}.p;',
         [(['CREATE INDEX CONCURRENTLY v_a_idx ON {s}.v (a)'], 'cannot create index on relation "v"')],
         (MIGRATE, TABLES, None), [index('v', 'v_a_idx', ['a'])], 'index "{s}.v_a_idx"'),
    Case('index-relkind', "CREATE FOREIGN TABLE {s}.ft (id int, a int) SERVER %s OPTIONS (filename '/dev/null', "
                          "format 'csv');" % SERVER,
         [(['CREATE INDEX CONCURRENTLY ft_a_idx ON {s}.ft (a)'], 'cannot create index on relation "ft"')],
         (MIGRATE, TABLES, None), [index('ft', 'ft_a_idx', ['a'])], 'index "{s}.ft_a_idx"'),
    Case('constraint-relkind', PARENT + 'CREATE MATERIALIZED VIEW {s}.mv AS SELECT id, a FROM {s}.p;',
         [(['ALTER TABLE {s}.mv ADD CONSTRAINT mv_check CHECK (a > 0) NOT VALID'],
           'cannot be performed on relation "mv"')],
         (MIGRATE, CONSTRAINTS, None), [dict(name='{s}_check', type='check', table='mv', schema='{s}',
                                             expression='a > 0')], 'check "{s}_check"'),
    Case('constraint-relkind', PARENT + 'CREATE VIEW {s}.v AS SELECT * FROM {s}.p;',
         [(['ALTER TABLE {s}.v ADD CONSTRAINT v_nn CHECK (a IS NOT NULL) NOT VALID'],
           'cannot be performed on relation "v"')],
         (MIGRATE, CONSTRAINTS, None), [dict(name='{s}_nn', type='not_null', table='v', schema='{s}', column='a')],
         'not_null "{s}_nn"'),
    Case('key-constraint-relkind', PARENT + 'CREATE MATERIALIZED VIEW {s}.mv AS SELECT id, a FROM {s}.p;',
         [(['CREATE UNIQUE INDEX mv_id_key ON {s}.mv (id)',
            'ALTER TABLE {s}.mv ADD CONSTRAINT mv_id_key UNIQUE USING INDEX mv_id_key'],
           'cannot be performed on relation "mv"')],
         (MIGRATE, CONSTRAINTS, None), [dict(name='{s}_key', table='mv', schema='{s}', columns=['id'])],
         'unique constraint "{s}_key"'),
    Case('key-constraint-relkind', PARENT + 'CREATE MATERIALIZED VIEW {s}.mv AS SELECT id, a FROM {s}.p;',
         [(['ALTER TABLE {s}.mv ADD CONSTRAINT mv_fk FOREIGN KEY (a) REFERENCES {s}.p (id) NOT VALID'],
           'cannot be performed on relation "mv"')],
         (MIGRATE, CONSTRAINTS, None), [fk('fk', ['a'], 'p', ['id'], table_of='mv')], 'foreign key "{s}_fk"'),
    Case('unique-key-operator-class', 'CREATE TABLE {s}.doc (id int, body json, shape point);',
         [(['CREATE UNIQUE INDEX CONCURRENTLY doc_body_key ON {s}.doc (id, body)'],
           'data type json has no default operator class for access method "btree"')],
         (MIGRATE, CONSTRAINTS, None), [dict(name='{s}_key', table='doc', schema='{s}', columns=['id', 'body'])],
         'unique constraint "{s}_key"'),
    Case('unique-key-operator-class', 'CREATE TABLE {s}.doc (id int, body xml);',
         [(['CREATE UNIQUE INDEX CONCURRENTLY doc_body_key ON {s}.doc (body)'],
           'data type xml has no default operator class for access method "btree"')],
         (MIGRATE, CONSTRAINTS, None), [dict(name='{s}_key', table='doc', schema='{s}', columns=['body'])],
         'unique constraint "{s}_key"'),
    # -- partitioned tables ---------------------------------------------------------------------------------------------
    Case('unique-using-index-on-partitioned-table', PARTITIONED,
         [(['CREATE UNIQUE INDEX CONCURRENTLY pt_key ON {s}.pt (id, k)'],
           'cannot create index on partitioned table "pt" concurrently'),
          (['CREATE UNIQUE INDEX pt_key ON {s}.pt (id, k)', 'ALTER TABLE {s}.pt ADD CONSTRAINT pt_key UNIQUE USING INDEX '
                                                            'pt_key'], 'is not supported on partitioned tables')],
         (MIGRATE, CONSTRAINTS, None), [dict(name='{s}_key', table='pt', schema='{s}', columns=['id', 'k'])],
         'unique constraint "{s}_key"'),
    Case('unique-using-index-on-partitioned-table',
         PARTITIONED + 'CREATE TABLE {s}.pt2 PARTITION OF {s}.pt FOR VALUES IN (2) PARTITION BY LIST (j);'
                       'CREATE TABLE {s}.pt2a PARTITION OF {s}.pt2 DEFAULT;',
         [(['CREATE UNIQUE INDEX pt2_key ON {s}.pt2 (id, j)',
            'ALTER TABLE {s}.pt2 ADD CONSTRAINT pt2_key UNIQUE USING INDEX pt2_key'],
           'is not supported on partitioned tables')],
         (MIGRATE, CONSTRAINTS, None), [dict(name='{s}_key', table='pt2', schema='{s}', columns=['id', 'j'])],
         'unique constraint "{s}_key"'),
    Case('unique-index-partition-key', PARTITIONED,
         [(['CREATE UNIQUE INDEX pt_id_key ON ONLY {s}.pt (id)'], 'must include all partitioning columns')],
         (MIGRATE, TABLES, None), [index('pt', 'pt_id_key', ['id'], unique=True)], 'index "{s}.pt_id_key"'),
    Case('unique-index-partition-key', 'CREATE TABLE {s}.pe (id int) PARTITION BY LIST ((id % 2));'
                                       'CREATE TABLE {s}.pe0 PARTITION OF {s}.pe FOR VALUES IN (0);',
         [(['CREATE UNIQUE INDEX pe_id_key ON ONLY {s}.pe (id)'], 'unsupported UNIQUE constraint with partition key')],
         (MIGRATE, TABLES, None), [index('pe', 'pe_id_key', ['id'], unique=True)], 'index "{s}.pe_id_key"'),
    Case('foreign-key-not-valid-on-partitioned-table', PARENT + PARTITIONED,
         [(['ALTER TABLE {s}.pt ADD CONSTRAINT pt_fk FOREIGN KEY (id) REFERENCES {s}.p (id) NOT VALID'],
           'cannot add NOT VALID foreign key on partitioned table "pt"')],
         (MIGRATE, CONSTRAINTS, None), [fk('fk', ['id'], 'p', ['id'], table_of='pt')], 'foreign key "{s}_fk"'),
    Case('foreign-key-not-valid-on-partitioned-table',
         PARENT + PARTITIONED + 'CREATE TABLE {s}.pt2 PARTITION OF {s}.pt FOR VALUES IN (2) PARTITION BY LIST (j);',
         [(['ALTER TABLE {s}.pt2 ADD CONSTRAINT pt2_fk FOREIGN KEY (j) REFERENCES {s}.p (id) NOT VALID'],
           'cannot add NOT VALID foreign key on partitioned table "pt2"')],
         (MIGRATE, CONSTRAINTS, None), [fk('fk', ['j'], 'p', ['id'], table_of='pt2')], 'foreign key "{s}_fk"'),
    # -- what a foreign key references ----------------------------------------------------------------------------------
    Case('foreign-key-referenced-relkind', PARENT + CHILD + 'CREATE MATERIALIZED VIEW {s}.mv AS SELECT id FROM {s}.p;'
                                                            'CREATE UNIQUE INDEX mv_id ON {s}.mv (id);',
         [(['ALTER TABLE {s}.c ADD CONSTRAINT c_fk FOREIGN KEY (pid) REFERENCES {s}.mv (id) NOT VALID'],
           'referenced relation "mv" is not a table')],
         (MIGRATE, CONSTRAINTS, None), [fk('fk', ['pid'], 'mv', ['id'])], 'foreign key "{s}_fk"'),
    Case('foreign-key-referenced-relkind', PARENT + CHILD + 'CREATE VIEW {s}.v AS SELECT * FROM {s}.p;',
         [(['ALTER TABLE {s}.c ADD CONSTRAINT c_fk FOREIGN KEY (pid) REFERENCES {s}.v (id) NOT VALID'],
           'referenced relation "v" is not a table')],
         (MIGRATE, CONSTRAINTS, None), [fk('fk', ['pid'], 'v', ['id'])], 'foreign key "{s}_fk"'),
    Case('foreign-key-referenced-system-catalog', 'CREATE TABLE {s}.c (o oid);',
         [(['ALTER TABLE {s}.c ADD CONSTRAINT c_fk FOREIGN KEY (o) REFERENCES pg_catalog.pg_namespace (oid) NOT VALID'],
           '"pg_namespace" is a system catalog')],
         (MIGRATE, CONSTRAINTS, None), [fk('fk', ['o'], 'pg_namespace', ['oid'], schema='pg_catalog')],
         'foreign key "{s}_fk"'),
    Case('foreign-key-referenced-system-catalog', 'CREATE TABLE {s}.c (o oid);',
         [(['ALTER TABLE {s}.c ADD CONSTRAINT c_fk FOREIGN KEY (o) REFERENCES pg_catalog.pg_class (oid) NOT VALID'],
           '"pg_class" is a system catalog')],
         (MIGRATE, CONSTRAINTS, None), [fk('fk', ['o'], 'pg_class', ['oid'], schema='pg_catalog')],
         'foreign key "{s}_fk"'),
    Case('foreign-key-persistence', CHILD + 'CREATE UNLOGGED TABLE {s}.u (id int PRIMARY KEY);',
         [(['ALTER TABLE {s}.c ADD CONSTRAINT c_fk FOREIGN KEY (pid) REFERENCES {s}.u (id) NOT VALID'],
           'constraints on permanent tables may reference only permanent tables')],
         (MIGRATE, CONSTRAINTS, None), [fk('fk', ['pid'], 'u', ['id'])], 'foreign key "{s}_fk"'),
    Case('foreign-key-persistence', CHILD + 'CREATE TABLE {s}.up (id int NOT NULL, k int) PARTITION BY LIST (k);'
                                            'CREATE UNLOGGED TABLE {s}.up1 PARTITION OF {s}.up FOR VALUES IN (1);'
                                            'ALTER TABLE {s}.up1 ADD PRIMARY KEY (id);',
         [(['ALTER TABLE {s}.c ADD CONSTRAINT c_fk FOREIGN KEY (pid) REFERENCES {s}.up1 (id) NOT VALID'],
           'constraints on permanent tables may reference only permanent tables')],
         (MIGRATE, CONSTRAINTS, None), [fk('fk', ['pid'], 'up1', ['id'])], 'foreign key "{s}_fk"'),
    Case('foreign-key-referenced-key', PARENT + CHILD + 'CREATE UNIQUE INDEX p_a_key ON {s}.p (a) INCLUDE (b);',
         [(['ALTER TABLE {s}.c ADD CONSTRAINT c_fk FOREIGN KEY (pa, pb) REFERENCES {s}.p (a, b) NOT VALID'],
           'there is no unique constraint matching given keys for referenced table "p"')],
         (MIGRATE, CONSTRAINTS, None), [fk('fk', ['pa', 'pb'], 'p', ['a', 'b'])], 'foreign key "{s}_fk"'),
    Case('foreign-key-referenced-key', PARENT + CHILD + 'CREATE UNIQUE INDEX p_b_key ON {s}.p (b) WHERE b > 0;',
         [(['ALTER TABLE {s}.c ADD CONSTRAINT c_fk FOREIGN KEY (pb) REFERENCES {s}.p (b) NOT VALID'],
           'there is no unique constraint matching given keys for referenced table "p"')],
         (MIGRATE, CONSTRAINTS, None), [fk('fk', ['pb'], 'p', ['b'])], 'foreign key "{s}_fk"'),
    Case('foreign-key-deferrable-key', PARENT + CHILD + 'ALTER TABLE {s}.p ADD CONSTRAINT p_b_key UNIQUE (b) DEFERRABLE;',
         [(['ALTER TABLE {s}.c ADD CONSTRAINT c_fk FOREIGN KEY (pb) REFERENCES {s}.p (b) NOT VALID'],
           'cannot use a deferrable unique constraint for referenced table "p"')],
         (MIGRATE, CONSTRAINTS, None), [fk('fk', ['pb'], 'p', ['b'])], 'foreign key "{s}_fk"'),
    Case('foreign-key-deferrable-key', CHILD + 'CREATE TABLE {s}.d (id int, k int, PRIMARY KEY (id, k) DEFERRABLE '
                                               'INITIALLY DEFERRED);',
         [(['ALTER TABLE {s}.c ADD CONSTRAINT c_fk FOREIGN KEY (pa, pb) REFERENCES {s}.d (k, id) NOT VALID'],
           'cannot use a deferrable unique constraint for referenced table "d"')],
         (MIGRATE, CONSTRAINTS, None), [fk('fk', ['pa', 'pb'], 'd', ['k', 'id'])], 'foreign key "{s}_fk"'),
    Case('foreign-key-column-types', PARENT + CHILD,
         [(['ALTER TABLE {s}.c ADD CONSTRAINT c_fk FOREIGN KEY (t) REFERENCES {s}.p (id) NOT VALID'],
           'are of incompatible types: text and integer')],
         (MIGRATE, CONSTRAINTS, None), [fk('fk', ['t'], 'p', ['id'])], 'foreign key "{s}_fk"'),
    Case('foreign-key-column-types', PARENT + CHILD,
         [(['ALTER TABLE {s}.c ADD CONSTRAINT c_fk FOREIGN KEY (flag) REFERENCES {s}.p (id) NOT VALID'],
           'are of incompatible types: boolean and integer')],
         (MIGRATE, CONSTRAINTS, None), [fk('fk', ['flag'], 'p', ['id'])], 'foreign key "{s}_fk"'),
    Case('foreign-key-references-privilege', PARENT + CHILD + 'ALTER TABLE {s}.c OWNER TO %s; GRANT SELECT ON {s}.p '
                                                              'TO %s;' % (ROLE, ROLE),
         [(['ALTER TABLE {s}.c ADD CONSTRAINT c_fk FOREIGN KEY (pid) REFERENCES {s}.p (id) NOT VALID'],
           'permission denied for table p')],
         (MIGRATE, CONSTRAINTS, ROLE), [fk('fk', ['pid'], 'p', ['id'])], 'foreign key "{s}_fk"'),
    Case('foreign-key-references-privilege', PARENT + CHILD + 'ALTER TABLE {s}.c OWNER TO %s; GRANT SELECT, '
                                                              'REFERENCES (a) ON {s}.p TO %s;' % (ROLE, ROLE),
         [(['ALTER TABLE {s}.c ADD CONSTRAINT c_fk FOREIGN KEY (pid) REFERENCES {s}.p (id) NOT VALID'],
           'permission denied for table p')],
         (MIGRATE, CONSTRAINTS, ROLE), [fk('fk', ['pid'], 'p', ['id'])], 'foreign key "{s}_fk"'),
    Case('foreign-key-generated-column-action',
         PARENT + 'CREATE TABLE {s}.g (id int, pid int GENERATED ALWAYS AS (id * 2) STORED);',
         [(['ALTER TABLE {s}.g ADD CONSTRAINT g_fk FOREIGN KEY (pid) REFERENCES {s}.p (id) ON DELETE SET NULL '
            'NOT VALID'], 'invalid ON DELETE action for foreign key constraint containing generated column')],
         (MIGRATE, CONSTRAINTS, None), [fk('fk', ['pid'], 'p', ['id'], table_of='g', on_delete='SET NULL')],
         'foreign key "{s}_fk"'),
    Case('foreign-key-generated-column-action',
         PARENT + 'CREATE TABLE {s}.g (id int, pid int GENERATED ALWAYS AS (id * 2) STORED);',
         [(['ALTER TABLE {s}.g ADD CONSTRAINT g_fk FOREIGN KEY (pid) REFERENCES {s}.p (id) ON UPDATE CASCADE '
            'NOT VALID'], 'invalid ON UPDATE action for foreign key constraint containing generated column')],
         (MIGRATE, CONSTRAINTS, None), [fk('fk', ['pid'], 'p', ['id'], table_of='g', on_update='CASCADE')],
         'foreign key "{s}_fk"'),
    # -- a rollback's DROP NOT NULL and DROP CONSTRAINT -----------------------------------------------------------------
    Case('drop-not-null-primary-key', PARENT,
         [(['ALTER TABLE {s}.p ALTER COLUMN id DROP NOT NULL'], 'column "id" is in a primary key')],
         (ROLLBACK, CONSTRAINTS, None), [dict(name='{s}_nn', type='not_null', table='p', schema='{s}', column='id')],
         'not_null "{s}_nn"'),
    Case('drop-not-null-primary-key', 'CREATE TABLE {s}.p2 (id int, k int, PRIMARY KEY (id, k));',
         [(['ALTER TABLE {s}.p2 ALTER COLUMN k DROP NOT NULL'], 'column "k" is in a primary key')],
         (ROLLBACK, CONSTRAINTS, None), [dict(name='{s}_nn', type='not_null', table='p2', schema='{s}', column='k')],
         'not_null "{s}_nn"'),
    Case('drop-not-null-replica-identity',
         'CREATE TABLE {s}.r (id int NOT NULL); CREATE UNIQUE INDEX r_id ON {s}.r (id);'
         'ALTER TABLE {s}.r REPLICA IDENTITY USING INDEX r_id;',
         [(['ALTER TABLE {s}.r ALTER COLUMN id DROP NOT NULL'], 'column "id" is in index used as replica identity')],
         (ROLLBACK, CONSTRAINTS, None), [dict(name='{s}_nn', type='not_null', table='r', schema='{s}', column='id')],
         'not_null "{s}_nn"'),
    Case('drop-not-null-replica-identity',
         'CREATE TABLE {s}.r (id int NOT NULL, k int NOT NULL); CREATE UNIQUE INDEX r_id_k ON {s}.r (id, k);'
         'ALTER TABLE {s}.r REPLICA IDENTITY USING INDEX r_id_k;',
         [(['ALTER TABLE {s}.r ALTER COLUMN k DROP NOT NULL'], 'column "k" is in index used as replica identity')],
         (ROLLBACK, CONSTRAINTS, None), [dict(name='{s}_nn', type='not_null', table='r', schema='{s}', column='k')],
         'not_null "{s}_nn"'),
    Case('drop-not-null-identity', 'CREATE TABLE {s}.i (id int GENERATED ALWAYS AS IDENTITY, a int);',
         [(['ALTER TABLE {s}.i ALTER COLUMN id DROP NOT NULL'], 'is an identity column')],
         (ROLLBACK, CONSTRAINTS, None), [dict(name='{s}_nn', type='not_null', table='i', schema='{s}', column='id')],
         'not_null "{s}_nn"'),
    Case('drop-not-null-identity', 'CREATE TABLE {s}.i (a int, id bigint GENERATED BY DEFAULT AS IDENTITY);',
         [(['ALTER TABLE {s}.i ALTER COLUMN id DROP NOT NULL'], 'is an identity column')],
         (ROLLBACK, CONSTRAINTS, None), [dict(name='{s}_nn', type='not_null', table='i', schema='{s}', column='id')],
         'not_null "{s}_nn"'),
    Case('drop-not-null-partition', PARTITIONED,
         [(['ALTER TABLE {s}.pt1 ALTER COLUMN j DROP NOT NULL'], 'column "j" is marked NOT NULL in parent table')],
         (ROLLBACK, CONSTRAINTS, None), [dict(name='{s}_nn', type='not_null', table='pt1', schema='{s}', column='j')],
         'not_null "{s}_nn"'),
    Case('drop-not-null-partition',
         PARTITIONED + 'CREATE TABLE {s}.pt2 PARTITION OF {s}.pt FOR VALUES IN (2) PARTITION BY LIST (j);'
                       'CREATE TABLE {s}.pt2a PARTITION OF {s}.pt2 DEFAULT;',
         [(['ALTER TABLE {s}.pt2a ALTER COLUMN id DROP NOT NULL'], 'column "id" is marked NOT NULL in parent table')],
         (ROLLBACK, CONSTRAINTS, None), [dict(name='{s}_nn', type='not_null', table='pt2a', schema='{s}', column='id')],
         'not_null "{s}_nn"'),
    Case('drop-inherited-constraint', PARTITIONED + 'ALTER TABLE {s}.pt ADD CONSTRAINT {s}_check CHECK (id > 0);',
         [(['ALTER TABLE {s}.pt1 DROP CONSTRAINT {s}_check'], 'cannot drop inherited constraint')],
         (ROLLBACK, CONSTRAINTS, None), [dict(name='{s}_check', type='check', table='pt1', schema='{s}',
                                              expression='id > 0')], 'check "{s}_check"'),
    Case('drop-inherited-constraint', PARENT + PARTITIONED + 'INSERT INTO {s}.p VALUES (1), (2);'
                                                             'ALTER TABLE {s}.pt ADD CONSTRAINT {s}_fk FOREIGN KEY (id) '
                                                             'REFERENCES {s}.p (id);',
         [(['ALTER TABLE {s}.pt1 DROP CONSTRAINT {s}_fk'], 'cannot drop inherited constraint')],
         (ROLLBACK, CONSTRAINTS, None), [fk('fk', ['id'], 'p', ['id'], table_of='pt1')], 'foreign key "{s}_fk"'),
    Case('drop-with-dependent-foreign-keys', 'CREATE TABLE {s}.q (id int, CONSTRAINT {s}_key UNIQUE (id));'
                                             'CREATE TABLE {s}.qc (qid int REFERENCES {s}.q (id));',
         [(['ALTER TABLE {s}.q DROP CONSTRAINT {s}_key'], 'because other objects depend on it')],
         (ROLLBACK, CONSTRAINTS, None), [dict(name='{s}_key', table='q', schema='{s}', columns=['id'])],
         'unique constraint "{s}_key"'),
    Case('drop-with-dependent-foreign-keys', 'CREATE TABLE {s}.q (id int); CREATE UNIQUE INDEX q_id_key ON {s}.q (id);'
                                             'CREATE TABLE {s}.qc (qid int REFERENCES {s}.q (id));',
         [(['DROP INDEX CONCURRENTLY {s}.q_id_key'], 'because other objects depend on it')],
         (ROLLBACK, TABLES, None), [index('q', 'q_id_key', ['id'], unique=True)], 'index "{s}.q_id_key"'),
    # -- indexes a drop cannot drop -------------------------------------------------------------------------------------
    Case('drop-index-of-constraint', 'CREATE TABLE {s}.t (id int, a int, CONSTRAINT t_a_key UNIQUE (a));',
         [(['DROP INDEX CONCURRENTLY {s}.t_a_key'], 'because constraint t_a_key on table')],
         (ROLLBACK, TABLES, None), [index('t', 't_a_key', ['a'])], 'index "{s}.t_a_key"'),
    Case('drop-index-of-constraint', 'CREATE TABLE {s}.t (id int PRIMARY KEY, a int);',
         [(['DROP INDEX CONCURRENTLY {s}.t_pkey'], 'because constraint t_pkey on table')],
         (MIGRATE, TABLES, None), [index('t', 't_pkey', ['id', 'a'], on_mismatch='replace')], 'index "{s}.t_pkey"'),
    Case('drop-attached-index', PARTITIONED + 'CREATE INDEX pt1_k ON {s}.pt1 (k); CREATE INDEX pt_k ON {s}.pt (k);',
         [(['DROP INDEX CONCURRENTLY {s}.pt1_k'], '.pt_k requires it')],
         (MIGRATE, TABLES, None), [index('pt1', 'pt1_k', ['k', 'id'], on_mismatch='replace')], 'index "{s}.pt1_k"'),
    Case('drop-attached-index', PARTITIONED + 'CREATE INDEX pt1_k ON {s}.pt1 (k); CREATE INDEX pt_k ON {s}.pt (k);',
         [(['DROP INDEX CONCURRENTLY {s}.pt1_k'], '.pt_k requires it')],
         (ROLLBACK, TABLES, None), [index('pt1', 'pt1_k', ['k'])], 'index "{s}.pt1_k"'),
    # -- names ----------------------------------------------------------------------------------------------------------
    Case('plan-names-unique', PARTITIONED + 'CREATE TABLE {s}.t (id int, a int);',
         [(['CREATE INDEX pti_pt1 ON {s}.pt1 (id)', 'CREATE INDEX pti_pt1 ON {s}.t (a)'],
           'relation "pti_pt1" already exists')],
         (MIGRATE, TABLES, None), [index('pt', 'pti', ['id']), index('t', 'pti_pt1', ['a'])], 'relation "{s}.pti_pt1"'),
    Case('plan-names-unique', 'CREATE TABLE {s}.t (id int, a int); CREATE INDEX ti ON {s}.t (a);'
                              'CREATE TABLE {s}.t2 (x int);',
         [(['CREATE INDEX ti_pgzd_next ON {s}.t (a, id)', 'CREATE INDEX ti_pgzd_next ON {s}.t2 (x)'],
           'relation "ti_pgzd_next" already exists')],
         (MIGRATE, TABLES, None), [index('t', 'ti', ['a', 'id'], on_mismatch='replace'),
                                   index('t2', 'ti_pgzd_next', ['x'])], 'relation "{s}.ti_pgzd_next"'),
]
GROUPS = sorted(set(case.group for case in CASES), key=str)


def schema_of(position):
    return 'pgzd_rr_%02d' % position


def fill(value, schema):
    """C(value) (SQL, a plan entry) with the case's schema in place of {s}."""
    if isinstance(value, str):
        return value.replace('{s}', schema)
    if isinstance(value, list):
        return [fill(item, schema) for item in value]
    if isinstance(value, dict):
        return dict((key, fill(item, schema)) for key, item in value.items())
    return value


@pytest.fixture(scope='module')
def scratch(file_database):
    """The file's database with a role that owns nothing and a foreign server; both gone after the file."""
    conn = file_database['conn']
    helpers.query(conn, 'CREATE EXTENSION IF NOT EXISTS file_fdw')
    helpers.query(conn, 'CREATE SERVER %s FOREIGN DATA WRAPPER file_fdw' % SERVER)
    helpers.query(conn, "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '%s') THEN "
                        "CREATE ROLE %s NOLOGIN; END IF; END $$" % (ROLE, ROLE))
    yield file_database
    helpers.query(conn, 'DROP OWNED BY %s CASCADE' % ROLE)
    helpers.query(conn, 'DROP ROLE %s' % ROLE)


def set_up(conn, cases):
    """Each case's scratch objects in a schema of its own; returns [(schema, case)]."""
    made = []
    for position, case in cases:
        schema = schema_of(position)
        helpers.query(conn, 'DROP SCHEMA IF EXISTS %s CASCADE' % schema)
        helpers.query(conn, 'CREATE SCHEMA %s' % schema)
        helpers.query(conn, 'GRANT USAGE ON SCHEMA %s TO %s' % (schema, ROLE))
        if case.setup:
            helpers.query(conn, fill(case.setup, schema))
        made.append((schema, case))
    return made


def attribute(conn, kind, entries, plan='plan'):
    """Ledger rows of C(plan) for what the rollback entries name, as they are now: a rollback undoes only what the
    ledger attributes to its plan, so a rule of a rollback is reached only for what a run of the plan made (or what
    a wrong adoption attributed to it: the rules are the guard behind the ledger)."""
    for entry in entries:
        if kind == TABLES:
            for planned in entry['indexes']:
                rows = helpers.query(conn, 'SELECT pg_catalog.pg_get_indexdef(c.oid) FROM pg_catalog.pg_class c JOIN '
                                           'pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s '
                                           'AND c.relname = %s', (entry['schema'], planned['name']))
                if rows:
                    helpers.record_in_ledger(conn, 'index', entry['name'], planned['name'], rows[0][0], plan=plan,
                                             schema=entry['schema'])
        elif entry.get('type') == 'not_null':
            helpers.record_in_ledger(conn, 'not_null', entry['table'], entry['column'], 'NOT NULL', plan=plan,
                                     schema=entry['schema'], prior=dict(nullable=True))
        else:
            rows = helpers.query(conn, 'SELECT pg_catalog.pg_get_constraintdef(con.oid) FROM pg_catalog.pg_constraint '
                                       'con JOIN pg_catalog.pg_class t ON t.oid = con.conrelid JOIN '
                                       'pg_catalog.pg_namespace n ON n.oid = t.relnamespace WHERE n.nspname = %s AND '
                                       't.relname = %s AND con.conname = %s',
                                 (entry['schema'], entry['table'], entry['name']))
            if rows:
                helpers.record_in_ledger(conn, 'constraint', entry['table'], entry['name'], rows[0][0], plan=plan,
                                         schema=entry['schema'])


def tear_down(conn, made):
    for schema, dummy_ in made:
        helpers.query(conn, 'DROP SCHEMA IF EXISTS %s CASCADE' % schema)


def postgres_refuses(conn, statements, fragment, role=None):
    """Run C(statements) for real (all but the last in a transaction rolled back; a CONCURRENTLY one alone) and assert
    PostgreSQL refuses the last with an error holding C(fragment)."""
    alone = len(statements) == 1 and 'CONCURRENTLY' in statements[0]
    with conn.cursor() as cursor:
        cursor.execute('SET ROLE %s' % role if role else 'SELECT 1')
        if not alone:
            cursor.execute('BEGIN')
        try:
            for statement in statements[:-1]:
                cursor.execute(statement)
            with pytest.raises(psycopg2.Error) as refused:
                cursor.execute(statements[-1])
        finally:
            if not alone:
                cursor.execute('ROLLBACK')
            cursor.execute('RESET ROLE')
    assert fragment in str(refused.value), (statements[-1], str(refused.value))


def preflight(database, check=False, **args):
    """The real preflight module through Ansible, without the migration lock (a plan accepted by mistake must not
    leave a lock holder behind)."""
    return helpers.run_ansible_module('postgresql_migration_preflight', dict(database['login'], lock=False, **args),
                                      check=check)


def test_every_rule_has_a_case_proven_against_postgresql():
    proven = set(case.rule for case in CASES)
    assert sorted(set(rule.id for rule in rules.RULES) - proven) == []
    assert sorted(proven - set(rules.RULES_BY_ID)) == []
    # Classes, not single strings: two payloads for each rule at least.
    assert sorted(rule for rule in proven if sum(case.rule == rule for case in CASES) < 2) == []


@pytest.mark.parametrize('group', GROUPS, ids=['-'.join(str(part) for part in group) for group in GROUPS])
def test_postgresql_refuses_each_statement_and_the_preflight_refuses_the_plan_first_naming_the_rule(scratch, group):
    conn = scratch['conn']
    state, kind, role = group
    cases = [(position, case) for position, case in enumerate(CASES) if case.group == group]
    made = set_up(conn, cases)
    try:
        for schema, case in made:
            for statements, fragment in case.refused:
                postgres_refuses(conn, fill(statements, schema), fragment, role)
        guard = helpers.Guard(conn, lambda: helpers.connect(scratch['cluster'], DATABASE))
        try:
            args = dict(state=state, tables=[], constraints=[])
            for schema, case in made:
                args[kind].extend(fill(case.entries, schema))
            if state == ROLLBACK:
                attribute(conn, kind, args[kind])
            if role:
                args['session_role'] = role
            result = preflight(scratch, **args)
            guard.assert_untouched('the preflight of %s' % (group,))
        finally:
            guard.close()
    finally:
        tear_down(conn, made)
        helpers.query(conn, 'DROP SCHEMA IF EXISTS pgzd_audit CASCADE')
    assert result.get('failed') is True and result['changed'] is False, result
    assert 'nothing was changed' in result['msg']
    lines = result['msg'].splitlines()
    missing = []
    for schema, case in made:
        subject, tag = fill(case.subject, schema), '[rule %s]' % case.rule
        if not any(subject in line and tag in line for line in lines):
            missing.append('%s %s' % (subject, tag))
    assert missing == [], '\n'.join(missing) + '\n' + result['msg']


# -- through migrate.yml ----------------------------------------------------------------------------------------------

def playbook(database, tmp_path, playbook_name, plan, options=(), **extra):
    path = tmp_path / ('%s.yml' % plan['name'])
    path.write_text(yaml.safe_dump(plan))
    variables = dict(local_cluster_dir=database['cluster']['dir'], pg_port=database['cluster']['port'],
                     pg_database=DATABASE, pgzd_plan=str(path), pgzd_artifacts_dir=str(tmp_path / 'artifacts'),
                     backup_enabled='false')
    variables.update(extra)
    return helpers.run_playbook('playbooks/%s' % playbook_name, variables, options=list(options))


REFUSED_PLANS = [
    # A foreign key to a DEFERRABLE key, a unique constraint on a partitioned table.
    (PARENT + CHILD + PARTITIONED + 'ALTER TABLE {s}.p ADD CONSTRAINT p_b_key UNIQUE (b) DEFERRABLE;',
     dict(name='refused_constraints', schema='{s}', tables=[], constraints=[
         dict(name='c_pt_key', table='pt', columns=['id', 'k']),
         dict(name='c_pb_fkey', type='foreign_key', table='c', columns=['pb'], references=dict(table='p', columns=['b']))]),
     ['[rule unique-using-index-on-partitioned-table]', '[rule foreign-key-deferrable-key]']),
    # on_mismatch: replace of an index attached to a partitioned index, a partition index's name taken by another entry.
    (PARTITIONED + 'CREATE TABLE {s}.t (id int, a int); CREATE INDEX pt1_k ON {s}.pt1 (k); CREATE INDEX pt_k ON {s}.pt (k);',
     dict(name='refused_indexes', schema='{s}', tables=[
         dict(name='pt1', indexes=[dict(name='pt1_k', columns=['k', 'id'], on_mismatch='replace')]),
         dict(name='pt', indexes=[dict(name='pti', columns=['id'])]),
         dict(name='t', indexes=[dict(name='pti_pt1', columns=['a'])])]),
     ['[rule drop-attached-index]', '[rule plan-names-unique]']),
]


@pytest.mark.parametrize('options', [['--check'], []], ids=['check', 'real'])
@pytest.mark.parametrize('setup, plan, tags', REFUSED_PLANS, ids=['constraints', 'indexes'])
def test_migrate_refuses_before_any_ddl(scratch, tmp_path, setup, plan, tags, options):
    conn = scratch['conn']
    made = set_up(conn, [(90, Case('', setup, [], None, [], ''))])
    schema = made[0][0]
    try:
        guard = helpers.Guard(conn, lambda: helpers.connect(scratch['cluster'], DATABASE))
        try:
            run = playbook(scratch, tmp_path, 'migrate.yml', fill(plan, schema), options)
            guard.assert_untouched('migrate.yml %s' % ' '.join(options))
        finally:
            guard.close()
    finally:
        tear_down(conn, made)
    assert run.returncode != 0, run.stdout[-3000:]
    for tag in tags:
        assert tag in run.stdout, (tag, run.stdout[-4000:])
    assert 'nothing was changed' in run.stdout


# -- what PostgreSQL accepts is not refused ---------------------------------------------------------------------------

ACCEPTED = (PARENT + CHILD + PARTITIONED +
            'CREATE UNIQUE INDEX p_a_key ON {s}.p (a) INCLUDE (b);'
            'CREATE TABLE {s}.t1 (id int PRIMARY KEY, x int); CREATE TABLE {s}.t2 (id int PRIMARY KEY, y int);'
            'CREATE UNLOGGED TABLE {s}.log (id int, pid int);'
            'INSERT INTO {s}.p VALUES (1, 10, 100), (2, 20, 200); INSERT INTO {s}.c (id, pid, pa) VALUES (1, 1, 10);'
            'INSERT INTO {s}.t1 VALUES (1, 1); INSERT INTO {s}.t2 VALUES (1, 1); INSERT INTO {s}.log VALUES (1, 2);')
ACCEPTED_PLAN = dict(name='accepted', schema='{s}', tables=[
    dict(name='p', indexes=[dict(name='p_b_key', columns=['b'], unique=True)])], constraints=[
    # A key of (a) whose index INCLUDEs b: PostgreSQL accepts a foreign key to (a).
    dict(name='c_pa_fkey', type='foreign_key', table='c', columns=['pa'], references=dict(table='p', columns=['a'])),
    # A key the index phase builds first: in check mode too, where it is not built.
    dict(name='c_pb_fkey', type='foreign_key', table='c', columns=['pb'], references=dict(table='p', columns=['b'])),
    # NOT VALID + VALIDATE on a partitioned table.
    dict(name='pt_j_check', type='check', table='pt', expression='j > 0'),
    # Check names are per table.
    dict(name='positive', type='check', table='t1', expression='x > 0'),
    dict(name='positive', type='check', table='t2', expression='y > 0'),
    # An unlogged table may reference a permanent one.
    dict(name='log_pid_fkey', type='foreign_key', table='log', columns=['pid'], references=dict(table='p',
                                                                                                 columns=['id']))])
ACCEPTED_CONSTRAINTS = [('c', 'c_pa_fkey'), ('c', 'c_pb_fkey'), ('log', 'log_pid_fkey'), ('pt', 'pt_j_check'), ('pt1', 'pt_j_check'),
                        ('t1', 'positive'), ('t2', 'positive')]


def constraints_of(conn, schema):
    return helpers.query(conn, """
        SELECT t.relname::text, con.conname::text, con.convalidated FROM pg_catalog.pg_constraint con
        JOIN pg_catalog.pg_class t ON t.oid = con.conrelid JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace
        WHERE n.nspname = %s AND con.contype IN ('f', 'c') ORDER BY 1, 2""", (schema,))


def test_what_postgresql_accepts_is_migrated_and_rolled_back(scratch, tmp_path):
    conn = scratch['conn']
    made = set_up(conn, [(91, Case('', ACCEPTED, [], None, [], ''))])
    schema = made[0][0]
    plan = fill(ACCEPTED_PLAN, schema)
    try:
        guard = helpers.Guard(conn, lambda: helpers.connect(scratch['cluster'], DATABASE))
        try:
            checked = playbook(scratch, tmp_path, 'migrate.yml', plan, ['--check'])
            assert checked.returncode == 0, checked.stdout[-4000:]
            guard.assert_untouched('migrate.yml --check')
            migrated = playbook(scratch, tmp_path, 'migrate.yml', plan)
            assert migrated.returncode == 0, migrated.stdout[-4000:]
            assert constraints_of(conn, schema) == [(table, name, True) for table, name in ACCEPTED_CONSTRAINTS]
            rolled_back = playbook(scratch, tmp_path, 'rollback.yml', plan)
            assert rolled_back.returncode == 0, rolled_back.stdout[-4000:]
            assert constraints_of(conn, schema) == []
            guard.assert_untouched('migrate.yml then rollback.yml')
        finally:
            guard.close()
    finally:
        tear_down(conn, made)


# -- check mode and the preflight block no writer ---------------------------------------------------------------------

LOCKS = (PARENT + CHILD + PARTITIONED +
         'INSERT INTO {s}.p VALUES (1, 10, 100), (2, 20, 200); INSERT INTO {s}.c (id, pid, pa, t) VALUES (1, 1, 10, \'x\');')
LOCKS_PLAN = dict(name='locks', schema='{s}', tables=[
    dict(name='c', indexes=[dict(name='c_t_idx', columns=['t'], where='t IS NOT NULL'),
                            dict(name='c_pid_idx', columns=['pid'])]),
    dict(name='pt', indexes=[dict(name='pt_j_idx', columns=['j'])])], constraints=[
    dict(name='p_b_key', table='p', columns=['b']),
    dict(name='c_pid_fkey', type='foreign_key', table='c', columns=['pid'], references=dict(table='p', columns=['id'])),
    dict(name='p_a_check', type='check', table='p', expression='a > 0'),
    dict(name='c_t_not_null', type='not_null', table='c', column='t'),
    dict(name='pt_id_check', type='check', table='pt', expression='id > 0')])


def test_check_mode_and_the_preflight_wait_for_no_writer(scratch, tmp_path):
    conn = scratch['conn']
    made = set_up(conn, [(92, Case('', LOCKS, [], None, [], ''))])
    schema = made[0][0]
    plan = fill(LOCKS_PLAN, schema)
    writer = helpers.connect(scratch['cluster'], DATABASE, autocommit=False)
    try:
        # Uncommitted writes on every table of the plan: ROW EXCLUSIVE on each, row locks on the rows written. A
        # SHARE (or stronger) lock of the tool would wait for them, and give up after its lock_timeout.
        for table in ('p', 'c', 'pt'):
            helpers.query(writer, 'UPDATE %s.%s SET id = id WHERE id = 1' % (schema, table))
        held = helpers.query(conn, """
            SELECT c.relname::text FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_class c ON c.oid = l.relation
            JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = %s AND l.mode = 'RowExclusiveLock' AND l.granted AND c.relkind IN ('r', 'p')
            ORDER BY 1""", (schema,))
        assert [row[0] for row in held] == ['c', 'p', 'pt', 'pt1']
        guard = helpers.Guard(conn, lambda: helpers.connect(scratch['cluster'], DATABASE))
        try:
            checked = playbook(scratch, tmp_path, 'migrate.yml', plan, ['--check'])
            assert checked.returncode == 0, checked.stdout[-5000:]
            assert 'CREATE INDEX CONCURRENTLY IF NOT EXISTS "c_t_idx"' in checked.stdout
            proven = playbook(scratch, tmp_path, 'migrate.yml', plan, ['--tags', 'preflight'])
            assert proven.returncode == 0, proven.stdout[-5000:]
            assert 'Nothing to do in the phases selected' in proven.stdout
            guard.assert_untouched('migrate.yml --check and --tags preflight under open writes')
        finally:
            guard.close()
        assert helpers.query(writer, 'SELECT count(*) FROM %s.p' % schema) == [(2,)]  # its transaction is intact
    finally:
        writer.close()
        tear_down(conn, made)


# -- a replacement's rollback cannot be stopped by keys duplicated since ----------------------------------------------

def test_a_rollback_that_would_build_a_replaced_unique_index_over_duplicates_is_refused_first(scratch):
    # on_mismatch: replace swapped a unique index for a non-unique one; rows with duplicate keys came in since. The
    # rollback builds the unique definition again from the record: PostgreSQL would refuse that build after the
    # rollback's first steps, on every rerun. The preflight counts the keys first.
    conn = scratch['conn']
    made = set_up(conn, [(93, Case('', 'CREATE TABLE {s}.u (id int PRIMARY KEY, k int);'
                                       'INSERT INTO {s}.u SELECT g, g FROM generate_series(1, 20) g;'
                                       'CREATE UNIQUE INDEX u_k ON {s}.u (k);', [], None, [], ''))])
    schema = made[0][0]
    entry = dict(name='u', schema=schema, indexes=[dict(name='u_k', columns=['k', 'id'], on_mismatch='replace')])
    try:
        replaced = helpers.run_ansible_module('postgresql_online_index', dict(
            scratch['login'], schema=schema, table='u', indexes=entry['indexes']))
        assert replaced.get('failed') is not True and replaced['indexes'][0]['action'] == 'replaced', replaced
        helpers.query(conn, 'INSERT INTO %s.u VALUES (21, 7), (22, 7)' % schema)
        postgres_refuses(conn, ['CREATE UNIQUE INDEX u_k_again ON %s.u (k)' % schema], 'could not create unique index')
        guard = helpers.Guard(conn, lambda: helpers.connect(scratch['cluster'], DATABASE))
        try:
            # The module ran alone, as plan "manual": its ledger rows are that plan's.
            refused = preflight(scratch, state='absent', tables=[entry], plan_name='manual')
            guard.assert_untouched('the rollback preflight')
        finally:
            guard.close()
        assert refused.get('failed') is True and 'nothing was changed' in refused['msg'], refused
        assert 'unique index "u_k" UNIQUE (k) on %s.u: 1 duplicate key(s)' % schema in refused['msg'], refused['msg']
        assert 'the rollback builds the unique index the plan replaced again' in refused['msg']
        helpers.query(conn, 'DELETE FROM %s.u WHERE id > 20' % schema)
        assert preflight(scratch, state='absent', tables=[entry], plan_name='manual').get('failed') is not True
    finally:
        tear_down(conn, made)
