package storage_test

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/custody-audit/custody/storage"
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
