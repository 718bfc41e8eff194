package tracer

import (
	"io"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf/link"
)

// pipeLink stands in for a BPF link: its descriptor is a pipe's write end,
// so the read end sees EOF once every copy of it is closed, which is what
// detaching a real link amounts to.
type pipeLink struct {
	link.Link // nil; only FD and Close are called
	w         *os.File
	closed    bool
}

func (l *pipeLink) FD() int { return int(l.w.Fd()) }

func (l *pipeLink) Close() error {
	l.closed = true
	return l.w.Close()
}

// TestHandOver runs the detacher (this test binary, re-executed through
// the package's init hook) on stand-in links and checks that it reports
// every one closed and that no copy of any descriptor stays open, here or
// in the detacher.
func TestHandOver(t *testing.T) {
	for _, n := range []int{1, 3, 200} {
		readers := make([]*os.File, n)
		links := make([]link.Link, n)
		for i := range n {
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			readers[i], links[i] = r, &pipeLink{w: w}
		}
		progress, left, err := handOver(links)
		if err != nil {
			t.Fatalf("%d links: handOver: %v (%d left)", n, err, len(left))
		}
		for i, l := range links {
			if !l.(*pipeLink).closed {
				t.Errorf("%d links: link %d still open in this process after the hand-over", n, i)
			}
		}
		progress.SetReadDeadline(time.Now().Add(10 * time.Second))
		got, err := io.ReadAll(progress)
		progress.Close()
		if err != nil || len(got) != n {
			t.Fatalf("%d links: detacher reported %d closed (%v), want %d", n, len(got), err, n)
		}
		for i, r := range readers {
			r.SetReadDeadline(time.Now().Add(5 * time.Second))
			if k, err := r.Read(make([]byte, 1)); k != 0 || err != io.EOF {
				t.Errorf("%d links: link %d: read = %d, %v; want EOF (a copy of the descriptor is still open)", n, i, k, err)
			}
		}
	}
}
