# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Warns, once for each, of the deprecated variable names a run sets, naming what to write instead.

An action plugin, because only the controller sees which variables the run sets (extra vars, inventory, play vars).
The new names take the old ones' values in the role defaults (plugin_utils/renamed_variables.py).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.utils.display import Display

from ansible_collections.pg_zero_downtime.migrations.plugins.plugin_utils.controller_action import ControllerAction
from ansible_collections.pg_zero_downtime.migrations.plugins.plugin_utils.renamed_variables import (
    deprecation_message, renamed)

COLLECTION = 'pg_zero_downtime.migrations'


class ActionModule(ControllerAction):

    def run_on_controller(self, result, args, task_vars):
        renames = renamed(task_vars, args.get('names') or {}, args.get('prefixes') or {}, args.get('ignore') or [])
        messages = ([args['message']] if args.get('message') else []) + [
            deprecation_message(old, new, args.get('where')) for old, new in renames]
        for message in messages:
            Display().deprecated(message, version=args.get('removed_in', '0.19.0'), collection_name=COLLECTION)
        result.update(changed=False, renamed=[dict(old=old, new=new) for old, new in renames])
        return result
