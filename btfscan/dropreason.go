package btfscan

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cilium/ebpf/btf"
)

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
		out[v.Value] = strings.TrimPrefix(v.Name, "SKB_DROP_REASON_")
	}
	return out, nil
}
