# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# The options every module that builds or drops an index concurrently shares: how long its waits are watched.

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    DOCUMENTATION = r'''
options:
  build_wait_timeout:
    description:
      - Seconds a concurrent build or drop may spend waiting in all (for its table lock, for writers, for older
        snapshots) before it is ended cleanly (C(pg_cancel_backend) of its own session). Its INVALID leftover is
        dropped, and the task fails naming the sessions it waited for, without a retry. V(0), the default, waits
        as long as it takes.
    type: float
    default: 0
  build_wait_warn:
    description:
      - After a build waited this many seconds, the task warns, naming the sessions it waits for (the progress
        lines of M(pg_zero_downtime.migrations.postgresql_online_index_progress) name them while it waits).
    type: float
    default: 60
'''
