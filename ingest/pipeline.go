package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/custody-audit/custody/event"
	"github.com/custody-audit/custody/normalize"
)

// BatchEvent is a normalized event and the offset of the message it came
// from.
type BatchEvent = event.AtOffset

// QuarantinedRecord is a record normalize could not turn into an event,
// kept raw with the offset of its message.
type QuarantinedRecord struct {
	Offset   int64
	Position string
	Received time.Time
	Format   string
	Reason   string
	Raw      []byte
}

// Batch is what one ReadBatch delivered for one stream, normalized: events
// and quarantined records in offset order, the records dropped by policy
// (counted by reason), and the offset and position of the stream's last
// message, which the whole batch covers.
type Batch struct {
	Stream      string
	Events      []BatchEvent
	Quarantined []QuarantinedRecord
	Dropped     map[string]int
	Offset      int64
	Position    string
}

// SinkResult says what a Sink did with a batch.
type SinkResult struct {
	Stored      int // events newly stored
	Skipped     int // events already held (a redelivered batch)
	Quarantined int // quarantined records newly stored
}

// Sink makes batches durable. Write takes the batches that were ready
// together (several streams, or several batches of one stream in read
// order) and returns one result per batch. It must be idempotent: batches
// written again after a failure or a crash store nothing twice. Once
// Write returns nil the batches are durable and their sources are
// acknowledged.
type Sink interface {
	Write(ctx context.Context, batches []Batch) ([]SinkResult, error)
}

// SinkFunc adapts a function to Sink.
type SinkFunc func(ctx context.Context, batches []Batch) ([]SinkResult, error)

// Write calls f.
func (f SinkFunc) Write(ctx context.Context, batches []Batch) ([]SinkResult, error) {
	return f(ctx, batches)
}

// Processor normalizes one raw message; *normalize.Normalizer is one. Its
// error means the message could not be processed at all (a done ctx); bad
// records are quarantined in the Result instead.
type Processor interface {
	Process(ctx context.Context, in normalize.Input) (normalize.Result, error)
}

// borrowingProcessor is a Processor that can lend its result's events
// instead of copying them (normalize.Normalizer.ProcessBorrowed): the
// pipeline copies them into the batch anyway, so it uses this when it can.
type borrowingProcessor interface {
	ProcessBorrowed(ctx context.Context, in normalize.Input) (normalize.Result, func(), error)
}

// process runs the pipeline's processor; release ends the use of
// res.Events (never nil).
func (p *Pipeline) process(ctx context.Context, in normalize.Input) (res normalize.Result, release func(), err error) {
	if bp, ok := p.proc.(borrowingProcessor); ok {
		return bp.ProcessBorrowed(ctx, in)
	}
	res, err = p.proc.Process(ctx, in)
	return res, func() {}, err
}

// PipelineConfig tunes a Pipeline.
type PipelineConfig struct {
	// Name labels the pipeline's logs and metrics ("eventhubs",
	// "loganalytics", "backfill"). Required.
	Name string `yaml:"-"`
	// SourceKind is copied into every event (eventhubs, loganalytics,
	// blob or file). Required.
	SourceKind string `yaml:"-"`
	// RetryDelay is the first wait after a failed sink write or source
	// read; it doubles up to MaxRetryDelay. Default 500ms.
	RetryDelay time.Duration `yaml:"retry_delay"`
	// MaxRetryDelay caps the backoff. Default 30s.
	MaxRetryDelay time.Duration `yaml:"max_retry_delay"`
	// ShutdownTimeout is how long the batches in flight when the
	// pipeline is stopped may take to reach the sink. Default 30s.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// QueueBatches is how many source batches may wait, normalized, while
	// the sink writes: reading and normalizing go on during a write, and
	// what waited is written together next. It bounds memory (each
	// batch is at most a source's batch size). Default 4.
	QueueBatches int `yaml:"queue_batches"`
	// MaxGroupEvents caps the events of batches written together in one
	// sink write. Default 25000.
	MaxGroupEvents int `yaml:"max_group_events"`
	// GroupWait is how long the writer, having taken everything waiting,
	// waits for more batches before it writes a group smaller than
	// MaxGroupEvents. Each write has a fixed cost in the store (an insert
	// per table and the merges of the parts it makes: tens of
	// milliseconds of engine CPU on the embedded store), which small
	// groups pay per few events. It adds at most this much to the time
	// before an event is stored. 0 writes at once. Default 500ms.
	GroupWait time.Duration `yaml:"group_wait"`
	// MetricStream maps a stream to the value of the "stream" metric
	// label; nil keeps the stream name. Backfills, with one stream per
	// archive object, collapse it to bound the label's cardinality.
	MetricStream func(stream string) string `yaml:"-"`
	// Permanent reports source errors (from Connect or ReadBatch) that end
	// Run instead of being retried; nil retries every error. A backfill
	// stops at an unreadable object, a collector keeps trying.
	Permanent func(error) bool `yaml:"-"`
	// SinkPermanent reports sink errors after which no write can succeed
	// again (the store's engine is gone): the write is not retried and
	// Run ends at once with the error, after refusing every batch in
	// flight. nil retries every sink error.
	SinkPermanent func(error) bool `yaml:"-"`
	// Now is the clock; nil means time.Now.
	Now func() time.Time `yaml:"-"`
}

// DefaultPipelineConfig returns the defaults documented on each field.
func DefaultPipelineConfig() PipelineConfig {
	return PipelineConfig{RetryDelay: 500 * time.Millisecond, MaxRetryDelay: 30 * time.Second, ShutdownTimeout: 30 * time.Second,
		QueueBatches: 4, MaxGroupEvents: 25_000, GroupWait: 500 * time.Millisecond}
}

// Validate reports the first invalid field by its YAML name.
func (c PipelineConfig) Validate() error {
	switch {
	case c.RetryDelay <= 0:
		return fmt.Errorf("retry_delay: %s must be positive", c.RetryDelay)
	case c.MaxRetryDelay < c.RetryDelay:
		return fmt.Errorf("max_retry_delay: %s is below retry_delay %s", c.MaxRetryDelay, c.RetryDelay)
	case c.ShutdownTimeout <= 0:
		return fmt.Errorf("shutdown_timeout: %s must be positive", c.ShutdownTimeout)
	case c.QueueBatches < 0:
		return fmt.Errorf("queue_batches: %d must not be negative", c.QueueBatches)
	case c.MaxGroupEvents < 1:
		return fmt.Errorf("max_group_events: %d must be positive", c.MaxGroupEvents)
	case c.GroupWait < 0:
		return fmt.Errorf("group_wait: %s must not be negative", c.GroupWait)
	}
	return nil
}

// Metrics are the pipeline's Prometheus collectors. Create them once per
// registry and share them between pipelines; each pipeline labels its
// series with its name.
type Metrics struct {
	messagesIn  *prometheus.CounterVec
	eventsOut   *prometheus.CounterVec
	skipped     *prometheus.CounterVec
	quarantined *prometheus.CounterVec
	dropped     *prometheus.CounterVec
	latency     *prometheus.HistogramVec
	sinkErrors  *prometheus.CounterVec
	readErrors  *prometheus.CounterVec
	retries     *prometheus.CounterVec
	offset      *prometheus.GaugeVec
}

// NewMetrics creates the pipeline collectors and registers them with reg
// (nil registers nowhere).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	const ns, sub = "custody", "ingest"
	m := &Metrics{
		messagesIn: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "messages_in_total",
			Help: "Raw messages read from a source."}, []string{"pipeline", "stream"}),
		eventsOut: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "events_out_total",
			Help: "Normalized events newly stored."}, []string{"pipeline", "stream"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "events_skipped_total",
			Help: "Events the store already held (redelivery)."}, []string{"pipeline", "stream"}),
		quarantined: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "quarantined_total",
			Help: "Records that could not be normalized, stored raw in quarantine."}, []string{"pipeline", "stream"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "dropped_total",
			Help: "Records left out by policy, by reason."}, []string{"pipeline", "reason"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "batch_duration_seconds",
			Help: "Time from a batch's read to its acknowledgement, retries included.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 14)}, []string{"pipeline"}),
		sinkErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "sink_errors_total",
			Help: "Failed store writes (each is retried)."}, []string{"pipeline"}),
		readErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "source_errors_total",
			Help: "Failed source reads and connects (each is retried)."}, []string{"pipeline"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "retries_total",
			Help: "Retries after a failed store write or source read."}, []string{"pipeline"}),
		offset: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "stored_offset",
			Help: "Offset of the last message acknowledged per stream."}, []string{"pipeline", "stream"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.messagesIn, m.eventsOut, m.skipped, m.quarantined, m.dropped, m.latency, m.sinkErrors, m.readErrors, m.retries, m.offset} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register ingest metrics: %w", err)
			}
		}
	}
	return m, nil
}

// Stats are a pipeline's running totals.
type Stats struct {
	Messages    int64
	Batches     int64
	Stored      int64
	Skipped     int64
	Quarantined int64
	Dropped     int64
	SinkErrors  int64
	Retries     int64
}

// Pipeline moves one source's messages through normalize into a sink in
// two stages. A reader reads batches, groups them by stream and normalizes
// them into a bounded queue (QueueBatches); a writer takes everything
// waiting in the queue (up to MaxGroupEvents) and writes it to the sink in
// one call, then acknowledges each source batch in read order. So reading
// and normalizing overlap with the store's write, and under load the store
// gets a few large writes instead of many small ones (group commit).
//
// Batches are written in the order they were read, and after a write
// fails for good nothing later is written: a source never sees a later
// batch acknowledged past one that was not stored. When the sink fails the
// writer retries with backoff, the queue fills and the reader stops
// reading: memory stays bounded and nothing is acknowledged that is not
// durable.
type Pipeline struct {
	src     Source
	proc    Processor
	sink    Sink
	cfg     PipelineConfig
	metrics *Metrics
	log     *slog.Logger
	stats   Stats
}

// NewPipeline checks cfg and returns a pipeline. metrics may be shared
// with other pipelines; nil creates unregistered ones. logger may be nil.
func NewPipeline(src Source, proc Processor, sink Sink, cfg PipelineConfig, metrics *Metrics, logger *slog.Logger) (*Pipeline, error) {
	if src == nil || proc == nil || sink == nil {
		return nil, errors.New("new pipeline: source, processor and sink are required")
	}
	if cfg.Name == "" {
		return nil, errors.New("new pipeline: name is required")
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("pipeline %s: %w", cfg.Name, err)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Permanent == nil {
		cfg.Permanent = func(error) bool { return false }
	}
	if cfg.SinkPermanent == nil {
		cfg.SinkPermanent = func(error) bool { return false }
	}
	if cfg.MetricStream == nil {
		cfg.MetricStream = func(s string) string { return s }
	}
	if metrics == nil {
		m, err := NewMetrics(nil)
		if err != nil {
			return nil, err
		}
		metrics = m
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Pipeline{src: src, proc: proc, sink: sink, cfg: cfg, metrics: metrics, log: logger.With("pipeline", cfg.Name)}, nil
}

// Stats returns the totals so far. Call it after Run returns, or from the
// goroutine running it.
func (p *Pipeline) Stats() Stats { return p.stats }

// Run reads until the source ends (ErrEndOfInput: Run returns nil once
// everything read is written) or ctx is done. On ctx's end the batches
// already read are still written (within ShutdownTimeout) and
// acknowledged, then Run returns nil. A lost source connection
// (ErrNotConnected) or a failed read is retried with backoff; batches the
// sink cannot take are retried until it can or ctx ends. A source error
// cfg.Permanent accepts ends Run with that error, after what was read
// before it is written; a sink error cfg.SinkPermanent accepts ends it at
// once. Run does not close the source.
func (p *Pipeline) Run(ctx context.Context) error {
	queue := make(chan *readBatch, p.cfg.QueueBatches)
	writerDone := make(chan struct{})
	readErr := make(chan error, 1)
	go func() {
		defer close(queue)
		readErr <- p.read(ctx, queue, writerDone)
	}()
	err := p.writeLoop(ctx, queue)
	close(writerDone)
	// The writer gave up (or finished): refuse whatever is still queued,
	// so its source redelivers it.
	for rb := range queue {
		p.nack(rb, fmt.Errorf("pipeline %s stopped before this batch was written", p.cfg.Name))
	}
	if rerr := <-readErr; err == nil {
		err = rerr
	}
	return err
}

// readBatch is one source batch, normalized, on its way to the sink.
type readBatch struct {
	batches  []*Batch
	ack      AckFunc
	start    time.Time
	events   int
	messages int
}

// read is the reader stage: connect, read, normalize, queue. It returns
// nil when the source ends or ctx is done, and an error for a permanent
// source failure or a batch that could not be normalized.
func (p *Pipeline) read(ctx context.Context, queue chan<- *readBatch, writerDone <-chan struct{}) error {
	bo := p.backoff()
	connected := false
	for {
		if ctx.Err() != nil {
			return nil
		}
		if !connected {
			if err := p.src.Connect(ctx); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				p.metrics.readErrors.WithLabelValues(p.cfg.Name).Inc()
				if p.cfg.Permanent(err) {
					return fmt.Errorf("pipeline %s: connect source: %w", p.cfg.Name, err)
				}
				p.log.WarnContext(ctx, "source connect failed", "err", err)
				if !p.wait(ctx, bo.next()) {
					return nil
				}
				continue
			}
			connected = true
		}
		msgs, ack, err := p.src.ReadBatch(ctx)
		switch {
		case err == nil:
		case errors.Is(err, ErrEndOfInput):
			p.log.InfoContext(ctx, "source ended")
			return nil
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, ErrNotConnected):
			connected = false
			fallthrough
		default:
			p.metrics.readErrors.WithLabelValues(p.cfg.Name).Inc()
			if p.cfg.Permanent(err) {
				return fmt.Errorf("pipeline %s: read source: %w", p.cfg.Name, err)
			}
			p.log.WarnContext(ctx, "source read failed", "err", err)
			if !p.wait(ctx, bo.next()) {
				return nil
			}
			continue
		}
		bo.reset()
		rb := &readBatch{ack: ack, start: p.cfg.Now(), messages: len(msgs)}
		// A batch read is finished even if ctx ends: normalizing it runs
		// on the shutdown budget.
		work, cancel := p.flushContext(ctx)
		rb.batches, err = p.normalize(work, msgs)
		cancel()
		if err != nil {
			p.nack(rb, err)
			return fmt.Errorf("pipeline %s: %w", p.cfg.Name, err)
		}
		for _, b := range rb.batches {
			rb.events += len(b.Events)
		}
		select {
		case queue <- rb:
		case <-writerDone:
			p.nack(rb, fmt.Errorf("pipeline %s stopped before this batch was written", p.cfg.Name))
			return nil
		}
	}
}

// writeLoop is the writer stage: it writes what the reader queued, as
// groups of everything waiting (and of what arrives within GroupWait),
// until the reader is done.
func (p *Pipeline) writeLoop(ctx context.Context, queue <-chan *readBatch) error {
	for {
		first, ok := <-queue
		if !ok {
			return nil
		}
		group, open := p.fillGroup(ctx, first, queue)
		if err := p.handle(ctx, group); err != nil {
			return err
		}
		if !open {
			return nil
		}
	}
}

// fillGroup adds to first what waits in queue, then what arrives within
// GroupWait, up to MaxGroupEvents. It waits only while the group holds no
// more batches than the queue can (QueueBatches + 1), so waiting never
// lets the reader run further ahead of the store than the queue allows:
// when the store is down, reading still stops at the same bound. It stops
// waiting when ctx ends or the reader is done (open is then false once
// the queue is drained).
func (p *Pipeline) fillGroup(ctx context.Context, first *readBatch, queue <-chan *readBatch) (group []*readBatch, open bool) {
	group = []*readBatch{first}
	events := first.events
	var wait <-chan time.Time
	if p.cfg.GroupWait > 0 {
		t := time.NewTimer(p.cfg.GroupWait)
		defer t.Stop()
		wait = t.C
	}
	for events < p.cfg.MaxGroupEvents {
		var rb *readBatch
		select {
		case rb, open = <-queue:
		default:
			if wait == nil || len(group) > p.cfg.QueueBatches {
				return group, true
			}
			select {
			case rb, open = <-queue:
			case <-wait:
				return group, true
			case <-ctx.Done():
				return group, true
			}
		}
		if !open {
			return group, false
		}
		group = append(group, rb)
		events += rb.events
	}
	return group, true
}

// handle writes one group and acknowledges its source batches in read
// order. Once read, a group is finished even if ctx ends: the write runs on
// a context bounded by ShutdownTimeout.
func (p *Pipeline) handle(ctx context.Context, group []*readBatch) error {
	work, cancel := p.flushContext(ctx)
	defer cancel()
	var batches []*Batch
	for _, rb := range group {
		batches = append(batches, rb.batches...)
	}
	if err := p.write(ctx, work, batches); err != nil {
		for _, rb := range group {
			p.nack(rb, err)
		}
		return fmt.Errorf("pipeline %s: %w", p.cfg.Name, err)
	}
	for _, rb := range group {
		if rb.ack != nil {
			if err := rb.ack(work, nil); err != nil {
				return fmt.Errorf("pipeline %s: acknowledge batch: %w", p.cfg.Name, err)
			}
		}
		p.stats.Messages += int64(rb.messages)
		p.stats.Batches++
		p.metrics.latency.WithLabelValues(p.cfg.Name).Observe(p.cfg.Now().Sub(rb.start).Seconds())
		for _, b := range rb.batches {
			p.metrics.offset.WithLabelValues(p.cfg.Name, p.cfg.MetricStream(b.Stream)).Set(float64(b.Offset))
		}
	}
	return nil
}

// nack reports a batch that will not be stored back to its source.
func (p *Pipeline) nack(rb *readBatch, err error) {
	if rb.ack == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.ShutdownTimeout)
	defer cancel()
	if aerr := rb.ack(ctx, err); aerr != nil {
		p.log.Warn("negative acknowledgement failed", "err", aerr)
	}
}

// flushContext returns a context that outlives ctx by at most
// ShutdownTimeout, so a batch read before a shutdown still reaches the
// sink.
func (p *Pipeline) flushContext(ctx context.Context) (context.Context, context.CancelFunc) {
	work, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(p.cfg.ShutdownTimeout, cancel)
		context.AfterFunc(work, func() { t.Stop() })
	})
	return work, func() { stop(); cancel() }
}

// normalize groups msgs by stream (in first-seen order) and normalizes
// each message.
func (p *Pipeline) normalize(ctx context.Context, msgs []Message) ([]*Batch, error) {
	var order []*Batch
	byStream := map[string]*Batch{}
	for i := range msgs {
		m := &msgs[i]
		b := byStream[m.Stream]
		if b == nil {
			b = &Batch{Stream: m.Stream}
			byStream[m.Stream] = b
			order = append(order, b)
		}
		received := m.Received
		if received.IsZero() {
			received = p.cfg.Now()
		}
		if m.Quarantine != "" {
			b.Quarantined = append(b.Quarantined, QuarantinedRecord{Offset: m.Offset, Position: m.Position, Received: received, Format: m.Format, Reason: m.Quarantine, Raw: m.Body})
			if m.Offset >= b.Offset {
				b.Offset, b.Position = m.Offset, m.Position
			}
			p.metrics.messagesIn.WithLabelValues(p.cfg.Name, p.cfg.MetricStream(m.Stream)).Inc()
			continue
		}
		// The events are copied once, from the normalizer's working
		// memory straight into the batch.
		res, release, err := p.process(ctx, normalize.Input{
			Body: m.Body, Format: m.Format, SourceKind: p.cfg.SourceKind, Position: m.Position,
			Received: received, Attributes: m.Attributes,
		})
		if err != nil {
			release()
			return nil, fmt.Errorf("normalize %s: %w", m.Position, err)
		}
		if need := len(b.Events) + len(res.Events); need > cap(b.Events) {
			// Size for the whole batch at the rate so far, with an
			// eighth to spare: events are large, and growing by
			// doubling copies them.
			n := need * len(msgs) / (i + 1)
			b.Events = slices.Grow(b.Events, n+n/8-len(b.Events))
		}
		for j := range res.Events {
			b.Events = append(b.Events, BatchEvent{Offset: m.Offset, Event: res.Events[j]})
		}
		release()
		for _, q := range res.Quarantined {
			b.Quarantined = append(b.Quarantined, QuarantinedRecord{Offset: m.Offset, Position: q.Position, Received: received, Format: q.Format, Reason: q.Reason, Raw: q.Raw})
		}
		for reason, n := range res.Dropped {
			if b.Dropped == nil {
				b.Dropped = map[string]int{}
			}
			b.Dropped[reason] += n
		}
		if m.Offset >= b.Offset {
			b.Offset, b.Position = m.Offset, m.Position
		}
		p.metrics.messagesIn.WithLabelValues(p.cfg.Name, p.cfg.MetricStream(m.Stream)).Inc()
	}
	for _, b := range order {
		// Messages usually arrive in offset order; sorting then only
		// checks (events are large to move, and to pass by value).
		if !eventsInOrder(b.Events) {
			slices.SortStableFunc(b.Events, func(x, y BatchEvent) int { return cmpInt64(x.Offset, y.Offset) })
		}
		slices.SortStableFunc(b.Quarantined, func(x, y QuarantinedRecord) int { return cmpInt64(x.Offset, y.Offset) })
	}
	return order, nil
}

// eventsInOrder reports whether events are sorted by offset, reading
// the offsets in place.
func eventsInOrder(events []BatchEvent) bool {
	for i := 1; i < len(events); i++ {
		if events[i].Offset < events[i-1].Offset {
			return false
		}
	}
	return true
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// write hands the batches to the sink in one call, retrying a failed
// write with backoff until it succeeds or work ends. While ctx (the run
// context) is live a failure is retried forever; once it is done, only
// until work (the shutdown budget) ends.
func (p *Pipeline) write(ctx, work context.Context, batches []*Batch) error {
	in := make([]Batch, len(batches))
	for i, b := range batches {
		in[i] = *b
	}
	bo := p.backoff()
	for {
		res, err := p.sink.Write(work, in)
		if err == nil && len(res) != len(in) {
			err = fmt.Errorf("sink returned %d results for %d batches", len(res), len(in))
		}
		if err == nil {
			for i, b := range batches {
				p.record(b, res[i])
			}
			return nil
		}
		p.stats.SinkErrors++
		p.metrics.sinkErrors.WithLabelValues(p.cfg.Name).Inc()
		last := batches[len(batches)-1]
		if p.cfg.SinkPermanent(err) {
			p.log.ErrorContext(ctx, "store write failed for good; not retrying", "batches", len(batches), "stream", last.Stream, "offset", last.Offset, "err", err)
			return fmt.Errorf("write %d batches up to %s offset %d: %w", len(batches), last.Stream, last.Offset, err)
		}
		d := bo.next()
		p.log.WarnContext(ctx, "store write failed; retrying", "batches", len(batches), "stream", last.Stream, "offset", last.Offset, "retry_in", d, "err", err)
		if !p.wait(work, d) {
			return fmt.Errorf("write %d batches up to %s offset %d: %w", len(batches), last.Stream, last.Offset, err)
		}
		p.stats.Retries++
		p.metrics.retries.WithLabelValues(p.cfg.Name).Inc()
	}
}

func (p *Pipeline) record(b *Batch, res SinkResult) {
	stream := p.cfg.MetricStream(b.Stream)
	p.stats.Stored += int64(res.Stored)
	p.stats.Skipped += int64(res.Skipped)
	p.stats.Quarantined += int64(res.Quarantined)
	p.metrics.eventsOut.WithLabelValues(p.cfg.Name, stream).Add(float64(res.Stored))
	p.metrics.skipped.WithLabelValues(p.cfg.Name, stream).Add(float64(res.Skipped))
	p.metrics.quarantined.WithLabelValues(p.cfg.Name, stream).Add(float64(res.Quarantined))
	for reason, n := range b.Dropped {
		p.stats.Dropped += int64(n)
		p.metrics.dropped.WithLabelValues(p.cfg.Name, reason).Add(float64(n))
	}
}

// wait sleeps d or until ctx is done; it reports whether the full wait
// elapsed.
func (p *Pipeline) wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

type backoff struct {
	cur, first, max time.Duration
}

func (p *Pipeline) backoff() *backoff {
	return &backoff{first: p.cfg.RetryDelay, max: p.cfg.MaxRetryDelay}
}

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.first
	} else {
		b.cur = min(2*b.cur, b.max)
	}
	return b.cur
}

func (b *backoff) reset() { b.cur = 0 }
