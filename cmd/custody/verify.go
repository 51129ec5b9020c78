package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/urfave/cli/v3"
	"golang.org/x/sys/unix"
	"golang.org/x/term"

	"github.com/custody-audit/custody/storage"
)

func verifyCommand() *cli.Command {
	return &cli.Command{
		Name:  "verify",
		Usage: "recompute every hash, chain link, Merkle root and checkpoint signature",
		Description: `Reports every modified, deleted, inserted, duplicated or reordered row, any
truncation after a signed checkpoint, any bad signature and any corrupt data
part, by chain and sequence number. Exits 1 when anything fails.

A trail can only be shown not truncated against a checkpoint kept outside
the store: the checkpoint directory, checkpoints you kept (--since, a file or
a copy of the checkpoint directory), or those the collector published to a
Blob container (--published; the checkpoint_publish section of the config).
With --since or --published,
verify proves each chain's newest signed checkpoint a consistent extension
of the kept one (RFC 6962 consistency proof, in --format json).

   $ custody verify
   $ custody verify --since ./kept/eh%2Fp0.checkpoint
   $ custody verify --since ./checkpoints-copy-2026-11-01/ --format json
   $ custody verify --config custody.yaml --published
   $ custody verify --chain 'eventhubs/ns.servicebus.windows.net/aks-audit/$Default/0'
   $ custody verify --from 2026-11-01 --to 2026-11-08 --format json`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "chain", Usage: "verify one chain only"},
			&cli.StringFlag{Name: "from", Usage: "check row contents from this time (RFC 3339 or YYYY-MM-DD); links and checkpoints are always checked whole"},
			&cli.StringFlag{Name: "to", Usage: "check row contents before this time"},
			&cli.StringSliceFlag{Name: "since", Usage: "a signed checkpoint you kept (a file, or a directory of *.checkpoint files): prove the trail extends it; repeatable"},
			&cli.BoolFlag{Name: "published", Usage: "also prove the trail against the newest checkpoints published to the Blob container of the config's checkpoint_publish section"},
			&cli.StringFlag{Name: "format", Value: "text", Usage: "{text|json}"},
			&cli.BoolFlag{Name: "independent", Usage: "recompute row hashes in Go instead of in the engine (slower; does not trust the engine)"},
		},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			opts, err := verifyOptionsFrom(cmd)
			if err != nil {
				return err
			}
			return runVerify(ctx, opts)
		},
	}
}

// verifyOptions is what `custody verify` was asked to do.
type verifyOptions struct {
	storage.VerifyOptions
	// Since are the kept checkpoint files and directories (--since).
	Since []string
	// Published proves the trail against the checkpoints published to
	// Blob (the config's checkpoint_publish section).
	Published bool
	// JSON writes the report as one JSON document.
	JSON bool
	// From and To as given, for the record.
	FromText, ToText string
	// VerifyKey is the checkpoint verification key file.
	VerifyKey string
	// ConfigPath is the config file whose checkpoint_publish section
	// names the container for Published.
	ConfigPath string
	// StoreDir is the embedded store, checked writable first (verify
	// records its run); empty on ClickHouse servers.
	StoreDir string
	Stdout   io.Writer
	// ProgressTo receives a progress bar; nil shows none.
	ProgressTo io.Writer
	// Open opens the store as an account that may record the run.
	Open func(ctx context.Context) (*storage.Store, error)
}

func verifyOptionsFrom(cmd *cli.Command) (verifyOptions, error) {
	var o verifyOptions
	var err error
	if o.From, err = parseTimeFlag(cmd.String("from")); err != nil {
		return o, usageError{fmt.Errorf("--from: %w", err)}
	}
	if o.To, err = parseTimeFlag(cmd.String("to")); err != nil {
		return o, usageError{fmt.Errorf("--to: %w", err)}
	}
	switch f := cmd.String("format"); f {
	case "text":
	case "json":
		o.JSON = true
	default:
		return o, usageError{fmt.Errorf("--format: %q is not text or json", f)}
	}
	o.FromText, o.ToText = cmd.String("from"), cmd.String("to")
	o.Chain = cmd.String("chain")
	o.CheckpointDir = cmd.String(flagCheckpointDir)
	o.Independent = cmd.Bool("independent")
	o.Since = cmd.StringSlice("since")
	o.Published = cmd.Bool("published")
	o.VerifyKey = cmd.String(flagVerifyKey)
	o.ConfigPath = cmd.String(flagConfig)
	if cmd.String(flagClickHouse) == "" {
		o.StoreDir = cmd.String(flagStore)
	}
	o.Stdout = cmd.Root().Writer
	if term.IsTerminal(int(os.Stderr.Fd())) {
		o.ProgressTo = os.Stderr
	}
	o.Open = storeOpener(cmd, readWrite, "")
	return o, nil
}

// runVerify verifies the store and records the outcome.
func runVerify(ctx context.Context, o verifyOptions) error {
	verifier, err := storage.LoadVerifier(o.VerifyKey)
	if err != nil {
		return err
	}
	o.Verifier = verifier
	if o.Published {
		ext, err := readPublished(ctx, o.ConfigPath, o.Chain)
		if err != nil {
			return err
		}
		if len(ext) == 0 {
			return fmt.Errorf("--published: the checkpoint_publish container holds no checkpoint")
		}
		o.External = append(o.External, ext...)
	}
	if len(o.Since) > 0 {
		ext, err := storage.ReadExternalCheckpoints(o.Since)
		if err != nil {
			return usageError{fmt.Errorf("--since: %w", err)}
		}
		o.External = append(o.External, ext...)
	}
	if o.StoreDir != "" {
		if err := storeWritable(o.StoreDir); err != nil {
			return err
		}
	}
	st, err := o.Open(ctx)
	if err != nil {
		return err
	}
	defer st.Engine().Close(context.Background())
	var bar *progressbar.ProgressBar
	if o.ProgressTo != nil {
		bar = progressbar.NewOptions64(-1, progressbar.OptionSetWriter(o.ProgressTo), progressbar.OptionSetDescription("verifying"), progressbar.OptionShowCount(), progressbar.OptionThrottle(200*time.Millisecond), progressbar.OptionClearOnFinish())
		o.Progress = func(done, total uint64) {
			bar.ChangeMax64(int64(total))
			_ = bar.Set64(int64(done))
		}
	}
	started := time.Now()
	rep, err := st.Verify(ctx, o.VerifyOptions)
	if bar != nil {
		_ = bar.Finish()
	}
	if err != nil {
		return err
	}
	if err := writeVerifyReport(o.Stdout, rep, o.JSON); err != nil {
		return err
	}
	if err := st.RecordVerify(ctx, storage.NewVerifyRun(started, "cli", o.VerifyOptions, rep)); err != nil {
		return err
	}
	if !rep.OK() {
		return silentError{}
	}
	return nil
}

// writeVerifyReport writes the report for a person (one line per finding,
// then the verdict) or as JSON.
func writeVerifyReport(w io.Writer, rep *storage.VerifyReport, asJSON bool) error {
	if asJSON {
		return json.NewEncoder(w).Encode(map[string]any{"ok": rep.OK(), "report": rep})
	}
	for _, f := range rep.Findings {
		if _, err := fmt.Fprintln(w, f.String()); err != nil {
			return err
		}
	}
	for _, p := range rep.Consistency {
		if p.OK {
			if _, err := fmt.Fprintf(w, "consistent: chain %s: the checkpoint at %d rows (%s) is extended by the signed one at %d rows (consistency proof of %d hashes)\n", p.Chain, p.From, p.Source, p.To, len(p.Hashes)); err != nil {
				return err
			}
		}
	}
	verdict := "OK"
	if !rep.OK() {
		verdict = "FAILED"
	}
	_, err := fmt.Fprintf(w, "verify %s: %d chains, %d rows, %d checkpoints (%d kept outside the store), %d findings in %s\n",
		verdict, rep.Chains, rep.Rows, rep.Checkpoints, rep.External, len(rep.Findings), rep.Elapsed.Round(time.Millisecond))
	return err
}

func parseTimeFlag(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a time (RFC 3339 or YYYY-MM-DD)", s)
}

// storeWritable says why verify cannot run on an embedded store directory
// it cannot write (a read-only copy or mount): the engine writes in its
// store directory even to read (its lock, log, temporary files of a
// query, the custody log entry and verify_runs row of the verification).
func storeWritable(dir string) error {
	err := unix.Access(dir, unix.W_OK)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil // a missing store is reported by opening it
	}
	return fmt.Errorf("store %s is read-only (%w): the embedded engine writes in its store directory even to verify (lock, log, temporary files, the record of this verification). Verify a writable copy instead, which verifies exactly what the original holds: cp -a %s /tmp/custody-copy && custody verify --store /tmp/custody-copy", dir, err, dir)
}
