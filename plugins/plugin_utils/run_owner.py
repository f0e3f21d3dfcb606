# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The process of the run on the controller: ansible-playbook (or the one ansible-runner starts for AWX).

The migration lock's holder and the background index runs watch it: once it is gone (stopped, killed, a job
cancelled in AWX), the lock is given back and no further DDL starts. Ansible runs each task in a worker process
forked from ansible-playbook, so from a worker it is the worker's parent; templated in ansible-playbook itself, it
is that process.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import multiprocessing
import os


def controller_pid():
    parent = multiprocessing.parent_process()
    return parent.pid if parent is not None else os.getpid()
