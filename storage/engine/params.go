package engine

import (
	"fmt"
	"strings"
)

// StringArray renders strings as the text of an Array(String) parameter
// value: quoted, with quotes, backslashes and control characters
// escaped. The result is bound as a server-side parameter, never spliced
// into SQL.
func StringArray(items []string) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, it := range items {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('\'')
		for _, r := range it {
			switch {
			case r == '\'' || r == '\\':
				b.WriteByte('\\')
				b.WriteRune(r)
			case r < 0x20 || r == 0x7f:
				fmt.Fprintf(&b, "\\x%02x", r)
			default:
				b.WriteRune(r)
			}
		}
		b.WriteByte('\'')
	}
	b.WriteByte(']')
	return b.String()
}

// IsIdentifier reports whether s is a plain ClickHouse identifier (letters,
// digits and underscores, not starting with a digit, at most 128 bytes):
// the only form accepted for parameter, column, role and user names.
func IsIdentifier(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i, c := range s {
		switch {
		case c == '_', c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}
