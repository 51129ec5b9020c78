package clickhouse_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/custody-audit/custody/event"
	"github.com/custody-audit/custody/internal/chdbtest"
	"github.com/custody-audit/custody/storage"
	"github.com/custody-audit/custody/storage/chdb"
	"github.com/custody-audit/custody/storage/clickhouse"
)

// TestServerBackend runs the store on a real ClickHouse server through a
// DSN, as --clickhouse does: CUSTODY_TEST_CLICKHOUSE_DSN's (>= 24.8), or
// a private server started from libchdb for the test.
func TestServerBackend(t *testing.T) {
	dsn := os.Getenv("CUSTODY_TEST_CLICKHOUSE_DSN")
	if dsn == "" {
		dsn = chdbtest.DSN(t, chdbtest.Server(t, chdb.Access{}), chdb.AdminUser)
	}
	ctx := context.Background()
	eng, err := clickhouse.Open(ctx, clickhouse.Options{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close(ctx)
	db := fmt.Sprintf("custody_test_%d", time.Now().UnixNano())
	opts := storage.SchemaOptions{Database: db}
	if _, err := storage.Migrate(ctx, eng, opts, "test"); err != nil {
		t.Fatal(err)
	}
	defer eng.Exec(ctx, "DROP DATABASE "+db, nil)
	skey, vkey, _ := storage.GenerateKey("server-test")
	signer, _ := note.NewSigner(skey)
	verifier, _ := note.NewVerifier(vkey)
	st, err := storage.Open(ctx, eng, storage.Options{Schema: opts, Signer: signer})
	if err != nil {
		t.Fatal(err)
	}
	b := storage.Batch{Stream: "s", Offset: 3}
	for i := 1; i <= 3; i++ {
		b.Events = append(b.Events, storage.BatchEvent{Offset: int64(i), Event: event.Event{ID: fmt.Sprint(i), Time: time.Now(), Raw: []byte("{}"), Tags: []string{"x"}}})
	}
	for try := 0; try < 2; try++ { // the retry is deduplicated
		if _, err := st.Append(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := st.Verify(ctx, storage.VerifyOptions{Verifier: verifier})
	if err != nil || !rep.OK() || rep.Rows != 3 {
		t.Fatalf("verify on server: %v %+v", err, rep)
	}
}

func TestDSNNeverLeaksIntoErrors(t *testing.T) {
	_, err := clickhouse.Open(context.Background(), clickhouse.Options{DSN: "clickhouse://u:s3cr3t-pass@127.0.0.1:1/?dial_timeout=200ms"})
	if err == nil {
		t.Fatal("want a connection error")
	}
	if s := err.Error(); strings.Contains(s, "s3cr3t-pass") {
		t.Fatalf("error leaks the password: %s", s)
	}
}
