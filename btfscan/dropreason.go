package btfscan

import (
	"errors"
	"fmt"
	"maps"
	"strings"

	"github.com/cilium/ebpf/btf"
)

const dropReasonPrefix = "SKB_DROP_REASON_"

// DropReasons maps the values of enum skb_drop_reason to their names without
// the SKB_DROP_REASON_ prefix (e.g. 2 → "NOT_SPECIFIED"). It returns an empty
// map if the kernel has no such enum.
func DropReasons(spec *btf.Spec) (map[uint64]string, error) {
	var enum *btf.Enum
	err := spec.TypeByName("skb_drop_reason", &enum)
	if errors.Is(err, btf.ErrNotFound) {
		return map[uint64]string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("look up enum skb_drop_reason: %w", err)
	}
	out := make(map[uint64]string, len(enum.Values))
	for _, v := range enum.Values {
		out[v.Value] = strings.TrimPrefix(v.Name, dropReasonPrefix)
	}
	return out, nil
}

// DropReasons is the package function DropReasons on the vmlinux BTF of the
// scan, read by Scan from the raw BTF: it does not need r.BTF. The map is a
// copy the caller may modify.
func (r *Result) DropReasons() (map[uint64]string, error) {
	if r.drop.err != nil {
		return nil, r.drop.err
	}
	if r.drop.m == nil {
		return map[uint64]string{}, nil
	}
	return maps.Clone(r.drop.m), nil
}

type dropReasons struct {
	m   map[uint64]string
	err error
}

// dropReasonsRaw builds the DropReasons map from the ENUM/ENUM64 types of
// base named skb_drop_reason.
func dropReasonsRaw(base *rawSpec, ids []uint32) dropReasons {
	switch len(ids) {
	case 0:
		return dropReasons{}
	case 1:
	default:
		return dropReasons{err: fmt.Errorf("look up enum skb_drop_reason: type skb_drop_reason(*btf.Enum): %w", btf.ErrMultipleMatches)}
	}
	names, values := base.enumValues(ids[0])
	m := make(map[uint64]string, len(names))
	for i, name := range names {
		m[values[i]] = strings.Clone(strings.TrimPrefix(name, dropReasonPrefix))
	}
	return dropReasons{m: m}
}
