package storage_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/custody-audit/custody/internal/chdbtest"
	"github.com/custody-audit/custody/storage"
	"github.com/custody-audit/custody/storage/engine"
)

// TestClockStampsLogAndMigrations: the injected clocks (SchemaOptions.Now,
// Options.Now) stamp applied migrations and custody log entries.
func TestClockStampsLogAndMigrations(t *testing.T) {
	ctx := context.Background()
	eng := chdbtest.Open(t, "")
	at := time.Date(2031, 2, 3, 4, 5, 6, 789000, time.UTC)
	clock := func() time.Time { return at }
	if _, err := storage.Migrate(ctx, eng, storage.SchemaOptions{Now: clock}, "test"); err != nil {
		t.Fatal(err)
	}
	st, err := storage.Open(ctx, eng, storage.Options{Actor: "test", Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Log(ctx, "test.clock", "stamped by the injected clock", "ok"); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		"SELECT count(), countIf(toUnixTimestamp64Micro(applied_at) = {at:Int64}) FROM custody.schema_migrations",
		"SELECT count(), countIf(toUnixTimestamp64Micro(at) = {at:Int64}) FROM custody.custody_log",
	} {
		var n, stamped uint64
		if err := engine.Each(ctx, eng, q, engine.Params{"at": strconv.FormatInt(at.UnixMicro(), 10)}, func(r engine.Rows) error { return r.Scan(&n, &stamped) }); err != nil {
			t.Fatal(err)
		}
		if n == 0 || stamped != n {
			t.Errorf("%s: %d of %d rows stamped by the clock", q, stamped, n)
		}
	}
}
