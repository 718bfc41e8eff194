package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestNewOtherTool(t *testing.T) {
	for _, tt := range []struct {
		command, name, ready string
		wantName, wantErr    string // wantName "" with no error: no tool
	}{
		{"", "", "", "", ""},
		{"  ", "", "x", "", ""},
		{"/opt/pwru 'dst host {daddr}'", "", "Listening", "pwru", ""},
		{"/opt/pwru 'dst host {daddr}'", "pwru-1.0", "Listening", "pwru-1.0", ""},
		{"/opt/pwru 'dst host 10.0.0.2'", "", "Listening", "", "must contain {daddr}"},
		{"/opt/pwru {daddr}", "", "", "", "needs -other-ready"},
		{"/opt/pwru {daddr}", "", "(", "", "-other-ready"},
	} {
		o, err := newOtherTool(tt.command, tt.name, tt.ready)
		switch {
		case tt.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("newOtherTool(%q, %q, %q) = %v, want an error containing %q", tt.command, tt.name, tt.ready, err, tt.wantErr)
			}
		case err != nil:
			t.Errorf("newOtherTool(%q, %q, %q): %v", tt.command, tt.name, tt.ready, err)
		case tt.wantName == "" && o != nil:
			t.Errorf("newOtherTool(%q, ...) = %+v, want none", tt.command, o)
		case tt.wantName != "" && (o == nil || o.name != tt.wantName):
			t.Errorf("newOtherTool(%q, %q, %q) = %+v, want name %q", tt.command, tt.name, tt.ready, o, tt.wantName)
		}
	}
}

func TestCountLines(t *testing.T) {
	dir := t.TempDir()
	long := strings.Repeat("x", 3<<20) // longer than the reader's buffer
	for _, tt := range []struct {
		content string
		lines   int64
	}{
		{"", 0},
		{"a\n", 1},
		{"a\nb\nc", 2}, // a partial last line is not a line
		{long + "\n" + long + "\n", 2},
	} {
		path := filepath.Join(dir, "out")
		if err := os.WriteFile(path, []byte(tt.content), 0o644); err != nil {
			t.Fatal(err)
		}
		size, lines, err := countLines(path)
		if err != nil || size != int64(len(tt.content)) || lines != tt.lines {
			t.Errorf("countLines(%d bytes) = %d bytes, %d lines, %v; want %d lines", len(tt.content), size, lines, err, tt.lines)
		}
	}
}
