# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The base of the action plugins that do all their work in the controller process: no connection to the host, no
module, no files sent. Each says only what it does with the task's arguments (run_on_controller)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.plugins.action import ActionBase


class ControllerAction(ActionBase):

    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super(ControllerAction, self).run(tmp, task_vars)
        return self.run_on_controller(result, self._task.args, task_vars)

    def run_on_controller(self, result, args, task_vars):
        """Fill and return C(result) (ActionBase's, with the task's common keys) from C(args) and C(task_vars)."""
        raise NotImplementedError()
