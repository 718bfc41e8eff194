package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestReadyWatch(t *testing.T) {
	dir := t.TempDir()
	ready := filepath.Join(dir, "ready")
	w, err := watchReady(ready)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	// Another file, or a name that only starts with ours, is not it.
	for _, name := range []string{"other", "ready.tmp"} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-w.created:
		t.Fatal("reported ready before the ready file was created")
	case <-time.After(100 * time.Millisecond):
	}
	if err := os.WriteFile(ready, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	select {
	case <-w.created:
	case <-time.After(10 * time.Second):
		t.Fatal("ready file created, not reported")
	}
}
