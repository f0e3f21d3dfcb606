# -*- coding: utf-8 -*-
"""A PostgreSQL 15 cluster that archives its WAL into a real local folder, for the ``archive`` backup mode (issue 25).

A test module takes the fixture by importing it (pytest finds fixtures in the test module's namespace; tests/integration
is on sys.path as the folder of the test files)::

    from archive_cluster import archive_cluster, archive_now, make_archiving_fail  # noqa: F401

    def test_x(archive_cluster):
        row = archive_now(archive_cluster)

``archive_cluster`` (module scope) is a throwaway cluster of the module's own, started and removed with
playbooks/local_cluster.yml (the session's cluster keeps archive_mode off: the project's default). Its
postgresql.conf, as the role writes it, has ``archive_mode = on``, ``wal_level = replica`` and
``archive_command = 'cp "%p" "<dir>/archive/%f"'``: every completed WAL segment is copied into ``archive_dir``, a
folder owned by the server's OS user (postgres when the tests run as root) that the test process reads. Its
database ``t12`` has no table; ``@pytest.mark.parametrize('archive_cluster', [dict(seed=True)], indirect=True)``
loads the T12 sample (scale 0.02) instead.

The functions drive the archiver into the states the backup mode must tell apart, and return the
pg_stat_archiver row they waited for (``archiver_row``):

- ``archive_now``: a fresh successful archive (a WAL record, pg_switch_wal, wait until it is archived);
- ``make_archiving_fail``: archive_command set to ``false`` (ALTER SYSTEM), a segment that fails, a failure newer
  than the last success; ``restore_archiving`` undoes it and waits until the failed segment is archived;
- ``make_archive_stale``: a successful archive, then a wait until it is older than the given age (nothing else
  writes a whole segment meanwhile, so nothing newer is archived);
- ``reset_archiver_statistics``: pg_stat_reset_shared('archiver'), so the view says nothing was ever archived.

The module's tests share the cluster, and with it the archiver's state: a test that makes archiving fail restores it
(try/finally), or every later archive_now waits for nothing. What PostgreSQL 15 does here (seen on this cluster):
right after the start pg_stat_archiver has archived_count 0, failed_count 0 and NULL in every other column but
stats_reset (without the seed no segment is complete yet); a failing command is tried three times a second apart, then again after
60 s or as soon as another segment is ready or the configuration is reloaded, always the oldest ready segment (the
ones after it wait); a reload with a working command archives the backlog within a fraction of a second.
"""

import contextlib
import json
import os
import pwd
import shutil
import time

import pytest

import helpers

# The cluster's port: this worker's session cluster port plus 30, a slot the version matrix leaves free (13 to 18
# take +10, +20, +40, +50 and +60; tests/conftest.py, cluster_port).
_WORKER = os.environ.get('PYTEST_XDIST_WORKER', '')
PORT = int(os.environ.get('PGZD_TEST_PORT', '55434')) + (int(_WORKER[2:]) if _WORKER.startswith('gw') else 0) + 30
DIRECTORY = os.path.join(helpers.REPO_ROOT, '.local', 'pytest-archive-%d' % PORT)
DBNAME = 't12'
USER = 'pgzd'
# The OS user roles/local_cluster runs the server as when the play runs as root (local_cluster_os_user).
SERVER_OS_USER = 'postgres'
# PostgreSQL's default WAL segment size, which initdb gives the cluster.
WAL_SEGMENT_BYTES = 16 * 1024 * 1024
# Bounds that only stop a hang: the archiver copies a segment within a second here.
WAIT_TIMEOUT = 60
COLUMNS = ('archived_count', 'last_archived_wal', 'last_archived_time', 'failed_count', 'last_failed_wal',
           'last_failed_time', 'stats_reset')


def archive_command(archive_dir):
    """The cp into C(archive_dir) that the server runs for each completed segment (%p: its path, %f: its name)."""
    return 'cp "%%p" "%s/%%f"' % archive_dir


def _cluster_vars(directory, port, state, seed):
    settings = dict(local_cluster_dir=directory, pg_port=port, local_cluster_state=state)
    if seed:
        settings['local_cluster_scale'] = '0.02'
    return settings


def _options(directory, seed):
    # local_cluster_settings replaces the role's default dict: these are the only settings beside the defaults of
    # PostgreSQL itself. archive_mode needs a server start, so it is in the file before the first start.
    extra = dict(local_cluster_settings=dict(archive_mode='on', wal_level='replica',
                                             archive_command=archive_command(os.path.join(directory, 'archive'))))
    if not seed:
        extra['local_cluster_seed_sql'] = []
    return ['-e', json.dumps(extra)]


def _run_cluster_playbook(directory, port, state, seed):
    return helpers.run_playbook('playbooks/local_cluster.yml', _cluster_vars(directory, port, state, seed),
                                options=_options(directory, seed))


def _make_archive_dir(directory):
    """The archive folder, made before the first start: the first segment may complete while the role creates the
    database, and a cp into a missing folder would count as a failure. Owned by the server's OS user, private."""
    archive_dir = os.path.join(directory, 'archive')
    os.makedirs(archive_dir, mode=0o700)
    if os.getuid() == 0:
        try:
            server_user = pwd.getpwnam(SERVER_OS_USER)
        except KeyError:
            pytest.fail('the tests run as root and there is no OS user %r to run the archiving cluster as: create it '
                        '(Debian: apt-get install postgresql) or run the tests as another user' % SERVER_OS_USER,
                        pytrace=False)
        for path in (directory, archive_dir):
            os.chown(path, server_user.pw_uid, server_user.pw_gid)
    return archive_dir


@contextlib.contextmanager
def started_archive_cluster(directory=DIRECTORY, port=PORT, seed=False):
    """Start an archiving cluster in C(directory) on C(port); yield its connection info (host, port, user, password,
    dbname, dir, archive_dir, major); stop it and delete C(directory) on the way out, whatever happened."""
    if os.path.exists(directory):  # left by an interrupted session
        _run_cluster_playbook(directory, port, 'absent', seed)
        shutil.rmtree(directory, ignore_errors=True)
    cluster = None
    try:
        archive_dir = _make_archive_dir(directory)
        started = _run_cluster_playbook(directory, port, 'started', seed)
        if started.returncode != 0:
            pytest.fail('could not start the archiving cluster in %s (rc %s):\n%s\n%s'
                        % (directory, started.returncode, started.stdout[-6000:], started.stderr[-3000:]),
                        pytrace=False)
        with open(os.path.join(directory, 'superuser.password')) as handle:
            password = handle.readline().strip()
        cluster = dict(host='127.0.0.1', port=port, user=USER, password=password, dbname=DBNAME, dir=directory,
                       archive_dir=archive_dir, major=helpers.MAIN_MAJOR)
        yield cluster
    finally:
        removed = _run_cluster_playbook(directory, port, 'absent', seed)
        if removed.returncode != 0:
            print('WARNING: could not remove the archiving cluster in %s:\n%s' % (directory, removed.stdout[-3000:]))


@pytest.fixture(scope='module')
def archive_cluster(request):
    """A cluster of this module's own that archives its WAL into archive_dir (see the module's docstring); indirect
    parametrization with dict(seed=True) loads the T12 sample into its database."""
    options = getattr(request, 'param', None) or {}
    with started_archive_cluster(seed=options.get('seed', False)) as cluster:
        yield cluster


# -- the archiver's states ---------------------------------------------------------------------------------------

def archiver_row(conn):
    """pg_stat_archiver as a dict, with the server's clock (now: clock_timestamp()) and settings beside it.

    Read in autocommit: inside a transaction the server serves the first snapshot of these statistics again
    (stats_fetch_consistency)."""
    rows = helpers.query(conn, """
        SELECT %s, pg_catalog.clock_timestamp(), pg_catalog.current_setting('archive_command')
        FROM pg_catalog.pg_stat_archiver""" % ', '.join(COLUMNS))
    return dict(zip(COLUMNS + ('now', 'archive_command'), rows[0]))


def _wait_for_row(conn, predicate, what, timeout=WAIT_TIMEOUT):
    seen = []

    def reached():
        seen[:] = [archiver_row(conn)]
        return predicate(seen[0])

    helpers.wait_until(reached, timeout=timeout, what=what)
    return seen[0]


def switch_wal(conn):
    """Write a WAL record (a logical message: no table, no catalog change) and end the segment holding it; the name
    of the segment that is now complete and ready for the archiver."""
    helpers.query(conn, "SELECT pg_catalog.pg_logical_emit_message(false, 'pgzd-archive-test', 'switch')")
    return helpers.query(conn, 'SELECT pg_catalog.pg_walfile_name(pg_catalog.pg_switch_wal())')[0][0]


def _succeeded_since_failure(row):
    return row['last_archived_time'] is not None and (row['last_failed_time'] is None
                                                      or row['last_failed_time'] <= row['last_archived_time'])


def archive_now(cluster):
    """A successful archive of a fresh segment: the pg_stat_archiver row once it names that segment (or a later one)
    as the last archived. Fails the test when archiving is failing (see make_archiving_fail)."""
    with contextlib.closing(helpers.connect(cluster, dbname='postgres')) as conn:
        segment = switch_wal(conn)
        # Names of one timeline sort as the segments do.
        return _wait_for_row(conn, lambda row: (row['last_archived_wal'] or '') >= segment
                             and _succeeded_since_failure(row), 'the archive of WAL segment %s' % segment)


def _set_archive_command(cluster, conn, command=None):
    """ALTER SYSTEM SET archive_command to C(command) (RESET to the fixture's cp when None) and reload; wait until a
    new session sees it: the postmaster has then passed the reload on to the archiver."""
    if command is None:
        helpers.query(conn, 'ALTER SYSTEM RESET archive_command')
    else:
        helpers.query(conn, 'ALTER SYSTEM SET archive_command = %s', (command,))
    helpers.query(conn, 'SELECT pg_catalog.pg_reload_conf()')
    expected = archive_command(cluster['archive_dir']) if command is None else command

    def seen_by_a_new_session():
        with contextlib.closing(helpers.connect(cluster, dbname='postgres')) as fresh:
            return helpers.query(fresh, "SELECT pg_catalog.current_setting('archive_command')")[0][0] == expected

    helpers.wait_until(seen_by_a_new_session, timeout=WAIT_TIMEOUT, what='the reload of archive_command')


def make_archiving_fail(cluster, command='false'):
    """Make archiving fail: archive_command becomes C(command) (exits 1), a fresh segment is switched, and the row is
    returned once failed_count has grown and the last failure is newer than the last success. The archiver keeps
    retrying that segment (and archives nothing after it) until restore_archiving."""
    with contextlib.closing(helpers.connect(cluster, dbname='postgres')) as conn:
        before = archiver_row(conn)
        _set_archive_command(cluster, conn, command)
        segment = switch_wal(conn)
        return _wait_for_row(conn, lambda row: row['failed_count'] > before['failed_count']
                             and not _succeeded_since_failure(row),
                             'a failed archive of WAL segment %s' % segment)


def restore_archiving(cluster):
    """Undo make_archiving_fail: archive_command is the fixture's cp again, and the row is returned once the segment
    that failed (and any after it) is archived, so the last success is newer than the last failure."""
    with contextlib.closing(helpers.connect(cluster, dbname='postgres')) as conn:
        _set_archive_command(cluster, conn)
        failed = archiver_row(conn)['last_failed_wal'] or ''
        # The reload wakes the archiver, which retries at once; without it the wait would be up to a minute.
        return _wait_for_row(conn, lambda row: (row['last_archived_wal'] or '') >= failed
                             and _succeeded_since_failure(row), 'the archive of the failed WAL segment %s' % failed)


def make_archive_stale(cluster, max_age_seconds):
    """A successful archive that is then left to age: the row once the server's clock is more than
    C(max_age_seconds) past its last_archived_time (a test passes a max age of a few seconds). Nothing else
    completes a segment meanwhile (no archive_timeout, and the tests write far less than 16 MiB)."""
    archived = archive_now(cluster)
    age = archived['now'] - archived['last_archived_time']
    time.sleep(max(0.0, max_age_seconds - age.total_seconds()))
    with contextlib.closing(helpers.connect(cluster, dbname='postgres')) as conn:
        def older(row):
            return (row['now'] - row['last_archived_time']).total_seconds() > max_age_seconds

        return _wait_for_row(conn, older, 'an archive older than %ss' % max_age_seconds)


def reset_archiver_statistics(cluster):
    """pg_stat_reset_shared('archiver'): the view then says nothing was ever archived nor failed (counts 0, the
    rest NULL but stats_reset), as on a server that has archived nothing since its statistics began."""
    with contextlib.closing(helpers.connect(cluster, dbname='postgres')) as conn:
        helpers.query(conn, "SELECT pg_catalog.pg_stat_reset_shared('archiver')")
        return _wait_for_row(conn, lambda row: row['last_archived_wal'] is None and row['failed_count'] == 0,
                             'the reset of pg_stat_archiver')
