# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A team's prisma/migrations folder, read on the controller as `prisma migrate deploy` reads it.

Each sub-folder is a migration named by the folder, holding migration.sql; migration_lock.toml beside them names the
provider the migrations were written for, which must be postgresql. Which of them are pending is decided in the
preflight, against the database's _prisma_migrations (module_utils/prisma/pending_migrations.py).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re

LOCK_FILE = 'migration_lock.toml'
MIGRATION_FILE = 'migration.sql'
PROVIDER_LINE = re.compile(r'^\s*provider\s*=\s*"([^"]*)"\s*(#.*)?$', re.MULTILINE)
WHAT_TO_DO = ('Point pgzd_prisma_migrations_dir at the prisma/migrations folder of the application (the folder that '
              'holds migration_lock.toml and one folder a migration)')


def lock_file_problem(text):
    """Why the text of migration_lock.toml does not allow a deploy to PostgreSQL, or None."""
    if text is None:
        return ('it has no %s: a folder `prisma migrate` made has one. %s; nothing was changed.'
                % (LOCK_FILE, WHAT_TO_DO))
    providers = [match.group(1) for match in PROVIDER_LINE.finditer(text)]
    if providers != ['postgresql']:
        return ('its %s names the provider %s, not "postgresql": these migrations were written for another database. '
                '%s; nothing was changed.' % (LOCK_FILE, ' and '.join('"%s"' % p for p in providers) or 'nowhere',
                                              WHAT_TO_DO))
    return None


def _read(path):
    with open(path, 'rb') as handle:
        return handle.read().decode('utf-8')


def read_migrations_dir(path, working_dir, read=_read):
    """(the folder's absolute path, [dict(name, sql, file)] in folder-name order, problems) of the prisma/migrations
    folder C(path) (relative to C(working_dir)). C(sql) is None for a folder without migration.sql; the decision
    (module_utils/prisma/pending_migrations.folder_problems) says what that means."""
    if not isinstance(path, str) or not path.strip():
        return None, [], ['pgzd_prisma_migrations_dir is empty. %s.' % WHAT_TO_DO]
    folder = os.path.normpath(os.path.join(working_dir, os.path.expanduser(path)))
    if not os.path.isdir(folder):
        return folder, [], ['pgzd_prisma_migrations_dir %s is not a directory. %s; nothing was changed.'
                            % (folder, WHAT_TO_DO)]
    lock_path = os.path.join(folder, LOCK_FILE)
    problem = lock_file_problem(read(lock_path) if os.path.isfile(lock_path) else None)
    if problem:
        return folder, [], ['The Prisma migrations folder %s: %s' % (folder, problem)]
    migrations = []
    for name in sorted(os.listdir(folder)):
        directory = os.path.join(folder, name)
        if not os.path.isdir(directory) or name.startswith('.'):
            continue
        sql_path = os.path.join(directory, MIGRATION_FILE)
        migrations.append(dict(name=name, file=sql_path, sql=read(sql_path) if os.path.isfile(sql_path) else None))
    if not migrations:
        return folder, [], ['The Prisma migrations folder %s holds no migration. %s; nothing was changed.'
                            % (folder, WHAT_TO_DO)]
    return folder, migrations, []


def acknowledgement_list(value):
    """The acknowledgements as a list, however given: a list, a JSON list (-e 'pgzd_prisma_allow=["a:2:drop_column"]'),
    or one string of keys separated by commas."""
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith('['):
            try:
                value = json.loads(text)
            except ValueError:
                raise ValueError('pgzd_prisma_allow is not a JSON list: %s' % text)
        else:
            value = [part for part in text.split(',')]
    return [str(key).strip() for key in value if str(key).strip()]


def migrations_args(args, working_dir, read=_read):
    """(C(args) of a task that names a migrations folder (migrations_dir), with the folder's absolute path, its
    migrations ([dict(name, sql)]) for the module and the acknowledgements (allow) as a list, problems): the
    problems stop the task before anything connects."""
    folder, migrations, problems = read_migrations_dir(args.get('migrations_dir'), working_dir, read=read)
    try:
        allow = acknowledgement_list(args.get('allow'))
    except ValueError as error:
        problems = problems + ['%s; nothing was changed.' % error]
    if problems:
        return args, problems
    return dict(args, migrations_dir=folder, allow=allow, migrations=[
        dict(name=migration['name'], sql=migration['sql']) for migration in migrations]), []


def folder_plan(path, schema='public'):
    """The plan of a run given a prisma/migrations folder alone (-e pgzd_prisma_migrations_dir): named prisma, with no
    tables or constraints of its own; the folder's pending migrations are its work."""
    return dict(name='prisma', file=None, description='the pending migrations of %s' % path, schema=schema, tables=[],
                constraints=[], baseline_queries=[], trusted=[], prisma_migration=None)
