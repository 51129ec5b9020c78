package bundle

import (
	"encoding/base64"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/custody-audit/custody/storage/trail"
)

// Verifying a jsonl bundle is mostly decoding its lines, and nearly every
// line is exactly what export wrote: the columns in table order, each in
// the one form export-v1 gives it. strictScanner reads that layout
// directly, several times faster than a general JSON decoder, and only
// when the line is byte for byte what the exporter writes for the row it
// decodes, so such a line needs no re-encoding to prove it canonical.
// Anything else (a key out of order, a space, an extra field, a number or
// an escape written differently) makes it give up, and the line goes
// through lineDecoder.decode: the general decoder, then a comparison with
// the row's canonical encoding.

// strictScanner reads a jsonl row only when the line is byte for byte
// what jsonEncoder writes for the row it decodes to: the columns in table
// order with no space, each value in the one form export-v1 gives it
// (numbers without a sign or leading zero that the encoder does not
// write, times in the fixed layout, lower-case hex, padded base64, strings
// with exactly the encoder's escapes, map keys strictly sorted, b64 only
// for text that is not UTF-8). A line it accepts therefore needs no
// re-encoding to prove it canonical (FuzzCanonicalScanner holds it to
// that); anything else is refused and goes through lineDecoder.decode.
//
// The line is read as a string: the row's strings are substrings of it
// (or, for a string with escapes, a string of their own), so they stay
// valid. Its raw bytes and lists reuse the scanner's buffers: the row is
// valid until the next scan, which reuses them.
type strictScanner struct {
	b     string
	bb    []byte // b's bytes when the caller has them (nil otherwise): raw is decoded from them without a copy
	p     int
	arena []byte      // an escaped string's text, b64 text
	raw   []byte      // decoded raw
	lists [3][]string // actor_groups, tags, b64
	attrs map[string]string
	ip    []byte
	index map[string]int
	// html reads a record embedded in an OCSF line, where <, > and & are
	// written \u003c, \u003e and \u0026 (appendHTMLEscaped).
	html bool
}

// strSafe marks the ASCII bytes a canonical string holds unescaped;
// strSafeHTML those of a record in an OCSF line, where <, > and & are
// escaped too.
var strSafe, strSafeHTML = func() (t, h [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
		h[c] = t[c] && c != '<' && c != '>' && c != '&'
	}
	return t, h
}()

// columnKeys are the `"name":` openings of the columns, with the comma
// that precedes every column but the first.
var columnKeys = func() []string {
	k := make([]string, len(columns))
	for i, c := range columns {
		k[i] = `"` + c.name + `":`
		if i > 0 {
			k[i] = "," + k[i]
		}
	}
	return k
}()

func (s *strictScanner) lit(x string) bool {
	if len(s.b)-s.p < len(x) || s.b[s.p:s.p+len(x)] != x {
		return false
	}
	s.p += len(x)
	return true
}

// str reads a string written by appendJSONString (or, in html mode,
// then passed through appendHTMLEscaped). Without escapes the string is
// a substring of the line; with escapes, a string of its own.
func (s *strictScanner) str() (string, bool) {
	b := s.b
	if s.p >= len(b) || b[s.p] != '"' {
		return "", false
	}
	s.p++
	start := s.p
	esc := -1 // arena offset of the unescaped text, once there is an escape
	safe := &strSafe
	if s.html {
		safe = &strSafeHTML
	}
	for s.p < len(b) {
		c := b[s.p]
		if safe[c] {
			s.p++
			continue
		}
		switch {
		case c == '"':
			var v string
			if esc < 0 {
				v = b[start:s.p]
			} else {
				s.arena = append(s.arena, b[start:s.p]...)
				v = string(s.arena[esc:])
				s.arena = s.arena[:esc]
			}
			s.p++
			return v, true
		case c == '\\':
			if esc < 0 {
				esc = len(s.arena)
			}
			s.arena = append(s.arena, b[start:s.p]...)
			if !s.escape() {
				return "", false
			}
			start = s.p
		case c >= utf8.RuneSelf:
			r, size := utf8.DecodeRuneInString(b[s.p:])
			if r == utf8.RuneError && size == 1 || r == '\u2028' || r == '\u2029' {
				return "", false
			}
			s.p += size
		default: // a raw control character
			return "", false
		}
	}
	return "", false
}

// escape reads one escape the encoder writes at s.p into the arena.
func (s *strictScanner) escape() bool {
	b := s.b
	if len(b)-s.p < 2 {
		return false
	}
	c := b[s.p+1]
	s.p += 2
	switch c {
	case '"', '\\':
		s.arena = append(s.arena, c)
		return true
	case 'n':
		s.arena = append(s.arena, '\n')
		return true
	case 'r':
		s.arena = append(s.arena, '\r')
		return true
	case 't':
		s.arena = append(s.arena, '\t')
		return true
	case 'u':
	default:
		return false
	}
	if len(b)-s.p < 4 {
		return false
	}
	u := b[s.p : s.p+4]
	s.p += 4
	switch {
	case u[0] == '2' && u[1] == '0' && u[2] == '2' && (u[3] == '8' || u[3] == '9'):
		s.arena = utf8.AppendRune(s.arena, rune(0x2020+int(u[3]-'0')))
		return true
	case u[0] != '0' || u[1] != '0':
		return false
	}
	hi, lo := hexVal[u[2]], hexVal[u[3]]
	if hi > 0xf || lo > 0xf {
		return false
	}
	v := hi<<4 | lo
	switch {
	case v < 0x20 && v != '\n' && v != '\r' && v != '\t':
	case s.html && (v == '<' || v == '>' || v == '&'):
	default:
		return false
	}
	s.arena = append(s.arena, v)
	return true
}

// hexVal maps a lower-case hex digit to its value; anything else to 0xff.
var hexVal = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for i := 0; i < 16; i++ {
		t[hexDigits[i]] = byte(i)
	}
	return t
}()

// digits returns the decimal digits at s.p as strconv.Append{Int,Uint}
// writes them: no leading zero but for 0 itself, '-' only when signed and
// before a non-zero number.
func (s *strictScanner) digits(signed bool) (string, bool) {
	b := s.b
	start := s.p
	if signed && s.p < len(b) && b[s.p] == '-' {
		s.p++
	}
	first := s.p
	for s.p < len(b) && b[s.p] >= '0' && b[s.p] <= '9' {
		s.p++
	}
	switch {
	case s.p == first:
		return "", false
	case b[first] == '0' && (s.p-first > 1 || first > start):
		return "", false
	}
	return b[start:s.p], true
}

// list reads an array of strings into list slot i.
func (s *strictScanner) list(i int) ([]string, bool) {
	if !s.lit("[") {
		return nil, false
	}
	l := s.lists[i][:0]
	if !s.lit("]") {
		for {
			v, ok := s.str()
			if !ok {
				return nil, false
			}
			l = append(l, v)
			if s.lit("]") {
				break
			}
			if !s.lit(",") {
				return nil, false
			}
		}
	}
	s.lists[i] = l
	return l, true
}

// dict reads an object of strings whose keys are strictly sorted.
func (s *strictScanner) dict() (map[string]string, bool) {
	if !s.lit("{") {
		return nil, false
	}
	if s.attrs == nil {
		s.attrs = map[string]string{}
	}
	m := s.attrs
	clear(m)
	if s.lit("}") {
		return m, true
	}
	var prev string
	for first := true; ; first = false {
		k, ok := s.str()
		if !ok || (!first && k <= prev) || !s.lit(":") {
			return nil, false
		}
		v, ok := s.str()
		if !ok {
			return nil, false
		}
		m[k] = v
		prev = k
		if s.lit("}") {
			return m, true
		}
		if !s.lit(",") {
			return nil, false
		}
	}
}

// time reads a kTime value in timeLayout.
func (s *strictScanner) time() (time.Time, bool) {
	b := s.b
	const n = len(timeLayout) + 2
	if len(b)-s.p < n || b[s.p] != '"' || b[s.p+n-1] != '"' {
		return time.Time{}, false
	}
	v, ok := timeInLayout(b[s.p+1 : s.p+n-1])
	if ok {
		s.p += n
	}
	return v, ok
}

// timeInLayout reads t when it is a valid time written in timeLayout;
// the time is the one parseTime reads from it.
func timeInLayout(t string) (time.Time, bool) {
	if len(t) != len(timeLayout) || t[4] != '-' || t[7] != '-' || t[10] != 'T' || t[13] != ':' || t[16] != ':' || t[19] != '.' || t[26] != 'Z' {
		return time.Time{}, false
	}
	num := func(i, w int) int {
		v := 0
		for j := i; j < i+w; j++ {
			c := t[j]
			if c < '0' || c > '9' {
				return -1
			}
			v = v*10 + int(c-'0')
		}
		return v
	}
	year, month, day := num(0, 4), num(5, 2), num(8, 2)
	hour, minute, sec, micro := num(11, 2), num(14, 2), num(17, 2), num(20, 6)
	if year < 0 || month < 1 || month > 12 || day < 1 || hour < 0 || hour > 23 || minute < 0 || minute > 59 || sec < 0 || sec > 59 || micro < 0 {
		return time.Time{}, false
	}
	v := time.Date(year, time.Month(month), day, hour, minute, sec, micro*1000, time.UTC)
	if v.Day() != day { // past the month's end
		return time.Time{}, false
	}
	return v, true
}

// canonicalIP reads v when it is an address's canonical text ("" for
// none), as parseIP does, without parseIP's allocation; buf is scratch.
func canonicalIP(buf *[]byte, v string) (netip.Addr, bool) {
	if v == "" {
		return netip.Addr{}, true
	}
	a, err := netip.ParseAddr(v)
	if err != nil {
		return netip.Addr{}, false
	}
	*buf = a.AppendTo((*buf)[:0])
	return a, string(*buf) == v
}

// hexHash decodes 64 lower-case hex digits into h.
func hexHash(h *trail.Hash, x string) bool {
	if len(x) != 2*len(h) {
		return false
	}
	for j := range h {
		hi, lo := hexVal[x[2*j]], hexVal[x[2*j+1]]
		if hi > 0xf || lo > 0xf {
			return false
		}
		h[j] = hi<<4 | lo
	}
	return true
}

// reset makes s read b, keeping its buffers: the strings already read
// stay valid.
func (s *strictScanner) reset(b string) {
	s.b, s.p = b, 0
}

// b64 decodes standard padded base64 written by the encoder (no line
// breaks, zero padding bits) into dst. A string source is copied into
// scratch first (the decoder reads bytes).
func b64[S ~string | ~[]byte](dst []byte, scratch *[]byte, src S) ([]byte, bool) {
	in, ok := any(src).([]byte)
	if !ok {
		*scratch = append((*scratch)[:0], src...)
		in = *scratch
	}
	n := base64.StdEncoding.DecodedLen(len(in))
	dst = slices.Grow(dst[:0], n)[:n]
	k, err := base64.StdEncoding.Strict().Decode(dst, in)
	if err != nil || base64.StdEncoding.EncodedLen(k) != len(in) {
		return nil, false
	}
	return dst[:k], true
}

// scan decodes line into r when line is the canonical encoding of r;
// lineBytes, when not nil, holds the same bytes. The row is valid until
// the next scan.
func (s *strictScanner) scan(line string, lineBytes []byte, r *trail.Row) bool {
	n, ok := s.scanObject(line, lineBytes, r)
	return ok && n == len(line)
}

// scanObject is scan for the object at the start of line, which may go
// on after it; it returns the object's length.
func (s *strictScanner) scanObject(line string, lineBytes []byte, r *trail.Row) (int, bool) {
	ok := s.object(line, lineBytes, r)
	return s.p, ok
}

func (s *strictScanner) object(line string, lineBytes []byte, r *trail.Row) bool {
	*s = strictScanner{b: line, bb: lineBytes, arena: s.arena[:0], raw: s.raw, lists: s.lists, attrs: s.attrs, ip: s.ip, index: s.index, html: s.html}
	*r = trail.Row{}
	e := &r.Event
	if !s.lit("{") {
		return false
	}
	for i := range columns {
		c := &columns[i]
		if !s.lit(columnKeys[i]) {
			return false
		}
		switch c.kind {
		case kString:
			v, ok := s.str()
			if !ok {
				return false
			}
			*c.str(r) = v
		case kSeq:
			d, ok := s.digits(false)
			if !ok {
				return false
			}
			v, err := strconv.ParseUint(d, 10, 64)
			if err != nil {
				return false
			}
			r.Seq = v
		case kInt64, kInt32:
			bits := 64
			if c.kind == kInt32 {
				bits = 32
			}
			d, ok := s.digits(true)
			if !ok {
				return false
			}
			v, err := strconv.ParseInt(d, 10, bits)
			if err != nil {
				return false
			}
			if c.kind == kInt32 {
				e.StatusCode = int32(v)
			} else {
				r.Offset = v
			}
		case kTime:
			t, ok := s.time()
			if !ok {
				return false
			}
			if c.name == "received_time" {
				e.ReceivedTime = t
			} else {
				e.Time = t
			}
		case kIP:
			v, ok := s.str()
			if !ok {
				return false
			}
			a, ok := canonicalIP(&s.ip, v)
			if !ok {
				return false
			}
			e.SourceIP = a
		case kList:
			slot := 0
			if c.name == "tags" {
				slot = 1
			}
			l, ok := s.list(slot)
			if !ok {
				return false
			}
			if slot == 0 {
				e.Actor.Groups = l
			} else {
				e.Tags = l
			}
		case kMap:
			m, ok := s.dict()
			if !ok {
				return false
			}
			e.Attributes = m
		case kBytes:
			if !s.lit(`"`) {
				return false
			}
			end := strings.IndexByte(line[s.p:], '"')
			if end < 0 {
				return false
			}
			var raw []byte
			var ok bool
			if s.bb != nil {
				raw, ok = b64(s.raw, nil, s.bb[s.p:s.p+end])
			} else {
				raw, ok = b64(s.raw, &s.arena, line[s.p:s.p+end])
			}
			if !ok {
				return false
			}
			s.raw = raw
			e.Raw = raw
			s.p += end + 1
		case kHash:
			h := &r.Hash
			if c.name == "prev_hash" {
				h = &r.PrevHash
			}
			if len(line)-s.p < 2+2*len(h) || line[s.p] != '"' || line[s.p+1+2*len(h)] != '"' || !hexHash(h, line[s.p+1:s.p+1+2*len(h)]) {
				return false
			}
			s.p += 2 + 2*len(h)
		}
	}
	if s.lit(`,"` + b64Column + `":`) {
		names, ok := s.list(2)
		if !ok || len(names) == 0 {
			return false
		}
		prev := -1
		for _, n := range names {
			i, ok := s.index[n]
			if !ok || i <= prev || columns[i].kind != kString {
				return false
			}
			prev = i
			p := columns[i].str(r)
			var dec []byte
			dec, ok = b64(nil, &s.arena, *p)
			if !ok || utf8.Valid(dec) {
				return false
			}
			*p = string(dec)
		}
	}
	return s.lit("}")
}
