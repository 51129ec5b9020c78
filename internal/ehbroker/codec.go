package ehbroker

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
)

// AMQP 1.0 type system (OASIS AMQP 1.0, part 1 "Types"). Decoded values keep
// their AMQP type as a distinct Go type so a value read from a peer can be
// written back unchanged (the broker echoes a link's source and target).

// symbol is an AMQP symbol: an ASCII name, distinct from a string.
type symbol string

// amqpUUID is an AMQP uuid.
type amqpUUID [16]byte

// amqpChar is an AMQP char (a UTF-32 code point).
type amqpChar rune

// pair is one key/value entry of an AMQP map, kept in wire order.
type pair struct {
	k, v any
}

// amqpMap is an AMQP map in wire order (keys may be of any type).
type amqpMap []pair

// get returns the value under a string or symbol key.
func (m amqpMap) get(key string) (any, bool) {
	for _, p := range m {
		switch k := p.k.(type) {
		case string:
			if k == key {
				return p.v, true
			}
		case symbol:
			if string(k) == key {
				return p.v, true
			}
		}
	}
	return nil, false
}

// amqpArray is an AMQP array: every element has the type named by code.
type amqpArray struct {
	code  byte
	elems []any
}

// described is a described type: a descriptor (ulong code or symbol) and
// the value it describes.
type described struct {
	code  uint64
	sym   symbol
	value any
}

// Type constructors (AMQP 1.0 part 1, section 1.6).
const (
	tcDescribed  = 0x00
	tcNull       = 0x40
	tcTrue       = 0x41
	tcFalse      = 0x42
	tcUint0      = 0x43
	tcUlong0     = 0x44
	tcList0      = 0x45
	tcUbyte      = 0x50
	tcByte       = 0x51
	tcSmallUint  = 0x52
	tcSmallUlong = 0x53
	tcSmallInt   = 0x54
	tcSmallLong  = 0x55
	tcBool       = 0x56
	tcUshort     = 0x60
	tcShort      = 0x61
	tcUint       = 0x70
	tcInt        = 0x71
	tcFloat      = 0x72
	tcChar       = 0x73
	tcDecimal32  = 0x74
	tcUlong      = 0x80
	tcLong       = 0x81
	tcDouble     = 0x82
	tcTimestamp  = 0x83
	tcDecimal64  = 0x84
	tcUUID       = 0x98
	tcDecimal128 = 0x94
	tcVbin8      = 0xa0
	tcStr8       = 0xa1
	tcSym8       = 0xa3
	tcVbin32     = 0xb0
	tcStr32      = 0xb1
	tcSym32      = 0xb3
	tcList8      = 0xc0
	tcMap8       = 0xc1
	tcList32     = 0xd0
	tcMap32      = 0xd1
	tcArray8     = 0xe0
	tcArray32    = 0xf0
)

// maxDepth bounds nesting so hostile input cannot exhaust the stack.
const maxDepth = 32

var errShort = errors.New("amqp decode: truncated input")

// decoder reads AMQP-encoded values from a byte slice. Returned []byte
// values alias the input.
type decoder struct {
	b     []byte
	i     int
	depth int
}

func (d *decoder) need(n int) error {
	if n < 0 || len(d.b)-d.i < n {
		return errShort
	}
	return nil
}

func (d *decoder) u8() (byte, error) {
	if err := d.need(1); err != nil {
		return 0, err
	}
	v := d.b[d.i]
	d.i++
	return v, nil
}

func (d *decoder) u16() (uint16, error) {
	if err := d.need(2); err != nil {
		return 0, err
	}
	v := binary.BigEndian.Uint16(d.b[d.i:])
	d.i += 2
	return v, nil
}

func (d *decoder) u32() (uint32, error) {
	if err := d.need(4); err != nil {
		return 0, err
	}
	v := binary.BigEndian.Uint32(d.b[d.i:])
	d.i += 4
	return v, nil
}

func (d *decoder) u64() (uint64, error) {
	if err := d.need(8); err != nil {
		return 0, err
	}
	v := binary.BigEndian.Uint64(d.b[d.i:])
	d.i += 8
	return v, nil
}

func (d *decoder) bytes(n int) ([]byte, error) {
	if err := d.need(n); err != nil {
		return nil, err
	}
	v := d.b[d.i : d.i+n : d.i+n]
	d.i += n
	return v, nil
}

// value decodes one value, constructor included.
func (d *decoder) value() (any, error) {
	code, err := d.u8()
	if err != nil {
		return nil, err
	}
	return d.valueOf(code)
}

// valueOf decodes the body of a value whose constructor is code.
func (d *decoder) valueOf(code byte) (any, error) {
	switch code {
	case tcDescribed:
		d.depth++
		defer func() { d.depth-- }()
		if d.depth > maxDepth {
			return nil, errors.New("amqp decode: nesting too deep")
		}
		desc, err := d.value()
		if err != nil {
			return nil, err
		}
		v, err := d.value()
		if err != nil {
			return nil, err
		}
		out := described{value: v}
		switch x := desc.(type) {
		case uint64:
			out.code = x
		case symbol:
			out.sym = x
		default:
			return nil, fmt.Errorf("amqp decode: descriptor of type %T", desc)
		}
		return out, nil
	case tcNull:
		return nil, nil
	case tcTrue:
		return true, nil
	case tcFalse:
		return false, nil
	case tcBool:
		b, err := d.u8()
		return b != 0, err
	case tcUint0:
		return uint32(0), nil
	case tcUlong0:
		return uint64(0), nil
	case tcUbyte:
		return d.u8()
	case tcByte:
		b, err := d.u8()
		return int8(b), err
	case tcSmallUint:
		b, err := d.u8()
		return uint32(b), err
	case tcSmallUlong:
		b, err := d.u8()
		return uint64(b), err
	case tcSmallInt:
		b, err := d.u8()
		return int32(int8(b)), err
	case tcSmallLong:
		b, err := d.u8()
		return int64(int8(b)), err
	case tcUshort:
		return d.u16()
	case tcShort:
		v, err := d.u16()
		return int16(v), err
	case tcUint:
		return d.u32()
	case tcInt:
		v, err := d.u32()
		return int32(v), err
	case tcFloat:
		v, err := d.u32()
		return math.Float32frombits(v), err
	case tcChar:
		v, err := d.u32()
		return amqpChar(v), err
	case tcDecimal32:
		return d.bytes(4)
	case tcUlong:
		return d.u64()
	case tcLong:
		v, err := d.u64()
		return int64(v), err
	case tcDouble:
		v, err := d.u64()
		return math.Float64frombits(v), err
	case tcTimestamp:
		v, err := d.u64()
		return time.UnixMilli(int64(v)).UTC(), err
	case tcDecimal64:
		return d.bytes(8)
	case tcDecimal128:
		return d.bytes(16)
	case tcUUID:
		b, err := d.bytes(16)
		if err != nil {
			return nil, err
		}
		var u amqpUUID
		copy(u[:], b)
		return u, nil
	case tcVbin8, tcStr8, tcSym8:
		n, err := d.u8()
		if err != nil {
			return nil, err
		}
		return d.variable(code, int(n))
	case tcVbin32, tcStr32, tcSym32:
		n, err := d.u32()
		if err != nil {
			return nil, err
		}
		if uint64(n) > uint64(len(d.b)) {
			return nil, errShort
		}
		return d.variable(code, int(n))
	case tcList0:
		return []any{}, nil
	case tcList8, tcMap8, tcArray8:
		size, err := d.u8()
		if err != nil {
			return nil, err
		}
		if err := d.need(int(size)); err != nil {
			return nil, err
		}
		count, err := d.u8()
		if err != nil {
			return nil, err
		}
		return d.compound(code, int(count), d.i-1+int(size))
	case tcList32, tcMap32, tcArray32:
		size, err := d.u32()
		if err != nil {
			return nil, err
		}
		if uint64(size) > uint64(len(d.b)-d.i) || size < 4 {
			return nil, errShort
		}
		count, err := d.u32()
		if err != nil {
			return nil, err
		}
		if uint64(count) > uint64(size) {
			return nil, errors.New("amqp decode: element count exceeds size")
		}
		return d.compound(code, int(count), d.i-4+int(size))
	default:
		return nil, fmt.Errorf("amqp decode: unknown type code 0x%02x", code)
	}
}

func (d *decoder) variable(code byte, n int) (any, error) {
	b, err := d.bytes(n)
	if err != nil {
		return nil, err
	}
	switch code {
	case tcStr8, tcStr32:
		return string(b), nil
	case tcSym8, tcSym32:
		return symbol(b), nil
	default:
		return b, nil
	}
}

// compound decodes count elements of a list, map or array that must end at
// offset end.
func (d *decoder) compound(code byte, count, end int) (any, error) {
	d.depth++
	defer func() { d.depth-- }()
	if d.depth > maxDepth {
		return nil, errors.New("amqp decode: nesting too deep")
	}
	sub := decoder{b: d.b[:end], i: d.i, depth: d.depth}
	var out any
	switch code {
	case tcList8, tcList32:
		l := make([]any, 0, min(count, 64))
		for range count {
			v, err := sub.value()
			if err != nil {
				return nil, err
			}
			l = append(l, v)
		}
		out = l
	case tcMap8, tcMap32:
		if count%2 != 0 {
			return nil, errors.New("amqp decode: map with odd element count")
		}
		m := make(amqpMap, 0, min(count/2, 64))
		for range count / 2 {
			k, err := sub.value()
			if err != nil {
				return nil, err
			}
			v, err := sub.value()
			if err != nil {
				return nil, err
			}
			m = append(m, pair{k, v})
		}
		out = m
	default:
		elemCode, err := sub.u8()
		if err != nil {
			return nil, err
		}
		if elemCode == tcDescribed {
			return nil, errors.New("amqp decode: arrays of described types are not supported")
		}
		a := amqpArray{code: elemCode, elems: make([]any, 0, min(count, 64))}
		for range count {
			v, err := sub.valueOf(elemCode)
			if err != nil {
				return nil, err
			}
			a.elems = append(a.elems, v)
		}
		out = a
	}
	d.i = end
	return out, nil
}

// encoder appends AMQP-encoded values to buf.
type encoder struct {
	buf []byte
}

func (e *encoder) u8(v byte) { e.buf = append(e.buf, v) }
func (e *encoder) u16(v uint16) {
	e.buf = binary.BigEndian.AppendUint16(e.buf, v)
}
func (e *encoder) u32(v uint32) {
	e.buf = binary.BigEndian.AppendUint32(e.buf, v)
}
func (e *encoder) u64(v uint64) {
	e.buf = binary.BigEndian.AppendUint64(e.buf, v)
}

func (e *encoder) uint(v uint32) {
	switch {
	case v == 0:
		e.u8(tcUint0)
	case v < 256:
		e.buf = append(e.buf, tcSmallUint, byte(v))
	default:
		e.u8(tcUint)
		e.u32(v)
	}
}

func (e *encoder) ulong(v uint64) {
	switch {
	case v == 0:
		e.u8(tcUlong0)
	case v < 256:
		e.buf = append(e.buf, tcSmallUlong, byte(v))
	default:
		e.u8(tcUlong)
		e.u64(v)
	}
}

func (e *encoder) long(v int64) {
	e.u8(tcLong)
	e.u64(uint64(v))
}

func (e *encoder) variable(code8, code32 byte, b string) {
	if len(b) < 256 {
		e.buf = append(e.buf, code8, byte(len(b)))
	} else {
		e.u8(code32)
		e.u32(uint32(len(b)))
	}
	e.buf = append(e.buf, b...)
}

func (e *encoder) str(s string) { e.variable(tcStr8, tcStr32, s) }
func (e *encoder) sym(s symbol) { e.variable(tcSym8, tcSym32, string(s)) }
func (e *encoder) binary(b []byte) {
	if len(b) < 256 {
		e.buf = append(e.buf, tcVbin8, byte(len(b)))
	} else {
		e.u8(tcVbin32)
		e.u32(uint32(len(b)))
	}
	e.buf = append(e.buf, b...)
}

func (e *encoder) timestamp(t time.Time) {
	e.u8(tcTimestamp)
	e.u64(uint64(t.UnixMilli()))
}

// compound writes a list or map header (always the 32-bit form) around the
// elements written by body.
func (e *encoder) compound(code byte, count int, body func() error) error {
	e.u8(code)
	at := len(e.buf)
	e.u32(0)
	e.u32(uint32(count))
	if err := body(); err != nil {
		return err
	}
	binary.BigEndian.PutUint32(e.buf[at:], uint32(len(e.buf)-at-4))
	return nil
}

// list writes fields as an AMQP list, trimming trailing nulls.
func (e *encoder) list(fields []any) error {
	for len(fields) > 0 && fields[len(fields)-1] == nil {
		fields = fields[:len(fields)-1]
	}
	if len(fields) == 0 {
		e.u8(tcList0)
		return nil
	}
	return e.compound(tcList32, len(fields), func() error {
		for _, f := range fields {
			if err := e.value(f); err != nil {
				return err
			}
		}
		return nil
	})
}

// performative writes a described list with a ulong descriptor.
func (e *encoder) performative(code uint64, fields ...any) error {
	e.u8(tcDescribed)
	e.ulong(code)
	return e.list(fields)
}

// value writes any value produced by decoder, plus the Go types the broker
// builds replies from.
func (e *encoder) value(v any) error {
	switch x := v.(type) {
	case nil:
		e.u8(tcNull)
	case bool:
		if x {
			e.u8(tcTrue)
		} else {
			e.u8(tcFalse)
		}
	case uint8:
		e.buf = append(e.buf, tcUbyte, x)
	case int8:
		e.buf = append(e.buf, tcByte, byte(x))
	case uint16:
		e.u8(tcUshort)
		e.u16(x)
	case int16:
		e.u8(tcShort)
		e.u16(uint16(x))
	case uint32:
		e.uint(x)
	case int32:
		e.u8(tcInt)
		e.u32(uint32(x))
	case uint64:
		e.ulong(x)
	case int64:
		e.long(x)
	case float32:
		e.u8(tcFloat)
		e.u32(math.Float32bits(x))
	case float64:
		e.u8(tcDouble)
		e.u64(math.Float64bits(x))
	case amqpChar:
		e.u8(tcChar)
		e.u32(uint32(x))
	case time.Time:
		e.timestamp(x)
	case amqpUUID:
		e.u8(tcUUID)
		e.buf = append(e.buf, x[:]...)
	case []byte:
		e.binary(x)
	case string:
		e.str(x)
	case symbol:
		e.sym(x)
	case []any:
		return e.list(x)
	case amqpMap:
		return e.compound(tcMap32, 2*len(x), func() error {
			for _, p := range x {
				if err := e.value(p.k); err != nil {
					return err
				}
				if err := e.value(p.v); err != nil {
					return err
				}
			}
			return nil
		})
	case amqpArray:
		return e.array(x)
	case []symbol:
		a := amqpArray{code: tcSym32, elems: make([]any, len(x))}
		for i, s := range x {
			a.elems[i] = s
		}
		return e.array(a)
	case described:
		e.u8(tcDescribed)
		if x.sym != "" {
			e.sym(x.sym)
		} else {
			e.ulong(x.code)
		}
		return e.value(x.value)
	default:
		return fmt.Errorf("amqp encode: unsupported type %T", v)
	}
	return nil
}

// array writes an AMQP array using the wide constructor of its element type.
func (e *encoder) array(a amqpArray) error {
	e.u8(tcArray32)
	at := len(e.buf)
	e.u32(0)
	e.u32(uint32(len(a.elems)))
	code := a.code
	switch code {
	case tcSym8:
		code = tcSym32
	case tcStr8:
		code = tcStr32
	case tcVbin8:
		code = tcVbin32
	case tcSmallUint, tcUint0:
		code = tcUint
	case tcSmallUlong, tcUlong0:
		code = tcUlong
	case tcSmallInt:
		code = tcInt
	case tcSmallLong:
		code = tcLong
	case tcTrue, tcFalse:
		code = tcBool
	}
	e.u8(code)
	for _, el := range a.elems {
		switch code {
		case tcSym32, tcStr32, tcVbin32:
			var b []byte
			switch s := el.(type) {
			case symbol:
				b = []byte(s)
			case string:
				b = []byte(s)
			case []byte:
				b = s
			default:
				return fmt.Errorf("amqp encode: array element %T for code 0x%02x", el, code)
			}
			e.u32(uint32(len(b)))
			e.buf = append(e.buf, b...)
		default:
			// Fixed-width element: encode with a constructor, then drop it.
			start := len(e.buf)
			if err := e.fixedElem(code, el); err != nil {
				return err
			}
			e.buf = append(e.buf[:start], e.buf[start+1:]...)
		}
	}
	binary.BigEndian.PutUint32(e.buf[at:], uint32(len(e.buf)-at-4))
	return nil
}

// fixedElem writes a fixed-width element with its full-width constructor.
func (e *encoder) fixedElem(code byte, el any) error {
	switch x := el.(type) {
	case bool:
		b := byte(0)
		if x {
			b = 1
		}
		e.buf = append(e.buf, tcBool, b)
	case uint32:
		e.u8(tcUint)
		e.u32(x)
	case uint64:
		e.u8(tcUlong)
		e.u64(x)
	case int32:
		e.u8(tcInt)
		e.u32(uint32(x))
	case int64:
		e.long(x)
	case uint8, int8, uint16, int16, float32, float64, amqpChar, time.Time, amqpUUID:
		return e.value(x)
	default:
		return fmt.Errorf("amqp encode: array element %T for code 0x%02x", el, code)
	}
	return nil
}
