package clickhouse_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"github.com/custody-audit/custody/deploy/kit/clickhouse"
	"github.com/custody-audit/custody/internal/azurite"
	"github.com/custody-audit/custody/internal/chdbtest"
	"github.com/custody-audit/custody/storage"
)

const kitDir = "../../clickhouse"

// TestRolesFileCurrent fails when the roles file and migration 0004
// disagree; `go run ./cmd/clickhouse-roles` in deploy/kit rewrites it.
func TestRolesFileCurrent(t *testing.T) {
	want, err := clickhouse.RolesXML()
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(kitDir, filepath.FromSlash(clickhouse.RolesFile)))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Errorf("%s is not what storage.Roles renders: run `go run ./cmd/clickhouse-roles` in deploy/kit", clickhouse.RolesFile)
	}
}

// passwords are the test's account passwords; the kit reads only their
// SHA-256 hashes, from the environment.
var passwords = map[string]string{
	"CUSTODY_COLLECTOR_PASSWORD_SHA256":    "collector-pw",
	"CUSTODY_INVESTIGATOR_PASSWORD_SHA256": "investigator-pw",
	"CUSTODY_PURGER_PASSWORD_SHA256":       "purger-pw",
	"CUSTODY_GRAFANA_PASSWORD_SHA256":      "grafana-pw",
	"CUSTODY_ADMIN_PASSWORD_SHA256":        "admin-pw",
}

const replica = "clickhouse-1.clickhouse.custody.svc"

// kitEnv is the per-replica environment the kit's files read.
func kitEnv(coldURL string, without ...string) []string {
	env := []string{
		"CUSTODY_REPLICA=" + replica,
		"CUSTODY_KEEPER_SERVER_ID=2",
		"CUSTODY_CLUSTER_SECRET=cluster-secret",
		"CUSTODY_COLD_STORAGE_URL=" + coldURL,
	}
	for name, pw := range passwords {
		if slices.Contains(without, name) {
			continue
		}
		sum := sha256.Sum256([]byte(pw))
		env = append(env, name+"="+hex.EncodeToString(sum[:]))
	}
	return env
}

// testDefaultUser gives clickhouse-local, which runs every query as
// `default`, a user: the kit removes the built-in one.
const testDefaultUser = `<clickhouse><users><default><password></password><networks><ip>::/0</ip></networks>
<profile>default</profile><quota>default</quota><access_management>1</access_management></default></users></clickhouse>`

// serverDir lays out a server configuration: a minimal config.xml and
// users.xml, the kit's config.d and users.d next to them (merged the way a
// server merges /etc/clickhouse-server), and extra files (test-only
// overrides, by relative path). It returns the config.xml path.
func serverDir(t *testing.T, extra map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"config.xml": `<clickhouse><path>` + filepath.Join(dir, "data") + `/</path>
<logger><level>error</level><console>true</console></logger>
<user_directories><users_xml><path>users.xml</path></users_xml></user_directories></clickhouse>`,
		"users.xml": `<clickhouse><users/><profiles><default/></profiles><quotas><default/></quotas></clickhouse>`,
	}
	for _, sub := range []string{"config.d", "users.d"} {
		entries, err := os.ReadDir(filepath.Join(kitDir, sub))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			b, err := os.ReadFile(filepath.Join(kitDir, sub, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			files[sub+"/"+e.Name()] = string(b)
		}
	}
	maps.Copy(files, extra)
	for rel, body := range files {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "config.xml")
}

func tsv(out string) [][]string {
	var rows [][]string
	for _, line := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		if line != "" {
			rows = append(rows, strings.Split(line, "\t"))
		}
	}
	return rows
}

func equalRows(t *testing.T, what string, got, want [][]string) {
	t.Helper()
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("%s:\n got  %q\n want %q", what, got, want)
	}
}

// TestConfigLoads loads the kit into the engine and reads back what the
// server would run with: macros, the cluster, the storage policy, the
// roles (as migration 0004 grants them) and the accounts.
func TestConfigLoads(t *testing.T) {
	chdbtest.RequireLibrary(t)
	config := serverDir(t, map[string]string{"users.d/zz-test-default.xml": testDefaultUser})
	q := func(sql string) [][]string {
		t.Helper()
		out, err := runLocal(config, sql+" FORMAT TSV", kitEnv("https://custodycold.blob.core.windows.net"))
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		return tsv(out)
	}
	equalRows(t, "macros", q("SELECT macro, substitution FROM system.macros ORDER BY macro"), [][]string{
		{"cluster", "custody"}, {"replica", replica}, {"shard", "01"},
	})
	equalRows(t, "cluster", q("SELECT shard_num, replica_num, host_name, port FROM system.clusters WHERE cluster = 'custody' ORDER BY replica_num"), [][]string{
		{"1", "1", "clickhouse-0.clickhouse.custody.svc", "9440"},
		{"1", "2", "clickhouse-1.clickhouse.custody.svc", "9440"},
		{"1", "3", "clickhouse-2.clickhouse.custody.svc", "9440"},
	})
	equalRows(t, "storage policy", q("SELECT volume_name, disks, prefer_not_to_merge FROM system.storage_policies WHERE policy_name = 'custody_tiered' ORDER BY volume_priority"), [][]string{
		{"hot", "['default']", "0"}, {"cold", "['azure_cold']", "1"},
	})
	equalRows(t, "cold disk", q("SELECT type, object_storage_type FROM system.disks WHERE name = 'azure_cold'"), [][]string{{"ObjectStorage", "Azure"}})
	equalRows(t, "default policy of new tables", q("SELECT value FROM system.merge_tree_settings WHERE name = 'storage_policy'"), [][]string{{"custody_tiered"}})

	// Roles: exactly the grants of migration 0004, on the cluster's tables.
	roles, err := storage.Roles(storage.SchemaOptions{Cluster: clickhouse.Cluster})
	if err != nil {
		t.Fatal(err)
	}
	var want [][]string
	for _, r := range roles {
		for _, g := range r.Grants {
			for _, el := range strings.Split(g, ", ") {
				priv, obj, _ := strings.Cut(el, " ON ")
				db, table, _ := strings.Cut(obj, ".")
				if table == "*" {
					table = `\N`
				}
				want = append(want, []string{r.Name, priv, db, table})
			}
		}
	}
	byText := func(a, b []string) int { return strings.Compare(strings.Join(a, " "), strings.Join(b, " ")) }
	slices.SortFunc(want, byText)
	got := q("SELECT role_name, toString(access_type), database, table FROM system.grants WHERE role_name LIKE 'custody\\_%'")
	slices.SortFunc(got, byText)
	equalRows(t, "role grants", got, want)

	// Accounts: sha256 passwords, one role each; the investigator's and
	// Grafana's effective grants are no more than a reader's.
	equalRows(t, "users", q("SELECT name, arrayStringConcat(arrayMap(x -> toString(x), auth_type), ',') FROM system.users WHERE name LIKE 'custody\\_%' ORDER BY name"), [][]string{
		{"custody_admin", "sha256_password"}, {"custody_collector", "sha256_password"}, {"custody_grafana", "sha256_password"},
		{"custody_investigator", "sha256_password"}, {"custody_purger", "sha256_password"},
	})
	var wantRoles [][]string
	for _, a := range storage.Accounts() {
		wantRoles = append(wantRoles, []string{a.User, a.Role})
	}
	wantRoles = append(wantRoles, []string{"custody_grafana", storage.RoleReader})
	slices.SortFunc(wantRoles, func(a, b []string) int { return strings.Compare(a[0], b[0]) })
	equalRows(t, "role of each user", q("SELECT user_name, granted_role_name FROM system.role_grants WHERE user_name LIKE 'custody\\_%' ORDER BY user_name"), wantRoles)
	for _, user := range []string{"custody_investigator", "custody_grafana"} {
		var lines []string
		for _, row := range q("SHOW GRANTS FOR " + user + " FINAL") {
			lines = append(lines, row[0])
		}
		if excess := storage.ExcessGrants(lines, storage.SchemaOptions{Cluster: clickhouse.Cluster}); len(excess) > 0 || len(lines) == 0 {
			t.Errorf("%s may do more than read: %v (grants %q)", user, excess, lines)
		}
	}
	equalRows(t, "readonly profile", q("SELECT setting_name, value FROM system.settings_profile_elements WHERE profile_name = 'custody_readonly' AND setting_name = 'readonly'"), [][]string{{"readonly", "2"}})
}

// TestConfigRefuses shows what the kit refuses: the built-in default user
// is gone, and a missing password hash stops the server instead of
// creating an account without a password.
func TestConfigRefuses(t *testing.T) {
	chdbtest.RequireLibrary(t)
	for _, c := range []struct {
		name    string
		extra   map[string]string
		env     []string
		wantErr string
	}{
		{"no default user", nil, kitEnv("https://custodycold.blob.core.windows.net"), "default: Authentication failed"},
		{"missing password hash", map[string]string{"users.d/zz-test-default.xml": testDefaultUser},
			kitEnv("https://custodycold.blob.core.windows.net", "CUSTODY_PURGER_PASSWORD_SHA256"), "while parsing user 'custody_purger'"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := runLocal(serverDir(t, c.extra), "SELECT 1", c.env)
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("error %v, want one containing %q", err, c.wantErr)
			}
		})
	}
}

// TestSchemaOnTieredStorage runs the store's DDL on the kit's
// configuration (every table on the tiered policy), adds the tiering TTL,
// and moves an old partition to the cold volume on a real Blob service
// (Azurite), reading it back from there. The cluster form of the DDL
// (ReplicatedMergeTree, ON CLUSTER) needs ClickHouse Keeper, which libchdb
// is built without (USE_NURAFT): the single-server form runs here.
func TestSchemaOnTieredStorage(t *testing.T) {
	chdbtest.RequireLibrary(t)
	az := azurite.Start(t)
	ctx := context.Background()
	if _, err := az.Client.CreateContainer(ctx, "custody-cold", nil); err != nil {
		t.Fatal(err)
	}
	// Azurite takes its well-known account key, not a workload identity.
	// move_factor 0: the kit's 0.1 also moves new parts to cold when the
	// local disk is over 90% full, which a shared test machine's disk can
	// be; this test is about the tiering TTL's moves alone (a 91%-full
	// disk put the current month on azure_cold here).
	override := `<clickhouse><storage_configuration><disks><azure_cold>
<use_workload_identity remove="remove"/><account_name>` + azurite.AccountName + `</account_name><account_key>` + azurite.AccountKey + `</account_key>
</azure_cold></disks><policies><custody_tiered><move_factor>0</move_factor></custody_tiered></policies></storage_configuration></clickhouse>`
	config := serverDir(t, map[string]string{
		"users.d/zz-test-default.xml":  testDefaultUser,
		"config.d/zz-test-azurite.xml": override,
	})

	ms, err := storage.Migrations(storage.SchemaOptions{})
	if err != nil {
		t.Fatal(err)
	}
	access := regexp.MustCompile(`(?is)^\s*(CREATE\s+ROLE|GRANT)\s`)
	var script strings.Builder
	script.WriteString("CREATE DATABASE IF NOT EXISTS custody;\n")
	for _, m := range ms {
		for _, s := range m.Statements {
			if access.MatchString(s) { // roles come from the kit's users.d, as storage.Migrate then says
				continue
			}
			script.WriteString(s + ";\n")
		}
	}
	tiering, err := os.ReadFile(filepath.Join(kitDir, "tiering.sql"))
	if err != nil {
		t.Fatal(err)
	}
	// tiering.sql is written for the cluster; this server is the
	// single-server form (no ON CLUSTER, no _local tables).
	single := strings.NewReplacer(" ON CLUSTER custody", "", "_local", "").Replace(string(tiering))
	script.WriteString(single + "\n")
	script.WriteString(`
INSERT INTO custody.events (chain, seq, event_id, event_time, received_time, service, raw) VALUES
    ('c', 1, 'old', '2024-01-10 10:00:00', '2024-01-10 10:00:01', 'aks', '{"old":true}'),
    ('c', 2, 'new', now64(6) - INTERVAL 1 DAY, now64(6) - INTERVAL 1 DAY, 'aks', '{"new":true}');
ALTER TABLE custody.events MOVE PARTITION 202401 TO VOLUME 'cold';
`)
	env := kitEnv(az.ServiceURL)
	if _, err := runLocal(config, script.String(), env); err != nil {
		t.Fatalf("%v\nscript:\n%s", err, script.String())
	}
	// The store directory persists: each query below is a new engine on
	// the same data, as after a server restart.
	q := func(sql string) [][]string {
		t.Helper()
		out, err := runLocal(config, sql+" FORMAT TSV", env)
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		return tsv(out)
	}
	tables := q("SELECT name, storage_policy FROM system.tables WHERE database = 'custody' AND engine LIKE '%MergeTree' ORDER BY name")
	for _, r := range tables {
		if r[1] != "custody_tiered" {
			t.Errorf("table %s on policy %s, want custody_tiered", r[0], r[1])
		}
	}
	if len(tables) < 6 {
		t.Errorf("%d MergeTree tables: %v", len(tables), tables)
	}
	equalRows(t, "tiering TTL on events and quarantine",
		q("SELECT name, position(create_table_query, 'TO VOLUME \\'cold\\'') > 0 FROM system.tables WHERE database = 'custody' AND name IN ('events', 'quarantine') ORDER BY name"),
		[][]string{{"events", "1"}, {"quarantine", "1"}})
	equalRows(t, "the test's move_factor", q("SELECT DISTINCT move_factor FROM system.storage_policies WHERE policy_name = 'custody_tiered'"), [][]string{{"0"}})
	parts := q("SELECT partition, disk_name FROM system.parts WHERE database = 'custody' AND table = 'events' AND active ORDER BY partition")
	if len(parts) != 2 || parts[0][0] != "202401" || parts[0][1] != "azure_cold" || parts[1][1] != "default" {
		t.Errorf("parts %q: want 202401 on azure_cold and the current month on default", parts)
	}
	equalRows(t, "events read back", q("SELECT event_id, raw FROM custody.events ORDER BY seq"),
		[][]string{{"old", `{"old":true}`}, {"new", `{"new":true}`}})

	// The old partition's bytes are in the Blob container.
	pager := az.Client.NewListBlobsFlatPager("custody-cold", &container.ListBlobsFlatOptions{})
	blobs := 0
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		blobs += len(page.Segment.BlobItems)
	}
	if blobs == 0 {
		t.Error("no blob in the cold container after moving a partition there")
	}
}
