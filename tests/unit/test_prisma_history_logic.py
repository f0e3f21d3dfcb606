# -*- coding: utf-8 -*-
"""plugins/module_utils/prisma/prisma_history.py: Prisma's checksum, and what to do with the rows of one migration."""

import hashlib

import pytest

from helpers import load_module_utils

history = load_module_utils('prisma.prisma_history')

SCRIPT = 'CREATE INDEX "Job_createdAt_idx" ON "Job"("createdAt");\n'


def row(id_, checksum=None, finished=True, rolled_back=False, logs=None):
    return dict(id=id_, migration_name='m', checksum=checksum or history.render_checksum(SCRIPT),
                finished_at='2026-01-01' if finished else None, rolled_back_at='2026-01-02' if rolled_back else None,
                logs=logs)


def test_the_checksum_is_the_hex_sha256_of_the_utf8_text():
    assert history.render_checksum('é\n') == hashlib.sha256('é\n'.encode('utf-8')).hexdigest()
    assert len(history.render_checksum('')) == 64


def test_lf_and_crlf_versions_of_a_script_are_the_same_migration():
    accepted = history.accepted_checksums(SCRIPT)
    assert history.render_checksum(SCRIPT.replace('\n', '\r\n')) in accepted
    assert history.accepted_checksums(SCRIPT.replace('\n', '\r\n')) == accepted
    assert history.render_checksum(SCRIPT + ' ') not in accepted


def test_present_records_when_there_is_no_row_and_is_unchanged_when_recorded():
    assert history.decide([], 'present', SCRIPT)['action'] == 'recorded'
    assert history.decide([row('a')], 'present', SCRIPT)['action'] == 'unchanged'
    # A rolled-back attempt does not count as applied.
    decision = history.decide([row('a', rolled_back=True)], 'present', SCRIPT)
    assert decision['action'] == 'recorded' and decision['roll_back'] == []


def test_present_marks_unfinished_attempts_rolled_back_first():
    decision = history.decide([row('failed', finished=False)], 'present', SCRIPT)
    assert decision == dict(action='recorded', roll_back=['failed'], delete=[], kept=[], error=None)


def test_present_refuses_a_record_with_another_checksum():
    decision = history.decide([row('a', checksum='0' * 64)], 'present', SCRIPT)
    assert decision['error'] and 'the file changed after it was applied' in decision['error']
    assert history.render_checksum(SCRIPT) in decision['error']


def test_absent_deletes_only_rows_this_tool_wrote():
    ours = row('ours', logs=history.log_entry('run-1'))
    prismas = row('theirs', logs='')
    decision = history.decide([ours, prismas], 'absent')
    assert decision['action'] == 'removed' and decision['delete'] == ['ours']
    assert [kept['id'] for kept in decision['kept']] == ['theirs']
    assert history.decide([prismas], 'absent')['action'] == 'absent'


@pytest.mark.parametrize('name, fragment', [
    ('', 'empty'), (' x', 'folder name'), ('a/b', 'folder name'), ('a\tb', 'folder name'), ('é' * 101, 'P3010')])
def test_bad_migration_names(name, fragment):
    assert fragment in history.migration_name_error(name)


def test_a_prisma_folder_name_is_fine():
    assert history.migration_name_error('20241125000000_t12_indexes') is None


def test_what_happened_to_the_history_in_one_sentence():
    table = 'public._prisma_migrations'
    assert history.history_summary(dict(action='recorded', table=table, checksum='cafe', rolled_back=['1']), 'm') == (
        'Recorded m as applied in public._prisma_migrations (checksum cafe), after marking 1 failed attempt(s) rolled '
        'back: `prisma migrate deploy` will not run its SQL.')
    assert history.history_summary(dict(action='unchanged', table=table), 'm') == (
        'm is already recorded as applied in public._prisma_migrations.')
    assert history.history_summary(dict(action='removed', table=table), 'm').startswith('Removed the record of m')
    assert history.history_summary(dict(action='absent', table=table), 'm') == (
        'No record of m written by pg-zero-downtime in public._prisma_migrations.')
