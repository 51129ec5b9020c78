package ehbroker_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2"
	"github.com/Azure/go-amqp"

	"github.com/custody-audit/custody/internal/ehbroker"
)

func TestStartFilters(t *testing.T) {
	ctx := testCtx(t)
	var now atomic.Int64
	t0 := time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)
	now.Store(t0.UnixNano())
	b := startBroker(t, ehbroker.Config{EventHub: "audit", Partitions: 1,
		Clock: func() time.Time { return time.Unix(0, now.Load()) }})
	for i := range 10 {
		if i == 5 {
			now.Store(t0.Add(time.Hour).UnixNano())
		}
		if _, err := b.Publish("0", fmt.Appendf(nil, "e%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	stored, err := b.Events("0", 0)
	if err != nil {
		t.Fatal(err)
	}
	off6 := fmt.Sprint(stored[6].Offset)
	cases := []struct {
		name  string
		start azeventhubs.StartPosition
		first int64
	}{
		{"earliest", azeventhubs.StartPosition{Earliest: to.Ptr(true)}, 0},
		{"sequence exclusive", azeventhubs.StartPosition{SequenceNumber: to.Ptr[int64](3)}, 4},
		{"sequence inclusive", azeventhubs.StartPosition{SequenceNumber: to.Ptr[int64](3), Inclusive: true}, 3},
		{"offset exclusive", azeventhubs.StartPosition{Offset: &off6}, 7},
		{"offset inclusive", azeventhubs.StartPosition{Offset: &off6, Inclusive: true}, 6},
		{"enqueued between", azeventhubs.StartPosition{EnqueuedTime: to.Ptr(t0.Add(30 * time.Minute))}, 5},
		{"enqueued exclusive", azeventhubs.StartPosition{EnqueuedTime: &t0}, 5},
		{"enqueued inclusive", azeventhubs.StartPosition{EnqueuedTime: &t0, Inclusive: true}, 0},
	}
	cc := newConsumer(t, b)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pc, err := cc.NewPartitionClient("0", &azeventhubs.PartitionClientOptions{StartPosition: tc.start})
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Close(ctx)
			evs := receive(ctx, t, pc, int(10-tc.first))
			for i, ev := range evs {
				if want := tc.first + int64(i); ev.SequenceNumber != want || string(ev.Body) != fmt.Sprintf("e%d", want) {
					t.Fatalf("event %d: sequence %d body %q, want %d", i, ev.SequenceNumber, ev.Body, want)
				}
			}
		})
	}
}

// TestCreditFlow drives a receiver link by hand with go-amqp: the broker
// must send no more than the credit granted and must answer drains.
func TestCreditFlow(t *testing.T) {
	ctx := testCtx(t)
	b := startBroker(t, ehbroker.Config{EventHub: "audit", Partitions: 1})
	for i := range 20 {
		if _, err := b.Publish("0", fmt.Appendf(nil, "e%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	conn, err := amqp.Dial(ctx, "amqp://"+b.Addr(), &amqp.ConnOptions{SASLType: amqp.SASLTypeAnonymous()})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sess, err := conn.NewSession(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := sess.NewReceiver(ctx, "audit/ConsumerGroups/$Default/Partitions/0", &amqp.ReceiverOptions{
		Credit:  -1,
		Filters: []amqp.LinkFilter{amqp.NewSelectorFilter("amqp.annotation.x-opt-sequence-number > '-1'")},
	})
	if err != nil {
		t.Fatal(err)
	}
	next := int64(0)
	take := func(credit uint32, want int) {
		t.Helper()
		if err := r.IssueCredit(credit); err != nil {
			t.Fatal(err)
		}
		for range want {
			m, err := r.Receive(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			if seq := m.Annotations["x-opt-sequence-number"]; seq != next {
				t.Fatalf("sequence %v, want %d", seq, next)
			}
			next++
		}
		// The drain reply follows every transfer the broker sent, so
		// anything beyond the credit would now be prefetched.
		if err := r.DrainCredit(ctx, nil); err != nil {
			t.Fatalf("drain: %v", err)
		}
		if m := r.Prefetched(); m != nil {
			t.Fatalf("broker sent beyond credit: %v", m.Annotations)
		}
	}
	take(5, 5)
	take(3, 3)
	take(100, 12) // only 12 left: the drain consumes the rest of the credit
	if _, err := b.Publish("0", []byte("late")); err != nil {
		t.Fatal(err)
	}
	take(1, 1)
}

func TestLargeEventsSpanFrames(t *testing.T) {
	ctx := testCtx(t)
	b := startBroker(t, ehbroker.Config{EventHub: "audit", Partitions: 1})
	big := bytes.Repeat([]byte("0123456789abcdef"), 300<<10/16) // 300 KiB, several 64 KiB frames
	pc, err := azeventhubs.NewProducerClientFromConnectionString(b.ConnectionString(), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close(ctx)
	batch, err := pc.NewEventDataBatch(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := batch.AddEventData(&azeventhubs.EventData{Body: big}, nil); err != nil {
		t.Fatal(err)
	}
	if err := pc.SendEventDataBatch(ctx, batch, nil); err != nil {
		t.Fatalf("send: %v", err)
	}
	tooBig := bytes.Repeat([]byte{'x'}, 2<<20)
	batch, err = pc.NewEventDataBatch(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := batch.AddEventData(&azeventhubs.EventData{Body: tooBig}, nil); err == nil {
		t.Fatal("a 2 MiB event fit a batch although the broker advertises 1 MiB")
	}

	cc := newConsumer(t, b)
	part, err := cc.NewPartitionClient("0", &azeventhubs.PartitionClientOptions{StartPosition: azeventhubs.StartPosition{Earliest: to.Ptr(true)}})
	if err != nil {
		t.Fatal(err)
	}
	defer part.Close(ctx)
	evs := receive(ctx, t, part, 1)
	if !bytes.Equal(evs[0].Body, big) {
		t.Fatalf("body of %d bytes differs from the %d sent", len(evs[0].Body), len(big))
	}
}

func TestSessionWindowManyEvents(t *testing.T) {
	ctx := testCtx(t)
	b := startBroker(t, ehbroker.Config{EventHub: "audit", Partitions: 1})
	const n = 12000 // more than two session windows of transfers
	bodies := make([][]byte, n)
	for i := range bodies {
		bodies[i] = fmt.Appendf(nil, "%d", i)
	}
	if _, err := b.Publish("0", bodies...); err != nil {
		t.Fatal(err)
	}
	cc := newConsumer(t, b)
	part, err := cc.NewPartitionClient("0", &azeventhubs.PartitionClientOptions{
		StartPosition: azeventhubs.StartPosition{Earliest: to.Ptr(true)}, Prefetch: 5000})
	if err != nil {
		t.Fatal(err)
	}
	defer part.Close(ctx)
	evs := receive(ctx, t, part, n)
	for i, ev := range evs {
		if ev.SequenceNumber != int64(i) {
			t.Fatalf("event %d has sequence %d", i, ev.SequenceNumber)
		}
	}
}

func TestUnknownEntitiesAreRefused(t *testing.T) {
	ctx := testCtx(t)
	b := startBroker(t, ehbroker.Config{EventHub: "audit", Partitions: 2})
	cc := newConsumer(t, b)
	if _, err := cc.GetPartitionProperties(ctx, "9", nil); err == nil {
		t.Fatal("properties of partition 9 succeeded")
	}
	pc, err := cc.NewPartitionClient("9", &azeventhubs.PartitionClientOptions{
		StartPosition: azeventhubs.StartPosition{Earliest: to.Ptr(true)}})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close(ctx)
	_, err = pc.ReceiveEvents(ctx, 1, nil)
	if err == nil || !strings.Contains(err.Error(), `partition "9" does not exist`) {
		t.Fatalf("receive from partition 9: %v", err)
	}
	if _, err := b.Publish("9", []byte("x")); err == nil {
		t.Fatal("publish to partition 9 succeeded")
	}
}

func TestGarbageConnectionDoesNotHurt(t *testing.T) {
	ctx := testCtx(t)
	b := startBroker(t, ehbroker.Config{EventHub: "audit", Partitions: 1})
	for _, junk := range [][]byte{
		[]byte("GET / HTTP/1.1\r\n\r\n"),
		append([]byte("AMQP\x00\x01\x00\x00"), 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0),              // oversized frame
		append([]byte("AMQP\x00\x01\x00\x00"), 0, 0, 0, 12, 2, 0, 0, 0, 0x00, 0x53, 0x10, 0xc0), // truncated open
	} {
		nc, err := net.Dial("tcp", b.Addr())
		if err != nil {
			t.Fatal(err)
		}
		_, _ = nc.Write(junk)
		_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, _ = io.ReadAll(nc) // the broker answers with its header and hangs up
		_ = nc.Close()
	}
	if _, err := newConsumer(t, b).GetEventHubProperties(ctx, nil); err != nil {
		t.Fatalf("broker unusable after garbage: %v", err)
	}
}

// TestSingleMessageSend sends plain (non-batch) messages with go-amqp to a
// partition address and to the hub address.
func TestSingleMessageSend(t *testing.T) {
	ctx := testCtx(t)
	b := startBroker(t, ehbroker.Config{EventHub: "audit", Partitions: 2})
	conn, err := amqp.Dial(ctx, "amqp://"+b.Addr(), &amqp.ConnOptions{SASLType: amqp.SASLTypeAnonymous()})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sess, err := conn.NewSession(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	snd, err := sess.NewSender(ctx, "audit/Partitions/1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if snd.MaxMessageSize() != 1<<20 {
		t.Fatalf("max message size %d, want the advertised 1 MiB", snd.MaxMessageSize())
	}
	for i := range 3 {
		msg := amqp.NewMessage(fmt.Appendf(nil, "single-%d", i))
		msg.ApplicationProperties = map[string]any{"n": int64(i)}
		if err := snd.Send(ctx, msg, nil); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	evs, err := b.Events("1", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 3 || string(evs[2].Body) != "single-2" || evs[2].SequenceNumber != 2 {
		t.Fatalf("partition 1 holds %+v", evs)
	}

	keyed, err := sess.NewSender(ctx, "audit", nil)
	if err != nil {
		t.Fatal(err)
	}
	msg := amqp.NewMessage([]byte("by-key"))
	msg.Annotations = amqp.Annotations{"x-opt-partition-key": "tenant-a"}
	if err := keyed.Send(ctx, msg, nil); err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, id := range b.PartitionIDs() {
		evs, _ := b.Events(id, 0)
		for _, ev := range evs {
			if string(ev.Body) == "by-key" {
				total++
				if ev.PartitionKey != "tenant-a" {
					t.Fatalf("partition key %q", ev.PartitionKey)
				}
			}
		}
	}
	if total != 1 {
		t.Fatalf("keyed message stored %d times", total)
	}

	// A sender to an unknown entity is refused with a reason.
	if _, err := sess.NewSender(ctx, "other-hub", nil); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("sender to unknown hub: %v", err)
	}
}

// TestEpochTakesOwnership checks the owner-level rules the SDK's Processor
// relies on: a higher epoch steals the partition, a lower one is refused.
func TestEpochTakesOwnership(t *testing.T) {
	ctx := testCtx(t)
	b := startBroker(t, ehbroker.Config{EventHub: "audit", Partitions: 1})
	for i := range 5 {
		if _, err := b.Publish("0", fmt.Appendf(nil, "e%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	cc := newConsumer(t, b)
	open := func(epoch int64) *azeventhubs.PartitionClient {
		pc, err := cc.NewPartitionClient("0", &azeventhubs.PartitionClientOptions{
			StartPosition: azeventhubs.StartPosition{Earliest: to.Ptr(true)}, OwnerLevel: &epoch})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = pc.Close(context.Background()) })
		return pc
	}
	first := open(1)
	receive(ctx, t, first, 5)
	second := open(2)
	receive(ctx, t, second, 5)

	var ehErr *azeventhubs.Error
	_, err := first.ReceiveEvents(ctx, 1, nil)
	if !errors.As(err, &ehErr) || ehErr.Code != azeventhubs.ErrorCodeOwnershipLost {
		t.Fatalf("first receiver after being replaced: %v", err)
	}
	lower := open(1)
	_, err = lower.ReceiveEvents(ctx, 1, nil)
	if err == nil || !strings.Contains(err.Error(), "a receiver with epoch 2 is active on $default/0") {
		t.Fatalf("receiver below the active epoch: %v", err)
	}
	if _, err := b.Publish("0", []byte("e5")); err != nil {
		t.Fatal(err)
	}
	if evs := receive(ctx, t, second, 1); string(evs[0].Body) != "e5" {
		t.Fatalf("owner got %q", evs[0].Body)
	}
}

// TestHeartbeatsKeepIdleClientsConnected: a client that closes connections
// silent for 300ms stays connected through a longer idle period.
func TestHeartbeatsKeepIdleClientsConnected(t *testing.T) {
	ctx := testCtx(t)
	b := startBroker(t, ehbroker.Config{EventHub: "audit", Partitions: 1})
	conn, err := amqp.Dial(ctx, "amqp://"+b.Addr(), &amqp.ConnOptions{
		SASLType: amqp.SASLTypeAnonymous(), IdleTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	time.Sleep(time.Second) // idle: only heartbeats flow
	sess, err := conn.NewSession(ctx, nil)
	if err != nil {
		t.Fatalf("connection died while idle: %v", err)
	}
	_ = sess.Close(ctx)
}
