# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A migration plan file on the controller: loading it, and the check of its format that needs no database.

The preflight's action plugin (and the migration_plan role, through the lookup of the same name) load the plan here
before anything connects, so a plan with a typo fails in a second with a message that names the entry (table, index,
constraint, baseline query), instead of an argument-spec message without a path, or a failure after the first
indexes were built. What needs the catalog or the data (tables, columns, types, duplicate keys, the SQL itself) is
proven by the preflight module right after, still before any DDL.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import os
import random
import re

import yaml

from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.plan.identifiers import identifier_error
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.plan.plan_trust import trusted_errors
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.plan import plan_schema
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.plan.refusal_rules import constraint_name_keys

# The plan's keys and allowed values, as the plan schema defines them.
TOP_KEYS = plan_schema.keys(plan_schema.PLAN)
TABLE_KEYS = plan_schema.keys(plan_schema.TABLE)
INDEX_KEYS = plan_schema.keys(plan_schema.INDEX)
ON_MISMATCH = plan_schema.definition(plan_schema.INDEX, 'on_mismatch')['choices']
CONSTRAINT_KEYS = plan_schema.keys(plan_schema.CONSTRAINT)
CONSTRAINT_TYPES = plan_schema.CONSTRAINT_TYPES
DEFAULT_CONSTRAINT_TYPE = plan_schema.definition(plan_schema.CONSTRAINT, 'type')['default']
# The keys every constraint type takes, and the keys each type takes besides them.
COMMON_CONSTRAINT_KEYS = plan_schema.common_constraint_keys()
TYPE_KEYS = plan_schema.constraint_type_keys()
REFERENCES_KEYS = plan_schema.keys(plan_schema.REFERENCES)
REFERENTIAL_ACTIONS = plan_schema.REFERENTIAL_ACTIONS
ON_DUPLICATES = plan_schema.definition(plan_schema.CONSTRAINT, 'on_duplicates')['choices']
QUERY_KEYS = plan_schema.keys(plan_schema.BASELINE_QUERY)
PRISMA_KEYS = plan_schema.keys(plan_schema.PRISMA_MIGRATION)
PRISMA_REQUIRED = tuple(name for name, key in plan_schema.PRISMA_MIGRATION if key.get('required'))
# A plan's name names its artifacts folders and files.
PLAN_NAME = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$')
PARAMETER = re.compile(r'%\((\w+)\)s')
# A plan is a few kilobytes of YAML; a larger file (a dump, a log, a disk image) is not read at all.
MAX_PLAN_BYTES = 1024 * 1024
# Text quoted in a YAML parser's message: longer quotes are the file's own words (a tag, an alias), shorter ones the
# character the parser stopped at.
QUOTED = re.compile(r"'([^']*)'|\"([^\"]*)\"")
NOT_A_PLAN = ('the plan file holds a mapping with none of the keys of a migration plan (%s): it is not a migration '
              'plan (none of its keys or values is shown)' % ', '.join(TOP_KEYS))


def _type_name(value):
    # isinstance, not type(): Ansible hands filters its own (lazily templated) subclasses of dict, list and str.
    for kind, name in ((bool, 'true/false'), (dict, 'a mapping'), (list, 'a list'), (str, 'a string'),
                       (int, 'a number'), (float, 'a number')):
        if isinstance(value, kind):
            return name
    return 'empty' if value is None else type(value).__name__


class _Problems(object):
    """Collects problems, each prefixed with the path of its entry."""

    def __init__(self):
        self.items = []

    def add(self, where, text):
        self.items.append('%s: %s' % (where, text) if where else text)

    def keys(self, where, entry, allowed):
        unknown = sorted(str(key) for key in entry if key not in allowed)
        if unknown:
            self.add(where, 'unknown key(s) %s (the keys of this entry are %s)' % (', '.join(unknown), ', '.join(allowed)))

    def identifier(self, where, kind, value, required=True):
        if value is None and not required:
            return
        error = identifier_error(kind, value)
        if error:
            self.add(where, error)

    def identifier_list(self, where, kind, value, required=True, example='[teacherId, status]'):
        if value is None and not required:
            return []
        if isinstance(value, str):
            self.add(where, '%s must be a YAML list such as %s, not the string %r' % (kind, example, value))
            return []
        if not isinstance(value, list) or (required and not value):
            self.add(where, '%s must be a non-empty list of column names, not %s' % (kind, _type_name(value)))
            return []
        for item in value:
            self.identifier(where, 'a column of %s' % kind, item)
        repeated = sorted(set(str(c) for c in value if value.count(c) > 1))
        if repeated:
            self.add(where, '%s names %s more than once' % (kind, ', '.join(repeated)))
        return [item for item in value if isinstance(item, str)]

    def mapping_list(self, where, kind, value, required=False):
        if value is None and not required:
            return []
        if not isinstance(value, list):
            self.add(where, '%s must be a list, not %s' % (kind, _type_name(value)))
            return []
        return value

    def entry(self, where, value):
        if not isinstance(value, dict):
            self.add(where, 'must be a mapping (name: ..., ...), not %s' % _type_name(value))
            return False
        return True


def _label(kind, entry, position):
    name = entry.get('name') if isinstance(entry, dict) else None
    return '%s "%s"' % (kind, name) if isinstance(name, str) and name else '%s #%d' % (kind, position)


def _entries(problems, kind, entries, allowed, within=''):
    """Each mapping of C(entries) with its position and the words that place it (table "Job", index #2), once its
    keys are checked against C(allowed); an entry that is not a mapping is reported and left out."""
    for position, entry in enumerate(entries, start=1):
        where = _label(kind, entry, position)
        where = '%s, %s' % (within, where) if within else where
        if problems.entry(where, entry):
            problems.keys(where, entry, allowed)
            yield position, where, entry


def _check_index(problems, where, index):
    problems.identifier(where, 'index name', index.get('name'))
    columns = problems.identifier_list(where, 'columns', index.get('columns'))
    include = problems.identifier_list(where, 'include', index.get('include'), required=False, example='[createdAt]')
    overlap = sorted(set(columns) & set(include))
    if overlap:
        problems.add(where, 'column(s) %s are both key columns and in include' % ', '.join(overlap))
    if 'unique' in index and not isinstance(index['unique'], bool):
        problems.add(where, 'unique must be true or false, not %r' % (index['unique'],))
    if 'method' in index:
        problems.identifier(where, 'method', index['method'])
        if index.get('unique') is True and index['method'] != 'btree':
            problems.add(where, 'only btree indexes can be unique, not %s' % index['method'])
    if 'where' in index and (not isinstance(index['where'], str) or not index['where'].strip()):
        problems.add(where, 'where must be one SQL expression as a string, not %s' % _type_name(index['where']))
    if index.get('on_mismatch', 'fail') not in ON_MISMATCH:
        problems.add(where, 'on_mismatch must be fail (refuse an index of this name with another definition) or '
                            'replace (build the planned one beside it and swap it in), not %r' % (index['on_mismatch'],))


def _check_tables(problems, plan, schema):
    tables = problems.mapping_list('', 'tables', plan.get('tables'), required='prisma_migrations_dir' not in plan)
    if isinstance(plan.get('tables'), list) and not tables and not plan.get('constraints') \
            and not plan.get('baseline_queries') and 'prisma_migrations_dir' not in plan:
        problems.add('', 'tables is empty, and the plan has no constraints or baseline queries either: it would do '
                         'nothing')
    indexes = {}  # (schema, index name) -> where it is planned
    seen_tables = {}
    for position, where, table in _entries(problems, 'table', tables, TABLE_KEYS):
        problems.identifier(where, 'table name', table.get('name'))
        problems.identifier(where, 'schema', table.get('schema'), required=False)
        table_schema = table.get('schema') or schema
        key = (table_schema, table.get('name'))
        if key in seen_tables and isinstance(table.get('name'), str):
            problems.add(where, 'is listed twice (also as table #%d): put all its indexes under one entry'
                         % seen_tables[key])
        seen_tables.setdefault(key, position)
        entries = problems.mapping_list(where, 'indexes', table.get('indexes'), required=True)
        if isinstance(table.get('indexes'), list) and not entries:
            problems.add(where, 'has no indexes: list at least one, or leave the table out')
        for _position, index_where, index in _entries(problems, 'index', entries, INDEX_KEYS, within=where):
            _check_index(problems, index_where, index)
            name = index.get('name')
            if isinstance(name, str) and name:
                other = indexes.setdefault((table_schema, name), index_where)
                if other != index_where:
                    problems.add(index_where, 'has the name of %s: index names are unique in a schema' % other)
    return indexes


def _check_unique(problems, where, constraint):
    columns = problems.identifier_list(where, 'columns', constraint.get('columns'), example='[name, grade]')
    on_duplicates = constraint.get('on_duplicates', 'fail')
    if on_duplicates not in ON_DUPLICATES:
        problems.add(where, 'on_duplicates must be fail or rename, not %r' % (on_duplicates,))
    if constraint.get('rename_column') is not None:
        problems.identifier(where, 'rename_column', constraint['rename_column'])
        if columns and constraint['rename_column'] not in columns:
            problems.add(where, 'rename_column "%s" is not one of its columns (%s): the suffix goes on a key column'
                         % (constraint['rename_column'], ', '.join(columns)))
    problems.identifier_list(where, 'keep_oldest_by', constraint.get('keep_oldest_by'), required=False,
                             example='[createdAt]')


def _check_foreign_key(problems, where, constraint):
    columns = problems.identifier_list(where, 'columns', constraint.get('columns'), example='[teacherId]')
    references = constraint.get('references')
    if not isinstance(references, dict):
        problems.add(where, 'references must be a mapping such as {table: User, columns: [id]}, not %s'
                     % _type_name(references))
    else:
        problems.keys(where + ', references', references, REFERENCES_KEYS)
        problems.identifier(where, 'referenced table', references.get('table'))
        problems.identifier(where, 'referenced schema', references.get('schema'), required=False)
        referenced = problems.identifier_list(where, 'references.columns', references.get('columns'), example='[id]')
        if columns and referenced and len(columns) != len(referenced):
            problems.add(where, '%d column(s) reference %d column(s): give as many referenced columns as columns, '
                                'in the same order' % (len(columns), len(referenced)))
    for option in ('on_delete', 'on_update'):
        value = constraint.get(option)
        if value is not None and (not isinstance(value, str)
                                  or ' '.join(value.replace('_', ' ').upper().split()) not in REFERENTIAL_ACTIONS):
            problems.add(where, '%s must be one of %s, not %r' % (option, ', '.join(REFERENTIAL_ACTIONS), value))
    problems.identifier(where, 'index', constraint.get('index'), required=False)


def _check_constraint_type(problems, where, constraint, kind):
    misplaced = sorted(key for key in constraint if key in CONSTRAINT_KEYS and key not in TYPE_KEYS[kind]
                       and key not in COMMON_CONSTRAINT_KEYS)
    if misplaced:
        problems.add(where, 'key(s) %s do not apply to a %s constraint (its keys: %s)'
                     % (', '.join(misplaced), kind, ', '.join(COMMON_CONSTRAINT_KEYS + TYPE_KEYS[kind])))
    if kind == 'unique':
        _check_unique(problems, where, constraint)
    elif kind == 'foreign_key':
        _check_foreign_key(problems, where, constraint)
    elif kind == 'check':
        if not isinstance(constraint.get('expression'), str) or not constraint['expression'].strip():
            problems.add(where, 'expression must be one boolean SQL expression as a string, such as "price >= 0", not '
                                '%s' % _type_name(constraint.get('expression')))
    else:
        problems.identifier(where, 'column', constraint.get('column'))


def _check_constraint_name(problems, where, constraint, position, schema, seen):
    """A constraint's name clashes with an earlier one's only in a namespace they share (refusal_rules): checks and
    foreign keys of one name may stand on different tables."""
    for key in constraint_name_keys(constraint, schema):
        other = seen.setdefault(key, position)
        if other != position:
            problems.add(where, 'is listed twice (also as constraint #%d): %s' % (other, (
                'a constraint\'s name is unique among its table\'s constraints' if key[0] == 'constraint of table' else
                'a unique constraint\'s name is the name of its index, unique among the relations of its schema')))
            return


def _check_constraints(problems, plan, schema, indexes):
    constraints = problems.mapping_list('', 'constraints', plan.get('constraints'))
    seen = {}
    for position, where, constraint in _entries(problems, 'constraint', constraints, CONSTRAINT_KEYS):
        problems.identifier(where, 'constraint name', constraint.get('name'))
        problems.identifier(where, 'table', constraint.get('table'))
        problems.identifier(where, 'schema', constraint.get('schema'), required=False)
        kind = constraint.get('type', DEFAULT_CONSTRAINT_TYPE)
        if kind not in CONSTRAINT_TYPES:
            problems.add(where, 'type must be one of %s, not %r' % (', '.join(CONSTRAINT_TYPES), kind))
        else:
            _check_constraint_type(problems, where, constraint, kind)
        name = constraint.get('name')
        if not isinstance(name, str) or not name:
            continue
        constraint_schema = constraint.get('schema') or schema
        if isinstance(constraint_schema, str) and isinstance(constraint.get('table'), str):
            _check_constraint_name(problems, where, dict(constraint, type=kind), position, schema, seen)
        if kind == 'unique' and (constraint_schema, name) in indexes:
            problems.add(where, 'has the name of %s: a unique constraint builds an index of its own name, so one of '
                                'them must be renamed' % indexes[(constraint_schema, name)])
        index = constraint.get('index') if kind == 'foreign_key' else None
        if isinstance(index, str) and (constraint_schema, index) in indexes:
            problems.add(where, 'its index "%s" is also planned as %s: leave index out of the foreign key (the index '
                                'phase builds it first) or rename one' % (index, indexes[(constraint_schema, index)]))


def _check_parameter(problems, where, name, value):
    if isinstance(value, dict):
        if set(value) != set(['query']) or not isinstance(value['query'], str) or not value['query'].strip():
            problems.add(where, 'parameter %s must be a literal or {query: <one read-only query>}, not %r' % (name, value))
    elif not isinstance(value, (str, int, float, bool)) and value is not None:
        problems.add(where, 'parameter %s must be a literal or {query: ...}, not %s' % (name, _type_name(value)))


def _check_baseline_queries(problems, plan):
    queries = problems.mapping_list('', 'baseline_queries', plan.get('baseline_queries'))
    seen = {}
    for position, where, query in _entries(problems, 'baseline query', queries, QUERY_KEYS):
        name = query.get('name')
        if not isinstance(name, str) or not name.strip():
            problems.add(where, 'needs a name (a short id for the reports)')
        elif name in seen:
            problems.add(where, 'is listed twice (also as baseline query #%d)' % seen[name])
        seen.setdefault(name, position)
        sql = query.get('sql')
        if not isinstance(sql, str) or not sql.strip():
            problems.add(where, 'sql must be one read-only query as a string, not %s' % _type_name(sql))
            sql = ''
        params = query.get('params', {})
        if params is None:
            params = {}
        if not isinstance(params, dict):
            problems.add(where, 'params must be a mapping of parameter names to values, not %s' % _type_name(params))
            continue
        used = set(PARAMETER.findall(sql))
        for missing in sorted(used - set(params)):
            problems.add(where, 'sql uses %%(%s)s but params gives no value for it' % missing)
        for unused in sorted(set(params) - used):
            problems.add(where, 'params gives %s, which sql does not use (write it %%(%s)s)' % (unused, unused))
        for param, value in sorted(params.items()):
            _check_parameter(problems, where, param, value)


def _check_prisma_folder(problems, plan):
    if 'prisma_migrations_dir' not in plan:
        return
    folder = plan['prisma_migrations_dir']
    if not isinstance(folder, str) or not folder.strip():
        problems.add('', 'prisma_migrations_dir must be the path of a prisma/migrations folder (relative to the plan '
                         'file), not %r' % (folder,))
    own = [key for key in ('tables', 'constraints', 'prisma_migration') if plan.get(key)]
    if own:
        problems.add('', 'a plan that names prisma_migrations_dir deploys the folder\'s migrations, statement by '
                         'statement: it has no %s of its own (make them a migration of the folder, or a plan of their '
                         'own)' % ', '.join(own))


def _check_prisma(problems, plan):
    prisma = plan.get('prisma_migration')
    if prisma is None:
        return
    if not problems.entry('prisma_migration', prisma):
        return
    problems.keys('prisma_migration', prisma, PRISMA_KEYS)
    for key in PRISMA_REQUIRED:
        if not isinstance(prisma.get(key), str) or not prisma.get(key):
            problems.add('prisma_migration', '%s is required (a string)' % key)
    if 'create_table' in prisma and not isinstance(prisma['create_table'], bool):
        problems.add('prisma_migration', 'create_table must be true or false')


def plan_errors(plan):
    """Every structural problem of a migration plan, each a sentence that starts with the entry it is about."""
    problems = _Problems()
    if not isinstance(plan, dict):
        return ['the plan file holds %s, not a mapping with name, tables and the other plan keys' % _type_name(plan)]
    # A file given by mistake (a secrets file, a config) must not be echoed key by key: only a plan's typos are.
    if not any(key in TOP_KEYS for key in plan):
        return [NOT_A_PLAN]
    problems.keys('', plan, TOP_KEYS)
    if not isinstance(plan.get('name'), str) or not PLAN_NAME.match(plan['name']):
        problems.add('', 'name must be a short id of letters, digits, _, . and - (it names the artifacts folders), '
                         'not %r' % (plan.get('name'),))
    if 'description' in plan and not isinstance(plan['description'], str):
        problems.add('', 'description must be a string')
    schema = plan.get('schema', 'public')
    problems.identifier('', 'schema', schema)
    indexes = _check_tables(problems, plan, schema if isinstance(schema, str) else 'public')
    _check_constraints(problems, plan, schema if isinstance(schema, str) else 'public', indexes)
    _check_baseline_queries(problems, plan)
    _check_prisma(problems, plan)
    _check_prisma_folder(problems, plan)
    for error in trusted_errors(plan.get('trusted')):
        problems.add('trusted', error)
    return problems.items


PLAN_DEFAULTS = plan_schema.defaults(plan_schema.PLAN)
NO_PLAN = 'No migration plan given; nothing was done. Pass -e pgzd_plan=<path of a plan file> (docs/plan-format.md).'


def new_run_id(now=None, rand=random.random):
    """A run id: the UTC start time and a random suffix, unique per run (files, the audit and the lock carry it)."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return '%s-%06x' % (now.strftime('%Y%m%dT%H%M%SZ'), int(rand() * 0xFFFFFF))


def run_id_error(run_id):
    """Why a run id given from outside (-e pgzd_run_id=...) is refused, or None. It names the run's folder under
    artifacts_dir (runs/<plan>-<run id>) and its audit files, so it is held to the pattern of a plan's name: no /, no
    .., nothing that could lead out of artifacts_dir."""
    if isinstance(run_id, str) and PLAN_NAME.match(run_id):
        return None
    return ('pgzd_run_id must be 1 to 63 letters, digits, _, . and -, starting with a letter or digit (it names the '
            'run\'s folder under artifacts_dir), not %r: leave it out (each run makes its own) or give such an id; '
            'nothing was done.' % (run_id,))


def _unquoted(text):
    """A parser's words without the file's own: quoted text longer than a character or an escape is left out."""
    def keep(match):
        quoted = match.group(1) if match.group(1) is not None else match.group(2)
        return match.group(0) if len(quoted) <= 2 else "'...'"
    return QUOTED.sub(keep, ' '.join(str(text).split()))


def yaml_error_text(error):
    """What a YAML parser says is wrong, and where (line and column), without quoting the file: PyYAML's str() of an
    error shows the offending line, and a file given by mistake (a secrets file) must not reach the output."""
    parts = []
    for words, mark in ((getattr(error, 'context', None), getattr(error, 'context_mark', None)),
                        (getattr(error, 'problem', None), getattr(error, 'problem_mark', None))):
        if words:
            parts.append('%s%s' % (_unquoted(words), ' (line %d, column %d)' % (mark.line + 1, mark.column + 1)
                                   if mark is not None else ''))
    return ': '.join(parts) or type(error).__name__


def parse_plan_text(text, path):
    """The plan as YAML data, or (None, the parser's message with where it stopped, without the file's text)."""
    try:
        # libyaml's loader when there is one, as Ansible's own from_yaml: its messages say where parsing stopped.
        return yaml.load(text, Loader=getattr(yaml, 'CSafeLoader', yaml.SafeLoader)), None
    except yaml.YAMLError as error:
        return None, 'The plan file %s is not valid YAML; nothing was done: %s' % (path, yaml_error_text(error))


def plan_text(path, read):
    """The text of the plan file at C(path), or (None, why it is not read): a file larger than a plan can be, or one
    that is not UTF-8 text (a binary file), is refused without showing any of it."""
    size = os.path.getsize(path)
    if size > MAX_PLAN_BYTES:
        return None, ('The plan file %s is %d bytes, more than a plan can be (at most %d): it is not a migration plan; '
                      'nothing was done. Pass -e pgzd_plan=<path of a plan file> (docs/plan-format.md).'
                      % (path, size, MAX_PLAN_BYTES))
    try:
        text = read(path)
    except UnicodeDecodeError:
        text = None
    if text is None or '\x00' in text:
        return None, ('The plan file %s is not a UTF-8 text file (a binary file?): it is not a migration plan; nothing '
                      'was done. Pass -e pgzd_plan=<path of a plan file> (docs/plan-format.md).' % path)
    return text, None


def load_plan(path, working_dir, on_duplicates=None, only_tables=None, read_prisma_sql=True, read=None):
    """Load a plan file on the controller: (plan, None) or (None, the message saying what is wrong and what to do).

    C(path) is absolute or relative to C(working_dir) (where ansible-playbook runs). The plan gets its defaults, its
    C(file), the Prisma migration file resolved against the plan's directory and, with C(read_prisma_sql), that file's
    content as C(prisma_migration.migration_sql). C(on_duplicates) overrides every constraint's; C(only_tables) must
    name tables of the plan.
    """
    read = read or _read_text
    if not path:
        return None, NO_PLAN
    path = path if os.path.isabs(path) else os.path.join(working_dir, path)
    path = os.path.normpath(path)
    if not os.path.isfile(path):
        return None, ('The plan file %s does not exist: pass -e pgzd_plan=<path of a plan file> (docs/plan-format.md).'
                      % path)
    text, error = plan_text(path, read)
    if error:
        return None, error
    raw, error = parse_plan_text(text, path)
    if error:
        return None, error
    errors = plan_errors(raw)
    if errors:
        return None, 'The plan %s is malformed; nothing was done:\n- %s' % (path, '\n- '.join(errors))
    if on_duplicates is not None and on_duplicates not in ON_DUPLICATES:
        return None, 'pgzd_on_duplicates must be fail or rename, not %s' % on_duplicates
    plan = dict(PLAN_DEFAULTS, **raw)
    plan['file'] = path
    plan['constraints'] = [dict(c, on_duplicates=on_duplicates) if on_duplicates and c.get('type', DEFAULT_CONSTRAINT_TYPE) == 'unique'
                           else dict(c) for c in plan['constraints'] or []]
    plan['baseline_queries'] = plan['baseline_queries'] or []
    plan['trusted'] = plan['trusted'] or []
    table_names = [table['name'] for table in plan.get('tables') or []]
    unknown = [name for name in only_tables or [] if name not in table_names]
    if unknown:
        return None, 'pgzd_only_tables names %s, not in plan %s; its tables are %s' % (
            ', '.join(unknown), plan['name'], ', '.join(table_names))
    plan['tables'] = plan.get('tables') or []
    if plan.get('prisma_migrations_dir'):
        folder = os.path.expanduser(plan['prisma_migrations_dir'])
        plan['prisma_migrations_dir'] = os.path.normpath(folder if os.path.isabs(folder)
                                                         else os.path.join(os.path.dirname(path), folder))
    prisma = plan.get('prisma_migration')
    if prisma:
        prisma = dict(prisma)
        prisma['file'] = os.path.normpath(prisma['file'] if os.path.isabs(prisma['file'])
                                          else os.path.join(os.path.dirname(path), prisma['file']))
        if read_prisma_sql:
            if not os.path.isfile(prisma['file']):
                return None, ('The Prisma migration file %s does not exist (or is not a file). Set prisma_migration.file '
                              'in the plan to the migration\'s migration.sql (relative to the plan file), or remove the '
                              'prisma_migration section. Nothing was changed.' % prisma['file'])
            prisma['migration_sql'] = read(prisma['file'])
        plan['prisma_migration'] = prisma
    return plan, None


def only_tables_list(value):
    """only_tables as given (-e pgzd_only_tables=Job,Item or a list), as a list; None when not given."""
    if value is None or value == '':
        return None
    if isinstance(value, str):
        return [name.strip() for name in value.split(',') if name.strip()]
    return list(value)


def _read_text(path):
    # newline='' keeps CRLF line ends: Prisma's checksum is of the file's exact text.
    with open(path, encoding='utf-8', newline='') as handle:
        return handle.read()
