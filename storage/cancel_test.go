package storage_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/custody-audit/custody/internal/chdbtest"
	"github.com/custody-audit/custody/storage/engine"
)

// TestLongStatementCancelled: a statement far too long to finish (hours of
// scanning) stops when its context is cancelled, on the embedded engine
// (issue 14 item 4): the call returns the context's error, the engine
// kills the query (it leaves system.processes), and the engine answers
// the next statement.
func TestLongStatementCancelled(t *testing.T) {
	eng := chdbtest.Open(t, "")
	const marker = "custody_cancel_test"
	for _, c := range []struct {
		name string
		run  func(ctx context.Context) error
	}{
		{"query", func(ctx context.Context) error {
			return engine.Each(ctx, eng, "SELECT count() AS "+marker+" FROM numbers(1e15) WHERE sipHash64(number) = 0", nil, func(engine.Rows) error { return nil })
		}},
		{"exec", func(ctx context.Context) error {
			return eng.Exec(ctx, "CREATE TEMPORARY TABLE IF NOT EXISTS t_"+marker+" ENGINE = Memory AS SELECT count() AS "+marker+" FROM numbers(1e15) WHERE sipHash64(number) = 0", nil)
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- c.run(ctx) }()
			// cancel once the engine runs the statement
			waitProcesses(t, eng, marker, func(n uint64) bool { return n > 0 })
			cancel()
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Fatalf("cancelled statement returned %v, want context.Canceled", err)
			}
			waitProcesses(t, eng, marker, func(n uint64) bool { return n == 0 })
		})
	}
}

// waitProcesses polls system.processes for statements containing marker
// until ok holds for their number (a liveness guard, not a timing: a
// statement the engine neither starts nor kills in minutes fails).
func waitProcesses(t *testing.T, eng engine.Engine, marker string, ok func(uint64) bool) {
	t.Helper()
	give := time.Now().Add(2 * time.Minute)
	for {
		var n uint64
		err := engine.Each(context.Background(), eng, "SELECT count() FROM system.processes WHERE position(query, {m:String}) > 0 AND position(query, 'system.processes') = 0",
			engine.Params{"m": marker}, func(r engine.Rows) error { return r.Scan(&n) })
		if err != nil {
			t.Fatal(err)
		}
		if ok(n) {
			return
		}
		if time.Now().After(give) {
			t.Fatalf("%d statements marked %s running after minutes", n, marker)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
