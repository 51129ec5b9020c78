package bundle

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/custody-audit/custody/storage/trail"
)

// csvHeader is the header record: the columns, then b64.
func csvHeader() []string {
	h := make([]string, 0, len(columns)+1)
	for _, c := range columns {
		h = append(h, c.name)
	}
	return append(h, b64Column)
}

// CSV data files are RFC 4180 records (comma, "\n" line ends, quotes as
// needed), byte for byte as encoding/csv writes them.

// writeCSVHeader writes the header record.
func writeCSVHeader(w io.Writer) error {
	var line []byte
	for i, h := range csvHeader() {
		if i > 0 {
			line = append(line, ',')
		}
		line = appendCSVField(line, h)
	}
	if _, err := w.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("write csv header: %w", err)
	}
	return nil
}

// csvEncoder encodes rows as CSV lines, reusing its scratch space.
type csvEncoder struct {
	enc jsonEncoder
	b64 []string
	tmp []byte
}

// appendLine appends r as one CSV record with its line end.
func (ce *csvEncoder) appendLine(dst []byte, r *trail.Row) []byte {
	ce.b64 = ce.b64[:0]
	for i := range columns {
		c := &columns[i]
		if i > 0 {
			dst = append(dst, ',')
		}
		// Only text columns can need quotes: numbers, times, IPs,
		// base64 and hex never start with a space or hold a comma,
		// quote or line end. Lists and maps are JSON and do.
		switch c.kind {
		case kString:
			v := *c.str(r)
			if needsB64(v, true) {
				ce.b64 = append(ce.b64, c.name)
				dst = base64.StdEncoding.AppendEncode(dst, []byte(v))
			} else {
				dst = appendCSVField(dst, v)
			}
		case kSeq:
			dst = strconv.AppendUint(dst, r.Seq, 10)
		case kInt64:
			dst = strconv.AppendInt(dst, r.Offset, 10)
		case kInt32:
			dst = strconv.AppendInt(dst, int64(r.Event.StatusCode), 10)
		case kTime:
			t := r.Event.Time
			if c.name == "received_time" {
				t = r.Event.ReceivedTime
			}
			dst = t.UTC().AppendFormat(dst, timeLayout)
		case kIP:
			dst = appendCSVField(dst, ipString(r.Event.SourceIP))
		case kList:
			l := r.Event.Tags
			if c.name == "actor_groups" {
				l = r.Event.Actor.Groups
			}
			ce.tmp = ce.enc.appendList(ce.tmp[:0], l)
			dst = appendCSVField(dst, ce.tmp)
		case kMap:
			ce.tmp = ce.enc.appendMap(ce.tmp[:0], r.Event.Attributes)
			dst = appendCSVField(dst, ce.tmp)
		case kBytes:
			dst = base64.StdEncoding.AppendEncode(dst, r.Event.Raw)
		case kHash:
			h := &r.Hash
			if c.name == "prev_hash" {
				h = &r.PrevHash
			}
			dst = hex.AppendEncode(dst, h[:])
		}
	}
	dst = append(dst, ',')
	ce.tmp = ce.tmp[:0]
	for i, n := range ce.b64 {
		if i > 0 {
			ce.tmp = append(ce.tmp, ',')
		}
		ce.tmp = append(ce.tmp, n...)
	}
	dst = appendCSVField(dst, ce.tmp)
	return append(dst, '\n')
}

// appendCSVField appends one field as encoding/csv's Writer does (Comma
// ',', UseCRLF false).
func appendCSVField[S ~string | ~[]byte](dst []byte, field S) []byte {
	if !csvNeedsQuotes(field) {
		return append(dst, field...)
	}
	dst = append(dst, '"')
	for len(field) > 0 {
		i := indexQuote(field)
		if i < 0 {
			return append(append(dst, field...), '"')
		}
		dst = append(dst, field[:i+1]...)
		dst = append(dst, '"')
		field = field[i+1:]
	}
	return append(dst, '"')
}

// indexQuote is strings.IndexByte(field, '"') for strings and bytes.
func indexQuote[S ~string | ~[]byte](field S) int {
	for i := 0; i < len(field); i++ {
		if field[i] == '"' {
			return i
		}
	}
	return -1
}

// csvNeedsQuotes is encoding/csv's fieldNeedsQuotes for Comma ','.
func csvNeedsQuotes[S ~string | ~[]byte](field S) bool {
	if len(field) == 0 {
		return false
	}
	if len(field) == 2 && field[0] == '\\' && field[1] == '.' {
		return true
	}
	for i := 0; i < len(field); i++ {
		if c := field[i]; c == '\n' || c == '\r' || c == '"' || c == ',' {
			return true
		}
	}
	r1, _ := utf8.DecodeRuneInString(string(field[:min(len(field), utf8.UTFMax)]))
	return unicode.IsSpace(r1)
}

// decodeCSVRow parses one CSV record (without the header) into r.
func decodeCSVRow(rec []string, r *trail.Row, index map[string]int) error {
	if len(rec) != len(columns)+1 {
		return fmt.Errorf("%d fields, want %d", len(rec), len(columns)+1)
	}
	*r = trail.Row{}
	e := &r.Event
	var err error
	for i := range columns {
		c := &columns[i]
		v := rec[i]
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
			if c.name == "received_time" {
				e.ReceivedTime, err = parseTime(v)
			} else {
				e.Time, err = parseTime(v)
			}
		case kIP:
			e.SourceIP, err = parseIP(v)
		case kList:
			var l []string
			if err = json.Unmarshal([]byte(v), &l); err == nil {
				if c.name == "actor_groups" {
					e.Actor.Groups = l
				} else {
					e.Tags = l
				}
			}
		case kMap:
			err = json.Unmarshal([]byte(v), &e.Attributes)
		case kBytes:
			e.Raw, err = base64.StdEncoding.DecodeString(v)
		case kHash:
			if c.name == "prev_hash" {
				r.PrevHash, err = parseHash(v)
			} else {
				r.Hash, err = parseHash(v)
			}
		}
		if err != nil {
			return fmt.Errorf("%s: %w", c.name, err)
		}
	}
	var b64 []string
	if s := rec[len(columns)]; s != "" {
		b64 = strings.Split(s, ",")
	}
	return applyB64(r, b64, index)
}
