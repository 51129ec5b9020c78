package bundle

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"

	gojson "github.com/goccy/go-json"

	"github.com/custody-audit/custody/storage/trail"
)

// An OCSF line is the OCSF document derived from a row, as encoding/json
// writes it (keys sorted, HTML characters escaped), with the row's jsonl
// object under unmapped.custody_record. Going through json.Marshal cost
// most of an OCSF export and verification (reflection over nested maps,
// and validating and compacting the record again); appendOCSFValue writes
// the same bytes directly for the value types normalize.OCSF produces and
// defers to encoding/json for any other.

// ocsfRecord is the row's jsonl object, already compact JSON.
type ocsfRecord []byte

// appendOCSFLine appends the OCSF line of r, whose jsonl object is
// record.
func appendOCSFLine(dst []byte, r *trail.Row, record []byte) ([]byte, error) {
	doc := ocsfDocument(r)
	um, ok := doc["unmapped"].(map[string]any)
	if !ok {
		um = map[string]any{}
		doc["unmapped"] = um
	}
	if _, taken := um[ocsfRecordKey]; taken {
		return nil, fmt.Errorf("chain %s seq %d: attribute %q collides with the OCSF record key", r.Chain, r.Seq, ocsfRecordKey)
	}
	um[ocsfRecordKey] = ocsfRecord(record)
	return appendOCSFValue(dst, doc)
}

// appendOCSFValue appends v as json.Marshal would.
func appendOCSFValue(dst []byte, v any) ([]byte, error) {
	switch v := v.(type) {
	case nil:
		return append(dst, "null"...), nil
	case string:
		return appendHTMLSafeString(dst, v), nil
	case bool:
		return strconv.AppendBool(dst, v), nil
	case int:
		return strconv.AppendInt(dst, int64(v), 10), nil
	case int32:
		return strconv.AppendInt(dst, int64(v), 10), nil
	case int64:
		return strconv.AppendInt(dst, v, 10), nil
	case uint64:
		return strconv.AppendUint(dst, v, 10), nil
	case ocsfRecord:
		return appendHTMLEscaped(dst, v), nil
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		dst = append(dst, '{')
		var err error
		for i, k := range keys {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendHTMLSafeString(dst, k)
			dst = append(dst, ':')
			if dst, err = appendOCSFValue(dst, v[k]); err != nil {
				return nil, err
			}
		}
		return append(dst, '}'), nil
	case []string:
		if v == nil {
			return append(dst, "null"...), nil
		}
		dst = append(dst, '[')
		for i, s := range v {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendHTMLSafeString(dst, s)
		}
		return append(dst, ']'), nil
	case []map[string]any:
		if v == nil {
			return append(dst, "null"...), nil
		}
		dst = append(dst, '[')
		var err error
		for i, m := range v {
			if i > 0 {
				dst = append(dst, ',')
			}
			if dst, err = appendOCSFValue(dst, m); err != nil {
				return nil, err
			}
		}
		return append(dst, ']'), nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode OCSF event: %w", err)
	}
	return append(dst, b...), nil
}

// appendHTMLSafeString appends s as encoding/json writes a string.
func appendHTMLSafeString(dst []byte, s string) []byte { return appendJSONText(dst, s, true) }

// appendHTMLEscaped appends compact JSON b with <, > and & escaped, as
// json.Marshal writes a json.RawMessage holding compact JSON whose strings
// already escape U+2028 and U+2029 (what jsonEncoder writes). Those three
// bytes only occur inside strings in JSON text.
func appendHTMLEscaped(dst, b []byte) []byte {
	if bytes.IndexByte(b, '<') < 0 && bytes.IndexByte(b, '>') < 0 && bytes.IndexByte(b, '&') < 0 {
		return append(dst, b...)
	}
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
func (d *lineChecker) canonicalOCSF(line []byte, r *trail.Row) bool {
	if d.exportedOCSF(line, r) {
		return true
	}
	rec, ok := ocsfRecordIn(line)
	if !ok {
		return false
	}
	if d.html.scan(rec, r) {
		// rec is what export writes for r, so only the rest of the line
		// is left to compare with the line derived from r.
		want, err := appendOCSFLine(d.line[:0], r, nil)
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
	want, err := appendOCSFLine(d.line[:0], r, d.buf)
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
