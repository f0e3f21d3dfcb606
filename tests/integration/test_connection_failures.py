# -*- coding: utf-8 -*-
"""A server that cannot be reached, or refuses the login, fails a module with what it means and what to do."""

import pytest

pytestmark = pytest.mark.integration


def test_no_server_on_the_port_says_so_and_advises(db, run_module):
    result = run_module('postgresql_online_index_info', login_port=1,
                        tables=[dict(name='Job', indexes=[dict(name='pt_x_idx', columns=['id'])])])
    assert result.get('failed') is True and result['changed'] is False
    assert 'Could not connect to database t12 at 127.0.0.1:1 as pgzd' in result['msg'], result['msg']
    assert 'pg_isready' in result['msg'] and 'Nothing was changed by this task' in result['msg']


def test_a_wrong_password_says_to_check_the_credentials(db, run_module):
    result = run_module('postgresql_migration_lock', run_id='t12-wrong-password', login_password='not-the-password')
    assert result.get('failed') is True
    assert 'password authentication failed' in result['msg'] and 'check pg_user and pg_password' in result['msg']
