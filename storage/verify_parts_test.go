package storage_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/custody-audit/custody/internal/chdbtest"
	"github.com/custody-audit/custody/internal/storetest"
	"github.com/custody-audit/custody/storage"
	"github.com/custody-audit/custody/storage/engine"
)

// TestCorruptPartsAreFindings flips bytes in real part files of an
// embedded store (engine stopped, file changed, engine reopened): verify
// reports each bad part as a finding, with the chain and sequence numbers
// it held, instead of stopping with the engine's error, and checks the
// rest.
func TestCorruptPartsAreFindings(t *testing.T) {
	cases := []struct {
		name  string
		wide  bool   // events parts with a file per column
		table string // whose part
		file  string
		zero  bool // zero the file instead of flipping a byte
		chain string
	}{
		{"compact part data.bin", false, "events", "data.bin", false, "eh/p0"},
		{"wide part raw.bin", true, "events", "raw.bin", false, "eh/p0"},
		{"wide part hash.bin", true, "events", "hash.bin", false, "eh/p0"},
		{"zeroed minmax index", false, "events", "minmax_received_time.idx", true, "eh/p0"},
		{"checkpoints part", false, "checkpoints", "data.bin", false, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			eng := chdbtest.Open(t, dir)
			if _, err := storage.Migrate(ctx, eng, storage.SchemaOptions{}, "test"); err != nil {
				t.Fatal(err)
			}
			if tc.wide {
				if err := eng.Exec(ctx, "ALTER TABLE custody.events MODIFY SETTING min_bytes_for_wide_part = 0", nil); err != nil {
					t.Fatal(err)
				}
			}
			signer, verifier := storetest.Keys(t, "test")
			cpDir := t.TempDir()
			st, err := storage.Open(ctx, eng, storage.Options{Signer: signer, CheckpointDir: cpDir})
			if err != nil {
				t.Fatal(err)
			}
			appendN(t, st, "eh/p0", 1, 10)
			appendN(t, st, "eh/p0", 11, 25)
			appendN(t, st, "eh/p1", 1, 5)
			// the part of the second batch
			var part, path string
			q := "SELECT name, path FROM system.parts WHERE active AND database = 'custody' AND table = {table:String} ORDER BY name LIMIT 1 OFFSET 1"
			if err := engine.Each(ctx, eng, q, engine.Params{"table": tc.table}, func(r engine.Rows) error { return r.Scan(&part, &path) }); err != nil || path == "" {
				t.Fatalf("find part: %q %v", path, err)
			}
			if err := eng.Close(ctx); err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(path, tc.file)
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if tc.zero {
				clear(b)
			} else {
				b[len(b)/2] ^= 0xff
			}
			if err := os.WriteFile(file, b, 0o640); err != nil {
				t.Fatal(err)
			}

			eng = chdbtest.Open(t, dir)
			st, err = storage.Open(ctx, eng, storage.Options{CheckpointDir: cpDir})
			if err != nil {
				t.Fatal(err)
			}
			rep, err := st.Verify(ctx, storage.VerifyOptions{Verifier: verifier, CheckpointDir: cpDir})
			if err != nil {
				t.Fatalf("verify stopped: %v", err)
			}
			if rep.OK() {
				t.Fatalf("verify OK with a corrupt part: %v", rep.Findings)
			}
			var corrupt []storage.Finding
			for _, f := range rep.Findings {
				if f.Kind == storage.KindCorruptPart {
					corrupt = append(corrupt, f)
				}
				if f.Chain == "eh/p1" {
					t.Errorf("finding about the intact chain: %v", f)
				}
			}
			if len(corrupt) != 1 || corrupt[0].Part != part || corrupt[0].Chain != tc.chain || !strings.Contains(corrupt[0].Detail, "heck") {
				t.Fatalf("want one corrupt_part finding for %s (chain %q), got %v", part, tc.chain, rep.Findings)
			}
			if tc.table == "events" {
				if corrupt[0].Seq != 11 || corrupt[0].Through != 25 {
					t.Errorf("corrupt part's rows: %v", corrupt[0])
				}
				// its rows are missing from the rest of the check
				if !hasKind(rep, storage.KindTruncated, 11) {
					t.Errorf("want the part's rows (the chain's last) missing from 11: %v", rep.Findings)
				}
			}
			// the intact chain was checked: its rows are counted
			if rep.Chains != 2 {
				t.Errorf("chains = %d", rep.Chains)
			}
		})
	}
}
