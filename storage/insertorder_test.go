package storage_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/custody-audit/custody/event"
	"github.com/custody-audit/custody/storage"
)

// TestAppendInsertsInSortOrder appends events whose chain order is not the
// events table's sort order (days, services and actors interleaved, times
// going backwards) in two batches of one chain and checks, with the
// engine's own counters, that every part the append wrote was already
// sorted: the engine did not sort and copy the events insert. (One chain,
// so that the checkpoint and position inserts are a row each.) The chain
// still verifies in seq order.
func TestAppendInsertsInSortOrder(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	counters := func() (blocks, sorted uint64) {
		t.Helper()
		rows, err := f.eng.Query(ctx, "SELECT sumIf(value, event = 'MergeTreeDataWriterBlocks'), sumIf(value, event = 'MergeTreeDataWriterBlocksAlreadySorted') FROM system.events", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		if !rows.Next() {
			t.Fatalf("no counters: %v", rows.Err())
		}
		if err := rows.Scan(&blocks, &sorted); err != nil {
			t.Fatal(err)
		}
		return blocks, sorted
	}
	base := time.Date(2026, 11, 27, 23, 59, 0, 0, time.UTC)
	services := []event.Service{event.ServiceAKS, event.ServiceACR, event.ServiceACI}
	actors := []string{"zoe@contoso.com", "alice@contoso.com", "mallory@contoso.com", ""}
	var batches []storage.Batch
	for c := range 2 {
		b := storage.Batch{Stream: "a", Offset: int64(40 * (c + 1))}
		for i := 40*c + 1; i <= 40*(c+1); i++ {
			e := sampleEvent(i)
			e.ID = fmt.Sprintf("a-%d", i)
			// Backwards in time across midnight, then back to the day before.
			e.Time = base.Add(time.Duration((i%7)*-37+c*61) * time.Second).Add(time.Duration(i) * time.Microsecond)
			e.Service = services[i%len(services)]
			e.Actor.Name = actors[(i+c)%len(actors)]
			b.Events = append(b.Events, storage.BatchEvent{Offset: int64(i), Event: e})
		}
		batches = append(batches, b)
	}
	blocks0, sorted0 := counters()
	if _, err := f.store.AppendMany(ctx, batches); err != nil {
		t.Fatal(err)
	}
	blocks1, sorted1 := counters()
	// events, checkpoints and source_positions: one part each.
	if blocks := blocks1 - blocks0; blocks < 3 || sorted1-sorted0 != blocks {
		t.Errorf("the append wrote %d parts, %d of them already sorted: the engine sorted the rest itself", blocks, sorted1-sorted0)
	}
	if rep := f.verify(t); !rep.OK() || rep.Rows != 80 {
		t.Fatalf("verify: rows=%d %v", rep.Rows, rep.Findings)
	}
}
