# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the file alone cannot tell about a Prisma statement, proven on the live server (statement_classes marks such
an entry refused, with needs_server_proof and class_if_proven).

- default_volatility: ADD COLUMN ... DEFAULT <expression> with a call the parse tree cannot judge. PostgreSQL evaluates
  a default that is at most STABLE once and keeps it in the catalog, but rewrites the whole table under ACCESS
  EXCLUSIVE for a VOLATILE one. The expression is proven as plan SQL is (plan/plan_trust.py, context column_default):
  every function, operator and type it reaches, as the server resolves them, must be built-in or trusted by the
  plan, and at most STABLE.
- column_type: ALTER COLUMN TYPE of a column the file did not create: its current type is read from the catalog and
  the change judged by statement_classes.type_change_rewrites (binary-coercible or refused).
A proven entry takes its class_if_proven and says what proved it (proof); an unproven one stays refused and says why.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.constraint_catalog import COLUMNS_QUERY
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.prisma.statement_classes import (
    type_change_rewrites,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.statements import fetch_dicts


def proven_entry(entry, proof):
    """C(entry) with its server proof given: the class it takes once proven, what proved it, no refusal left."""
    proven = dict(entry, proof=proof)
    proven['class'] = proven.pop('class_if_proven')
    for key in ('needs_server_proof', 'ack'):
        proven.pop(key, None)
    proven.update(why=None, safe_way=None, how='run as written under the short lock_timeout (%s)' % proof,
                  lock=entry['lock_as_written'])
    return proven


def unproven_entry(entry, problems):
    """C(entry) still refused, with what the server found."""
    return dict(entry, why='%s. The server could not prove it: %s.' % (entry['why'].rstrip('.'), '; '.join(problems)))


def prove_default(trust, entry):
    """The entry of an ADD COLUMN whose default the server must judge, proven or still refused."""
    default = entry['details']['definition']['default']
    problems = trust.prove_query('SELECT (%s)' % default, context='column_default')
    if problems:
        return unproven_entry(entry, problems)
    return proven_entry(entry, 'the server resolves the default %s to built-in or trusted objects, at most STABLE: '
                               'evaluated once, no rewrite' % default)


def prove_column_type(cursor, entry, schema='public'):
    """The entry of an ALTER COLUMN TYPE of a column the file did not create, judged from its type in the catalog
    (an unqualified table is in C(schema), the schema Prisma migrates)."""
    wanted = entry['needs_server_proof']['column_type']
    table_schema = wanted['schema'] or schema
    rows = [row for row in fetch_dicts(cursor, COLUMNS_QUERY, dict(schema=table_schema, table=wanted['table']))
            if row['name'] == wanted['column']]
    if not rows:
        return unproven_entry(entry, ['column %s of %s.%s does not exist'
                                      % (wanted['column'], table_schema, wanted['table'])])
    current = rows[0]['type']
    refusal = type_change_rewrites(current, wanted['to'])
    if refusal:
        return unproven_entry(entry, [refusal])
    proven = proven_entry(entry, 'the column is %s now: %s to %s is binary-coercible, no rewrite'
                                 % (current, current, wanted['to']))
    proven['details'] = dict(proven['details'], **{'from': current})
    return proven


def prove_entries(trust, cursor, entries, schema='public'):
    """C(entries) (statement_classes.classify's) with every server proof they need made: the proven ones take their
    class_if_proven, the others stay refused with the server's reasons. C(trust) is a plan_trust.PlanTrust on
    C(cursor); C(schema) is the schema of unqualified names."""
    result = []
    for entry in entries:
        needs = entry.get('needs_server_proof') or {}
        if 'default_volatility' in needs:
            entry = prove_default(trust, entry)
        elif 'column_type' in needs:
            entry = prove_column_type(cursor, entry, schema)
        result.append(entry)
    return result
