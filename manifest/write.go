package manifest

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Write encodes m as YAML that Parse reads back unchanged. SkbPos 0 and
// Egress false are omitted.
func Write(w io.Writer, m *Manifest) error {
	bw := bufio.NewWriter(w)
	if len(m.Functions) == 0 {
		bw.WriteString("functions: []\n")
		return bw.Flush()
	}
	bw.WriteString("functions:\n")
	for _, e := range m.Functions {
		bw.WriteString("  - name: ")
		bw.WriteString(yamlString(e.Name))
		bw.WriteByte('\n')
		if e.SkbPos != 0 {
			fmt.Fprintf(bw, "    skb_pos: %d\n", e.SkbPos)
		}
		if e.Egress {
			bw.WriteString("    egress: true\n")
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write manifest: %w", err)
	}
	return nil
}

// yamlString writes s as a plain scalar when YAML reads that back as the same
// string, and double-quoted otherwise.
func yamlString(s string) string {
	if plainSafe(s) {
		return s
	}
	return strconv.Quote(s)
}

// plainSafe reports whether s is an identifier that YAML resolves as a string.
func plainSafe(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ident := c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || (i > 0 && (c >= '0' && c <= '9' || c == '.'))
		if !ident {
			return false
		}
	}
	switch strings.ToLower(s) {
	case "true", "false", "yes", "no", "on", "off", "y", "n", "null", "nan", "inf":
		return false
	}
	return true
}
