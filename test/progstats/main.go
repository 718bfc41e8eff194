// Command progstats prints the run count and average run time of every
// loaded BPF program that has run, and the average over all of them
// weighted by run count. It needs kernel.bpf_stats_enabled=1 while the
// programs run (test/progstats.sh sets it). With -last it prints the highest
// program ID in use and exits; -after ID then counts only programs created
// since, leaving out those of an earlier run that are still detaching.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/cilium/ebpf"
)

func main() {
	prefix := flag.String("prefix", "", "only programs whose name starts with this")
	after := flag.Uint("after", 0, "only programs whose ID is above this")
	last := flag.Bool("last", false, "print the highest program ID in use and exit")
	flag.Parse()
	var (
		id        ebpf.ProgramID
		runs      uint64
		total     time.Duration
		nPrograms int
	)
	for {
		next, err := ebpf.ProgramGetNextID(id)
		if err != nil {
			break
		}
		id = next
		if *last || uint(id) <= *after {
			continue
		}
		p, err := ebpf.NewProgramFromID(id)
		if err != nil {
			continue
		}
		info, ierr := p.Info()
		st, serr := p.Stats()
		p.Close()
		if ierr != nil || serr != nil || st.RunCount == 0 || !strings.HasPrefix(info.Name, *prefix) {
			continue
		}
		nPrograms++
		runs += st.RunCount
		total += st.Runtime
		fmt.Printf("  %-16s %-8v runs %9d  avg %6d ns\n", info.Name, info.Type, st.RunCount, st.Runtime.Nanoseconds()/int64(st.RunCount))
	}
	if *last {
		fmt.Println(id)
		return
	}
	if runs == 0 {
		fmt.Fprintln(os.Stderr, "progstats: no program has run (is kernel.bpf_stats_enabled 1?)")
		os.Exit(1)
	}
	fmt.Printf("  all %d programs: %d runs, %d ns per run\n", nPrograms, runs, total.Nanoseconds()/int64(runs))
}
