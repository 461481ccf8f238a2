# Ballast. `make demo` runs the demo, `make test` runs every test.
SHELL := /usr/bin/env bash
GO ?= go
BIN := $(CURDIR)/bin
comma := ,
export PATH := $(BIN):$(PATH)

# Ballast's version: the tag of the images and what both binaries print with
# --version (the scheduler as Kubernetes $(K8S_VERSION)+ballast.$(VERSION)).
VERSION ?= v0.1.0
# The scheduler reports the Kubernetes version it is built from.
K8S_VERSION := v1.37.2
GIT_COMMIT := $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w \
	-X k8s.io/component-base/version.gitVersion=$(K8S_VERSION)+ballast.$(VERSION) \
	-X k8s.io/component-base/version.gitMajor=1 \
	-X k8s.io/component-base/version.gitMinor=37 \
	-X k8s.io/component-base/version.gitCommit=$(GIT_COMMIT) \
	-X github.com/ballast-k8s/ballast/internal/version.version=$(VERSION) \
	-X github.com/ballast-k8s/ballast/internal/version.revision=$(GIT_COMMIT)
GOBUILD := CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)'

# Default test run: unit + integration (real etcd + kube-apiserver). Under 25 minutes on 2 cores.
TEST_TIMEOUT ?= 25m
IMAGE_REPO ?= ghcr.io/ballast-k8s
IMAGE_PLATFORMS ?= linux/amd64,linux/arm64

.PHONY: all build scheduler az-balancer etcd cluster-autoscaler test unit integration e2e fuzz bench bench-quick bench-srcdir demo verify image clean queue-test third_party/kubernetes

all: build

build: scheduler az-balancer

# Kubernetes v1.37.2 with Ballast's queue patch (docs/queue-fix.md): go.mod
# replaces k8s.io/kubernetes with this directory, generated from the module
# cache (hash checked, hack/kubernetes/patches applied with zero fuzz;
# a no-op when it is up to date). Every target that runs go needs it.
KUBERNETES := third_party/kubernetes
third_party/kubernetes:
	GO=$(GO) hack/kubernetes/generate.sh

scheduler: $(KUBERNETES)
	$(GOBUILD) -o $(BIN)/scheduler ./cmd/scheduler

az-balancer: $(KUBERNETES)
	$(GOBUILD) -o $(BIN)/az-balancer ./cmd/az-balancer

# etcd v3.7.0 from the Go module proxy, in its own module so that its
# dependencies never move Kubernetes'.
etcd: $(BIN)/etcd
$(BIN)/etcd: hack/tools/etcd/go.mod
	cd hack/tools/etcd && $(GO) build -o $(BIN)/etcd go.etcd.io/etcd/server/v3

# cluster-autoscaler 1.36.1, AWS provider, for the end-to-end tests: built from
# its source tree (not a module the proxy serves), rebuilt only when a file of
# it changes. About 6-10 minutes on 2 cores the first time.
CLUSTER_AUTOSCALER_SRC ?= $(CURDIR)/../shared/third_party/cluster-autoscaler
CLUSTER_AUTOSCALER_FILES := $(shell find $(CLUSTER_AUTOSCALER_SRC) -type f \( -name '*.go' -o -name go.mod -o -name go.sum \) 2>/dev/null)
cluster-autoscaler: $(BIN)/cluster-autoscaler
$(BIN)/cluster-autoscaler: $(CLUSTER_AUTOSCALER_FILES)
	@test -f $(CLUSTER_AUTOSCALER_SRC)/go.mod || { echo "no cluster-autoscaler source at CLUSTER_AUTOSCALER_SRC=$(CLUSTER_AUTOSCALER_SRC)"; exit 1; }
	cd $(CLUSTER_AUTOSCALER_SRC) && CGO_ENABLED=0 $(GO) build -tags aws -trimpath -ldflags '-s -w' -o $(BIN)/cluster-autoscaler .

test: etcd scheduler az-balancer queue-test
	BALLAST_SCHEDULER_BIN=$(BIN)/scheduler BALLAST_AZ_BALANCER_BIN=$(BIN)/az-balancer BALLAST_VERSION=$(VERSION) $(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...
	cd deploy/monitoring/rulestest && $(GO) test -count=1 ./...

unit: $(KUBERNETES) queue-test
	$(GO) test -count=1 $$($(GO) list ./... | grep -v -e /test/ -e /deploy)

# Upstream's tests of the patched queue package (with the patch's own tests),
# once with the patch's partitioned walk and once with the walk of v1.37.2
# restored (BALLAST_QUEUE_UPSTREAM_WALK=true, what the benchmark's vanilla rows use).
QUEUE_PKG := k8s.io/kubernetes/pkg/scheduler/backend/queue/...
queue-test: $(KUBERNETES)
	$(GO) test -count=1 $(QUEUE_PKG)
	BALLAST_QUEUE_UPSTREAM_WALK=true $(GO) test -count=1 $(QUEUE_PKG)

integration: etcd scheduler $(KUBERNETES)
	BALLAST_SCHEDULER_BIN=$(BIN)/scheduler $(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./test/...

# A long run of the verdict fuzz target against the real v1.37.2 filters
# (`make test` runs only its seed corpus). FUZZTIME=1h for a longer run.
FUZZTIME ?= 10m
fuzz: $(KUBERNETES)
	$(GO) test -count=1 -run '^$$' -fuzz '^FuzzVerdictAgainstRealFilters$$' -fuzztime $(FUZZTIME) ./internal/shapes/

# End to end with the real cluster-autoscaler (test/integration/autoscaler,
# build tag e2e): scale from zero, protection of bound local volumes, template
# fidelity, incident 7.
E2E_TIMEOUT ?= 15m
e2e: etcd cluster-autoscaler $(KUBERNETES)
	BALLAST_CLUSTER_AUTOSCALER_BIN=$(BIN)/cluster-autoscaler $(GO) test -tags e2e -count=1 -timeout $(E2E_TIMEOUT) -v ./test/integration/autoscaler/

# Side-by-side benchmark: vanilla kube-scheduler v1.37.2 vs Ballast, on the
# upstream scheduler_perf harness. Writes test/integration/bench/results/<size>.md
# (raw data items under results/raw/). BENCH_SIZES: quick, incident, stretch.
# Every case runs BENCH_ROUNDS times, in a rotated order; the table shows medians.
# Full run on 2 cores: about 23 minutes per round (quick and incident).
BENCH_SIZES ?= quick,incident
BENCH_ROUNDS ?= 3
# Built with -trimpath (GOFLAGS=-trimpath shares the build cache between
# checkouts), the in-process test apiserver cannot find its package directory
# from the call stack; it then reads it from bazel's variables, which point
# at the generated copy.
BENCH_ENV := $(if $(findstring -trimpath,$(GOFLAGS)),TEST_SRCDIR=$(BIN)/srcdir TEST_WORKSPACE=.)
bench-srcdir: $(KUBERNETES)
	@mkdir -p $(BIN)/srcdir/k8s.io && ln -sfn $(CURDIR)/third_party/kubernetes '$(BIN)/srcdir/k8s.io/kubernetes@$(K8S_VERSION)'
bench: etcd bench-srcdir $(KUBERNETES)
	$(BENCH_ENV) BALLAST_BENCH_SIZES=$(BENCH_SIZES) BALLAST_BENCH_ROUNDS=$(BENCH_ROUNDS) $(GO) test -count=1 -timeout 240m -run '^$$' -bench 'BenchmarkHopeless' -benchtime=1x ./test/integration/bench/
	$(GO) test -count=1 -run '^$$' -bench 'BenchmarkVerdict' ./plugins/hopeless/

# The quick benchmark CI runs (about 3.5 minutes on 2 cores after the build):
# 500 nodes, 4000 hopeless pods (the incident's wrong toleration), baseline,
# scheduling gates under vanilla and under Ballast, vanilla and Ballast, one
# round; fails when Ballast spends attempts on hopeless pods, or, with the
# hopeless pods or the gated ones, drops below the bounds in
# test/integration/bench/bench_test.go (minRatio, maxDurRatio) of the
# baseline's average throughput and time. The table goes to results/raw/<time>/quick.md.
bench-quick: etcd bench-srcdir $(KUBERNETES)
	$(BENCH_ENV) BALLAST_BENCH_SIZES=quick BALLAST_BENCH_VARIANTS=Toleration BALLAST_BENCH_CHECK=1 \
	BALLAST_BENCH_CASES=Baseline,GatedVanilla,GatedBallast,TolerationVanilla,TolerationBallast \
	$(GO) test -count=1 -timeout 20m -run '^$$' -bench 'BenchmarkHopeless' -benchtime=1x ./test/integration/bench/

demo: etcd $(KUBERNETES)
	hack/demo.sh

verify: $(KUBERNETES)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags e2e ./test/integration/autoscaler/
	cd hack/tools/etcd && $(GO) mod verify >/dev/null

# Both images for every platform, without a container engine: static binaries
# cross-compiled into bin/linux-<arch>/, then build/image writes one OCI layout
# per image under bin/images/ (FROM scratch: nothing is fetched). Tag: VERSION.
# IMAGE_PUSH=1 also pushes them to IMAGE_REPO (credentials of ~/.docker/config.json).
image: $(KUBERNETES)
	@set -e; for p in $(subst $(comma), ,$(IMAGE_PLATFORMS)); do \
	  echo "building $$p"; \
	  for b in scheduler az-balancer; do \
	    CGO_ENABLED=0 GOOS=$${p%/*} GOARCH=$${p#*/} $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/$${p%/*}-$${p#*/}/$$b ./cmd/$$b; \
	  done; \
	done
	$(GO) run ./build/image/builder --repo $(IMAGE_REPO) --version $(VERSION) --revision $(GIT_COMMIT) \
		--platforms $(IMAGE_PLATFORMS) --bin-dir $(BIN) --out $(BIN)/images $(if $(filter 1,$(IMAGE_PUSH)),--push)

clean:
	rm -rf $(BIN)
