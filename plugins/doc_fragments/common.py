# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# What every module of the collection documents alike: its authors and its attributes. Every module runs in check
# mode and, by DOCUMENTATION, returns no diff. A module that says more of an attribute gives it in its own
# attributes: ansible-doc merges the module's over the fragments', and of two fragments the one listed first wins
# (utils/plugin_docs.merge_fragment). So the modules that change the schema list DDL_DIFF (common.ddl_diff) before
# common: with --diff they return the catalog state before and after, and the statements.

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    DOCUMENTATION = r'''
author:
  - pg-zero-downtime maintainers (!UNKNOWN)
attributes:
  check_mode:
    support: full
  diff_mode:
    description: Returns no diff.
    support: none
'''

    DDL_DIFF = r'''
attributes:
  diff_mode:
    description: >-
      Returns the catalog state before and after (what would change, in check mode) with C(--diff), and the exact
      statements the run sends (in check mode) or sent, in order (CREATE INDEX CONCURRENTLY, ADD CONSTRAINT ... NOT
      VALID then VALIDATE CONSTRAINT).
    support: full
'''
