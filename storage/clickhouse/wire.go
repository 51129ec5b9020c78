package clickhouse

import (
	"encoding/binary"

	"github.com/ClickHouse/ch-go/proto"
)

// The string columns of an insert are kept in ClickHouse's Native encoding
// as rows are appended, so sending a block writes each column's buffer to
// the connection as it is (ch-go's vectored Writer). ch-go's own ColStr
// keeps strings and their positions apart and copies every string into the
// connection's write buffer again when the block is sent: for a batch of
// 1.4 KB raw records that second copy, and the write buffer it grows, cost
// as much CPU as filling the columns.

// wireStr is a String column in Native encoding: each value as a uvarint
// length and its bytes.
type wireStr struct {
	// buf is the column's memory, all of it: buf[:n] holds the values.
	// Appends write into it and move n, so buf itself is only stored when
	// it grows: a slice stored into the heap for every value would cost a
	// write barrier each while the garbage collector runs.
	buf  []byte
	n    int
	rows int
	// refs are values sent from the caller's memory (AppendRef), in
	// order; buf holds their lengths.
	refs []wireRef
}

// wireRef is a value of a wireStr kept by reference: it goes on the wire
// right after buf[:at].
type wireRef struct {
	at   int
	data []byte
}

// minRef is the smallest value AppendRef keeps by reference: each costs
// an entry in the vectored write (and the kernel a segment), which for a
// smaller value costs more than copying it.
const minRef = 512

func (c *wireStr) Type() proto.ColumnType { return proto.ColumnTypeString }
func (c *wireStr) Rows() int              { return c.rows }
func (c *wireStr) EncodeColumn(b *proto.Buffer) {
	at := 0
	for _, r := range c.refs {
		b.Buf = append(b.Buf, c.buf[at:r.at]...)
		b.Buf = append(b.Buf, r.data...)
		at = r.at
	}
	b.Buf = append(b.Buf, c.buf[at:c.n]...)
}
func (c *wireStr) WriteColumn(w *proto.Writer) {
	at := 0
	for _, r := range c.refs {
		if r.at > at {
			w.ChainWrite(c.buf[at:r.at])
		}
		w.ChainWrite(r.data)
		at = r.at
	}
	if c.n > at {
		w.ChainWrite(c.buf[at:c.n])
	}
}

// Reset empties the column and keeps its buffers for the next batch,
// dropping its references to the caller's values.
func (c *wireStr) Reset() {
	c.n = 0
	c.rows = 0
	clear(c.refs)
	c.refs = c.refs[:0]
}

// Append adds one value.
func (c *wireStr) Append(s string) {
	if len(c.buf)-c.n < binary.MaxVarintLen64+len(s) {
		c.grow(binary.MaxVarintLen64 + len(s))
	}
	b, n := c.buf, c.n
	if len(s) < 0x80 {
		b[n] = byte(len(s))
		n++
	} else {
		n += binary.PutUvarint(b[n:], uint64(len(s)))
	}
	c.n = n + copy(b[n:], s)
	c.rows++
}

// AppendBytes adds one value.
func (c *wireStr) AppendBytes(s []byte) {
	if len(c.buf)-c.n < binary.MaxVarintLen64+len(s) {
		c.grow(binary.MaxVarintLen64 + len(s))
	}
	n := c.n + binary.PutUvarint(c.buf[c.n:], uint64(len(s)))
	c.n = n + copy(c.buf[n:], s)
	c.rows++
}

// AppendRef adds one value, which the column may send from s itself (if
// it is big) rather than copy: s must stay unchanged until the column is
// written or reset.
func (c *wireStr) AppendRef(s []byte) {
	if len(s) < minRef {
		c.AppendBytes(s)
		return
	}
	if len(c.buf)-c.n < binary.MaxVarintLen64 {
		c.grow(binary.MaxVarintLen64)
	}
	c.n += binary.PutUvarint(c.buf[c.n:], uint64(len(s)))
	c.refs = append(c.refs, wireRef{at: c.n, data: s})
	c.rows++
}

// grow makes room for n more bytes, doubling the buffer (append grows big
// slices by a quarter at a time, copying a batch's bytes several times
// over while a column reaches its size).
func (c *wireStr) grow(n int) {
	nb := make([]byte, max(2*len(c.buf), c.n+n, 4096))
	copy(nb, c.buf[:c.n])
	c.buf = nb
}

// wireArr is an Array(String) column in Native encoding: the cumulative
// end offset of each row, then the values of every row.
type wireArr struct {
	offsets proto.ColUInt64
	values  wireStr
}

func (c *wireArr) Type() proto.ColumnType { return proto.ColumnTypeString.Array() }
func (c *wireArr) Rows() int              { return len(c.offsets) }
func (c *wireArr) EncodeColumn(b *proto.Buffer) {
	c.offsets.EncodeColumn(b)
	c.values.EncodeColumn(b)
}
func (c *wireArr) WriteColumn(w *proto.Writer) {
	if len(c.offsets) == 0 {
		return
	}
	c.offsets.WriteColumn(w)
	c.values.WriteColumn(w)
}

// Reset empties the column and keeps its buffers.
func (c *wireArr) Reset() {
	c.offsets = c.offsets[:0]
	c.values.Reset()
}

// Append adds one row.
func (c *wireArr) Append(l []string) {
	for _, s := range l {
		c.values.Append(s)
	}
	c.offsets = append(c.offsets, uint64(c.values.rows))
}

// wireMap is a Map(String, String) column in Native encoding: the
// cumulative end offset of each row, then every key, then every value.
type wireMap struct {
	offsets proto.ColUInt64
	keys    wireStr
	values  wireStr
}

func (c *wireMap) Type() proto.ColumnType {
	return proto.ColumnTypeMap.Sub(proto.ColumnTypeString, proto.ColumnTypeString)
}
func (c *wireMap) Rows() int { return len(c.offsets) }
func (c *wireMap) EncodeColumn(b *proto.Buffer) {
	c.offsets.EncodeColumn(b)
	c.keys.EncodeColumn(b)
	c.values.EncodeColumn(b)
}
func (c *wireMap) WriteColumn(w *proto.Writer) {
	if len(c.offsets) == 0 {
		return
	}
	c.offsets.WriteColumn(w)
	c.keys.WriteColumn(w)
	c.values.WriteColumn(w)
}

// Reset empties the column and keeps its buffers.
func (c *wireMap) Reset() {
	c.offsets = c.offsets[:0]
	c.keys.Reset()
	c.values.Reset()
}
