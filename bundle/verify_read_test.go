package bundle

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/custody-audit/custody/storage/trail"
)

// textRows are rows for the text-format reader tests: scanRows, and rows
// whose CSV form has quoted fields spanning lines and leading spaces.
func textRows() []trail.Row {
	base := scanRows()
	multi := base[2]
	multi.Event.Category, multi.Event.ResourceName, multi.Event.Action = "two\nlines", " leading space", `say "hi", then go`
	base = append(base, multi)
	var rows []trail.Row
	for i := range 24 {
		r := base[i%len(base)]
		r.Seq = uint64(i + 1)
		r.Event.ID = fmt.Sprintf("ev-%d", i)
		rows = append(rows, r)
	}
	return rows
}

// textRead is what reading one data file produced.
type textRead struct {
	Findings []Finding
	Rows     uint64
	Size     int64
	SHA256   string
	Err      string
}

// readText verifies data as the one data file of a bundle of format,
// with the fast readers (chunks of chunkLen bytes) or the general ones.
// The manifest lists no chain, so every row is reported, with its
// computed hash: the findings show what each row was read as.
func readText(t *testing.T, format string, data []byte, chunkLen int, fast bool) textRead {
	t.Helper()
	path := filepath.Join(t.TempDir(), "events")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	v := newVerifier(&Manifest{Data: format}, &Report{}, nil)
	v.chunkLen, v.file = chunkLen, "events."+format
	h := sha256.New()
	var out textRead
	switch {
	case format == FormatCSV && fast:
		out.Rows, out.Size, err = v.readCSVFile(f, &h, func(int64) {})
	case format == FormatCSV:
		out.Rows, out.Size, err = v.rereadCSV(f, &h)
	case fast:
		out.Rows, out.Size, err = v.readLines(f, h, func(int64) {})
	default:
		out.Rows, out.Size, err = generalLines(v, f, h)
	}
	if err != nil {
		out.Err = err.Error()
	}
	out.Findings, out.SHA256 = v.rep.Findings, hex.EncodeToString(h.Sum(nil))
	return out
}

// generalLines reads a jsonl file line by line through lineDecoder
// alone, as verification did before the strict scanner and chunked
// reading.
func generalLines(v *bundleVerifier, f *os.File, h hash.Hash) (uint64, int64, error) {
	data, err := os.ReadFile(f.Name())
	if err != nil {
		return 0, 0, err
	}
	h.Write(data)
	size := int64(len(data))
	d := lineDecoder{index: v.index}
	var n uint64
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		n++
		res := lineResult{n: n}
		var r trail.Row
		switch err := d.decode(line, &r); {
		case len(line) == 0:
			res.malformed = errors.New("empty line")
		case errors.Is(err, errNotCanonical):
			res.noncanon = err
			fallthrough
		case err == nil:
			res.computed, res.key = trail.EventHash(&r), *keyOf(&r)
		default:
			res.malformed = err
		}
		v.apply(&res)
	}
	return n, size, nil
}

// TestFastTextReadersMatchGeneral checks that the chunked readers, the
// strict scanner and the CSV fast path report exactly what the general
// readers report, for export's own files and for files altered in every
// way that makes the fast path hand over.
func TestFastTextReadersMatchGeneral(t *testing.T) {
	var jsonl, csvData []byte
	var enc jsonEncoder
	var ce csvEncoder
	csvData = []byte(csvHeaderLine())
	for _, r := range textRows() {
		jsonl = append(enc.appendRow(jsonl, &r), '\n')
		csvData = ce.appendLine(csvData, &r)
	}
	type edit func([]byte) []byte
	replace := func(from, to string) edit {
		return func(b []byte) []byte { return bytes.Replace(b, []byte(from), []byte(to), 1) }
	}
	nth := func(n int, to string) edit { // replace the n-th '\n' (1-based)
		return func(b []byte) []byte {
			i := -1
			for range n {
				i += 1 + bytes.IndexByte(b[i+1:], '\n')
			}
			return append(append(append([]byte(nil), b[:i]...), to...), b[i+1:]...)
		}
	}
	for _, c := range []struct {
		name   string
		format string
		edit   edit
	}{
		{"jsonl as exported", FormatJSONL, nil},
		{"jsonl keys reordered", FormatJSONL, replace(`{"chain":"aks/0","seq":4,`, `{"seq":4,"chain":"aks/0",`)},
		{"jsonl empty line", FormatJSONL, nth(3, "\n\n")},
		{"jsonl no final line end", FormatJSONL, func(b []byte) []byte { return b[:len(b)-1] }},
		{"jsonl upper-case hash", FormatJSONL, replace(`"prev_hash":"0102`, `"prev_hash":"0A02`)},
		{"jsonl garbage", FormatJSONL, nth(5, "\nnot json\n")},
		{"jsonl empty file", FormatJSONL, func([]byte) []byte { return nil }},
		{"csv as exported", FormatCSV, nil},
		{"csv carriage return", FormatCSV, nth(4, "\r\n")},
		{"csv empty line", FormatCSV, nth(6, "\n\n")},
		{"csv bare quote", FormatCSV, replace("\naks/0,", "\nak\"s/0,")},
		{"csv stray quote", FormatCSV, replace(`"two`, `"x"two`)},
		{"csv unterminated quote", FormatCSV, func(b []byte) []byte { return append(b, `c,"open`...) }},
		{"csv no final line end", FormatCSV, func(b []byte) []byte { return b[:len(b)-1] }},
		{"csv quoted header", FormatCSV, replace("chain,", `"chain",`)},
		{"csv other header", FormatCSV, replace("chain,", "chian,")},
		{"csv extra field", FormatCSV, nth(3, ",x\n")},
		{"csv upper-case hash", FormatCSV, replace(",0102", ",0A02")},
		{"csv needless quotes", FormatCSV, replace("\naks/0,", "\n\"aks/0\",")},
		{"csv header only", FormatCSV, func(b []byte) []byte { return []byte(csvHeaderLine()) }},
		{"csv empty file", FormatCSV, func([]byte) []byte { return nil }},
	} {
		t.Run(c.name, func(t *testing.T) {
			data := jsonl
			if c.format == FormatCSV {
				data = csvData
			}
			data = bytes.Clone(data)
			if c.edit != nil {
				edited := c.edit(bytes.Clone(data))
				if bytes.Equal(edited, data) {
					t.Fatal("the edit changes nothing")
				}
				data = edited
			}
			want := readText(t, c.format, data, chunkSize, false)
			for _, chunkLen := range []int{chunkSize, 700, 64} {
				got := readText(t, c.format, data, chunkLen, true)
				if !reflect.DeepEqual(got, want) {
					t.Errorf("chunks of %d bytes: got %d rows, %d bytes, SHA-256 %s, error %q; want %d, %d, %s, %q",
						chunkLen, got.Rows, got.Size, got.SHA256, got.Err, want.Rows, want.Size, want.SHA256, want.Err)
					for i := range max(len(got.Findings), len(want.Findings)) {
						var g, w Finding
						if i < len(got.Findings) {
							g = got.Findings[i]
						}
						if i < len(want.Findings) {
							w = want.Findings[i]
						}
						if g != w {
							t.Errorf("finding %d:\n got %v\nwant %v", i, g, w)
						}
					}
				}
			}
		})
	}
}

// TestCanonicalOCSFMatchesFullCompare checks that canonicalOCSF, which
// compares only the derived part of a line whose record the strict
// scanner read, accepts exactly the lines equal to the whole line derived
// from their row.
func TestCanonicalOCSFMatchesFullCompare(t *testing.T) {
	var enc jsonEncoder
	d := newLineChecker(columnIndex())
	for i, r := range textRows() {
		line, err := ocsfLine(&r, enc.appendRow(nil, &r))
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct{ from, to string }{
			{"", ""},
			{`"activity_id":`, `"activity_id":1`},
			{`"seq":`, `"seq":1`},
			{`"custody_record":{`, `"custody_record":{ `},
			{`"class_uid":`, `"custody_record":{},"class_uid":`},
			{`"unmapped":{`, `"unmapped":{"custody_record":{"chain":"x"},`},
			{`}`, `} `},
		} {
			edited := bytes.Replace(line, []byte(c.from), []byte(c.to), 1)
			var got, full trail.Row
			ok := d.canonicalOCSF(edited, string(edited), &got)
			want := false
			if rec, found := ocsfRecordIn(edited); found && decodeRecord(rec, &full, d.index) {
				derived, err := ocsfLine(&full, enc.appendRow(nil, &full))
				want = err == nil && bytes.Equal(derived, edited)
			}
			if c.from == "" && !ok {
				t.Errorf("row %d: the exported line is not accepted", i)
			}
			if ok != want || ok && trail.EventHash(&got) != trail.EventHash(&full) {
				t.Errorf("row %d, %q → %q: canonicalOCSF %v, full comparison %v", i, c.from, c.to, ok, want)
			}
		}
	}
}

// FuzzCanonicalOCSF holds canonicalOCSF to the full comparison: it
// accepts a line exactly when the line equals the whole line derived
// from the row of its first record, and then reads that row.
func FuzzCanonicalOCSF(f *testing.F) {
	var enc jsonEncoder
	for _, r := range textRows()[:5] {
		line, err := ocsfLine(&r, enc.appendRow(nil, &r))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(line)
	}
	index := columnIndex()
	f.Fuzz(func(t *testing.T, line []byte) {
		d := newLineChecker(index)
		var got, full trail.Row
		ok := d.canonicalOCSF(line, string(line), &got)
		want := false
		if rec, found := ocsfRecordIn(line); found {
			if decodeRecord(rec, &full, index) {
				derived, err := ocsfLine(&full, enc.appendRow(nil, &full))
				want = err == nil && bytes.Equal(derived, line)
			}
		}
		if ok != want || ok && trail.EventHash(&got) != trail.EventHash(&full) {
			t.Fatalf("canonicalOCSF %v, full comparison %v: %s", ok, want, line)
		}
	})
}
