# -*- coding: utf-8 -*-
"""The collection as a pipeline consumes it: built with ansible-galaxy, installed offline with its dependency
into an empty collections path, and used from a directory outside the checkout by FQCN only.

The user's side has no ansible.cfg, no roles path and no library of ours: only ANSIBLE_COLLECTIONS_PATH. Its
database, table and plan are its own, on the real test cluster.
"""

import glob
import json
import os
import subprocess

import psycopg2
import pytest
import yaml

import helpers

DATABASE = 'pgzd_installed'
GALAXY = helpers._tool('ansible-galaxy')
COMMUNITY_POSTGRESQL = os.path.join(helpers.COLLECTIONS_DIR, 'ansible_collections', 'community', 'postgresql')


def _run(argv, cwd, env, timeout=600):
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _user_env(collections_path, workdir):
    """What a pipeline's job has: the installed collections and nothing of the checkout.

    PWD stays the test's own (the checkout): what lands in the working directory must follow the process's real
    one, as under ansible-runner, which starts ansible-playbook in the project directory without changing PWD.
    """
    env = dict((name, value) for name, value in os.environ.items() if not name.startswith('ANSIBLE_'))
    env.update(ANSIBLE_COLLECTIONS_PATH=collections_path, ANSIBLE_NOCOLOR='1', ANSIBLE_FORCE_COLOR='0',
               ANSIBLE_RETRY_FILES_ENABLED='0', ANSIBLE_GATHERING='explicit',
               ANSIBLE_LOCAL_TEMP=os.path.join(workdir, '.ansible-tmp'), PYTHONDONTWRITEBYTECODE='1',
               PATH=os.pathsep.join([helpers.VENV_BIN, env.get('PATH', '')]))
    return env


@pytest.fixture(scope='module')
def installed(tmp_path_factory, pg_cluster, db_session):
    """(collections path, user directory, env): the built tarball installed offline, and the user's own database."""
    root = tmp_path_factory.mktemp('collection')
    build = _run([GALAXY, 'collection', 'build', helpers.REPO_ROOT, '--output-path', str(root / 'dist')],
                 cwd=str(root), env=_user_env('', str(root)))
    assert build.returncode == 0, build.stdout + build.stderr
    tarballs = glob.glob(str(root / 'dist' / 'pg_zero_downtime-migrations-*.tar.gz'))
    assert len(tarballs) == 1, tarballs
    collections = str(root / 'collections')
    install = _run([GALAXY, 'collection', 'install', '--offline', tarballs[0], COMMUNITY_POSTGRESQL, '-p', collections],
                   cwd=str(root), env=_user_env(collections, str(root)))
    assert install.returncode == 0, install.stdout + install.stderr

    helpers.query(db_session, 'DROP DATABASE IF EXISTS %s' % DATABASE)
    helpers.query(db_session, 'CREATE DATABASE %s' % DATABASE)
    own = psycopg2.connect(host=pg_cluster['host'], port=pg_cluster['port'], user=pg_cluster['user'],
                           password=pg_cluster['password'], dbname=DATABASE)
    own.autocommit = True
    helpers.query(own, 'CREATE TABLE "Widget" (id serial PRIMARY KEY, sku text NOT NULL, color text, '
                       'made_at timestamptz NOT NULL DEFAULT now())')
    helpers.query(own, "INSERT INTO \"Widget\" (sku, color) SELECT 'sku-' || g, (ARRAY['red','blue'])[1 + g % 2] "
                       "FROM generate_series(1, 3000) AS g")
    workdir = root / 'pipeline'
    workdir.mkdir()
    (workdir / 'inventory.yml').write_text(yaml.safe_dump({'all': {'hosts': {'widgets': {
        'ansible_connection': 'local', 'ansible_python_interpreter': '{{ ansible_playbook_python }}',
        'pg_host': pg_cluster['host'], 'pg_port': pg_cluster['port'], 'pg_user': pg_cluster['user'],
        'pg_password': pg_cluster['password'], 'pg_database': DATABASE}}}}))
    yield collections, str(workdir), _user_env(collections, str(workdir)), own
    own.close()
    helpers.query(db_session, 'DROP DATABASE IF EXISTS %s WITH (FORCE)' % DATABASE)


def test_the_tarball_holds_the_collection_and_not_the_checkout(installed):
    collections = installed[0]
    root = os.path.join(collections, 'ansible_collections', 'pg_zero_downtime', 'migrations')
    with open(os.path.join(root, 'MANIFEST.json')) as handle:
        info = json.load(handle)['collection_info']
    assert (info['namespace'], info['name']) == ('pg_zero_downtime', 'migrations')
    assert info['dependencies'] == {'community.postgresql': '>=4.2.0,<5.0.0'}
    for present in ('meta/runtime.yml', 'playbooks/migrate.yml', 'playbooks/rollback.yml', 'roles/online_indexes',
                    'plugins/modules/postgresql_online_index.py', 'plugins/module_utils/kinds/online_index.py'):
        assert os.path.exists(os.path.join(root, present)), present
    for absent in ('.venv', 'collections', 'tests', 'bench', 'scripts', 'molecule', 'artifacts', 'fixtures', 'plans',
                   'inventories', 'ansible.cfg', 'Makefile', 'changelogs/fragments',
                   # The throwaway local cluster and its replica are the tests' own.
                   'roles/local_cluster', 'roles/local_replica', 'playbooks/local_cluster.yml',
                   'playbooks/local_replica.yml'):
        assert not os.path.exists(os.path.join(root, absent)), absent
    # community.postgresql came with it, from the local source given beside the tarball.
    assert os.path.exists(os.path.join(collections, 'ansible_collections', 'community', 'postgresql', 'MANIFEST.json'))


def test_every_installed_playbook_finds_what_it_imports(installed):
    """What the build leaves out (build_ignore) is nothing a shipped playbook needs: each one, by its full name,
    loads with every role and file it imports."""
    collections, workdir, env, own = installed
    folder = os.path.join(collections, 'ansible_collections', 'pg_zero_downtime', 'migrations', 'playbooks')
    names = sorted(name[:-len('.yml')] for name in os.listdir(folder) if name.endswith('.yml'))
    assert 'migrate' in names and 'rollback' in names, names
    argv = [helpers._tool('ansible-playbook'), '-i', 'inventory.yml', '--syntax-check']
    check = _run(argv + ['pg_zero_downtime.migrations.%s' % name for name in names], cwd=workdir, env=env)
    assert check.returncode == 0, check.stdout[-4000:] + check.stderr[-4000:]


def test_the_dependency_is_declared_so_an_offline_install_without_it_fails(installed, tmp_path):
    tarball = glob.glob(os.path.join(os.path.dirname(installed[0]), 'dist', '*.tar.gz'))[0]
    alone = _run([GALAXY, 'collection', 'install', '--offline', tarball, '-p', str(tmp_path / 'alone')],
                 cwd=str(tmp_path), env=_user_env(str(tmp_path / 'alone'), str(tmp_path)))
    assert alone.returncode != 0
    assert 'community.postgresql' in alone.stdout + alone.stderr


def test_a_pipeline_applies_the_per_table_role_by_fqcn(installed):
    collections, workdir, env, own = installed
    playbook = os.path.join(workdir, 'widgets_indexes.yml')
    with open(playbook, 'w') as handle:
        yaml.safe_dump([{
            'name': 'Index the widgets online',
            'hosts': 'widgets',
            'gather_facts': False,
            # The connection once, for every module of the collection (its action group).
            'module_defaults': {'group/pg_zero_downtime.migrations.postgresql': {
                'login_host': '{{ pg_host }}', 'login_port': '{{ pg_port }}', 'login_user': '{{ pg_user }}',
                'login_password': '{{ pg_password }}', 'login_db': '{{ pg_database }}'}},
            'tasks': [{
                'name': 'Build the widget indexes concurrently',
                'ansible.builtin.include_role': {'name': 'pg_zero_downtime.migrations.online_indexes'},
                'vars': {'online_indexes_table': 'Widget', 'online_indexes_specs': [
                    {'name': 'Widget_sku_key', 'columns': ['sku'], 'unique': True},
                    {'name': 'Widget_color_idx', 'columns': ['color']}]},
            }],
        }], handle, sort_keys=False)
    first = _run([helpers._tool('ansible-playbook'), '-i', 'inventory.yml', playbook], cwd=workdir, env=env)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
    assert helpers.index_info(own, 'Widget_sku_key')['valid']
    assert helpers.index_info(own, 'Widget_color_idx')['valid']
    again = _run([helpers._tool('ansible-playbook'), '-i', 'inventory.yml', playbook], cwd=workdir, env=env)
    assert again.returncode == 0, again.stdout[-4000:]
    assert 'changed=0' in again.stdout, again.stdout[-3000:]
    for name in ('Widget_sku_key', 'Widget_color_idx'):
        helpers.query(own, 'DROP INDEX "%s"' % name)


def test_the_collections_migrate_playbook_applies_a_plan_of_its_own(installed):
    collections, workdir, env, own = installed
    with open(os.path.join(workdir, 'widgets.yml'), 'w') as handle:
        yaml.safe_dump({
            'name': 'widgets',
            'description': 'The widget shop indexes its SKUs',
            'tables': [{'name': 'Widget', 'indexes': [{'name': 'Widget_made_at_idx', 'columns': ['made_at']}]}],
            'constraints': [{'name': 'Widget_sku_key', 'table': 'Widget', 'type': 'unique', 'columns': ['sku']}],
        }, handle, sort_keys=False)
    argv = [helpers._tool('ansible-playbook'), '-i', 'inventory.yml', 'pg_zero_downtime.migrations.migrate',
            '-e', 'pgzd_plan=widgets.yml']
    run = _run(argv, cwd=workdir, env=env, timeout=900)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert helpers.index_info(own, 'Widget_made_at_idx')['valid']
    assert helpers.query(own, "SELECT contype, convalidated FROM pg_constraint WHERE conname = 'Widget_sku_key'") \
        == [('u', True)]
    # Its files are where the pipeline runs, not inside the installed collection.
    reports = glob.glob(os.path.join(workdir, 'artifacts', 'runs', 'widgets-*', 'report.json'))
    assert len(reports) == 1, os.listdir(workdir)
    with open(reports[0]) as handle:
        assert json.load(handle)['plan'] == 'widgets'
    assert glob.glob(os.path.join(workdir, 'artifacts', 'backups', DATABASE, '*'))
    installed_root = os.path.join(collections, 'ansible_collections', 'pg_zero_downtime', 'migrations')
    assert not os.path.exists(os.path.join(installed_root, 'artifacts'))

    rerun = _run(argv, cwd=workdir, env=env, timeout=900)
    assert rerun.returncode == 0, rerun.stdout[-4000:]
    assert 'changed=0' in rerun.stdout, rerun.stdout[-3000:]


def test_without_a_plan_the_installed_playbook_says_what_to_pass(installed):
    collections, workdir, env, own = installed
    run = _run([helpers._tool('ansible-playbook'), '-i', 'inventory.yml', 'pg_zero_downtime.migrations.migrate'],
               cwd=workdir, env=env)
    assert run.returncode != 0
    assert 'No migration plan given; nothing was done. Pass -e pgzd_plan=' in run.stdout, run.stdout[-3000:]
