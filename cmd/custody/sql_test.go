package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/custody-audit/custody/internal/chdbtest"
)

// TestSQLRefusesWrites runs custody sql against a real embedded store: a
// read answers, every kind of write is refused by the engine.
func TestSQLRefusesWrites(t *testing.T) {
	chdbtest.RequireLibrary(t)
	t.Setenv("CUSTODY_CHDB_HOST", chdbtest.HostPath(t))
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	run := func(args ...string) (string, error) {
		var out bytes.Buffer
		app := newApp()
		app.Writer = &out
		app.ErrWriter = &out
		err := app.Run(context.Background(), append([]string{"custody", "--store", store, "--signing-key", filepath.Join(dir, "k"), "--verify-key", filepath.Join(dir, "k.pub")}, args...))
		return out.String(), err
	}
	if _, err := run("init"); err != nil {
		t.Fatal(err)
	}
	out, err := run("sql", "--format", "tsv", "SELECT count() FROM custody.events")
	if err != nil || !strings.Contains(out, "0") {
		t.Fatalf("read: %q %v", out, err)
	}
	for _, q := range []string{
		"INSERT INTO custody.events (chain) VALUES ('x')",
		"ALTER TABLE custody.events DELETE WHERE 1",
		"DROP TABLE custody.events",
		"TRUNCATE TABLE custody.checkpoints",
		"CREATE TABLE custody.x (a UInt8) ENGINE = Memory",
		"SELECT 1 INTO OUTFILE '" + filepath.Join(dir, "leak.txt") + "'",
	} {
		if _, err := run("sql", q); err == nil {
			t.Errorf("custody sql accepted a write: %s", q)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "leak.txt")); err == nil {
		t.Error("INTO OUTFILE wrote a file")
	}
}
