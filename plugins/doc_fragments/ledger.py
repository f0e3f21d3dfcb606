# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# The option every module that changes, or decides a rollback of, what a plan made shares: whose ledger it is
# (module_utils/run/ledger.py).

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    DOCUMENTATION = r'''
options:
  plan_name:
    description:
      - The plan whose ledger (C(pgzd_audit.ledger)) records what this task makes, and decides what it undoes. Every
        index, constraint, NOT NULL and replacement a task makes is recorded before its first statement and after its
        last, with its definition and what was there before.
      - Rolling back (C(state=absent)), only what the ledger attributes to this plan, and still is what it recorded, is
        dropped or restored; anything else of a planned name (an index the application made, a NOT NULL that predates
        the plan, a primary key's column) is left alone, and the result says so (C(left_alone)). Use the same name to
        roll back as to migrate; standalone runs share V(manual) (docs/trust-and-ledger.md, "The ledger").
    type: str
    default: manual
'''
