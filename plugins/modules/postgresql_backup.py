#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: postgresql_backup
short_description: A verified pg_dump backup of a database, with its size and sha256, keeping the newest few
description:
  - Reads the server's version and chooses the C(pg_dump) and C(pg_restore) for it, from one directory, O(bin_dir)
    when given (refused when its C(pg_dump) is older than the server, as an older pg_dump cannot dump a newer server),
    else the installed client of the server's major, else the newest installed one newer than the server. Installed
    clients are looked for in O(client_dirs), every directory of the E(PATH), and where PostgreSQL's packages put them
    (C(/usr/lib/postgresql/*/bin) on Debian and Ubuntu, C(/usr/pgsql-*/bin) on RHEL). When none fits, it refuses
    before anything is written, saying what to install.
  - Dumps the database with C(pg_dump) into O(dir), as C(<database>-<UTC time>.pgc) (O(format=custom), one file)
    or C(<database>-<UTC time>.dir) (O(format=directory), dumped with O(jobs) parallel jobs), verifies it with
    C(pg_restore --list), and returns its size, duration, sha256 and number of entries.
  - Then deletes the backups of this database in O(dir) beyond the newest O(keep). A dump or verification that
    fails deletes what it wrote and deletes nothing else.
  - Run it where the backups are to be kept, usually the control node (C(delegate_to) C(localhost)). C(pg_dump)
    connects to the server like any client, so a managed database with no shell on its host is backed up too.
  - The login options are passed to C(pg_dump) and C(pg_restore) in libpq's environment variables (the password
    in C(PGPASSWORD)), never on their command lines.
  - O(enabled=false) takes no backup and returns C(skipped=true) with the reason.
  - In check mode it connects, checks the versions and returns the path it would write and the backups it would
    delete, and writes or deletes nothing.
version_added: '0.15.0'
options:
  login_db:
    description: Name of the database to back up.
  enabled:
    description: V(false) takes no backup; the result says so (C(skipped), C(reason)).
    type: bool
    default: true
  format:
    description:
      - V(custom) writes one file (C(pg_dump --format=custom)); V(directory) writes a directory of files, one per
        table, dumped by O(jobs) parallel jobs, for large databases.
    type: str
    choices: [custom, directory]
    default: custom
  jobs:
    description: Parallel C(pg_dump) jobs of O(format=directory) (each one more connection to the server).
    type: int
    default: 2
  dir:
    description:
      - Directory of this database's backups, created (mode 0700) when missing. Required unless O(root_dir) is
        given.
    type: path
  root_dir:
    description:
      - Directory that holds one directory per database; the backups go to C(<root_dir>/<database>) when O(dir) is
        not given.
    type: path
  keep:
    description: How many backups of this database to keep in O(dir), the newest, counting the new one.
    type: int
    default: 5
  bin_dir:
    description:
      - Directory of the C(pg_dump) and C(pg_restore) to run. Unset, the installed client that fits the server is
        chosen (see the description).
    type: path
  client_dirs:
    description:
      - More directories to look for installed clients in, before those of the E(PATH) and the packaged ones, when
        O(bin_dir) is not given.
    type: list
    elements: path
    default: []
    version_added: '0.19.0'

  session_role:
    description:
      - Switch to this role after connecting (C(pg_dump --role) too).
notes:
  - The sha256 of a directory-format backup is that of its table of contents, C(toc.dat).
extends_documentation_fragment:
  - pg_zero_downtime.migrations.common
  - pg_zero_downtime.migrations.connection
  - community.postgresql.postgres
'''

EXAMPLES = r'''
- name: Back the database up on the control node, keeping its newest five backups
  pg_zero_downtime.migrations.postgresql_backup:
    login_db: app
    dir: /srv/backups/app
  delegate_to: localhost
  register: backup

- name: Back a large database up in directory format with four parallel jobs, with the client of PostgreSQL 16
  pg_zero_downtime.migrations.postgresql_backup:
    login_db: app
    root_dir: /srv/backups
    format: directory
    jobs: 4
    bin_dir: /usr/lib/postgresql/16/bin
  delegate_to: localhost
'''

RETURN = r'''
skipped:
  description:
    - True when no backup was taken, with O(enabled=false) or when the module failed (a dump or verification that
      failed deletes what it wrote), so that a registered result read by a report says there is no backup.
  returned: always
  type: bool
reason:
  description: Why no backup was taken.
  returned: when skipped
  type: str
  sample: enabled=false was given
database:
  description: The database backed up.
  returned: always
  type: str
  sample: app
path:
  description: The backup written (in check mode, the one that would be written).
  returned: unless skipped
  type: str
  sample: /srv/backups/app/app-20261125T030000Z.pgc
format:
  description: O(format).
  returned: unless skipped
  type: str
  sample: custom
size_bytes:
  description: Size of the backup file, or the sum of the files of a directory-format backup (null in check mode).
  returned: unless skipped
  type: int
  sample: 48213912
seconds:
  description: Seconds taken by the dump, its verification and its measurement (null in check mode).
  returned: unless skipped
  type: float
  sample: 12.41
sha256:
  description: sha256 of the backup file, or of C(toc.dat) of a directory-format backup (null in check mode).
  returned: unless skipped
  type: str
sha256_of:
  description: What C(sha256) is of, C(the file) or C(toc.dat).
  returned: unless skipped
  type: str
  sample: the file
toc_entries:
  description: Entries C(pg_restore --list) read in the backup (null in check mode).
  returned: unless skipped
  type: int
  sample: 214
client:
  description:
    - The client chosen for the server, C(bin_dir), C(program) (the path of C(pg_dump)), C(version) (what
      C(pg_dump --version) said), C(major), and C(chosen_by) (O(bin_dir)'s role variable, C(the server's major), or
      C(the newest installed, the server's major is not)).
  returned: unless skipped
  type: dict
  sample: {bin_dir: /usr/lib/postgresql/18/bin, program: /usr/lib/postgresql/18/bin/pg_dump,
           version: pg_dump (PostgreSQL) 18.1, major: 18, chosen_by: the server's major}
  version_added: '0.19.0'
pg_dump_version:
  description: What C(pg_dump --version) said.
  returned: unless skipped
  type: str
  sample: pg_dump (PostgreSQL) 15.10
server_version:
  description: The server's version.
  returned: unless skipped
  type: str
  sample: '15.10'
deleted:
  description: The older backups deleted to keep the newest O(keep) (in check mode, those that would be).
  returned: always
  type: list
  elements: str
msg:
  description: One line that says what was done (or, in check mode, what would be).
  returned: always
  type: str
queries:
  description: The SQL statements run, all read-only.
  returned: always
  type: list
  elements: str
commands:
  description: The programs run (in check mode, also those that would be), as shell-quoted command lines; the
    login is in their environment.
  returned: always
  type: list
  elements: str
'''

import datetime
import os
import shutil
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.evidence.backup_clients import (
    SERVER_SQL,
    ClientPrograms,
    command_line,
    dump_command,
    last_lines,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.evidence.backup_files import (
    backup_name,
    backup_summary,
    backups_beyond,
    deleted_summary,
    sha256_of_file,
    sha256_target,
    size_bytes,
    toc_entries,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.connection import (
    conn_params_of, connect_or_fail, connection_argument_spec,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.statements import error_text, fetch_dicts


def make_directory(path):
    """Create C(path) and its missing parents with mode 0700: backups hold every row of the database."""
    missing = []
    while path and not os.path.isdir(path):
        missing.append(path)
        path = os.path.dirname(path)
    for directory in reversed(missing):
        os.mkdir(directory, 0o700)
        os.chmod(directory, 0o700)


def remove_backup(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)


def free_backup_path(directory, database, backup_format):
    """This run's backup path; a backup of the same second exists only when two runs meet: wait for the next."""
    while True:
        moment = datetime.datetime.now(datetime.timezone.utc)
        path = os.path.join(directory, backup_name(database, backup_format, moment))
        if not os.path.lexists(path):
            return path
        time.sleep(0.2)


class BackupFailed(Exception):
    """No backup was taken; the message says why and what to do."""


def fail(module, result, message):
    """Fail the task. Its result reads as no backup (C(skipped), as O(enabled=false) records it) with the reason,
    so a report that reads the registered result says there is no backup, and why."""
    result.update(skipped=True, reason='the backup failed: %s' % message.rstrip('.'))
    module.fail_json(msg=message, **result)


def back_up(module, result):
    """Check, dump, verify, measure and prune, filling C(result); BackupFailed says why it stopped."""
    params = module.params
    conn_params = conn_params_of(module)
    unreachable = dict(result, skipped=True, reason='the backup failed: could not connect to the database')
    connection = connect_or_fail(module, conn_params, **unreachable)
    server = fetch_dicts(connection.cursor(), SERVER_SQL)[0]
    connection.close()
    result['queries'].append(SERVER_SQL)
    database = result['database'] = server['database']

    programs = ClientPrograms(module, conn_params, 'pg-zero-downtime backup')
    result['commands'] = programs.commands
    client, refusal = programs.choose(('pg_dump', 'pg_restore'), server, params['client_dirs'], 'backup_bin_dir')
    if refusal:
        raise BackupFailed(refusal)
    result['client'] = client
    pg_dump, pg_restore, version_output = client['program'], programs.path('pg_restore'), client['version']

    directory = params['dir'] or os.path.join(params['root_dir'], database)
    path = free_backup_path(directory, database, params['format'])
    sha256_file, sha256_of = sha256_target(path, params['format'])
    backup = dict(path=path, format=params['format'], size_bytes=None, seconds=None, sha256=None, sha256_of=sha256_of,
                  toc_entries=None, pg_dump_version=version_output.strip(),
                  server_version=server['server_version'].split()[0])
    dump = dump_command(pg_dump, path, params['format'], params['jobs'])
    if params['session_role']:
        dump.append('--role=%s' % params['session_role'])
    if module.check_mode:
        existing = os.listdir(directory) if os.path.isdir(directory) else []
        doomed = backups_beyond(existing + [os.path.basename(path)], database, params['keep'])
        result['deleted'] = [os.path.join(directory, name) for name in doomed]
        result['commands'].extend(command_line(command) for command in (dump, [pg_restore, '--list', path]))
        plan = 'Check mode: would back %s up into %s with %s (%s) and verify it with pg_restore --list.%s' % (
            database, path, backup['pg_dump_version'], pg_dump, deleted_summary(result['deleted'], params['keep'],
                                                                                True))
        result.update(backup, changed=True, msg=plan)
        return

    make_directory(directory)
    started = time.monotonic()
    rc, dummy_out, err = programs.run(dump)
    if rc != 0:
        remove_backup(path)
        raise BackupFailed('pg_dump of %s into %s failed (exit %s): %s. The incomplete backup was deleted; no older '
                           'backup was touched.' % (database, path, rc, last_lines(err)))
    rc, listing, err = programs.run([pg_restore, '--list', path])
    if rc != 0:
        remove_backup(path)
        raise BackupFailed('pg_restore --list cannot read the new backup %s (exit %s): %s. It was deleted; no older '
                           'backup was touched.' % (path, rc, last_lines(err)))
    backup.update(size_bytes=size_bytes(path), sha256=sha256_of_file(sha256_file), toc_entries=toc_entries(listing),
                  seconds=round(time.monotonic() - started, 2))
    result.update(backup, changed=True)
    for name in backups_beyond(os.listdir(directory), database, params['keep']):
        try:
            remove_backup(os.path.join(directory, name))
        except OSError as error:  # the new backup is good: an old one that stays is a warning, not a failure
            module.warn('Could not delete the old backup %s: %s' % (os.path.join(directory, name), error))
            continue
        result['deleted'].append(os.path.join(directory, name))
    result['msg'] = backup_summary(database, result) + deleted_summary(result['deleted'], params['keep'])


def main():
    argument_spec = connection_argument_spec(
        enabled=dict(type='bool', default=True),
        format=dict(type='str', default='custom', choices=['custom', 'directory']),
        jobs=dict(type='int', default=2),
        dir=dict(type='path'),
        root_dir=dict(type='path'),
        keep=dict(type='int', default=5),
        bin_dir=dict(type='path'),
        client_dirs=dict(type='list', elements='path', default=[]),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           required_one_of=[('dir', 'root_dir')])
    params = module.params
    result = dict(changed=False, skipped=False, database=params['login_db'], deleted=[], queries=[], commands=[])
    if not params['enabled']:
        result.update(skipped=True, reason='enabled=false was given',
                      msg='No backup of %s: enabled=false was given.' % (params['login_db'] or 'the database'))
        module.exit_json(**result)
    if params['keep'] < 1 or params['jobs'] < 1:
        fail(module, result, 'keep and jobs must be at least 1, not %s and %s' % (params['keep'], params['jobs']))
    try:
        back_up(module, result)
    except BackupFailed as failure:
        fail(module, result, str(failure))
    except Exception as error:  # a driver or OS error: the result must still say that there is no backup
        fail(module, result, 'The backup stopped: %s' % error_text(error))
    module.exit_json(**result)


if __name__ == '__main__':
    main()
