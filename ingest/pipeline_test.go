package ingest_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/custody-audit/custody/ingest"
	"github.com/custody-audit/custody/ingest/archive"
	"github.com/custody-audit/custody/normalize"
)

// kubeAuditLine is one PT1H.json line of the kube-audit-admin category,
// shaped as Microsoft documents AKS resource logs in storage (see
// normalize/testdata/archive/pt1h-mixed-documented.json).
func kubeAuditLine(i int, stage string) string {
	log := fmt.Sprintf(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"pipeline-%04d","stage":%q,`+
		`"requestURI":"/api/v1/namespaces/payments/pods/api-%d/exec?command=sh&container=api","verb":"create",`+
		`"user":{"username":"alice@contoso.com","groups":["system:authenticated"]},"sourceIPs":["20.61.12.7"],"userAgent":"kubectl/v1.30.3",`+
		`"objectRef":{"resource":"pods","apiVersion":"v1","namespace":"payments","name":"api-%d","subresource":"exec"},`+
		`"responseStatus":{"metadata":{},"code":101},"requestReceivedTimestamp":"2025-05-06T09:12:%02d.104512Z","stageTimestamp":"2025-05-06T09:12:%02d.131907Z"}`,
		i, stage, i, i, i%60, i%60)
	return fmt.Sprintf(`{"category": "kube-audit-admin", "operationName": "Microsoft.ContainerService/managedClusters/diagnosticLogs/Read", "properties": {"log": %q, "pod": "kube-apiserver-7d9f8c6b5-x2x7q", "stream": "stdout"}, "resourceId": "/SUBSCRIPTIONS/4F1A2B3C-0000-4000-8000-00000000C0DE/RESOURCEGROUPS/PROD-RG/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/PROD-AKS", "time": "2025-05-06T09:12:%02d.132000Z"}`,
		log+"\n", i%60)
}

// archiveFixture writes a PT1H.json of n good lines plus one line that is
// not JSON (quarantined) and one RequestReceived stage (dropped by
// policy), and returns its directory and the number of lines.
func archiveFixture(t *testing.T, n int) (dir string, lines int) {
	t.Helper()
	dir = t.TempDir()
	p := filepath.Join(dir, "insights-logs-kube-audit-admin", "resourceId=", "SUBSCRIPTIONS", "4F1A2B3C-0000-4000-8000-00000000C0DE",
		"RESOURCEGROUPS", "PROD-RG", "PROVIDERS", "MICROSOFT.CONTAINERSERVICE", "MANAGEDCLUSTERS", "PROD-AKS",
		"y=2025", "m=05", "d=06", "h=09", "m=00", "PT1H.json")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for i := 1; i <= n; i++ {
		b.WriteString(kubeAuditLine(i, "ResponseComplete") + "\n")
		if i == n/2 {
			b.WriteString(`{"category": "kube-audit-admin", "properties": {"log": ` + "\n")
			b.WriteString(kubeAuditLine(9000, "RequestReceived") + "\n")
		}
	}
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, n + 2
}

// memSink keeps batches the way the store does: per stream, records at or
// below the stream's position are skipped, so a redelivered batch stores
// nothing twice. It fails its first failures writes.
type memSink struct {
	mu        sync.Mutex
	failures  int
	writes    int
	pos       map[string]int64
	events    map[string]int // event id → times stored
	quar      int
	dropped   map[string]int
	onWritten func(ingest.Batch)
}

func newMemSink(failures int) *memSink {
	return &memSink{failures: failures, pos: map[string]int64{}, events: map[string]int{}, dropped: map[string]int{}}
}

func (s *memSink) Write(ctx context.Context, batches []ingest.Batch) ([]ingest.SinkResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writes++
	if s.failures > 0 {
		s.failures--
		return nil, errors.New("store unavailable")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make([]ingest.SinkResult, len(batches))
	for i, b := range batches {
		out[i] = s.writeOne(b)
	}
	return out, nil
}

func (s *memSink) writeOne(b ingest.Batch) ingest.SinkResult {
	var res ingest.SinkResult
	stored := s.pos[b.Stream]
	for _, e := range b.Events {
		if e.Offset <= stored {
			res.Skipped++
			continue
		}
		s.events[e.Event.ID]++
		res.Stored++
	}
	for _, q := range b.Quarantined {
		if q.Offset > stored {
			s.quar++
			res.Quarantined++
		}
	}
	if b.Offset > stored {
		for r, n := range b.Dropped {
			s.dropped[r] += n
		}
		s.pos[b.Stream] = b.Offset
	}
	if s.onWritten != nil {
		s.onWritten(b)
	}
	return res
}

func (s *memSink) positions() map[string]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int64{}
	for k, v := range s.pos {
		out[k] = v
	}
	return out
}

func newArchiveSource(t *testing.T, dir string, pos map[string]int64) *archive.Source {
	t.Helper()
	st, err := archive.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg := archive.DefaultConfig()
	cfg.MaxBatchMessages = 7
	src, err := archive.New(st, cfg, archive.Resume{Positions: pos}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = src.Close(context.Background()) })
	return src
}

func newPipeline(t *testing.T, src ingest.Source, sink ingest.Sink, reg prometheus.Registerer) *ingest.Pipeline {
	t.Helper()
	n, err := normalize.New(normalize.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	m, err := ingest.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	cfg := ingest.DefaultPipelineConfig()
	cfg.Name, cfg.SourceKind = "backfill", "file"
	cfg.RetryDelay, cfg.MaxRetryDelay = time.Millisecond, 4*time.Millisecond
	p, err := ingest.NewPipeline(src, n, sink, cfg, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func counter(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue metric
				}
			}
			switch {
			case m.GetCounter() != nil:
				total += m.GetCounter().GetValue()
			case m.GetHistogram() != nil:
				total += float64(m.GetHistogram().GetSampleCount())
			case m.GetGauge() != nil:
				total += m.GetGauge().GetValue()
			}
		}
	}
	return total
}

func TestPipelineRetriesSinkFailures(t *testing.T) {
	const good = 40
	dir, lines := archiveFixture(t, good)
	for _, failures := range []int{0, 1, 5} {
		t.Run(fmt.Sprintf("failures=%d", failures), func(t *testing.T) {
			sink := newMemSink(failures)
			reg := prometheus.NewRegistry()
			p := newPipeline(t, newArchiveSource(t, dir, nil), sink, reg)
			if err := p.Run(context.Background()); err != nil {
				t.Fatalf("run: %v", err)
			}
			if len(sink.events) != good {
				t.Fatalf("stored %d distinct events, want %d", len(sink.events), good)
			}
			for id, n := range sink.events {
				if n != 1 {
					t.Errorf("event %s stored %d times", id, n)
				}
			}
			if sink.quar != 1 {
				t.Errorf("quarantined %d, want 1", sink.quar)
			}
			if got := sink.dropped[normalize.DropStageReceived]; got != 1 {
				t.Errorf("dropped %v, want 1 %s", sink.dropped, normalize.DropStageReceived)
			}
			pos := sink.positions()
			if len(pos) != 1 {
				t.Fatalf("positions %v, want one stream", pos)
			}
			for stream, off := range pos {
				if off != int64(lines) {
					t.Errorf("position of %s = %d, want %d (last line)", stream, off, lines)
				}
			}
			st := p.Stats()
			want := ingest.Stats{Messages: int64(lines), Batches: int64((lines + 6) / 7), Stored: good, Quarantined: 1, Dropped: 1,
				SinkErrors: int64(failures), Retries: int64(failures)}
			if st != want {
				t.Errorf("stats %+v, want %+v", st, want)
			}
			for name, want := range map[string]float64{
				"custody_ingest_messages_in_total":      float64(lines),
				"custody_ingest_events_out_total":       good,
				"custody_ingest_quarantined_total":      1,
				"custody_ingest_dropped_total":          1,
				"custody_ingest_sink_errors_total":      float64(failures),
				"custody_ingest_retries_total":          float64(failures),
				"custody_ingest_batch_duration_seconds": float64(want.Batches),
				"custody_ingest_stored_offset":          float64(lines),
				"custody_ingest_events_skipped_total":   0,
				"custody_ingest_source_errors_total":    0,
			} {
				if got := counter(t, reg, name, map[string]string{"pipeline": "backfill"}); got != want {
					t.Errorf("%s = %v, want %v", name, got, want)
				}
			}

			// A rerun from the stored positions reads nothing new.
			again := newMemSink(0)
			again.pos = pos
			p2 := newPipeline(t, newArchiveSource(t, dir, pos), again, nil)
			if err := p2.Run(context.Background()); err != nil {
				t.Fatalf("rerun: %v", err)
			}
			if len(again.events) != 0 || p2.Stats().Messages != 0 {
				t.Errorf("rerun stored %d events from %d messages, want none", len(again.events), p2.Stats().Messages)
			}
		})
	}
}

// TestPipelineShutdownFlushes stops the pipeline while a batch is being
// written: that batch is still stored and acknowledged, Run returns nil,
// and a restart from the stored positions delivers the rest exactly once.
func TestPipelineShutdownFlushes(t *testing.T) {
	const good = 40
	dir, lines := archiveFixture(t, good)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sink := newMemSink(2)
	writes := 0
	sink.onWritten = func(ingest.Batch) {
		writes++
		if writes == 2 {
			cancel()
		}
	}
	p := newPipeline(t, newArchiveSource(t, dir, nil), sink, nil)
	if err := p.Run(ctx); err != nil {
		t.Fatalf("run: %v", err)
	}
	pos := sink.positions()
	var stream string
	for s := range pos {
		stream = s
	}
	// The two batches written before the shutdown, and any the reader had
	// queued by then, are stored and acknowledged: whole batches of 7.
	if got := pos[stream]; got < 14 || got%7 != 0 && got != int64(lines) {
		t.Fatalf("position after shutdown = %d, want a batch boundary >= 14 (batches of 7)", got)
	}
	if want := (pos[stream] + 6) / 7; p.Stats().Batches != want {
		t.Errorf("acknowledged %d batches, want %d", p.Stats().Batches, want)
	}

	p2 := newPipeline(t, newArchiveSource(t, dir, pos), sink, nil)
	if err := p2.Run(context.Background()); err != nil {
		t.Fatalf("resume: %v", err)
	}
	if len(sink.events) != good {
		t.Fatalf("stored %d distinct events, want %d", len(sink.events), good)
	}
	for id, n := range sink.events {
		if n != 1 {
			t.Errorf("event %s stored %d times", id, n)
		}
	}
	if sink.positions()[stream] != int64(lines) {
		t.Errorf("final position %d, want %d", sink.positions()[stream], lines)
	}
}

// countingSource counts ReadBatch calls.
type countingSource struct {
	ingest.Source
	reads atomic.Int64
}

func (c *countingSource) ReadBatch(ctx context.Context) ([]ingest.Message, ingest.AckFunc, error) {
	msgs, ack, err := c.Source.ReadBatch(ctx)
	if err == nil {
		c.reads.Add(1)
	}
	return msgs, ack, err
}

// TestPipelineGroupsWhatWaited holds the first write until the reader has
// read four batches. The reader reads the fourth only after queueing the
// second and third, so those wait and reach the sink together, in read
// order, in one write.
func TestPipelineGroupsWhatWaited(t *testing.T) {
	dir, lines := archiveFixture(t, 40)
	src := &countingSource{Source: newArchiveSource(t, dir, nil)}
	var calls [][]int64 // per sink write, the offsets of its batches
	inner := newMemSink(0)
	sink := ingest.SinkFunc(func(ctx context.Context, b []ingest.Batch) ([]ingest.SinkResult, error) {
		for len(calls) == 0 && src.reads.Load() < 4 {
			time.Sleep(time.Millisecond)
		}
		var offs []int64
		for _, x := range b {
			offs = append(offs, x.Offset)
		}
		calls = append(calls, offs)
		return inner.Write(ctx, b)
	})
	p := newPipeline(t, src, sink, nil)
	if err := p.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	most := 0
	for _, c := range calls {
		most = max(most, len(c))
	}
	if most < 2 {
		t.Fatalf("writes %v: want batches that waited written together", calls)
	}
	var all []int64
	for _, c := range calls {
		all = append(all, c...)
	}
	if !slices.IsSorted(all) || all[len(all)-1] != int64(lines) {
		t.Errorf("batches written out of order or incomplete: %v", calls)
	}
	if len(inner.events) != 40 || p.Stats().Batches != int64(len(all)) {
		t.Errorf("stored %d events, acknowledged %d batches of %d written", len(inner.events), p.Stats().Batches, len(all))
	}
}

// TestPipelineShutdownWhileSinkDown stops the pipeline while the sink keeps
// failing: Run gives up after the shutdown budget with an error, the batch
// is not acknowledged, and nothing is recorded as stored.
func TestPipelineShutdownWhileSinkDown(t *testing.T) {
	dir, _ := archiveFixture(t, 10)
	ctx, cancel := context.WithCancel(context.Background())
	sink := newMemSink(1 << 30)
	n, err := normalize.New(normalize.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	cfg := ingest.DefaultPipelineConfig()
	cfg.Name, cfg.SourceKind = "backfill", "file"
	cfg.RetryDelay, cfg.MaxRetryDelay, cfg.ShutdownTimeout = time.Millisecond, 2*time.Millisecond, 20*time.Millisecond
	failing := ingest.SinkFunc(func(ctx context.Context, b []ingest.Batch) ([]ingest.SinkResult, error) {
		res, err := sink.Write(ctx, b)
		if sink.writes == 3 {
			cancel()
		}
		return res, err
	})
	p, err := ingest.NewPipeline(newArchiveSource(t, dir, nil), n, failing, cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = p.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "store unavailable") {
		t.Fatalf("run = %v, want the sink's error", err)
	}
	if len(sink.positions()) != 0 || len(sink.events) != 0 {
		t.Errorf("sink holds %v / %d events, want nothing", sink.positions(), len(sink.events))
	}
}

func TestPipelineConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		mod  func(*ingest.PipelineConfig)
		want string
	}{
		{func(c *ingest.PipelineConfig) { c.RetryDelay = 0 }, "retry_delay: 0s must be positive"},
		{func(c *ingest.PipelineConfig) { c.MaxRetryDelay = time.Millisecond }, "max_retry_delay: 1ms is below retry_delay 500ms"},
		{func(c *ingest.PipelineConfig) { c.ShutdownTimeout = -time.Second }, "shutdown_timeout: -1s must be positive"},
		{func(c *ingest.PipelineConfig) { c.GroupWait = -time.Second }, "group_wait: -1s must not be negative"},
	} {
		c := ingest.DefaultPipelineConfig()
		tc.mod(&c)
		if err := c.Validate(); err == nil || err.Error() != tc.want {
			t.Errorf("Validate() = %v, want %q", err, tc.want)
		}
	}
	if err := ingest.DefaultPipelineConfig().Validate(); err != nil {
		t.Errorf("default config: %v", err)
	}
}

// pacedSource returns each batch of its source after a pause, like a
// collector reading a hub that delivers a little at a time.
type pacedSource struct {
	ingest.Source
	pause time.Duration
}

func (s *pacedSource) ReadBatch(ctx context.Context) ([]ingest.Message, ingest.AckFunc, error) {
	time.Sleep(s.pause)
	return s.Source.ReadBatch(ctx)
}

// TestPipelineGroupWait reads batches that arrive one at a time: with a
// group wait longer than the pauses between them they reach the sink in
// one write, in read order; without one, each is written as it comes.
func TestPipelineGroupWait(t *testing.T) {
	for _, tc := range []struct {
		name string
		wait time.Duration
		one  bool
	}{
		{"waits for more", time.Minute, true},
		{"writes at once", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, lines := archiveFixture(t, 12)
			var writes [][]int64
			inner := newMemSink(0)
			sink := ingest.SinkFunc(func(ctx context.Context, b []ingest.Batch) ([]ingest.SinkResult, error) {
				var offs []int64
				for _, x := range b {
					offs = append(offs, x.Offset)
				}
				writes = append(writes, offs)
				return inner.Write(ctx, b)
			})
			n, err := normalize.New(normalize.DefaultConfig())
			if err != nil {
				t.Fatal(err)
			}
			cfg := ingest.DefaultPipelineConfig()
			cfg.Name, cfg.SourceKind, cfg.GroupWait = "backfill", "file", tc.wait
			p, err := ingest.NewPipeline(&pacedSource{Source: newArchiveSource(t, dir, nil), pause: 20 * time.Millisecond}, n, sink, cfg, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			// The source ends after its last batch, which ends the wait:
			// a minute's wait does not hold Run for a minute.
			if err := p.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			if tc.one != (len(writes) == 1) {
				t.Errorf("%d writes %v, want one: %v", len(writes), writes, tc.one)
			}
			var all []int64
			for _, w := range writes {
				all = append(all, w...)
			}
			if len(all) < 2 || !slices.IsSorted(all) || all[len(all)-1] != int64(lines) || len(inner.events) != 12 {
				t.Errorf("writes %v (%d events): want every batch, in read order", writes, len(inner.events))
			}
		})
	}
}

// TestPipelineSinkGoneForGood: a sink error SinkPermanent accepts (the
// store's engine exited) ends Run at once with that error, after one
// write, instead of being retried for ever.
func TestPipelineSinkGoneForGood(t *testing.T) {
	gone := errors.New("engine process exited")
	dir, _ := archiveFixture(t, 40)
	var writes atomic.Int32
	sink := ingest.SinkFunc(func(context.Context, []ingest.Batch) ([]ingest.SinkResult, error) {
		writes.Add(1)
		return nil, fmt.Errorf("append: %w", gone)
	})
	n, err := normalize.New(normalize.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	cfg := ingest.DefaultPipelineConfig()
	cfg.Name, cfg.SourceKind = "backfill", "file"
	cfg.RetryDelay, cfg.MaxRetryDelay = time.Millisecond, 4*time.Millisecond
	cfg.SinkPermanent = func(err error) bool { return errors.Is(err, gone) }
	p, err := ingest.NewPipeline(newArchiveSource(t, dir, nil), n, sink, cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = p.Run(ctx)
	if !errors.Is(err, gone) {
		t.Fatalf("run = %v, want the sink's permanent error", err)
	}
	if w := writes.Load(); w != 1 {
		t.Errorf("%d writes, want 1 (no retry after a permanent failure)", w)
	}
	if st := p.Stats(); st.Retries != 0 || st.Stored != 0 {
		t.Errorf("stats %+v, want no retry and nothing stored", st)
	}
}
