# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: plan_errors
short_description: Every structural problem of a pg-zero-downtime migration plan, each naming its entry
description:
  - Takes a migration plan as loaded from its YAML file and returns a list of sentences, one per problem (empty
    when the plan is well formed). Checks every key of every entry, its type, and every name conflict inside the
    plan. The preflight runs the same check on the controller before anything connects.
options:
  _input:
    description: The plan, as loaded from its YAML file.
    type: raw
    required: true
'''

EXAMPLES = r'''
- name: Check a plan's format without a database
  ansible.builtin.assert:
    that: (lookup('ansible.builtin.file', 'plans/shop.yml') | from_yaml | pg_zero_downtime.migrations.plan_errors) == []
'''

RETURN = r'''
_value:
  description: One sentence per problem, each starting with the entry it is about.
  type: list
  elements: str
'''

from ansible_collections.pg_zero_downtime.migrations.plugins.plugin_utils.migration_plan import plan_errors


class FilterModule(object):
    def filters(self):
        return dict(plan_errors=plan_errors)
