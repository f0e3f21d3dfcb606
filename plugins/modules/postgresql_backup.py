#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: postgresql_backup
short_description: Protect a database before DDL - a verified full or schema pg_dump, or proven point-in-time recovery
description:
  - Chooses the protection (O(mode)) - V(full) a verified C(pg_dump) of the whole database; V(schema) the schema
    (C(pg_dump --schema-only)) and exactly the rows the run may change (O(touched_rows)); V(archive) proof that the
    database's own point-in-time recovery covers this moment; or V(none). V(auto) is V(full) for a database smaller
    than O(full_max_size) (C(pg_database_size())), V(schema) for a larger one. V(schema+archive) and
    V(full+archive) take both. The result says which mode and why (C(mode), C(mode_reason)), what each mode protects
    (C(protects)), and what a full dump of this database would write and take (C(full_estimate)).
  - V(archive) reads C(pg_stat_archiver) - C(archive_mode) must be on, a WAL segment archived within
    O(archive_max_age), and no failure after it - and, with O(archive_command), runs that listing command of the backup
    tool (C(pgbackrest info --output=json), C(wal-g backup-list --json)) on the host the module runs on, whose newest
    finished backup must be younger than O(base_backup_max_age). With a command and C(archive_mode) off (a managed
    service), the command alone is the proof. It records the WAL position (LSN) and time of the proof. Any problem
    fails the module before anything is written, saying what to do.
  - Reads the server's version and chooses the C(pg_dump) and C(pg_restore) for it, from one directory, O(bin_dir)
    when given (refused when its C(pg_dump) is older than the server, as an older pg_dump cannot dump a newer server),
    else the installed client of the server's major, else the newest installed one newer than the server. Installed
    clients are looked for in O(client_dirs), every directory of the E(PATH), and where PostgreSQL's packages put them
    (C(/usr/lib/postgresql/*/bin) on Debian and Ubuntu, C(/usr/pgsql-*/bin) on RHEL). When none fits, it refuses
    before anything is written, saying what to install.
  - Dumps the database with C(pg_dump) into O(dir), as C(<database>-<UTC time>.pgc) (O(format=custom), one file)
    or C(<database>-<UTC time>.dir) (O(format=directory), dumped with O(jobs) parallel jobs), verifies it with
    C(pg_restore --list), and returns its size, duration, sha256 and number of entries.
  - A schema backup is the directory C(<database>-<UTC time>.schema) - C(schema.pgc) (custom format, verified with
    C(pg_restore --list)), C(rows/<n>.copy) (one C(COPY) text file per table of O(touched_rows), the rows whose key
    appears more than once) and C(manifest.json) (each file's sha256, and the columns, constraints and indexes of
    every table before the run, which M(pg_zero_downtime.migrations.postgresql_restore_drill) compares a restore
    with).
  - Then deletes the backups of this database in O(dir) beyond the newest O(keep). A dump or verification that
    fails deletes what it wrote and deletes nothing else.
  - Run it where the backups are to be kept, usually the control node (C(delegate_to) C(localhost)). C(pg_dump)
    connects to the server like any client, so a managed database with no shell on its host is backed up too.
  - The login options are passed to C(pg_dump) and C(pg_restore) in libpq's environment variables (the password
    in C(PGPASSWORD)), never on their command lines.
  - O(enabled=false) takes no backup and returns C(skipped=true) with the reason.
  - In check mode it connects, chooses the mode, proves the archive (reads only, and runs O(archive_command)), checks
    the versions and returns the path it would write and the backups it would delete, and writes or deletes nothing.
version_added: '0.15.0'
options:
  login_db:
    description: Name of the database to back up.
  enabled:
    description: V(false) takes no backup; the result says so (C(skipped), C(reason)).
    type: bool
    default: true
  mode:
    description:
      - The protection to take (see the description). An unknown mode fails before the module connects.
    type: str
    choices: [auto, full, schema, archive, schema+archive, full+archive, none]
    default: auto
    version_added: '0.19.0'
  full_max_size:
    description:
      - Below this database size, O(mode=auto) takes a full dump; at or above it, a schema backup. A size with a unit
        (V(512MiB), V(5GiB), V(1TB); KiB, MiB, GiB, TiB and K, M, G, T are powers of 1024, kB, MB, GB, TB of 1000) or
        a number of bytes; anything else fails before the module connects.
    type: raw
    default: 5GiB
    version_added: '0.19.0'
  touched_rows:
    description:
      - The tables and keys whose duplicate rows the run may change (a unique constraint with C(on_duplicates=rename));
        a schema backup saves every row whose key appears more than once. roles/backup fills it from the run's work.
    type: list
    elements: dict
    default: []
    version_added: '0.19.0'
    suboptions:
      schema:
        description: Schema of the table.
        type: str
        default: public
      table:
        description: The table.
        type: str
        required: true
      columns:
        description: The key's columns.
        type: list
        elements: str
        required: true
  uncovered_changes:
    description:
      - What else the run does that may change rows (roles/backup names the pending Prisma migrations of a deploy,
        whose statements may update or delete rows). A V(schema) backup without V(archive) saves none of them; the
        module warns and returns them as C(not_protected).
    type: list
    elements: str
    default: []
    version_added: '0.19.0'
  archive_max_age:
    description:
      - V(archive) - the last WAL segment archived must be younger than this (V(30s), V(15min), V(2h), V(1d), or a
        number of seconds).
    type: raw
    default: 15min
    version_added: '0.19.0'
  archive_command:
    description:
      - V(archive) - the argv of a backup tool's listing that prints JSON, for example
        V([pgbackrest, --stanza=main, info, --output=json]) or V([wal-g, backup-list, --json, --detail]). It runs on the
        host the module runs on, also in check mode; it must exit 0 and list a finished backup younger than
        O(base_backup_max_age).
    type: list
    elements: str
    default: []
    version_added: '0.19.0'
  archive_switch_wal:
    description:
      - V(archive) - first close the current WAL segment (C(pg_switch_wal())) and wait, up to 60 s, until the
        archiver archived it, so that a quiet database proves its archiving works now rather than being refused as
        stale. Needs a superuser login or C(EXECUTE) on C(pg_switch_wal); not in check mode.
    type: bool
    default: false
    version_added: '0.19.0'
  base_backup_max_age:
    description: V(archive) with O(archive_command) - the newest finished backup must be younger than this duration.
    type: raw
    default: 2d
    version_added: '0.19.0'
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
- name: Save the schema and the duplicate rows a rename will change, and prove the WAL archive is working
  pg_zero_downtime.migrations.postgresql_backup:
    login_db: app
    root_dir: /srv/backups
    mode: schema+archive
    archive_max_age: 10min
    touched_rows:
      - table: Class
        columns: [name, grade]
  delegate_to: localhost

- name: Prove pgBackRest has a backup of the last day, without dumping anything
  pg_zero_downtime.migrations.postgresql_backup:
    login_db: app
    root_dir: /srv/backups
    mode: archive
    archive_command: [pgbackrest, --stanza=main, info, --output=json]
    base_backup_max_age: 1d
  delegate_to: localhost

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
backup_mode:
  description:
    - The mode taken (V(full), V(schema), V(archive), V(schema+archive), V(full+archive)), or V(none). (Not C(mode),
      which Ansible sets to the file mode of a result's C(path).)
  returned: always
  type: str
  sample: schema+archive
  version_added: '0.19.0'
mode_reason:
  description: Why this mode (asked for, or the database's size against O(full_max_size)).
  returned: unless skipped
  type: str
  version_added: '0.19.0'
protects:
  description: What each mode protects, by mode (V(full), V(schema), V(archive), V(none)).
  returned: when the mode was chosen
  type: dict
  version_added: '0.19.0'
not_protected:
  description: The items of O(uncovered_changes) the mode taken does not protect (a V(schema) backup without V(archive)).
  returned: unless skipped
  type: list
  elements: str
  version_added: '0.19.0'
database_bytes:
  description: The database's size (C(pg_database_size())).
  returned: unless skipped
  type: int
  version_added: '0.19.0'
full_estimate:
  description:
    - What a full dump of the database would write (C(size_bytes)) and take (C(seconds)), at C(rate_bytes_per_second)
      of the database, measured by the last full dump in O(dir) (C(measured_on)) or assumed from the project's bench.
  returned: unless skipped
  type: dict
  version_added: '0.19.0'
schema:
  description: Of a schema backup, its C(schema.pgc) - C(path), C(size_bytes), C(sha256), C(toc_entries).
  returned: with a schema backup
  type: dict
  version_added: '0.19.0'
rows:
  description:
    - Of a schema backup, one entry per table of O(touched_rows) - C(schema), C(table), C(columns) (the key),
      C(copy_columns) (the file's columns in order), C(rows), C(path), C(sha256).
  returned: with a schema backup
  type: list
  elements: dict
  version_added: '0.19.0'
archive:
  description:
    - The point-in-time recovery proof - C(archiver) (what C(pg_stat_archiver) said), C(command) and
      C(newest_backup) (of O(archive_command)), C(checked) and C(not_verified) (lines), C(proven_at) (C(lsn),
      C(wal_file), C(time) of the proof) and C(summary).
  returned: with the archive mode
  type: dict
  version_added: '0.19.0'
database:
  description: The database backed up.
  returned: always
  type: str
  sample: app
path:
  description: The backup written, a file or directory (in check mode, the one that would be written).
  returned: with a full or schema backup
  type: str
  sample: /srv/backups/app/app-20261125T030000Z.pgc
format:
  description: O(format) of a full backup, or V(schema).
  returned: with a full or schema backup
  type: str
  sample: custom
size_bytes:
  description: Size of the backup file, or the sum of the files of a directory-format backup (null in check mode).
  returned: with a full or schema backup
  type: int
  sample: 48213912
seconds:
  description: Seconds taken by the dump, its verification and its measurement (null in check mode).
  returned: with a full or schema backup
  type: float
  sample: 12.41
sha256:
  description: sha256 of the backup file, or of C(toc.dat) of a directory-format backup (null in check mode).
  returned: with a full or schema backup
  type: str
sha256_of:
  description: What C(sha256) is of, C(the file) or C(toc.dat).
  returned: with a full or schema backup
  type: str
  sample: the file
toc_entries:
  description: Entries C(pg_restore --list) read in the backup (null in check mode).
  returned: with a full or schema backup
  type: int
  sample: 214
client:
  description:
    - The client chosen for the server, C(bin_dir), C(program) (the path of C(pg_dump)), C(version) (what
      C(pg_dump --version) said), C(major), and C(chosen_by) (O(bin_dir)'s role variable, C(the server's major), or
      C(the newest installed, the server's major is not)).
  returned: with a full or schema backup
  type: dict
  sample: {bin_dir: /usr/lib/postgresql/18/bin, program: /usr/lib/postgresql/18/bin/pg_dump,
           version: pg_dump (PostgreSQL) 18.1, major: 18, chosen_by: the server's major}
  version_added: '0.19.0'
pg_dump_version:
  description: What C(pg_dump --version) said.
  returned: with a full or schema backup
  type: str
  sample: pg_dump (PostgreSQL) 15.10
server_version:
  description: The server's version.
  returned: with a full or schema backup
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
import json
import os
import shutil
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.evidence.archive_proof import (
    ARCHIVER_SQL,
    CLEAR_SNAPSHOT_SQL,
    NOT_VERIFIED,
    PITR_TARGET_SQL,
    PROOF_RECORD_SQL,
    SWITCH_WAIT_SECONDS,
    SWITCH_WAL_SQL,
    archiver_evidence,
    archiver_problem,
    backup_evidence,
    command_problem,
    switch_wait_message,
    switched_segment_state,
)
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
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.evidence.backup_modes import (
    CHOICES,
    DEFAULT_FULL_MAX_SIZE,
    PROTECTS,
    BadBackupSetting,
    choose_mode,
    estimate_line,
    full_dump_estimate,
    mode_name,
    parse_duration,
    parse_mode,
    parse_size,
    protection_lines,
    uncovered_changes,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.evidence.restore_checks import (
    SHAPE_SEARCH_PATH_SQL, SHAPE_SQL,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.evidence.schema_backup import (
    ROWS_DIR,
    SCHEMA_FILE,
    TABLE_COLUMNS_SQL,
    count_lines,
    manifest,
    rows_file,
    schema_dump_command,
    schema_summary,
    touched_rows_statement,
    touched_tables,
    write_manifest,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.connection import (
    conn_params_of, connect_or_fail, connection_argument_spec,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.statements import (
    copy_out, error_text, fetch_dicts, sql_module,
)

DATABASE_SIZE_SQL = 'SELECT pg_catalog.pg_database_size(pg_catalog.current_database()) AS database_bytes'
# The measure of the last full dump of the database, in its backup directory: this control node's dump rate.
DUMP_RATE_FILE = 'full-dump-rate.json'


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


def free_backup_path(directory, database, kind):
    """This run's backup path; a backup of the same second exists only when two runs meet: wait for the next."""
    while True:
        moment = datetime.datetime.now(datetime.timezone.utc)
        path = os.path.join(directory, backup_name(database, kind, moment))
        if not os.path.lexists(path):
            return path
        time.sleep(0.2)


def read_dump_rate(directory):
    """The measure of the last full dump in C(directory), or None."""
    try:
        with open(os.path.join(directory, DUMP_RATE_FILE)) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def write_dump_rate(directory, database_bytes, backup):
    with open(os.path.join(directory, DUMP_RATE_FILE), 'w') as handle:
        json.dump(dict(database_bytes=database_bytes, size_bytes=backup['size_bytes'], seconds=backup['seconds'],
                       taken=os.path.basename(backup['path'])), handle)


class BackupFailed(Exception):
    """No backup was taken; the message says why and what to do."""


def fail(module, result, message):
    """Fail the task. Its result reads as no backup (C(skipped), as O(enabled=false) records it) with the reason,
    so a report that reads the registered result says there is no backup, and why."""
    result.update(skipped=True, reason='the backup failed: %s' % message.rstrip('.'))
    module.fail_json(msg=message, **result)


def settings_of(params):
    """The modes asked for and the bounds, as numbers; BadBackupSetting names a bad one."""
    return dict(modes=parse_mode(params['mode'], 'mode (backup_mode)'),
                full_max_bytes=parse_size(params['full_max_size'], 'full_max_size (backup_full_max_size)'),
                archive_max_age=parse_duration(params['archive_max_age'], 'archive_max_age (backup_archive_max_age)'),
                base_backup_max_age=parse_duration(params['base_backup_max_age'],
                                                   'base_backup_max_age (backup_base_backup_max_age)'))


def newest_listed_backup(module, command, settings, max_age_text):
    """(newest backup or None, why it proves nothing or None) of the backup tool's JSON listing C(command); a command
    that cannot run or prints no JSON raises BackupFailed."""
    text = command_line(command)
    if not (shutil.which(command[0]) if os.sep not in command[0] else os.access(command[0], os.X_OK)):
        raise BackupFailed('backup_archive_command %s: %s is not found on the host the module runs on (the control '
                           'node, not the database server). Install the backup tool there (or its client configured '
                           'for your repository) or give its full path, and rerun. Nothing was changed.'
                           % (text, command[0]))
    rc, out, err = module.run_command(command)
    if rc != 0:
        raise BackupFailed('backup_archive_command %s failed (exit %s): %s. Fix it (it must list the backups as JSON) '
                           'and rerun. Nothing was changed.' % (text, rc, last_lines(err or out)))
    try:
        listing = json.loads(out) if out.strip() else []  # wal-g prints nothing when it has no backup
    except ValueError:
        raise BackupFailed('backup_archive_command %s printed no JSON (%s). Give the listing command with its JSON '
                           'option (pgbackrest info --output=json, wal-g backup-list --json) and rerun. Nothing was '
                           'changed.' % (text, last_lines(out)))
    return command_problem(text, listing, datetime.datetime.now(datetime.timezone.utc),
                           settings['base_backup_max_age'], max_age_text)


class Backup(object):
    """One run of the module: the connection, the chosen client, and the result it fills."""

    def __init__(self, module, result):
        self.module = module
        self.params = module.params
        self.result = result
        self.conn_params = conn_params_of(module)
        self.connection = None
        self.programs = None

    def read(self, query, params=None):
        if query not in self.result['queries']:
            self.result['queries'].append(query)
        return fetch_dicts(self.connection.cursor(), query, params)

    def run(self):
        """Choose the mode, prove the archive, dump, verify, measure and prune; BackupFailed says why it stopped."""
        params, result = self.params, self.result
        try:
            settings = settings_of(params)
        except BadBackupSetting as error:
            raise BackupFailed(str(error))
        unreachable = dict(result, skipped=True, reason='the backup failed: could not connect to the database')
        self.connection = connect_or_fail(self.module, self.conn_params, **unreachable)
        server = self.read(SERVER_SQL)[0]
        database = result['database'] = server['database']
        database_bytes = result['database_bytes'] = self.read(DATABASE_SIZE_SQL)[0]['database_bytes']
        directory = params['dir'] or os.path.join(params['root_dir'], database)
        modes, why = choose_mode(settings['modes'], database_bytes, settings['full_max_bytes'])
        result.update(backup_mode=mode_name(modes), mode_reason=why, protects=dict(PROTECTS),
                      full_estimate=full_dump_estimate(database_bytes, read_dump_rate(directory)))
        lines = ['Backup mode %s: %s.' % (result['backup_mode'], why)] + protection_lines(modes)
        if self.module.check_mode:
            lines.extend(protection_lines([mode for mode in ('full', 'schema', 'archive') if mode not in modes]))
        lines.append(estimate_line(database_bytes, result['full_estimate']))
        uncovered = result['not_protected'] = uncovered_changes(modes, params['uncovered_changes'])
        if uncovered:
            warning = ('A schema backup does not save the rows that %s may change: choose backup_mode=full (or '
                       'schema+archive) to protect them.' % ' and '.join(uncovered))
            self.module.warn(warning)
            lines.append(warning)
        if 'archive' in modes:
            self.prove_archive(settings)
            lines.append(result['archive']['summary'])
        if 'full' in modes or 'schema' in modes:
            lines.append(self.dump(server, directory, 'full' if 'full' in modes else 'schema'))
        result['msg'] = ' '.join(lines)

    def prove_archive(self, settings):
        """Prove point-in-time recovery covers this moment (refusing with BackupFailed), recording the evidence."""
        params, result = self.params, self.result
        row = self.read(ARCHIVER_SQL)[0]
        switched = None
        if params['archive_switch_wal'] and row['archive_mode'] != 'off' and not self.module.check_mode:
            row, switched = self.switch_wal()
        archive = result['archive'] = dict(archiver=archiver_evidence(row), command=None, newest_backup=None,
                                           switched_wal=switched, checked=[], not_verified=list(NOT_VERIFIED))
        command = params['archive_command']
        if command:
            text = archive['command'] = command_line(command)
            newest, problem = newest_listed_backup(self.module, command, settings, params['base_backup_max_age'])
            archive['newest_backup'] = backup_evidence(newest)
            if problem:
                raise BackupFailed(problem)
            archive['checked'].append('%s lists the backup %s, finished %s'
                                      % (text, newest['name'], newest['time'].isoformat()))
            if row['archive_mode'] == 'off':
                base_only = ('archive_mode is off: the server archives no WAL, so recovery reaches only the end of '
                             'the backup %s (%s), not the moment before the DDL'
                             % (newest['name'], newest['time'].isoformat()))
                archive['checked'].append(base_only)
                archive['not_verified'].insert(0, base_only)
                self.module.warn(base_only[0].upper() + base_only[1:] + '.')
        if not command or row['archive_mode'] != 'off':
            would_switch = params['archive_switch_wal'] and self.module.check_mode
            problem = archiver_problem(row, float('inf') if would_switch else settings['archive_max_age'],
                                       params['archive_max_age'])
            if problem:
                raise BackupFailed(problem)
            archive['checked'].append('WAL archiving (archive_mode=%s): %s archived %s s before%s, no failure since'
                                      % (row['archive_mode'], row['last_archived_wal'],
                                         archive['archiver']['age_seconds'],
                                         ' (closed by pg_switch_wal for this proof)' if switched else
                                         ' (check mode: a real run closes a segment and waits up to %d s for it)'
                                         % SWITCH_WAIT_SECONDS if would_switch else ''))
        target = self.read(PITR_TARGET_SQL)[0]
        archive['proven_at'] = dict(lsn=target['lsn'], wal_file=target['wal_file'], time=target['time'].isoformat())
        archive['summary'] = 'Point-in-time recovery proven at LSN %s (%s): %s.' % (
            target['lsn'], archive['proven_at']['time'], '; '.join(archive['checked']))

    def switch_wal(self):
        """Close the current WAL segment and wait until the archiver archived it: (the archiver's row then, the
        segment)."""
        try:
            self.read(PROOF_RECORD_SQL)
            wal_file = self.read(SWITCH_WAL_SQL)[0]['wal_file']
        except Exception as error:
            raise BackupFailed('The WAL switch of the archive proof failed: %s. archive_switch_wal '
                               '(backup_archive_switch_wal) needs a superuser login or GRANT EXECUTE ON FUNCTION '
                               'pg_catalog.pg_switch_wal() TO the login; grant it, or leave it false. Nothing was '
                               'changed.' % error_text(error))
        started = time.monotonic()
        while True:
            self.read(CLEAR_SNAPSHOT_SQL)
            row = self.read(ARCHIVER_SQL)[0]
            state = switched_segment_state(row, wal_file)
            if state != 'waiting':
                return row, wal_file  # a failure is named by archiver_problem
            waited = time.monotonic() - started
            if waited > SWITCH_WAIT_SECONDS:
                raise BackupFailed(switch_wait_message(wal_file, waited, row))
            time.sleep(0.2)

    def choose_client(self, server):
        params, result = self.params, self.result
        programs = self.programs = ClientPrograms(self.module, self.conn_params, 'pg-zero-downtime backup')
        result['commands'] = programs.commands
        client, refusal = programs.choose(('pg_dump', 'pg_restore'), server, params['client_dirs'], 'backup_bin_dir')
        if refusal:
            raise BackupFailed(refusal)
        result['client'] = client
        return client

    def dump(self, server, directory, mode):
        """The full or schema backup into C(directory); the line that says what was written (or would be)."""
        params, result = self.params, self.result
        client = self.choose_client(server)
        database = result['database']
        kind = params['format'] if mode == 'full' else 'schema'
        path = free_backup_path(directory, database, kind)
        backup = dict(path=path, format=kind, size_bytes=None, seconds=None, sha256=None, sha256_of=None,
                      toc_entries=None, pg_dump_version=client['version'].strip(),
                      server_version=server['server_version'].split()[0])
        if self.module.check_mode:
            existing = os.listdir(directory) if os.path.isdir(directory) else []
            doomed = backups_beyond(existing + [os.path.basename(path)], database, params['keep'])
            result['deleted'] = [os.path.join(directory, name) for name in doomed]
            result.update(backup, changed=True)
            return self.planned(mode, path, client)
        make_directory(directory)
        started = time.monotonic()
        try:
            if mode == 'full':
                self.dump_full(backup)
            else:
                self.dump_schema(backup)
        except Exception:  # a dump, a verification, a COPY, a full disk: nothing half written stays
            remove_backup(path)
            raise
        backup['seconds'] = round(time.monotonic() - started, 2)
        result.update(backup, changed=True)
        if mode == 'full':
            write_dump_rate(directory, result['database_bytes'], backup)
        self.prune(directory)
        summary = backup_summary(database, result) if mode == 'full' else schema_summary(database, result)
        return summary + deleted_summary(result['deleted'], params['keep'])

    def planned(self, mode, path, client):
        """Check mode: the commands that would run, and the line that says what would be written."""
        params, result = self.params, self.result
        pg_restore = self.programs.path('pg_restore')
        if mode == 'full':
            commands = [self.with_role(dump_command(client['program'], path, params['format'], params['jobs'])),
                        [pg_restore, '--list', path]]
        else:
            schema = os.path.join(path, SCHEMA_FILE)
            commands = [self.with_role(schema_dump_command(client['program'], schema)), [pg_restore, '--list', schema]]
        result['commands'].extend(command_line(command) for command in commands)
        what = 'back %s up' % result['database'] if mode == 'full' else 'save the schema of %s and the rows of %d ' \
            'table(s) this run may change' % (result['database'], len(touched_tables(params['touched_rows'])))
        return 'Check mode: would %s into %s with %s (%s) and verify it with pg_restore --list.%s' % (
            what, path, result['pg_dump_version'], client['program'],
            deleted_summary(result['deleted'], params['keep'], True))

    def with_role(self, command):
        if self.params['session_role']:
            command.append('--role=%s' % self.params['session_role'])
        return command

    def verify(self, path):
        """(size, sha256, what of, entries) of a dump pg_restore --list reads; BackupFailed when it cannot."""
        rc, listing, err = self.programs.run([self.programs.path('pg_restore'), '--list', path])
        if rc != 0:
            raise BackupFailed('pg_restore --list cannot read the new backup %s (exit %s): %s. It was deleted; no '
                               'older backup was touched.' % (path, rc, last_lines(err)))
        sha256_file, sha256_of = sha256_target(path, 'directory' if os.path.isdir(path) else 'custom')
        return size_bytes(path), sha256_of_file(sha256_file), sha256_of, toc_entries(listing)

    def run_dump(self, command, path):
        rc, dummy_out, err = self.programs.run(self.with_role(command))
        if rc != 0:
            raise BackupFailed('pg_dump of %s into %s failed (exit %s): %s. The incomplete backup was deleted; no '
                               'older backup was touched.' % (self.result['database'], path, rc, last_lines(err)))

    def dump_full(self, backup):
        params, path = self.params, backup['path']
        self.run_dump(dump_command(self.result['client']['program'], path, params['format'], params['jobs']), path)
        backup['size_bytes'], backup['sha256'], backup['sha256_of'], backup['toc_entries'] = self.verify(path)

    def dump_schema(self, backup):
        """schema.pgc, then the touched rows (one COPY file per table) and the manifest with every table's shape."""
        path = backup['path']
        make_directory(os.path.join(path, ROWS_DIR))
        schema_path = os.path.join(path, SCHEMA_FILE)
        self.run_dump(schema_dump_command(self.result['client']['program'], schema_path), path)
        size, sha256, dummy_of, entries = self.verify(schema_path)
        schema = dict(path=schema_path, size_bytes=size, sha256=sha256, toc_entries=entries)
        rows = [self.save_rows(path, number, *entry)
                for number, entry in enumerate(touched_tables(self.params['touched_rows']), 1)]
        self.read(SHAPE_SEARCH_PATH_SQL)  # every name in the definitions qualified, as in the drill's scratch copy
        shape = self.read(SHAPE_SQL)
        write_manifest(path, manifest(self.result['database'], backup['server_version'], schema, rows, shape))
        backup.update(schema=schema, rows=rows, size_bytes=size_bytes(path), sha256=sha256, sha256_of=SCHEMA_FILE,
                      toc_entries=entries)

    def save_rows(self, path, number, schema, table, columns):
        """The rows of C(table) a rename may change, into rows/<number>.copy: their record."""
        sql = sql_module()
        statement = touched_rows_statement(sql, schema, table, columns).as_string(self.connection)
        target = os.path.join(path, rows_file(number))
        order = [row['name'] for row in self.read(TABLE_COLUMNS_SQL, dict(table='%s.%s' % (
            sql.Identifier(schema).as_string(self.connection), sql.Identifier(table).as_string(self.connection))))]
        if not order:
            raise BackupFailed('The table %s.%s of the touched rows does not exist. Nothing was changed.'
                               % (schema, table))
        self.result['queries'].append(statement)
        with open(target, 'wb') as handle:
            copy_out(self.connection.cursor(), statement, handle)
        return dict(schema=schema, table=table, columns=list(columns), copy_columns=order, rows=count_lines(target),
                    path=target, sha256=sha256_of_file(target))

    def prune(self, directory):
        """Delete the backups of the database beyond the newest O(keep) (the new one is good: a failure warns)."""
        result = self.result
        for name in backups_beyond(os.listdir(directory), result['database'], self.params['keep']):
            try:
                remove_backup(os.path.join(directory, name))
            except OSError as error:
                self.module.warn('Could not delete the old backup %s: %s' % (os.path.join(directory, name), error))
                continue
            result['deleted'].append(os.path.join(directory, name))

    def close(self):
        if self.connection is not None:
            self.connection.close()


def main():
    argument_spec = connection_argument_spec(
        enabled=dict(type='bool', default=True),
        mode=dict(type='str', default='auto', choices=list(CHOICES)),
        full_max_size=dict(type='raw', default=DEFAULT_FULL_MAX_SIZE),
        touched_rows=dict(type='list', elements='dict', default=[], options=dict(
            schema=dict(type='str', default='public'), table=dict(type='str', required=True),
            columns=dict(type='list', elements='str', required=True))),
        archive_max_age=dict(type='raw', default='15min'),
        archive_command=dict(type='list', elements='str', default=[]),
        archive_switch_wal=dict(type='bool', default=False),
        uncovered_changes=dict(type='list', elements='str', default=[]),
        base_backup_max_age=dict(type='raw', default='2d'),
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
    result = dict(changed=False, skipped=False, database=params['login_db'], backup_mode=None, deleted=[], queries=[],
                  commands=[])
    if not params['enabled'] or params['mode'] == 'none':
        given = 'enabled=false' if not params['enabled'] else 'mode=none (backup_mode)'
        result.update(skipped=True, backup_mode='none', protects=dict(PROTECTS), reason='%s was given' % given,
                      msg='No backup of %s: %s was given.' % (params['login_db'] or 'the database', given))
        module.exit_json(**result)
    if params['keep'] < 1 or params['jobs'] < 1:
        fail(module, result, 'keep and jobs must be at least 1, not %s and %s' % (params['keep'], params['jobs']))
    backup = Backup(module, result)
    try:
        backup.run()
    except BackupFailed as failure:
        backup.close()
        fail(module, result, str(failure))
    except Exception as error:  # a driver or OS error: the result must still say that there is no backup
        backup.close()
        fail(module, result, 'The backup stopped: %s' % error_text(error))
    backup.close()
    module.exit_json(**result)


if __name__ == '__main__':
    main()
