// Command vectorgen writes Custody's known-answer vectors to
// testdata/vectors (see internal/vectors and testdata/vectors/README.md).
// It is a development tool, not part of the shipped binary:
//
//	go build -o .cache/bin/custody-chdb ./cmd/custody-chdb
//	go run ./internal/vectors/vectorgen -host .cache/bin/custody-chdb -out testdata/vectors
//
// The bundle vectors are exported from a store on a temporary embedded
// engine; everything is deterministic (fixed times, keys and ids), so a
// second run writes the same bytes (TestVectorsReproduce checks).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/custody-audit/custody/internal/vectors"
	"github.com/custody-audit/custody/storage/chdb"
)

func main() {
	out := flag.String("out", "testdata/vectors", "directory to write the vector files to")
	host := flag.String("host", ".cache/bin/custody-chdb", "custody-chdb executable (go build ./cmd/custody-chdb)")
	flag.Parse()
	if err := run(context.Background(), *out, *host); err != nil {
		fmt.Fprintln(os.Stderr, "vectorgen:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out, host string) error {
	dir, err := os.MkdirTemp("", "custody-vectorgen-")
	if err != nil {
		return fmt.Errorf("engine directory: %w", err)
	}
	defer os.RemoveAll(dir)
	eng, err := chdb.Open(ctx, chdb.Options{Dir: dir, HostPath: host, Stderr: os.Stderr})
	if err != nil {
		return fmt.Errorf("open embedded engine: %w", err)
	}
	defer eng.Close(ctx)
	files, err := vectors.Generate(ctx, eng)
	if err != nil {
		return err
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(out, n), files[n], 0o644); err != nil {
			return fmt.Errorf("write vectors: %w", err)
		}
		fmt.Println(filepath.Join(out, n))
	}
	return nil
}
