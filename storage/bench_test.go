package storage_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/custody-audit/custody/internal/chdbtest"
	"github.com/custody-audit/custody/storage"
)

// benchEvents makes n events of about 1.2 KB stored size (raw record plus
// fields), like an AKS kube-audit record.
func benchEvents(from, n int) []storage.BatchEvent {
	pad := strings.Repeat("a", 900)
	out := make([]storage.BatchEvent, n)
	for i := range out {
		e := sampleEvent(from + i)
		e.Raw = []byte(fmt.Sprintf(`{"auditID":"b-%d","requestURI":"/api/v1/namespaces/prod/pods/web-%d/exec","pad":"%s"}`, from+i, i, pad))
		out[i] = storage.BatchEvent{Offset: int64(from + i), Event: e}
	}
	return out
}

// BenchmarkAppend measures appending into the embedded engine with the
// whole integrity path on: hashing, Merkle tree, a signed checkpoint and a
// position row per batch. Reported as events/s.
func BenchmarkAppend(b *testing.B) {
	const batch = 20000
	f := newFixtureB(b)
	ctx := context.Background()
	events := benchEvents(1, batch)
	off := 0
	appendOne := func() {
		for j := range events {
			events[j].Offset = int64(off + j + 1)
		}
		off += batch
		if _, err := f.store.Append(ctx, storage.Batch{Stream: "bench", Events: events, Offset: int64(off)}); err != nil {
			b.Fatal(err)
		}
	}
	// One batch first: a collector runs for months, so measure its steady
	// state, not the first batch's buffer growth.
	appendOne()
	merged := mergedRows(b, f)
	goCPU, engineCPU := chdbtest.CPUTimes()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		appendOne()
	}
	b.StopTimer()
	goCPU2, engineCPU2 := chdbtest.CPUTimes()
	n := float64(b.N * batch)
	b.ReportMetric(n/b.Elapsed().Seconds(), "events/s")
	// Rows the engine's merges rewrote per appended event: unlike CPU
	// time, a count that load on the machine does not move.
	b.ReportMetric(float64(mergedRows(b, f)-merged)/n, "merged-rows/event")
	b.ReportMetric(float64((goCPU2-goCPU).Microseconds())/n, "go-cpu-µs/event")
	b.ReportMetric(float64((engineCPU2-engineCPU).Microseconds())/n, "engine-cpu-µs/event")
}

// mergedRows is how many rows the engine's merges have written so far
// (ClickHouse's MergedRows counter).
func mergedRows(b *testing.B, f *fixture) uint64 {
	rows, err := f.eng.Query(context.Background(), "SELECT sum(value) FROM system.events WHERE event = 'MergedRows'", nil)
	if err != nil {
		b.Fatal(err)
	}
	defer rows.Close()
	var n uint64
	for rows.Next() {
		if err := rows.Scan(&n); err != nil {
			b.Fatal(err)
		}
	}
	return n
}

// BenchmarkVerify measures verify over 200k stored events.
// seededStore is a store holding total benchmark events (~1.2 KB each)
// on one chain, appended in batches of 20,000.
func seededStore(b *testing.B, total int) *fixture {
	const batch = 20000
	f := newFixtureB(b)
	for off := 0; off < total; off += batch {
		k := min(batch, total-off)
		if _, err := f.store.Append(context.Background(), storage.Batch{Stream: "bench", Events: benchEvents(off+1, k), Offset: int64(off + k)}); err != nil {
			b.Fatal(err)
		}
	}
	return f
}

func BenchmarkVerify(b *testing.B) {
	const total = 200000
	f := seededStore(b, total)
	ctx := context.Background()
	goCPU, engineCPU := chdbtest.CPUTimes()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rep, err := f.store.Verify(ctx, storage.VerifyOptions{Verifier: f.verifier, CheckpointDir: f.cpDir})
		if err != nil || !rep.OK() || rep.Rows != total {
			b.Fatalf("verify: %v %+v", err, rep)
		}
	}
	b.StopTimer()
	goCPU2, engineCPU2 := chdbtest.CPUTimes()
	n := float64(b.N * total)
	b.ReportMetric(n/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64((goCPU2-goCPU).Microseconds())/n, "go-cpu-µs/event")
	b.ReportMetric(float64((engineCPU2-engineCPU).Microseconds())/n, "engine-cpu-µs/event")
}

// BenchmarkReadRows measures reading full event rows back (what verify and
// export do), without hashing.
func BenchmarkReadRows(b *testing.B) {
	const total = 100000
	f := seededStore(b, total)
	ctx := context.Background()
	goCPU, engineCPU := chdbtest.CPUTimes()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rows, err := f.eng.QueryBlocks(ctx, "SELECT "+storage.EventColumnList()+" FROM custody.events", nil)
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		var r storage.Row
		for rows.Next() {
			if err := storage.ScanRow(rows, &r); err != nil {
				b.Fatal(err)
			}
			n++
		}
		rows.Close()
		if n != total {
			b.Fatalf("read %d rows", n)
		}
	}
	b.StopTimer()
	goCPU2, engineCPU2 := chdbtest.CPUTimes()
	n := float64(b.N * total)
	b.ReportMetric(n/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(float64((goCPU2-goCPU).Microseconds())/n, "go-cpu-µs/row")
	b.ReportMetric(float64((engineCPU2-engineCPU).Microseconds())/n, "engine-cpu-µs/row")
}
