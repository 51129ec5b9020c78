// Package clickhouse runs Custody's store on ClickHouse servers and
// clusters through clickhouse-go (native protocol, TLS, several hosts).
// It executes exactly the SQL the embedded engine does; parameters travel
// as server-side query parameters and inserts carry an insert
// deduplication token so a retried batch is stored once.
package clickhouse

import (
	"context"
	"fmt"
	"strings"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/custody-audit/custody/storage/engine"
)

// Options configure the server engine.
type Options struct {
	// DSN is a clickhouse-go DSN, e.g.
	// clickhouse://user:password@host1:9440,host2:9440/custody?secure=true
	// (several hosts are tried in order; secure=true enables TLS).
	DSN string
	// ReadOnly runs every statement with readonly=2: reads only.
	ReadOnly bool
	// Cluster, when set, makes inserts into Distributed tables
	// synchronous so Send returns only once every shard has the rows.
	Cluster string
}

// Engine is a connection pool to a ClickHouse server or cluster.
type Engine struct {
	conn driver.Conn
	opts Options
}

// Open connects and pings the server. The DSN never appears in errors:
// it may hold a password.
func Open(ctx context.Context, opts Options) (*Engine, error) {
	o, err := ch.ParseDSN(opts.DSN)
	if err != nil {
		return nil, fmt.Errorf("parse ClickHouse DSN: invalid DSN (%s)", redactErr(err, opts.DSN))
	}
	conn, err := ch.Open(o)
	if err != nil {
		return nil, fmt.Errorf("connect to ClickHouse: %s", redactErr(err, opts.DSN))
	}
	if err := conn.Ping(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("ping ClickHouse %s: %s", strings.Join(o.Addr, ","), redactErr(err, opts.DSN))
	}
	return &Engine{conn: conn, opts: opts}, nil
}

func redactErr(err error, dsn string) string {
	msg := err.Error()
	if dsn != "" {
		msg = strings.ReplaceAll(msg, dsn, "[DSN]")
	}
	return msg
}

// Kind implements engine.Engine.
func (e *Engine) Kind() string { return "clickhouse" }

func (e *Engine) ctx(ctx context.Context, params engine.Params, extra ch.Settings) context.Context {
	settings := ch.Settings{}
	if e.opts.ReadOnly {
		settings["readonly"] = 2
	}
	if e.opts.Cluster != "" {
		settings["insert_distributed_sync"] = 1
	}
	for k, v := range extra {
		settings[k] = v
	}
	opts := []ch.QueryOption{ch.WithSettings(settings)}
	if len(params) > 0 {
		p := ch.Parameters{}
		for k, v := range params {
			// The server parses a parameter's value in the escaped
			// (TSV) form, which clickhouse-go does not apply: without
			// this a backslash, tab or newline changes or breaks it.
			p[k] = escapeParam(v)
		}
		opts = append(opts, ch.WithParameters(p))
	}
	return ch.Context(ctx, opts...)
}

// Exec implements engine.Engine.
func (e *Engine) Exec(ctx context.Context, query string, params engine.Params) error {
	return e.conn.Exec(e.ctx(ctx, params, nil), query)
}

// Query implements engine.Engine.
func (e *Engine) Query(ctx context.Context, query string, params engine.Params) (engine.Rows, error) {
	rows, err := e.conn.Query(e.ctx(ctx, params, nil), query)
	if err != nil {
		return nil, err
	}
	return &Rows{Rows: rows}, nil
}

// PrepareBatch implements engine.Engine.
func (e *Engine) PrepareBatch(ctx context.Context, table string, columns []engine.Column) (engine.Batch, error) {
	names := make([]string, len(columns))
	for i, c := range columns {
		names[i] = c.Name
	}
	return &Batch{e: e, query: "INSERT INTO " + table + " (" + strings.Join(names, ", ") + ")", ncol: len(columns)}, nil
}

// Close implements engine.Engine.
func (e *Engine) Close(ctx context.Context) error { return e.conn.Close() }

// Rows adapts clickhouse-go rows to engine.Rows: FixedString(32) values
// scan into [32]byte as on the embedded engine.
type Rows struct{ driver.Rows }

// Scan implements engine.Rows.
func (r *Rows) Scan(dest ...any) error {
	type fix struct {
		to  *[32]byte
		tmp string
	}
	var fixes []*fix
	args := make([]any, len(dest))
	for i, d := range dest {
		if p, ok := d.(*[32]byte); ok {
			f := &fix{to: p}
			fixes = append(fixes, f)
			args[i] = &f.tmp
			continue
		}
		args[i] = d
	}
	if err := r.Rows.Scan(args...); err != nil {
		return err
	}
	for _, f := range fixes {
		if len(f.tmp) != 32 {
			return fmt.Errorf("fixed string of %d bytes, want 32", len(f.tmp))
		}
		copy(f.to[:], f.tmp)
	}
	return nil
}

// Batch buffers rows and sends them with PrepareBatch on Send, so a retry
// can resend the same rows under the same deduplication token.
type Batch struct {
	e     *Engine
	query string
	ncol  int
	rows  [][]any
}

// Append implements engine.Batch.
func (b *Batch) Append(values ...any) error {
	if len(values) != b.ncol {
		return fmt.Errorf("append: %d values for %d columns", len(values), b.ncol)
	}
	row := make([]any, len(values))
	for i, v := range values {
		row[i] = batchValue(v)
	}
	b.rows = append(b.rows, row)
	return nil
}

// batchValue is the value clickhouse-go is given for an engine.Batch value:
// pointers are read now (the caller may reuse what they point to), and a
// FixedString(32) goes as its 32-byte string.
func batchValue(v any) any {
	switch x := v.(type) {
	case [32]byte:
		return string(x[:])
	case *[32]byte:
		return string(x[:])
	case *string:
		return *x
	case *[]byte:
		return *x
	case *int64:
		return *x
	case *int32:
		return *x
	case *uint64:
		return *x
	case *time.Time:
		return *x
	case *[]string:
		if *x == nil {
			return []string{}
		}
		return *x
	case *map[string]string:
		if *x == nil {
			return map[string]string{}
		}
		return *x
	default:
		return v
	}
}

// Rows implements engine.Batch.
func (b *Batch) Rows() int { return len(b.rows) }

// Abort implements engine.Batch.
func (b *Batch) Abort() error {
	b.rows = nil
	return nil
}

// Send implements engine.Batch.
func (b *Batch) Send(ctx context.Context, dedupToken string) error {
	if len(b.rows) == 0 {
		return nil
	}
	settings := ch.Settings{}
	if dedupToken != "" {
		settings["insert_deduplicate"] = 1
		settings["insert_deduplication_token"] = dedupToken
	}
	batch, err := b.e.conn.PrepareBatch(b.e.ctx(ctx, nil, settings), b.query)
	if err != nil {
		return fmt.Errorf("prepare batch: %w", err)
	}
	for _, r := range b.rows {
		if err := batch.Append(r...); err != nil {
			_ = batch.Abort()
			return fmt.Errorf("append row: %w", err)
		}
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("send batch of %d rows: %w", len(b.rows), err)
	}
	b.rows = nil
	return nil
}

// escapeParam writes a parameter value in the escaped (TSV) form the
// server parses parameter values in.
func escapeParam(s string) string {
	if !strings.ContainsAny(s, "\\\t\n\r\x00") {
		return s
	}
	return strings.NewReplacer("\\", `\\`, "\t", `\t`, "\n", `\n`, "\r", `\r`, "\x00", `\0`).Replace(s)
}
