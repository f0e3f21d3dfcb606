# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# The option every module that proves or runs plan SQL shares: what the plan trusts (module_utils/plan/plan_trust.py),
# and the parser that proof needs.

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    DOCUMENTATION = r'''
options:
  trusted:
    description:
      - The user-defined functions, operators and types the plan trusts, by signature (the plan's C(trusted) list), for
        example C(util.normalize(text)), C(operator public.===(integer, integer)) or C(type public.citext).
      - Plan SQL (index predicates, check expressions, baseline queries and their parameter queries) may reach only the
        built-ins of C(pg_catalog) and these, as PostgreSQL itself resolves the text (overloads, operators, implicit
        casts, domains), IMMUTABLE in predicates and checks, at most STABLE in baseline queries; a short list of
        built-ins that run SQL given as text is refused whatever they are. It is proven before anything of the text
        is evaluated (docs/trust-and-ledger.md, "What plan SQL may reference").
    type: list
    elements: str
    default: []
requirements:
  - pglast (PostgreSQL's parser), to check plan SQL and every statement that carries it
'''
