package eventhubs_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/go-amqp"

	"github.com/custody-audit/custody/ingest"
	"github.com/custody-audit/custody/ingest/eventhubs"
	"github.com/custody-audit/custody/internal/ehbroker"
)

func startBroker(t testing.TB, cfg ehbroker.Config) *ehbroker.Broker {
	t.Helper()
	b, err := ehbroker.Start(t.Context(), cfg)
	if err != nil {
		t.Fatalf("start broker: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(context.Background()); err != nil {
			t.Errorf("close broker: %v", err)
		}
	})
	return b
}

// testConfig reads the broker's hub quickly and retries fast.
func testConfig(b *ehbroker.Broker) eventhubs.Config {
	cfg := eventhubs.DefaultConfig()
	cfg.ConnectionString = b.ConnectionString()
	cfg.MaxWait = 100 * time.Millisecond
	cfg.MaxBatchSize = 100
	cfg.RetryDelay = 20 * time.Millisecond
	cfg.MaxRetryDelay = 200 * time.Millisecond
	return cfg
}

func newSource(t testing.TB, cfg eventhubs.Config, stored map[string]int64, logger *slog.Logger) *eventhubs.Source {
	t.Helper()
	s, err := eventhubs.New(cfg, stored, logger)
	if err != nil {
		t.Fatalf("new source: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := s.Connect(ctx); err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

func publish(t testing.TB, b *ehbroker.Broker, partition string, from, n int) {
	t.Helper()
	bodies := make([][]byte, n)
	for i := range n {
		bodies[i] = body(partition, from+i)
	}
	if _, err := b.Publish(partition, bodies...); err != nil {
		t.Fatal(err)
	}
}

func body(partition string, i int) []byte {
	return fmt.Appendf(nil, `{"records":[{"partition":%q,"n":%d}]}`, partition, i)
}

// collector reads batches, acking each, and records what it saw.
type collector struct {
	t    testing.TB
	s    *eventhubs.Source
	mu   sync.Mutex
	seen map[string][]int64 // stream -> offsets in delivery order
	msgs []ingest.Message
}

func newCollector(t testing.TB, s *eventhubs.Source) *collector {
	return &collector{t: t, s: s, seen: map[string][]int64{}}
}

// readN reads until n messages in total arrived, or fails after a timeout.
func (c *collector) readN(n int) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for len(c.msgs) < n {
		msgs, ack, err := c.s.ReadBatch(ctx)
		if err != nil {
			c.t.Fatalf("read batch after %d of %d messages: %v", len(c.msgs), n, err)
		}
		c.add(msgs)
		if err := ack(ctx, nil); err != nil {
			c.t.Fatalf("ack: %v", err)
		}
	}
}

func (c *collector) add(msgs []ingest.Message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range msgs {
		c.seen[m.Stream] = append(c.seen[m.Stream], m.Offset)
		c.msgs = append(c.msgs, m)
	}
}

// expectNothingMore checks no further message arrives within a short wait.
func (c *collector) expectNothingMore() {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel()
	msgs, _, err := c.s.ReadBatch(ctx)
	if err == nil {
		c.t.Fatalf("unexpected extra batch: %d messages, first %s", len(msgs), msgs[0].Position)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		c.t.Fatalf("read batch: %v", err)
	}
}

// expectSeq checks a stream saw exactly offsets from..to, in order.
func (c *collector) expectSeq(stream string, from, to int64) {
	c.t.Helper()
	got := c.seen[stream]
	if int64(len(got)) != to-from+1 {
		c.t.Fatalf("%s: got %d events, want %d (%d..%d)", stream, len(got), to-from+1, from, to)
	}
	for i, off := range got {
		if off != from+int64(i) {
			c.t.Fatalf("%s: event %d has sequence %d, want %d", stream, i, off, from+int64(i))
		}
	}
}

func TestReadAllFromEarliest(t *testing.T) {
	b := startBroker(t, ehbroker.Config{EventHub: "audit", Partitions: 3})
	for _, p := range b.PartitionIDs() {
		publish(t, b, p, 0, 150)
	}
	s := newSource(t, testConfig(b), nil, nil)
	c := newCollector(t, s)
	c.readN(450)
	c.expectNothingMore()
	for _, p := range b.PartitionIDs() {
		c.expectSeq(s.Stream(p), 0, 149)
	}
	if want := "eventhubs/" + b.Addr() + "/audit/$Default/1"; s.Stream("1") != want {
		t.Fatalf("stream = %q, want %q", s.Stream("1"), want)
	}
	for _, m := range c.msgs {
		p := m.Stream[strings.LastIndex(m.Stream, "/")+1:]
		if !bytes.Equal(m.Body, body(p, int(m.Offset))) {
			t.Fatalf("%s %d: body %s", m.Stream, m.Offset, m.Body)
		}
		if m.Format != eventhubs.Format || m.Enqueued.IsZero() || m.Received.IsZero() {
			t.Fatalf("message fields: %+v", m)
		}
		if !strings.HasPrefix(m.Position, fmt.Sprintf("partition %s sequence %d offset ", p, m.Offset)) {
			t.Fatalf("position = %q", m.Position)
		}
	}
}

func TestResumeFromStoredSequence(t *testing.T) {
	b := startBroker(t, ehbroker.Config{EventHub: "audit", Partitions: 2})
	publish(t, b, "0", 0, 100)
	publish(t, b, "1", 0, 20)
	cfg := testConfig(b)
	probe, err := eventhubs.New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]int64{probe.Stream("0"): 49, probe.Stream("1"): 19}
	s := newSource(t, cfg, stored, nil)
	lag, err := s.Lag(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if lag[s.Stream("0")] != 50 || lag[s.Stream("1")] != 0 {
		t.Fatalf("lag before reading = %v, want 50 and 0", lag)
	}
	c := newCollector(t, s)
	c.readN(50)
	c.expectNothingMore()
	c.expectSeq(s.Stream("0"), 50, 99)
	c.expectSeq(s.Stream("1"), 0, -1)

	// New events after the stored position are read, exactly once.
	publish(t, b, "1", 20, 5)
	c.readN(55)
	c.expectSeq(s.Stream("1"), 20, 24)
	c.expectNothingMore()
	if lag, err := s.Lag(t.Context()); err != nil || lag[s.Stream("0")] != 0 || lag[s.Stream("1")] != 0 {
		t.Fatalf("lag after reading everything = %v, %v", lag, err)
	}
}

func TestRestartResumesFromAcked(t *testing.T) {
	b := startBroker(t, ehbroker.Config{EventHub: "audit", Partitions: 1})
	publish(t, b, "0", 0, 300)
	cfg := testConfig(b)
	first := newSource(t, cfg, nil, nil)
	c := newCollector(t, first)
	c.readN(120)
	if err := first.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	// The store would hold the acknowledged positions; the source reports
	// the same ones.
	stored := map[string]int64{}
	for _, p := range first.Positions() {
		stored[p.Stream] = p.Offset
	}
	last := c.seen[first.Stream("0")][len(c.seen[first.Stream("0")])-1]
	if stored[first.Stream("0")] != last {
		t.Fatalf("positions = %v, want last acked %d", stored, last)
	}
	second := newSource(t, cfg, stored, nil)
	c2 := newCollector(t, second)
	c2.readN(int(299 - last))
	c2.expectNothingMore()
	c2.expectSeq(second.Stream("0"), last+1, 299)
}

func TestStartLatest(t *testing.T) {
	b := startBroker(t, ehbroker.Config{EventHub: "audit", Partitions: 2})
	publish(t, b, "0", 0, 10)
	cfg := testConfig(b)
	cfg.StartPosition = eventhubs.StartLatest
	s := newSource(t, cfg, nil, nil)
	publish(t, b, "0", 10, 5)
	publish(t, b, "1", 0, 3)
	c := newCollector(t, s)
	c.readN(8)
	c.expectNothingMore()
	c.expectSeq(s.Stream("0"), 10, 14)
	c.expectSeq(s.Stream("1"), 0, 2)
}

func TestStartAtTime(t *testing.T) {
	var now atomic.Int64
	t0 := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	now.Store(t0.UnixNano())
	b := startBroker(t, ehbroker.Config{EventHub: "audit", Partitions: 1,
		Clock: func() time.Time { return time.Unix(0, now.Load()) }})
	publish(t, b, "0", 0, 10)
	now.Store(t0.Add(time.Hour).UnixNano())
	publish(t, b, "0", 10, 10)
	cfg := testConfig(b)
	cfg.StartPosition = t0.Add(30 * time.Minute).Format(time.RFC3339)
	s := newSource(t, cfg, nil, nil)
	c := newCollector(t, s)
	c.readN(10)
	c.expectNothingMore()
	c.expectSeq(s.Stream("0"), 10, 19)
	if got := c.msgs[0].Enqueued; !got.Equal(t0.Add(time.Hour)) {
		t.Fatalf("enqueued = %s", got)
	}
}

func TestConnectionDropsMidStream(t *testing.T) {
	b := startBroker(t, ehbroker.Config{EventHub: "audit", Partitions: 2})
	cfg := testConfig(b)
	cfg.Prefetch = 50
	cfg.MaxBatchSize = 40
	s := newSource(t, cfg, nil, nil)
	c := newCollector(t, s)
	const rounds, per = 6, 200
	for r := range rounds {
		publish(t, b, "0", r*per, per)
		publish(t, b, "1", r*per, per)
		c.readN(r*2*per + per/2) // part way through this round
		if n := b.DropConnections(); n == 0 {
			t.Fatalf("round %d: no connection to drop", r)
		}
	}
	c.readN(rounds * 2 * per)
	c.expectNothingMore()
	if accepted, _ := b.Stats(); accepted < rounds+1 {
		t.Fatalf("broker accepted %d connections; the source did not reconnect after each drop", accepted)
	}
	t.Logf("source stats after %d drops: %+v", rounds, s.Stats())
	c.expectSeq(s.Stream("0"), 0, rounds*per-1)
	c.expectSeq(s.Stream("1"), 0, rounds*per-1)
}

func TestBrokerRefusesThenRecovers(t *testing.T) {
	b := startBroker(t, ehbroker.Config{EventHub: "audit", Partitions: 1})
	publish(t, b, "0", 0, 50)
	s := newSource(t, testConfig(b), nil, nil)
	c := newCollector(t, s)
	c.readN(50)
	b.Refuse(true)
	publish(t, b, "0", 50, 50)
	// Keep refusing until the SDK's own retries are exhausted and the
	// source has reopened the partition itself at least once.
	for deadline := time.Now().Add(20 * time.Second); s.Stats().Reopens == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the source never reopened the partition")
		}
	}
	if _, refused := b.Stats(); refused == 0 {
		t.Fatal("the broker refused no connection")
	}
	b.Refuse(false)
	c.readN(100)
	c.expectNothingMore()
	c.expectSeq(s.Stream("0"), 0, 99)
}

func TestNackRedeliversFromLastAck(t *testing.T) {
	b := startBroker(t, ehbroker.Config{EventHub: "audit", Partitions: 1})
	publish(t, b, "0", 0, 100)
	cfg := testConfig(b)
	cfg.MaxBatchSize = 10
	s := newSource(t, cfg, nil, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()

	read := func() ([]ingest.Message, ingest.AckFunc) {
		t.Helper()
		msgs, ack, err := s.ReadBatch(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return msgs, ack
	}
	first, ack1 := read()
	if err := ack1(ctx, nil); err != nil {
		t.Fatal(err)
	}
	lastAcked := first[len(first)-1].Offset
	second, ack2 := read()
	if err := ack2(ctx, errors.New("store unavailable")); err != nil {
		t.Fatal(err)
	}
	again, ack3 := read()
	if again[0].Offset != lastAcked+1 || again[0].Offset != second[0].Offset {
		t.Fatalf("after nack got sequence %d, want %d", again[0].Offset, lastAcked+1)
	}
	if err := ack3(ctx, nil); err != nil {
		t.Fatal(err)
	}
	c := newCollector(t, s)
	c.add(first)
	c.add(again)
	c.readN(100)
	c.expectNothingMore()
	c.expectSeq(s.Stream("0"), 0, 99)
	if st := s.Stats(); st.Redeliveries != 1 {
		t.Fatalf("stats = %+v, want one redelivery", st)
	}
}

func TestStaticPartitionAssignment(t *testing.T) {
	b := startBroker(t, ehbroker.Config{EventHub: "audit", Partitions: 4})
	for _, p := range b.PartitionIDs() {
		publish(t, b, p, 0, 30)
	}
	cfgA, cfgB := testConfig(b), testConfig(b)
	cfgA.Partitions = []string{"0", "2"}
	cfgB.Partitions = []string{"1", "3"}
	a := newCollector(t, newSource(t, cfgA, nil, nil))
	bb := newCollector(t, newSource(t, cfgB, nil, nil))
	a.readN(60)
	bb.readN(60)
	a.expectNothingMore()
	bb.expectNothingMore()
	for _, p := range []string{"0", "2"} {
		a.expectSeq(a.s.Stream(p), 0, 29)
		bb.expectSeq(a.s.Stream(p), 0, -1)
	}
	for _, p := range []string{"1", "3"} {
		bb.expectSeq(bb.s.Stream(p), 0, 29)
		a.expectSeq(bb.s.Stream(p), 0, -1)
	}

	bad := testConfig(b)
	bad.Partitions = []string{"7"}
	s, err := eventhubs.New(bad, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = s.Connect(t.Context())
	if err == nil || !strings.Contains(err.Error(), `partitions: "7" is not a partition of audit`) {
		t.Fatalf("connect with unknown partition: %v", err)
	}
}

func TestProducerClientEventsAreRead(t *testing.T) {
	// Events sent by the real ProducerClient (batch format) reach the
	// source with their partition key.
	b := startBroker(t, ehbroker.Config{EventHub: "audit", Partitions: 2})
	sendWithProducer(t, b, "kube-audit", 25)
	s := newSource(t, testConfig(b), nil, nil)
	c := newCollector(t, s)
	c.readN(25)
	c.expectNothingMore()
	for i, m := range c.msgs {
		if m.Attributes["partition_key"] != "kube-audit" || string(m.Body) != fmt.Sprintf("event %d", i) {
			t.Fatalf("message %d: %q %v", i, m.Body, m.Attributes)
		}
	}
}

// TestBackpressureBoundsBuffering stops reading (a store outage) and checks
// the source pulled no more than its documented bound from the hub, then
// resumes and reads everything exactly once.
func TestBackpressureBoundsBuffering(t *testing.T) {
	b := startBroker(t, ehbroker.Config{EventHub: "audit", Partitions: 2})
	const per = 3000
	publish(t, b, "0", 0, per)
	publish(t, b, "1", 0, per)
	cfg := testConfig(b)
	cfg.Prefetch = 100
	cfg.MaxBatchSize = 50
	s := newSource(t, cfg, nil, nil)
	c := newCollector(t, s)
	c.readN(1)

	// Nobody reads now. Whenever we look, the source may hold at most, per
	// partition, the SDK's prefetch plus one batch queued and one in hand.
	bound := int64(2 * (int(cfg.Prefetch) + 2*cfg.MaxBatchSize))
	for range 20 {
		time.Sleep(20 * time.Millisecond)
		if d := b.Delivered(); d > bound+int64(len(c.msgs)) {
			t.Fatalf("source pulled %d events while the pipeline was stalled (bound %d)", d, bound)
		}
	}
	c.readN(2 * per)
	c.expectNothingMore()
	c.expectSeq(s.Stream("0"), 0, per-1)
	c.expectSeq(s.Stream("1"), 0, per-1)
}

// TestExpiredEventsAreReportedNotHidden resumes from a position whose next
// events the hub no longer retains: the source continues with the oldest
// retained event and logs the gap, so the loss is visible.
func TestExpiredEventsAreReportedNotHidden(t *testing.T) {
	b := startBroker(t, ehbroker.Config{EventHub: "audit", Partitions: 1, Retention: 10})
	publish(t, b, "0", 0, 30) // keeps 20..29
	var logs syncBuffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	cfg := testConfig(b)
	probe, err := eventhubs.New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := newSource(t, cfg, map[string]int64{probe.Stream("0"): 4}, logger)
	c := newCollector(t, s)
	c.readN(10)
	c.expectNothingMore()
	c.expectSeq(s.Stream("0"), 20, 29)
	if !strings.Contains(logs.String(), `"missing":15`) || !strings.Contains(logs.String(), "sequence gap") {
		t.Fatalf("gap of 15 events not logged: %s", logs.String())
	}
	if st := s.Stats(); st.Expired != 15 {
		t.Fatalf("stats = %+v, want 15 expired", st)
	}
}

// TestOddBodiesPassThrough: bodies that are not JSON, empty, or carried as
// an AMQP value reach the pipeline unchanged, for the normalizer to
// quarantine; the stream goes on.
func TestOddBodiesPassThrough(t *testing.T) {
	b := startBroker(t, ehbroker.Config{EventHub: "audit", Partitions: 1})
	ctx := t.Context()
	conn, err := amqp.Dial(ctx, "amqp://"+b.Addr(), &amqp.ConnOptions{SASLType: amqp.SASLTypeAnonymous()})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sess, err := conn.NewSession(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	snd, err := sess.NewSender(ctx, "audit/Partitions/0", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []*amqp.Message{
		amqp.NewMessage([]byte("\x00\xffnot json")),
		amqp.NewMessage([]byte{}),
		{Value: `{"records":[]}`},
		amqp.NewMessage([]byte(`{"records":[{"ok":true}]}`)),
	} {
		if err := snd.Send(ctx, m, nil); err != nil {
			t.Fatal(err)
		}
	}
	s := newSource(t, testConfig(b), nil, nil)
	c := newCollector(t, s)
	c.readN(4)
	want := []string{"\x00\xffnot json", "", `{"records":[]}`, `{"records":[{"ok":true}]}`}
	for i, m := range c.msgs {
		if string(m.Body) != want[i] {
			t.Fatalf("message %d body %q, want %q", i, m.Body, want[i])
		}
	}
}

// TestReconnectRedeliversUnacked closes the source with a batch handed out
// but never acknowledged; after Connect that batch comes again.
func TestReconnectRedeliversUnacked(t *testing.T) {
	b := startBroker(t, ehbroker.Config{EventHub: "audit", Partitions: 1})
	publish(t, b, "0", 0, 50)
	cfg := testConfig(b)
	cfg.MaxBatchSize = 10
	s := newSource(t, cfg, nil, nil)
	c := newCollector(t, s)
	c.readN(20)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	pending, _, err := s.ReadBatch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.ReadBatch(ctx); !errors.Is(err, ingest.ErrNotConnected) {
		t.Fatalf("read after close: %v", err)
	}
	if err := s.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	c.readN(50)
	c.expectNothingMore()
	c.expectSeq(s.Stream("0"), 0, 49)
	if pending[0].Offset != 20 {
		t.Fatalf("unacknowledged batch started at %d", pending[0].Offset)
	}
}
