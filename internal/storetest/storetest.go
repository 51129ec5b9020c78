// Package storetest gives tests a real, initialised, signing store: schema
// migrated, a fresh signing key pair, a checkpoint directory. A store runs
// on one of two backends (Backends): the embedded store, or a separately
// started ClickHouse server reached over the network the way --clickhouse
// reaches one; Run runs a test on each.
package storetest

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/custody-audit/custody/internal/chdbtest"
	"github.com/custody-audit/custody/storage"
	"github.com/custody-audit/custody/storage/chdb"
	"github.com/custody-audit/custody/storage/clickhouse"
	"github.com/custody-audit/custody/storage/engine"
)

// Backend names where a test's store runs.
type Backend string

const (
	// Embedded is the embedded store (what --store opens).
	Embedded Backend = "embedded"
	// Server is a ClickHouse server started apart from the store (a
	// private server from libchdb with the store's roles and accounts),
	// reached with a clickhouse:// DSN as its admin, as --clickhouse does.
	Server Backend = "server"
	// Shards is a cluster of two servers (ClusterName), one shard of one
	// replica each, with the trail's tables as plain MergeTree tables on
	// each (storage.SchemaOptions.Unreplicated: replicated tables need
	// Keeper, which libchdb lacks) and Distributed tables in front on
	// both, sharded by chain. The store is reached through the first
	// server as its admin, with synchronous Distributed inserts. Not in
	// Backends: tests ask for it by name.
	Shards Backend = "shards"
)

// ClusterName is the cluster of the Shards backend.
const ClusterName = "custody_shards"

// Schema is the schema backend b's store is created with.
func Schema(b Backend) storage.SchemaOptions {
	if b == Shards {
		return storage.SchemaOptions{Cluster: ClusterName, Unreplicated: true}
	}
	return storage.SchemaOptions{}
}

// Backends are every backend, in the order Run runs them.
func Backends() []Backend { return []Backend{Embedded, Server} }

// Run runs test once per backend, as subtests named by the backend.
func Run(t *testing.T, test func(t *testing.T, b Backend)) {
	t.Helper()
	for _, b := range Backends() {
		t.Run(string(b), func(t *testing.T) { test(t, b) })
	}
}

// Fixture is an open store and what it was made with.
type Fixture struct {
	Backend Backend
	// Eng is the store's engine, connected with every privilege (tests
	// tamper through it).
	Eng           engine.Engine
	Store         *storage.Store
	Signer        note.Signer
	Verifier      note.Verifier
	CheckpointDir string
	// Server is the server of the Server backend, the first of Servers
	// on Shards (nil on Embedded).
	Server *chdb.Server
	// Servers are the Shards backend's servers, shard 1 first.
	Servers []*chdb.Server
	// Schema is what the store was created with (Schema(Backend)).
	Schema storage.SchemaOptions
	// DialShard reaches the Shards backend's servers as the admin (for
	// storage.Options.DialShard); nil on the others.
	DialShard func(ctx context.Context, host string, port int) (engine.Engine, error)
}

// New opens a fresh store on the embedded backend; actor names the test
// in the custody log.
func New(t testing.TB, actor string) *Fixture {
	t.Helper()
	return NewOn(t, actor, Embedded)
}

// NewOn opens a fresh store on backend b.
func NewOn(t testing.TB, actor string, b Backend) *Fixture {
	t.Helper()
	ctx := context.Background()
	f := &Fixture{Backend: b, CheckpointDir: t.TempDir(), Schema: Schema(b)}
	if b == Shards {
		f.Servers = chdbtest.Shards(t, ClusterName, 2, Access(t, f.Schema))
		f.Server = f.Servers[0]
		// Without replication nothing runs ON CLUSTER: every server gets
		// its local tables and Distributed tables from its own migration.
		for _, s := range f.Servers {
			if _, err := storage.Migrate(ctx, Connect(t, s, chdb.AdminUser), f.Schema, actor); err != nil {
				t.Fatalf("migrate shard %s: %v", s.Addr(), err)
			}
		}
		f.Eng = ConnectCluster(t, f.Server, chdb.AdminUser)
		f.DialShard = DialShard(f.Servers, chdb.AdminUser)
	} else {
		f.Eng, f.Server = Engine(t, b)
		if _, err := storage.Migrate(ctx, f.Eng, f.Schema, actor); err != nil {
			t.Fatal(err)
		}
	}
	f.Signer, f.Verifier = Keys(t, actor)
	st, err := storage.Open(ctx, f.Eng, storage.Options{Signer: f.Signer, CheckpointDir: f.CheckpointDir, Actor: actor, Schema: f.Schema, DialShard: f.DialShard})
	if err != nil {
		t.Fatal(err)
	}
	f.Store = st
	return f
}

// Engine opens an engine with every privilege on a fresh, empty store on
// backend b, closed when the test ends; on Server it also returns the
// server.
func Engine(t testing.TB, b Backend) (engine.Engine, *chdb.Server) {
	t.Helper()
	switch b {
	case Embedded:
		return chdbtest.Open(t, ""), nil
	case Server:
		s := chdbtest.Server(t, Access(t, storage.SchemaOptions{}))
		return Connect(t, s, chdb.AdminUser), s
	}
	t.Fatalf("unknown backend %q", b)
	return nil, nil
}

// Connect opens a clickhouse-go engine to s as user, closed when the test
// ends.
func Connect(t testing.TB, s *chdb.Server, user string) engine.Engine {
	t.Helper()
	eng, err := clickhouse.Open(context.Background(), clickhouse.Options{DSN: chdbtest.DSN(t, s, user)})
	if err != nil {
		t.Fatalf("connect to %s as %s: %v", s.Addr(), user, err)
	}
	t.Cleanup(func() { _ = eng.Close(context.Background()) })
	return eng
}

// ConnectCluster is Connect for a server of the Shards backend's cluster:
// inserts into Distributed tables return once every shard has its rows.
func ConnectCluster(t testing.TB, s *chdb.Server, user string) engine.Engine {
	t.Helper()
	eng, err := clickhouse.Open(context.Background(), clickhouse.Options{DSN: chdbtest.DSN(t, s, user), Cluster: ClusterName})
	if err != nil {
		t.Fatalf("connect to %s as %s: %v", s.Addr(), user, err)
	}
	t.Cleanup(func() { _ = eng.Close(context.Background()) })
	return eng
}

// DialShard connects to whichever of servers listens on host:port as user
// (each server has its own password for the account), for
// storage.Options.DialShard. The store closes the engines it opens.
func DialShard(servers []*chdb.Server, user string) func(ctx context.Context, host string, port int) (engine.Engine, error) {
	return func(ctx context.Context, host string, port int) (engine.Engine, error) {
		addr := net.JoinHostPort(host, strconv.Itoa(port))
		for _, s := range servers {
			if s.Addr() != addr {
				continue
			}
			pw, ok := s.Password(user)
			if !ok {
				return nil, fmt.Errorf("server %s has no account %s", addr, user)
			}
			return clickhouse.Open(ctx, clickhouse.Options{Addr: addr, User: user, Password: pw})
		}
		return nil, fmt.Errorf("no server of the cluster listens on %s", addr)
	}
}

// Access is the store's access policy for a test server: the roles of
// migration 0004 and one account per role (storage.Accounts), as the
// embedded store defines them.
func Access(t testing.TB, opts storage.SchemaOptions) chdb.Access {
	t.Helper()
	roles, err := storage.Roles(opts)
	if err != nil {
		t.Fatal(err)
	}
	var a chdb.Access
	for _, r := range roles {
		a.Roles = append(a.Roles, chdb.Role{Name: r.Name, Grants: r.Grants})
	}
	for _, u := range storage.Accounts() {
		a.Accounts = append(a.Accounts, chdb.Account{Name: u.User, Roles: []string{u.Role}})
	}
	return a
}

// Keys makes a signing key pair named name.
func Keys(t testing.TB, name string) (note.Signer, note.Verifier) {
	t.Helper()
	skey, vkey, err := storage.GenerateKey(name)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return signer, verifier
}
