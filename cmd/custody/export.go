package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/urfave/cli/v3"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/term"

	"github.com/custody-audit/custody/bundle"
	"github.com/custody-audit/custody/bundle/export"
	"github.com/custody-audit/custody/queries"
	"github.com/custody-audit/custody/storage"
)

// exportOptions holds what `custody export` needs; runExport takes it
// whole so tests can call it without flag parsing.
type exportOptions struct {
	From, To string   // RFC 3339 time or date
	Chain    string   // one chain; "" for all
	Query    string   // catalogue query selecting the events; "" for the whole window
	Params   []string // name=value, for Query
	Format   string   // jsonl, csv, parquet, ocsf
	Out      string   // bundle directory
	Stdout   io.Writer
	Stderr   io.Writer
	// Progress draws a progress bar on Stderr.
	Progress bool
	// SigningKey signs the manifest; VerifyKey checks the store's
	// checkpoints (key files).
	SigningKey, VerifyKey string
	// Open opens the store as an account that may read the trail and
	// record the export in the custody log.
	Open func(ctx context.Context) (*storage.Store, error)
}

const exportUsageText = `custody export --from <time> --to <time> [--chain <chain>] [--query <name> [--param <name>=<value>]...] [--format {jsonl|csv|parquet|ocsf}] --out <dir>

Writes an auditor bundle to <dir>: the selected events with every stored
field (raw records included), a manifest with the SHA-256 of every file,
the signed checkpoint covering each chain's rows and a Merkle range proof
binding the rows to it, and the manifest's signature made with the store's
key. Anyone holding the public key can check the bundle offline with
custody verify-export. The export is recorded in the custody log.

With --query, only the events the catalogue query returns (by event_id)
over the window are exported; the query must list events, not aggregates.
The bundle format is storage/docs/format/export-v1.md.

Examples:
  $ custody export --from 2025-05-06 --to 2025-05-07 --out ./evidence
  $ custody export --from 2025-05-06 --to 2025-05-07 --query aks-exec --format parquet --out ./exec-evidence
  $ custody export --from 2025-05-01 --to 2025-06-01 --query principal-timeline --param actor=dev@contoso.com --format ocsf --out ./dev`

func exportCommand() *cli.Command {
	return &cli.Command{
		Name:      "export",
		Usage:     "write a signed, offline-verifiable evidence bundle of stored events",
		UsageText: exportUsageText,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "from", Usage: "start of the window on event_time (inclusive): RFC 3339 time or YYYY-MM-DD", Required: true},
			&cli.StringFlag{Name: "to", Usage: "end of the window (exclusive)", Required: true},
			&cli.StringFlag{Name: "chain", Usage: "export one chain only"},
			&cli.StringFlag{Name: "query", Usage: "export only the events this catalogue query returns (custody query --list)"},
			&cli.StringSliceFlag{Name: "param", Usage: "query parameter <name>=<value> (repeatable)"},
			&cli.StringFlag{Name: "format", Value: bundle.FormatJSONL, Usage: "data format {jsonl|csv|parquet|ocsf}"},
			&cli.StringFlag{Name: "out", Usage: "bundle directory (created; must be empty)", Required: true},
		},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			if cmd.NArg() > 0 {
				return usageError{fmt.Errorf("export: unexpected argument %q", cmd.Args().First())}
			}
			return runExport(ctx, exportOptions{
				From: cmd.String("from"), To: cmd.String("to"), Chain: cmd.String("chain"),
				Query: cmd.String("query"), Params: cmd.StringSlice("param"), Format: cmd.String("format"), Out: cmd.String("out"),
				SigningKey: cmd.String(flagSigningKey), VerifyKey: cmd.String(flagVerifyKey),
				Stdout: cmd.Root().Writer, Stderr: os.Stderr, Progress: term.IsTerminal(int(os.Stderr.Fd())),
				Open: storeOpener(cmd, readWrite, ""),
			})
		},
	}
}

// exportSelection is the parsed selection of an export.
type exportSelection struct {
	from, to time.Time
	query    *queries.Query
	args     map[string]string
}

// selection parses and checks the options that do not need the store.
func (o exportOptions) selection() (exportSelection, error) {
	var s exportSelection
	var err error
	if s.from, err = parseTimeFlag(o.From); err != nil {
		return s, fmt.Errorf("export: --from: %w", err)
	}
	if s.to, err = parseTimeFlag(o.To); err != nil {
		return s, fmt.Errorf("export: --to: %w", err)
	}
	if s.from.IsZero() || s.to.IsZero() {
		return s, errors.New("export: --from and --to are required")
	}
	if !s.from.Before(s.to) {
		return s, fmt.Errorf("export: --from %s is not before --to %s", o.From, o.To)
	}
	if !slices.Contains(bundle.Formats(), o.Format) {
		return s, fmt.Errorf("export: --format %q: want one of %s", o.Format, strings.Join(bundle.Formats(), ", "))
	}
	if o.Out == "" {
		return s, errors.New("export: --out is required")
	}
	if o.Query == "" {
		if len(o.Params) > 0 {
			return s, errors.New("export: --param needs --query")
		}
		return s, nil
	}
	cat, err := queries.Load()
	if err != nil {
		return s, fmt.Errorf("export: %w", err)
	}
	if s.query, err = cat.Get(o.Query); err != nil {
		return s, fmt.Errorf("export: %w", err)
	}
	s.args = make(map[string]string, len(o.Params))
	for _, p := range o.Params {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return s, fmt.Errorf("export: --param %q: want name=value", p)
		}
		if _, dup := s.args[k]; dup {
			return s, fmt.Errorf("export: --param %s given twice", k)
		}
		s.args[k] = v
	}
	if _, err := s.query.Bind(s.args, s.from, s.to); err != nil {
		return s, fmt.Errorf("export: %w", err)
	}
	return s, nil
}

// runExport checks the options, loads the keys, opens the store and
// writes the bundle.
func runExport(ctx context.Context, o exportOptions) error {
	sel, err := o.selection()
	if err != nil {
		return usageError{err}
	}
	signer, err := storage.LoadSigner(o.SigningKey)
	if err != nil {
		return err
	}
	verifier, err := storage.LoadVerifier(o.VerifyKey)
	if err != nil {
		return err
	}
	st, err := o.Open(ctx)
	if err != nil {
		return err
	}
	defer st.Engine().Close(context.Background())
	return writeExport(ctx, st, signer, verifier, o, sel)
}

// writeExport writes the bundle and records the export, successful or
// not, in the custody log.
func writeExport(ctx context.Context, st *storage.Store, signer note.Signer, verifier note.Verifier, o exportOptions, sel exportSelection) error {
	eo := export.Options{
		Engine:    st.Engine(),
		Database:  st.Database(),
		From:      sel.from,
		To:        sel.to,
		Chain:     o.Chain,
		Query:     sel.query,
		QueryArgs: sel.args,
		Output:    bundle.Output{Format: o.Format, Dir: o.Out, Signer: signer, Verifier: verifier, Actor: actorName()},
	}
	var bar *progressbar.ProgressBar
	if o.Progress {
		bar = progressbar.NewOptions64(-1, progressbar.OptionSetWriter(o.Stderr), progressbar.OptionSetDescription("exporting"),
			progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionSetItsString("events"),
			progressbar.OptionThrottle(200*time.Millisecond), progressbar.OptionClearOnFinish())
		eo.Progress = func(done, total uint64) {
			bar.ChangeMax64(int64(total))
			_ = bar.Set64(int64(done))
		}
	}
	res, err := export.Export(ctx, eo)
	if bar != nil {
		_ = bar.Finish()
	}
	detail := exportDetail(o, sel)
	if err != nil {
		if lerr := st.Log(ctx, "export", detail, "failed: "+err.Error()); lerr != nil {
			return errors.Join(fmt.Errorf("export: %w", err), lerr)
		}
		return fmt.Errorf("export: %w", err)
	}
	m := res.Manifest
	chains := make([]string, 0, len(m.Chains))
	for _, c := range m.Chains {
		chains = append(chains, fmt.Sprintf("%s=%d", c.Chain, c.Rows))
	}
	detail += fmt.Sprintf(" rows=%d events=%d chains=[%s] file_sha256=%s", m.Rows, *m.Events, strings.Join(chains, " "), m.Files[0].SHA256)
	if err := st.Log(ctx, "export", detail, "ok"); err != nil {
		return err
	}
	fmt.Fprintf(o.Stdout, "export: %d events in %d rows from %d chains written to %s (%s, %s) in %s\n",
		*m.Events, m.Rows, len(m.Chains), o.Out, m.Files[0].Name, exportSize(m.Files[0].Bytes), res.Elapsed.Round(time.Millisecond))
	if m.Duplicates.Rows > 0 {
		fmt.Fprintf(o.Stdout, "%d rows are further deliveries of events already in the bundle, listed in %s\n", m.Duplicates.Rows, m.Duplicates.Name)
	}
	fmt.Fprintf(o.Stdout, "signed with %s; check it with: custody verify-export %s --pubkey <%s public key>\n", m.Key, o.Out, m.Key)
	return nil
}

// exportDetail is the custody log's description of an export.
func exportDetail(o exportOptions, sel exportSelection) string {
	d := fmt.Sprintf("from=%s to=%s chain=%q format=%s out=%q", sel.from.Format(time.RFC3339Nano), sel.to.Format(time.RFC3339Nano), o.Chain, o.Format, o.Out)
	if sel.query != nil {
		keys := make([]string, 0, len(sel.args))
		for k := range sel.args {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var ps []string
		for _, k := range keys {
			ps = append(ps, fmt.Sprintf("%s=%q", k, sel.args[k]))
		}
		d += fmt.Sprintf(" query=%s params=[%s]", sel.query.Name, strings.Join(ps, " "))
	}
	return d
}

func exportSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
