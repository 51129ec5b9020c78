package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/custody-audit/custody/internal/chdbtest"
	"github.com/custody-audit/custody/internal/ehbroker"
)

// BenchmarkRunEndToEnd measures the collector as deployed: the custody
// binary (`custody run`, default Event Hubs settings) reads a test broker
// pre-filled with AKS kube-audit bodies of 20 records of ~1.2 KB each
// (how diagnostic settings deliver them), across 4 partitions, normalizes
// them and appends them to the embedded store with integrity on (hash
// chain, signed checkpoints). It reports events/s from the moment the
// collector is ready until every partition is acknowledged, the same
// including start-up, and the peak RSS (VmHWM) of the collector and of its
// engine host. cpu-µs/event is the CPU both used until then;
// cpu-µs/event-settled adds what they use until the engine has been idle
// for 3 s (its background merge of the run's parts, which a running
// collector pays too). The trail is then checked: exact count, no
// duplicate, verify OK.
//
//	go test -run '^$' -bench BenchmarkRunEndToEnd -benchtime 1x ./cmd/custody/
//
// CUSTODY_BENCH_RECORDS overrides the number of records (default 200000);
// CUSTODY_BENCH_BATCH sets the source's max_batch_size and prefetch
// (messages of 20 records; default the config defaults, 500 and 300).
// The collector inherits the environment, so GOMEMLIMIT applies to it.
func BenchmarkRunEndToEnd(b *testing.B) {
	chdbtest.RequireLibrary(b)
	records := 200_000
	if v := os.Getenv("CUSTODY_BENCH_RECORDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 20 {
			b.Fatalf("CUSTODY_BENCH_RECORDS=%q: want a number of records >= 20", v)
		}
		records = n
	}
	const perBody, partitions = 20, 4
	bin := buildCustody(b)
	bodies := auditBodies("bench", records/perBody, perBody, 230)
	b.Logf("%d bodies of %d records, %d bytes per record", len(bodies), perBody, len(bodies[0])/perBody)
	records = len(bodies) * perBody

	for range b.N {
		cfg := ehbroker.DefaultConfig(e2eHub)
		cfg.Partitions = partitions
		br, err := ehbroker.Start(context.Background(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		last := publishAll(b, br, bodies)

		dir := b.TempDir()
		env := benchEnv(bin, dir)
		for _, args := range [][]string{{"keygen"}, {"init"}} {
			if out, err := custodyExec(bin, env, args...); err != nil {
				b.Fatalf("custody %s: %v\n%s", args[0], err, out)
			}
		}
		addr := freeAddr(b)
		yaml := fmt.Sprintf("eventhubs:\n  connection_string: %q\n", br.ConnectionString())
		if v := os.Getenv("CUSTODY_BENCH_BATCH"); v != "" {
			yaml += fmt.Sprintf("  max_batch_size: %s\n  prefetch: %s\n", v, v)
		}
		yaml += "metrics_addr: " + addr + "\n"

		start := time.Now()
		c := startChildCollector(b, bin, dir, yaml, addr, "info")
		ready := waitReady(b, c)
		c.waitStored(b, last, 10*time.Minute)
		done := time.Now()
		host, err := childNamed(c.cmd.Process.Pid, "custody-chdb")
		if err != nil {
			b.Fatal(err)
		}
		collectorHWM, collectorCPU := procStats(b, c.cmd.Process.Pid)
		hostHWM, hostCPU := procStats(b, host)
		// The engine merges the run's parts in the background after the
		// last insert, work a running collector pays as well: read the
		// CPU again once the engine has been idle for 3 s.
		hostSettled, settledAfter := settledCPU(b, host, 3*time.Second, 30*time.Second)
		_, collectorSettled := procStats(b, c.cmd.Process.Pid)
		c.sigterm(b)
		_ = br.Close(context.Background())

		out, err := custodyExec(bin, env, "sql", "--format", "tsv", "SELECT count(), uniqExact(event_id) FROM custody.events")
		if err != nil {
			b.Fatalf("count: %v\n%s", err, out)
		}
		if want := fmt.Sprintf("%d\t%d", records, records); !strings.Contains(out, want) {
			b.Fatalf("the trail holds %q, want %s events, all distinct", out, want)
		}
		verifyStart := time.Now()
		if out, err := custodyExec(bin, env, "verify"); err != nil || !strings.Contains(out, "verify OK") {
			b.Fatalf("verify: %v\n%s", err, out)
		}
		verifyTime := time.Since(verifyStart)

		b.ReportMetric(float64(records)/done.Sub(ready).Seconds(), "events/s")
		b.ReportMetric(float64(records)/done.Sub(start).Seconds(), "events/s-with-startup")
		b.ReportMetric(float64(collectorHWM)/(1<<20), "collector-peak-MiB")
		b.ReportMetric(float64(hostHWM)/(1<<20), "engine-peak-MiB")
		b.ReportMetric(float64(collectorHWM+hostHWM)/(1<<20), "total-peak-MiB")
		b.ReportMetric((collectorCPU+hostCPU).Seconds()*1e6/float64(records), "cpu-µs/event")
		b.ReportMetric((collectorSettled+hostSettled).Seconds()*1e6/float64(records), "cpu-µs/event-settled")
		b.Logf("%d events in %s after ready (%s with start-up); collector CPU %s, engine CPU %s; verify %s",
			records, done.Sub(ready).Round(time.Millisecond), done.Sub(start).Round(time.Millisecond), collectorCPU, hostCPU, verifyTime.Round(time.Millisecond))
		b.Logf("settled %s later (engine idle 3 s): collector CPU %s, engine CPU %s", settledAfter.Round(time.Second), collectorSettled, hostSettled)
	}
}

func benchEnv(bin, dir string) []string {
	return append(os.Environ(),
		"CUSTODY_STORE="+filepath.Join(dir, "store"),
		"CUSTODY_SIGNING_KEY="+filepath.Join(dir, "k"),
		"CUSTODY_VERIFY_KEY="+filepath.Join(dir, "k.pub"),
		"CUSTODY_CHECKPOINT_DIR="+filepath.Join(dir, "cp"),
		"CUSTODY_CHDB_HOST="+filepath.Join(bin, "custody-chdb"),
	)
}

func custodyExec(bin string, env []string, args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(bin, "custody"), args...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// waitReady waits for the collector's /readyz and returns when it answered.
func waitReady(t testing.TB, c *childCollector) time.Time {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(c.metrics + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Now()
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("collector not ready in 60s\n%s", c.stderr)
	return time.Time{}
}

// settledCPU waits until process pid has used less than 20 ms of CPU in
// each second for idle (at most limit) and returns its CPU time then and
// how long that took.
func settledCPU(t testing.TB, pid int, idle, limit time.Duration) (time.Duration, time.Duration) {
	t.Helper()
	start := time.Now()
	_, last := procStats(t, pid)
	quiet := time.Duration(0)
	for quiet < idle && time.Since(start) < limit {
		time.Sleep(time.Second)
		_, cpu := procStats(t, pid)
		if cpu-last < 20*time.Millisecond {
			quiet += time.Second
		} else {
			quiet = 0
		}
		last = cpu
	}
	return last, time.Since(start)
}

// procStats returns a live process's peak resident set (VmHWM, bytes) and
// the CPU time it used so far.
func procStats(t testing.TB, pid int) (int64, time.Duration) {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	var hwm int64
	for line := range strings.SplitSeq(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("VmHWM %q: %v", rest, err)
			}
			hwm = kb << 10
		}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after "(comm)": state is field 3, utime 14, stime 15.
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	const ticksPerSecond = 100 // USER_HZ on Linux
	return hwm, time.Duration(utime+stime) * time.Second / ticksPerSecond
}
