// Command gen writes a generated load of audit records (the mixed load of
// package loadgen: ~85% AKS kube-audit with the inner event, 10% Activity
// Log, 5% ACR) as a file, for benchmarking whole commands such as
// `custody normalize` and `custody backfill`:
//
//	$ go run ./normalize/internal/loadgen/gen -records 20000 > load.jsonl          # Event Hubs bodies of 20 records, one per line
//	$ go run ./normalize/internal/loadgen/gen -records 20000 -shape pt1h > PT1H.json # one record per line
//
// The output is deterministic for a seed.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"log/slog"
	"os"

	"github.com/custody-audit/custody/normalize/internal/loadgen"
)

func main() {
	records := flag.Int("records", 20000, "records to write")
	perBody := flag.Int("per-body", 20, "records per Event Hubs body (shape bodies)")
	shape := flag.String("shape", "bodies", "bodies (one {\"records\":[...]} per line) or pt1h (one record per line)")
	seed := flag.Uint64("seed", 42, "generator seed")
	flag.Parse()
	if err := write(*records, *perBody, *shape, *seed); err != nil {
		slog.Error("generate load", "err", err)
		os.Exit(1)
	}
}

func write(records, perBody int, shape string, seed uint64) error {
	g := loadgen.New(seed, loadgen.DefaultMix())
	w := bufio.NewWriterSize(os.Stdout, 1<<20)
	switch shape {
	case "bodies":
		for left := records; left > 0; left -= perBody {
			w.Write(g.Body(min(perBody, left)))
			w.WriteByte('\n')
		}
	case "pt1h":
		for range records {
			w.Write(g.Record())
			w.WriteByte('\n')
		}
	default:
		return fmt.Errorf("-shape %q: want bodies or pt1h", shape)
	}
	return w.Flush()
}
