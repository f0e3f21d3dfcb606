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
