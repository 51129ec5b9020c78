package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/urfave/cli/v3"
	"go.yaml.in/yaml/v3"

	"github.com/custody-audit/custody/ingest"
	"github.com/custody-audit/custody/ingest/eventhubs"
	"github.com/custody-audit/custody/ingest/loganalytics"
	"github.com/custody-audit/custody/storage"
	"github.com/custody-audit/custody/storage/engine"
	"github.com/custody-audit/custody/storage/witness"
	"github.com/custody-audit/custody/web"
)

// runCommand is the long-lived collector: every configured source feeds
// its own pipeline into the store until SIGTERM.
func runCommand() *cli.Command {
	return &cli.Command{
		Name:  "run",
		Usage: "collect from Event Hubs and Log Analytics into the trail until stopped",
		Description: `Reads the eventhubs and loganalytics sections of the config file, resumes
every stream from the positions held in the store, and appends until
SIGINT or SIGTERM, when the batches in flight are stored before it exits 0.
If the embedded engine's process exits (killed, out of memory), /readyz
turns 503 at once and run exits 1; its supervisor (the systemd unit's
Restart=always, a pod) starts it again and it resumes from the store.

   $ custody run --config custody.yaml

custody.yaml:

   eventhubs:                 # fields of the Event Hubs source
     connection_string: Endpoint=sb://...;EntityPath=aks-audit
     consumer_group: custody
   loganalytics:              # fields of the Log Analytics source
     workspace_id: 00000000-0000-0000-0000-000000000000
     credential: {kind: managed-identity}
   pipeline:
     retry_delay: 500ms       # first store-retry wait, doubling
     max_retry_delay: 30s
     shutdown_timeout: 30s    # budget for the batch in flight at SIGTERM
   metrics_addr: 127.0.0.1:9464   # /metrics, /healthz, /readyz`,
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "metrics-addr", Usage: "listen address for /metrics, /healthz and /readyz (overrides metrics_addr)", Sources: cli.EnvVars("CUSTODY_METRICS_ADDR")},
			memoryLimitFlag(),
			&cli.StringFlag{Name: "web", Usage: "also serve the read-only investigation page (custody serve) on this address, e.g. 127.0.0.1:8080, with a collector view", Sources: cli.EnvVars("CUSTODY_WEB")},
		}, webFlags()...),
		Action: func(ctx context.Context, cmd *cli.Command) error {
			// A backlog of months must not grow the collector: the
			// pipeline already bounds what is in flight, and this keeps
			// garbage from piling up between collections.
			applyMemoryLimit(cmd)
			rc, err := loadRunConfig(cmd.String(flagConfig))
			if err != nil {
				return usageError{err}
			}
			if cmd.IsSet("metrics-addr") {
				rc.MetricsAddr = cmd.String("metrics-addr")
			}
			o := runOptions{Config: rc, VerifyKey: cmd.String(flagVerifyKey), CheckpointDir: cmd.String(flagCheckpointDir), Logger: logger(cmd),
				Open: func(ctx context.Context) (*ingestion, error) { return openIngest(ctx, cmd) }}
			if addr := cmd.String("web"); addr != "" {
				o.Web = func(ctx context.Context, st *storage.Store, collector web.Collector) (func() error, error) {
					return listenWeb(ctx, cmd, st, addr, collector)
				}
			}
			return runCollector(ctx, o)
		},
	}
}

// runConfig is what `custody run` reads from the config file besides the
// global settings.
type runConfig struct {
	EventHubs    *eventhubs.Config
	LogAnalytics *loganalytics.Config
	Pipeline     ingest.PipelineConfig
	MetricsAddr  string
	Verify       verifyConfig
	Publish      *witness.Config
}

// runFile is the config file's layout for `custody run`; each section is
// decoded strictly over its component's defaults.
type runFile struct {
	EventHubs    yaml.Node `yaml:"eventhubs"`
	LogAnalytics yaml.Node `yaml:"loganalytics"`
	Pipeline     yaml.Node `yaml:"pipeline"`
	MetricsAddr  string    `yaml:"metrics_addr"`
	Verify       yaml.Node `yaml:"verify"`
	Publish      yaml.Node `yaml:"checkpoint_publish"`
}

// loadRunConfig reads and validates the collector sections of path. Errors
// name the section and field.
func loadRunConfig(path string) (runConfig, error) {
	rc := runConfig{Pipeline: ingest.DefaultPipelineConfig(), Verify: defaultVerifyConfig()}
	if path == "" {
		return rc, errors.New("run needs --config with an eventhubs or loganalytics section")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return rc, fmt.Errorf("read config: %w", err)
	}
	var f runFile
	if err := yaml.Unmarshal(b, &f); err != nil {
		return rc, fmt.Errorf("config %s: %w", path, err)
	}
	rc.MetricsAddr = f.MetricsAddr
	if err := decodeSection(&f.Pipeline, &rc.Pipeline); err != nil {
		return rc, fmt.Errorf("config %s: pipeline: %w", path, err)
	}
	if err := rc.Pipeline.Validate(); err != nil {
		return rc, fmt.Errorf("config %s: pipeline.%w", path, err)
	}
	if err := decodeSection(&f.Verify, &rc.Verify); err != nil {
		return rc, fmt.Errorf("config %s: verify: %w", path, err)
	}
	if err := rc.Verify.Validate(); err != nil {
		return rc, fmt.Errorf("config %s: verify.%w", path, err)
	}
	if rc.Publish, err = decodePublishConfig(path, &f.Publish); err != nil {
		return rc, err
	}
	if f.EventHubs.Kind != 0 {
		c := eventhubs.DefaultConfig()
		if err := decodeSection(&f.EventHubs, &c); err != nil {
			return rc, fmt.Errorf("config %s: eventhubs: %w", path, err)
		}
		// New validates without connecting and keeps secrets out of
		// the error.
		if _, err := eventhubs.New(c, nil, nil); err != nil {
			return rc, fmt.Errorf("config %s: %w", path, err)
		}
		rc.EventHubs = &c
	}
	if f.LogAnalytics.Kind != 0 {
		c := loganalytics.DefaultConfig()
		if err := decodeSection(&f.LogAnalytics, &c); err != nil {
			return rc, fmt.Errorf("config %s: loganalytics: %w", path, err)
		}
		if _, err := loganalytics.New(c, nil, loganalytics.Options{}); err != nil {
			return rc, fmt.Errorf("config %s: %w", path, err)
		}
		rc.LogAnalytics = &c
	}
	if rc.EventHubs == nil && rc.LogAnalytics == nil {
		return rc, fmt.Errorf("config %s: no source: add an eventhubs or loganalytics section", path)
	}
	return rc, nil
}

// decodeSection decodes node over out, rejecting unknown fields. An absent
// section leaves out as it is.
func decodeSection(node *yaml.Node, out any) error {
	if node.Kind == 0 {
		return nil
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	if err := enc.Encode(node); err != nil {
		return err
	}
	if err := enc.Close(); err != nil {
		return err
	}
	dec := yaml.NewDecoder(&buf)
	dec.KnownFields(true)
	return dec.Decode(out)
}

// storeSink adapts the store to ingest.Sink: the batches the pipeline
// grouped go to the store in one AppendMany.
type storeSink struct{ st *storage.Store }

func (s storeSink) Write(ctx context.Context, batches []ingest.Batch) ([]ingest.SinkResult, error) {
	in := make([]storage.Batch, len(batches))
	for i, b := range batches {
		sb := storage.Batch{Stream: b.Stream, Offset: b.Offset, Position: b.Position, Events: b.Events,
			// Log Analytics re-reads an overlap window and late rows carry
			// older ingestion times: dedupe those streams by event id.
			DedupeByEventID: strings.HasPrefix(b.Stream, "loganalytics/")}
		for _, q := range b.Quarantined {
			sb.Quarantined = append(sb.Quarantined, storage.QuarantineRecord{Offset: q.Offset, Position: q.Position, Received: q.Received, Format: q.Format, Reason: q.Reason, Raw: q.Raw})
		}
		for _, n := range b.Dropped {
			sb.Dropped += n
		}
		in[i] = sb
	}
	res, err := s.st.AppendMany(ctx, in)
	if err != nil {
		return nil, err
	}
	out := make([]ingest.SinkResult, len(res))
	for i, r := range res {
		out[i] = ingest.SinkResult{Stored: r.Stored, Skipped: r.Skipped, Quarantined: r.Quarantined}
	}
	return out, nil
}

// namedSource is a source and the pipeline settings that go with it.
type namedSource struct {
	name, kind string
	src        ingest.Source
}

// runOptions is what `custody run` collects, into which store.
type runOptions struct {
	// Config is the collector's config file, flags applied.
	Config runConfig
	// VerifyKey is the verification key file, for the periodic verify.
	VerifyKey string
	// CheckpointDir is where the periodic verify reads the checkpoints
	// kept outside the store.
	CheckpointDir string
	Logger        *slog.Logger
	// Open opens the store to append, with its positions.
	Open func(ctx context.Context) (*ingestion, error)
	// Web, when set, opens the investigation page over the collector's
	// store (--web) and returns the function that serves it until ctx
	// ends.
	Web func(ctx context.Context, st *storage.Store, collector web.Collector) (func() error, error)
}

// runCollector runs a pipeline per configured source into the store,
// with metrics, the periodic verify, checkpoint publishing and the page,
// until ctx ends or a pipeline or the engine fails.
func runCollector(ctx context.Context, o runOptions) error {
	rc, log := o.Config, o.Logger
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics, err := ingest.NewMetrics(reg)
	if err != nil {
		return err
	}
	var ready atomic.Bool
	var srv *http.Server
	if rc.MetricsAddr != "" {
		ln, err := net.Listen("tcp", rc.MetricsAddr)
		if err != nil {
			return fmt.Errorf("metrics_addr: %w", err)
		}
		srv = &http.Server{Handler: healthMux(reg, &ready), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		log.InfoContext(ctx, "serving metrics", "addr", ln.Addr().String())
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		}()
	}

	in, err := o.Open(ctx)
	if err != nil {
		return err
	}
	defer in.close()
	cpTimes := newCheckpointCollector(in.store, log)
	if err := reg.Register(cpTimes); err != nil {
		return fmt.Errorf("register checkpoint metric: %w", err)
	}
	vm, err := newVerifyMetrics(reg)
	if err != nil {
		return err
	}
	var verifier *verifyLoop
	if rc.Verify.Interval > 0 {
		v, err := storage.LoadVerifier(o.VerifyKey)
		if err != nil {
			return fmt.Errorf("periodic verification (verify.interval %s) needs the verification key: %w (or set verify.interval: 0)", rc.Verify.Interval, err)
		}
		verifier = &verifyLoop{store: in.store, interval: rc.Verify.Interval, metrics: vm, log: log,
			opts: storage.VerifyOptions{Verifier: v, CheckpointDir: o.CheckpointDir}}
	}
	var publisher *publishLoop
	if rc.Publish != nil {
		w, err := openWitness(*rc.Publish)
		if err != nil {
			return err
		}
		publisher = &publishLoop{store: in.store, witness: w, interval: rc.Publish.Interval, log: log}
		if verifier != nil {
			// the periodic verification proves the trail against them
			verifier.witness = w
		}
	}

	var sources []namedSource
	closeAll := func() {
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, s := range sources {
			if err := s.src.Close(cctx); err != nil {
				log.WarnContext(cctx, "close source", "source", s.name, "err", err)
			}
		}
	}
	defer closeAll()
	if rc.EventHubs != nil {
		src, err := eventhubs.New(*rc.EventHubs, in.positions, log)
		if err != nil {
			return err
		}
		sources = append(sources, namedSource{name: "eventhubs", kind: "eventhubs", src: src})
		if err := reg.Register(newLagCollector("eventhubs", src, log)); err != nil {
			return fmt.Errorf("register lag metric: %w", err)
		}
	}
	if rc.LogAnalytics != nil {
		src, err := loganalytics.New(*rc.LogAnalytics, in.positions, loganalytics.Options{Logger: log})
		if err != nil {
			return err
		}
		sources = append(sources, namedSource{name: "loganalytics", kind: "loganalytics", src: src})
	}

	var pipes []*ingest.Pipeline
	for _, s := range sources {
		pc := rc.Pipeline
		pc.Name, pc.SourceKind = s.name, s.kind
		pc.SinkPermanent = engineGone
		p, err := ingest.NewPipeline(s.src, in.norm, in.sink, pc, metrics, log)
		if err != nil {
			return err
		}
		pipes = append(pipes, p)
	}

	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The page shares the collector's store (the embedded engine is one
	// process per store); it reads only.
	var webDone chan error
	if o.Web != nil {
		serve, err := o.Web(rctx, in.store, registryCollector(reg, sources, &ready))
		if err != nil {
			return err
		}
		webDone = make(chan error, 1)
		go func() { webDone <- serve() }()
	}
	errs := make([]error, len(pipes))
	var wg sync.WaitGroup
	for i, p := range pipes {
		wg.Go(func() {
			if err := p.Run(rctx); err != nil {
				errs[i] = err
				ready.Store(false)
				cancel() // one pipeline's failure stops the collector
			}
		})
	}
	// An embedded engine whose process exits (killed, out of memory) can
	// never store anything again: the collector is not ready from that
	// moment, even when no write is under way to notice it, and exits.
	var engineErr error
	watchDone := make(chan struct{})
	var watch sync.WaitGroup
	if ex, ok := in.store.Engine().(interface{ Exited() <-chan struct{} }); ok {
		watch.Go(func() {
			select {
			case <-ex.Exited():
				ready.Store(false)
				engineErr = fmt.Errorf("embedded engine for the store: %w", engine.ErrEngineGone)
				log.ErrorContext(ctx, "embedded engine exited; stopping the collector", "err", engineErr)
				cancel()
			case <-rctx.Done():
			case <-watchDone:
			}
		})
	}
	var verifying sync.WaitGroup
	verifying.Go(func() { cpTimes.run(rctx) })
	if verifier != nil {
		verifying.Go(func() { verifier.run(rctx) })
	}
	if publisher != nil {
		log.InfoContext(ctx, "publishing checkpoints", "to", *rc.Publish)
		verifying.Go(func() { publisher.run(rctx) })
	}
	ready.Store(true)
	log.InfoContext(ctx, "collector running", "sources", len(pipes), "streams_resumed", len(in.positions))
	wg.Wait()
	ready.Store(false)
	cancel()
	verifying.Wait()
	if publisher != nil {
		// what the last writes signed
		pctx, pcancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		if err := publisher.once(pctx); err != nil {
			log.ErrorContext(pctx, "publish checkpoints at exit", "err", err)
		}
		pcancel()
	}
	if webDone != nil {
		cancel()
		if err := <-webDone; err != nil {
			log.WarnContext(context.WithoutCancel(ctx), "investigation page stopped", "err", err)
		}
	}
	close(watchDone)
	watch.Wait()
	for i, p := range pipes {
		s := p.Stats()
		log.InfoContext(context.WithoutCancel(ctx), "pipeline stopped", "pipeline", sources[i].name,
			"messages", s.Messages, "stored", s.Stored, "skipped", s.Skipped, "quarantined", s.Quarantined, "dropped", s.Dropped)
	}
	return collectorOutcome(errors.Join(errs...), engineErr)
}

// collectorOutcome is the error `custody run` exits with. When the store's
// engine is gone the collector exits non-zero rather than restarting the
// engine itself: its supervisor (the systemd unit's Restart=always, a Kubernetes
// pod) starts it again, and it resumes every stream from the positions in
// the store, as after any crash.
func collectorOutcome(pipeErr, engineErr error) error {
	if engineErr == nil && !engineGone(pipeErr) {
		return pipeErr
	}
	if engineErr == nil {
		engineErr = pipeErr
	}
	return fmt.Errorf("collector stopped: %w; nothing acknowledged was lost: start it again (its supervisor does) and it resumes from the positions in the store", engineErr)
}

// lagSource is a source that can say how far behind the hub it is.
type lagSource interface {
	Lag(ctx context.Context) (map[string]int64, error)
}

// lagCollector asks the source for its lag at every scrape, so the gauge is
// never stale and costs nothing between scrapes (one management request
// per partition per scrape).
type lagCollector struct {
	pipeline string
	src      lagSource
	log      *slog.Logger
	desc     *prometheus.Desc
}

// lagScrapeTimeout bounds the management requests of one scrape.
const lagScrapeTimeout = 5 * time.Second

func newLagCollector(pipeline string, src lagSource, log *slog.Logger) *lagCollector {
	return &lagCollector{pipeline: pipeline, src: src, log: log,
		desc: prometheus.NewDesc("custody_ingest_lag_events", "Events the source holds beyond the last one stored, per stream (asked of the source at scrape time).", []string{"pipeline", "stream"}, nil)}
}

// Describe implements prometheus.Collector.
func (c *lagCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector. While the source is not
// connected there is no series rather than a stale one.
func (c *lagCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), lagScrapeTimeout)
	defer cancel()
	lag, err := c.src.Lag(ctx)
	if err != nil {
		c.log.Debug("lag not available", "pipeline", c.pipeline, "err", err)
		return
	}
	for stream, n := range lag {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), c.pipeline, stream)
	}
}

// healthMux serves /metrics from reg, /healthz (the process is up) and
// /readyz (every pipeline is running).
func healthMux(reg *prometheus.Registry, ready *atomic.Bool) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return mux
}

// memoryLimitFlag is the soft heap limit shared by the commands that
// ingest (run, backfill): a backlog of months must not grow them.
func memoryLimitFlag() cli.Flag {
	return &cli.IntFlag{Name: "memory-limit-mib", Value: 384, Usage: "soft limit for the Go heap in MiB (the Go runtime collects harder near it, and under it lets the heap grow to 5x what is live unless GOGC is set; 0 = none; GOMEMLIMIT wins when set)", Sources: cli.EnvVars("CUSTODY_MEMORY_LIMIT_MIB")}
}

// ingestGCPercent is the Go GC percent of the commands that ingest when
// a memory limit applies and GOGC is not set: the heap may grow to five
// times what is live, and the limit, not the percent, decides when to
// collect. What is live is the batches in flight, so at 100 the runtime
// collected several times per write group, each time marking every
// queued event, well below the limit it may use anyway (`custody
// backfill` of 109k events: 6-8% less collector CPU, README.md,
// issue 13).
const ingestGCPercent = 400

// applyMemoryLimit sets the limit memoryLimitFlag asks for, unless
// GOMEMLIMIT already does, and under a limit, unless GOGC is set, the GC
// percent ingestGCPercent.
func applyMemoryLimit(cmd *cli.Command) {
	if n := cmd.Int("memory-limit-mib"); n > 0 && os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(int64(n) << 20)
	}
	// A negative input only reads the limit; none is math.MaxInt64
	// (also what GOMEMLIMIT=off sets).
	if debug.SetMemoryLimit(-1) < math.MaxInt64 && os.Getenv("GOGC") == "" {
		debug.SetGCPercent(ingestGCPercent)
	}
}
