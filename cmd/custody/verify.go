package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/urfave/cli/v3"
	"golang.org/x/term"

	"github.com/custody-audit/custody/storage"
)

func verifyCommand() *cli.Command {
	return &cli.Command{
		Name:  "verify",
		Usage: "recompute every hash, chain link, Merkle root and checkpoint signature",
		Description: `Reports every modified, deleted, inserted, duplicated or reordered row, any
truncation after a signed checkpoint and any bad signature, by chain and
sequence number. Exits 1 when anything fails.

   $ custody verify
   $ custody verify --chain 'eventhubs/ns.servicebus.windows.net/aks-audit/$Default/0'
   $ custody verify --from 2026-11-01 --to 2026-11-08 --format json`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "chain", Usage: "verify one chain only"},
			&cli.StringFlag{Name: "from", Usage: "check row contents from this time (RFC 3339 or YYYY-MM-DD); links and checkpoints are always checked whole"},
			&cli.StringFlag{Name: "to", Usage: "check row contents before this time"},
			&cli.StringFlag{Name: "format", Value: "text", Usage: "{text|json}"},
			&cli.BoolFlag{Name: "independent", Usage: "recompute row hashes in Go instead of in the engine (slower; does not trust the engine)"},
		},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			from, err := parseTimeFlag(cmd.String("from"))
			if err != nil {
				return usageError{fmt.Errorf("--from: %w", err)}
			}
			to, err := parseTimeFlag(cmd.String("to"))
			if err != nil {
				return usageError{fmt.Errorf("--to: %w", err)}
			}
			verifier, err := storage.LoadVerifier(cmd.String(flagVerifyKey))
			if err != nil {
				return err
			}
			st, err := openStore(ctx, cmd, readWrite)
			if err != nil {
				return err
			}
			defer st.Engine().Close(context.Background())
			opts := storage.VerifyOptions{Chain: cmd.String("chain"), From: from, To: to, Verifier: verifier, CheckpointDir: cmd.String(flagCheckpointDir), Independent: cmd.Bool("independent")}
			var bar *progressbar.ProgressBar
			if term.IsTerminal(int(os.Stderr.Fd())) {
				bar = progressbar.NewOptions64(-1, progressbar.OptionSetWriter(os.Stderr), progressbar.OptionSetDescription("verifying"), progressbar.OptionShowCount(), progressbar.OptionThrottle(200*time.Millisecond), progressbar.OptionClearOnFinish())
				opts.Progress = func(done, total uint64) {
					bar.ChangeMax64(int64(total))
					_ = bar.Set64(int64(done))
				}
			}
			rep, err := st.Verify(ctx, opts)
			if bar != nil {
				_ = bar.Finish()
			}
			if err != nil {
				return err
			}
			w := cmd.Root().Writer
			if cmd.String("format") == "json" {
				if err := json.NewEncoder(w).Encode(map[string]any{"ok": rep.OK(), "report": rep}); err != nil {
					return err
				}
			} else {
				for _, f := range rep.Findings {
					fmt.Fprintln(w, f.String())
				}
				verdict := "OK"
				if !rep.OK() {
					verdict = "FAILED"
				}
				fmt.Fprintf(w, "verify %s: %d chains, %d rows, %d checkpoints, %d findings in %s\n",
					verdict, rep.Chains, rep.Rows, rep.Checkpoints, len(rep.Findings), rep.Elapsed.Round(time.Millisecond))
			}
			result := "ok"
			if !rep.OK() {
				result = "failed"
			}
			detail := fmt.Sprintf("chain=%q from=%s to=%s chains=%d rows=%d checkpoints=%d findings=%d", opts.Chain, cmd.String("from"), cmd.String("to"), rep.Chains, rep.Rows, rep.Checkpoints, len(rep.Findings))
			if err := st.Log(ctx, "verify", detail, result); err != nil {
				return err
			}
			if !rep.OK() {
				return silentError{}
			}
			return nil
		},
	}
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
