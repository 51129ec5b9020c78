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
	s := chdbtest.Server(t, chdb.Access{})
	ctx := context.Background()
	eng, err := clickhouse.Open(ctx, clickhouse.Options{DSN: chdbtest.DSN(t, s, chdb.AdminUser)})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close(ctx)
	for _, v := range []string{"plain", "back\\slash", "new\nline", "tab\there", "cr\rx", "nul\x00x", "quote'x", `"dq"`, "\\n literal", "{x:String}", "multi\nline\n\tSELECT 1;"} {
		var got string
		err := engine.Each(ctx, eng, "SELECT {v:String}", engine.Params{"v": v}, func(r engine.Rows) error { return r.Scan(&got) })
		if err != nil || got != v {
			t.Errorf("%q came back as %q (%v)", v, got, err)
		}
	}
}
