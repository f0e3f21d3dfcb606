# -*- coding: utf-8 -*-
"""What a connection failure means for the run (plugins/module_utils/session/connection.py), from the driver's words."""

import pytest

import helpers

cn = helpers.load_module_utils('session.connection')


@pytest.mark.parametrize('driver_text,advice', [
    ('server closed the connection unexpectedly\n\tThis probably means the server terminated abnormally',
     'restarting, shutting down or in recovery'),
    ('FATAL:  the database system is starting up', 'pg_isready'),
    ('connection to server at "127.0.0.1", port 5432 failed: Connection refused', 'pg_isready'),
    ('FATAL:  terminating connection due to administrator command', 'terminated the session'),
    ('FATAL:  password authentication failed for user "migrator"', 'check pg_user and pg_password'),
    ('could not translate host name "db.internl" to address', 'check pg_host, pg_port'),
    ('FATAL:  database "app2" does not exist', 'Check pg_database'),
    ('something else entirely', 'Check that the server runs'),
])
def test_each_failure_gets_the_advice_that_fits(driver_text, advice):
    assert advice in cn.connection_advice(driver_text)


def test_the_message_names_the_target_on_one_line_then_advises():
    message = cn.connection_failure_message(Exception('server closed the connection unexpectedly\n\tmore'),
                                            cn.target_of(dict(dbname='t12', host='10.0.0.5', port=5432, user='m')))
    first, advice = message.split('\n')
    assert first == ('Could not connect to database t12 at 10.0.0.5:5432 as m: server closed the connection '
                     'unexpectedly more')
    assert 'rerun' in advice
