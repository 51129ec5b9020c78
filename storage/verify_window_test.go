package storage_test

import (
	"context"
	"testing"
	"time"

	"github.com/custody-audit/custody/storage"
)

// TestVerifyWindow checks that From/To limit the content check, and only
// it: a row changed inside the window is reported, one changed outside is
// not, and the chain is still walked whole. The engine and the independent
// check agree.
func TestVerifyWindow(t *testing.T) {
	f := newFixture(t)
	appendN(t, f.store, "w", 1, 20)
	// sampleEvent(i) happens at 10:00:i.123: the window holds rows 5..9
	from := time.Date(2026, 11, 27, 10, 0, 5, 0, time.UTC)
	to := time.Date(2026, 11, 27, 10, 0, 10, 0, time.UTC)
	exec(t, f, "ALTER TABLE custody.events UPDATE reason = 'edited' WHERE chain = 'w' AND seq IN (7, 15) SETTINGS mutations_sync = 2")
	exec(t, f, "ALTER TABLE custody.events DELETE WHERE chain = 'w' AND seq = 18 SETTINGS mutations_sync = 2")
	for _, independent := range []bool{false, true} {
		rep, err := f.store.Verify(context.Background(), storage.VerifyOptions{Verifier: f.verifier, CheckpointDir: f.cpDir, From: from, To: to, Independent: independent})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Rows != 5 {
			t.Errorf("independent=%v: %d rows checked, want the 5 in the window", independent, rep.Rows)
		}
		var modified, gaps []uint64
		for _, fd := range rep.Findings {
			switch fd.Kind {
			case storage.KindModified:
				modified = append(modified, fd.Seq)
				if fd.EventID != "audit-0007" {
					t.Errorf("independent=%v: modified row named %q, want audit-0007", independent, fd.EventID)
				}
			case storage.KindGap:
				gaps = append(gaps, fd.Seq)
			}
		}
		if len(modified) != 1 || modified[0] != 7 {
			t.Errorf("independent=%v: modified rows %v, want [7]", independent, modified)
		}
		if len(gaps) != 1 || gaps[0] != 18 {
			t.Errorf("independent=%v: gaps %v, want [18] (links are walked outside the window)", independent, gaps)
		}
	}
}
