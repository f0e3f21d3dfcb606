# -*- coding: utf-8 -*-
"""plugins/module_utils/session/server_features.py: the supported versions, from server_version_num."""

import pytest

import helpers

features = helpers.load_module_utils('session.server_features')


@pytest.mark.parametrize('version_num,expected', [(140000, 14), (150018, 15), (180006, 18), (90624, 9), (130023, 13)])
def test_the_major_of_a_server_version_num(version_num, expected):
    assert features.major(version_num) == expected


@pytest.mark.parametrize('version_num', [140000, 140023, 150018, 160014, 170010, 180004, 190000])
def test_14_and_later_are_supported(version_num):
    assert features.unsupported_message(version_num) is None


def test_13_and_older_are_refused_naming_the_version_and_its_end_of_life():
    message = features.unsupported_message(130023, '13.23')
    assert message.startswith('The server is PostgreSQL 13.23, which this tool does not support: PostgreSQL 13 '
                              'reached its end of life in November 2025, and the tool needs 14 or later')
    assert message.endswith('Upgrade the server; nothing was changed.')
    assert 'November 2024' in features.unsupported_message(120000)


@pytest.mark.parametrize('feature,first', [('not_null_not_valid', 18), ('foreign_key_not_valid_on_partitioned', 18),
                                           ('transaction_timeout', 17), ('last_idx_scan', 16),
                                           ('explain_buffers_by_default', 18), ('stat_force_next_flush', 15),
                                           ('wal_replay_pause_state', 14)])
def test_each_feature_starts_at_its_major_and_not_before(feature, first):
    assert features.first_major_with(feature) == first
    assert features.has(first * 10000, feature) and features.has(first * 10000 + 4, feature)
    assert not features.has((first - 1) * 10000 + 99, feature)
    assert features.has(190000, feature)


def test_an_unknown_feature_is_a_key_error_not_a_silent_no():
    with pytest.raises(KeyError):
        features.has(180000, 'not_null_not_vaild')


@pytest.mark.parametrize('version_num,expected', [(170010, '17.10'), (180004, '18.4'), (140000, '14.0')])
def test_a_version_num_reads_as_major_dot_minor(version_num, expected):
    assert features.version_text(version_num) == expected
