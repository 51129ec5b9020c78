package storage_test

import (
	"context"
	"testing"
	"time"

	"github.com/custody-audit/custody/storage"
)

// TestRecordVerify stores a verification's outcome and reads it back as
// the newest.
func TestRecordVerify(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	if last, err := f.store.LastVerify(ctx); err != nil || last != nil {
		t.Fatalf("before any verify: %+v %v", last, err)
	}
	appendN(t, f.store, "eh/p0", 1, 10)
	exec(t, f, "INSERT INTO custody.events SELECT * FROM custody.events WHERE chain = 'eh/p0' AND seq = 5")
	start := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	opts := storage.VerifyOptions{Verifier: f.verifier, From: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)}
	rep, err := f.store.Verify(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	rep.Elapsed = 1500 * time.Millisecond
	if err := f.store.RecordVerify(ctx, storage.NewVerifyRun(start, "cli", opts, rep)); err != nil {
		t.Fatal(err)
	}
	last, err := f.store.LastVerify(ctx)
	if err != nil || last == nil {
		t.Fatalf("last verify: %+v %v", last, err)
	}
	if !last.StartedAt.Equal(start) || !last.FinishedAt.Equal(start.Add(1500*time.Millisecond)) || last.Trigger != "cli" || last.Actor != "test" ||
		last.Result != storage.VerifyFailed || last.Rows != 11 || last.Errors != 1 || last.Warnings != 1 ||
		last.Findings["duplicate"] != 1 || last.Findings["no_external_checkpoint"] != 1 || last.ContentFrom != "2026-11-01T00:00:00Z" || last.ContentTo != "" {
		t.Fatalf("last verify: %+v", last)
	}
}
