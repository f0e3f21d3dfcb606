# -*- coding: utf-8 -*-
"""The execution environment for AWX / AAP: execution-environment.yml and meta/execution-environment.yml.

No container engine and no database. The build context is made as execution-environment.yml's header says
(the collection tarball of this checkout, then `ansible-builder create`), in a scratch directory. The image
build's builder stage finds the Python and system requirements by running the introspection script over the
installed collections; the same script, taken from the generated context with the same options, runs here
over the collection as `ansible-galaxy collection install` lays it out from that tarball.
"""

import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest
import yaml

import helpers

BIN_DIR = os.path.dirname(sys.executable)
ANSIBLE_BUILDER = os.path.join(BIN_DIR, 'ansible-builder')
ANSIBLE_GALAXY = os.path.join(BIN_DIR, 'ansible-galaxy')
EE_DEFINITION = os.path.join(helpers.REPO_ROOT, 'execution-environment.yml')
COMMUNITY_POSTGRESQL = os.path.join(helpers.REPO_ROOT, 'collections', 'ansible_collections', 'community', 'postgresql')
FROM_US = '  # from collection pg_zero_downtime.migrations'


def _load_yaml(path):
    with open(path) as handle:
        return yaml.safe_load(handle)


def _read(path):
    with open(path) as handle:
        return handle.read()


def _pins(path):
    """{lower-case name: requirement} of a pip requirements file."""
    pins = {}
    for line in _read(path).splitlines():
        line = line.split('#', 1)[0].strip()
        if line:
            pins[re.split(r'[<>=!~\[; ]', line, maxsplit=1)[0].lower()] = line
    return pins


def _sha256(path):
    with open(path, 'rb') as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def _run(argv, cwd, **ansible_settings):
    # Nothing of the checkout's Ansible settings: with its ansible.cfg (make exports ANSIBLE_CONFIG), ansible-galaxy
    # finds the collection already installed through the checkout's link and installs nothing into the folder.
    env = dict((name, value) for name, value in os.environ.items() if not name.startswith('ANSIBLE_'))
    env.update(ansible_settings)
    done = subprocess.run([str(arg) for arg in argv], cwd=str(cwd), env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, '%s failed (rc %s):\n%s\n%s' % (
        ' '.join(str(arg) for arg in argv), done.returncode, done.stdout[-3000:], done.stderr[-3000:])
    return done


def _stages(containerfile):
    """{stage name: its lines} of a multi-stage Containerfile."""
    stages, name = {}, None
    for line in containerfile.splitlines():
        match = re.match(r'FROM \S+ AS (\w+)$', line)
        if match:
            name = match.group(1)
            stages[name] = []
        elif name:
            stages[name].append(line)
    return stages


def _arg(containerfile, name):
    match = re.search(r'^ARG %s="([^"]*)"$' % name, containerfile, re.M)
    assert match, 'the Containerfile declares no ARG %s' % name
    return match.group(1)


def _index(lines, fragment):
    found = [number for number, line in enumerate(lines) if fragment in line]
    assert found, '%r is not in:\n%s' % (fragment, '\n'.join(lines))
    return found[0]


@pytest.fixture(scope='module')
def built(tmp_path_factory):
    """The build context of execution-environment.yml and the collection tarball it installs."""
    if not os.path.exists(ANSIBLE_BUILDER):
        pytest.skip('ansible-builder is not installed beside %s (requirements.txt pins it)' % sys.executable)
    work = tmp_path_factory.mktemp('ee')
    # additional_build_files are relative to the definition: a copy beside a fresh tarball leaves the checkout alone.
    shutil.copy(EE_DEFINITION, str(work / 'execution-environment.yml'))
    output = work / 'artifacts' / 'collection'
    _run([ANSIBLE_GALAXY, 'collection', 'build', helpers.REPO_ROOT, '--force', '--output-path', output], cwd=work)
    tarballs = sorted(os.listdir(str(output)))
    assert len(tarballs) == 1, tarballs
    _run([ANSIBLE_BUILDER, 'create', '-f', 'execution-environment.yml', '-c', 'context', '--output-filename',
          'Containerfile'], cwd=work)
    context = work / 'context'
    return dict(work=work, context=context, tarball=output / tarballs[0],
                definition=_load_yaml(str(work / 'execution-environment.yml')),
                containerfile=_read(str(context / 'Containerfile')))


def _introspect(built, folder, out):
    """Runs the builder stage's introspection, as the Containerfile words it, over folder/ansible_collections."""
    lines = [line for line in built['containerfile'].splitlines() if 'introspect.py introspect' in line]
    assert len(lines) == 1, lines
    argv = shlex.split(lines[0])[1:]  # after RUN: $PYCMD /output/scripts/introspect.py introspect --...
    assert argv[:3] == ['$PYCMD', '/output/scripts/introspect.py', 'introspect'], argv
    script = built['context'] / '_build' / 'scripts' / 'introspect.py'
    options = [option.replace('/tmp/src/', str(out) + os.sep) for option in argv[3:]]
    # The builder stage runs it in WORKDIR /build, where exclude-requirements.txt was copied from _build.
    _run([sys.executable, script, 'introspect', folder] + options, cwd=built['context'] / '_build')
    # A file is written only when some collection declares something.
    return tuple(_read(str(out / name)).splitlines() if (out / name).exists() else []
                 for name in ('requirements.txt', 'bindep.txt'))


@pytest.fixture(scope='module')
def introspected(built):
    """(pip lines, bindep lines) the image build would install: our collection, installed from its tarball,
    and community.postgresql when scripts/bootstrap has installed it into collections/."""
    folder = built['work'] / 'installed'
    # Only the folder as collections path, and --force: a copy already installed where the machine's defaults
    # look (~/.ansible/collections) would otherwise make ansible-galaxy install nothing here ("Nothing to do").
    _run([ANSIBLE_GALAXY, 'collection', 'install', '--offline', '--no-deps', '--force', '-p', folder,
          built['tarball']], cwd=built['work'], ANSIBLE_COLLECTIONS_PATH=str(folder))
    assert (folder / 'ansible_collections' / 'pg_zero_downtime' / 'migrations' / 'MANIFEST.json').is_file(), (
        'ansible-galaxy did not install the tarball into %s' % folder)
    with_community = os.path.isfile(os.path.join(COMMUNITY_POSTGRESQL, 'MANIFEST.json'))
    if with_community:
        namespace = folder / 'ansible_collections' / 'community'
        namespace.mkdir(exist_ok=True)
        os.symlink(COMMUNITY_POSTGRESQL, str(namespace / 'postgresql'))
    out = built['work'] / 'introspected'
    pip_lines, bindep_lines = _introspect(built, folder, out)
    return dict(pip=pip_lines, bindep=bindep_lines, with_community=with_community)


def test_the_image_starts_from_the_definitions_base_image_with_python_3_11_or_later(built):
    containerfile = built['containerfile']
    base_image = built['definition']['images']['base_image']['name']
    assert base_image == 'quay.io/centos/centos:stream9', (
        'the postgresql:15 module stream and the python3.11 RPM are EL 9\'s: check them for %s' % base_image)
    assert _arg(containerfile, 'EE_BASE_IMAGE') == base_image
    assert 'FROM $EE_BASE_IMAGE AS base' in containerfile.splitlines()
    # ansible-core 2.19 runs on Python 3.11 or later only; the builder installs everything with PYCMD.
    pycmd = _arg(containerfile, 'PYCMD')
    assert re.fullmatch(r'/usr/bin/python3\.(\d+)', pycmd) and int(pycmd.rsplit('.', 1)[1]) >= 11, pycmd
    assert _arg(containerfile, 'PYPKG') == os.path.basename(pycmd)


def test_the_image_installs_the_ansible_core_of_requirements_txt_and_ansible_runner(built):
    refs = _arg(built['containerfile'], 'ANSIBLE_INSTALL_REFS').split()
    # The ansible-core of the laptops and CI (requirements.txt pins 2.19.14) runs in AWX too.
    ansible_core = _pins(os.path.join(helpers.REPO_ROOT, 'requirements.txt'))['ansible-core']
    assert ansible_core in refs, refs
    assert [ref for ref in refs if ref.startswith('ansible-runner==')], refs
    stages = _stages(built['containerfile'])
    assert 'RUN $PYCMD -m pip install --no-cache-dir $ANSIBLE_INSTALL_REFS' in stages['base']
    assert 'RUN /output/scripts/check_ansible $PYCMD' in stages['final']


def test_postgresql_15_stream_is_enabled_in_the_base_and_the_client_checked_in_the_final_image(built):
    stages = _stages(built['containerfile'])
    # Every later stage starts from base, so the final stage's dnf install of "postgresql" takes 15.
    assert 'RUN $PKGMGR module enable -y postgresql:15' in stages['base']
    final = stages['final']
    installed = _index(final, '/output/scripts/install-from-bindep')
    assert _index(final, r"grep -E '^pg_dump \(PostgreSQL\) 15\.'") > installed
    assert _index(final, "$PYCMD -c 'import psycopg2, pglast'") > installed


def test_galaxy_requirements_install_this_checkouts_collection_and_community_postgresql_4_2_0(built):
    build_dir = built['context'] / '_build'
    collections = {entry['name']: entry for entry in _load_yaml(str(build_dir / 'requirements.yml'))['collections']}
    assert set(collections) == {'community.postgresql', 'pg_zero_downtime.migrations'}, collections
    assert str(collections['community.postgresql']['version']) == '4.2.0'
    repo_requirements = _load_yaml(os.path.join(helpers.REPO_ROOT, 'requirements.yml'))['collections']
    assert [str(entry['version']) for entry in repo_requirements
            if entry['name'] == 'community.postgresql'] == ['4.2.0'], 'requirements.yml pins another version'
    ours = collections['pg_zero_downtime.migrations']
    assert ours['type'] == 'file'
    # The galaxy stage copies _build to /build and installs from there.
    copied = build_dir / ours['source']
    assert copied.is_file(), '%s is not in the build context' % ours['source']
    assert _sha256(str(copied)) == _sha256(str(built['tarball'])), 'the context holds another tarball than the checkout'


def test_the_tarball_named_in_the_definition_is_the_one_galaxy_yml_builds():
    galaxy = _load_yaml(os.path.join(helpers.REPO_ROOT, 'galaxy.yml'))
    expected = '%s-%s-%s.tar.gz' % (galaxy['namespace'], galaxy['name'], galaxy['version'])
    definition = _load_yaml(EE_DEFINITION)
    sources = [os.path.basename(entry['src']) for entry in definition['additional_build_files']]
    named = [os.path.basename(entry['source']) for entry in definition['dependencies']['galaxy']['collections']
             if entry['name'] == 'pg_zero_downtime.migrations']
    assert sources == [expected] and named == [expected], (
        'execution-environment.yml names %s and %s; galaxy.yml builds %s: give both the version of galaxy.yml'
        % (sources, named, expected))


def test_the_ee_python_requirements_are_the_pins_of_requirements_txt():
    ee_pins = _pins(os.path.join(helpers.REPO_ROOT, 'meta', 'ee-requirements.txt'))
    assert {'psycopg2-binary', 'pglast'} <= set(ee_pins), ee_pins
    dev_pins = _pins(os.path.join(helpers.REPO_ROOT, 'requirements.txt'))
    for name, requirement in ee_pins.items():
        assert '==' in requirement, requirement
        assert dev_pins.get(name) == requirement, 'meta/ee-requirements.txt has %s, requirements.txt %s' % (
            requirement, dev_pins.get(name))


def test_introspection_of_the_installed_collection_finds_its_python_and_system_requirements(introspected):
    # Found only through meta/execution-environment.yml in the installed artifact: a build_ignore that drops
    # meta/ee-*.txt, or a missing meta file (the builder then looks for requirements.txt at the root), fails here.
    ee_pins = _pins(os.path.join(helpers.REPO_ROOT, 'meta', 'ee-requirements.txt'))
    assert ee_pins['psycopg2-binary'] + FROM_US in introspected['pip'], introspected['pip']
    assert ee_pins['pglast'] + FROM_US in introspected['pip'], introspected['pip']
    assert 'postgresql [platform:rpm]' + FROM_US in introspected['bindep'], introspected['bindep']
    assert 'postgresql-client-15 [platform:dpkg]' + FROM_US in introspected['bindep'], introspected['bindep']
    development_only = set(_pins(os.path.join(helpers.REPO_ROOT, 'requirements.txt'))) - set(ee_pins)
    leaked = [line for line in introspected['pip'] if line.split()[0].lower() in development_only]
    assert not leaked, 'development tools would be installed into the image: %s' % leaked


def test_bindep_selects_the_postgresql_15_client_on_el9_and_debian(introspected):
    depends = pytest.importorskip('bindep.depends', reason='bindep comes with ansible-builder').Depends(
        '\n'.join(introspected['bindep']) + '\n')
    # The platform profiles bindep itself derives on CentOS Stream 9 and on Debian 12.
    el9 = ['platform:base-py3', 'platform:centos', 'platform:centos-9', 'platform:redhat', 'platform:rpm']
    debian = ['platform:base-py3', 'platform:debian', 'platform:debian-12', 'platform:debian-bookworm', 'platform:dpkg']
    assert [rule[0] for rule in depends.active_rules(el9)] == ['postgresql']
    assert [rule[0] for rule in depends.active_rules(debian)] == ['postgresql-client-15']


def test_community_postgresqls_test_only_requirement_is_left_out(introspected):
    if not introspected['with_community']:
        pytest.skip('community.postgresql is not in collections/ (scripts/bootstrap installs it)')
    # Its requirements.txt lists a test tool; if a release drops it, the exclude in the definition can go too.
    assert 'pytest-mock' in _pins(os.path.join(COMMUNITY_POSTGRESQL, 'requirements.txt'))
    assert 'psycopg2-binary  # from collection community.postgresql' in introspected['pip'], introspected['pip']
    assert not [line for line in introspected['pip'] if line.startswith('pytest-mock')], introspected['pip']
