package clickhouse

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ClickHouse/ch-go"
	"github.com/ClickHouse/ch-go/proto"

	"github.com/custody-audit/custody/storage/engine"
)

// keepFree is how many spare blocks of column buffers the engine keeps
// per table: a batch of 1.2 KB rows is tens of megabytes, and growing
// fresh buffers for each one (zeroed and faulted in page by page) costs
// more CPU than filling them. (A sync.Pool would be emptied by the very
// garbage collections that big batches trigger.)
const keepFree = 2

// column is one column of a block: its ch-go buffer, typed for Append.
type column struct {
	engine.Column
	refs  bool // str keeps Borrowed values by reference
	str   *wireStr
	i64   *proto.ColInt64
	u64   *proto.ColUInt64
	f64   *proto.ColFloat64
	i32   *proto.ColInt32
	u32   *proto.ColUInt32
	u8    *proto.ColUInt8
	b     *proto.ColBool
	ts    *proto.ColDateTime64
	fixed *proto.ColFixedStr32
	arr   *wireArr
	m     *wireMap
	data  proto.ColInput
}

func newColumn(c engine.Column, refs bool) (column, error) {
	col := column{Column: c, refs: refs}
	t := strings.ReplaceAll(c.Type, " ", "")
	switch {
	case t == "String", t == "LowCardinality(String)":
		col.str = new(wireStr)
		col.data = col.str
	case t == "Int64":
		col.i64 = new(proto.ColInt64)
		col.data = col.i64
	case t == "UInt64":
		col.u64 = new(proto.ColUInt64)
		col.data = col.u64
	case t == "Float64":
		col.f64 = new(proto.ColFloat64)
		col.data = col.f64
	case t == "Int32":
		col.i32 = new(proto.ColInt32)
		col.data = col.i32
	case t == "UInt32":
		col.u32 = new(proto.ColUInt32)
		col.data = col.u32
	case t == "UInt8":
		col.u8 = new(proto.ColUInt8)
		col.data = col.u8
	case t == "Bool":
		col.b = new(proto.ColBool)
		col.data = col.b
	case strings.HasPrefix(t, "DateTime64(6"):
		col.ts = new(proto.ColDateTime64).WithPrecision(proto.PrecisionMicro).WithLocation(time.UTC)
		col.data = col.ts
	case t == "FixedString(32)":
		col.fixed = new(proto.ColFixedStr32)
		col.data = col.fixed
	case t == "Array(String)":
		col.arr = new(wireArr)
		col.data = col.arr
	case t == "Map(String,String)":
		col.m = new(wireMap)
		col.data = col.m
	default:
		return col, fmt.Errorf("column %s: type %s is not one a batch takes", c.Name, c.Type)
	}
	return col, nil
}

// block is the column buffers of one insert.
type block struct {
	cols  []column
	input proto.Input
	keys  []string // scratch for sorting map keys
}

// newBlock makes the buffers of an insert of columns; refs: String
// columns keep Borrowed values by reference.
func newBlock(columns []engine.Column, refs bool) (*block, error) {
	b := &block{cols: make([]column, len(columns)), input: make(proto.Input, len(columns))}
	for i, c := range columns {
		if !engine.IsIdentifier(c.Name) {
			return nil, fmt.Errorf("column name %q is not an identifier", c.Name)
		}
		col, err := newColumn(c, refs)
		if err != nil {
			return nil, err
		}
		b.cols[i] = col
		b.input[i] = proto.InputColumn{Name: c.Name, Data: col.data}
	}
	return b, nil
}

func (b *block) sameColumns(columns []engine.Column) bool {
	if len(columns) != len(b.cols) {
		return false
	}
	for i, c := range columns {
		if b.cols[i].Column != c {
			return false
		}
	}
	return true
}

func (b *block) rows() int {
	if len(b.cols) == 0 {
		return 0
	}
	return b.cols[0].data.Rows()
}

func (b *block) reset() {
	for i := range b.cols {
		b.cols[i].data.(proto.Resettable).Reset()
	}
}

func (e *Engine) getBlock(table string, columns []engine.Column) (*block, error) {
	e.freeMu.Lock()
	l := e.free[table]
	if n := len(l); n > 0 && l[n-1].sameColumns(columns) {
		b := l[n-1]
		e.free[table] = l[:n-1]
		e.freeMu.Unlock()
		return b, nil
	}
	e.freeMu.Unlock()
	return newBlock(columns, e.plainWire)
}

func (e *Engine) putBlock(table string, b *block) {
	b.reset()
	e.freeMu.Lock()
	defer e.freeMu.Unlock()
	if e.free == nil {
		e.free = map[string][]*block{}
	}
	if len(e.free[table]) < keepFree {
		e.free[table] = append(e.free[table], b)
	}
}

// PrepareBatch implements engine.Engine.
func (e *Engine) PrepareBatch(ctx context.Context, table string, columns []engine.Column) (engine.Batch, error) {
	if err := e.gone(); err != nil {
		return nil, err
	}
	if !engine.IsIdentifier(table) && !isQualified(table) {
		return nil, fmt.Errorf("table name %q is not an identifier", table)
	}
	blk, err := e.getBlock(table, columns)
	if err != nil {
		return nil, fmt.Errorf("prepare insert into %s: %w", table, err)
	}
	names := make([]string, len(columns))
	for i, c := range columns {
		names[i] = c.Name
	}
	return &Batch{e: e, table: table, columns: columns, block: blk,
		query: "INSERT INTO " + table + " (" + strings.Join(names, ", ") + ") VALUES"}, nil
}

// Batch is one columnar insert.
type Batch struct {
	e       *Engine
	table   string
	columns []engine.Column
	query   string
	block   *block
}

// Append implements engine.Batch.
func (b *Batch) Append(values ...any) error {
	if len(values) != len(b.columns) {
		return fmt.Errorf("append to %s: %d values for %d columns", b.table, len(values), len(b.columns))
	}
	if b.block == nil {
		blk, err := b.e.getBlock(b.table, b.columns)
		if err != nil {
			return err
		}
		b.block = blk
	}
	// Check every value before appending any, so that a refused row
	// leaves every column the same length. A *string, most of a wide
	// row's values, is tried first: one comparison instead of a search
	// through every type a column takes.
	cols := b.block.cols[:len(values)]
	for i, v := range values {
		if _, ok := v.(*string); ok && cols[i].str != nil {
			continue
		}
		if !cols[i].takes(v) {
			return fmt.Errorf("append to %s: column %s (%s) does not take a %T", b.table, b.columns[i].Name, b.columns[i].Type, v)
		}
	}
	for i, v := range values {
		if p, ok := v.(*string); ok {
			cols[i].str.Append(*p)
			continue
		}
		cols[i].append(v, &b.block.keys)
	}
	return nil
}

// takes reports whether v is a value c.append accepts.
func (c *column) takes(v any) bool {
	switch v.(type) {
	case string, *string, []byte, *[]byte, engine.Borrowed, *engine.Borrowed:
		return c.str != nil
	case int64, *int64:
		return c.i64 != nil
	case uint64, *uint64:
		return c.u64 != nil
	case float64, *float64:
		return c.f64 != nil
	case int32, *int32:
		return c.i32 != nil
	case uint32, *uint32:
		return c.u32 != nil
	case uint8, *uint8:
		return c.u8 != nil
	case bool, *bool:
		return c.b != nil || c.u8 != nil
	case time.Time, *time.Time:
		return c.ts != nil
	case [32]byte, *[32]byte:
		return c.fixed != nil
	case []string, *[]string:
		return c.arr != nil
	case map[string]string, *map[string]string, []engine.Pair, *[]engine.Pair:
		return c.m != nil
	}
	return false
}

// append adds v, which takes accepted.
func (c *column) append(v any, keys *[]string) {
	switch x := v.(type) {
	case string:
		c.str.Append(x)
	case *string:
		c.str.Append(*x)
	case []byte:
		c.str.AppendBytes(x)
	case *[]byte:
		c.str.AppendBytes(*x)
	case engine.Borrowed:
		c.appendBorrowed(x)
	case *engine.Borrowed:
		c.appendBorrowed(*x)
	case int64:
		c.i64.Append(x)
	case *int64:
		c.i64.Append(*x)
	case uint64:
		c.u64.Append(x)
	case *uint64:
		c.u64.Append(*x)
	case float64:
		c.f64.Append(x)
	case *float64:
		c.f64.Append(*x)
	case int32:
		c.i32.Append(x)
	case *int32:
		c.i32.Append(*x)
	case uint32:
		c.u32.Append(x)
	case *uint32:
		c.u32.Append(*x)
	case uint8:
		c.u8.Append(x)
	case *uint8:
		c.u8.Append(*x)
	case bool:
		c.appendBool(x)
	case *bool:
		c.appendBool(*x)
	case time.Time:
		c.ts.AppendRaw(micros(x))
	case *time.Time:
		c.ts.AppendRaw(micros(*x))
	case [32]byte:
		c.fixed.Append(x)
	case *[32]byte:
		c.fixed.Append(*x)
	case []string:
		c.arr.Append(x)
	case *[]string:
		c.arr.Append(*x)
	case map[string]string:
		c.appendMap(x, keys)
	case *map[string]string:
		c.appendMap(*x, keys)
	case []engine.Pair:
		c.appendPairs(x)
	case *[]engine.Pair:
		c.appendPairs(*x)
	}
}

// appendBorrowed adds a value the caller lends until Send or Abort:
// kept by reference when the block is written to the connection as it is,
// copied when it is encoded into one buffer anyway (compressed) or each
// write is a record of its own (TLS).
func (c *column) appendBorrowed(v []byte) {
	if c.refs {
		c.str.AppendRef(v)
	} else {
		c.str.AppendBytes(v)
	}
}

func (c *column) appendBool(v bool) {
	if c.b != nil {
		c.b.Append(v)
		return
	}
	var u uint8
	if v {
		u = 1
	}
	c.u8.Append(u)
}

// appendMap writes m key-sorted, so that equal maps are stored (and
// hashed by the engine) equally.
func (c *column) appendMap(m map[string]string, keys *[]string) {
	*keys = (*keys)[:0]
	for k := range m {
		*keys = append(*keys, k)
	}
	slices.Sort(*keys)
	for _, k := range *keys {
		c.m.keys.Append(k)
		c.m.values.Append(m[k])
	}
	c.m.offsets = append(c.m.offsets, uint64(c.m.keys.rows))
}

// appendPairs writes a map given as its entries, which the caller sorted
// by key (the store hashes them in that order).
func (c *column) appendPairs(l []engine.Pair) {
	for _, p := range l {
		c.m.keys.Append(p.Key)
		c.m.values.Append(p.Value)
	}
	c.m.offsets = append(c.m.offsets, uint64(c.m.keys.rows))
}

// Rows implements engine.Batch.
func (b *Batch) Rows() int {
	if b.block == nil {
		return 0
	}
	return b.block.rows()
}

// Abort implements engine.Batch.
func (b *Batch) Abort() error {
	b.release()
	return nil
}

// release gives the batch's buffers back to the engine for the next batch
// into the same table.
func (b *Batch) release() {
	if b.block != nil {
		b.e.putBlock(b.table, b.block)
		b.block = nil
	}
}

// Send implements engine.Batch: the rows go as one Native block, stored
// as one part per partition, whole or not at all. A retried Send with the
// same dedupToken is stored once.
func (b *Batch) Send(ctx context.Context, dedupToken string) error {
	if b.Rows() == 0 {
		return nil
	}
	if err := b.e.gone(); err != nil {
		return err
	}
	var settings []ch.Setting
	if b.e.opts.Cluster != "" {
		settings = append(settings, ch.SettingInt("insert_distributed_sync", 1))
		if b.e.rolesLocal { // as for queries, see Engine.settings
			settings = append(settings, ch.SettingInt("push_external_roles_in_interserver_queries", 0))
		}
	}
	if dedupToken != "" {
		settings = append(settings,
			ch.SettingInt("insert_deduplicate", 1),
			ch.Setting{Key: "insert_deduplication_token", Value: dedupToken, Important: true})
	}
	n := b.block.rows()
	err := b.e.insert.Do(ctx, ch.Query{Body: b.query, Input: b.block.input, Settings: settings})
	if err != nil {
		return b.e.failed(fmt.Errorf("insert %d rows into %s: %w", n, b.table, err))
	}
	b.release()
	return nil
}

func isQualified(name string) bool {
	db, t, ok := strings.Cut(name, ".")
	return ok && engine.IsIdentifier(db) && engine.IsIdentifier(t)
}

// micros is t as a DateTime64(6) value. ch-go's ColDateTime64.Append goes
// through time.UnixNano, which overflows outside 1677-2262 and stored
// 2299-12-31 (inside DateTime64's range) as 1715-06-13, so a row's stored
// time differed from the one its hash was computed over
// (testdata/vectors/event-hash.json, TestEventHashVectorsSQL).
func micros(t time.Time) proto.DateTime64 {
	if t.IsZero() {
		return 0 // as ch-go's Append
	}
	return proto.DateTime64(t.UnixMicro())
}
