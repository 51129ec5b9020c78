// Package chdb is Custody's embedded engine: ClickHouse (chDB) keeping a
// store in a local directory, with no server to run.
//
// StartServer runs the engine as a private ClickHouse server: custody-chdb
// runs clickhouse-local from libchdb on a free loopback port, with users,
// roles and quotas it generates in the store directory (see access.go for
// the files and Access for the policy), and stops with its owner. Clients
// reach it over ClickHouse's native protocol with the credentials of one
// run (Credentials, in a 0600 file).
//
// The engine itself runs in a child process, custody-chdb (see
// storage/chdb/host for why), that this package starts, feeds and stops.
// Query results stream back as ClickHouse Native blocks, decoded here
// column by column (TabSeparated for the few column types with no decoder;
// see native_read.go); inserts are written as one Native block to a spool
// file in the store directory and loaded with INSERT ... SELECT FROM
// file(), which keeps bulk loads at engine speed and binary-exact.
package chdb

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/custody-audit/custody/storage/engine"
)

// InstallHint is what a user runs when libchdb is missing.
const InstallHint = "deploy/local/install-libchdb.sh (or `make libchdb`)"

// ErrLibraryMissing means libchdb.so could not be found.
var ErrLibraryMissing = errors.New("libchdb.so not found")

// Options configure the embedded engine.
type Options struct {
	// Dir is the store directory. Created if missing.
	Dir string
	// ReadOnly refuses every write, enforced by ClickHouse (readonly=2).
	ReadOnly bool
	// HostPath is the custody-chdb executable; empty finds it next to the
	// running executable, then on PATH.
	HostPath string
	// LibraryPath is libchdb.so; empty looks in CHDB_LIB_PATH, the user
	// cache the install script uses, then /usr/local/lib.
	LibraryPath string
	// Stderr receives the host's diagnostics; nil writes them to
	// Dir/engine.log.
	Stderr io.Writer
}

// Engine is a running embedded engine. It is safe for concurrent use;
// requests are serialized because chDB runs one session per process.
type Engine struct {
	mu      sync.Mutex // serializes requests on the pipe
	cmd     *exec.Cmd
	in      io.WriteCloser
	w       *bufio.Writer
	r       *bufio.Reader
	version string
	dir     string
	spool   string
	logFile *os.File
	closed  bool
	waitErr chan error
	// exited is closed once the host process has exited; exitErr is then
	// its exit status. Every call after that fails with
	// engine.ErrEngineGone.
	exited  chan struct{}
	exitErr error
	// Blocks and spool writers are recycled: a batch of 1.2 KB rows is
	// tens of megabytes, and growing fresh buffers for each one (zeroed
	// and faulted in page by page) costs more CPU than encoding it.
	// (A sync.Pool would be emptied by the very garbage collections that
	// big batches trigger, so these are plain free lists.)
	freeMu      sync.Mutex
	freeWriters []*bufio.Writer
	free        map[string][]*nativeBlock // by table
}

// keepFree is how many spare buffers of each kind the engine keeps.
const keepFree = 2

func (e *Engine) getBlock(table string, columns []engine.Column) (*nativeBlock, error) {
	e.freeMu.Lock()
	l := e.free[table]
	if n := len(l); n > 0 && l[n-1].sameColumns(columns) {
		b := l[n-1]
		e.free[table] = l[:n-1]
		e.freeMu.Unlock()
		return b, nil
	}
	e.freeMu.Unlock()
	return newNativeBlock(columns)
}

func (e *Engine) putBlock(table string, b *nativeBlock) {
	b.reset()
	e.freeMu.Lock()
	defer e.freeMu.Unlock()
	if e.free == nil {
		e.free = map[string][]*nativeBlock{}
	}
	if len(e.free[table]) < keepFree {
		e.free[table] = append(e.free[table], b)
	}
}

func (e *Engine) getWriter(f *os.File) *bufio.Writer {
	e.freeMu.Lock()
	defer e.freeMu.Unlock()
	if n := len(e.freeWriters); n > 0 {
		w := e.freeWriters[n-1]
		e.freeWriters = e.freeWriters[:n-1]
		w.Reset(f)
		return w
	}
	return bufio.NewWriterSize(f, 1<<20)
}

func (e *Engine) putWriter(w *bufio.Writer) {
	w.Reset(nil)
	e.freeMu.Lock()
	defer e.freeMu.Unlock()
	if len(e.freeWriters) < keepFree {
		e.freeWriters = append(e.freeWriters, w)
	}
}

// FindLibrary returns the libchdb.so to use, or ErrLibraryMissing.
func FindLibrary(explicit string) (string, error) {
	candidates := []string{explicit, os.Getenv("CHDB_LIB_PATH")}
	if cache, err := os.UserCacheDir(); err == nil {
		candidates = append(candidates, filepath.Join(cache, "custody", "libchdb", "libchdb.so"))
	}
	candidates = append(candidates, "/usr/local/lib/libchdb.so")
	return firstLibrary(candidates)
}

// firstLibrary returns the first existing file of candidates.
func firstLibrary(candidates []string) (string, error) {
	for _, c := range candidates {
		if c == "" {
			continue
		}
		if st, err := os.Stat(c); err == nil && !st.IsDir() {
			return c, nil
		}
	}
	return "", fmt.Errorf("%w (looked in CHDB_LIB_PATH, the user cache and /usr/local/lib): install it with %s, or use a ClickHouse server with --clickhouse", ErrLibraryMissing, InstallHint)
}

// FindHost returns the custody-chdb executable to start.
func FindHost(explicit string) (string, error) {
	if explicit != "" {
		return explicit, nil
	}
	if env := os.Getenv("CUSTODY_CHDB_HOST"); env != "" {
		return env, nil
	}
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "custody-chdb")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath("custody-chdb"); err == nil {
		return p, nil
	}
	return "", errors.New("custody-chdb (the embedded engine host) not found next to custody or on PATH: build it with `make build` or set CUSTODY_CHDB_HOST")
}

// Open starts the engine host for opts.Dir and waits until it is ready.
func Open(ctx context.Context, opts Options) (*Engine, error) {
	lib, err := FindLibrary(opts.LibraryPath)
	if err != nil {
		return nil, err
	}
	hostPath, err := FindHost(opts.HostPath)
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("resolve store directory: %w", err)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("create store directory: %w", err)
	}
	e := &Engine{dir: dir, spool: filepath.Join(dir, "spool"), waitErr: make(chan error, 1), exited: make(chan struct{})}
	stderr := opts.Stderr
	if stderr == nil {
		f, err := os.OpenFile(filepath.Join(dir, "engine.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640)
		if err != nil {
			return nil, fmt.Errorf("open engine log: %w", err)
		}
		e.logFile = f
		stderr = f
	}
	args := []string{"--store", dir}
	if opts.ReadOnly {
		args = append(args, "--read-only")
	}
	cmd := exec.Command(hostPath, args...)
	cmd.Env = append(os.Environ(), "CHDB_LIB_PATH="+lib)
	cmd.Stderr = stderr
	// The host must not outlive us: if custody is killed, so is the
	// engine, exactly as an in-process engine would be.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("engine stdin: %w", err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("engine stdout: %w", err)
	}
	if err := cmd.Start(); err != nil {
		e.closeLog()
		return nil, fmt.Errorf("start engine host %s: %w", hostPath, err)
	}
	e.cmd, e.in = cmd, in
	e.w = bufio.NewWriterSize(in, 1<<16)
	e.r = bufio.NewReaderSize(out, 1<<20)
	go func() {
		err := cmd.Wait()
		e.exitErr = err
		close(e.exited)
		e.waitErr <- err
	}()

	ready := make(chan error, 1)
	go func() {
		op, err := e.r.ReadByte()
		if err != nil {
			ready <- fmt.Errorf("engine host exited during start (see %s): %w", filepath.Join(dir, "engine.log"), err)
			return
		}
		msg, err := ReadField(e.r, nil)
		if err != nil {
			ready <- fmt.Errorf("read engine handshake: %w", err)
			return
		}
		switch op {
		case opReady:
			e.version = string(msg)
			ready <- nil
		case opError:
			ready <- errors.New(string(msg))
		default:
			ready <- fmt.Errorf("unexpected engine handshake %q", op)
		}
	}()
	select {
	case err := <-ready:
		if err != nil {
			_ = e.kill()
			return nil, fmt.Errorf("open embedded store %s: %w", dir, err)
		}
	case <-ctx.Done():
		_ = e.kill()
		return nil, ctx.Err()
	}
	if !opts.ReadOnly {
		// Spool files of a crashed run were never loaded (the insert is
		// what makes them durable), so they are safe to discard.
		_ = os.RemoveAll(e.spool)
		if err := os.MkdirAll(e.spool, 0o750); err != nil {
			_ = e.kill()
			return nil, fmt.Errorf("create spool directory: %w", err)
		}
	}
	return e, nil
}

// Version is the ClickHouse version of the engine.
func (e *Engine) Version() string { return e.version }

// Kind implements engine.Engine.
func (e *Engine) Kind() string { return "chdb" }

// Dir is the store directory.
func (e *Engine) Dir() string { return e.dir }

func (e *Engine) closeLog() {
	if e.logFile != nil {
		_ = e.logFile.Close()
	}
}

func (e *Engine) kill() error {
	if e.cmd != nil && e.cmd.Process != nil {
		_ = e.cmd.Process.Kill()
		<-e.waitErr
	}
	e.closeLog()
	return nil
}

// Close stops the host, letting it close the chDB session cleanly.
func (e *Engine) Close(ctx context.Context) error {
	if !e.mu.TryLock() {
		// A Rows was left open: the pipe is mid-reply, so the host
		// cannot be asked to stop; it is killed instead.
		e.closed = true
		_ = e.kill()
		return errors.New("engine closed with a query result still open")
	}
	defer e.mu.Unlock()
	if e.closed {
		return nil
	}
	e.closed = true
	_ = e.in.Close()
	var err error
	select {
	case err = <-e.waitErr:
	case <-ctx.Done():
		_ = e.cmd.Process.Kill()
		err = <-e.waitErr
	}
	e.closeLog()
	if err != nil {
		return fmt.Errorf("engine host exit: %w", err)
	}
	return nil
}

// Exited is closed once the engine host process has exited, for whatever
// reason (Close, a crash, a kill). A collector watches it to know at once
// that its store is gone.
func (e *Engine) Exited() <-chan struct{} { return e.exited }

// goneWait bounds how long a failed pipe read or write waits for the host
// to be reaped before the failure is judged: a host that died closes the
// pipe a moment before its exit status is known.
const goneWait = 2 * time.Second

// gone turns a failure to talk to the host into engine.ErrEngineGone when
// the host has exited (a kill, a crash): nothing sent to this Engine can
// succeed again. Engine errors (*QueryError) and failures of a host that
// is still running are returned as they are.
func (e *Engine) gone(err error) error {
	if err == nil || errors.Is(err, engine.ErrEngineGone) {
		return err
	}
	var qe *QueryError
	if errors.As(err, &qe) {
		return err
	}
	select {
	case <-e.exited:
	case <-time.After(goneWait):
		return err
	}
	return e.goneErr(err)
}

func (e *Engine) goneErr(cause error) error {
	status := "exited"
	if e.exitErr != nil {
		status = e.exitErr.Error()
	}
	if cause == nil {
		return fmt.Errorf("embedded engine host for %s (%s): %w", e.dir, status, engine.ErrEngineGone)
	}
	return fmt.Errorf("embedded engine host for %s (%s): %w: %w", e.dir, status, engine.ErrEngineGone, cause)
}

// send writes one request to the host; the caller reads the reply.
func (e *Engine) send(op byte, query string, params engine.Params) error {
	if e.closed {
		return engine.ErrClosed
	}
	select {
	case <-e.exited:
		return e.goneErr(nil)
	default:
	}
	if err := WriteRequest(e.w, op, query, params); err != nil {
		return e.gone(fmt.Errorf("send request to engine host: %w", err))
	}
	return nil
}

// readReply reads frames until the end of one reply, passing data chunks
// to onData.
func (e *Engine) readReply(onData func([]byte) error) error {
	var buf []byte
	var dataErr error
	for {
		var end bool
		var err error
		buf, end, err = readFrame(e.r, buf[:0])
		if end {
			if err != nil {
				return err
			}
			return dataErr
		}
		if dataErr == nil && onData != nil {
			dataErr = onData(buf)
		}
	}
}

// QueryError is an error reported by the ClickHouse engine.
type QueryError struct{ Message string }

func (q *QueryError) Error() string { return q.Message }

// Exec implements engine.Engine.
func (e *Engine) Exec(ctx context.Context, query string, params engine.Params) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.send(opExec, query, params); err != nil {
		return err
	}
	return e.gone(e.readReply(nil))
}

// Query implements engine.Engine. Results are streamed chunk by chunk
// while the caller holds the engine, as Native blocks where every column
// type allows (decoded straight into the scan destinations, see
// native_read.go) and as TabSeparated text otherwise; both scan the same.
func (e *Engine) Query(ctx context.Context, query string, params engine.Params) (engine.Rows, error) {
	return e.query(ctx, opQueryBinary, query, params)
}

// PrepareBatch implements engine.Engine.
func (e *Engine) PrepareBatch(ctx context.Context, table string, columns []engine.Column) (engine.Batch, error) {
	if !IsIdentifier(table) && !isQualified(table) {
		return nil, fmt.Errorf("table name %q is not an identifier", table)
	}
	for _, c := range columns {
		if !IsIdentifier(c.Name) {
			return nil, fmt.Errorf("column name %q is not an identifier", c.Name)
		}
	}
	block, err := e.getBlock(table, columns)
	if err != nil {
		return nil, fmt.Errorf("prepare insert into %s: %w", table, err)
	}
	return &Batch{e: e, table: table, columns: columns, block: block}, nil
}

func isQualified(name string) bool {
	db, t, ok := strings.Cut(name, ".")
	return ok && IsIdentifier(db) && IsIdentifier(t)
}

// Batch accumulates rows for one insert, column by column (Native format).
type Batch struct {
	e       *Engine
	table   string
	columns []engine.Column
	block   *nativeBlock
}

// Append implements engine.Batch.
func (b *Batch) Append(values ...any) error {
	if len(values) != len(b.columns) {
		return fmt.Errorf("append to %s: %d values for %d columns", b.table, len(values), len(b.columns))
	}
	if b.block == nil {
		block, err := b.e.getBlock(b.table, b.columns)
		if err != nil {
			return err
		}
		b.block = block
	}
	if err := b.block.append(values); err != nil {
		return fmt.Errorf("append to %s: %w", b.table, err)
	}
	return nil
}

// Rows implements engine.Batch.
func (b *Batch) Rows() int {
	if b.block == nil {
		return 0
	}
	return b.block.rows
}

// Abort implements engine.Batch.
func (b *Batch) Abort() error {
	b.reset()
	return nil
}

// reset empties the batch; its buffers go back to the engine for the next
// batch into the same table.
func (b *Batch) reset() {
	if b.block != nil {
		b.e.putBlock(b.table, b.block)
		b.block = nil
	}
}

// Send implements engine.Batch: the rows go to a spool file (one Native
// block) that one INSERT ... SELECT FROM file() loads as a single part, so
// the batch is stored whole or not at all.
func (b *Batch) Send(ctx context.Context, dedupToken string) error {
	if b.Rows() == 0 {
		return nil
	}
	var name [8]byte
	_, _ = rand.Read(name[:])
	path := filepath.Join(b.e.spool, hex.EncodeToString(name[:])+".native")
	if err := b.writeSpool(path); err != nil {
		_ = os.Remove(path)
		return err
	}
	defer os.Remove(path)
	var cols strings.Builder
	for i, c := range b.columns {
		if i > 0 {
			cols.WriteString(", ")
		}
		cols.WriteString(c.Name)
	}
	// max_insert_threads=1 and the block size settings keep the batch one
	// part, stored whole or not at all.
	//
	// The deduplication token is checked but not handed to the engine:
	// insert deduplication makes ClickHouse hash every inserted byte (about
	// 1.4 µs of engine CPU per 1.2 KB row here, a fifth of the insert), and
	// the embedded engine has no use for it. Its host runs one statement at
	// a time and answers only once the statement has finished, so a Send
	// that returned an error stored nothing, and one cut short by a dying
	// host leaves an engine that refuses everything until the store is
	// reopened, when the store reads back what is there. What a server
	// needs tokens for, an insert still running after the client gave up
	// on it, cannot happen here.
	if dedupToken != "" && !isToken(dedupToken) {
		return fmt.Errorf("deduplication token %q must be letters, digits, - or _", dedupToken)
	}
	settings := "max_insert_threads = 1, min_insert_block_size_rows = 0, min_insert_block_size_bytes = 0, max_insert_block_size = 100000000, max_block_size = 100000000, input_format_parallel_parsing = 0, insert_deduplicate = 0"
	query := fmt.Sprintf("INSERT INTO %s (%s) SETTINGS %s SELECT * FROM file(%s, 'Native')",
		b.table, cols.String(), settings, QuoteString(path))
	if err := b.e.Exec(ctx, query, nil); err != nil {
		return fmt.Errorf("insert %d rows into %s: %w", b.block.rows, b.table, err)
	}
	b.reset()
	return nil
}

// writeSpool writes the batch's block to a new spool file.
func (b *Batch) writeSpool(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("write spool file: %w", err)
	}
	w := b.e.getWriter(f)
	defer b.e.putWriter(w)
	if err := b.block.writeTo(w); err != nil {
		f.Close()
		return fmt.Errorf("write spool file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write spool file: %w", err)
	}
	return nil
}

func isToken(s string) bool {
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '_') {
			return false
		}
	}
	return len(s) > 0 && len(s) <= 128
}
