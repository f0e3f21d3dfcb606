# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What report.html and report.md show beside report.json's figures: the SQL that ran with each statement's lock, and
the bar widths of the baseline chart. Computed here (plain functions, tests/unit), not in the templates, and not
written to report.json.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: migration_report_view
short_description: What the pages of a pg-zero-downtime report show beside its figures
description:
  - Takes the report (P(pg_zero_downtime.migrations.migration_report#filter)) and returns C(sql), the statements the run
    sent, entry by entry, each with the table lock it takes (C(lock)) and what the application feels of it
    (C(effect)); and C(bars), the widths in pixels of each baseline query's before and after bars on a logarithmic
    scale, so that a short "after" bar is still seen.
options:
  _input:
    description: The report, as report.json holds it.
    type: dict
    required: true
  bar_max:
    description: Width in pixels of the longest bar.
    type: int
    default: 480
'''

EXAMPLES = r'''
- name: What the report's pages show
  ansible.builtin.set_fact:
    report_view: "{{ report_result | pg_zero_downtime.migrations.migration_report_view }}"
'''

RETURN = r'''
_value:
  description: C(sql) (a list of dicts with C(object), C(statement), C(lock), C(effect)), C(bars) (a list of [before, after] widths) and C(bar_max).
  type: dict
'''

import math
import re

from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.outcomes import FAILED, NOT_DONE

# The table lock each statement the tool sends takes (PostgreSQL's "Explicit Locking"), first match wins, and what
# the application feels of it. Plain text a reader checks against the docs; tests/unit covers every statement kind.
NO_BLOCKING = 'no reads or writes blocked'
STATEMENT_LOCKS = (
    (r'^(CREATE (UNIQUE )?INDEX|DROP INDEX|REINDEX) .*CONCURRENTLY', 'SHARE UPDATE EXCLUSIVE', NO_BLOCKING),
    (r'^CREATE (UNIQUE )?INDEX .* ON ONLY ', 'SHARE', 'writes wait, an instant (no data: the parent only)'),
    (r'^ALTER INDEX .* ATTACH PARTITION', 'SHARE UPDATE EXCLUSIVE', NO_BLOCKING),
    (r'^ALTER INDEX .* RENAME', 'SHARE UPDATE EXCLUSIVE', NO_BLOCKING),
    (r'^ALTER TABLE .* VALIDATE CONSTRAINT', 'SHARE UPDATE EXCLUSIVE', NO_BLOCKING + ' (a scan)'),
    (r'^ALTER TABLE .* ADD CONSTRAINT .* FOREIGN KEY', 'SHARE ROW EXCLUSIVE',
     'writes wait, an instant (NOT VALID: no scan), on both tables'),
    (r'^ALTER TABLE .* (ADD CONSTRAINT|DROP CONSTRAINT|SET NOT NULL|DROP NOT NULL)', 'ACCESS EXCLUSIVE',
     'reads and writes wait, an instant (no scan)'),
    (r'^LOCK TABLE .* IN (.*) MODE', None, 'taken first, so two tables are locked in a set order'),
    (r'^(INSERT|UPDATE|DELETE)', 'ROW EXCLUSIVE', NO_BLOCKING + ' (rows only)'),
)


def statement_lock(statement):
    """(lock mode, what the application feels) of a statement the tool sends; (None, '') for one that locks no table
    (BEGIN, COMMIT, SET LOCAL)."""
    for pattern, mode, effect in STATEMENT_LOCKS:
        found = re.search(pattern, statement, re.DOTALL)
        if found:
            return mode or found.group(found.lastindex), effect
    return None, ''


def statements_run(entries):
    """The SQL a run sent, entry by entry in order, each statement with its lock: dict(object, statement, lock,
    effect). An entry that failed counts what of it ran (statements_run); one that was not done counts nothing."""
    rows = []
    for entry in entries:
        if entry.get('action') == FAILED:
            statements = entry.get('statements_run') or []
        elif entry.get('action') in NOT_DONE:
            continue
        else:
            statements = entry.get('statements') or []
        for statement in statements:
            mode, effect = statement_lock(statement)
            rows.append(dict(object=entry.get('name'), statement=statement, lock=mode or '', effect=effect))
    return rows


def chart_bars(comparison, bar_max):
    """The before and after bars of each baseline query on a logarithmic scale of milliseconds, so that an "after" bar
    40 times shorter than its "before" is still seen: [(before width, after width)] in pixels, from a tenth of the
    fastest time (a bar of 0 px) to the slowest (C(bar_max)); at least 2 px each."""
    times = [t for c in comparison for t in (c['before_ms'], c['after_ms']) if t and t > 0]
    if not times:
        return [(2, 2) for dummy_ in comparison]
    floor, peak = min(times) / 10.0, max(times)
    span = math.log(peak / floor)

    def width(ms):
        return max(2.0, round(bar_max * math.log(ms / floor) / span, 1)) if ms and ms > 0 else 2.0
    return [(width(c['before_ms']), width(c['after_ms'])) for c in comparison]


def last_used_rows(report):
    """The indexes the run dropped or replaced (the index phase's, and a Prisma folder's DROP INDEX), each with when it
    was last used as read before it went: dict(object, action, idx_scan, last_scan). last_scan is last_idx_scan (UTC),
    or why there is none (not available below PostgreSQL 16, never scanned): never a silent blank."""
    found = []
    for entry in report.get('indexes') or []:
        if entry.get('last_used') and entry.get('action') not in NOT_DONE:
            found.append((entry['name'], entry['action'], entry['last_used']))
    for migration in (report.get('prisma_deploy') or {}).get('migrations') or []:
        for statement in migration.get('statements') or []:
            if statement.get('last_used'):
                found.append(('%s line %s' % (migration['name'], statement['line']),
                              '%s (%s)' % (statement['kind'], statement['action']), statement['last_used']))
    return [dict(object=name, action=action, idx_scan=used.get('idx_scan'),
                 last_scan=used.get('last_idx_scan') or used.get('note') or 'unknown')
            for name, action, used in found]


def report_view(report, bar_max=480):
    """What report.html and report.md show beside report.json's figures, computed here, not in the templates: the
    SQL that ran with each statement's lock, the chart's bar widths (logarithmic), and when the indexes that went were
    last used."""
    return dict(sql=statements_run(list(report.get('indexes') or []) + list(report.get('constraints') or [])),
                bars=chart_bars(report.get('comparison') or [], bar_max), bar_max=bar_max,
                last_used=last_used_rows(report))


class FilterModule(object):
    def filters(self):
        return dict(migration_report_view=report_view)
