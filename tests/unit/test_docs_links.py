# -*- coding: utf-8 -*-
"""README.md and docs/*.md: every relative link reaches a file of the checkout, and every anchor a heading of it.

Anchors are GitHub's: the heading in lower case, punctuation other than '-' and '_' dropped, spaces made '-'.
Links inside fenced code blocks and inline code are text, not links.
"""

import glob
import os
import re

import helpers

DOCS = [os.path.join(helpers.REPO_ROOT, 'README.md')] + sorted(
    glob.glob(os.path.join(helpers.REPO_ROOT, 'docs', '*.md')))
LINK = re.compile(r'\[[^\]]*\]\(([^)\s]+)\)')


def github_anchor(heading):
    text = re.sub(r'[^\w\- ]', '', heading.strip().lower())
    return text.replace(' ', '-')


def prose(path):
    """The lines of a Markdown file outside fenced code blocks, inline code removed."""
    lines, fenced = [], False
    with open(path) as handle:
        for line in handle:
            if line.lstrip().startswith('```'):
                fenced = not fenced
                continue
            if not fenced:
                lines.append(re.sub(r'`[^`]*`', '', line))
    return lines


def anchors(path):
    seen, found = {}, set()
    for line in prose(path):
        match = re.match(r'^(#{1,6}) (.*)$', line.rstrip('\n'))
        if match:
            anchor = github_anchor(match.group(2))
            found.add(anchor if anchor not in seen else '%s-%d' % (anchor, seen[anchor]))
            seen[anchor] = seen.get(anchor, 0) + 1
    return found


def links(path):
    return [target for line in prose(path) for target in LINK.findall(line)
            if not re.match(r'^[a-z]+:', target)]


def broken_links(path):
    broken = []
    for target in links(path):
        file_part, _, anchor = target.partition('#')
        resolved = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) if file_part else path
        if not os.path.exists(resolved):
            broken.append('%s: no file %s' % (target, os.path.relpath(resolved, helpers.REPO_ROOT)))
        elif anchor and (not resolved.endswith('.md') or anchor not in anchors(resolved)):
            broken.append('%s: no heading #%s in %s' % (target, anchor, os.path.relpath(resolved, helpers.REPO_ROOT)))
    return broken


def test_the_anchor_rule_is_githubs():
    assert github_anchor('What plan SQL may reference (the trust model)') == (
        'what-plan-sql-may-reference-the-trust-model')
    assert github_anchor('From AWX / Ansible Automation Platform') == 'from-awx--ansible-automation-platform'
    assert github_anchor('Replacing an index (on_mismatch: replace)') == 'replacing-an-index-on_mismatch-replace'


def test_the_checker_finds_a_broken_link_and_a_broken_anchor(tmp_path):
    page = tmp_path / 'page.md'
    page.write_text('# Top\n\n[ok](#top) [gone](missing.md) [nowhere](#no-such-heading)\n'
                    '```sh\n[in code](missing-too.md)\n```\n`[inline](missing-three.md)`\n')
    assert broken_links(str(page)) == ['missing.md: no file %s' % os.path.relpath(
        str(tmp_path / 'missing.md'), helpers.REPO_ROOT), '#no-such-heading: no heading #no-such-heading in %s'
        % os.path.relpath(str(page), helpers.REPO_ROOT)]


def test_every_relative_link_and_anchor_of_the_docs_resolves():
    assert len(DOCS) > 10
    broken = dict((os.path.relpath(path, helpers.REPO_ROOT), broken_links(path)) for path in DOCS)
    assert not any(broken.values()), dict((path, found) for path, found in broken.items() if found)


def test_every_file_of_docs_is_reachable_from_the_readme():
    reached = set(os.path.normpath(os.path.join(helpers.REPO_ROOT, target.partition('#')[0]))
                  for target in links(DOCS[0]) if target.startswith('docs/'))
    for path in glob.glob(os.path.join(helpers.REPO_ROOT, 'docs', '*')):
        assert path in reached, '%s is not linked from README.md' % os.path.relpath(path, helpers.REPO_ROOT)
