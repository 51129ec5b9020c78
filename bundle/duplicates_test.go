package bundle_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/custody-audit/custody/bundle"
	"github.com/custody-audit/custody/bundle/export"
	"github.com/custody-audit/custody/internal/storetest"
	"github.com/custody-audit/custody/queries/querytest"
)

// TestExportMarksDuplicates exports the deliveries fixture (five events,
// each through an archive, Event Hubs and Log Analytics, and an altered
// Event Hubs copy of one): the bundle keeps all 16 rows, states 5 events
// and lists the 11 repeated rows, each pointing at its first copy; verify
// recomputes the marks and catches a tampered one; a version 1 bundle,
// without marks, still verifies.
func TestExportMarksDuplicates(t *testing.T) { storetest.Run(t, testExportMarksDuplicates) }

func testExportMarksDuplicates(t *testing.T, b storetest.Backend) {
	fx, stats := querytest.OpenDeliveriesOn(t, b)
	from := time.Date(2025, 5, 6, 0, 0, 0, 0, time.UTC)
	export1 := func(t *testing.T, format string) string {
		t.Helper()
		dir := filepath.Join(t.TempDir(), "bundle")
		_, err := export.Export(context.Background(), export.Options{
			Engine: fx.Eng,
			From:   from,
			To:     from.Add(24 * time.Hour),
			Output: bundle.Output{Format: format, Dir: dir, Signer: fx.Signer, Verifier: fx.Verifier, Actor: "auditor@test"},
		})
		if err != nil {
			t.Fatalf("export: %v", err)
		}
		return dir
	}

	// The first copy of every event is in the archive chain, the
	// lexically first; the queries show that copy too.
	arch := querytest.DeliveryArchiveChain
	ids := []string{"5b0e9c7e-2f7b-4a53-9d0e-7f1a0c2b9e11", "3f2c1d0e-aaaa-4bbb-8ccc-000000000103/push",
		"3f2c1d0e-aaaa-4bbb-8ccc-000000000104/delete", "3f2c1d0e-aaaa-4bbb-8ccc-000000000105/untag", "arm:afcfb71cccb4ecff0bc9d962872b1069"}
	first := map[string]uint64{}
	for i, id := range ids {
		first[id] = uint64(i + 1)
	}
	la := func(table string) string { return "loganalytics/" + querytest.DeliveryWorkspace + "/" + table }
	type at struct {
		chain string
		seq   uint64
		id    string
	}
	repeats := []at{
		{querytest.DeliveryEventHubsChain, 1, ids[0]}, {querytest.DeliveryEventHubsChain, 2, ids[1]},
		{querytest.DeliveryEventHubsChain, 3, ids[2]}, {querytest.DeliveryEventHubsChain, 4, ids[3]},
		{querytest.DeliveryEventHubsChain, 5, ids[4]},
		{querytest.DeliveryConflictChain, 1, ids[1]},
		{la("AKSAudit"), 1, ids[0]},
		{la("AzureActivity"), 1, ids[4]},
		{la("ContainerRegistryRepositoryEvents"), 1, ids[1]}, {la("ContainerRegistryRepositoryEvents"), 2, ids[2]},
		{la("ContainerRegistryRepositoryEvents"), 3, ids[3]},
	}
	var want strings.Builder
	for _, r := range repeats {
		fmt.Fprintf(&want, `{"event_id":%q,"chain":%q,"seq":%d,"first_chain":%q,"first_seq":%d}`+"\n", r.id, r.chain, r.seq, arch, first[r.id])
	}

	for _, format := range []string{bundle.FormatJSONL, bundle.FormatParquet} {
		t.Run(format, func(t *testing.T) {
			dir := export1(t, format)
			rep := verify(t, dir, fx.Verifier)
			if !rep.OK() {
				t.Fatalf("clean bundle fails: %v", rep.Findings)
			}
			m := readManifest(t, dir)
			if m.Version != 2 || m.Rows != uint64(stats.Total()) || m.Rows != 16 || m.Events == nil || *m.Events != 5 ||
				m.Duplicates == nil || m.Duplicates.Rows != 11 || m.Duplicates.Name != bundle.DuplicatesFile {
				t.Fatalf("manifest: version %d, rows %d, events %v, duplicates %+v", m.Version, m.Rows, m.Events, m.Duplicates)
			}
			if got := string(readFile(t, dir, bundle.DuplicatesFile)); got != want.String() {
				t.Errorf("duplicates.jsonl:\n%s\nwant:\n%s", got, want.String())
			}
		})
	}

	dir := export1(t, bundle.FormatJSONL)
	dupLines := strings.SplitAfter(string(readFile(t, dir, bundle.DuplicatesFile)), "\n")
	dupLines = dupLines[:len(dupLines)-1]
	tamper := []struct {
		name  string
		edit  func(t *testing.T, dir string)
		kinds []bundle.FindingKind
	}{
		{"a mark removed", func(t *testing.T, dir string) {
			writeFile(t, dir, bundle.DuplicatesFile, []byte(strings.Join(slices.Delete(slices.Clone(dupLines), 5, 6), "")))
		}, []bundle.FindingKind{bundle.KindFileAltered, bundle.KindDuplicates}},
		{"a mark pointing at another first copy", func(t *testing.T, dir string) {
			l := slices.Clone(dupLines)
			l[0] = strings.Replace(l[0], `"first_seq":1`, `"first_seq":2`, 1)
			writeFile(t, dir, bundle.DuplicatesFile, []byte(strings.Join(l, "")))
		}, []bundle.FindingKind{bundle.KindFileAltered, bundle.KindDuplicates}},
		{"a first copy marked as a duplicate", func(t *testing.T, dir string) {
			extra := fmt.Sprintf(`{"event_id":%q,"chain":%q,"seq":1,"first_chain":%q,"first_seq":1}`+"\n", ids[0], arch, arch)
			writeFile(t, dir, bundle.DuplicatesFile, []byte(extra+strings.Join(dupLines, "")))
		}, []bundle.FindingKind{bundle.KindFileAltered, bundle.KindDuplicates}},
		{"the marks deleted", func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, bundle.DuplicatesFile)); err != nil {
				t.Fatal(err)
			}
		}, []bundle.FindingKind{bundle.KindFileMissing}},
		{"the marks and the event count rewritten, the manifest re-signed with another key", func(t *testing.T, dir string) {
			writeFile(t, dir, bundle.DuplicatesFile, nil)
			rewriteManifest(t, dir, nil, func(m map[string]any) {
				m["events"] = 16
				m["duplicates"] = map[string]any{"name": bundle.DuplicatesFile, "sha256": hex.EncodeToString(sha(nil)), "bytes": 0, "rows": 0}
			})
		}, []bundle.FindingKind{bundle.KindBadSignature, bundle.KindDuplicates}},
	}
	for _, tc := range tamper {
		t.Run(tc.name, func(t *testing.T) {
			c := copyDir(t, dir)
			tc.edit(t, c)
			rep := verify(t, c, fx.Verifier)
			var kinds []bundle.FindingKind
			for _, f := range rep.Findings {
				if !slices.Contains(kinds, f.Kind) {
					kinds = append(kinds, f.Kind)
				}
			}
			if rep.OK() || !slices.Equal(kinds, tc.kinds) {
				t.Errorf("finding kinds %v, want %v: %v", kinds, tc.kinds, rep.Findings)
			}
		})
	}

	t.Run("a version 1 bundle still verifies", func(t *testing.T) {
		c := copyDir(t, dir)
		if err := os.Remove(filepath.Join(c, bundle.DuplicatesFile)); err != nil {
			t.Fatal(err)
		}
		rewriteManifest(t, c, fx.Signer, func(m map[string]any) {
			m["version"] = 1
			delete(m, "events")
			delete(m, "duplicates")
		})
		if rep := verify(t, c, fx.Verifier); !rep.OK() || rep.Rows != 16 {
			t.Fatalf("version 1 bundle: rows %d, findings %v", rep.Rows, rep.Findings)
		}
		// Version 1 has no marks: a duplicates file is not part of it.
		writeFile(t, c, bundle.DuplicatesFile, readFile(t, dir, bundle.DuplicatesFile))
		rep := verify(t, c, fx.Verifier)
		if len(rep.Findings) != 1 || rep.Findings[0].Kind != bundle.KindFileAdded {
			t.Errorf("version 1 bundle with a duplicates file: %v", rep.Findings)
		}
	})
}

func sha(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

// rewriteManifest edits manifest.json and signs it again with signer, or
// with a key the store never had when signer is nil.
func rewriteManifest(t *testing.T, dir string, signer note.Signer, edit func(map[string]any)) {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(readFile(t, dir, bundle.ManifestFile), &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	b = append(b, '\n')
	if signer == nil {
		signer, _ = keyPair(t, "custody-test")
	}
	sig, err := note.Sign(&note.Note{Text: "custody-export/v1\nsha256 " + hex.EncodeToString(sha(b)) + "\n"}, signer)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, bundle.ManifestFile, b)
	writeFile(t, dir, bundle.SignatureFile, sig)
}
