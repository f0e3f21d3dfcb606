# Benchmark-only callback: the wall time of every task of a playbook run, written as JSON to the file named by
# the environment variable BENCH_TASK_TIMES (nothing is written when it is unset). bench/zero_downtime.py enables
# it (ANSIBLE_CALLBACK_PLUGINS=bench/callback_plugins, ANSIBLE_CALLBACKS_ENABLED=bench_task_timer) to show
# where the time of a migrate.yml run goes; the playbooks and roles know nothing of it.

import json
import os
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = '''
    name: bench_task_timer
    type: aggregate
    short_description: wall time of each task, as JSON, for bench/zero_downtime.py
    description:
      - Writes [{"task", "role", "start", "seconds"}] to the file named by BENCH_TASK_TIMES.
    requirements:
      - enabled in ANSIBLE_CALLBACKS_ENABLED
'''


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'aggregate'
    CALLBACK_NAME = 'bench_task_timer'
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self._started = time.time()
        self._current = None
        self._tasks = []

    def _close(self):
        if self._current is not None:
            self._current['seconds'] = round(time.time() - self._current.pop('_t'), 3)
            self._tasks.append(self._current)
            self._current = None

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._close()
        role = task._role.get_name() if task._role else None
        now = time.time()
        self._current = dict(task=task.get_name(), role=role, start=round(now - self._started, 3), _t=now)

    def v2_playbook_on_handler_task_start(self, task):
        self.v2_playbook_on_task_start(task, False)

    def v2_playbook_on_stats(self, stats):
        self._close()
        path = os.environ.get('BENCH_TASK_TIMES')
        if path:
            with open(path, 'w') as out:
                json.dump(dict(total=round(time.time() - self._started, 3), tasks=self._tasks), out, indent=1)
