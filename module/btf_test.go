package module

import (
	"testing"

	"github.com/cilium/ebpf/btf"
)

// Offsets of the synthetic struct sk_buff (x86-64-like, but small).
const (
	offNext     = 0
	offDev      = 8
	offSk       = 16
	offLen      = 24
	offDataLen  = 28
	offMark     = 32 // in an anonymous union with reserved_tailroom
	offFlags    = 36 // bitfields: cloned:1 at bit 0, pkt_type:3 at bit 1 (byte 36), more:12 at bit 4
	offProtocol = 40 // __be16
	offPriority = 42 // __s16
	offHead     = 48
	offEnd      = 56 // unsigned int: skb_shinfo is head + end
	skbSize     = 64

	offDevName    = 0
	offDevIfindex = 16
	offDevNet     = 24 // possible_net_t nd_net { struct net *net; }
	devSize       = 32

	offNetInum = 8 // struct net { u64 pad; struct ns_common ns { unsigned int inum; }; }

	offGsoSize = 4
	offGsoSegs = 6
	offGsoType = 8
	offFrags   = 16 // skb_frag_t frags[2] { u32 len; u32 off; }
	shinfoSize = 32
)

// syntheticSpec builds the BTF types the tests resolve against.
func syntheticSpec(t testing.TB) *btf.Spec {
	t.Helper()
	u8 := &btf.Int{Name: "unsigned char", Size: 1}
	char := &btf.Int{Name: "char", Size: 1, Encoding: btf.Signed}
	u16 := &btf.Int{Name: "unsigned short", Size: 2}
	s16 := &btf.Int{Name: "short", Size: 2, Encoding: btf.Signed}
	u32 := &btf.Int{Name: "unsigned int", Size: 4}
	s32 := &btf.Int{Name: "int", Size: 4, Encoding: btf.Signed}
	u64 := &btf.Int{Name: "long long unsigned int", Size: 8}
	boolT := &btf.Int{Name: "_Bool", Size: 1, Encoding: btf.Bool}
	be16 := &btf.Typedef{Name: "__be16", Type: &btf.Typedef{Name: "__u16", Type: u16}}
	s16t := &btf.Typedef{Name: "__s16", Type: s16}

	nsCommon := &btf.Struct{Name: "ns_common", Size: 4, Members: []btf.Member{{Name: "inum", Type: u32}}}
	net := &btf.Struct{Name: "net", Size: 16, Members: []btf.Member{
		{Name: "pad", Type: u64},
		{Name: "ns", Type: nsCommon, Offset: offNetInum * 8},
	}}
	possibleNet := &btf.Struct{Name: "", Size: 8, Members: []btf.Member{{Name: "net", Type: &btf.Pointer{Target: net}}}}
	possibleNetT := &btf.Typedef{Name: "possible_net_t", Type: possibleNet}
	dev := &btf.Struct{Name: "net_device", Size: devSize, Members: []btf.Member{
		{Name: "name", Type: &btf.Array{Type: char, Index: u32, Nelems: 16}, Offset: offDevName * 8},
		{Name: "ifindex", Type: s32, Offset: offDevIfindex * 8},
		{Name: "nd_net", Type: possibleNetT, Offset: offDevNet * 8},
	}}
	afEnum := &btf.Enum{Name: "address_families", Size: 4, Values: []btf.EnumValue{{Name: "AF_INET", Value: 2}, {Name: "AF_INET6", Value: 10}}}
	skCommon := &btf.Struct{Name: "sock_common", Size: 4, Members: []btf.Member{{Name: "skc_family", Type: u16}}}
	sock := &btf.Struct{Name: "sock", Size: 8, Members: []btf.Member{{Name: "__sk_common", Type: skCommon}, {Name: "sk_state", Type: boolT, Offset: 4 * 8}}}
	skb := &btf.Struct{Name: "sk_buff", Size: skbSize}
	markUnion := &btf.Union{Size: 4, Members: []btf.Member{{Name: "mark", Type: u32}, {Name: "reserved_tailroom", Type: u32}}}
	skb.Members = []btf.Member{
		{Name: "next", Type: &btf.Pointer{Target: skb}, Offset: offNext * 8},
		{Name: "dev", Type: &btf.Pointer{Target: dev}, Offset: offDev * 8},
		{Name: "sk", Type: &btf.Pointer{Target: sock}, Offset: offSk * 8},
		{Name: "len", Type: u32, Offset: offLen * 8},
		{Name: "data_len", Type: &btf.Volatile{Type: u32}, Offset: offDataLen * 8},
		{Name: "", Type: markUnion, Offset: offMark * 8},
		{Name: "cloned", Type: u8, Offset: offFlags * 8, BitfieldSize: 1},
		{Name: "pkt_type", Type: u8, Offset: offFlags*8 + 1, BitfieldSize: 3},
		{Name: "more", Type: u16, Offset: offFlags*8 + 4, BitfieldSize: 12},
		{Name: "protocol", Type: be16, Offset: offProtocol * 8},
		{Name: "priority", Type: s16t, Offset: offPriority * 8},
		{Name: "head", Type: &btf.Pointer{Target: u8}, Offset: offHead * 8},
		{Name: "end", Type: &btf.Typedef{Name: "sk_buff_data_t", Type: u32}, Offset: offEnd * 8},
	}
	frag := &btf.Struct{Name: "skb_frag", Size: 8, Members: []btf.Member{{Name: "len", Type: u32}, {Name: "off", Type: u32, Offset: 32}}}
	shinfo := &btf.Struct{Name: "skb_shared_info", Size: shinfoSize, Members: []btf.Member{
		{Name: "nr_frags", Type: u8},
		{Name: "gso_size", Type: u16, Offset: offGsoSize * 8},
		{Name: "gso_segs", Type: u16, Offset: offGsoSegs * 8},
		{Name: "gso_type", Type: u32, Offset: offGsoType * 8},
		{Name: "frags", Type: &btf.Array{Type: frag, Index: u32, Nelems: 2}, Offset: offFrags * 8},
	}}
	gso := &btf.Enum{Size: 4, Values: []btf.EnumValue{
		{Name: "SKB_GSO_TCPV4", Value: 1}, {Name: "SKB_GSO_DODGY", Value: 2}, {Name: "SKB_GSO_TCP_ECN", Value: 4},
		{Name: "SKB_GSO_TCPV6", Value: 16}, {Name: "SKB_GSO_PARTIAL", Value: 1 << 13},
	}}
	b, err := btf.NewBuilder([]btf.Type{skb, shinfo, gso, afEnum}, nil)
	if err != nil {
		t.Fatal(err)
	}
	spec, err := b.Spec()
	if err != nil {
		t.Fatal(err)
	}
	return spec
}
