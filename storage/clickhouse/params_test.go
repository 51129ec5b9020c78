package clickhouse_test

import (
	"context"
	"testing"

	"github.com/custody-audit/custody/internal/chdbtest"
	"github.com/custody-audit/custody/storage/chdb"
	"github.com/custody-audit/custody/storage/clickhouse"
	"github.com/custody-audit/custody/storage/engine"
)

// TestParamsRoundTrip sends String parameters holding every character
// ClickHouse's parameter parsing treats specially to a real server and
// reads them back unchanged.
func TestParamsRoundTrip(t *testing.T) {
	eng := serverEngine(t, "")
	ctx := context.Background()
	for _, v := range []string{"plain", "back\\slash", "new\nline", "tab\there", "cr\rx", "nul\x00x", "quote'x", `"dq"`, "\\n literal", "{x:String}", "multi\nline\n\tSELECT 1;"} {
		var got string
		err := engine.Each(ctx, eng, "SELECT {v:String}", engine.Params{"v": v}, func(r engine.Rows) error { return r.Scan(&got) })
		if err != nil || got != v {
			t.Errorf("%q came back as %q (%v)", v, got, err)
		}
	}
}

// TestStringArrayRoundTrip binds engine.StringArray's text as an
// Array(String) parameter on a real server and reads every element back
// unchanged: the one renderer of the list parameters (event ids, content
// sums, part names, query lists) escapes what the server's parser needs.
func TestStringArrayRoundTrip(t *testing.T) {
	eng := serverEngine(t, "")
	ctx := context.Background()
	want := []string{"plain", "back\\slash", "new\nline", "tab\there", "cr\rx", "nul\x00x", "del\x7fx", "quote'x", `"dq"`, "é ü", "[',']"}
	var got []string
	err := engine.Each(ctx, eng, "SELECT arrayJoin({v:Array(String)})", engine.Params{"v": engine.StringArray(want)}, func(r engine.Rows) error {
		var v string
		if err := r.Scan(&v); err != nil {
			return err
		}
		got = append(got, v)
		return nil
	})
	if err != nil || len(got) != len(want) {
		t.Fatalf("got %q, %v; want %q", got, err, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("element %d: %q came back as %q", i, want[i], got[i])
		}
	}
}

// serverEngine starts a private server from libchdb for the test and
// opens it as the admin, with dsnQuery ("?compress=lz4", or "") added to
// the DSN; the engine is closed when the test ends.
func serverEngine(t *testing.T, dsnQuery string) *clickhouse.Engine {
	t.Helper()
	s := chdbtest.Server(t, chdb.Access{})
	eng, err := clickhouse.Open(context.Background(), clickhouse.Options{DSN: chdbtest.DSN(t, s, chdb.AdminUser) + dsnQuery})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = eng.Close(context.Background()) })
	return eng
}
