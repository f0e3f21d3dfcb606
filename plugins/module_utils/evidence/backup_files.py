# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a pg_dump backup on the control node is called, which backups of a database to delete, and how a backup
is measured (size, sha256, entries) and summed up. Pure functions over names and files; postgresql_backup does the I/O.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import os
import re

TIME_FORMAT = '%Y%m%dT%H%M%SZ'
# A full dump's file (custom) or directory (directory), and a schema backup's directory (schema_backup.py).
EXTENSIONS = {'custom': 'pgc', 'directory': 'dir', 'schema': 'schema'}


# -- naming and retention ------------------------------------------------------------------------------------

def backup_name(database, backup_format, moment):
    """<database>-<UTC time>.pgc (custom format), .dir (directory format) or .schema (a schema backup); C(moment) is a
    UTC datetime."""
    return '%s-%s.%s' % (database, moment.strftime(TIME_FORMAT), EXTENSIONS[backup_format])


def backups_of(names, database):
    """The names among C(names) that are backups of C(database), oldest first.

    Only <database>-<UTC time>.pgc|.dir|.schema counts: the backups of a database named "shop-eu" are not those of
    "shop".
    """
    pattern = re.compile(r'^%s-\d{8}T\d{6}Z\.(?:pgc|dir|schema)$' % re.escape(database))
    return sorted(name for name in names if pattern.match(name))


def newest_backup(names, database):
    """The newest backup of C(database) among C(names), or None."""
    found = backups_of(names, database)
    return found[-1] if found else None


def backups_beyond(names, database, keep):
    """The backups of C(database) to delete so that only the newest C(keep) remain, oldest first."""
    found = backups_of(names, database)
    return found[:max(len(found) - keep, 0)]


def toc_entries(listing):
    """The entries of a C(pg_restore --list) listing (its lines that are neither comments nor blank)."""
    return len([line for line in listing.splitlines() if line.strip() and not line.startswith(';')])


# -- measuring -----------------------------------------------------------------------------------------------

def size_bytes(path):
    """A backup file's size, or the sum of the files of a directory-format backup."""
    if not os.path.isdir(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(root, name)) for root, dummy_dirs, names in os.walk(path)
               for name in names)


def sha256_target(path, backup_format):
    """What the recorded sha256 is of: the file, or the table of contents of a directory-format backup."""
    if backup_format == 'directory':
        return os.path.join(path, 'toc.dat'), 'toc.dat'
    return path, 'the file'


def sha256_of_file(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        for block in iter(lambda: handle.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def backup_summary(database, backup):
    """The line that shows a verified backup."""
    return ('Backup of %s: %s (%s format, %.1f MiB, %ss, %d entries, sha256 %s), verified with pg_restore --list.'
            % (database, backup['path'], backup['format'], backup['size_bytes'] / 1048576.0, backup['seconds'],
               backup['toc_entries'], backup['sha256']))


def deleted_summary(deleted, keep, check_mode=False):
    if not deleted:
        return ''
    return ' %s %d older backup(s), keeping the newest %d: %s.' % (
        'Would delete' if check_mode else 'Deleted', len(deleted), keep,
        ', '.join(os.path.basename(path) for path in deleted))
