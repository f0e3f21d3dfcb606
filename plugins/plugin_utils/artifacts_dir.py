# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The run's artifacts directory on the controller, proven the run's own before anything connects.

The phases write there: backups/<database>/ (and delete the oldest backups beyond backup_keep), runs/<plan>-<run id>/
(baseline, validation, report, planned SQL) and the audit copies of duplicate renames. A directory that holds other
things (/etc, /, a home directory, a project folder) is not the run's to write into, so the preflight's action plugin
refuses it with artifacts_dir_error. The check reads the file system only; tests/unit runs it on temporary folders.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

# What pg-zero-downtime writes into an artifacts directory: these folders, and the audit copies of duplicate renames
# (roles/constraints: <plan>-<run id>-<constraint>-resolved.json or -restored.json).
TOOL_FOLDERS = ('backups', 'runs')
AUDIT_FILE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]*-(resolved|restored)\.json$')
WHAT_IS_OURS = ('a directory of the run\'s own: one that does not exist yet, or is empty, or holds only what '
                'pg-zero-downtime writes there (backups/, runs/ and the audit files <run id>-<constraint>-resolved.json '
                'and -restored.json)')
WHAT_TO_DO = ('Pass -e pgzd_artifacts_dir=<a new or empty directory> (the default is artifacts/ where ansible-playbook '
              'runs)')


def tool_entry(directory, name):
    """Whether the entry C(name) of C(directory) is one pg-zero-downtime writes (a real folder, not a link elsewhere)."""
    path = os.path.join(directory, name)
    if name in TOOL_FOLDERS:
        return os.path.isdir(path) and not os.path.islink(path)
    return bool(AUDIT_FILE.match(name)) and os.path.isfile(path) and not os.path.islink(path)


def _nearest_existing(path):
    while not os.path.lexists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def artifacts_dir_path(path=None):
    """The artifacts directory as an absolute path: C(path) with ~ expanded, else artifacts/ of the working directory
    (that of ansible-playbook on the controller)."""
    return os.path.abspath(os.path.expanduser(path or 'artifacts'))


def artifacts_dir_error(path):
    """Why C(path) cannot be the run's artifacts directory (see WHAT_IS_OURS), or None. Nothing is created."""
    if not isinstance(path, str) or not path.strip():
        return 'artifacts_dir must be the path of a directory, not %r. %s.' % (path, WHAT_TO_DO)
    where = artifacts_dir_path(path)
    if not os.path.lexists(where):
        parent = _nearest_existing(os.path.dirname(where))
        if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
            return ('artifacts_dir %s does not exist and cannot be created: %s is not a writable directory. %s; '
                    'nothing was done.' % (where, parent, WHAT_TO_DO))
        return None
    if not os.path.isdir(where):
        return ('artifacts_dir %s is not a directory: it must be %s. %s; nothing was done.'
                % (where, WHAT_IS_OURS, WHAT_TO_DO))
    if not os.access(where, os.W_OK | os.X_OK):
        return 'artifacts_dir %s is not writable by this user. %s; nothing was done.' % (where, WHAT_TO_DO)
    try:
        foreign = sorted(name for name in os.listdir(where) if not tool_entry(where, name))
    except OSError as error:
        return 'artifacts_dir %s cannot be listed (%s). %s; nothing was done.' % (where, error.strerror, WHAT_TO_DO)
    if foreign:
        return ('artifacts_dir %s holds %d entr%s that pg-zero-downtime does not write (%s%s): it must be %s. %s; '
                'nothing was done.' % (where, len(foreign), 'y' if len(foreign) == 1 else 'ies', ', '.join(foreign[:3]),
                                       ', ...' if len(foreign) > 3 else '', WHAT_IS_OURS, WHAT_TO_DO))
    return None


def run_folder_path(artifacts_dir, plan_name, run_id):
    """The folder of one run's records: runs/<plan>-<run id> under the artifacts directory."""
    return os.path.join(artifacts_dir, 'runs', '%s-%s' % (plan_name, run_id))
