package tracer

import "testing"

func TestDescFlags(t *testing.T) {
	tests := []struct {
		name string
		tp   bool
		want uint64
	}{
		{"consume_skb", false, descDying},
		{"kfree_skb_reason", false, descDying},
		{"sk_skb_reason_drop", false, descDying},
		{"__kfree_skb", false, descDying | descRelease},
		{"skb_release_head_state", false, descDying | descRelease},
		{"kfree_skbmem", false, descFree | descRelease},
		{"napi_skb_cache_put", false, descFree | descRelease},
		{"skb_release_data", false, descRelease},
		{"skb_release_data.isra.0", false, descRelease},
		{"ip_rcv", false, 0},
		{"kfree_skb", true, descDying | descFree},
		{"consume_skb", true, descDying | descFree},
		{"net_dev_queue", true, 0},
		{"skb_release_data", true, 0},
	}
	for _, tt := range tests {
		if got := descFlags(tt.name, tt.tp); got != tt.want {
			t.Errorf("descFlags(%s, tracepoint %v) = %#x, want %#x", tt.name, tt.tp, got, tt.want)
		}
	}
}

func TestDescArgs(t *testing.T) {
	tr := &tracer{targets: []Target{
		{Name: "__tcp_transmit_skb", SkbPos: 2, NumArgs: 5},
		{Name: "tcp_sendmsg_locked", SkbPos: 3, NumArgs: 4, Tracepoint: true},
		{Name: "ip_rcv", SkbPos: 1, NumArgs: 4},
		{Name: "sk_skb_reason_drop", SkbPos: 2, NumArgs: 3},
	}}
	for id, want := range []uint64{1, 1, 0, 0} {
		if got := tr.desc(id) >> 44 & 0xf; got != want {
			t.Errorf("%s: socket argument %d, want %d", tr.targets[id].Name, got, want)
		}
		if got := uint32(tr.desc(id)); got != uint32(id) {
			t.Errorf("%s: function ID %d, want %d", tr.targets[id].Name, got, id)
		}
	}
	for id, want := range []uint64{2, 3, 1, 2} {
		if got := tr.desc(id) >> 48 & 0xf; got != want {
			t.Errorf("%s: skb argument %d, want %d", tr.targets[id].Name, got, want)
		}
	}
	if got := tr.desc(3) >> 32 & 0xff; got != 3 {
		t.Errorf("sk_skb_reason_drop: reason argument %d, want 3", got)
	}
	tr.cfg.NoTrack = true
	if got := tr.desc(0) >> 44 & 0xf; got != 0 {
		t.Errorf("--no-track: socket argument %d, want none", got)
	}
}
