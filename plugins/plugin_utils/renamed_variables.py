# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Old variable names that keep working for one release: which of them a run sets, and what to write instead.

The new names take the old names' values where they are defined (a role default such as
C(constraints_lock_timeout: "{{ unique_constraint_lock_timeout | default('2s') }}")), so that the precedence of
variables stays Ansible's own; this tells the run, once per old name, what to write instead. Pure: the action
plugins (renamed_variables, the preflight) and the lookups that read a knob (migration_plan, run_folder) give the
warnings.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

# The global knobs a user passes with -e (or sets in an inventory) take one prefix, pgzd_, since 0.18.0; their old bare
# names keep working until 0.19.0. Role variables keep their role's prefix, and the inventory's connection variables
# (pg_host, pg_port, pg_user, pg_database, pg_password) stay as they are, like ansible_host.
RENAMED_KNOBS = {
    'plan': 'pgzd_plan',
    'artifacts_dir': 'pgzd_artifacts_dir',
    'only_tables': 'pgzd_only_tables',
    'on_duplicates': 'pgzd_on_duplicates',
    'run_restore_drill': 'pgzd_restore_drill',
    'prisma_create_table': 'pgzd_prisma_create_table',
    'index_build_parallelism': 'pgzd_index_build_parallelism',
    'build_wait_warn': 'pgzd_build_wait_warn',
    'build_wait_timeout': 'pgzd_build_wait_timeout',
    'replication_lag_enabled': 'pgzd_replication_lag_enabled',
    'replication_lag_max_bytes': 'pgzd_replication_lag_max_bytes',
    'replication_lag_max_seconds': 'pgzd_replication_lag_max_seconds',
    'replication_lag_timeout': 'pgzd_replication_lag_timeout',
    'replication_lag_poll_interval': 'pgzd_replication_lag_poll_interval',
    'primary_only_on_replica': 'pgzd_on_replica',
    # The names issue 23 was written with: they work, pointing at the one prefix.
    'prisma_migrations_dir': 'pgzd_prisma_migrations_dir',
    'prisma_allow': 'pgzd_prisma_allow',
    'prisma_rollback_to': 'pgzd_prisma_rollback_to',
}
KNOBS_REMOVED_IN = '0.19.0'


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


def knob_warnings(defined):
    """The deprecation warning of each old knob name among C(defined) (the names of the variables the run sets), one
    per name, sorted; the same text wherever it is given, so that Ansible shows it once per run."""
    return [deprecation_message(old, new, None) for old, new in renamed(defined, names=RENAMED_KNOBS)]
