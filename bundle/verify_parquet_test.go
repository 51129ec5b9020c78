package bundle

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/parquet-go/parquet-go"

	"github.com/custody-audit/custody/storage/trail"
)

// TestParquetRowsMatchGenericReader checks that readParquetRows, which
// reads segments of row groups in parallel straight from the column
// values, reports exactly what reading every row through parquet-go's
// generic reader and parquetRecord.toRow reports.
func TestParquetRowsMatchGenericReader(t *testing.T) {
	// one chain of valid rows, so that only what is wrong is reported
	rows := textRows()
	var recs []parquetRecord
	var prev trail.Hash
	for i := range 2*parquetSegment + 300 {
		r := rows[i%len(rows)]
		r.Chain, r.Seq, r.PrevHash = "c", uint64(i+1), prev
		r.Event.ID = fmt.Sprintf("ev-%d", i)
		r.Hash = trail.EventHash(&r)
		prev = r.Hash
		var p parquetRecord
		toParquet(&r, &p)
		if i%997 == 5 {
			p.SourceIP = "203.0.113.07" // not canonical: malformed
		}
		recs = append(recs, p)
	}
	var buf bytes.Buffer
	w := parquet.NewGenericWriter[parquetRecord](&buf, parquet.MaxRowsPerRowGroup(parquetSegment+1000))
	if _, err := w.Write(recs); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "events.parquet")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	read := func(fast bool) textRead {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		m := &Manifest{Data: FormatParquet, Chains: []Chain{{Chain: "c", Rows: uint64(len(recs)), TreeSize: uint64(len(recs)),
			Runs: []Run{{First: 1, Last: uint64(len(recs)), PrevHash: hex.EncodeToString(make([]byte, 32)), LastHash: hex.EncodeToString(prev[:])}}}}}
		v := newVerifier(m, &Report{}, nil)
		v.file = "events.parquet"
		var out textRead
		if fast {
			out.Rows, err = v.readParquetRows(f, int64(buf.Len()))
		} else {
			err = readParquet(f, int64(buf.Len()), func(n uint64, p *parquetRecord) error {
				out.Rows = n
				var r trail.Row
				if err := p.toRow(&r); err != nil {
					v.malformed(n, err)
					return nil
				}
				v.row(n, keyOf(&r), trail.EventHash(&r))
				return nil
			})
		}
		if err != nil {
			out.Err = err.Error()
		}
		out.Findings, out.Size = v.rep.Findings, int64(v.rep.Suppressed)
		return out
	}
	got, want := read(true), read(false)
	if want.Rows != uint64(len(recs)) || len(want.Findings) == 0 {
		t.Fatalf("the generic reader read %d rows with %d findings", want.Rows, len(want.Findings))
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %d rows, error %q; want %d, %q", got.Rows, got.Err, want.Rows, want.Err)
		for i := range min(len(got.Findings), len(want.Findings)) {
			if got.Findings[i] != want.Findings[i] {
				t.Fatalf("finding %d:\n got %v\nwant %v", i, got.Findings[i], want.Findings[i])
			}
		}
		t.Errorf("%d findings, want %d", len(got.Findings), len(want.Findings))
	}
}

// readParquet calls fn with each row of a Parquet data file, numbered
// from 1, through parquet-go's generic reader: the reference the
// verifier's own row reader is held to. A file that is not a Parquet file of the bundle schema is an
// error.
func readParquet(f *os.File, size int64, fn func(n uint64, r *parquetRecord) error) (err error) {
	pf, err := parquet.OpenFile(f, size)
	if err != nil {
		return fmt.Errorf("not a Parquet file: %w", err)
	}
	want := parquet.SchemaOf(parquetRecord{})
	if !parquet.EqualNodes(pf.Schema(), want) {
		return fmt.Errorf("Parquet schema differs from export-v1's")
	}
	defer func() {
		// parquet-go panics on some malformed pages; a bad file is a
		// finding, never a crash.
		if p := recover(); p != nil {
			err = fmt.Errorf("malformed Parquet file: %v", p)
		}
	}()
	rd := parquet.NewGenericReader[parquetRecord](pf)
	defer func() {
		if cerr := rd.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("read Parquet rows: %w", cerr)
		}
	}()
	buf := make([]parquetRecord, 256)
	var n uint64
	for {
		k, rerr := rd.Read(buf)
		for i := 0; i < k; i++ {
			n++
			if err := fn(n, &buf[i]); err != nil {
				return err
			}
		}
		if errors.Is(rerr, io.EOF) {
			return nil
		}
		if rerr != nil {
			return fmt.Errorf("read Parquet row %d: %w", n+1, rerr)
		}
	}
}
