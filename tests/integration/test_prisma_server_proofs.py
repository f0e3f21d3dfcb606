# -*- coding: utf-8 -*-
"""What a Prisma statement's text alone cannot tell, proven on the real server (module_utils/prisma/server_proofs.py):
the volatility of an ADD COLUMN default, as PostgreSQL resolves every function it calls, and whether an ALTER COLUMN
TYPE is binary-coercible from the column's type in the catalog. The entries come from the real classifier
(statement_classes.classify); nothing is changed in the database."""

import pytest

import helpers

pytestmark = pytest.mark.integration

DATABASE = 'pt_server_proofs'
classes = helpers.load_module_utils('prisma.statement_classes')
proofs = helpers.load_module_utils('prisma.server_proofs')
plan_trust = helpers.load_module_utils('plan.plan_trust')

MIGRATION = '''-- AlterTable
ALTER TABLE "Job" ADD COLUMN "slug" TEXT DEFAULT pgzd_stable_slug();
-- AlterTable
ALTER TABLE "Job" ADD COLUMN "token" TEXT DEFAULT pgzd_volatile_token();
-- AlterTable
ALTER TABLE "Job" ADD COLUMN "code" TEXT DEFAULT upper('x');
-- AlterTable
ALTER TABLE "_prisma_migrations" ALTER COLUMN "checksum" SET DATA TYPE VARCHAR(100);
-- AlterTable
ALTER TABLE "Class" ALTER COLUMN "grade" SET DATA TYPE TEXT;
-- AlterTable
ALTER TABLE "Class" ALTER COLUMN "nope" SET DATA TYPE TEXT;
'''


@pytest.fixture
def database(t12_copy):
    info = t12_copy(DATABASE)
    conn = helpers.connect(info)
    helpers.query(conn, "CREATE FUNCTION pgzd_stable_slug() RETURNS text STABLE LANGUAGE sql AS $$ SELECT 'a' $$")
    helpers.query(conn, "CREATE FUNCTION pgzd_volatile_token() RETURNS text LANGUAGE sql AS $$ SELECT 'b' $$")
    try:
        yield conn
    finally:
        conn.close()
        t12_copy.drop(DATABASE)


def proven(conn, trusted=()):
    entries = classes.classify(MIGRATION)
    assert [e['class'] for e in entries] == ['refused'] * 6 and all(e.get('needs_server_proof') for e in entries)
    with conn.cursor() as cursor:
        return proofs.prove_entries(plan_trust.PlanTrust(cursor, trusted), cursor, entries)


def test_the_server_lifts_only_the_refusals_it_proves_safe(database):
    before = helpers.query(database, 'SELECT count(*) FROM pg_catalog.pg_attribute')
    slug, token, code, checksum, grade, nope = proven(database)
    # A user-defined function is refused unless the plan trusts it, whatever its volatility.
    assert slug['class'] == 'refused' and 'pgzd_stable_slug() is user-defined' in slug['why'], slug
    # upper() is a built-in IMMUTABLE function: evaluated once, no rewrite.
    assert code['class'] == 'catalog' and 'at most STABLE' in code['proof'] and 'ack' not in code, code
    # VARCHAR(64) to VARCHAR(100), read from the catalog: binary-coercible.
    assert checksum['class'] == 'catalog', checksum
    assert checksum['details']['from'] == 'character varying(64)', checksum
    # INTEGER to TEXT rewrites the table; a column that does not exist proves nothing.
    assert grade['class'] == 'refused' and 'from integer to text' in grade['why'], grade
    assert nope['class'] == 'refused' and 'column nope of public.Class does not exist' in nope['why'], nope
    assert token['class'] == 'refused'
    # Proofs run in rolled-back savepoints or transactions: nothing was made or changed.
    assert helpers.query(database, 'SELECT count(*) FROM pg_catalog.pg_attribute') == before


def test_a_trusted_function_is_judged_by_its_volatility(database):
    slug, token = proven(database, trusted=['public.pgzd_stable_slug()',
                                            'function public.pgzd_volatile_token()'])[:2]
    assert slug['class'] == 'catalog', slug['why']
    assert token['class'] == 'refused' and 'is VOLATILE' in token['why'], token
