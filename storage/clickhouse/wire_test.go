package clickhouse_test

import (
	"context"
	"strings"
	"testing"

	"github.com/custody-audit/custody/internal/chdbtest"
	"github.com/custody-audit/custody/storage/chdb"
	"github.com/custody-audit/custody/storage/clickhouse"
	"github.com/custody-audit/custody/storage/engine"
)

// TestInsertColumnsRoundTrip inserts String, Array(String) and
// Map(String, String) rows (empty, one byte, lengths whose uvarint takes
// two and three bytes; maps as a map and as sorted pairs) in two batches
// through one reused set of column buffers, and reads them back: on the
// embedded engine (blocks written uncompressed, each column's buffer as
// is) and on a server over an LZ4-compressed connection (blocks encoded
// into one buffer and compressed).
func TestInsertColumnsRoundTrip(t *testing.T) {
	t.Run("embedded", func(t *testing.T) { insertColumnsRoundTrip(t, chdbtest.Open(t, "")) })
	t.Run("server lz4", func(t *testing.T) {
		s := chdbtest.Server(t, chdb.Access{})
		e, err := clickhouse.Open(context.Background(), clickhouse.Options{DSN: chdbtest.DSN(t, s, chdb.AdminUser) + "?compress=lz4"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = e.Close(context.Background()) })
		insertColumnsRoundTrip(t, e)
	})
}

func insertColumnsRoundTrip(t *testing.T, e engine.Engine) {
	ctx := context.Background()
	if err := e.Exec(ctx, `CREATE TABLE t (n UInt64, s String, lc LowCardinality(String), a Array(String), m Map(String, String)) ENGINE = MergeTree ORDER BY n`, nil); err != nil {
		t.Fatal(err)
	}
	cols := []engine.Column{{Name: "n", Type: "UInt64"}, {Name: "s", Type: "String"}, {Name: "lc", Type: "LowCardinality(String)"}, {Name: "a", Type: "Array(String)"}, {Name: "m", Type: "Map(String, String)"}}
	long, longer := strings.Repeat("x", 200), strings.Repeat("y", 20000)
	rows := []struct {
		s, lc string
		a     []string
		m     any
		want  string // toJSONString(m)
	}{
		{"", "", nil, map[string]string{}, `{}`},
		{"a", "b", []string{""}, []engine.Pair{}, `{}`},
		{long, "b", []string{long, "", "z"}, map[string]string{"b": "2", "a": long}, `{"a":"` + long + `","b":"2"}`},
		{longer, "c", []string{longer}, []engine.Pair{{Key: "a", Value: longer}, {Key: "b", Value: ""}}, `{"a":"` + longer + `","b":""}`},
	}
	for batch := 0; batch < 2; batch++ {
		b, err := e.PrepareBatch(ctx, "t", cols)
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range rows {
			if err := b.Append(uint64(batch*len(rows)+i), r.s, &r.lc, r.a, r.m); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.Send(ctx, ""); err != nil {
			t.Fatal(err)
		}
	}
	n := 0
	err := engine.Each(ctx, e, "SELECT n, s, lc, toJSONString(a), toJSONString(m), length(a) FROM t ORDER BY n", nil, func(r engine.Rows) error {
		var id, na uint64
		var s, lc, a, m string
		if err := r.Scan(&id, &s, &lc, &a, &m, &na); err != nil {
			return err
		}
		w := rows[int(id)%len(rows)]
		wa := "[]"
		if len(w.a) > 0 {
			wa = `["` + strings.Join(w.a, `","`) + `"]`
		}
		if s != w.s || lc != w.lc || a != wa || m != w.want || int(na) != len(w.a) {
			t.Errorf("row %d: got s %d bytes, lc %q, a %.40s (%d), m %.60s; want s %d bytes, lc %q, %d values, m %.60s", id, len(s), lc, a, na, m, len(w.s), w.lc, len(w.a), w.want)
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != 2*len(rows) {
		t.Fatalf("read %d rows, want %d", n, 2*len(rows))
	}
}
