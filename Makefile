# PacketScope: see README.md. `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
BINARY := bin/packetscope
PKG := github.com/packetscope/packetscope
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS := -X github.com/prometheus/common/version.Version=$(VERSION) \
	-X github.com/prometheus/common/version.Revision=$(REVISION) \
	-X github.com/prometheus/common/version.Branch=main \
	-X github.com/prometheus/common/version.BuildUser=make
# Tests share one machine: packages run one after another so live traffic tests do not contend for the 2 cores.
TEST_FLAGS ?= -count=1 -p 1 -timeout 25m

.PHONY: help deps generate check-generate build run test test-kernels bench lint

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

deps: ## install the Debian packages builds and tests need (root)
	bash scripts/install-deps.sh

generate: ## rebuild the eBPF objects and their Go bindings (needs clang-16, libbpf-dev)
	$(GO) generate ./bpf

check-generate: ## fail if the committed eBPF objects differ from a fresh `make generate`
	@if command -v clang-16 >/dev/null; then \
		$(GO) generate ./bpf && git diff --exit-code --stat -- bpf/ || { echo "bpf/: generated files are stale: run 'make generate' and commit"; exit 1; }; \
	else echo "check-generate: clang-16 not installed, skipped"; fi

build: ## build ./packetscope
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BINARY) ./cmd/packetscope

run: deps build ## build and run the single-host stack: packetscope run, Prometheus, Alertmanager (root)
	PACKETSCOPE=$(CURDIR)/$(BINARY) deploy/run-stack.sh $(ARGS)

test: deps check-generate lint test-kernels ## install test dependencies, run every test (root), the kernel matrix too
	CI=$${CI:-true} $(GO) test $(TEST_FLAGS) ./...

test-kernels: deps ## boot Debian 12's stock 6.1 kernel under qemu and run the live smoke tests inside (root)
	GO=$(GO) bash scripts/test-kernels.sh

bench: deps build ## performance figures: XDP ns/packet, tracing overhead, time to mitigate each attack (per step), 10 min of ordinary traffic without an alert
	bash scripts/bench-guard.sh
	bash scripts/bench-overhead.sh
	bash scripts/bench-defense.sh

lint: ## gofmt, go vet, and go.mod/go.sum tidy
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags kernelsmoke ./e2e/kernels
	$(GO) vet -tags variants ./guard
	@$(GO) mod tidy -diff || { echo "go.mod/go.sum are not tidy: run 'go mod tidy' and commit"; exit 1; }
