# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Writes a run's own records on the controller, in this process: JSON files and rendered templates.

The records (baselines, validation, report, planned SQL) live on the controller, where the operator reads them and
attaches them to the change ticket. A copy or template task per file would start a module process per file; this
writes them all at once, where they go.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

from ansible.errors import AnsibleError
from ansible.template import trust_as_template

from ansible_collections.pg_zero_downtime.migrations.plugins.plugin_utils.controller_action import ControllerAction


def write_text(path, text, mode):
    """Write C(text) to C(path) (replaced whole: a reader never sees half a file) with C(mode)."""
    partial = '%s.%d.tmp' % (path, os.getpid())
    with open(partial, 'w', encoding='utf-8') as handle:
        handle.write(text)
    os.chmod(partial, mode)
    os.replace(partial, path)


def json_text(data):
    return json.dumps(data, indent=4, sort_keys=True, default=str) + '\n'


class ActionModule(ControllerAction):

    def run_on_controller(self, result, args, task_vars):
        dest = args.get('dest')
        if not dest:
            result.update(failed=True, msg='dest (the directory of the records) is required')
            return result
        mode = int(str(args.get('mode', '0640')), 8)
        files = []
        for name, data in sorted((args.get('json') or {}).items()):
            files.append((name, json_text(data)))
        try:
            for template in args.get('templates') or []:
                files.append((template['dest'], self._render(template['src'], task_vars, args.get('vars') or {})))
        except (AnsibleError, KeyError, OSError) as error:
            result.update(failed=True, msg='Could not render the records for %s: %s' % (dest, error))
            return result
        paths = [os.path.join(dest, name) for name, dummy_ in files]
        result.update(changed=False, dest=dest, written=[] if self._task.check_mode else paths)
        if self._task.check_mode:
            result['msg'] = 'Check mode: %d record(s) not written to %s' % (len(paths), dest)
            return result
        try:
            os.makedirs(dest, mode=0o750, exist_ok=True)
            for (name, text), path in zip(files, paths):
                write_text(path, text, mode)
        except OSError as error:
            result.update(failed=True, msg='Could not write the records to %s: %s' % (dest, error))
        return result

    def _render(self, src, task_vars, extra):
        source = self._find_needle('templates', src)
        template = trust_as_template(self._loader.get_text_file_contents(source))
        available = dict(task_vars)
        available.update(extra)
        templar = self._templar.copy_with_new_env(searchpath=[os.path.dirname(source)], available_variables=available)
        return templar.template(template, escape_backslashes=False, overrides=dict(trim_blocks=True))
