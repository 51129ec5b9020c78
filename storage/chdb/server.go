package chdb

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/custody-audit/custody/storage/engine"
)

// ServerOptions configure a private ClickHouse server for one store.
type ServerOptions struct {
	// Dir is the store directory, created (0700) if missing.
	Dir string
	// Access is the server's roles and accounts beside AdminUser.
	Access Access
	// HostPath is the custody-chdb executable; empty finds it (FindHost).
	HostPath string
	// LibraryPath is libchdb.so; empty finds it (FindLibrary). Unused
	// with EngineBinary.
	LibraryPath string
	// EngineBinary is an official clickhouse executable (a path, or a
	// name looked up on PATH) to run the server from, `clickhouse local`
	// as custody-chdb's child, instead of libchdb; empty uses libchdb.
	EngineBinary string
	// Stderr receives the host's diagnostics; nil appends them to
	// Dir/engine.log.
	Stderr io.Writer
	// Logger receives what the launcher does to the store directory
	// (such as tightening its permissions); nil logs nothing.
	Logger *slog.Logger
	// Port is the loopback port the server listens on; 0 (the default)
	// picks one free at start. Servers that name each other in Clusters
	// need ports known before they start.
	Port int
	// Clusters are the server's remote_servers: the clusters its
	// Distributed tables spread over (see Cluster); none by default.
	Clusters []Cluster
	// Passwords, by account (AdminUser or one of Access's), are used
	// instead of passwords generated at start, so that the servers of a
	// cluster share their accounts as a cluster's servers do (verify
	// connects to each with the same account). They reach the host on
	// its stdin and are kept like generated ones (SHA-256 in users.xml,
	// credentials.json 0600). Nil generates every password.
	Passwords map[string]string
}

// Server is a running private ClickHouse server: custody-chdb running
// clickhouse-local (from libchdb, or an official clickhouse binary) on a
// loopback port, for one store. The process that started it owns the
// store (an exclusive lock on Dir/LOCK, naming its pid) and the server
// ends with it.
type Server struct {
	dir     string
	addr    string
	version string
	engine  string // what runs clickhouse-local, for messages
	creds   Credentials
	cmd     *exec.Cmd
	in      *os.File
	lock    *os.File
	logFile *os.File

	done     chan struct{} // closed once the host has exited
	exitErr  error         // cmd.Wait's result, set before done is closed
	closeMu  sync.Mutex
	closing  bool
	closeErr error
}

// StartServer takes the store's lock, starts custody-chdb in server mode
// and waits until the server accepts connections.
func StartServer(ctx context.Context, opts ServerOptions) (*Server, error) {
	var lib string
	binary, err := FindEngineBinary(opts.EngineBinary)
	if err != nil {
		return nil, err
	}
	if binary == "" {
		if lib, err = FindLibrary(opts.LibraryPath); err != nil {
			return nil, err
		}
	}
	hostPath, err := FindHost(opts.HostPath)
	if err != nil {
		return nil, err
	}
	if err := opts.Access.Validate(); err != nil {
		return nil, fmt.Errorf("embedded server access policy: %w", err)
	}
	if opts.Port < 0 || opts.Port > 65535 {
		return nil, fmt.Errorf("embedded server port %d is not a TCP port", opts.Port)
	}
	if err := ValidateClusters(opts.Clusters); err != nil {
		return nil, fmt.Errorf("embedded server clusters: %w", err)
	}
	if err := ValidatePasswords(opts.Access, opts.Passwords); err != nil {
		return nil, fmt.Errorf("embedded server passwords: %w", err)
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("resolve store directory: %w", err)
	}
	if err := PrepareStoreDir(dir, opts.Logger); err != nil {
		return nil, err
	}
	lock, err := LockStore(dir)
	if err != nil {
		return nil, err
	}
	var s *Server
	for attempt := 0; ; attempt++ {
		s, err = startHost(ctx, dir, hostPath, lib, binary, opts)
		// A port found free can be taken before the engine binds it:
		// try once more with another (a port given is the only one).
		if err == nil || attempt > 0 || opts.Port != 0 || !strings.Contains(strings.ToLower(err.Error()), "address already in use") {
			break
		}
	}
	if err != nil {
		lock.Close()
		return nil, err
	}
	s.lock = lock
	return s, nil
}

func startHost(ctx context.Context, dir, hostPath, lib, binary string, opts ServerOptions) (*Server, error) {
	s := &Server{dir: dir, engine: "libchdb " + lib, done: make(chan struct{})}
	if binary != "" {
		s.engine = binary + " local"
	}
	stderr := opts.Stderr
	if stderr == nil {
		f, err := os.OpenFile(filepath.Join(dir, "engine.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			return nil, fmt.Errorf("open engine log: %w", err)
		}
		s.logFile = f
		stderr = f
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		s.closeLog()
		return nil, fmt.Errorf("engine stdin: %w", err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		s.closeLog()
		return nil, fmt.Errorf("engine stdout: %w", err)
	}
	args := []string{"--store", dir}
	env := engineEnv(os.Environ())
	if binary != "" {
		args = append(args, "--clickhouse-binary", binary)
	} else {
		env = append(env, "CHDB_LIB_PATH="+lib)
	}
	cmd := exec.Command(hostPath, args...)
	cmd.Env = env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, stderr
	// The engine must not outlive its owner: if custody is killed, so is
	// the engine, exactly as an in-process engine would be.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	err = cmd.Start()
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		s.closeLog()
		return nil, fmt.Errorf("start engine host %s: %w", hostPath, err)
	}
	s.cmd, s.in = cmd, inW
	go func() {
		s.exitErr = cmd.Wait()
		// The host removes it when it stops as asked; after a crash its
		// owner does, so that nobody tries a dead address.
		_ = os.Remove(filepath.Join(dir, EngineDir, EndpointFile))
		close(s.done)
	}()

	spec, _ := json.Marshal(HostSpec{Access: opts.Access, Port: opts.Port, Clusters: opts.Clusters, Passwords: opts.Passwords})
	if _, err := inW.Write(append(spec, '\n')); err != nil {
		s.kill()
		outR.Close()
		return nil, fmt.Errorf("send engine server spec: %w", err)
	}
	readyc := make(chan HostReady, 1)
	go func() {
		defer outR.Close()
		r := bufio.NewReader(outR)
		line, err := r.ReadBytes('\n')
		var h HostReady
		if err != nil {
			h.Error = fmt.Sprintf("engine host exited during start (see %s)", s.logPath())
		} else if err := json.Unmarshal(line, &h); err != nil {
			h.Error = fmt.Sprintf("engine host answered %q at start", strings.TrimSpace(string(line)))
		}
		readyc <- h
		_, _ = io.Copy(io.Discard, r)
	}()
	var h HostReady
	select {
	case h = <-readyc:
	case <-ctx.Done():
		s.kill()
		return nil, fmt.Errorf("start embedded server for %s: %w", dir, ctx.Err())
	}
	if h.Error != "" {
		s.kill()
		return nil, fmt.Errorf("start embedded server for %s: %s", dir, h.Error)
	}
	s.addr, s.version = h.Addr, h.ServerVersion
	creds, err := ReadCredentials(dir)
	if err != nil {
		s.kill()
		return nil, err
	}
	s.creds = creds
	return s, nil
}

// allocatorConf is the engine's jemalloc configuration (libchdb's, and an
// official binary's, both read JE_MALLOC_CONF when they start). ClickHouse
// builds in percpu_arena:percpu and dirty_decay_ms:5000: a thread takes its
// memory from the arena of the CPU it runs on, and freed pages go back to
// the kernel within seconds. An insert's ~100 MB of column buffers then
// lands in fresh pages whenever its thread runs on another CPU than the
// last insert's, or after a pause: two thirds of the engine's page faults
// in a backfill (a first touch costs ~3-4 µs here). With arenas per thread
// (percpu_arena:disabled, four per CPU as jemalloc's default) and freed
// pages kept 30 s, the next insert reuses them: ~40% fewer page faults
// and ~35 MB less peak memory in the engine (see README.md, Benchmarks).
// An idle engine still returns them after 30 s.
const allocatorConf = "percpu_arena:disabled,dirty_decay_ms:30000"

// engineEnv is environ for the engine host: JE_MALLOC_CONF is
// allocatorConf followed by whatever the user set in it (jemalloc applies
// options in order, so the user's still win).
func engineEnv(environ []string) []string {
	conf := allocatorConf
	env := make([]string, 0, len(environ)+1)
	for _, kv := range environ {
		if v, ok := strings.CutPrefix(kv, "JE_MALLOC_CONF="); ok {
			if v != "" {
				conf += "," + v
			}
			continue
		}
		env = append(env, kv)
	}
	return append(env, "JE_MALLOC_CONF="+conf)
}

func (s *Server) logPath() string {
	if s.logFile != nil {
		return s.logFile.Name()
	}
	return "its stderr"
}

func (s *Server) closeLog() {
	if s.logFile != nil {
		_ = s.logFile.Close()
	}
}

// kill ends the host at once and waits for it.
func (s *Server) kill() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	if s.in != nil {
		_ = s.in.Close()
	}
	s.closeLog()
}

// Addr is the server's native-protocol address (127.0.0.1:port).
func (s *Server) Addr() string { return s.addr }

// Version is the server's ClickHouse version.
func (s *Server) Version() string { return s.version }

// Dir is the store directory.
func (s *Server) Dir() string { return s.dir }

// PID is the engine host's process id.
func (s *Server) PID() int { return s.cmd.Process.Pid }

// Password returns user's password for this run of the server.
func (s *Server) Password(user string) (string, bool) {
	p, ok := s.creds.Passwords[user]
	return p, ok
}

// Done is closed when the engine host has exited, however it ended.
func (s *Server) Done() <-chan struct{} { return s.done }

// Gone returns nil while the engine host runs. Once it has exited it
// returns an error wrapping engine.ErrEngineGone saying how it ended, or
// engine.ErrClosed after Close.
func (s *Server) Gone() error {
	select {
	case <-s.done:
	default:
		return nil
	}
	s.closeMu.Lock()
	closing := s.closing
	s.closeMu.Unlock()
	if closing {
		return engine.ErrClosed
	}
	return fmt.Errorf("%w: custody-chdb (pid %d, engine %s) serving %s ended: %s (see %s)", engine.ErrEngineGone, s.cmd.Process.Pid, s.engine, s.dir, s.exitStatus(), s.logPath())
}

// exitStatus describes how the host ended; only after done is closed.
func (s *Server) exitStatus() string {
	if s.exitErr == nil {
		return "exit status 0"
	}
	return s.exitErr.Error()
}

// Close stops the server: the host cancels its serving statement and
// clickhouse-local shuts down cleanly; when ctx ends first it is killed.
// The store lock is released last.
func (s *Server) Close(ctx context.Context) error {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.closing {
		return s.closeErr
	}
	s.closing = true
	select {
	case <-s.done:
		s.closeErr = fmt.Errorf("%w: custody-chdb (pid %d) had already ended: %s", engine.ErrEngineGone, s.cmd.Process.Pid, s.exitStatus())
	default:
		_ = s.in.Close()
		select {
		case <-s.done:
			if s.exitErr != nil {
				s.closeErr = fmt.Errorf("stop embedded server: %w (see %s)", s.exitErr, s.logPath())
			}
		case <-ctx.Done():
			_ = s.cmd.Process.Kill()
			<-s.done
			s.closeErr = fmt.Errorf("stop embedded server: killed: %w", ctx.Err())
		}
	}
	s.closeLog()
	if s.lock != nil {
		_ = s.lock.Close()
	}
	return s.closeErr
}

// lockFile is the store's lock, held by the process that owns the store
// (the one that started its engine).
const lockFile = "LOCK"

// LockStore takes the store's exclusive, non-blocking lock (a flock on
// dir/LOCK) and writes this process's pid into it. The lock dies with the
// process, so a killed collector never leaves a stale one.
func LockStore(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open store lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, &InUseError{Dir: dir, PID: LockOwner(dir)}
		}
		return nil, fmt.Errorf("lock store %s: %w", dir, err)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(fmt.Sprintf("pid %d\n", os.Getpid())), 0)
	_ = f.Sync()
	return f, nil
}

// LockOwner returns the pid written in the store's lock file, or 0.
func LockOwner(dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, lockFile))
	if err != nil {
		return 0
	}
	var pid int
	if _, err := fmt.Sscanf(string(b), "pid %d", &pid); err != nil {
		return 0
	}
	return pid
}

// InUseError means another process owns the store.
type InUseError struct {
	Dir string
	PID int // 0 when unknown
}

func (e *InUseError) Error() string {
	if e.PID == 0 {
		return fmt.Sprintf("store %s is in use by another custody process", e.Dir)
	}
	return fmt.Sprintf("store %s is in use by custody process %d", e.Dir, e.PID)
}

// PrepareStoreDir creates the store directory (0700) or, when it exists
// with permissions for group or others, restricts it to its owner and logs
// that: the store holds the evidence and the engine's credentials.
func PrepareStoreDir(dir string, log *slog.Logger) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create store directory: %w", err)
	}
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("store directory: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("store %s is not a directory", dir)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		if err := os.Chmod(dir, perm&0o700|0o700); err != nil {
			return fmt.Errorf("store directory %s is accessible to other users (%v) and cannot be restricted: %w", dir, perm, err)
		}
		if log != nil {
			log.Warn("store directory was accessible to other users: restricted it to its owner", "dir", dir, "was", perm.String(), "now", "drwx------")
		}
	}
	return nil
}
