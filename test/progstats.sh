#!/usr/bin/env bash
# Per-hit cost of ipftrace's BPF programs, from the kernel's own program
# statistics (kernel.bpf_stats_enabled): for each binary given, trace
# `--auto` with a filter that matches nothing and then one that matches
# every packet while `ping -f -c COUNT` runs between two namespaces, and
# print the average run time per program hit. Compare binaries in one run
# (one VM boot): the ratio is what carries over, not the nanoseconds.
#
#   test/progstats.sh [-b BACKEND] [-c COUNT] [-r REGEX] BINARY...
# -r traces only the functions REGEX matches (ipftrace -r): with fentry,
# whose detach takes ~150 ms per function under emulation, a few dozen
# functions on the ping's path give the per-hit cost in seconds.
# PROGSTATS: a built test/progstats (else it is built with go).
# `make progstats` runs it in the 6.12 VM with bin/ipftrace.
set -euo pipefail
backend=auto count=2000 regex=
while getopts b:c:r: o; do
	case $o in
	b) backend=$OPTARG ;;
	c) count=$OPTARG ;;
	r) regex=$OPTARG ;;
	*) exit 2 ;;
	esac
done
shift $((OPTIND - 1))
[ $# -gt 0 ] || { echo "usage: $0 [-b BACKEND] [-c COUNT] [-r REGEX] BINARY..." >&2; exit 2; }
only=()
[ -z "$regex" ] || only=(-r "$regex")
here=$(cd "$(dirname "$0")" && pwd)
stats=${PROGSTATS:-}
if [ -z "$stats" ]; then
	stats=$(mktemp -d)/progstats
	go build -o "$stats" "$here/progstats"
fi
a=ipfps-$$-a b=ipfps-$$-b
tmp=$(mktemp -d)
old=$(sysctl -n kernel.bpf_stats_enabled)
cleanup() {
	sysctl -qw kernel.bpf_stats_enabled="$old"
	ip netns del "$a" 2>/dev/null || true
	ip netns del "$b" 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT
ip netns add "$a"
ip netns add "$b"
ip -n "$a" link add veth0 type veth peer name veth0 netns "$b"
ip -n "$a" addr add 10.0.0.1/24 dev veth0
ip -n "$b" addr add 10.0.0.2/24 dev veth0
ip -n "$a" link set veth0 up
ip -n "$b" link set veth0 up
ip netns exec "$a" ping -c 1 -q 10.0.0.2 >/dev/null
sysctl -qw kernel.bpf_stats_enabled=1
for bin in "$@"; do
	for case in nomatch:10.200.200.200 match:10.0.0.2; do
		rm -f "$tmp/ready"
		last=$("$stats" -last)
		"$bin" --auto "${only[@]}" -b "$backend" -d "${case#*:}" -o json --ready-file "$tmp/ready" >/dev/null 2>"$tmp/err" &
		pid=$!
		while [ ! -e "$tmp/ready" ]; do
			kill -0 $pid 2>/dev/null || { cat "$tmp/err" >&2; exit 1; }
			sleep 0.05
		done
		ping=$(ip netns exec "$a" ping -f -q -c "$count" 10.0.0.2 | grep -o 'time [0-9]*ms')
		echo "$bin ${case%%:*} ($(grep -o 'backend [a-z-]*' "$tmp/err" | head -1), ping $ping):"
		"$stats" -after "$last"
		kill -INT $pid
		wait $pid || true
		# fentry detaches in the background (minutes under emulation): wait
		# for the run's programs to go, so that they do not slow the next.
		for _ in $(seq 600); do
			[ "$("$stats" -last)" -le "$last" ] && break
			sleep 1
		done
	done
done
