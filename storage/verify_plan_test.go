package storage

import (
	"context"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/custody-audit/custody/event"
	"github.com/custody-audit/custody/internal/chdbtest"
)

// TestPlanWalk cuts chains into windows of about max rows: small chains
// together, a big one alone in slices of max sequence numbers, the last
// slice open-ended.
func TestPlanWalk(t *testing.T) {
	const all = math.MaxUint64
	cases := []struct {
		desc  string
		spans []chainSpan
		max   uint64
		want  []walkWindow
	}{
		{desc: "no chains", max: 10},
		{desc: "small chains share windows", max: 10, spans: []chainSpan{
			{"a", 4, 1, 4}, {"b", 6, 1, 6}, {"c", 1, 1, 1}, {"d", 10, 1, 10},
		}, want: []walkWindow{{"a", "b", 0, all}, {"c", "c", 0, all}, {"d", "d", 0, all}}},
		{desc: "a big chain in slices", max: 10, spans: []chainSpan{
			{"a", 3, 1, 3}, {"b", 25, 1, 25}, {"c", 2, 1, 2},
		}, want: []walkWindow{{"a", "a", 0, all}, {"b", "b", 0, 10}, {"b", "b", 11, 20}, {"b", "b", 21, all}, {"c", "c", 0, all}}},
		{desc: "a big chain starting after a purge", max: 100, spans: []chainSpan{
			{"p", 150, 1001, 1150},
		}, want: []walkWindow{{"p", "p", 0, 1100}, {"p", "p", 1101, all}}},
		{desc: "the last slice ending on the boundary", max: 10, spans: []chainSpan{
			{"b", 20, 1, 20},
		}, want: []walkWindow{{"b", "b", 0, 10}, {"b", "b", 11, all}}},
	}
	for _, tc := range cases {
		t.Run(tc.desc, func(t *testing.T) {
			if got := planWalk(tc.spans, tc.max); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("windows %v, want %v", got, tc.want)
			}
		})
	}
}

// TestVerifyInWindows verifies a tampered store whose chains are walked in
// many small windows, and finds exactly what one window finds. The event
// times run out of sequence order, so the table's order (by time) is not
// the walk's.
func TestVerifyInWindows(t *testing.T) {
	ctx := context.Background()
	eng := chdbtest.Open(t, "")
	if _, err := Migrate(ctx, eng, SchemaOptions{}, "test"); err != nil {
		t.Fatal(err)
	}
	skey, vkey, err := GenerateKey("windows")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	st, err := Open(ctx, eng, Options{Signer: signer, Actor: "test"})
	if err != nil {
		t.Fatal(err)
	}
	sizes := map[string]int{"a": 2500, "b": 60, "c": 30}
	for c, n := range sizes {
		for off := 0; off < n; off += 1000 {
			b := Batch{Stream: c, Offset: int64(min(off+1000, n))}
			for i := off + 1; i <= min(off+1000, n); i++ {
				at := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC).Add(time.Duration((i*7919)%n) * time.Second)
				b.Events = append(b.Events, BatchEvent{Offset: int64(i), Event: event.Event{ID: fmt.Sprintf("%s-%d", c, i), Time: at, ReceivedTime: at, Service: event.ServiceAKS, Action: "a", Raw: []byte(strconv.Itoa(i))}})
			}
			if _, err := st.Append(ctx, b); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, q := range []string{
		"ALTER TABLE custody.events UPDATE reason = 'edited' WHERE chain = 'a' AND seq IN (700, 1500) SETTINGS mutations_sync = 2",
		"ALTER TABLE custody.events DELETE WHERE chain = 'a' AND seq = 2000 SETTINGS mutations_sync = 2",
		"INSERT INTO custody.events SELECT * FROM custody.events WHERE chain = 'b' AND seq = 10",
		"INSERT INTO custody.events SELECT * REPLACE ('forged' AS event_id, unhex(repeat('ab', 32)) AS hash) FROM custody.events WHERE chain = 'a' AND seq = 1024",
	} {
		if err := eng.Exec(ctx, q, nil); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	opts := VerifyOptions{Verifier: verifier}
	one, err := st.verify(ctx, opts, walkWindowRows)
	if err != nil {
		t.Fatal(err)
	}
	want := map[FindingKind][]string{
		KindModified:  {"a/700 a-700", "a/1024 forged", "a/1500 a-1500"},
		KindGap:       {"a/2000 "},
		KindDuplicate: {"b/10 b-10"},
		KindInserted:  {"a/1024 forged"},
	}
	got := map[FindingKind][]string{}
	for _, f := range one.Findings {
		if f.Failing() {
			got[f.Kind] = append(got[f.Kind], fmt.Sprintf("%s/%d %s", f.Chain, f.Seq, f.EventID))
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("findings %v, want %v", got, want)
	}
	if one.Rows != 2500+60+30+1 {
		t.Errorf("%d rows checked, want all %d", one.Rows, 2500+60+30+1)
	}
	for _, window := range []uint64{50, 1024} {
		many, err := st.verify(ctx, opts, window)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(many.Findings, one.Findings) || many.Rows != one.Rows {
			t.Errorf("windows of %d rows: %d rows, findings\n%v\nwant %d rows,\n%v", window, many.Rows, many.Findings, one.Rows, one.Findings)
		}
	}
}
