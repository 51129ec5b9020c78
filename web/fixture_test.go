package web

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/custody-audit/custody/internal/chdbtest"
	"github.com/custody-audit/custody/internal/incidenttest"
	"github.com/custody-audit/custody/storage"
	"github.com/custody-audit/custody/storage/engine"
)

// The demo incident (docs/incident.md, deploy/local/incident): one day in
// which dana.dev@contoso.com is phished and used from 203.0.113.77.
const (
	incidentFrom = "2025-06-12T00:00:00Z"
	incidentTo   = "2025-06-13T00:00:00Z"
	phished      = "dana.dev@contoso.com"
	attackerIP   = "203.0.113.77"
	incidentRows = 172
)

// fixture is a store holding the incident and a server over it.
type fixture struct {
	eng      engine.Engine
	store    *storage.Store
	signer   note.Signer
	verifier note.Verifier
	vkey     string // the verifier's text
	dir      string // checkpoint directory
	srv      *Server
}

// newFixture loads the incident into a fresh embedded store the way the
// demo does (normalize each delivered file, one chain per file, Append)
// and opens a read-only page over it, with exports on.
func newFixture(t *testing.T, opts Options) *fixture {
	t.Helper()
	return newFixtureDeliveries(t, opts, false)
}

// newFixtureDeliveries is newFixture, with the second delivery of the
// kube-audit archive (loadSecondDelivery) stored too if second.
func newFixtureDeliveries(t *testing.T, opts Options, second bool) *fixture {
	t.Helper()
	ctx := context.Background()
	f := &fixture{eng: chdbtest.Open(t, ""), dir: t.TempDir()}
	if _, err := storage.Migrate(ctx, f.eng, storage.SchemaOptions{}, "web-test"); err != nil {
		t.Fatal(err)
	}
	skey, vkey, err := storage.GenerateKey("web-test")
	if err != nil {
		t.Fatal(err)
	}
	f.vkey = vkey
	if f.signer, err = note.NewSigner(skey); err != nil {
		t.Fatal(err)
	}
	if f.verifier, err = note.NewVerifier(vkey); err != nil {
		t.Fatal(err)
	}
	if f.store, err = storage.Open(ctx, f.eng, storage.Options{Signer: f.signer, CheckpointDir: f.dir, Actor: "web-test"}); err != nil {
		t.Fatal(err)
	}
	loadIncident(ctx, t, f.store)
	if second {
		loadSecondDelivery(ctx, t, f.store)
	}
	opts.Store = f.store
	opts.Verifier = f.verifier
	opts.VerifierKey = f.vkey
	opts.CheckpointDir = f.dir
	if opts.Now == nil {
		opts.Now = func() time.Time { return time.Date(2025, 6, 13, 9, 0, 0, 0, time.UTC) }
	}
	opts.Signer, opts.TempDir = f.signer, t.TempDir()
	if f.srv, err = New(opts); err != nil {
		t.Fatal(err)
	}
	return f
}

func loadIncident(ctx context.Context, t *testing.T, st *storage.Store) {
	t.Helper()
	if stored := incidenttest.Load(ctx, t, st, incidenttest.Options{Prefix: "incident/"}); stored != incidentRows {
		t.Fatalf("incident stored %d events, want %d", stored, incidentRows)
	}
}

// Second delivery of the incident's AKS audit archive: the same records,
// as a second diagnostic setting would send them through Event Hubs,
// each file a chain named as the Event Hubs source names its streams.
const (
	secondPrefix = "eventhubs/incident-ns/second-setting/$Default/"
	secondRows   = 145 // the events of the kube-audit archive
)

// loadSecondDelivery stores the incident's kube-audit archive again
// through a second path, as secondPrefix chains.
func loadSecondDelivery(ctx context.Context, t *testing.T, st *storage.Store) {
	t.Helper()
	if stored := incidenttest.Load(ctx, t, st, incidenttest.Options{Prefix: secondPrefix, Only: "archive"}); stored != secondRows {
		t.Fatalf("second delivery stored %d events, want %d", stored, secondRows)
	}
}

// get runs a GET through the server's handler from a loopback client.
func (f *fixture) get(t *testing.T, path string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest("GET", "http://127.0.0.1"+path, nil)
	w := httptest.NewRecorder()
	f.srv.ServeHTTP(w, req)
	return w
}
