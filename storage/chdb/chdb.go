// Package chdb is Custody's embedded store: ClickHouse from libchdb
// keeping the trail in a local directory, with no server to install.
//
// The engine runs as a private ClickHouse server (StartServer):
// custody-chdb, the one program that loads libchdb, runs clickhouse-local
// on a free loopback port with the users, roles and quotas it generates in
// the store directory (see access.go for the files and Access for the
// policy), and stops with its owner. With Options.EngineBinary it runs an
// official clickhouse binary's `clickhouse local` as its child instead,
// with the same arguments, config and statements, and libchdb is not
// needed. Open connects Custody's one engine
// implementation, storage/clickhouse, to it over ClickHouse's native
// protocol, exactly as to any server; investigators' own clients
// (clickhouse-client, Grafana) can connect the same way with an account's
// credentials of the run (Credentials, in a 0600 file).
package chdb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/custody-audit/custody/storage/clickhouse"
)

// InstallHint is what a user runs when libchdb is missing.
const InstallHint = "deploy/local/install-libchdb.sh (or `make libchdb`)"

// ErrLibraryMissing means libchdb.so could not be found.
var ErrLibraryMissing = errors.New("libchdb.so not found")

// Options configure the embedded store.
type Options struct {
	// Dir is the store directory. Created (0700) if missing.
	Dir string
	// ReadOnly refuses every write, enforced by ClickHouse (readonly=2).
	ReadOnly bool
	// User is the account to connect as; empty means AdminUser. It must
	// be AdminUser or one of Access's accounts.
	User string
	// Access is the server's roles and accounts (see Access).
	Access Access
	// HostPath is the custody-chdb executable; empty finds it next to the
	// running executable, then on PATH.
	HostPath string
	// LibraryPath is libchdb.so; empty looks in CHDB_LIB_PATH, the user
	// cache the install script uses, then /usr/local/lib. Unused with
	// EngineBinary.
	LibraryPath string
	// EngineBinary is an official clickhouse executable to run the
	// store's server from (`clickhouse local`, same arguments, config and
	// statements) instead of libchdb; empty uses libchdb. See
	// FindEngineBinary.
	EngineBinary string
	// Stderr receives the host's diagnostics; nil writes them to
	// Dir/engine.log.
	Stderr io.Writer
	// Logger receives what is done to the store directory (its
	// permissions tightened); nil logs nothing.
	Logger *slog.Logger
}

// Engine is the embedded store's engine: storage/clickhouse connected to
// the store's private server.
type Engine struct {
	*clickhouse.Engine
	srv     *Server // nil when attached to another process's server
	dir     string
	version string
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

// FindEngineBinary resolves an official clickhouse executable named by a
// path or a name on PATH; empty means none (libchdb runs the engine). It
// does not fall back to libchdb: a store whose owner asked for a binary
// is never silently opened by another engine.
func FindEngineBinary(name string) (string, error) {
	if name == "" {
		return "", nil
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("clickhouse binary for the embedded engine: %w", err)
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("clickhouse binary for the embedded engine: %w", err)
	}
	return abs, nil
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

// Open starts the store's private server and connects to it as
// opts.User. Once the server's host process has exited, every call fails
// with an error wrapping engine.ErrEngineGone.
func Open(ctx context.Context, opts Options) (*Engine, error) {
	srv, err := StartServer(ctx, ServerOptions{
		Dir: opts.Dir, Access: opts.Access, HostPath: opts.HostPath, LibraryPath: opts.LibraryPath,
		EngineBinary: opts.EngineBinary, Stderr: opts.Stderr, Logger: opts.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("open embedded store: %w", err)
	}
	user := opts.User
	if user == "" {
		user = AdminUser
	}
	password, ok := srv.Password(user)
	if !ok {
		_ = srv.Close(ctx)
		return nil, fmt.Errorf("open embedded store: no account %s", user)
	}
	ce, err := clickhouse.Open(ctx, clickhouse.Options{
		Addr: srv.Addr(), User: user, Password: password,
		ReadOnly: opts.ReadOnly, Kind: "chdb", Process: srv,
	})
	if err != nil {
		_ = srv.Close(ctx)
		return nil, fmt.Errorf("open embedded store %s: %w", srv.Dir(), err)
	}
	return &Engine{Engine: ce, srv: srv, dir: srv.Dir(), version: srv.Version()}, nil
}

// Version is the ClickHouse version of the engine.
func (e *Engine) Version() string { return e.version }

// Dir is the store directory.
func (e *Engine) Dir() string { return e.dir }

// Server is the store's private server, nil when attached to another
// process's (Attach).
func (e *Engine) Server() *Server { return e.srv }

// Exited is closed once the store's private server has exited, so an idle
// collector notices a dead engine at once rather than at its next write.
// It is nil (never ready) for an engine attached to another process's
// server, whose calls fail with engine.ErrEngineGone instead.
func (e *Engine) Exited() <-chan struct{} {
	if e.srv == nil {
		return nil
	}
	return e.srv.Done()
}

// Close implements engine.Engine: the connections close, then the server
// stops (when this process started it).
func (e *Engine) Close(ctx context.Context) error {
	cerr := e.Engine.Close(ctx)
	if e.srv == nil {
		return cerr
	}
	if err := e.srv.Close(ctx); err != nil {
		return err
	}
	return cerr
}

// attachWait bounds how long Attach waits for an owner that is still
// starting its server to publish it.
const attachWait = 30 * time.Second

// Attach connects to the server another process runs for the store in
// dir (the one holding its lock), as user, without owning it: Close closes
// only the connections. It is how read-only commands work on a store a
// collector owns.
func Attach(ctx context.Context, dir, user string, readOnly bool) (*Engine, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("resolve store directory: %w", err)
	}
	deadline := time.Now().Add(attachWait)
	var ep Endpoint
	for {
		ep, err = ReadEndpoint(dir)
		if err == nil || !errors.Is(err, ErrNotRunning) || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	if err != nil {
		return nil, fmt.Errorf("attach to the engine of store %s: %w", dir, err)
	}
	creds, err := ReadCredentials(dir)
	if err != nil {
		return nil, fmt.Errorf("attach to the engine of store %s: %w", dir, err)
	}
	if user == "" {
		user = AdminUser
	}
	password, ok := creds.Passwords[user]
	if !ok {
		return nil, fmt.Errorf("attach to the engine of store %s: its owner started it without account %s", dir, user)
	}
	ce, err := clickhouse.Open(ctx, clickhouse.Options{Addr: ep.Addr, User: user, Password: password, ReadOnly: readOnly, Kind: "chdb"})
	if err != nil {
		return nil, fmt.Errorf("attach to the engine of store %s: %w", dir, err)
	}
	return &Engine{Engine: ce, dir: dir, version: ep.ServerVersion}, nil
}
