package bundle

import (
	"bytes"

	"github.com/custody-audit/custody/storage/trail"
)

// Verifying an OCSF line quickly: its record is read by the strict
// scanner, and the rest of the line compared with the line derived from
// the row (appendOCSFLine, the encoder export writes with). Anything else
// goes through the field-by-field comparison in verify.go.

// exportedOCSF decodes line into r when line is the OCSF line export
// writes for r, found the quick way: the record is the object under a
// custody_record key, read by the strict scanner (which finds its end),
// and the rest of the line is what appendOCSFLine writes. False leaves the
// line to the general comparison.
//
// A line export writes has the key once (quotes inside strings are
// escaped, and attributes may not take the key), so any occurrence will
// do: the search starts a little before where the last line had it.
func (d *lineChecker) exportedOCSF(line []byte, text string, r *trail.Row) bool {
	key := []byte(ocsfRecordKeyJSON)
	from := min(max(d.recordAt-512, 0), len(line))
	k := bytes.Index(line[from:], key)
	if k >= 0 {
		k += from
	} else if k = bytes.Index(line, key); k < 0 {
		return false
	}
	d.recordAt = k
	start := k + len(ocsfRecordKeyJSON) - 1
	n, ok := d.html.scanObject(text[start:], line[start:], r)
	if !ok {
		return false
	}
	want, err := appendOCSFLine(&d.ocsf, &d.record, d.line[:0], r, nil)
	if err != nil {
		return false
	}
	d.line = want
	return sameAround(line, line[start:start+n], want)
}

// sameAround reports whether line is want with rec, a part of line,
// inserted where want's record would be: line's bytes around rec are
// want's.
func sameAround(line, rec, want []byte) bool {
	i := cap(line) - cap(rec) // rec's offset in line
	return len(want) == len(line)-len(rec) && bytes.Equal(want[:i], line[:i]) && bytes.Equal(want[i:], line[i+len(rec):])
}
