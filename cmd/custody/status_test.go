package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custody-audit/custody/internal/chdbtest"
	"github.com/custody-audit/custody/internal/storetest"
	"github.com/custody-audit/custody/storage"
)

// TestStatusCountsDeliveries stores the same five records through two
// paths, and an altered copy of one through a third, and checks what
// custody status says about them, on both backends.
func TestStatusCountsDeliveries(t *testing.T) { storetest.Run(t, testStatusCountsDeliveries) }

func testStatusCountsDeliveries(t *testing.T, b storetest.Backend) {
	s := newCLIStore(t, b)
	dir := s.dir
	run := s.mustCLI
	fixtures := filepath.Join(chdbtest.RepoRoot(t), "queries", "testdata", "deliveries")
	// The altered copy of the push, as one Event Hubs body on one line.
	body, err := os.ReadFile(filepath.Join(fixtures, "conflict.eventhubs.json"))
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatal(err)
	}
	line, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	conflict := filepath.Join(dir, "conflict.json")
	if err := os.WriteFile(conflict, append(line, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}

	run("keygen")
	run("init")
	pt1h := filepath.Join(fixtures, "PT1H.json")
	run("append", "--format", "archive", "--stream", "archive/contosoaudit/insights-logs/PT1H.json", pt1h)
	run("append", "--format", "archive", "--stream", "eventhubs/contoso-audit.servicebus.windows.net/admin-logs/custody/0", pt1h)
	run("append", "--format", "eventhubs", "--stream", "eventhubs/contoso-audit.servicebus.windows.net/admin-logs/custody/1", conflict)

	var got struct {
		Deliveries deliveries `json:"deliveries"`
	}
	if err := json.Unmarshal([]byte(run("status", "--format", "json")), &got); err != nil {
		t.Fatal(err)
	}
	// The window is the week before the newest event (11:00:01.555 on
	// 2025-05-06), and holds every event.
	if want := (deliveries{From: "2025-04-29T11:00:01.555001Z", To: "2025-05-06T11:00:01.555001Z", Rows: 11, Events: 5, Repeated: 5, Conflicting: 1}); got.Deliveries != want {
		t.Errorf("status deliveries %+v, want %+v", got.Deliveries, want)
	}
	const line2 = "deliveries from 2025-04-29T11:00:01.555001Z to 2025-05-06T11:00:01.555001Z: 5 events in 11 rows; " +
		"5 delivered more than once; 1 with copies that disagree (custody query delivery-conflicts lists them)\n"
	if out := run("status"); !strings.Contains(out, "\n"+line2) {
		t.Errorf("status does not say %q:\n%s", line2, out)
	}
	// The last half hour holds only the Activity Log record: runStatus
	// called directly, on a store opened here.
	var out bytes.Buffer
	opened := false
	err = runStatus(context.Background(), statusOptions{Window: 30 * time.Minute, JSON: true, Stdout: &out,
		Open: func(ctx context.Context) (*storage.Store, error) {
			opened = true
			return storage.Open(ctx, s.engine(), storage.Options{})
		}})
	if err != nil || !opened {
		t.Fatalf("runStatus: %v (store opened: %v)", err, opened)
	}
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got.Deliveries.Events != 1 || got.Deliveries.Repeated != 1 || got.Deliveries.Conflicting != 0 {
		t.Errorf("status over the last half hour %+v, want the one Activity Log event, stored twice, copies agreeing", got.Deliveries)
	}
}
