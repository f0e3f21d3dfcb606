# -*- coding: utf-8 -*-
"""plugins/module_utils/prisma/server_proofs.py, its pure part: what an entry becomes once the server proved it, or
could not (the proofs themselves run on a real server: tests/integration/test_prisma_server_proofs.py)."""

import helpers

classes = helpers.load_module_utils('prisma.statement_classes')
proofs = helpers.load_module_utils('prisma.server_proofs')

SQL = 'ALTER TABLE "Job" ADD COLUMN "slug" TEXT DEFAULT util.slug();\n'


def test_a_proven_entry_takes_its_class_and_says_what_proved_it():
    (entry,) = classes.classify(SQL)
    assert entry['class'] == 'refused' and entry['class_if_proven'] == 'catalog' and entry['ack']
    proven = proofs.proven_entry(entry, 'the server says so')
    assert proven['class'] == 'catalog' and proven['proof'] == 'the server says so'
    assert proven['why'] is None and proven['safe_way'] is None
    for gone in ('ack', 'needs_server_proof', 'class_if_proven'):
        assert gone not in proven
    assert 'the server says so' in proven['how']
    assert entry['class'] == 'refused', 'the classifier\'s entry is not changed'


def test_an_unproven_entry_stays_refused_with_the_servers_reasons():
    (entry,) = classes.classify(SQL)
    unproven = proofs.unproven_entry(entry, ['function util.slug() is VOLATILE', 'and more'])
    assert unproven['class'] == 'refused' and unproven['ack'] == entry['ack']
    assert unproven['why'].startswith(entry['why'])
    assert 'function util.slug() is VOLATILE; and more' in unproven['why']
