package chdb

import (
	"encoding/binary"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Values of a query result are read (see native_read.go) in RowBinary's
// encoding of one value:
//
//	String, LowCardinality(String)   uvarint length, bytes
//	FixedString(N)                   N bytes
//	(U)Int8/16/32/64, Bool, Date,    fixed width, little-endian
//	Date32, DateTime, DateTime64(P)
//	Array(T)                         uvarint count, then the elements
//	Map(K, V)                        uvarint count, then key, value pairs
//
// Binary results cost the engine no escaping and Go no unescaping or text
// parsing. Scanning a binary column gives exactly what scanning its
// TabSeparated text gave, including into *string (the text form), so
// callers see no difference; types whose text form is not reproduced
// byte for byte here (floats, decimals, Nullable, times in a zone other
// than UTC, ...) make the host answer in text instead.

// binKind is how one RowBinary value is laid out and rendered.
type binKind uint8

const (
	bString binKind = iota // String, LowCardinality(String)
	bFixed                 // FixedString(N)
	bUInt8
	bUInt16
	bUInt32
	bUInt64
	bInt8
	bInt16
	bInt32
	bInt64
	bBool
	bDate       // UInt16 days since 1970-01-01
	bDate32     // Int32 days since 1970-01-01
	bDateTime   // UInt32 seconds, UTC
	bDateTime64 // Int64 ticks of 10^-P seconds, UTC
	bArray      // of a string kind
	bMap        // of string kinds
)

// binType is one column's decoded type.
type binType struct {
	kind binKind
	// n is FixedString's size or DateTime64's precision.
	n int
	// elem is the element (Array) or key (Map) type, val the Map's value
	// type.
	elem, val *binType
	// lowCard marks LowCardinality(String), stored as a dictionary in
	// Native blocks.
	lowCard bool
}

// fixedWidth is the encoded size of the fixed-width kinds, 0 otherwise.
func (t *binType) fixedWidth() int {
	switch t.kind {
	case bFixed:
		return t.n
	case bUInt8, bInt8, bBool:
		return 1
	case bUInt16, bInt16, bDate:
		return 2
	case bUInt32, bInt32, bDate32, bDateTime:
		return 4
	case bUInt64, bInt64, bDateTime64:
		return 8
	}
	return 0
}

// isText reports whether values of t are byte strings.
func (t *binType) isText() bool { return t.kind == bString || t.kind == bFixed }

// parseBinType parses a ClickHouse type name; ok is false for a type
// without a binary decoding here.
func parseBinType(s string) (*binType, bool) {
	s = strings.TrimSpace(s)
	if in, ok := cutWrapped(s, "LowCardinality"); ok {
		t, ok := parseBinType(in)
		if !ok || t.kind != bString || t.lowCard {
			return nil, false
		}
		t.lowCard = true
		return t, true
	}
	switch s {
	case "String":
		return &binType{kind: bString}, true
	case "UInt8":
		return &binType{kind: bUInt8}, true
	case "UInt16":
		return &binType{kind: bUInt16}, true
	case "UInt32":
		return &binType{kind: bUInt32}, true
	case "UInt64":
		return &binType{kind: bUInt64}, true
	case "Int8":
		return &binType{kind: bInt8}, true
	case "Int16":
		return &binType{kind: bInt16}, true
	case "Int32":
		return &binType{kind: bInt32}, true
	case "Int64":
		return &binType{kind: bInt64}, true
	case "Bool":
		return &binType{kind: bBool}, true
	case "Date":
		return &binType{kind: bDate}, true
	case "Date32":
		return &binType{kind: bDate32}, true
	case "DateTime('UTC')", "DateTime('Etc/UTC')":
		return &binType{kind: bDateTime}, true
	}
	if in, ok := cutWrapped(s, "FixedString"); ok {
		n, err := strconv.Atoi(in)
		if err != nil || n <= 0 || n > maxFrame {
			return nil, false
		}
		return &binType{kind: bFixed, n: n}, true
	}
	if in, ok := cutWrapped(s, "DateTime64"); ok {
		p, tz, ok := strings.Cut(in, ",")
		if !ok {
			return nil, false // the session's zone: rendered in text
		}
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if tz = strings.TrimSpace(tz); err != nil || n < 0 || n > 9 || (tz != "'UTC'" && tz != "'Etc/UTC'") {
			return nil, false
		}
		return &binType{kind: bDateTime64, n: n}, true
	}
	if in, ok := cutWrapped(s, "Array"); ok {
		e, ok := parseBinType(in)
		if !ok || !e.isText() {
			return nil, false
		}
		return &binType{kind: bArray, elem: e}, true
	}
	if in, ok := cutWrapped(s, "Map"); ok {
		k, v, ok := strings.Cut(in, ",")
		if !ok {
			return nil, false
		}
		kt, kok := parseBinType(k)
		vt, vok := parseBinType(v)
		if !kok || !vok || !kt.isText() || !vt.isText() {
			return nil, false
		}
		return &binType{kind: bMap, elem: kt, val: vt}, true
	}
	return nil, false
}

// cutWrapped returns the x of "name(x)".
func cutWrapped(s, name string) (string, bool) {
	in, ok := strings.CutPrefix(s, name+"(")
	if !ok || !strings.HasSuffix(in, ")") {
		return "", false
	}
	return in[:len(in)-1], true
}

// errTruncated means a row ends before its last value does.
var errTruncated = errors.New("truncated RowBinary row")

// uvarint decodes the uvarint at b[p:]; n is 0 when it is cut short or
// overflows.
func uvarint(b []byte, p int) (v uint64, n int) {
	if p < len(b) && b[p] < 0x80 {
		return uint64(b[p]), 1
	}
	if p > len(b) {
		return 0, 0
	}
	v, n = binary.Uvarint(b[p:])
	if n <= 0 {
		return 0, 0
	}
	return v, n
}

// skipString returns the end of the string at b[p:].
func skipString(b []byte, p int) (int, error) {
	l, n := uvarint(b, p)
	if n == 0 || l > uint64(len(b)-p-n) {
		return 0, errTruncated
	}
	return p + n + int(l), nil
}

// text returns the bytes of the string value v of a text kind (String
// without its length, FixedString as is) and the rest of v.
func (t *binType) text(v []byte) (s, rest []byte) {
	if t.kind == bFixed {
		return v[:t.n], v[t.n:]
	}
	l, n := uvarint(v, 0)
	return v[n : n+int(l)], v[n+int(l):]
}

// readHeader parses a RowBinaryWithNamesAndTypes header at the start of
// b; n is its length.
func readHeader(b []byte) (names, types []string, n int, err error) {
	cnt, k := uvarint(b, 0)
	if k == 0 || cnt > uint64(len(b)) {
		return nil, nil, 0, errors.New("malformed RowBinary header")
	}
	p := k
	fields := make([]string, 0, 2*cnt)
	for i := uint64(0); i < 2*cnt; i++ {
		end, err := skipString(b, p)
		if err != nil {
			return nil, nil, 0, errors.New("malformed RowBinary header")
		}
		l, k := uvarint(b, p)
		fields = append(fields, string(b[p+k:p+k+int(l)]))
		p = end
	}
	return fields[:cnt], fields[cnt:], p, nil
}

// le reads the little-endian unsigned integer of width len(v).
func le(v []byte) uint64 {
	switch len(v) {
	case 1:
		return uint64(v[0])
	case 2:
		return uint64(binary.LittleEndian.Uint16(v))
	case 4:
		return uint64(binary.LittleEndian.Uint32(v))
	}
	return binary.LittleEndian.Uint64(v)
}

// signed reports whether t is a signed integer kind, and its value.
func (t *binType) integer(v []byte) (u uint64, i int64, signed bool) {
	switch t.kind {
	case bInt8:
		return 0, int64(int8(v[0])), true
	case bInt16:
		return 0, int64(int16(binary.LittleEndian.Uint16(v))), true
	case bInt32:
		return 0, int64(int32(binary.LittleEndian.Uint32(v))), true
	case bInt64:
		return 0, int64(binary.LittleEndian.Uint64(v)), true
	}
	return le(v), 0, false
}

// pow10 are the tick sizes of DateTime64 precisions.
var pow10 = [...]int64{1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000, 1000000000}

// dateTime64 splits DateTime64 ticks into seconds and nanoseconds.
func dateTime64(ticks int64, prec int) (sec, nsec int64) {
	p := pow10[prec]
	sec, frac := ticks/p, ticks%p
	if frac < 0 {
		sec--
		frac += p
	}
	return sec, frac * pow10[9-prec]
}

// appendText appends the text form of value v of type t: what scanning
// the column's TabSeparated field gave (the field unescaped).
func (t *binType) appendText(dst, v []byte) []byte {
	switch t.kind {
	case bString, bFixed:
		s, _ := t.text(v)
		return append(dst, s...)
	case bBool:
		if v[0] != 0 {
			return append(dst, "true"...)
		}
		return append(dst, "false"...)
	case bUInt8, bUInt16, bUInt32, bUInt64, bInt8, bInt16, bInt32, bInt64:
		u, i, signed := t.integer(v)
		if signed {
			return strconv.AppendInt(dst, i, 10)
		}
		return strconv.AppendUint(dst, u, 10)
	case bDate:
		return time.Unix(int64(le(v))*86400, 0).UTC().AppendFormat(dst, "2006-01-02")
	case bDate32:
		return time.Unix(int64(int32(le(v)))*86400, 0).UTC().AppendFormat(dst, "2006-01-02")
	case bDateTime:
		return time.Unix(int64(le(v)), 0).UTC().AppendFormat(dst, "2006-01-02 15:04:05")
	case bDateTime64:
		sec, nsec := dateTime64(int64(le(v)), t.n)
		dst = time.Unix(sec, 0).UTC().AppendFormat(dst, "2006-01-02 15:04:05")
		if t.n > 0 {
			dst = append(dst, '.')
			frac := strconv.AppendInt(nil, nsec/pow10[9-t.n]+pow10[t.n], 10)
			dst = append(dst, frac[1:]...)
		}
		return dst
	case bArray, bMap:
		// ClickHouse writes the elements quoted with backslash escapes
		// inside the field, and unescaping the field undoes exactly
		// those escapes: what remains is the elements' bytes, quoted.
		open, close := byte('['), byte(']')
		if t.kind == bMap {
			open, close = '{', '}'
		}
		dst = append(dst, open)
		cnt, n := uvarint(v, 0)
		rest := v[n:]
		for i := uint64(0); i < cnt; i++ {
			if i > 0 {
				dst = append(dst, ',')
			}
			var s []byte
			s, rest = t.elem.text(rest)
			dst = append(append(append(dst, '\''), s...), '\'')
			if t.val != nil {
				s, rest = t.val.text(rest)
				dst = append(append(append(dst, ':', '\''), s...), '\'')
			}
		}
		return append(dst, close)
	}
	return dst
}
