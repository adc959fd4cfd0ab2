// Package hclq quotes strings for HCL configuration that bootstrapd
// writes: Nomad agent config (read as HCL 1), jobspecs (HCL 2) and the
// profiles' templates, from values an operator or a node supplied.
package hclq

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Quote quotes s as a double-quoted string literal that reads back as s in
// HCL 2 native syntax, in HCL 1 (which the Nomad agent still parses its
// configuration with) and in JSON. It uses only the escapes the three share:
// \" \\ \n \r \t and \uNNNN. strconv.Quote is not enough: its \x, \a, \v ...
// are not HCL 2, and it leaves "${" and "%{" alone, which HCL 2 reads as a
// template and HCL 1's scanner as the start of an interpolation (in which a
// quote no longer ends the string). Those two are written \u0024{ and
// \u0025{, which all three decode to the plain characters. Invalid UTF-8,
// which an HCL file cannot hold, becomes U+FFFD.
func Quote(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case (r == '$' || r == '%') && i < len(s) && s[i] == '{':
			fmt.Fprintf(&b, `\u%04x`, r)
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == 0x2028 || r == 0x2029:
			// Control characters, and the two line separators some readers
			// treat as newlines: escaped, never raw.
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			// utf8.RuneError for invalid bytes writes U+FFFD.
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
