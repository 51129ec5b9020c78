package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/custody-audit/custody/internal/storetest"
)

// TestExportCommands runs the real commands: backfill a store, export a
// window and a query, verify the bundles offline, tamper with one, and
// read the custody log, on both backends.
func TestExportCommands(t *testing.T) { storetest.Run(t, testExportCommands) }

func testExportCommands(t *testing.T, backend storetest.Backend) {
	s := newCLIStore(t, backend)
	t.Setenv("CUSTODY_ACTOR", "auditor@contoso.com")
	dir := s.dir
	writePT1H(t, filepath.Join(dir, "archive"), 25)
	for _, args := range [][]string{{"keygen"}, {"init"}, {"backfill", "--batch", "10", filepath.Join(dir, "archive")}} {
		s.mustCLI(args...)
	}
	custodyCLI := func(_ *testing.T, _ string, args ...string) (string, error) { return s.cli(args...) }
	pub := filepath.Join(dir, "k.pub")
	elapsed := regexp.MustCompile(`in [0-9.]+(µs|ms|s)\n`)

	bundle := filepath.Join(dir, "evidence")
	out, err := custodyCLI(t, dir, "export", "--from", "2025-05-06", "--to", "2025-05-07", "--out", bundle)
	if err != nil {
		t.Fatalf("export: %v", err)
	}
	if !strings.HasPrefix(out, "export: 25 events in 25 rows from 1 chains written to "+bundle+" (events.jsonl, ") {
		t.Errorf("export printed %q", out)
	}
	out, err = custodyCLI(t, dir, "verify-export", bundle, "--pubkey", pub)
	if err != nil {
		t.Fatalf("verify-export: %v\n%s", err, out)
	}
	if got := elapsed.ReplaceAllString(out, "in T\n"); !regexp.MustCompile(`^verify-export OK: .*/evidence: 25 rows \(25 events\), 1 files, 1 chains, key custody\+[0-9a-f]{8}, 0 findings in T\n$`).MatchString(got) {
		t.Errorf("verify-export printed %q", out)
	}

	// The key text works as well as the file.
	key, err := os.ReadFile(pub)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := custodyCLI(t, dir, "verify-export", bundle, "--pubkey", strings.TrimSpace(string(key)), "--format", "json"); err != nil {
		t.Errorf("verify-export with the key text: %v", err)
	}

	// A query export in parquet.
	qb := filepath.Join(dir, "secrets")
	out, err = custodyCLI(t, dir, "export", "--from", "2025-05-06", "--to", "2025-05-07", "--query", "secret-access", "--format", "parquet", "--out", qb)
	if err != nil {
		t.Fatalf("query export: %v", err)
	}
	if !strings.HasPrefix(out, "export: 25 events in 25 rows from 1 chains written to "+qb+" (events.parquet, ") {
		t.Errorf("query export printed %q", out)
	}
	if out, err := custodyCLI(t, dir, "verify-export", qb, "--pubkey", pub); err != nil {
		t.Errorf("verify-export of the query bundle: %v\n%s", err, out)
	}

	// Tamper: change one user in line 3.
	data := filepath.Join(bundle, "events.jsonl")
	b, err := os.ReadFile(data)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(b), "\n")
	lines[2] = strings.Replace(lines[2], `"actor_name":"alice@contoso.com"`, `"actor_name":"bob@contoso.com"`, 1)
	if err := os.WriteFile(data, []byte(strings.Join(lines, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = custodyCLI(t, dir, "verify-export", bundle, "--pubkey", pub)
	if _, silent := err.(silentError); !silent {
		t.Fatalf("tampered bundle: err = %v, want exit 1", err)
	}
	ls := strings.Split(strings.TrimSpace(out), "\n")
	if len(ls) != 3 || !strings.HasPrefix(ls[0], "modified: events.jsonl line 3: chain ") || !strings.HasPrefix(ls[1], "file_altered: events.jsonl: SHA-256 ") ||
		!strings.HasPrefix(ls[2], "verify-export FAILED: ") || !strings.Contains(ls[2], ", 2 findings in ") {
		t.Errorf("tampered bundle report:\n%s", out)
	}

	// A second export into the same directory fails and is logged.
	if _, err := custodyCLI(t, dir, "export", "--from", "2025-05-06", "--to", "2025-05-07", "--out", bundle); err == nil || !strings.Contains(err.Error(), "output directory is not empty") {
		t.Errorf("export into a used directory: %v", err)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"export", "--from", "2025-05-06", "--to", "2025-05-07", "--format", "xml", "--out", filepath.Join(dir, "x")}, `--format "xml": want one of jsonl, csv, parquet, ocsf`},
		{[]string{"export", "--from", "2025-05-07", "--to", "2025-05-06", "--out", filepath.Join(dir, "x")}, "is not before"},
		{[]string{"export", "--from", "2025-05-06", "--to", "2025-05-07", "--param", "a=b", "--out", filepath.Join(dir, "x")}, "--param needs --query"},
		{[]string{"export", "--from", "2025-05-06", "--to", "2025-05-07", "--query", "nope", "--out", filepath.Join(dir, "x")}, `unknown query "nope"`},
		{[]string{"export", "--from", "2025-05-06", "--to", "2025-05-07", "--query", "principal-timeline", "--out", filepath.Join(dir, "x")}, "needs --param actor="},
		{[]string{"verify-export", "--pubkey", pub}, "give exactly one bundle directory"},
		{[]string{"verify-export", bundle, "--pubkey", filepath.Join(dir, "missing.pub")}, "--pubkey: open"},
	} {
		_, err := custodyCLI(t, dir, tc.args...)
		var ue usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("custody %s: err = %v, want usage error %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}

	eng := s.engine()
	defer eng.Close(context.Background())
	for q, want := range map[string]uint64{
		"SELECT count() FROM custody.custody_log WHERE action = 'export' AND result = 'ok' AND actor = 'auditor@contoso.com' AND detail LIKE 'from=2025-05-06T00:00:00Z to=2025-05-07T00:00:00Z chain=\"\" format=jsonl % rows=25 %'": 1,
		"SELECT count() FROM custody.custody_log WHERE action = 'export' AND result = 'ok' AND detail LIKE '% query=secret-access params=[] rows=25 %'":                                                                               1,
		"SELECT count() FROM custody.custody_log WHERE action = 'export' AND result LIKE 'failed: output directory is not empty: %'":                                                                                                  1,
	} {
		if got := queryCount(t, eng, q); got != want {
			t.Errorf("%s = %d, want %d", q, got, want)
		}
	}
}
