package chdb

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Query results travel from the host in ClickHouse's Native format
// whenever every result column has a type decoded here (see
// parseBinType), and as TSVWithNames otherwise:
//
//	request 'B' query params -> 'H' header, 'D' blocks ... then 'Z' (or 'E' message)
//	                         or 'D' chunk ... then 'Z' (TSVWithNames, as for 'Q')
//
// The header is RowBinaryWithNamesAndTypes' (see readHeader): uvarint
// column count, the column names, then the type names. Each 'D' frame
// after it holds whole Native blocks as ClickHouse writes them for FORMAT
// Native (no block info):
//
//	block   uvarint columns, uvarint rows, then per column:
//	        name, type (uvarint length, bytes), then its data (none when rows is 0)
//	data    String, FixedString, (U)Int*, Bool, Date*, DateTime*: as RowBinary, value after value
//	        LowCardinality(String): UInt64 version (1), then UInt64 flags|key width,
//	                        UInt64 key count, the keys (Strings), UInt64 rows, one key index per row
//	        Array(T):       (T's prefix, for LowCardinality) UInt64 end offset per row, then T's data
//	        Map(K, V):      (prefixes) UInt64 end offset per row, then all keys, then all values
//
// Producing Native costs the engine a fraction of what a row format does
// (it writes columns as they are), and the values of each row are read
// here in place, in RowBinary's encoding of one value (arrays and maps are
// assembled per row), so that scanning them is the same code.

// The request and reply frames of binary results.
const (
	opQueryBinary = 'B'
	opHeader      = 'H'
)

// lcVersion is the only LowCardinality key serialization version
// (SharedDictionariesWithAdditionalKeys).
const lcVersion = 1

// LowCardinality index flags.
const (
	lcNeedGlobalDictionary = 1 << 8
	lcHasAdditionalKeys    = 1 << 9
	lcKeyWidthMask         = 0xff
)

var errNative = errors.New("malformed Native block")

// nativeReader reads Native data at b[p:].
type nativeReader struct {
	b []byte
	p int
}

func (r *nativeReader) uvarint() (uint64, error) {
	v, n := uvarint(r.b, r.p)
	if n == 0 {
		return 0, errNative
	}
	r.p += n
	return v, nil
}

func (r *nativeReader) uint64() (uint64, error) {
	if len(r.b)-r.p < 8 {
		return 0, errNative
	}
	v := binary.LittleEndian.Uint64(r.b[r.p:])
	r.p += 8
	return v, nil
}

func (r *nativeReader) str() (string, error) {
	end, err := skipString(r.b, r.p)
	if err != nil {
		return "", errNative
	}
	l, n := uvarint(r.b, r.p)
	s := string(r.b[r.p+n : r.p+n+int(l)])
	r.p = end
	return s, nil
}

// nativeCol is one column of a decoded block: where each row's value is.
type nativeCol struct {
	t *binType
	// data is the column's values (fixed width, String) or the
	// LowCardinality keys; bounds[i] is where value (or key) i starts in
	// it, bounds[n] where the last ends (String kinds only).
	data   []byte
	bounds []int32
	// index maps rows to keys (LowCardinality).
	index []uint32
	// ends are the Array or Map rows' end offsets into elem (and val).
	ends      []uint64
	elem, val *nativeCol
}

// readPrefix reads the state prefixes of t's LowCardinality parts, which
// come before any data.
func (r *nativeReader) readPrefix(t *binType) error {
	switch t.kind {
	case bString:
		if t.lowCard {
			v, err := r.uint64()
			if err != nil {
				return err
			}
			if v != lcVersion {
				return fmt.Errorf("LowCardinality serialization version %d", v)
			}
		}
	case bArray:
		return r.readPrefix(t.elem)
	case bMap:
		if err := r.readPrefix(t.elem); err != nil {
			return err
		}
		return r.readPrefix(t.val)
	}
	return nil
}

// readColumn reads n values of type t (its prefix already read).
func (r *nativeReader) readColumn(t *binType, n int) (*nativeCol, error) {
	c := &nativeCol{t: t}
	if n == 0 {
		// nothing is written for no values, not even a LowCardinality
		// index header
		return c, nil
	}
	if w := t.fixedWidth(); w > 0 {
		if n > (len(r.b)-r.p)/w {
			return nil, errNative
		}
		c.data = r.b[r.p : r.p+n*w]
		r.p += n * w
		return c, nil
	}
	switch t.kind {
	case bString:
		if t.lowCard {
			return r.readLowCardinality(c, n)
		}
		start := r.p
		bounds, err := r.stringBounds(n)
		if err != nil {
			return nil, err
		}
		c.data, c.bounds = r.b[start:r.p], bounds
		return c, nil
	case bArray, bMap:
		if n > (len(r.b)-r.p)/8 {
			return nil, errNative
		}
		c.ends = make([]uint64, n)
		var prev uint64
		for i := range c.ends {
			e := binary.LittleEndian.Uint64(r.b[r.p:])
			r.p += 8
			if e < prev || e > uint64(len(r.b)) {
				return nil, errNative
			}
			c.ends[i], prev = e, e
		}
		var err error
		if c.elem, err = r.readColumn(t.elem, int(prev)); err != nil {
			return nil, err
		}
		if t.kind == bMap {
			if c.val, err = r.readColumn(t.val, int(prev)); err != nil {
				return nil, err
			}
		}
		return c, nil
	}
	return nil, fmt.Errorf("no Native decoding for kind %d", t.kind)
}

// stringBounds reads n Strings, returning where each starts relative to
// the first.
func (r *nativeReader) stringBounds(n int) ([]int32, error) {
	if n > len(r.b)-r.p || len(r.b)-r.p > 1<<31-1 {
		return nil, errNative
	}
	start := r.p
	bounds := make([]int32, n+1)
	for i := 0; i < n; i++ {
		bounds[i] = int32(r.p - start)
		end, err := skipString(r.b, r.p)
		if err != nil {
			return nil, errNative
		}
		r.p = end
	}
	bounds[n] = int32(r.p - start)
	return bounds, nil
}

func (r *nativeReader) readLowCardinality(c *nativeCol, n int) (*nativeCol, error) {
	flags, err := r.uint64()
	if err != nil {
		return nil, err
	}
	if flags&lcNeedGlobalDictionary != 0 || flags&lcHasAdditionalKeys == 0 {
		return nil, fmt.Errorf("LowCardinality column without its own keys (flags %#x)", flags)
	}
	width := 1 << (flags & lcKeyWidthMask)
	if flags&lcKeyWidthMask > 3 {
		return nil, fmt.Errorf("LowCardinality key width flag %d", flags&lcKeyWidthMask)
	}
	keys, err := r.uint64()
	if err != nil || keys > uint64(len(r.b)-r.p) {
		return nil, errNative
	}
	start := r.p
	if c.bounds, err = r.stringBounds(int(keys)); err != nil {
		return nil, err
	}
	c.data = r.b[start:r.p]
	rows, err := r.uint64()
	if err != nil || rows != uint64(n) || n > (len(r.b)-r.p)/width {
		return nil, errNative
	}
	c.index = make([]uint32, n)
	for i := range c.index {
		var k uint64
		switch width {
		case 1:
			k = uint64(r.b[r.p])
		case 2:
			k = uint64(binary.LittleEndian.Uint16(r.b[r.p:]))
		case 4:
			k = uint64(binary.LittleEndian.Uint32(r.b[r.p:]))
		default:
			k = binary.LittleEndian.Uint64(r.b[r.p:])
		}
		if k >= keys {
			return nil, errNative
		}
		c.index[i] = uint32(k)
		r.p += width
	}
	return c, nil
}

// value appends row i's value, RowBinary-encoded, to dst, or returns it
// in place when it is stored so (dst is then unused).
func (c *nativeCol) value(dst []byte, i int) []byte {
	if w := c.t.fixedWidth(); w > 0 {
		return c.data[i*w : (i+1)*w]
	}
	switch c.t.kind {
	case bString:
		if c.index != nil {
			k := c.index[i]
			return c.data[c.bounds[k]:c.bounds[k+1]]
		}
		return c.data[c.bounds[i]:c.bounds[i+1]]
	case bArray, bMap:
		var from uint64
		if i > 0 {
			from = c.ends[i-1]
		}
		to := c.ends[i]
		dst = binary.AppendUvarint(dst, to-from)
		if c.t.kind == bArray && c.elem.index == nil && c.elem.bounds != nil {
			// plain Strings: the elements are contiguous
			return append(dst, c.elem.data[c.elem.bounds[from]:c.elem.bounds[to]]...)
		}
		for j := int(from); j < int(to); j++ {
			dst = append(dst, c.elem.value(nil, j)...)
			if c.val != nil {
				dst = append(dst, c.val.value(nil, j)...)
			}
		}
		return dst
	}
	return nil
}

// resultBlock is one decoded block.
type resultBlock struct {
	names, types []string
	cols         []*nativeCol
	rows         int
}

// readBlock reads the block at r.p. With want set, its columns must have
// those types (the header's); otherwise they are parsed, and ok is false
// when one has no decoding here.
func (r *nativeReader) readBlock(want []*binType) (blk *resultBlock, ok bool, err error) {
	ncols, err := r.uvarint()
	if err != nil {
		return nil, false, err
	}
	nrows, err := r.uvarint()
	if err != nil || ncols > uint64(len(r.b)) || nrows > uint64(len(r.b)) {
		return nil, false, errNative
	}
	if want != nil && int(ncols) != len(want) {
		return nil, false, fmt.Errorf("native block of %d columns, want %d", ncols, len(want))
	}
	blk = &resultBlock{rows: int(nrows), cols: make([]*nativeCol, ncols)}
	for i := range blk.cols {
		name, err := r.str()
		if err != nil {
			return nil, false, err
		}
		typ, err := r.str()
		if err != nil {
			return nil, false, err
		}
		blk.names, blk.types = append(blk.names, name), append(blk.types, typ)
		var t *binType
		if want != nil {
			t = want[i]
		} else if t, ok = parseBinType(typ); !ok {
			return blk, false, nil
		}
		if nrows > 0 {
			if err := r.readPrefix(t); err != nil {
				return nil, false, err
			}
		}
		if blk.cols[i], err = r.readColumn(t, int(nrows)); err != nil {
			return nil, false, fmt.Errorf("column %s: %w", name, err)
		}
	}
	return blk, true, nil
}

// NativeHeader reads the first block of a Native document (one chunk of
// a streamed result) and returns the result's header in
// RowBinaryWithNamesAndTypes' encoding, and whether Rows decodes every
// column type of it (otherwise the result is to be sent as text).
func NativeHeader(doc []byte) (header []byte, decodable bool, err error) {
	r := &nativeReader{b: doc}
	blk, ok, err := r.readBlock(nil)
	if err != nil {
		return nil, false, err
	}
	if !ok {
		return nil, false, nil
	}
	header = binary.AppendUvarint(nil, uint64(len(blk.names)))
	for _, l := range [][]string{blk.names, blk.types} {
		for _, s := range l {
			header = binary.AppendUvarint(header, uint64(len(s)))
			header = append(header, s...)
		}
	}
	return header, true, nil
}
