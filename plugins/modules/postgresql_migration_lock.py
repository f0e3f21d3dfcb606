#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: postgresql_migration_lock
short_description: One pg-zero-downtime run per database at a time (a session-level advisory lock)
description:
  - With O(state=acquired), takes the session-level advisory lock of pg-zero-downtime in the database, so two
    migrate or rollback runs cannot interleave their DDL. When another run holds it, the module fails at once
    and names that run (plan, run id, host, process, since when) and its session.
  - A session-level lock lives as long as its connection, and each Ansible module is a process of its own.
    So the module starts a small detached process, the holder, on the host it runs on. The holder keeps one
    connection open with the lock and an C(application_name) that describes the run. The holder ends, and the
    lock with it, when O(state=released) terminates its session, when the process O(owner_pid) is gone (the
    ansible-playbook of the run, when the module runs on the control node), when the connection drops, or
    after O(max_seconds).
  - The lock belongs to the session that took it, not to a name. O(state=acquired) returns that session's
    backend pid (C(holder.pid)) and sets the fact C(pgzd_lock_session_pid) to it. Given that pid in
    O(session_pid), O(state=acquired) takes nothing but proves the session still holds the lock, and fails
    naming what happened when it does not (the session was terminated, or the server restarted); the DDL
    modules make the same check themselves before each table's DDL and each constraint step.
  - With O(state=released), ends the holder session O(session_pid) (or, without it, the holder of O(run_id)),
    never another run's. A lock that is already free is reported unchanged.
  - In check mode nothing is taken or released; a lock held by another run is reported as a warning.
version_added: '0.1.0'
options:
  login_db:
    description: Name of the database to connect to; the lock is per database.
    type: str
    aliases: [db]
  state:
    description: C(acquired) takes the lock for this run; C(released) gives it back.
    type: str
    choices: [acquired, released]
    default: acquired
  run_id:
    description:
      - Id of this run, shown to whoever finds the lock taken. It must be unique per run (the playbooks add a
        random suffix to the start time); a holder with the same id is still another run's session.
    type: str
    required: true
  session_pid:
    description:
      - Backend pid of the session that holds this run's lock, as O(state=acquired) returned it. With
        O(state=acquired), check that it still holds the lock instead of taking it; with O(state=released),
        end exactly that session. 0 (the default) takes the lock, or releases the holder of O(run_id).
    type: int
    default: 0
  owner_pid:
    description:
      - A process on the module's host whose end releases the lock (the run's ansible-playbook, when the module
        runs on the control node). 0 watches nothing.
    type: int
    default: 0
  max_seconds:
    description: Longest time the holder keeps the lock, however the run goes.
    type: int
    default: 43200
  session_role:
    description: Switch to this role after connecting.
    type: str
attributes:
  check_mode:
    support: full
  diff_mode:
    description: Returns no diff.
    support: none
author:
  - pg-zero-downtime maintainers (!UNKNOWN)
extends_documentation_fragment:
  - community.postgresql.postgres
'''

EXAMPLES = r'''
- name: Take the migration lock of the database (one run at a time)
  pg_zero_downtime.migrations.postgresql_migration_lock:
    login_db: app
    run_id: t12-20261125T030000Z

- name: Prove before more DDL that this run still holds it
  pg_zero_downtime.migrations.postgresql_migration_lock:
    login_db: app
    run_id: t12-20261125T030000Z
    session_pid: "{{ ansible_facts.pgzd_lock_session_pid }}"

- name: Give it back
  pg_zero_downtime.migrations.postgresql_migration_lock:
    login_db: app
    run_id: t12-20261125T030000Z
    session_pid: "{{ ansible_facts.pgzd_lock_session_pid }}"
    state: released
'''

RETURN = r'''
holder:
  description: The session holding the lock (ours after O(state=acquired)), with pid, application_name, client and since.
  returned: always
  type: dict
holder_pid:
  description: Process id of the holder process on the module's host (O(state=acquired)).
  returned: when the lock was taken
  type: int
ansible_facts:
  description: C(pgzd_lock_session_pid), the backend pid of the session holding this run's lock (0 once released).
  returned: when the lock was taken or released
  type: dict
queries:
  description: The statements executed.
  returned: always
  type: list
  elements: str
'''

import json
import os
import signal
import socket
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.connection import connect_or_fail
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.advisory_locks import (
    DDL_SESSION_LOCK_KEY, MIGRATION_LOCK_KEY, advisory_lock_holders, describe_lock_holder, lock_lost_message,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.async_runs import process_alive
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session import error_text, fetch_dicts
from ansible_collections.community.postgresql.plugins.module_utils.postgres import (
    connect_to_db,
    ensure_required_libs,
    get_conn_params,
    postgres_common_argument_spec,
)

# The two keys of pg_try_advisory_lock(int, int). Distinct from the single-key lock Prisma's migrate commands
# take (72707369), and per database, as advisory locks are.
LOCK_KEY = MIGRATION_LOCK_KEY
APPLICATION_PREFIX = 'pgzd-lock'


class ConnectFailed(Exception):
    pass


class _ChildModule(object):
    """What connect_to_db needs of a module, for the holder process (which has no Ansible output)."""

    def __init__(self, params):
        self.params = params

    def fail_json(self, msg, **kwargs):
        raise ConnectFailed(msg)

    def warn(self, message):
        pass


def application_name(params):
    """Who holds the lock, as the holder session's application_name (at most 63 bytes are kept)."""
    text = '%s run=%s pid=%d host=%s' % (APPLICATION_PREFIX, params['run_id'], params['owner_pid'] or os.getpid(),
                                         socket.gethostname())
    return text.encode('utf-8')[:63].decode('utf-8', 'ignore')


def is_run(holder, run_id):
    return (holder['application_name'] + ' ').startswith('%s run=%s ' % (APPLICATION_PREFIX, run_id))


def own_holders(current, run_id, session_pid):
    """The holders that are this run's session: the one of pid C(session_pid), or with 0 every one of C(run_id)."""
    return [holder for holder in current if is_run(holder, run_id)
            and (not session_pid or holder['pid'] == session_pid)]


def holders(cursor):
    return advisory_lock_holders(cursor, LOCK_KEY)


def ddl_sessions(cursor):
    """Sessions of pg-zero-downtime modules running DDL (they hold the shared DDL-session lock)."""
    return advisory_lock_holders(cursor, DDL_SESSION_LOCK_KEY, since='query_start', with_query=True)


def hold(params, conn_params, report):
    """The holder process: take the lock on a connection of its own, report, keep it until told or orphaned."""
    deadline = time.monotonic() + params['max_seconds']
    try:
        connection, error = connect_to_db(_ChildModule(params), dict(conn_params), autocommit=True, fail_on_conn=False)
        if connection is None:
            raise ConnectFailed(error)
        cursor = connection.cursor()
        cursor.execute("SELECT pg_catalog.set_config('application_name', %(name)s, false)",
                       dict(name=application_name(params)))
        row = fetch_dicts(cursor, 'SELECT pg_catalog.pg_try_advisory_lock(%(k1)s, %(k2)s) AS got, '
                                  'pg_catalog.pg_backend_pid() AS session_pid',
                          dict(k1=LOCK_KEY[0], k2=LOCK_KEY[1]))[0]
        report(dict(got=bool(row['got']), holders=holders(cursor), pid=os.getpid(), session_pid=row['session_pid']))
        got = row['got']
        if not got:
            connection.close()
            return
    except Exception as error:  # anything: the parent must hear about it
        report(dict(got=False, error=error_text(error)))
        return
    last_check = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        if params['owner_pid'] and not process_alive(params['owner_pid']):
            break
        if time.monotonic() - last_check >= 5:
            last_check = time.monotonic()
            try:
                cursor.execute('SELECT 1')
            except Exception:  # terminated by state=released, or the server went away: the lock is gone
                break
    try:
        connection.close()
    except Exception:  # closing a dead connection
        pass


def start_holder(module, conn_params):
    """Fork the detached holder; return what it reported (the parent waits for that, at most 60 s)."""
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(read_end)
        os.setsid()
        if os.fork() != 0:
            os._exit(0)
        # The holder: no Ansible pipes held open, no signals of the run's terminal.
        devnull = os.open(os.devnull, os.O_RDWR)
        for descriptor in (0, 1, 2):
            os.dup2(devnull, descriptor)
        os.closerange(3, write_end)
        os.closerange(write_end + 1, 1024)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

        def report(outcome):
            os.write(write_end, json.dumps(outcome, default=str).encode('utf-8'))
            os.close(write_end)

        try:
            hold(module.params, conn_params, report)
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(child, 0)
    chunks, deadline = [], time.monotonic() + 60
    while time.monotonic() < deadline:
        chunk = os.read(read_end, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(read_end)
    try:
        return json.loads(b''.join(chunks).decode('utf-8'))
    except ValueError:
        return dict(got=False, error='the lock holder process ended without saying why')


def main():
    argument_spec = postgres_common_argument_spec()
    argument_spec.update(
        login_db=dict(type='str', aliases=['db']),
        state=dict(type='str', default='acquired', choices=['acquired', 'released']),
        run_id=dict(type='str', required=True),
        owner_pid=dict(type='int', default=0),
        max_seconds=dict(type='int', default=43200),
        session_pid=dict(type='int', default=0),
        session_role=dict(type='str'),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    if params['max_seconds'] < 1 or params['owner_pid'] < 0 or params['session_pid'] < 0:
        module.fail_json(msg='max_seconds must be at least 1, owner_pid and session_pid at least 0')
    ensure_required_libs(module)
    conn_params = get_conn_params(module, params)
    connection = connect_or_fail(module, conn_params)
    cursor = connection.cursor()
    result = dict(changed=False, holder={}, queries=[])
    current = holders(cursor)
    ours = own_holders(current, params['run_id'], params['session_pid'])
    unlock_hint = ('If that run is dead (its control node crashed), end its session: SELECT pg_terminate_backend(%s); '
                   'the lock goes with it.')

    if params['state'] == 'released':
        if ours:
            result['queries'].append('SELECT pg_catalog.pg_terminate_backend(%s)' % ours[0]['pid'])
            if not module.check_mode:
                cursor.execute('SELECT pg_catalog.pg_terminate_backend(%(pid)s)', dict(pid=ours[0]['pid']))
                for dummy_ in range(50):
                    if not [h for h in holders(cursor) if h['pid'] == ours[0]['pid']]:
                        break
                    time.sleep(0.1)
            result.update(changed=True, holder=ours[0])
        connection.close()
        module.exit_json(ansible_facts=dict(pgzd_lock_session_pid=0), **result)

    if params['session_pid']:
        # Not a request for the lock: the proof that this run's session still holds it, before more DDL.
        connection.close()
        if ours:
            result['holder'] = ours[0]
            module.exit_json(**result)
        message = lock_lost_message(params['session_pid'], current)
        module.fail_json(msg='Database %s: %s%s' % (params['login_db'], message[0].upper(), message[1:]), **result)
    if current:
        # Whatever its run id: the lock is its session's, and this run has none yet.
        connection.close()
        message = ('Another pg-zero-downtime run holds the migration lock of database %s: %s. Two runs must not '
                   'interleave their DDL: wait for it to finish, then rerun. ' + unlock_hint) % (
            params['login_db'], describe_lock_holder(current[0]), current[0]['pid'])
        result['holder'] = current[0]
        if module.check_mode:
            module.warn(message)
            module.exit_json(**result)
        module.fail_json(msg=message, **result)
    # A run killed mid-build leaves its background module running: its DDL must end before another run starts.
    running = ddl_sessions(cursor)
    connection.close()
    if running:
        message = ('DDL of an earlier pg-zero-downtime run is still running in database %s: session pid %s (%s; since '
                   '%s): %s. Its run has ended (killed, or its control node lost) but the statement goes on. Wait '
                   'for it to finish, then rerun; or end it with SELECT pg_cancel_backend(%s) (a concurrent build '
                   'then leaves an INVALID index, which the rerun rebuilds).') % (
            params['login_db'], running[0]['pid'], running[0]['application_name'], running[0]['since'],
            ' '.join((running[0]['query'] or '').split())[:200], running[0]['pid'])
        if module.check_mode:
            module.warn(message)
            module.exit_json(**result)
        module.fail_json(msg=message, **result)
    if module.check_mode:
        module.exit_json(**result)

    outcome = start_holder(module, conn_params)
    result['queries'].append('SELECT pg_catalog.pg_try_advisory_lock(%d, %d)' % LOCK_KEY)
    if outcome.get('error'):
        module.fail_json(msg='Could not take the migration lock of database %s: %s' % (params['login_db'],
                                                                                       outcome['error']), **result)
    if not outcome.get('got'):
        holder = (outcome.get('holders') or [{}])[0]
        module.fail_json(msg=('Another pg-zero-downtime run took the migration lock of database %s first: %s. '
                              + unlock_hint) % (params['login_db'], describe_lock_holder(holder) if holder else 'unknown',
                                                holder.get('pid', '<pid>')), **result)
    mine = [holder for holder in outcome.get('holders') or [] if holder['pid'] == outcome.get('session_pid')]
    result.update(changed=True, holder=mine[0] if mine else {}, holder_pid=outcome.get('pid'))
    module.exit_json(ansible_facts=dict(pgzd_lock_session_pid=outcome.get('session_pid') or 0), **result)


if __name__ == '__main__':
    main()
