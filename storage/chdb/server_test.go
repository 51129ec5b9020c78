package chdb_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"

	"github.com/custody-audit/custody/internal/chdbtest"
	"github.com/custody-audit/custody/storage/chdb"
	"github.com/custody-audit/custody/storage/engine"
)

func dial(t *testing.T, s *chdb.Server, user, password string) ch.Conn {
	t.Helper()
	conn, err := ch.Open(&ch.Options{Addr: []string{s.Addr()}, Auth: ch.Auth{Username: user, Password: password}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func admin(t *testing.T, s *chdb.Server) ch.Conn {
	pw, ok := s.Password(chdb.AdminUser)
	if !ok {
		t.Fatal("no admin password")
	}
	return dial(t, s, chdb.AdminUser, pw)
}

func count(t *testing.T, conn ch.Conn, query string) uint64 {
	t.Helper()
	var n uint64
	if err := conn.QueryRow(context.Background(), query).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// engines are the two ways a private server runs: clickhouse-local from
// libchdb inside custody-chdb, and `clickhouse local` from a clickhouse
// binary as its child (here chdbtest's stand-in: the binary's command line
// over libchdb's clickhouse-local, as no official binary can be installed
// on the test machines; an official one with CUSTODY_ENGINE_BINARY).
func engines(t *testing.T) []struct{ name, binary string } {
	return []struct{ name, binary string }{
		{"libchdb", ""},
		{"clickhouse binary", chdbtest.ClickHouseBinary(t)},
	}
}

// TestServerAccess starts a private server and checks who can do what:
// the admin everything, an account its grants only, and a client without
// a password nothing, not even stopping the listener; on both engines.
func TestServerAccess(t *testing.T) {
	chdbtest.RequireLibrary(t)
	for _, e := range engines(t) {
		t.Run(e.name, func(t *testing.T) { testServerAccess(t, e.binary) })
	}
}

func testServerAccess(t *testing.T, binary string) {
	ctx := context.Background()
	access := chdb.Access{
		Roles:    []chdb.Role{{Name: "t_reader", Grants: []string{"SELECT ON d.*"}}},
		Accounts: []chdb.Account{{Name: "reader", Roles: []string{"t_reader"}}, {Name: "nobody"}},
	}
	dir := t.TempDir()
	s := chdbtest.ServerFrom(t, dir, access, binary)
	if !strings.HasPrefix(s.Addr(), "127.0.0.1:") || s.Version() == "" {
		t.Fatalf("server at %q version %q", s.Addr(), s.Version())
	}
	a := admin(t, s)
	for _, q := range []string{
		"CREATE DATABASE d",
		"CREATE TABLE d.t (x UInt64) ENGINE = MergeTree ORDER BY x",
		"INSERT INTO d.t SELECT number FROM numbers(10)",
	} {
		if err := a.Exec(ctx, q); err != nil {
			t.Fatalf("admin: %s: %v", q, err)
		}
	}
	if n := count(t, a, "SELECT count() FROM d.t"); n != 10 {
		t.Fatalf("admin reads %d rows, want 10", n)
	}

	rpw, _ := s.Password("reader")
	r := dial(t, s, "reader", rpw)
	if n := count(t, r, "SELECT count() FROM d.t"); n != 10 {
		t.Fatalf("reader reads %d rows, want 10", n)
	}
	if err := r.Exec(ctx, "INSERT INTO d.t VALUES (1)"); err == nil {
		t.Fatal("reader could insert")
	}
	npw, _ := s.Password("nobody")
	if err := dial(t, s, "nobody", npw).QueryRow(ctx, "SELECT count() FROM d.t").Scan(new(uint64)); err == nil {
		t.Fatal("an account without grants could read")
	}
	if err := dial(t, s, "reader", "wrong").Ping(ctx); err == nil {
		t.Fatal("a wrong password was accepted")
	}
	// Neither a failed login nor a client speaking another protocol stops
	// the engine (clickhouse-local without a terminal would end on both).
	if c, err := net.Dial("tcp", s.Addr()); err == nil {
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		_, _ = c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		_, _ = c.Read(make([]byte, 512))
		c.Close()
	}
	if n := count(t, a, "SELECT count() FROM d.t"); n != 10 || s.Gone() != nil {
		t.Fatalf("after a failed login: %d rows, engine %v", n, s.Gone())
	}

	// The passwordless default account: whoever reaches the port.
	d := dial(t, s, "default", "")
	for _, q := range []string{
		"SYSTEM STOP LISTEN TCP",
		"SYSTEM STOP LISTEN QUERIES ALL",
		"CREATE TABLE d.u (x UInt8) ENGINE = Memory",
		"INSERT INTO d.t VALUES (1)",
		"SELECT count() FROM d.t",
		"SELECT * FROM file('/etc/passwd', 'LineAsString')",
		"SELECT name FROM system.tables",
		"SELECT count() FROM system.numbers LIMIT 10",
		"KILL QUERY WHERE 1 SYNC",
	} {
		if err := d.Exec(ctx, q); err == nil {
			t.Errorf("a client without a password ran %s", q)
		}
	}
	if n := count(t, a, "SELECT count() FROM d.t"); n != 10 {
		t.Fatalf("after the default client: %d rows, want 10", n)
	}

	// Files: the engine directory is its owner's, the passwords too.
	for name, want := range map[string]os.FileMode{
		chdb.EngineDir: 0o700,
		filepath.Join(chdb.EngineDir, chdb.CredentialsFile): 0o600,
		filepath.Join(chdb.EngineDir, "users.xml"):          0o600,
	} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s has mode %v, want %v", name, st.Mode().Perm(), want)
		}
	}
	users, _ := os.ReadFile(filepath.Join(dir, chdb.EngineDir, "users.xml"))
	if strings.Contains(string(users), rpw) {
		t.Error("users.xml holds a password in clear")
	}
	ep, err := chdb.ReadEndpoint(dir)
	if err != nil || ep.Addr != s.Addr() || ep.HostPID != s.PID() {
		t.Fatalf("endpoint %+v, %v; want %s pid %d", ep, err, s.Addr(), s.PID())
	}
	checkEngineProcess(t, dir, ep, binary)
	if _, err := chdb.StartServer(ctx, chdb.ServerOptions{Dir: dir, HostPath: chdbtest.HostPath(t), EngineBinary: binary}); err == nil {
		t.Fatal("a second server started on the same store")
	} else if want := (&chdb.InUseError{Dir: dir, PID: os.Getpid()}).Error(); err.Error() != want {
		t.Fatalf("second server: %v, want %q", err, want)
	}

	// Stopped and started again, the data is there.
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := chdb.ReadEndpoint(dir); !errors.Is(err, chdb.ErrNotRunning) {
		t.Fatalf("endpoint after stop: %v", err)
	}
	s2 := chdbtest.ServerFrom(t, dir, chdb.Access{}, binary)
	if n := count(t, admin(t, s2), "SELECT count() FROM d.t"); n != 10 {
		t.Fatalf("after restart: %d rows, want 10", n)
	}
	if _, ok := s2.Password("reader"); ok {
		t.Fatal("an account of the last run survived into this one")
	}
}

// TestServerDeath kills the engine host: the launcher notices at once.
// First it checks the host got the allocator options.
func TestServerDeath(t *testing.T) {
	s := chdbtest.Server(t, chdb.Access{})
	if err := s.Gone(); err != nil {
		t.Fatalf("running server reports %v", err)
	}
	// The engine runs with Custody's allocator options (see engineEnv).
	environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", s.PID()))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(strings.Split(string(environ), "\x00"), func(kv string) bool {
		return strings.HasPrefix(kv, "JE_MALLOC_CONF=percpu_arena:disabled,")
	}) {
		t.Fatalf("the engine host's environment has no JE_MALLOC_CONF with Custody's options: %q", environ)
	}
	if err := syscall.Kill(s.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the launcher did not notice the host's death")
	}
	err = s.Gone()
	if !errors.Is(err, engine.ErrEngineGone) || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("Gone() = %v, want ErrEngineGone saying it was killed", err)
	}
}

// TestBinaryEngineDeath: with a clickhouse binary, the engine is a process
// of its own. Killed, the host notices and ends, and so the launcher;
// the host killed, the engine ends with it.
func TestBinaryEngineDeath(t *testing.T) {
	chdbtest.RequireLibrary(t)
	binary := chdbtest.ClickHouseBinary(t)
	for _, victim := range []string{"engine", "host"} {
		t.Run(victim, func(t *testing.T) {
			dir := t.TempDir()
			s := chdbtest.ServerFrom(t, dir, chdb.Access{}, binary)
			ep, err := chdb.ReadEndpoint(dir)
			if err != nil {
				t.Fatal(err)
			}
			if ep.EnginePID == 0 || ep.EnginePID == ep.HostPID {
				t.Fatalf("endpoint %+v: want the engine in a process of its own", ep)
			}
			pid := ep.EnginePID
			if victim == "host" {
				pid = ep.HostPID
			}
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			select {
			case <-s.Done():
			case <-time.After(30 * time.Second):
				t.Fatalf("the launcher did not notice the %s's death", victim)
			}
			err = s.Gone()
			if !errors.Is(err, engine.ErrEngineGone) || !strings.Contains(err.Error(), binary+" local") {
				t.Fatalf("Gone() = %v, want ErrEngineGone naming the engine %s local", err, binary)
			}
			if victim == "host" && !strings.Contains(err.Error(), "killed") {
				t.Fatalf("Gone() = %v, want it to say the host was killed", err)
			}
			deadline := time.Now().Add(30 * time.Second)
			for !gone(ep.EnginePID) {
				if time.Now().After(deadline) {
					t.Fatalf("the engine (pid %d) outlived its host", ep.EnginePID)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if _, err := chdb.ReadEndpoint(dir); !errors.Is(err, chdb.ErrNotRunning) {
				t.Fatalf("endpoint of a dead engine: %v", err)
			}
		})
	}
}

// TestStoreDirPermissions: a store directory other users can read is
// restricted to its owner before the engine starts.
func TestStoreDirPermissions(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	chdbtest.ServerIn(t, dir, chdb.Access{})
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o700 {
		t.Fatalf("store directory mode %v, want 0700", st.Mode().Perm())
	}
}

// TestValidateClusters refuses what would make a broken or unsafe
// remote_servers entry, without ever naming the secret.
func TestValidateClusters(t *testing.T) {
	const secret = "0123456789abcdef0123"
	shard := []chdb.Shard{{Replicas: []chdb.Replica{{Host: "127.0.0.1", Port: 9000}}}}
	for _, c := range []struct {
		name     string
		clusters []chdb.Cluster
		err      string
	}{
		{"good", []chdb.Cluster{{Name: "two", Secret: secret, Shards: shard}}, ""},
		{"bad name", []chdb.Cluster{{Name: "a b", Secret: secret, Shards: shard}}, `cluster name "a b" is not an identifier`},
		{"twice", []chdb.Cluster{{Name: "c", Secret: secret, Shards: shard}, {Name: "c", Secret: secret, Shards: shard}}, "cluster c is defined twice"},
		{"no secret", []chdb.Cluster{{Name: "c", Shards: shard}}, "cluster c: the inter-server secret must be at least 16 characters"},
		{"markup in secret", []chdb.Cluster{{Name: "c", Secret: secret + "</secret>", Shards: shard}}, "without markup"},
		{"no shards", []chdb.Cluster{{Name: "c", Secret: secret}}, "cluster c has no shards"},
		{"no replicas", []chdb.Cluster{{Name: "c", Secret: secret, Shards: []chdb.Shard{{}}}}, "cluster c shard 1 has no replicas"},
		{"bad host", []chdb.Cluster{{Name: "c", Secret: secret, Shards: []chdb.Shard{{Replicas: []chdb.Replica{{Host: "<x>", Port: 1}}}}}}, "is not a host name"},
		{"bad port", []chdb.Cluster{{Name: "c", Secret: secret, Shards: []chdb.Shard{{Replicas: []chdb.Replica{{Host: "h", Port: 70000}}}}}}, "port 70000 is not a TCP port"},
	} {
		err := chdb.ValidateClusters(c.clusters)
		if c.err == "" {
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%s: error %v, want %q", c.name, err, c.err)
		}
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Errorf("%s: the error names the secret: %v", c.name, err)
		}
	}
}

// checkEngineProcess checks the process running the engine: with a binary,
// `BINARY local --path=… --config-file=…` as the host's child; with
// libchdb, the host itself. No password of the run is on either's command
// line or in its environment (what ps and /proc show other users).
func checkEngineProcess(t *testing.T, dir string, ep chdb.Endpoint, binary string) {
	t.Helper()
	argv := procStrings(t, ep.EnginePID, "cmdline")
	if binary == "" {
		if ep.EnginePID != ep.HostPID {
			t.Fatalf("libchdb engine runs in pid %d, not in the host %d", ep.EnginePID, ep.HostPID)
		}
	} else {
		if ep.EnginePID == ep.HostPID || ep.EnginePID == 0 {
			t.Fatalf("binary engine pid %d, host pid %d: want a child process", ep.EnginePID, ep.HostPID)
		}
		if ppid := procPPID(t, ep.EnginePID); ppid != ep.HostPID {
			t.Fatalf("engine's parent is %d, want the host %d", ppid, ep.HostPID)
		}
		cfg := filepath.Join(dir, chdb.EngineDir, "config.xml")
		want := []string{binary, "local", "--path=" + filepath.Join(dir, "clickhouse"), "--config-file=" + cfg}
		if len(argv) < len(want) || !slices.Equal(argv[:len(want)], want) {
			t.Fatalf("engine command line %q, want it to start %q", argv, want)
		}
		if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", ep.EnginePID)); err != nil || exe != binary {
			t.Fatalf("engine runs %q (%v), want %s", exe, err, binary)
		}
	}
	creds, err := chdb.ReadCredentials(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, pid := range []int{ep.HostPID, ep.EnginePID} {
		for _, f := range []string{"cmdline", "environ"} {
			got := strings.Join(procStrings(t, pid, f), "\n")
			for user, pw := range creds.Passwords {
				if strings.Contains(got, pw) {
					t.Errorf("pid %d's %s holds %s's password", pid, f, user)
				}
			}
		}
	}
	cfg, err := os.ReadFile(filepath.Join(dir, chdb.EngineDir, "config.xml"))
	if err != nil {
		t.Fatal(err)
	}
	for user, pw := range creds.Passwords {
		if strings.Contains(string(cfg), pw) {
			t.Errorf("config.xml holds %s's password", user)
		}
	}
}

// procStrings reads /proc/pid/name's NUL-separated strings.
func procStrings(t *testing.T, pid int, name string) []string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, name))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
}

// procPPID is pid's parent, from /proc/pid/stat.
func procPPID(t *testing.T, pid int) int {
	t.Helper()
	state, ppid := procState(pid)
	if state == 0 {
		t.Fatalf("no process %d", pid)
	}
	return ppid
}

// procState is pid's state letter and parent (0 when there is no such
// process).
func procState(pid int) (byte, int) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0
	}
	// pid (comm) state ppid …; comm may hold spaces and parentheses.
	rest := string(b[strings.LastIndexByte(string(b), ')')+2:])
	var state byte
	var ppid int
	if _, err := fmt.Sscanf(rest, "%c %d", &state, &ppid); err != nil {
		return 0, 0
	}
	return state, ppid
}

// gone reports whether pid has ended (no process, or a zombie nobody has
// reaped yet).
func gone(pid int) bool {
	state, _ := procState(pid)
	return state == 0 || state == 'Z' || state == 'X'
}

// TestValidatePasswords refuses passwords for unknown accounts and short
// ones, without naming them.
func TestValidatePasswords(t *testing.T) {
	access := chdb.Access{Accounts: []chdb.Account{{Name: "reader"}}}
	long := "0123456789abcdef-long"
	if err := chdb.ValidatePasswords(access, map[string]string{"reader": long, chdb.AdminUser: long}); err != nil {
		t.Fatal(err)
	}
	for _, pw := range []map[string]string{{"nobody": long}, {"reader": "short-secret"}} {
		err := chdb.ValidatePasswords(access, pw)
		if err == nil {
			t.Errorf("%v accepted", pw)
			continue
		}
		for _, p := range pw {
			if strings.Contains(err.Error(), p) {
				t.Errorf("the error names the password: %v", err)
			}
		}
	}
}
