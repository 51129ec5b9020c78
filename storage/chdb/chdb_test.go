package chdb_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/custody-audit/custody/internal/chdbtest"
	"github.com/custody-audit/custody/storage/chdb"
	"github.com/custody-audit/custody/storage/engine"
)

func TestRoundTripTypes(t *testing.T) {
	ctx := context.Background()
	e := chdbtest.Open(t, "")
	if err := e.Exec(ctx, `CREATE TABLE t (s String, b String, i Int64, u UInt64, c Int32, ts DateTime64(6,'UTC'), h FixedString(32), a Array(String), m Map(String,String)) ENGINE = MergeTree ORDER BY u SETTINGS non_replicated_deduplication_window = 100`, nil); err != nil {
		t.Fatal(err)
	}
	cols := []engine.Column{{Name: "s", Type: "String"}, {Name: "b", Type: "String"}, {Name: "i", Type: "Int64"}, {Name: "u", Type: "UInt64"}, {Name: "c", Type: "Int32"}, {Name: "ts", Type: "DateTime64(6,'UTC')"}, {Name: "h", Type: "FixedString(32)"}, {Name: "a", Type: "Array(String)"}, {Name: "m", Type: "Map(String,String)"}}
	batch, err := e.PrepareBatch(ctx, "t", cols)
	if err != nil {
		t.Fatal(err)
	}
	ts := time.Date(2026, 11, 27, 10, 11, 12, 123456000, time.UTC)
	var h [32]byte
	for i := range h {
		h[i] = byte(i) // includes 0x00, 0x09 and 0x0a: tab and newline must survive
	}
	weird := "tab\there\nnewline\\back'quote\x00nul"
	if err := batch.Append(weird, []byte{0xff, 0x00, '\t'}, int64(-5), uint64(7), int32(-1), ts, h, []string{"x", "y'z"}, map[string]string{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	if err := batch.Send(ctx, "token-1"); err != nil {
		t.Fatal(err)
	}
	if err := batch.Send(ctx, "token-1"); err != nil { // a sent batch is empty: nothing more is stored
		t.Fatal(err)
	}
	if err := batch.Send(ctx, "bad token'"); err != nil {
		t.Fatal(err) // empty batches send nothing, so the token is not even looked at
	}
	rows, err := e.Query(ctx, "SELECT s, b, i, u, c, ts, h, toJSONString(a), toJSONString(m), {p:String} FROM t", engine.Params{"p": "it's a\ttab"})
	if err != nil {
		t.Fatal(err)
	}

	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for rows.Next() {
		n++
		var s, a, m, p string
		var b []byte
		var i int64
		var u uint64
		var c int32
		var got time.Time
		var gh [32]byte
		if err := rows.Scan(&s, &b, &i, &u, &c, &got, &gh, &a, &m, &p); err != nil {
			t.Fatal(err)
		}
		if s != weird || string(b) != "\xff\x00\t" || i != -5 || u != 7 || c != -1 || !got.Equal(ts) || gh != h || a != `["x","y'z"]` || m != `{"k":"v"}` || p != "it's a\ttab" {
			t.Errorf("round trip mismatch: %q %q %d %d %d %v %x %s %s %q", s, b, i, u, c, got, gh, a, m, p)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows.Close()
	if n != 1 {
		t.Errorf("got %d rows, want 1", n)
	}
	rows2, err := e.Query(ctx, "SELECT a, m FROM t", nil)
	if err != nil {
		t.Fatal(err)
	}
	for rows2.Next() {
		var a []string
		var m map[string]string
		if err := rows2.Scan(&a, &m); err != nil {
			t.Fatal(err)
		}
		if len(a) != 2 || a[1] != "y'z" || m["k"] != "v" {
			t.Errorf("native array/map scan: %q %q", a, m)
		}
	}
	rows2.Close()
}

func TestQueryErrorKeepsEngineUsable(t *testing.T) {
	ctx := context.Background()
	e := chdbtest.Open(t, "")
	_, err := e.Query(ctx, "SELECT * FROM no_such_table", nil)
	if err == nil || !strings.Contains(err.Error(), "no_such_table") {
		t.Fatalf("want an error naming the table, got %v", err)
	}
	if rows, err := e.Query(ctx, "SELECT {x:UInt8}", engine.Params{"x": "1; DROP TABLE t"}); err == nil {
		rows.Close()
		t.Fatal("a malformed parameter must be refused")
	}
	rows, err := e.Query(ctx, "SELECT number FROM numbers(100000)", nil)
	if err != nil {
		t.Fatal(err)
	}
	rows.Next()
	rows.Close() // closing early drains the stream
	rows, err = e.Query(ctx, "SELECT count() FROM numbers(10)", nil)
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for rows.Next() {
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
	}
	rows.Close()
	if n != 10 {
		t.Fatalf("count = %d", n)
	}
}

func TestParameterNamesMustBeIdentifiers(t *testing.T) {
	e := chdbtest.Open(t, "")
	_, err := e.Query(context.Background(), "SELECT 1", engine.Params{"x = 1; DROP": "y"})
	if err == nil || !strings.Contains(err.Error(), "not an identifier") {
		t.Fatalf("want identifier error, got %v", err)
	}
}

func TestStoreLockIsExclusive(t *testing.T) {
	dir := t.TempDir()
	chdbtest.Open(t, dir)
	_, err := chdb.Open(context.Background(), chdb.Options{Dir: dir, HostPath: chdbtest.HostPath(t)})
	if want := (&chdb.InUseError{Dir: dir, PID: os.Getpid()}).Error(); err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("second open of one store: want in-use error, got %v", err)
	}
}

func TestReadOnlyRefusesWrites(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	e := chdbtest.Open(t, dir)
	if err := e.Exec(ctx, "CREATE TABLE t (x UInt8) ENGINE = MergeTree ORDER BY x", nil); err != nil {
		t.Fatal(err)
	}
	e.Close(ctx)
	ro, err := chdb.Open(ctx, chdb.Options{Dir: dir, HostPath: chdbtest.HostPath(t), ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close(ctx)
	if err := ro.Exec(ctx, "INSERT INTO t VALUES (1)", nil); err == nil {
		t.Fatal("insert on a read-only engine succeeded")
	}
	if err := ro.Exec(ctx, "DROP TABLE t", nil); err == nil {
		t.Fatal("drop on a read-only engine succeeded")
	}
	rows, err := ro.Query(ctx, "SELECT count() FROM t WHERE x < {n:UInt8}", engine.Params{"n": "5"})
	if err != nil {
		t.Fatalf("read-only query with a parameter: %v", err)
	}
	rows.Close()
}

func TestDescribeAndExplainAnswer(t *testing.T) {
	e := chdbtest.Open(t, "")
	for _, q := range []string{"DESCRIBE TABLE system.one", "EXPLAIN SELECT 1", "SHOW DATABASES"} {
		rows, err := e.Query(context.Background(), q, nil)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		n := 0
		for rows.Next() {
			n++
		}
		rows.Close()
		if n == 0 {
			t.Errorf("%s: no rows", q)
		}
	}
}

// TestEngineGone kills the engine host mid-use: every call then fails
// with an error wrapping engine.ErrEngineGone that says what happened.
func TestEngineGone(t *testing.T) {
	ctx := context.Background()
	e := chdbtest.Open(t, "")
	if err := e.Exec(ctx, "CREATE TABLE t (x UInt64) ENGINE = MergeTree ORDER BY x", nil); err != nil {
		t.Fatal(err)
	}
	batch, err := e.PrepareBatch(ctx, "t", []engine.Column{{Name: "x", Type: "UInt64"}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 1000 {
		if err := batch.Append(uint64(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Kill(e.Server().PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-e.Server().Done()
	for name, call := range map[string]func() error{
		"send":  func() error { return batch.Send(ctx, "") },
		"exec":  func() error { return e.Exec(ctx, "SELECT 1", nil) },
		"query": func() error { _, err := e.Query(ctx, "SELECT 1", nil); return err },
		"prepare": func() error {
			_, err := e.PrepareBatch(ctx, "t", []engine.Column{{Name: "x", Type: "UInt64"}})
			return err
		},
	} {
		err := call()
		if !errors.Is(err, engine.ErrEngineGone) || !strings.Contains(err.Error(), "killed") {
			t.Errorf("%s after the host was killed: %v, want ErrEngineGone saying it was killed", name, err)
		}
	}
}
