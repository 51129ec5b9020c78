package storage_test

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/custody-audit/custody/event"
	"github.com/custody-audit/custody/internal/storetest"
	"github.com/custody-audit/custody/storage"
	"github.com/custody-audit/custody/storage/engine"
)

// TestReadRowsBothReaders stores events with every field set, with every
// field empty, and with times across DateTime64's range (1900, the Unix
// epoch's neighbourhood, after 2262-04-11 where nanoseconds overflow an
// int64, and the last microsecond of 2299), then reads them back through
// the columnar reader (QueryBlocks, what export and verify use) and
// through clickhouse-go (Query): both give every time back exactly and
// agree on every field, and verify recomputes every row's hash in Go from
// the columnar read.
func TestReadRowsBothReaders(t *testing.T) { storetest.Run(t, testReadRowsBothReaders) }

func testReadRowsBothReaders(t *testing.T, b storetest.Backend) {
	f := newFixtureOn(t, b)
	ctx := context.Background()
	times := []time.Time{
		time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(1969, 12, 31, 23, 59, 59, 999999000, time.UTC),
		time.Date(2026, 11, 27, 10, 0, 0, 123456000, time.UTC),
		time.Date(2262, 4, 11, 23, 47, 16, 854775000, time.UTC),
		time.Date(2262, 4, 11, 23, 47, 16, 854776000, time.UTC),
		time.Date(2263, 1, 1, 0, 0, 0, 1000, time.UTC),
		time.Date(2299, 12, 31, 23, 59, 59, 999999000, time.UTC),
	}
	batch := storage.Batch{Stream: "read", Offset: int64(len(times) + 1)}
	for i, ts := range times {
		e := sampleEvent(i + 1)
		e.Time, e.ReceivedTime = ts, times[len(times)-1-i]
		batch.Events = append(batch.Events, storage.BatchEvent{Offset: int64(i + 1), Event: e})
	}
	batch.Events = append(batch.Events, storage.BatchEvent{Offset: int64(len(times) + 1),
		Event: event.Event{ID: "empty", Time: times[0], ReceivedTime: times[len(times)-1]}})
	if _, err := f.store.Append(ctx, batch); err != nil {
		t.Fatal(err)
	}
	q := "SELECT " + storage.EventColumnList() + " FROM custody.events ORDER BY seq"
	read := func(query func(context.Context, string, engine.Params) (engine.Rows, error)) []storage.Row {
		t.Helper()
		rows, err := query(ctx, q, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []storage.Row
		for rows.Next() {
			var r storage.Row
			if err := storage.ScanRow(rows, &r); err != nil {
				t.Fatal(err)
			}
			out = append(out, r)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	blocks, general := read(f.eng.QueryBlocks), read(f.eng.Query)
	if len(blocks) != len(batch.Events) || len(general) != len(batch.Events) {
		t.Fatalf("read %d rows in blocks and %d through Query, stored %d", len(blocks), len(general), len(batch.Events))
	}
	for i, r := range blocks {
		want := batch.Events[i].Event
		if !r.Event.Time.Equal(want.Time) || !r.Event.ReceivedTime.Equal(want.ReceivedTime) || r.Event.Time.Location() != time.UTC {
			t.Errorf("row %d: times %s, %s; stored %s, %s", i, r.Event.Time, r.Event.ReceivedTime, want.Time, want.ReceivedTime)
		}
		if r.Event.ID != want.ID || string(r.Event.Raw) != string(want.Raw) || r.Event.SourceIP != want.SourceIP ||
			fmt.Sprint(r.Event.Attributes) != fmt.Sprint(want.Attributes) || fmt.Sprint(r.Event.Actor.Groups) != fmt.Sprint(want.Actor.Groups) {
			t.Errorf("row %d read as %+v, stored %+v", i, r.Event, want)
		}
		if !reflect.DeepEqual(r, general[i]) {
			t.Errorf("row %d: the readers differ:\nblocks %+v\nQuery  %+v", i, r, general[i])
		}
	}
	if rep := f.verify(t); !rep.OK() || rep.Rows != uint64(len(batch.Events)) {
		t.Fatalf("verify: %+v", rep)
	}
}
