#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: renamed_variables
short_description: Warn of the deprecated variable names a run sets
description:
  - For each variable the run sets under an old name (an exact name of O(names), or a name starting with a prefix of
    O(prefixes)), gives a deprecation warning that names the new name to set instead.
  - The new names take the old names' values where they are defined, in the role defaults.
  - An action plugin. It runs in the controller process, with no module process and no connection to the host.
version_added: '0.17.0'
options:
  names:
    description: Old name to new name, exactly.
    type: dict
    default: {}
  prefixes:
    description: Old prefix to new prefix; the longest old prefix that matches wins. O(names) win over these.
    type: dict
    default: {}
  ignore:
    description: Old names never renamed (for example facts the old role's wrapper sets itself).
    type: list
    elements: str
    default: []
  message:
    description: A deprecation warning to give in any case (for example, that a role is used under its old name).
    type: str
  where:
    description: Where the old names were used, for the warning.
    type: str
  removed_in:
    description: The version that removes the old names.
    type: str
    default: '0.19.0'
attributes:
  check_mode:
    description: Changes nothing; runs the same in check mode.
    support: full
extends_documentation_fragment:
  - pg_zero_downtime.migrations.common
'''

EXAMPLES = r'''
- name: Warn of the unique_constraint_* variables of older pipelines
  pg_zero_downtime.migrations.renamed_variables:
    prefixes:
      unique_constraint_: constraints_
    names:
      unique_constraint_constraints: constraints_entries
'''

RETURN = r'''
renamed:
  description: Each old name the run sets, with its new name.
  returned: always
  type: list
  elements: dict
  sample: [{old: unique_constraint_lock_timeout, new: constraints_lock_timeout}]
'''
