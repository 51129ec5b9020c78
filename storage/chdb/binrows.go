package chdb

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
	"unsafe"

	"github.com/custody-audit/custody/storage/engine"
)

// binRows streams a binary result (Native blocks, see native_read.go)
// from the engine host. While it is open it holds the engine; Close (or
// reading to the end) releases it.
type binRows struct {
	e     *Engine
	ctx   context.Context
	cols  []string
	types []*binType
	// buf holds the current data frame, rd reads its blocks, blk is the
	// block being read and row the current row in it; buf is reused by
	// the next frame, so nothing handed to a caller points into it.
	buf []byte
	rd  nativeReader
	blk *resultBlock
	row int
	// vals are the current row's values, RowBinary-encoded (see
	// rowbinary.go): views of buf, or of assembled for arrays and maps.
	vals      [][]byte
	assembled []byte
	spans     [][2]int
	text      []byte // scratch for text forms
	done      bool
	err       error
	freed     bool
}

// query sends a query request (opQuery for a text result, opQueryBinary
// for a binary one where the types allow) and returns the result stream,
// which holds the engine until it is closed.
func (e *Engine) query(ctx context.Context, op byte, query string, params engine.Params) (engine.Rows, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	e.mu.Lock()
	if err := e.send(op, query, params); err != nil {
		e.mu.Unlock()
		return nil, err
	}
	if b, err := e.r.Peek(1); err == nil && b[0] == opHeader {
		rows, err := newBinRows(ctx, e)
		if err != nil {
			// skip the rest of the reply, keeping the pipe in step
			(&binRows{e: e, ctx: ctx}).finish()
			return nil, e.gone(err)
		}
		return rows, nil
	}
	rows := &Rows{e: e, ctx: ctx}
	if err := rows.fill(); err != nil {
		rows.finish()
		return nil, e.gone(err)
	}
	return rows, nil
}

// newBinRows reads the header frame that starts a binary reply.
func newBinRows(ctx context.Context, e *Engine) (*binRows, error) {
	if op, err := e.r.ReadByte(); err != nil || op != opHeader {
		return nil, fmt.Errorf("engine host sent no result header (%q): %w", op, err)
	}
	h, err := ReadField(e.r, nil)
	if err != nil {
		return nil, fmt.Errorf("read result header: %w", err)
	}
	names, types, _, err := readHeader(h)
	if err != nil {
		return nil, err
	}
	r := &binRows{e: e, ctx: ctx, cols: names, types: make([]*binType, len(types)), vals: make([][]byte, len(types)), spans: make([][2]int, len(types))}
	for i, s := range types {
		t, ok := parseBinType(s)
		if !ok {
			return nil, fmt.Errorf("result column %s: type %s has no binary decoding", names[i], s)
		}
		r.types[i] = t
	}
	return r, nil
}

// nextFrame reads frames until one with rows arrives or the reply ends.
func (r *binRows) nextFrame() error {
	for !r.done {
		var err error
		r.buf, r.done, err = readFrame(r.e.r, r.buf[:0])
		r.rd, r.blk = nativeReader{b: r.buf}, nil
		if r.done {
			r.rd = nativeReader{}
			return err
		}
		if len(r.buf) > 0 {
			return nil
		}
	}
	return nil
}

// nextBlock makes blk a block with rows left, reading blocks and frames
// as needed; false at the end of the result or on an error.
func (r *binRows) nextBlock() bool {
	for r.blk == nil || r.row >= r.blk.rows {
		if r.rd.p >= len(r.rd.b) {
			if err := r.ctx.Err(); err != nil {
				r.err = err
				return false
			}
			if err := r.nextFrame(); err != nil {
				r.err = err
				return false
			}
			if r.rd.p >= len(r.rd.b) {
				return false
			}
		}
		blk, _, err := r.rd.readBlock(r.types)
		if err != nil {
			r.err = fmt.Errorf("read engine result: %w", err)
			return false
		}
		r.blk, r.row = blk, 0
	}
	return true
}

// Next implements engine.Rows.
func (r *binRows) Next() bool {
	if r.err != nil || r.freed {
		return false
	}
	if r.blk != nil {
		r.row++
	}
	if !r.nextBlock() {
		r.finish()
		return false
	}
	r.assembled = r.assembled[:0]
	for i, c := range r.blk.cols {
		if k := c.t.kind; k == bArray || k == bMap {
			start := len(r.assembled)
			r.assembled = c.value(r.assembled, r.row)
			r.spans[i] = [2]int{start, len(r.assembled)}
			continue
		}
		r.vals[i] = c.value(nil, r.row)
	}
	for i, c := range r.blk.cols {
		if k := c.t.kind; k == bArray || k == bMap {
			r.vals[i] = r.assembled[r.spans[i][0]:r.spans[i][1]]
		}
	}
	return true
}

// needsText reports whether scanning column type t into d makes strings
// out of the value's bytes (which then come from one allocation per row).
func needsText(t *binType, d any) bool {
	switch d.(type) {
	case *string, *any:
		return t.isText()
	case *[]string, *map[string]string:
		return t.kind == bArray || t.kind == bMap
	}
	return false
}

// Scan implements engine.Rows. Every string scanned from one row shares
// one allocation holding the row's text values.
func (r *binRows) Scan(dest ...any) error {
	if len(dest) != len(r.types) {
		return fmt.Errorf("scan %d destinations from %d columns", len(dest), len(r.types))
	}
	// Copy the text values the destinations keep into one block, once
	// per row; strings are then views of it.
	total := 0
	for i, d := range dest {
		if needsText(r.types[i], d) {
			total += len(r.vals[i])
		}
	}
	var arena []byte
	var base string
	if total > 0 {
		arena = make([]byte, 0, total)
		for i, d := range dest {
			if needsText(r.types[i], d) {
				arena = append(arena, r.vals[i]...)
			}
		}
		base = unsafe.String(unsafe.SliceData(arena), len(arena))
	}
	at := 0 // start of the next text value in base
	for i, d := range dest {
		t := r.types[i]
		v := r.vals[i]
		if needsText(t, d) {
			s := base[at : at+len(v)]
			at += len(v)
			if err := scanText(t, s, d); err != nil {
				return fmt.Errorf("scan column %s: %w", r.cols[i], err)
			}
			continue
		}
		if err := r.scanValue(t, v, d); err != nil {
			return fmt.Errorf("scan column %s: %w", r.cols[i], err)
		}
	}
	return nil
}

// strAt returns the string of a text kind at s[p:] and the position
// after it.
func strAt(t *binType, s string, p int) (string, int) {
	if t.kind == bFixed {
		return s[p : p+t.n], p + t.n
	}
	l, n := uvarintString(s, p)
	return s[p+n : p+n+int(l)], p + n + int(l)
}

func uvarintString(s string, p int) (uint64, int) {
	var v uint64
	for i, shift := 0, uint(0); p+i < len(s) && i < binary.MaxVarintLen64; i, shift = i+1, shift+7 {
		c := s[p+i]
		v |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return v, i + 1
		}
	}
	return 0, 0 // unreachable: skip validated the value
}

// scanText scans the encoded value s (a view of the row's text block) of
// a text, Array or Map column into d, one of the destinations needsText
// accepts.
func scanText(t *binType, s string, d any) error {
	switch d := d.(type) {
	case *string:
		*d, _ = strAt(t, s, 0)
	case *any:
		*d, _ = strAt(t, s, 0)
	case *[]string:
		if t.kind != bArray {
			return fmt.Errorf("a %s value is not an array", kindName(t))
		}
		cnt, p := uvarintString(s, 0)
		var out []string
		if cnt > 0 {
			out = make([]string, cnt)
		}
		for i := range out {
			out[i], p = strAt(t.elem, s, p)
		}
		*d = out
	case *map[string]string:
		if t.kind != bMap {
			return fmt.Errorf("a %s value is not a map", kindName(t))
		}
		cnt, p := uvarintString(s, 0)
		out := make(map[string]string, cnt)
		for i := uint64(0); i < cnt; i++ {
			var k, v string
			k, p = strAt(t.elem, s, p)
			v, p = strAt(t.val, s, p)
			out[k] = v
		}
		*d = out
	}
	return nil
}

func kindName(t *binType) string {
	switch t.kind {
	case bArray:
		return "Array"
	case bMap:
		return "Map"
	case bString, bFixed:
		return "String"
	}
	return "scalar"
}

// scanValue scans value v of type t into d. The common pairs are decoded
// directly; every other pair goes through the value's text form and the
// text scanner, so that it behaves exactly as it does for a text result.
func (r *binRows) scanValue(t *binType, v []byte, d any) error {
	switch t.kind {
	case bString, bFixed:
		s, _ := t.text(v)
		switch d := d.(type) {
		case *[]byte:
			*d = append((*d)[:0], s...)
			return nil
		case *[32]byte:
			if len(s) != 32 {
				return fmt.Errorf("fixed string of %d bytes, want 32", len(s))
			}
			copy(d[:], s)
			return nil
		case *[]string:
			// as text results did: the field's text as an array
			a, err := parseArray([]byte(EscapeTSV(string(s))))
			if err == nil {
				*d = a
			}
			return err
		case *map[string]string:
			m, err := parseMap([]byte(EscapeTSV(string(s))))
			if err == nil {
				*d = m
			}
			return err
		}
		return scanField(s, d)
	case bUInt8, bUInt16, bUInt32, bUInt64, bInt8, bInt16, bInt32, bInt64:
		if ok, err := scanInteger(t, v, d); ok {
			return err
		}
	case bDateTime64:
		if d, ok := d.(*time.Time); ok {
			sec, nsec := dateTime64(int64(le(v)), t.n)
			*d = time.Unix(sec, nsec).UTC()
			return nil
		}
	case bDateTime:
		if d, ok := d.(*time.Time); ok {
			*d = time.Unix(int64(le(v)), 0).UTC()
			return nil
		}
	case bBool:
		if d, ok := d.(*bool); ok {
			*d = v[0] != 0
			return nil
		}
	}
	r.text = t.appendText(r.text[:0], v)
	return scanField(r.text, d)
}

// scanInteger scans an integer value into the integer destinations, with
// the range checks parsing its text had; ok is false for other
// destinations.
func scanInteger(t *binType, v []byte, d any) (ok bool, err error) {
	u, i, signed := t.integer(v)
	neg := signed && i < 0
	if signed && !neg {
		u = uint64(i)
	}
	rangeErr := func() error {
		return fmt.Errorf("value %s out of range for %T", t.appendText(nil, v), d)
	}
	switch d := d.(type) {
	case *int64:
		if neg {
			*d = i
		} else if u > math.MaxInt64 {
			return true, rangeErr()
		} else {
			*d = int64(u)
		}
	case *int32:
		if neg && i >= math.MinInt32 {
			*d = int32(i)
		} else if !neg && u <= math.MaxInt32 {
			*d = int32(u)
		} else {
			return true, rangeErr()
		}
	case *uint64:
		if neg {
			return true, rangeErr()
		}
		*d = u
	case *uint32:
		if neg || u > math.MaxUint32 {
			return true, rangeErr()
		}
		*d = uint32(u)
	case *uint8:
		if neg || u > math.MaxUint8 {
			return true, rangeErr()
		}
		*d = uint8(u)
	default:
		return false, nil
	}
	return true, nil
}

// Columns implements engine.Rows.
func (r *binRows) Columns() []string { return r.cols }

// Err implements engine.Rows.
func (r *binRows) Err() error { return r.err }

// Close implements engine.Rows: the rest of the reply is drained so the
// pipe is ready for the next request.
func (r *binRows) Close() error {
	r.finish()
	var qe *QueryError
	if errors.As(r.err, &qe) {
		return r.err
	}
	return nil
}

func (r *binRows) finish() {
	if r.freed {
		return
	}
	for !r.done {
		if err := r.nextFrame(); err != nil && r.err == nil {
			r.err = err
		}
	}
	r.freed = true
	r.buf, r.rd, r.blk = nil, nativeReader{}, nil
	r.e.mu.Unlock()
}
