#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: run_records
short_description: Write a run's own records (JSON files, reports, planned SQL) on the controller
description:
  - Writes, into the directory O(dest) on the controller (created, mode 0750), one JSON file per entry of O(json) and
    one file per template of O(templates), rendered with the task's variables and O(vars). Each file is replaced
    whole.
  - These are the records of a run (baselines, validation, report, the SQL a check-mode run would execute), read where
    they are written and attached to the change ticket. Writing them is not a change of the managed database, so the
    task reports C(changed=false), and C(--diff) does not show them.
  - An action plugin. It runs in the controller process, with no module process and no connection to the host.
  - In check mode nothing is written, unless the task sets C(check_mode=false) (the planned SQL of a check-mode run).
version_added: '0.15.0'
options:
  dest:
    description: The directory of the records.
    type: path
    required: true
  json:
    description: File name to data; each is written as indented JSON.
    type: dict
    default: {}
  templates:
    description: Templates to render, each with C(src) (searched in the role's C(templates) directory) and C(dest) (a file name).
    type: list
    elements: dict
    default: []
  vars:
    description: Variables the templates see besides the task's.
    type: dict
    default: {}
  mode:
    description: Mode of the files written.
    type: str
    default: '0640'
attributes:
  check_mode:
    description: Writes nothing, unless the task sets C(check_mode=false).
    support: full
extends_documentation_fragment:
  - pg_zero_downtime.migrations.common
'''

EXAMPLES = r'''
- name: Write the report of the run
  pg_zero_downtime.migrations.run_records:
    dest: artifacts/runs/t12-20261125T030000Z-1a2b3c
    json:
      report.json: "{{ report_result }}"
    templates:
      - src: report.md.j2
        dest: report.md
'''

RETURN = r'''
dest:
  description: The directory of the records.
  returned: always
  type: str
written:
  description: The files written (none in check mode).
  returned: always
  type: list
  elements: str
'''
