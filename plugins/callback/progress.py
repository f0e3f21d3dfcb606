# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: progress
type: stdout
short_description: Ansible's default output, plus the progress of index builds while they run
description:
  - The default stdout callback, except while a task is retried with C(until) and its result carries
    C(progress_lines) (postgresql_online_index_progress). Each retry then prints those lines (index, phase,
    percent, counters, seconds) instead of "FAILED - RETRYING".
  - A failed task's message is printed once, in its C(fatal) result. ansible-core 2.19 also prints it before, as an
    C([ERROR]) summary of the same text, and a module may return it again in another field (the backup's C(reason));
    both are left out of the output (not of the registered result) unless run with C(-vvv).
  - Only what happened is shown. A task skipped on every host, and a role's argument check that passed, print no
    banner and no line (as with C(display_skipped_hosts=false)); C(-v) shows them.
extends_documentation_fragment:
  - default_callback
  - result_format_callback
requirements:
  - set as stdout callback in ansible.cfg (stdout_callback = pg_zero_downtime.migrations.progress)
'''

from ansible.plugins.callback.default import CallbackModule as DefaultCallbackModule

# The check of a role's arguments: a line of its own for every role, worth showing only when it fails.
ARGUMENT_CHECKS = ('validate_argument_spec', 'ansible.builtin.validate_argument_spec', 'ansible.legacy.validate_argument_spec')


class CallbackModule(DefaultCallbackModule):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'stdout'
    CALLBACK_NAME = 'pg_zero_downtime.migrations.progress'

    def get_option(self, k):
        if k == 'display_skipped_hosts' and self._display.verbosity < 1:
            return False
        return super(CallbackModule, self).get_option(k)

    def v2_runner_on_ok(self, result):
        if (self._display.verbosity < 1 and result._task.action in ARGUMENT_CHECKS
                and not result._result.get('changed')):
            return
        return super(CallbackModule, self).v2_runner_on_ok(result)

    def v2_runner_retry(self, result):
        lines = result._result.get('progress_lines')
        if lines is None:
            return super(CallbackModule, self).v2_runner_retry(result)
        if self._last_task_banner != result._task._uuid:
            self._print_task_banner(result._task)
        host = result._host.get_name()
        for line in lines:
            self._display.display('  [%s] progress: %s' % (host, line))

    def v2_runner_on_failed(self, result, ignore_errors=False):
        if self._display.verbosity < 3:
            print_message_once(result._result)
        return super(CallbackModule, self).v2_runner_on_failed(result, ignore_errors=ignore_errors)


def print_message_once(fields):
    """The failed result C(fields) as displayed (the callback's copy): its msg, without the [ERROR] summary that says
    it again (C(exception)) nor another text field that only repeats it."""
    message = fields.get('msg')
    if not isinstance(message, str) or not message.strip():
        return
    fields.pop('exception', None)
    core = message.strip().rstrip('.')
    for key in [key for key, value in fields.items() if key != 'msg' and isinstance(value, str) and core in value]:
        del fields[key]
