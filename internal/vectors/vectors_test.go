package vectors_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/custody-audit/custody/internal/chdbtest"
	"github.com/custody-audit/custody/internal/vectors"
)

// TestVectorsReproduce runs the generator in memory on a real engine and
// compares every file with the committed testdata/vectors byte for byte:
// the vectors are deterministic, and the committed ones are what today's
// code writes (a store or bundle written by it keeps verifying). The
// generator itself checks that every corrupted bundle fails as declared.
func TestVectorsReproduce(t *testing.T) {
	ctx := context.Background()
	got, err := vectors.Generate(ctx, chdbtest.Open(t, ""))
	if err != nil {
		t.Fatal(err)
	}
	dir := vectors.Dir(chdbtest.RepoRoot(t))
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var committed []string
	for _, e := range entries {
		if filepath.Ext(e.Name()) == ".json" {
			committed = append(committed, e.Name())
		}
	}
	var names []string
	for n := range got {
		names = append(names, n)
	}
	slices.Sort(names)
	if !slices.Equal(names, committed) {
		t.Fatalf("the generator writes %q, testdata/vectors holds %q", names, committed)
	}
	for _, n := range names {
		want, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got[n], want) {
			t.Errorf("%s: the generator's output differs from the committed file (go run ./internal/vectors/vectorgen; only for a new format version)", n)
		}
	}
}
