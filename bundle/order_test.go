package bundle

import (
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/custody-audit/custody/event"
	"github.com/custody-audit/custody/storage/trail"
)

// TestRowCodecRoundTrip checks that a buffered row comes back exactly,
// nil and empty lists, maps and raw bytes included.
func TestRowCodecRoundTrip(t *testing.T) {
	full := trail.Row{Chain: "aks/0", Seq: 7, Offset: -3, PrevHash: trail.Hash{1, 2}, Hash: trail.Hash{31: 9},
		Event: event.Event{ID: "id\x00\xff", Time: time.Date(2299, 12, 31, 23, 59, 59, 999999000, time.UTC),
			ReceivedTime: time.Date(1900, 1, 1, 0, 0, 0, 1000, time.UTC), Service: event.ServiceAKS, Category: "c",
			SourceKind: "k", SourceFormat: "f", SourcePosition: "p", TenantID: "t", SubscriptionID: "s", ResourceGroup: "rg",
			Provider: "pr", ResourceType: "rt", ResourceName: "rn", ResourceID: "ri",
			Actor:    event.Actor{Name: "a", ObjectID: "o", Type: event.ActorUser, AppID: "app", Groups: []string{"g1", ""}, ImpersonatedBy: "i"},
			SourceIP: netip.MustParseAddr("fe80::1%eth0"), UserAgent: "ua", Action: "act", ActionClass: event.ClassExec,
			Target: event.Target{APIGroup: "ag", Resource: "r", Subresource: "sr", Namespace: "ns", Name: "n", Repository: "repo",
				Tag: "tag", Digest: "d", ContainerGroup: "cg", Container: "c", Image: "img"},
			Outcome: event.OutcomeFailure, StatusCode: -1, Reason: "why", CorrelationID: "cid", RequestID: "rid",
			Tags: []string{"x"}, Attributes: map[string]string{"k": "v", "": ""}, Raw: []byte{0, 1, 2}, RawFormat: "json"}}
	empty := trail.Row{Chain: "c", Seq: 1, Event: event.Event{Time: time.Unix(0, 0).UTC(), ReceivedTime: time.Unix(0, 0).UTC(),
		SourceIP: netip.MustParseAddr("203.0.113.7"), Actor: event.Actor{Groups: []string{}}, Tags: []string{},
		Attributes: map[string]string{}, Raw: []byte{}}}
	zero := trail.Row{}
	for name, r := range map[string]trail.Row{"full": full, "empty": empty, "zero": zero} {
		t.Run(name, func(t *testing.T) {
			b := encodeRow(nil, &r)
			var got trail.Row
			if err := decodeRow(b, &got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, r) {
				t.Errorf("round trip:\ngot  %+v\nwant %+v", got, r)
			}
			for i := 0; i < len(b); i++ {
				if err := decodeRow(b[:i], &got); err == nil {
					t.Fatalf("row cut to %d of %d bytes decoded", i, len(b))
				}
			}
		})
	}
}

// TestRowSorterOrders checks the order rows come back in, from memory and
// from the temporary file alike.
func TestRowSorterOrders(t *testing.T) {
	in := []struct {
		chain string
		seq   uint64
	}{{"b", 2}, {"a", 10}, {"b", 1}, {"a", 9}, {"ab", 1}, {"a", 2}, {"B", 5}}
	want := []string{"B/5", "a/2", "a/9", "a/10", "ab/1", "b/1", "b/2"}
	// all in memory; every row a run of its own; runs of one to three
	// rows with the last ones left in memory
	for _, limit := range []int{1 << 20, 0, 300, 700} {
		s := newRowSorter(limit)
		for _, x := range in {
			r := trail.Row{Chain: x.chain, Seq: x.seq, Event: event.Event{Raw: make([]byte, 100)}}
			if err := s.add(&r); err != nil {
				t.Fatal(err)
			}
		}
		var got []string
		for _, r := range sortedRows(t, s) {
			got = append(got, r.Chain+"/"+itoa(r.Seq))
		}
		if limit < 1<<20 && len(s.runs) == 0 {
			t.Errorf("limit %d: nothing spilled", limit)
		}
		s.close()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("limit %d: order %q, want %q", limit, got, want)
		}
	}
}

// TestRowSorterKeepsDuplicates checks that rows sharing a chain and seq
// (a store chainRuns then refuses) all come back, in the order they were
// added, across spilled runs and memory.
func TestRowSorterKeepsDuplicates(t *testing.T) {
	ids := []string{"x1", "x2", "y", "x3", "z", "x4"}
	seqs := []uint64{1, 1, 2, 1, 3, 1}
	for _, limit := range []int{1 << 20, 0, 500} {
		s := newRowSorter(limit)
		for i, id := range ids {
			r := trail.Row{Chain: "a", Seq: seqs[i], Event: event.Event{ID: id, Raw: make([]byte, 100)}}
			if err := s.add(&r); err != nil {
				t.Fatal(err)
			}
		}
		var got []string
		for _, r := range sortedRows(t, s) {
			got = append(got, r.Event.ID)
		}
		s.close()
		if want := []string{"x1", "x2", "x3", "x4", "y", "z"}; !reflect.DeepEqual(got, want) {
			t.Errorf("limit %d: %q, want %q", limit, got, want)
		}
	}
}

// sortedRows sorts s and reads its rows back in order.
func sortedRows(t *testing.T, s *rowSorter) []trail.Row {
	t.Helper()
	if err := s.sort(); err != nil {
		t.Fatal(err)
	}
	var rows []trail.Row
	rd := s.reader()
	for i := range s.refs {
		b, err := rd.read(i, make([]byte, s.refs[i].n))
		if err != nil {
			t.Fatal(err)
		}
		var r trail.Row
		if err := decodeRow(b, &r); err != nil {
			t.Fatal(err)
		}
		rows = append(rows, r)
	}
	return rows
}

func itoa(v uint64) string {
	if v == 0 {
		return "0"
	}
	var b []byte
	for ; v > 0; v /= 10 {
		b = append([]byte{byte('0' + v%10)}, b...)
	}
	return string(b)
}
