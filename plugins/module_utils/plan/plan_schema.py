# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every key of a migration plan file, defined once: its type, whether it is required, its default, its allowed values
and a sentence on what it does.

The controller's check of a plan (plugin_utils/migration_plan.py) takes its key lists, constraint types and allowed
values from here, and the modules that take the plan's parts take their argument specs from here (argument_options,
module_option). The doc fragments (plan_tables, plan_constraints, plan_trust) and docs/plan-format.md stay text, as
ansible-doc reads them; tests/unit/test_plan_schema.py proves they document these keys as defined here.

A key is a dict: type (str, bool, list, dict), elements (of a list), required (in the plan file), default, choices
(the exact values the argument spec accepts), values (the values the check accepts, written as the check normalises
them: upper case, spaces for _), types (for a constraint key: the constraint types it applies to; every type when
absent), options (the keys of each entry of a list of mappings, or of a mapping), module_optional (a module takes the
part without it: a drop needs only an index's name, the preflight is given the Prisma migration's file read) and
description. Plain data, so that module_utils (modules) and plugin_utils (the controller) both read it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

CONSTRAINT_TYPES = ('unique', 'foreign_key', 'check', 'not_null')
REFERENTIAL_ACTIONS = ('NO ACTION', 'RESTRICT', 'CASCADE', 'SET NULL', 'SET DEFAULT')

INDEX = (
    ('name', dict(type='str', required=True, description='Index name, at most 63 bytes, unique in the schema.')),
    ('columns', dict(type='list', elements='str', required=True, module_optional=True,
                     description='Key columns, in order (a drop needs only the name).')),
    ('unique', dict(type='bool', default=False, description='Build a unique index (btree only).')),
    ('method', dict(type='str', default='btree', description='Index access method (btree, hash, gin, gist, brin, ...).')),
    ('where', dict(type='str', description='Predicate of a partial index, one SQL expression.')),
    ('include', dict(type='list', elements='str', default=[], description='Non-key columns stored in the index.')),
    ('on_mismatch', dict(type='str', default='fail', choices=('fail', 'replace'),
                         description='An index of this name with another definition: fail, or replace it online.')),
)

TABLE = (
    ('name', dict(type='str', required=True, description='Table name, exactly as in the catalog.')),
    ('schema', dict(type='str', description="Schema of the table; the plan's schema by default.")),
    ('indexes', dict(type='list', elements='dict', required=True, options=INDEX,
                     description="The table's indexes, built in this order.")),
)

REFERENCES = (
    ('table', dict(type='str', required=True, description='Referenced table.')),
    ('schema', dict(type='str', description="Schema of the referenced table; the entry's schema by default.")),
    ('columns', dict(type='list', elements='str', required=True,
                     description='Referenced columns (a primary or unique key), as many as columns, in order.')),
)

CONSTRAINT = (
    ('name', dict(type='str', required=True, description='Constraint name, at most 63 bytes.')),
    ('table', dict(type='str', required=True, description="The constraint's table, exactly as in the catalog.")),
    ('schema', dict(type='str', description="Schema of the table; the plan's schema by default.")),
    ('type', dict(type='str', default='unique', choices=CONSTRAINT_TYPES, description='Constraint type.')),
    ('columns', dict(type='list', elements='str', required=True, types=('unique', 'foreign_key'),
                     description="The constraint's columns.")),
    ('on_duplicates', dict(type='str', default='fail', choices=('fail', 'rename'), types=('unique',),
                           description='Duplicate keys: fail before any DDL, or rename all but the oldest row.')),
    ('rename_column', dict(type='str', types=('unique',),
                           description='With on_duplicates rename, the key column that takes the suffix.')),
    ('keep_oldest_by', dict(type='list', elements='str', types=('unique',),
                            description='With on_duplicates rename, the columns that say which row is the oldest.')),
    ('references', dict(type='dict', required=True, types=('foreign_key',), options=REFERENCES,
                        description='The referenced table and columns.')),
    ('on_delete', dict(type='str', default='NO ACTION', values=REFERENTIAL_ACTIONS, types=('foreign_key',),
                       description='Referential action on delete.')),
    ('on_update', dict(type='str', default='NO ACTION', values=REFERENTIAL_ACTIONS, types=('foreign_key',),
                       description='Referential action on update.')),
    ('index', dict(type='str', types=('foreign_key',),
                   description='An index on the columns to build concurrently before the key is added.')),
    ('expression', dict(type='str', required=True, types=('check',), description='One boolean SQL expression.')),
    ('column', dict(type='str', required=True, types=('not_null',), description='The column that becomes NOT NULL.')),
)

BASELINE_QUERY = (
    ('name', dict(type='str', required=True, description='Short id of the query, unique, used in the reports.')),
    ('sql', dict(type='str', required=True, description='One read-only query, with %(name)s parameters.')),
    ('params', dict(type='dict', default={}, description='Parameter values: literals, or {query: <read-only query>}.')),
)

PRISMA_MIGRATION = (
    ('name', dict(type='str', required=True, description="The migration's folder name under prisma/migrations.")),
    ('file', dict(type='str', required=True, module_optional=True,
                  description="Its migration.sql, relative to the plan file.")),
    ('schema', dict(type='str', description="Schema of Prisma's migrations table; the plan's schema by default.")),
    ('table', dict(type='str', default='_prisma_migrations', description="Prisma's migrations table.")),
    ('create_table', dict(type='bool', default=False, description='Create the migrations table when it is missing.')),
)

# Not a key of the plan file: the text of the Prisma migration's migration.sql, which the controller reads and hands
# to the preflight with the plan's keys (the later phases do without it).
PRISMA_MIGRATION_SQL = ('migration_sql', dict(type='str', description="The text of its migration.sql, as read."))

PLAN = (
    ('name', dict(type='str', required=True, description='Short id of the plan; it names the artifacts folders.')),
    ('description', dict(type='str', default='', description='What the plan does, for people.')),
    ('schema', dict(type='str', default='public', description='Default schema of the tables and constraints.')),
    ('tables', dict(type='list', elements='dict', required=True, options=TABLE,
                    description='The tables and their indexes, in order; rollback walks them in reverse.')),
    ('constraints', dict(type='list', elements='dict', default=[], options=CONSTRAINT,
                         description='The constraints, added after the indexes, dropped first on rollback.')),
    ('baseline_queries', dict(type='list', elements='dict', default=[], options=BASELINE_QUERY,
                              description='Queries timed before and after the migration.')),
    ('prisma_migration', dict(type='dict', options=PRISMA_MIGRATION,
                              description='A Prisma migration recorded as applied once the plan is in place.')),
    ('trusted', dict(type='list', elements='str', default=[],
                     description='User-defined functions, operators and types plan SQL may reach, by signature.')),
    ('prisma_migrations_dir', dict(type='str', description=(
        "A prisma/migrations folder (relative to the plan file) whose pending migrations are the plan's work."))),
)

# The argument spec fields a key's definition carries over (the rest is the controller's and the docs').
SPEC_FIELDS = ('type', 'elements', 'default', 'choices')


def keys(entries):
    """The names of C(entries) (one of the tuples above), in order."""
    return tuple(name for name, _definition in entries)


def definition(entries, name):
    """The definition of key C(name) of C(entries)."""
    return dict(entries)[name]


def defaults(entries):
    """The defaults of C(entries) that are not None, as a dict."""
    return dict((name, _copy(spec['default'])) for name, spec in entries if spec.get('default') is not None)


def constraint_type_keys():
    """Each constraint type's own keys (besides those every type takes), in the order of CONSTRAINT."""
    return dict((kind, tuple(name for name, spec in CONSTRAINT if 'types' in spec and kind in spec['types']))
                for kind in CONSTRAINT_TYPES)


def common_constraint_keys():
    """The keys every constraint type takes."""
    return tuple(name for name, spec in CONSTRAINT if 'types' not in spec)


def module_required(spec):
    """Whether a module's argument spec requires the key: required in the plan, needed by every use of the module,
    and by every constraint type."""
    applies_to_all = set(spec.get('types', CONSTRAINT_TYPES)) == set(CONSTRAINT_TYPES)
    return bool(spec.get('required')) and not spec.get('module_optional') and applies_to_all


def argument_option(spec):
    """The Ansible argument spec of one key."""
    option = dict((field, _copy(spec[field])) for field in SPEC_FIELDS if spec.get(field) is not None)
    if 'choices' in option:
        option['choices'] = list(option['choices'])
    if module_required(spec):
        option['required'] = True
    if 'options' in spec:
        option['options'] = argument_options(spec['options'])
    return option


def argument_options(entries):
    """The Ansible argument spec C(options) of a list of mappings (or of a mapping) with the keys C(entries)."""
    return dict((name, argument_option(spec)) for name, spec in entries)


def module_option(name, extra=()):
    """The argument spec of the module option that takes the plan's top-level key C(name): as the plan defines it,
    never required (a module takes the parts of a plan it works on, one table's indexes, or all), with the keys
    C(extra) besides the plan's (PRISMA_MIGRATION_SQL)."""
    option = argument_option(definition(PLAN, name))
    option.pop('required', None)
    option.get('options', {}).update(argument_options(extra))
    return option


def _copy(value):
    # A default is a fresh value for each spec: Ansible fills lists and dicts in place.
    return list(value) if isinstance(value, (list, tuple)) and not isinstance(value, str) else (
        dict(value) if isinstance(value, dict) else value)
