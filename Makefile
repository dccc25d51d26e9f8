# cx-operator — build, test and ship.
CARGO ?= cargo
IMAGE ?= cx-operator:dev
CONFIG ?= examples/operator-config.yaml
TENANT ?= examples/tenant-full.yaml

.PHONY: build test lint fmt crds run plan image check-config

build:
	$(CARGO) build --release --locked

## The test suite: unit tests, CRD and example checks, the fake API server, and the
## controllers end to end (set CX_TEST_KUBECONFIG to run them against a real cluster).
test:
	$(CARGO) test --locked --all-targets

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## Regenerate crds/ from the Rust types (a test fails when they drift).
crds:
	$(CARGO) run --quiet --locked -- crd --out-dir crds

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
