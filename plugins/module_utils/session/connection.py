# -*- coding: utf-8 -*-
# Connections of the pg-zero-downtime modules: opened through community.postgresql, and when one cannot be
# opened or is lost, a message that says what that means for the run and what to do, instead of the driver's
# "server closed the connection unexpectedly". connection_advice takes text and returns text, so tests/unit
# runs it without a server.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.statements import (
    OnlineIndexError, fetch_dicts, option_errors,
)

# What the server has room for: its connection slots, those reserved for superusers (and, PostgreSQL 16+, for roles
# with pg_use_reserved_connections; NULL before), and the client backends connected now other than this session and
# the C(own) pids.
CONNECTION_SLOTS_QUERY = """
SELECT pg_catalog.current_setting('max_connections')::int AS max_connections,
       pg_catalog.current_setting('superuser_reserved_connections')::int AS superuser_reserved,
       coalesce(pg_catalog.current_setting('reserved_connections', true), '0')::int AS reserved,
       (SELECT count(*) FROM pg_catalog.pg_stat_activity
        WHERE backend_type = 'client backend' AND pid <> pg_catalog.pg_backend_pid()
          AND pid <> ALL(%(own)s::int[]))::int AS connected
"""

# (what the driver says, what it means and what to do), first match wins.
ADVICE = (
    (('the database system is starting up', 'the database system is shutting down', 'in recovery mode',
      'server closed the connection', 'terminating connection', 'connection refused', 'could not receive data',
      'server conn crashed', 'ssl syscall error', 'connection already closed', 'no connection to the server'),
     'The server is not accepting connections right now, or ended this session: it is restarting, shutting down '
     'or in recovery, or an administrator terminated the session. Wait until it accepts connections again '
     '(pg_isready), then rerun: what earlier statements did is kept, and the rerun goes on from there (an '
     'interrupted concurrent build leaves an INVALID index, which the rerun drops and builds again).'),
    (('password authentication failed', 'no password supplied', 'no pg_hba.conf entry', 'role "'),
     'The server refused the login: check pg_user and pg_password (from vault), and that pg_hba.conf lets that '
     'user in from this host.'),
    (('could not translate host name', 'timeout expired', 'no route to host', 'network is unreachable'),
     'The server could not be reached: check pg_host, pg_port and the network from the host that runs the '
     'modules.'),
    (('database "', 'does not exist'),
     'Check pg_database: the database must exist before a migration runs.'),
)


def connection_advice(error_text):
    """What a connection failure means for the run and what to do, or a generic line when it is not recognised."""
    lowered = error_text.lower()
    for patterns, advice in ADVICE:
        if any(pattern in lowered for pattern in patterns):
            return advice
    return 'Check that the server runs and accepts this connection, then rerun.'


def connection_failure_message(error, target, what='connect to'):
    """The whole message: what failed, the driver's words on one line, and the advice."""
    text = ' '.join(str(error).split()) or 'no reason given'
    return 'Could not %s %s: %s\n%s' % (what, target, text, connection_advice(text))


def target_of(conn_params):
    return 'database %s at %s:%s as %s' % (conn_params.get('dbname') or conn_params.get('database') or '?',
                                           conn_params.get('host') or 'the local socket',
                                           conn_params.get('port') or 5432, conn_params.get('user') or '?')


def connection_argument_spec(**options):
    """The argument_spec of a module of the collection: community.postgresql's connection options, the database and
    the session role (documented by the doc fragments community.postgresql.postgres and
    pg_zero_downtime.migrations.connection), then the module's own C(options)."""
    from ansible_collections.community.postgresql.plugins.module_utils.postgres import postgres_common_argument_spec
    spec = postgres_common_argument_spec()
    spec.update(login_db=dict(type='str', aliases=['db']), session_role=dict(type='str'))
    spec.update(options)
    return spec


def conn_params_of(module):
    """The module's connection parameters (community.postgresql's get_conn_params, login_db and session_role
    included), once the driver is known to be installed: the task fails naming it otherwise."""
    from ansible_collections.community.postgresql.plugins.module_utils.postgres import (
        ensure_required_libs, get_conn_params,
    )
    ensure_required_libs(module)
    return get_conn_params(module, module.params)


def connect_or_fail(module, conn_params=None, **result):
    """An autocommit connection, or the task fails saying what the failure means (nothing was changed). Without
    C(conn_params), those of the module's options (conn_params_of)."""
    from ansible_collections.community.postgresql.plugins.module_utils.postgres import connect_to_db
    if conn_params is None:
        conn_params = conn_params_of(module)
    connection, error = connect_to_db(module, dict(conn_params), autocommit=True, fail_on_conn=False)
    if connection is None:
        result.setdefault('changed', False)
        module.fail_json(msg='%s\nNothing was changed by this task.' % connection_failure_message(
            error, target_of(conn_params)), **result)
    return connection


def connect_checked(module, settings, nothing='changed', **result):
    """connect_or_fail, then the proof that the module's retry and timeout options are valid (statements.option_errors;
    C(settings), the (option, GUC) pairs of the settings PostgreSQL must accept). Otherwise the connection is closed
    and the task fails listing every error, with C(result): nothing was C(nothing)."""
    connection = connect_or_fail(module)
    errors = option_errors(connection.cursor(), module.params, settings)
    if errors:
        connection.close()
        module.fail_json(msg='Invalid options; nothing was %s:\n- %s' % (nothing, '\n- '.join(errors)), **result)
    return connection


def connection_slots(cursor, own_pids):
    """The server's connection slots (CONNECTION_SLOTS_QUERY), this session and those of C(own_pids) (a run's own,
    counted by index_runs.connection_budget) not counted as connected: what connection_budget weighs a run against."""
    return fetch_dicts(cursor, CONNECTION_SLOTS_QUERY, dict(own=[int(pid) for pid in own_pids if pid]))[0]


def watch_connection_factory(module, conn_params):
    """A callable that opens one more autocommit connection like the module's own, for the build watch."""
    from ansible_collections.community.postgresql.plugins.module_utils.postgres import connect_to_db

    def connect():
        connection, error = connect_to_db(module, dict(conn_params), autocommit=True, fail_on_conn=False)
        if connection is None:
            raise OnlineIndexError(connection_failure_message(error, target_of(conn_params),
                                                              'open the connection that watches the build, to'))
        return connection
    return connect
