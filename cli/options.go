package cli

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/ipftrace/ipftrace/filter"
	"github.com/ipftrace/ipftrace/manifest"
)

// Backends are the names --backend accepts.
var Backends = []string{"auto", "fentry", "kprobe-multi", "kprobe", "tracepoint"}

// Formats are the names --output accepts.
var Formats = []string{"text", "json"}

// Defaults for flags with a non-zero default.
const (
	DefaultLength = 80
	DefaultIdle   = time.Second
	// DefaultRingSize is the ring buffer's size in MiB (--ring-size).
	DefaultRingSize = 8
	// MaxRingSize is the largest --ring-size, in MiB.
	MaxRingSize = 1024
)

// Options is the validated command line.
type Options struct {
	Filter       filter.Filter      // flow filter from -iv -s -d -p -sp -dp
	Modules      []string           // -m: custom data modules (built-in names or YAML files)
	Regex        *regexp.Regexp     // -r: function name filter, nil for all
	Length       int                // -l: events per journey
	ListFunc     bool               // -ls: list functions and exit
	Auto         bool               // --auto: trace every skb function
	Backend      string             // -b: attach mechanism
	Format       string             // -o: text or json
	Egress       []string           // -e: extra egress functions
	Count        int                // -c: stop after this many journeys
	Duration     time.Duration      // --duration: stop after this long
	ReadyFile    string             // --ready-file: created when attached
	BTF          string             // --btf: BTF file instead of the kernel's
	NoKmods      bool               // --no-kmods: skip module BTF
	NoScanCache  bool               // --no-scan-cache: scan afresh, bypassing btfscan's per-boot cache
	Idle         time.Duration      // --idle: journey idle timeout
	RingSize     int                // --ring-size: the events ring buffer, in MiB (a power of two)
	NoTrack      bool               // --no-track: follow packets by their headers only
	Verbose      bool               // -v
	Help         bool               // -h
	Version      bool               // --version
	GenManifest  bool               // the gen-manifest subcommand
	ManifestPath string             // positional MANIFEST
	Manifest     *manifest.Manifest // loaded ManifestPath, nil without one
}

// rawFlags holds flag values as typed, before validation.
type rawFlags struct {
	ipversion, saddr, daddr, proto, sport, dport string
	modules                                      []string
	regex, length                                string
	listFunc, auto                               bool
	backend, output                              string
	egress                                       []string
	count, duration, readyFile, btf              string
	noKmods, noScanCache                         bool
	idle, ringSize                               string
	noTrack                                      bool
	verbose, help, version                       bool
}

func newFlagSet(r *rawFlags) *pflag.FlagSet {
	fs := pflag.NewFlagSet("ipftrace", pflag.ContinueOnError)
	fs.SortFlags = false
	fs.Usage = func() {}
	fs.StringVar(&r.ipversion, "ipversion", "", "")
	fs.StringVarP(&r.saddr, "saddr", "s", "", "")
	fs.StringVarP(&r.daddr, "daddr", "d", "", "")
	fs.StringVarP(&r.proto, "proto", "p", "", "")
	fs.StringVar(&r.sport, "sport", "", "")
	fs.StringVar(&r.dport, "dport", "", "")
	fs.StringArrayVarP(&r.modules, "module", "m", nil, "")
	fs.StringVarP(&r.regex, "regex", "r", "", "")
	fs.StringVarP(&r.length, "length", "l", strconv.Itoa(DefaultLength), "")
	fs.BoolVar(&r.listFunc, "list-func", false, "")
	fs.BoolVar(&r.auto, "auto", false, "")
	fs.StringVarP(&r.backend, "backend", "b", "auto", "")
	fs.StringVarP(&r.output, "output", "o", "text", "")
	fs.StringArrayVarP(&r.egress, "egress", "e", nil, "")
	fs.StringVarP(&r.count, "count", "c", "0", "")
	fs.StringVar(&r.duration, "duration", "0", "")
	fs.StringVar(&r.readyFile, "ready-file", "", "")
	fs.StringVar(&r.btf, "btf", "", "")
	fs.BoolVar(&r.noKmods, "no-kmods", false, "")
	fs.BoolVar(&r.noScanCache, "no-scan-cache", false, "")
	fs.StringVar(&r.idle, "idle", DefaultIdle.String(), "")
	fs.StringVar(&r.ringSize, "ring-size", strconv.Itoa(DefaultRingSize), "")
	fs.BoolVar(&r.noTrack, "no-track", false, "")
	fs.BoolVarP(&r.verbose, "verbose", "v", false, "")
	fs.BoolVarP(&r.help, "help", "h", false, "")
	fs.BoolVar(&r.version, "version", false, "")
	return fs
}

// genManifestFlags are the flags gen-manifest accepts.
var genManifestFlags = []string{"regex", "btf", "no-kmods", "no-scan-cache", "verbose", "help"}

// ParseArgs parses and validates the command line (without the program
// name). It does not read any file.
func ParseArgs(args []string) (_ *Options, err error) {
	// Arguments end up in errors; one with a newline in it must not make a
	// two-line error.
	defer func() {
		if err != nil && strings.ContainsAny(err.Error(), "\n\r") {
			err = errors.New(strings.NewReplacer("\n", `\n`, "\r", `\r`).Replace(err.Error()))
		}
	}()
	var r rawFlags
	fs := newFlagSet(&r)
	if err := fs.Parse(TranslateArgs(args)); err != nil {
		return nil, flagError(err)
	}
	o := &Options{Help: r.help, Version: r.version, Verbose: r.verbose}
	if o.Help || o.Version {
		return o, nil
	}
	var empty string
	fs.Visit(func(f *pflag.Flag) {
		if empty == "" && f.Value.Type() != "bool" && strings.TrimSpace(f.Value.String()) == "" {
			empty = f.Name
		}
	})
	if empty != "" {
		return nil, fmt.Errorf("--%s needs a value", empty)
	}

	pos := fs.Args()
	if len(pos) > 0 && pos[0] == "gen-manifest" && fs.ArgsLenAtDash() != 0 {
		o.GenManifest = true
		pos = pos[1:]
		var bad []string
		fs.Visit(func(f *pflag.Flag) {
			if !slices.Contains(genManifestFlags, f.Name) {
				bad = append(bad, "--"+f.Name)
			}
		})
		if len(bad) > 0 {
			return nil, fmt.Errorf("gen-manifest does not take %s", strings.Join(bad, ", "))
		}
		if len(pos) > 0 {
			return nil, fmt.Errorf("gen-manifest: unexpected argument %q", pos[0])
		}
	}
	switch len(pos) {
	case 0:
	case 1:
		o.ManifestPath = pos[0]
		if o.ManifestPath == "" {
			return nil, errors.New("empty manifest path")
		}
	default:
		return nil, fmt.Errorf("unexpected argument %q (only one manifest may be given)", pos[1])
	}

	if o.Filter, err = parseFilter(&r); err != nil {
		return nil, err
	}
	o.Modules = r.modules
	if r.regex != "" {
		if o.Regex, err = regexp.Compile(r.regex); err != nil {
			return nil, fmt.Errorf("invalid regex %q: %s", r.regex, regexError(err))
		}
	}
	if o.Length, err = parseInt("--length", r.length, 1); err != nil {
		return nil, err
	}
	if o.Count, err = parseInt("--count", r.count, 0); err != nil {
		return nil, err
	}
	if o.Duration, err = parseDuration("--duration", r.duration, true); err != nil {
		return nil, err
	}
	if o.Idle, err = parseDuration("--idle", r.idle, false); err != nil {
		return nil, err
	}
	if o.RingSize, err = parseRingSize(r.ringSize); err != nil {
		return nil, err
	}
	o.ListFunc, o.Auto = r.listFunc, r.auto
	if o.Backend = strings.ToLower(r.backend); !slices.Contains(Backends, o.Backend) {
		return nil, fmt.Errorf("unknown backend %q (want %s)", r.backend, strings.Join(Backends, ", "))
	}
	if o.Format = strings.ToLower(r.output); !slices.Contains(Formats, o.Format) {
		return nil, fmt.Errorf("unknown output format %q (want text or json)", r.output)
	}
	for _, list := range r.egress {
		for name := range strings.SplitSeq(list, ",") {
			name = strings.TrimSpace(name)
			if name == "" {
				continue
			}
			if err := manifest.ValidName(name); err != nil {
				return nil, fmt.Errorf("--egress: %v", err)
			}
			o.Egress = append(o.Egress, name)
		}
	}
	if fs.Changed("egress") && len(o.Egress) == 0 {
		return nil, errors.New("--egress needs a function name")
	}
	o.ReadyFile, o.BTF, o.NoKmods, o.NoScanCache = r.readyFile, r.btf, r.noKmods, r.noScanCache
	o.NoTrack = r.noTrack

	if !o.GenManifest && !o.ListFunc {
		switch {
		case o.Auto && o.ManifestPath != "":
			return nil, fmt.Errorf("both a manifest (%q) and --auto given; use one", o.ManifestPath)
		case !o.Auto && o.ManifestPath == "":
			return nil, errors.New("no manifest given (pass a MANIFEST file, or --auto to trace every skb function)")
		}
	}
	if o.ListFunc && o.Auto && o.ManifestPath != "" {
		return nil, fmt.Errorf("both a manifest (%q) and --auto given; use one", o.ManifestPath)
	}
	return o, nil
}

func parseFilter(r *rawFlags) (filter.Filter, error) {
	f := filter.Any()
	var err error
	if r.ipversion != "" {
		if f.IPVersion, err = filter.ParseIPVersion(r.ipversion); err != nil {
			return f, err
		}
	}
	if r.saddr != "" {
		if f.Saddr, err = filter.ParsePrefix(r.saddr); err != nil {
			return f, fmt.Errorf("--saddr: %w", err)
		}
	}
	if r.daddr != "" {
		if f.Daddr, err = filter.ParsePrefix(r.daddr); err != nil {
			return f, fmt.Errorf("--daddr: %w", err)
		}
	}
	if r.proto != "" {
		if f.Proto, err = filter.ParseProto(r.proto); err != nil {
			return f, err
		}
	}
	if r.sport != "" {
		if f.Sport, err = filter.ParsePort(r.sport); err != nil {
			return f, fmt.Errorf("--sport: %w", err)
		}
	}
	if r.dport != "" {
		if f.Dport, err = filter.ParsePort(r.dport); err != nil {
			return f, fmt.Errorf("--dport: %w", err)
		}
	}
	return f, f.Validate()
}

func parseInt(flag, s string, min int) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("%s: invalid number %q", flag, s)
	}
	if n < min {
		return 0, fmt.Errorf("%s must be at least %d, got %d", flag, min, n)
	}
	return n, nil
}

// parseRingSize parses --ring-size: MiB, a power of two (the kernel wants
// a ring buffer of a power of two pages) up to MaxRingSize.
func parseRingSize(s string) (int, error) {
	n, err := parseInt("--ring-size", s, 1)
	if err != nil {
		return 0, err
	}
	if n > MaxRingSize || n&(n-1) != 0 {
		return 0, fmt.Errorf("--ring-size must be a power of two from 1 to %d (MiB), got %d", MaxRingSize, n)
	}
	return n, nil
}

func parseDuration(flag, s string, zeroOK bool) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if n, err := strconv.Atoi(s); err == nil && n == 0 {
		s = "0s"
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%s: invalid duration %q (want e.g. 500ms, 10s, 2m)", flag, s)
	}
	if d < 0 || (d == 0 && !zeroOK) {
		return 0, fmt.Errorf("%s must be positive, got %s", flag, s)
	}
	return d, nil
}

// flagError rewords pflag's messages so that they name the flag as the user
// typed it where we can, and stay on one line.
func flagError(err error) error {
	msg := err.Error()
	msg = strings.ReplaceAll(msg, "\n", " ")
	return errors.New(msg)
}

// regexError drops the "error parsing regexp: " prefix of regexp errors,
// and escapes newlines (the error quotes the pattern as typed).
func regexError(err error) string {
	msg := strings.TrimPrefix(err.Error(), "error parsing regexp: ")
	return strings.NewReplacer("\n", `\n`, "\r", `\r`).Replace(msg)
}
