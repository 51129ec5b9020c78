package trail_test

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/custody-audit/custody/event"
	"github.com/custody-audit/custody/storage/trail"
)

// TestHasherReuse hashes rows with one Hasher, whose attribute maps share
// a size but not their keys (the Hasher keeps the sorted keys of the last
// map of each size), have more keys than the insertion sort takes, or
// none: every hash must equal a fresh Hasher's; HashPartsAttrs, appending
// each row's attributes after the rows before, must give the same hash and
// the map's entries sorted by key.
func TestHasherReuse(t *testing.T) {
	attrs := func(keys ...string) map[string]string {
		m := map[string]string{}
		for _, k := range keys {
			m[k] = "v-" + k
		}
		return m
	}
	many := func(n int) map[string]string {
		m := map[string]string{}
		for i := range n {
			k := fmt.Sprintf("k%03d", (i*37)%n)
			m[k] = strings.Repeat("x", i)
		}
		return m
	}
	maps := []map[string]string{
		attrs("b", "a", "c"),
		attrs("b", "a", "c"),
		attrs("b", "a", "d"), // same size, one key differs
		attrs("x", "y", "z"),
		attrs("a", "b", "c"),
		nil,
		attrs("k8s.stage", "k8s.level", "aks.pod", "id_source", "k8s.request_uri"),
		many(20),
		many(40), // more than the Hasher keeps key sets for
		many(20),
		attrs("", "a"),
	}
	var h, g trail.Hasher
	var group []trail.Pair // every row's attributes, as the append path gathers them
	for i, m := range maps {
		r := trail.Row{Chain: "c", Seq: uint64(i + 1), Offset: int64(i), Event: event.Event{ID: fmt.Sprint(i), Attributes: m, Raw: []byte(strings.Repeat("r", i*100))}}
		if got, want := h.Hash(&r), trail.EventHash(&r); got != want {
			t.Errorf("row %d: reused Hasher gave %x, a fresh one %x", i, got, want)
		}
		want := trail.SortPairs(nil, m)
		base := len(group)
		var sum trail.Hash
		sum, group = g.HashPartsAttrs(group, r.Chain, r.Seq, r.Offset, &r.PrevHash, &r.Event, r.Event.Time, r.Event.ReceivedTime, nil)
		if sum != trail.EventHash(&r) || !slices.Equal(group[base:], want) {
			t.Errorf("row %d: HashPartsAttrs gave %x and %v, want %x and %v", i, sum, group[base:], trail.EventHash(&r), want)
		}
		if !slices.IsSortedFunc(want, func(a, b trail.Pair) int { return strings.Compare(a.Key, b.Key) }) || len(want) != len(m) {
			t.Fatalf("row %d: SortPairs gave %v", i, want)
		}
	}
	var all []trail.Pair
	for _, m := range maps {
		all = trail.SortPairs(all, m)
	}
	if !slices.Equal(group, all) {
		t.Errorf("HashPartsAttrs's list after every row: %v, want %v", group, all)
	}
}

// TestHasherKeySetsAlternate: rows whose attribute maps have the same size
// but different keys, alternating as event kinds do in a mixed stream,
// each find their sorted keys kept (no sort, no allocation) once seen.
func TestHasherKeySetsAlternate(t *testing.T) {
	kinds := []map[string]string{
		{"k8s.stage": "a", "k8s.level": "b", "aks.pod": "c"},
		{"arm.operation": "a", "arm.status": "b", "eventDataId": "c"},
		{"acr.repository": "a", "acr.tag": "b", "acr.digest": "c"},
	}
	rows := make([]trail.Row, len(kinds))
	for i, m := range kinds {
		rows[i] = trail.Row{Chain: "c", Seq: 1, Event: event.Event{ID: "x", Attributes: m}}
	}
	want := make([][]trail.Pair, len(kinds))
	var h trail.Hasher
	var got []trail.Pair
	hash := func(r *trail.Row) {
		_, got = h.HashPartsAttrs(got[:0], r.Chain, r.Seq, r.Offset, &r.PrevHash, &r.Event, r.Event.Time, r.Event.ReceivedTime, nil)
	}
	for i := range rows {
		want[i] = trail.SortPairs(nil, kinds[i])
		hash(&rows[i])
	}
	allocs := testing.AllocsPerRun(20, func() {
		for i := range rows {
			hash(&rows[i])
			if !slices.Equal(got, want[i]) {
				t.Fatalf("kind %d: sorted attributes %v, want %v", i, got, want[i])
			}
		}
	})
	if allocs > 0 {
		t.Errorf("%.0f allocations per round of %d kinds: the Hasher re-sorted and cloned keys", allocs, len(kinds))
	}
}

// TestAppendIPText holds the address text the append path writes into its
// buffers to IPText, the stored and hashed form.
func TestAppendIPText(t *testing.T) {
	for _, a := range []netip.Addr{{}, netip.MustParseAddr("203.0.113.7"), netip.MustParseAddr("0.0.0.0"),
		netip.MustParseAddr("2001:db8::7"), netip.MustParseAddr("::ffff:203.0.113.7"), netip.MustParseAddr("fe80::1%eth0"),
		netip.MustParseAddr("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"), netip.IPv6Unspecified()} {
		if got, want := string(trail.AppendIPText([]byte("x"), a)), "x"+trail.IPText(a); got != want {
			t.Errorf("AppendIPText(%#v) = %q, want %q", a, got, want)
		}
	}
}
