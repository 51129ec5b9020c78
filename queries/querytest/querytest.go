// Package querytest seeds stores for tests of the query catalogue and the
// commands built on it, on either backend of internal/storetest (the
// embedded store or a ClickHouse server): the events table from the
// storage migration, filled with the normalized records of
// queries/testdata/seed (a small incident mixed with ordinary traffic).
package querytest

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/custody-audit/custody/event"
	"github.com/custody-audit/custody/internal/storetest"
	"github.com/custody-audit/custody/normalize"
	"github.com/custody-audit/custody/storage"
	"github.com/custody-audit/custody/storage/chdb"
	"github.com/custody-audit/custody/storage/engine"
)

// Database is the store's database in seeded stores.
const Database = "custody"

// EventColumns returns the events table's columns in insert order, with the
// types the batch is encoded in (LowCardinality columns travel as String).
func EventColumns() []engine.Column {
	return []engine.Column{
		{Name: "chain", Type: "String"},
		{Name: "seq", Type: "UInt64"},
		{Name: "event_id", Type: "String"},
		{Name: "event_time", Type: "DateTime64(6, 'UTC')"},
		{Name: "received_time", Type: "DateTime64(6, 'UTC')"},
		{Name: "service", Type: "String"},
		{Name: "category", Type: "String"},
		{Name: "source_kind", Type: "String"},
		{Name: "source_format", Type: "String"},
		{Name: "source_position", Type: "String"},
		{Name: "source_offset", Type: "Int64"},
		{Name: "tenant_id", Type: "String"},
		{Name: "subscription_id", Type: "String"},
		{Name: "resource_group", Type: "String"},
		{Name: "provider", Type: "String"},
		{Name: "resource_type", Type: "String"},
		{Name: "resource_name", Type: "String"},
		{Name: "resource_id", Type: "String"},
		{Name: "actor_name", Type: "String"},
		{Name: "actor_object_id", Type: "String"},
		{Name: "actor_type", Type: "String"},
		{Name: "actor_app_id", Type: "String"},
		{Name: "actor_groups", Type: "Array(String)"},
		{Name: "impersonated_by", Type: "String"},
		{Name: "source_ip", Type: "String"},
		{Name: "user_agent", Type: "String"},
		{Name: "action", Type: "String"},
		{Name: "action_class", Type: "String"},
		{Name: "target_api_group", Type: "String"},
		{Name: "target_resource", Type: "String"},
		{Name: "target_subresource", Type: "String"},
		{Name: "target_namespace", Type: "String"},
		{Name: "target_name", Type: "String"},
		{Name: "target_repository", Type: "String"},
		{Name: "target_tag", Type: "String"},
		{Name: "target_digest", Type: "String"},
		{Name: "target_container_group", Type: "String"},
		{Name: "target_container", Type: "String"},
		{Name: "target_image", Type: "String"},
		{Name: "outcome", Type: "String"},
		{Name: "status_code", Type: "Int32"},
		{Name: "reason", Type: "String"},
		{Name: "correlation_id", Type: "String"},
		{Name: "request_id", Type: "String"},
		{Name: "tags", Type: "Array(String)"},
		{Name: "attributes", Type: "Map(String, String)"},
		{Name: "raw", Type: "String"},
		{Name: "raw_format", Type: "String"},
		{Name: "prev_hash", Type: "FixedString(32)"},
		{Name: "hash", Type: "FixedString(32)"},
	}
}

// EventValues maps e to EventColumns. Query tests do not verify the
// chain, so seq and the hashes are simple stand-ins: hash is SHA-256 of
// the chain and seq, prev_hash the previous one.
func EventValues(chain string, seq uint64, e *event.Event) []any {
	ip := ""
	if e.SourceIP.IsValid() {
		ip = e.SourceIP.String()
	}
	groups := e.Actor.Groups
	if groups == nil {
		groups = []string{}
	}
	tags := e.Tags
	if tags == nil {
		tags = []string{}
	}
	attrs := e.Attributes
	if attrs == nil {
		attrs = map[string]string{}
	}
	link := func(n uint64) [32]byte {
		if n == 0 {
			return [32]byte{}
		}
		return sha256.Sum256(fmt.Appendf(nil, "%s/%d", chain, n))
	}
	return []any{
		chain, seq, e.ID, e.Time, e.ReceivedTime,
		string(e.Service), e.Category, e.SourceKind, e.SourceFormat, e.SourcePosition, int64(seq),
		e.TenantID, e.SubscriptionID, e.ResourceGroup, e.Provider, e.ResourceType, e.ResourceName, e.ResourceID,
		e.Actor.Name, e.Actor.ObjectID, string(e.Actor.Type), e.Actor.AppID, groups, e.Actor.ImpersonatedBy,
		ip, e.UserAgent, e.Action, string(e.ActionClass),
		e.Target.APIGroup, e.Target.Resource, e.Target.Subresource, e.Target.Namespace, e.Target.Name,
		e.Target.Repository, e.Target.Tag, e.Target.Digest, e.Target.ContainerGroup, e.Target.Container, e.Target.Image,
		string(e.Outcome), e.StatusCode, e.Reason, e.CorrelationID, e.RequestID,
		tags, attrs, e.Raw, e.RawFormat, link(seq - 1), link(seq),
	}
}

// InsertEvents appends evs to custody.events as one chain, numbered from
// 1, in one insert.
func InsertEvents(ctx context.Context, eng engine.Engine, chain string, evs []event.Event) error {
	b, err := eng.PrepareBatch(ctx, Database+".events", EventColumns())
	if err != nil {
		return fmt.Errorf("prepare insert: %w", err)
	}
	for i := range evs {
		if err := b.Append(EventValues(chain, uint64(i+1), &evs[i])...); err != nil {
			return fmt.Errorf("append event %s: %w", evs[i].ID, err)
		}
	}
	if err := b.Send(ctx, ""); err != nil {
		return fmt.Errorf("insert events: %w", err)
	}
	return nil
}

// CreateSchema creates the store's schema (storage.Migrate with the
// default options: database custody, no cluster).
func CreateSchema(ctx context.Context, t testing.TB, eng engine.Engine) {
	t.Helper()
	if _, err := storage.Migrate(ctx, eng, storage.SchemaOptions{Database: Database}, "querytest"); err != nil {
		t.Fatalf("create schema: %v", err)
	}
}

// seedFile is one fixture in testdata/seed and how it is delivered.
type seedFile struct {
	name   string
	format string
	kind   string // source kind
}

func seedFiles() []seedFile {
	return []seedFile{
		{"aks-baseline.PT1H.json", normalize.FormatArchive, "blob"},
		{"activity-baseline.PT1H.json", normalize.FormatArchive, "blob"},
		{"aks-kube-audit.eventhubs.json", normalize.FormatEventHubs, "eventhubs"},
		{"acr.eventhubs.json", normalize.FormatEventHubs, "eventhubs"},
		{"activity.eventhubs.json", normalize.FormatEventHubs, "eventhubs"},
	}
}

// SeedDir is queries/testdata/seed.
func SeedDir(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate querytest source")
	}
	return filepath.Join(filepath.Dir(filepath.Dir(file)), "testdata", "seed")
}

// SeedEvents normalizes the seed fixtures. Every record must become an
// event: a quarantined or dropped record means the fixture no longer
// says what the cases expect.
func SeedEvents(ctx context.Context, t testing.TB) map[string][]event.Event {
	t.Helper()
	cfg := normalize.DefaultConfig()
	cfg.ApprovedRegistries = []string{"prodacr.azurecr.io", "mcr.microsoft.com"}
	n, err := normalize.New(cfg)
	if err != nil {
		t.Fatalf("normalizer: %v", err)
	}
	received := time.Date(2025, 5, 6, 12, 0, 0, 0, time.UTC)
	out := map[string][]event.Event{}
	for _, f := range seedFiles() {
		body, err := os.ReadFile(filepath.Join(SeedDir(t), f.name))
		if err != nil {
			t.Fatalf("read seed: %v", err)
		}
		res, err := n.Process(ctx, normalize.Input{Body: body, Format: f.format, SourceKind: f.kind, Position: f.name, Received: received})
		if err != nil {
			t.Fatalf("normalize %s: %v", f.name, err)
		}
		if len(res.Quarantined) > 0 || len(res.Dropped) > 0 {
			t.Fatalf("normalize %s: %d quarantined (first: %+v), dropped %v", f.name, len(res.Quarantined), res.Quarantined, res.Dropped)
		}
		for _, e := range res.Events {
			if e.Time.IsZero() || e.ID == "" {
				t.Fatalf("normalize %s: event %q at %v: the fixture's time or id did not parse", f.name, e.ID, e.Time)
			}
		}
		out[f.name] = res.Events
	}
	return out
}

// OpenSeeded returns an embedded store holding the seed events, one
// chain per seed file. It is closed when the test ends.
func OpenSeeded(t testing.TB) engine.Engine {
	t.Helper()
	eng, _ := OpenSeededOn(t, storetest.Embedded)
	return eng
}

// OpenSeededOn is OpenSeeded on backend b: an engine with every privilege
// and, on storetest.Server, the server (Reader connects to it as the
// reader role).
func OpenSeededOn(t testing.TB, b storetest.Backend) (engine.Engine, *chdb.Server) {
	t.Helper()
	ctx := context.Background()
	eng, srv := storetest.Engine(t, b)
	CreateSchema(ctx, t, eng)
	evs := SeedEvents(ctx, t)
	for _, f := range seedFiles() {
		if err := InsertEvents(ctx, eng, "seed/"+f.name, evs[f.name]); err != nil {
			t.Fatal(err)
		}
	}
	return eng, srv
}

// Reader is what `custody query` reads a store through: on a server
// (srv not nil), a connection as the reader role's account
// (storage.UserInvestigator), closed when the test ends; on the embedded
// store, eng.
func Reader(t testing.TB, eng engine.Engine, srv *chdb.Server) engine.Engine {
	t.Helper()
	if srv == nil {
		return eng
	}
	return storetest.Connect(t, srv, storage.UserInvestigator)
}
