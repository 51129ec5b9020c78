// Package incidenttest loads the demo incident (deploy/local/incident,
// told in docs/incident.md) into a store for tests, as the collector
// would: every delivered file normalized with the default policy and
// appended as a chain of its own.
package incidenttest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/custody-audit/custody/internal/chdbtest"
	"github.com/custody-audit/custody/normalize"
	"github.com/custody-audit/custody/storage"
)

// Received is when the tests say the incident's records arrived.
func Received() time.Time { return time.Date(2025, 6, 12, 16, 0, 0, 0, time.UTC) }

// Options choose what Load stores and under which chains.
type Options struct {
	// Prefix starts every chain name; the file's path under the incident
	// directory follows it.
	Prefix string
	// Only, when not empty, loads only the files under this top directory
	// (archive, eventhubs or loganalytics): one delivery path.
	Only string
}

// Load normalizes each delivered file of the incident and appends it as
// the chain opts.Prefix + its path. It returns the events stored.
func Load(ctx context.Context, t testing.TB, st *storage.Store, opts Options) int {
	t.Helper()
	dir := filepath.Join(chdbtest.RepoRoot(t), "deploy", "local", "incident")
	n, err := normalize.New(normalize.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	stored := 0
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		top, _, _ := strings.Cut(rel, "/")
		if opts.Only != "" && top != opts.Only {
			return nil
		}
		var format, kind string
		perLine := true
		switch {
		case top == "archive" && d.Name() == "PT1H.json":
			format, kind = normalize.FormatArchive, "blob"
		case top == "eventhubs" && strings.HasSuffix(rel, ".jsonl"):
			format, kind = normalize.FormatEventHubs, "eventhubs"
		case top == "loganalytics" && strings.HasSuffix(rel, ".json"):
			format, kind, perLine = normalize.FormatLogAnalytics, "loganalytics", false
		default:
			return nil
		}
		msgs, err := messages(p, perLine)
		if err != nil {
			return err
		}
		b := storage.Batch{Stream: opts.Prefix + rel, Offset: int64(len(msgs)), Position: rel}
		for i, m := range msgs {
			off := int64(i + 1)
			res, err := n.Process(ctx, normalize.Input{Body: m, Format: format, SourceKind: kind,
				Position: rel + " line " + strconv.FormatInt(off, 10), Received: Received()})
			if err != nil {
				return fmt.Errorf("normalize %s line %d: %w", rel, off, err)
			}
			for _, e := range res.Events {
				b.Events = append(b.Events, storage.BatchEvent{Offset: off, Event: e})
			}
			for _, q := range res.Quarantined {
				b.Quarantined = append(b.Quarantined, storage.QuarantineRecord{Offset: off, Position: q.Position,
					Received: Received(), Format: q.Format, Reason: q.Reason, Raw: q.Raw})
			}
			for _, c := range res.Dropped {
				b.Dropped += c
			}
		}
		res, err := st.Append(ctx, b)
		stored += res.Stored
		return err
	})
	if err != nil {
		t.Fatalf("load incident into %s: %v", opts.Prefix, err)
	}
	return stored
}

// messages reads one file as the messages it was delivered in: one per
// line, or the whole file.
func messages(path string, perLine bool) ([][]byte, error) {
	body, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if !perLine {
		return [][]byte{body}, nil
	}
	var msgs [][]byte
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 0, 1<<20), 16<<20)
	for sc.Scan() {
		msgs = append(msgs, slices.Clone(sc.Bytes()))
	}
	return msgs, sc.Err()
}
