# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# The option every module that builds on a primary shares: how far behind a replica may be when a build starts.

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    DOCUMENTATION = r'''
options:
  replication_lag:
    description:
      - Before each table's builds (and each unique index), when migrating on a primary that has replicas, wait while
        one of them lags beyond these thresholds, as M(pg_zero_downtime.migrations.postgresql_replication_info)
        measures it, and fail that table after O(replication_lag.timeout) seconds, naming each replica still behind.
        A concurrent build writes its whole index to WAL; piling that onto a replica already behind makes its reads
        staler still. Unset, no lag is read.
    type: dict
    suboptions:
      enabled:
        description: V(false) reads no lag (C(-e pgzd_replication_lag_enabled=false)).
        type: bool
        default: true
      max_bytes:
        description: WAL bytes a replica may have left to replay (64 MiB).
        type: int
        default: 67108864
      max_seconds:
        description: Seconds of replay lag a replica may have.
        type: float
        default: 30.0
      timeout:
        description: Seconds to wait for the replicas to come within the thresholds.
        type: float
        default: 600.0
      poll_interval:
        description: Seconds between two readings of the replicas.
        type: float
        default: 5.0
'''
