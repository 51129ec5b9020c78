package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/custody-audit/custody/internal/chdbtest"
	"github.com/custody-audit/custody/internal/storetest"
	"github.com/custody-audit/custody/storage"
	"github.com/custody-audit/custody/storage/chdb"
)

// TestCommandAccounts runs each store command with nothing but the
// credentials of the least-privileged account that can do its work
// (commandUser): verify and export as the collector (writer role), the
// investigator commands as the reader, retention apply and holds as the
// retention account. On a server the command gets only that account's
// DSN. On the embedded store the test owns the store's engine (as a
// running collector would), and the credentials file the commands attach
// with holds only that account's password: a command that connected as
// anyone else, the admin included, would fail. On a server, the reader
// cannot do verify's or export's work (they write the custody log and
// verify_runs).
func TestCommandAccounts(t *testing.T) { storetest.Run(t, testCommandAccounts) }

func testCommandAccounts(t *testing.T, b storetest.Backend) {
	s := newCLIStore(t, b)
	archive := filepath.Join(s.dir, "archive")
	writePT1H(t, archive, 5)
	for _, args := range [][]string{{"keygen"}, {"init"}, {"backfill", archive}} {
		s.mustCLI(args...)
	}
	only := func(string) {}
	if b == storetest.Embedded {
		store := filepath.Join(s.dir, "store")
		owner, err := chdb.Open(context.Background(), chdb.Options{Dir: store, HostPath: chdbtest.HostPath(t), Access: storetest.Access(t, storage.SchemaOptions{})})
		if err != nil {
			t.Fatal(err)
		}
		defer owner.Close(context.Background())
		all, err := chdb.ReadCredentials(store)
		if err != nil {
			t.Fatal(err)
		}
		only = func(user string) {
			t.Helper()
			c := chdb.NewCredentials(map[string]string{user: all.Passwords[user]})
			if err := chdb.WriteJSONAtomic(filepath.Join(store, chdb.EngineDir, chdb.CredentialsFile), c, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"verify"}, []string{"verify OK: 1 chains, 5 rows, 2 checkpoints", ", 0 findings in "}},
		{[]string{"export", "--from", "2025-05-06", "--to", "2025-05-07", "--out", filepath.Join(s.dir, "bundle")}, []string{"export: 5 events in 5 rows from 1 chains"}},
		{[]string{"status"}, []string{"CHAIN "}},
		{[]string{"query", "aks-exec", "--from", "2025-05-06", "--to", "2025-05-07", "--format", "csv"}, []string{"event_time,actor"}},
		{[]string{"timeline", "--actor", "alice@contoso.com", "--from", "2025-05-06", "--to", "2025-05-07", "--format", "csv"}, []string{"alice@contoso.com"}},
		{[]string{"sql", "--format", "tsv", "SELECT count() FROM custody.events"}, []string{"count()\n5\n"}},
		{[]string{"retention", "plan"}, []string{"would purge 0 of 1 partitions"}},
		{[]string{"hold", "add", "--actor", "alice@contoso.com", "--reason", "case 1"}, []string{"placed: actor alice@contoso.com (case 1)"}},
		{[]string{"hold", "list"}, []string{"case 1"}},
		// retention apply appends (purge records), so on the embedded
		// store it opens the engine itself rather than attach: there
		// only the server checks its account.
		{[]string{"retention", "apply"}, []string{"retention apply: nothing to purge"}},
	} {
		if b == storetest.Embedded && tc.args[0] == "retention" && tc.args[1] == "apply" {
			continue
		}
		user := commandUser(tc.args...)
		only(user)
		out, err := s.cli(tc.args...)
		if err != nil {
			t.Errorf("custody %s with only %s's credentials: %v\n%s", strings.Join(tc.args, " "), user, err, out)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("custody %s as %s printed\n%s\nwant %q in it", strings.Join(tc.args, " "), user, out, w)
			}
		}
	}
	if b == storetest.Embedded {
		// The check has teeth: with the reader's credentials alone,
		// verify cannot connect as the collector.
		only(storage.UserInvestigator)
		if out, err := s.cli("verify"); err == nil || !strings.Contains(err.Error(), "without account "+storage.UserCollector) {
			t.Errorf("verify with only the reader's credentials: %v\n%s\nwant a refusal naming %s", err, out, storage.UserCollector)
		}
		return
	}
	for _, args := range [][]string{
		{"verify"},
		{"export", "--from", "2025-05-06", "--to", "2025-05-07", "--out", filepath.Join(s.dir, "reader-bundle")},
	} {
		if out, err := s.cliAs(storage.UserInvestigator, args...); err == nil || !strings.Contains(err.Error(), "ACCESS_DENIED") {
			t.Errorf("custody %s as the reader: %v\n%s\nwant ACCESS_DENIED", args[0], err, out)
		}
	}
}
