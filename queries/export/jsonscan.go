package export

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"

	"github.com/custody-audit/custody/storage"
)

// Verifying a jsonl bundle is mostly decoding its lines, and nearly every
// line is exactly what export wrote: the columns in table order, each in
// the one form export-v1 gives it. scanCanonical reads that layout
// directly, several times faster than a general JSON decoder; anything
// else (a key out of order, a space, an extra field, a number written
// differently) makes it give up, and the line goes through the strict
// decoder as before. Whatever it decodes is re-encoded and compared with
// the line by the caller, so a line it accepts is one the strict decoder
// would have read to the same row.

// jsonScanner reads the canonical row layout from b. The row's strings
// are views of arena, one copy of the line's text made per line.
type jsonScanner struct {
	b     []byte
	p     int
	arena []byte
}

// lit consumes s.
func (s *jsonScanner) lit(x string) bool {
	if len(s.b)-s.p < len(x) || string(s.b[s.p:s.p+len(x)]) != x {
		return false
	}
	s.p += len(x)
	return true
}

// str reads a JSON string.
func (s *jsonScanner) str() (string, bool) {
	if s.p >= len(s.b) || s.b[s.p] != '"' {
		return "", false
	}
	s.p++
	start := len(s.arena)
	for {
		i := s.p
		for i < len(s.b) && s.b[i] != '"' && s.b[i] != '\\' && s.b[i] >= 0x20 {
			i++
		}
		s.arena = append(s.arena, s.b[s.p:i]...)
		s.p = i
		if i >= len(s.b) || s.b[i] < 0x20 {
			return "", false
		}
		if s.b[i] == '"' {
			s.p++
			v := s.arena[start:]
			return unsafe.String(unsafe.SliceData(v), len(v)), true
		}
		if !s.escape() {
			return "", false
		}
	}
}

// escape decodes the escape sequence at s.p into the arena.
func (s *jsonScanner) escape() bool {
	if len(s.b)-s.p < 2 {
		return false
	}
	c := s.b[s.p+1]
	s.p += 2
	switch c {
	case '"', '\\', '/':
		s.arena = append(s.arena, c)
	case 'b':
		s.arena = append(s.arena, '\b')
	case 'f':
		s.arena = append(s.arena, '\f')
	case 'n':
		s.arena = append(s.arena, '\n')
	case 'r':
		s.arena = append(s.arena, '\r')
	case 't':
		s.arena = append(s.arena, '\t')
	case 'u':
		r, ok := s.hex4()
		if !ok {
			return false
		}
		if utf16.IsSurrogate(r) {
			// only a valid pair is read here; the strict decoder
			// handles the rest
			if !s.lit(`\u`) {
				return false
			}
			r2, ok := s.hex4()
			if r = utf16.DecodeRune(r, r2); !ok || r == utf8.RuneError {
				return false
			}
		}
		s.arena = utf8.AppendRune(s.arena, r)
	default:
		return false
	}
	return true
}

func (s *jsonScanner) hex4() (rune, bool) {
	if len(s.b)-s.p < 4 {
		return 0, false
	}
	v, err := strconv.ParseUint(string(s.b[s.p:s.p+4]), 16, 16)
	if err != nil {
		return 0, false
	}
	s.p += 4
	return rune(v), true
}

// digits returns the run of digits (with a leading '-' when signed) at
// s.p.
func (s *jsonScanner) digits(signed bool) (string, bool) {
	start := s.p
	if signed && s.p < len(s.b) && s.b[s.p] == '-' {
		s.p++
	}
	for s.p < len(s.b) && s.b[s.p] >= '0' && s.b[s.p] <= '9' {
		s.p++
	}
	d := s.b[start:s.p]
	return unsafe.String(unsafe.SliceData(d), len(d)), s.p > start
}

// strList reads an array of strings; [] is an empty, non-nil list, as the
// strict decoder reads it.
func (s *jsonScanner) strList() ([]string, bool) {
	if !s.lit("[") {
		return nil, false
	}
	l := []string{}
	if s.lit("]") {
		return l, true
	}
	for {
		v, ok := s.str()
		if !ok {
			return nil, false
		}
		l = append(l, v)
		if s.lit("]") {
			return l, true
		}
		if !s.lit(",") {
			return nil, false
		}
	}
}

// strMap reads an object of strings.
func (s *jsonScanner) strMap() (map[string]string, bool) {
	if !s.lit("{") {
		return nil, false
	}
	m := map[string]string{}
	if s.lit("}") {
		return m, true
	}
	for {
		k, ok := s.str()
		if !ok || !s.lit(":") {
			return nil, false
		}
		v, ok := s.str()
		if !ok {
			return nil, false
		}
		m[k] = v
		if s.lit("}") {
			return m, true
		}
		if !s.lit(",") {
			return nil, false
		}
	}
}

// scanCanonical decodes line, laid out as export writes jsonl rows, into
// r. False means the line is laid out otherwise (or is not valid), and
// nothing about the line follows from it.
func scanCanonical(line []byte, r *storage.Row, index map[string]int) bool {
	s := jsonScanner{b: line, arena: make([]byte, 0, len(line))}
	*r = storage.Row{}
	e := &r.Event
	if !s.lit("{") {
		return false
	}
	for i := range columns {
		c := &columns[i]
		if i > 0 && !s.lit(",") {
			return false
		}
		if !s.lit(`"`) || !s.lit(c.name) || !s.lit(`":`) {
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
			v, err := strconv.ParseUint(d, 10, 64)
			if !ok || err != nil {
				return false
			}
			r.Seq = v
		case kInt64, kInt32:
			bits := 64
			if c.kind == kInt32 {
				bits = 32
			}
			d, ok := s.digits(true)
			v, err := strconv.ParseInt(d, 10, bits)
			if !ok || err != nil {
				return false
			}
			if c.kind == kInt32 {
				e.StatusCode = int32(v)
			} else {
				r.Offset = v
			}
		case kTime:
			v, ok := s.str()
			if !ok {
				return false
			}
			t, err := parseTime(v)
			if err != nil {
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
			a, err := parseIP(v)
			if err != nil {
				return false
			}
			e.SourceIP = a
		case kList:
			l, ok := s.strList()
			if !ok {
				return false
			}
			if c.name == "actor_groups" {
				e.Actor.Groups = l
			} else {
				e.Tags = l
			}
		case kMap:
			m, ok := s.strMap()
			if !ok {
				return false
			}
			e.Attributes = m
		case kBytes:
			// base64 needs no escapes: decoded straight from the line
			if !s.lit(`"`) {
				return false
			}
			end := bytes.IndexByte(line[s.p:], '"')
			if end < 0 {
				return false
			}
			b := make([]byte, base64.StdEncoding.DecodedLen(end))
			n, err := base64.StdEncoding.Decode(b, line[s.p:s.p+end])
			if err != nil {
				return false
			}
			e.Raw = b[:n]
			s.p += end + 1
		case kHash:
			v, ok := s.str()
			if !ok || len(v) != 2*len(storage.Hash{}) {
				return false
			}
			h := &r.Hash
			if c.name == "prev_hash" {
				h = &r.PrevHash
			}
			if _, err := hex.Decode(h[:], unsafe.Slice(unsafe.StringData(v), len(v))); err != nil {
				return false
			}
		}
	}
	if s.lit(`,"` + b64Column + `":`) {
		names, ok := s.strList()
		if !ok || applyB64(r, names, index) != nil {
			return false
		}
	}
	return s.lit("}") && s.p == len(line)
}
