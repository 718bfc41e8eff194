package btfscan

import (
	"fmt"
	"strings"

	"github.com/cilium/ebpf/btf"
)

// EnumsWithPrefix returns the type IDs of the enums (ENUM and ENUM64) of
// the vmlinux BTF at path that have a constant whose name starts with
// prefix, such as the kernel's anonymous enum of SKB_GSO_* bits. It reads
// the raw BTF and decodes nothing else, so that the caller can inflate just
// those types (btf.Spec.TypeByID on a spec of the same file); walking every
// type of a kernel spec takes a third of a second.
func EnumsWithPrefix(path, prefix string) ([]btf.TypeID, error) {
	data, err := readBTF(path)
	if err != nil {
		return nil, fmt.Errorf("read BTF %s: %w", path, err)
	}
	s, err := parseRaw(data, nil)
	if err != nil {
		return nil, fmt.Errorf("BTF %s: %w", path, err)
	}
	var ids []btf.TypeID
	for i := range s.offs {
		id := s.firstID + uint32(i)
		if k, _ := s.kind(id); k != kEnum && k != kEnum64 {
			continue
		}
		names, _ := s.enumValues(id)
		for _, n := range names {
			if strings.HasPrefix(n, prefix) {
				ids = append(ids, btf.TypeID(id))
				break
			}
		}
	}
	return ids, nil
}
