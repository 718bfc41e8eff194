package manifest

import "github.com/ipftrace/ipftrace/btfscan"

// defaultEgress are the functions that free, consume or drop an skb, in the
// order they are listed. Older and newer kernels have different subsets.
var defaultEgress = []string{
	"sk_skb_reason_drop",    // 6.11+: every drop goes through here
	"kfree_skb_reason",      // 5.17..6.10 (a function, not an inline)
	"kfree_skb",             // before 5.17
	"kfree_skb_list_reason", // lists of dropped skbs
	"consume_skb",           // normal end of life
	"__kfree_skb",           // direct frees that bypass consume_skb
	"napi_consume_skb",      // TX completion in NAPI context
	"__napi_kfree_skb",      // GRO merge frees
	"kfree_skb_partial",     // GRO head steal
	"__dev_kfree_skb_any",   // drivers, any context
	"__dev_kfree_skb_irq",   // drivers, hard IRQ context
	"dev_kfree_skb_any_reason",
	"dev_kfree_skb_irq_reason",
	"skb_attempt_defer_free", // freed later on the allocating CPU
}

// defaultEgressTracepoints are the tracepoints that end a journey.
var defaultEgressTracepoints = []string{"kfree_skb", "consume_skb"}

// DefaultEgress returns the functions that end an skb's life and exist (with
// an skb argument) on the scanned kernel.
func DefaultEgress(scan *btfscan.Result) []string {
	var out []string
	for _, name := range defaultEgress {
		if _, ok := scan.Func(name); ok {
			out = append(out, name)
		}
	}
	return out
}

// DefaultEgressTracepoints returns the tracepoints that end an skb's life and
// exist on the scanned kernel.
func DefaultEgressTracepoints(scan *btfscan.Result) []string {
	var out []string
	for _, name := range defaultEgressTracepoints {
		if _, ok := scan.Tracepoint(name); ok {
			out = append(out, name)
		}
	}
	return out
}
