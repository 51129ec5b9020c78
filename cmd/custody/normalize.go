package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"sort"
	"strings"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/custody-audit/custody/normalize"
)

// normalizeOptions holds what `custody normalize` needs; runNormalize
// takes it whole so tests can call it without flag parsing.
type normalizeOptions struct {
	Format             string
	OCSF               bool
	ApprovedRegistries []string
	KeepNoise          bool
	MaxRecordBytes     int      // 0: normalize.DefaultMaxRecordBytes
	Files              []string // "-" reads Stdin
	Stdin              io.Reader
	Stdout             io.Writer
	Stderr             io.Writer
	Now                func() time.Time
}

const normalizeUsageText = `custody normalize [--format {auto|eventhubs|archive|loganalytics|k8s-audit}] [--ocsf] <file>... | -

Prints one JSON line per normalized event on stdout. Records that could not
be normalized go to stderr as JSON lines with the reason, followed by a
summary line. Input formats: an Event Hubs body {"records":[...]}, a storage
archive PT1H.json (JSON Lines) or old-style {"records":[...]} blob, a Log
Analytics query response or row objects, or Kubernetes audit events (JSON
Lines or pretty-printed objects back to back).

Examples:
  $ custody normalize PT1H.json
  $ az monitor log-analytics query -w $WS --analytics-query 'AKSAuditAdmin' -o json | custody normalize --format loganalytics -
  $ custody normalize --ocsf --format k8s-audit /var/log/kubernetes/audit.log`

// normalizeCommand is `custody normalize`.
func normalizeCommand() *cli.Command {
	return &cli.Command{
		Name:      "normalize",
		Usage:     "show what Custody makes of audit records: normalized events as JSON lines",
		UsageText: normalizeUsageText,
		ArgsUsage: "<file>... | -",
		Flags: []cli.Flag{
			&cli.StringFlag{
				Name:    "format",
				Aliases: []string{"f"},
				Value:   normalize.FormatAuto,
				Usage:   "input format: {auto|eventhubs|archive|loganalytics|k8s-audit}",
				Sources: cli.EnvVars("CUSTODY_FORMAT"),
			},
			&cli.BoolFlag{
				Name:    "ocsf",
				Usage:   "print OCSF events (API Activity 6003, Authentication 3002) instead of Custody events",
				Sources: cli.EnvVars("CUSTODY_OCSF"),
			},
			&cli.StringSliceFlag{
				Name:    "approved-registry",
				Usage:   "registry host images may come from (repeatable); others are tagged unapproved_registry",
				Sources: cli.EnvVars("CUSTODY_APPROVED_REGISTRIES"),
			},
			&cli.BoolFlag{
				Name:    "keep-noise",
				Usage:   "keep system reads and non-admin AKS categories instead of counting them as dropped",
				Sources: cli.EnvVars("CUSTODY_KEEP_NOISE"),
			},
		},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			files := cmd.Args().Slice()
			if len(files) == 0 {
				return fmt.Errorf("normalize: no input: give one or more files, or - for stdin")
			}
			maxRecord, err := maxRecordBytes(cmd)
			if err != nil {
				return usageError{err}
			}
			// The live heap is small and bounded (a buffer of records and
			// one's events): collecting less often costs a few tens of MB
			// and saves a good part of the CPU.
			if os.Getenv("GOGC") == "" {
				debug.SetGCPercent(400)
			}
			return runNormalize(ctx, normalizeOptions{
				MaxRecordBytes:     maxRecord,
				Format:             cmd.String("format"),
				OCSF:               cmd.Bool("ocsf"),
				ApprovedRegistries: cmd.StringSlice("approved-registry"),
				KeepNoise:          cmd.Bool("keep-noise"),
				Files:              files,
				Stdin:              orReader(cmd.Root().Reader, os.Stdin),
				Stdout:             orWriter(cmd.Root().Writer, os.Stdout),
				Stderr:             orWriter(cmd.Root().ErrWriter, os.Stderr),
				Now:                time.Now,
			})
		},
	}
}

func orReader(r, def io.Reader) io.Reader {
	if r != nil {
		return r
	}
	return def
}

func orWriter(w, def io.Writer) io.Writer {
	if w != nil {
		return w
	}
	return def
}

// runNormalize normalizes every input file and writes the results as it
// reads: each file is streamed through normalize.ProcessStream, so memory
// stays bounded by the longest record (MaxRecordBytes) whatever the
// file's size, and events are encoded by normalize.AppendEventJSON.
func runNormalize(ctx context.Context, o normalizeOptions) error {
	switch o.Format {
	case "", normalize.FormatAuto, normalize.FormatEventHubs, normalize.FormatArchive, normalize.FormatLogAnalytics, normalize.FormatK8sAudit:
	default:
		return fmt.Errorf("normalize: unknown --format %q: want auto, eventhubs, archive, loganalytics or k8s-audit", o.Format)
	}
	cfg := normalize.DefaultConfig()
	cfg.ApprovedRegistries = o.ApprovedRegistries
	if o.KeepNoise {
		cfg.DropSystemReads = false
		cfg.KeepNonAdminCategories = true
		cfg.KeepContainerLogs = true
	}
	n, err := normalize.New(cfg)
	if err != nil {
		return fmt.Errorf("normalize: %w", err)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	out := bufio.NewWriterSize(o.Stdout, 256<<10)
	defer out.Flush()
	var events, quarantined int
	dropped := map[string]int{}
	var readErrs []error
	var line []byte
	write := func(res *normalize.Result) error {
		for i := range res.Events {
			if o.OCSF {
				line = append(normalize.AppendOCSF(line[:0], &res.Events[i]), '\n')
			} else {
				line = append(normalize.AppendEventJSON(line[:0], &res.Events[i]), '\n')
			}
			if _, err := out.Write(line); err != nil {
				return writeError{fmt.Errorf("write output: %w", err)}
			}
		}
		events += len(res.Events)
		for _, q := range res.Quarantined {
			b, err := normalize.MarshalQuarantinedJSON(q)
			if err != nil {
				return err
			}
			fmt.Fprintf(o.Stderr, "%s\n", b)
		}
		quarantined += len(res.Quarantined)
		for k, v := range res.Dropped {
			dropped[k] += v
		}
		return nil
	}
	for _, name := range o.Files {
		r, closeInput, err := openInput(name, o.Stdin)
		if err != nil {
			readErrs = append(readErrs, err)
			fmt.Fprintf(o.Stderr, "custody normalize: %v\n", err)
			continue
		}
		pos := name
		if name == "-" {
			pos = "stdin"
		}
		err = n.ProcessStream(ctx, r, normalize.StreamOptions{Format: o.Format, SourceKind: "file", Position: pos, Received: o.Now(), MaxRecordBytes: o.MaxRecordBytes}, write)
		closeInput()
		var we writeError
		switch {
		case err == nil:
		case errors.As(err, &we), ctx.Err() != nil:
			return fmt.Errorf("normalize %s: %w", pos, err)
		default:
			readErrs = append(readErrs, fmt.Errorf("%s: %w", pos, err))
			fmt.Fprintf(o.Stderr, "custody normalize: %s: %v\n", pos, err)
		}
	}
	if err := out.Flush(); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	fmt.Fprintf(o.Stderr, "custody normalize: %d events, %d quarantined, %s\n", events, quarantined, dropSummary(dropped))
	return errors.Join(readErrs...)
}

// writeError is a failure to write the output: it ends the command.
type writeError struct{ error }

func (w writeError) Unwrap() error { return w.error }

// openInput opens a file, or stdin for "-".
func openInput(name string, stdin io.Reader) (io.Reader, func(), error) {
	if name == "-" {
		return stdin, func() {}, nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, nil, fmt.Errorf("read input: %w", err)
	}
	return f, func() { f.Close() }, nil
}

func dropSummary(dropped map[string]int) string {
	if len(dropped) == 0 {
		return "0 dropped"
	}
	keys := make([]string, 0, len(dropped))
	total := 0
	for k, v := range dropped {
		keys = append(keys, k)
		total += v
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, dropped[k])
	}
	return fmt.Sprintf("%d dropped (%s)", total, strings.Join(parts, ", "))
}
