# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# The options every module that connects shares besides community.postgresql.postgres's: the database and the role
# (module_utils/session/connection.connection_argument_spec adds them to the argument_spec). A module that says more
# of one (what the database is for it) gives that option's description only; ansible-doc merges it over this one.

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    DOCUMENTATION = r'''
options:
  login_db:
    description: Name of the database to connect to.
    type: str
    aliases: [db]
  session_role:
    description: Switch to this role after connecting.
    type: str
'''
