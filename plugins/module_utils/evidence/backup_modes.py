# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which protection a run takes before its DDL (the backup mode), and why: a full pg_dump of a small database, the
schema and the rows the run may change on a large one, proof that point-in-time recovery covers this moment, or none.
Also what a full dump would cost on this database, and what each mode protects.

Pure functions over plain data (sizes, durations, the database's size, an earlier measure); postgresql_backup does the
I/O. Bad input (a mode, a size or a duration that is not one) raises BadBackupSetting with what to write instead.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

# The modes a run can ask for: one, or schema or full with archive.
CHOICES = ('auto', 'full', 'schema', 'archive', 'schema+archive', 'full+archive', 'none')
DEFAULT_FULL_MAX_SIZE = '5GiB'

# What pg_dump -Fc reads of a database per second, and the size of its dump against the database's, when no full dump
# of this database was measured on this control node yet: the medians of bench/backup_modes.py at scale 10 on the
# 2-core machines of the suite (bench/results/backup_modes.json: 3.3 GiB dumped in about 90 s under the write load,
# 38.0 MiB/s, into 0.77 GiB, 0.231 of the database).
ASSUMED_DUMP_RATE = 38 * 1024 * 1024
ASSUMED_DUMP_RATIO = 0.23

# What each mode protects, for check mode, the play's output and the report.
PROTECTS = {
    'full': 'every table\'s rows and the whole schema, as they were before the run (pg_dump of the whole database); '
            'restoring it loses the writes made since',
    'schema': 'the whole schema as it was before the run (pg_dump --schema-only), and the rows this run may change '
              '(the duplicate keys a rename touches, by key); not the other rows, which index and constraint DDL '
              'does not change',
    'archive': 'everything, through the database\'s own point-in-time recovery (WAL archive, pgBackRest, WAL-G or a '
               'managed service): recovery to the LSN recorded right before the first DDL; proven working, not '
               'restored',
    'none': 'nothing: no backup was taken before the DDL',
}

UNITS = {'': 1, 'b': 1, 'k': 1024, 'kb': 1000, 'kib': 1024, 'm': 1024 ** 2, 'mb': 1000 ** 2, 'mib': 1024 ** 2,
         'g': 1024 ** 3, 'gb': 1000 ** 3, 'gib': 1024 ** 3, 't': 1024 ** 4, 'tb': 1000 ** 4, 'tib': 1024 ** 4}
DURATION_UNITS = {'s': 1, 'sec': 1, 'm': 60, 'min': 60, 'h': 3600, 'd': 86400}


class BadBackupSetting(ValueError):
    """A backup setting that is not what it must be; the message says which, and what to write."""


def parse_size(value, option):
    """Bytes of a size: a number of bytes, or a number with a unit (512MiB, 5GiB, 5GB, 1TB; KiB/MiB/GiB/TiB are
    powers of 1024, kB/MB/GB/TB of 1000, K/M/G/T of 1024 as in postgresql.conf)."""
    text = str(value).strip()
    found = re.match(r'^(\d+(?:\.\d+)?)\s*([A-Za-z]*)$', text)
    if isinstance(value, bool) or not found or found.group(2).lower() not in UNITS:
        raise BadBackupSetting('%s must be a size such as 512MiB, 5GiB or 1TB (or a number of bytes), not %r. Nothing '
                               'was changed.' % (option, value))
    return int(float(found.group(1)) * UNITS[found.group(2).lower()])


def parse_duration(value, option):
    """Seconds of a duration: a number of seconds, or a number with s, min (or m), h or d (30s, 15min, 2h, 1d)."""
    text = str(value).strip()
    found = re.match(r'^(\d+(?:\.\d+)?)\s*([A-Za-z]*)$', text)
    unit = found.group(2).lower() if found else None
    if isinstance(value, bool) or not found or (unit and unit not in DURATION_UNITS):
        raise BadBackupSetting('%s must be a duration such as 30s, 15min, 2h or 1d (or a number of seconds), not %r. '
                               'Nothing was changed.' % (option, value))
    return float(found.group(1)) * DURATION_UNITS.get(unit, 1)


def parse_mode(value, option='backup_mode'):
    """The modes of C(value), a name of CHOICES: ('auto',), ('full',), ('schema', 'archive'), ..."""
    if value not in CHOICES:
        raise BadBackupSetting('%s must be one of %s, not %r. Nothing was changed.'
                               % (option, ', '.join(CHOICES), value))
    return tuple(value.split('+'))


def mode_name(modes):
    return '+'.join(modes)


def human_size(size):
    for unit, factor in (('TiB', 1024 ** 4), ('GiB', 1024 ** 3), ('MiB', 1024 ** 2), ('KiB', 1024)):
        if size >= factor:
            return '%.1f %s' % (size / float(factor), unit)
    return '%d bytes' % size


def choose_mode(requested, database_bytes, full_max_bytes):
    """(modes, why) for C(requested) (parse_mode's tuple) on a database of C(database_bytes): auto is full below
    C(full_max_bytes) (backup_full_max_size), schema at or above it."""
    if requested != ('auto',):
        return requested, '%s was asked for (backup_mode=%s)' % (mode_name(requested), mode_name(requested))
    if database_bytes < full_max_bytes:
        return ('full',), ('the database (%s) is smaller than backup_full_max_size (%s): a full dump is cheap'
                           % (human_size(database_bytes), human_size(full_max_bytes)))
    return ('schema',), ('the database (%s) is at least backup_full_max_size (%s): a full dump would read every table, '
                         'so only the schema and the rows the run may change are dumped'
                         % (human_size(database_bytes), human_size(full_max_bytes)))


def dump_rate(measured):
    """(database bytes per second, dump size / database size, where from) of an earlier full dump of this database
    on this control node (C(measured): dict(database_bytes, size_bytes, seconds, taken)), else the assumed ones."""
    if measured and measured.get('seconds') and measured.get('database_bytes'):
        return (measured['database_bytes'] / float(measured['seconds']),
                measured['size_bytes'] / float(measured['database_bytes']),
                'the full dump of %s on this control node' % measured.get('taken', 'an earlier run'))
    return ASSUMED_DUMP_RATE, ASSUMED_DUMP_RATIO, 'no full dump measured here yet: the rate of bench/backup_modes.py'


def full_dump_estimate(database_bytes, measured):
    """What a full dump of a database of C(database_bytes) would write and take."""
    rate, ratio, source = dump_rate(measured)
    return dict(size_bytes=int(database_bytes * ratio), seconds=round(database_bytes / rate, 1),
                rate_bytes_per_second=int(rate), measured_on=source)


def estimate_line(database_bytes, estimate):
    return ('A full dump of this database (%s) would write about %s in about %s s (%s/s, %s).'
            % (human_size(database_bytes), human_size(estimate['size_bytes']), estimate['seconds'],
               human_size(estimate['rate_bytes_per_second']), estimate['measured_on']))


def uncovered_changes(modes, changes):
    """The row changes of the run (C(changes), what else it runs that may change rows) that C(modes) does not protect:
    all of them with a schema backup and no archive, none otherwise."""
    return list(changes) if 'schema' in modes and 'archive' not in modes else []


def protection_lines(modes):
    """What C(modes) protect, one line each."""
    return ['%s protects %s.' % (mode, PROTECTS[mode]) for mode in modes]
