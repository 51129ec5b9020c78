package loganalytics

import (
	"fmt"
	"testing"
	"time"

	"github.com/custody-audit/custody/internal/lafake"
)

// BenchmarkDrain measures the source end to end: the real azlogs client
// over TLS to the local server, 15-minute windows, JSON row bodies,
// hashing for de-duplication. One op reads 20,000 AKSAudit rows spread
// from 2h55m to 5m before now (all inside the lookback and the delay).
//
//	go test ./ingest/loganalytics -run '^$' -bench Drain -benchtime 5x
func BenchmarkDrain(b *testing.B) {
	const rows = 20000
	srv := newServer(b, lafake.Table{Name: "AKSAudit", Columns: loadTable(b, "AKSAudit").Columns})
	step := (2*time.Hour + 50*time.Minute) / rows
	batch := make([]lafake.Row, 0, rows)
	for i := range rows {
		batch = append(batch, aksRow(b, t0.Add(-2*time.Hour-55*time.Minute+time.Duration(i)*step), fmt.Sprintf("bench-%06d", i)))
	}
	if err := srv.AppendRows("AKSAudit", batch...); err != nil {
		b.Fatal(err)
	}
	cfg := testConfig(srv, "AKSAudit")
	e := &env{t: b, srv: srv, clock: &clock{now: t0}, sleep: &sleeper{}, logs: &syncBuffer{}, cfg: cfg}
	b.ResetTimer()
	for range b.N {
		src := e.open(nil)
		msgs := e.mustDrain(src)
		if len(msgs) != rows {
			b.Fatalf("drained %d rows, want %d", len(msgs), rows)
		}
	}
	b.ReportMetric(float64(rows*b.N)/b.Elapsed().Seconds(), "rows/s")
}
