package clickhouse_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/custody-audit/custody/storage/engine"
)

// TestQueryBlocks reads the columnar reader's types, parameters and
// errors on a real server, and checks that cancelling a read of an
// endless result, or closing it early, stops the query on the server.
func TestQueryBlocks(t *testing.T) {
	eng := serverEngine(t, "")
	ctx := context.Background()

	t.Run("types", func(t *testing.T) {
		var (
			str, lc, num           string
			fixed                  [32]byte
			u8                     uint8
			u64                    uint64
			i32                    int32
			i64                    int64
			f                      float64
			b                      bool
			dt, dt64, dt3, dt64Old time.Time
			arr, lcArr, empty      []string
			m                      map[string]string
			raw                    []byte
		)
		n := 0
		err := engine.EachBlock(ctx, eng, `SELECT 's\tx', toLowCardinality('lc'), toString(number), toFixedString(repeat('h', 32), 32),
			toUInt8(200), toUInt64(18446744073709551615), toInt32(-5), toInt64(-9000000000), 1.5, true,
			toDateTime('2001-02-03 04:05:06', 'UTC'), toDateTime64('2299-12-31 23:59:59.999999', 6, 'UTC'),
			toDateTime64('1900-01-01 00:00:00.001', 3, 'UTC'), toDateTime64('1901-12-13 20:45:52.123456', 6, 'UTC'),
			['a', '', 'c'], [toLowCardinality('x')], CAST([], 'Array(String)'), map('k', 'v', 'k2', ''), 'raw'
			FROM system.numbers LIMIT 3`, nil, func(r engine.Rows) error {
			n++
			return r.Scan(&str, &lc, &num, &fixed, &u8, &u64, &i32, &i64, &f, &b, &dt, &dt64, &dt3, &dt64Old, &arr, &lcArr, &empty, &m, &raw)
		})
		if err != nil {
			t.Fatal(err)
		}
		utc := func(s string) time.Time { v, _ := time.Parse(time.RFC3339Nano, s); return v }
		if n != 3 || str != "s\tx" || lc != "lc" || num != "2" || fixed[31] != 'h' || u8 != 200 || u64 != 1<<64-1 || i32 != -5 || i64 != -9000000000 ||
			f != 1.5 || !b || !dt.Equal(utc("2001-02-03T04:05:06Z")) || !dt64.Equal(utc("2299-12-31T23:59:59.999999Z")) ||
			!dt3.Equal(utc("1900-01-01T00:00:00.001Z")) || !dt64Old.Equal(utc("1901-12-13T20:45:52.123456Z")) ||
			len(arr) != 3 || arr[1] != "" || arr[2] != "c" || len(lcArr) != 1 || lcArr[0] != "x" || empty == nil || len(empty) != 0 ||
			len(m) != 2 || m["k"] != "v" || string(raw) != "raw" {
			t.Fatalf("read %d rows, last %q %q %q %x %d %d %d %d %v %v %s %s %s %s %q %q %#v %v %q",
				n, str, lc, num, fixed, u8, u64, i32, i64, f, b, dt, dt64, dt3, dt64Old, arr, lcArr, empty, m, raw)
		}
	})

	// Blocks are decoded into two sets of columns in turn, the next while
	// the reader is in this one: every row must come from its own block.
	t.Run("many blocks", func(t *testing.T) {
		var want uint64
		err := engine.EachBlock(ctx, eng, "SELECT number, toString(number), toLowCardinality(toString(number % 7)), [toString(number)] FROM numbers(200000) SETTINGS max_block_size = 997",
			nil, func(r engine.Rows) error {
				var n uint64
				var s, lc string
				var arr []string
				if err := r.Scan(&n, &s, &lc, &arr); err != nil {
					return err
				}
				if w := fmt.Sprint(want); n != want || s != w || lc != fmt.Sprint(want%7) || len(arr) != 1 || arr[0] != w {
					return fmt.Errorf("row %d read as %d %q %q %q", want, n, s, lc, arr)
				}
				want++
				return nil
			})
		if err != nil || want != 200000 {
			t.Fatalf("read %d rows: %v", want, err)
		}
	})

	// The small queries stay on clickhouse-go, whose DateTime64 values
	// overflow after 2262 unless the adapter corrects them.
	t.Run("Query after 2262", func(t *testing.T) {
		var at time.Time
		var text string
		err := engine.Each(ctx, eng, "SELECT toDateTime64('2299-12-31 23:59:59.999999', 6, 'UTC') AS t, t", nil,
			func(r engine.Rows) error { return r.Scan(&at, &text) })
		if err != nil || at.Format(time.RFC3339Nano) != "2299-12-31T23:59:59.999999Z" || text != "2299-12-31 23:59:59.999999" {
			t.Fatalf("read %s and %q (%v)", at, text, err)
		}
	})

	t.Run("params", func(t *testing.T) {
		for _, v := range []string{"plain", "back\\slash", "new\nline", "tab\there", "nul\x00x", "quote'x", "{x:String}"} {
			var got string
			err := engine.EachBlock(ctx, eng, "SELECT {v:String}", engine.Params{"v": v}, func(r engine.Rows) error { return r.Scan(&got) })
			if err != nil || got != v {
				t.Errorf("%q came back as %q (%v)", v, got, err)
			}
		}
	})

	t.Run("errors", func(t *testing.T) {
		if _, err := eng.QueryBlocks(ctx, "SELECT no_such_column", nil); err == nil {
			t.Error("a query the server refuses: no error")
		}
		err := engine.EachBlock(ctx, eng, "SELECT toUUID('00000000-0000-0000-0000-000000000000') AS u", nil, func(engine.Rows) error { return nil })
		if err == nil {
			t.Error("an unsupported column type: no error")
		}
	})

	running := func(id string) int {
		var n uint64
		err := engine.Each(ctx, eng, "SELECT count() FROM system.processes WHERE query LIKE {id:String} AND query NOT LIKE '%system.processes%'",
			engine.Params{"id": "%" + id + "%"}, func(r engine.Rows) error { return r.Scan(&n) })
		if err != nil {
			t.Fatal(err)
		}
		return int(n)
	}
	gone := func(t *testing.T, id string) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); running(id) > 0; time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("query %s still runs on the server", id)
			}
		}
	}

	t.Run("cancel", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		rows, err := eng.QueryBlocks(cctx, "SELECT number, 'cancel-me' FROM system.numbers", nil)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for rows.Next() {
			if n++; n == 100000 {
				cancel()
			}
		}
		if err := rows.Err(); !errors.Is(err, context.Canceled) {
			t.Errorf("after cancel: rows.Err() = %v, want context.Canceled", err)
		}
		rows.Close()
		gone(t, "cancel-me")
	})

	t.Run("close early", func(t *testing.T) {
		rows, err := eng.QueryBlocks(ctx, "SELECT number, 'close-me' FROM system.numbers", nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 10 && rows.Next(); i++ {
		}
		if err := rows.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		if rows.Next() {
			t.Error("Next after Close")
		}
		gone(t, "close-me")
		var one uint8
		if err := engine.EachBlock(ctx, eng, "SELECT 1", nil, func(r engine.Rows) error { return r.Scan(&one) }); err != nil || one != 1 {
			t.Fatalf("the engine after an early close: %v", err)
		}
	})
}
