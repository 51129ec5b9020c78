package storage_test

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/custody-audit/custody/internal/storetest"
	"github.com/custody-audit/custody/storage"
	"github.com/custody-audit/custody/storage/clickhouse"
	"github.com/custody-audit/custody/storage/engine"
)

var updateGolden = flag.Bool("update-roles", false, "rewrite storage/testdata/roles/*.golden")

// TestRolesGolden pins the privileges of every role, as the grants a users
// configuration takes, for a single server and for a cluster (where
// inserts also name the shards' _local tables).
func TestRolesGolden(t *testing.T) {
	for _, c := range []struct {
		name string
		opts storage.SchemaOptions
	}{
		{"single", storage.SchemaOptions{}},
		{"cluster", storage.SchemaOptions{Database: "audit", Cluster: "prod"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			roles, err := storage.Roles(c.opts)
			if err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			for _, r := range roles {
				b.WriteString(r.Name + ":\n")
				for _, g := range r.Grants {
					b.WriteString("  " + g + "\n")
				}
			}
			path := filepath.Join("testdata", "roles", c.name+".golden")
			if *updateGolden {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if b.String() != string(want) {
				t.Errorf("roles changed (go test ./storage -run TestRolesGolden -update-roles):\n%s\nwant:\n%s", b.String(), want)
			}
			for _, r := range roles {
				for _, g := range r.Grants {
					for _, bad := range []string{"GRANT OPTION", "ALL", "*.*", "TRUNCATE", "DROP TABLE", "OPTIMIZE", "SYSTEM", "FILE", "URL", "REMOTE", "TEMPORARY"} {
						if strings.Contains(g, bad) {
							t.Errorf("%s: %s grants %s", r.Name, g, bad)
						}
					}
					if r.Name != storage.RoleRetention && strings.Contains(g, "ALTER") {
						t.Errorf("%s may alter: %s", r.Name, g)
					}
					if r.Name == storage.RoleReader && !strings.HasPrefix(g, "SELECT ON ") {
						t.Errorf("reader grant beyond SELECT: %s", g)
					}
				}
			}
		})
	}
}

func TestExcessGrants(t *testing.T) {
	for _, c := range []struct {
		lines []string
		want  []string
	}{
		{[]string{"GRANT SELECT ON custody.* TO r", "GRANT SELECT ON system.parts TO r"}, nil},
		{[]string{"GRANT SHOW DATABASES, SHOW TABLES, SHOW COLUMNS, SELECT ON custody.* TO reader"}, nil},
		{[]string{"GRANT SELECT(actor_name, `seq`) ON custody.events TO r", "REVOKE SELECT(raw) ON custody.events FROM r"}, nil},
		{[]string{"GRANT SELECT ON `custody`.`events` TO r"}, nil},
		{[]string{"GRANT SELECT, INSERT ON custody.* TO w"}, []string{"INSERT ON custody.*"}},
		{[]string{"GRANT ALL ON *.* TO admin WITH GRANT OPTION"}, []string{"GRANT ALL ON *.* TO admin WITH GRANT OPTION"}},
		{[]string{"GRANT SELECT ON custody.* TO r WITH GRANT OPTION"}, []string{"GRANT SELECT ON custody.* TO r WITH GRANT OPTION"}},
		{[]string{"GRANT SELECT ON *.* TO r"}, []string{"SELECT ON *.*"}},
		{[]string{"GRANT SELECT ON other.* TO r"}, []string{"SELECT ON other.*"}},
		{[]string{"GRANT SELECT ON system.stack_trace TO r"}, []string{"SELECT ON system.stack_trace"}},
		{[]string{"GRANT READ ON FILE TO r"}, []string{"READ ON FILE"}},
		{[]string{"GRANT CREATE TEMPORARY TABLE ON *.* TO r"}, []string{"CREATE TEMPORARY TABLE ON *.*"}},
		{[]string{"GRANT SYSTEM MERGES ON custody.* TO r"}, []string{"SYSTEM MERGES ON custody.*"}},
		{[]string{"GRANT KILL QUERY ON *.* TO r"}, []string{"KILL QUERY ON *.*"}},
		{[]string{"GRANT INSERT ON custody.events, ALTER DELETE ON custody.events TO w"}, []string{"INSERT ON custody.events", "ALTER DELETE ON custody.events"}},
		{[]string{"GRANT custody_writer TO u"}, []string{"GRANT custody_writer TO u"}},
		{[]string{"GRANT dictGet ON custody.* TO r"}, []string{"dictGet ON custody.*"}},
	} {
		got := storage.ExcessGrants(c.lines, storage.SchemaOptions{})
		if strings.Join(got, "|") != strings.Join(c.want, "|") {
			t.Errorf("%q:\n got %q\nwant %q", c.lines, got, c.want)
		}
	}
}

// TestRolesEnforced runs each role's account against a real server holding
// a store: the writer appends and verifies but cannot ALTER, DELETE,
// UPDATE, DROP, TRUNCATE or OPTIMIZE; the reader reads and writes nothing;
// retention drops a partition and writes purge records but cannot
// truncate or drop; a client without credentials reads and changes
// nothing. The store's rows are the same after every refused attempt.
func TestRolesEnforced(t *testing.T) {
	ctx := context.Background()
	admin, srv := storetest.Engine(t, storetest.Server)
	if _, err := storage.Migrate(ctx, admin, storage.SchemaOptions{}, "roles-test"); err != nil {
		t.Fatal(err)
	}
	signer, verifier := storetest.Keys(t, "roles-test")
	writer := storetest.Connect(t, srv, storage.UserCollector)
	st, err := storage.Open(ctx, writer, storage.Options{Signer: signer, CheckpointDir: t.TempDir(), Actor: "roles-test"})
	if err != nil {
		t.Fatalf("open the store as the writer: %v", err)
	}
	appendN(t, st, "s1", 1, 20)
	rep, err := st.Verify(ctx, storage.VerifyOptions{Verifier: verifier})
	if err != nil || !rep.OK() || rep.Rows != 20 {
		t.Fatalf("verify as the writer: %v %+v", err, rep)
	}
	count := func() uint64 {
		var n uint64
		if err := engine.Each(ctx, admin, "SELECT (SELECT count() FROM custody.events) + (SELECT count() FROM custody.checkpoints) + (SELECT count() FROM custody.custody_log)", nil,
			func(r engine.Rows) error { return r.Scan(&n) }); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := count()

	partition := "202611" // sampleEvent's received time
	writes := []string{
		"INSERT INTO custody.events (chain, seq) VALUES ('x', 1)",
		"INSERT INTO custody.checkpoints (chain) VALUES ('x')",
		"INSERT INTO custody.custody_log (actor) VALUES ('x')",
		"INSERT INTO custody.purges (chain) VALUES ('x')",
		"INSERT INTO custody.legal_holds (hold_id) VALUES ('x')",
	}
	destroy := []string{
		"ALTER TABLE custody.events DELETE WHERE 1",
		"ALTER TABLE custody.events UPDATE actor_name = 'x' WHERE 1",
		"DELETE FROM custody.events WHERE 1",
		"ALTER TABLE custody.events DROP PARTITION ID '" + partition + "'",
		"ALTER TABLE custody.events ADD COLUMN x UInt8",
		"DROP TABLE custody.checkpoints",
		"TRUNCATE TABLE custody.events",
		"OPTIMIZE TABLE custody.events FINAL",
		"RENAME TABLE custody.events TO custody.gone",
		"DROP DATABASE custody",
		"CREATE TABLE custody.x (a UInt8) ENGINE = MergeTree ORDER BY a",
	}
	escape := []string{
		"SELECT * FROM file('/etc/passwd', 'LineAsString')",
		"INSERT INTO FUNCTION file('/tmp/custody-roles-test', 'RawBLOB', 'a String') SELECT 'x'",
		"SELECT * FROM url('http://127.0.0.1:1/', 'RawBLOB')",
		"SELECT * FROM remote('127.0.0.1:1', system.one)",
		"CREATE TEMPORARY TABLE t (a UInt8)",
		"SYSTEM STOP LISTEN TCP",
		"SELECT * FROM system.stack_trace",
		"SELECT * FROM system.processes",
	}
	denied := func(t *testing.T, eng engine.Engine, who string, stmts ...string) {
		t.Helper()
		for _, q := range stmts {
			err := eng.Exec(ctx, q, nil)
			if err == nil {
				t.Errorf("%s ran: %s", who, q)
			} else if !strings.Contains(err.Error(), "code: 497,") && !strings.Contains(err.Error(), "code: 201,") && !strings.Contains(err.Error(), "code: 516,") {
				t.Errorf("%s: %s: refused for another reason than privileges: %v", who, q, err)
			}
		}
	}
	t.Run("writer", func(t *testing.T) {
		denied(t, writer, "the writer", destroy...)
		denied(t, writer, "the writer", writes[3:]...)
		denied(t, writer, "the writer", escape...)
	})
	t.Run("reader", func(t *testing.T) {
		reader := storetest.Connect(t, srv, storage.UserInvestigator)
		var n uint64
		if err := engine.Each(ctx, reader, "SELECT count() FROM custody.events", nil, func(r engine.Rows) error { return r.Scan(&n) }); err != nil || n != 20 {
			t.Errorf("reader count: %d %v", n, err)
		}
		denied(t, reader, "the reader", writes...)
		denied(t, reader, "the reader", destroy...)
		denied(t, reader, "the reader", escape...)
		// The store's own reads work as the reader: status, queries.
		if _, err := storage.Open(ctx, reader, storage.Options{}); err != nil {
			t.Errorf("open the store as the reader: %v", err)
		}
	})
	t.Run("no credentials", func(t *testing.T) {
		anon, err := clickhouse.Open(ctx, clickhouse.Options{DSN: "clickhouse://default:@" + srv.Addr() + "/"})
		if err != nil {
			t.Skipf("the passwordless account cannot even connect: %v", err)
		}
		defer anon.Close(ctx)
		for _, q := range append(append(append([]string{"SELECT count() FROM custody.events", "SELECT raw FROM custody.events LIMIT 1"}, writes...), destroy...), escape...) {
			if err := anon.Exec(ctx, q, nil); err == nil {
				t.Errorf("a client without credentials ran: %s", q)
			}
		}
		var tables uint64
		if err := engine.Each(ctx, anon, "SELECT count() FROM system.tables WHERE database = 'custody'", nil, func(r engine.Rows) error { return r.Scan(&tables) }); err == nil && tables != 0 {
			t.Errorf("a client without credentials sees %d custody tables", tables)
		}
	})
	if after := count(); after != before {
		t.Fatalf("refused statements changed the store: %d rows before, %d after", before, after)
	}
	t.Run("retention", func(t *testing.T) {
		ret := storetest.Connect(t, srv, storage.UserPurger)
		denied(t, ret, "retention", "TRUNCATE TABLE custody.events", "DROP TABLE custody.events", "OPTIMIZE TABLE custody.events FINAL",
			"ALTER TABLE custody.events ADD COLUMN x UInt8", "ALTER TABLE custody.events UPDATE actor_name = 'x' WHERE 1")
		denied(t, ret, "retention", writes[:2]...)
		denied(t, ret, "retention", escape...)
		for _, q := range []string{
			"INSERT INTO custody.purges (chain) VALUES ('x')",
			"INSERT INTO custody.legal_holds (hold_id) VALUES ('x')",
			"INSERT INTO custody.custody_log (actor) VALUES ('x')",
			"ALTER TABLE custody.events DROP PARTITION ID '" + partition + "'",
		} {
			if err := ret.Exec(ctx, q, nil); err != nil {
				t.Errorf("retention: %s: %v", q, err)
			}
		}
	})
}

// TestReadmeRoleDDL: the DDL README.md gives admins of servers is the
// migrations' role statements, word for word.
func TestReadmeRoleDDL(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Join(strings.Fields(string(readme)), " ")
	ms, err := storage.Migrations(storage.SchemaOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, m := range ms {
		for _, s := range m.Statements {
			if !strings.HasPrefix(s, "CREATE ROLE") && !strings.HasPrefix(s, "GRANT") {
				continue
			}
			n++
			if stmt := strings.Join(strings.Fields(s), " ") + ";"; !strings.Contains(text, stmt) {
				t.Errorf("README.md lacks %s", stmt)
			}
		}
	}
	if n == 0 {
		t.Fatal("no role statements in the migrations")
	}
}
