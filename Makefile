# make run    — set up .venv with the runtime if needed, then run trine --target=all on .trine/data
# make test   — add the tools to .venv if needed, then lint, type-check and run every package's tests
# make unit   — each member's deptry check and tests in its own .venvs/<member> (M=core: one)
# make dist   — wheels of every distribution (and sdists of the members) in dist/ (DIST=dir)
# make setup  — only the runtime: .venv with every member, editable, and the `trine` meta-package
# make dev    — setup, plus the tools of requirements-dev.txt (ruff, mypy, pytest, grpcio-tools...)
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
MEMBERS := proto core transports/inproc transports/grpc transports/tcp plugins/engine plugins/coordinator plugins/gateway sdk/python \
	plugins/admin plugins/metrics plugins/tracing
PYPROJECTS := pyproject.toml $(addsuffix /pyproject.toml,$(MEMBERS)) constraints.txt
RUNTIME_STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.dev-installed

.PHONY: setup dev chromium run test lint typecheck unit envs e2e dist proto bench bench-peers clean

# What running needs and nothing more (no test tools): a fresh .venv in about 35 s instead of 75 s.
# The venv is made without ensurepip (10 s of the old bootstrap) and gets pip from $(PYTHON)'s own
# pip, or from ensurepip when that pip is missing or too old for --python. hatchling and editables,
# the build backend, are installed first so the nine editable installs build without an isolated
# build env each.
setup: $(RUNTIME_STAMP)

$(RUNTIME_STAMP): $(PYPROJECTS)
	test -x $(BIN)/python || $(PYTHON) -m venv --without-pip $(VENV)
	$(BIN)/python -m pip --version >/dev/null 2>&1 \
		|| $(PYTHON) -m pip --python $(BIN)/python install --quiet -c constraints.txt pip \
		|| $(BIN)/python -m ensurepip --upgrade
	$(BIN)/python -m pip install --quiet -c constraints.txt pip hatchling editables
	$(BIN)/python -m pip install --quiet --no-build-isolation -c constraints.txt \
		$(addprefix -e ./,$(MEMBERS)) -e .
	touch $@

# The tools `make test` (lint, typecheck, e2e), `make proto` and the benchmarks use, on top of setup,
# and Debian's Chromium for the console's browser test (tests/test_console.py drives it through
# Playwright, which never downloads a browser of its own).
dev: $(DEV_STAMP) chromium

$(DEV_STAMP): $(RUNTIME_STAMP) requirements-dev.txt
	$(BIN)/python -m pip install --quiet -c constraints.txt -r requirements-dev.txt
	touch $@

CHROMIUM ?= /usr/bin/chromium
chromium:
	@if [ -x $(CHROMIUM) ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian's chromium for tests/test_console.py"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "make dev: $(CHROMIUM) is missing and this is not root: install Debian's chromium" \
			"(sudo apt-get install chromium) or tests/test_console.py fails" >&2; \
	fi

run: setup
	$(BIN)/trine --target=all

lint: dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: dev
	$(BIN)/mypy -p trine_proto -p trine_core -p trine_transport_inproc -p trine_transport_grpc -p trine_transport_tcp -p trine_engine -p trine_coordinator \
		-p trine_gateway -p trine -p trine_admin -p trine_metrics -p trine_tracing

# Each member's tests run in an environment of its own, .venvs/<member path with - for />, holding
# only that member, what it declares (transitively) and the test tools — as a contributor who works
# on one plugin alone has it. Siblings come from .venvs/wheels: editable wheels of every member
# (their code is this checkout's), pinned by .venvs/wheels/constraints.txt, so a trine-* package is
# installed only when a declared dependency names it. Before its tests, deptry checks that the
# member declares every package it imports: in src/ as a dependency, in tests/ as a dependency or
# in the `test` extra. One member: make unit M=plugins/engine.
VENVS := .venvs
WHEELS := $(VENVS)/wheels
M ?= $(MEMBERS)
UNIT_TOOLS := deptry
env_of = $(VENVS)/$(subst /,-,$(1))
dist_of = $(shell sed -n 's/^name = "\(.*\)"$$/\1/p' $(1)/pyproject.toml)
MEMBER_PYPROJECTS := $(addsuffix /pyproject.toml,$(MEMBERS))
DEPTRY_SRC := deptry src --optional-dependencies-dev-groups test
DEPTRY_TESTS := deptry src tests --exclude '(^|/)(\.venv|__pycache__)(/|$$)' \
	--optional-dependencies-dev-groups test --known-first-party tests --ignore DEP002,DEP004

envs: $(foreach m,$(M),$(call env_of,$(m))/.installed)

# .venvs/tools: a current pip (it installs into the member envs, which have none of their own) and
# hatchling, which builds the editable wheels.
TOOLS := $(VENVS)/tools/bin/python
$(VENVS)/tools/.installed: constraints.txt
	test -x $(TOOLS) || $(PYTHON) -m venv $(VENVS)/tools
	$(TOOLS) -m pip install --quiet --disable-pip-version-check -c constraints.txt --upgrade \
		pip hatchling editables
	touch $@

# The editable wheels are rebuilt whenever a member's pyproject.toml changes, but SHA256SUMS (which
# the member envs depend on) changes only when a wheel does: its dependencies or entry points.
$(WHEELS)/SHA256SUMS: $(WHEELS)/.built ;
$(WHEELS)/.built: $(MEMBER_PYPROJECTS) $(VENVS)/tools/.installed
	rm -rf $(WHEELS)/new && mkdir -p $(WHEELS)/new
	set -e; for m in $(MEMBERS); do \
		w=$$(cd $$m && $(CURDIR)/$(TOOLS) -c \
			'import sys; from hatchling.build import build_editable; print(build_editable(sys.argv[1]))' \
			$(CURDIR)/$(WHEELS)/new); \
		echo "$$(echo $${w%%-*} | tr _ -) @ file://$(CURDIR)/$(WHEELS)/$$w" \
			>> $(WHEELS)/new/constraints.txt; \
	done
	cd $(WHEELS)/new && sha256sum *.whl constraints.txt > SHA256SUMS
	if ! cmp -s $(WHEELS)/new/SHA256SUMS $(WHEELS)/SHA256SUMS; then \
		rm -f $(WHEELS)/*.whl && mv $(WHEELS)/new/* $(WHEELS)/; fi
	rm -rf $(WHEELS)/new && touch $@

# Wheels of every distribution (the members and the `trine` meta-package) and sdists of the
# members, built by hatchling in .venvs/tools without fetching anything, into $(DIST) (a folder
# outside the checkout works too: tests/test_dist.py builds into its own). Each pins its siblings
# at ==their version, so `pip install dist/*.whl` installs the runtime, and
# `pip install dist/trine_sdk-*.whl dist/trine_proto-*.whl` the SDK alone. The meta-package has no
# code, hence no sdist. Old trine wheels and sdists in $(DIST) are removed first.
DIST ?= dist
DIST_DIR = $(abspath $(DIST))
dist: $(VENVS)/tools/.installed
	mkdir -p $(DIST_DIR)
	rm -f $(DIST_DIR)/trine-*.whl $(DIST_DIR)/trine_*.whl $(DIST_DIR)/trine-*.tar.gz \
		$(DIST_DIR)/trine_*.tar.gz
	set -e; for m in $(MEMBERS) .; do \
		(cd $$m && $(CURDIR)/$(TOOLS) -c 'import sys; from hatchling.build import build_sdist, \
		build_wheel; print(build_wheel(sys.argv[1])); sys.argv[2] == "." or print(build_sdist(sys.argv[1]))' \
		$(DIST_DIR) $$m); \
	done

define member_env
$(call env_of,$(1))/.installed: $(WHEELS)/SHA256SUMS constraints.txt
	rm -rf $(call env_of,$(1))
	$(PYTHON) -m venv --without-pip $(call env_of,$(1))
	$(TOOLS) -m pip --python $(call env_of,$(1))/bin/python install --quiet \
		--disable-pip-version-check -c constraints.txt -c $(WHEELS)/constraints.txt \
		'$(call dist_of,$(1))[test]' $(UNIT_TOOLS)
	touch $$@
endef
$(foreach m,$(MEMBERS),$(eval $(call member_env,$(m))))

unit: envs
	@failed=; for m in $(M); do \
		echo "== $$m"; bin=$(CURDIR)/$(VENVS)/$$(echo $$m | tr / -)/bin; \
		(cd $$m && $$bin/$(DEPTRY_SRC) && $$bin/$(DEPTRY_TESTS) && $$bin/pytest -q) \
			|| failed="$$failed $$m"; \
	done; \
	if [ -n "$$failed" ]; then echo "== failed:$$failed"; exit 1; fi; echo "== passed: $(M)"

e2e: dev
	$(BIN)/pytest -q tests

test: lint typecheck unit e2e

proto: dev
	PATH=$(CURDIR)/$(BIN):$$PATH proto/generate.sh

# The bench suite: (a) latency and (b) throughput of the `order` workload, (c) fan-out and
# (d) 10,000 sleeping runs, (e) SSE streams held; each in `all` and `split`. Prints tables.
bench: dev
	$(BIN)/python bench/throughput.py --topologies all,split
	$(BIN)/python bench/waits.py --topologies all,split
	$(BIN)/python bench/sse.py --topologies all,split

# trine beside Restate, Temporal and DBOS, same workload, one run: the harness in
# ../shared/bench/peers installs and runs the peers (its README) and trine through
# bench/peer_adapters; bench/peers_table.py adds trine's ratios. PEERS_ARGS passes options on,
# e.g. make bench-peers PEERS_ARGS="--rounds 1".
PEERS ?= restate,temporal,temporal_tuned,dbos,dbos_wal,dbos_pg,peer_adapters.trine_all,peer_adapters.trine_split
PEERS_HARNESS := $(abspath ../shared/bench/peers)
# Not under $(HOME): dbos_pg runs PostgreSQL's initdb as the postgres user, which cannot enter
# root's home (the harness's default, ~/.cache/trine-peers, fails there).
PEERS_HOME ?= /var/tmp/trine-peers
bench-peers: dev
	-PEERS_EXTRA_PATH=$(CURDIR)/bench PEERS_HOME=$(PEERS_HOME) bash $(PEERS_HARNESS)/run_all.sh \
		--peers $(PEERS) $(PEERS_ARGS)
	PYTHONPATH=$(PEERS_HARNESS) PEERS_HOME=$(PEERS_HOME) $(PEERS_HOME)/venv/bin/python bench/peers_table.py

clean:
	rm -rf $(VENV) $(VENVS) .trine dist
