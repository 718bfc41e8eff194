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
 *                          ld_imm64 of a clone of the template.
 *   kprobe, kprobe-multi:  one program per skb position; the descriptor is
 *                          the attach cookie of each function.
 *
 * The flow filter is a set of load-time constants (volatile const), so a
 * packet that does not match costs a few header reads and no map lookups.
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
	u8 data[DATA_SIZE];
	/*
	 * Where a drop function was called from: the kfree_skb tracepoint's
	 * location argument, or the return address a kprobe finds on the
	 * stack; 0 if unknown.
	 */
	u64 location;
	u64 data_valid; /* bit i: module field i was read (see module/) */
};

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
enum { COUNT_MATCHED, COUNT_LOST, NR_COUNTERS };

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NR_COUNTERS);
	__type(key, u32);
	__type(value, u64);
} counters SEC(".maps");

static __always_inline void count(u32 which)
{
	u64 *v = bpf_map_lookup_elem(&counters, &which);
	if (v)
		*v += 1;
}

/* Set to 1 by userspace to stop every program at once (fast Ctrl-C). */
volatile u32 ipft_disabled;

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
	unsigned char *head;
	u16 nh_off;
	u16 mac_off;
	__be16 proto;
};

/*
 * fentry and tp_btf: the skb is a BTF pointer, so its fields are plain
 * (fault-checked) loads, no helper calls.
 */
static __always_inline void skb_hdrs_direct(struct sk_buff *skb, struct skb_hdrs *h)
{
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

/*
 * Fill t from the packet: IP version, protocol, addresses, and the ports of
 * TCP, UDP and SCTP (not for non-first fragments). The network header is
 * used where it is set; otherwise the Ethernet header at the MAC header,
 * with up to two VLAN tags. Returns -1 for a packet that is not IP, else 0.
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
	} h;

	if (!head)
		return -1;
	if (nh_off != 0 && nh_off != HDR_UNSET && (mac_off == HDR_UNSET || nh_off > mac_off)) {
		nh = head + nh_off;
	} else {
		if (mac_off == HDR_UNSET)
			return -1;
		/* Ethernet: read the type and two possible VLAN tags at once. */
		if (bpf_probe_read_kernel(&h, 22, head + mac_off) < 0)
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

	if (bpf_probe_read_kernel(&h, 40, nh) < 0)
		return -1;
	u8 version = h.b[0] >> 4;
	if (proto != bpf_htons(ETH_P_IP) && proto != bpf_htons(ETH_P_IPV6) && proto != 0)
		return -1;

	unsigned char *l4;
	u8 next;
	if (version == 4 && proto != bpf_htons(ETH_P_IPV6)) {
		t->ipversion = 4;
		__builtin_memcpy(t->saddr, &h.b[12], 4);
		__builtin_memcpy(t->daddr, &h.b[16], 4);
		next = h.b[9];
		t->proto = next;
		/* Non-first fragments carry no L4 header. */
		if (h.h[3] & bpf_htons(0x1fff))
			return 0;
		l4 = nh + (h.b[0] & 0xf) * 4;
	} else if (version == 6 && proto != bpf_htons(ETH_P_IP)) {
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
			u8 opt[4];
			if (next != 0 && next != 43 && next != 60 && next != 51 && next != 44)
				break;
			if (bpf_probe_read_kernel(opt, sizeof(opt), l4) < 0)
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
		__be16 ports[2];
		if (bpf_probe_read_kernel(ports, sizeof(ports), l4) < 0)
			return -1;
		t->sport = bpf_ntohs(ports[0]);
		t->dport = bpf_ntohs(ports[1]);
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

/* Parse the packet into t and report whether it belongs to the flow. */
static __always_inline int flow_match(struct skb_hdrs *hd, struct tuple *t)
{
	if (parse_l3(hd, t) < 0 || !l3_match(t))
		return 0;
	return port_match(t);
}

static __always_inline u32 skb_netns(struct sk_buff *skb)
{
	struct net_device *dev = BPF_CORE_READ(skb, dev);
	if (dev)
		return BPF_CORE_READ(dev, nd_net.net, ns.inum);
	struct sock *sk = BPF_CORE_READ(skb, sk);
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

/*
 * The per-hit work of every program: match the packet against the flow
 * filter, and for a match, send an event. direct says whether the skb is a
 * BTF pointer (fentry, tp_btf) or a plain address (kprobes). The
 * descriptor and drop reason are fetched only for a match (get_desc).
 */
#define HANDLE(skb, direct, get_desc)                                          \
	do {                                                                   \
		struct skb_hdrs hd;                                            \
		struct tuple t = {};                                           \
		if (ipft_disabled)                                             \
			break;                                                 \
		if (direct)                                                    \
			skb_hdrs_direct(skb, &hd);                             \
		else                                                           \
			skb_hdrs_probe(skb, &hd);                              \
		if (!flow_match(&hd, &t))                                      \
			break;                                                 \
		u64 desc = 0, reason = 0, loc = 0;                             \
		get_desc;                                                      \
		emit(skb, &t, desc, reason, loc);                              \
	} while (0)

static __always_inline void emit(struct sk_buff *skb, struct tuple *t, u64 desc, u64 reason, u64 loc)
{
	/* Module data and match conditions: before any ring buffer traffic. */
	struct mod_buf mb;
	if (modules_on) {
		__builtin_memset(&mb, 0, sizeof(mb));
		if (!fill_data(skb, &mb))
			return;
	}

	count(COUNT_MATCHED);
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(COUNT_LOST);
		return;
	}
	e->ts = bpf_ktime_get_ns();
	e->skb = (u64)skb;
	e->func_id = (u32)desc;
	e->cpu = bpf_get_smp_processor_id();
	e->netns = skb_netns(skb);
	e->ifindex = BPF_CORE_READ(skb, dev, ifindex);
	e->len = BPF_CORE_READ(skb, len);
	e->drop_reason = (u32)reason;
	e->tuple = *t;
	if (modules_on) {
		__builtin_memcpy(e->data, mb.data, sizeof(e->data));
		e->data_valid = mb.valid;
	} else {
		__builtin_memset(e->data, 0, sizeof(e->data));
		e->data_valid = 0;
	}
	e->location = loc;

	u64 flags = BPF_RB_NO_WAKEUP;
	if (bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wakeup_bytes)
		flags = BPF_RB_FORCE_WAKEUP;
	bpf_ringbuf_submit(e, flags);
}

static __always_inline u32 desc_reason_pos(u64 desc)
{
	return (desc >> 32) & 0xff;
}

static __always_inline u64 patched_desc(void)
{
	u64 desc;
	asm volatile("%0 = " DESC_MARKER " ll" : "=r"(desc));
	return desc;
}

/* fentry: one clone per function; the skb is argument N. */
#define FENTRY(N)                                                              \
	SEC("fentry/placeholder")                                              \
	int fentry_skb##N(u64 *ctx)                                            \
	{                                                                      \
		struct sk_buff *skb = (struct sk_buff *)ctx[N - 1];            \
		if (skb)                                                       \
			HANDLE(skb, 1, {                                       \
				desc = patched_desc();                         \
				u32 rpos = desc_reason_pos(desc);              \
				if (rpos)                                      \
					bpf_get_func_arg(ctx, rpos - 1, &reason); \
			});                                                    \
		return 0;                                                      \
	}

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

/* tp_btf: one clone per tracepoint; the skb is tracepoint argument N. */
#define TP(N)                                                                  \
	SEC("tp_btf/placeholder")                                              \
	int tp_skb##N(u64 *ctx)                                                \
	{                                                                      \
		struct sk_buff *skb = (struct sk_buff *)ctx[N - 1];            \
		if (skb)                                                       \
			HANDLE(skb, 1, desc = patched_desc());                 \
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
	struct sk_buff *skb = (struct sk_buff *)ctx[0];
	if (skb)
		HANDLE(skb, 1, {
			desc = patched_desc();
			reason = ctx[2];
			loc = ctx[1];
		});
	return 0;
}

static __always_inline u64 kprobe_reason(struct pt_regs *regs, u64 desc)
{
	/*
	 * Load every candidate register first: the verifier rejects a context
	 * access at a computed offset, which is what clang makes of a switch
	 * over regs->si, regs->dx, ...
	 */
	u64 si = regs->si, dx = regs->dx, cx = regs->cx, r8 = regs->r8, r9 = regs->r9;
	asm volatile("" : "+r"(si), "+r"(dx), "+r"(cx), "+r"(r8), "+r"(r9));
	switch (desc_reason_pos(desc)) {
	case 2: return si;
	case 3: return dx;
	case 4: return cx;
	case 5: return r8;
	case 6: return r9;
	}
	return 0;
}

/*
 * The caller of a drop function: at a kprobe on the function's first
 * instruction, the return address is at the top of the stack.
 */
static __always_inline u64 kprobe_location(struct pt_regs *regs, u64 desc)
{
	u64 loc = 0;
	if (desc_reason_pos(desc))
		bpf_probe_read_kernel(&loc, sizeof(loc), (void *)regs->sp);
	return loc;
}

/*
 * bpf_rdonly_cast (6.2+) turns the skb address into a read-only BTF
 * pointer, so the kprobe programs can read its fields like fentry does:
 * one probe read per hit (the packet header) instead of two. Kernels
 * without it get the *_probe programs.
 */
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym __weak;

/*
 * kprobe and kprobe-multi: one program per skb position, cookie =
 * descriptor (looked up only for a packet that matched). KPROBE makes the
 * variant that casts the skb (SUFFIX _skbN) and the one that probe-reads
 * its fields (SUFFIX _probe_skbN); userspace loads the first that the
 * kernel accepts.
 */
#define KPROBE_PROG(SECNAME, NAME, N, REG, DIRECT, SKB)                       \
	SEC(SECNAME)                                                           \
	int NAME##N(struct pt_regs *regs)                                      \
	{                                                                      \
		struct sk_buff *skb = SKB;                                     \
		HANDLE(skb, DIRECT, {                                          \
			desc = bpf_get_attach_cookie(regs);                    \
			reason = kprobe_reason(regs, desc);                    \
			loc = kprobe_location(regs, desc);                     \
		});                                                            \
		return 0;                                                      \
	}

#define CAST_SKB(REG) \
	((struct sk_buff *)bpf_rdonly_cast((void *)regs->REG, bpf_core_type_id_kernel(struct sk_buff)))

#define KPROBE(N, REG)                                                                                \
	KPROBE_PROG("kprobe/placeholder", kprobe_skb, N, REG, 1, CAST_SKB(REG))                      \
	KPROBE_PROG("kprobe/placeholder", kprobe_probe_skb, N, REG, 0, (struct sk_buff *)regs->REG)  \
	KPROBE_PROG("kprobe.multi/placeholder", kprobe_multi_skb, N, REG, 1, CAST_SKB(REG))          \
	KPROBE_PROG("kprobe.multi/placeholder", kprobe_multi_probe_skb, N, REG, 0, (struct sk_buff *)regs->REG)

KPROBE(1, di)
KPROBE(2, si)
KPROBE(3, dx)
KPROBE(4, cx)
KPROBE(5, r8)
KPROBE(6, r9)
