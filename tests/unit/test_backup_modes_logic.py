# -*- coding: utf-8 -*-
"""plugins/module_utils/evidence/backup_modes.py: the backup settings read (sizes, durations, modes) or refused, the
mode auto chooses from the database's size, what a full dump would cost, and what each mode protects; no server."""

import pytest

from helpers import load_module_utils

backup_modes = load_module_utils('evidence.backup_modes')

KIB, MIB, GIB, TIB = 1024, 1024 ** 2, 1024 ** 3, 1024 ** 4


# -- sizes ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('text, size', [
    ('512MiB', 512 * MIB), ('5GiB', 5 * GIB), ('1TiB', TIB), ('10KiB', 10 * KIB),
    ('5G', 5 * GIB), ('512M', 512 * MIB), ('10k', 10 * KIB), ('1T', TIB),  # postgresql.conf's units, of 1024
    ('5GB', 5 * 1000 ** 3), ('1TB', 1000 ** 4), ('512MB', 512 * 1000 ** 2), ('10kB', 10000),
    ('1.5GiB', 3 * GIB // 2), ('5 GiB', 5 * GIB), (' 5gib ', 5 * GIB), ('100b', 100), ('1048576', MIB),
])
def test_a_size_is_read_in_units_of_1024_or_1000(text, size):
    assert backup_modes.parse_size(text, 'backup_full_max_size') == size


def test_a_number_is_a_number_of_bytes():
    assert backup_modes.parse_size(1048576, 'backup_full_max_size') == MIB
    assert backup_modes.parse_size(0, 'backup_full_max_size') == 0
    assert isinstance(backup_modes.parse_size('1.5KiB', 'backup_full_max_size'), int)


@pytest.mark.parametrize('value', ['big', '5XB', '5 GiBs', '', '-1GiB', '-5', 'GiB', '1,5GiB', True, False, None])
def test_what_is_not_a_size_is_refused_naming_the_option_and_the_value(value):
    with pytest.raises(backup_modes.BadBackupSetting) as refused:
        backup_modes.parse_size(value, 'backup_full_max_size')
    assert str(refused.value) == ('backup_full_max_size must be a size such as 512MiB, 5GiB or 1TB (or a number of '
                                  'bytes), not %r. Nothing was changed.' % (value,))


# -- durations -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize('value, seconds', [
    ('30s', 30), ('10sec', 10), ('15min', 900), ('15m', 900), ('2h', 7200), ('1d', 86400), ('1.5h', 5400),
    ('15 min', 900), ('2H', 7200), ('90', 90), (90, 90), (0.5, 0.5),
])
def test_a_duration_is_read_in_seconds(value, seconds):
    assert backup_modes.parse_duration(value, 'backup_archive_max_age') == seconds


@pytest.mark.parametrize('value', ['soon', '2w', '15 minutes', '1y', '', '-5m', 'm', True, None])
def test_what_is_not_a_duration_is_refused_naming_the_option_and_the_value(value):
    with pytest.raises(backup_modes.BadBackupSetting) as refused:
        backup_modes.parse_duration(value, 'backup_archive_max_age')
    assert str(refused.value) == ('backup_archive_max_age must be a duration such as 30s, 15min, 2h or 1d (or a '
                                  'number of seconds), not %r. Nothing was changed.' % (value,))


# -- modes ---------------------------------------------------------------------------------------------------

def test_every_choice_is_read_as_its_modes():
    parsed = dict((choice, backup_modes.parse_mode(choice)) for choice in backup_modes.CHOICES)
    assert parsed == {'auto': ('auto',), 'full': ('full',), 'schema': ('schema',), 'archive': ('archive',),
                      'schema+archive': ('schema', 'archive'), 'full+archive': ('full', 'archive'),
                      'none': ('none',)}
    assert all(backup_modes.mode_name(modes) == choice for choice, modes in parsed.items())


@pytest.mark.parametrize('value', ['fast', 'Full', 'archive+schema', 'schema+full', 'full,archive', '', None])
def test_an_unknown_mode_is_refused_with_the_choices(value):
    with pytest.raises(backup_modes.BadBackupSetting) as refused:
        backup_modes.parse_mode(value)
    assert str(refused.value) == ('backup_mode must be one of auto, full, schema, archive, schema+archive, '
                                  'full+archive, none, not %r. Nothing was changed.' % (value,))
    with pytest.raises(backup_modes.BadBackupSetting, match=r'^mode \(backup_mode\) must be one of'):
        backup_modes.parse_mode(value, 'mode (backup_mode)')


def test_auto_takes_a_full_dump_only_below_the_threshold():
    below = backup_modes.choose_mode(('auto',), 5 * GIB - 1, 5 * GIB)
    assert below == (('full',), 'the database (5.0 GiB) is smaller than backup_full_max_size (5.0 GiB): a full dump '
                                'is cheap')
    at = backup_modes.choose_mode(('auto',), 5 * GIB, 5 * GIB)
    assert at == (('schema',), 'the database (5.0 GiB) is at least backup_full_max_size (5.0 GiB): a full dump would '
                               'read every table, so only the schema and the rows the run may change are dumped')
    above = backup_modes.choose_mode(('auto',), 2 * TIB, 5 * GIB)
    assert above[0] == ('schema',) and above[1].startswith('the database (2.0 TiB) is at least')
    assert backup_modes.choose_mode(('auto',), 80 * MIB, 5 * GIB)[1].startswith('the database (80.0 MiB) is smaller')


def test_an_explicit_mode_is_kept_whatever_the_size():
    assert backup_modes.choose_mode(('full',), 2 * TIB, 5 * GIB) == (('full',), 'full was asked for (backup_mode=full)')
    assert backup_modes.choose_mode(('schema',), 1, 5 * GIB) == (('schema',), 'schema was asked for '
                                                                              '(backup_mode=schema)')
    assert backup_modes.choose_mode(('schema', 'archive'), 1, 5 * GIB) == (
        ('schema', 'archive'), 'schema+archive was asked for (backup_mode=schema+archive)')
    assert backup_modes.choose_mode(('full', 'archive'), 2 * TIB, 0)[0] == ('full', 'archive')
    assert backup_modes.choose_mode(('archive',), 2 * TIB, 5 * GIB)[0] == ('archive',)


def test_sizes_read_in_the_largest_unit_that_fits():
    assert [backup_modes.human_size(size) for size in (0, 1023, KIB, 1536, MIB, 3 * GIB // 2, 2 * TIB, 2048 * TIB)] == [
        '0 bytes', '1023 bytes', '1.0 KiB', '1.5 KiB', '1.0 MiB', '1.5 GiB', '2.0 TiB', '2048.0 TiB']


# -- what a full dump would cost -----------------------------------------------------------------------------

MEASURED = dict(database_bytes=200 * MIB, size_bytes=50 * MIB, seconds=8, taken='2026-12-01T03:00:07Z')


def test_a_measured_full_dump_gives_the_rate_and_ratio_of_this_database():
    assert backup_modes.dump_rate(MEASURED) == (25.0 * MIB, 0.25, 'the full dump of 2026-12-01T03:00:07Z on this '
                                                                  'control node')
    untimed = dict(MEASURED)
    del untimed['taken']
    assert backup_modes.dump_rate(untimed)[2] == 'the full dump of an earlier run on this control node'


def test_without_a_usable_measure_the_benchs_rate_is_assumed():
    assumed = (backup_modes.ASSUMED_DUMP_RATE, backup_modes.ASSUMED_DUMP_RATIO,
               'no full dump measured here yet: the rate of bench/backup_modes.py')
    assert backup_modes.dump_rate(None) == assumed
    assert backup_modes.dump_rate({}) == assumed
    assert backup_modes.dump_rate(dict(MEASURED, seconds=0)) == assumed  # a dump too quick to time
    assert backup_modes.dump_rate(dict(MEASURED, database_bytes=0)) == assumed


def test_the_estimate_scales_the_measure_to_the_database():
    measured = backup_modes.full_dump_estimate(GIB, MEASURED)
    assert measured == dict(size_bytes=256 * MIB, seconds=41.0, rate_bytes_per_second=25 * MIB,
                            measured_on='the full dump of 2026-12-01T03:00:07Z on this control node')
    assumed = backup_modes.full_dump_estimate(GIB, None)
    assert assumed == dict(size_bytes=int(GIB * backup_modes.ASSUMED_DUMP_RATIO),
                           seconds=round(GIB / float(backup_modes.ASSUMED_DUMP_RATE), 1),
                           rate_bytes_per_second=backup_modes.ASSUMED_DUMP_RATE,
                           measured_on='no full dump measured here yet: the rate of bench/backup_modes.py')
    assert assumed['seconds'] == 26.9  # 1 GiB at 38 MiB/s, the rate of bench/backup_modes.py
    assert backup_modes.full_dump_estimate(0, MEASURED)['seconds'] == 0


def test_the_estimate_line_says_size_time_rate_and_where_the_rate_comes_from():
    line = backup_modes.estimate_line(GIB, backup_modes.full_dump_estimate(GIB, MEASURED))
    assert line == ('A full dump of this database (1.0 GiB) would write about 256.0 MiB in about 41.0 s (25.0 MiB/s, '
                    'the full dump of 2026-12-01T03:00:07Z on this control node).')


# -- what each mode protects ---------------------------------------------------------------------------------

def test_each_mode_says_what_it_protects_one_line_each():
    lines = backup_modes.protection_lines(('schema', 'archive'))
    assert lines == ['schema protects %s.' % backup_modes.PROTECTS['schema'],
                     'archive protects %s.' % backup_modes.PROTECTS['archive']]
    assert 'the rows this run may change' in lines[0] and 'not the other rows' in lines[0]
    assert 'recovery to the LSN recorded right before the first DDL' in lines[1] and 'not restored' in lines[1]
    assert backup_modes.protection_lines(('full',))[0].startswith('full protects every table\'s rows and the whole '
                                                                  'schema')
    assert backup_modes.protection_lines(('none',)) == ['none protects nothing: no backup was taken before the DDL.']
    assert backup_modes.protection_lines(()) == []


def test_every_mode_a_choice_names_has_its_protection():
    modes = set(mode for choice in backup_modes.CHOICES if choice != 'auto' for mode in choice.split('+'))
    assert modes == set(backup_modes.PROTECTS)


def test_only_a_schema_backup_without_the_archive_leaves_the_run_s_other_row_changes_unprotected():
    changes = ['the statements of the pending Prisma migrations 1_backfill']
    assert backup_modes.uncovered_changes(('schema',), changes) == changes
    for modes in (('full',), ('archive',), ('schema', 'archive'), ('full', 'archive')):
        assert backup_modes.uncovered_changes(modes, changes) == []
    assert backup_modes.uncovered_changes(('schema',), []) == []
