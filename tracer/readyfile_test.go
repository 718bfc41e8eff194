package tracer

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestCreateReadyFile: the ready file is created new, mode 0644, and never
// through a symlink or over an existing file, even one that appeared after
// the command line was checked.
func TestCreateReadyFile(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	dir := t.TempDir()

	p := filepath.Join(dir, "ready")
	if err := createReadyFile(p); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o644 {
		t.Errorf("ready file mode %v, want a regular file -rw-r--r--", fi.Mode())
	}
	if err := createReadyFile(p); !errors.Is(err, fs.ErrExist) {
		t.Errorf("existing file: %v, want EEXIST", err)
	}

	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, target string }{
		{"symlink to a file", victim},
		{"dangling symlink", filepath.Join(dir, "created-through-link")},
	} {
		link := filepath.Join(dir, tc.name)
		if err := os.Symlink(tc.target, link); err != nil {
			t.Fatal(err)
		}
		if err := createReadyFile(link); err == nil {
			t.Errorf("%s: created through the symlink", tc.name)
		}
	}
	if b, _ := os.ReadFile(victim); string(b) != "keep" {
		t.Errorf("the symlink's target changed: %q", b)
	}
	if fi, err := os.Stat(victim); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the symlink's target mode changed: %v %v", fi.Mode(), err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "created-through-link")); err == nil {
		t.Error("a dangling symlink's target was created")
	}
}
