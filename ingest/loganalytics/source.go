// Package loganalytics reads admin-activity rows out of an Azure Monitor
// Log Analytics workspace with the query API (azlogs), one stream per
// table, without losing late-arriving rows or handing a row out twice.
//
// Why windows on ingestion_time() and not TimeGenerated: a record can
// reach the workspace hours after it was generated (agent backlog,
// diagnostic-setting retries). A TimeGenerated watermark would skip it;
// ingestion_time() is when the workspace accepted it, so every row lands in
// a window that has not been read yet. A row still needs a little time
// after ingestion to become queryable, hence Config.IngestionDelay, and a
// re-read of the last Config.Overlap of every caught-up window; rows seen
// again in the overlap are de-duplicated by their identity (ingestion time
// plus a hash of the row).
//
// The position of each stream, "loganalytics/<workspace>/<table>", is the
// ingestion time of a row in Unix microseconds (Message.Offset). It lives
// in the store: New takes the stored positions and resumes from them. A
// restart re-reads the overlap before the stored position (there is no
// memory of which overlap rows were handed out), so rows there may be
// delivered again; the store drops them by event id.
//
// Limits: the service truncates a result at 500,000 rows or ~64 MiB and
// says so with a PartialError; the source then splits the window in two
// and reads the halves. Any other partial result is discarded and the
// window is read again in halves. 429 responses are retried after
// Retry-After, a bounded number of times, then the table backs off.
//
// REST reference: https://learn.microsoft.com/azure/azure-monitor/logs/api/overview
package loganalytics

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/monitor/query/azlogs"

	"github.com/custody-audit/custody/ingest"
)

// Format is the Message.Format of every message this source emits.
const Format = "loganalytics"

// ErrWindowTooSmall reports a window that cannot be split further but
// still holds more rows than the limit allows.
var ErrWindowTooSmall = errors.New("window cannot be split further")

// Options carries the dependencies of a Source that are not configuration.
type Options struct {
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
	// Credential overrides the credential built from Config.Credential.
	Credential azcore.TokenCredential
	// Transport is the HTTP transport for the credential and the query
	// client (for example one trusting a private CA); nil means the SDK
	// default.
	Transport policy.Transporter
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Sleep waits d or until ctx is done (used for Retry-After); nil
	// means a real timer.
	Sleep func(ctx context.Context, d time.Duration) error
	// Idle, if set, is called each time ReadBatch has nothing to hand out
	// and starts to wait (every table caught up, backing off or waiting
	// for acknowledgements). It must not block.
	Idle func()
}

// Source is an ingest.Source over one Log Analytics workspace. Its methods
// are safe for concurrent use.
type Source struct {
	cfg  Config
	opts Options
	log  *slog.Logger

	// wake is signalled (non-blocking) whenever an ack changes state.
	wake chan struct{}

	mu        sync.Mutex
	client    *azlogs.Client
	connected bool
	closed    bool
	tables    []*tableState
	rr        int // round-robin cursor over tables
}

// rowKey identifies a row within the overlap: its ingestion time and a
// hash of its JSON body.
type rowKey struct {
	ingested int64 // Unix nanoseconds
	sum      [16]byte
}

// tableState is the progress of one table. All fields are guarded by
// Source.mu, except that only the goroutine that set fetching touches the
// window bounds while a query runs.
type tableState struct {
	name     string
	stream   string
	template string

	// committed: every row with ingestion_time() <= committed that was
	// queryable when read has been handed out and acknowledged (µs).
	committed int64
	// settled: the next query starts after this (µs); between settled
	// and committed is the overlap being re-read.
	settled int64
	// seen counts acknowledged rows with ingestion time after settled.
	seen map[rowKey]int

	win       *window
	fetching  bool
	notBefore time.Time
}

// window is one query result being handed out and acknowledged.
type window struct {
	to           int64 // upper bound (µs), becomes committed
	settledAfter int64
	caughtUp     bool
	pending      []ingest.Message
	keys         []rowKey
	outstanding  int
	failed       bool
}

// New builds a source. startPositions maps stream names to the offset the
// store holds for them (see Message.Offset); streams without a position
// start Config.StartLookback before now.
func New(cfg Config, startPositions map[string]int64, opts Options) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("log analytics config: %w", err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Sleep == nil {
		opts.Sleep = sleep
	}
	s := &Source{
		cfg:  cfg,
		opts: opts,
		log:  opts.Logger.With("source", "loganalytics", "workspace", cfg.WorkspaceID),
		wake: make(chan struct{}, 1),
	}
	start := opts.Now().Add(-cfg.StartLookback).UnixMicro()
	for _, name := range cfg.Tables {
		t := &tableState{
			name:     name,
			stream:   Stream(cfg.WorkspaceID, name),
			template: cfg.QueryTemplate(name),
			seen:     map[rowKey]int{},
		}
		if pos, ok := startPositions[t.stream]; ok {
			t.committed = pos
			t.settled = pos - cfg.Overlap.Microseconds()
		} else {
			t.committed, t.settled = start, start
		}
		s.tables = append(s.tables, t)
	}
	return s, nil
}

// Stream returns the stream name of a table.
func Stream(workspace, table string) string {
	return "loganalytics/" + workspace + "/" + table
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Connect builds the credential and the query client. No request is made;
// credential problems surface on the first query. Idempotent.
func (s *Source) Connect(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.connected {
		return nil
	}
	cc := s.cfg.cloudConfig()
	copts := clientOptions(cc, s.opts.Transport)
	cred := s.opts.Credential
	if cred == nil {
		c, err := newCredential(s.cfg.Credential, copts)
		if err != nil {
			return fmt.Errorf("connect log analytics: %w", err)
		}
		cred = c
	}
	client, err := azlogs.NewClient(cred, &azlogs.ClientOptions{ClientOptions: copts})
	if err != nil {
		return fmt.Errorf("connect log analytics: %w", err)
	}
	s.client = client
	s.connected = true
	s.closed = false
	s.log.InfoContext(ctx, "log analytics source connected",
		"endpoint", cc.Services[azlogs.ServiceName].Endpoint, "tables", s.cfg.Tables,
		"credential", string(s.cfg.Credential.Kind))
	return nil
}

// Close releases the client. Unacknowledged rows are read again by the
// next source, from the positions in the store.
func (s *Source) Close(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.connected = false
	s.client = nil
	return nil
}

// ReadBatch returns the next rows of one table, at most Config.BatchSize.
// It blocks until rows are available or ctx is done. A query error is
// returned as is (wrapped); progress only moves on acknowledgement.
func (s *Source) ReadBatch(ctx context.Context) ([]ingest.Message, ingest.AckFunc, error) {
	for {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		s.mu.Lock()
		if !s.connected {
			s.mu.Unlock()
			return nil, nil, ingest.ErrNotConnected
		}
		if msgs, ack := s.takeBatchLocked(); msgs != nil {
			s.mu.Unlock()
			return msgs, ack, nil
		}
		now := s.opts.Now()
		t := s.dueTableLocked(now)
		var wait time.Duration = -1
		if t != nil {
			t.fetching = true
		} else {
			wait = s.nextWakeLocked(now)
		}
		client := s.client
		s.mu.Unlock()

		if t != nil {
			err := s.fetch(ctx, client, t)
			s.mu.Lock()
			t.fetching = false
			s.mu.Unlock()
			if err != nil {
				return nil, nil, err
			}
			continue
		}
		if s.opts.Idle != nil {
			s.opts.Idle()
		}
		if err := s.idle(ctx, wait); err != nil {
			return nil, nil, err
		}
	}
}

// idle waits for an acknowledgement, for d (if d >= 0), or for ctx.
func (s *Source) idle(ctx context.Context, d time.Duration) error {
	var timer <-chan time.Time
	if d >= 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timer = t.C
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-s.wake:
	case <-timer:
	}
	return nil
}

func (s *Source) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// takeBatchLocked hands out the next batch of pending rows, rotating over
// tables.
func (s *Source) takeBatchLocked() ([]ingest.Message, ingest.AckFunc) {
	for i := range s.tables {
		t := s.tables[(s.rr+i)%len(s.tables)]
		w := t.win
		if w == nil || w.failed || len(w.pending) == 0 {
			continue
		}
		s.rr = (s.rr + i + 1) % len(s.tables)
		n := min(len(w.pending), s.cfg.BatchSize)
		msgs := w.pending[:n:n]
		keys := w.keys[:n:n]
		w.pending, w.keys = w.pending[n:], w.keys[n:]
		w.outstanding++
		var once sync.Once
		ack := func(ctx context.Context, err error) error {
			once.Do(func() { s.ack(ctx, t, w, keys, err) })
			return nil
		}
		return msgs, ack
	}
	return nil, nil
}

// ack records the fate of one batch of window w of table t.
func (s *Source) ack(ctx context.Context, t *tableState, w *window, keys []rowKey, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.signal()
	w.outstanding--
	if err == nil {
		for _, k := range keys {
			t.seen[k]++
		}
	} else if !w.failed {
		s.log.WarnContext(ctx, "batch not stored; the window will be read again",
			"table", t.name, "error", err)
		w.failed = true
		w.pending, w.keys = nil, nil
	}
	if w.outstanding > 0 || len(w.pending) > 0 || t.win != w {
		return
	}
	t.win = nil
	if w.failed {
		return
	}
	s.commitLocked(t, w.to, w.settledAfter, w.caughtUp)
}

// commitLocked moves a table past a fully acknowledged window.
func (s *Source) commitLocked(t *tableState, to, settledAfter int64, caughtUp bool) {
	t.committed = max(t.committed, to)
	t.settled = max(t.settled, settledAfter)
	for k := range t.seen {
		if k.ingested/1000 <= t.settled {
			delete(t.seen, k)
		}
	}
	if caughtUp {
		t.notBefore = s.opts.Now().Add(s.cfg.PollInterval)
	}
}

// dueTableLocked picks a table that may be queried now.
func (s *Source) dueTableLocked(now time.Time) *tableState {
	for i := range s.tables {
		t := s.tables[(s.rr+i)%len(s.tables)]
		if t.win == nil && !t.fetching && !now.Before(t.notBefore) {
			return t
		}
	}
	return nil
}

// nextWakeLocked is how long to wait until a table becomes due; -1 means
// only an acknowledgement can make progress.
func (s *Source) nextWakeLocked(now time.Time) time.Duration {
	var d time.Duration = -1
	for _, t := range s.tables {
		if t.win != nil || t.fetching {
			continue
		}
		w := max(t.notBefore.Sub(now), 0)
		if d < 0 || w < d {
			d = w
		}
	}
	return d
}

// fetch reads the next window of t and queues its new rows. It runs
// without the lock; t.fetching keeps other callers off t.
func (s *Source) fetch(ctx context.Context, client *azlogs.Client, t *tableState) error {
	s.mu.Lock()
	from, committed := t.settled, t.committed
	s.mu.Unlock()

	now := s.opts.Now()
	end := now.Add(-s.cfg.IngestionDelay).UnixMicro()
	if end <= committed {
		s.mu.Lock()
		t.notBefore = now.Add(s.cfg.PollInterval)
		s.mu.Unlock()
		return nil
	}
	to := min(committed+s.cfg.WindowSize.Microseconds(), end)
	res, err := s.readWindow(ctx, client, t, from, to)
	if err != nil {
		var missing *missingTableError
		var throttled *throttledError
		s.mu.Lock()
		defer s.mu.Unlock()
		switch {
		case errors.As(err, &missing):
			t.notBefore = s.opts.Now().Add(s.cfg.MissingTableRetry)
			s.log.WarnContext(ctx, "table not found in the workspace; will look again later",
				"table", t.name, "retry_in", s.cfg.MissingTableRetry.String())
			return nil
		case errors.As(err, &throttled):
			backoff := max(throttled.retryAfter, s.cfg.PollInterval)
			t.notBefore = s.opts.Now().Add(backoff)
			s.log.WarnContext(ctx, "query still throttled after retries; table backs off",
				"table", t.name, "backoff", backoff.String())
			return nil
		}
		t.notBefore = s.opts.Now().Add(s.cfg.PollInterval)
		return fmt.Errorf("log analytics table %s: %w", t.name, err)
	}

	to = res.to
	settledAfter := max(from, min(to, end-s.cfg.Overlap.Microseconds()))
	caughtUp := to == end
	s.mu.Lock()
	defer s.mu.Unlock()
	w := &window{to: to, settledAfter: settledAfter, caughtUp: caughtUp}
	occurrences := map[rowKey]int{}
	for i, r := range res.rows {
		occurrences[r.key]++
		if occurrences[r.key] <= t.seen[r.key] {
			continue // handed out and acknowledged in an earlier poll
		}
		w.pending = append(w.pending, ingest.Message{
			Stream:   t.stream,
			Offset:   r.ingested.UnixMicro(),
			Position: fmt.Sprintf("table %s ingested %s row %d", t.name, r.ingested.UTC().Format(time.RFC3339Nano), i+1),
			Format:   Format,
			Body:     r.body,
			Enqueued: r.ingested,
			Received: now,
			Attributes: map[string]string{
				"table":     t.name,
				"workspace": s.cfg.WorkspaceID,
			},
		})
		w.keys = append(w.keys, r.key)
	}
	s.log.DebugContext(ctx, "window read", "table", t.name,
		"from", time.UnixMicro(from).UTC().Format(time.RFC3339Nano),
		"to", time.UnixMicro(to).UTC().Format(time.RFC3339Nano),
		"rows", len(res.rows), "new", len(w.pending))
	if len(w.pending) == 0 {
		s.commitLocked(t, to, settledAfter, caughtUp)
		return nil
	}
	t.win = w
	return nil
}

// fetchedRow is one row of a query result, decoded.
type fetchedRow struct {
	ingested time.Time
	body     []byte
	key      rowKey
}

type windowResult struct {
	to   int64
	rows []fetchedRow
}

// readWindow queries (from, to], halving the window while the result is
// truncated or partial. It returns the rows of the largest prefix window
// that could be read whole, and that window's upper bound.
func (s *Source) readWindow(ctx context.Context, client *azlogs.Client, t *tableState, from, to int64) (windowResult, error) {
	minSpan := s.cfg.MinWindow.Microseconds()
	for {
		rows, err := s.query(ctx, client, t, from, to)
		var tooBig *incompleteError
		if !errors.As(err, &tooBig) {
			if err != nil {
				return windowResult{}, err
			}
			sort.SliceStable(rows, func(i, j int) bool { return rows[i].ingested.Before(rows[j].ingested) })
			return windowResult{to: to, rows: rows}, nil
		}
		span := (to - from) / 2
		if span < minSpan {
			return windowResult{}, fmt.Errorf("window (%s, %s]: %s: %w",
				time.UnixMicro(from).UTC().Format(time.RFC3339Nano), time.UnixMicro(to).UTC().Format(time.RFC3339Nano),
				tooBig.reason, ErrWindowTooSmall)
		}
		s.log.InfoContext(ctx, "splitting window", "table", t.name, "reason", tooBig.reason,
			"from", time.UnixMicro(from).UTC().Format(time.RFC3339Nano),
			"old_to", time.UnixMicro(to).UTC().Format(time.RFC3339Nano),
			"new_to", time.UnixMicro(from+span).UTC().Format(time.RFC3339Nano))
		to = from + span
	}
}

// hashRow returns the identity key of a row body.
func hashRow(ingested time.Time, body []byte) rowKey {
	sum := sha256.Sum256(body)
	k := rowKey{ingested: ingested.UnixNano()}
	copy(k.sum[:], sum[:16])
	return k
}
