package storage_test

import (
	"context"
	"strings"
	"testing"

	"github.com/custody-audit/custody/internal/chdbtest"
	"github.com/custody-audit/custody/storage"
	"github.com/custody-audit/custody/storage/engine"
)

// TestClusterDDLParses runs every cluster-only statement through
// ClickHouse's own parser (formatQuery in chDB): no cluster can run here,
// but a statement ClickHouse cannot parse is caught.
func TestClusterDDLParses(t *testing.T) {
	eng := chdbtest.Open(t, "")
	ms, err := storage.Migrations(storage.SchemaOptions{Database: "audit", Cluster: "prod"})
	if err != nil {
		t.Fatal(err)
	}
	var sawReplicated, sawDistributed bool
	for _, m := range ms {
		for _, stmt := range m.Statements {
			rows, err := eng.Query(context.Background(), "SELECT formatQuery({q:String})", engine.Params{"q": stmt})
			if err != nil {
				t.Fatalf("ClickHouse cannot parse:\n%s\n%v", stmt, err)
			}
			var formatted string
			for rows.Next() {
				if err := rows.Scan(&formatted); err != nil {
					t.Fatal(err)
				}
			}
			rows.Close()
			if !strings.Contains(formatted, "ON CLUSTER prod") {
				t.Errorf("statement lacks ON CLUSTER: %s", formatted)
			}
			sawReplicated = sawReplicated || strings.Contains(formatted, "ReplicatedMergeTree('/clickhouse/tables/{shard}/audit/")
			sawDistributed = sawDistributed || strings.Contains(formatted, "Distributed(prod, audit, events_local, cityHash64(chain))")
		}
	}
	if !sawReplicated || !sawDistributed {
		t.Errorf("cluster schema: replicated=%v distributed=%v", sawReplicated, sawDistributed)
	}
}

func TestMigrateIsIdempotentAndRecorded(t *testing.T) {
	ctx := context.Background()
	eng := chdbtest.Open(t, "")
	first, err := storage.Migrate(ctx, eng, storage.SchemaOptions{}, "tester")
	if err != nil || len(first) == 0 {
		t.Fatalf("first migrate: %v %v", first, err)
	}
	again, err := storage.Migrate(ctx, eng, storage.SchemaOptions{}, "tester")
	if err != nil || len(again) != 0 {
		t.Fatalf("second migrate applied %v, %v", again, err)
	}
	rows, err := eng.Query(ctx, "SELECT actor, action FROM custody.custody_log ORDER BY at", nil)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for rows.Next() {
		var actor, action string
		if err := rows.Scan(&actor, &action); err != nil {
			t.Fatal(err)
		}
		if actor != "tester" || action != "schema.migrate" {
			t.Errorf("custody log entry %q %q", actor, action)
		}
		n++
	}
	rows.Close()
	if n != len(first) {
		t.Errorf("custody log has %d schema entries, want %d", n, len(first))
	}
}

func TestBadSchemaNamesAreRefused(t *testing.T) {
	for _, o := range []storage.SchemaOptions{{Database: "x; DROP"}, {Cluster: "a b"}} {
		if _, err := storage.Migrations(o); err == nil {
			t.Errorf("%+v: want an error", o)
		}
	}
}

// TestMergeTuningIsAppliedOrSkipped checks migration 0003 tunes the events
// table on an engine that knows the setting, and that a setting an engine
// does not know is skipped (an older server) while any other failure
// still stops the migration.
func TestMergeTuningIsAppliedOrSkipped(t *testing.T) {
	ctx := context.Background()
	eng := chdbtest.Open(t, "")
	if _, err := storage.Migrate(ctx, eng, storage.SchemaOptions{}, "tester"); err != nil {
		t.Fatal(err)
	}
	var ddl string
	rows, err := eng.Query(ctx, "SELECT create_table_query FROM system.tables WHERE database = 'custody' AND name = 'events'", nil)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		if err := rows.Scan(&ddl); err != nil {
			t.Fatal(err)
		}
	}
	rows.Close()
	if !strings.Contains(ddl, "merge_selector_base = 10") {
		t.Errorf("events table not tuned:\n%s", ddl)
	}

	for _, c := range []struct {
		stmt        string
		skipped, ok bool
	}{
		{"ALTER TABLE custody.events MODIFY SETTING merge_selector_base = 10", false, true},
		{"ALTER TABLE custody.events MODIFY SETTING no_such_setting_in_any_clickhouse = 1", true, true},
		{"alter table custody.events\n  modify setting no_such_setting_in_any_clickhouse = 1", true, true},
		// Not a tuning statement: an unknown setting is an error.
		{"SELECT 1 SETTINGS no_such_setting_in_any_clickhouse = 1", false, false},
		// A tuning statement failing for another reason is an error.
		{"ALTER TABLE custody.no_such_table MODIFY SETTING merge_selector_base = 10", false, false},
	} {
		why, err := storage.ExecMigrationStatement(ctx, eng, c.stmt)
		if skipped := why != ""; skipped != c.skipped || (err == nil) != c.ok {
			t.Errorf("%q: skipped=%q err=%v, want skipped=%v ok=%v", c.stmt, why, err, c.skipped, c.ok)
		}
	}
}

// TestUnreplicatedClusterDDL checks the form a cluster of unreplicated
// shards takes: plain MergeTree local tables and Distributed tables, all
// created on the connected server only (no ON CLUSTER, no Keeper path),
// with inserts granted on both. TestTwoShards runs it on two servers.
func TestUnreplicatedClusterDDL(t *testing.T) {
	ms, err := storage.Migrations(storage.SchemaOptions{Database: "audit", Cluster: "prod", Unreplicated: true})
	if err != nil {
		t.Fatal(err)
	}
	var all []string
	for _, m := range ms {
		all = append(all, m.Statements...)
	}
	text := strings.Join(all, "\n")
	for _, bad := range []string{"ON CLUSTER", "Replicated", "{shard}", "{replica}"} {
		if strings.Contains(text, bad) {
			t.Errorf("unreplicated cluster DDL contains %q", bad)
		}
	}
	for _, want := range []string{
		"CREATE TABLE IF NOT EXISTS audit.events_local",
		"ENGINE = MergeTree",
		"CREATE TABLE IF NOT EXISTS audit.events AS audit.events_local ENGINE = Distributed(prod, audit, events_local, cityHash64(chain))",
		"CREATE TABLE IF NOT EXISTS audit.source_positions AS audit.source_positions_local ENGINE = Distributed(prod, audit, source_positions_local, cityHash64(stream))",
		"INSERT ON audit.events, INSERT ON audit.events_local",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("unreplicated cluster DDL lacks %q", want)
		}
	}
	// The replicated form is unchanged by the option's existence.
	rep, err := storage.Migrations(storage.SchemaOptions{Database: "audit", Cluster: "prod"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(rep[0].Statements, "\n"), "CREATE TABLE IF NOT EXISTS audit.events ON CLUSTER prod AS audit.events_local ENGINE = Distributed(prod, audit, events_local, cityHash64(chain))") {
		t.Errorf("replicated cluster DDL changed:\n%s", strings.Join(rep[0].Statements, "\n"))
	}
}
