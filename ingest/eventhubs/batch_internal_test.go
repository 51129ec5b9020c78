package eventhubs

import (
	"fmt"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2"
)

// TestBatchDropsRedeliveredAndCountsGaps covers what the SDK can do after
// a recovery: hand back events at or below the last one handed out (a
// checkpoint behind the store), or skip some (retention expired).
func TestBatchDropsRedeliveredAndCountsGaps(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ConnectionString = "Endpoint=sb://127.0.0.1:5672;SharedAccessKeyName=k;SharedAccessKey=v;UseDevelopmentEmulator=true;EntityPath=audit"
	s, err := New(cfg, map[string]int64{"eventhubs/127.0.0.1:5672/audit/$Default/0": 5}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.parts = map[string]*partitionState{}
	s.mu.Lock()
	p := s.partitionLocked("0")
	s.mu.Unlock()

	events := func(seqs ...int64) []*azeventhubs.ReceivedEventData {
		var out []*azeventhubs.ReceivedEventData
		now := time.Now()
		for _, n := range seqs {
			out = append(out, &azeventhubs.ReceivedEventData{
				EventData:      azeventhubs.EventData{Body: fmt.Appendf(nil, "%d", n)},
				SequenceNumber: n, Offset: fmt.Sprint(n * 100), EnqueuedTime: &now,
			})
		}
		return out
	}
	d, err := s.batch(p, p.gen, events(3, 4, 5, 6, 7))
	if err != nil {
		t.Fatal(err)
	}
	if len(d.msgs) != 2 || d.msgs[0].Offset != 6 || d.last != 7 || d.msgs[0].Position != "partition 0 sequence 6 offset 600" {
		t.Fatalf("batch = %+v", d)
	}
	if st := s.Stats(); st.DuplicatesDropped != 3 {
		t.Fatalf("stats = %+v", st)
	}
	if d, err := s.batch(p, p.gen, events(4, 5)); d != nil || err != nil {
		t.Fatalf("all-duplicate batch = %+v, %v", d, err)
	}
	p.delivered = position{after: 7, valid: true}
	d, err = s.batch(p, p.gen, events(10, 11))
	if err != nil || len(d.msgs) != 2 {
		t.Fatalf("batch after a gap = %+v, %v", d, err)
	}
	if st := s.Stats(); st.Expired != 2 {
		t.Fatalf("stats = %+v, want 2 expired (8 and 9)", st)
	}
	if _, err := s.batch(p, p.gen+1, events(12)); err != errRewound {
		t.Fatalf("batch of a stale generation: %v", err)
	}
}

// TestBatchStampsWithTheClock: messages are stamped with the injected
// clock (WithClock), not the machine's.
func TestBatchStampsWithTheClock(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ConnectionString = "Endpoint=sb://127.0.0.1:5672;SharedAccessKeyName=k;SharedAccessKey=v;UseDevelopmentEmulator=true;EntityPath=audit"
	at := time.Date(2031, 2, 3, 4, 5, 6, 7000, time.UTC)
	s, err := New(cfg, nil, nil, WithClock(func() time.Time { return at }))
	if err != nil {
		t.Fatal(err)
	}
	s.parts = map[string]*partitionState{}
	s.mu.Lock()
	p := s.partitionLocked("0")
	s.mu.Unlock()
	enq := at.Add(-time.Hour)
	d, err := s.batch(p, p.gen, []*azeventhubs.ReceivedEventData{{EventData: azeventhubs.EventData{Body: []byte("{}")}, SequenceNumber: 1, Offset: "100", EnqueuedTime: &enq}})
	if err != nil {
		t.Fatal(err)
	}
	if len(d.msgs) != 1 || !d.msgs[0].Received.Equal(at) {
		t.Fatalf("batch = %+v, want one message received at %s", d.msgs, at)
	}
}
