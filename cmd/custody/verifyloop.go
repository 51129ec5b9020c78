package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/custody-audit/custody/storage"
	"github.com/custody-audit/custody/storage/witness"
)

// verifyConfig is the collector's periodic verification, the `verify:`
// section of the config file.
type verifyConfig struct {
	// Interval is the time between two verifications of the whole trail
	// by the collector; 0 turns periodic verification off. Default 24h.
	// The first runs one interval after the newest recorded verification
	// (verify_runs), or at start when there is none or it is overdue. On
	// the embedded store the collector's writes wait while it runs
	// (about 350k events/s, see README).
	Interval time.Duration `yaml:"interval"`
}

// defaultVerifyConfig verifies once a day.
func defaultVerifyConfig() verifyConfig { return verifyConfig{Interval: 24 * time.Hour} }

// Validate reports the first invalid field.
func (c verifyConfig) Validate() error {
	if c.Interval < 0 {
		return fmt.Errorf("interval: %s must not be negative (0 turns periodic verification off)", c.Interval)
	}
	if c.Interval > 0 && c.Interval < time.Minute {
		return fmt.Errorf("interval: %s is shorter than a minute; every verification reads the whole trail", c.Interval)
	}
	return nil
}

// verifyMetrics are the collector's verification gauges (names shared with
// the alert rules in deploy/prometheus).
type verifyMetrics struct {
	lastRun     prometheus.Gauge
	lastSuccess prometheus.Gauge
	findings    *prometheus.GaugeVec
}

func newVerifyMetrics(reg prometheus.Registerer) (*verifyMetrics, error) {
	m := &verifyMetrics{
		lastRun: prometheus.NewGauge(prometheus.GaugeOpts{Name: "custody_verify_last_run_timestamp_seconds",
			Help: "Unix time the last verification of the trail finished (0: none recorded)."}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{Name: "custody_verify_last_success_timestamp_seconds",
			Help: "Unix time of the last verification with no error findings (0: none recorded)."}),
		findings: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "custody_verify_findings",
			Help: "Findings of the last verification, by severity (error fails verification; warning does not)."}, []string{"severity"}),
	}
	for _, c := range []prometheus.Collector{m.lastRun, m.lastSuccess, m.findings} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register verify metrics: %w", err)
		}
	}
	m.findings.WithLabelValues(storage.SeverityError)
	m.findings.WithLabelValues(storage.SeverityWarning)
	return m, nil
}

// observe sets the gauges from a recorded verification.
func (m *verifyMetrics) observe(r storage.VerifyRun) {
	m.lastRun.Set(float64(r.FinishedAt.UnixMicro()) / 1e6)
	if r.Result == storage.VerifyOK {
		m.lastSuccess.Set(float64(r.FinishedAt.UnixMicro()) / 1e6)
	}
	m.findings.WithLabelValues(storage.SeverityError).Set(float64(r.Errors))
	m.findings.WithLabelValues(storage.SeverityWarning).Set(float64(r.Warnings))
}

// verifyLoop verifies the trail every interval while the collector runs,
// records each outcome in verify_runs and keeps the gauges.
type verifyLoop struct {
	store    *storage.Store
	opts     storage.VerifyOptions
	interval time.Duration
	metrics  *verifyMetrics
	log      *slog.Logger
	// witness, when set, holds published checkpoints the trail is proven
	// against (checkpoint_publish).
	witness *witness.Witness
}

// start reads the newest recorded verification into the gauges and says
// when the first verification is due.
func (l *verifyLoop) start(ctx context.Context, now time.Time) (time.Time, error) {
	last, err := l.store.LastVerify(ctx)
	if err != nil {
		return time.Time{}, err
	}
	if last == nil {
		return now, nil
	}
	l.metrics.observe(*last)
	if last.Result == storage.VerifyFailed {
		// the gauge says when it last succeeded, not this run
		l.metrics.lastSuccess.Set(0)
	}
	if next := last.FinishedAt.Add(l.interval); next.After(now) {
		return next, nil
	}
	return now, nil
}

// run verifies until ctx ends.
func (l *verifyLoop) run(ctx context.Context) {
	next, err := l.start(ctx, time.Now())
	if err != nil {
		l.log.WarnContext(ctx, "read last verification", "err", err)
		next = time.Now()
	}
	for {
		t := time.NewTimer(time.Until(next))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if err := l.once(ctx); err != nil && ctx.Err() == nil {
			l.log.ErrorContext(ctx, "periodic verification failed to run", "err", err)
		}
		next = time.Now().Add(l.interval)
	}
}

// once verifies the trail, records the outcome and updates the gauges. An
// error means the verification could not run (the findings of one that
// ran are in verify_runs, the gauges and the log).
func (l *verifyLoop) once(ctx context.Context) error {
	started := time.Now()
	opts := l.opts
	if l.witness != nil {
		ext, err := l.witness.Newest(ctx, "")
		if err != nil {
			// verify anyway, against what the store and the directory hold
			l.log.ErrorContext(ctx, "read published checkpoints for verification", "err", err)
		}
		opts.External = append(append([]storage.ExternalCheckpoint(nil), opts.External...), ext...)
	}
	rep, err := l.store.Verify(ctx, opts)
	if err != nil {
		l.metrics.lastRun.Set(float64(time.Now().UnixMicro()) / 1e6)
		return fmt.Errorf("verify: %w", err)
	}
	run := storage.NewVerifyRun(started, "collector", l.opts, rep)
	l.metrics.observe(run)
	attrs := []any{"result", run.Result, "chains", run.Chains, "rows", run.Rows, "errors", run.Errors, "warnings", run.Warnings, "elapsed", rep.Elapsed.Round(time.Millisecond)}
	if run.Result == storage.VerifyOK {
		l.log.InfoContext(ctx, "trail verified", attrs...)
	} else {
		for i, f := range rep.Findings {
			if i == 20 {
				l.log.ErrorContext(ctx, "verification finding", "more", len(rep.Findings)-i)
				break
			}
			l.log.ErrorContext(ctx, "verification finding", "kind", f.Kind, "severity", f.Severity(), "chain", f.Chain, "seq", f.Seq, "detail", f.Detail)
		}
		l.log.ErrorContext(ctx, "trail verification FAILED", attrs...)
	}
	if err := l.store.RecordVerify(ctx, run); err != nil {
		return err
	}
	return nil
}

// checkpointCollector reports when each chain's newest checkpoint was
// signed. The times are read from the store in the background (run), not
// at scrape time: a scrape must answer while the store is slow or its
// engine stalled, which is when the metrics matter.
type checkpointCollector struct {
	store *storage.Store
	log   *slog.Logger
	desc  *prometheus.Desc
	mu    sync.Mutex
	times map[string]time.Time
}

// checkpointRefresh is how often the checkpoint times are read again.
const checkpointRefresh = 30 * time.Second

func newCheckpointCollector(st *storage.Store, log *slog.Logger) *checkpointCollector {
	return &checkpointCollector{store: st, log: log,
		desc: prometheus.NewDesc("custody_checkpoint_last_timestamp_seconds", "Unix time of the newest signed checkpoint, per chain (read from the store every 30s).", []string{"chain"}, nil)}
}

// refresh reads the checkpoint times once.
func (c *checkpointCollector) refresh(ctx context.Context) error {
	times, err := c.store.CheckpointTimes(ctx)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.times = times
	c.mu.Unlock()
	return nil
}

// run refreshes the times until ctx ends.
func (c *checkpointCollector) run(ctx context.Context) {
	t := time.NewTicker(checkpointRefresh)
	defer t.Stop()
	for {
		if err := c.refresh(ctx); err != nil && ctx.Err() == nil {
			c.log.WarnContext(ctx, "read checkpoint times for /metrics", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Describe implements prometheus.Collector.
func (c *checkpointCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *checkpointCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for chain, at := range c.times {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(at.UnixMicro())/1e6, chain)
	}
}
