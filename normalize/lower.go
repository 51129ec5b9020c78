package normalize

import (
	"bytes"
	"strings"
)

// maxLowerLen bounds the values lowered in a stack buffer; longer ones
// take strings.ToLower.
const maxLowerLen = 128

// lowerInto lower-cases s into buf as strings.ToLower would, without
// allocating. ok is false when s is not ASCII (strings.ToLower maps some
// non-ASCII letters to ASCII ones, such as the Kelvin sign to 'k') or does
// not fit in buf; the caller then takes strings.ToLower. upper reports
// whether s held an upper-case letter (when it did not, the result is s).
func lowerInto(buf []byte, s string) (l []byte, upper, ok bool) {
	if len(s) > len(buf) {
		return nil, false, false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x80 {
			return nil, false, false
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
			upper = true
		}
		buf[i] = c
	}
	return buf[:len(s)], upper, true
}

// lowerString is strings.ToLower(s), shared through sc (may be nil) when
// it repeats: a repeated value with upper-case letters costs a cache
// lookup instead of an allocation.
func lowerString(s string, sc *strCache) string {
	var buf [maxLowerLen]byte
	l, upper, ok := lowerInto(buf[:], s)
	switch {
	case !ok || sc == nil:
		return strings.ToLower(s)
	case !upper:
		return s
	}
	return sc.intern(l)
}

// lowerBytes is []byte(strings.ToLower(s)), in buf when s fits and is
// ASCII. For comparisons: the result may alias buf.
func lowerBytes(buf []byte, s string) []byte {
	if l, _, ok := lowerInto(buf, s); ok {
		return l
	}
	return []byte(strings.ToLower(s))
}

// appendLower appends strings.ToLower(s) to dst.
func appendLower(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return append(dst, strings.ToLower(s)...)
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

// lowerContains is strings.Contains(strings.ToLower(a+b+...), needle)
// for a lower-case needle, without allocating for the usual short ASCII
// values.
func lowerContains(needle string, parts ...string) bool {
	var buf [256]byte
	b := buf[:0]
	for _, s := range parts {
		b = append(b, s...)
	}
	for i, c := range b {
		switch {
		case c >= 0x80:
			return strings.Contains(strings.ToLower(string(b)), needle)
		case 'A' <= c && c <= 'Z':
			b[i] = c + 'a' - 'A'
		}
	}
	return bytes.Contains(b, []byte(needle))
}
