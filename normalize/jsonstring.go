package normalize

import (
	"math/bits"
	"slices"
	"unicode/utf8"
)

// JSONEscape chooses which of encoding/json's optional escapes
// AppendJSONString writes. Quote, backslash, control characters and
// U+2028/U+2029 are escaped in every form.
type JSONEscape uint8

// The forms of a JSON string Custody writes.
const (
	// EscapeNoHTML is encoding/json with HTML escaping off
	// (Encoder.SetEscapeHTML(false)): \b \f \n \r \t by name, other
	// control characters as \u00XX, invalid UTF-8 as \ufffd. The event
	// JSON form (AppendEventJSON).
	EscapeNoHTML JSONEscape = iota
	// EscapeHTML is json.Marshal's form: EscapeNoHTML with <, > and &
	// written \u003c, \u003e and \u0026. OCSF events (AppendOCSF).
	EscapeHTML
	// EscapeBundle is the export bundle's (storage/docs/format/export-v1.md):
	// only \n \r \t by name, every other control character as \u00XX,
	// no HTML escaping, and bytes that are not UTF-8 copied as they are
	// (the bundle writes only UTF-8 text in its JSON strings).
	EscapeBundle
)

// jsonPlain marks, per form, the ASCII bytes a JSON string carries as
// they are.
var jsonPlain = func() (t [3][256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		plain := c != '"' && c != '\\'
		t[EscapeNoHTML][c] = plain
		t[EscapeBundle][c] = plain
		t[EscapeHTML][c] = plain && c != '<' && c != '>' && c != '&'
	}
	return t
}()

const (
	ltWord  = lsb * '<'
	gtWord  = lsb * '>'
	ampWord = lsb * '&'
)

// htmlMask flags the bytes of w that are '<', '>' or '&' (with the
// borrows of specialMask: never below the first match).
func htmlMask(w uint64) uint64 {
	l, g, a := w^ltWord, w^gtWord, w^ampWord
	return ((l-lsb)&^l | (g-lsb)&^g | (a-lsb)&^a) & msb
}

// AppendJSONString appends s to dst as a JSON string in the form esc
// names. It is the one JSON string escaper of Custody: the event JSON
// form, OCSF events and the export bundle's text formats all write
// through it, and FuzzAppendJSONString holds each form to encoding/json.
func AppendJSONString[S ~string | ~[]byte](dst []byte, s S, esc JSONEscape) []byte {
	plain := &jsonPlain[esc]
	// Room for s and some escapes up front, instead of growing by steps.
	dst = slices.Grow(dst, len(s)+len(s)/8+2)
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		// Skip 8 bytes at a time while none needs a look: no quote,
		// backslash, control character, non-ASCII byte (or, for HTML,
		// <, > or &).
		for i+8 <= len(s) {
			w := load64(s, i)
			m := specialMask(w) | w&msb
			if esc == EscapeHTML {
				m |= htmlMask(w)
			}
			if m != 0 {
				i += bits.TrailingZeros64(m) >> 3
				break
			}
			i += 8
		}
		if i >= len(s) {
			break
		}
		c := s[i]
		if c == '\\' || c == '"' {
			// A run of quotes and backslashes, as in JSON held in a
			// string: every one escaped in one go.
			dst = append(dst, s[start:i]...)
			for {
				dst = append(dst, '\\', c)
				if i++; i >= len(s) {
					break
				}
				if c = s[i]; c != '\\' && c != '"' {
					break
				}
			}
			start = i
			continue
		}
		if c < utf8.RuneSelf {
			if plain[c] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch {
			case c == '\n':
				dst = append(dst, '\\', 'n')
			case c == '\r':
				dst = append(dst, '\\', 'r')
			case c == '\t':
				dst = append(dst, '\\', 't')
			case c == '\b' && esc != EscapeBundle:
				dst = append(dst, '\\', 'b')
			case c == '\f' && esc != EscapeBundle:
				dst = append(dst, '\\', 'f')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		n := min(len(s)-i, utf8.UTFMax)
		r, size := utf8.DecodeRuneInString(string(s[i : i+n]))
		switch {
		case r == utf8.RuneError && size == 1:
			if esc != EscapeBundle {
				dst = append(dst, s[start:i]...)
				dst = append(dst, `\ufffd`...)
				start = i + 1
			}
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			start = i + size
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
