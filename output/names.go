// Package output writes journeys as flow-grouped text tables or as JSON
// lines, one object per journey.
package output

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/ipftrace/ipftrace/journey"
)

// Names resolves function IDs (indexes into the tracer's function table)
// to function names.
type Names interface {
	// Name returns the name of function funcID.
	Name(funcID uint32) string
}

// NamesFunc adapts a plain function to Names.
type NamesFunc func(funcID uint32) string

// Name calls f(funcID).
func (f NamesFunc) Name(funcID uint32) string { return f(funcID) }

// NameList is a Names backed by a slice indexed by function ID; IDs out of
// range resolve to "func#<id>".
type NameList []string

// Name returns l[funcID], or "func#<id>" if funcID is out of range.
func (l NameList) Name(funcID uint32) string {
	if uint64(funcID) < uint64(len(l)) {
		return l[funcID]
	}
	return unknownName(funcID)
}

// unknownName is the name of a function that Names cannot resolve.
func unknownName(funcID uint32) string {
	return "func#" + strconv.FormatUint(uint64(funcID), 10)
}

// nameOf resolves funcID with names, which may be nil.
func nameOf(names Names, funcID uint32) string {
	if names == nil {
		return unknownName(funcID)
	}
	if n := names.Name(funcID); n != "" {
		return n
	}
	return unknownName(funcID)
}

// Writer writes journeys in one output format; Text and JSON implement it.
type Writer interface {
	// Write writes one journey.
	Write(j journey.Journey) error
}

// Formats are the names New accepts.
var Formats = []string{"text", "json"}

// New returns the Writer for format ("text" or "json") writing to w.
func New(format string, w io.Writer, names Names) (Writer, error) {
	switch format {
	case "text":
		return NewText(w, names), nil
	case "json":
		return NewJSON(w, names), nil
	}
	return nil, fmt.Errorf("output format %q: must be one of %s", format, strings.Join(Formats, ", "))
}
