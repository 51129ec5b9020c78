package engine

import "strings"

// StringArray renders strings as the text of an Array(String) parameter
// value, ['a','b”c']: each quoted, a quote doubled, every other byte as
// it is. The client escapes the parameter's text on its way to the
// server (backslashes and control characters included), so the array
// text must not escape them again: a backslash escape here would arrive
// as two characters (TestStringArrayRoundTrip). The result is bound as a
// server-side parameter, never spliced into SQL.
func StringArray(items []string) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, it := range items {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('\'')
		b.WriteString(strings.ReplaceAll(it, "'", "''"))
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
