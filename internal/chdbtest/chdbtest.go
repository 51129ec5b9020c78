// Package chdbtest gives tests a real embedded engine: a custody-chdb host
// process running chDB on a temporary store directory, or a private
// ClickHouse server started from libchdb (Server).
package chdbtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custody-audit/custody/storage/chdb"
)

// RepoRoot returns the repository root (the directory holding go.mod).
func RepoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate chdbtest source")
	}
	return filepath.Dir(filepath.Dir(filepath.Dir(file)))
}

// HostPath returns a custody-chdb executable: CUSTODY_CHDB_HOST when set
// (make test builds it once), otherwise one built into the repo cache.
func HostPath(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("CUSTODY_CHDB_HOST"); p != "" {
		return p
	}
	root := RepoRoot(t)
	out := filepath.Join(root, ".cache", "bin", "custody-chdb")
	cmd := exec.Command("go", "build", "-o", out, "./cmd/custody-chdb")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build custody-chdb: %v\n%s", err, b)
	}
	return out
}

// EngineBinary is the official clickhouse binary the harness runs the
// embedded engine from: CUSTODY_ENGINE_BINARY (as for custody itself),
// empty for libchdb. Setting it runs every test that opens an engine here
// on that binary.
func EngineBinary() string { return os.Getenv("CUSTODY_ENGINE_BINARY") }

// ClickHouseBinary returns a `clickhouse` executable for tests of the
// engine's binary path: CUSTODY_ENGINE_BINARY when set (an official
// binary), otherwise internal/chdbtest/clickhouse, which takes the
// official binary's `clickhouse local ARGS` and runs libchdb's
// clickhouse-local with them: CUSTODY_CLICKHOUSE_STANDIN when set (make
// test builds it once, so that test processes never write over an
// executable another one runs), else built into the repo cache.
func ClickHouseBinary(t testing.TB) string {
	t.Helper()
	if p := EngineBinary(); p != "" {
		return p
	}
	if p := os.Getenv("CUSTODY_CLICKHOUSE_STANDIN"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("CUSTODY_CLICKHOUSE_STANDIN: %v (make test-go builds it)", err)
		}
		return p
	}
	root := RepoRoot(t)
	out := filepath.Join(root, ".cache", "bin", "clickhouse")
	cmd := exec.Command("go", "build", "-o", out, "./internal/chdbtest/clickhouse")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the clickhouse stand-in: %v\n%s", err, b)
	}
	return out
}

// RequireLibrary skips the test when libchdb is not installed, unless CI
// is set, where a missing engine is a failure.
func RequireLibrary(t testing.TB) {
	t.Helper()
	if _, err := chdb.FindLibrary(""); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("embedded engine unavailable in CI: %v", err)
		}
		t.Skipf("embedded engine unavailable: %v", err)
	}
}

// Open starts an engine on dir (a new temporary directory when empty) and
// closes it when the test ends.
func Open(t testing.TB, dir string) *chdb.Engine {
	t.Helper()
	RequireLibrary(t)
	if dir == "" {
		dir = t.TempDir()
	}
	e, err := chdb.Open(context.Background(), chdb.Options{Dir: dir, HostPath: HostPath(t), EngineBinary: EngineBinary(), Stderr: os.Stderr})
	if err != nil {
		t.Fatalf("open embedded engine: %v", err)
	}
	t.Cleanup(func() { _ = e.Close(context.Background()) })
	return e
}

// Server starts a private ClickHouse server (custody-chdb --listen, from
// libchdb) on a new temporary store directory with access's roles and
// accounts, and stops it when the test ends. Its admin is chdb.AdminUser
// with the password s.Password(chdb.AdminUser); DSN builds a
// clickhouse-go DSN for any of its users.
func Server(t testing.TB, access chdb.Access) *chdb.Server {
	t.Helper()
	return ServerIn(t, t.TempDir(), access)
}

// ServerIn is Server on the store directory dir.
func ServerIn(t testing.TB, dir string, access chdb.Access) *chdb.Server {
	t.Helper()
	return ServerFrom(t, dir, access, EngineBinary())
}

// ServerFrom is ServerIn with the engine run from the clickhouse
// executable binary (see ClickHouseBinary); empty means libchdb.
func ServerFrom(t testing.TB, dir string, access chdb.Access, binary string) *chdb.Server {
	t.Helper()
	RequireLibrary(t)
	s, err := chdb.StartServer(context.Background(), chdb.ServerOptions{Dir: dir, Access: access, HostPath: HostPath(t), EngineBinary: binary, Stderr: os.Stderr})
	if err != nil {
		t.Fatalf("start embedded server: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = s.Close(ctx)
	})
	return s
}

// DSN is a clickhouse-go DSN reaching s as user with its password.
func DSN(t testing.TB, s *chdb.Server, user string) string {
	t.Helper()
	pw, ok := s.Password(user)
	if !ok {
		t.Fatalf("embedded server has no account %s", user)
	}
	return (&url.URL{Scheme: "clickhouse", User: url.UserPassword(user, pw), Host: s.Addr(), Path: "/"}).String()
}

// Shards starts n private servers (n > 0) that form the cluster name, one
// shard of one replica each, with access's roles and accounts on every
// one (each account with the same password on all), and stops them when
// the test ends. Each server's remote_servers
// names all n on their loopback ports with one inter-server secret, so a
// Distributed table on any of them spreads over all; shard i+1 is the
// server at index i.
func Shards(t testing.TB, name string, n int, access chdb.Access) []*chdb.Server {
	t.Helper()
	RequireLibrary(t)
	// One password per account on every server, as a cluster's servers
	// share their accounts.
	passwords := map[string]string{chdb.AdminUser: newSecret(t)}
	for _, a := range access.Accounts {
		passwords[a.Name] = newSecret(t)
	}
	host := HostPath(t)
	for attempt := 0; ; attempt++ {
		servers, err := startShards(t, name, n, access, passwords, host)
		if err == nil {
			return servers
		}
		// The ports are found free before the servers bind them: another
		// process may take one meanwhile. Try once more with others.
		if attempt > 0 || !strings.Contains(strings.ToLower(err.Error()), "address already in use") {
			t.Fatal(err)
		}
	}
}

// startShards starts the servers of Shards on ports free now; on an error
// it stops those that started.
func startShards(t testing.TB, name string, n int, access chdb.Access, passwords map[string]string, host string) ([]*chdb.Server, error) {
	c := chdb.Cluster{Name: name, Secret: newSecret(t)}
	ports := make([]int, n)
	for i := range ports {
		ports[i] = freePort(t)
		c.Shards = append(c.Shards, chdb.Shard{Replicas: []chdb.Replica{{Host: "127.0.0.1", Port: ports[i]}}})
	}
	servers := make([]*chdb.Server, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range servers {
		dir := t.TempDir()
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			servers[i], errs[i] = chdb.StartServer(context.Background(), chdb.ServerOptions{
				Dir: dir, Access: access, HostPath: host, Stderr: os.Stderr,
				Port: ports[i], Clusters: []chdb.Cluster{c}, Passwords: passwords,
			})
		}(i)
	}
	wg.Wait()
	stop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for _, s := range servers {
			if s != nil {
				_ = s.Close(ctx)
			}
		}
	}
	for i, err := range errs {
		if err != nil {
			stop()
			return nil, fmt.Errorf("start shard %d of cluster %s: %w", i+1, name, err)
		}
	}
	t.Cleanup(stop)
	return servers, nil
}

// freePort returns a loopback port nothing listens on now.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// newSecret returns 32 random bytes in hex.
func newSecret(t testing.TB) string {
	t.Helper()
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b[:])
}
