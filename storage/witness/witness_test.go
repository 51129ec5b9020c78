package witness_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custody-audit/custody/event"
	"github.com/custody-audit/custody/internal/azurite"
	"github.com/custody-audit/custody/internal/storetest"
	"github.com/custody-audit/custody/storage"
	"github.com/custody-audit/custody/storage/witness"
)

func appendN(t *testing.T, st *storage.Store, stream string, from, to int) {
	t.Helper()
	b := storage.Batch{Stream: stream, Offset: int64(to)}
	for i := from; i <= to; i++ {
		ts := time.Date(2026, 11, 27, 10, 0, i, 0, time.UTC)
		b.Events = append(b.Events, storage.BatchEvent{Offset: int64(i), Event: event.Event{ID: fmt.Sprint("e", i), Time: ts, ReceivedTime: ts,
			Service: event.ServiceAKS, SourceIP: netip.MustParseAddr("203.0.113.7"), Raw: []byte(fmt.Sprintf(`{"i":%d}`, i)), RawFormat: "json"}})
	}
	if _, err := st.Append(context.Background(), b); err != nil {
		t.Fatal(err)
	}
}

// TestPublishedCheckpointsCatchTruncation publishes checkpoints to a Blob
// container (Azurite, through the real azblob client), truncates the
// store with its checkpoints and rolls the checkpoint file back: verify
// alone passes, verify against the published checkpoints fails.
func TestPublishedCheckpointsCatchTruncation(t *testing.T) {
	ctx := context.Background()
	az := azurite.Start(t)
	if _, err := az.Client.CreateContainer(ctx, "custody-checkpoints", nil); err != nil {
		t.Fatal(err)
	}
	cfg := witness.DefaultConfig()
	cfg.ConnectionString, cfg.Container, cfg.Prefix = az.ConnectionString, "custody-checkpoints", "prod/"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	w, err := witness.New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := storetest.New(t, "witness")
	publish := func() {
		t.Helper()
		cps, err := f.Store.LatestCheckpoints(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, cp := range cps {
			if err := w.Publish(ctx, cp); err != nil {
				t.Fatal(err)
			}
		}
	}
	appendN(t, f.Store, "eh/p0", 1, 10)
	appendN(t, f.Store, "eh/p1", 1, 3)
	publish()
	cpFile := filepath.Join(f.CheckpointDir, "eh%2Fp0.checkpoint")
	older, err := os.ReadFile(cpFile)
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, f.Store, "eh/p0", 11, 25)
	publish()
	publish() // the same checkpoints again: nothing changes

	pub, err := w.Newest(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(pub) != 2 || !strings.HasSuffix(pub[0].Source, "prod/eh%2Fp0/00000000000000000025.checkpoint") {
		t.Fatalf("published: %+v", pub)
	}
	opts := storage.VerifyOptions{Verifier: f.Verifier, CheckpointDir: f.CheckpointDir, External: pub}
	rep, err := f.Store.Verify(ctx, opts)
	if err != nil || !rep.OK() || len(rep.Findings) != 0 || len(rep.Consistency) != 2 {
		t.Fatalf("before: %v %v %+v", err, rep.Findings, rep.Consistency)
	}

	for _, q := range []string{
		"ALTER TABLE custody.events DELETE WHERE chain = 'eh/p0' AND seq > 10 SETTINGS mutations_sync = 2",
		"ALTER TABLE custody.checkpoints DELETE WHERE chain = 'eh/p0' AND tree_size > 10 SETTINGS mutations_sync = 2",
	} {
		if err := f.Eng.Exec(ctx, q, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(cpFile, older, 0o600); err != nil {
		t.Fatal(err)
	}
	alone, err := f.Store.Verify(ctx, storage.VerifyOptions{Verifier: f.Verifier, CheckpointDir: f.CheckpointDir})
	if err != nil || !alone.OK() {
		t.Fatalf("the truncation is consistent within the store and the directory: %v %v", err, alone.Findings)
	}
	// the store's host re-publishes what it now holds: nothing is
	// overwritten, the newest published checkpoint stays at 25
	publish()
	if pub, err = w.Newest(ctx, "eh/p0"); err != nil || len(pub) != 1 {
		t.Fatalf("published: %+v %v", pub, err)
	}
	opts.External = pub
	rep, err = f.Store.Verify(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[storage.FindingKind]bool{}
	for _, fd := range rep.Findings {
		kinds[fd.Kind] = true
	}
	if rep.OK() || !kinds[storage.KindTruncated] || !kinds[storage.KindInconsistent] {
		t.Fatalf("against the published checkpoints: %v", rep.Findings)
	}

	// a rewritten chain signed again cannot replace a published checkpoint
	forged := storage.Checkpoint{Chain: "eh/p1", Size: 3, Note: []byte("another note\n")}
	if err := w.Publish(ctx, forged); !errors.Is(err, witness.ErrForked) {
		t.Fatalf("publish a different checkpoint at a published size: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	const secret = "c2VjcmV0"
	for _, tc := range []struct {
		name    string
		cfg     witness.Config
		wantErr string
	}{
		{"sas", witness.Config{ContainerURL: "https://a.blob.core.windows.net/c?sv=1&sig=" + secret, Interval: time.Minute}, ""},
		{"entra", witness.Config{ContainerURL: "https://a.blob.core.windows.net/c", Credential: "managed-identity", Interval: time.Minute}, ""},
		{"connection string", witness.Config{ConnectionString: "AccountKey=" + secret, Container: "c", Interval: time.Minute}, ""},
		{"none", witness.Config{Interval: time.Minute}, "container_url or connection_string required"},
		{"both", witness.Config{ContainerURL: "https://a/c", ConnectionString: "AccountKey=" + secret, Interval: time.Minute}, "give connection_string or container_url, not both"},
		{"no container", witness.Config{ConnectionString: "AccountKey=" + secret, Interval: time.Minute}, "container: required with connection_string"},
		{"no auth", witness.Config{ContainerURL: "https://a.blob.core.windows.net/c", Interval: time.Minute}, "container_url: needs a SAS query or a credential"},
		{"bad credential", witness.Config{ContainerURL: "https://a.blob.core.windows.net/c", Credential: "password", Interval: time.Minute}, `credential: "password" is not one of managed-identity, workload-identity, client-secret, azure-cli`},
		{"bad url", witness.Config{ContainerURL: "ftp://a/c?sig=" + secret, Interval: time.Minute}, "container_url: not an http(s) URL"},
		{"interval", witness.Config{ConnectionString: "AccountKey=" + secret, Container: "c"}, "interval: 0s must be at least 1s"},
	} {
		err := tc.cfg.Validate()
		if tc.wantErr == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		if err == nil || err.Error() != tc.wantErr {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.wantErr)
		}
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Errorf("%s: error reveals the secret", tc.name)
		}
	}
}
