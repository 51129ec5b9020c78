package export

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/parquet-go/parquet-go"

	"github.com/custody-audit/custody/storage"
)

// TestParquetRowsMatchGenericReader checks that readParquetRows, which
// reads segments of row groups in parallel straight from the column
// values, reports exactly what reading every row through parquet-go's
// generic reader and parquetRecord.toRow reports.
func TestParquetRowsMatchGenericReader(t *testing.T) {
	// one chain of valid rows, so that only what is wrong is reported
	rows := textRows()
	var recs []parquetRecord
	var prev storage.Hash
	for i := range 2*parquetSegment + 300 {
		r := rows[i%len(rows)]
		r.Chain, r.Seq, r.PrevHash = "c", uint64(i+1), prev
		r.Event.ID = fmt.Sprintf("ev-%d", i)
		r.Hash = storage.EventHash(&r)
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
				var r storage.Row
				if err := p.toRow(&r); err != nil {
					v.malformed(n, err)
					return nil
				}
				v.row(n, keyOf(&r), storage.EventHash(&r))
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
