# The two commands of README.md: `make run` and `make test`. Both install what they need first.
SHELL := /bin/bash
VENV := .venv/bin
export PATH := $(CURDIR)/.venv/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg

.PHONY: run test bootstrap cluster migrate rollback lint sanity unit integration molecule molecule-beside bench bench-load bench-waits bench-constraints bench-deadlocks bench-prisma clean

## run: start the local cluster with the T12 schema and sample data, then migrate it (the main job)
run: bootstrap cluster migrate

## test: every test: lint, ansible-test sanity, unit, then integration against real clusters with molecule beside it
test: bootstrap lint sanity unit
	@$(MAKE) --no-print-directory -j2 integration molecule-beside

bootstrap:
	@scripts/bootstrap

cluster:
	ansible-playbook playbooks/local_cluster.yml

# On the throwaway local cluster the restore drill runs too, so the report can mark every criterion.
migrate:
	ansible-playbook playbooks/migrate.yml -e pgzd_restore_drill=true

rollback:
	ansible-playbook playbooks/rollback.yml

# antsibull-changelog lint: the changelog fragments (changelogs/fragments/README.md); scripts/lint_docs: every
# plugin's and role's documentation as the Ansible docsite renders it (antsibull-docs lint-collection-docs).
lint:
	yamllint --strict .
	ansible-lint --profile production --offline
	antsibull-changelog lint
	scripts/lint_docs

# ansible-test sanity (validate-modules, yamllint of the docs, compile, import, pep8, ansible-doc, ...) on the
# collection as built; pylint: scripts/sanity --test pylint.
sanity:
	scripts/sanity

unit:
	python -m pytest tests/unit -q

# TEST_WORKERS pytest-xdist workers, each with a cluster of its own (tests/conftest.py); one line per test as it
# ends (a long run shows where it is), the 15 slowest tests and the time of each file at the end. Worker n uses
# port PGZD_TEST_PORT + n: a third worker would take 55436, molecule's in make test (PGZD_MOLECULE_ROLLBACK_PORT).
TEST_WORKERS ?= 2
integration:
	python -m pytest tests/integration -v -n $(TEST_WORKERS) --durations=15

molecule:
	molecule test --all

# molecule during the integration tests (make test): its clusters (55433, 55436) and folders are not theirs, and
# alone it keeps one core of two busy (208 s of CPU in 208 s). Its step lines show as they come, prefixed; its
# whole output goes to .local/molecule.log, and its end is printed when it fails.
molecule-beside:
	@mkdir -p .local
	@NO_COLOR=1 PYTHONUNBUFFERED=1 molecule test --all 2>&1 | tee .local/molecule.log \
	  | grep --line-buffered -E '\[[a-z_-]+ > [a-z_-]+\] Execut' | sed -u 's/^/[molecule] /'; \
	status=$${PIPESTATUS[0]}; if [ "$$status" != 0 ]; then tail -n 300 .local/molecule.log; \
	  echo "[molecule] failed (rc $$status); its whole output: .local/molecule.log"; exit 1; fi

## bench: the orchestration targets of issue 14 (task headers, no-op and tagged reruns, first --tags indexes vs psql -f)
bench: bootstrap
	python bench/index_phase_timing.py

## bench-load: zero downtime under a concurrent write load (issue 5), scale 1; see bench/README.md
bench-load: bootstrap
	python bench/zero_downtime.py --scale 1

## bench-waits: a 120 s snapshot during a build, scale 3 (issue 13): built once, no retry; see bench/README.md
bench-waits: bootstrap
	python bench/build_waits.py --scale 3

## bench-constraints: a foreign key, a NOT NULL and a check under the write load, scale 10, 3 rounds (issue 15)
bench-constraints: bootstrap
	python bench/constraints_under_load.py --scale 10 --repeat 3

## bench-deadlocks: a foreign key migrated and rolled back 10 times under parent-then-child writes, scale 1 (issue 21)
bench-deadlocks: bootstrap
	python bench/deadlocks_under_load.py --scale 1 --repeat 10

## bench-prisma: the Prisma history deployed under the write load, migrate.yml against prisma migrate deploy, scale 5,
## 3 rounds (issue 23)
bench-prisma: bootstrap
	python bench/prisma_history_under_load.py --scale 5 --repeat 3

## clean: stop and delete the local cluster
clean:
	-ansible-playbook playbooks/local_cluster.yml -e local_cluster_state=absent
