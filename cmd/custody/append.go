package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/custody-audit/custody/ingest"
)

// appendCommand is the test and demo path into the store for inputs no
// source reads (a saved Log Analytics response, a file of audit events):
// each line of each file is one message, run through the same pipeline
// as the collector, one chain per file.
func appendCommand() *cli.Command {
	return &cli.Command{
		Name:      "append",
		Usage:     "normalize record files line by line and append them to the trail (testing and demos)",
		ArgsUsage: "FILE...",
		Hidden:    true,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "format", Value: "auto", Usage: "{auto|eventhubs|archive|loganalytics|k8s-audit}"},
			&cli.StringFlag{Name: "stream", Usage: "chain name (default: file/<absolute path>)"},
			&cli.IntFlag{Name: "batch", Value: 5000, Usage: "lines per batch"},
		},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			return runAppend(ctx, appendOptions{
				Files: cmd.Args().Slice(), Format: cmd.String("format"), Stream: cmd.String("stream"), Batch: int(cmd.Int("batch")),
				Stdout: cmd.Root().Writer, Logger: logger(cmd),
				Open: func(ctx context.Context) (*ingestion, error) { return openIngest(ctx, cmd) },
			})
		},
	}
}

// appendOptions is what `custody append` appends, and how.
type appendOptions struct {
	// Files are appended in order, one line per message.
	Files []string
	// Format is the lines' format (normalize's format names, or auto).
	Format string
	// Stream is the chain of every file; empty means file/<absolute path>
	// of each.
	Stream string
	// Batch is the lines per batch (at least 1).
	Batch  int
	Stdout io.Writer
	Logger *slog.Logger
	// Open opens the store to append, with its positions; not called
	// when there is nothing to append.
	Open func(ctx context.Context) (*ingestion, error)
}

// runAppend runs each file through the collector's pipeline into its
// chain, after the lines the store already holds, and reports the counts.
func runAppend(ctx context.Context, o appendOptions) error {
	if len(o.Files) == 0 {
		return usageError{fmt.Errorf("append needs at least one file")}
	}
	in, err := o.Open(ctx)
	if err != nil {
		return err
	}
	defer in.close()
	var total ingest.Stats
	for _, path := range o.Files {
		stream := o.Stream
		if stream == "" {
			abs, err := filepath.Abs(path)
			if err != nil {
				return err
			}
			stream = "file" + abs
		}
		src := &lineSource{path: path, stream: stream, format: o.Format, batch: o.Batch, after: in.positions[stream]}
		pc := ingest.DefaultPipelineConfig()
		pc.Name, pc.SourceKind = "append", "file"
		pc.Permanent = func(error) bool { return true }
		p, err := ingest.NewPipeline(src, in.norm, in.sink, pc, nil, o.Logger)
		if err != nil {
			return err
		}
		err = p.Run(ctx)
		_ = src.Close(context.Background())
		if err != nil {
			return err
		}
		s := p.Stats()
		total.Stored += s.Stored
		total.Skipped += s.Skipped
		total.Quarantined += s.Quarantined
	}
	fmt.Fprintf(o.Stdout, "appended %d events (%d already stored, %d quarantined)\n", total.Stored, total.Skipped, total.Quarantined)
	return nil
}

// lineSource reads a file one line per message; the offset is the line
// number, and lines at or below after (already stored) are skipped.
type lineSource struct {
	path, stream, format string
	batch                int
	after                int64
	f                    *os.File
	sc                   *bufio.Scanner
	line                 int64
}

func (s *lineSource) Connect(ctx context.Context) error {
	if s.f != nil {
		return nil
	}
	f, err := os.Open(s.path)
	if err != nil {
		return fmt.Errorf("open %s: %w", s.path, err)
	}
	s.f, s.sc = f, bufio.NewScanner(f)
	s.sc.Buffer(make([]byte, 1<<20), 64<<20)
	return nil
}

func (s *lineSource) ReadBatch(ctx context.Context) ([]ingest.Message, ingest.AckFunc, error) {
	var msgs []ingest.Message
	for len(msgs) < max(s.batch, 1) && s.sc.Scan() {
		s.line++
		if s.line <= s.after || len(s.sc.Bytes()) == 0 {
			continue
		}
		now := time.Now().UTC()
		msgs = append(msgs, ingest.Message{
			Stream: s.stream, Offset: s.line, Position: fmt.Sprintf("%s line %d", s.path, s.line),
			Format: s.format, Body: append([]byte(nil), s.sc.Bytes()...), Received: now,
		})
	}
	if err := s.sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", s.path, err)
	}
	if len(msgs) == 0 {
		return nil, nil, ingest.ErrEndOfInput
	}
	// Nothing to do on ack: the store holds the positions.
	return msgs, func(context.Context, error) error { return nil }, nil
}

func (s *lineSource) Close(ctx context.Context) error {
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
}

var _ ingest.Source = (*lineSource)(nil)
