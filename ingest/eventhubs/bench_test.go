package eventhubs_test

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/custody-audit/custody/internal/ehbroker"
)

// BenchmarkBrokerToSource measures events/s from the test broker through
// the real SDK into ReadBatch/ack, with ~1.5 KB kube-audit bodies over four
// partitions. A publisher keeps a bounded backlog ahead of the reader so
// memory stays flat whatever b.N is.
func BenchmarkBrokerToSource(b *testing.B) {
	record, err := os.ReadFile(filepath.Join("testdata", "kube-audit-record.json"))
	if err != nil {
		b.Fatal(err)
	}
	body := append(append([]byte(`{"records":[`), record...), "]}"...)
	const partitions, chunk, maxLag = 4, 500, 40000

	br := startBroker(b, ehbroker.Config{EventHub: "audit", Partitions: partitions, Retention: maxLag})
	cfg := testConfig(br)
	cfg.MaxBatchSize = 500
	cfg.Prefetch = 5000
	s := newSource(b, cfg, nil, nil)

	var consumed atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	total := int64(b.N)
	go func() {
		bodies := make([][]byte, chunk)
		for i := range bodies {
			bodies[i] = body
		}
		for published := int64(0); published < total; {
			if published-consumed.Load() > maxLag {
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Millisecond):
				}
				continue
			}
			n := min(int64(chunk), total-published)
			if _, err := br.Publish(br.PartitionIDs()[int(published/chunk)%partitions], bodies[:n]...); err != nil {
				b.Error(err)
				return
			}
			published += n
		}
	}()

	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	for consumed.Load() < total {
		msgs, ack, err := s.ReadBatch(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if err := ack(ctx, nil); err != nil {
			b.Fatal(err)
		}
		consumed.Add(int64(len(msgs)))
	}
	b.StopTimer()
	b.ReportMetric(float64(total)/time.Since(start).Seconds(), "events/s")
	// CPU per event (broker, publisher, SDK and source together) is steadier
	// than events/s on a shared machine.
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(total), "cpu-µs/event")
}

// cpuTime is the process's user plus system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
