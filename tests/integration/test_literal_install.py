# -*- coding: utf-8 -*-
"""docs/install.md, "From an empty directory", followed to the letter.

The commands are read from the document itself: every ```sh block that follows a `<!-- literal-install -->` comment,
in order, run in one bash (`set -euo pipefail`) in an empty temporary directory. Only the block marked
`<!-- literal-install: settings ... -->` is the test's own: where the reader names their checkout and database, the
test names this checkout and a throwaway database of the worker's cluster. Everything else runs as written,
including `pip install ansible==...` from the configured package index into a new virtualenv (about two minutes):
the project's .venv is deliberately not reused, because a newcomer's machine has no .venv, no ansible-core and
none of the checkout's ansible.cfg, and those four missing pieces are what the document exists to supply.

What it proves: the collection built from the checkout and installed from the tarball runs its FQCN playbook, the
database ends with the plan's indexes valid and its constraint validated, the output is Ansible's human output with
the collection's progress lines (an open REPEATABLE READ snapshot makes the first build wait, so there is a line to
see, and is let go once the line shows), and the rerun the document promises changes nothing.
"""

import os
import re
import subprocess
import threading

import pytest

import helpers

pytestmark = pytest.mark.integration

DOC = os.path.join(helpers.REPO_ROOT, 'docs', 'install.md')
SECTION = '## From an empty directory'
DATABASE = 'pgzd_literal'
PLANNED_INDEXES = ('Widget_color_idx', 'Widget_made_at_idx', 'Widget_sku_key')
TIMEOUT = 1500


def literal_blocks(text):
    """(kind, commands) of the marked ```sh blocks of the section, in order: kind 'settings' or 'run'."""
    start = text.index(SECTION)
    following = text.find('\n## ', start + len(SECTION))
    section = text[start:following if following >= 0 else len(text)]
    return [('settings' if marker.startswith(':') and 'settings' in marker else 'run', body)
            for marker, body in re.findall(r'<!-- literal-install([^>]*)-->\n```sh\n(.*?)```', section, re.S)]


def test_the_document_marks_the_settings_and_the_steps():
    blocks = literal_blocks(open(DOC).read())
    assert [kind for kind, _ in blocks][0] == 'settings' and [kind for kind, _ in blocks].count('settings') == 1
    commands = ''.join(body for _, body in blocks)
    for step in ('python3 -m venv venv', 'pip install ansible==', 'cat > ansible.cfg',
                 'collection build "$CHECKOUT"', 'collection install', 'ansible_python_interpreter',
                 'pg_zero_downtime.migrations.migrate'):
        assert step in commands, step


@pytest.fixture
def widgets(pg_cluster, db_session):
    helpers.query(db_session, 'DROP DATABASE IF EXISTS %s WITH (FORCE)' % DATABASE)
    helpers.query(db_session, 'CREATE DATABASE %s' % DATABASE)
    own = helpers.connect(dict(pg_cluster, dbname=DATABASE))
    helpers.query(own, 'CREATE TABLE "Widget" (id serial PRIMARY KEY, sku text NOT NULL, color text, '
                       'made_at timestamptz NOT NULL DEFAULT now())')
    helpers.query(own, "INSERT INTO \"Widget\" (sku, color) SELECT 'sku-' || g, (ARRAY['red','blue'])[1 + g % 2] "
                       "FROM generate_series(1, 20000) AS g")
    yield own
    own.close()
    helpers.query(db_session, 'DROP DATABASE IF EXISTS %s WITH (FORCE)' % DATABASE)


def _newcomer_env():
    """A shell as a newcomer has it: no Ansible settings, and none of the checkout's virtualenv on PATH."""
    env = dict((name, value) for name, value in os.environ.items()
               if not name.startswith(('ANSIBLE_', 'PG', 'VIRTUAL_ENV', 'PYTHON')))
    env['PATH'] = os.pathsep.join(part for part in env.get('PATH', '').split(os.pathsep)
                                  if part and not part.startswith(helpers.REPO_ROOT))
    # A newcomer's terminal shows each line as it is printed; through the test's pipe Python would hold them in a
    # block buffer, and the snapshot below is let go only once a progress line shows.
    env['PYTHONUNBUFFERED'] = '1'
    return env


def test_the_install_of_docs_install_md_works_literally_from_an_empty_directory(pg_cluster, widgets, tmp_path):
    settings = ('CHECKOUT=%s\nexport PGHOST=%s PGPORT=%s PGUSER=%s PGDATABASE=%s\nexport PGPASSWORD=%s\n'
                % (helpers.REPO_ROOT, pg_cluster['host'], pg_cluster['port'], pg_cluster['user'], DATABASE,
                   pg_cluster['password']))
    blocks = literal_blocks(open(DOC).read())
    script = 'set -euo pipefail\n' + ''.join(settings if kind == 'settings' else body for kind, body in blocks)
    # The document's own promise: run the migration again, nothing changes.
    script += blocks[-1][1].strip().splitlines()[-1] + '\n'
    workdir = tmp_path / 'empty'
    workdir.mkdir()
    snapshot = helpers.Snapshot(pg_cluster, DATABASE, timeout=TIMEOUT / 2, application_name='pgzd-literal',
                                sql='SELECT count(*) FROM "Widget"')
    lines = []
    try:
        process = subprocess.Popen(['bash', '-c', script], cwd=str(workdir), env=_newcomer_env(), text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        killer = threading.Timer(TIMEOUT, process.kill)
        killer.daemon = True
        killer.start()
        for line in process.stdout:
            lines.append(line)
            if 'progress:' in line:
                snapshot.release()
        process.wait()
        killer.cancel()
    finally:
        snapshot.release()
    output = ''.join(lines)
    assert process.returncode == 0, output[-8000:]

    for name in PLANNED_INDEXES:
        assert helpers.index_info(widgets, name)['valid'], name
    assert helpers.query(widgets, "SELECT contype, convalidated FROM pg_catalog.pg_constraint "
                                  "WHERE conname = 'Widget_sku_key'") == [('u', True)]
    # Ansible's human output, with the collection's progress lines, not JSON-escaped results.
    assert 'TASK [pg_zero_downtime.migrations.preflight : ' in output, output[-4000:]
    progress = [line for line in lines if re.match(r'^\s+\[shop_db\] progress: Widget_\w+ on public\.Widget: ', line)]
    assert any('waiting for old snapshots' in line for line in progress), output[-6000:]
    # The check run wrote its planned SQL, the real run its report, both under the directory's own artifacts/.
    runs = os.listdir(str(workdir / 'artifacts' / 'runs'))
    assert any(os.path.exists(str(workdir / 'artifacts' / 'runs' / run / 'planned-migrate.sql')) for run in runs)
    assert any(os.path.exists(str(workdir / 'artifacts' / 'runs' / run / 'report.json')) for run in runs)
    recaps = re.findall(r'shop_db\s+: ok=\d+\s+changed=(\d+)', output)
    assert len(recaps) == 3 and recaps[-1] == '0', recaps
