package bundle

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/custody-audit/custody/storage/trail"
)

// Verifying a Parquet data file: its rows are read in segments of a row
// group, each segment on one of the workers (a reader of its own over the
// shared file), decoded and hashed there, and checked in file order.

// parquetSegment is how many rows of a row group one worker reads at a
// time.
const parquetSegment = 16 * 1024

// parquetPart is one segment's rows, read by one worker.
type parquetPart struct {
	rg    parquet.RowGroup
	start int64  // first row within the row group
	count int64  // rows to read
	first uint64 // number of the first row in the file
	res   []lineResult
	err   error // reading stopped after res
}

// readParquetRows checks every row of a Parquet data file and returns
// how many it read. A file that is not a Parquet file of the bundle
// schema, or that cannot be read to its end, is an error; the rows
// before the error are checked.
func (v *bundleVerifier) readParquetRows(f *os.File, size int64) (uint64, error) {
	pf, err := parquet.OpenFile(f, size)
	if err != nil {
		return 0, fmt.Errorf("not a Parquet file: %w", err)
	}
	if !parquet.EqualNodes(pf.Schema(), parquet.SchemaOf(parquetRecord{})) {
		return 0, fmt.Errorf("Parquet schema differs from export-v1's")
	}
	leaves := parquetLeaves()
	var stopped atomic.Bool
	var rows uint64
	var readErr error
	inOrder(func(send func(*parquetPart)) {
		var n uint64
		for _, rg := range pf.RowGroups() {
			total := rg.NumRows()
			for start := int64(0); start < total; start += parquetSegment {
				if stopped.Load() {
					return
				}
				p := &parquetPart{rg: rg, start: start, count: min(parquetSegment, total-start), first: n + 1}
				n += uint64(p.count)
				send(p)
			}
		}
	}, func() func(*parquetPart) {
		d := &parquetChecker{leaves: leaves, rows: make([]parquet.Row, 256)}
		return d.read
	}, func(p *parquetPart) {
		if readErr != nil {
			return
		}
		for i := range p.res {
			res := &p.res[i]
			rows = res.n
			if res.malformed != nil {
				v.malformed(res.n, res.malformed)
				continue
			}
			v.row(res.n, &res.key, res.computed)
		}
		if p.err != nil {
			readErr = p.err
			stopped.Store(true)
		}
	})
	return rows, readErr
}

// parquetLeaf is what a leaf column of the bundle schema holds: a
// column of columns, and for attributes its keys or values.
type parquetLeaf struct {
	col   int
	value bool // attributes: the values, not the keys
}

// parquetLeaves maps the leaf columns of the bundle schema, by index, to
// the columns.
func parquetLeaves() []parquetLeaf {
	s := parquet.SchemaOf(parquetRecord{})
	leaves := make([]parquetLeaf, len(s.Columns()))
	for i, c := range columns {
		var paths [][]string
		switch c.kind {
		case kList:
			paths = [][]string{{c.name, "list", "element"}}
		case kMap:
			paths = [][]string{{c.name, "key_value", "key"}, {c.name, "key_value", "value"}}
		default:
			paths = [][]string{{c.name}}
		}
		for j, p := range paths {
			l, ok := s.Lookup(p...)
			if !ok {
				panic("export: the Parquet schema has no column " + strings.Join(p, "."))
			}
			leaves[l.ColumnIndex] = parquetLeaf{col: i, value: j == 1}
		}
	}
	return leaves
}

// parquetChecker reads, decodes and hashes segments for one worker.
type parquetChecker struct {
	hasher trail.Hasher
	leaves []parquetLeaf
	rows   []parquet.Row
	row    trail.Row
	chain  string
	groups []string
	tags   []string
	keys   []string
	vals   []string
	attrs  map[string]string
	ip     []byte
}

// read fills p.res with the rows of p, and p.err with why reading
// stopped early.
func (d *parquetChecker) read(p *parquetPart) {
	defer func() {
		// parquet-go panics on some malformed pages; a bad file is a
		// finding, never a crash.
		if x := recover(); x != nil {
			p.err = fmt.Errorf("malformed Parquet file: %v", x)
		}
	}()
	rd := p.rg.Rows()
	defer func() {
		if cerr := rd.Close(); p.err == nil && cerr != nil {
			p.err = fmt.Errorf("read Parquet rows: %w", cerr)
		}
	}()
	if err := rd.SeekToRow(p.start); err != nil {
		p.err = fmt.Errorf("read Parquet row %d: %w", p.first, err)
		return
	}
	p.res = make([]lineResult, 0, p.count)
	for left := p.count; left > 0; {
		k, err := rd.ReadRows(d.rows[:min(int64(len(d.rows)), left)])
		for i := 0; i < k; i++ {
			n := p.first + uint64(len(p.res))
			p.res = append(p.res, lineResult{n: n})
			res := &p.res[len(p.res)-1]
			r := &d.row
			if err := d.decode(d.rows[i], r); err != nil {
				res.malformed = err
				continue
			}
			res.computed = d.hasher.Hash(r)
			if r.Chain != d.chain {
				d.chain = strings.Clone(r.Chain)
			}
			res.key = rowKey{Chain: d.chain, Seq: r.Seq, PrevHash: r.PrevHash, Hash: r.Hash, EventID: strings.Clone(r.Event.ID)}
		}
		left -= int64(k)
		if errors.Is(err, io.EOF) {
			if left > 0 {
				p.err = fmt.Errorf("read Parquet row %d: %w", p.first+uint64(len(p.res)), io.ErrUnexpectedEOF)
			}
			return
		}
		if err != nil {
			p.err = fmt.Errorf("read Parquet row %d: %w", p.first+uint64(len(p.res)), err)
			return
		}
	}
}

// decode reads a row of the bundle schema into r as parquetRecord.toRow
// does. The row's text values are copied into one string, of which its
// strings are substrings; its raw bytes, lists and map view the values
// and the checker's buffers, which the next read reuses.
func (d *parquetChecker) decode(row parquet.Row, r *trail.Row) error {
	*r = trail.Row{}
	e := &r.Event
	d.groups, d.tags, d.keys, d.vals = d.groups[:0], d.tags[:0], d.keys[:0], d.vals[:0]
	isText := func(v parquet.Value) bool {
		i := v.Column()
		return i >= 0 && i < len(d.leaves) && columns[d.leaves[i].col].kind.isText()
	}
	size := 0
	for _, v := range row {
		if isText(v) {
			size += len(v.ByteArray())
		}
	}
	// One copy: the builder's buffer becomes the string.
	var sb strings.Builder
	sb.Grow(size)
	for _, v := range row {
		if isText(v) {
			sb.Write(v.ByteArray())
		}
	}
	text, at := sb.String(), 0
	next := func(v parquet.Value) string {
		n := len(v.ByteArray())
		at += n
		return text[at-n : at]
	}
	var ip string
	for _, v := range row {
		i := v.Column()
		if i < 0 || i >= len(d.leaves) {
			return fmt.Errorf("a value of column %d, which the schema does not have", i)
		}
		l := d.leaves[i]
		c := &columns[l.col]
		switch c.kind {
		case kString:
			*c.str(r) = next(v)
		case kSeq:
			r.Seq = v.Uint64()
		case kInt64:
			r.Offset = v.Int64()
		case kInt32:
			e.StatusCode = v.Int32()
		case kTime:
			t := time.UnixMicro(v.Int64()).UTC()
			if c.name == "received_time" {
				e.ReceivedTime = t
			} else {
				e.Time = t
			}
		case kIP:
			ip = next(v)
		case kList:
			s := next(v) // "" for an empty list
			if v.DefinitionLevel() == 0 {
				continue // an empty list
			}
			if c.name == "tags" {
				d.tags = append(d.tags, s)
			} else {
				d.groups = append(d.groups, s)
			}
		case kMap:
			s := next(v)
			switch {
			case v.DefinitionLevel() == 0: // an empty map
			case l.value:
				d.vals = append(d.vals, s)
			default:
				d.keys = append(d.keys, s)
			}
		case kBytes:
			e.Raw = v.ByteArray()
		case kHash:
			h := &r.Hash
			if c.name == "prev_hash" {
				h = &r.PrevHash
			}
			b := v.ByteArray()
			if len(b) != len(h) {
				return fmt.Errorf("%s holds %d bytes, not %d", c.name, len(b), len(h))
			}
			copy(h[:], b)
		}
	}
	e.Actor.Groups, e.Tags = d.groups, d.tags
	if len(d.keys) != len(d.vals) {
		return fmt.Errorf("attributes: %d keys for %d values", len(d.keys), len(d.vals))
	}
	if d.attrs == nil {
		d.attrs = map[string]string{}
	}
	clear(d.attrs)
	for i, k := range d.keys {
		d.attrs[k] = d.vals[i]
	}
	e.Attributes = d.attrs
	a, ok := canonicalIP(&d.ip, ip)
	if !ok {
		_, err := parseIP(strings.Clone(ip))
		return fmt.Errorf("source_ip: %w", err)
	}
	e.SourceIP = a
	return nil
}
