# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: stopped_message
short_description: What a pg-zero-downtime migration that stopped says, with what it changed before and kept
description:
  - Takes the failure (the failed task and its message) and the per-index and per-constraint results of the run,
    and returns the message the run stops with. The changes before the failure are kept, and a rerun goes on from
    there.
options:
  _input:
    description: The failure, as text.
    type: str
    required: true
  results:
    description: The per-index and per-constraint results of the run (each with C(action) and C(name)).
    type: list
    elements: dict
    required: true
'''

EXAMPLES = r'''
- name: Stop with the failure and what was changed before it
  ansible.builtin.fail:
    msg: "{{ 'the unique index failed' | pg_zero_downtime.migrations.stopped_message(online_indexes_results) }}"
'''

RETURN = r'''
_value:
  description: The message.
  type: str
'''


from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.outcomes import FAILED, done, stopped_entry


def stopped_message(failure, results):
    """The failure, then what the phases changed before it (kept: a rerun goes on from there). An entry that failed
    or did not start is never listed as changed; one that failed after some of its statements ran says what of it is
    kept."""
    changed = ['%s %s' % (r['action'], r['name']) if done(r) else stopped_entry(r) for r in results or []
               if done(r) or (r.get('action') == FAILED and r.get('statements_run'))]
    if changed:
        done_text = 'Changed before it, and kept (a rerun goes on from there): %s.' % ', '.join(changed)
    else:
        done_text = 'No index or constraint of the plan was changed before it.'
    return 'The migration stopped. %s\n%s' % (failure, done_text)


class FilterModule(object):
    def filters(self):
        return dict(stopped_message=stopped_message)
