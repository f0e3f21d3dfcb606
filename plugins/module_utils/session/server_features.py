# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the server's major version allows, decided in one place from server_version_num: which PostgreSQL versions
the tool supports, and (issue 24) the paths newer servers do better. Plain functions over a number, unit-tested."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

# The oldest supported major, and the end of life of the ones before it (postgresql.org/support/versioning).
OLDEST_SUPPORTED = 140000
END_OF_LIFE = {13: 'November 2025', 12: 'November 2024', 11: 'November 2023', 10: 'November 2022',
               9: 'November 2021 or earlier'}


def major(version_num):
    """The major version of a server_version_num (150018 -> 15, 90624 -> 9)."""
    return int(version_num) // 10000


def version_text(version_num):
    """A server_version_num as messages say it: 170010 -> '17.10' (major.minor, PostgreSQL 10 and later)."""
    return '%d.%d' % (major(version_num), int(version_num) % 100)


def unsupported_message(version_num, server_version=None):
    """Why a server of C(version_num) is refused before anything is proven or changed, or None when it is supported.
    C(server_version) is its server_version text, for the message."""
    if int(version_num) >= OLDEST_SUPPORTED:
        return None
    found = major(version_num)
    return ('The server is PostgreSQL %s, which this tool does not support: PostgreSQL %d reached its end of life in '
            '%s, and the tool needs 14 or later (index builds that a dead client ends, client_connection_check_interval; '
            'the catalogs its proofs read). Upgrade the server; nothing was changed.' % (
                server_version or found, found, END_OF_LIFE.get(found, 'the past')))


# What newer servers do better, by the first server_version_num that has it. The kinds ask has(); nothing else in
# the collection compares server_version_num with a number.
FEATURES = {
    # ALTER TABLE ... ADD CONSTRAINT <name> NOT NULL <column> NOT VALID, then VALIDATE CONSTRAINT (contype 'n').
    'not_null_not_valid': 180000,
    # ADD FOREIGN KEY ... NOT VALID on a partitioned table (before 18 it must be added valid, scanning under lock).
    'foreign_key_not_valid_on_partitioned': 180000,
    # The transaction_timeout setting, which a server or role default would let end a long build or VALIDATE.
    'transaction_timeout': 170000,
    # pg_stat_user_indexes.last_idx_scan: when an index was last used.
    'last_idx_scan': 160000,
    # EXPLAIN ANALYZE shows buffers without asking for them.
    'explain_buffers_by_default': 180000,
    # pg_stat_force_next_flush(): a session's statistics reported at once (before, by the collector within 0.5 s).
    'stat_force_next_flush': 150000,
    # pg_get_wal_replay_pause_state() on a standby (before, only whether a pause was requested).
    'wal_replay_pause_state': 140000,
}


def has(version_num, feature):
    """Whether a server of C(version_num) (server_version_num) has C(feature), a key of FEATURES."""
    return int(version_num) >= FEATURES[feature]


def first_major_with(feature):
    """The first major that has C(feature), for messages ('needs PostgreSQL 18')."""
    return major(FEATURES[feature])
