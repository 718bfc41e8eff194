#!/usr/bin/env bash
# One lane of `make vmtest`: the e2e suite in one kernel, once per backend,
# one VM boot each. Each run asserts the backend it got.
#
#   test/vmlane.sh KERNEL BACKEND...
# Environment (set by the Makefile): VM_TIMEOUT, VM_TRIALS, IPFTRACE_BIN.
#
# Tests another run of the same kernel covers are left out with -test.skip,
# and each run says which and why: the backend-independent ones (bad input,
# privileges, the scan cache) run with the first backend only, and TestFilters does not run
# again with kprobe where kprobe-multi runs the very same program code (both
# kprobe flavours are one C macro, and differ only in how they attach). The
# interrupt trials do not run with tracepoint, which the host covers.
set -euo pipefail
kernel=$1
shift
first=$1
for b in "$@"; do
	skip= why=
	if [ "$b" != "$first" ]; then
		skip='TestBadInput|TestUnprivileged|TestScanCache'
		why="backend-independent, run with $first"
	fi
	if [ "$b" = kprobe ] && [[ " $* " == *" kprobe-multi "* ]]; then
		skip="$skip|TestFilters"
		why="${why:+$why; }TestFilters runs with kprobe-multi (same program code)"
	fi
	if [ "$b" = tracepoint ]; then
		skip="${skip:+$skip|}TestInterruptTrials"
		why="${why:+$why; }the host runs the interrupt trials with tracepoint"
	fi
	echo "=== vmtest kernel $kernel backend $b${skip:+ (not run here: ${skip//|/, }: $why)}"
	start=$(date +%s)
	./bin/vm -kernel "$kernel" -timeout "$VM_TIMEOUT" -e IPFTRACE_BIN="$IPFTRACE_BIN" \
		-e IPFTRACE_BACKEND="$b" -e IPFTRACE_E2E_TRIALS="$VM_TRIALS" -- \
		./bin/e2e.test -test.v -test.count=1 -test.timeout "$VM_TIMEOUT" ${skip:+-test.skip "^($skip)\$"} ||
		{ echo "=== vmtest kernel $kernel backend $b: FAILED"; exit 1; }
	echo "=== vmtest kernel $kernel backend $b: ok ($(($(date +%s) - start))s)"
done
