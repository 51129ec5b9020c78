package ehbroker_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2"

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

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newConsumer(t *testing.T, b *ehbroker.Broker) *azeventhubs.ConsumerClient {
	t.Helper()
	cc, err := azeventhubs.NewConsumerClientFromConnectionString(b.ConnectionString(), "", azeventhubs.DefaultConsumerGroup, nil)
	if err != nil {
		t.Fatalf("consumer client: %v", err)
	}
	t.Cleanup(func() { _ = cc.Close(context.Background()) })
	return cc
}

// receive reads exactly n events from a partition client.
func receive(ctx context.Context, t *testing.T, pc *azeventhubs.PartitionClient, n int) []*azeventhubs.ReceivedEventData {
	t.Helper()
	var out []*azeventhubs.ReceivedEventData
	for len(out) < n {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		evs, err := pc.ReceiveEvents(rctx, n-len(out), nil)
		cancel()
		if err != nil && ctx.Err() != nil {
			t.Fatalf("receive: got %d of %d events: %v", len(out), n, err)
		}
		out = append(out, evs...)
	}
	return out
}

func TestPropertiesAndReceive(t *testing.T) {
	ctx := testCtx(t)
	b := startBroker(t, ehbroker.Config{EventHub: "audit", Partitions: 3})
	for i := range 10 {
		if _, err := b.Publish("1", fmt.Appendf(nil, "event-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	cc := newConsumer(t, b)
	hp, err := cc.GetEventHubProperties(ctx, nil)
	if err != nil {
		t.Fatalf("hub properties: %v", err)
	}
	if hp.Name != "audit" || fmt.Sprint(hp.PartitionIDs) != "[0 1 2]" {
		t.Fatalf("hub properties = %+v", hp)
	}
	pp, err := cc.GetPartitionProperties(ctx, "1", nil)
	if err != nil {
		t.Fatalf("partition properties: %v", err)
	}
	if pp.BeginningSequenceNumber != 0 || pp.LastEnqueuedSequenceNumber != 9 || pp.IsEmpty {
		t.Fatalf("partition properties = %+v", pp)
	}
	pc, err := cc.NewPartitionClient("1", &azeventhubs.PartitionClientOptions{
		StartPosition: azeventhubs.StartPosition{SequenceNumber: to.Ptr[int64](4)},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close(ctx)
	evs := receive(ctx, t, pc, 5)
	for i, ev := range evs {
		want := int64(5 + i)
		if ev.SequenceNumber != want || string(ev.Body) != fmt.Sprintf("event-%d", want) {
			t.Fatalf("event %d: seq %d body %q", i, ev.SequenceNumber, ev.Body)
		}
		if ev.EnqueuedTime == nil || ev.Offset == "" {
			t.Fatalf("event %d lacks system properties: %+v", i, ev)
		}
	}
}

func TestProducerBatch(t *testing.T) {
	ctx := testCtx(t)
	b := startBroker(t, ehbroker.Config{EventHub: "audit", Partitions: 2})
	pc, err := azeventhubs.NewProducerClientFromConnectionString(b.ConnectionString(), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close(ctx)
	batch, err := pc.NewEventDataBatch(ctx, &azeventhubs.EventDataBatchOptions{PartitionID: to.Ptr("1")})
	if err != nil {
		t.Fatalf("new batch: %v", err)
	}
	for i := range 50 {
		if err := batch.AddEventData(&azeventhubs.EventData{Body: fmt.Appendf(nil, "b%d", i), Properties: map[string]any{"i": int64(i)}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := pc.SendEventDataBatch(ctx, batch, nil); err != nil {
		t.Fatalf("send batch: %v", err)
	}
	keyed, err := pc.NewEventDataBatch(ctx, &azeventhubs.EventDataBatchOptions{PartitionKey: to.Ptr("cluster-a")})
	if err != nil {
		t.Fatal(err)
	}
	if err := keyed.AddEventData(&azeventhubs.EventData{Body: []byte("keyed")}, nil); err != nil {
		t.Fatal(err)
	}
	if err := pc.SendEventDataBatch(ctx, keyed, nil); err != nil {
		t.Fatalf("send keyed batch: %v", err)
	}

	cc := newConsumer(t, b)
	part, err := cc.NewPartitionClient("1", &azeventhubs.PartitionClientOptions{StartPosition: azeventhubs.StartPosition{Earliest: to.Ptr(true)}})
	if err != nil {
		t.Fatal(err)
	}
	defer part.Close(ctx)
	evs := receive(ctx, t, part, 50)
	for i, ev := range evs {
		if string(ev.Body) != fmt.Sprintf("b%d", i) || ev.Properties["i"] != int64(i) {
			t.Fatalf("event %d: body %q props %v", i, ev.Body, ev.Properties)
		}
	}
	found := false
	for _, id := range b.PartitionIDs() {
		evs, _ := b.Events(id, 0)
		for _, ev := range evs {
			if ev.PartitionKey == "cluster-a" && string(ev.Body) == "keyed" {
				found = true
			}
		}
	}
	if !found {
		t.Fatal("keyed event not stored with its partition key")
	}
}

func TestPublishAfterClose(t *testing.T) {
	b, err := ehbroker.Start(t.Context(), ehbroker.DefaultConfig("audit"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Publish("9", []byte("x")); !errors.Is(err, ehbroker.ErrUnknownPartition) {
		t.Fatalf("publish to partition 9: %v", err)
	}
	if err := b.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Publish("0", []byte("x")); !errors.Is(err, ehbroker.ErrClosed) {
		t.Fatalf("publish after close: %v", err)
	}
	if err := (ehbroker.Config{Partitions: 2}).Validate(); err == nil || err.Error() != "EventHub: must not be empty" {
		t.Fatalf("validate without hub: %v", err)
	}
}
