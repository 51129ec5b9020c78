package loganalytics

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/custody-audit/custody/ingest"
	"github.com/custody-audit/custody/internal/lafake"
)

const (
	testWorkspace = "5d6e7f80-1111-4a2b-9c3d-0123456789ab"
	testTenant    = "72f988bf-0000-4000-8000-000000000001"
	testClientID  = "0e1f2a3b-0000-4000-8000-00000000c11e"
	testSecret    = "s3cr3t~value-that-must-never-leak"
)

// t0 is the fake "now" every test starts at; the fixtures' rows were
// ingested in the two hours before it.
var t0 = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

// clock is a manually advanced clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// sleeper records the waits asked for instead of sleeping.
type sleeper struct {
	mu    sync.Mutex
	waits []time.Duration
}

func (s *sleeper) Sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.waits = append(s.waits, d)
	return ctx.Err()
}

func (s *sleeper) Waits() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.waits...)
}

// loadTable reads a fixture table from testdata/tables.
func loadTable(t testing.TB, name string) lafake.Table {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "tables", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var tbl lafake.Table
	if err := json.Unmarshal(b, &tbl); err != nil {
		t.Fatalf("fixture %s: %v", name, err)
	}
	return tbl
}

// env is one test setup: a server, a source on a fake clock, logs.
type env struct {
	t      testing.TB
	srv    *lafake.Server
	clock  *clock
	sleep  *sleeper
	logs   *syncBuffer
	cfg    Config
	src    *Source
	idleMu sync.Mutex
	onIdle func()
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testConfig is a config pointing at srv with a client-secret credential
// against the server's authority.
func testConfig(srv *lafake.Server, tables ...string) Config {
	cfg := DefaultConfig()
	cfg.WorkspaceID = testWorkspace
	cfg.Endpoint = srv.URL()
	cfg.Credential = CredentialConfig{
		Kind:                     CredentialClientSecret,
		TenantID:                 testTenant,
		ClientID:                 testClientID,
		ClientSecret:             testSecret,
		AuthorityHost:            srv.Authority().AuthorityHost(),
		DisableInstanceDiscovery: true,
	}
	cfg.Tables = tables
	cfg.StartLookback = 3 * time.Hour
	cfg.IngestionDelay = 2 * time.Minute
	cfg.WindowSize = 15 * time.Minute
	cfg.Overlap = 5 * time.Minute
	cfg.PollInterval = time.Minute
	return cfg
}

func newServer(t testing.TB, tables ...lafake.Table) *lafake.Server {
	t.Helper()
	srv, err := lafake.New(lafake.Options{Workspaces: []string{testWorkspace}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	srv.Authority().AddClient(testTenant, testClientID, testSecret)
	srv.LoadTables(tables...)
	return srv
}

// newEnv builds and connects a source. mutate may adjust the config.
func newEnv(t testing.TB, srv *lafake.Server, positions map[string]int64, cfg Config) *env {
	e := &env{t: t, srv: srv, clock: &clock{now: t0}, sleep: &sleeper{}, logs: &syncBuffer{}, cfg: cfg}
	e.src = e.open(positions)
	return e
}

func (e *env) open(positions map[string]int64) *Source {
	e.t.Helper()
	src, err := New(e.cfg, positions, Options{
		Logger:    slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Transport: e.srv.HTTPClient(),
		Now:       e.clock.Now,
		Sleep:     e.sleep.Sleep,
		Idle:      e.idle,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	if err := src.Connect(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = src.Close(context.Background()) })
	return src
}

// idle is the sources' Options.Idle: it ends a running drain.
func (e *env) idle() {
	e.idleMu.Lock()
	f := e.onIdle
	e.idleMu.Unlock()
	if f != nil {
		f()
	}
}

// drain reads batches until the source goes idle, acknowledging each with
// ackErr(batch number) (nil = stored). It returns the stored messages.
func (e *env) drain(src *Source, ackErr func(n int) error) ([]ingest.Message, error) {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e.idleMu.Lock()
	e.onIdle = cancel
	e.idleMu.Unlock()
	defer func() {
		e.idleMu.Lock()
		e.onIdle = nil
		e.idleMu.Unlock()
	}()
	var stored []ingest.Message
	for n := 0; ; n++ {
		if n > 10000 {
			e.t.Fatal("drain: source never went idle")
		}
		msgs, ack, err := src.ReadBatch(ctx)
		if errors.Is(err, context.Canceled) {
			return stored, nil
		}
		if err != nil {
			return stored, err
		}
		var aerr error
		if ackErr != nil {
			aerr = ackErr(n)
		}
		if aerr == nil {
			stored = append(stored, msgs...)
		}
		if err := ack(ctx, aerr); err != nil {
			e.t.Fatalf("ack: %v", err)
		}
	}
}

// mustDrain is drain with every batch stored and no error expected.
func (e *env) mustDrain(src *Source) []ingest.Message {
	e.t.Helper()
	msgs, err := e.drain(src, nil)
	if err != nil {
		e.t.Fatalf("drain: %v", err)
	}
	return msgs
}

// field reads a top-level string field of a message body.
func field(t testing.TB, m ingest.Message, name string) string {
	t.Helper()
	var obj map[string]any
	if err := json.Unmarshal(m.Body, &obj); err != nil {
		t.Fatalf("body of %s is not a JSON object: %v", m.Position, err)
	}
	s, _ := obj[name].(string)
	return s
}

// countBy counts messages per key.
func countBy(t testing.TB, msgs []ingest.Message, name string) map[string]int {
	out := map[string]int{}
	for _, m := range msgs {
		out[field(t, m, name)]++
	}
	return out
}
