package manifest

import (
	"fmt"
	"strings"

	"github.com/ipftrace/ipftrace/btfscan"
)

// maxListedNames caps how many names a Summary lists per category.
const maxListedNames = 10

// Correction is a manifest skb_pos that BTF disagrees with.
type Correction struct {
	Name     string // function name
	Manifest int    // skb_pos in the manifest
	BTF      int    // skb_pos according to BTF
}

// Summary says what Reconcile changed.
type Summary struct {
	Skipped   []string     // functions not in the scan
	Corrected []Correction // skb_pos replaced with the BTF value
}

// Empty reports whether Reconcile changed nothing.
func (s Summary) Empty() bool { return len(s.Skipped) == 0 && len(s.Corrected) == 0 }

// String is a one-line report, e.g. "manifest: skipped 2 unknown functions
// (foo, bar); corrected skb_pos of 1 (ip_output 1→3)", or "" if Empty.
func (s Summary) String() string {
	if s.Empty() {
		return ""
	}
	var parts []string
	if n := len(s.Skipped); n > 0 {
		parts = append(parts, fmt.Sprintf("skipped %d unknown %s (%s)", n, plural(n, "function", "functions"), listNames(s.Skipped)))
	}
	if n := len(s.Corrected); n > 0 {
		names := make([]string, n)
		for i, c := range s.Corrected {
			names[i] = fmt.Sprintf("%s %d→%d", c.Name, c.Manifest, c.BTF)
		}
		parts = append(parts, fmt.Sprintf("corrected skb_pos of %d (%s)", n, listNames(names)))
	}
	return "manifest: " + strings.Join(parts, "; ")
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func listNames(names []string) string {
	if len(names) <= maxListedNames {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s, …and %d more", strings.Join(names[:maxListedNames], ", "), len(names)-maxListedNames)
}

// Reconcile checks m against the functions BTF describes: entries for
// functions the scan does not have are skipped, and a skb_pos that differs
// from BTF (or is unset) is replaced by the BTF value. Order is kept.
func Reconcile(m *Manifest, scan *btfscan.Result) (targets []Entry, sum Summary) {
	targets = make([]Entry, 0, len(m.Functions))
	for _, e := range m.Functions {
		fn, ok := scan.Func(e.Name)
		if !ok {
			sum.Skipped = append(sum.Skipped, e.Name)
			continue
		}
		if e.SkbPos != fn.SkbPos {
			if e.SkbPos != 0 {
				sum.Corrected = append(sum.Corrected, Correction{Name: e.Name, Manifest: e.SkbPos, BTF: fn.SkbPos})
			}
			e.SkbPos = fn.SkbPos
		}
		targets = append(targets, e)
	}
	return targets, sum
}
