package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/urfave/cli/v3"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/term"

	"github.com/custody-audit/custody/bundle"
)

// verifyExportOptions holds what `custody verify-export` needs.
type verifyExportOptions struct {
	Dir    string
	PubKey string // a verification key file, or the key itself
	Format string // text or json
	Stdout io.Writer
	Stderr io.Writer
	// Progress draws a progress bar on Stderr.
	Progress bool
}

const verifyExportUsageText = `custody verify-export <dir> --pubkey <key file or key> [--format {text|json}]

Checks an export bundle offline, without the store: the manifest's
signature, the SHA-256, size and row count of every file, each row's hash
recomputed from its fields, the links between consecutive rows, and each
chain's Merkle range proof against its signed checkpoint. Reports every
altered, missing or added file, line and row, by file, line and sequence
number, and exits 1 if anything fails.

It needs no access to the store, so it cannot write to the custody log:
keep its output with the bundle (--format json) as the record of the check.

Examples:
  $ custody verify-export ./evidence --pubkey custody.pub
  $ custody verify-export ./evidence --pubkey 'custody+1a2b3c4d+AUx…' --format json`

func verifyExportCommand() *cli.Command {
	return &cli.Command{
		Name:      "verify-export",
		Usage:     "check an export bundle offline with the store's public key",
		UsageText: verifyExportUsageText,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "pubkey", Usage: "the store's verification key: a file from custody keygen, or the key text", Required: true},
			&cli.StringFlag{Name: "format", Value: "text", Usage: "{text|json}"},
		},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			if cmd.NArg() != 1 {
				return usageError{errors.New("verify-export: give exactly one bundle directory")}
			}
			return runVerifyExport(ctx, verifyExportOptions{
				Dir: cmd.Args().First(), PubKey: cmd.String("pubkey"), Format: cmd.String("format"),
				Stdout: cmd.Root().Writer, Stderr: os.Stderr, Progress: term.IsTerminal(int(os.Stderr.Fd())),
			})
		},
	}
}

// loadPubKey reads a verification key from a file, or takes the argument
// as the key itself when it is one.
func loadPubKey(s string) (note.Verifier, error) {
	b, err := os.ReadFile(s)
	if err == nil {
		v, verr := note.NewVerifier(strings.TrimSpace(string(b)))
		if verr != nil {
			return nil, fmt.Errorf("verify-export: %s is not a verification key: %w", s, verr)
		}
		return v, nil
	}
	if v, verr := note.NewVerifier(strings.TrimSpace(s)); verr == nil {
		return v, nil
	}
	return nil, fmt.Errorf("verify-export: --pubkey: %w", err)
}

// runVerifyExport verifies the bundle and prints the report; a failed
// verification returns silentError after printing it.
func runVerifyExport(ctx context.Context, o verifyExportOptions) error {
	if o.Format != "text" && o.Format != "json" {
		return usageError{fmt.Errorf("verify-export: --format %q: want text or json", o.Format)}
	}
	v, err := loadPubKey(o.PubKey)
	if err != nil {
		return usageError{err}
	}
	vo := bundle.VerifyOptions{Verifier: v}
	var bar *progressbar.ProgressBar
	if o.Progress {
		bar = progressbar.NewOptions64(-1, progressbar.OptionSetWriter(o.Stderr), progressbar.OptionSetDescription("verifying"),
			progressbar.OptionShowBytes(true), progressbar.OptionThrottle(200*time.Millisecond), progressbar.OptionClearOnFinish())
		vo.Progress = func(done, total uint64) {
			bar.ChangeMax64(int64(total))
			_ = bar.Set64(int64(done))
		}
	}
	rep, err := bundle.Verify(ctx, o.Dir, vo)
	if bar != nil {
		_ = bar.Finish()
	}
	if err != nil {
		return fmt.Errorf("verify-export: %w", err)
	}
	if o.Format == "json" {
		if err := json.NewEncoder(o.Stdout).Encode(map[string]any{"ok": rep.OK(), "report": rep}); err != nil {
			return fmt.Errorf("verify-export: %w", err)
		}
	} else {
		for _, f := range rep.Findings {
			fmt.Fprintln(o.Stdout, f.String())
		}
		if rep.Suppressed > 0 {
			fmt.Fprintf(o.Stdout, "… and %d more findings\n", rep.Suppressed)
		}
		verdict := "OK"
		if !rep.OK() {
			verdict = "FAILED"
		}
		fmt.Fprintf(o.Stdout, "verify-export %s: %s: %d rows (%d events), %d files, %d chains, key %s, %d findings in %s\n",
			verdict, o.Dir, rep.Rows, rep.Events, rep.Files, rep.Chains, rep.Key, len(rep.Findings)+rep.Suppressed, rep.Elapsed.Round(time.Millisecond))
	}
	if !rep.OK() {
		return silentError{}
	}
	return nil
}
