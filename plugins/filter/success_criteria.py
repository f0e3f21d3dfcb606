# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The success criteria of a migration run, as its report states them: met, not met, or not checked.

The filter migration_report passes what the phases of the run left. A
criterion whose evidence no phase of this run produced (a --tags selection, a run that stopped early) is
"not checked", never "not met" and never "met".
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: success_criteria
short_description: The success criteria of a pg-zero-downtime migration run, each met, not met or not checked
description:
  - Takes what the phases of a run left and returns the five criteria of the report, in order, each a dict with
    C(criterion), C(status) (V(met), V(not met) or V(not checked)), C(met) (true only when met) and C(evidence).
  - A criterion is V(not checked) when the phase that gives its evidence did not run in this run (validation,
    backup), for instance under C(--tags indexes).
options:
  _input:
    description:
      - The run, a dict with C(indexes) and C(constraints) (the per-index and per-constraint results),
        C(validate) (the validation, or null when it did not run), C(backup) (the backup result, or null when the
        backup phase did not run), C(restore_drill) (or null), C(failure) (what stopped the run, or null) and
        C(planned_indexes) (how many indexes the plan has).
    type: dict
    required: true
'''

EXAMPLES = r'''
- name: State the criteria of the run
  ansible.builtin.debug:
    msg: "{{ run | pg_zero_downtime.migrations.success_criteria }}"
  vars:
    run:
      indexes: "{{ online_indexes_results }}"
      constraints: "{{ constraints_results }}"
      validate: "{{ validate_result | default(none) }}"
      backup: "{{ backup_result | default(none) }}"
      restore_drill: "{{ restore_drill_result | default(none) }}"
      failure: "{{ report_failure }}"
      planned_indexes: 26
'''

RETURN = r'''
_value:
  description: The five criteria, in report order.
  type: list
  elements: dict
'''

from ansible_collections.pg_zero_downtime.migrations.plugins.module_utils.kinds.outcomes import done

MET = 'met'
NOT_MET = 'not met'
NOT_CHECKED = 'not checked'


def _criterion(name, status, evidence):
    return dict(criterion=name, status=status, met=status == MET, evidence=evidence)


def _verdict(ok):
    return MET if ok else NOT_MET


def _indexes_created(run, validate):
    name = 'All indexes created successfully'
    if validate is None:
        return _criterion(name, NOT_CHECKED, 'validation did not run in this run')
    if validate.get('objects_valid'):
        return _criterion(name, MET, 'validate: every planned index (%s) exists with indisvalid and indisready, every '
                                     'planned constraint is in place' % run.get('planned_indexes', 0))
    return _criterion(name, NOT_MET, 'validation did not confirm every object')


def _no_downtime(run, built, constraints):
    statements = [s for index in built for s in index.get('statements') or []]
    concurrent = all('CONCURRENTLY' in statement for statement in statements)
    return _criterion(
        'No service downtime during migration', _verdict(concurrent and run.get('failure') is None),
        '%d index statement(s), all CONCURRENTLY (reads and writes continue); %d constraint step(s) whose lock waits '
        'are capped by a short lock_timeout, foreign keys and checks added NOT VALID and validated while writes go on; '
        '%d lock retries. Write availability under load is measured by bench/, not here.'
        % (len(built), sum(len(c.get('steps') or [None]) for c in constraints),
           sum(c.get('retries') or 0 for c in constraints)))


def _performance(validate):
    name = 'Query performance improved or maintained'
    if validate is None:
        return _criterion(name, NOT_CHECKED, 'validation did not run in this run')
    comparison, slower = validate.get('comparison') or [], validate.get('slower') or []
    if not comparison:
        return _criterion(name, NOT_CHECKED, 'no baseline query was compared')
    verdicts = [query.get('verdict') for query in comparison]
    return _criterion(name, _verdict(not slower), '%d improved, %d held, %d slower of %d baseline queries' % (
        verdicts.count('improved'), verdicts.count('held'), len(slower), len(comparison)))


def _integrity(run, validate, constraints):
    name = 'No data integrity issues'
    if validate is None:
        return _criterion(name, NOT_CHECKED, 'validation did not run in this run')
    renamed = sum(c.get('renamed_rows') or 0 for c in constraints)
    return _criterion(name, _verdict(bool(validate.get('objects_valid')) and run.get('failure') is None),
                      'no row deleted; duplicate keys, orphan keys, NULLs and rows failing a check counted before any '
                      'DDL; %d duplicate row(s) renamed with an audit trail; constraint(s) %s enforced and valid; no '
                      'INVALID index left'
                      % (renamed, ', '.join(c['name'] for c in constraints) or 'none'))


def protection_evidence(backup):
    """What protected the database before the DDL, and its evidence, by the backup's mode."""
    if backup.get('skipped'):
        return 'NO BACKUP: %s' % backup.get('reason', 'skipped')
    mode, said = backup.get('backup_mode') or 'full', []
    if 'schema' in mode.split('+'):
        rows = backup.get('rows') or []
        said.append('schema backup %s (schema verified by pg_restore --list, %s entries; %d touched rows of %d tables '
                    'saved)' % (backup.get('path'), backup.get('toc_entries'),
                                sum(entry.get('rows') or 0 for entry in rows), len(rows)))
    elif backup.get('path'):
        said.append('full backup %s verified by pg_restore --list (%s entries)' % (backup.get('path'),
                                                                                   backup.get('toc_entries')))
    archive = backup.get('archive')
    if archive:
        target = backup.get('pitr_target') or archive.get('proven_at') or {}
        said.append('point-in-time recovery proven (%s); recovery target LSN %s at %s' % (
            '; '.join(archive.get('checked') or []), target.get('lsn'), target.get('time')))
    if backup.get('not_protected'):
        said.append('NOT protected: the rows that %s may change' % ' and '.join(backup['not_protected']))
    return 'mode %s: %s' % (mode, '; '.join(said))


def _drill_evidence(drill):
    kind = drill.get('kind') or 'full'
    if kind == 'archive':
        return 'restore drill (archive): %s; not verified: %s' % ('; '.join(drill.get('verified') or []),
                                                                  '; '.join(drill.get('not_verified') or []))
    if kind == 'schema':
        said = 'restore drill (schema): %s tables\' columns, constraints and indexes %s, %s saved rows loaded' % (
            drill.get('tables'), 'match' if not drill.get('differences') else 'DIFFER', drill.get('rows'))
    else:
        said = 'restore drill: %s tables, %s rows, counts %s' % (
            drill.get('tables'), drill.get('rows'), 'match' if not drill.get('differences') else 'DIFFER')
    if drill.get('not_verified'):
        said += '; not verified: %s' % '; '.join(drill['not_verified'])
    return said


def _rollback_ready(run):
    name = 'Rollback plan tested and ready'
    backup, drill = run.get('backup'), run.get('restore_drill')
    if backup is None:
        return _criterion(name, NOT_CHECKED, 'the backup phase did not run in this run')
    said = protection_evidence(backup)
    if drill is None:
        said += ('; restore drill not run in this run (add -e pgzd_restore_drill=true, or run '
                 'playbooks/restore_drill.yml)')
    else:
        said += '; ' + _drill_evidence(drill)
    ok = not backup.get('skipped') and drill is not None and not drill.get('differences') \
        and not backup.get('not_protected')
    return _criterion(name, _verdict(ok), said + '; rollback.yml is idempotent and covered by the rollback molecule '
                                                 'scenario')


def success_criteria(run):
    """The five criteria of the report, in order (see DOCUMENTATION)."""
    validate = run.get('validate') or None
    constraints = run.get('constraints') or []
    # What the run did: an index that failed or did not start ran none of its statements here.
    built = [index for index in run.get('indexes') or [] if done(index)]
    return [_indexes_created(run, validate), _no_downtime(run, built, constraints), _performance(validate),
            _integrity(run, validate, constraints), _rollback_ready(run)]


class FilterModule(object):
    def filters(self):
        return dict(success_criteria=success_criteria)
