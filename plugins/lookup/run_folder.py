# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: run_folder
short_description: Where a run writes on the controller, worked out in one place
description:
  - With no term, or V(run), the run's own folder C(<artifacts>/runs/<plan>-<run id>), the C(dir) of the run context
    C(pgzd_run) that the preflight sets, else made from the plan's name (V(adhoc) without a plan) and C(pgzd_run_id)
    (V(manual) without one).
  - V(artifacts), the artifacts directory, C(pgzd_artifacts_dir) (C(artifacts_dir), its old name, until 0.19.0, with a
    deprecation warning) or C(artifacts) under the working directory of ansible-playbook (the lookup working_dir).
    V(backups), its C(backups) folder.
  - Every role takes its folders from here, so that the expression lives in one place.
version_added: '0.17.0'
options:
  _terms:
    description: Which folder, V(run) (the default), V(artifacts) or V(backups).
    type: list
    elements: str
'''

EXAMPLES = r'''
- name: Show where this run's report goes
  ansible.builtin.debug:
    msg: "{{ lookup('pg_zero_downtime.migrations.run_folder') }}/report.html"
'''

RETURN = r'''
_raw:
  description: The absolute path of the folder, as the only element of a list.
  type: list
  elements: path
'''

import os

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase
from ansible.utils.display import Display

from ansible_collections.pg_zero_downtime.migrations.plugins.plugin_utils.artifacts_dir import (
    artifacts_dir_path, run_folder_path)
from ansible_collections.pg_zero_downtime.migrations.plugins.plugin_utils.renamed_variables import (
    KNOBS_REMOVED_IN, knob_warnings)


class LookupModule(LookupBase):

    def _value(self, variables, name):
        if name not in variables:
            return None
        return self._templar.template(variables[name])

    def run(self, terms, variables=None, **kwargs):
        variables = variables or {}
        which = terms[0] if terms else 'run'
        if which not in ('run', 'artifacts', 'backups'):
            raise AnsibleLookupError('run_folder takes run, artifacts or backups, not %r' % (which,))
        run = self._value(variables, 'pgzd_run') or {}
        artifacts = (run.get('artifacts_dir') or self._value(variables, 'pgzd_artifacts_dir')
                     or self._value(variables, 'artifacts_dir') or artifacts_dir_path())
        # backup.yml and restore_drill.yml read no other knob: the old name is told here (Ansible shows it once).
        for message in knob_warnings([name for name in ('artifacts_dir',) if name in variables]):
            Display().deprecated(message, version=KNOBS_REMOVED_IN, collection_name='pg_zero_downtime.migrations')
        if which == 'artifacts':
            return [artifacts]
        if which == 'backups':
            return [os.path.join(artifacts, 'backups')]
        if run.get('dir'):
            return [run['dir']]
        plan = self._value(variables, 'migration_plan_data') or {}
        return [run_folder_path(artifacts, plan.get('name') or 'adhoc', self._value(variables, 'pgzd_run_id') or 'manual')]
