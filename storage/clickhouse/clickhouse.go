// Package clickhouse is Custody's one engine implementation: it runs the
// store on a ClickHouse server over ClickHouse's native protocol, whether
// the server is a cluster reached with a DSN (--clickhouse) or the private
// server of an embedded store (storage/chdb starts it and connects this
// engine to it).
//
// Inserts (engine.Batch) are columnar: every column of a batch is a ch-go
// column buffer (proto.Input), appended to value by value without
// reflection and sent as one Native block, one part per partition; the
// buffers are kept for the next batch into the same table. Reads go
// through clickhouse-go, whose rows scan by column type. Parameters travel
// as server-side query parameters, and inserts carry an insert
// deduplication token so a retried batch is stored once (an insert can
// outlive the connection that sent it, on any server).
package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/ch-go"
	"github.com/ClickHouse/ch-go/chpool"
	"github.com/ClickHouse/ch-go/proto"
	chgo "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/custody-audit/custody/storage/engine"
)

// Options configure the engine.
type Options struct {
	// DSN is a clickhouse-go DSN, e.g.
	// clickhouse://user:password@host1:9440,host2:9440/custody?secure=true
	// (several hosts are tried in order; secure=true enables TLS). It is
	// never part of an error: it may hold a password.
	DSN string
	// Host, when set with DSN, replaces the DSN's hosts: one server of a
	// cluster (host:port), reached with the DSN's user, TLS and settings.
	Host string
	// Addr, User and Password reach a server without a DSN (the embedded
	// store's private server); used when DSN is empty.
	Addr     string
	User     string
	Password string
	// ReadOnly runs every statement with readonly=2: reads only.
	ReadOnly bool
	// Cluster, when set, makes inserts into Distributed tables
	// synchronous so Send returns only once every shard has the rows, and
	// IN and JOIN subqueries over Distributed tables global (see settings).
	Cluster string
	// Kind names the engine in status output; empty means "clickhouse".
	Kind string
	// Process, when set, is the local process serving the engine (the
	// embedded store's host): once it has exited every call fails with
	// its Gone error, which wraps engine.ErrEngineGone.
	Process Process
}

// Process is a local engine process.
type Process interface {
	// Done is closed when the process has exited.
	Done() <-chan struct{}
	// Gone is nil while the process runs, then says how it ended.
	Gone() error
}

// Engine is a connection pool to one ClickHouse server or cluster.
type Engine struct {
	conn   driver.Conn // reads, statements
	insert *chpool.Pool
	opts   Options

	// rolesLocal: the cluster's servers know
	// push_external_roles_in_interserver_queries (see settings).
	rolesLocal bool

	// plainWire: inserts go to the connection as written, neither
	// compressed (encoded into one buffer first) nor over TLS (where each
	// piece of a vectored write is a record of its own), so big Borrowed
	// values are sent from the caller's memory instead of copied.
	plainWire bool

	freeMu sync.Mutex
	free   map[string][]*block // column buffers by table, for the next batch
}

// Open connects and pings the server.
func Open(ctx context.Context, opts Options) (*Engine, error) {
	var o *chgo.Options
	if opts.DSN != "" {
		var err error
		if o, err = chgo.ParseDSN(opts.DSN); err != nil {
			return nil, fmt.Errorf("parse ClickHouse DSN: invalid DSN (%s)", redactErr(err, opts))
		}
		if opts.Host != "" {
			o.Addr = []string{opts.Host}
		}
	} else {
		if opts.Addr == "" {
			return nil, errors.New("connect to ClickHouse: no DSN and no address")
		}
		o = &chgo.Options{Addr: []string{opts.Addr}, Auth: chgo.Auth{Username: opts.User, Password: opts.Password}}
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = 10 * time.Second
	}
	conn, err := chgo.Open(o)
	if err != nil {
		return nil, fmt.Errorf("connect to ClickHouse: %s", redactErr(err, opts))
	}
	if err := conn.Ping(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("ping ClickHouse %s: %s", strings.Join(o.Addr, ","), redactErr(err, opts))
	}
	pool, err := dialInsertPool(ctx, o)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("connect to ClickHouse %s for inserts: %s", strings.Join(o.Addr, ","), redactErr(err, opts))
	}
	e := &Engine{conn: conn, insert: pool, opts: opts, plainWire: o.TLS == nil && insertCompression(o) == ch.CompressionDisabled}
	if opts.Cluster != "" {
		n, err := e.knowsSetting(ctx, "push_external_roles_in_interserver_queries")
		if err != nil {
			e.Close(ctx)
			return nil, fmt.Errorf("read ClickHouse settings: %w", err)
		}
		e.rolesLocal = n
	}
	return e, nil
}

// knowsSetting says whether the server has a setting of this name.
func (e *Engine) knowsSetting(ctx context.Context, name string) (bool, error) {
	var n uint64
	err := engine.Each(ctx, e, "SELECT count() FROM system.settings WHERE name = {name:String}", engine.Params{"name": name}, func(r engine.Rows) error { return r.Scan(&n) })
	return n > 0, err
}

// dialInsertPool opens ch-go connections to the first of o's hosts that
// answers, with the same user, database, TLS and compression.
func dialInsertPool(ctx context.Context, o *chgo.Options) (*chpool.Pool, error) {
	co := ch.Options{
		User:        o.Auth.Username,
		Password:    o.Auth.Password,
		Database:    o.Auth.Database,
		TLS:         o.TLS,
		DialTimeout: o.DialTimeout,
		ReadTimeout: ch.NoTimeout, // ctx bounds every call
		ClientName:  "custody",
	}
	co.Compression = insertCompression(o)
	var last error
	for _, addr := range o.Addr {
		co.Address = addr
		pool, err := chpool.Dial(ctx, chpool.Options{ClientOptions: co, MaxConns: 4})
		if err == nil {
			return pool, nil
		}
		last = err
	}
	return nil, last
}

// insertCompression is the compression of the insert connections.
func insertCompression(o *chgo.Options) ch.Compression {
	if o.Compression != nil {
		switch o.Compression.Method {
		case chgo.CompressionLZ4:
			return ch.CompressionLZ4
		case chgo.CompressionZSTD:
			return ch.CompressionZSTD
		}
	}
	return ch.CompressionDisabled
}

func redactErr(err error, opts Options) string {
	msg := err.Error()
	if opts.DSN != "" {
		msg = strings.ReplaceAll(msg, opts.DSN, "[DSN]")
	}
	if opts.Password != "" {
		msg = strings.ReplaceAll(msg, opts.Password, "[password]")
	}
	return msg
}

// Kind implements engine.Engine.
func (e *Engine) Kind() string {
	if e.opts.Kind != "" {
		return e.opts.Kind
	}
	return "clickhouse"
}

// gone is the Process's error once it has exited.
func (e *Engine) gone() error {
	if e.opts.Process == nil {
		return nil
	}
	return e.opts.Process.Gone()
}

// failed returns err, or, when the engine process has exited (or exits
// within a moment: a connection cut by a dying process fails before the
// exit is seen), the process's error wrapping engine.ErrEngineGone.
func (e *Engine) failed(err error) error {
	if err == nil {
		return nil
	}
	err = named(err)
	if e.opts.Process == nil {
		return err
	}
	select {
	case <-e.opts.Process.Done():
	case <-time.After(200 * time.Millisecond):
		return err
	}
	if g := e.opts.Process.Gone(); g != nil {
		return fmt.Errorf("%w (the call failed: %v)", g, err)
	}
	return err
}

func (e *Engine) settings(extra chgo.Settings) chgo.Settings {
	s := chgo.Settings{}
	if e.opts.ReadOnly {
		s["readonly"] = 2
	}
	if e.opts.Cluster != "" {
		s["insert_distributed_sync"] = 1
		// A subquery over a Distributed table inside IN or JOIN (the
		// catalogue's copies of an event, the page's candidate lookups)
		// runs once, on the server the query came to, and its result
		// goes to every shard (GLOBAL IN / GLOBAL JOIN): copies of one
		// event live in different chains, so on different shards, and a
		// shard-local subquery would miss them.
		s["distributed_product_mode"] = "global"
		// On the other shards a query runs as the user who sent it (the
		// inter-server secret) with that user's own default roles, as
		// before ClickHouse 26 began pushing the sender's active roles
		// instead: pushed roles are lost there when the query is
		// read-only (readonly=2, every investigator's query), and the
		// reader was refused SELECT on the shards' tables. Custody's
		// accounts each hold one role, their default.
		if e.rolesLocal {
			s["push_external_roles_in_interserver_queries"] = 0
		}
	}
	for k, v := range extra {
		s[k] = v
	}
	return s
}

// ctx carries the engine's settings and params (server-side parameters,
// whose names must be identifiers) to clickhouse-go.
func (e *Engine) ctx(ctx context.Context, params engine.Params) (context.Context, error) {
	opts := []chgo.QueryOption{chgo.WithSettings(e.settings(nil))}
	if len(params) > 0 {
		p := chgo.Parameters{}
		for k, v := range params {
			if !engine.IsIdentifier(k) {
				return nil, fmt.Errorf("query parameter name %q is not an identifier", k)
			}
			p[k] = escapeParam(v)
		}
		opts = append(opts, chgo.WithParameters(p))
	}
	return chgo.Context(ctx, opts...), nil
}

// Exec implements engine.Engine.
func (e *Engine) Exec(ctx context.Context, query string, params engine.Params) error {
	if err := e.gone(); err != nil {
		return err
	}
	qctx, err := e.ctx(ctx, params)
	if err != nil {
		return err
	}
	return e.failed(e.conn.Exec(qctx, query))
}

// Query implements engine.Engine.
func (e *Engine) Query(ctx context.Context, query string, params engine.Params) (engine.Rows, error) {
	if err := e.gone(); err != nil {
		return nil, err
	}
	qctx, err := e.ctx(ctx, params)
	if err != nil {
		return nil, err
	}
	rows, err := e.conn.Query(qctx, query)
	if err != nil {
		return nil, e.failed(err)
	}
	return &Rows{rows: rows, e: e}, nil
}

// Close implements engine.Engine.
func (e *Engine) Close(ctx context.Context) error {
	e.insert.Close()
	return e.conn.Close()
}

// escapeParam escapes a parameter value the way ClickHouse parses
// parameter values: as a TabSeparated field (a tab, a newline or a
// backslash in the value would otherwise end or change it).
func escapeParam(s string) string {
	if !strings.ContainsAny(s, "\\\t\n\r\x00") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			b.WriteString(`\\`)
		case '\t':
			b.WriteString(`\t`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case 0:
			b.WriteString(`\0`)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// named adds the name of a server exception's code to err ("code: 115,
// message: ... (UNKNOWN_SETTING)"), as ClickHouse's own clients print it:
// callers recognise a failure by its name, whichever client carried it.
func named(err error) error {
	var code proto.Error
	var ex *chgo.Exception
	var cx *ch.Exception
	switch {
	case errors.As(err, &ex):
		code = proto.Error(ex.Code)
	case errors.As(err, &cx):
		code = cx.Code
	default:
		return err
	}
	name := code.String()
	if strings.HasPrefix(name, "Error(") || strings.Contains(err.Error(), "("+name+")") {
		return err
	}
	return fmt.Errorf("%w (%s)", err, name)
}
