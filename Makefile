# make run   — set up .venv if needed, then run trine --target=all on .trine/data
# make test  — set up .venv if needed, then lint, type-check and run every package's tests
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
MEMBERS := proto core transports/inproc transports/grpc plugins/engine plugins/coordinator plugins/gateway sdk/python
STAMP := $(VENV)/.installed
PYPROJECTS := pyproject.toml $(addsuffix /pyproject.toml,$(MEMBERS)) constraints.txt requirements-dev.txt

.PHONY: setup run test lint typecheck unit e2e proto bench bench-peers clean

setup: $(STAMP)

$(STAMP): $(PYPROJECTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -r requirements-dev.txt \
		$(addprefix -e ./,$(MEMBERS)) -e .
	touch $(STAMP)

run: setup
	$(BIN)/trine --target=all

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy -p trine_core -p trine_transport_inproc -p trine_transport_grpc -p trine_engine -p trine_coordinator \
		-p trine_gateway -p trine

# Each member's tests run from its own folder, as a contributor of that plugin would run them.
unit: setup
	set -e; for m in $(MEMBERS); do echo "== $$m"; (cd $$m && $(CURDIR)/$(BIN)/pytest -q); done

e2e: setup
	$(BIN)/pytest -q tests

test: lint typecheck unit e2e

proto: setup
	PATH=$(CURDIR)/$(BIN):$$PATH proto/generate.sh

# The bench suite: (a) latency and (b) throughput of the `order` workload, (c) fan-out and
# (d) 10,000 sleeping runs, (e) SSE streams held; each in `all` and `split`. Prints tables.
bench: setup
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
bench-peers: setup
	-PEERS_EXTRA_PATH=$(CURDIR)/bench PEERS_HOME=$(PEERS_HOME) bash $(PEERS_HARNESS)/run_all.sh \
		--peers $(PEERS) $(PEERS_ARGS)
	PYTHONPATH=$(PEERS_HARNESS) PEERS_HOME=$(PEERS_HOME) $(PEERS_HOME)/venv/bin/python bench/peers_table.py

clean:
	rm -rf $(VENV) .trine
