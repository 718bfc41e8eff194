SHELL := /bin/bash
# ipftrace. `make` builds bin/ipftrace; `make test` runs every test this
# machine can run (unit, host end-to-end, and the VM kernel matrix).

GO       ?= go
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X github.com/ipftrace/ipftrace/cli.Version=$(VERSION)
export CGO_ENABLED := 0

# The VM matrix: each kernel boots once per backend. The host kernel covers
# tracepoint with bpf_rdonly_cast (6.2+); 6.1 runs it without, where the
# tp_btf programs read the skb through its trusted argument.
# `make vmtest` runs the kernels in parallel: each VM is one
# single-threaded TCG process, so two of them keep two host cores busy.
VM_KERNELS        ?= 6.1 6.12
VM_BACKENDS_6.1   ?= fentry kprobe tracepoint
VM_BACKENDS_6.12  ?= fentry kprobe-multi kprobe
VM_TIMEOUT        ?= 25m
# Interrupt trials per signal in each VM run (5 points x 3 signals x this;
# the host runs 10 per signal).
VM_TRIALS         ?= 2

.PHONY: all build generate check-generate unit fuzz e2e vmfetch vmtest vmrunner-test test bench progstats deps clean FORCE

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/ipftrace ./cmd/ipftrace

# Regenerate the committed bpf2go output (needs clang and libbpf-dev).
generate:
	cd bpf && $(GO) generate ./

# Fail if the committed BPF objects do not match bpf/*.c.
check-generate: generate
	@git diff --exit-code --stat -- bpf/ || { echo "bpf/: committed bpf2go output is stale; run 'make generate' and commit"; exit 1; }

# Unit tests: no root, no network (the e2e package runs under `make e2e`).
unit:
	$(GO) vet ./...
	$(GO) test -count=1 $$($(GO) list ./... | grep -v /e2e$$)

# Every go test -fuzz target (func FuzzXxx in a _test.go file outside e2e/),
# FUZZTIME each, one after the other. A crasher is written to the package's
# testdata/fuzz/FuzzXxx/ and fails the target; fix it and commit the file,
# which `make unit` then replays as a regression case.
FUZZTIME ?= 10s
fuzz:
	GO=$(GO) FUZZTIME=$(FUZZTIME) ./test/fuzz.sh

# End-to-end tests on this host's kernel (root; real traffic in netns),
# including the E2E_FLOOD-long flood test (TestFlood; E2E_FLOOD= skips it).
# The VM runs leave the flood out (it would take TCG ages); they run the
# interrupt trials with fewer trials (IPFTRACE_E2E_TRIALS).
E2E_FLOOD ?= 60s
e2e: build
	IPFTRACE_E2E_FLOOD=$(E2E_FLOOD) $(GO) test -count=1 -v -timeout 15m ./e2e 2>&1 | tee bin/e2e-host.log; exit $${PIPESTATUS[0]}

bin/e2e.test: FORCE
	$(GO) test -c -o bin/e2e.test ./e2e

bin/vm: FORCE
	$(GO) build -o bin/vm ./test/vm

# Download and unpack the VM kernels (cached in .cache/vm).
vmfetch: bin/vm
	./bin/vm -kernel 6.1 -fetch
	./bin/vm -kernel 6.12 -fetch

# The e2e suite inside Debian 6.1 and 6.12 VMs, once per backend; each run
# asserts the backend it got (test/vmlane.sh, which also leaves out, and
# names, the tests another run of the same kernel covers). Output is grouped
# per kernel.
vmtest: build bin/e2e.test vmfetch
	$(MAKE) --no-print-directory -j2 -Otarget $(VM_KERNELS:%=vmtest-%)

vmtest-%:
	@VM_TIMEOUT=$(VM_TIMEOUT) VM_TRIALS=$(VM_TRIALS) IPFTRACE_BIN=$(CURDIR)/bin/ipftrace ./test/vmlane.sh $* $(VM_BACKENDS_$*)

# The VM runner's own tests (boot, exit codes, timeout, cleanup).
vmrunner-test: bin/vm
	IPFTRACE_VMTEST=1 $(GO) test -count=1 -v -timeout 20m ./test/vm

# Everything: stale-object check, unit tests, fuzzing, host e2e, VM matrix.
test: deps check-generate unit fuzz e2e vmtest

# Benchmarks (issue 6): userspace microbenchmarks, then the host (tracepoint
# backend), then one VM boot per kernel running every function backend with
# its own base and floor; a VM with fentry also measures loading one fentry
# stub and one shared handler, inline and split (LoadClone/*/fentry*: the
# fentry attach loads a stub per function). Quick run: make bench BENCH_REPS=1 BENCH_COUNT=2000.
# Results are appended to $(BENCH_OUT) (not committed).
BENCH_REPS       ?= 3
BENCH_COUNT      ?= 20000
BENCH_OUT        ?= bench-results.txt
BENCH_HOST       ?= tracepoint
BENCH_VM         ?= 6.12:fentry,kprobe-multi,kprobe 6.1:fentry,kprobe
BENCH_VM_TIMEOUT ?= 6h
BENCH_BENCHTIME  ?= 300ms
BENCH_VM_BENCHTIME ?= 1s
BENCH_FLAGS      ?= -floor
bench: build
	$(GO) build -o bin/vm ./test/vm
	$(GO) build -trimpath -o bin/bench ./bench
	$(GO) test -c -o bin/tracer.test ./tracer
	./bin/bench -micro -go $(GO) -benchtime $(BENCH_BENCHTIME) -out $(BENCH_OUT)
	@if [ -n "$(BENCH_HOST)" ]; then \
		echo "=== bench host $$(uname -r): $(BENCH_HOST)"; \
		./bin/bench -backend $(BENCH_HOST) -reps $(BENCH_REPS) -count $(BENCH_COUNT) $(BENCH_FLAGS) -label host -out $(BENCH_OUT) || exit 1; \
	fi
	@set -e; mkdir -p bin/bench-vm; for kb in $(BENCH_VM); do \
		k=$${kb%%:*}; b=$${kb##*:}; \
		echo "=== bench vm kernel $$k: $$b"; \
		rm -f bin/bench-vm/$$k.txt; \
		loads=true; case ",$$b," in *,fentry,*) loads="./bin/bench -micro -testbin bin/tracer.test -bench 'LoadClone/.*/fentry' -benchtime $(BENCH_VM_BENCHTIME) -label vm-$$k -out $(CURDIR)/bin/bench-vm/$$k.txt";; esac; \
		./bin/vm -kernel $$k -timeout $(BENCH_VM_TIMEOUT) -rw $(CURDIR)/bin/bench-vm -- sh -c "$$loads && \
			./bin/bench -backend $$b -reps $(BENCH_REPS) -count $(BENCH_COUNT) $(BENCH_FLAGS) -label vm-$$k -out $(CURDIR)/bin/bench-vm/$$k.txt" \
			|| { echo "=== bench vm kernel $$k: FAILED"; cat bin/bench-vm/$$k.txt >> $(BENCH_OUT) 2>/dev/null; exit 1; }; \
		cat bin/bench-vm/$$k.txt >> $(BENCH_OUT); \
	done
	@echo "=== bench: results appended to $(BENCH_OUT)"

# Per-hit cost of the BPF programs from the kernel's program statistics, in
# the 6.12 VM (test/progstats.sh). Compare binaries in one boot:
# make progstats PROGSTATS_BINS="/tmp/old-ipftrace bin/ipftrace"
PROGSTATS_BINS    ?= $(CURDIR)/bin/ipftrace
PROGSTATS_BACKEND ?= kprobe-multi
PROGSTATS_KERNEL  ?= 6.12
PROGSTATS_REGEX   ?=
progstats: build bin/vm
	$(GO) build -o bin/progstats ./test/progstats
	./bin/vm -kernel $(PROGSTATS_KERNEL) -timeout 30m -e PROGSTATS=$(CURDIR)/bin/progstats -- ./test/progstats.sh -b $(PROGSTATS_BACKEND) $(if $(PROGSTATS_REGEX),-r '$(PROGSTATS_REGEX)') $(PROGSTATS_BINS)

# Debian packages the build, the tests and the VM matrix need.
deps:
	./.ci/deps.sh

clean:
	rm -rf bin

FORCE:
