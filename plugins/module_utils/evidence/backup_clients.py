# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which installed pg_dump and pg_restore fit the server, and how they are called: the login in libpq's environment,
never on a command line, each command line remembered for the module's result.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import os
import re
import shlex

from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.server_features import (
    first_major_with, has, major,
)

SERVER_SQL = ("SELECT pg_catalog.current_database() AS database, "
              "pg_catalog.current_setting('server_version') AS server_version, "
              "pg_catalog.current_setting('server_version_num')::int AS server_version_num")

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


# -- versions and the choice of the client -------------------------------------------------------------------

# Where PostgreSQL's packages install each major's client programs, besides the directories of the PATH: Debian and
# Ubuntu (postgresql-client-<major>), and RHEL and its rebuilds (the PGDG repository's postgresql<major>).
PACKAGED_CLIENT_DIRS = ('/usr/lib/postgresql/*/bin', '/usr/pgsql-*/bin')


def client_major(version_output):
    """The major version of C(pg_dump --version) (or C(pg_restore --version)) output: 15 of
    "pg_dump (PostgreSQL) 15.18", 17 of "pg_dump (PostgreSQL) 17devel". None when there is none."""
    found = re.search(r'(\d+)', version_output or '')
    return int(found.group(1)) if found else None


def version_text(version_output):
    """The version of C(pg_dump --version) output, for messages: 15.18 of "pg_dump (PostgreSQL) 15.18 (Debian ...)"."""
    found = re.search(r'\)\s*(\S+)', version_output or '')
    return found.group(1) if found else (version_output or '').strip() or 'unknown'


def candidate_dirs(extra_dirs, path_dirs, packaged_dirs, real_path=lambda directory: directory):
    """The directories to look for the client in: the extra directories given first, then those of the PATH in its
    order, then the packaged ones; each once, by C(real_path) (os.path.realpath at the edge: /usr/bin may be a link)."""
    found, seen = [], set()
    for directory in list(extra_dirs or []) + list(path_dirs or []) + list(packaged_dirs or []):
        if directory and real_path(directory) not in seen:
            seen.add(real_path(directory))
            found.append(directory)
    return found


def choose_client(candidates, server_major):
    """The client for a server of major C(server_major), from C(candidates) [(bin_dir, major or None)] in search
    order: the first of the server's own major, else the first of the newest major above it. None when every one is
    older than the server (an older pg_dump cannot dump a newer server) or its version is unknown."""
    usable = [(bin_dir, version) for bin_dir, version in candidates if version is not None and version >= server_major]
    if not usable:
        return None
    matching = [candidate for candidate in usable if candidate[1] == server_major]
    if matching:
        return matching[0]
    newest = max(version for dummy, version in usable)
    return [candidate for candidate in usable if candidate[1] == newest][0]


def install_advice(server_major, role_variable):
    """What to install on the control node for a server of C(server_major), and the variable that names a client."""
    return ("Install PostgreSQL %d's client tools (or a newer major's) on the control node: on Debian or Ubuntu "
            "apt-get install postgresql-client-%d (from apt.postgresql.org), on RHEL dnf install postgresql%d (from "
            "the PGDG repository); or set %s to the bin directory of a pg_dump and pg_restore %d or newer. Then rerun; "
            "nothing was changed." % (server_major, server_major, server_major, role_variable, server_major))


def no_client_message(program, found, server_major, server_version, role_variable):
    """Why no installed C(program) fits a server of C(server_major); C(found) [(bin_dir, version output)] are the
    ones installed."""
    if found:
        seen = 'found only %s' % ', '.join('%s %s in %s' % (program, version_text(output), bin_dir)
                                           for bin_dir, output in found)
    else:
        seen = 'found none (looked on the PATH, in %s and in the extra directories given)' % (
            ' and '.join(PACKAGED_CLIENT_DIRS))
    action = 'dump' if program == 'pg_dump' else 'restore the dump of'
    return ('No %s on the control node can handle the server, PostgreSQL %s: %s, and an older %s cannot %s a newer '
            'server. %s' % (program, server_version.split()[0], seen, program, action,
                            install_advice(server_major, role_variable)))


def pg_dump_too_old(client_version_output, server_major, server_version):
    """The message that refuses the dump when pg_dump is older than the server, or None when it can dump it."""
    client = client_major(client_version_output)
    if client is not None and client >= server_major:
        return None
    return ('pg_dump on the control node is version %s but the server is %s: an older pg_dump cannot dump a newer '
            'server. Install postgresql-client-%d on the control node (or set bin_dir, backup_bin_dir in the role, '
            'to its bin directory) and rerun; nothing was changed.'
            % (client if client is not None else 'unknown (%r)' % (client_version_output or '').strip(),
               server_version.split()[0], server_major))


def older_pg_restore_advice(error_output, client):
    """What to do when pg_restore failed because the archive is newer than it (an archive made by a newer pg_dump),
    or '' for any other failure."""
    if 'unsupported version' not in (error_output or ''):
        return ''
    return (' pg_restore %s of %s cannot read an archive made by a newer pg_dump: restore it with the pg_restore of the '
            "directory of the pg_dump that made it (the backup's client.bin_dir), or a newer one (restore_drill_bin_dir)."
            % (version_text(client['version']), client['bin_dir']))


def pg_restore_too_new(client, server):
    """Why the chosen pg_restore (C(client), choose's record) cannot restore into the server (SERVER_SQL's row), or
    None. A pg_restore of 17 or newer starts every restore with SET transaction_timeout = 0, which a server older than
    17 refuses (unrecognized configuration parameter), so its restore fails at its first statement."""
    newest = first_major_with('transaction_timeout')
    if client['major'] is None or client['major'] < newest or has(server['server_version_num'], 'transaction_timeout'):
        return None
    server_major = major(server['server_version_num'])
    return ('pg_restore %s (%s) cannot restore into this server, PostgreSQL %s: a pg_restore of %d or newer sets '
            'transaction_timeout, which servers older than %d do not have, and stops at its first statement. Install '
            'the client of the server\'s major on the control node (postgresql-client-%d on Debian or Ubuntu, '
            'postgresql%d on RHEL) and set restore_drill_bin_dir to its bin directory; the backup itself is fine. '
            'Nothing was restored.' % (version_text(client['version']), client['bin_dir'],
                                       server['server_version'].split()[0], newest, newest, server_major,
                                       server_major))


def missing_client_message(program, bin_dir, server_major, role_variable):
    """C(program) is not where it was looked for; C(role_variable) is the role's name of the bin_dir option."""
    return ('%s not found %s on the host the module runs on. Install postgresql-client-%d there (or set bin_dir, '
            '%s in the role, to its bin directory) and rerun; nothing was changed.'
            % (program, 'in %s' % bin_dir if bin_dir else 'on the PATH', server_major, role_variable))


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


def executable(path):
    return os.path.isfile(path) and os.access(path, os.X_OK)


class ClientPrograms(object):
    """Runs pg_dump and pg_restore (of the directory chosen for the server, or the module's O(bin_dir)) with the login
    in their environment, and remembers each command line."""

    def __init__(self, module, conn_params, application_name):
        self.module = module
        self.environment, without = libpq_environment(conn_params, application_name)
        for keyword in without:
            module.warn('connect_params %s has no libpq environment variable: pg_dump and pg_restore run without it'
                        % keyword)
        self.commands = []
        self.bin_dir = module.params['bin_dir']

    def path(self, name):
        """The program's path in the chosen directory, or None when it is not there."""
        found = os.path.join(self.bin_dir or '', name)
        return found if self.bin_dir and executable(found) else None

    def run(self, command):
        """(rc, stdout, stderr) of C(command)."""
        self.commands.append(command_line(command))
        return self.module.run_command(command, environ_update=self.environment)

    def installed(self, programs, extra_dirs):
        """[(bin_dir, C(<first program> --version) output)] of every directory that holds all C(programs): the extra
        directories, those of the PATH, then the packaged ones (PACKAGED_CLIENT_DIRS)."""
        packaged = [directory for pattern in PACKAGED_CLIENT_DIRS for directory in sorted(glob.glob(pattern))]
        found = []
        for directory in candidate_dirs(extra_dirs, os.environ.get('PATH', '').split(os.pathsep), packaged,
                                        os.path.realpath):
            paths = [os.path.join(directory, name) for name in programs]
            if all(executable(path) for path in paths):
                rc, output, dummy_err = self.module.run_command([paths[0], '--version'])
                found.append((directory, output if rc == 0 else ''))
        return found

    def choose(self, programs, server, extra_dirs, role_variable):
        """Choose the directory of C(programs) (pg_dump, pg_restore of a backup; pg_restore of a drill) for the
        server (SERVER_SQL's row): O(bin_dir) when given, else the installed one of the server's major, or the newest
        newer one. (client, None): the client's record; (None, refusal): why none fits and what to install."""
        program, server_major = programs[0], major(server['server_version_num'])
        if self.bin_dir:
            if not self.path(program):
                return None, missing_client_message(program, self.bin_dir, server_major, role_variable)
            rc, output, err = self.run([self.path(program), '--version'])
            if rc != 0:
                return None, '%s --version failed (exit %s): %s' % (self.path(program), rc, last_lines(err))
            refusal = program == 'pg_dump' and pg_dump_too_old(output, server_major, server['server_version'])
            missing = [name for name in programs if not self.path(name)]
            if refusal or missing:
                return None, refusal or missing_client_message(missing[0], self.bin_dir, server_major, role_variable)
            chosen_by = role_variable
        else:
            found = self.installed(programs, extra_dirs)
            choice = choose_client([(bin_dir, client_major(output)) for bin_dir, output in found], server_major)
            if choice is None:
                return None, no_client_message(program, found, server_major, server['server_version'], role_variable)
            self.bin_dir, output = choice[0], dict(found)[choice[0]]
            self.commands.append(command_line([self.path(program), '--version']))
            chosen_by = ("the server's major" if choice[1] == server_major
                         else "the newest installed, the server's major is not")
        return dict(bin_dir=self.bin_dir, program=self.path(program), version=output.strip(),
                    major=client_major(output), chosen_by=chosen_by), None


def last_lines(text, count=5):
    """The end of a program's error output, on one line each, for a failure message."""
    lines = [line.strip() for line in (text or '').strip().splitlines() if line.strip()]
    return ' | '.join(lines[-count:]) or 'no output'
