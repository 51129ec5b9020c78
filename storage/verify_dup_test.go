package storage_test

import (
	"testing"

	"github.com/custody-audit/custody/storage"
)

// TestDuplicatesAsRanges: rows stored twice are reported as ranges of
// consecutive sequence numbers, one finding per range, as gaps are.
func TestDuplicatesAsRanges(t *testing.T) {
	f := newFixture(t)
	appendN(t, f.store, "eh/p0", 1, 30)
	exec(t, f, "INSERT INTO custody.events SELECT * FROM custody.events WHERE chain = 'eh/p0' AND (seq BETWEEN 3 AND 8 OR seq = 12 OR seq BETWEEN 20 AND 21)")
	exec(t, f, "INSERT INTO custody.events SELECT * FROM custody.events WHERE chain = 'eh/p0' AND seq = 5 LIMIT 1")
	rep := f.verify(t)
	var got []storage.Finding
	for _, fd := range rep.Findings {
		if fd.Kind == storage.KindDuplicate {
			got = append(got, fd)
		}
	}
	want := []struct{ seq, through uint64 }{{3, 8}, {12, 0}, {20, 21}}
	if len(got) != len(want) {
		t.Fatalf("duplicate findings: %v", got)
	}
	for i, w := range want {
		if got[i].Seq != w.seq || got[i].Through != w.through || got[i].EventID == "" {
			t.Errorf("finding %d: %+v, want seq %d through %d", i, got[i], w.seq, w.through)
		}
	}
	if s := got[0].String(); s != "duplicate: chain eh/p0 seq 3..8 event audit-0003: rows 3..8 are each stored more than once" {
		t.Errorf("text: %q", s)
	}
}
