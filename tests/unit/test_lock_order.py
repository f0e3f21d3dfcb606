# -*- coding: utf-8 -*-
"""The order and the lock_timeout of the statements that lock two tables (plugins/module_utils/session/lock_order.py)."""

import helpers

lo = helpers.load_module_utils('session.lock_order')


def test_the_lock_timeout_is_capped_at_half_of_deadlock_timeout():
    # 2s configured, deadlock_timeout 1s: 500ms, so the tool's wait ends before any session's deadlock check.
    capped = lo.capped_lock_timeout('2s', 2000, 1000)
    assert (capped['value'], capped['ms']) == ('500ms', 500)
    assert capped['note'] == ('500ms (the configured 2s capped at half of deadlock_timeout 1000ms, so the tool gives '
                              'up before PostgreSQL picks a deadlock victim)')
    # Shorter than the cap: as configured.
    assert lo.capped_lock_timeout('200ms', 200, 1000)['value'] == '200ms'
    assert lo.capped_lock_timeout('500ms', 500, 1000)['value'] == '500ms'
    # 0 (wait forever) would wait past deadlock_timeout: capped too.
    assert lo.capped_lock_timeout('0', 0, 1000)['value'] == '500ms'
    # A tiny deadlock_timeout still leaves a wait of 1ms, not 0 (which would mean no timeout at all).
    assert lo.capped_lock_timeout('2s', 2000, 1)['value'] == '1ms'


def test_every_ordered_statement_takes_its_first_table_explicitly_then_the_rest():
    assert set(lo.ORDERED_STATEMENTS) == {'foreign_key_add', 'foreign_key_validate', 'foreign_key_drop', 'attach',
                                          'drop_partitioned'}
    for kind, order in lo.ORDERED_STATEMENTS.items():
        assert len(order['locks']) >= 2, kind
        assert all(mode in lo.MODES for _role, mode in order['locks']), kind
    assert lo.ORDERED_STATEMENTS['foreign_key_drop']['locks'][0] == ('the referenced table', 'ACCESS EXCLUSIVE')
    assert lo.lock_text('drop_partitioned') == ('ACCESS EXCLUSIVE on the partitioned table (LOCK TABLE, first), then '
                                                'ACCESS EXCLUSIVE on every partition')


def test_the_strongest_mode_is_the_one_that_counts():
    assert lo.strongest(['ACCESS SHARE', 'SHARE ROW EXCLUSIVE']) == 'SHARE ROW EXCLUSIVE'
    assert lo.strongest(['ROW SHARE', 'ACCESS SHARE']) == 'ROW SHARE'
