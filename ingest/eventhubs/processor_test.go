package eventhubs_test

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2/checkpoints"

	"github.com/custody-audit/custody/ingest"
	"github.com/custody-audit/custody/ingest/eventhubs"
	"github.com/custody-audit/custody/internal/azurite"
	"github.com/custody-audit/custody/internal/ehbroker"
)

// sharedStore stands in for the evidence store several collectors write
// to: it keeps per stream the offsets stored, and skips a message at or
// below the stream's stored position, as the store's position check does.
type sharedStore struct {
	mu      sync.Mutex
	pos     map[string]int64
	offsets map[string][]int64
	skipped int
}

func (st *sharedStore) write(msgs []ingest.Message) {
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, m := range msgs {
		if p, ok := st.pos[m.Stream]; ok && m.Offset <= p {
			st.skipped++
			continue
		}
		st.pos[m.Stream] = m.Offset
		st.offsets[m.Stream] = append(st.offsets[m.Stream], m.Offset)
	}
}

func (st *sharedStore) total() int {
	st.mu.Lock()
	defer st.mu.Unlock()
	n := 0
	for _, o := range st.offsets {
		n += len(o)
	}
	return n
}

// run reads from s into the store until ctx ends, and reports the streams
// it delivered.
func (st *sharedStore) run(ctx context.Context, s *eventhubs.Source, seen *sync.Map) {
	for ctx.Err() == nil {
		msgs, ack, err := s.ReadBatch(ctx)
		if err != nil {
			return
		}
		st.write(msgs)
		for _, m := range msgs {
			seen.Store(m.Stream, true)
		}
		_ = ack(ctx, nil)
	}
}

func TestProcessorSharesPartitions(t *testing.T) {
	inst := azurite.Start(t)
	if _, err := inst.Client.CreateContainer(t.Context(), "checkpoints", nil); err != nil {
		t.Fatal(err)
	}
	b := startBroker(t, ehbroker.Config{EventHub: "audit", Partitions: 4})
	const per = 400
	for _, p := range b.PartitionIDs() {
		publish(t, b, p, 0, per)
	}
	cfg := testConfig(b)
	cfg.Balance = eventhubs.BalanceProcessor
	cfg.Checkpoints = eventhubs.CheckpointConfig{ConnectionString: inst.ConnectionString, Container: "checkpoints"}
	cfg.LoadBalancingInterval = 200 * time.Millisecond
	cfg.OwnershipExpiration = 2 * time.Second
	cfg.MaxBatchSize = 20

	store := &sharedStore{pos: map[string]int64{}, offsets: map[string][]int64{}}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()

	// Collector A starts alone and claims the partitions.
	var seenA, seenB sync.Map
	a := newSource(t, cfg, nil, nil)
	actx, stopA := context.WithCancel(ctx)
	doneA := make(chan struct{})
	go func() { defer close(doneA); store.run(actx, a, &seenA) }()
	waitFor(t, ctx, "collector A to store events", func() bool { return store.total() >= 200 })

	// Collector B joins: the processor moves partitions over to it.
	bsrc := newSource(t, cfg, nil, nil)
	bctx, stopB := context.WithCancel(ctx)
	defer stopB()
	doneB := make(chan struct{})
	go func() { defer close(doneB); store.run(bctx, bsrc, &seenB) }()
	waitFor(t, ctx, "collector B to own a partition", func() bool {
		n := 0
		seenB.Range(func(any, any) bool { n++; return true })
		return n > 0
	})
	for _, p := range b.PartitionIDs() {
		publish(t, b, p, per, per)
	}
	// A stops; B takes over its partitions once A's ownership expires.
	stopA()
	<-doneA
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "all events stored", func() bool { return store.total() == 4*2*per })
	stopB()
	<-doneB

	for _, p := range b.PartitionIDs() {
		got := store.offsets[bsrc.Stream(p)]
		if len(got) != 2*per {
			t.Fatalf("partition %s: %d events stored, want %d", p, len(got), 2*per)
		}
		for i, off := range got {
			if off != int64(i) {
				t.Fatalf("partition %s: stored offset %d at %d: a gap or reordering", p, off, i)
			}
		}
	}
	t.Logf("redelivered across ownership changes and skipped by the store: %d", store.skipped)
}

func waitFor(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func TestProcessorNackRedelivers(t *testing.T) {
	inst := azurite.Start(t)
	if _, err := inst.Client.CreateContainer(t.Context(), "checkpoints", nil); err != nil {
		t.Fatal(err)
	}
	b := startBroker(t, ehbroker.Config{EventHub: "audit", Partitions: 1})
	publish(t, b, "0", 0, 100)
	cfg := testConfig(b)
	cfg.Balance = eventhubs.BalanceProcessor
	cfg.Checkpoints = eventhubs.CheckpointConfig{ConnectionString: inst.ConnectionString, Container: "checkpoints"}
	cfg.LoadBalancingInterval = 100 * time.Millisecond
	cfg.OwnershipExpiration = time.Second
	cfg.MaxBatchSize = 10
	var logs syncBuffer
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	logger.Info("config", "cfg", cfg)
	s := newSource(t, cfg, nil, logger)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	c := newCollector(t, s)
	c.readN(10) // acked: checkpoint at the 10th event
	msgs, ack, err := s.ReadBatch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := ack(ctx, context.DeadlineExceeded); err != nil {
		t.Fatal(err)
	}
	c.readN(100)
	c.expectNothingMore()
	c.expectSeq(s.Stream("0"), 0, 99)
	if msgs[0].Offset != 10 {
		t.Fatalf("nacked batch started at %d", msgs[0].Offset)
	}
	if strings.Contains(logs.String(), azurite.AccountKey) || !strings.Contains(logs.String(), "[REDACTED]") {
		t.Fatalf("storage key in logs, or config not logged redacted: %s", logs.String())
	}
}

func TestProcessorResumesFromStoredPosition(t *testing.T) {
	inst := azurite.Start(t)
	if _, err := inst.Client.CreateContainer(t.Context(), "checkpoints", nil); err != nil {
		t.Fatal(err)
	}
	b := startBroker(t, ehbroker.Config{EventHub: "audit", Partitions: 2})
	publish(t, b, "0", 0, 100)
	publish(t, b, "1", 0, 10)
	cfg := testConfig(b)
	cfg.Balance = eventhubs.BalanceProcessor
	cfg.Checkpoints = eventhubs.CheckpointConfig{ConnectionString: inst.ConnectionString, Container: "checkpoints"}
	cfg.LoadBalancingInterval = 100 * time.Millisecond
	cfg.OwnershipExpiration = time.Second
	probe, err := eventhubs.New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	// No checkpoint exists yet: the stored position decides.
	s := newSource(t, cfg, map[string]int64{probe.Stream("0"): 49}, nil)
	c := newCollector(t, s)
	c.readN(60)
	c.expectNothingMore()
	c.expectSeq(s.Stream("0"), 50, 99)
	c.expectSeq(s.Stream("1"), 0, 9)
}

// TestProcessorCheckpointInterval: checkpoints are throttled per partition
// and the pending one is written when the source closes.
func TestProcessorCheckpointInterval(t *testing.T) {
	inst := azurite.Start(t)
	if _, err := inst.Client.CreateContainer(t.Context(), "checkpoints", nil); err != nil {
		t.Fatal(err)
	}
	b := startBroker(t, ehbroker.Config{EventHub: "audit", Partitions: 1})
	publish(t, b, "0", 0, 50)
	cfg := testConfig(b)
	cfg.Balance = eventhubs.BalanceProcessor
	cfg.Checkpoints = eventhubs.CheckpointConfig{ConnectionString: inst.ConnectionString, Container: "checkpoints"}
	cfg.LoadBalancingInterval = 100 * time.Millisecond
	cfg.OwnershipExpiration = time.Second
	cfg.MaxBatchSize = 10
	cfg.CheckpointInterval = time.Hour
	s := newSource(t, cfg, nil, nil)
	c := newCollector(t, s)
	c.readN(50)

	cpStore, err := checkpoints.NewBlobStore(inst.Client.ServiceClient().NewContainerClient("checkpoints"), nil)
	if err != nil {
		t.Fatal(err)
	}
	checkpointed := func() int64 {
		t.Helper()
		cps, err := cpStore.ListCheckpoints(t.Context(), b.Addr(), "audit", "$Default", nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(cps) != 1 || cps[0].SequenceNumber == nil {
			t.Fatalf("checkpoints = %+v", cps)
		}
		return *cps[0].SequenceNumber
	}
	if got := checkpointed(); got >= 49 {
		t.Fatalf("checkpoint at %d already: the interval did not throttle", got)
	}
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := checkpointed(); got != 49 {
		t.Fatalf("checkpoint after close at %d, want 49", got)
	}
}
