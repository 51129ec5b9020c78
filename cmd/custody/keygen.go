package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v3"

	"github.com/custody-audit/custody/storage"
)

func keygenCommand() *cli.Command {
	return &cli.Command{
		Name:  "keygen",
		Usage: "create the Ed25519 key pair that signs checkpoints",
		Description: `Writes the signing key (--signing-key, mode 0600) and the verification key
(--verify-key) in the Go signed-note format. Give the verification key to
auditors; keep the signing key only where the collector runs.

   $ custody keygen --name custody.contoso.example`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "name", Value: "custody", Usage: "key name shown in signatures", Sources: cli.EnvVars("CUSTODY_KEY_NAME")},
			&cli.BoolFlag{Name: "force", Usage: "overwrite existing key files"},
		},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			return runKeygen(ctx, keygenOptions{
				SigningKey: cmd.String(flagSigningKey), VerifyKey: cmd.String(flagVerifyKey),
				Name: cmd.String("name"), Force: cmd.Bool("force"), Stdout: cmd.Root().Writer,
			})
		},
	}
}

// keygenOptions is the key pair `custody keygen` writes.
type keygenOptions struct {
	// SigningKey and VerifyKey are the files written (0600 and 0644).
	SigningKey, VerifyKey string
	// Name is the key name shown in signatures.
	Name string
	// Force replaces existing key files.
	Force  bool
	Stdout io.Writer
}

// runKeygen writes a new Ed25519 key pair, refusing to replace a key
// unless forced, and prints the verification key.
func runKeygen(_ context.Context, o keygenOptions) error {
	if !o.Force {
		for _, p := range []string{o.SigningKey, o.VerifyKey} {
			if _, err := os.Stat(p); err == nil {
				return fmt.Errorf("%s exists; refusing to replace a signing key (use --force)", p)
			} else if !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
	}
	skey, vkey, err := storage.GenerateKey(o.Name)
	if err != nil {
		return err
	}
	if err := writeKeyFile(o.SigningKey, skey, 0o600); err != nil {
		return fmt.Errorf("write signing key: %w", err)
	}
	if err := writeKeyFile(o.VerifyKey, vkey, 0o644); err != nil {
		return fmt.Errorf("write verification key: %w", err)
	}
	fmt.Fprintf(o.Stdout, "signing key:      %s (keep private)\nverification key: %s\n%s\n", o.SigningKey, o.VerifyKey, vkey)
	return nil
}

// writeKeyFile writes key to a new file in path's directory with exactly
// mode perm (whatever the umask, and whatever the mode of a file it
// replaces), syncs it and renames it over path: a replaced signing key
// never keeps the looser mode of the file it replaces.
func writeKeyFile(path, key string, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.WriteString(key + "\n"); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// checkSigningKeyMode refuses a signing key that users other than its
// owner and group may read or write (0600 is what keygen writes; group
// read is allowed for secrets mounted by Kubernetes with defaultMode
// 0440).
func checkSigningKeyMode(path string) error {
	info, err := os.Stat(path)
	if err != nil {
		return nil // LoadSigner reports a missing key
	}
	if m := info.Mode().Perm(); m&0o007 != 0 {
		return fmt.Errorf("signing key %s has mode %04o: other users can read or change it; `chmod 600 %s` (and consider it exposed: make a new one with `custody keygen --force`)", path, m, path)
	}
	return nil
}
