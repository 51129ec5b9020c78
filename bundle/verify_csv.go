package bundle

import (
	"bytes"
	"crypto/sha256"
	"encoding/csv"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"strings"
	"time"

	"github.com/custody-audit/custody/storage/trail"
)

// Verifying a CSV data file: nearly every record is what export wrote,
// one line (or, for text holding a line break, a few) of fields that are
// plain or quoted exactly as encoding/csv quotes them. Such records are
// cut and parsed by checkRecords and csvChecker, on every core, with the
// values decoded in place; a record they cannot read that way (a carriage
// return, a bare or stray quote, an empty line) hands the rest of the
// file, from that record on, to encoding/csv and decodeCSVRow, as before.
// Both read the records before it to the same fields, so the findings are
// the same whichever reads a file.

// csvHeaderLine is the header record as export writes it.
func csvHeaderLine() string {
	var b []byte
	for i, h := range csvHeader() {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendCSVField(b, h)
	}
	return string(append(b, '\n'))
}

// splitCSV cuts at a '\n' outside quotes: where the quotes since the
// record's start are even.
func splitCSV(data []byte, atEOF bool) int {
	quotes, from := 0, 0
	for {
		i := bytes.IndexByte(data[from:], '\n')
		if i < 0 {
			if atEOF {
				return len(data)
			}
			return 0
		}
		quotes += bytes.Count(data[from:from+i], []byte{'"'})
		from += i + 1
		if quotes%2 == 0 {
			return from
		}
	}
}

// readCSVFile verifies a CSV data file, hashing it into *h (which it may
// replace: see below), and returns its records (the header not counted)
// and its size.
func (v *bundleVerifier) readCSVFile(f *os.File, h *hash.Hash, progress func(int64)) (uint64, int64, error) {
	header := csvHeaderLine()
	restart := false   // the header is not export's: read the whole file with encoding/csv
	var resync uint64  // the record from which encoding/csv reads, 0 if none
	var resyncAt int64 // its offset
	newDecode := func() func(uint64, []byte, string, *lineResult) {
		d := &csvChecker{index: v.index}
		return func(n uint64, rec []byte, text string, res *lineResult) {
			if n == 1 {
				*res = lineResult{n: 0, fallback: text != header}
				return
			}
			d.decode(n-1, rec, text, res)
		}
	}
	n, size, err := checkRecords(f, v.chunkLen, *h, progress, splitCSV, newDecode, func(c *chunk, i int) bool {
		res := &c.res[i]
		switch {
		case c.first+uint64(i) == 1:
			restart = res.fallback
			return !restart
		case res.fallback:
			resync = res.n
			_, resyncAt = c.record(i)
			return false
		}
		v.apply(res)
		return true
	})
	if err != nil {
		return max(n, 1) - 1, size, fmt.Errorf("read record %d: %w", n, err)
	}
	if n == 0 || restart {
		return v.rereadCSV(f, h)
	}
	if resync == 0 {
		return n - 1, size, nil
	}
	rows, err := v.readCSVRecords(newCSVReader(io.NewSectionReader(f, resyncAt, size-resyncAt)), resync-1)
	if err != nil {
		// encoding/csv stopped at a record it cannot parse: as it did
		// reading the whole file, where the digest and size are those of
		// what it read up to there, and its error numbers lines from the
		// file's start.
		if _, serr := f.Seek(0, io.SeekStart); serr == nil {
			*h = sha256.New()
			cr := &countingReader{r: f, h: *h, progress: func(int64) {}}
			if rerr := csvParseError(newCSVReader(cr)); rerr != nil {
				err = rerr
			}
			size = cr.n
		}
	}
	return rows, size, err
}

// rereadCSV verifies the whole file with encoding/csv.
func (v *bundleVerifier) rereadCSV(f *os.File, h *hash.Hash) (uint64, int64, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0, 0, fmt.Errorf("read CSV file: %w", err)
	}
	*h = sha256.New()
	cr := &countingReader{r: f, h: *h, progress: func(int64) {}}
	rows, err := v.readCSV(cr)
	return rows, cr.n, err
}

// csvParseError reads cr as readCSV does, up to the parse error that
// stops it, and returns that error as readCSV reports it.
func csvParseError(cr *csv.Reader) error {
	if _, err := cr.Read(); err != nil {
		return nil
	}
	var n uint64
	for {
		_, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		n++
		var pe *csv.ParseError
		if err != nil && errors.As(err, &pe) && !errors.Is(err, csv.ErrFieldCount) {
			return fmt.Errorf("record %d: %w", n, err)
		}
	}
}

// csvChecker parses and decodes the records of a CSV file for one
// worker, reusing its scratch space from record to record.
type csvChecker struct {
	hasher trail.Hasher
	json   strictScanner // lists and maps, JSON text
	fields []string
	arena  []byte // a field with doubled quotes, b64 text
	row    trail.Row
	chain  string
	index  map[string]int
}

// decode reads record n into res; res.fallback when the record is not
// one it reads as encoding/csv would.
func (d *csvChecker) decode(n uint64, rec []byte, text string, res *lineResult) {
	*res = lineResult{n: n}
	if !d.split(rec, text) {
		res.fallback = true
		return
	}
	r := &d.row
	if err := d.decodeRow(r); err != nil {
		res.malformed = err
		return
	}
	res.computed = d.hasher.Hash(r)
	if r.Chain != d.chain {
		d.chain = strings.Clone(r.Chain)
	}
	res.key = rowKey{Chain: d.chain, Seq: r.Seq, PrevHash: r.PrevHash, Hash: r.Hash, EventID: strings.Clone(r.Event.ID)}
}

// split parses rec, a record ending in '\n' and holding no '\r', into
// d.fields as encoding/csv does (Comma ',', no lazy quotes): substrings of
// text (rec's bytes as a string), or for a field with doubled quotes a
// string of its own. False when rec is laid out otherwise.
func (d *csvChecker) split(rec []byte, text string) bool {
	if len(rec) < 2 || rec[len(rec)-1] != '\n' || bytes.IndexByte(rec, '\r') >= 0 {
		return false
	}
	d.fields, d.arena = d.fields[:0], d.arena[:0]
	body := rec[:len(rec)-1]
	p := 0
	for {
		if p < len(body) && body[p] == '"' {
			p++
			start, esc := p, -1
			for {
				q := bytes.IndexByte(body[p:], '"')
				if q < 0 {
					return false
				}
				p += q
				if p+1 < len(body) && body[p+1] == '"' {
					if esc < 0 {
						esc = len(d.arena)
					}
					d.arena = append(d.arena, body[start:p+1]...)
					p += 2
					start = p
					continue
				}
				break
			}
			if esc >= 0 {
				d.arena = append(d.arena, body[start:p]...)
				d.fields = append(d.fields, string(d.arena[esc:]))
			} else {
				d.fields = append(d.fields, text[start:p])
			}
			p++ // the closing quote
			if p == len(body) {
				return true
			}
			if body[p] != ',' {
				return false
			}
			p++
			continue
		}
		end := len(body)
		if e := bytes.IndexByte(body[p:], ','); e >= 0 {
			end = p + e
		}
		f := body[p:end]
		if bytes.IndexByte(f, '"') >= 0 || bytes.IndexByte(f, '\n') >= 0 {
			return false
		}
		d.fields = append(d.fields, text[p:end])
		if end == len(body) {
			return true
		}
		p = end + 1
	}
}

// decodeRow decodes d.fields into r as decodeCSVRow does, reading the
// forms export writes in place; a field in any other form, and any
// error, is left to decodeCSVRow.
func (d *csvChecker) decodeRow(r *trail.Row) error {
	rec := d.fields
	if len(rec) != len(columns)+1 {
		return d.slow(r)
	}
	*r = trail.Row{}
	e := &r.Event
	d.json.arena = d.json.arena[:0]
	var err error
	for i := range columns {
		c := &columns[i]
		v := rec[i]
		ok := true
		switch c.kind {
		case kString:
			*c.str(r) = v
		case kSeq:
			r.Seq, err = parseUint(v)
		case kInt64:
			r.Offset, err = parseInt(v, 64)
		case kInt32:
			var n int64
			n, err = parseInt(v, 32)
			e.StatusCode = int32(n)
		case kTime:
			var t time.Time
			t, ok = timeInLayout(v)
			if c.name == "received_time" {
				e.ReceivedTime = t
			} else {
				e.Time = t
			}
		case kIP:
			e.SourceIP, ok = canonicalIP(&d.json.ip, v)
		case kList:
			slot := 0
			if c.name == "tags" {
				slot = 1
			}
			var l []string
			d.json.reset(v)
			l, ok = d.json.list(slot)
			ok = ok && d.json.p == len(v)
			if slot == 0 {
				e.Actor.Groups = l
			} else {
				e.Tags = l
			}
		case kMap:
			d.json.reset(v)
			e.Attributes, ok = d.json.dict()
			ok = ok && d.json.p == len(v)
		case kBytes:
			e.Raw, ok = b64(d.json.raw, &d.arena, v)
			if ok {
				d.json.raw = e.Raw
			}
		case kHash:
			h := &r.Hash
			if c.name == "prev_hash" {
				h = &r.PrevHash
			}
			ok = hexHash(h, v)
		}
		if !ok || err != nil {
			return d.slow(r)
		}
	}
	if s := rec[len(columns)]; s != "" {
		return applyB64(r, strings.Split(s, ","), d.index)
	}
	return nil
}

// slow decodes d.fields with decodeCSVRow, on copies: its row and error
// may keep them.
func (d *csvChecker) slow(r *trail.Row) error {
	rec := make([]string, len(d.fields))
	for i, f := range d.fields {
		rec[i] = strings.Clone(f)
	}
	return decodeCSVRow(rec, r, d.index)
}
