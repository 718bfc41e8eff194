// Package gen turns a BTF scan into a manifest (the gen-manifest command).
package gen

import (
	"regexp"

	"github.com/ipftrace/ipftrace/btfscan"
	"github.com/ipftrace/ipftrace/manifest"
)

// Manifest lists every scanned function whose name matches re (nil: all),
// marking the kernel's default egress functions with egress: true.
func Manifest(scan *btfscan.Result, re *regexp.Regexp) *manifest.Manifest {
	egress := make(map[string]bool)
	for _, name := range manifest.DefaultEgress(scan) {
		egress[name] = true
	}
	m := &manifest.Manifest{Functions: make([]manifest.Entry, 0, len(scan.Funcs))}
	for _, fn := range scan.Funcs {
		if re != nil && !re.MatchString(fn.Name) {
			continue
		}
		m.Functions = append(m.Functions, manifest.Entry{
			Name:   fn.Name,
			SkbPos: fn.SkbPos,
			Egress: egress[fn.Name],
		})
	}
	return m
}
