package cli

import "strings"

// legacyFlags maps the original tool's single-dash multi-letter flags to
// their long forms. pflag only knows one-letter shorthands.
var legacyFlags = map[string]string{
	"-iv": "--ipversion",
	"-sp": "--sport",
	"-dp": "--dport",
	"-ls": "--list-func",
}

// valueShorthands are the one-letter flags that take a value.
const valueShorthands = "sdpmrlboec"

// boolShorthands are the one-letter flags that take no value.
const boolShorthands = "vh"

// valueLongFlags are the long flags that take a value (when not given as
// --flag=value, the next argument is the value).
var valueLongFlags = map[string]bool{
	"ipversion": true, "saddr": true, "daddr": true, "proto": true,
	"sport": true, "dport": true, "module": true, "regex": true,
	"length": true, "backend": true, "output": true, "egress": true,
	"count": true, "duration": true, "ready-file": true, "btf": true,
	"idle": true, "ring-size": true,
}

// TranslateArgs rewrites the original tool's flags -iv, -sp, -dp and -ls
// (also as -iv=4) to --ipversion, --sport, --dport and --list-func, so that
// pflag can parse them. Arguments after "--" and arguments that are the
// value of a preceding flag (as in "-r -ls") are left alone.
func TranslateArgs(args []string) []string {
	out := make([]string, 0, len(args))
	valueNext := false
	for i, arg := range args {
		if valueNext {
			out = append(out, arg)
			valueNext = false
			continue
		}
		if arg == "--" {
			return append(out, args[i:]...)
		}
		name, value, hasValue := strings.Cut(arg, "=")
		if long, ok := legacyFlags[name]; ok {
			if hasValue {
				out = append(out, long+"="+value)
			} else {
				out = append(out, long)
				valueNext = valueLongFlags[long[2:]]
			}
			continue
		}
		out = append(out, arg)
		valueNext = takesValue(arg)
	}
	return out
}

// takesValue reports whether the argument after arg is arg's value.
func takesValue(arg string) bool {
	switch {
	case strings.HasPrefix(arg, "--"):
		return !strings.Contains(arg, "=") && valueLongFlags[arg[2:]]
	case strings.HasPrefix(arg, "-") && len(arg) > 1:
		// A cluster of shorthands: -v, -vr (value next), -rfoo (value inline).
		for j := 1; j < len(arg); j++ {
			c := arg[j]
			switch {
			case strings.IndexByte(boolShorthands, c) >= 0:
				continue
			case strings.IndexByte(valueShorthands, c) >= 0:
				return j == len(arg)-1
			default:
				return false
			}
		}
	}
	return false
}
