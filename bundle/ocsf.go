package bundle

import (
	"bytes"
	"fmt"

	gojson "github.com/goccy/go-json"

	"github.com/custody-audit/custody/event"
	"github.com/custody-audit/custody/normalize"
	"github.com/custody-audit/custody/storage/trail"
)

// An OCSF line is the row's OCSF event as normalize.OCSFWriter writes it
// (what `custody normalize --ocsf` prints; json.Marshal's bytes for the
// document as a tree of maps), with the row's jsonl object under
// unmapped.custody_record, HTML characters escaped as json.Marshal
// escapes a json.RawMessage. Export, the verifier's quick path and its
// field-by-field comparison all derive lines through appendOCSFLine.

// appendOCSFLine appends the OCSF line of r, whose jsonl object is record
// (compact JSON as jsonEncoder writes it; empty writes the record key
// with no value, for comparing the rest of a line). Empty lists are
// written [] whether nil or not, so that a row read back from a bundle
// derives the line of the row it was written from.
func appendOCSFLine(w *normalize.OCSFWriter, scratch *[]byte, dst []byte, r *trail.Row, record []byte) ([]byte, error) {
	e := listsNotNil(&r.Event)
	if bytes.ContainsAny(record, "<>&") {
		*scratch = appendHTMLEscaped((*scratch)[:0], record)
		record = *scratch
	}
	dst, err := w.Append(dst, e, ocsfRecordKey, record)
	if err != nil {
		return nil, fmt.Errorf("chain %s seq %d: attribute %q collides with the OCSF record key", r.Chain, r.Seq, ocsfRecordKey)
	}
	return dst, nil
}

// appendOCSFEvent appends the OCSF event of r with no record member, as
// appendOCSFLine writes the rest of the line.
func appendOCSFEvent(w *normalize.OCSFWriter, dst []byte, r *trail.Row) []byte {
	dst, _ = w.Append(dst, listsNotNil(&r.Event), "", nil)
	return dst
}

// listsNotNil returns e, or a copy of e with an empty list for nil tags
// (the only list the OCSF event writes as null when nil).
func listsNotNil(e *event.Event) *event.Event {
	if e.Tags != nil {
		return e
	}
	c := *e
	c.Tags = []string{}
	return &c
}

// appendHTMLEscaped appends compact JSON b with <, > and & escaped, as
// json.Marshal writes a json.RawMessage holding compact JSON whose strings
// already escape U+2028 and U+2029 (what jsonEncoder writes). Those three
// bytes only occur inside strings in JSON text.
func appendHTMLEscaped(dst, b []byte) []byte {
	for {
		i := bytes.IndexAny(b, "<>&")
		if i < 0 {
			return append(dst, b...)
		}
		dst = append(dst, b[:i]...)
		dst = append(dst, '\\', 'u', '0', '0', hexDigits[b[i]>>4], hexDigits[b[i]&0xF])
		b = b[i+1:]
	}
}

// canonicalOCSF decodes line into r when line is exactly the OCSF line
// export writes for the row in its record: then the line holds no other
// finding than those of the row itself, and the full comparison of its
// fields with the derived ones can be skipped. Any other line is left to
// that comparison.
func (d *lineChecker) canonicalOCSF(line []byte, text string, r *trail.Row) bool {
	if d.exportedOCSF(line, text, r) {
		return true
	}
	rec, ok := ocsfRecordIn(line)
	if !ok {
		return false
	}
	at := cap(line) - cap(rec) // rec's offset in line
	if d.html.scan(text[at:at+len(rec)], rec, r) {
		// rec is what export writes for r, so only the rest of the line
		// is left to compare with the line derived from r.
		want, err := appendOCSFLine(&d.ocsf, &d.record, d.line[:0], r, nil)
		if err != nil {
			return false
		}
		d.line = want
		return sameAround(line, rec, want)
	}
	// A lenient decode is enough: only a line equal to the one derived
	// from the decoded row is accepted here.
	if !decodeRecord(rec, r, d.index) {
		return false
	}
	d.buf = d.enc.appendRow(d.buf[:0], r)
	want, err := appendOCSFLine(&d.ocsf, &d.record, d.line[:0], r, d.buf)
	if err != nil {
		return false
	}
	d.line = want
	return bytes.Equal(want, line)
}

// decodeRecord reads a jsonl record with the general decoder, without
// checking that it is canonical.
func decodeRecord(rec []byte, r *trail.Row, index map[string]int) bool {
	var j jsonRecord
	return gojson.Unmarshal(rec, &j) == nil && j.toRow(r, index) == nil
}

// ocsfRecordKeyJSON starts the record member of an OCSF line. Its quotes
// cannot occur inside a JSON string (they would be escaped there), so it
// matches a key; canonicalOCSF checks the whole line anyway.
const ocsfRecordKeyJSON = `"` + ocsfRecordKey + `":{`

// ocsfRecordIn returns the object following the first custody_record key
// of line.
func ocsfRecordIn(line []byte) ([]byte, bool) {
	i := bytes.Index(line, []byte(ocsfRecordKeyJSON))
	if i < 0 {
		return nil, false
	}
	start := i + len(ocsfRecordKeyJSON) - 1
	depth := 0
	for j := start; j < len(line); j++ {
		switch line[j] {
		case '"':
			// skip the string: its end is the next quote not escaped
			k := j + 1
			for {
				q := bytes.IndexByte(line[k:], '"')
				if q < 0 {
					return nil, false
				}
				k += q
				bs := 0
				for m := k - 1; line[m] == '\\'; m-- {
					bs++
				}
				if bs%2 == 0 {
					break
				}
				k++
			}
			j = k
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				return line[start : j+1], true
			}
		}
	}
	return nil, false
}
