package storage_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/custody-audit/custody/storage"
)

// TestTruncationCannotHide deletes a chain's newest rows together with
// their stored checkpoints (engine level, as an intruder with database
// access would) and then hides the checkpoint file three ways. A
// checkpoint the auditor kept (--since) catches every one; without one,
// verify says no checkpoint outside the store covers the chain.
func TestTruncationCannotHide(t *testing.T) {
	cases := []struct {
		name string
		hide func(t *testing.T, f *fixture, older []byte)
		// what verify says without the kept checkpoint
		wantAlone storage.FindingKind
		// and with it
		wantSince []storage.FindingKind
	}{
		{"roll back the checkpoint file", func(t *testing.T, f *fixture, older []byte) {
			writeFile(t, cpPath(f), older)
		}, "", []storage.FindingKind{storage.KindTruncated, storage.KindInconsistent}},
		{"remove the checkpoint file", func(t *testing.T, f *fixture, _ []byte) {
			if err := os.Remove(cpPath(f)); err != nil {
				t.Fatal(err)
			}
		}, storage.KindNoExternalCheckpoint, []storage.FindingKind{storage.KindTruncated, storage.KindInconsistent}},
		{"empty the checkpoint directory setting", func(t *testing.T, f *fixture, _ []byte) {
			f.cpDir = ""
		}, storage.KindNoExternalCheckpoint, []storage.FindingKind{storage.KindTruncated, storage.KindInconsistent}},
		{"rewrite the trail and sign it again", func(t *testing.T, f *fixture, _ []byte) {
			exec(t, f, "ALTER TABLE custody.events DELETE WHERE chain = 'eh/p0' SETTINGS mutations_sync = 2")
			exec(t, f, "ALTER TABLE custody.checkpoints DELETE WHERE chain = 'eh/p0' SETTINGS mutations_sync = 2")
			exec(t, f, "ALTER TABLE custody.source_positions DELETE WHERE stream = 'eh/p0' SETTINGS mutations_sync = 2")
			st, err := storage.Open(context.Background(), f.eng, storage.Options{Signer: f.signer, CheckpointDir: f.cpDir})
			if err != nil {
				t.Fatal(err)
			}
			appendN(t, st, "eh/p0", 101, 140) // other events, a longer chain
		}, "", []storage.FindingKind{storage.KindRootMismatch, storage.KindInconsistent}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			f := newFixture(t)
			appendN(t, f.store, "eh/p0", 1, 10)
			older := readFile(t, cpPath(f))
			appendN(t, f.store, "eh/p0", 11, 25)
			kept := filepath.Join(t.TempDir(), "kept.checkpoint")
			writeFile(t, kept, readFile(t, cpPath(f)))
			ext, err := storage.ReadExternalCheckpoints([]string{kept})
			if err != nil {
				t.Fatal(err)
			}
			// before: the kept checkpoint is proven consistent
			rep, err := f.store.Verify(ctx, storage.VerifyOptions{Verifier: f.verifier, CheckpointDir: f.cpDir, External: ext})
			if err != nil {
				t.Fatal(err)
			}
			if !rep.OK() || len(rep.Findings) != 0 || len(rep.Consistency) != 1 || !rep.Consistency[0].OK {
				t.Fatalf("before: findings %v, proofs %+v", rep.Findings, rep.Consistency)
			}

			if tc.name != "rewrite the trail and sign it again" {
				exec(t, f, "ALTER TABLE custody.events DELETE WHERE chain = 'eh/p0' AND seq > 10 SETTINGS mutations_sync = 2")
				exec(t, f, "ALTER TABLE custody.checkpoints DELETE WHERE chain = 'eh/p0' AND tree_size > 10 SETTINGS mutations_sync = 2")
			}
			tc.hide(t, f, older)

			alone := f.verify(t)
			if !alone.OK() {
				if tc.wantAlone == "" && tc.name != "rewrite the trail and sign it again" {
					t.Fatalf("without the kept checkpoint: %v", alone.Findings)
				}
			}
			if tc.wantAlone != "" && !hasKind(alone, tc.wantAlone, 0) {
				t.Fatalf("without the kept checkpoint: want %s, got %v", tc.wantAlone, alone.Findings)
			}

			rep, err = f.store.Verify(ctx, storage.VerifyOptions{Verifier: f.verifier, CheckpointDir: f.cpDir, External: ext})
			if err != nil {
				t.Fatal(err)
			}
			if rep.OK() {
				t.Fatalf("with the kept checkpoint: verify OK, findings %v", rep.Findings)
			}
			for _, k := range tc.wantSince {
				if !hasKind(rep, k, 0) {
					t.Errorf("with the kept checkpoint: want a %s finding, got %v", k, rep.Findings)
				}
			}
		})
	}
}

// TestSinceRejectsForeignCheckpoint: a kept checkpoint that does not
// verify with the store's key is a bad signature, not silently skipped.
func TestSinceRejectsForeignCheckpoint(t *testing.T) {
	f := newFixture(t)
	appendN(t, f.store, "eh/p0", 1, 10)
	other := newFixture(t)
	appendN(t, other.store, "eh/p0", 1, 10)
	ext := []storage.ExternalCheckpoint{{Source: "foreign", Note: readFile(t, cpPath(other)), Prove: true}}
	rep, err := f.store.Verify(context.Background(), storage.VerifyOptions{Verifier: f.verifier, CheckpointDir: f.cpDir, External: ext})
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() || !hasKind(rep, storage.KindBadSignature, 0) {
		t.Fatalf("want a bad signature, got %v", rep.Findings)
	}
}

func cpPath(f *fixture) string { return filepath.Join(f.cpDir, "eh%2Fp0.checkpoint") }

func hasKind(rep *storage.VerifyReport, k storage.FindingKind, seq uint64) bool {
	for _, fd := range rep.Findings {
		if fd.Kind == k && (seq == 0 || fd.Seq == seq) {
			return true
		}
	}
	return false
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t *testing.T, p string, b []byte) {
	t.Helper()
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
