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
        description:
          - Constraint name (at most 63 bytes). For C(unique), also the name of the unique index that backs it; for
            C(not_null), the name of the helper check used on the way.
        type: str
        required: true
      table:
        description: The constraint's table, exactly as in the catalog.
        type: str
        required: true
      schema:
        description: Schema of the table; defaults to O(schema).
        type: str
      type:
        description: Constraint type.
        type: str
        choices: [unique, foreign_key, check, not_null]
        default: unique
      columns:
        description: The constraint's columns (C(unique) and C(foreign_key)).
        type: list
        elements: str
      on_duplicates:
        description:
          - C(unique) only. C(fail) stops the run on duplicate keys, before any DDL. C(rename) renames all but the
            oldest row of each duplicate key (a suffix on O(constraints[].rename_column)), recorded in an audit
            table, so they are only reported by the preflight.
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
      references:
        description: C(foreign_key) only. The referenced table and its columns (a primary or unique key).
        type: dict
        suboptions:
          table:
            description: Referenced table.
            type: str
            required: true
          schema:
            description: Schema of the referenced table; defaults to the entry's schema.
            type: str
          columns:
            description: Referenced columns, as many as O(constraints[].columns), in the same order.
            type: list
            elements: str
            required: true
      on_delete:
        description: C(foreign_key) only. C(NO ACTION), C(RESTRICT), C(CASCADE), C(SET NULL) or C(SET DEFAULT).
        type: str
        default: NO ACTION
      on_update:
        description: C(foreign_key) only. As O(constraints[].on_delete).
        type: str
        default: NO ACTION
      index:
        description:
          - C(foreign_key) only. Name of an index on O(constraints[].columns) to build concurrently before the key
            is added (and drop concurrently on rollback). Without it, a missing index is only reported.
        type: str
      expression:
        description: C(check) only. One boolean SQL expression, checked like an index predicate.
        type: str
      column:
        description: C(not_null) only. The column that becomes NOT NULL.
        type: str
'''
