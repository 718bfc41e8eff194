// Package cli is ipftrace's command line: it translates the original tool's
// flags, parses and validates them, and runs listing, manifest generation or
// tracing.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/cilium/ebpf/btf"

	"github.com/ipftrace/ipftrace/btfscan"
	"github.com/ipftrace/ipftrace/gen"
	"github.com/ipftrace/ipftrace/internal/phase"
	"github.com/ipftrace/ipftrace/manifest"
	"github.com/ipftrace/ipftrace/module"
	"github.com/ipftrace/ipftrace/tracer"
)

// Version is the program version, set with
// -ldflags "-X github.com/ipftrace/ipftrace/cli.Version=v1.2.3".
var Version = "dev"

// Exit codes.
const (
	ExitOK      = 0 // success
	ExitRuntime = 1 // tracing failed (privileges, attach, ...)
	ExitUsage   = 2 // bad flags, manifest or BTF file
)

// runTracer is tracer.Run, replaceable in tests.
var runTracer = tracer.Run

// Main runs ipftrace with args (without the program name) and returns the
// process exit code. Errors are printed to stderr as one line.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := ParseArgs(args)
	if err != nil {
		return fail(stderr, ExitUsage, err)
	}
	switch {
	case o.Help:
		fmt.Fprint(stdout, usage)
		return ExitOK
	case o.Version:
		fmt.Fprintf(stdout, "ipftrace %s\n", Version)
		return ExitOK
	}

	if o.ReadyFile != "" {
		if err := checkReadyFile(o.ReadyFile); err != nil {
			return fail(stderr, ExitUsage, err)
		}
	}
	if o.ManifestPath != "" {
		if o.Manifest, err = manifest.Load(o.ManifestPath); err != nil {
			return fail(stderr, ExitUsage, err)
		}
	}

	start := time.Now()
	phase.Mark(stderr, "scan")
	var scan *btfscan.Result
	cached := false
	if o.NoScanCache {
		scan, err = btfscan.Scan(scanOptions(o))
	} else {
		scan, cached, err = btfscan.ScanCached(scanOptions(o), "")
	}
	if err != nil {
		return fail(stderr, ExitUsage, err)
	}
	phase.Mark(stderr, "scanned")
	if o.Verbose {
		lists := "tracefs function lists not readable, not applied"
		if scan.FilterListKnown {
			lists = "available_filter_functions applied"
		}
		how := "scanned BTF"
		if cached {
			how = "read this boot's scan from " + btfscan.DefaultCacheDir
		}
		fmt.Fprintf(stderr, "ipftrace: %s in %v: %d skb functions, %d skb tracepoints, %d modules (%s)\n",
			how, time.Since(start).Round(time.Millisecond), len(scan.Funcs), len(scan.Tracepoints), len(scan.Modules), lists)
	}

	switch {
	case o.GenManifest:
		return genManifest(o, scan, stdout, stderr)
	case o.ListFunc:
		return listFuncs(o, scan, stdout, stderr)
	}

	cfg, sum, err := Plan(o, scan)
	if err != nil {
		// One line: the error, not the reconcile summary as well.
		return fail(stderr, ExitUsage, err)
	}
	if len(o.Modules) > 0 {
		if cfg.Modules, err = buildModules(o.Modules); err != nil {
			return fail(stderr, ExitUsage, err)
		}
	}
	if s := sum.String(); s != "" {
		fmt.Fprintln(stderr, s)
	}
	if cfg.Modules != nil {
		for _, w := range cfg.Modules.Warnings() {
			fmt.Fprintf(stderr, "ipftrace: %s\n", w)
		}
	}
	cfg.Stdout, cfg.Stderr = stdout, stderr
	if ctx.Err() != nil {
		// Interrupted during the scan: nothing was loaded yet.
		fmt.Fprintln(stderr, "ipftrace: interrupted before attaching; nothing was attached")
		return ExitOK
	}
	if err := runTracer(ctx, cfg); err != nil {
		if errors.Is(err, context.Canceled) {
			return ExitOK
		}
		return fail(stderr, ExitRuntime, err)
	}
	return ExitOK
}

// checkReadyFile rejects a --ready-file that cannot be created, before
// anything is attached: the path must not exist (not even as a symlink: the
// file is created with O_EXCL|O_NOFOLLOW) and its directory must.
func checkReadyFile(path string) error {
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("--ready-file %s: already exists (it is created, never overwritten or followed)", path)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("--ready-file %s: %w", path, unwrapPath(err))
	}
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("--ready-file %s: directory %s: %w", path, dir, unwrapPath(err))
	}
	if !fi.IsDir() {
		return fmt.Errorf("--ready-file %s: %s is not a directory", path, dir)
	}
	return nil
}

// unwrapPath returns the cause of a *fs.PathError (the caller names the path).
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// kernelSpec is the running kernel's BTF, replaceable in tests.
var kernelSpec = btf.LoadKernelSpec

// buildModules compiles the -m modules against the running kernel's BTF:
// the programs run there, whatever --btf says.
func buildModules(args []string) (*module.Program, error) {
	spec, err := kernelSpec()
	if err != nil {
		return nil, fmt.Errorf("modules: load the running kernel's BTF: %w", err)
	}
	find := func(prefix string) ([]btf.TypeID, error) {
		return btfscan.EnumsWithPrefix(btfscan.DefaultBTFPath, prefix)
	}
	return module.Build(args, spec, find)
}

func scanOptions(o *Options) btfscan.Options {
	opts := btfscan.Options{BTFPath: o.BTF, Kmods: !o.NoKmods}
	if o.BTF != "" && o.BTF != btfscan.DefaultBTFPath {
		// A BTF file other than the running kernel's: the kernel's lists of
		// traceable functions do not describe it, nor do its types the
		// programs' (loads read the running kernel's BTF).
		opts.IgnoreTraceFS = true
		return opts
	}
	// The same options for every command, so that they share the cache.
	opts.CORETypes, opts.Kfuncs = tracer.CORETypes, tracer.Kfuncs
	return opts
}

// fail prints err as one line and returns code.
func fail(w io.Writer, code int, err error) int {
	msg := strings.ReplaceAll(err.Error(), "\n", " ")
	fmt.Fprintf(w, "ipftrace: %s\n", msg)
	return code
}

func genManifest(o *Options, scan *btfscan.Result, stdout, stderr io.Writer) int {
	m := gen.Manifest(scan, o.Regex)
	if len(m.Functions) == 0 {
		if o.Regex != nil {
			return fail(stderr, ExitUsage, fmt.Errorf("regex %q matches no skb function", o.Regex))
		}
		return fail(stderr, ExitUsage, errors.New("no skb functions found in BTF"))
	}
	if err := manifest.Write(stdout, m); err != nil {
		return writeFailed(stderr, err)
	}
	return ExitOK
}

// writeFailed handles a failed write to stdout: a reader that went away
// (ipftrace ... | head) is not an error.
func writeFailed(stderr io.Writer, err error) int {
	if errors.Is(err, syscall.EPIPE) || errors.Is(err, io.ErrClosedPipe) {
		return ExitOK
	}
	return fail(stderr, ExitRuntime, err)
}

const usage = `Usage: ipftrace [OPTIONS] [MANIFEST]
       ipftrace gen-manifest [-r REGEX] [--btf FILE] [--no-kmods] [--no-scan-cache]

Trace the journey of packets through the Linux network stack: every kernel
function a matching packet's skb passes through, grouped by packet.

MANIFEST is a YAML file listing the functions to trace (see gen-manifest);
--auto traces every function that takes an skb instead.

Flow filter:
  -iv, --ipversion 4|6    IP version
  -s,  --saddr ADDR       source address or CIDR
  -d,  --daddr ADDR       destination address or CIDR
  -p,  --proto PROTO      protocol: icmp, tcp, udp, icmpv6, sctp or a number
  -sp, --sport PORT       source port
  -dp, --dport PORT       destination port

Functions:
  -r,  --regex REGEX      only functions (and tracepoints) whose name matches
  -ls, --list-func        list the functions that would be traced, and exit
       --auto             trace every skb function found in BTF
  -e,  --egress FUNC,...  also end journeys at these functions
  -m,  --module NAME      custom data module (repeatable): gso, mark, dev, netns,
                          meta, or a YAML file (fields read from each skb, with
                          optional match conditions; 64 bytes per event)

Tracing:
  -b,  --backend NAME     auto, fentry, kprobe-multi, kprobe or tracepoint (default auto)
  -l,  --length N         end a journey after N functions (default 80)
       --idle DUR         end a journey when its skb is idle this long (default 1s)
       --ring-size MiB    ring buffer for events, a power of two (default 8): raise
                          it if events are lost (RSS grows by twice the size)
       --no-track         follow a packet only while its headers match the filter
                          (default: once matched, its skb, clones and copies are
                          followed through NAT, tunnels and header changes)
  -c,  --count N          stop after N journeys (default 0: no limit)
       --duration DUR     stop after this long (default 0: until Ctrl-C)
       --ready-file PATH  create PATH once everything is attached
  -o,  --output FORMAT    text or json (default text)

BTF:
       --btf FILE         read this BTF file instead of /sys/kernel/btf/vmlinux
       --no-kmods         ignore kernel module BTF
       --no-scan-cache    scan BTF and the tracefs lists afresh (the scan of the
                          running kernel is kept in /run/ipftrace until the next
                          boot, a module load or unload, or a new ipftrace binary)

  -v,  --verbose          report skipped functions and timings
       --version          print the version and exit
  -h,  --help             print this help and exit

Exit status: 0 ok, 1 tracing failed, 2 bad flags, manifest or BTF.
`
