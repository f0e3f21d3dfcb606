# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Old variable names that keep working for one release: which of them a run sets, and what to write instead.

The new names take the old names' values where they are defined (a role default such as
C(constraints_lock_timeout: "{{ unique_constraint_lock_timeout | default('2s') }}")), so that the precedence of
variables stays Ansible's own; this tells the run, once per old name, what to write instead. Pure: the action
plugins (renamed_variables, the preflight) give the warnings.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


def new_name(old, names, prefixes):
    """The new name of C(old): its exact rename in C(names), else its prefix swapped by C(prefixes); None if not renamed."""
    if old in names:
        return names[old]
    for old_prefix, new_prefix in sorted(prefixes.items(), key=lambda item: -len(item[0])):
        if old.startswith(old_prefix) and len(old) > len(old_prefix):
            return new_prefix + old[len(old_prefix):]
    return None


def renamed(defined, names=None, prefixes=None, ignore=()):
    """(old, new) for every old name among C(defined) (the names of the variables the run sets), sorted. Internal names
    (a leading underscore) and those in C(ignore) are never reported."""
    names, prefixes = names or {}, prefixes or {}
    renames = []
    for old in sorted(defined):
        if not isinstance(old, str) or old.startswith('_') or old in ignore:
            continue
        new = new_name(old, names, prefixes)
        if new is not None and new != old:
            renames.append((old, new))
    return renames


def deprecation_message(old, new, where):
    return 'The variable %s%s is deprecated: set %s instead.' % (old, (' (%s)' % where) if where else '', new)
