# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pg_dump backups on the control node and the restore drill that proves them: what to name a backup, which
backups to delete, whether pg_dump can dump the server, how pg_dump and pg_restore are called and connected,
and what a drill's row counts say.

The decisions are pure functions over plain data, so the unit tests run them without a server; the modules
postgresql_backup and postgresql_restore_drill do the I/O.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import os
import re
import shlex

TIME_FORMAT = '%Y%m%dT%H%M%SZ'
EXTENSIONS = {'custom': 'pgc', 'directory': 'dir'}
# Databases a restore drill must never drop and recreate as its scratch database.
PROTECTED_DATABASES = ('postgres', 'template0', 'template1')

SERVER_SQL = ("SELECT pg_catalog.current_database() AS database, "
              "pg_catalog.current_setting('server_version') AS server_version, "
              "pg_catalog.current_setting('server_version_num')::int AS server_version_num")

# Exact row counts of every table, in one statement (query_to_xml runs a count(*) per table).
ROW_COUNTS_SQL = """
SELECT format('%I.%I', n.nspname, c.relname) AS table_name,
       (xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM %I.%I', n.nspname, c.relname),
                                            false, true, '')))[1]::text::bigint AS row_count
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg_toast%'
ORDER BY 1
""".strip()

# The source's encoding and locale, so the scratch copy is created like it (from template0, as pg_restore wants).
DATABASE_LOCALE_SQL = ("SELECT pg_catalog.pg_encoding_to_char(encoding) AS encoding, datcollate, datctype "
                       "FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()")
DATABASE_EXISTS_SQL = 'SELECT 1 FROM pg_catalog.pg_database WHERE datname = %(name)s'

# libpq connection keywords (psycopg's names, as get_conn_params gives them) and the environment variable that
# sets each for pg_dump and pg_restore: the password, in particular, never appears on a command line.
LIBPQ_ENVIRONMENT = {
    'host': 'PGHOST', 'hostaddr': 'PGHOSTADDR', 'port': 'PGPORT', 'dbname': 'PGDATABASE', 'database': 'PGDATABASE',
    'user': 'PGUSER', 'password': 'PGPASSWORD', 'passfile': 'PGPASSFILE', 'service': 'PGSERVICE',
    'options': 'PGOPTIONS', 'application_name': 'PGAPPNAME', 'connect_timeout': 'PGCONNECT_TIMEOUT',
    'client_encoding': 'PGCLIENTENCODING', 'target_session_attrs': 'PGTARGETSESSIONATTRS',
    'channel_binding': 'PGCHANNELBINDING', 'require_auth': 'PGREQUIREAUTH', 'gssencmode': 'PGGSSENCMODE',
    'krbsrvname': 'PGKRBSRVNAME', 'gsslib': 'PGGSSLIB', 'sslmode': 'PGSSLMODE', 'sslcert': 'PGSSLCERT',
    'sslkey': 'PGSSLKEY', 'sslrootcert': 'PGSSLROOTCERT', 'sslcrl': 'PGSSLCRL', 'sslcrldir': 'PGSSLCRLDIR',
    'sslsni': 'PGSSLSNI', 'sslcertmode': 'PGSSLCERTMODE', 'requirepeer': 'PGREQUIREPEER',
    'ssl_min_protocol_version': 'PGSSLMINPROTOCOLVERSION', 'ssl_max_protocol_version': 'PGSSLMAXPROTOCOLVERSION',
    'load_balance_hosts': 'PGLOADBALANCEHOSTS',
}


# -- naming and retention ------------------------------------------------------------------------------------

def backup_name(database, backup_format, moment):
    """<database>-<UTC time>.pgc (custom format) or .dir (directory format); C(moment) is a UTC datetime."""
    return '%s-%s.%s' % (database, moment.strftime(TIME_FORMAT), EXTENSIONS[backup_format])


def backups_of(names, database):
    """The names among C(names) that are backups of C(database), oldest first.

    Only <database>-<UTC time>.pgc|.dir counts: the backups of a database named "shop-eu" are not those of "shop".
    """
    pattern = re.compile(r'^%s-\d{8}T\d{6}Z\.(?:pgc|dir)$' % re.escape(database))
    return sorted(name for name in names if pattern.match(name))


def newest_backup(names, database):
    """The newest backup of C(database) among C(names), or None."""
    found = backups_of(names, database)
    return found[-1] if found else None


def backups_beyond(names, database, keep):
    """The backups of C(database) to delete so that only the newest C(keep) remain, oldest first."""
    found = backups_of(names, database)
    return found[:max(len(found) - keep, 0)]


# -- versions ------------------------------------------------------------------------------------------------

def client_major(version_output):
    """The major version of C(pg_dump --version) output, as a tuple: (15,) of "pg_dump (PostgreSQL) 15.18",
    (9, 6) of "pg_dump (PostgreSQL) 9.6.24" (before 10, the major had two numbers). None when there is none."""
    found = re.search(r'(\d+)(?:\.(\d+))?', version_output or '')
    if not found:
        return None
    major = int(found.group(1))
    if major < 10 and found.group(2) is not None:
        return (major, int(found.group(2)))
    return (major,)


def server_major(server_version_num):
    """The major version of a server_version_num: (15,) of 150010, (9, 6) of 90624."""
    if server_version_num >= 100000:
        return (server_version_num // 10000,)
    return (server_version_num // 10000, server_version_num // 100 % 100)


def major_text(major):
    return '.'.join(str(part) for part in major)


def pg_dump_too_old(client_version_output, server_version_num, server_version):
    """The message that refuses the dump when pg_dump is older than the server, or None when it can dump it."""
    client = client_major(client_version_output)
    server = server_major(server_version_num)
    if client is not None and client >= server:
        return None
    return ('pg_dump on the control node is version %s but the server is %s: an older pg_dump cannot dump a newer '
            'server. Install postgresql-client-%s on the control node (or set bin_dir, backup_bin_dir in the role, '
            'to its bin directory) and rerun; nothing was changed.'
            % (major_text(client) if client else 'unknown (%r)' % (client_version_output or '').strip(),
               server_version.split()[0], major_text(server)))


def missing_client_message(program, bin_dir, server_version_num, role_variable):
    """C(program) is not where it was looked for; C(role_variable) is the role's name of the bin_dir option."""
    return ('%s not found %s on the host the module runs on. Install postgresql-client-%s there (or set bin_dir, '
            '%s in the role, to its bin directory) and rerun; nothing was changed.'
            % (program, 'in %s' % bin_dir if bin_dir else 'on the PATH', major_text(server_major(server_version_num)),
               role_variable))


# -- calling pg_dump and pg_restore --------------------------------------------------------------------------

def libpq_environment(conn_params, application_name):
    """The libpq environment variables of the connection (get_conn_params' dict), and the connection keywords
    that have none (pg_dump and pg_restore then run without them)."""
    environment, without = {}, []
    for keyword, value in sorted(conn_params.items()):
        if value is None or value == '':
            continue
        if keyword in LIBPQ_ENVIRONMENT:
            environment[LIBPQ_ENVIRONMENT[keyword]] = str(value)
        else:
            without.append(keyword)
    environment.setdefault('PGAPPNAME', application_name)
    return environment, without


def dbname_argument(name):
    """--dbname=<name> for pg_restore. libpq reads a value with "=" or a URI prefix as a connection string, so such
    a name is given as one: dbname='...'."""
    if '=' in name or name.startswith(('postgresql://', 'postgres://')):
        return "--dbname=dbname='%s'" % name.replace('\\', '\\\\').replace("'", "\\'")
    return '--dbname=%s' % name


def dump_command(pg_dump, path, backup_format, jobs):
    """pg_dump's argv; the database and the login come from the environment (libpq_environment)."""
    command = [pg_dump, '--format=%s' % backup_format, '--file=%s' % path]
    if backup_format == 'directory':
        command.append('--jobs=%d' % jobs)
    return command


def restore_command(pg_restore, path, database, jobs):
    return [pg_restore, '--no-owner', '--exit-on-error', '--jobs=%d' % jobs, dbname_argument(database), path]


def command_line(command):
    """An argv as one shell-quoted line, for the result's C(commands)."""
    return ' '.join(shlex.quote(part) for part in command)


class ClientPrograms(object):
    """Runs pg_dump and pg_restore (from the module's O(bin_dir), or the PATH) with the login in their
    environment, and remembers each command line."""

    def __init__(self, module, conn_params, application_name):
        self.module = module
        self.environment, without = libpq_environment(conn_params, application_name)
        for keyword in without:
            module.warn('connect_params %s has no libpq environment variable: pg_dump and pg_restore run without it'
                        % keyword)
        self.commands = []

    def path(self, name):
        """The program's path, or None when it is not there."""
        bin_dir = self.module.params['bin_dir']
        if bin_dir:
            found = os.path.join(bin_dir, name)
            return found if os.path.isfile(found) and os.access(found, os.X_OK) else None
        return self.module.get_bin_path(name)

    def run(self, command):
        """(rc, stdout, stderr) of C(command)."""
        self.commands.append(command_line(command))
        return self.module.run_command(command, environ_update=self.environment)


def toc_entries(listing):
    """The entries of a C(pg_restore --list) listing (its lines that are neither comments nor blank)."""
    return len([line for line in listing.splitlines() if line.strip() and not line.startswith(';')])


def last_lines(text, count=5):
    """The end of a program's error output, on one line each, for a failure message."""
    lines = [line.strip() for line in (text or '').strip().splitlines() if line.strip()]
    return ' | '.join(lines[-count:]) or 'no output'


# -- measuring -----------------------------------------------------------------------------------------------

def size_bytes(path):
    """A backup file's size, or the sum of the files of a directory-format backup."""
    if not os.path.isdir(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(root, name)) for root, dummy_dirs, names in os.walk(path)
               for name in names)


def sha256_target(path, backup_format):
    """What the recorded sha256 is of: the file, or the table of contents of a directory-format backup."""
    if backup_format == 'directory':
        return os.path.join(path, 'toc.dat'), 'toc.dat'
    return path, 'the file'


def sha256_of_file(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        for block in iter(lambda: handle.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def backup_summary(database, backup):
    """The line that shows a verified backup."""
    return ('Backup of %s: %s (%s format, %.1f MiB, %ss, %d entries, sha256 %s), verified with pg_restore --list.'
            % (database, backup['path'], backup['format'], backup['size_bytes'] / 1048576.0, backup['seconds'],
               backup['toc_entries'], backup['sha256']))


def deleted_summary(deleted, keep, check_mode=False):
    if not deleted:
        return ''
    return ' %s %d older backup(s), keeping the newest %d: %s.' % (
        'Would delete' if check_mode else 'Deleted', len(deleted), keep,
        ', '.join(os.path.basename(path) for path in deleted))


# -- the restore drill ---------------------------------------------------------------------------------------

def no_backup_message(database, directory):
    return ('No backup of %s in %s: take one with playbooks/backup.yml, or name one with '
            '-e restore_drill_backup=<path>.' % (database, directory))


def scratch_database_problem(scratch, source):
    """Why C(scratch) cannot be the drill's scratch database (it is dropped and recreated), or None."""
    if scratch == source:
        return ('The scratch database of the restore drill cannot be the source database %s: it is dropped and '
                'recreated. Name another one.' % source)
    if scratch in PROTECTED_DATABASES:
        return ('The scratch database of the restore drill cannot be %s: it is dropped and recreated. Name another '
                'one.' % scratch)
    return None


def not_compared(why):
    """The differences of a drill that stopped before its counts were compared: one item that says why."""
    return ['not compared: %s' % ' '.join(why.split())]


def is_not_compared(differences):
    return len(differences) == 1 and differences[0].startswith('not compared: ')


def row_counts(rows):
    """{table: rows} of the count query's rows, in its order."""
    return dict((row['table_name'], int(row['row_count'])) for row in rows)


def count_differences(source, restored):
    """The tables whose row count differs between the source and the restored copy, or that only one has: the
    source's order first, then the copy's own tables."""
    tables = list(source) + [table for table in restored if table not in source]
    return [table for table in tables if source.get(table) != restored.get(table)]


def _difference(table, source, restored):
    if table not in source:
        return '%s is not in the source, %d rows restored' % (table, restored[table])
    if table not in restored:
        return '%s has %d rows in the source, and was not restored' % (table, source[table])
    return '%s has %d rows in the source, %d restored' % (table, source[table], restored[table])


def drill_mismatch_message(backup, database, source, restored, differences):
    return ('The restore of %s does not match %s: %s; rows written since the backup explain a difference on a live '
            'database: drill against a quiet copy, or a fresh backup.'
            % (backup, database, '; '.join(_difference(table, source, restored) for table in differences)))


def drill_passed_message(backup, scratch, source, kept):
    return ("Restore drill passed: %s restored into %s, and all %d tables (%d rows) have the source's exact row "
            "counts.%s" % (backup, scratch, len(source), sum(source.values()),
                           ' The scratch database %s is kept.' % scratch if kept else ''))
