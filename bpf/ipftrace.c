//go:build ignore

// SPDX-License-Identifier: GPL-2.0
/*
 * ipftrace's BPF side: one small handler shared by every backend.
 *
 * Each entry program finds the skb (from a fixed argument position), runs
 * HANDLE() (flow filter, then for a match the descriptor and an event). The
 * descriptor holds the function ID in its low 32 bits and the 1-based
 * position of a drop-reason argument in bits 32..39 (0: none).
 *
 *   fentry, tp_btf:        one program is loaded per function; userspace
 *                          patches the descriptor into the DESC_MARKER
 *                          ld_imm64 of a clone of the template. For fentry
 *                          that clone is a stub that hands the hits it
 *                          cannot drop to fentry_chain (FENTRY_STUB).
 *   kprobe:                one program per skb position; the descriptor is
 *                          the attach cookie of each function.
 *   kprobe-multi:          one program and link for each skb position 1..3,
 *                          one for 4..6 (the position in the cookie).
 *
 * The flow filter is a set of load-time constants (volatile const), so a
 * packet that does not match costs a few header reads and no map lookups.
 *
 * This file is compiled once per program group (bpf/gen.go), so that a run
 * parses only the programs of its backend: PROGS_TP (tp_btf), PROGS_FENTRY
 * (fentry, fexit), PROGS_KPROBE and PROGS_KPROBE_MULTI. Maps and globals are
 * outside every #ifdef, so all objects share one layout of them (the tracer
 * checks this) and the programs of any group can use the maps created from
 * another.
 */
#include "types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "GPL";

#define DATA_SIZE 64
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define IPPROTO_SCTP 132
#define HDR_UNSET 0xffff

/* The value userspace replaces with each function's descriptor. */
#define DESC_MARKER "0x1badc0de5eedf00d"

/* A helper of some program groups only: unused in the others. */
#define __group_helper __attribute__((unused))

/*
 * Descriptor flags (tracer/objects.go sets them).
 *   DESC_DYING:   the skb is freed here if nobody else holds it (users <= 1):
 *                 consume_skb, kfree_skb*, skb_release_head_state, the
 *                 kfree_skb and consume_skb tracepoints, ...
 *   DESC_FREE:    the sk_buff itself is released here (kfree_skbmem,
 *                 napi_skb_cache_put): forget it.
 *   DESC_RELEASE: a function of the release path that runs after the skb
 *                 was found dying (journey.IsReleaseName).
 *   DESC_QUIET:   only forget skbs here, emit nothing (a helper attached by
 *                 the tracer so that frees are seen whatever the user traces).
 */
#define DESC_DYING (1ULL << 40)
#define DESC_FREE (1ULL << 41)
#define DESC_RELEASE (1ULL << 42)
#define DESC_QUIET (1ULL << 43)
/* Bits 44..47: 1-based position of a struct sock * argument (0: none). */

/* Event flags. */
#define EV_CLONE 1   /* the skb is a clone or copy of the journey's skb */
#define EV_TRACKED 2 /* in the journey by tracking; its headers did not match */
#define EV_SOCK 4    /* the tuple comes from skb->sk, not from headers */

#define AF_INET 2
#define AF_INET6 10
#define TCP_TIME_WAIT 6
#define TCP_NEW_SYN_RECV 12
#define IPPROTO_UDPLITE 136


struct tuple {
	u8 saddr[16];
	u8 daddr[16];
	u16 sport;
	u16 dport;
	u8 ipversion;
	u8 proto;
	u8 pad[2];
};

struct event {
	u64 ts;
	u64 skb;
	u32 func_id;
	u32 cpu;
	u32 netns;
	u32 ifindex;
	u32 len;
	u32 drop_reason;
	struct tuple tuple;
	/*
	 * Where a drop function was called from: the kfree_skb tracepoint's
	 * location argument, or the return address a kprobe finds on the
	 * stack; 0 if unknown.
	 */
	u64 location;
	u64 data_valid; /* bit i: module field i was read (see module/) */
	u64 id;         /* journey ID from tracking (0: tracking off) */
	u32 flags;      /* EV_* */
	u32 pad;
	/*
	 * Module data (-m). Last, so that without modules the record stops
	 * before it: 112 bytes instead of 176 (EVENT_SHORT).
	 */
	u8 data[DATA_SIZE];
};

#define EVENT_SHORT __builtin_offsetof(struct event, data)

/*
 * The module data of one event, filled on the stack by fill_data() before
 * anything is reserved in the ring buffer.
 */
struct mod_buf {
	u8 data[DATA_SIZE];
	u64 valid;
};


/* Gives struct event a BTF type for bpf2go -type; never read. */
struct event *const event_type_anchor;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20);
} events SEC(".maps");

/*
 * Per-CPU event counters: COUNT_MATCHED counts every event that passed the
 * filter, COUNT_LOST those that found no room in the ring buffer. Userspace
 * checks that received + lost == matched.
 */
enum {
	COUNT_MATCHED,
	COUNT_LOST,
	COUNT_TRACK_FAIL, /* skbs that matched but found no room in the track map */
	COUNT_IDS,        /* journey ID generator of this CPU */
	NR_COUNTERS
};


struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NR_COUNTERS);
	__type(key, u32);
	__type(value, u64);
} counters SEC(".maps");

static __always_inline u64 count(u32 which)
{
	u64 *v = bpf_map_lookup_elem(&counters, &which);
	if (!v)
		return 0;
	return ++*v;
}

/* Set to 1 by userspace to stop every program at once (fast Ctrl-C). */
volatile u32 ipft_disabled;

/*
 * Set to 1 by the reader while it has nothing in flight and sleeps without
 * polling: every event then wakes it (emit checks this after reserving the
 * record, so an event the reader's last look at the ring missed was
 * reserved before the flag was set, and the reader sees it there).
 */
volatile u32 ipft_reader_idle;

/*
 * Tracking. Once an skb matched the filter, its address is in "track" with
 * the ID of its journey; later hits on it are in the journey whether or not
 * its headers still match (NAT, encapsulation, header pushes and pulls).
 * Clones and copies inherit the ID. An skb is forgotten when the sk_buff is
 * released; between the point where it is committed to be freed (DYING) and
 * that release, only release-path functions continue its journey, so that
 * an address reused after a free the tracer did not see is not inherited.
 *
 * track_live counts inserts minus deletes. While it is zero (nothing
 * tracked), a non-matching hit costs no lookup. LRU evictions are not
 * deletes: userspace derives them at exit from track_live and the entries
 * left in the map.
 */
volatile const u8 track_enabled = 1;
/*
 * Set for the tracepoint backend, which does not see every free: a tracked
 * skb whose headers now give a tuple unrelated to the one it had (other
 * protocol, or neither source nor destination endpoint kept, as NAT would),
 * or give none at all, is taken for another packet at a reused address,
 * unless it is being encapsulated (skb->encapsulation).
 */
volatile const u8 track_validate;
volatile s64 track_live;

/*
 * Only the tracepoint backend validates (tracer.Run sets track_validate
 * for it alone): the other groups compile the check out, which spares
 * each fentry load the verifier's walk of dead code.
 */
#ifdef PROGS_TP
#define TRACK_VALIDATE track_validate
#else
#define TRACK_VALIDATE 0
#endif

#define TRACK_CLONE 1
#define TRACK_DYING 2

struct track {
	u64 id;
	u32 flags; /* TRACK_* */
	u32 pad;
	struct tuple last; /* the last tuple accepted (track_validate) */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, u64);
	__type(value, struct track);
} track SEC(".maps");

/*
 * fentry stubs (PROGS_FENTRY): a stub hands a hit to fentry_chain by
 * calling bpf_map_delete_elem on this map with a struct chain_arg as the
 * key. The kernel runs that as array_map_delete_elem (which refuses: an
 * array has nothing to delete), where fentry_chain is attached.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, u32);
} chain SEC(".maps");

/* kprobe backends: the original skb of a clone/copy call in flight. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, u64);
	__type(value, u64);
} clone_stash SEC(".maps");

/* Flow filter. *_set flags say which fields are compared. */
volatile const u8 f_ipversion;
volatile const u8 f_proto_set;
volatile const u8 f_proto;
volatile const u8 f_saddr_ver; /* 0: any, 4 or 6 */
volatile const u8 f_daddr_ver;
volatile const u64 f_saddr[2];
volatile const u64 f_saddr_mask[2];
volatile const u64 f_daddr[2];
volatile const u64 f_daddr_mask[2];
volatile const u8 f_sport_set;
volatile const u8 f_dport_set;
volatile const u16 f_sport;
volatile const u16 f_dport;
/* Wake userspace only once this many bytes are waiting (0: every event). */
volatile const u32 wakeup_bytes = 64 << 10;

/*
 * Set by userspace when the kernel has the bpf_rdonly_cast kfunc (6.2+).
 * Then kprobe and tp_btf programs read the skb and its headers with plain
 * loads through read-only BTF pointers, which the JIT makes fault-safe: no
 * helper call on the path of a packet that does not match. fentry
 * programs read the skb directly but keep probe reads for the headers:
 * with the cast path their clones loaded ~30% slower, and fentry attach
 * is bounded by load time. Without the kfunc (6.1), kprobe programs
 * probe-read the skb fields too, and userspace replaces the kfunc calls,
 * dead code there, before loading (tracer.dropKfuncCalls).
 */
volatile const u8 use_cast;

extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym __weak;

/* 16 bytes at p as something plain loads may read (use_cast only). */
static __always_inline struct in6_addr *raw16(const void *p)
{
	return (struct in6_addr *)bpf_rdonly_cast(p, bpf_core_type_id_kernel(struct in6_addr));
}

/*
 * 40 bytes at p as u64 words that plain loads may read (use_cast only):
 * one load per 8 bytes, where in6_addr's u32 members took two and a shift.
 */
static __always_inline struct kernel_cpustat *raw40(const void *p)
{
	return (struct kernel_cpustat *)bpf_rdonly_cast(p, bpf_core_type_id_kernel(struct kernel_cpustat));
}

/*
 * Read size bytes (4, or a multiple of 8 up to 40) of packet header at src
 * into dst: plain loads with cast (use_cast; a fault reads zeros, which no
 * parser accepts as an IP header), else one probe read.
 */
static __always_inline int read_hdr(void *dst, u32 size, const void *src, int cast)
{
	if (cast) {
		if (size == 4) {
			*(u32 *)dst = raw16(src)->in6_u.u6_addr32[0];
			return 0;
		}
		struct kernel_cpustat *k = raw40(src);
		u64 *d = dst;
#pragma unroll
		for (u32 i = 0; i < size / 8; i++)
			d[i] = k->cpustat[i];
		return 0;
	}
	return bpf_probe_read_kernel(dst, size, src);
}

/*
 * A field of the skb: a plain load when it is a BTF pointer (fentry,
 * tp_btf, or a kprobe with use_cast), else a probe read.
 */
#define SKB_FIELD(direct, skb, field) ((direct) ? (skb)->field : BPF_CORE_READ(skb, field))
#define SKB_ENCAP(direct, skb) \
	((direct) ? BPF_CORE_READ_BITFIELD(skb, encapsulation) : BPF_CORE_READ_BITFIELD_PROBED(skb, encapsulation))

struct iphdr_min {
	u8 ver_ihl;
	u8 tos;
	__be16 tot_len;
	__be16 id;
	__be16 frag_off;
	u8 ttl;
	u8 protocol;
	u16 check;
	u8 saddr[4];
	u8 daddr[4];
};

struct ipv6hdr_min {
	u8 ver_tc;
	u8 tc_flow[3];
	__be16 payload_len;
	u8 nexthdr;
	u8 hop_limit;
	u8 saddr[16];
	u8 daddr[16];
};

/* The skb fields the parser needs. */
struct skb_hdrs {
	struct sk_buff *skb;
	unsigned char *head;
	u16 nh_off;
	u16 mac_off;
	__be16 proto;
	u8 direct; /* skb is a BTF pointer */
	u8 cast;   /* read headers with plain loads (use_cast) */
};

/*
 * fentry and tp_btf: the skb is a BTF pointer, so its fields are plain
 * (fault-checked) loads, no helper calls.
 */
static __always_inline void skb_hdrs_direct(struct sk_buff *skb, struct skb_hdrs *h)
{
	h->skb = skb;
	h->direct = 1;
	h->head = skb->head;
	h->nh_off = skb->network_header;
	h->mac_off = skb->mac_header;
	h->proto = skb->protocol;
}

/*
 * kprobe and kprobe-multi: the skb is a plain address. protocol,
 * network_header, mac_header and head sit within 24 bytes of each other in
 * every kernel since 4.x (protocol, transport_header, network_header,
 * mac_header, tail, end, head), so one probe read takes them all. The
 * offsets are CO-RE constants: the verifier sees which branch is taken, and
 * a kernel with another layout gets the four reads.
 */
static __always_inline void skb_hdrs_probe(struct sk_buff *skb, struct skb_hdrs *h)
{
	u32 base = bpf_core_field_offset(struct sk_buff, protocol);
	u32 nh = bpf_core_field_offset(struct sk_buff, network_header) - base;
	u32 mac = bpf_core_field_offset(struct sk_buff, mac_header) - base;
	u32 hd = bpf_core_field_offset(struct sk_buff, head) - base;
	union {
		u16 h[12];
		u64 q[3];
	} w;

	h->skb = skb;
	h->direct = 0;

	if (nh < 24 && mac < 24 && hd <= 16 && !(nh & 1) && !(mac & 1) && !(hd & 7)) {
		if (bpf_probe_read_kernel(&w, sizeof(w), (void *)skb + base) < 0) {
			h->head = 0;
			return;
		}
		h->proto = w.h[0];
		h->nh_off = w.h[nh / 2];
		h->mac_off = w.h[mac / 2];
		h->head = (unsigned char *)w.q[hd / 8];
	} else {
		h->head = BPF_CORE_READ(skb, head);
		h->proto = BPF_CORE_READ(skb, protocol);
		h->nh_off = BPF_CORE_READ(skb, network_header);
		h->mac_off = BPF_CORE_READ(skb, mac_header);
	}
}

/* Whether the network header offset is set. */
static __always_inline int nh_set(u16 nh_off)
{
	return nh_off != 0 && nh_off != HDR_UNSET;
}

/*
 * Whether a set network header offset lies after the MAC header, or there
 * is no MAC header. One before it is stale (decapsulated on receive, not
 * reset yet), except while an encapsulation pushes the outer headers in
 * front of the inner frame (parse_l3 checks skb->encapsulation).
 */
static __always_inline int nh_after_mac(u16 nh_off, u16 mac_off)
{
	return mac_off == HDR_UNSET || nh_off > mac_off;
}

/* Whether the link-layer protocol (0: unknown) may carry IP. */
static __always_inline int proto_ip(__be16 proto)
{
	return proto == bpf_htons(ETH_P_IP) || proto == bpf_htons(ETH_P_IPV6) || proto == 0;
}

/*
 * Whether a network header of the given version (its first byte >> 4) is
 * IPv4 (v 4) or IPv6 (v 6), as the link-layer protocol allows (proto_ip
 * holds).
 */
static __always_inline int is_ipv(__be16 proto, u8 version, int v)
{
	if (v == 4)
		return version == 4 && proto != bpf_htons(ETH_P_IPV6);
	return version == 6 && proto != bpf_htons(ETH_P_IP);
}

/*
 * Fill t from the packet: IP version, protocol, addresses, and the ports of
 * TCP, UDP and SCTP (not for non-first fragments). The network header is
 * used where it is set; otherwise the Ethernet header at the MAC header,
 * with up to two VLAN tags. Returns -1 for a packet that is not IP, -2 for
 * an skb with neither header (yet: see parse_sk), else 0.
 * Everything is inlined into one function: a BPF-to-BPF call makes the
 * verifier and the JIT work harder, and every fentry clone pays that at load.
 */
static __always_inline int parse_l3(struct skb_hdrs *hd, struct tuple *t)
{
	unsigned char *head = hd->head;
	u16 nh_off = hd->nh_off;
	u16 mac_off = hd->mac_off;
	__be16 proto = hd->proto;
	unsigned char *nh;
	union {
		u8 b[40];
		__be16 h[20];
		u64 q[5];
	} h;

	if (!head)
		return -1;
	if (nh_set(nh_off) &&
	    (nh_after_mac(nh_off, mac_off) || (nh_off < mac_off && SKB_ENCAP(hd->direct, hd->skb)))) {
		nh = head + nh_off;
	} else {
		if (mac_off == HDR_UNSET)
			return -2; /* no header at all */
		/* Ethernet: read the type and two possible VLAN tags at once. */
		if (read_hdr(&h, 24, head + mac_off, hd->cast) < 0)
			return -1;
		nh = head + mac_off + 14;
		proto = h.h[6];
		if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
			proto = h.h[8];
			nh += 4;
			if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
				proto = h.h[10];
				nh += 4;
			}
		}
	}

	if (read_hdr(&h, 40, nh, hd->cast) < 0)
		return -1;
	u8 version = h.b[0] >> 4;
	if (!proto_ip(proto))
		return -1;

	unsigned char *l4;
	u8 next;
	if (is_ipv(proto, version, 4)) {
		t->ipversion = 4;
		__builtin_memcpy(t->saddr, &h.b[12], 4);
		__builtin_memcpy(t->daddr, &h.b[16], 4);
		next = h.b[9];
		t->proto = next;
		/* Non-first fragments carry no L4 header. */
		if (h.h[3] & bpf_htons(0x1fff))
			return 0;
		l4 = nh + (h.b[0] & 0xf) * 4;
	} else if (is_ipv(proto, version, 6)) {
		t->ipversion = 6;
		__builtin_memcpy(t->saddr, &h.b[8], 16);
		__builtin_memcpy(t->daddr, &h.b[24], 16);
		next = h.b[6];
		l4 = nh + 40;
		/*
		 * Up to two extension headers (hop-by-hop, routing, destination
		 * options, AH, fragment) before the L4 header. Unrolled: a bounded
		 * loop, or a third step, costs the verifier far more, and every
		 * fentry clone pays it at load time.
		 */
#pragma unroll
		for (int i = 0; i < 2; i++) {
			u8 opt[4] __attribute__((aligned(4)));
			if (next != 0 && next != 43 && next != 60 && next != 51 && next != 44)
				break;
			if (read_hdr(opt, sizeof(opt), l4, hd->cast) < 0)
				return -1;
			if (next == 44) {
				/* Fragment header: a non-first fragment carries no L4 header. */
				if ((opt[2] << 8 | opt[3]) & 0xfff8) {
					t->proto = opt[0];
					return 0;
				}
				l4 += 8;
			} else if (next == 51) {
				l4 += (opt[1] + 2) * 4;
			} else {
				l4 += (opt[1] + 1) * 8;
			}
			next = opt[0];
		}
		t->proto = next;
	} else {
		return -1;
	}
	if (next == IPPROTO_TCP || next == IPPROTO_UDP || next == IPPROTO_SCTP) {
		__be16 ports[2] __attribute__((aligned(4)));
		if (read_hdr(ports, sizeof(ports), l4, hd->cast) < 0)
			return -1;
		t->sport = bpf_ntohs(ports[0]);
		t->dport = bpf_ntohs(ports[1]);
	}
	return 0;
}

/*
 * Fill t from skb->sk, or the traced function's socket argument: a locally
 * generated packet before its IP header exists (TCP and UDP above IP).
 * Only connected inet sockets give a tuple.
 *
 * The fields parse_sk reads from sock_common (addresses, ports, family,
 * state) lie within 88 bytes from skc_daddr in every kernel since 4.x
 * (x86-64: skc_hash between the addresses and the ports, the IPv6
 * addresses at 56 and 72), so one probe read takes them all, as
 * skb_hdrs_probe does for the skb. The offsets are CO-RE constants: a
 * kernel with another layout gets a read per field (tracer's TestSockLayout
 * checks that the running kernel takes the single read; e2e
 * TestTrackLocalSend runs the other through sk_each_field). Reading every
 * field before deciding, rather than in the branches, also spares the
 * verifier walks of the rest of the program (~500 instructions per fentry
 * load).
 */
struct sk_fields {
	__be32 daddr, saddr;
	__be16 dport;
	u16 num, family;
	u8 state;
	u64 d6[2], s6[2];
};

/*
 * A test hook, set only through IPFTRACE_TEST_SK_FIELDS (tracer): read field
 * by field even where the single read would do, so that the e2e tests run
 * the path a kernel with another sock_common layout takes.
 */
volatile const u8 sk_each_field;

static __always_inline int sk_fields_read(struct sock *sk, struct sk_fields *f)
{
	u32 base = bpf_core_field_offset(struct sock_common, skc_daddr);
	u32 sa = bpf_core_field_offset(struct sock_common, skc_rcv_saddr) - base;
	u32 dp = bpf_core_field_offset(struct sock_common, skc_dport) - base;
	u32 nm = bpf_core_field_offset(struct sock_common, skc_num) - base;
	u32 fa = bpf_core_field_offset(struct sock_common, skc_family) - base;
	u32 st = bpf_core_field_offset(struct sock_common, skc_state) - base;
	u32 d6 = bpf_core_field_offset(struct sock_common, skc_v6_daddr) - base;
	u32 s6 = bpf_core_field_offset(struct sock_common, skc_v6_rcv_saddr) - base;
	union {
		u8 b[88];
		u16 h[44];
		u32 w[22];
		u64 q[11];
	} w;

	if (!sk_each_field && sa == 4 && dp == 12 && nm == 14 && fa == 16 && st == 18 && !(d6 & 7) && d6 + 16 <= 88 &&
	    !(s6 & 7) && s6 + 16 <= 88) {
		if (bpf_probe_read_kernel(&w, sizeof(w), (void *)sk + base) < 0)
			return -1;
		f->daddr = w.w[0];
		f->saddr = w.w[1];
		f->dport = w.h[6];
		f->num = w.h[7];
		f->family = w.h[8];
		f->state = w.b[18];
		f->d6[0] = w.q[d6 / 8];
		f->d6[1] = w.q[d6 / 8 + 1];
		f->s6[0] = w.q[s6 / 8];
		f->s6[1] = w.q[s6 / 8 + 1];
		return 0;
	}
	f->daddr = BPF_CORE_READ(sk, __sk_common.skc_daddr);
	f->saddr = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
	f->dport = BPF_CORE_READ(sk, __sk_common.skc_dport);
	f->num = BPF_CORE_READ(sk, __sk_common.skc_num);
	f->family = BPF_CORE_READ(sk, __sk_common.skc_family);
	f->state = BPF_CORE_READ(sk, __sk_common.skc_state);
	BPF_CORE_READ_INTO(&f->d6, sk, __sk_common.skc_v6_daddr);
	BPF_CORE_READ_INTO(&f->s6, sk, __sk_common.skc_v6_rcv_saddr);
	return 0;
}

static __always_inline int parse_sk(struct sk_buff *skb, int direct, struct sock *argsk, struct tuple *t)
{
	struct sock *sk = SKB_FIELD(direct, skb, sk);
	struct sk_fields f;
	/* TCP sets skb->sk only on the clone it transmits. */
	if (!sk)
		sk = argsk;
	if (!sk)
		return -1;
	if (sk_fields_read(sk, &f) < 0)
		return -1;
	if (f.family == AF_INET) {
		if (!f.daddr)
			return -1;
		t->ipversion = 4;
		__builtin_memcpy(t->saddr, &f.saddr, 4);
		__builtin_memcpy(t->daddr, &f.daddr, 4);
	} else if (f.family == AF_INET6) {
		if (!f.d6[0] && !f.d6[1])
			return -1;
		/* ::ffff:a.b.c.d (an IPv4 peer of a dual-stack socket) */
		if (f.d6[0] == 0 && (u32)f.d6[1] == bpf_htonl(0xffff)) {
			t->ipversion = 4;
			__builtin_memcpy(t->saddr, (u8 *)f.s6 + 12, 4);
			__builtin_memcpy(t->daddr, (u8 *)f.d6 + 12, 4);
		} else {
			t->ipversion = 6;
			__builtin_memcpy(t->saddr, f.s6, 16);
			__builtin_memcpy(t->daddr, f.d6, 16);
		}
	} else {
		return -1;
	}
	u8 proto = IPPROTO_TCP;
	/* Time-wait and request socks end with sock_common: no sk_protocol. */
	if (f.state != TCP_TIME_WAIT && f.state != TCP_NEW_SYN_RECV)
		proto = BPF_CORE_READ(sk, sk_protocol);
	t->proto = proto;
	if (proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_UDPLITE || proto == IPPROTO_SCTP) {
		t->sport = f.num;
		t->dport = bpf_ntohs(f.dport);
	}
	return 0;
}

static __always_inline int addr_match(const u8 *addr, u8 ver, u8 want_ver,
				      volatile const u64 *want, volatile const u64 *mask)
{
	u64 a[2];
	if (!want_ver)
		return 1;
	if (ver != want_ver)
		return 0;
	__builtin_memcpy(a, addr, 16);
	return ((a[0] ^ want[0]) & mask[0]) == 0 && ((a[1] ^ want[1]) & mask[1]) == 0;
}

/* The filter on version, protocol and addresses. */
static __always_inline int l3_match(struct tuple *t)
{
	if (f_ipversion && t->ipversion != f_ipversion)
		return 0;
	if (f_proto_set && t->proto != f_proto)
		return 0;
	if (!addr_match(t->saddr, t->ipversion, f_saddr_ver, f_saddr, f_saddr_mask))
		return 0;
	return addr_match(t->daddr, t->ipversion, f_daddr_ver, f_daddr, f_daddr_mask);
}

/* The filter on ports. */
static __always_inline int port_match(struct tuple *t)
{
	if (f_sport_set && t->sport != f_sport)
		return 0;
	if (f_dport_set && t->dport != f_dport)
		return 0;
	return 1;
}


/*
 * The first look of a kprobe program's hit, for the common case of a
 * packet of another flow: 1 if its IP header (at the network header, or
 * after an untagged Ethernet header) shows that it cannot match the
 * filter's IP version, protocol or addresses, or that it is not IP. It
 * reads 24 bytes of header and builds no tuple. 0 means that parse_l3 must
 * decide: a filter on ports only, an IPv6 packet against IPv6 addresses,
 * VLAN tags, a network header behind the MAC header (stale, or an
 * encapsulation in progress), no header at all (the socket may give the
 * flow). Whenever this returns 1, parse_l3 and the filter find no match
 * either: they read the same bytes and decide the same way.
 */
static __always_inline int fast_nomatch(struct skb_hdrs *hd)
{
	unsigned char *nh;
	__be16 proto = hd->proto;
	union {
		u8 b[24];
		__be16 h[12];
		u32 w[6];
	} h;

	if (!f_ipversion && !f_saddr_ver && !f_daddr_ver && !f_proto_set)
		return 0;
	if (!hd->head)
		return 1; /* parse_l3: not IP */
	if (nh_set(hd->nh_off)) {
		if (!nh_after_mac(hd->nh_off, hd->mac_off))
			return 0; /* stale, or an encapsulation: parse_l3 decides */
		nh = hd->head + hd->nh_off;
	} else {
		if (hd->mac_off == HDR_UNSET)
			return 0;
		if (read_hdr(&h, 4, hd->head + hd->mac_off + 12, hd->cast) < 0)
			return 0;
		proto = h.h[0];
		if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD))
			return 0;
		nh = hd->head + hd->mac_off + 14;
	}
	if (!proto_ip(proto))
		return 1;
	if (read_hdr(&h, 24, nh, hd->cast) < 0)
		return 0;
	u8 version = h.b[0] >> 4;
	if (is_ipv(proto, version, 4)) {
		if (f_ipversion == 6 || f_saddr_ver == 6 || f_daddr_ver == 6)
			return 1;
		if (f_proto_set && h.b[9] != f_proto)
			return 1;
		/* As addr_match sees it: the address in the low 4 bytes, then zeros. */
		if (f_saddr_ver == 4 && ((((u64)h.w[3] ^ f_saddr[0]) & f_saddr_mask[0]) || (f_saddr[1] & f_saddr_mask[1])))
			return 1;
		if (f_daddr_ver == 4 && ((((u64)h.w[4] ^ f_daddr[0]) & f_daddr_mask[0]) || (f_daddr[1] & f_daddr_mask[1])))
			return 1;
		return 0;
	}
	if (is_ipv(proto, version, 6))
		return f_ipversion == 4 || f_saddr_ver == 4 || f_daddr_ver == 4;
	return 1; /* parse_l3: not IP */
}

/* Whether skb may be in a journey: tracking on, and its address tracked. */
static __always_inline int maybe_tracked(struct sk_buff *skb)
{
	u64 key = (u64)skb;
	if (!track_enabled || track_live <= 0)
		return 0;
	return bpf_map_lookup_elem(&track, &key) != NULL;
}

static __always_inline u32 skb_netns(struct sk_buff *skb, int direct, struct sock *argsk)
{
	struct net_device *dev = SKB_FIELD(direct, skb, dev);
	if (dev)
		return direct ? dev->nd_net.net->ns.inum : BPF_CORE_READ(dev, nd_net.net, ns.inum);
	struct sock *sk = SKB_FIELD(direct, skb, sk);
	if (sk && direct)
		return sk->__sk_common.skc_net.net->ns.inum;
	if (!sk)
		sk = argsk; /* a plain address */
	if (sk)
		return BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	return 0;
}

/* Set by userspace when -m modules replaced the body of fill_data(). */
volatile const u8 modules_on;

/*
 * fill_data reads the fields of the -m modules into b->data, sets a bit in
 * b->valid for each field it could read, and returns 0 if a match
 * condition of a module does not hold (the event is then not sent).
 * Userspace replaces this body at load time with code generated from the
 * modules (module/codegen.go); without modules it removes the subprogram
 * and its call, so that every program stays one function. The asm keeps
 * clang from assuming anything about the result.
 */
static __noinline int fill_data(struct sk_buff *skb, struct mod_buf *b)
{
	int ret = 1;
	asm volatile("" : "+r"(ret) : "r"(skb), "r"(b) : "memory");
	return ret;
}

static __always_inline u64 new_journey_id(void)
{
	u32 k = COUNT_IDS;
	u64 *v = bpf_map_lookup_elem(&counters, &k);
	u64 n = 0;
	if (v)
		n = ++*v;
	return ((u64)bpf_get_smp_processor_id() + 1) << 40 | (n & ((1ULL << 40) - 1));
}

/*
 * Decide whether a hit on skb is in a journey: it is if the skb is tracked
 * (and not a dead skb's reused address), or if it matched, in which case it
 * is tracked from now on. Fills the journey ID and event flags.
 */
/* The same protocol, and the source or the destination endpoint kept. */
static __always_inline int tuple_related(struct tuple *a, struct tuple *b)
{
	u64 *as = (u64 *)a->saddr, *ad = (u64 *)a->daddr, *bs = (u64 *)b->saddr, *bd = (u64 *)b->daddr;
	if (a->ipversion != b->ipversion || a->proto != b->proto)
		return 0;
	return (as[0] == bs[0] && as[1] == bs[1] && a->sport == b->sport) ||
	       (ad[0] == bd[0] && ad[1] == bd[1] && a->dport == b->dport);
}

/* What track_decide decides: the event's journey ID and flags. */
struct decision {
	u64 id;
	u32 flags;
	u32 matched; /* in: the headers matched the filter */
};

/*
 * A hit that matched the filter or may be tracked, as hit_finish takes it:
 * everything the rest needs from the skb is read into it first, so that
 * hit_finish works on plain values.
 */
struct hit {
	struct tuple t;
	struct decision d;
	u64 skb; /* the skb's address */
	u64 desc, reason, loc;
	u32 netns, ifindex, len;
	u32 users; /* skb->users, read for DESC_DYING/QUIET functions only */
	u32 encap; /* skb->encapsulation, read with TRACK_VALIDATE only */
	u32 pad;
};

static __always_inline int track_decide(struct hit *h)
{
	u64 key = h->skb, desc = h->desc;
	struct tuple *t = &h->t;
	struct decision *d = &h->d;
	struct track *tr;
	int matched = d->matched;

	if (!matched && track_live <= 0)
		return 0;
	tr = bpf_map_lookup_elem(&track, &key);
	if (tr && (tr->flags & TRACK_DYING) && !(desc & (DESC_RELEASE | DESC_DYING | DESC_FREE))) {
		/* Freed where we did not see it, and the address reused. */
		if (bpf_map_delete_elem(&track, &key) == 0)
			__sync_fetch_and_add(&track_live, -1);
		tr = NULL;
	}
	if (tr && TRACK_VALIDATE) {
		if (t->ipversion && (matched || tuple_related(t, &tr->last))) {
			tr->last = *t;
		} else if ((t->ipversion || tr->last.ipversion) && !h->encap) {
			/*
			 * Unrelated headers, or none where the journey had
			 * them: another packet at a reused address.
			 */
			if (bpf_map_delete_elem(&track, &key) == 0)
				__sync_fetch_and_add(&track_live, -1);
			tr = NULL;
		}
	}
	if (tr) {
		d->id = tr->id;
		if (tr->flags & TRACK_CLONE)
			d->flags |= EV_CLONE;
		if (!matched)
			d->flags |= EV_TRACKED;
		return 1;
	}
	if (!matched)
		return 0;
	struct track n = {.id = new_journey_id(), .last = *t};
	if (bpf_map_update_elem(&track, &key, &n, BPF_NOEXIST) == 0) {
		__sync_fetch_and_add(&track_live, 1);
	} else {
		/* Another CPU inserted it first, or no room. */
		tr = bpf_map_lookup_elem(&track, &key);
		if (tr)
			n.id = tr->id;
		else
			count(COUNT_TRACK_FAIL);
	}
	d->id = n.id;
	return 1;
}

/* Forget skb where it is freed (DESC_FREE) or mark it dying (DESC_DYING). */
static __always_inline void track_forget(struct hit *h)
{
	u64 key = h->skb, desc = h->desc;

	if (track_live <= 0)
		return;
	if (desc & DESC_FREE) {
		if (bpf_map_delete_elem(&track, &key) == 0)
			__sync_fetch_and_add(&track_live, -1);
		return;
	}
	if (h->users > 1)
		return;
	struct track *tr = bpf_map_lookup_elem(&track, &key);
	if (tr)
		tr->flags |= TRACK_DYING;
}

/* Send h as an event; the -m modules may read more of the skb or veto it. */
static __always_inline void emit(struct hit *h)
{
	/* Module data and match conditions: before any ring buffer traffic. */
	struct mod_buf mb;
	if (modules_on) {
		__builtin_memset(&mb, 0, sizeof(mb));
		if (!fill_data((struct sk_buff *)h->skb, &mb))
			return;
	}

	u64 nth = count(COUNT_MATCHED);
	struct event *e = bpf_ringbuf_reserve(&events, modules_on ? sizeof(*e) : EVENT_SHORT, 0);
	if (!e) {
		count(COUNT_LOST);
		return;
	}
	e->ts = bpf_ktime_get_ns();
	e->skb = h->skb;
	e->func_id = (u32)h->desc;
	e->cpu = bpf_get_smp_processor_id();
	e->netns = h->netns;
	e->ifindex = h->ifindex;
	e->len = h->len;
	e->drop_reason = (u32)h->reason;
	e->tuple = h->t;
	if (modules_on) {
		__builtin_memcpy(e->data, mb.data, sizeof(e->data));
		e->data_valid = mb.valid;
	} else {
		e->data_valid = 0;
	}
	e->location = h->loc;
	e->id = h->d.id;
	e->flags = h->d.flags;
	e->pad = 0;

	/*
	 * Wake the reader once wakeup_bytes are waiting, checked at every
	 * 16th event of a CPU (a helper call saved on the others), or at once
	 * while it sleeps idle; the reader also polls every 250 ms while
	 * journeys are in flight.
	 */
	u64 rbflags = BPF_RB_NO_WAKEUP;
	if (!wakeup_bytes || ipft_reader_idle ||
	    (!(nth & 15) && bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wakeup_bytes))
		rbflags = BPF_RB_FORCE_WAKEUP;
	bpf_ringbuf_submit(e, rbflags);
}

/*
 * Read into h what the rest of a hit needs from the skb (h->desc set):
 * plain loads for a BTF pointer (direct), else probe reads. sk is the
 * traced function's socket argument, if parse_sk fetched it.
 */
static __always_inline void hit_read(struct hit *h, struct sk_buff *skb, int direct, struct sock *sk)
{
	h->skb = (u64)skb;
	h->netns = skb_netns(skb, direct, sk);
	if (direct) {
		struct net_device *dev = skb->dev;
		h->ifindex = dev ? dev->ifindex : 0;
		h->len = skb->len;
	} else {
		h->ifindex = BPF_CORE_READ(skb, dev, ifindex);
		h->len = BPF_CORE_READ(skb, len);
	}
	h->users = 0;
	if (h->desc & (DESC_QUIET | DESC_DYING))
		h->users = SKB_FIELD(direct, skb, users.refs.counter);
	h->encap = TRACK_VALIDATE ? SKB_ENCAP(direct, skb) : 0;
	h->pad = 0;
}

/*
 * Zero, in a map whose values the verifier does not know: x ^ ipft_blind is
 * x at run time and an unknown value to the verifier. Never written.
 */
volatile u64 ipft_blind;

/*
 * Make h's tuple and decision unknown values to the verifier. The filter
 * and the parsers reach the end of a hit with many combinations of
 * constants in them (IP version, zeroed fields, flags, matched), which the
 * verifier would tell apart and walk the rest for each; blinded, they are
 * all one state. Costs a few loads and XORs per hit that goes on.
 */
static __always_inline void hit_blind(struct hit *h)
{
	u64 b = ipft_blind;
	u64 *w = (u64 *)&h->t;
#pragma unroll
	for (int i = 0; i < sizeof(h->t) / 8; i++)
		w[i] ^= b;
	h->d.flags ^= (u32)b;
	h->d.matched ^= (u32)b;
}

/*
 * The end of a hit that matched or may be tracked: decide whether it is in
 * a journey, send it, forget a freed skb.
 */
static __always_inline int hit_finish_inline(struct hit *h)
{
	if (h->desc & DESC_QUIET) {
		if (track_enabled)
			track_forget(h);
		return 0;
	}
	if (track_enabled && !track_decide(h))
		return 0;
	emit(h);
	if (track_enabled && (h->desc & (DESC_DYING | DESC_FREE)))
		track_forget(h);
	return 0;
}

/*
 * hit_finish_inline as a global function, for the fentry_sharedN_split
 * handlers:
 * the verifier checks it once, on its own, rather than once for each state
 * the parsers and the filter leave behind. On 6.1, whose verifier prunes
 * less, that halves a handler's verification (2148 instructions against
 * 4158 inline); on 6.12 the inline handler verifies in fewer (1836 against
 * 2100) and needs one JIT pass less. tracer.chooseFentrySplit loads both
 * and keeps the cheaper.
 */
__noinline int hit_finish(struct hit *h)
{
	if (!h)
		return 0;
	return hit_finish_inline(h);
}

/*
 * The per-hit work of every program: match the packet against the flow
 * filter or find it tracked, and hand the hit to hit_finish. direct says
 * whether the skb is a BTF pointer (fentry, tp_btf) or a plain address
 * (kprobes). The descriptor and drop reason are fetched only for a match,
 * a tracked skb, or an skb without headers (get_desc); get_sk gives the
 * function's socket argument (after get_desc), for parse_sk.
 *
 * fast puts fast_nomatch first: with it a kprobe-multi hit on another flow
 * cost ~20% less (kernel.bpf_stats_enabled, make progstats), but the
 * verifier walks the rest of the program again for each way fast_nomatch
 * can give up: ~55% more instructions per load. The kprobe programs are
 * loaded once per run and take it; fentry and tp_btf load one clone per
 * function and do not.
 */
#define HANDLE(skb, direct, hcast, fast, split, get_desc, get_sk)              \
	do {                                                                   \
		struct skb_hdrs hd;                                            \
		struct hit h;                                                  \
		struct sock *sk = NULL;                                        \
		u64 desc = 0, reason = 0, loc = 0;                             \
		int have_desc = 0, err;                                        \
		if (ipft_disabled)                                             \
			break;                                                 \
		if (direct)                                                    \
			skb_hdrs_direct(skb, &hd);                             \
		else                                                           \
			skb_hdrs_probe(skb, &hd);                              \
		hd.cast = (hcast);                                             \
		if ((fast) && fast_nomatch(&hd) && !maybe_tracked(skb))        \
			break;                                                 \
		__builtin_memset(&h.t, 0, sizeof(h.t));                        \
		h.d.flags = 0;                                                 \
		err = parse_l3(&hd, &h.t);                                     \
		if (err == -2 && track_enabled) {                              \
			get_desc;                                              \
			have_desc = 1;                                         \
			sk = get_sk;                                           \
			err = parse_sk(hd.skb, direct, sk, &h.t);              \
			if (!err)                                              \
				h.d.flags |= EV_SOCK;                          \
		}                                                              \
		if (err)                                                       \
			__builtin_memset(&h.t, 0, sizeof(h.t));                \
		h.d.matched = !err && l3_match(&h.t) && port_match(&h.t);      \
		/* The common case: another flow, not tracked. */             \
		if (!h.d.matched && !maybe_tracked(skb))                       \
			break;                                                 \
		if (!have_desc) {                                              \
			get_desc;                                              \
		}                                                              \
		sk = get_sk;                                                   \
		hit_blind(&h);                                                 \
		h.d.id = 0;                                                    \
		h.desc = desc;                                                 \
		h.reason = reason;                                             \
		h.loc = loc;                                                   \
		hit_read(&h, skb, direct, sk);                                 \
		if (split)                                                     \
			hit_finish(&h);                                        \
		else                                                           \
			hit_finish_inline(&h);                                 \
	} while (0)

/*
 * A clone or copy of a tracked skb joins its journey. Called with the
 * original and the new skb when skb_clone, skb_copy, __pskb_copy_fclone or
 * skb_copy_expand returns; emits the clone's first event.
 */
static __always_inline void track_clone(struct sk_buff *orig, struct sk_buff *clone, u64 desc)
{
	u64 key = (u64)orig;

	if (ipft_disabled || !track_enabled || !orig || !clone || track_live <= 0)
		return;
	struct track *tr = bpf_map_lookup_elem(&track, &key);
	if (!tr || (tr->flags & TRACK_DYING))
		return;
	struct track n = {.id = tr->id, .flags = TRACK_CLONE, .last = tr->last};
	key = (u64)clone;
	if (bpf_map_update_elem(&track, &key, &n, BPF_NOEXIST) == 0) {
		__sync_fetch_and_add(&track_live, 1);
	} else if (bpf_map_update_elem(&track, &key, &n, BPF_ANY) != 0) {
		count(COUNT_TRACK_FAIL);
		return;
	}
	struct skb_hdrs hd;
	struct hit h = {.d = {.id = n.id, .flags = EV_CLONE}, .desc = desc};
	skb_hdrs_probe(clone, &hd);
	hd.cast = 0;
	int err = parse_l3(&hd, &h.t);
	if (err == -2) {
		err = parse_sk(clone, 0, NULL, &h.t);
		if (!err)
			h.d.flags |= EV_SOCK;
	}
	if (err)
		__builtin_memset(&h.t, 0, sizeof(h.t));
	hit_read(&h, clone, 0, NULL);
	emit(&h);
}

static __always_inline u32 desc_reason_pos(u64 desc)
{
	return (desc >> 32) & 0xff;
}

static __always_inline u32 desc_sock_pos(u64 desc)
{
	return (desc >> 44) & 0xf;
}

/* The 1-based position of the skb argument (kprobe_multi_skb_any). */
static __always_inline __group_helper u32 desc_skb_pos(u64 desc)
{
	return (desc >> 48) & 0xf;
}

static __always_inline __group_helper u64 patched_desc(void)
{
	u64 desc;
	asm volatile("%0 = " DESC_MARKER " ll" : "=r"(desc));
	return desc;
}

/* The socket argument of a traced function (0: none). */
static __always_inline __group_helper struct sock *fentry_sock(u64 *ctx, u64 desc)
{
	u64 sk = 0;
	u32 spos = desc_sock_pos(desc);
	if (spos)
		bpf_get_func_arg(ctx, spos - 1, &sk);
	return (struct sock *)sk;
}

/* The socket argument of a tracepoint (constant offsets only). */
static __always_inline __group_helper struct sock *tp_sock(u64 *ctx, u64 desc)
{
	switch (desc_sock_pos(desc)) {
	case 1: return (struct sock *)ctx[0];
	case 2: return (struct sock *)ctx[1];
	}
	return NULL;
}

#ifdef PROGS_FENTRY
/*
 * An fentry program whose skb is argument N and whose descriptor is
 * GET_DESC (an expression of ctx); SPLIT: it ends each hit in the global
 * hit_finish (see there). With use_cast it reads the packet headers with
 * plain loads (read_hdr): ~20% less per nomatch hit than a probe read on
 * 6.12, for ~8% more instructions to verify per handler.
 */
#define FENTRY_PROG(NAME, N, GET_DESC, SPLIT)                                  \
	SEC("fentry/placeholder")                                              \
	int NAME(u64 *ctx)                                                     \
	{                                                                      \
		struct sk_buff *skb = (struct sk_buff *)ctx[N - 1];            \
		if (skb)                                                       \
			HANDLE(skb, 1, use_cast, 0, SPLIT, {                   \
				desc = GET_DESC;                               \
				u32 rpos = desc_reason_pos(desc);              \
				if (rpos)                                      \
					bpf_get_func_arg(ctx, rpos - 1, &reason); \
			}, fentry_sock(ctx, desc));                            \
		return 0;                                                      \
	}

/* fentry: one clone per function, its descriptor patched in. */
#define FENTRY(N) FENTRY_PROG(fentry_skb##N, N, patched_desc(), 0)

FENTRY(1)
FENTRY(2)
FENTRY(3)
FENTRY(4)
FENTRY(5)
FENTRY(6)
FENTRY(7)
FENTRY(8)
FENTRY(9)
FENTRY(10)
FENTRY(11)
FENTRY(12)

/*
 * fentry with shared handlers (tracer/fentry.go): functions of one BTF
 * prototype share one handler, which a 5-instruction program per function
 * reaches by tail call (the kernel allows tail calls only between tracing
 * programs of the same attach prototype). The descriptor is the link's
 * cookie, which the tail call keeps: the trampoline set it for the
 * program it entered.
 */
#define FENTRY_SHARED(N)                                                       \
	FENTRY_PROG(fentry_shared##N, N, bpf_get_attach_cookie(ctx), 0)        \
	FENTRY_PROG(fentry_shared##N##_split, N, bpf_get_attach_cookie(ctx), 1)

FENTRY_SHARED(1)
FENTRY_SHARED(2)
FENTRY_SHARED(3)
FENTRY_SHARED(4)
FENTRY_SHARED(5)
FENTRY_SHARED(6)
FENTRY_SHARED(7)
FENTRY_SHARED(8)
FENTRY_SHARED(9)
FENTRY_SHARED(10)
FENTRY_SHARED(11)
FENTRY_SHARED(12)

/*
 * fentry with stubs and one chained handler (tracer/fentry.go). The kernel
 * verifies every fentry program on its own, per function, and lets a
 * tracing program tail-call only programs of the same BTF prototype. So
 * each function gets a stub: it reads the skb's header offsets and lets a
 * packet of another flow go at once (fast_nomatch), as the kprobe
 * programs do. Any other hit it hands to fentry_chain, the whole program,
 * loaded once: the stub calls bpf_map_delete_elem(&chain, &arg), the
 * kernel enters array_map_delete_elem, and fentry_chain, attached there,
 * reads the stub's chain_arg from the key pointer. A stub verifies in a
 * tenth of the instructions of the whole program.
 */
struct chain_arg {
	u32 key; /* 0: the key bpf_map_delete_elem sees */
	u32 pad;
	u64 desc;
	u64 skb;
	u64 reason;
	u64 sk;
};

#define FENTRY_STUB(N)                                                         \
	SEC("fentry/placeholder")                                              \
	int fentry_stub##N(u64 *ctx)                                           \
	{                                                                      \
		struct sk_buff *skb = (struct sk_buff *)ctx[N - 1];            \
		struct skb_hdrs hd;                                            \
		if (!skb || ipft_disabled)                                     \
			return 0;                                              \
		skb_hdrs_direct(skb, &hd);                                     \
		hd.cast = use_cast;                                            \
		if (fast_nomatch(&hd) && !maybe_tracked(skb))                  \
			return 0;                                              \
		struct chain_arg c = {.desc = patched_desc(), .skb = (u64)skb}; \
		u32 rpos = desc_reason_pos(c.desc);                            \
		if (rpos)                                                      \
			bpf_get_func_arg(ctx, rpos - 1, &c.reason);            \
		c.sk = (u64)fentry_sock(ctx, c.desc);                          \
		bpf_map_delete_elem(&chain, &c);                               \
		return 0;                                                      \
	}

FENTRY_STUB(1)
FENTRY_STUB(2)
FENTRY_STUB(3)
FENTRY_STUB(4)
FENTRY_STUB(5)
FENTRY_STUB(6)
FENTRY_STUB(7)
FENTRY_STUB(8)
FENTRY_STUB(9)
FENTRY_STUB(10)
FENTRY_STUB(11)
FENTRY_STUB(12)

/*
 * The stubs' handler, on array_map_delete_elem(map, key): a call on
 * another map is none of ours. The skb is a plain address here, as in the
 * kprobe programs.
 */
SEC("fentry/array_map_delete_elem")
int fentry_chain(u64 *ctx)
{
	struct chain_arg c;
	if ((void *)ctx[0] != (void *)&chain)
		return 0;
	if (bpf_probe_read_kernel(&c, sizeof(c), (void *)ctx[1]) < 0)
		return 0;
	struct sk_buff *skb = (struct sk_buff *)c.skb;
	if (use_cast)
		skb = bpf_rdonly_cast(skb, bpf_core_type_id_kernel(struct sk_buff));
	HANDLE(skb, use_cast, use_cast, 0, 0, {
		desc = c.desc;
		reason = c.reason;
	}, (struct sock *)c.sk);
	return 0;
}

/* fexit on skb_clone, skb_copy, __pskb_copy_fclone, skb_copy_expand. */
SEC("fexit/placeholder")
int fexit_clone(u64 *ctx)
{
	u64 ret = 0;
	bpf_get_func_ret(ctx, &ret);
	track_clone((struct sk_buff *)ctx[0], (struct sk_buff *)ret, patched_desc());
	return 0;
}
#endif /* PROGS_FENTRY */

#ifdef PROGS_TP
/*
 * A tracepoint's skb argument as the programs read it. The verifier takes
 * tp_btf arguments as trusted pointers, and for each pointer field loaded
 * from one (skb->dev, skb->sk, ...) it searches the kernel's BTF, type by
 * type, for the names that mark a field trusted or RCU: the 6.18 host spent
 * two thirds of a tp_btf load there. With use_cast the skb becomes a plain
 * read-only BTF pointer, whose fields are the same loads without that check.
 */
static __always_inline struct sk_buff *tp_skb(u64 arg)
{
	if (use_cast)
		return bpf_rdonly_cast((void *)arg, bpf_core_type_id_kernel(struct sk_buff));
	return (struct sk_buff *)arg;
}

/* tp_btf: one clone per tracepoint; the skb is tracepoint argument N. */
#define TP(N)                                                                  \
	SEC("tp_btf/placeholder")                                              \
	int tp_skb##N(u64 *ctx)                                                \
	{                                                                      \
		struct sk_buff *skb = tp_skb(ctx[N - 1]);                      \
		if (skb)                                                       \
			HANDLE(skb, 1, use_cast, 0, 0, desc = patched_desc(), tp_sock(ctx, desc)); \
		return 0;                                                      \
	}

TP(1)
TP(2)
TP(3)
TP(4)
TP(5)
TP(6)

/* The kfree_skb tracepoint: (skb, location, reason, ...). */
SEC("tp_btf/kfree_skb")
int tp_kfree_skb(u64 *ctx)
{
	struct sk_buff *skb = tp_skb(ctx[0]);
	if (skb)
		HANDLE(skb, 1, use_cast, 0, 0, {
			desc = patched_desc();
			reason = ctx[2];
			loc = ctx[1];
		}, NULL);
	return 0;
}
#endif /* PROGS_TP */

/* Argument pos (1..6) of a kprobe, 0 if out of range. */
static __always_inline u64 kprobe_arg(struct pt_regs *regs, u32 pos)
{
	/*
	 * Load every candidate register first: the verifier rejects a context
	 * access at a computed offset, which is what clang makes of a switch
	 * over regs->di, regs->si, ...
	 */
	u64 di = regs->di, si = regs->si, dx = regs->dx, cx = regs->cx, r8 = regs->r8, r9 = regs->r9;
	asm volatile("" : "+r"(di), "+r"(si), "+r"(dx), "+r"(cx), "+r"(r8), "+r"(r9));
	switch (pos) {
	case 1: return di;
	case 2: return si;
	case 3: return dx;
	case 4: return cx;
	case 5: return r8;
	case 6: return r9;
	}
	return 0;
}

/* The drop reason argument of a kprobe'd drop function, 0 if none. */
static __always_inline __group_helper u64 kprobe_reason(struct pt_regs *regs, u64 desc)
{
	return kprobe_arg(regs, desc_reason_pos(desc));
}

/*
 * The caller of a drop function: at a kprobe on the function's first
 * instruction, the return address is at the top of the stack.
 */
static __always_inline __group_helper u64 kprobe_location(struct pt_regs *regs, u64 desc)
{
	u64 loc = 0;
	if (desc_reason_pos(desc))
		bpf_probe_read_kernel(&loc, sizeof(loc), (void *)regs->sp);
	return loc;
}

/*
 * kprobe and kprobe-multi: one program per skb position, cookie =
 * descriptor (looked up only for a packet that matched). With use_cast the
 * skb address becomes a read-only BTF pointer (bpf_rdonly_cast), so its
 * fields are plain loads as in fentry; else they are probe reads.
 */
#define KPROBE_PROG(SECNAME, NAME, N, REG)                                     \
	SEC(SECNAME)                                                           \
	int NAME##N(struct pt_regs *regs)                                      \
	{                                                                      \
		struct sk_buff *skb = (struct sk_buff *)regs->REG;             \
		if (use_cast)                                                  \
			skb = bpf_rdonly_cast(skb, bpf_core_type_id_kernel(struct sk_buff)); \
		HANDLE(skb, use_cast, use_cast, 1, 0, {                           \
			desc = bpf_get_attach_cookie(regs);                    \
			reason = kprobe_reason(regs, desc);                    \
			loc = kprobe_location(regs, desc);                     \
		}, (struct sock *)kprobe_arg(regs, desc_sock_pos(desc)));      \
		return 0;                                                      \
	}

#ifdef PROGS_KPROBE
KPROBE_PROG("kprobe/placeholder", kprobe_skb, 1, di)
KPROBE_PROG("kprobe/placeholder", kprobe_skb, 2, si)
KPROBE_PROG("kprobe/placeholder", kprobe_skb, 3, dx)
KPROBE_PROG("kprobe/placeholder", kprobe_skb, 4, cx)
KPROBE_PROG("kprobe/placeholder", kprobe_skb, 5, r8)
KPROBE_PROG("kprobe/placeholder", kprobe_skb, 6, r9)
#endif

#ifdef PROGS_KPROBE_MULTI
/*
 * kprobe-multi: one link per program. Every link costs ftrace a pass over
 * all traceable functions of the kernel to attach and again to detach, so
 * the rare skb positions 4..6 (~4% of the functions and of the hits of a
 * ping) share one program, which needs the cookie first to know the
 * position: a binary search over the link's addresses in the kernel, which
 * doubled the cost of a hit that matches nothing. Positions 1..3 keep
 * programs of their own that look the cookie up only for a match.
 */
KPROBE_PROG("kprobe.multi/placeholder", kprobe_multi_skb, 1, di)
KPROBE_PROG("kprobe.multi/placeholder", kprobe_multi_skb, 2, si)
KPROBE_PROG("kprobe.multi/placeholder", kprobe_multi_skb, 3, dx)

SEC("kprobe.multi/placeholder")
int kprobe_multi_skb_any(struct pt_regs *regs)
{
	u64 cookie = bpf_get_attach_cookie(regs);
	struct sk_buff *skb = (struct sk_buff *)kprobe_arg(regs, desc_skb_pos(cookie));
	if (use_cast)
		skb = bpf_rdonly_cast(skb, bpf_core_type_id_kernel(struct sk_buff));
	HANDLE(skb, use_cast, use_cast, 1, 0, {
		desc = cookie;
		reason = kprobe_reason(regs, desc);
		loc = kprobe_location(regs, desc);
	}, (struct sock *)kprobe_arg(regs, desc_sock_pos(cookie)));
	return 0;
}
#endif

/* kprobe backends: stash the original at entry, track the clone at return. */
static __always_inline u64 stash_key(void)
{
	u64 k = bpf_get_current_pid_tgid();
	/* Idle tasks are pid 0 on every CPU. */
	if ((u32)k == 0)
		k = 0xffffffff00000000ULL | bpf_get_smp_processor_id();
	return k;
}

static __always_inline __group_helper void clone_entry(struct sk_buff *skb)
{
	u64 key = (u64)skb;
	if (ipft_disabled || !skb || !maybe_tracked(skb))
		return;
	u64 k = stash_key();
	bpf_map_update_elem(&clone_stash, &k, &key, BPF_ANY);
}

static __always_inline __group_helper void clone_return(struct pt_regs *regs)
{
	u64 k = stash_key();
	u64 *orig = bpf_map_lookup_elem(&clone_stash, &k);
	if (!orig)
		return;
	u64 o = *orig;
	bpf_map_delete_elem(&clone_stash, &k);
	track_clone((struct sk_buff *)o, (struct sk_buff *)regs->ax, bpf_get_attach_cookie(regs));
}

#ifdef PROGS_KPROBE
SEC("kprobe/placeholder")
int kprobe_clone(struct pt_regs *regs)
{
	clone_entry((struct sk_buff *)regs->di);
	return 0;
}

SEC("kretprobe/placeholder")
int kretprobe_clone(struct pt_regs *regs)
{
	clone_return(regs);
	return 0;
}

#endif /* PROGS_KPROBE */

#ifdef PROGS_KPROBE_MULTI
SEC("kprobe.multi/placeholder")
int kprobe_multi_clone(struct pt_regs *regs)
{
	clone_entry((struct sk_buff *)regs->di);
	return 0;
}

SEC("kretprobe.multi/placeholder")
int kretprobe_multi_clone(struct pt_regs *regs)
{
	clone_return(regs);
	return 0;
}
#endif /* PROGS_KPROBE_MULTI */
