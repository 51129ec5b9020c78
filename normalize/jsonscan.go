package normalize

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// This file holds a small validating JSON reader that works on byte slices
// without building a tree. The hot path (AKS kube-audit through Event Hubs)
// would otherwise pay for encoding/json's scan-then-decode twice per record
// (envelope, then the audit event inside properties.log). Values are handed
// out as sub-slices of the input, so a record's Raw bytes are the exact
// bytes the source delivered.

// maxDepth bounds nesting so hostile input cannot exhaust the stack.
const maxDepth = 256

// Sentinel errors of the JSON reader.
var (
	errUnexpectedEnd = errors.New("unexpected end of JSON input")
	errTooDeep       = errors.New("JSON nested too deeply")
)

// syntaxError says what was wrong and at which byte offset.
type syntaxError struct {
	msg string
	off int
}

func (e *syntaxError) Error() string { return fmt.Sprintf("invalid JSON at byte %d: %s", e.off, e.msg) }

func synErr(off int, format string, args ...any) error {
	return &syntaxError{msg: fmt.Sprintf(format, args...), off: off}
}

func isSpace(c byte) bool { return c == ' ' || c == '\n' || c == '\r' || c == '\t' }

func skipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

// skipValue validates the JSON value starting at b[i] (after optional
// whitespace) and returns the offset just past it.
func skipValue(b []byte, i int, depth int) (int, error) {
	i = skipSpace(b, i)
	if i >= len(b) {
		return i, errUnexpectedEnd
	}
	switch c := b[i]; {
	case c == '"':
		_, next, err := scanString(b, i)
		return next, err
	case c == '{':
		if depth >= maxDepth {
			return i, errTooDeep
		}
		i = skipSpace(b, i+1)
		if i < len(b) && b[i] == '}' {
			return i + 1, nil
		}
		for {
			i = skipSpace(b, i)
			if i >= len(b) {
				return i, errUnexpectedEnd
			}
			if b[i] != '"' {
				return i, synErr(i, "expected object key, found %q", b[i])
			}
			_, next, err := scanString(b, i)
			if err != nil {
				return next, err
			}
			i = skipSpace(b, next)
			if i >= len(b) {
				return i, errUnexpectedEnd
			}
			if b[i] != ':' {
				return i, synErr(i, "expected ':' after object key, found %q", b[i])
			}
			if i, err = skipValue(b, i+1, depth+1); err != nil {
				return i, err
			}
			i = skipSpace(b, i)
			if i >= len(b) {
				return i, errUnexpectedEnd
			}
			switch b[i] {
			case ',':
				i++
			case '}':
				return i + 1, nil
			default:
				return i, synErr(i, "expected ',' or '}' in object, found %q", b[i])
			}
		}
	case c == '[':
		if depth >= maxDepth {
			return i, errTooDeep
		}
		i = skipSpace(b, i+1)
		if i < len(b) && b[i] == ']' {
			return i + 1, nil
		}
		for {
			var err error
			if i, err = skipValue(b, i, depth+1); err != nil {
				return i, err
			}
			i = skipSpace(b, i)
			if i >= len(b) {
				return i, errUnexpectedEnd
			}
			switch b[i] {
			case ',':
				i++
			case ']':
				return i + 1, nil
			default:
				return i, synErr(i, "expected ',' or ']' in array, found %q", b[i])
			}
		}
	case c == 't':
		return literal(b, i, "true")
	case c == 'f':
		return literal(b, i, "false")
	case c == 'n':
		return literal(b, i, "null")
	case c == '-' || (c >= '0' && c <= '9'):
		return scanNumber(b, i)
	default:
		return i, synErr(i, "unexpected character %q", c)
	}
}

func literal(b []byte, i int, lit string) (int, error) {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return i, synErr(i, "invalid literal, want %s", lit)
	}
	return i + len(lit), nil
}

func scanNumber(b []byte, i int) (int, error) {
	start := i
	if b[i] == '-' {
		i++
	}
	if i >= len(b) {
		return i, errUnexpectedEnd
	}
	switch {
	case b[i] == '0':
		i++
	case b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		return i, synErr(i, "invalid number")
	}
	if i < len(b) && b[i] == '.' {
		i++
		d := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == d {
			return i, synErr(start, "invalid number: no digits after '.'")
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		d := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == d {
			return i, synErr(start, "invalid number: no digits in exponent")
		}
	}
	return i, nil
}

// SWAR constants: eight bytes are checked at once for a quote, a
// backslash or a control character.
const (
	lsb   = 0x0101010101010101
	msb   = 0x8080808080808080
	quote = 0x2222222222222222
	bslsh = 0x5c5c5c5c5c5c5c5c
	space = 0x2020202020202020
)

// specialMask flags the bytes of w that are '"', '\\' or < 0x20 with their
// high bit. Borrows can flag a byte above a real match, never below, so
// the lowest flagged byte (bits.TrailingZeros64(m)/8) is always a match.
//
// Each of the three tests is (x-lsb)&^x&msb for some x, and x is w with
// bits below the high bit of each byte flipped, so ^x&msb is ^w&msb: the
// three share one &^w.
func specialMask(w uint64) uint64 {
	return (((w ^ quote) - lsb) | ((w ^ bslsh) - lsb) | (w - space)) &^ w & msb
}

// quoteMask is specialMask for '"' and '\\' only (control characters are
// not looked for in input already validated).
func quoteMask(w uint64) uint64 {
	return (((w ^ quote) - lsb) | ((w ^ bslsh) - lsb)) &^ w & msb
}

// nextSpecial returns the offset of the first '"', '\\' or control
// character at or after i, or len(b).
func nextSpecial(b []byte, i int) int {
	for i+8 <= len(b) {
		if m := specialMask(binary.LittleEndian.Uint64(b[i:])); m != 0 {
			return i + bits.TrailingZeros64(m)>>3
		}
		i += 8
	}
	for i < len(b) && b[i] != '"' && b[i] != '\\' && b[i] >= 0x20 {
		i++
	}
	return i
}

// scanString validates the string starting at b[i] == '"'. It reports
// whether the content holds escapes and returns the offset past the closing
// quote.
func scanString(b []byte, i int) (escaped bool, next int, err error) {
	start := i
	i++
	for {
		i = nextSpecial(b, i)
		if i >= len(b) {
			return escaped, len(b), errUnexpectedEnd
		}
		c := b[i]
		switch {
		case c == '"':
			return escaped, i + 1, nil
		case c == '\\':
			escaped = true
			if i+1 >= len(b) {
				return escaped, len(b), errUnexpectedEnd
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) {
					return escaped, len(b), errUnexpectedEnd
				}
				for _, h := range b[i+2 : i+6] {
					if !isHex(h) {
						return escaped, i, synErr(i, "invalid \\u escape")
					}
				}
				i += 6
			default:
				return escaped, i, synErr(i, "invalid escape \\%c", b[i+1])
			}
		case c < 0x20:
			return escaped, i, synErr(start, "control character in string")
		default:
			i++
		}
	}
}

// skipStringTrusted returns the offset past the string starting at
// b[i] == '"' in input already validated.
func skipStringTrusted(b []byte, i int) int {
	i++
	for {
		for i+8 <= len(b) {
			if m := quoteMask(binary.LittleEndian.Uint64(b[i:])); m != 0 {
				i += bits.TrailingZeros64(m) >> 3
				break
			}
			i += 8
		}
		if i >= len(b) {
			return len(b)
		}
		switch b[i] {
		case '"':
			return i + 1
		case '\\':
			i += 2
		default:
			i++
		}
	}
}

// skipTrusted returns the offset past the value starting at b[i] (after
// optional whitespace) in input already validated by skipValue.
func skipTrusted(b []byte, i int) int {
	i = skipSpace(b, i)
	if i >= len(b) {
		return i
	}
	switch b[i] {
	case '"':
		return skipStringTrusted(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				i = skipStringTrusted(b, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return i
	default:
		for i < len(b) {
			switch b[i] {
			case ',', '}', ']', ' ', '\n', '\r', '\t':
				return i
			}
			i++
		}
		return i
	}
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

func hexVal(b []byte) rune {
	var r rune
	for _, c := range b {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		default:
			r |= rune(c - 'A' + 10)
		}
	}
	return r
}

// unescape appends the decoded content of an already validated JSON string
// body (without quotes) to dst.
func unescape(dst, s []byte) []byte {
	for len(s) > 0 {
		k := bytes.IndexByte(s, '\\')
		if k < 0 {
			return append(dst, s...)
		}
		dst = append(dst, s[:k]...)
		s = s[k:]
		switch s[1] {
		case '"', '\\', '/':
			dst = append(dst, s[1])
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r := hexVal(s[2:6])
			s = s[6:]
			if utf16.IsSurrogate(r) {
				if len(s) >= 6 && s[0] == '\\' && s[1] == 'u' && isHex(s[2]) && isHex(s[3]) && isHex(s[4]) && isHex(s[5]) {
					if r2 := utf16.DecodeRune(r, hexVal(s[2:6])); r2 != utf8.RuneError {
						dst = utf8.AppendRune(dst, r2)
						s = s[6:]
						continue
					}
				}
				r = utf8.RuneError
			}
			dst = utf8.AppendRune(dst, r)
			continue
		}
		s = s[2:]
	}
	return dst
}

// value kinds as seen from the first byte.
func isString(v []byte) bool { return len(v) > 0 && v[0] == '"' }
func isObject(v []byte) bool { return len(v) > 0 && v[0] == '{' }
func isArray(v []byte) bool  { return len(v) > 0 && v[0] == '[' }

// strBytes returns the decoded content of a JSON string value. It returns
// the input's own bytes when the string holds no escapes, so callers must
// copy before keeping the result. ok is false for non-strings.
func strBytes(v []byte) (s []byte, ok bool) {
	if !isString(v) {
		return nil, false
	}
	body := v[1 : len(v)-1]
	if bytes.IndexByte(body, '\\') < 0 {
		return body, true
	}
	return unescape(make([]byte, 0, len(body)), body), true
}

// strEmpty reports whether str(v) is "": v is absent, null, a container
// or the empty string (an escape never decodes to nothing).
func strEmpty(v []byte) bool {
	return len(v) == 0 || v[0] == '{' || v[0] == '[' || v[0] == 'n' || (len(v) == 2 && v[0] == '"')
}

// str returns a JSON scalar as a Go string: strings decoded, numbers and
// booleans as written, null and containers as "".
func str(v []byte) string {
	if len(v) == 0 {
		return ""
	}
	switch v[0] {
	case '"':
		s, _ := strBytes(v)
		return string(s)
	case '{', '[', 'n':
		return ""
	default:
		return string(v)
	}
}

// intValue reads a JSON number or a string holding a number, truncating any
// fraction.
func intValue(v []byte) (int64, bool) {
	s := v
	if isString(v) {
		s, _ = strBytes(v)
	}
	if len(s) == 0 {
		return 0, false
	}
	if n, err := strconv.ParseInt(string(s), 10, 64); err == nil {
		return n, true
	}
	if f, err := strconv.ParseFloat(string(s), 64); err == nil && f >= -1<<62 && f <= 1<<62 {
		return int64(f), true
	}
	return 0, false
}

// objIter walks the members of a validated or unvalidated object. Each
// value is validated as it is skipped; the first error stops the walk and
// is kept in err.
type objIter struct {
	b       []byte
	i       int
	depth   int
	err     error
	done    bool
	trusted bool // values were validated already: skip without checking
}

// newTrustedObjIter iterates an object inside input that skipValue has
// already validated (the message body), skipping values without checking
// them again.
func newTrustedObjIter(v []byte) objIter {
	it := newObjIter(v, 0)
	it.trusted = true
	return it
}

// end is the offset just past the object once the walk is done.
func (it *objIter) end() int { return it.i }

// newObjIter starts iterating the object v (which must begin with '{').
func newObjIter(v []byte, depth int) objIter { return newObjIterAt(v, 0, depth) }

// newObjIterAt starts iterating the object that starts at b[i] (after
// optional whitespace). Offsets, in errors and from end, stay relative to
// b, so a nested object read this way reports errors exactly as a
// skipValue over all of b would.
func newObjIterAt(v []byte, i, depth int) objIter {
	it := objIter{b: v, depth: depth}
	i = skipSpace(v, i)
	if i >= len(v) || v[i] != '{' {
		it.err = synErr(i, "expected object")
		it.done = true
		return it
	}
	it.i = skipSpace(v, i+1)
	if it.i < len(v) && v[it.i] == '}' {
		it.i++
		it.done = true
	}
	return it
}

// next returns the next member: the key's raw content (escapes intact) and
// the value's bytes.
func (it *objIter) next() (key, val []byte, ok bool) {
	key, vs, ok := it.nextKey()
	if !ok {
		return nil, nil, false
	}
	var ve int
	if it.trusted {
		ve = skipTrusted(it.b, vs)
	} else {
		var err error
		if ve, err = skipValue(it.b, vs, it.depth+1); err != nil {
			return it.fail(err)
		}
	}
	if !it.finish(ve) {
		return nil, nil, false
	}
	return key, it.b[vs:ve], true
}

// nextKey reads the next key and returns the offset where its value
// starts. The caller consumes the value itself and then calls finish with
// the offset just past it; this saves a second pass over large values.
func (it *objIter) nextKey() (key []byte, valueStart int, ok bool) {
	if it.done {
		return nil, 0, false
	}
	b, i := it.b, skipSpace(it.b, it.i)
	if i >= len(b) {
		it.fail(errUnexpectedEnd)
		return nil, 0, false
	}
	if b[i] != '"' {
		it.fail(synErr(i, "expected object key, found %q", b[i]))
		return nil, 0, false
	}
	var esc bool
	var next int
	var err error
	if it.trusted {
		next = skipStringTrusted(b, i)
		esc = bytes.IndexByte(b[i+1:next-1], '\\') >= 0
	} else if esc, next, err = scanString(b, i); err != nil {
		it.fail(err)
		return nil, 0, false
	}
	if next-1 < i+1 {
		it.fail(errUnexpectedEnd)
		return nil, 0, false
	}
	key = b[i+1 : next-1]
	if esc {
		key = unescape(nil, key)
	}
	i = skipSpace(b, next)
	if i >= len(b) {
		it.fail(errUnexpectedEnd)
		return nil, 0, false
	}
	if b[i] != ':' {
		it.fail(synErr(i, "expected ':' after object key, found %q", b[i]))
		return nil, 0, false
	}
	return key, skipSpace(b, i+1), true
}

// finish moves past the value that ended at ve and the following ',' or
// '}'.
func (it *objIter) finish(ve int) bool {
	b := it.b
	i := skipSpace(b, ve)
	if i >= len(b) {
		it.fail(errUnexpectedEnd)
		return false
	}
	switch b[i] {
	case ',':
		it.i = i + 1
	case '}':
		it.i = i + 1
		it.done = true
	default:
		it.fail(synErr(i, "expected ',' or '}' in object, found %q", b[i]))
		return false
	}
	return true
}

func (it *objIter) fail(err error) ([]byte, []byte, bool) {
	it.err = err
	it.done = true
	return nil, nil, false
}

// arrIter walks the elements of an array.
type arrIter struct {
	b       []byte
	i       int
	depth   int
	err     error
	done    bool
	trusted bool
}

// newTrustedArrIter iterates an array inside already validated input.
func newTrustedArrIter(v []byte) arrIter {
	it := newArrIter(v, 0)
	it.trusted = true
	return it
}

func newArrIter(v []byte, depth int) arrIter {
	it := arrIter{b: v, depth: depth}
	i := skipSpace(v, 0)
	if i >= len(v) || v[i] != '[' {
		it.err = synErr(i, "expected array")
		it.done = true
		return it
	}
	it.i = skipSpace(v, i+1)
	if it.i < len(v) && v[it.i] == ']' {
		it.i++
		it.done = true
	}
	return it
}

func (it *arrIter) next() (val []byte, ok bool) {
	vs, ok := it.nextStart()
	if !ok {
		return nil, false
	}
	var ve int
	if it.trusted {
		ve = skipTrusted(it.b, vs)
	} else {
		var err error
		if ve, err = skipValue(it.b, vs, it.depth+1); err != nil {
			it.err, it.done = err, true
			return nil, false
		}
	}
	if !it.finish(ve) {
		return nil, false
	}
	return it.b[vs:ve], true
}

// nextStart returns the offset where the next element starts; the caller
// consumes it and calls finish.
func (it *arrIter) nextStart() (int, bool) {
	if it.done {
		return 0, false
	}
	return skipSpace(it.b, it.i), true
}

// finish moves past the element that ended at ve and the following ','
// or ']'.
func (it *arrIter) finish(ve int) bool {
	b := it.b
	i := skipSpace(b, ve)
	if i >= len(b) {
		it.err, it.done = errUnexpectedEnd, true
		return false
	}
	switch b[i] {
	case ',':
		it.i = i + 1
	case ']':
		it.i = i + 1
		it.done = true
	default:
		it.err, it.done = synErr(i, "expected ',' or ']' in array, found %q", b[i]), true
		return false
	}
	return true
}

// stringList reads an array of strings (non-strings are skipped) or a
// single string.
func stringList(v []byte) ([]string, error) {
	if isString(v) {
		return []string{str(v)}, nil
	}
	if !isArray(v) {
		return nil, nil
	}
	var out []string
	it := newArrIter(v, 0)
	for e, ok := it.next(); ok; e, ok = it.next() {
		if isString(e) {
			out = append(out, str(e))
		}
	}
	return out, it.err
}

// dynamic returns the JSON text of a value that may arrive either as JSON
// or as a string holding JSON (Log Analytics dynamic columns, AKS
// properties.log). Strings whose content is not an object or array are
// returned as nil.
func dynamic(v []byte) []byte {
	if isObject(v) || isArray(v) {
		return v
	}
	s, ok := strBytes(v)
	if !ok {
		return nil
	}
	t := skipSpace(s, 0)
	if t < len(s) && (s[t] == '{' || s[t] == '[') {
		return s
	}
	return nil
}

// ValidJSONValue reports whether b holds exactly one JSON value, with
// optional surrounding whitespace. It is the reader's own validation,
// exported so tests can compare it with encoding/json.
func ValidJSONValue(b []byte) bool {
	end, err := skipValue(b, 0, 0)
	return err == nil && skipSpace(b, end) == len(b)
}

// scanUnescape validates the string starting at b[i] == '"' like
// scanString and, in the same pass, appends its decoded content to dst
// exactly as unescape would. It returns the offset past the closing quote.
// The validating record parse uses it for a properties.log the escaped
// reader (auditesc.go) leaves to the general path, so the string is still
// validated and decoded in one pass.
func scanUnescape(dst, b []byte, i int) ([]byte, int, error) {
	start := i
	i++
	for {
		// Copy eight bytes per step: each word is stored whole and the
		// length then cut back to the first special byte, so a short run
		// between two escapes costs one load and one store instead of a
		// memmove call. The escapes of a nested JSON document (\" \\ \/)
		// are decoded here without leaving the loop.
		for i+8 <= len(b) {
			if cap(dst)-len(dst) < 8 {
				dst = slices.Grow(dst, 8)
			}
			n := len(dst)
			w := binary.LittleEndian.Uint64(b[i:])
			binary.LittleEndian.PutUint64(dst[n:n+8], w)
			m := specialMask(w)
			if m == 0 {
				dst = dst[:n+8]
				i += 8
				continue
			}
			k := bits.TrailingZeros64(m) >> 3
			i += k
			if b[i] == '\\' && i+1 < len(b) {
				if e := b[i+1]; e == '"' || e == '\\' || e == '/' {
					// k < 8, so the byte fits in the room grown above.
					dst = dst[:n+k+1]
					dst[n+k] = e
					i += 2
					continue
				}
			}
			dst = dst[:n+k]
			break
		}
		for i < len(b) && b[i] != '"' && b[i] != '\\' && b[i] >= 0x20 {
			dst = append(dst, b[i])
			i++
		}
		if i >= len(b) {
			return dst, len(b), errUnexpectedEnd
		}
		c := b[i]
		switch {
		case c == '"':
			return dst, i + 1, nil
		case c == '\\':
			if i+1 >= len(b) {
				return dst, len(b), errUnexpectedEnd
			}
			switch e := b[i+1]; e {
			case '"', '\\', '/':
				dst = append(dst, e)
				i += 2
			case 'b':
				dst = append(dst, '\b')
				i += 2
			case 'f':
				dst = append(dst, '\f')
				i += 2
			case 'n':
				dst = append(dst, '\n')
				i += 2
			case 'r':
				dst = append(dst, '\r')
				i += 2
			case 't':
				dst = append(dst, '\t')
				i += 2
			case 'u':
				if i+6 > len(b) {
					return dst, len(b), errUnexpectedEnd
				}
				if !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) || !isHex(b[i+5]) {
					return dst, i, synErr(i, "invalid \\u escape")
				}
				r := hexVal(b[i+2 : i+6])
				i += 6
				if utf16.IsSurrogate(r) {
					if i+6 <= len(b) && b[i] == '\\' && b[i+1] == 'u' && isHex(b[i+2]) && isHex(b[i+3]) && isHex(b[i+4]) && isHex(b[i+5]) {
						if r2 := utf16.DecodeRune(r, hexVal(b[i+2:i+6])); r2 != utf8.RuneError {
							dst = utf8.AppendRune(dst, r2)
							i += 6
							continue
						}
					}
					r = utf8.RuneError
				}
				dst = utf8.AppendRune(dst, r)
			default:
				return dst, i, synErr(i, "invalid escape \\%c", b[i+1])
			}
		default: // a control character
			return dst, i, synErr(start, "control character in string")
		}
	}
}

// strCacheSets is the number of two-entry sets of a strCache (a power of
// two, 1<<strCacheBits).
const (
	strCacheBits = 8
	strCacheSets = 1 << strCacheBits
)

// maxCachedLen bounds the strings a strCache keeps, so a cache that outlives
// a message holds no large values.
const maxCachedLen = 256

// strCache shares the Go strings made from JSON strings that repeat across
// records (category, resource id, verb, user name, user agent, pod, the
// RBAC reason): each distinct value is allocated once instead of once per
// record. It is a two-way set-associative cache keyed by the string's raw
// bytes (escapes intact): a value hashes to one set, a miss replaces the
// older entry, so a lookup costs a hash of a few bytes and at most two
// comparisons and no input can grow it. Strings are immutable, so sharing
// is invisible to callers. A nil *strCache does not cache. A strCache is
// used by one goroutine at a time.
type strCache struct {
	sets [strCacheSets][2]cachedStr
	// lists holds string lists (a user's groups) by their escaped JSON
	// text, in two-entry sets: see escList.
	lists [listCacheSets][2]cachedList
}

// listCacheSets is the number of two-entry sets of string lists a
// strCache keeps (a power of two).
const listCacheSets = 32

// cachedList is a string list and the escaped JSON text it was read from.
type cachedList struct {
	raw  string
	list []string
}

// cachedStr is a cache entry: the raw JSON string content and its decoded
// value (the same string when the content holds no escapes).
type cachedStr struct {
	raw, val string
}

// strSlot picks the set of s from its length and its first and last eight
// bytes: cheap, and enough to tell apart the values that repeat in audit
// records (user names and object names often differ only at the end).
func strSlot(s []byte) int {
	n := len(s)
	var h uint64
	if n >= 8 {
		h = binary.LittleEndian.Uint64(s)*0x9E3779B97F4A7C15 ^ binary.LittleEndian.Uint64(s[n-8:])*0xC2B2AE3D27D4EB4F
	} else {
		for _, c := range s {
			h = h<<8 | uint64(c)
		}
		h *= 0x9E3779B97F4A7C15
	}
	h ^= uint64(n) * 0x165667B19E3779F9
	h *= 0xFF51AFD7ED558CCD
	return int(h >> (64 - strCacheBits))
}

// stringSlot is strSlot for a string.
func stringSlot(s string) int {
	n := len(s)
	var h uint64
	if n >= 8 {
		h = le64(s)*0x9E3779B97F4A7C15 ^ le64(s[n-8:])*0xC2B2AE3D27D4EB4F
	} else {
		for i := 0; i < n; i++ {
			h = h<<8 | uint64(s[i])
		}
		h *= 0x9E3779B97F4A7C15
	}
	h ^= uint64(n) * 0x165667B19E3779F9
	h *= 0xFF51AFD7ED558CCD
	return int(h >> (64 - strCacheBits))
}

// le64 reads the first eight bytes of s as a little-endian number.
func le64(s string) uint64 {
	_ = s[7]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// str is str(v), shared when v repeats an earlier value.
func (c *strCache) str(v []byte) string {
	if c == nil || len(v) < 2 || v[0] != '"' {
		return str(v)
	}
	return c.lookup(v[1:len(v)-1], bytes.IndexByte(v[1:len(v)-1], '\\') >= 0)
}

// strEsc is str for a value v whose escape flag scanString has already
// reported, so the content is not searched for a backslash again.
func (c *strCache) strEsc(v []byte, escaped bool) string {
	if !isString(v) {
		return str(v)
	}
	if c == nil {
		return scalar(v, escaped)
	}
	return c.lookup(v[1:len(v)-1], escaped)
}

// intern returns b as a string, shared with an equal earlier value. b is
// a value, not JSON: one holding a backslash is not looked up, since an
// entry with the same raw bytes would have been decoded.
func (c *strCache) intern(b []byte) string {
	if c == nil || bytes.IndexByte(b, '\\') >= 0 {
		return string(b)
	}
	return c.lookup(b, false)
}

// lookup returns the decoded value of the JSON string content raw.
func (c *strCache) lookup(raw []byte, escaped bool) string {
	if len(raw) == 0 {
		return ""
	}
	set := &c.sets[strSlot(raw)]
	if set[0].raw == string(raw) {
		return set[0].val
	}
	if set[1].raw == string(raw) {
		return set[1].val
	}
	var val string
	if escaped {
		val = string(unescape(make([]byte, 0, len(raw)), raw))
	} else {
		val = string(raw)
	}
	if len(raw) <= maxCachedLen {
		e := cachedStr{raw: val, val: val}
		if escaped {
			e.raw = string(raw)
		}
		set[1], set[0] = set[0], e
	}
	return val
}

// get returns the value cached for raw, a key that put stored with its
// value computed by the caller.
func (c *strCache) get(raw []byte) (string, bool) {
	if len(raw) == 0 {
		return "", false
	}
	set := &c.sets[strSlot(raw)]
	if set[0].raw == string(raw) {
		return set[0].val, true
	}
	if set[1].raw == string(raw) {
		return set[1].val, true
	}
	return "", false
}

// put caches val under raw (when short enough to keep).
func (c *strCache) put(raw []byte, val string) {
	if len(raw) > maxCachedLen {
		return
	}
	set := &c.sets[strSlot(raw)]
	set[1], set[0] = set[0], cachedStr{raw: string(raw), val: val}
}

// stringList is stringList(v) with the elements shared through c.
func (c *strCache) stringList(v []byte) ([]string, error) {
	if c == nil || !isArray(v) {
		return stringList(v)
	}
	// Collect into a small buffer first so the result is allocated once,
	// at its final size.
	var buf [8]string
	out := buf[:0]
	it := newArrIter(v, 0)
	for e, ok := it.next(); ok; e, ok = it.next() {
		if isString(e) {
			out = append(out, c.str(e))
		}
	}
	if len(out) == 0 {
		return nil, it.err
	}
	return append([]string(nil), out...), it.err
}
