package main

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/custody-audit/custody/event"
	"github.com/custody-audit/custody/internal/chdbtest"
	"github.com/custody-audit/custody/internal/storetest"
	"github.com/custody-audit/custody/storage"
	"github.com/custody-audit/custody/storage/chdb"
	"github.com/custody-audit/custody/storage/engine"
)

// TestCommandsOnTwoShards runs status, a canned query and verify as a user
// runs them against a cluster (storetest.Shards: two servers, Distributed
// tables over plain MergeTree shards): `--cluster` and each command's
// least-privileged account's DSN in a 0600 config file. verify reaches
// every server of the cluster (from system.clusters, with the DSN's
// account) to check its parts: a clean trail passes without a skipped
// part check, and a byte flipped in a part file on shard 2 fails it with
// that part named.
func TestCommandsOnTwoShards(t *testing.T) {
	ctx := context.Background()
	cl := storetest.NewOn(t, "cli", storetest.Shards)
	dir := t.TempDir()
	skey, vkey, err := storage.GenerateKey("cli")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "k.pub"), []byte(vkey), 0o600); err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(dir, "cp")
	st, err := storage.Open(ctx, cl.Eng, storage.Options{Schema: cl.Schema, Signer: signer, CheckpointDir: cp})
	if err != nil {
		t.Fatal(err)
	}
	for i, chain := range []string{"eventhubs/ns/hub/0", "eventhubs/ns/hub/1", "eventhubs/ns/hub/2", "eventhubs/ns/hub/3"} {
		b := storage.Batch{Stream: chain, Offset: 10}
		for j := 1; j <= 10; j++ {
			e := execEvent(100*i + j)
			b.Events = append(b.Events, storage.BatchEvent{Offset: int64(j), Event: e})
		}
		if _, err := st.Append(ctx, b); err != nil {
			t.Fatal(err)
		}
	}

	run := func(user string, args ...string) (string, error) {
		t.Helper()
		cfg := filepath.Join(dir, user+".yaml")
		yaml := fmt.Sprintf("clickhouse: %q\ncluster: %s\n", chdbtest.DSN(t, cl.Server, user), storetest.ClusterName)
		if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		app := newApp()
		var out, errOut bytes.Buffer
		app.Writer, app.ErrWriter = &out, &errOut
		argv := append([]string{"custody", "--config", cfg, "--verify-key", filepath.Join(dir, "k.pub"), "--checkpoint-dir", cp, "--log-level", "warn"}, args...)
		err := app.Run(ctx, argv)
		return out.String() + errOut.String(), err
	}

	out, err := run(storage.UserInvestigator, "status")
	if err != nil {
		t.Fatalf("status: %v\n%s", err, out)
	}
	for _, want := range []string{"on disk on this server of the cluster\n", "eventhubs/ns/hub/0  10", "eventhubs/ns/hub/3  10"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	out, err = run(storage.UserInvestigator, "query", "aks-exec", "--from", "2026-11-27T00:00:00Z", "--to", "2026-11-28T00:00:00Z", "--format", "csv")
	if err != nil {
		t.Fatalf("query: %v\n%s", err, out)
	}
	if n := strings.Count(out, "alice@contoso.com"); n != 40 {
		t.Errorf("aks-exec lists %d of the 40 execs:\n%s", n, out)
	}

	out, err = run(storage.UserCollector, "verify")
	if err != nil || strings.Contains(out, "part_check_skipped") {
		t.Fatalf("verify of a clean cluster: %v\n%s", err, out)
	}

	admin2 := storetest.Connect(t, cl.Servers[1], chdb.AdminUser)
	var part, path string
	q := "SELECT name, path FROM system.parts WHERE active AND database = 'custody' AND table = 'events_local' ORDER BY name LIMIT 1"
	if err := engine.Each(ctx, admin2, q, nil, func(r engine.Rows) error { return r.Scan(&part, &path) }); err != nil || path == "" {
		t.Fatalf("find a part on shard 2: %q %v", path, err)
	}
	file := filepath.Join(path, "data.bin")
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(file, b, 0o640); err != nil {
		t.Fatal(err)
	}
	out, err = run(storage.UserCollector, "verify")
	if err == nil || !strings.Contains(out, "corrupt_part") || !strings.Contains(out, part+" on shard 2") {
		t.Fatalf("verify with a corrupt part on shard 2 (%s): %v\n%s", part, err, out)
	}
}

// execEvent is an exec into a pod, the i-th second of 27 November 2026.
func execEvent(i int) event.Event {
	ts := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Second)
	return event.Event{
		ID: fmt.Sprintf("audit-%04d", i), Time: ts, ReceivedTime: ts.Add(time.Minute),
		Service: event.ServiceAKS, Category: "kube-audit", SourceKind: "eventhubs", SourceFormat: "resource-log",
		SourcePosition: fmt.Sprintf("sequence %d", i), SubscriptionID: "sub", ResourceGroup: "rg",
		Provider: "Microsoft.ContainerService", ResourceType: "managedClusters", ResourceName: "aks1",
		ResourceID: "/subscriptions/sub/resourcegroups/rg/providers/microsoft.containerservice/managedclusters/aks1",
		Actor:      event.Actor{Name: "alice@contoso.com", Type: event.ActorUser},
		SourceIP:   netip.MustParseAddr("203.0.113.7"), UserAgent: "kubectl/v1.31",
		Action: "k8s:pods/exec:create", ActionClass: event.ClassExec,
		Target:  event.Target{Resource: "pods", Subresource: "exec", Namespace: "prod", Name: "web-0"},
		Outcome: event.OutcomeSuccess, StatusCode: 101, Tags: []string{event.TagExecIntoContainer},
		Raw: []byte(fmt.Sprintf(`{"auditID":"audit-%04d"}`, i)), RawFormat: "json",
	}
}
