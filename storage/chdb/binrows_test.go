package chdb_test

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/custody-audit/custody/internal/chdbtest"
	"github.com/custody-audit/custody/storage/chdb"
	"github.com/custody-audit/custody/storage/engine"
)

// weirdSQL is a string holding every byte the text formats escape.
const weirdSQL = `concat('tab\there nl\nx cr\rx back\\slash quote\' dq" nul', char(0), char(1), char(127), ' bs', char(8), ' ff', char(12), ' vt', char(11), ' bell', char(7), ' esc', char(27), ' \\x41 ü \u2028 end', unhex('ff00'))`

// typeCases are result columns of every type the binary decoding covers,
// with the values most likely to be rendered differently.
var typeCases = []struct {
	expr   string
	binary bool // the host answers a result of only this column in RowBinary
}{
	{"'plain'", true},
	{weirdSQL, true},
	{"''", true},
	{"toFixedString('ab', 5)", true},
	{"toFixedString(" + weirdSQL + ", 120)", true},
	{"toLowCardinality('lc')", true},
	{"toUInt8(255)", true},
	{"toUInt16(65535)", true},
	{"toUInt32(4294967295)", true},
	{"toUInt64(18446744073709551615)", true},
	{"toInt8(-128)", true},
	{"toInt16(-32768)", true},
	{"toInt32(-2147483648)", true},
	{"toInt64(-9223372036854775808)", true},
	{"toInt64(42)", true},
	{"true", true},
	{"false", true},
	{"toDate('2026-11-27')", true},
	{"toDate32('1900-01-01')", true},
	// Native blocks name this type plain DateTime (the zone is dropped),
	// whose text form is the session's zone: answered in text
	{"toDateTime('2026-11-27 10:11:12', 'UTC')", false},
	{"toDateTime64('2026-11-27 10:11:12.123456', 6, 'UTC')", true},
	{"toDateTime64('2026-11-27 10:11:12.000000', 6, 'UTC')", true},
	{"toDateTime64('1969-12-31 23:59:59.5', 3, 'UTC')", true},
	{"toDateTime64('1900-01-01 00:00:00.000001', 6, 'UTC')", true},
	{"toDateTime64('2026-11-27 10:11:12', 0, 'UTC')", true},
	{"toDateTime64('2026-11-27 10:11:12.123456789', 9, 'UTC')", true},
	{"['a', 'b''c', 'tab\\there', 'nl\\nx', 'back\\\\slash', '', " + weirdSQL + "]", true},
	{"CAST([] AS Array(String))", true},
	{"CAST(['x', 'y'] AS Array(LowCardinality(String)))", true},
	{"CAST([] AS Array(LowCardinality(String)))", true},
	{"CAST(if(number = 1, ['x', ''], []) AS Array(LowCardinality(String)))", true},
	{"toLowCardinality(if(number = 1, 'one', " + weirdSQL + "))", true},
	{"CAST(map(toString(number), 'v') AS Map(LowCardinality(String), String))", true},
	{"CAST(if(number = 2, map('k', 'v', 'k2', ''), map()) AS Map(String, LowCardinality(String)))", true},
	{"toLowCardinality(toString(number * 1000))", true},
	{"[toFixedString('ab', 3)]", true},
	{"map('k', 'v', 'tab\\tk', 'x\\ny', 'q''k', " + weirdSQL + ")", true},
	{"CAST(map() AS Map(String, String))", true},
	// answered in text: their text forms are not reproduced here
	{"toFloat64(0.1)", false},
	{"toNullable('n')", false},
	{"CAST(NULL AS Nullable(String))", false},
	{"toDecimal64(1.5, 3)", false},
	{"toDateTime64('2026-11-27 10:11:12.5', 3)", false},
	{"toUUID('61f0c404-5cb3-11e7-907b-a6006ad3dba0')", false},
	{"[1, 2]", false},
	{"tuple(1, 'a')", false},
}

// scanAll reads every row of rows with each column scanned into dest(i).
func scanAll(t *testing.T, rows engine.Rows, dest func(i int) any) [][]any {
	t.Helper()
	defer rows.Close()
	var out [][]any
	n := len(rows.Columns())
	for rows.Next() {
		ptrs := make([]any, n)
		for i := range ptrs {
			ptrs[i] = dest(i)
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		vals := make([]any, n)
		for i, p := range ptrs {
			vals[i] = reflect.ValueOf(p).Elem().Interface()
		}
		out = append(out, vals)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestBinaryScansAsText checks that a binary result scans exactly as the
// same result in TabSeparated text did: into strings (the text form) and
// into the destination each type is naturally read into.
func TestBinaryScansAsText(t *testing.T) {
	ctx := context.Background()
	e := chdbtest.Open(t, "")
	for _, c := range typeCases {
		t.Run(c.expr, func(t *testing.T) {
			q := "SELECT " + c.expr + " AS v FROM numbers(3)"
			bin, err := e.Query(ctx, q, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := chdb.IsBinary(bin); got != c.binary {
				t.Errorf("answered in binary: %v, want %v", got, c.binary)
			}
			got := scanAll(t, bin, func(int) any { return new(string) })
			text, err := chdb.QueryText(ctx, e, q, nil)
			if err != nil {
				t.Fatal(err)
			}
			if chdb.IsBinary(text) {
				t.Fatal("text query answered in binary")
			}
			want := scanAll(t, text, func(int) any { return new(string) })
			if len(got) != 3 || !reflect.DeepEqual(got, want) {
				t.Errorf("as string:\nbinary %q\ntext   %q", got, want)
			}
			for _, d := range []func() any{
				func() any { return new(any) }, func() any { return new([]byte) }, func() any { return new(int64) },
				func() any { return new(uint64) }, func() any { return new(int32) }, func() any { return new(uint32) },
				func() any { return new(uint8) }, func() any { return new(bool) }, func() any { return new(time.Time) },
				func() any { return new([]string) }, func() any { return new(map[string]string) }, func() any { return new([32]byte) },
			} {
				got, gerr := scanOne(ctx, e, q, d, false)
				want, werr := scanOne(ctx, e, q, d, true)
				if (gerr == nil) != (werr == nil) || !reflect.DeepEqual(got, want) {
					t.Errorf("into %T: binary %#v (%v), text %#v (%v)", d(), got, gerr, want, werr)
				}
			}
		})
	}
}

// scanOne scans the first row's only column of q into a new d().
func scanOne(ctx context.Context, e *chdb.Engine, q string, d func() any, text bool) (any, error) {
	run := e.Query
	if text {
		run = func(ctx context.Context, q string, p engine.Params) (engine.Rows, error) {
			return chdb.QueryText(ctx, e, q, p)
		}
	}
	rows, err := run(ctx, q, nil)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	if !rows.Next() {
		return nil, errors.Join(errors.New("no row"), rows.Err())
	}
	p := d()
	if err := rows.Scan(p); err != nil {
		return nil, err
	}
	return reflect.ValueOf(p).Elem().Interface(), nil
}

// TestBinaryResultShapes covers what is not one value: column names,
// empty results, results spanning many chunks, a query failing half way
// and statements that cannot stream.
func TestBinaryResultShapes(t *testing.T) {
	ctx := context.Background()
	e := chdbtest.Open(t, "")
	cases := []struct {
		name, query string
		rows        int
		cols        []string
		err         string
	}{
		{"names", "SELECT 1 AS `a b`, 'x' AS c, [toInt64(1)] AS d", 1, []string{"a b", "c", "d"}, ""},
		{"empty", "SELECT number, toString(number) AS s FROM numbers(10) WHERE number > 100", 0, []string{"number", "s"}, ""},
		{"empty odd names", "SELECT toFloat64(number) AS `f\tx`, toString(number) AS `s'q` FROM numbers(10) WHERE number > 100", 0, []string{"f\tx", "s'q"}, ""},
		{"empty settings", "SELECT number FROM numbers(10) WHERE number > 100 SETTINGS max_threads = 1", 0, []string{"number"}, ""},
		{"many chunks", "SELECT number, repeat('x', number % 100) AS s FROM numbers(300000)", 300000, []string{"number", "s"}, ""},
		{"fails late", "SELECT number, throwIf(number = 250000, 'boom') AS x FROM numbers(300000)", -1, []string{"number", "x"}, "boom"},
		{"describe", "DESCRIBE TABLE system.one", 1, nil, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, text := range []bool{false, true} {
				run := e.Query
				if text {
					run = func(ctx context.Context, q string, p engine.Params) (engine.Rows, error) {
						return chdb.QueryText(ctx, e, q, p)
					}
				}
				rows, err := run(ctx, c.query, nil)
				if err != nil && c.err != "" && strings.Contains(err.Error(), c.err) {
					continue // failed before its first chunk
				}
				if err != nil {
					t.Fatal(err)
				}
				if c.cols != nil && !slices.Equal(rows.Columns(), c.cols) {
					t.Errorf("text %v: columns %q, want %q", text, rows.Columns(), c.cols)
				}
				n := 0
				for rows.Next() {
					n++
				}
				err = rows.Close()
				if c.err != "" {
					if err == nil || !strings.Contains(err.Error(), c.err) || !strings.Contains(rows.Err().Error(), c.err) {
						t.Errorf("text %v: Close %v, Err %v; want %q", text, err, rows.Err(), c.err)
					}
				} else if err != nil || rows.Err() != nil {
					t.Errorf("text %v: Close %v, Err %v", text, err, rows.Err())
				}
				if c.rows >= 0 && n != c.rows {
					t.Errorf("text %v: %d rows, want %d", text, n, c.rows)
				}
			}
			// the engine still answers
			var one uint8
			rows, err := e.Query(ctx, "SELECT 1", nil)
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				if err := rows.Scan(&one); err != nil {
					t.Fatal(err)
				}
			}
			rows.Close()
			if one != 1 {
				t.Errorf("engine unusable after the query")
			}
		})
	}
}

// TestBinaryRowsHoldNoReply checks that strings scanned from one frame
// survive the next frame being read over the buffer.
func TestBinaryRowsHoldNoReply(t *testing.T) {
	ctx := context.Background()
	e := chdbtest.Open(t, "")
	rows, err := e.Query(ctx, "SELECT toString(number) AS s, [toString(number)] AS a, map('k', toString(number)) AS m FROM numbers(200000)", nil)
	if err != nil {
		t.Fatal(err)
	}
	var ss []string
	var as [][]string
	var ms []map[string]string
	for rows.Next() {
		var s string
		var a []string
		var m map[string]string
		if err := rows.Scan(&s, &a, &m); err != nil {
			t.Fatal(err)
		}
		ss, as, ms = append(ss, s), append(as, a), append(ms, m)
	}
	if err := rows.Close(); err != nil {
		t.Fatal(err)
	}
	for i, s := range ss {
		want := strconvItoa(i)
		if s != want || len(as[i]) != 1 || as[i][0] != want || ms[i]["k"] != want {
			t.Fatalf("row %d: %q %q %q, want %q", i, s, as[i], ms[i], want)
		}
	}
}

func strconvItoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}

// TestEveryRequestOneReply runs each way a query can end many times in a
// row (a failure before the first chunk and one half way are timing
// dependent), each followed by queries whose results are checked exactly:
// any request that left part of its reply, or part of its output in the
// engine, shows up in them.
func TestEveryRequestOneReply(t *testing.T) {
	ctx := context.Background()
	e := chdbtest.Open(t, "")
	const boom = "boom"
	query := func(q string) func(context.Context) (engine.Rows, error) {
		return func(ctx context.Context) (engine.Rows, error) { return e.Query(ctx, q, nil) }
	}
	cases := []struct {
		name string
		run  func(context.Context) (engine.Rows, error)
		// read is how many rows to read before closing; -1 reads all
		read int
		// cancel cancels the context after the rows read, then reads on
		cancel bool
		err    string
	}{
		{name: "success", run: query("SELECT number, toString(number) AS s FROM numbers(300000)"), read: -1},
		{name: "error at start", run: query("SELECT * FROM no_such_table"), read: -1, err: "no_such_table"},
		{name: "error before first chunk", run: query("SELECT number, throwIf(number = 0, 'boom') AS x FROM numbers(300000)"), read: -1, err: boom},
		{name: "error around first chunk", run: query("SELECT number, throwIf(number = 250000, 'boom') AS x FROM numbers(300000)"), read: -1, err: boom},
		{name: "error mid-stream", run: query("SELECT number, throwIf(number = 900000, 'boom') AS x FROM numbers(1000000)"), read: -1, err: boom},
		{name: "text fallback", run: query("SELECT toFloat64(number) AS f FROM numbers(200000)"), read: -1},
		{name: "text fallback error before first chunk", run: query("SELECT toFloat64(number) AS f, throwIf(number = 0, 'boom') AS x FROM numbers(300000)"), read: -1, err: boom},
		{name: "text fallback error mid-stream", run: query("SELECT toFloat64(number) AS f, throwIf(number = 900000, 'boom') AS x FROM numbers(1000000)"), read: -1, err: boom},
		{name: "text error before first chunk", run: func(ctx context.Context) (engine.Rows, error) {
			return chdb.QueryText(ctx, e, "SELECT number, throwIf(number = 0, 'boom') AS x FROM numbers(300000)", nil)
		}, read: -1, err: boom},
		{name: "whole statement error", run: query("DESCRIBE TABLE no_such_table"), read: -1, err: "no_such_table"},
		{name: "close before the end", run: query("SELECT number, toString(number) AS s FROM numbers(1000000)"), read: 1},
		{name: "close before the first row", run: query("SELECT number FROM numbers(1000000)"), read: 0},
		{name: "context cancelled", run: query("SELECT number FROM numbers(1000000)"), read: 1, cancel: true, err: context.Canceled.Error()},
		{name: "exec error", run: func(ctx context.Context) (engine.Rows, error) {
			return nil, e.Exec(ctx, "INSERT INTO no_such_table VALUES (1)", nil)
		}, err: "no_such_table"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for i := range 20 {
				ctx, cancel := context.WithCancel(ctx)
				err := readSome(ctx, c.run, c.read, c.cancel, cancel)
				cancel()
				if c.err == "" && err != nil {
					t.Fatalf("run %d: %v", i, err)
				}
				if c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
					t.Fatalf("run %d: error %v, want %q", i, err, c.err)
				}
				checkEngineInStep(t, e)
			}
		})
	}
}

// readSome runs a query and reads n of its rows (all when n < 0); with
// cancelAfter, it then cancels and reads on. The error is the first of
// Query, Err and Close.
func readSome(ctx context.Context, run func(context.Context) (engine.Rows, error), n int, cancelAfter bool, cancel func()) error {
	rows, err := run(ctx)
	if err != nil || rows == nil {
		return err
	}
	for n != 0 && rows.Next() {
		n--
	}
	if cancelAfter {
		cancel()
		for rows.Next() {
		}
	}
	err = rows.Err()
	if cerr := rows.Close(); err == nil {
		err = cerr
	}
	return err
}

// checkEngineInStep runs a binary, a text and a whole (non-streamed)
// query and checks their results exactly.
func checkEngineInStep(t *testing.T, e *chdb.Engine) {
	t.Helper()
	ctx := context.Background()
	for _, c := range []struct {
		query string
		cols  []string
		want  [][]any
	}{
		{"SELECT 'ok' AS v, toUInt64(7) AS n", []string{"v", "n"}, [][]any{{"ok", "7"}}},
		{"SELECT toFloat64(0.5) AS f", []string{"f"}, [][]any{{"0.5"}}},
		{"DESCRIBE TABLE system.one", []string{"name", "type", "default_type", "default_expression", "comment", "codec_expression", "ttl_expression"},
			[][]any{{"dummy", "UInt8", "", "", "", "", ""}}},
	} {
		rows, err := e.Query(ctx, c.query, nil)
		if err != nil {
			t.Fatalf("%s: %v", c.query, err)
		}
		if !slices.Equal(rows.Columns(), c.cols) {
			rows.Close()
			t.Fatalf("%s: columns %q, want %q", c.query, rows.Columns(), c.cols)
		}
		got := scanAll(t, rows, func(int) any { return new(string) })
		if !reflect.DeepEqual(got, c.want) {
			t.Fatalf("%s: rows %q, want %q", c.query, got, c.want)
		}
	}
}

// TestBinaryLowCardinalityWide reads LowCardinality columns whose blocks
// need wider key indexes (over 256 and 65536 keys), across many blocks.
func TestBinaryLowCardinalityWide(t *testing.T) {
	ctx := context.Background()
	e := chdbtest.Open(t, "")
	rows, err := e.Query(ctx, "SELECT number, toLowCardinality(toString(number)) AS l, CAST([toString(number % 300), ''] AS Array(LowCardinality(String))) AS a, CAST(map(toString(number % 70000), 'v') AS Map(LowCardinality(String), String)) AS m FROM numbers(200000)", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !chdb.IsBinary(rows) {
		t.Error("answered in text")
	}
	n := uint64(0)
	for rows.Next() {
		var got uint64
		var l string
		var a []string
		var m map[string]string
		if err := rows.Scan(&got, &l, &a, &m); err != nil {
			t.Fatal(err)
		}
		want := strconv.FormatUint(n, 10)
		if got != n || l != want || len(a) != 2 || a[0] != strconv.FormatUint(n%300, 10) || a[1] != "" ||
			len(m) != 1 || m[strconv.FormatUint(n%70000, 10)] != "v" {
			t.Fatalf("row %d: %d %q %q %q", n, got, l, a, m)
		}
		n++
	}
	if err := rows.Close(); err != nil {
		t.Fatal(err)
	}
	if n != 200000 {
		t.Errorf("%d rows", n)
	}
}
