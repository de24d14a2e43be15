# snapgate: see README.md. Every target runs from a fresh clone; the local stack's
# binaries are built once per machine into ~/.cache/snapgate and reused.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c

CLUSTER_DIR ?= $(CURDIR)/.cluster
export SNAPGATE_CLUSTER_DIR := $(CLUSTER_DIR)
GO_TEST_FLAGS ?=

.PHONY: all demo bench chaos deps build image test unit e2e e2e-stack cluster cluster-down run run-down stack-tools lint fmt vet generate generated chart-golden

all: build

## demo: the local stack, snapgate, a guarded StatefulSet upgraded with kubectl apply, and rolled back
demo: deps run
	@e2e/demo/demo.sh

## build: the snapgate binary, into bin/
build:
	go build -o bin/snapgate ./cmd/snapgate

## test: lint; the unit tests while the local stack starts (or is found running) with
## snapgate and its image; then the e2e tests on it
test: lint
	@$(MAKE) --no-print-directory -j2 --output-sync=target unit e2e-stack
	@$(MAKE) --no-print-directory e2e

## e2e-stack: what the e2e tests run on: the local stack, snapgate running, its image on the node
e2e-stack: deps run image

## unit: the tests that need no cluster
unit:
	go test $(GO_TEST_FLAGS) -race -count=1 ./...

## e2e: the end-to-end tests on the local stack, with snapgate running (short budget);
## the tests that leave snapgate running run E2E_PARALLEL at a time (framework.Parallel)
E2E_PARALLEL ?= 4
e2e: export SNAPGATE_BUDGET := 8s
e2e: export SNAPGATE_READY_DEADLINE := 20s
e2e: deps run image
	go test $(GO_TEST_FLAGS) -tags e2e -count=1 -parallel $(E2E_PARALLEL) -timeout 30m ./e2e/...

## chaos: the faults a production guard must survive, as one suite (their e2e tests on the
## local stack, then a fuzz run of the annotation parser), and a table of fault, test, outcome
CHAOS_FUZZTIME ?= 30s
chaos: export SNAPGATE_BUDGET := 8s
chaos: export SNAPGATE_READY_DEADLINE := 20s
chaos: deps run image
	@{ go test -tags e2e -count=1 -json -parallel $(E2E_PARALLEL) -timeout 30m \
	    -run '$(shell go run ./e2e/chaos -run github.com/snapgate/snapgate/e2e)' ./e2e/ || true; \
	  go test -json -run '^$$' -fuzz '^FuzzParseAnnotations$$' -fuzztime $(CHAOS_FUZZTIME) ./snapshotter/policy/ || true; \
	} | tee $(CLUSTER_DIR)/logs/chaos.json | go run ./e2e/chaos

## chart-golden: render the Helm chart anew into e2e/testdata/chart (after a deliberate change; review the diff)
chart-golden: cluster
	UPDATE_GOLDEN=1 go test -tags e2e -count=1 -run 'TestChartRendersAsGolden|TestChartReadme' ./e2e/

## deps: what the stack and the e2e tests need beyond Go, from Debian's packages, where missing
deps:
	@e2e/stack/deps.sh

## cluster: start the local stack (control plane, real node, kwok nodes, CSI), or find it running; prints the KUBECONFIG export
cluster: deps
	@e2e/stack/cluster.sh up

## image: snapgate's container image, as the chart names it (ghcr.io/snapgate/snapgate:<appVersion>),
## built from this checkout and put into the local stack's real node
image: cluster
	CGO_ENABLED=0 go build -trimpath -o $(CLUSTER_DIR)/image/snapgate ./cmd/snapgate
	@SNAPGATE_BINARY=$(CLUSTER_DIR)/image/snapgate e2e/stack/images/build.sh $(CLUSTER_DIR)/bin/pause snapgate | \
	  xargs e2e/stack/node.sh import

## cluster-down: stop every process the stack started and remove its state
cluster-down:
	@e2e/stack/cluster.sh down

## run: build snapgate and run it against the local stack, registered and ready
run: cluster
	@e2e/stack/snapgate.sh up

## run-down: stop snapgate (it removes its webhook configurations on exit)
run-down:
	@e2e/stack/snapgate.sh down

## bench: the pass-through decision (Go benchmark); on the local stack, time-to-admit
## against the CSI pipeline alone (same class, fixed delays) for 1 to 100 replicas, the
## freeze window against the hooks and the cut (real pods), 50 upgrades at once,
## snapgate's memory with 1,000 StatefulSets; then one table of figures against their
## targets (the figures are kept in .cluster/bench.txt)
BENCH_ROUNDS ?= 11
BENCH_CONCURRENT_ROUNDS ?= 3
bench: run
	@rm -f $(CLUSTER_DIR)/bench.txt; status=0; \
	go test -run '^$$' -bench PassThrough -benchmem ./webhook/ | tee $(CLUSTER_DIR)/bench-passthrough.txt || status=1; \
	go test -tags e2e -run '^$$' -bench 'TimeToAdmit|FreezeWindow|Memory' -benchtime $(BENCH_ROUNDS)x -timeout 60m ./e2e/ || status=1; \
	go test -tags e2e -run '^$$' -bench ConcurrentUpgrades -benchtime $(BENCH_CONCURRENT_ROUNDS)x -timeout 30m ./e2e/ || status=1; \
	go run ./e2e/benchtable $(CLUSTER_DIR)/bench.txt $(CLUSTER_DIR)/bench-passthrough.txt; \
	exit $$status

## stack-tools: build (or find cached) the stack's binaries without starting it
stack-tools:
	@e2e/stack/build-tools.sh >/dev/null

## generate: write the chart's webhook configurations from webhook.Configurations
generate:
	go run ./cmd/chartgen

## lint: gofmt, go vet (including the e2e-tagged files), and the generated chart up to date
lint: fmt vet generated

generated:
	go run ./cmd/chartgen -check

fmt:
	@bad=$$(gofmt -l $$(git ls-files --cached --others --exclude-standard '*.go')); \
	if [ -n "$$bad" ]; then echo "gofmt would change: $$bad"; exit 1; fi

vet:
	go vet ./...
	go vet -tags e2e ./e2e/...
