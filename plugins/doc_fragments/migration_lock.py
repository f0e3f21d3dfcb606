# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# The option every module that changes the database shares: the proof that the run still holds its lock.

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    DOCUMENTATION = r'''
options:
  lock_session_pid:
    description:
      - Backend pid of the session that holds the run's migration lock (M(pg_zero_downtime.migrations.postgresql_migration_lock) sets the fact
        C(pgzd_lock_session_pid) to it). Before every statement that changes the database, the module proves
        that session still holds the lock, and stops naming what happened when it does not, so a run whose lock
        was lost cannot go on unlocked. 0 (the default) checks nothing.
    type: int
    default: 0
'''
