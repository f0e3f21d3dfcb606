# -*- coding: utf-8 -*-
# Test-only stdout callback: ansible-core 2.19 no longer ships the ``json`` callback (it lives in
# ansible.posix, which is not installed), and ``tree`` drops the ``diff`` key. This one prints every
# task result, diff included, as one JSON document shaped like ansible.posix.json's output:
#   {"plays": [{"tasks": [{"task": {"name": ...}, "hosts": {"localhost": {...result...}}}]}]}
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: pgzd_test_json
type: stdout
short_description: JSON results for the pg-zero-downtime test suite
description:
  - Prints all task results (with diff) as one JSON document at the end of the run.
'''

import json
import sys

from ansible.plugins.callback import CallbackBase


def _plain(value):
    """Ansible 2.19 results may hold tagged str/dict subclasses; make them plain JSON values."""
    if isinstance(value, dict):
        return dict((str(k), _plain(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return str(value)


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'stdout'
    CALLBACK_NAME = 'pgzd_test_json'

    def __init__(self, *args, **kwargs):
        super(CallbackModule, self).__init__(*args, **kwargs)
        self.plays = []

    def _tasks(self):
        if not self.plays:
            self.plays.append(dict(play=dict(name=''), tasks=[]))
        return self.plays[-1]['tasks']

    def v2_playbook_on_play_start(self, play):
        self.plays.append(dict(play=dict(name=str(play.get_name())), tasks=[]))

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._tasks().append(dict(task=dict(name=str(task.get_name())), hosts={}))

    def _record(self, result, **extra):
        tasks = self._tasks()
        if not tasks:
            tasks.append(dict(task=dict(name=''), hosts={}))
        data = getattr(result, 'result', None)
        if data is None:
            data = result._result
        data = dict(data)
        data.update(extra)
        host = getattr(result, 'host', None) or result._host
        tasks[-1]['hosts'][host.get_name()] = _plain(data)

    def v2_runner_on_ok(self, result, **kwargs):
        self._record(result)

    def v2_runner_on_failed(self, result, ignore_errors=False, **kwargs):
        self._record(result, failed=True)

    def v2_runner_on_unreachable(self, result, **kwargs):
        self._record(result, unreachable=True)

    def v2_runner_on_skipped(self, result, **kwargs):
        self._record(result, skipped=True)

    def v2_playbook_on_stats(self, stats):
        sys.stdout.write(json.dumps(dict(plays=self.plays), sort_keys=True) + '\n')
        sys.stdout.flush()
