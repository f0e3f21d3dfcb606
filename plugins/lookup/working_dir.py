# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: working_dir
short_description: The directory ansible-playbook runs in, on the controller
description:
  - Returns the working directory of the controller process (C(ansible-playbook), or the job ansible-runner
    starts in its project directory). Relative plan paths and the default artifacts directory are taken from
    it, so an installed collection writes nothing inside itself.
  - Unlike the C(PWD) environment variable, it is right when the process was started by another program, and
    unlike the C(pipe) lookup it is not the playbook's directory.
version_added: '0.14.0'
options: {}
'''

EXAMPLES = r'''
- name: Show where the run's artifacts go by default
  ansible.builtin.debug:
    msg: "{{ lookup('pg_zero_downtime.migrations.working_dir') }}/artifacts"
'''

RETURN = r'''
_raw:
  description: The absolute path of the working directory, as the only element of a list.
  type: list
  elements: path
'''

import os

from ansible.plugins.lookup import LookupBase


class LookupModule(LookupBase):

    def run(self, terms, variables=None, **kwargs):
        return [os.getcwd()]
