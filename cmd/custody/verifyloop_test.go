package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/custody-audit/custody/event"
	"github.com/custody-audit/custody/internal/storetest"
	"github.com/custody-audit/custody/storage"
)

// TestVerifyLoop runs the collector's periodic verification on a real
// store: a clean trail, then one with a row stored twice. Each outcome is
// recorded in verify_runs and shown by the gauges; a restarted collector
// takes the gauges and the next due time from the newest record.
func TestVerifyLoop(t *testing.T) {
	ctx := context.Background()
	f := storetest.New(t, "collector-test")
	b := storage.Batch{Stream: "eh/p0", Offset: 3}
	for i := 1; i <= 3; i++ {
		b.Events = append(b.Events, storage.BatchEvent{Offset: int64(i), Event: event.Event{ID: fmt.Sprint("e", i), Time: time.Date(2026, 11, 27, 10, 0, i, 0, time.UTC),
			ReceivedTime: time.Date(2026, 11, 27, 10, 1, 0, 0, time.UTC), Service: event.ServiceAKS, Raw: []byte("{}"), RawFormat: "json"}})
	}
	if _, err := f.Store.Append(ctx, b); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m, err := newVerifyMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	cpTimes := newCheckpointCollector(f.Store, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := reg.Register(cpTimes); err != nil {
		t.Fatal(err)
	}
	if err := cpTimes.refresh(ctx); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	l := &verifyLoop{store: f.Store, interval: time.Hour, metrics: m, log: slog.New(slog.NewTextHandler(&logs, nil)),
		opts: storage.VerifyOptions{Verifier: f.Verifier, CheckpointDir: f.CheckpointDir}}
	now := time.Now()
	if next, err := l.start(ctx, now); err != nil || !next.Equal(now) {
		t.Fatalf("first verification due %v (%v), want now", next, err)
	}
	if err := l.once(ctx); err != nil {
		t.Fatal(err)
	}
	first, err := f.Store.LastVerify(ctx)
	if err != nil || first == nil || first.Result != storage.VerifyOK || first.Trigger != "collector" || first.Rows != 3 {
		t.Fatalf("recorded: %+v %v", first, err)
	}
	ts := fmt.Sprint(float64(first.FinishedAt.UnixMicro()) / 1e6)
	want := `
# HELP custody_verify_findings Findings of the last verification, by severity (error fails verification; warning does not).
# TYPE custody_verify_findings gauge
custody_verify_findings{severity="error"} 0
custody_verify_findings{severity="warning"} 0
# HELP custody_verify_last_run_timestamp_seconds Unix time the last verification of the trail finished (0: none recorded).
# TYPE custody_verify_last_run_timestamp_seconds gauge
custody_verify_last_run_timestamp_seconds ` + ts + `
# HELP custody_verify_last_success_timestamp_seconds Unix time of the last verification with no error findings (0: none recorded).
# TYPE custody_verify_last_success_timestamp_seconds gauge
custody_verify_last_success_timestamp_seconds ` + ts + `
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "custody_verify_findings", "custody_verify_last_run_timestamp_seconds", "custody_verify_last_success_timestamp_seconds"); err != nil {
		t.Fatal(err)
	}
	if n, err := testutil.GatherAndCount(reg, "custody_checkpoint_last_timestamp_seconds"); err != nil || n != 1 {
		t.Fatalf("checkpoint gauges: %d %v", n, err)
	}

	if err := f.Eng.Exec(ctx, "INSERT INTO custody.events SELECT * FROM custody.events WHERE seq = 2", nil); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(f.CheckpointDir, "eh%2Fp0.checkpoint")); err != nil {
		t.Fatal(err)
	}
	if err := l.once(ctx); err != nil {
		t.Fatal(err)
	}
	second, err := f.Store.LastVerify(ctx)
	if err != nil || second.Result != storage.VerifyFailed || second.Errors != 1 || second.Warnings != 1 || second.Findings["duplicate"] != 1 {
		t.Fatalf("recorded: %+v %v", second, err)
	}
	want2 := `
# HELP custody_verify_findings Findings of the last verification, by severity (error fails verification; warning does not).
# TYPE custody_verify_findings gauge
custody_verify_findings{severity="error"} 1
custody_verify_findings{severity="warning"} 1
# HELP custody_verify_last_success_timestamp_seconds Unix time of the last verification with no error findings (0: none recorded).
# TYPE custody_verify_last_success_timestamp_seconds gauge
custody_verify_last_success_timestamp_seconds ` + ts + `
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want2), "custody_verify_findings", "custody_verify_last_success_timestamp_seconds"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "trail verification FAILED") || !strings.Contains(logs.String(), "kind=duplicate") {
		t.Errorf("log: %s", logs.String())
	}

	// a restarted collector: the gauges come from the record, the next
	// verification is due an interval after it
	reg2 := prometheus.NewRegistry()
	m2, _ := newVerifyMetrics(reg2)
	l2 := &verifyLoop{store: f.Store, interval: time.Hour, metrics: m2, log: l.log, opts: l.opts}
	next, err := l2.start(ctx, second.FinishedAt.Add(time.Minute))
	if err != nil || !next.Equal(second.FinishedAt.Add(time.Hour)) {
		t.Fatalf("next due %v (%v), want %v", next, err, second.FinishedAt.Add(time.Hour))
	}
	if got := testutil.ToFloat64(m2.findings.WithLabelValues("error")); got != 1 {
		t.Errorf("restored error findings = %v", got)
	}
	if got := testutil.ToFloat64(m2.lastSuccess); got != 0 {
		t.Errorf("restored last success = %v, want 0 (the newest record failed)", got)
	}
}

func TestVerifyConfig(t *testing.T) {
	eh := "eventhubs:\n  connection_string: \"Endpoint=sb://contoso.servicebus.windows.net/;SharedAccessKeyName=listen;SharedAccessKey=eA==;EntityPath=aks-audit\"\n"
	for _, tc := range []struct {
		yaml    string
		want    time.Duration
		wantErr string
	}{
		{"", 24 * time.Hour, ""},
		{"verify:\n  interval: 0s\n", 0, ""},
		{"verify:\n  interval: 6h\n", 6 * time.Hour, ""},
		{"verify:\n  interval: -1h\n", 0, "verify.interval: -1h0m0s must not be negative"},
		{"verify:\n  interval: 10s\n", 0, "verify.interval: 10s is shorter than a minute"},
		{"verify:\n  every: 1h\n", 0, "field every not found"},
	} {
		p := filepath.Join(t.TempDir(), "custody.yaml")
		if err := os.WriteFile(p, []byte(eh+tc.yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		rc, err := loadRunConfig(p)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: err = %v, want %q", tc.yaml, err, tc.wantErr)
			}
			continue
		}
		if err != nil || rc.Verify.Interval != tc.want {
			t.Errorf("%q: interval %v (%v), want %v", tc.yaml, rc.Verify.Interval, err, tc.want)
		}
	}
}
