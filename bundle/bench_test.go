package bundle_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/custody-audit/custody/bundle"
	"github.com/custody-audit/custody/bundle/export"
	"github.com/custody-audit/custody/internal/storetest"
	"github.com/custody-audit/custody/storage"
)

// benchEvents is CUSTODY_EXPORT_BENCH_EVENTS, default 200,000.
func benchEvents(b testing.TB) int {
	if s := os.Getenv("CUSTODY_EXPORT_BENCH_EVENTS"); s != "" {
		n, err := strconv.Atoi(strings.ReplaceAll(s, "_", ""))
		if err != nil || n <= 0 {
			b.Fatalf("CUSTODY_EXPORT_BENCH_EVENTS=%q: want a positive count", s)
		}
		return n
	}
	return 200_000
}

// benchStore seeds a store of benchEvents(b) events of about 1.2 KB
// stored size (an AKS kube-audit record), appended through the real
// store in batches of 20,000 on 2 chains, so every export has real proofs
// to make.
func benchStore(b *testing.B) (*fixture, int) {
	return benchStoreT(b)
}

func benchStoreT(b testing.TB) (*fixture, int) {
	n := benchEvents(b) / 2 * 2
	f := newFixture(b, storetest.Embedded)
	{
		st, err := storage.Open(context.Background(), f.eng, storage.Options{Signer: f.signer, Actor: "bench"})
		if err != nil {
			b.Fatal(err)
		}
		pad := strings.Repeat("a", 900)
		const batch = 20000
		for _, chain := range []string{"bench/0", "bench/1"} {
			for off := 0; off < n/2; off += batch {
				k := min(batch, n/2-off)
				sb := storage.Batch{Stream: chain, Offset: int64(off + k)}
				for i := off; i < off+k; i++ {
					e := aksEvent(i)
					e.Time = time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Millisecond)
					e.Raw = []byte(fmt.Sprintf(`{"auditID":"b-%d","requestURI":"/api/v1/namespaces/prod/pods/web-%d/exec","pad":"%s"}`, i, i, pad))
					sb.Events = append(sb.Events, storage.BatchEvent{Offset: int64(i + 1), Event: e})
				}
				if _, err := st.Append(context.Background(), sb); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	return f, n
}

func benchWindow() (time.Time, time.Time) {
	return time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2027, 1, 2, 0, 0, 0, 0, time.UTC)
}

// BenchmarkBundle measures, per format, export of every event of the
// benchmark store (reading from the embedded engine, recomputing each
// row's hash, writing the data file, computing the range proofs) and
// verify-export of the bundle. Reported as events/s.
//
//	go test ./bundle -run '^$' -bench Bundle -benchtime 3x
//	CUSTODY_EXPORT_BENCH_EVENTS=1000000 go test ./bundle -run '^$' -bench Bundle -benchtime 1x
func BenchmarkBundle(b *testing.B) {
	f, n := benchStore(b)
	from, to := benchWindow()
	for _, format := range bundle.Formats() {
		b.Run("export/"+format, func(b *testing.B) {
			cpu := startCPU()
			for i := 0; i < b.N; i++ {
				dir := filepath.Join(b.TempDir(), "bundle")
				res, err := export.Export(context.Background(), export.Options{
					Engine: f.eng,
					From:   from,
					To:     to,
					Output: bundle.Output{Signer: f.signer, Verifier: f.verifier, Format: format, Dir: dir},
				})
				if err != nil {
					b.Fatal(err)
				}
				if res.Manifest.Rows != uint64(n) {
					b.Fatalf("exported %d rows, want %d", res.Manifest.Rows, n)
				}
				if i == 0 {
					b.ReportMetric(float64(res.Manifest.Files[0].Bytes)/float64(n), "bytes/event")
				}
			}
			cpu.report(b)
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "events/s")
		})
	}
	for _, format := range bundle.Formats() {
		b.Run("verify/"+format, func(b *testing.B) {
			dir := filepath.Join(b.TempDir(), "bundle")
			if _, err := export.Export(context.Background(), export.Options{
				Engine: f.eng,
				From:   from,
				To:     to,
				Output: bundle.Output{Signer: f.signer, Verifier: f.verifier, Format: format, Dir: dir},
			}); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			cpu := startCPU()
			for i := 0; i < b.N; i++ {
				rep, err := bundle.Verify(context.Background(), dir, bundle.VerifyOptions{Verifier: f.verifier})
				if err != nil || !rep.OK() || rep.Rows != uint64(n) {
					b.Fatalf("verify: %v %+v", err, rep)
				}
			}
			cpu.report(b)
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// cpuClock reads the CPU time of this process and of the engine host (a
// child process), so that a benchmark on a busy machine shows where the
// time went: wall time alone mixes in every other process.
type cpuClock struct{ self, children time.Duration }

func startCPU() cpuClock { return cpuClock{selfCPU(), childrenCPU()} }

// report adds the CPU seconds per operation since c.
func (c cpuClock) report(b *testing.B) {
	b.ReportMetric((selfCPU()-c.self).Seconds()/float64(b.N), "go-cpu-s/op")
	if ch := childrenCPU(); ch > 0 {
		b.ReportMetric((ch-c.children).Seconds()/float64(b.N), "engine-cpu-s/op")
	}
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// childrenCPU sums the CPU time of the running child processes (Linux
// /proc; 0 elsewhere).
func childrenCPU() time.Duration {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	self := strconv.Itoa(os.Getpid())
	var total time.Duration
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		st, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ... utime(14) stime(15), after the comm
		i := strings.LastIndexByte(string(st), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(st[i+1:]))
		if len(f) < 13 || f[1] != self {
			continue
		}
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		stt, _ := strconv.ParseInt(f[12], 10, 64)
		total += time.Duration(ut+stt) * time.Second / 100 // USER_HZ
	}
	return total
}
