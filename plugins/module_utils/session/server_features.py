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
