#!/usr/bin/env bash
# Runs every go test -fuzz target (func FuzzXxx in a _test.go file outside
# e2e/) for FUZZTIME each. A crasher is written to the package's
# testdata/fuzz/FuzzXxx/ and fails the run: fix the bug and commit the file
# as a regression case.
#
# Go's fuzzer sometimes ends a healthy run with "context deadline exceeded"
# and no failing input (an input still running when -fuzztime expires);
# such a run is retried once and reported, never counted as a crasher.
# Its workers also stop reporting (execs stay put at "0/sec" while they
# run at full CPU; a SIGQUIT then shows hundreds of thousands of execs
# done), as in golang/go#51484; failures are still caught, since a worker
# that fails returns at once. Seen here with go1.26 on FuzzParseRaw and
# FuzzELF, within seconds.
set -uo pipefail
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-20s}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for f in $(grep -rlE '^func Fuzz[A-Za-z0-9_]*\(' --include='*_test.go' . | grep -v '^./e2e/' | sort); do
	d=$(dirname "$f")
	for t in $(grep -oE '^func Fuzz[A-Za-z0-9_]*' "$f" | cut -d' ' -f2); do
		for try in 1 2; do
			echo "=== fuzz $d $t ($FUZZTIME)"
			if "$GO" test -run '^$' -fuzz "^$t\$" -fuzztime "$FUZZTIME" "$d" 2>&1 | tee "$log"; then
				break
			fi
			if [ "$try" = 1 ] && grep -q 'context deadline exceeded' "$log" && ! grep -q 'Failing input written' "$log"; then
				echo "=== fuzz $d $t: the fuzzer timed out without a failing input (a Go fuzzing flake); retrying once"
				continue
			fi
			echo "=== fuzz $d $t: FAILED (crasher in $d/testdata/fuzz/$t/)"
			exit 1
		done
	done
done
