// Package storetest gives tests a real, initialised, signing store on the
// embedded engine: schema migrated, a fresh signing key pair, a checkpoint
// directory.
package storetest

import (
	"context"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/custody-audit/custody/internal/chdbtest"
	"github.com/custody-audit/custody/storage"
	"github.com/custody-audit/custody/storage/engine"
)

// Fixture is an open store and what it was made with.
type Fixture struct {
	Eng           engine.Engine
	Store         *storage.Store
	Signer        note.Signer
	Verifier      note.Verifier
	CheckpointDir string
}

// New opens a fresh store; actor names the test in the custody log.
func New(t testing.TB, actor string) *Fixture {
	t.Helper()
	ctx := context.Background()
	eng := chdbtest.Open(t, "")
	if _, err := storage.Migrate(ctx, eng, storage.SchemaOptions{}, actor); err != nil {
		t.Fatal(err)
	}
	signer, verifier := Keys(t, actor)
	f := &Fixture{Eng: eng, Signer: signer, Verifier: verifier, CheckpointDir: t.TempDir()}
	st, err := storage.Open(ctx, eng, storage.Options{Signer: signer, CheckpointDir: f.CheckpointDir, Actor: actor})
	if err != nil {
		t.Fatal(err)
	}
	f.Store = st
	return f
}

// Keys makes a signing key pair named name.
func Keys(t testing.TB, name string) (note.Signer, note.Verifier) {
	t.Helper()
	skey, vkey, err := storage.GenerateKey(name)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return signer, verifier
}
