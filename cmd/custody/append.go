package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/custody-audit/custody/normalize"
	"github.com/custody-audit/custody/storage"
)

// appendCommand is the test and demo path into the store before a source
// is configured: it normalizes files line by line and appends them, one
// chain per file, exactly as the collector would.
func appendCommand() *cli.Command {
	return &cli.Command{
		Name:      "append",
		Usage:     "normalize record files and append them to the trail (testing and demos)",
		ArgsUsage: "FILE...",
		Hidden:    true,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "format", Value: "auto", Usage: "{auto|eventhubs|archive|loganalytics|k8s-audit}"},
			&cli.StringFlag{Name: "stream", Usage: "chain name (default: file/<absolute path>)"},
			&cli.IntFlag{Name: "batch", Value: 5000, Usage: "lines per batch"},
		},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			if cmd.NArg() == 0 {
				return usageError{fmt.Errorf("append needs at least one file")}
			}
			st, err := openStore(ctx, cmd, appending)
			if err != nil {
				return err
			}
			defer st.Engine().Close(context.Background())
			n, err := normalize.New(normalize.DefaultConfig())
			if err != nil {
				return err
			}
			pos, err := st.Positions(ctx)
			if err != nil {
				return err
			}
			var total storage.AppendResult
			for _, path := range cmd.Args().Slice() {
				abs, err := filepath.Abs(path)
				if err != nil {
					return err
				}
				stream := cmd.String("stream")
				if stream == "" {
					stream = "file" + abs
				}
				res, err := appendFile(ctx, st, n, path, stream, cmd.String("format"), int(cmd.Int("batch")), pos[stream])
				if err != nil {
					return err
				}
				total.Stored += res.Stored
				total.Skipped += res.Skipped
				total.Quarantined += res.Quarantined
			}
			fmt.Fprintf(cmd.Root().Writer, "appended %d events (%d already stored, %d quarantined)\n", total.Stored, total.Skipped, total.Quarantined)
			return nil
		},
	}
}

func appendFile(ctx context.Context, st *storage.Store, n *normalize.Normalizer, path, stream, format string, batchLines int, stored int64) (storage.AppendResult, error) {
	var total storage.AppendResult
	f, err := os.Open(path)
	if err != nil {
		return total, fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	batch := storage.Batch{Stream: stream}
	flush := func() error {
		if batch.Offset == 0 {
			return nil
		}
		res, err := st.Append(ctx, batch)
		if err != nil {
			return err
		}
		total.Stored += res.Stored
		total.Skipped += res.Skipped
		total.Quarantined += res.Quarantined
		batch = storage.Batch{Stream: stream}
		return nil
	}
	var line int64
	lines := 0
	for sc.Scan() {
		line++
		if line <= stored || len(sc.Bytes()) == 0 {
			continue
		}
		body := append([]byte(nil), sc.Bytes()...)
		pos := fmt.Sprintf("%s line %d", path, line)
		res, err := n.Process(ctx, normalize.Input{Body: body, Format: format, SourceKind: "file", Position: pos, Received: time.Now().UTC()})
		if err != nil {
			return total, fmt.Errorf("normalize %s: %w", pos, err)
		}
		for _, e := range res.Events {
			batch.Events = append(batch.Events, storage.BatchEvent{Offset: line, Event: e})
		}
		for _, q := range res.Quarantined {
			batch.Quarantined = append(batch.Quarantined, storage.QuarantineRecord{Offset: line, Position: q.Position, Received: time.Now().UTC(), Format: q.Format, Reason: q.Reason, Raw: q.Raw})
		}
		for _, c := range res.Dropped {
			batch.Dropped += c
		}
		batch.Offset, batch.Position = line, pos
		lines++
		if lines >= batchLines {
			if err := flush(); err != nil {
				return total, err
			}
			lines = 0
		}
	}
	if err := sc.Err(); err != nil {
		return total, fmt.Errorf("read %s: %w", path, err)
	}
	return total, flush()
}
