package output

// Field is one decoded custom-data value of an event (see package module).
type Field struct {
	Name string // field name, e.g. gso_size
	Text string // as printed in text output, e.g. 0x10 or SKB_GSO_TCPV4; "-" if it could not be read
	JSON string // the JSON value literal, e.g. 16, "SKB_GSO_TCPV4", true or null
}

// AppendFields appends fields in the original ipftrace's "Custom Data"
// style: (len: 2101 gso_size: 1448 gso_type: SKB_GSO_TCPV4).
func AppendFields(b []byte, fields []Field) []byte {
	b = append(b, '(')
	for i, f := range fields {
		if i > 0 {
			b = append(b, ' ')
		}
		b = append(b, f.Name...)
		b = append(b, ": "...)
		b = append(b, f.Text...)
	}
	return append(b, ')')
}
