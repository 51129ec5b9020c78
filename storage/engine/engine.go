// Package engine is the boundary between Custody's store and a ClickHouse
// engine. One implementation exists, storage/clickhouse, on ClickHouse's
// native protocol; the embedded store (storage/chdb) is that engine
// connected to a private server it starts from libchdb. The store's DDL,
// its queries and the forensic catalogue are written once.
//
// Query parameters always travel as ClickHouse server-side parameters
// ({name:Type} in the SQL, values bound separately); nothing a user types is
// spliced into SQL text.
package engine

import (
	"context"
	"errors"
)

// Errors shared by the engines.
var (
	// ErrClosed is returned by an Engine used after Close.
	ErrClosed = errors.New("engine closed")
	// ErrReadOnly is returned when a statement that writes reaches an
	// engine opened read-only.
	ErrReadOnly = errors.New("engine is read-only")
	// ErrEngineGone is returned (wrapped) by every call on an embedded
	// engine whose host process has exited (the error says how it ended):
	// nothing sent to this Engine can succeed again, so callers stop
	// retrying and either reopen the store or exit with the error.
	ErrEngineGone = errors.New("engine process exited")
)

// Params are server-side query parameters: name -> value in ClickHouse's
// text form ("2026-01-02 03:04:05.000000", "42", "['a','b']"). The type is
// given by the placeholder in the SQL ({name:Type}).
type Params map[string]string

// Column is one column of an insert: its name and ClickHouse type.
type Column struct {
	Name string
	Type string
}

// Engine executes SQL against one ClickHouse store.
//
// Implementations are safe for concurrent use; statements may be
// serialized internally.
type Engine interface {
	// Exec runs a statement that returns no rows (DDL, ALTER, SET-free
	// INSERT ... SELECT).
	Exec(ctx context.Context, query string, params Params) error
	// Query runs a SELECT and streams its rows.
	Query(ctx context.Context, query string, params Params) (Rows, error)
	// QueryBlocks runs a SELECT like Query, for results of many rows
	// (full event rows, a chain's walk): the rows are read as the
	// server's columnar blocks, decoded column by column into buffers
	// reused from block to block, and scanned without reflection. It
	// reads a narrower set of column types than Query (strings, integers,
	// floats, times, Array(String), Map(String, String)); strings scanned
	// from it may share memory with the rest of their block's column.
	QueryBlocks(ctx context.Context, query string, params Params) (Rows, error)
	// PrepareBatch starts a bulk insert into table.
	PrepareBatch(ctx context.Context, table string, columns []Column) (Batch, error)
	// Kind names the engine ("chdb", "clickhouse") for status output.
	Kind() string
	// Close releases the engine.
	Close(ctx context.Context) error
}

// Rows is a result stream, used like database/sql.Rows.
type Rows interface {
	Next() bool
	// Scan copies the current row into dest. Supported destinations:
	// *string, *[]byte, *int64, *int32, *uint64, *uint32, *uint8, *bool,
	// *float64, *time.Time. Complex ClickHouse types (Array, Map) are
	// read as their JSON text by selecting toJSONString(col) in SQL, so
	// the same SQL scans the same way on every engine.
	Scan(dest ...any) error
	// Columns names the result columns.
	Columns() []string
	Err() error
	Close() error
}

// Batch is one bulk insert. Rows are appended in column order; Send stores
// them all or none.
type Batch interface {
	// Append adds one row. Values: string, []byte, int64, int32, uint64,
	// uint32, uint8, bool, time.Time (DateTime64(6)), [32]byte
	// (FixedString(32)), []string (Array(String)), map[string]string
	// or []Pair sorted by key (Map(String,String)). A pointer to any of
	// these types is read before Append returns, so a caller with many
	// rows can pass its fields in place instead of boxing each value into
	// an interface. A Borrowed (String) value, or a pointer to one, may be
	// kept by reference until Send or Abort returns instead of copied.
	Append(values ...any) error
	// Rows is the number of rows appended so far.
	Rows() int
	// Send inserts the batch. dedupToken, when not empty, makes a retried
	// Send of the same batch a no-op (ClickHouse insert deduplication: an
	// insert can outlive the connection that sent it, so a failed Send may
	// still be stored).
	Send(ctx context.Context, dedupToken string) error
	// Abort discards the batch.
	Abort() error
}

// Borrowed is a String value that a Batch may send from the caller's
// memory rather than copy on Append: the caller leaves its bytes unchanged
// until the batch's Send or Abort has returned. For big values of big
// batches (raw records), where the copy into the insert's buffer costs as
// much as writing it to the connection.
type Borrowed []byte

// Pair is one entry of a Map(String, String) value given as a list: a
// caller that has sorted a map's entries already (to hash them) passes the
// list instead of the map, which would be iterated and sorted again. An
// alias of the unnamed struct, so storage/trail's Pair (the same alias) is
// the same type.
type Pair = struct{ Key, Value string }

// Each runs query and calls fn for every row, closing the result however
// it ends. Most callers want this rather than Query: a Rows left open
// holds a connection.
func Each(ctx context.Context, eng Engine, query string, params Params, fn func(Rows) error) error {
	rows, err := eng.Query(ctx, query, params)
	if err != nil {
		return err
	}
	return each(rows, fn)
}

// EachBlock is Each through QueryBlocks: for results of many rows.
func EachBlock(ctx context.Context, eng Engine, query string, params Params, fn func(Rows) error) error {
	rows, err := eng.QueryBlocks(ctx, query, params)
	if err != nil {
		return err
	}
	return each(rows, fn)
}

func each(rows Rows, fn func(Rows) error) error {
	for rows.Next() {
		if err := fn(rows); err != nil {
			rows.Close()
			return err
		}
	}
	if err := rows.Err(); err != nil {
		rows.Close()
		return err
	}
	return rows.Close()
}
