package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/custody-audit/custody/internal/chdbtest"
	"github.com/custody-audit/custody/internal/storetest"
	"github.com/custody-audit/custody/storage"
	"github.com/custody-audit/custody/storage/chdb"
	"github.com/custody-audit/custody/storage/engine"
)

// cliStore is the store of a command-line test on one backend, with the
// signing key pair (k, k.pub) and the checkpoint directory (cp) in dir:
//
//   - storetest.Embedded: the embedded store dir/store (--store), each
//     command connecting as the account the code picks for it;
//   - storetest.Server: a ClickHouse server started apart (internal/chdbtest,
//     with the store's roles and one account per role), which each command
//     reaches as a user would run it: with the DSN of the least-privileged
//     account for the command (commandUser) in a 0600 config file
//     (--config), never on the command line.
type cliStore struct {
	t       *testing.T
	backend storetest.Backend
	dir     string
	server  *chdb.Server // Server backend only
}

// newCLIStore prepares an empty store on b (no keys, not initialized).
func newCLIStore(t *testing.T, b storetest.Backend) *cliStore {
	t.Helper()
	chdbtest.RequireLibrary(t)
	t.Setenv("CUSTODY_CHDB_HOST", chdbtest.HostPath(t))
	s := &cliStore{t: t, backend: b, dir: t.TempDir()}
	if b == storetest.Server {
		s.server = chdbtest.ServerIn(t, filepath.Join(s.dir, "server"), storetest.Access(t, storage.SchemaOptions{}))
	}
	return s
}

// commandUser is the least-privileged account that runs custody args on
// a server (what the README's accounts table gives each command), or ""
// for commands that do not touch the store.
func commandUser(args ...string) string {
	if len(args) == 0 {
		return ""
	}
	switch sub := ""; args[0] {
	case "keygen", "verify-export", "normalize":
		return ""
	case "init":
		return chdb.AdminUser
	case "run", "backfill", "append", "verify", "export":
		return storage.UserCollector
	case "retention", "hold":
		if len(args) > 1 {
			sub = args[1]
		}
		if sub == "apply" || sub == "add" || sub == "release" {
			return storage.UserPurger
		}
	}
	return storage.UserInvestigator
}

// storeYAML is the config file line that reaches the store as user.
func (s *cliStore) storeYAML(user string) string {
	if s.backend == storetest.Server {
		return fmt.Sprintf("clickhouse: %q\n", chdbtest.DSN(s.t, s.server, user))
	}
	return fmt.Sprintf("store: %q\n", filepath.Join(s.dir, "store"))
}

// flags are the global flags for a command run as user: the store (in a
// config file), keys and checkpoints.
func (s *cliStore) flags(user string) []string {
	s.t.Helper()
	base := []string{"--signing-key", filepath.Join(s.dir, "k"), "--verify-key", filepath.Join(s.dir, "k.pub"),
		"--checkpoint-dir", filepath.Join(s.dir, "cp"), "--log-level", "warn"}
	if s.backend == storetest.Embedded {
		return append(base, "--store", filepath.Join(s.dir, "store"))
	}
	if user == "" {
		user = storage.UserInvestigator
	}
	cfg := filepath.Join(s.dir, "store-"+user+".yaml")
	if err := os.WriteFile(cfg, []byte(s.storeYAML(user)), 0o600); err != nil {
		s.t.Fatal(err)
	}
	return append(base, "--config", cfg)
}

// cli runs the real app in this process as commandUser(args...) and
// returns its stdout.
func (s *cliStore) cli(args ...string) (string, error) {
	s.t.Helper()
	return s.cliAs(commandUser(args...), args...)
}

// cliAs is cli as user (on the embedded store the command picks its
// account; user only matters on a server).
func (s *cliStore) cliAs(user string, args ...string) (string, error) {
	s.t.Helper()
	app := newApp()
	var out, errOut bytes.Buffer
	app.Writer, app.ErrWriter = &out, &errOut
	argv := append(append([]string{"custody"}, s.flags(user)...), args...)
	err := app.Run(context.Background(), argv)
	if err != nil || os.Getenv("CUSTODY_TEST_STDERR") != "" {
		s.t.Logf("custody %s: stderr:\n%s", strings.Join(args, " "), errOut.String())
	}
	return out.String(), err
}

// mustCLI is cli failing the test on an error.
func (s *cliStore) mustCLI(args ...string) string {
	s.t.Helper()
	out, err := s.cli(args...)
	if err != nil {
		s.t.Fatalf("custody %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// engine connects to the store with every privilege, for the test's own
// reads and tampering, until the test ends. On the embedded store it
// starts the store's engine, so no command may run until it is closed
// (close).
func (s *cliStore) engine() engine.Engine {
	s.t.Helper()
	if s.backend == storetest.Server {
		return storetest.Connect(s.t, s.server, chdb.AdminUser)
	}
	return chdbtest.Open(s.t, filepath.Join(s.dir, "store"))
}

// count runs single-number queries on a fresh connection and closes it
// (on the embedded store the store must not be in use).
func (s *cliStore) count(queries ...string) []uint64 {
	s.t.Helper()
	eng := s.engine()
	defer eng.Close(context.Background())
	out := make([]uint64, len(queries))
	for i, q := range queries {
		out[i] = queryCount(s.t, eng, q)
	}
	return out
}
