package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/ch-go"
	"github.com/ClickHouse/ch-go/proto"

	"github.com/custody-audit/custody/storage/engine"
)

// QueryBlocks implements engine.Engine: the result comes as ClickHouse's
// columnar blocks, read with ch-go. Each block is decoded column by column
// into buffers kept from block to block; Scan copies one row's values out
// of them with a type switch per column, without reflection. A block's
// String and LowCardinality(String) values become one Go string per
// column per block, and the values scanned into *string are slices of it
// (no allocation per value); a caller keeping one such value keeps that
// block's column in memory, so long-lived values should be copied
// (strings.Clone). DateTime64 values are read as their raw ticks and
// converted exactly, over the type's whole range (1900-2299).
//
// Supported column types: String, FixedString(N), LowCardinality(String),
// (U)Int8-64, Float32/64, Bool, DateTime, DateTime64(p[, tz]),
// Array(String), Array(LowCardinality(String)) and Map(String, String);
// any other type fails the query with an error naming the column.
//
// Cancelling ctx, or closing the rows before the end, cancels the query
// on the server and closes its connection.
func (e *Engine) QueryBlocks(ctx context.Context, query string, params engine.Params) (engine.Rows, error) {
	if err := e.gone(); err != nil {
		return nil, err
	}
	q := ch.Query{Body: query}
	for k, v := range params {
		if !engine.IsIdentifier(k) {
			return nil, fmt.Errorf("query parameter name %q is not an identifier", k)
		}
		q.Parameters = append(q.Parameters, proto.Parameter{Key: k, Value: paramDump(v)})
	}
	// The engine's settings, as Query sends them (readonly, and on a
	// cluster those that make Distributed reads whole, see settings).
	for k, v := range e.settings(nil) {
		q.Settings = append(q.Settings, ch.Setting{Key: k, Value: fmt.Sprint(v), Important: true})
	}
	conn, err := e.insert.Acquire(ctx)
	if err != nil {
		return nil, e.failed(fmt.Errorf("connect for a columnar read: %w", err))
	}
	qctx, cancel := context.WithCancel(ctx)
	r := &BlockRows{
		e:       e,
		ctx:     ctx,
		cancel:  cancel,
		blocks:  make(chan int),
		release: make(chan struct{}),
		done:    make(chan struct{}),
	}
	q.Result = &r.res
	q.OnResult = r.onBlock
	go func() {
		defer close(r.done)
		defer conn.Release()
		r.doErr = conn.Do(qctx, q)
	}()
	// Wait for the first block (the result's header, or an error), so a
	// query the server refuses fails here, as Query does.
	select {
	case n := <-r.blocks:
		r.rows, r.i, r.held = n, -1, true
	case <-r.done:
		if err := r.Err(); err != nil {
			r.Close()
			return nil, err
		}
	}
	return r, nil
}

// paramDump is a query parameter's value as the native protocol carries
// it: the value escaped as ClickHouse parses parameter values (a
// TabSeparated field), then quoted as a Field dump (what clickhouse-go
// sends for its parameters).
func paramDump(v string) string {
	return "'" + fieldDumpEscaper.Replace(escapeParam(v)) + "'"
}

var fieldDumpEscaper = strings.NewReplacer(`\`, `\\`, `'`, `\'`, "\n", `\n`, "\r", `\r`, "\t", `\t`, "\x00", `\0`)

// BlockRows is the result of QueryBlocks. ch-go decodes blocks on the
// query's goroutine and hands each to Next; the block's buffers are
// reused for the next one once Next has moved past its last row.
type BlockRows struct {
	e      *Engine
	ctx    context.Context
	cancel context.CancelFunc
	res    blockResult

	blocks  chan int      // a decoded block's row count (0: the header)
	release chan struct{} // the reader is done with the held block
	done    chan struct{} // the query has returned; doErr is set
	doErr   error

	rows, i int  // rows in the held block, the current row
	held    bool // a block is held: the query waits for release
	closed  bool
}

// onBlock hands a decoded block to the reader and waits until it is done
// with it.
func (r *BlockRows) onBlock(ctx context.Context, b proto.Block) error {
	select {
	case r.blocks <- b.Rows:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-r.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Next implements engine.Rows.
func (r *BlockRows) Next() bool {
	if r.closed {
		return false
	}
	for {
		if r.held && r.i+1 < r.rows {
			r.i++
			return true
		}
		if r.held {
			r.held = false
			select {
			case r.release <- struct{}{}:
			case <-r.done:
				return false
			}
		}
		select {
		case n := <-r.blocks:
			r.rows, r.i, r.held = n, -1, true
		case <-r.done:
			return false
		}
	}
}

// Columns implements engine.Rows.
func (r *BlockRows) Columns() []string { return r.res.names }

// Scan implements engine.Rows. Destinations by column type: String and
// LowCardinality(String) into *string or *[]byte; FixedString into
// *[32]byte (FixedString(32)), *[]byte or *string; integers into *int64,
// *int32, *uint64, *uint32, *uint8, *float64, *bool or *string (decimal);
// floats into *float64; Bool into *bool; DateTime and DateTime64 into
// *time.Time; Array(String) into *[]string; Map(String, String) into
// *map[string]string. Empty arrays and maps are read as empty, not nil.
func (r *BlockRows) Scan(dest ...any) error {
	if !r.held || r.i < 0 || r.i >= r.rows {
		return errors.New("scan without a current row")
	}
	if len(dest) != len(r.res.cols) {
		return fmt.Errorf("scan %d destinations from %d columns", len(dest), len(r.res.cols))
	}
	for c, d := range dest {
		if err := r.res.cols[c].scan(r.i, d); err != nil {
			return fmt.Errorf("scan column %s (%s): %w", r.res.names[c], r.res.types[c], err)
		}
	}
	return nil
}

// Err implements engine.Rows.
func (r *BlockRows) Err() error {
	select {
	case <-r.done:
	default:
		return nil
	}
	if r.doErr == nil {
		return nil
	}
	if err := r.ctx.Err(); err != nil {
		return fmt.Errorf("read blocks: %w", err)
	}
	if r.closed {
		return nil // cancelled by Close
	}
	return r.e.failed(fmt.Errorf("read blocks: %w", r.doErr))
}

// Close implements engine.Rows: it cancels the query if it is still
// running and waits for it to end.
func (r *BlockRows) Close() error {
	if r.closed {
		return nil
	}
	early := false
	select {
	case <-r.done:
	default:
		early = true
		r.cancel()
		<-r.done
	}
	r.closed = true
	r.cancel()
	if early {
		return nil
	}
	return r.Err()
}

// blockResult decodes each block of a result into its columns, chosen
// from the types the server sends with the first block and kept (with
// their buffers) for the blocks after it.
type blockResult struct {
	names []string
	types []proto.ColumnType
	cols  []readColumn
}

// DecodeResult implements proto.Result.
func (b *blockResult) DecodeResult(r *proto.Reader, version int, blk proto.Block) error {
	if blk.Columns == 0 && blk.Rows == 0 {
		return nil // the end of the data
	}
	if b.cols != nil && blk.Columns != len(b.cols) {
		return fmt.Errorf("block of %d columns after blocks of %d", blk.Columns, len(b.cols))
	}
	for i := 0; i < blk.Columns; i++ {
		name, err := r.Str()
		if err != nil {
			return fmt.Errorf("column %d name: %w", i, err)
		}
		typ, err := r.Str()
		if err != nil {
			return fmt.Errorf("column %s type: %w", name, err)
		}
		if proto.FeatureCustomSerialization.In(version) {
			custom, err := r.Bool()
			if err != nil {
				return fmt.Errorf("column %s serialization: %w", name, err)
			}
			if custom {
				return fmt.Errorf("column %s: custom serialization is not supported", name)
			}
		}
		if i == len(b.cols) {
			b.names = append(b.names, name)
			b.types = append(b.types, "")
			b.cols = append(b.cols, nil)
		}
		if t := proto.ColumnType(typ); b.cols[i] == nil || b.types[i] != t {
			col, err := newReadColumn(t)
			if err != nil {
				return fmt.Errorf("column %s: %w", name, err)
			}
			b.names[i], b.types[i], b.cols[i] = name, t, col
		}
		col := b.cols[i]
		col.Reset()
		if blk.Rows == 0 {
			continue
		}
		if s, ok := col.(proto.StateDecoder); ok {
			if err := s.DecodeState(r); err != nil {
				return fmt.Errorf("column %s state: %w", name, err)
			}
		}
		if err := col.DecodeColumn(r, blk.Rows); err != nil {
			return fmt.Errorf("column %s: %w", name, err)
		}
	}
	if b.cols == nil {
		b.cols = []readColumn{}
	}
	return nil
}

// readColumn is a ch-go column that can copy a row's value into a Scan
// destination.
type readColumn interface {
	proto.Column
	scan(row int, dest any) error
}

// newReadColumn is the column that decodes type t.
func newReadColumn(t proto.ColumnType) (readColumn, error) {
	switch t {
	case proto.ColumnTypeString, "LowCardinality(String)":
		s, err := stringsOf(t)
		if err != nil {
			return nil, err
		}
		return &strColumn{ColumnOf: s}, nil
	case proto.ColumnTypeUInt8:
		return &intColumn[uint8]{ColumnOf: new(proto.ColUInt8)}, nil
	case proto.ColumnTypeUInt16:
		return &intColumn[uint16]{ColumnOf: new(proto.ColUInt16)}, nil
	case proto.ColumnTypeUInt32:
		return &intColumn[uint32]{ColumnOf: new(proto.ColUInt32)}, nil
	case proto.ColumnTypeUInt64:
		return &intColumn[uint64]{ColumnOf: new(proto.ColUInt64)}, nil
	case proto.ColumnTypeInt8:
		return &intColumn[int8]{ColumnOf: new(proto.ColInt8)}, nil
	case proto.ColumnTypeInt16:
		return &intColumn[int16]{ColumnOf: new(proto.ColInt16)}, nil
	case proto.ColumnTypeInt32:
		return &intColumn[int32]{ColumnOf: new(proto.ColInt32)}, nil
	case proto.ColumnTypeInt64:
		return &intColumn[int64]{ColumnOf: new(proto.ColInt64)}, nil
	case proto.ColumnTypeFloat32:
		return &floatColumn[float32]{ColumnOf: new(proto.ColFloat32)}, nil
	case proto.ColumnTypeFloat64:
		return &floatColumn[float64]{ColumnOf: new(proto.ColFloat64)}, nil
	case proto.ColumnTypeBool:
		return &boolColumn{}, nil
	case proto.ColumnTypeDateTime:
		return &dateTimeColumn{}, nil
	case "Map(String, String)":
		return &mapColumn{ColMap: proto.NewMap[string, string](new(sharedStr), new(sharedStr))}, nil
	}
	switch t.Base() {
	case proto.ColumnTypeFixedString:
		n, err := strconv.Atoi(string(t.Elem()))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("type %s: bad size", t)
		}
		c := &fixedColumn{}
		c.SetSize(n)
		return c, nil
	case proto.ColumnTypeDateTime64:
		c := &dateTime64Column{}
		if err := c.Infer(t); err != nil {
			return nil, fmt.Errorf("type %s: %w", t, err)
		}
		if c.Location == nil {
			c.Location = time.UTC
		}
		return c, nil
	case proto.ColumnTypeDateTime:
		c := &dateTimeColumn{}
		if err := c.Infer(t); err != nil {
			return nil, fmt.Errorf("type %s: %w", t, err)
		}
		return c, nil
	case proto.ColumnTypeArray:
		s, err := stringsOf(t.Elem())
		if err != nil {
			return nil, fmt.Errorf("type %s: %w", t, err)
		}
		return &arrayColumn{ColArr: proto.NewArray[string](s)}, nil
	}
	return nil, fmt.Errorf("type %s is not supported by the columnar reader", t)
}

// stringsOf is a column of String or LowCardinality(String) values whose
// rows are slices of one string per block.
func stringsOf(t proto.ColumnType) (proto.ColumnOf[string], error) {
	switch t {
	case proto.ColumnTypeString:
		return new(sharedStr), nil
	case "LowCardinality(String)":
		return proto.NewLowCardinality[string](new(sharedStr)), nil
	}
	return nil, fmt.Errorf("element type %s is not supported by the columnar reader (String or LowCardinality(String))", t)
}

// sharedStr is a String column whose rows are read as slices of one copy
// of the block's bytes, made on the first read after each decode.
type sharedStr struct {
	proto.ColStr
	all   string
	built bool
}

// DecodeColumn implements proto.Column.
func (c *sharedStr) DecodeColumn(r *proto.Reader, rows int) error {
	c.all, c.built = "", false
	return c.ColStr.DecodeColumn(r, rows)
}

// Reset implements proto.Column.
func (c *sharedStr) Reset() {
	c.all, c.built = "", false
	c.ColStr.Reset()
}

// Row implements proto.ColumnOf.
func (c *sharedStr) Row(i int) string {
	if !c.built {
		c.all, c.built = string(c.Buf), true
	}
	p := c.Pos[i]
	return c.all[p.Start:p.End]
}

type strColumn struct {
	proto.ColumnOf[string]
}

// DecodeState implements proto.StateDecoder (LowCardinality has a state).
func (c *strColumn) DecodeState(r *proto.Reader) error {
	if s, ok := c.ColumnOf.(proto.StateDecoder); ok {
		return s.DecodeState(r)
	}
	return nil
}

func (c *strColumn) scan(i int, dest any) error {
	switch d := dest.(type) {
	case *string:
		*d = c.Row(i)
	case *[]byte:
		if s, ok := c.ColumnOf.(*sharedStr); ok {
			*d = append((*d)[:0], s.RowBytes(i)...)
		} else {
			*d = append((*d)[:0], c.Row(i)...)
		}
	default:
		return fmt.Errorf("%T is not a string destination", dest)
	}
	return nil
}

type fixedColumn struct {
	proto.ColFixedStr
}

func (c *fixedColumn) scan(i int, dest any) error {
	b := c.Row(i)
	switch d := dest.(type) {
	case *[32]byte:
		if len(b) != 32 {
			return fmt.Errorf("fixed string of %d bytes, want 32", len(b))
		}
		copy(d[:], b)
	case *[]byte:
		*d = append((*d)[:0], b...)
	case *string:
		*d = string(b)
	default:
		return fmt.Errorf("%T is not a fixed string destination", dest)
	}
	return nil
}

type integer interface {
	~int8 | ~int16 | ~int32 | ~int64 | ~uint8 | ~uint16 | ~uint32 | ~uint64
}

type intColumn[T integer] struct {
	proto.ColumnOf[T]
}

func (c *intColumn[T]) scan(i int, dest any) error {
	v := c.Row(i)
	switch d := dest.(type) {
	case *int64:
		*d = int64(v)
	case *int32:
		*d = int32(v)
	case *uint64:
		*d = uint64(v)
	case *uint32:
		*d = uint32(v)
	case *uint8:
		*d = uint8(v)
	case *float64:
		*d = float64(v)
	case *bool:
		*d = v != 0
	case *string:
		*d = fmt.Sprint(v)
	default:
		return fmt.Errorf("%T is not an integer destination", dest)
	}
	return nil
}

type floatColumn[T ~float32 | ~float64] struct {
	proto.ColumnOf[T]
}

func (c *floatColumn[T]) scan(i int, dest any) error {
	d, ok := dest.(*float64)
	if !ok {
		return fmt.Errorf("%T is not a float destination", dest)
	}
	*d = float64(c.Row(i))
	return nil
}

type boolColumn struct {
	proto.ColBool
}

func (c *boolColumn) scan(i int, dest any) error {
	d, ok := dest.(*bool)
	if !ok {
		return fmt.Errorf("%T is not a bool destination", dest)
	}
	*d = c.Row(i)
	return nil
}

type dateTimeColumn struct {
	proto.ColDateTime
}

func (c *dateTimeColumn) scan(i int, dest any) error {
	d, ok := dest.(*time.Time)
	if !ok {
		return fmt.Errorf("%T is not a time destination", dest)
	}
	loc := c.Location
	if loc == nil {
		loc = time.UTC
	}
	*d = time.Unix(int64(c.Data[i]), 0).In(loc)
	return nil
}

// dateTime64Column reads DateTime64 values as their raw ticks (units of
// 10^-p seconds since the epoch) and converts them exactly: ch-go's Row
// goes through nanoseconds in an int64, which overflow after 2262-04-11.
type dateTime64Column struct {
	proto.ColDateTime64
}

func (c *dateTime64Column) scan(i int, dest any) error {
	d, ok := dest.(*time.Time)
	if !ok {
		return fmt.Errorf("%T is not a time destination", dest)
	}
	*d = ticksTime(int64(c.Data[i]), c.Precision).In(c.Location)
	return nil
}

// ticksTime is the time ticks units of 10^-p seconds after the Unix
// epoch, exact for every int64 ticks and precision 0-9.
func ticksTime(ticks int64, p proto.Precision) time.Time {
	scale := int64(1)
	for range int(p) {
		scale *= 10
	}
	sec, frac := ticks/scale, ticks%scale
	if frac < 0 {
		sec, frac = sec-1, frac+scale
	}
	return time.Unix(sec, frac*(int64(time.Second)/scale))
}

type arrayColumn struct {
	*proto.ColArr[string]
}

func (c *arrayColumn) scan(i int, dest any) error {
	d, ok := dest.(*[]string)
	if !ok {
		return fmt.Errorf("%T is not a []string destination", dest)
	}
	var start uint64
	if i > 0 {
		start = c.Offsets[i-1]
	}
	end := c.Offsets[i]
	out := make([]string, end-start)
	for j := range out {
		out[j] = c.Data.Row(int(start) + j)
	}
	*d = out
	return nil
}

type mapColumn struct {
	*proto.ColMap[string, string]
}

func (c *mapColumn) scan(i int, dest any) error {
	d, ok := dest.(*map[string]string)
	if !ok {
		return fmt.Errorf("%T is not a map[string]string destination", dest)
	}
	var start uint64
	if i > 0 {
		start = c.Offsets[i-1]
	}
	end := c.Offsets[i]
	m := make(map[string]string, end-start)
	for j := int(start); j < int(end); j++ {
		m[c.Keys.Row(j)] = c.Values.Row(j)
	}
	*d = m
	return nil
}
