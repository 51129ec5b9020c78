package storage_test

import (
	"context"
	"testing"
	"time"

	"github.com/custody-audit/custody/internal/chdbtest"
	"github.com/custody-audit/custody/storage"
)

// BenchmarkEngineCost splits the embedded engine's CPU per appended event
// into its parts, to show where the write ceiling is (see the README's
// benchmark notes). Each iteration appends a warm-up batch and ten
// 20k-event batches with the events table's merges stopped, then merges
// them, then makes small appends:
//
//   - insert-µs/event: engine CPU of the appends with merges stopped (the
//     events insert: sort by the forensic key, LowCardinality dictionaries,
//     skip indexes, compression, the part's files; plus each batch's
//     position and checkpoint rows);
//
//   - merge-µs/merged-row: engine CPU of merging those parts, per row the
//     merges wrote (ClickHouse's MergedRows);
//
//   - engine-ms/append: engine CPU of one Append of ten events, which is
//     fixed cost: three INSERT statements, their parts, and the merges of
//     small parts they cause.
//
//     go test ./storage -run '^$' -bench EngineCost -benchtime 1x
func BenchmarkEngineCost(b *testing.B) {
	const batch, batches, small, smallAppends = 20000, 10, 10, 20
	ctx := context.Background()
	engineCPU := func() time.Duration { _, c := chdbtest.CPUTimes(); return c }
	var insert, merge, statements time.Duration
	var merged uint64
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		f := newFixtureB(b)
		if err := f.eng.Exec(ctx, "SYSTEM STOP MERGES custody.events", nil); err != nil {
			b.Fatal(err)
		}
		events := benchEvents(1, batch)
		// One batch first, so that the engine's one-time start-up work
		// (thread pools, caches, the first part of each table) is not
		// counted as insert cost.
		if _, err := f.store.Append(ctx, storage.Batch{Stream: "bench", Events: events, Offset: batch}); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		off := batch
		c0 := engineCPU()
		for range batches {
			for j := range events {
				events[j].Offset = int64(off + j + 1)
			}
			off += batch
			if _, err := f.store.Append(ctx, storage.Batch{Stream: "bench", Events: events, Offset: int64(off)}); err != nil {
				b.Fatal(err)
			}
		}
		c1 := engineCPU()
		m0 := mergedRows(b, f)
		for _, q := range []string{"SYSTEM START MERGES custody.events", "OPTIMIZE TABLE custody.events FINAL"} {
			if err := f.eng.Exec(ctx, q, nil); err != nil {
				b.Fatal(err)
			}
		}
		c2 := engineCPU()
		merged += mergedRows(b, f) - m0
		tiny := events[:small]
		for range smallAppends {
			for j := range tiny {
				tiny[j].Offset = int64(off + j + 1)
			}
			off += small
			if _, err := f.store.Append(ctx, storage.Batch{Stream: "bench", Events: tiny, Offset: int64(off)}); err != nil {
				b.Fatal(err)
			}
		}
		c3 := engineCPU()
		insert += c1 - c0
		merge += c2 - c1
		statements += c3 - c2
	}
	b.ReportMetric(float64(insert.Microseconds())/float64(b.N*batches*batch), "insert-µs/event")
	b.ReportMetric(float64(merge.Microseconds())/float64(merged), "merge-µs/merged-row")
	b.ReportMetric(float64(statements.Microseconds())/1000/float64(b.N*smallAppends), "engine-ms/append")
}
