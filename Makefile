# The two set-up commands are `make demo` and `make test`; everything else is a convenience.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test lint unit neo4j bench bench-gpt2 bench-gpu web-assets clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing circuitcat and its dependencies into $(VENV) (log: $(VENV)/install.log)"
	@( $(BIN)/python -m pip install --upgrade pip && $(BIN)/python -m pip install -e ".[dev]" ) \
		> $(VENV)/install.log 2>&1 || { tail -40 $(VENV)/install.log; exit 1; }
	@touch $(STAMP)

install: $(STAMP)  ## virtualenv + the package with its dev tools

demo: install  ## the main job on the embedded defaults
	$(BIN)/circuitcat demo

test: install  ## lint, type-check, then pytest on 2 workers against a real Neo4j and the embedded store
	bash tests/run-all.sh

lint: install
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy catalog cli ingest
	$(BIN)/hadolint docker/ingest.Dockerfile

unit: install  ## pytest without the tests that need Neo4j
	$(BIN)/pytest -q -m "not neo4j"

neo4j:  ## a local Neo4j in the foreground, for poking at with the CLI
	bash docker/neo4j-local/neo4j-local.sh run

bench: install  ## benchmarks; results go to docs/benchmarks.md
	$(BIN)/python -m bench.store_load --write-docs
	$(BIN)/python -m bench.weights --write-docs
	$(BIN)/python -m bench.api --write-docs
	$(BIN)/python -m bench.budget --write-docs
	$(BIN)/python -m bench.selection --write-docs
	$(BIN)/python -m bench.scale --write-docs
	$(BIN)/python -m bench.interventions --write-docs

bench-gpt2: install  ## GPT-2-small-shaped weights job at reduced width (12 x 2048) on this CPU
	$(BIN)/python -m bench.gpt2_weights --features 2048 --threads 1 --write-docs

bench-gpu: install  ## on a CUDA machine: GPT-2-small-shaped weights job (12 x 24576) + attribution
	bash bench/gpu.sh

web-assets:  ## rebuild cli/web/static/vendor (d3 and its licences) from npm; needs node and npm
	cd cli/web && npm ci --no-audit --no-fund
	bash cli/web/vendor.sh

clean:
	bash docker/neo4j-local/neo4j-local.sh stop || true
	rm -rf $(VENV) .neo4j-local .mypy_cache .ruff_cache .pytest_cache
