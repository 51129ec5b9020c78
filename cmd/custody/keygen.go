package main

import (
	"context"
	"errors"
	"fmt"
	"os"

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
			skeyPath, vkeyPath := cmd.String(flagSigningKey), cmd.String(flagVerifyKey)
			if !cmd.Bool("force") {
				for _, p := range []string{skeyPath, vkeyPath} {
					if _, err := os.Stat(p); err == nil {
						return fmt.Errorf("%s exists; refusing to replace a signing key (use --force)", p)
					} else if !errors.Is(err, os.ErrNotExist) {
						return err
					}
				}
			}
			skey, vkey, err := storage.GenerateKey(cmd.String("name"))
			if err != nil {
				return err
			}
			if err := os.WriteFile(skeyPath, []byte(skey+"\n"), 0o600); err != nil {
				return fmt.Errorf("write signing key: %w", err)
			}
			if err := os.WriteFile(vkeyPath, []byte(vkey+"\n"), 0o644); err != nil {
				return fmt.Errorf("write verification key: %w", err)
			}
			fmt.Fprintf(cmd.Root().Writer, "signing key:      %s (keep private)\nverification key: %s\n%s\n", skeyPath, vkeyPath, vkey)
			return nil
		},
	}
}
