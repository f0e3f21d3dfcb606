# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# The retry options every module that takes locks shares: how a lock timeout or a deadlock is retried.

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    DOCUMENTATION = r'''
options:
  lock_retries:
    description:
      - How many times a step that hit its C(lock_timeout), or a deadlock, is retried (the whole transaction, with
        exponential backoff and jitter) before the task fails. A concurrent build is never retried for waiting.
    type: int
    default: 5
  lock_retry_delay:
    description:
      - Base delay in seconds before the first retry; it doubles on every retry (at most 60 s), with jitter in
        [50%, 100%], so runs that hit the same lock do not retry in step.
    type: float
    default: 1.0
'''
