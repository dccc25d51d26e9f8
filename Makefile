# cx-operator — build, test and ship.
CARGO ?= cargo
IMAGE ?= cx-operator:dev
CONFIG ?= examples/operator-config.yaml
TENANT ?= examples/tenant-full.yaml

.PHONY: build test lint fmt crds sync-manifests run plan image check-config chart-test lint-chart

# Python environment of the chart tests (tests/chart/requirements.txt).
PYTHON ?= python3
CHART_VENV ?= target/chart-venv
# How chart-test gets target/debug/cx-operator. `make test` empties it: `cargo test`
# has just built that binary (with the dev-dependencies' features, which a plain
# `cargo build` would rebuild without).
CHART_BUILD ?= $(CARGO) build --locked --bin cx-operator

build:
	$(CARGO) build --release --locked

## The test suite: unit tests, CRD and example checks, the fake API server, and the
## controllers end to end (set CX_TEST_KUBECONFIG to run them against a real cluster).
test:
	$(CARGO) test --locked --all-targets
	$(MAKE) chart-test CHART_BUILD=

## The Helm chart and the kustomize bases: rendered by the real Helm library, every
## object validated against the Kubernetes 1.33 schemas, configurations checked by the
## binary (tests/chart/test_chart.py). pytest's exit 5 (no test ran) fails.
chart-test: $(CHART_VENV)/.installed
	$(CHART_BUILD)
	cd tests/chart && PYTHONDONTWRITEBYTECODE=1 ../../$(CHART_VENV)/bin/python -m pytest -p no:cacheprovider -q -rs .

## Helm lint of the chart alone (strict, against Kubernetes 1.33); also part of chart-test.
lint-chart: $(CHART_VENV)/.installed
	$(CHART_VENV)/bin/python -c 'import helm_python as h, sys; r = h.lint("charts/cx-operator", strict=True, kube_version="v1.33.0"); print(r); sys.exit(1 if r["errors"] or any(m["severity"] >= 2 for m in r["messages"]) else 0)'

$(CHART_VENV)/.installed: tests/chart/requirements.txt
	test -x $(CHART_VENV)/bin/python || $(PYTHON) -m venv $(CHART_VENV)
	$(CHART_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r tests/chart/requirements.txt
	touch $@

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## Regenerate crds/ from the Rust types (a test fails when they drift).
crds:
	$(CARGO) run --quiet --locked -- crd --out-dir crds
	$(MAKE) sync-manifests

## Copy crds/ into the chart and config/crd, and config/rbac's rules into the chart
## (tests/chart fails while the copies differ).
sync-manifests:
	cp crds/*.yaml charts/cx-operator/crds/
	cp crds/*.yaml config/crd/
	cp config/rbac/role.yaml config/rbac/leader_election_role.yaml charts/cx-operator/files/rbac/

## Run the operator against the current kubeconfig context.
run:
	$(CARGO) run --locked -- run --config $(CONFIG) --metrics-addr 127.0.0.1:8080

## Show, offline, everything a Tenant would become.
plan:
	$(CARGO) run --quiet --locked -- plan -f $(TENANT) --config $(CONFIG)

check-config:
	$(CARGO) run --quiet --locked -- check-config $(CONFIG)

image:
	docker build -t $(IMAGE) .

## A real test environment on loopback ports: etcd, kube-apiserver and
## kube-controller-manager (Kubernetes 1.33, built from source once into
## ~/.cache/cx-operator-test-env), Keycloak and an SMTP sink. docs/testing.md.
.PHONY: test-env test-env-stop test-env-status test-env-build test-env-smoke
TEST_ENV_DIR ?= $(or $(CX_TEST_ENV_DIR),target/test-env)

test-env:
	CX_TEST_ENV_DIR=$(TEST_ENV_DIR) bash tests/env/test-env.sh start
	@echo
	@echo "Test environment up. For the tests (e.g. cargo test) and kubectl:"
	@echo "  source $(TEST_ENV_DIR)/env.sh"
	@echo '  $$CX_TEST_KUBECTL --kubeconfig $$CX_TEST_KUBECONFIG get ns'
	@echo "Stop it with: make test-env-stop"

test-env-stop:
	CX_TEST_ENV_DIR=$(TEST_ENV_DIR) bash tests/env/test-env.sh stop

test-env-status:
	CX_TEST_ENV_DIR=$(TEST_ENV_DIR) bash tests/env/test-env.sh status

## Build/download only (the cold Kubernetes build takes about 10 minutes on 2 cores).
test-env-build:
	bash tests/env/test-env.sh build

## Check a running test environment (tests/env/smoke.sh).
test-env-smoke:
	CX_TEST_ENV_DIR=$(TEST_ENV_DIR) bash tests/env/smoke.sh
