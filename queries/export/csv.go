package export

import (
	"encoding/base64"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/custody-audit/custody/storage"
)

// csvHeader is the header record: the columns, then b64.
func csvHeader() []string {
	h := make([]string, 0, len(columns)+1)
	for _, c := range columns {
		h = append(h, c.name)
	}
	return append(h, b64Column)
}

// csvWriter writes rows as RFC 4180 records (comma, "\n" line ends,
// quotes as needed).
type csvWriter struct {
	w      *csv.Writer
	enc    jsonEncoder
	record []string
	buf    []byte
	b64    []string
}

func newCSVWriter(w io.Writer) (*csvWriter, error) {
	cw := &csvWriter{w: csv.NewWriter(w), record: make([]string, len(columns)+1)}
	if err := cw.w.Write(csvHeader()); err != nil {
		return nil, fmt.Errorf("write csv header: %w", err)
	}
	return cw, nil
}

func (cw *csvWriter) write(r *storage.Row) error {
	cw.b64 = cw.b64[:0]
	for i := range columns {
		c := &columns[i]
		var v string
		switch c.kind {
		case kString:
			v = *c.str(r)
			if needsB64(v, true) {
				cw.b64 = append(cw.b64, c.name)
				v = base64.StdEncoding.EncodeToString([]byte(v))
			}
		case kSeq:
			v = strconv.FormatUint(r.Seq, 10)
		case kInt64:
			v = strconv.FormatInt(r.Offset, 10)
		case kInt32:
			v = strconv.FormatInt(int64(r.Event.StatusCode), 10)
		case kTime:
			if c.name == "received_time" {
				v = formatTime(r.Event.ReceivedTime)
			} else {
				v = formatTime(r.Event.Time)
			}
		case kIP:
			v = ipString(r.Event.SourceIP)
		case kList:
			l := r.Event.Tags
			if c.name == "actor_groups" {
				l = r.Event.Actor.Groups
			}
			cw.buf = cw.enc.appendList(cw.buf[:0], l)
			v = string(cw.buf)
		case kMap:
			cw.buf = cw.enc.appendMap(cw.buf[:0], r.Event.Attributes)
			v = string(cw.buf)
		case kBytes:
			v = base64.StdEncoding.EncodeToString(r.Event.Raw)
		case kHash:
			if c.name == "prev_hash" {
				v = hex.EncodeToString(r.PrevHash[:])
			} else {
				v = hex.EncodeToString(r.Hash[:])
			}
		}
		cw.record[i] = v
	}
	cw.record[len(columns)] = strings.Join(cw.b64, ",")
	return cw.w.Write(cw.record)
}

func (cw *csvWriter) close() error {
	cw.w.Flush()
	return cw.w.Error()
}

// decodeCSVRow parses one CSV record (without the header) into r.
func decodeCSVRow(rec []string, r *storage.Row, index map[string]int) error {
	if len(rec) != len(columns)+1 {
		return fmt.Errorf("%d fields, want %d", len(rec), len(columns)+1)
	}
	*r = storage.Row{}
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
