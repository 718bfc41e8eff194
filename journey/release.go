package journey

import "strings"

// releaseNames are the exact names of skb release-path functions: what the
// kernel runs on an skb after consume_skb/kfree_skb decided to free it, and
// the socket accounting destructors it triggers.
var releaseNames = map[string]bool{
	"__kfree_skb":            true,
	"kfree_skbmem":           true,
	"kfree_skb_partial":      true,
	"skb_free_head":          true,
	"skb_free_frag":          true,
	"skb_attempt_defer_free": true,
	"napi_skb_cache_put":     true,
	"__skb_ext_put":          true,
	"__skb_ext_del":          true,
	"sock_wfree":             true,
	"__sock_wfree":           true,
	"sock_rfree":             true,
	"sock_efree":             true,
	"tcp_wfree":              true,
	"dst_release":            true,
	"skb_dst_drop":           true,
	"__skb_dst_drop":         true,
}

// releasePrefixes are the name prefixes of release-path function families.
var releasePrefixes = []string{
	"skb_release_", // skb_release_head_state, skb_release_data, skb_release_all
	"skb_ext_",     // skb_ext_put, skb_ext_del, ...
	"skb_orphan",   // skb_orphan, skb_orphan_frags, skb_orphan_frags_rx
}

// IsReleaseName reports whether name is a function of the skb release path,
// which runs on an skb after the egress function that freed it (for example
// consume_skb → __kfree_skb → skb_release_data → kfree_skbmem). It matches a
// short fixed list (__kfree_skb, kfree_skbmem, kfree_skb_partial,
// skb_free_head, skb_free_frag, skb_attempt_defer_free, napi_skb_cache_put,
// __skb_ext_put, __skb_ext_del, sock_wfree, __sock_wfree, sock_rfree,
// sock_efree, tcp_wfree, dst_release, skb_dst_drop, __skb_dst_drop) and the
// prefixes skb_release_, skb_ext_ and skb_orphan. Compiler suffixes such as
// ".isra.0" or ".constprop.0" are ignored.
func IsReleaseName(name string) bool {
	if i := strings.IndexByte(name, '.'); i > 0 {
		name = name[:i]
	}
	if releaseNames[name] {
		return true
	}
	for _, p := range releasePrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// startNames are the functions where a packet starts a pass through a
// device: the transmit queue and the receive entry tracepoints.
var startNames = map[string]bool{
	"net_dev_queue":                true,
	"netif_receive_skb_entry":      true,
	"netif_receive_skb_list_entry": true,
	"netif_rx_entry":               true,
	"napi_gro_receive_entry":       true,
	"napi_gro_frags_entry":         true,
}

// IsStartName reports whether name is a function where a packet starts a
// pass through a device, which one packet passes once per device: the
// tracepoints net_dev_queue, netif_receive_skb_entry,
// netif_receive_skb_list_entry, netif_rx_entry, napi_gro_receive_entry and
// napi_gro_frags_entry (see Start).
func IsStartName(name string) bool { return startNames[name] }

// RoleOf returns the Role of the function name: Egress if egress (the
// tracer's built-in set or the user's), Release and Start as IsReleaseName
// and IsStartName say.
func RoleOf(name string, egress bool) Role {
	var r Role
	if egress {
		r |= Egress
	}
	if IsReleaseName(name) {
		r |= Release
	}
	if IsStartName(name) {
		r |= Start
	}
	return r
}
