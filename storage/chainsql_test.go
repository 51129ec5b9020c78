package storage_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/custody-audit/custody/event"
	"github.com/custody-audit/custody/storage"
)

// TestSQLHashMatchesGo stores rows that stress every encoding (lengths
// across uvarint byte boundaries, binary bytes, empty and full lists and
// maps, negative numbers, missing times) and checks that the engine's
// EventHashSQL equals the Go hash of every one.
func TestSQLHashMatchesGo(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	var events []storage.BatchEvent
	add := func(mut func(e *event.Event)) {
		e := sampleEvent(len(events) + 1)
		mut(&e)
		events = append(events, storage.BatchEvent{Offset: int64(len(events) + 1), Event: e})
	}
	add(func(e *event.Event) {})
	add(func(e *event.Event) { e.Raw = []byte(strings.Repeat("x", 127)) })
	add(func(e *event.Event) { e.Raw = []byte(strings.Repeat("y", 128)) })
	add(func(e *event.Event) { e.Raw = []byte(strings.Repeat("z", 16384)) })
	add(func(e *event.Event) { e.Raw = []byte(strings.Repeat("w", 2097153)) })
	add(func(e *event.Event) { e.Raw = []byte{0, 1, 2, 0xff, '\t', '\n', '\\', '\''} })
	add(func(e *event.Event) { e.Tags, e.Actor.Groups, e.Attributes = nil, []string{}, nil })
	add(func(e *event.Event) {
		e.Attributes = map[string]string{"z": "1", "a": "2", "m\x00": "é", "": ""}
		e.Actor.Groups = []string{"", "ü", strings.Repeat("g", 300)}
	})
	add(func(e *event.Event) { e.StatusCode = -1; e.Time = time.Time{}; e.ReceivedTime = time.Time{} })
	add(func(e *event.Event) { e.UserAgent = "日本語 🚀"; e.Reason = strings.Repeat("r", 20000) })
	if _, err := f.store.Append(ctx, storage.Batch{Stream: "sql/hash", Events: events, Offset: int64(len(events))}); err != nil {
		t.Fatal(err)
	}
	rows, err := f.eng.Query(ctx, "SELECT seq, hash, "+storage.EventHashSQL()+" FROM custody.events ORDER BY seq", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var seq uint64
		var stored, computed [32]byte
		if err := rows.Scan(&seq, &stored, &computed); err != nil {
			t.Fatal(err)
		}
		n++
		if stored != computed {
			t.Errorf("seq %d: engine hash %x, Go hash %x", seq, computed[:8], stored[:8])
		}
	}
	if n != len(events) {
		t.Fatalf("%d rows, want %d", n, len(events))
	}
	if rep := f.verify(t); !rep.OK() {
		t.Fatalf("verify: %v", rep.Findings)
	}
}
