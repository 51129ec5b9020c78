package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/custody-audit/custody/event"
	"github.com/custody-audit/custody/internal/storetest"
	"github.com/custody-audit/custody/storage"
)

// seedRetentionStore appends, through the store API, three events per
// month to one chain: two months long past any retention and the current
// one. Mallory acts in the second month.
func seedRetentionStore(t *testing.T, s *cliStore, now time.Time) {
	t.Helper()
	ctx := context.Background()
	dir := s.dir
	eng := s.engine()
	defer eng.Close(ctx)
	signer, err := storage.LoadSigner(filepath.Join(dir, "k"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := storage.Open(ctx, eng, storage.Options{Signer: signer, CheckpointDir: filepath.Join(dir, "cp"), Actor: "seed"})
	if err != nil {
		t.Fatal(err)
	}
	seq := 0
	for _, m := range []struct {
		day   time.Time
		actor string
	}{
		{time.Date(2020, 1, 15, 9, 0, 0, 0, time.UTC), "alice@contoso.com"},
		{time.Date(2020, 2, 15, 9, 0, 0, 0, time.UTC), "mallory@contoso.com"},
		{now.Add(-3 * time.Hour), "alice@contoso.com"},
	} {
		b := storage.Batch{Stream: "eh/aks-audit/0"}
		for i := 0; i < 3; i++ {
			seq++
			at := m.day.Add(time.Duration(i) * time.Minute)
			b.Events = append(b.Events, storage.BatchEvent{Offset: int64(seq), Event: event.Event{
				ID: fmt.Sprintf("audit-%d", seq), Time: at.Add(-time.Second), ReceivedTime: at,
				Service: event.ServiceAKS, Category: "kube-audit", SourceKind: "eventhubs", SourceFormat: "resource-log",
				ResourceID:  "/subscriptions/sub/resourcegroups/rg/providers/microsoft.containerservice/managedclusters/aks1",
				Actor:       event.Actor{Name: m.actor, Type: event.ActorUser},
				Action:      "k8s:secrets:get",
				ActionClass: event.ClassRead, Outcome: event.OutcomeSuccess, StatusCode: 200,
				Raw: []byte(fmt.Sprintf(`{"auditID":"audit-%d"}`, seq)), RawFormat: "json",
			}})
			b.Offset = int64(seq)
		}
		if _, err := st.Append(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRetentionAndHoldCommands runs retention plan and apply, holds and
// verify after purges, on both backends (on a server, apply and holds as
// the retention account).
func TestRetentionAndHoldCommands(t *testing.T) { storetest.Run(t, testRetentionAndHoldCommands) }

func testRetentionAndHoldCommands(t *testing.T, b storetest.Backend) {
	s := newCLIStore(t, b)
	t.Setenv("CUSTODY_ACTOR", "records-officer")
	dir := s.dir
	retentionCLI := func(_ *testing.T, _ string, args ...string) (string, error) { return s.cli(args...) }
	for _, args := range [][]string{{"keygen"}, {"init"}} {
		s.mustCLI(args...)
	}
	now := time.Now().UTC()
	current := now.Add(-3 * time.Hour).Format("200601")
	seedRetentionStore(t, s, now)

	out, err := retentionCLI(t, dir, "hold", "add", "--actor", "Mallory@contoso.com", "--reason", "case 2026-114")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`^(hold-[0-9a-f]{12}) placed: actor Mallory@contoso.com \(case 2026-114\)\n$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("hold add printed %q", out)
	}
	holdID := m[1]

	// Usage mistakes are exit-2 errors before the store is touched.
	for _, args := range [][]string{
		{"hold", "add", "--actor", "x"},
		{"hold", "add", "--actor", "x", "--resource", "/subscriptions/s", "--reason", "r"},
		{"hold", "add", "--from", "2026-01-01", "--reason", "r"},
		{"hold", "release", holdID},
		{"retention", "plan", "--min-days", "0"},
	} {
		var ue usageError
		if _, err := retentionCLI(t, dir, args...); !errors.As(err, &ue) {
			t.Errorf("custody %s: %v, want a usage error", strings.Join(args, " "), err)
		}
	}

	out, err = retentionCLI(t, dir, "retention", "plan")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"\n202001  PURGE  3 rows, received 2020-01-15 to 2020-01-15, newest 2020-01-15\n    past retention: aks/kube-audit min 400 days ended 2021-02-18\n    chain eh/aks-audit/0: seq 1..3, 3 rows (aks/kube-audit 3)\n",
		"\n202002  keep   3 rows, received 2020-02-15 to 2020-02-15, newest 2020-02-15\n    held: " + holdID + " keeps 3 rows (actor Mallory@contoso.com; case 2026-114)\n",
		"\n" + current + "  keep ",
		"\nwould purge 1 of 3 partitions, 3 of 9 rows\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("plan lacks %q:\n%s", want, out)
		}
	}

	// A policy file (or the --config file's retention section) and flags.
	policy := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policy, []byte("retention:\n  min_days: 400\n  rules:\n    - {service: aks, category: kube-audit, min_days: 36500}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--policy", policy}, "would purge 0 of 3 partitions, 0 of 9 rows\n"},
		{[]string{"--policy", policy, "--format", "json"}, `"purge":false`},
		{[]string{"--min-days", "10000"}, "would purge 0 of 3 partitions"},
		{[]string{"--max-days", "500"}, "202001  PURGE  3 rows, received 2020-01-15 to 2020-01-15, newest 2020-01-15, OVERDUE\n"},
	} {
		out, err := retentionCLI(t, dir, append([]string{"retention", "plan"}, tc.args...)...)
		if err != nil || !strings.Contains(out, tc.want) {
			t.Errorf("plan %v: %v, want %q in:\n%s", tc.args, err, tc.want, out)
		}
	}
	if err := os.WriteFile(policy, []byte("retention:\n  rules:\n    - {service: aks, min_days: -3}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var ue usageError
	if _, err := retentionCLI(t, dir, "retention", "plan", "--policy", policy); !errors.As(err, &ue) || !strings.Contains(err.Error(), "retention.rules[0].min_days: must be 0 (inherit) or a number of days, got -3") {
		t.Errorf("bad policy: %v", err)
	}

	// Nothing within retention goes, even by name.
	_, err = retentionCLI(t, dir, "retention", "apply", "--partition", current)
	if !errors.Is(err, storage.ErrRetained) {
		t.Fatalf("apply of the current month: %v, want ErrRetained", err)
	}

	out, err = retentionCLI(t, dir, "retention", "apply")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^purged partition 202001: 3 rows \(purge-202001-[0-9a-f]{12}\)\n    chain eh/aks-audit/0: seq 1\.\.3, 3 rows\nretention apply: 1 partitions, 3 rows purged; custody verify reports them as purged\n$`).MatchString(out) {
		t.Fatalf("apply printed %q", out)
	}
	out, err = retentionCLI(t, dir, "verify")
	if err != nil {
		t.Fatalf("verify after purge: %v\n%s", err, out)
	}
	if !strings.HasPrefix(out, "purged: chain eh/aks-audit/0 seq 1: rows 1..3 (3, partition 202001, received 2020-01-15 to 2020-01-15) purged under retention at ") ||
		!strings.Contains(out, "verify OK: 1 chains, 6 rows") {
		t.Fatalf("verify printed %q", out)
	}

	out, err = retentionCLI(t, dir, "hold", "list")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^ID +STATUS +HOLDS +REASON +PLACED +BY\n` + holdID + ` +active +actor Mallory@contoso.com +case 2026-114 +\S+ +records-officer\n$`).MatchString(out) {
		t.Fatalf("hold list printed %q", out)
	}
	if out, err = retentionCLI(t, dir, "hold", "release", holdID, "--reason", "case closed"); err != nil || out != holdID+" released: actor Mallory@contoso.com (case closed)\n" {
		t.Fatalf("hold release: %q %v", out, err)
	}
	if out, err = retentionCLI(t, dir, "hold", "list"); err != nil || out != "ID  STATUS  HOLDS  REASON  PLACED  BY\n" {
		t.Fatalf("hold list after release: %q %v", out, err)
	}
	if out, err = retentionCLI(t, dir, "hold", "list", "--all"); err != nil || !strings.Contains(out, "released ") {
		t.Fatalf("hold list --all: %q %v", out, err)
	}
	out, err = retentionCLI(t, dir, "retention", "apply", "--format", "json")
	if err != nil || !strings.Contains(out, `"purged":["202002"],"rows":3`) {
		t.Fatalf("second apply: %v %s", err, out)
	}
	if out, err = retentionCLI(t, dir, "verify"); err != nil || !strings.Contains(out, "verify OK: 1 chains, 3 rows") {
		t.Fatalf("verify after second purge: %v\n%s", err, out)
	}
	if out, err = retentionCLI(t, dir, "sql", "--format", "tsv", "SELECT action, result FROM custody.custody_log WHERE action LIKE 'retention.%' OR action LIKE 'hold.%' ORDER BY at"); err != nil {
		t.Fatal(err)
	} else if want := "hold.add\tok\nretention.purge\trefused\nretention.purge\tok\nhold.release\tok\nretention.purge\tok\n"; !strings.Contains(out, want) {
		t.Errorf("custody log:\n%s\nwant\n%s", out, want)
	}
}
