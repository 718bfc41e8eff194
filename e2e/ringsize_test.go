//go:build linux

package e2e

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/ipftrace/ipftrace/internal/bpfids"
)

// ringBufferSizes returns max_entries of every BPF ring buffer map (map
// type 27) among pid's open descriptors.
func ringBufferSizes(t *testing.T, pid int) []int {
	t.Helper()
	infos, err := bpfids.FDInfo(pid)
	if err != nil {
		t.Fatal(err)
	}
	var sizes []int
	for _, fields := range infos {
		if fields["map_type"] != "27" {
			continue
		}
		n, err := strconv.Atoi(fields["max_entries"])
		if err != nil {
			t.Fatalf("ring buffer of pid %d: max_entries %q", pid, fields["max_entries"])
		}
		sizes = append(sizes, n)
	}
	return sizes
}

// TestRingSize: --ring-size sizes the ring buffer the kernel allocates
// (checked through the process's map descriptors), and journeys come
// through it as they do with the default.
func TestRingSize(t *testing.T) {
	p := newNetPair(t)
	requireTool(t, "ping")
	for _, tt := range []struct {
		args []string
		want int
	}{
		{nil, 8 << 20},
		{[]string{"--ring-size", "2"}, 2 << 20},
	} {
		t.Run(fmt.Sprint(tt.want>>20, "MiB"), func(t *testing.T) {
			args := append(tt.args, "-o", "json", "-p", "icmp", "-s", addrA, "-d", addrB)
			tr := startTracer(t, tracerArgs(t, args...)...)
			if got := ringBufferSizes(t, tr.cmd.Process.Pid); len(got) != 1 || got[0] != tt.want {
				t.Errorf("ring buffers of ipftrace %s: sizes %v, want one of %d bytes", strings.Join(tt.args, " "), got, tt.want)
			}
			ping(t, p.a, addrB, 1)
			tr.waitEchoRequest(p)
			tr.stop()
		})
	}
}
