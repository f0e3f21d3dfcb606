# -*- coding: utf-8 -*-
# PostgreSQL identifiers as a plan names them: whether a name is usable before anything is quoted and sent. No
# imports, so the controller-side plan check (plugins/filter/migration_plan.py) loads this file as it is.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

# PostgreSQL truncates identifiers to NAMEDATALEN - 1 bytes; a longer name would silently become
# another name, so it is refused instead.
MAX_IDENTIFIER_BYTES = 63


def identifier_error(kind, value):
    """Return why C(value) is not a usable PostgreSQL identifier, or None."""
    if value is None or value == '':
        return '%s is empty' % kind
    if not isinstance(value, str):
        return '%s %r is not a string' % (kind, value)
    if len(value.encode('utf-8')) > MAX_IDENTIFIER_BYTES:
        return ('%s "%s" is %d bytes long; PostgreSQL identifiers are at most %d bytes and a longer one '
                'would be silently truncated: choose a shorter name'
                % (kind, value, len(value.encode('utf-8')), MAX_IDENTIFIER_BYTES))
    if value != value.strip():
        return '%s "%s" has leading or trailing white space' % (kind, value)
    if any(ord(char) < 32 or ord(char) == 127 for char in value):
        return '%s %r contains a control character' % (kind, value)
    return None
