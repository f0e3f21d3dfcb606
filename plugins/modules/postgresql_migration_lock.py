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
    O(lock_session_pid), O(state=acquired) takes nothing but proves the session still holds the lock, and fails
    naming what happened when it does not (the session was terminated, or the server restarted); the DDL
    modules make the same check themselves before each table's DDL and each constraint step.
  - With O(state=released), ends the holder session O(lock_session_pid) (or, without it, the holder of O(run_id)),
    never another run's. A lock that is already free is reported unchanged.
  - In check mode nothing is taken or released; a lock held by another run is reported as a warning.
version_added: '0.5.0'
options:
  login_db:
    description: Name of the database to connect to; the lock is per database.
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
  lock_session_pid:
    description:
      - Backend pid of the session that holds this run's lock, as O(state=acquired) returned it (the name every module
        of the collection gives it; O(session_pid) is its old name, deprecated, removed in 0.19.0). With
        O(state=acquired), check that it still holds the lock instead of taking it; with O(state=released),
        end exactly that session. 0 (the default) takes the lock, or releases the holder of O(run_id).
    type: int
    default: 0
    aliases: [session_pid]
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
extends_documentation_fragment:
  - pg_zero_downtime.migrations.common
  - pg_zero_downtime.migrations.connection
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
    lock_session_pid: "{{ ansible_facts.pgzd_lock_session_pid }}"

- name: Give it back
  pg_zero_downtime.migrations.postgresql_migration_lock:
    login_db: app
    run_id: t12-20261125T030000Z
    lock_session_pid: "{{ ansible_facts.pgzd_lock_session_pid }}"
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

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.connection import (
    conn_params_of, connect_or_fail, connection_argument_spec,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.session.advisory_locks import (
    MIGRATION_LOCK_KEY, lock_lost_message,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.run.migration_lock import (
    LockRefused, holders, own_holders, refusal, release, take,
)


def main():
    argument_spec = connection_argument_spec(
        state=dict(type='str', default='acquired', choices=['acquired', 'released']),
        run_id=dict(type='str', required=True),
        owner_pid=dict(type='int', default=0),
        max_seconds=dict(type='int', default=43200),
        lock_session_pid=dict(type='int', default=0, aliases=['session_pid'],
                              deprecated_aliases=[dict(name='session_pid', version='0.19.0',
                                                       collection_name='pg_zero_downtime.migrations')]),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    if params['max_seconds'] < 1 or params['owner_pid'] < 0 or params['lock_session_pid'] < 0:
        module.fail_json(msg='max_seconds must be at least 1, owner_pid and lock_session_pid at least 0')
    conn_params = conn_params_of(module)
    connection = connect_or_fail(module, conn_params)
    cursor = connection.cursor()
    result = dict(changed=False, holder={}, queries=[])
    current = holders(cursor)
    ours = own_holders(current, params['run_id'], params['lock_session_pid'])

    if params['state'] == 'released':
        if ours:
            result['queries'].append('SELECT pg_catalog.pg_terminate_backend(%s)' % ours[0]['pid'])
            if not module.check_mode:
                release(cursor, ours[0]['pid'])
            result.update(changed=True, holder=ours[0])
        connection.close()
        module.exit_json(ansible_facts=dict(pgzd_lock_session_pid=0), **result)

    if params['lock_session_pid']:
        # Not a request for the lock: the proof that this run's session still holds it, before more DDL.
        connection.close()
        if ours:
            result['holder'] = ours[0]
            module.exit_json(**result)
        message = lock_lost_message(params['lock_session_pid'], current)
        module.fail_json(msg='Database %s: %s%s' % (params['login_db'], message[0].upper(), message[1:]), **result)
    refused = refusal(cursor, params['login_db'], current)
    connection.close()
    if refused:
        result['holder'] = current[0] if current else {}
        if module.check_mode:
            module.warn(refused)
            module.exit_json(**result)
        module.fail_json(msg=refused, **result)
    if module.check_mode:
        module.exit_json(**result)

    result['queries'].append('SELECT pg_catalog.pg_try_advisory_lock(%d, %d)' % MIGRATION_LOCK_KEY)
    try:
        session_pid, holder_pid, holder = take(params, conn_params, params['login_db'], params['run_id'],
                                               params['owner_pid'], params['max_seconds'])
    except LockRefused as error:
        module.fail_json(msg=str(error), **result)
    result.update(changed=True, holder=holder, holder_pid=holder_pid)
    module.exit_json(ansible_facts=dict(pgzd_lock_session_pid=session_pid), **result)


if __name__ == '__main__':
    main()
