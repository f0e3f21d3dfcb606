# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How each statement of a deployed Prisma migration is undone, decided from its entry (statement_classes) and what
the ledger recorded of its run: plain data, no server (tests/unit runs it).

A form is a dict with C(form) and what it needs:
    nothing     the statement changed nothing to undo, or never ran (no ledger row): C(why)
    kept        it is left as it is, and the rollback says so (a schema, an extension, a comment): C(why)
    refused     it cannot be undone without losing data or online (an enum value, a dropped column, a narrowed type):
                C(why); the rollback refuses before any change
    kind        through the tool's kind, C(state) absent (what the deploy built: attributed by the ledger) or present
                (what the deploy dropped, built again online), with C(shape) and C(spec) (deploy_proof.kind_spec)
    sql         run in one transaction under the short lock_timeout with the ledger row marked undone: C(statements)
                (text, identifiers quoted), and C(check): a condition the preflight proves first, or None
                (C(empty): the table holds no rows; C(default_only): the column holds nothing but its default)
    concurrent  DROP INDEX CONCURRENTLY of an index created with its table: C(statements)
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.prisma.deploy_proof import kind_spec
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.prisma.statement_classes import (
    classify, type_change_rewrites,
)

KEPT = dict(
    create_schema='a schema is kept: other objects may live in it',
    create_extension='an extension is kept: other objects may use it',
    create_sequence='a sequence is kept: its values may be in use',
    alter_sequence='the owner of a sequence is kept',
    comment='a comment is kept',
)
NOTHING = dict(validate_constraint='a validated constraint stays validated (nothing was changed but its flag)')
IRREVERSIBLE = dict(
    add_enum_value='PostgreSQL cannot remove a value from an enum: rows may hold it, and the type would have to be '
                   'rebuilt',
    add_column_volatile_default='the column was filled with computed values: dropping it loses them',
    drop_column='the column and its data were dropped: they cannot be brought back (restore them from the backup)',
    drop_table='the table and its rows were dropped: they cannot be brought back (restore them from the backup)',
    drop_type='the type was dropped, with its values',
    rename_column='renaming back breaks the application that now uses the new name',
    rename_table='renaming back breaks the application that now uses the new name',
    rename_type='renaming back breaks the application that now uses the new name',
    rename_enum_value='rows now hold the new label: renaming it back changes them',
    update='the rows it changed are not recorded: their old values are gone',
    insert='the rows it inserted may be in use',
    delete='the rows it deleted are gone (restore them from the backup)',
    unknown='what it did is not known',
)
ONLINE_UNDONE = ('create_index', 'add_unique', 'add_foreign_key', 'add_check', 'set_not_null')


def _ident(name):
    return '"%s"' % name.replace('"', '""')


def _table(details, schema):
    return '%s.%s' % (_ident(details.get('schema') or schema), _ident(details['table']))


def _refused(why):
    return dict(form='refused', why=why)


def undo_form(entry, row, schema='public', finished=True):
    """The form (above) that undoes C(entry), whose ledger row is C(row): for a statement run as written, its
    'statement' row (with its prior state in C(row['prior'])); for an online one, the row of what it made or dropped, or
    None when the kind's own attribution decides (its rows are read by the kind). Of a migration this tool
    C(finished), a statement run as written without its row is refused: the ledger does not say what it did."""
    kind, cls = entry['kind'], entry['class']
    if cls == 'skip':
        return dict(form='nothing', why='left out by the deploy')
    if cls == 'online':
        return _online(entry, row, schema)
    if row is None and finished and (cls == 'catalog' or entry.get('needs_server_proof')):
        return _refused('the ledger has no row of it, though the migration is recorded as deployed by this tool: '
                        'what it did is not known (undo it by hand)')
    if row is None:
        return dict(form='nothing', why='the deploy did not run it (no ledger row)')
    if cls == 'refused' and entry.get('needs_server_proof') and not (row.get('prior') or {}).get('acknowledged'):
        # Proven by the server when it was deployed (a rollback does not prove it again): what it became then.
        entry = dict(entry, **{'class': entry.get('class_if_proven') or 'catalog'})
        cls = entry['class']
    if kind in NOTHING:
        return dict(form='nothing', why=NOTHING[kind])
    if kind in KEPT:
        return dict(form='kept', why=KEPT[kind])
    if kind in IRREVERSIBLE or (cls == 'refused' and kind != 'alter_column_type'):
        return _refused(IRREVERSIBLE.get(kind, 'it was acknowledged to run as written; nothing undoes it'))
    return _as_written(entry, (row.get('prior') or {}).get('before') or {}, schema)


def _online(entry, row, schema):
    kind = entry['kind']
    if kind in ONLINE_UNDONE:
        shape, spec = kind_spec(entry, schema)
        return dict(form='kind', state='absent', shape=shape, spec=spec)
    if kind == 'drop_index':
        if row is None:
            return dict(form='nothing', why='the deploy did not drop it (no ledger row)')
        return rebuilt(((row.get('prior') or {}).get('definition')), schema)
    if kind == 'add_primary_key':
        shape, spec = kind_spec(entry, schema)
        return dict(form='sql', check=None, statements=['ALTER TABLE %s DROP CONSTRAINT IF EXISTS %s' % (
            _table(dict(spec, schema=spec['schema']), schema), _ident(spec['name']))]) if row is not None else \
            dict(form='nothing', why='the deploy did not add it (no ledger row)')
    return _refused('no undo is known for %s' % kind)


def rebuilt(definition, schema, constraint_of=None):
    """The form that builds again, online, the index (pg_get_indexdef) or constraint (C(constraint_of): its table,
    with the pg_get_constraintdef C(definition)) a deploy dropped, from the definition the ledger recorded."""
    if not definition:
        return _refused('the ledger recorded no definition to build it again from')
    text = ('ALTER TABLE %s ADD CONSTRAINT %s %s' % (constraint_of[0], _ident(constraint_of[1]), definition)
            if constraint_of else definition)
    entries = classify(text + ';', schema)
    if len(entries) != 1 or entries[0]['class'] != 'online':
        return _refused('its recorded definition (%s) has no online form: %s' % (
            definition, (entries[0].get('why') if entries else 'nothing parsed')))
    shape, spec = kind_spec(entries[0], schema)
    if shape == 'primary_key':
        return _refused('a primary key dropped by the deploy is not built again online')
    return dict(form='kind', state='present', shape=shape, spec=spec)


def _as_written(entry, before, schema):
    kind, details = entry['kind'], entry.get('details') or {}
    if kind == 'create_table':
        return dict(form='sql', check='empty', statements=['DROP TABLE %s' % _table(details, schema)])
    if kind == 'create_enum':
        return dict(form='sql', check=None, statements=['DROP TYPE %s.%s' % (
            _ident(details.get('schema') or schema), _ident(details['enum']))])
    if kind == 'add_column':
        return dict(form='sql', check='default_only', statements=['ALTER TABLE %s DROP COLUMN %s' % (
            _table(details, schema), _ident(details['definition']['name']))])
    if kind in ('set_default', 'drop_default'):
        column = before.get('column')
        if column is None:
            return _refused('the ledger recorded no default to put back')
        action = 'SET DEFAULT %s' % column['default'] if column.get('default') is not None else 'DROP DEFAULT'
        return dict(form='sql', check=None, statements=['ALTER TABLE %s ALTER COLUMN %s %s' % (
            _table(details, schema), _ident(details['column']), action)])
    if kind == 'drop_not_null':
        return dict(form='kind', state='present', shape='constraint', spec=dict(
            schema=details.get('schema') or schema, table=details['table'], type='not_null',
            column=details['column'], name=kind_spec(dict(entry, kind='set_not_null'), schema)[1]['name']))
    if kind == 'alter_column_type':
        column = before.get('column')
        if column is None:
            return _refused('the ledger recorded no type to put back')
        problem = type_change_rewrites(details['type'], column['type'])
        if problem:
            return _refused('changing the type back, from %s to %s, is not binary-coercible: %s' % (
                details['type'], column['type'], problem))
        return dict(form='sql', check=None, statements=['ALTER TABLE %s ALTER COLUMN %s TYPE %s' % (
            _table(details, schema), _ident(details['column']), column['type'])])
    if kind == 'drop_constraint':
        constraint = before.get('constraint')
        if constraint is None:
            return dict(form='nothing', why='the constraint did not exist when the deploy dropped it')
        return rebuilt(constraint['definition'], schema, constraint_of=(_table(details, schema), details['constraint']))
    if kind == 'rename_index':
        return dict(form='sql', check=None, statements=['ALTER INDEX %s.%s RENAME TO %s' % (
            _ident(details.get('schema') or schema), _ident(details['new_name']), _ident(details['name']))])
    if kind == 'rename_constraint':
        return dict(form='sql', check=None, statements=['ALTER TABLE %s RENAME CONSTRAINT %s TO %s' % (
            _table(details, schema), _ident(details['new_name']), _ident(details['constraint']))])
    if kind == 'create_index':
        return dict(form='concurrent', statements=['DROP INDEX CONCURRENTLY IF EXISTS %s.%s' % (
            _ident(details.get('schema') or schema), _ident(details['name']))])
    if kind in ('add_foreign_key', 'add_check', 'add_unique', 'add_primary_key'):
        return dict(form='sql', check=None, statements=['ALTER TABLE %s DROP CONSTRAINT IF EXISTS %s' % (
            _table(details, schema), _ident(details['name']))])
    if kind == 'set_not_null':
        return dict(form='sql', check=None, statements=['ALTER TABLE %s ALTER COLUMN %s DROP NOT NULL' % (
            _table(details, schema), _ident(details['column']))])
    return _refused('no undo is known for %s' % kind)


def undo_problems(name, forms):
    """The refusals of one migration's undo (C(forms): [(entry, form)] in undo order), one line each."""
    return ['migration %s, line %d (%s): cannot be undone: %s' % (name, entry['line'], entry['kind'], form['why'])
            for entry, form in forms if form['form'] == 'refused']
