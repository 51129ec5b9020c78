package main

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// TestCommittedDatasetIsCurrent fails when the committed dataset differs
// from what the generator writes: edit gen/main.go, then run
// `go run ./deploy/local/incident/gen` and commit both.
func TestCommittedDatasetIsCurrent(t *testing.T) {
	files, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	dir := defaultDir()
	want := map[string][]byte{}
	for _, f := range files {
		want[f.Path] = f.Body
	}
	var committed []string
	for _, sub := range []string{DirArchive, DirEventHubs, DirLogAnalytics} {
		err := filepath.WalkDir(filepath.Join(dir, sub), func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			rel, err := filepath.Rel(dir, p)
			if err != nil {
				return err
			}
			committed = append(committed, filepath.ToSlash(rel))
			return nil
		})
		if err != nil {
			t.Fatalf("list committed dataset: %v", err)
		}
	}
	sort.Strings(committed)
	for _, p := range committed {
		body, ok := want[p]
		if !ok {
			t.Errorf("%s is committed but not generated", p)
			continue
		}
		got, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(p)))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, body) {
			t.Errorf("%s differs from the generator's output (go run ./deploy/local/incident/gen)", p)
		}
		delete(want, p)
	}
	for p := range want {
		t.Errorf("%s is generated but not committed", p)
	}
}

// TestGenerateIsDeterministic guards the promise that the same program
// writes the same bytes: no clock, no map order, no unseeded randomness.
func TestGenerateIsDeterministic(t *testing.T) {
	a, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	b, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != len(b) {
		t.Fatalf("%d files, then %d", len(a), len(b))
	}
	for i := range a {
		if a[i].Path != b[i].Path || !bytes.Equal(a[i].Body, b[i].Body) {
			t.Fatalf("file %d (%s) differs between two runs", i, a[i].Path)
		}
	}
}

// TestRecordsStayInsideTheDay checks the fixed-day promise and that every
// record is one JSON line, on every delivery path.
func TestRecordsStayInsideTheDay(t *testing.T) {
	files, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	day := Day.Format("2006-01-02T")
	for _, f := range files {
		if !bytes.HasSuffix(f.Body, []byte("\n")) {
			t.Errorf("%s does not end with a newline", f.Path)
		}
		for i, line := range strings.Split(strings.TrimSuffix(string(f.Body), "\n"), "\n") {
			if !strings.HasPrefix(line, "{") || !strings.HasSuffix(line, "}") {
				t.Errorf("%s line %d is not one JSON object", f.Path, i+1)
			}
			if !strings.Contains(line, day) {
				t.Errorf("%s line %d has no timestamp on %s", f.Path, i+1, day)
			}
		}
	}
}
