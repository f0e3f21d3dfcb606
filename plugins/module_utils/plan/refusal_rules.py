# -*- coding: utf-8 -*-
# What PostgreSQL refuses, as one table of rules, so that the preflight finds every refusal before any DDL.
#
# Each rule names the statements it is about (the kinds below: every statement the tool sends), a predicate over
# plain catalog facts, the reason and what to do, and where the rule depends on the server version, the versions it
# holds for. The runners (OnlineIndexRunner.plan, UniqueConstraintRunner.plan_constraint,
# ConstraintRunner.plan_entry) read the facts of each statement a decision plans, with the queries below, and
# evaluate the table (refusal_messages); plan_proof evaluates the plan-wide rule on the names a plan creates.
# Predicates take plain data, so tests/unit runs them without a server, and tests/integration/test_refusal_rules.py
# proves each rule against PostgreSQL itself: the statement refused for real, then the plan refused first.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections

from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.server_features import (
    first_major_with, has, version_text,
)

# The statements the tool sends, by kind.
CREATE_INDEX = 'CREATE INDEX CONCURRENTLY'
CREATE_INDEX_ON_ONLY = 'CREATE INDEX ... ON ONLY'
ATTACH_INDEX = 'ALTER INDEX ... ATTACH PARTITION'
RENAME_INDEX = 'ALTER INDEX ... RENAME TO'
DROP_INDEX = 'DROP INDEX'
ADD_UNIQUE = 'ALTER TABLE ... ADD CONSTRAINT ... UNIQUE USING INDEX'
ADD_FOREIGN_KEY = 'ALTER TABLE ... ADD CONSTRAINT ... FOREIGN KEY ... NOT VALID'
ADD_CHECK = 'ALTER TABLE ... ADD CONSTRAINT ... CHECK (...) NOT VALID'
ADD_NOT_NULL = 'ALTER TABLE ... ADD CONSTRAINT ... NOT NULL ... NOT VALID'
VALIDATE = 'ALTER TABLE ... VALIDATE CONSTRAINT'
SET_NOT_NULL = 'ALTER TABLE ... ALTER COLUMN ... SET NOT NULL'
DROP_CONSTRAINT = 'ALTER TABLE ... DROP CONSTRAINT'
DROP_NOT_NULL = 'ALTER TABLE ... ALTER COLUMN ... DROP NOT NULL'
STATEMENTS = (CREATE_INDEX, CREATE_INDEX_ON_ONLY, ATTACH_INDEX, RENAME_INDEX, DROP_INDEX, ADD_UNIQUE, ADD_FOREIGN_KEY,
              ADD_CHECK, ADD_NOT_NULL, VALIDATE, SET_NOT_NULL, DROP_CONSTRAINT, DROP_NOT_NULL)
# The statements that create a relation in a schema (an index), or give one a name.
NAMING_STATEMENTS = (CREATE_INDEX, CREATE_INDEX_ON_ONLY, RENAME_INDEX, ADD_UNIQUE)

RELKINDS = dict(r='table', p='partitioned table', m='materialized view', v='view', f='foreign table', S='sequence',
                c='composite type', i='index', I='partitioned index', t='TOAST table')
PERSISTENCE = dict(p='permanent', u='unlogged', t='temporary')
# What a foreign key's referential actions may not do with a generated column (PostgreSQL cannot write one).
GENERATED_FORBIDDEN = dict(on_update=('CASCADE', 'SET NULL', 'SET DEFAULT'), on_delete=('SET NULL', 'SET DEFAULT'))

# C(versions): None when the rule holds on every server, else the server_features feature whose servers accept it.
Rule = collections.namedtuple('Rule', 'id statements refuses reason advice versions')


# ---------------------------------------------------------------------------------------------------
# The catalog facts the rules read. The runners run these queries; the functions after them shape the rows.
# ---------------------------------------------------------------------------------------------------

# Facts of relations, given as parallel arrays of schemas and names. PostgreSQL treats a relation as a system
# catalog by its OID (below FirstUnpinnedObjectId, 12000, on 14 to 18) or a TOAST schema (IsSystemClass), whatever
# the user; "owned" is what its ownership check asks: the current user is a member of the owning role (or superuser).
RELATIONS_QUERY = """
SELECT n.nspname::text AS schema, c.relname::text AS name, c.oid::bigint AS oid, c.relkind::text AS relkind,
       c.relpersistence::text AS persistence, c.relispartition AS partition,
       (c.oid < 12000 OR n.nspname ~ '^pg_toast(_temp_[0-9]+)?$') AS system,
       pg_catalog.pg_has_role(c.relowner, 'USAGE') AS owned, pg_catalog.pg_get_userbyid(c.relowner)::text AS owner,
       current_user::text AS "user"
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN unnest(%(schemas)s::text[], %(names)s::text[]) AS wanted(schema, name)
  ON wanted.schema = n.nspname AND wanted.name = c.relname
"""

# The unique indexes of a table, as a foreign key's referenced key needs them: its key columns only (INCLUDE columns
# are not part of the key), and whether it is valid, immediate (not DEFERRABLE), partial or on expressions.
UNIQUE_INDEXES_QUERY = """
SELECT c.relname::text AS name, i.indisvalid AS valid, i.indimmediate AS immediate,
       i.indpred IS NOT NULL AS partial, i.indexprs IS NOT NULL AS expressions,
       ARRAY(SELECT a.attname::text
             FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
             WHERE k.ord <= i.indnkeyatts ORDER BY k.ord) AS key_columns
FROM pg_catalog.pg_index i
JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
WHERE i.indrelid = %(oid)s AND i.indisunique
ORDER BY 1
"""

# The facts of a table's columns that decide what PostgreSQL allows on them: generated and identity columns, the
# key columns of the primary key and of the replica identity index, NOT NULL inherited from a partition's parent, and
# the current user's REFERENCES privilege.
COLUMN_FACTS_QUERY = """
SELECT a.attname::text AS name, a.attgenerated::text AS generated, a.attidentity::text AS identity,
       pg_catalog.has_column_privilege(c.oid, a.attnum, 'REFERENCES') AS references_privilege,
       EXISTS (SELECT 1 FROM pg_catalog.pg_index i, unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
               WHERE i.indrelid = c.oid AND i.indisprimary AND k.attnum = a.attnum AND k.ord <= i.indnkeyatts)
           AS in_primary_key,
       EXISTS (SELECT 1 FROM pg_catalog.pg_index i, unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
               WHERE i.indrelid = c.oid AND i.indisreplident AND k.attnum = a.attnum AND k.ord <= i.indnkeyatts)
           AS in_replica_identity,
       c.relispartition AND EXISTS (
           SELECT 1 FROM pg_catalog.pg_inherits h
           JOIN pg_catalog.pg_attribute p ON p.attrelid = h.inhparent AND p.attname = a.attname
           WHERE h.inhrelid = c.oid AND p.attnotnull) AS parent_not_null
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relname = %(table)s AND a.attnum > 0 AND NOT a.attisdropped
"""

# The columns among %(columns)s of a table whose type has no default b-tree operator class: a unique constraint's
# index cannot be built on them (json, xml, point, ...). As PostgreSQL's GetDefaultOpClass, a type matches an operator
# class of its own type (of its base type, for a domain), of a type it casts to implicitly and binary, or of the
# polymorphic type it belongs to (arrays, enums, ranges, multiranges, composites). An ambiguous match (and a domain of
# a domain) is not judged, so the rule refuses only what PostgreSQL surely refuses.
NO_BTREE_CLASS_QUERY = """
SELECT a.attname::text AS name, pg_catalog.format_type(a.atttypid, a.atttypmod) AS type
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_type own ON own.oid = a.atttypid
JOIN pg_catalog.pg_type t ON t.oid = CASE WHEN own.typtype = 'd' THEN own.typbasetype ELSE own.oid END
WHERE n.nspname = %(schema)s AND c.relname = %(table)s AND a.attname = ANY(%(columns)s) AND a.attnum > 0
  AND t.typtype <> 'd'
  AND NOT EXISTS (
      SELECT 1 FROM pg_catalog.pg_opclass oc JOIN pg_catalog.pg_am am ON am.oid = oc.opcmethod
      WHERE am.amname = 'btree' AND oc.opcdefault
        AND (oc.opcintype = t.oid
             OR EXISTS (SELECT 1 FROM pg_catalog.pg_cast k WHERE k.castsource = t.oid AND k.casttarget = oc.opcintype
                        AND k.castmethod = 'b' AND k.castcontext = 'i')
             OR (oc.opcintype = 'pg_catalog.anyarray'::pg_catalog.regtype AND t.typcategory = 'A' AND t.typelem <> 0)
             OR (oc.opcintype = 'pg_catalog.anyenum'::pg_catalog.regtype AND t.typtype = 'e')
             OR (oc.opcintype = 'pg_catalog.anyrange'::pg_catalog.regtype AND t.typtype = 'r')
             OR (oc.opcintype = 'pg_catalog.anymultirange'::pg_catalog.regtype AND t.typtype = 'm')
             OR (oc.opcintype = 'pg_catalog.record'::pg_catalog.regtype AND t.typtype = 'c')))
ORDER BY a.attnum
"""


def qualified(schema, name):
    return '%s.%s' % (schema, name)


def relation_facts(rows):
    """{(schema, name): facts} from RELATIONS_QUERY rows, each with C(qualified) and C(kind) (its relkind in words)."""
    facts = {}
    for row in rows:
        fact = dict(row, qualified=qualified(row['schema'], row['name']),
                    kind=RELKINDS.get(row['relkind'], 'relation of kind %s' % row['relkind']))
        facts[(row['schema'], row['name'])] = fact
    return facts


def index_facts(row):
    """The facts of an existing index that a DROP INDEX depends on, from an online_index EXISTING_INDEXES_QUERY row."""
    if row is None:
        return None
    return dict(name=qualified(row.get('table_schema') or '', row['name']), constraint=row.get('constraint'),
                referenced_by=list(row.get('referenced_by') or []),
                attached_to='.'.join(row['attached_to']) if row.get('attached_to') else None)


# ---------------------------------------------------------------------------------------------------
# The predicates: facts in, None when PostgreSQL accepts the statement, else what it refuses (a short detail).
# ---------------------------------------------------------------------------------------------------

def _system_catalog(facts):
    return facts['relation']['system'] and facts['relation']['qualified']


def _not_owner(facts):
    relation = facts['relation']
    return not relation['owned'] and relation['qualified']


def _index_relkind(facts):
    relation = facts['relation']
    return relation['relkind'] not in ('r', 'm', 'p') and relation['kind']


def _constraint_relkind(facts):
    relation = facts['relation']
    return relation['relkind'] not in ('r', 'p', 'f') and relation['kind']


def _key_constraint_relkind(facts):
    relation = facts['relation']
    return relation['relkind'] not in ('r', 'p') and relation['kind']


def _partitioned(facts):
    return facts['relation']['relkind'] == 'p' and facts['relation']['qualified']


def _unique_partition_key(facts):
    """A unique index on a partitioned table holds every column of its partition key (PostgreSQL enforces uniqueness
    in each partition alone); a key expression cannot be held."""
    keys = facts.get('partition_key')
    if not facts.get('unique') or keys is None:
        return None
    if None in keys:
        return 'the table is partitioned by an expression, which a unique index cannot include'
    missing = [key for key in keys if key not in facts['columns']]
    return missing and 'its key columns (%s) must include %s' % (', '.join(facts['columns']), ', '.join(missing))


def _no_btree_class(facts):
    return ', '.join('%(name)s (%(type)s)' % column for column in facts.get('no_btree_class') or [])


def _referenced_relkind(facts):
    referenced = facts['referenced']
    return referenced['relkind'] not in ('r', 'p') and referenced['kind']


def _referenced_system(facts):
    return facts['referenced']['system'] and facts['referenced']['qualified']


def _persistence(facts):
    mine, theirs = facts['relation']['persistence'], facts['referenced']['persistence']
    allowed = dict(p=('p',), u=('p', 'u'), t=('t',)).get(mine, (mine,))
    if theirs in allowed:
        return None
    return 'constraints on %s tables may reference only %s tables, and %s is %s' % (
        PERSISTENCE.get(mine, mine), ' or '.join(PERSISTENCE.get(p, p) for p in allowed),
        facts['referenced']['qualified'], PERSISTENCE.get(theirs, theirs))


def _matching_keys(facts):
    """The referenced table's unique indexes whose key columns are exactly the referenced columns (in any order)."""
    wanted = sorted(facts['ref_columns'])
    return [key for key in facts['keys'] if key['valid'] and not key['partial'] and not key['expressions']
            and sorted(key['key_columns']) == wanted]


def _no_referenced_key(facts):
    if facts.get('planned_key') or _matching_keys(facts):
        return None
    near = []
    for key in facts['keys']:
        flaws = [why for why, bad in (('INVALID', not key['valid']), ('partial', key['partial']),
                                      ('on expressions', key['expressions'])) if bad]
        near.append('%s (%s)%s' % (key['name'], ', '.join(key['key_columns']), ''.join(', ' + why for why in flaws)))
    return 'its unique keys: %s' % ('; '.join(near) if near else 'none')


def _deferrable_key(facts):
    matching = _matching_keys(facts)
    if facts.get('planned_key') or not matching or any(key['immediate'] for key in matching):
        return None
    return ', '.join(key['name'] for key in matching)


def _incomparable(facts):
    return '; '.join(facts.get('incomparable') or [])


def _references_privilege(facts):
    return ', '.join(facts.get('missing_references') or [])


def _generated_action(facts):
    generated = facts.get('generated') or []
    wrong = ['%s %s' % (option.replace('_', ' ').upper(), facts.get(option)) for option, forbidden in
             sorted(GENERATED_FORBIDDEN.items()) if facts.get(option) in forbidden]
    return generated and wrong and '%s with generated column(s) %s' % (' and '.join(wrong), ', '.join(generated))


def _column_fact(name):
    def predicate(facts):
        return facts['column'][name] and facts['column']['name']
    return predicate


def _identity(facts):
    return facts['column']['identity'] and facts['column']['name']


def _inherited_constraint(facts):
    constraint = facts.get('constraint')
    return constraint is not None and not constraint.get('local', True) and constraint['name']


def _index_of_constraint(facts):
    index = facts.get('index')
    return index is not None and index['constraint'] and index['constraint']


def _dependent_foreign_keys(facts):
    return ', '.join(facts.get('dependents') or [])


def _attached_index(facts):
    index = facts.get('index')
    return index is not None and index['attached_to']


def _name_created_twice(facts):
    created_by = facts.get('created_by') or []
    return len(created_by) > 1 and ' and '.join(created_by)


RULES = (
    Rule('system-catalog', STATEMENTS, _system_catalog,
         '%(detail)s is a system catalog, and PostgreSQL refuses DDL on system catalogs',
         'leave it out of the plan: a plan changes the application\'s tables', None),
    Rule('table-owner', STATEMENTS, _not_owner,
         'the current user %(user)s does not own %(detail)s (its owner is %(owner)s), and only its owner (a member of '
         'the owning role, or a superuser) may change it',
         'run the migration as its owner (pg_user, or session_role), or have the owner run ALTER TABLE ... OWNER TO '
         '%(user)s', None),
    Rule('index-relkind', (CREATE_INDEX, CREATE_INDEX_ON_ONLY), _index_relkind,
         '%(relation)s is a %(detail)s: indexes go on tables, partitioned tables and materialized views only',
         'plan the index on a table, a partitioned table or a materialized view (for a view: on the tables it reads)',
         None),
    Rule('unique-key-operator-class', (CREATE_INDEX,), _no_btree_class,
         'the unique index of the constraint needs a b-tree operator class for each key column, and the type of '
         'column(s) %(detail)s has none (PostgreSQL cannot compare its values for equality in an index)',
         'key the constraint on columns of a comparable type (for json: jsonb, or a generated column of a hash or '
         'text form)', None),
    Rule('constraint-relkind', (ADD_CHECK, ADD_NOT_NULL, VALIDATE, SET_NOT_NULL), _constraint_relkind,
         '%(relation)s is a %(detail)s: a check or NOT NULL goes on a table, a partitioned table or a foreign table',
         'plan the constraint on the table itself (a materialized view or a view has none)', None),
    Rule('key-constraint-relkind', (ADD_UNIQUE, ADD_FOREIGN_KEY), _key_constraint_relkind,
         '%(relation)s is a %(detail)s: unique constraints and foreign keys go on tables and partitioned tables only',
         'plan it on the table itself (for a materialized view\'s unique key, plan a unique index instead)', None),
    Rule('unique-using-index-on-partitioned-table', (ADD_UNIQUE,), _partitioned,
         '%(detail)s is a partitioned table: PostgreSQL cannot add a constraint USING INDEX to it, nor build its '
         'index concurrently',
         'plan a unique index instead (under tables, with unique: true and key columns that include the partition '
         'key): the index phase builds it partition by partition without blocking', None),
    Rule('unique-index-partition-key', (CREATE_INDEX_ON_ONLY,), _unique_partition_key,
         'a unique index on partitioned table %(relation)s must cover its partition key (PostgreSQL checks uniqueness '
         'within each partition only): %(detail)s',
         'add the partition key columns to the index\'s columns, or make the index non-unique', None),
    Rule('foreign-key-not-valid-on-partitioned-table', (ADD_FOREIGN_KEY,), _partitioned,
         '%(detail)s is a partitioned table, and the server is PostgreSQL %(server_version)s: NOT VALID foreign keys '
         'on partitioned tables need %(feature_major)s (a valid one would scan every partition under a lock that stops '
         'writes)',
         'add the foreign key to each partition instead (one entry per partition), or migrate on PostgreSQL '
         '%(feature_major)s or later', 'foreign_key_not_valid_on_partitioned'),
    Rule('foreign-key-referenced-relkind', (ADD_FOREIGN_KEY,), _referenced_relkind,
         'the referenced relation %(referenced)s is a %(detail)s: a foreign key references a table or a partitioned '
         'table', 'reference the table that holds the key', None),
    Rule('foreign-key-referenced-system-catalog', (ADD_FOREIGN_KEY,), _referenced_system,
         'the referenced relation %(detail)s is a system catalog, and PostgreSQL refuses the triggers a foreign key '
         'puts on it', 'leave the foreign key out of the plan', None),
    Rule('foreign-key-persistence', (ADD_FOREIGN_KEY,), _persistence,
         '%(detail)s',
         'make both tables permanent (ALTER TABLE ... SET LOGGED), or leave the foreign key out', None),
    Rule('foreign-key-referenced-key', (ADD_FOREIGN_KEY,), _no_referenced_key,
         'the referenced columns %(referenced)s (%(ref_columns_text)s) must be exactly the key columns of a valid, '
         'non-partial, expression-free unique index or constraint (INCLUDE columns are not key columns), and the plan '
         'adds none before the foreign key; %(detail)s',
         'plan a unique constraint (or a full unique index) on exactly those columns before the foreign key, or '
         'reference a key that exists', None),
    Rule('foreign-key-deferrable-key', (ADD_FOREIGN_KEY,), _deferrable_key,
         'the only unique key of %(referenced)s on (%(ref_columns_text)s) is DEFERRABLE (%(detail)s), and PostgreSQL '
         'cannot use a deferrable unique constraint for a referenced table',
         'plan a unique constraint (or a full unique index) on those columns that is not DEFERRABLE, before the '
         'foreign key', None),
    Rule('foreign-key-column-types', (ADD_FOREIGN_KEY,), _incomparable,
         'the key columns cannot be compared: %(detail)s',
         'change one of the column types so that they compare with =', None),
    Rule('foreign-key-references-privilege', (ADD_FOREIGN_KEY,), _references_privilege,
         'the current user %(user)s has no REFERENCES privilege on %(referenced)s column(s) %(detail)s',
         'GRANT REFERENCES (%(detail)s) ON %(referenced)s TO %(user)s, or run as its owner', None),
    Rule('foreign-key-generated-column-action', (ADD_FOREIGN_KEY,), _generated_action,
         'PostgreSQL cannot write a generated column, so it refuses %(detail)s',
         'use NO ACTION, RESTRICT or (ON DELETE) CASCADE, or reference through a column that is not generated', None),
    Rule('drop-not-null-primary-key', (DROP_NOT_NULL,), _column_fact('in_primary_key'),
         'column %(detail)s of %(relation)s is in its primary key',
         'leave the NOT NULL in place (drop the primary key first if it must go), then rerun', None),
    Rule('drop-not-null-replica-identity', (DROP_NOT_NULL,), _column_fact('in_replica_identity'),
         'column %(detail)s of %(relation)s is in the index used as its replica identity',
         'leave the NOT NULL in place, or change the replica identity first (ALTER TABLE ... REPLICA IDENTITY)', None),
    Rule('drop-not-null-identity', (DROP_NOT_NULL,), _identity,
         'column %(detail)s of %(relation)s is an identity column, which is always NOT NULL',
         'leave the NOT NULL in place (or drop the identity first)', None),
    Rule('drop-not-null-partition', (DROP_NOT_NULL,), _column_fact('parent_not_null'),
         'column %(detail)s of partition %(relation)s is NOT NULL in its parent table',
         'roll back the NOT NULL on the partitioned table instead', None),
    Rule('drop-inherited-constraint', (DROP_CONSTRAINT,), _inherited_constraint,
         'constraint %(detail)s of %(relation)s is inherited from its parent table, and PostgreSQL drops it only '
         'with the parent\'s', 'roll back the constraint on the parent table instead', None),
    Rule('drop-index-of-constraint', (DROP_INDEX,), _index_of_constraint,
         'index %(index_name)s backs constraint "%(detail)s", and PostgreSQL drops such an index only with its '
         'constraint', 'drop (or replace) the constraint instead (ALTER TABLE ... DROP CONSTRAINT), or leave the '
         'index out of the plan', None),
    Rule('drop-with-dependent-foreign-keys', (DROP_INDEX, DROP_CONSTRAINT), _dependent_foreign_keys,
         'foreign key(s) %(detail)s depend on index %(index_name)s, and the plan does not drop them first',
         'drop those foreign keys first (or add them to the plan), or leave the index in place', None),
    Rule('drop-attached-index', (DROP_INDEX,), _attached_index,
         'index %(index_name)s is attached to partitioned index %(detail)s, and PostgreSQL drops an attached index '
         'only with the partitioned one',
         'plan the change on the partitioned table\'s index (%(detail)s) instead of on the partition', None),
    Rule('plan-names-unique', NAMING_STATEMENTS, _name_created_twice,
         'the plan creates relation "%(name)s" twice (%(detail)s), and a name is unique among the relations of a '
         'schema (a partition\'s index is named <index>_<partition>, a replacement uses <index>_pgzd_next and '
         '<index>_pgzd_prev)', 'rename one of the plan\'s indexes or constraints', None),
)
RULES_BY_ID = dict((rule.id, rule) for rule in RULES)


def applies(rule, server_version):
    """Whether C(rule) holds on a server of C(server_version) (server_version_num; None: any): a rule with C(versions)
    holds on servers without that server_features feature only."""
    if rule.versions is None or server_version is None:
        return True
    return not has(server_version, rule.versions)


def _template_values(facts, detail, rule=None, server_version=None):
    values = dict(detail=detail)
    if rule is not None and rule.versions is not None:
        values.update(feature_major=first_major_with(rule.versions), server_version=version_text(server_version)
                      if server_version else 'older than %d' % first_major_with(rule.versions))
    for key, value in facts.items():
        if isinstance(value, dict) and 'qualified' in value:
            values[key] = value['qualified']
        elif not isinstance(value, (dict, list)):
            values[key] = value
    relation = facts.get('relation') or {}
    values.setdefault('user', relation.get('user'))
    values.setdefault('owner', relation.get('owner'))
    values['ref_columns_text'] = ', '.join(facts.get('ref_columns') or [])
    values['index_name'] = (facts.get('index') or {}).get('name')
    return values


def refusals(statement, facts, server_version=None, rules=RULES):
    """[(rule, message)] of every rule (of C(rules)) about C(statement) that refuses it on C(facts), for this server
    version."""
    found = []
    for rule in rules:
        if statement not in rule.statements or not applies(rule, server_version):
            continue
        detail = rule.refuses(facts)
        if not detail:
            continue
        values = _template_values(facts, detail, rule, server_version)
        found.append((rule, '%s would be refused: %s. What to do: %s [rule %s]' % (
            statement, rule.reason % values, rule.advice % values, rule.id)))
    return found


def refusal_messages(judged, server_version=None, rules=RULES):
    """The lines that refuse C(judged), [(subject, statement, facts)]: one per rule that refuses a subject (an index or
    constraint of the plan), at the first of its statements the rule refuses."""
    lines, seen = [], set()
    for subject, statement, facts in judged:
        for rule, message in refusals(statement, facts, server_version, rules):
            if (subject, rule.id) not in seen:
                seen.add((subject, rule.id))
                lines.append('%s: %s' % (subject, message))
    return lines


def name_clash_messages(created, server_version=None):
    """The plan-wide rule on C(created): [(schema, name, what creates it)] of every relation name a plan's decisions
    create (planned and derived names alike)."""
    by_name = collections.OrderedDict()
    for schema, name, label in created:
        owners = by_name.setdefault((schema, name), [])
        if label not in owners:
            owners.append(label)
    return refusal_messages([('relation "%s"' % qualified(schema, name), CREATE_INDEX,
                              dict(name=qualified(schema, name), created_by=owners))
                             for (schema, name), owners in by_name.items()],
                            server_version, rules=(RULES_BY_ID['plan-names-unique'],))


def constraint_name_keys(constraint, default_schema):
    """The namespaces a planned constraint's name lives in, as keys: every constraint's name is unique among its
    table's constraints, and a unique constraint's also among the relations of its schema (it is the name of its
    index). Two checks or foreign keys of one name on different tables are fine; PostgreSQL refuses the rest."""
    schema = constraint.get('schema') or default_schema
    keys = [('constraint of table', schema, constraint.get('table'), constraint.get('name'))]
    if constraint.get('type', 'unique') == 'unique':
        keys.append(('relation of schema', schema, constraint.get('name')))
    return keys
