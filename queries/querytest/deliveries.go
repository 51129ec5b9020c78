package querytest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/custody-audit/custody/ingest"
	"github.com/custody-audit/custody/ingest/loganalytics"
	"github.com/custody-audit/custody/internal/lafake"
	"github.com/custody-audit/custody/internal/storetest"
	"github.com/custody-audit/custody/normalize"
	"github.com/custody-audit/custody/storage"
)

// The chains of the deliveries store, named as the collector and backfill
// name their streams.
const (
	DeliveryEventHubsChain = "eventhubs/contoso-audit.servicebus.windows.net/admin-logs/custody/0"
	// DeliveryConflictChain carries the altered copy of the ACR push.
	DeliveryConflictChain = "eventhubs/contoso-audit.servicebus.windows.net/admin-logs/custody/1"
	DeliveryArchiveChain  = "archive/contosoaudit/insights-logs/y=2025/m=05/d=06/h=09/m=00/PT1H.json"
	DeliveryWorkspace     = "5d6e7f80-1111-4a2b-9c3d-0123456789ab"
)

// Deliveries of the fixture, for OpenDeliveries.
const (
	DeliveryEventHubs    = "eventhubs"
	DeliveryArchive      = "archive"
	DeliveryLogAnalytics = "loganalytics"
	DeliveryConflict     = "conflict"
)

// Log Analytics credentials of the local query API server.
const (
	laTenant   = "72f988bf-0000-4000-8000-000000000001"
	laClientID = "0e1f2a3b-0000-4000-8000-00000000c11e"
	laSecret   = "querytest-client-secret"
)

// DeliveryTables are the Log Analytics tables of the deliveries fixture.
func DeliveryTables() []string {
	return []string{"AKSAudit", "AzureActivity", "ContainerRegistryRepositoryEvents"}
}

// DeliveriesDir is queries/testdata/deliveries.
func DeliveriesDir(t testing.TB) string {
	return filepath.Join(filepath.Dir(SeedDir(t)), "deliveries")
}

// DeliveryStats is what loading the deliveries fixture stored.
type DeliveryStats struct {
	// Rows per chain.
	Rows map[string]int
}

// Total is the number of rows stored.
func (s DeliveryStats) Total() int {
	n := 0
	for _, r := range s.Rows {
		n += r
	}
	return n
}

// OpenDeliveries returns a signing store holding the deliveries fixture of
// queries/testdata/deliveries: one AKS audit event (an exec), three ACR
// repository events (push, delete, untag) and one Activity Log record,
// each delivered three times, through an Event Hubs body, a storage
// archive (PT1H.json) and the Log Analytics query API (served by
// internal/lafake and read by the real Log Analytics source), plus a
// second Event Hubs copy of the push whose caller address and digest were
// altered. Every delivery is its own hash-chained, checkpointed chain.
//
// paths limits the store to some deliveries: DeliveryEventHubs,
// DeliveryArchive, DeliveryLogAnalytics, DeliveryConflict; none means all.
func OpenDeliveries(t testing.TB, paths ...string) (*storetest.Fixture, DeliveryStats) {
	t.Helper()
	return OpenDeliveriesOn(t, storetest.Embedded, paths...)
}

// OpenDeliveriesOn is OpenDeliveries on backend b.
func OpenDeliveriesOn(t testing.TB, b storetest.Backend, paths ...string) (*storetest.Fixture, DeliveryStats) {
	t.Helper()
	ctx := context.Background()
	f := storetest.NewOn(t, "querytest-deliveries", b)
	n, err := normalize.New(normalize.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	dir := DeliveriesDir(t)
	received := time.Date(2025, 5, 6, 12, 0, 0, 0, time.UTC)
	stats := DeliveryStats{Rows: map[string]int{}}

	want := func(p string) bool { return len(paths) == 0 || slices.Contains(paths, p) }
	var msgs []ingest.Message
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if want(DeliveryEventHubs) {
		msgs = append(msgs, ingest.Message{Stream: DeliveryEventHubsChain, Offset: 1, Position: "partition 0 sequence 1",
			Format: normalize.FormatEventHubs, Body: read("eventhubs.json"), Received: received})
	}
	if want(DeliveryConflict) {
		msgs = append(msgs, ingest.Message{Stream: DeliveryConflictChain, Offset: 1, Position: "partition 1 sequence 1",
			Format: normalize.FormatEventHubs, Body: read("conflict.eventhubs.json"), Received: received})
	}
	if want(DeliveryArchive) {
		sc := bufio.NewScanner(bytes.NewReader(read("PT1H.json")))
		sc.Buffer(make([]byte, 0, 1<<20), 16<<20)
		for line := int64(1); sc.Scan(); line++ {
			msgs = append(msgs, ingest.Message{Stream: DeliveryArchiveChain, Offset: line, Position: fmt.Sprintf("PT1H.json line %d", line),
				Format: normalize.FormatArchive, Body: slices.Clone(sc.Bytes()), Received: received})
		}
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
	}
	if want(DeliveryLogAnalytics) {
		msgs = append(msgs, readLogAnalytics(ctx, t, dir, received)...)
	}
	kinds := map[string]string{DeliveryEventHubsChain: "eventhubs", DeliveryConflictChain: "eventhubs", DeliveryArchiveChain: "blob"}

	batches := map[string]*storage.Batch{}
	var order []string
	for _, m := range msgs {
		kind, ok := kinds[m.Stream]
		if !ok {
			kind = "loganalytics"
		}
		res, err := n.Process(ctx, normalize.Input{Body: m.Body, Format: m.Format, SourceKind: kind, Position: m.Position,
			Received: m.Received, Attributes: m.Attributes})
		if err != nil {
			t.Fatalf("normalize %s: %v", m.Position, err)
		}
		if len(res.Quarantined) > 0 {
			t.Fatalf("normalize %s: quarantined: %s", m.Position, res.Quarantined[0].Reason)
		}
		if len(res.Dropped) > 0 || len(res.Events) == 0 {
			t.Fatalf("normalize %s: %d events, dropped %v", m.Position, len(res.Events), res.Dropped)
		}
		b := batches[m.Stream]
		if b == nil {
			b = &storage.Batch{Stream: m.Stream, DedupeByEventID: kind == "loganalytics"}
			batches[m.Stream] = b
			order = append(order, m.Stream)
		}
		b.Offset, b.Position = m.Offset, m.Position
		for _, e := range res.Events {
			b.Events = append(b.Events, storage.BatchEvent{Offset: m.Offset, Event: e})
		}
	}
	for _, s := range order {
		res, err := f.Store.Append(ctx, *batches[s])
		if err != nil {
			t.Fatalf("append %s: %v", s, err)
		}
		stats.Rows[s] = res.Stored
	}
	return f, stats
}

// readLogAnalytics serves the fixture's tables from a local Log Analytics
// query API and reads them with the Log Analytics source, as the collector
// does, until it has nothing more to hand out.
func readLogAnalytics(ctx context.Context, t testing.TB, dir string, now time.Time) []ingest.Message {
	t.Helper()
	srv, err := lafake.New(lafake.Options{Workspaces: []string{DeliveryWorkspace}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	srv.Authority().AddClient(laTenant, laClientID, laSecret)
	for _, name := range DeliveryTables() {
		b, err := os.ReadFile(filepath.Join(dir, "loganalytics", name+".json"))
		if err != nil {
			t.Fatal(err)
		}
		var tbl lafake.Table
		if err := json.Unmarshal(b, &tbl); err != nil {
			t.Fatalf("table %s: %v", name, err)
		}
		srv.LoadTables(tbl)
	}
	cfg := loganalytics.DefaultConfig()
	cfg.WorkspaceID = DeliveryWorkspace
	cfg.Endpoint = srv.URL()
	cfg.Credential = loganalytics.CredentialConfig{
		Kind: loganalytics.CredentialClientSecret, TenantID: laTenant, ClientID: laClientID, ClientSecret: laSecret,
		AuthorityHost: srv.Authority().AuthorityHost(), DisableInstanceDiscovery: true,
	}
	cfg.Tables = DeliveryTables()
	cfg.StartLookback = 6 * time.Hour
	cfg.IngestionDelay = 2 * time.Minute
	cfg.WindowSize = time.Hour
	cfg.Overlap = 5 * time.Minute
	cfg.PollInterval = time.Minute

	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	src, err := loganalytics.New(cfg, nil, loganalytics.Options{
		Transport: srv.HTTPClient(),
		Now:       func() time.Time { return now },
		Idle:      cancel,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	defer src.Close(ctx)
	var out []ingest.Message
	for i := 0; ; i++ {
		if i > 1000 {
			t.Fatal("log analytics source never went idle")
		}
		batch, ack, err := src.ReadBatch(rctx)
		if errors.Is(err, context.Canceled) {
			break
		}
		if err != nil {
			t.Fatalf("read log analytics: %v", err)
		}
		out = append(out, batch...)
		if err := ack(ctx, nil); err != nil {
			t.Fatalf("ack: %v", err)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Stream < out[j].Stream })
	for i := range out {
		out[i].Received = now
	}
	return out
}
