# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# The option every module that reads or applies the index part of a whole plan shares: the plan's tables.

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    DOCUMENTATION = r'''
options:
  tables:
    description:
      - The plan's tables, each with its indexes, in plan order.
    type: list
    elements: dict
    suboptions:
      name:
        description: Table name, exactly as in the catalog.
        type: str
        required: true
      schema:
        description: Schema of the table; defaults to O(schema).
        type: str
      indexes:
        description: The table's indexes, with the suboptions of M(pg_zero_downtime.migrations.postgresql_online_index)'s C(indexes).
        type: list
        elements: dict
        required: true
        suboptions:
          name:
            description: Index name, at most 63 bytes, unique in the schema.
            type: str
            required: true
          columns:
            description: Key columns, in order (needed to build the index; a drop needs only its name).
            type: list
            elements: str
          unique:
            description: Build a unique index.
            type: bool
            default: false
          method:
            description: Index access method (C(btree), C(hash), C(gin), C(gist), C(brin), ...).
            type: str
            default: btree
          where:
            description: Predicate of a partial index, as SQL (checked as M(pg_zero_downtime.migrations.postgresql_online_index) checks it).
            type: str
          include:
            description: Non-key columns stored in the index (C(INCLUDE)).
            type: list
            elements: str
            default: []
          on_mismatch:
            description:
              - V(fail) refuses a valid index of this name with another definition; V(replace) builds the planned one
                beside it and swaps it in (as M(pg_zero_downtime.migrations.postgresql_online_index) describes).
            type: str
            choices: [fail, replace]
            default: fail
'''
