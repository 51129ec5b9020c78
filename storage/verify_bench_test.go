package storage_test

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/custody-audit/custody/internal/chdbtest"
	"github.com/custody-audit/custody/storage"
	"github.com/custody-audit/custody/storage/engine"
)

// BenchmarkVerifyCost is BenchmarkVerify (200k stored events of ~1.2 KB)
// with the CPU it costs per event in this process (the Go walk) and in the
// engine host: unlike events/s, numbers that other load on the machine
// moves little. Named apart from BenchmarkVerify so that -bench 'Verify$'
// runs only that one.
func BenchmarkVerifyCost(b *testing.B) { benchVerifyCost(b, false) }

// BenchmarkRecomputeInGo measures `custody verify --independent` over the
// same store: the chain walk without the engine's hashing, then every row
// read out and rehashed in Go.
func BenchmarkRecomputeInGo(b *testing.B) { benchVerifyCost(b, true) }

func benchVerifyCost(b *testing.B, independent bool) {
	const total = 200000
	f := seededStore(b, total)
	ctx := context.Background()
	// let the engine's merges of the appended parts finish: their CPU is
	// the append's, not verify's
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		var merging uint64
		if err := engine.Each(ctx, f.eng, "SELECT count() FROM system.merges", nil, func(r engine.Rows) error { return r.Scan(&merging) }); err != nil {
			b.Fatal(err)
		}
		if merging == 0 {
			break
		}
	}
	goCPU, engineCPU := chdbtest.CPUTimes()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rep, err := f.store.Verify(ctx, storage.VerifyOptions{Verifier: f.verifier, CheckpointDir: f.cpDir, Independent: independent})
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

// BenchmarkVerifyMemory verifies a store of CUSTODY_VERIFY_BENCH_EVENTS
// events (default 1,000,000; ~1.2 KB each, on 4 chains appended in turn,
// as an Event Hubs namespace's partitions are) and reports the engine
// host's peak resident memory during the verification, which the walk's
// windows bound (see verifyChains), and this process's.
//
//	CUSTODY_VERIFY_BENCH_EVENTS=4000000 go test ./storage -run '^$' -bench VerifyMemory -benchtime 1x
func BenchmarkVerifyMemory(b *testing.B) {
	total := 1_000_000
	if s := os.Getenv("CUSTODY_VERIFY_BENCH_EVENTS"); s != "" {
		n, err := strconv.Atoi(strings.ReplaceAll(s, "_", ""))
		if err != nil || n <= 0 {
			b.Fatalf("CUSTODY_VERIFY_BENCH_EVENTS=%q: want a positive count", s)
		}
		total = n
	}
	const chains, batch = 4, 20000
	total = total / (chains * batch) * chains * batch
	f := newFixtureB(b)
	ctx := context.Background()
	for off := 0; off < total/chains; off += batch {
		for c := 0; c < chains; c++ {
			sb := storage.Batch{Stream: "bench/" + strconv.Itoa(c), Events: benchEvents(off+1, batch), Offset: int64(off + batch)}
			if _, err := f.store.Append(ctx, sb); err != nil {
				b.Fatal(err)
			}
		}
	}
	var goPeak uint64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		resetPeakRSS()
		done := make(chan struct{})
		go func() {
			var ms runtime.MemStats
			for {
				runtime.ReadMemStats(&ms)
				goPeak = max(goPeak, ms.HeapInuse)
				select {
				case <-done:
					return
				case <-time.After(20 * time.Millisecond):
				}
			}
		}()
		rep, err := f.store.Verify(ctx, storage.VerifyOptions{Verifier: f.verifier, CheckpointDir: f.cpDir})
		close(done)
		if err != nil || !rep.OK() || rep.Rows != uint64(total) {
			b.Fatalf("verify: %v %+v", err, rep)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*total)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(childrenPeakRSS())/(1<<20), "engine-peak-MiB")
	b.ReportMetric(float64(goPeak)/(1<<20), "go-heap-peak-MiB")
}

// childPIDs lists this process's children (Linux /proc; none elsewhere).
func childPIDs() []string {
	self := strconv.Itoa(os.Getpid())
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var pids []string
	for _, p := range stats {
		st, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		i := strings.LastIndexByte(string(st), ')')
		if f := strings.Fields(string(st[i+1:])); i >= 0 && len(f) > 1 && f[1] == self {
			pids = append(pids, filepath.Base(filepath.Dir(p)))
		}
	}
	return pids
}

// resetPeakRSS starts the children's peak resident memory afresh.
func resetPeakRSS() {
	for _, pid := range childPIDs() {
		_ = os.WriteFile("/proc/"+pid+"/clear_refs", []byte("5"), 0)
	}
}

// childrenPeakRSS sums the children's peak resident memory (VmHWM).
func childrenPeakRSS() uint64 {
	var total uint64
	for _, pid := range childPIDs() {
		b, err := os.ReadFile("/proc/" + pid + "/status")
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
				kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				total += kb << 10
			}
		}
	}
	return total
}
