package storage_test

import (
	"context"
	"testing"
	"time"

	"github.com/custody-audit/custody/storage"
)

// seedBenchMonths appends perMonth events of about 1.2 KB to each of two
// chains for each of months consecutive months from 2024-01, in batches
// of 20k (one checkpoint each).
func seedBenchMonths(b *testing.B, f *retentionFixture, months, perMonth int) int {
	b.Helper()
	ctx := context.Background()
	const batch = 20000
	total := 0
	for m := 0; m < months; m++ {
		start := time.Date(2024, time.Month(1+m), 2, 0, 0, 0, 0, time.UTC)
		for _, chain := range []string{"eh/p0", "eh/p1"} {
			for off := 0; off < perMonth; off += batch {
				n := min(batch, perMonth-off)
				events := benchEvents(f.seq[chain]+1, n)
				for i := range events {
					events[i].Event.ReceivedTime = start.Add(time.Duration(off+i) * time.Second)
					events[i].Event.Time = events[i].Event.ReceivedTime.Add(-time.Second)
				}
				f.seq[chain] += n
				if _, err := f.store.Append(ctx, storage.Batch{Stream: chain, Events: events, Offset: int64(f.seq[chain])}); err != nil {
					b.Fatal(err)
				}
				total += n
			}
		}
	}
	return total
}

// BenchmarkRetentionPlan measures planning over 240k events in 12 monthly
// partitions with two active legal holds (each one scan of the events).
func BenchmarkRetentionPlan(b *testing.B) {
	ctx := context.Background()
	f := newRetentionFixture(b)
	total := seedBenchMonths(b, f, 12, 10000)
	for _, h := range []storage.Hold{
		{Kind: storage.HoldActor, Actor: "mallory@contoso.com", Reason: "bench"},
		{Kind: storage.HoldResource, Resource: "/subscriptions/other", Reason: "bench"},
	} {
		if _, err := f.store.AddHold(ctx, h); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		plan, err := f.store.PlanRetention(ctx, storage.DefaultRetentionConfig())
		if err != nil || len(plan.Partitions) != 12 {
			b.Fatalf("plan: %v", err)
		}
	}
	b.ReportMetric(float64(b.N*total)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkRetentionApply measures a purge of 11 of 12 monthly partitions
// (220k of 240k events; the last is within retention), including the
// verification of both chains that precedes it, then a verify of what
// remains. events/s counts the events in the store before the purge.
func BenchmarkRetentionApply(b *testing.B) {
	ctx := context.Background()
	var total int
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		f := newRetentionFixture(b)
		total = seedBenchMonths(b, f, 12, 10000)
		// every month of 2024 but December is past the 400 days.
		f.now = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		b.StartTimer()
		res, err := f.store.ApplyRetention(ctx, storage.DefaultRetentionConfig(), storage.ApplyRetentionOptions{Verifier: f.verifier})
		if err != nil || len(res.Purged) != 11 {
			b.Fatalf("apply: %v %+v", err, res)
		}
		rep, err := f.store.Verify(ctx, storage.VerifyOptions{Verifier: f.verifier, CheckpointDir: f.cpDir})
		if err != nil || !rep.OK() {
			b.Fatalf("verify after purge: %v %v", err, rep.Findings)
		}
	}
	b.ReportMetric(float64(b.N*total)/b.Elapsed().Seconds(), "events/s")
}
