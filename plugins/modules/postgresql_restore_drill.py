#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: postgresql_restore_drill
short_description: Prove a backup restores, by restoring it into a scratch database and comparing row counts
description:
  - Restores a backup of the database (O(backup), or the newest backup of the database in O(dir)) with
    C(pg_restore --no-owner --exit-on-error --jobs) into a scratch database O(scratch_database) on the same server,
    dropped and created anew (from C(template0), with the source's encoding and locale).
  - Counts the exact rows of every table in the source database and in the restored copy, drops the scratch
    database unless O(keep), and fails naming every table whose count differs (or that only one of them has).
  - A schema backup of M(pg_zero_downtime.migrations.postgresql_backup) (a C(.schema) directory) is checked by its
    kind - its C(schema.pgc) is restored, every table's columns, constraints and indexes are compared with the
    source's as they were before the run (the backup's C(manifest.json)), and each saved rows file is loaded into a
    temporary table like its restored table (rolled back), which must take all its rows.
  - With O(archive) (the C(archive) of the backup's result), it verifies what can be verified of point-in-time recovery
    without a restore - the WAL archiver has not failed since the backup's proof and archive_mode is still on - and
    says what it did not verify (C(not_verified)). With O(archive) and no backup to restore (neither O(backup), O(dir)
    nor O(root_dir)), that is the whole drill.
  - It changes no data of the source database; the login needs the C(CREATEDB) privilege, and C(pg_restore) and
    the backup must be on the host the module runs on (usually the control node, with C(delegate_to) C(localhost)).
  - The login options are passed to C(pg_restore) in libpq's environment variables (the password in
    C(PGPASSWORD)), never on its command line.
  - In check mode it chooses the backup and connects, and returns what it would run; nothing is restored or
    dropped.
version_added: '0.15.0'
options:
  login_db:
    description: Name of the source database, the one the backup is of.
  backup:
    description:
      - Path of the backup to restore (a C(.pgc) file or a C(.dir) directory). Unset, the newest backup of the
        database in O(dir).
    type: path
  dir:
    description: Directory of the database's backups, searched when O(backup) is not given.
    type: path
  root_dir:
    description:
      - Directory that holds one directory per database; the backups are searched in C(<root_dir>/<database>) when
        neither O(backup) nor O(dir) is given.
    type: path
  scratch_database:
    description:
      - Name of the scratch database, dropped first if it exists, and after the drill unless O(keep). Unset,
        C(<database>_restore_drill). It cannot be the source database, C(postgres) or a template.
    type: str
  keep:
    description: Keep the scratch database after the drill, to look into it.
    type: bool
    default: false
  jobs:
    description: Parallel C(pg_restore) jobs (each one more connection to the server).
    type: int
    default: 2
  bin_dir:
    description:
      - Directory of the C(pg_restore) to run; it must be of the same major as the C(pg_dump) that made the backup, or
        newer (roles/restore_drill gives the directory of the backup's C(pg_dump) when the backup role ran before it).
      - Unset, the installed C(pg_restore) of the server's major is chosen, else the newest one newer than the server,
        as M(pg_zero_downtime.migrations.postgresql_backup) chooses its client (a backup it took is then read by the
        same or a newer C(pg_restore)). When none fits, the drill is refused before anything is restored, saying what
        to install.
    type: path
  client_dirs:
    description:
      - More directories to look for installed clients in, before those of the E(PATH) and the packaged ones
        (C(/usr/lib/postgresql/*/bin), C(/usr/pgsql-*/bin)), when O(bin_dir) is not given.
    type: list
    elements: path
    default: []
    version_added: '0.19.0'
  archive:
    description:
      - The point-in-time recovery proof of the backup (its result's C(archive)), to check again without a restore.
    type: dict
    version_added: '0.19.0'
  session_role:
    description:
      - Switch to this role after connecting (C(pg_restore --role) too).
notes:
  - Counts are exact (a C(count(*)) of every table), so a large database takes a while; on a live database, rows
    written since the backup make counts differ; drill against a quiet copy, or right after the backup.
extends_documentation_fragment:
  - pg_zero_downtime.migrations.common
  - pg_zero_downtime.migrations.connection
  - community.postgresql.postgres
'''

EXAMPLES = r'''
- name: Restore the newest backup of the database and compare every table's row count
  pg_zero_downtime.migrations.postgresql_restore_drill:
    login_db: app
    dir: /srv/backups/app
  delegate_to: localhost
  register: drill

- name: Restore a given backup and keep the scratch database to look into
  pg_zero_downtime.migrations.postgresql_restore_drill:
    login_db: app
    backup: /srv/backups/app/app-20261125T030000Z.pgc
    scratch_database: app_restored
    keep: true
  delegate_to: localhost
'''

RETURN = r'''
backup:
  description: The backup restored (in check mode, the one that would be).
  returned: always
  type: str
  sample: /srv/backups/app/app-20261125T030000Z.pgc
scratch_database:
  description: The scratch database it was restored into (O(scratch_database)).
  returned: always
  type: str
  sample: app_restore_drill
database:
  description: The source database.
  returned: always
  type: str
source:
  description: Exact row count of every table of the source database, by schema-qualified name (empty in check mode).
  returned: always
  type: dict
  sample: {public.Job: 200000, public."Class": 2000}
restored:
  description: Exact row count of every table of the restored copy (empty in check mode).
  returned: always
  type: dict
tables:
  description: How many tables the source has.
  returned: always
  type: int
rows:
  description: How many rows the source's tables hold together.
  returned: always
  type: int
differences:
  description:
    - The tables whose row count differs, or that only one of the two databases has.
    - When the drill stopped before the counts were compared, one item C(not compared... ) that says why, so that
      a registered result read by a report never says "no difference" for a drill that did not finish.
  returned: always
  type: list
  elements: str
kind:
  description: What was drilled - V(full) (row counts), V(schema) (the schema and the saved rows) or V(archive).
  returned: always
  type: str
  version_added: '0.19.0'
verified:
  description: What the drill verified, one line each.
  returned: always
  type: list
  elements: str
  version_added: '0.19.0'
not_verified:
  description: What the drill could not verify without a restore (with O(archive)).
  returned: always
  type: list
  elements: str
  version_added: '0.19.0'
rows_loaded:
  description: Of a schema backup, each saved rows file with C(rows) saved and C(loaded) into its restored table.
  returned: with a schema backup
  type: list
  elements: dict
  version_added: '0.19.0'
kept:
  description: Whether the scratch database was left in place (O(keep)).
  returned: always
  type: bool
client:
  description:
    - The C(pg_restore) chosen, C(bin_dir), C(program), C(version) (what C(pg_restore --version) said), C(major), and
      C(chosen_by) (O(bin_dir)'s role variable, C(the server's major), or C(the newest installed, the server's major
      is not)).
  returned: once the client was chosen
  type: dict
  sample: {bin_dir: /usr/lib/postgresql/18/bin, program: /usr/lib/postgresql/18/bin/pg_restore,
           version: pg_restore (PostgreSQL) 18.1, major: 18, chosen_by: the server's major}
  version_added: '0.19.0'
msg:
  description: One line that says how the drill went (or, in check mode, what it would do).
  returned: always
  type: str
queries:
  description: The SQL statements run (in check mode, also those that would be).
  returned: always
  type: list
  elements: str
commands:
  description: The programs run (in check mode, that would be), as shell-quoted command lines; the login is in
    their environment.
  returned: always
  type: list
  elements: str
'''

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.evidence.archive_proof import (
    ARCHIVER_SQL,
    NOT_VERIFIED,
    archiver_evidence,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.evidence.backup_clients import (
    SERVER_SQL,
    ClientPrograms,
    command_line,
    last_lines,
    older_pg_restore_advice,
    pg_restore_too_new,
    restore_command,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.evidence.backup_files import (
    newest_backup,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.evidence.restore_checks import (
    DATABASE_EXISTS_SQL,
    DATABASE_LOCALE_SQL,
    ROW_COUNTS_SQL,
    SHAPE_SEARCH_PATH_SQL,
    SHAPE_SQL,
    count_differences,
    drill_mismatch_message,
    drill_passed_message,
    is_not_compared,
    no_backup_message,
    not_compared,
    row_counts,
    schema_drill_passed_message,
    scratch_database_problem,
    shape_differences,
    table_shapes,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.evidence.schema_backup import (
    MANIFEST_FILE,
    ROWS_DIR,
    SCHEMA_FILE,
    load_rows_statement,
    read_manifest,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.connection import (
    conn_params_of,
    connect_or_fail,
    connection_argument_spec,
    connection_failure_message,
    target_of,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.statements import (
    copy_in,
    error_text,
    fetch_dicts,
    sql_module,
)
from ansible_collections.community.postgresql.plugins.module_utils.postgres import connect_to_db


class DrillFailed(Exception):
    """The drill stopped before its verdict; the message says why and what to do."""


def choose_backup(params, database):
    """The backup to restore: the one given, or the newest of the database's backup directory."""
    if params['backup']:
        return params['backup'].rstrip('/') or params['backup']
    directory = params['dir'] or (os.path.join(params['root_dir'], database) if params['root_dir'] else None)
    if not directory:
        raise DrillFailed('Give the backup to restore (backup), or the directory of its backups (dir or root_dir).')
    newest = newest_backup(os.listdir(directory) if os.path.isdir(directory) else [], database)
    if newest is None:
        raise DrillFailed(no_backup_message(database, directory))
    return os.path.join(directory, newest)


def in_database(conn_params, name):
    """The connection parameters of C(conn_params), to database C(name)."""
    params = dict(conn_params)
    params['database' if 'database' in params else 'dbname'] = name
    return params


def scratch_statements(connection, scratch, source_locale):
    """DROP and CREATE of the scratch database, as composed SQL and as text."""
    sql = sql_module()
    drop = sql.SQL('DROP DATABASE IF EXISTS {}').format(sql.Identifier(scratch))
    create = sql.SQL('CREATE DATABASE {} TEMPLATE template0 ENCODING {} LC_COLLATE {} LC_CTYPE {}').format(
        sql.Identifier(scratch), sql.Literal(source_locale['encoding']), sql.Literal(source_locale['datcollate']),
        sql.Literal(source_locale['datctype']))
    return [(statement, statement.as_string(connection)) for statement in (drop, create)]


class Drill(object):
    """One restore drill: the source connection, the scratch database, and the result it fills."""

    def __init__(self, module, result):
        self.module = module
        self.params = module.params
        self.result = result
        self.conn_params = conn_params_of(module)
        self.connection = None
        self.drop_scratch = None

    def execute(self, statement, text):
        self.connection.cursor().execute(statement)
        self.result['queries'].append(text)

    def read(self, query, params=None):
        if query not in self.result['queries']:
            self.result['queries'].append(query)
        return fetch_dicts(self.connection.cursor(), query, params)

    def cleanup(self):
        """Drop the scratch database unless kept (once it was created); say what became of it."""
        scratch = self.result['scratch_database']
        if self.drop_scratch is None:
            return ''
        if self.params['keep']:
            return ' The scratch database %s is kept.' % scratch
        statement, self.drop_scratch = self.drop_scratch, None
        self.execute(*statement)
        return ' The scratch database %s was dropped.' % scratch

    def run(self):
        params, result = self.params, self.result
        self.connection = connect_or_fail(self.module, self.conn_params,
                                          **dict(result, differences=not_compared('could not connect')))
        server = self.read(SERVER_SQL)[0]
        database = result['database'] = server['database']
        scratch = result['scratch_database'] = params['scratch_database'] or '%s_restore_drill' % database
        problem = scratch_database_problem(scratch, database)
        if problem:
            raise DrillFailed(problem)
        if params['archive'] and not (params['backup'] or params['dir'] or params['root_dir']):
            result['kind'] = 'archive'  # an archive-only protection: nothing to restore
            self.prove_archive()
            return
        backup = result['backup'] = choose_backup(params, database)
        if not os.path.exists(backup) and not self.module.check_mode:
            raise DrillFailed('The backup %s does not exist on the host the drill runs on: name an existing one, or '
                              'leave backup unset to restore the newest.' % backup)

        programs = ClientPrograms(self.module, self.conn_params, 'pg-zero-downtime restore drill')
        result['commands'] = programs.commands
        client, refusal = programs.choose(('pg_restore',), server, params['client_dirs'], 'restore_drill_bin_dir')
        refusal = refusal or pg_restore_too_new(client, server)
        if refusal:
            raise DrillFailed(refusal)
        pg_restore = client['program']
        result['client'] = client
        schema_backup = read_manifest(backup) if os.path.isdir(backup) else None
        result['kind'] = 'schema' if schema_backup or backup.endswith('.schema') else 'full'
        if result['kind'] == 'schema' and schema_backup is None and not self.module.check_mode:
            raise DrillFailed('%s has no %s: it is not a schema backup of postgresql_backup (or it is incomplete). Name '
                              'a complete one, or take a new one.' % (backup, MANIFEST_FILE))
        source = os.path.join(backup, SCHEMA_FILE) if result['kind'] == 'schema' else backup
        restore = restore_command(pg_restore, source, scratch, params['jobs'])
        if params['session_role']:
            restore.insert(-1, '--role=%s' % params['session_role'])
        statements = scratch_statements(self.connection, scratch, self.read(DATABASE_LOCALE_SQL)[0])

        if self.module.check_mode:
            exists = self.read(DATABASE_EXISTS_SQL, dict(name=scratch))
            result['queries'].extend([text for dummy, text in statements] + [ROW_COUNTS_SQL])
            result['commands'].append(command_line(restore))
            if not os.path.exists(backup):
                self.module.warn('The backup %s does not exist yet; a real run fails unless it is written first (as '
                                 'a migration does before its drill).' % backup)
            compare = ('every table\'s columns, constraints and indexes with %s before the run, and load the rows '
                       'saved' % database if result['kind'] == 'schema'
                       else 'the row counts of every table with %s' % database)
            plan = 'Check mode: would %srestore %s into %s with pg_restore, compare %s%s.' % (
                'drop the existing %s, ' % scratch if exists else '', backup, scratch, compare,
                '' if params['keep'] else ', then drop %s' % scratch)
            result.update(changed=True, differences=[], msg=plan)
            return

        result['changed'] = True
        self.drop_scratch = statements[0]
        for statement in statements:
            self.execute(*statement)
        rc, dummy_out, err = programs.run(restore)
        if rc != 0:
            raise DrillFailed('pg_restore of %s into %s failed (exit %s): %s.%s' % (
                backup, scratch, rc, last_lines(err), older_pg_restore_advice(err, client)))
        copy_params = in_database(self.conn_params, scratch)
        copy, error = connect_to_db(self.module, dict(copy_params), autocommit=True, fail_on_conn=False)
        if copy is None:
            raise DrillFailed(connection_failure_message(error, target_of(copy_params)))
        try:
            failure, passed = (self.compare_schema(copy, backup, schema_backup) if schema_backup
                               else self.compare_counts(copy, backup))
        finally:
            copy.close()
        self.cleanup()
        if failure:
            raise DrillFailed(failure)
        result['msg'] = passed
        result['verified'].append(passed)
        if params['archive']:
            self.prove_archive()

    def compare_schema(self, copy, backup, manifest):
        """The restored schema against the source's before the run (the manifest's shape), and the touched rows
        loaded into their tables' columns: (why it failed, naming each difference, or None; the passed message)."""
        result, params = self.result, self.params
        copy.cursor().execute(SHAPE_SEARCH_PATH_SQL)  # as the backup read the source's
        source, restored = table_shapes(manifest['shape']), table_shapes(fetch_dicts(copy.cursor(), SHAPE_SQL))
        result['queries'].extend([SHAPE_SEARCH_PATH_SQL, SHAPE_SQL])
        differences = shape_differences(source, restored)
        result.update(tables=len(source), differences=differences, rows=0)
        if not differences:
            result['rows_loaded'] = [self.load_rows(copy, backup, entry) for entry in manifest['rows']]
            differences = result['differences'] = [
                '%s.%s: %d rows loaded of the %d saved' % (entry['schema'], entry['table'], entry['loaded'],
                                                           entry['rows'])
                for entry in result['rows_loaded'] if entry['loaded'] != entry['rows']]
            result['rows'] = sum(entry['loaded'] for entry in result['rows_loaded'])
        if differences:
            return 'The schema restored from %s does not match %s before the run: %s.' % (
                backup, result['database'], '; '.join(differences)), None
        return None, schema_drill_passed_message(backup, result['scratch_database'], source, manifest['rows'],
                                                 params['keep'])

    def load_rows(self, copy, backup, entry):
        """Load a rows file into a temporary table like its restored table (rolled back): the rows it loaded."""
        path = os.path.join(backup, ROWS_DIR, os.path.basename(entry['path']))  # where the backup is now
        sql = sql_module()
        like, load = load_rows_statement(sql, entry['schema'], entry['table'], entry['copy_columns'])
        cursor = copy.cursor()
        cursor.execute('BEGIN')
        try:
            cursor.execute(like)
            with open(path, 'rb') as handle:
                copy_in(cursor, load.as_string(copy), handle)
            loaded = fetch_dicts(cursor, 'SELECT count(*) AS n FROM pgzd_touched_rows')[0]['n']
        finally:
            cursor.execute('ROLLBACK')
        return dict(schema=entry['schema'], table=entry['table'], rows=entry['rows'], loaded=loaded, path=path)

    def compare_counts(self, copy, backup):
        """Every table's exact row count in the source and in the restored copy: (why it failed or None, the passed
        message)."""
        params, result = self.params, self.result
        source = result['source'] = row_counts(self.read(ROW_COUNTS_SQL))
        restored = result['restored'] = row_counts(fetch_dicts(copy.cursor(), ROW_COUNTS_SQL))
        differences = count_differences(source, restored)
        result.update(tables=len(source), rows=sum(source.values()), differences=differences)
        if differences:
            return drill_mismatch_message(backup, result['database'], source, restored, differences), None
        return None, drill_passed_message(backup, result['scratch_database'], source, params['keep'])

    def prove_archive(self):
        """What can be verified of a point-in-time recovery without a restore: the archiver is not failing now (no
        failure after its last success) and archive_mode was not turned off since the backup's proof; what cannot is
        said (not_verified)."""
        result, proof = self.result, self.params['archive']
        row = self.read(ARCHIVER_SQL)[0]
        now, then = archiver_evidence(row), proof.get('archiver') or {}
        problems = []
        if row['last_failed_time'] is not None and (row['last_archived_time'] is None
                                                    or row['last_failed_time'] > row['last_archived_time']):
            problems.append('WAL archiving is failing: the last attempt, on %s, failed after the last success'
                            % row['last_failed_wal'])
        if then.get('archive_mode', 'off') != 'off' and now['archive_mode'] == 'off':
            problems.append('archive_mode is off now')
        if problems:
            raise DrillFailed('Point-in-time recovery is not proven any more: %s. Fix WAL archiving and rerun.'
                              % '; '.join(problems))
        if now['archive_mode'] != 'off':
            line = 'the WAL archiver is archiving (archive_mode=%s, %s WAL segments archived, the last %s, no failure ' \
                   'after it)' % (now['archive_mode'], now['archived_count'], now['last_archived_wal'])
        else:
            line = 'the server archives no WAL (archive_mode=off): only the backup tool\'s listing was the proof'
        if proof.get('newest_backup'):
            line += '; the backup tool listed %s (not run again)' % proof['newest_backup']['name']
        result['verified'].append(line)
        result['not_verified'] = list(proof.get('not_verified') or NOT_VERIFIED)
        result['differences'] = [] if result['kind'] == 'archive' else result['differences']
        message = 'Point-in-time recovery checked without a restore: %s. Not verified: %s.' % (
            line, '; '.join(result['not_verified']))
        result['msg'] = message if result['kind'] == 'archive' else '%s %s' % (result['msg'], message)

    def close(self):
        if self.connection is not None:
            self.connection.close()


def fail(module, drill, result, message):
    """Fail the task with C(message), after dropping the scratch database unless kept."""
    if is_not_compared(result['differences']):
        result['differences'] = not_compared(message)
    elif not result['differences']:  # compared alike, then failed (the archive re-check): the drill did not pass
        result['differences'] = ['failed: %s' % ' '.join(message.split())]
    try:
        message += drill.cleanup()
    except Exception as error:  # the scratch database could not be dropped: say so, the drill failed anyway
        message += ' The scratch database %s could not be dropped: %s.' % (
            result['scratch_database'], error_text(error))
    drill.close()
    module.fail_json(msg=message, **result)


def main():
    argument_spec = connection_argument_spec(
        backup=dict(type='path'),
        dir=dict(type='path'),
        root_dir=dict(type='path'),
        scratch_database=dict(type='str'),
        keep=dict(type='bool', default=False),
        jobs=dict(type='int', default=2),
        bin_dir=dict(type='path'),
        client_dirs=dict(type='list', elements='path', default=[]),
        archive=dict(type='dict'),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    # Until the counts are compared, the differences say so: a report that reads the registered result of a drill
    # that stopped early must not find "no difference" in it.
    result = dict(changed=False, backup=None, scratch_database=params['scratch_database'], database=params['login_db'],
                  source={}, restored={}, tables=0, rows=0, differences=not_compared('the drill did not finish'),
                  kept=params['keep'], kind=None, verified=[], not_verified=[], queries=[], commands=[])
    if params['jobs'] < 1:
        module.fail_json(msg='jobs must be at least 1, not %s' % params['jobs'], **result)
    drill = Drill(module, result)
    try:
        drill.run()
    except DrillFailed as failure:
        fail(module, drill, result, str(failure))
    except Exception as error:  # a driver or OS error: the scratch database still goes, the result says why
        fail(module, drill, result, 'The restore drill stopped: %s.' % error_text(error))
    drill.close()
    module.exit_json(**result)


if __name__ == '__main__':
    main()
