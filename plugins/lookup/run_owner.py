# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: run_owner
short_description: The process id of the run's ansible-playbook on the controller
description:
  - Returns the process id of the ansible-playbook running the play (or the one ansible-runner starts for AWX). The
    migration lock's holder and the background index runs watch it when the modules run on the controller (a local
    connection); once it is gone, the lock is given back and no further DDL starts.
version_added: '0.15.0'
options: {}
'''

EXAMPLES = r'''
- name: Take the migration lock, given back when this ansible-playbook ends
  pg_zero_downtime.migrations.postgresql_migration_lock:
    run_id: shop-manual
    owner_pid: "{{ lookup('pg_zero_downtime.migrations.run_owner') }}"
'''

RETURN = r'''
_raw:
  description: The process id, as the only element of a list.
  type: list
  elements: int
'''

from ansible.plugins.lookup import LookupBase

from ansible_collections.pg_zero_downtime.migrations.plugins.plugin_utils.run_owner import controller_pid


class LookupModule(LookupBase):

    def run(self, terms, variables=None, **kwargs):
        return [controller_pid()]
