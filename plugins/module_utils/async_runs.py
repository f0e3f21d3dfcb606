# -*- coding: utf-8 -*-
# Background (async) module runs: reading their results files, whether their owner still runs, and waiting for
# the runs a table's run is queued behind.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import json
import os
import time


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


def wait_for_runs(paths, owner_pid=0, poll=0.1, sleep=time.sleep):
    """Wait until the background runs of C(paths) have ended.

    Returns (None, None) when all succeeded, else why the caller must not start and the first failure it stands
    for: a run failed (the first line of its failure, stated once however long the queue), or the process
    C(owner_pid) is gone (the run's ansible-playbook was stopped).
    """
    while True:
        outcomes = [read_async_result(path) for path in paths]
        # Checked first, so a run whose playbook was stopped never starts, even as the run before it ends.
        if owner_pid and not process_alive(owner_pid):
            gone = ('the run that started it (ansible-playbook, process %d) has ended, so it does not go on alone; '
                    'rerun the playbook' % owner_pid)
            return gone, gone
        if all(outcome is not None for outcome in outcomes):
            break
        sleep(poll)
    failed = [outcome for outcome in outcomes if outcome.get('failed')]
    if failed:
        root = first_failure(failed[0])
        return 'a run before it failed (%s); fix that and rerun' % root, root
    return None, None


def first_failure(outcome):
    """The first line of the failure a failed run stands for: its own, or for a run that did not start because of
    an earlier failure, that earlier one (so a queue of tables states it once, never nested)."""
    return outcome.get('first_failure') or (outcome.get('msg') or 'no message').splitlines()[0]
