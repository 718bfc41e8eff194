package btfscan

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// TestScanCached scans the running kernel through the cache: the second
// scan comes from the cache and equals the first; a corrupt or foreign-
// writable cache means a fresh scan, not an error; options that do not
// describe the running kernel bypass the cache.
func TestScanCached(t *testing.T) {
	if _, err := os.Stat(DefaultBTFPath); err != nil {
		t.Skipf("TestScanCached: SKIPPED, no kernel BTF: %v", err)
	}
	dir := filepath.Join(t.TempDir(), "cache")
	opts := Options{Kmods: true}
	scan := func(want bool) *Result {
		t.Helper()
		res, cached, err := ScanCached(opts, dir)
		if err != nil {
			t.Fatal(err)
		}
		if cached != want {
			t.Fatalf("cached = %v, want %v", cached, want)
		}
		return res
	}
	fresh := scan(false)
	if info, err := os.Stat(dir); err != nil || info.Mode().Perm() != 0o700 {
		t.Fatalf("cache dir: %v, %v; want mode 0700", info, err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "scan-*.gob"))
	if len(files) != 1 {
		t.Fatalf("cache files %v, want one", files)
	}
	same := func(got *Result) {
		t.Helper()
		if !reflect.DeepEqual(got.Funcs, fresh.Funcs) || !reflect.DeepEqual(got.Tracepoints, fresh.Tracepoints) ||
			!reflect.DeepEqual(got.Modules, fresh.Modules) || got.FentryMaxArgs != fresh.FentryMaxArgs ||
			got.FilterListKnown != fresh.FilterListKnown || got.BlacklistKnown != fresh.BlacklistKnown {
			t.Fatalf("cached result differs from the scan: %d/%d funcs, %d/%d tracepoints",
				len(got.Funcs), len(fresh.Funcs), len(got.Tracepoints), len(fresh.Tracepoints))
		}
		d1, err1 := fresh.DropReasons()
		d2, err2 := got.DropReasons()
		if err1 != nil || err2 != nil || !reflect.DeepEqual(d1, d2) {
			t.Fatalf("drop reasons differ: %d (%v) vs %d (%v)", len(d1), err1, len(d2), err2)
		}
		if _, err := got.BTF(); err != nil {
			t.Fatalf("BTF of the cached result: %v", err)
		}
	}
	if len(fresh.Funcs) == 0 || len(fresh.Tracepoints) == 0 {
		t.Fatalf("scan found %d functions, %d tracepoints", len(fresh.Funcs), len(fresh.Tracepoints))
	}
	same(scan(true))

	// Corrupt: rescanned and rewritten.
	if err := os.WriteFile(files[0], []byte("not a gob"), 0o600); err != nil {
		t.Fatal(err)
	}
	same(scan(false))
	same(scan(true))

	// Writable by others: not trusted, not written.
	if err := os.Chmod(files[0], 0o666); err != nil {
		t.Fatal(err)
	}
	scan(false)
	os.Chmod(files[0], 0o600)
	os.Chmod(dir, 0o777)
	scan(false)
	os.Chmod(dir, 0o700)
	same(scan(true))

	// Other options, other key; a BTF file of its own bypasses the cache.
	opts = Options{Kmods: false}
	scan(false)
	scan(true)
	if files, _ := filepath.Glob(filepath.Join(dir, "scan-*.gob")); len(files) != 1 {
		t.Errorf("cache files %v, want only the newest key's", files)
	}
	other := filepath.Join(t.TempDir(), "vmlinux")
	data, err := os.ReadFile(DefaultBTFPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(other, data, 0o600); err != nil {
		t.Fatal(err)
	}
	opts = Options{BTFPath: other, IgnoreTraceFS: true}
	scan(false)
	scan(false)
}
