# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: migration_plan
short_description: Load a pg-zero-downtime migration plan file on the controller, with its format checked
description:
  - Reads the plan's YAML file (absolute, or relative to the directory ansible-playbook runs in), checks its format as
    the preflight does, and returns a mapping with C(plan), the loaded plan with its defaults (or null), and C(error),
    the message saying what is wrong and what to do (or null), and C(run), the run context C(pgzd_run) (id, name,
    plan, artifacts_dir, dir; no lock, owner or work, which only the preflight knows) or null. It never fails itself,
    so the task that uses it can fail with the message as it is.
  - The Prisma migration file of the plan is resolved against the plan's directory; its content is not read.
version_added: '0.15.0'
options:
  _terms:
    description: The plan file.
    required: true
  on_duplicates:
    description: Sets C(on_duplicates) of every constraint of the plan.
    type: str
  only_tables:
    description: Tables of the plan to limit the index work to (a list, or a comma-separated string); checked here.
    type: raw
  run_id:
    description:
      - A run id given from outside (C(-e pgzd_run_id)); it names the run's folder under O(artifacts_dir), so anything
        but 1 to 63 letters, digits, C(_), C(.) and C(-) is refused, as by the preflight.
      - Without it the run gets a new id, its UTC start time and a random suffix, after O(run_id_prefix).
    type: str
  run_id_prefix:
    description: Put before a new run id (for example V(adopted-)).
    type: str
    default: ''
  artifacts_dir:
    description:
      - Where the run writes on the controller; refused, as by the preflight, unless it is a directory of the run's
        own (new, empty, or holding only what pg-zero-downtime writes there).
    type: str
'''

EXAMPLES = r'''
- name: Load the plan
  ansible.builtin.set_fact:
    loaded: "{{ lookup('pg_zero_downtime.migrations.migration_plan', 'plans/shop.yml') }}"

- name: Stop on a plan that cannot be loaded
  ansible.builtin.assert:
    that: loaded.error is none
    fail_msg: "{{ loaded.error }}"
'''

RETURN = r'''
_raw:
  description: One mapping with C(plan), C(error) and C(run).
  type: list
  elements: dict
'''

import os

from ansible.plugins.lookup import LookupBase
from ansible.utils.display import Display

from ansible_collections.pg_zero_downtime.migrations.plugins.plugin_utils.artifacts_dir import (
    artifacts_dir_error, artifacts_dir_path)
from ansible_collections.pg_zero_downtime.migrations.plugins.plugin_utils.migration_plan import (
    load_plan, new_run_id, only_tables_list, run_id_error,
)
from ansible_collections.pg_zero_downtime.migrations.plugins.plugin_utils.renamed_variables import (
    KNOBS_REMOVED_IN, knob_warnings)
from ansible_collections.pg_zero_downtime.migrations.plugins.plugin_utils.run_context import run_context


class LookupModule(LookupBase):

    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        # The playbooks without a preflight (adopt.yml, validate.yml) load the plan here: the knobs they were given
        # under their old names are told here (Ansible shows each warning once).
        for message in knob_warnings(variables or {}):
            Display().deprecated(message, version=KNOBS_REMOVED_IN, collection_name='pg_zero_downtime.migrations')
        # Where the run writes, as the preflight's action plugin checks it for the playbooks that change the database.
        run_id, artifacts_dir = self.get_option('run_id'), self.get_option('artifacts_dir')
        refused = [error for error in (run_id_error(run_id) if run_id is not None else None,
                                       artifacts_dir_error(artifacts_dir) if artifacts_dir is not None else None)
                   if error]
        loaded = []
        only_tables = only_tables_list(self.get_option('only_tables'))
        for term in terms or ['']:
            plan, error = (None, '\n'.join(refused)) if refused else load_plan(
                term, os.getcwd(), on_duplicates=self.get_option('on_duplicates'), only_tables=only_tables,
                read_prisma_sql=False)
            run = None
            if plan is not None:
                run = run_context(plan, run_id or (self.get_option('run_id_prefix') or '') + new_run_id(),
                                  artifacts_dir_path(artifacts_dir), only_tables=only_tables)
            loaded.append(dict(plan=plan, error=error, run=run))
        return loaded
