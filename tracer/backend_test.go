package tracer

import (
	"slices"
	"strings"
	"testing"

	"github.com/ipftrace/ipftrace/btfscan"
)

func TestAutoPick(t *testing.T) {
	all := func(km, fe, kp candidate) []candidate {
		km.name, fe.name, kp.name = BackendKprobeMulti, BackendFentry, BackendKprobe
		return []candidate{km, fe, kp}
	}
	ok := func(reach int) candidate { return candidate{reach: reach} }
	no := func(reach int, why string) candidate { return candidate{reach: reach, unusable: why} }
	tests := []struct {
		name     string
		job      autoJob
		want     string
		whyHas   []string
		whyLacks []string
		probes   []string // the backends pick must probe (nil: not checked)
	}{
		{
			name:   "auto set, everything usable: kprobe-multi despite missing a few",
			job:    autoJob{total: 1654, tracepoints: 30, candidates: all(ok(1645), ok(1654), ok(1645))},
			want:   BackendKprobeMulti,
			whyHas: []string{"reaches 1645/1654", "one call", "fentry: reaches 1654/1654", "kprobe: reaches 1645/1654", "tracepoint: sees only the 30"},
			probes: []string{BackendKprobeMulti},
		},
		{
			name:   "manifest with a 7th-argument skb: fentry reaches all",
			job:    autoJob{total: 10, named: true, tracepoints: 30, candidates: all(ok(9), ok(10), ok(9))},
			want:   BackendFentry,
			whyHas: []string{"reaches 10/10", "chosen over kprobe-multi, which reaches only 9", "kprobe-multi: reaches only 9/10", "kprobe: reaches only 9/10"},
			probes: []string{BackendKprobeMulti, BackendFentry},
		},
		{
			name:   "manifest all within six arguments: kprobe-multi",
			job:    autoJob{total: 10, named: true, tracepoints: 30, candidates: all(ok(10), ok(10), ok(10))},
			want:   BackendKprobeMulti,
			whyHas: []string{"reaches 10/10"}, whyLacks: []string{"chosen over"},
			probes: []string{BackendKprobeMulti},
		},
		{
			name:   "auto set losing more than the tolerance: fentry",
			job:    autoJob{total: 1000, tracepoints: 30, candidates: all(ok(900), ok(1000), ok(900))},
			want:   BackendFentry,
			whyHas: []string{"chosen over kprobe-multi, which reaches only 900"},
		},
		{
			name:   "6.1: no kprobe-multi",
			job:    autoJob{total: 1576, tracepoints: 25, candidates: all(no(1571, "not supported by this kernel"), ok(1576), ok(1571))},
			want:   BackendFentry,
			whyHas: []string{"kprobe-multi: not supported by this kernel", "kprobe: reaches 1571/1576"},
		},
		{
			name:   "fentry refused, kprobes only",
			job:    autoJob{total: 100, tracepoints: 30, candidates: all(no(100, "not supported by this kernel"), no(100, "not permitted (EPERM)"), ok(100))},
			want:   BackendKprobe,
			whyHas: []string{"fentry: not permitted (EPERM)"},
		},
		{
			name:   "this host: nothing but tracepoints",
			job:    autoJob{total: 2404, tracepoints: 30, candidates: all(no(2390, "kernel has no kprobes (no kprobe PMU)"), no(2404, "not permitted (EPERM)"), no(2390, "kernel has no kprobes (no kprobe PMU)"))},
			want:   BackendTracepoint,
			whyHas: []string{"fentry: not permitted (EPERM)", "kprobe-multi: kernel has no kprobes"},
			probes: []string{BackendKprobeMulti, BackendFentry, BackendKprobe},
		},
		{
			name:   "manifest: the backend that reaches more is refused, so the better ranked one is taken",
			job:    autoJob{total: 10, named: true, tracepoints: 30, candidates: all(ok(9), no(10, "not permitted (EPERM)"), ok(9))},
			want:   BackendKprobeMulti,
			whyHas: []string{"fentry: not permitted (EPERM)", "reaches 9/10"},
			probes: []string{BackendKprobeMulti, BackendFentry},
		},
		{
			name: "usable but reaching nothing",
			job:  autoJob{total: 3, named: true, tracepoints: 30, candidates: all(candidate{unusable: "reaches none of the 3 functions"}, ok(3), candidate{unusable: "reaches none of the 3 functions"})},
			want: BackendFentry,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// The probe answers what each candidate says; pick must not
			// know it before asking.
			answers := map[string]string{}
			for i := range tc.job.candidates {
				c := &tc.job.candidates[i]
				answers[c.name] = c.unusable
				if !strings.HasPrefix(c.unusable, "reaches none") {
					c.unusable = ""
				} else {
					c.probed = true
				}
			}
			var probed []string
			tc.job.probe = func(name string) string {
				probed = append(probed, name)
				return answers[name]
			}
			got, why := tc.job.pick()
			if tc.probes != nil && !slices.Equal(probed, tc.probes) {
				t.Errorf("probed %v, want %v", probed, tc.probes)
			}
			if got != tc.want {
				t.Fatalf("pick = %s (%s), want %s", got, why, tc.want)
			}
			for _, s := range tc.whyHas {
				if !strings.Contains(why, s) {
					t.Errorf("explanation %q lacks %q", why, s)
				}
			}
			for _, s := range tc.whyLacks {
				if strings.Contains(why, s) {
					t.Errorf("explanation %q has %q", why, s)
				}
			}
		})
	}
}

func TestReaches(t *testing.T) {
	kp := btfscan.BackendKprobe | btfscan.BackendKprobeMulti
	all := kp | btfscan.BackendFentry
	tests := []struct {
		tg                     Target
		fentry, kmulti, kprobe bool
	}{
		{Target{Name: "ip_rcv", SkbPos: 1, Reach: all}, true, true, true},
		{Target{Name: "seventh", SkbPos: 7, Reach: btfscan.BackendFentry}, true, false, false},
		{Target{Name: "thirteen_args", SkbPos: 1, NumArgs: 13, Reach: kp}, false, true, true},
		{Target{Name: "slot_after_struct", SkbPos: 6, SkbSlot: 7}, true, false, false},
		{Target{Name: "thirteenth", SkbPos: 13}, false, false, false},
	}
	for _, tc := range tests {
		for b, want := range map[string]bool{BackendFentry: tc.fentry, BackendKprobeMulti: tc.kmulti, BackendKprobe: tc.kprobe} {
			if got := reaches(b, tc.tg); got != want {
				t.Errorf("reaches(%s, %s) = %v, want %v", b, tc.tg.Name, got, want)
			}
		}
	}
}
