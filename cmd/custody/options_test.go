package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/custody-audit/custody/storage"
)

// TestRunFunctionsRefuseBeforeOpening calls the commands' run functions
// with options a flag parser could give them: a mistake is a usage error
// (exit 2) saying what is missing, found before the store is opened.
func TestRunFunctionsRefuseBeforeOpening(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		run  func(open func(context.Context) (*storage.Store, error)) error
		want string
	}{
		{"append without files", func(open func(context.Context) (*storage.Store, error)) error {
			return runAppend(ctx, appendOptions{Format: "auto", Batch: 10, Stdout: &bytes.Buffer{},
				Open: func(ctx context.Context) (*ingestion, error) { _, err := open(ctx); return nil, err }})
		}, "append needs at least one file"},
		{"sql without a query", func(open func(context.Context) (*storage.Store, error)) error {
			return runSQL(ctx, sqlOptions{Query: "  ", Format: "table", Stdout: &bytes.Buffer{}, Open: open})
		}, "sql needs a query"},
		{"sql with an empty query on stdin", func(open func(context.Context) (*storage.Store, error)) error {
			return runSQL(ctx, sqlOptions{Query: "-", Stdin: strings.NewReader("\n"), Format: "table", Stdout: &bytes.Buffer{}, Open: open})
		}, "sql needs a query"},
		{"hold release without a reason", func(open func(context.Context) (*storage.Store, error)) error {
			return runHoldRelease(ctx, holdReleaseOptions{ID: "hold-3f2a9c01d4e5", Stdout: &bytes.Buffer{}, Open: open})
		}, "hold release needs --reason"},
		{"config check without a file", func(func(context.Context) (*storage.Store, error)) error {
			return runConfigCheck(ctx, configCheckOptions{LogLevel: "info", MaxRecord: "64MiB", Stdout: &bytes.Buffer{}})
		}, "config check needs --config FILE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opened := false
			err := tc.run(func(context.Context) (*storage.Store, error) {
				opened = true
				return nil, errors.New("opened")
			})
			var ue usageError
			if !errors.As(err, &ue) || err.Error() != tc.want {
				t.Fatalf("err = %v, want the usage error %q", err, tc.want)
			}
			if opened {
				t.Fatal("the store was opened before the options were checked")
			}
		})
	}
}

// TestRunKeygen calls runKeygen directly: it writes the pair and prints
// exactly where, and refuses to replace either file unless forced.
func TestRunKeygen(t *testing.T) {
	dir := t.TempDir()
	o := keygenOptions{SigningKey: filepath.Join(dir, "k"), VerifyKey: filepath.Join(dir, "k.pub"), Name: "custody.contoso.example"}
	var out bytes.Buffer
	o.Stdout = &out
	if err := runKeygen(t.Context(), o); err != nil {
		t.Fatal(err)
	}
	vkey, err := os.ReadFile(o.VerifyKey)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(vkey), "custody.contoso.example+") {
		t.Fatalf("verification key %q does not carry the name", vkey)
	}
	if want := "signing key:      " + o.SigningKey + " (keep private)\nverification key: " + o.VerifyKey + "\n" + string(vkey); out.String() != want {
		t.Fatalf("stdout:\n%s\nwant:\n%s", out.String(), want)
	}
	skey, _ := os.ReadFile(o.SigningKey)
	if err := runKeygen(t.Context(), o); err == nil || !strings.Contains(err.Error(), "refusing to replace a signing key (use --force)") {
		t.Fatalf("second keygen: %v", err)
	}
	if again, _ := os.ReadFile(o.SigningKey); !bytes.Equal(again, skey) {
		t.Fatal("a refused keygen changed the signing key")
	}
	o.Force = true
	if err := runKeygen(t.Context(), o); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(o.SigningKey); bytes.Equal(again, skey) {
		t.Fatal("keygen --force kept the old signing key")
	}
}
