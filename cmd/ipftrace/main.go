// Command ipftrace traces the journey of packets through the Linux network
// stack.
package main

import (
	"context"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ipftrace/ipftrace/cli"
)

// profileEnv names a file for a CPU profile of the whole run (a developer
// hook for `go tool pprof`; see docs/DESIGN.md).
const profileEnv = "IPFTRACE_CPUPROFILE"

func main() {
	// Small pages only. Where the kernel backs anonymous memory with huge
	// pages wherever it can (transparent_hugepage=always, Debian's and
	// RHEL's default), the garbage collector's freed pages stay resident
	// inside 2 MiB pages: in a 6.1 VM 14 of the Go heap's 20 MB resident
	// were huge pages while 7-10 MB were in use. Best effort: an error only
	// costs memory. Inherited by the background detacher.
	_ = unix.Prctl(unix.PR_SET_THP_DISABLE, 1, 0, 0, 0)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	stopProfile := startProfile(os.Getenv(profileEnv))
	code := cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stopProfile()
	stop()
	os.Exit(code)
}

// startProfile starts a CPU profile into path ("" or an unwritable path:
// none) and returns the function that ends it.
func startProfile(path string) func() {
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return func() {}
	}
	return func() { pprof.StopCPUProfile(); f.Close() }
}
