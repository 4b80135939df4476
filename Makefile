# Tally: `make demo` runs the whole system; `make test` runs the test suite. Both set up first.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: setup promtool test containers unit integration e2e soak lint kafka-up kafka-down kafka-status schema demo bench clean

setup: $(STAMP) schema promtool

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

schema: $(STAMP)
	@$(BIN)/tally schema fetch

# promtool (Debian's prometheus package) checks and unit-tests the alert rules.
promtool:
	@command -v promtool >/dev/null 2>&1 || (apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus)

test: setup
	$(BIN)/pytest $(PYTEST_ARGS)
	$(MAKE) containers

# The image built and the system run from it with podman (deploy/containers/, tests/containers/):
# installs podman, runc and debootstrap (Debian) if missing, builds the base image stand-in, the
# Tally image and the Kafka and Prometheus stand-ins, then runs the container tests. With CI=true
# it fails when no container engine can be had.
export CONTAINERS_CONF ?= $(CURDIR)/deploy/containers/containers.conf
containers: setup
	@deploy/containers/engine.sh || { test "$$CI" != true && echo "containers: skipped (no engine; fails under CI=true)"; }
	@if podman info >/dev/null 2>&1; then PYTHON=$(BIN)/python deploy/containers/build.sh; fi
	$(BIN)/pytest tests/containers $(PYTEST_ARGS)

unit: setup
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

integration: setup
	$(BIN)/pytest tests/integration $(PYTEST_ARGS)

e2e: setup
	$(BIN)/pytest tests/e2e $(PYTEST_ARGS)

# Chaos (also in `make test`): broker outage, kill -9 of every service, a hostile Shopify, a halted
# shop; each prints its seed (replay with TALLY_CHAOS_SEED=<seed> make chaos) and what it measured.
.PHONY: chaos
chaos: setup
	$(BIN)/pytest tests/chaos -s -p no:cacheprovider $(PYTEST_ARGS)

# The kill -9 test again and again (it is also in `make test`): SOAK_RUNS times, stop at a failure.
SOAK_RUNS ?= 5
soak: setup
	@for i in $$(seq 1 $(SOAK_RUNS)); do echo "soak run $$i/$(SOAK_RUNS)"; \
	  $(BIN)/pytest tests/integration/test_worker_kill9.py -p no:cacheprovider $(PYTEST_ARGS) || exit 1; done

# The whole system for DEMO_SECONDS (60) of synthetic traffic, then a summary (DEMO_ARGS for more).
DEMO_SECONDS ?= 60
DEMO_ARGS ?=
demo: setup
	$(BIN)/tally demo --duration $(DEMO_SECONDS) --json .tally/demo-summary.json $(DEMO_ARGS)

# Benchmarks (bench/README.md): JSON, a markdown table and plots in bench/results/.
BENCH_ARGS ?=
bench: setup
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# ruff; the import contracts (pyproject.toml: domain cores import no adapter, services do not
# import each other's shells); mypy (strict for the ledger and sink cores); the Kubernetes
# manifests (deploy/k8s, every resource of kustomization.yaml) against the API's schemas shipped
# by the pinned kubernetes-validate package, strict (unknown fields fail).
K8S_VERSION ?= 1.33.0
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/mypy
	$(BIN)/kubernetes-validate --strict --quiet -k $(K8S_VERSION) \
	  $(addprefix deploy/k8s/,$(shell sed -n 's/^  - \(.*\.yaml\)$$/\1/p' deploy/k8s/kustomization.yaml))

kafka-up: $(STAMP)
	$(BIN)/tally kafka up

kafka-down: $(STAMP)
	$(BIN)/tally kafka down

kafka-status: $(STAMP)
	$(BIN)/tally kafka status

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
