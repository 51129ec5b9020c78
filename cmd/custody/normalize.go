package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
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
			return runNormalize(ctx, normalizeOptions{
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

// runNormalize normalizes every input file and writes the results.
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
	out := bufio.NewWriter(o.Stdout)
	defer out.Flush()
	var events, quarantined int
	dropped := map[string]int{}
	var readErrs []error
	for _, name := range o.Files {
		body, err := readInput(name, o.Stdin)
		if err != nil {
			readErrs = append(readErrs, err)
			fmt.Fprintf(o.Stderr, "custody normalize: %v\n", err)
			continue
		}
		pos := name
		if name == "-" {
			pos = "stdin"
		}
		res, err := n.Process(ctx, normalize.Input{Body: body, Format: o.Format, SourceKind: "file", Position: pos, Received: o.Now()})
		if err != nil {
			return fmt.Errorf("normalize %s: %w", pos, err)
		}
		for _, e := range res.Events {
			var line []byte
			if o.OCSF {
				line, err = json.Marshal(normalize.OCSF(e))
			} else {
				line, err = normalize.MarshalEventJSON(e)
			}
			if err != nil {
				return fmt.Errorf("normalize %s: %w", pos, err)
			}
			out.Write(line)
			if err := out.WriteByte('\n'); err != nil {
				return fmt.Errorf("write output: %w", err)
			}
		}
		events += len(res.Events)
		for _, q := range res.Quarantined {
			line, err := normalize.MarshalQuarantinedJSON(q)
			if err != nil {
				return fmt.Errorf("normalize %s: %w", pos, err)
			}
			fmt.Fprintf(o.Stderr, "%s\n", line)
		}
		quarantined += len(res.Quarantined)
		for k, v := range res.Dropped {
			dropped[k] += v
		}
	}
	if err := out.Flush(); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	fmt.Fprintf(o.Stderr, "custody normalize: %d events, %d quarantined, %s\n", events, quarantined, dropSummary(dropped))
	return errors.Join(readErrs...)
}

func readInput(name string, stdin io.Reader) ([]byte, error) {
	if name == "-" {
		b, err := io.ReadAll(stdin)
		if err != nil {
			return nil, fmt.Errorf("read stdin: %w", err)
		}
		return b, nil
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("read input: %w", err)
	}
	return b, nil
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
