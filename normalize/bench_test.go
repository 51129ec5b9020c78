package normalize_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"testing"

	"github.com/custody-audit/custody/normalize"
	"github.com/custody-audit/custody/normalize/internal/loadgen"
)

// benchBodies builds Event Hubs bodies of recordsPerBody records each
// from the deterministic mixed generator.
func benchBodies(bodies, recordsPerBody int) ([][]byte, int) {
	g := loadgen.New(42, loadgen.DefaultMix())
	out := make([][]byte, bodies)
	total := 0
	for i := range out {
		out[i] = g.Body(recordsPerBody)
		total += len(out[i])
	}
	return out, total
}

func benchmarkProcess(b *testing.B, hash bool) {
	const bodies, per = 50, 20
	in, total := benchBodies(bodies, per)
	n, err := normalize.New(normalize.DefaultConfig())
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.SetBytes(int64(total / bodies))
	b.ReportAllocs()
	b.ResetTimer()
	records, kept := 0, 0
	var sink [32]byte
	for i := 0; i < b.N; i++ {
		res, err := n.Process(ctx, normalize.Input{Body: in[i%bodies], Format: normalize.FormatEventHubs, SourceKind: "eventhubs", Position: "p0"})
		if err != nil {
			b.Fatal(err)
		}
		records += per
		kept += len(res.Events)
		if hash {
			for j := range res.Events {
				sink = sha256.Sum256(res.Events[j].Raw)
			}
		}
	}
	_ = sink
	b.ReportMetric(float64(records)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(kept)/float64(records), "kept/record")
}

// BenchmarkProcess measures normalization of a realistic mixed load:
// Event Hubs bodies of 20 records, ~85% AKS kube-audit (inner event as a
// JSON string), 10% Activity Log, 5% ACR.
func BenchmarkProcess(b *testing.B) { benchmarkProcess(b, false) }

// BenchmarkProcessAndHash adds the SHA-256 of each kept event's raw bytes,
// the content hash the store computes for the trail.
func BenchmarkProcessAndHash(b *testing.B) { benchmarkProcess(b, true) }

// BenchmarkStream is `custody normalize` without the process around it:
// a file of Event Hubs bodies (20 records each, one per line) streamed
// through ProcessStream, events encoded with AppendEventJSON.
func BenchmarkStream(b *testing.B) {
	const bodies, per = 1000, 20
	in, total := benchBodies(bodies, per)
	file := bytes.Join(in, []byte("\n"))
	n, err := normalize.New(normalize.DefaultConfig())
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.SetBytes(int64(total))
	b.ReportAllocs()
	var line []byte
	for b.Loop() {
		err := n.ProcessStream(ctx, bytes.NewReader(file), normalize.StreamOptions{SourceKind: "file", Position: "load.jsonl"}, func(res *normalize.Result) error {
			for i := range res.Events {
				line = append(normalize.AppendEventJSON(line[:0], &res.Events[i]), '\n')
				io.Discard.Write(line)
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(bodies*per)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkProcessByKind is BenchmarkProcess split by what becomes of a
// record: bodies of 20 records of one kind (kube-audit records the noise
// policy drops, kept kube-audit, Activity Log, ACR), so the cost of each
// is seen apart (ns/record).
func BenchmarkProcessByKind(b *testing.B) {
	g := loadgen.New(42, loadgen.DefaultMix())
	n, err := normalize.New(normalize.DefaultConfig())
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	kinds := map[string][][]byte{}
	for range 4000 {
		r := g.Record()
		res, err := n.Process(ctx, normalize.Input{Body: append(append([]byte(`{"records":[`), r...), "]}"...), Format: normalize.FormatEventHubs})
		if err != nil {
			b.Fatal(err)
		}
		k := "dropped"
		if len(res.Events) == 1 {
			k = res.Events[0].Category
		}
		kinds[k] = append(kinds[k], r)
	}
	for _, k := range []string{"dropped", "kube-audit", "Administrative", "ContainerRegistryRepositoryEvents"} {
		var bodies [][]byte
		for i := 0; i+20 <= len(kinds[k]) && len(bodies) < 50; i += 20 {
			bodies = append(bodies, append(append([]byte(`{"records":[`), bytes.Join(kinds[k][i:i+20], []byte(","))...), "]}"...))
		}
		if len(bodies) == 0 {
			b.Fatalf("the generator made fewer than 20 records of kind %s", k)
		}
		b.Run(k, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				_, release, err := n.ProcessBorrowed(ctx, normalize.Input{Body: bodies[i%len(bodies)], Format: normalize.FormatEventHubs, SourceKind: "eventhubs", Position: "p0"})
				if err != nil {
					b.Fatal(err)
				}
				release()
				i++
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*20), "ns/record")
		})
	}
}
