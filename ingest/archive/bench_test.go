package archive_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/custody-audit/custody/ingest"
	"github.com/custody-audit/custody/ingest/archive"
)

// benchRecord is a ~1.2 KB resource-log record (the documented activity-log
// PT1H.json line with a padding property).
func benchRecord(b *testing.B, i int) []byte {
	line := bytes.TrimSpace(readTestdata(b, "msdocs-activity-log-storage-PT1H-line.jsonl"))
	pad := bytes.Repeat([]byte("x"), 1200-len(line)-40)
	return fmt.Appendf(nil, `{"n":%d,"pad":"%s",%s`, i, pad, line[1:])
}

func benchRead(b *testing.B, path string, format archive.Format, size int64) {
	b.SetBytes(size)
	b.ReportAllocs()
	var msgs int
	for b.Loop() {
		store, err := archive.NewLocal(path)
		if err != nil {
			b.Fatal(err)
		}
		src, err := archive.New(store, archive.Config{Format: format}, archive.Resume{}, nil)
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		if err := src.Connect(ctx); err != nil {
			b.Fatal(err)
		}
		for {
			batch, ack, err := src.ReadBatch(ctx)
			if errors.Is(err, ingest.ErrEndOfInput) {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			msgs += len(batch)
			_ = ack(ctx, nil)
		}
	}
	b.ReportMetric(float64(msgs)/b.Elapsed().Seconds(), "msgs/s")
}

const benchRecords = 20000

func BenchmarkJSONLines(b *testing.B) {
	var buf bytes.Buffer
	for i := range benchRecords {
		buf.Write(benchRecord(b, i))
		buf.WriteByte('\n')
	}
	dir := b.TempDir()
	writeTree(b, dir, map[string][]byte{"PT1H.json": buf.Bytes()})
	benchRead(b, filepath.Join(dir, "PT1H.json"), archive.FormatAuto, int64(buf.Len()))
}

func BenchmarkRecordsBlob(b *testing.B) {
	var buf bytes.Buffer
	buf.WriteString(`{"records":[`)
	for i := range benchRecords {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.Write(benchRecord(b, i))
	}
	buf.WriteString("]}")
	dir := b.TempDir()
	writeTree(b, dir, map[string][]byte{"PT1H.json": buf.Bytes()})
	benchRead(b, filepath.Join(dir, "PT1H.json"), archive.FormatRecords, int64(buf.Len()))
}

// BenchmarkCapture reads a Capture file whose bodies each hold 10 records.
func BenchmarkCapture(b *testing.B) {
	bodies := make([][]byte, benchRecords/10)
	for i := range bodies {
		bodies[i] = recordsBody(b, nil, i*10, 10)
	}
	file := captureFile(b, bodies, 1)
	dir := b.TempDir()
	writeTree(b, dir, map[string][]byte{"00.avro": file})
	benchRead(b, filepath.Join(dir, "00.avro"), archive.FormatAuto, int64(len(file)))
}

// BenchmarkEventHubsBodyLines reads raw Event Hubs bodies saved one per
// line, 20 records each (~24 KB lines), the shape of a backfill of saved
// hub traffic (`custody backfill` of the issue 13 load).
func BenchmarkEventHubsBodyLines(b *testing.B) {
	var lines []byte
	for i := range benchRecords / 20 {
		lines = append(recordsBody(b, lines, i*20, 20), '\n')
	}
	dir := b.TempDir()
	writeTree(b, dir, map[string][]byte{"bodies.json": lines})
	benchRead(b, filepath.Join(dir, "bodies.json"), archive.FormatAuto, int64(len(lines)))
}

// recordsBody appends to dst an Event Hubs body of n generated records,
// from record first on.
func recordsBody(b *testing.B, dst []byte, first, n int) []byte {
	dst = append(dst, `{"records":[`...)
	for j := range n {
		if j > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, benchRecord(b, first+j)...)
	}
	return append(dst, "]}"...)
}
