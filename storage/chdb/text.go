package chdb

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// IsIdentifier reports whether s is a plain ClickHouse identifier, the only
// form accepted for parameter names.
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

// QuoteString quotes s as a ClickHouse string literal.
func QuoteString(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('\'')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\'', '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('\'')
	return b.String()
}

// EscapeTSV escapes s the way ClickHouse's TabSeparated format (and its
// query parameter parser) expects.
func EscapeTSV(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			b.WriteString(`\\`)
		case '\t':
			b.WriteString(`\t`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case 0:
			b.WriteString(`\0`)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// unescapeTSV decodes one TabSeparated field into dst.
func unescapeTSV(dst, field []byte) []byte {
	if bytes.IndexByte(field, '\\') < 0 {
		return append(dst, field...)
	}
	for i := 0; i < len(field); i++ {
		c := field[i]
		if c != '\\' || i+1 == len(field) {
			dst = append(dst, c)
			continue
		}
		i++
		switch e := field[i]; e {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'r':
			dst = append(dst, '\r')
		case 'n':
			dst = append(dst, '\n')
		case 't':
			dst = append(dst, '\t')
		case '0':
			dst = append(dst, 0)
		case 'a':
			dst = append(dst, '\a')
		case 'v':
			dst = append(dst, '\v')
		case 'e':
			dst = append(dst, 0x1b)
		case 'x':
			if i+2 < len(field) {
				if v, err := strconv.ParseUint(string(field[i+1:i+3]), 16, 8); err == nil {
					dst = append(dst, byte(v))
					i += 2
					continue
				}
			}
			dst = append(dst, e)
		default:
			dst = append(dst, e)
		}
	}
	return dst
}

// scanField converts one unescaped TSV field into dest.
func scanField(field []byte, dest any) error {
	switch d := dest.(type) {
	case *string:
		*d = string(field)
	case *[]byte:
		*d = append((*d)[:0], field...)
	case *int64:
		v, err := strconv.ParseInt(string(field), 10, 64)
		if err != nil {
			return err
		}
		*d = v
	case *int32:
		v, err := strconv.ParseInt(string(field), 10, 32)
		if err != nil {
			return err
		}
		*d = int32(v)
	case *uint64:
		v, err := strconv.ParseUint(string(field), 10, 64)
		if err != nil {
			return err
		}
		*d = v
	case *uint32:
		v, err := strconv.ParseUint(string(field), 10, 32)
		if err != nil {
			return err
		}
		*d = uint32(v)
	case *uint8:
		v, err := strconv.ParseUint(string(field), 10, 8)
		if err != nil {
			return err
		}
		*d = uint8(v)
	case *bool:
		switch string(field) {
		case "1", "true":
			*d = true
		case "0", "false":
			*d = false
		default:
			return fmt.Errorf("%q is not a boolean", field)
		}
	case *float64:
		v, err := strconv.ParseFloat(string(field), 64)
		if err != nil {
			return err
		}
		*d = v
	case *time.Time:
		t, err := ParseDateTime(string(field))
		if err != nil {
			return err
		}
		*d = t
	case *[32]byte:
		if len(field) != 32 {
			return fmt.Errorf("fixed string of %d bytes, want 32", len(field))
		}
		copy(d[:], field)
	case *any:
		*d = string(field)
	default:
		return fmt.Errorf("unsupported scan destination %T", dest)
	}
	return nil
}

// ParseDateTime parses ClickHouse's text form of DateTime and DateTime64
// values ("2026-11-27 10:00:00" or with a fractional part), read as UTC.
func ParseDateTime(s string) (time.Time, error) {
	layout := "2006-01-02 15:04:05"
	if len(s) > len(layout) {
		layout = "2006-01-02 15:04:05.999999999"
	}
	if len(s) == len("2006-01-02") {
		layout = "2006-01-02"
	}
	t, err := time.ParseInLocation(layout, s, time.UTC)
	if err != nil {
		return time.Time{}, fmt.Errorf("parse time %q: %w", s, err)
	}
	return t, nil
}

// parseQuoted reads one quoted string ('...' with backslash escapes) at the
// start of s and returns it and the rest.
func parseQuoted(s []byte) (string, []byte, error) {
	if len(s) == 0 || s[0] != '\'' {
		return "", nil, fmt.Errorf("expected a quoted string at %q", truncate(s))
	}
	var out []byte
	for i := 1; i < len(s); i++ {
		switch c := s[i]; c {
		case '\'':
			return string(out), s[i+1:], nil
		case '\\':
			if i+1 >= len(s) {
				return "", nil, fmt.Errorf("unterminated escape")
			}
			j := i + 1
			for j < len(s) && s[j] != '\'' && s[j] != '\\' {
				j++
			}
			// reuse the TSV unescaper for the escape sequence
			seq := s[i : i+2]
			if s[i+1] == 'x' && i+3 < len(s) {
				seq = s[i : i+4]
			}
			out = unescapeTSV(out, seq)
			i += len(seq) - 1
		default:
			out = append(out, c)
		}
	}
	return "", nil, fmt.Errorf("unterminated string")
}

func truncate(s []byte) string {
	if len(s) > 20 {
		return string(s[:20]) + "..."
	}
	return string(s)
}

// parseArray parses ClickHouse's text form of Array(String): ['a','b'].
func parseArray(s []byte) ([]string, error) {
	if len(s) < 2 || s[0] != '[' {
		return nil, fmt.Errorf("expected an array, got %q", truncate(s))
	}
	rest := s[1:]
	var out []string
	for {
		if len(rest) > 0 && rest[0] == ']' && len(out) == 0 {
			return out, nil
		}
		v, r, err := parseQuoted(rest)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
		if len(r) == 0 {
			return nil, fmt.Errorf("unterminated array")
		}
		if r[0] == ']' {
			return out, nil
		}
		if r[0] != ',' {
			return nil, fmt.Errorf("expected , in array at %q", truncate(r))
		}
		rest = r[1:]
	}
}

// parseMap parses ClickHouse's text form of Map(String,String): {'k':'v'}.
func parseMap(s []byte) (map[string]string, error) {
	if len(s) < 2 || s[0] != '{' {
		return nil, fmt.Errorf("expected a map, got %q", truncate(s))
	}
	rest := s[1:]
	out := map[string]string{}
	if rest[0] == '}' {
		return out, nil
	}
	for {
		k, r, err := parseQuoted(rest)
		if err != nil {
			return nil, err
		}
		if len(r) == 0 || r[0] != ':' {
			return nil, fmt.Errorf("expected : in map")
		}
		v, r, err := parseQuoted(r[1:])
		if err != nil {
			return nil, err
		}
		out[k] = v
		if len(r) == 0 {
			return nil, fmt.Errorf("unterminated map")
		}
		if r[0] == '}' {
			return out, nil
		}
		if r[0] != ',' {
			return nil, fmt.Errorf("expected , in map")
		}
		rest = r[1:]
	}
}
