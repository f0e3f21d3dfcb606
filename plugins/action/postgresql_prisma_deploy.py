# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The controller side of postgresql_prisma_deploy: reads the prisma/migrations folder where it is, on the controller
(plugin_utils/prisma_folder), refuses a folder Prisma would refuse before anything connects, and hands the module the
migrations it holds."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible.plugins.action import ActionBase

from ansible_collections.pg_zero_downtime.migrations.plugins.plugin_utils.prisma_folder import migrations_args

MODULE = 'pg_zero_downtime.migrations.postgresql_prisma_deploy'


class ActionModule(ActionBase):

    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super(ActionModule, self).run(tmp, task_vars)
        args, problems = migrations_args(dict(self._task.args), os.getcwd())
        if problems:
            result.update(failed=True, changed=False, msg='\n'.join(problems))
            return result
        result.update(self._execute_module(module_name=MODULE, module_args=args, task_vars=task_vars))
        return result
