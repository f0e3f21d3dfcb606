# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# The option every module that reads or applies the constraint part of a whole plan shares: the plan's constraints.

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    DOCUMENTATION = r'''
options:
  constraints:
    description:
      - The plan's constraints, in plan order.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Constraint name, also the name of the unique index that backs it (at most 63 bytes).
        type: str
        required: true
      table:
        description: Table name, exactly as in the catalog.
        type: str
        required: true
      schema:
        description: Schema of the table; defaults to O(schema).
        type: str
      columns:
        description: The constraint's columns.
        type: list
        elements: str
        required: true
      type:
        description: Constraint type.
        type: str
        choices: [unique]
        default: unique
      on_duplicates:
        description:
          - C(fail) stops the run on duplicate keys, before any DDL. C(rename) renames all but the oldest row of each
            duplicate key (a suffix on O(constraints[].rename_column)), recorded in an audit table, so they are only
            reported by the preflight.
        type: str
        choices: [fail, rename]
        default: fail
      rename_column:
        description: With C(on_duplicates=rename), the key column that takes the suffix (a text column).
        type: str
      keep_oldest_by:
        description: With C(on_duplicates=rename), the columns that say which row of a group is the oldest.
        type: list
        elements: str
'''
