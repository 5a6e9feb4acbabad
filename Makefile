# make run   — set up .venv if needed, then run trine --target=all on .trine/data
# make test  — set up .venv if needed, then lint, type-check and run every package's tests
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
MEMBERS := proto core transports/inproc transports/grpc plugins/engine plugins/coordinator plugins/gateway sdk/python
STAMP := $(VENV)/.installed
PYPROJECTS := pyproject.toml $(addsuffix /pyproject.toml,$(MEMBERS)) constraints.txt requirements-dev.txt

.PHONY: setup run test lint typecheck unit e2e proto bench clean

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

bench: setup
	$(BIN)/python bench/throughput.py

clean:
	rm -rf $(VENV) .trine
