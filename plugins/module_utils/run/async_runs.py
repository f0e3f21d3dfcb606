# -*- coding: utf-8 -*-
# Background (async) module runs: reading their results files, and whether the playbook that started them
# still runs.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import json
import os


def read_async_result(path):
    """The result of a background (async) module run once it has ended, else None.

    C(path) is async_wrapper's results file: it holds {"started": 1, "finished": 0} while the run goes on and
    the module's result when it ends (or async_wrapper's own failure, for a timeout).
    """
    try:
        with open(os.path.expanduser(path)) as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None  # not written yet, or being written
    if data.get('started') and not data.get('finished', True):
        return None
    return data


def owner_gone(owner_pid):
    """Why a statement must not start because the run's ansible-playbook (C(owner_pid), 0 = none) has ended, or None.

    A module run outlives its playbook when that is stopped (kill -9, a job cancelled in AWX): a background run is
    detached, a foreground one is a process of its own. Checked before every statement, so that such a run does not go
    on alone; the statement in flight ends on its own.
    """
    if not owner_pid or process_alive(owner_pid):
        return None
    return ('the run that started it (ansible-playbook, process %d) has ended, so it does not go on alone; rerun the '
            'playbook' % owner_pid)


def process_alive(pid):
    """Whether process C(pid) still runs: a zombie (killed, not yet reaped by its parent) has ended."""
    try:
        os.kill(pid, 0)
    except OSError as error:
        if error.errno == errno.ESRCH:
            return False
    try:
        with open('/proc/%d/stat' % pid) as stat:
            return stat.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except (OSError, IndexError):
        return True  # no /proc here: it exists (or is another user's), so count it as running
