package clickhouse_test

import (
	"context"
	"strings"
	"testing"

	"github.com/custody-audit/custody/internal/chdbtest"
	"github.com/custody-audit/custody/storage/engine"
)

// TestInsertColumnsRoundTrip inserts String, Array(String) and
// Map(String, String) rows (empty, one byte, lengths whose uvarint takes
// two and three bytes; maps as a map and as sorted pairs; Borrowed
// strings below and at the size sent by reference) in two batches
// through one reused set of column buffers, and reads them back: on the
// embedded engine (blocks written uncompressed, each column's buffer as
// is, big Borrowed values from the caller's memory) and on a server over
// an LZ4-compressed connection (blocks encoded into one buffer and
// compressed).
func TestInsertColumnsRoundTrip(t *testing.T) {
	t.Run("embedded", func(t *testing.T) { insertColumnsRoundTrip(t, chdbtest.Open(t, "")) })
	t.Run("server lz4", func(t *testing.T) { insertColumnsRoundTrip(t, serverEngine(t, "?compress=lz4")) })
}

func insertColumnsRoundTrip(t *testing.T, e engine.Engine) {
	ctx := context.Background()
	if err := e.Exec(ctx, `CREATE TABLE t (n UInt64, s String, lc LowCardinality(String), a Array(String), m Map(String, String), r String) ENGINE = MergeTree ORDER BY n`, nil); err != nil {
		t.Fatal(err)
	}
	cols := []engine.Column{{Name: "n", Type: "UInt64"}, {Name: "s", Type: "String"}, {Name: "lc", Type: "LowCardinality(String)"}, {Name: "a", Type: "Array(String)"}, {Name: "m", Type: "Map(String, String)"}, {Name: "r", Type: "String"}}
	long, longer := strings.Repeat("x", 200), strings.Repeat("y", 20000)
	rows := []struct {
		s, lc string
		a     []string
		m     any
		want  string // toJSONString(m)
		r     string // sent as a Borrowed
	}{
		{"", "", nil, map[string]string{}, `{}`, ""},
		{"a", "b", []string{""}, []engine.Pair{}, `{}`, strings.Repeat("1", 511)},
		{long, "b", []string{long, "", "z"}, map[string]string{"b": "2", "a": long}, `{"a":"` + long + `","b":"2"}`, strings.Repeat("2", 512)},
		{longer, "c", []string{longer}, []engine.Pair{{Key: "a", Value: longer}, {Key: "b", Value: ""}}, `{"a":"` + longer + `","b":""}`, longer + "3"},
	}
	for batch := 0; batch < 2; batch++ {
		b, err := e.PrepareBatch(ctx, "t", cols)
		if err != nil {
			t.Fatal(err)
		}
		lent := make([]engine.Borrowed, len(rows))
		for i, r := range rows {
			lent[i] = engine.Borrowed(r.r)
			v := any(&lent[i])
			if i%2 == 1 {
				v = lent[i]
			}
			if err := b.Append(uint64(batch*len(rows)+i), r.s, &r.lc, r.a, r.m, v); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.Send(ctx, ""); err != nil {
			t.Fatal(err)
		}
		for i := range lent { // lent until Send returned, now the caller's again
			clear(lent[i])
		}
	}
	n := 0
	err := engine.Each(ctx, e, "SELECT n, s, lc, toJSONString(a), toJSONString(m), length(a), r FROM t ORDER BY n", nil, func(r engine.Rows) error {
		var id, na uint64
		var s, lc, a, m, raw string
		if err := r.Scan(&id, &s, &lc, &a, &m, &na, &raw); err != nil {
			return err
		}
		w := rows[int(id)%len(rows)]
		wa := "[]"
		if len(w.a) > 0 {
			wa = `["` + strings.Join(w.a, `","`) + `"]`
		}
		if raw != w.r {
			t.Errorf("row %d: borrowed value read back as %d bytes %.20q, want %d bytes %.20q", id, len(raw), raw, len(w.r), w.r)
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
