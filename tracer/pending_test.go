package tracer

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// fakeProc writes a /proc with one process per entry: its environment and
// the targets of its descriptors.
func fakeProc(t *testing.T, procs map[int]struct {
	env string
	fds []string
}) string {
	t.Helper()
	root := t.TempDir()
	for pid, p := range procs {
		dir := filepath.Join(root, strconv.Itoa(pid))
		if err := os.MkdirAll(filepath.Join(dir, "fd"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "environ"), []byte(p.env), 0o644); err != nil {
			t.Fatal(err)
		}
		for i, target := range p.fds {
			if err := os.Symlink(target, filepath.Join(dir, "fd", strconv.Itoa(i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	// An entry that is not a process.
	if err := os.WriteFile(filepath.Join(root, "uptime"), []byte("1 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

func TestFindPendingDetach(t *testing.T) {
	link, pipe := "anon_inode:bpf_link", "pipe:[123]"
	root := fakeProc(t, map[int]struct {
		env string
		fds []string
	}{
		100: {detacherEnv + "=3\x00", []string{pipe, link, link, link}},
		101: {"PATH=/bin\x00" + detacherEnv + "=2\x00", []string{pipe, link, "anon_inode:bpf-prog"}},
		102: {detacherEnv + "=1\x00", []string{pipe}}, // done with its links
		103: {"HOME=/root\x00X" + detacherEnv + "=1\x00", []string{link}},
		104: {"PATH=/bin\x00", []string{link, link}},
	})
	got := findPendingDetach(root)
	want := map[int]int{100: 3, 101: 1}
	if len(got) != len(want) {
		t.Fatalf("findPendingDetach = %+v, want pids and links %v", got, want)
	}
	for _, p := range got {
		if want[p.pid] != p.links {
			t.Errorf("pid %d: %d links, want %d", p.pid, p.links, want[p.pid])
		}
	}
	if got := findPendingDetach(filepath.Join(root, "missing")); got != nil {
		t.Errorf("no /proc: %+v, want none", got)
	}
}

func TestPendingDetachNote(t *testing.T) {
	link := "anon_inode:bpf_link"
	two := fakeProc(t, map[int]struct {
		env string
		fds []string
	}{
		7: {detacherEnv + "=3\x00", []string{link, link, link}},
		9: {detacherEnv + "=1\x00", []string{link}},
	})
	one := fakeProc(t, map[int]struct {
		env string
		fds []string
	}{
		7: {detacherEnv + "=2\x00", []string{link, link}},
	})
	none := fakeProc(t, nil)
	for _, tt := range []struct {
		backend string
		proc    string
		want    string // substring; "" for no note
	}{
		{BackendFentry, two, "4 links of an earlier run are still detaching (detacher pid 7, 9)"},
		{BackendKprobe, one, "attaching with kprobe waits behind them"},
		{BackendKprobeMulti, one, "2 links"},
		{BackendTracepoint, two, ""},
		{BackendFentry, none, ""},
	} {
		got := pendingDetachNote(tt.backend, tt.proc)
		if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
			t.Errorf("pendingDetachNote(%s, %s) = %q, want %q", tt.backend, tt.proc, got, tt.want)
		}
	}
}
