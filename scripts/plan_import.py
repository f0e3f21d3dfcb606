#!/usr/bin/env python3
"""Write a pg-zero-downtime plan from the SQL a team already has (a Prisma migration.sql, a hand-written file).

    .venv/bin/python scripts/plan_import.py prisma/migrations/20241125000000_t12_indexes/migration.sql -o plans/t12.yml

The SQL is parsed with PostgreSQL's own parser (pglast wraps libpg_query) and every statement classified by
plugins/module_utils/prisma/statement_classes.py, the classifier the playbooks use too. Every
    CREATE [UNIQUE] INDEX [CONCURRENTLY] [IF NOT EXISTS] <name> ON <table> [USING <method>] (<columns>)
        [INCLUDE (<columns>)] [WHERE <predicate>]
becomes an index entry of its table, and every
    ALTER TABLE <table> ADD CONSTRAINT <name> UNIQUE (<columns>)
    ALTER TABLE <table> ADD CONSTRAINT <name> FOREIGN KEY (<columns>) REFERENCES <table> (<columns>)
        [ON DELETE <action>] [ON UPDATE <action>]
    ALTER TABLE <table> ADD CONSTRAINT <name> CHECK (<expression>)
    ALTER TABLE <table> ALTER COLUMN <column> SET NOT NULL      (named <Table>_<column>_not_null)
a constraint entry; the playbooks then build indexes CONCURRENTLY and add constraints NOT VALID, then validate them,
whatever the SQL said. Read-only queries
(a SELECT that checks for duplicates), transaction control and SET of a timeout change nothing the plan
has to carry: they are listed as skipped. Any other statement, or a feature of these two statements the
plan format cannot express (expression keys, sort order, operator classes, storage options, an unnamed
index, DEFERRABLE...), is refused with its line, its class, its lock and, for a statement the classifier refuses, why and the safe way:
the import fails and writes nothing, so no schema change is ever dropped silently. A migration of constraints only
gives a plan with `tables: []`.

--base <plan> keeps the name, description, schema, baseline_queries and prisma_migration of an existing
plan and replaces only its tables and constraints: a team refreshes the DDL part of its plan from an
updated migration without retyping its baseline queries.
Exit status: 0 written, 2 refused (nothing written), 1 unreadable input.
"""

import argparse
import importlib.util
import os
import sys

import yaml

try:
    import pglast  # noqa: F401 (the classifier needs it; say so before anything else)
except ImportError:  # pragma: no cover - the bootstrap installs it
    sys.exit('plan_import needs pglast: run scripts/bootstrap (or pip install -r requirements.txt)')

# The one classifier of migration statements, shared with the playbooks (loaded from its file: no collection path
# needs to be set up for a script).
_CLASSIFIER = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, 'plugins', 'module_utils', 'prisma',
                           'statement_classes.py')
_spec = importlib.util.spec_from_file_location('pgzd_statement_classes', _CLASSIFIER)
statement_classes = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(statement_classes)

# Keys a --base plan keeps; tables and constraints always come from the SQL.
BASE_KEYS = ('name', 'description', 'schema', 'baseline_queries', 'prisma_migration')
# The classifier's online kinds a plan file carries, and the plan's constraint type of each.
CONSTRAINT_TYPES = dict(add_unique='unique', add_foreign_key='foreign_key', add_check='check', set_not_null='not_null')
IMPORTABLE = ('a plan only carries CREATE INDEX, ALTER TABLE ... ADD CONSTRAINT ... UNIQUE / FOREIGN KEY / CHECK and '
              'ALTER COLUMN ... SET NOT NULL; run this change separately (and reviewed for locks) before or after, '
              'or move the other changes to a migration of their own')


def not_null_name(table, column):
    """The name of a NOT NULL entry (its helper check's, on the way): <Table>_<column>_not_null, at most 63 bytes."""
    return ('%s_%s' % (table, column))[:63 - len('_not_null')] + '_not_null'


def index_entry(details):
    """The plan index entry of a create_index's details: defaults left out, as plans/t12.yml writes them."""
    entry = {'name': details['name'], 'columns': details['columns']}
    if details['unique']:
        entry['unique'] = True
    if details['method'] != 'btree':
        entry['method'] = details['method']
    if details['where'] is not None:
        entry['where'] = details['where']
    if details['include']:
        entry['include'] = details['include']
    return entry


def constraint_entry(kind, details):
    """The plan constraint entry of an add_unique / add_foreign_key / add_check / set_not_null's details."""
    table = details['table']
    if kind == 'set_not_null':
        return {'name': not_null_name(table, details['column']), 'table': table, 'type': 'not_null',
                'column': details['column']}
    entry = {'name': details['name'], 'table': table, 'type': CONSTRAINT_TYPES[kind]}
    if kind == 'add_check':
        entry['expression'] = details['expression']
        return entry
    entry['columns'] = details['columns']
    if kind == 'add_foreign_key':
        referenced = details['references']
        references = {'table': referenced['table']}
        if referenced['schema']:
            references['schema'] = referenced['schema']
        references['columns'] = referenced['columns']
        entry['references'] = references
        for key in ('on_delete', 'on_update'):
            if details[key] != 'NO ACTION':
                entry[key] = details[key]
    return entry


def refusal_reason(entry):
    """Why a plan cannot carry a classified statement, with what the classifier knows of it."""
    if entry['kind'] == 'syntax_error':
        return entry['why']
    if entry['kind'] in ('create_index',) + tuple(CONSTRAINT_TYPES):
        if entry['class'] == 'refused':
            return entry['why']  # an index or constraint in a form the plan format cannot express
        # catalog: on a table the same migration creates, which a plan cannot create
        return 'a plan cannot carry it: %s, and a plan creates no tables. %s' % (entry['why'], IMPORTABLE)
    said = 'not an index or constraint a plan carries: a %s statement (%s), lock %s' % (
        entry['class'], entry['kind'], entry['lock_as_written'] or 'none on a table')
    if entry['class'] == 'refused':
        said += '. %s. The safe way: %s' % (entry['why'][:1].upper() + entry['why'][1:], entry['safe_way'])
    return '%s. %s' % (said, IMPORTABLE)


def import_sql(sql_text, schema='public'):
    """Parse SQL into (tables, constraints, skipped, refused), the statements classified by
    plugins/module_utils/prisma/statement_classes.py.

    tables: plan tables in the order their first index appears; constraints: plan constraints in order;
    skipped: [(line, statement, reason)]; refused: [(line, statement, reason)].
    """
    tables, by_table, constraints, skipped, refused = [], {}, [], [], []
    names = {}
    for classified in statement_classes.classify(sql_text, schema=schema):
        line, text, kind = classified['line'], classified['text'], classified['kind']
        if classified['class'] == 'skip':
            skipped.append((line, text, classified['why']))
            continue
        if classified['class'] != 'online' or kind not in ('create_index',) + tuple(CONSTRAINT_TYPES):
            refused.append((line, text, refusal_reason(classified)))
            continue
        details = classified['details']
        table_schema, table = details['schema'], details['table']
        entry = index_entry(details) if kind == 'create_index' else constraint_entry(kind, details)
        qualified = (table_schema or schema, entry['name'])
        if qualified in names:
            refused.append((line, text, '%s is already defined at line %d' % (entry['name'], names[qualified])))
            continue
        names[qualified] = line
        if 'type' in entry:
            if table_schema and table_schema != schema:
                entry = dict(entry, schema=table_schema)
            constraints.append(entry)
            continue
        key = (table_schema or schema, table)
        if key not in by_table:
            by_table[key] = {'name': table}
            if table_schema and table_schema != schema:
                by_table[key]['schema'] = table_schema
            by_table[key]['indexes'] = []
            tables.append(by_table[key])
        by_table[key]['indexes'].append(entry)
    return tables, constraints, skipped, refused


def build_plan(tables, constraints, name, description, schema, base=None):
    """The plan as an ordered dict; with base, its name, description, schema and queries are kept."""
    plan = {'name': name, 'description': description, 'schema': schema}
    if base:
        plan.update((key, base[key]) for key in ('name', 'description', 'schema') if key in base)
    plan['tables'] = tables
    if constraints:
        plan['constraints'] = constraints
    for key in ('baseline_queries', 'prisma_migration'):
        if base and key in base:
            plan[key] = base[key]
    return plan


class _IndentedDumper(yaml.SafeDumper):
    """Block YAML with list items indented under their key, as yamllint's default expects."""

    def increase_indent(self, flow=False, indentless=False):
        return super(_IndentedDumper, self).increase_indent(flow, False)


def _flow(value):
    """value as one line of flow-style YAML (a scalar is written inside a list, then unwrapped)."""
    if not isinstance(value, (dict, list)):
        return _flow([value])[1:-1]
    return yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=1 << 20).strip()


def _item(entry, width=140):
    """A list item of entry: one flow-style line, or a block mapping (with flow-style lists) where that is too long
    for yamllint."""
    line = '  - %s' % _flow(entry)
    if len(line) <= width:
        return line
    block = yaml.dump([entry], Dumper=_IndentedDumper, sort_keys=False, default_flow_style=None, width=width)
    return '\n'.join('  ' + text for text in block.rstrip().splitlines())


def render_plan(plan, source, skipped):
    """The plan file's text, in the layout of plans/t12.yml: one flow-style line per index or constraint."""
    lines = ['---', '# Imported by scripts/plan_import.py from %s.' % source,
             '# Plan format: docs/plan-format.md. Every index is built CONCURRENTLY, and every foreign key and',
             '# check added NOT VALID then validated, whatever the SQL said.']
    for line, text, reason in skipped:
        lines.append('# Skipped line %d, %s: %s' % (line, reason, ' '.join(text.split())[:80]))
    lines.extend('%s: %s' % (key, _flow(plan[key])) for key in ('name', 'description', 'schema'))
    # A plan of constraints only still lists its tables, empty: the plan loader wants a list there, never nothing.
    lines.append('tables:' if plan['tables'] else 'tables: []')
    for table in plan['tables']:
        lines.append('  - name: %s' % _flow(table['name']))
        if 'schema' in table:
            lines.append('    schema: %s' % _flow(table['schema']))
        lines.append('    indexes:')
        lines.extend('      - %s' % _flow(index) for index in table['indexes'])
    if plan.get('constraints'):
        lines.append('constraints:')
        lines.extend(_item(constraint) for constraint in plan['constraints'])
    for key in ('baseline_queries', 'prisma_migration'):
        if key in plan:
            lines.append(yaml.dump({key: plan[key]}, Dumper=_IndentedDumper, sort_keys=False, width=120).rstrip())
    return '\n'.join(lines) + '\n'


def default_name(path):
    """A Prisma migration is named by its folder (<timestamp>_<name>/migration.sql); a file by its stem."""
    base = os.path.basename(path)
    if base == 'migration.sql' and os.path.dirname(os.path.abspath(path)):
        return os.path.basename(os.path.dirname(os.path.abspath(path)))
    return os.path.splitext(base)[0]


def main(argv=None):
    parser = argparse.ArgumentParser(
        description='Write a pg-zero-downtime plan from SQL (a Prisma migration.sql or any file of CREATE INDEX '
                    'and ALTER TABLE ... ADD CONSTRAINT ... UNIQUE statements).')
    parser.add_argument('sql', help='the SQL file; - reads standard input')
    parser.add_argument('-o', '--output', help='plan file to write (default: standard output)')
    parser.add_argument('--name', help='plan name (default: the Prisma migration folder, or the file name)')
    parser.add_argument('--description', default='', help='plan description')
    parser.add_argument('--schema', default='public', help='schema of unqualified tables (default: public)')
    parser.add_argument('--prisma', action='store_true',
                        help='the SQL is a Prisma migration (prisma/migrations/<name>/migration.sql): add a '
                             'prisma_migration section, so migrate.yml records it as applied in _prisma_migrations')
    parser.add_argument('--base', help='existing plan whose name, description, schema, baseline_queries and '
                                       'prisma_migration are kept')
    args = parser.parse_args(argv)

    try:
        if args.sql == '-':
            sql_text, source = sys.stdin.read(), 'standard input'
        else:
            with open(args.sql, encoding='utf-8') as handle:
                sql_text, source = handle.read(), args.sql
        base = None
        if args.base:
            with open(args.base, encoding='utf-8') as handle:
                base = dict((key, value) for key, value in (yaml.safe_load(handle) or {}).items() if key in BASE_KEYS)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        print('plan_import: cannot read the input: %s' % error, file=sys.stderr)
        return 1

    schema = (base or {}).get('schema', args.schema)
    tables, constraints, skipped, refused = import_sql(sql_text, schema=schema)
    for line, text, reason in skipped:
        print('skipped line %s: %s\n    %s' % (line, ' '.join(text.split())[:100], reason), file=sys.stderr)
    if not refused and not tables and not constraints:
        refused.append((None, '', 'no CREATE INDEX, ALTER TABLE ... ADD CONSTRAINT or SET NOT NULL found'))
    if refused:
        for line, text, reason in refused:
            print('refused %s: %s\n    %s' % ('line %s' % line if line else 'input', ' '.join(text.split())[:100],
                                               reason), file=sys.stderr)
        print('plan_import: %d statement(s) refused; no plan written. Fix or remove them and import again.'
              % len(refused), file=sys.stderr)
        return 2

    plan = build_plan(tables, constraints, args.name or default_name(args.sql if args.sql != '-' else 'stdin'),
                      args.description, schema, base)
    if args.name:
        plan['name'] = args.name
    if args.prisma:
        if os.path.basename(args.sql) != 'migration.sql':
            print('plan_import: --prisma needs the migration.sql of a Prisma migration folder '
                  '(prisma/migrations/<name>/migration.sql), not %s' % args.sql, file=sys.stderr)
            return 2
        plan['prisma_migration'] = {
            'name': default_name(args.sql),
            # Relative to the plan file, as the playbooks resolve it.
            'file': os.path.relpath(os.path.abspath(args.sql), os.path.dirname(os.path.abspath(args.output)))
            if args.output else os.path.abspath(args.sql)}
    text = render_plan(plan, source, skipped)
    if args.output:
        with open(args.output, 'w', encoding='utf-8') as handle:
            handle.write(text)
    else:
        sys.stdout.write(text)
    print('plan_import: %d index(es) on %d table(s), %d constraint(s)%s%s' % (
        sum(len(table['indexes']) for table in tables), len(tables), len(constraints),
        ', %d statement(s) skipped' % len(skipped) if skipped else '',
        ' -> %s' % args.output if args.output else ''), file=sys.stderr)
    return 0


if __name__ == '__main__':
    sys.exit(main())
