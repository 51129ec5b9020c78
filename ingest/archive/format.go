package archive

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/hamba/avro/v2/ocf"

	"github.com/custody-audit/custody/ingest"
	"github.com/custody-audit/custody/normalize"
)

// Format is how an archive object's content is laid out.
type Format string

// Formats. FormatAuto detects per object (see Detect).
const (
	FormatAuto Format = "auto"
	// FormatJSONLines is a diagnostic-settings PT1H.json blob written since
	// November 2018: one resource-log record per line.
	FormatJSONLines Format = "jsonlines"
	// FormatRecords is an older PT1H.json blob holding one
	// {"records":[...]} object (several such objects in a row are accepted).
	// Each record becomes one message.
	FormatRecords Format = "records"
	// FormatCapture is an Event Hubs Capture Avro object container file;
	// each Avro record's Body (an Event Hubs body) becomes one message.
	FormatCapture Format = "capture"
	// FormatEventHubs is raw Event Hubs bodies saved as files: one body per
	// file, or one body per line.
	FormatEventHubs Format = "eventhubs"
)

// Message formats handed to normalize (ingest.Message.Format).
const (
	messageFormatArchive   = "archive"
	messageFormatEventHubs = "eventhubs"
)

// Message attribute keys set by this package. A message's Attributes may
// be shared with the other messages of its object: read them, never write.
const (
	AttrObject           = "archive.object"            // blob name or file path
	AttrContentFormat    = "archive.format"            // the Format the object was read as
	AttrTruncated        = "archive.truncated"         // set on a line longer than the limit: its full length
	AttrIncompleteLine   = "archive.incomplete_line"   // "true" on a last line without newline that is not valid JSON
	AttrSequenceNumber   = "eventhubs.sequence_number" // Capture: the event's sequence number
	AttrEventHubsOffset  = "eventhubs.offset"          // Capture: the event's offset
	AttrEnqueuedTimeUTC  = "eventhubs.enqueued_time"   // Capture: EnqueuedTimeUtc as written
	AttrPartitionKey     = "eventhubs.partition_key"   // Capture: x-opt-partition-key, when present
	avroMagic            = "Obj\x01"
	detectPeekBytes      = 64 << 10
	defaultReadBufferLen = 256 << 10
)

// ParseFormat maps a flag value to a Format.
func ParseFormat(s string) (Format, error) {
	switch f := Format(strings.ToLower(strings.TrimSpace(s))); f {
	case "", FormatAuto:
		return FormatAuto, nil
	case FormatJSONLines, FormatRecords, FormatCapture, FormatEventHubs:
		return f, nil
	}
	return "", fmt.Errorf("format %q: want one of auto, jsonlines, records, capture, eventhubs: %w", s, ErrBadConfig)
}

// Detect decides how to read an object from its first bytes and its path:
// the Avro magic "Obj\x01" means Capture; a JSON object whose first key is
// not "records" means JSON lines; a {"records":...} object is an old
// archive blob when the path looks like a diagnostic-settings archive
// (PT1H.json, insights-* container, y=/m=/d=/h= segments) and raw Event Hubs
// bodies otherwise. head holds the first bytes (up to 64 KiB is plenty).
func Detect(head []byte, name string) (Format, error) {
	if bytes.HasPrefix(head, []byte(avroMagic)) {
		return FormatCapture, nil
	}
	rest := bytes.TrimLeft(bytes.TrimPrefix(head, []byte("\xef\xbb\xbf")), " \t\r\n")
	if len(rest) == 0 {
		return FormatJSONLines, nil // empty object: nothing to read
	}
	if bytes.HasPrefix(head, []byte("\x1f\x8b")) {
		return "", fmt.Errorf("%w: gzip-compressed content (decompress it first: Azure writes archives uncompressed)", ErrUnrecognized)
	}
	if rest[0] != '{' {
		n := min(len(rest), 8)
		return "", fmt.Errorf("%w: content starts with %q, not a JSON object or an Avro file (choose a format explicitly)", ErrUnrecognized, rest[:n])
	}
	dec := json.NewDecoder(bytes.NewReader(rest))
	if _, err := dec.Token(); err != nil {
		return "", fmt.Errorf("%w: %w", ErrUnrecognized, err)
	}
	tok, err := dec.Token()
	if err != nil {
		// An object cut off inside the first key: the head is too short to
		// say more; treat the line as a record and let normalize judge it.
		return FormatJSONLines, nil
	}
	if key, _ := tok.(string); key != "records" {
		return FormatJSONLines, nil
	}
	if looksLikeDiagnosticArchive(name) {
		return FormatRecords, nil
	}
	return FormatEventHubs, nil
}

func looksLikeDiagnosticArchive(name string) bool {
	n := strings.ReplaceAll(name, "\\", "/")
	if strings.EqualFold(path.Base(n), "PT1H.json") {
		return true
	}
	for seg := range strings.SplitSeq(n, "/") {
		if strings.HasPrefix(seg, "insights-logs-") || seg == "insights-activity-logs" || strings.HasPrefix(seg, "resourceId=") {
			return true
		}
	}
	_, ok := diagnosticHour(strings.Split(n, "/"))
	return ok
}

// recordReader yields the messages of one object in order. Stream, Received
// are filled in by the caller; next returns io.EOF at the end.
type recordReader interface {
	next() (ingest.Message, error)
	close() error
}

// newRecordReader detects (when f is FormatAuto) and opens the reader for
// one object. br buffers under, which line readers read directly once br
// is drained. hold leaves an incomplete last line unread (see lineReader).
func newRecordReader(br *bufio.Reader, under io.Reader, obj Object, f Format, maxRecord int, hold bool) (recordReader, Format, error) {
	if f == FormatAuto {
		head, err := br.Peek(detectPeekBytes)
		if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
			return nil, "", fmt.Errorf("read head: %w", err)
		}
		if f, err = Detect(head, obj.Name); err != nil {
			return nil, "", err
		}
	}
	switch f {
	case FormatJSONLines:
		return newLineReader(br, under, obj, maxRecord, messageFormatArchive, f, hold), f, nil
	case FormatRecords:
		return newRecordsReader(br, obj), f, nil
	case FormatCapture:
		r, err := newCaptureReader(br, obj)
		return r, f, err
	case FormatEventHubs:
		return &bodyReader{lines: newLineReader(br, under, obj, maxRecord, messageFormatEventHubs, f, hold)}, f, nil
	}
	return nil, "", fmt.Errorf("format %q: %w", f, ErrBadConfig)
}

func attrs(obj Object, f Format, extra int) map[string]string {
	m := make(map[string]string, 2+extra)
	m[AttrObject] = obj.Name
	m[AttrContentFormat] = string(f)
	return m
}

// lineReader reads one message per non-blank line. A line longer than max
// is cut to max bytes and quarantined (Message.Quarantine names the limit
// and the whole line's SHA-256) instead of the backfill failing or
// dropping it. A last line without a newline that is not a whole record is
// left unread while the object may still grow (hold): its offset stays
// before it, so the next run reads it whole; in an object that is no
// longer written it is quarantined.
type lineReader struct {
	in       *lineBlocks
	obj      Object
	attrs    map[string]string // shared by the messages with no attribute of their own
	pos      positioner
	max      int
	format   string
	content  Format
	hold     bool
	line     int64
	eof      bool
	heldBack bool
}

func newLineReader(br *bufio.Reader, under io.Reader, obj Object, maxRecord int, format string, content Format, hold bool) *lineReader {
	return &lineReader{in: newLineBlocks(br, under, lineBlockLen), obj: obj, attrs: attrs(obj, content, 0),
		pos: newPositioner(obj.Name, "line"), max: maxRecord, format: format, content: content, hold: hold}
}

// positioner renders a message's Position, "<object> line N" or
// "<object> record N", in one allocation.
type positioner struct {
	buf    []byte
	prefix int
}

func newPositioner(object, unit string) positioner {
	buf := make([]byte, 0, len(object)+len(unit)+2+20)
	buf = append(append(append(append(buf, object...), ' '), unit...), ' ')
	return positioner{buf: buf, prefix: len(buf)}
}

func (p *positioner) at(n int64) string {
	p.buf = strconv.AppendInt(p.buf[:p.prefix], n, 10)
	return string(p.buf)
}

// incompleteReason is the quarantine reason of a cut last line in an
// object that is no longer written.
const incompleteReason = "incomplete last line: the object ends inside this record, without a newline, and is no longer written"

func (l *lineReader) next() (ingest.Message, error) {
	for {
		if l.eof {
			return ingest.Message{}, io.EOF
		}
		body, full, newline, sum, err := l.in.next(l.max)
		if err != nil {
			return ingest.Message{}, fmt.Errorf("line %d: %w", l.line+1, err)
		}
		if !newline {
			l.eof = true
			if full == 0 {
				return ingest.Message{}, io.EOF
			}
		}
		l.line++
		trimmed := bytes.TrimSpace(body)
		if len(trimmed) == 0 && full <= l.max {
			continue
		}
		if l.line == 1 {
			trimmed = bytes.TrimPrefix(trimmed, []byte("\xef\xbb\xbf"))
		}
		incomplete := !newline && (full > l.max || !json.Valid(trimmed))
		if incomplete && l.hold {
			l.line--
			l.heldBack = true
			return ingest.Message{}, io.EOF
		}
		m := ingest.Message{
			Offset:     l.line,
			Position:   l.pos.at(l.line),
			Format:     l.format,
			Body:       trimmed,
			Attributes: l.attrs,
		}
		if full > l.max {
			m.Attributes = attrs(l.obj, l.content, 1)
			m.Attributes[AttrTruncated] = strconv.Itoa(full)
			m.Quarantine = normalize.OversizeReason(int64(full), int64(l.max), sum)
		} else if incomplete {
			m.Attributes = attrs(l.obj, l.content, 1)
			m.Attributes[AttrIncompleteLine] = "true"
			m.Quarantine = incompleteReason
		}
		return m, nil
	}
}

func (l *lineReader) close() error { return nil }

// bodyReader reads raw Event Hubs bodies: one per line when the first
// non-blank line is a complete JSON value, else the whole file is one body
// (a pretty-printed {"records":[...]}).
type bodyReader struct {
	lines  *lineReader
	single bool
	done   bool
	first  *ingest.Message
}

func (b *bodyReader) next() (ingest.Message, error) {
	if b.done {
		return ingest.Message{}, io.EOF
	}
	if b.first == nil && !b.single {
		m, err := b.lines.next()
		if err != nil {
			return m, err
		}
		if json.Valid(m.Body) || m.Attributes[AttrTruncated] != "" {
			b.first = &ingest.Message{} // lines mode from now on
			return m, nil
		}
		// Not a line-delimited body: the whole file is one body.
		b.single = true
		in := b.lines.in.rest()
		rest, err := io.ReadAll(io.LimitReader(in, int64(b.lines.max-len(m.Body))+1))
		if err != nil {
			return ingest.Message{}, fmt.Errorf("read body: %w", err)
		}
		// A fresh body: m.Body is part of a block of the line reader.
		body := make([]byte, 0, len(m.Body)+1+len(rest))
		body = append(append(append(body, m.Body...), '\n'), rest...)
		full := len(body)
		m.Quarantine = "" // the first line alone was not the record
		m.Attributes = attrs(b.lines.obj, b.lines.content, 1)
		if full > b.lines.max {
			h := sha256.New()
			h.Write(body)
			extra, err := io.Copy(h, in)
			if err != nil {
				return ingest.Message{}, fmt.Errorf("read body: %w", err)
			}
			full += int(extra)
			var sum [32]byte
			h.Sum(sum[:0])
			m.Attributes[AttrTruncated] = strconv.Itoa(full)
			m.Quarantine = normalize.OversizeReason(int64(full), int64(b.lines.max), sum)
		}
		b.done = true
		m.Offset = 1
		m.Position = b.lines.obj.Name + " record 1"
		m.Body = bytes.TrimSpace(body[:min(len(body), b.lines.max)])
		return m, nil
	}
	return b.lines.next()
}

func (b *bodyReader) close() error { return nil }

func (b *bodyReader) incompleteHeld() bool { return b.lines.heldBack }

func (l *lineReader) incompleteHeld() bool { return l.heldBack }

// holder is a recordReader that may have left an incomplete last line
// unread.
type holder interface{ incompleteHeld() bool }

// recordsReader streams the elements of the "records" array(s) of an old
// archive blob without holding the blob in memory.
type recordsReader struct {
	dec     *json.Decoder
	obj     Object
	attrs   map[string]string // shared by every message
	pos     positioner
	n       int64
	inArray bool
	inObj   bool
	sawRecs bool
}

func newRecordsReader(r io.Reader, obj Object) *recordsReader {
	return &recordsReader{dec: json.NewDecoder(r), obj: obj, attrs: attrs(obj, FormatRecords, 0), pos: newPositioner(obj.Name, "record")}
}

func (r *recordsReader) malformed(what string, err error) error {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("%w: records blob %s at byte %d: %w", ErrMalformed, what, r.dec.InputOffset(), err)
}

func (r *recordsReader) next() (ingest.Message, error) {
	for {
		switch {
		case r.inArray:
			if r.dec.More() {
				var raw json.RawMessage
				if err := r.dec.Decode(&raw); err != nil {
					return ingest.Message{}, r.malformed("record "+strconv.FormatInt(r.n+1, 10), err)
				}
				r.n++
				return ingest.Message{
					Offset:     r.n,
					Position:   r.pos.at(r.n),
					Format:     messageFormatArchive,
					Body:       raw,
					Attributes: r.attrs,
				}, nil
			}
			if _, err := r.dec.Token(); err != nil { // ']'
				return ingest.Message{}, r.malformed("end of records array", err)
			}
			r.inArray = false
		case r.inObj:
			if !r.dec.More() {
				if _, err := r.dec.Token(); err != nil { // '}'
					return ingest.Message{}, r.malformed("end of object", err)
				}
				r.inObj = false
				if !r.sawRecs {
					return ingest.Message{}, fmt.Errorf("%w: records blob object at byte %d has no \"records\" array", ErrMalformed, r.dec.InputOffset())
				}
				continue
			}
			tok, err := r.dec.Token()
			if err != nil {
				return ingest.Message{}, r.malformed("key", err)
			}
			if key, _ := tok.(string); key == "records" {
				tok, err := r.dec.Token()
				if err != nil {
					return ingest.Message{}, r.malformed("records array", err)
				}
				if d, ok := tok.(json.Delim); !ok || d != '[' {
					return ingest.Message{}, fmt.Errorf("%w: records blob: \"records\" is %v, not an array", ErrMalformed, tok)
				}
				r.sawRecs, r.inArray = true, true
				continue
			}
			var skip json.RawMessage
			if err := r.dec.Decode(&skip); err != nil {
				return ingest.Message{}, r.malformed("value", err)
			}
		default:
			tok, err := r.dec.Token()
			if errors.Is(err, io.EOF) {
				return ingest.Message{}, io.EOF
			}
			if err != nil {
				return ingest.Message{}, r.malformed("top-level value", err)
			}
			if d, ok := tok.(json.Delim); !ok || d != '{' {
				return ingest.Message{}, fmt.Errorf("%w: records blob: top-level %v at byte %d, want an object", ErrMalformed, tok, r.dec.InputOffset())
			}
			r.inObj, r.sawRecs = true, false
		}
	}
}

func (r *recordsReader) close() error { return nil }

// CaptureSchema is the Avro schema Event Hubs Capture writes, as documented
// in "Exploring captured Avro files in Azure Event Hubs" (Microsoft Learn).
const CaptureSchema = `{
  "type": "record",
  "name": "EventData",
  "namespace": "Microsoft.ServiceBus.Messaging",
  "fields": [
    {"name": "SequenceNumber", "type": "long"},
    {"name": "Offset", "type": "string"},
    {"name": "EnqueuedTimeUtc", "type": "string"},
    {"name": "SystemProperties", "type": {"type": "map", "values": ["long", "double", "string", "bytes"]}},
    {"name": "Properties", "type": {"type": "map", "values": ["long", "double", "string", "bytes"]}},
    {"name": "Body", "type": ["null", "bytes"]}
  ]
}`

// CaptureEvent is one record of a Capture file.
type CaptureEvent struct {
	SequenceNumber   int64          `avro:"SequenceNumber"`
	Offset           string         `avro:"Offset"`
	EnqueuedTimeUtc  string         `avro:"EnqueuedTimeUtc"`
	SystemProperties map[string]any `avro:"SystemProperties"`
	Properties       map[string]any `avro:"Properties"`
	Body             []byte         `avro:"Body"`
}

type captureReader struct {
	dec *ocf.Decoder
	obj Object
	pos positioner
	n   int64
}

func newCaptureReader(r io.Reader, obj Object) (*captureReader, error) {
	dec, err := ocf.NewDecoder(r)
	if err != nil {
		return nil, fmt.Errorf("%w: avro header: %w", ErrMalformed, err)
	}
	rec, ok := dec.Schema().(*avro.RecordSchema)
	if !ok {
		dec.Close()
		return nil, fmt.Errorf("%w: avro file schema is %s, not the Event Hubs Capture EventData record", ErrMalformed, dec.Schema().Type())
	}
	have := make(map[string]bool, len(rec.Fields()))
	for _, f := range rec.Fields() {
		have[f.Name()] = true
	}
	// The writer-schema fields a file must have for its records to be read
	// as Capture events.
	for _, want := range [...]string{"SequenceNumber", "Offset", "EnqueuedTimeUtc", "Body"} {
		if !have[want] {
			dec.Close()
			return nil, fmt.Errorf("%w: avro record %s lacks field %s: not an Event Hubs Capture file", ErrMalformed, rec.FullName(), want)
		}
	}
	return &captureReader{dec: dec, obj: obj, pos: newPositioner(obj.Name, "record")}, nil
}

func (c *captureReader) next() (ingest.Message, error) {
	if !c.dec.HasNext() {
		if err := c.dec.Error(); err != nil {
			return ingest.Message{}, fmt.Errorf("%w: avro block after record %d: %w", ErrMalformed, c.n, err)
		}
		return ingest.Message{}, io.EOF
	}
	var ev CaptureEvent
	if err := c.dec.Decode(&ev); err != nil {
		return ingest.Message{}, fmt.Errorf("%w: avro record %d: %w", ErrMalformed, c.n+1, err)
	}
	c.n++
	a := attrs(c.obj, FormatCapture, 4)
	a[AttrSequenceNumber] = strconv.FormatInt(ev.SequenceNumber, 10)
	a[AttrEventHubsOffset] = ev.Offset
	a[AttrEnqueuedTimeUTC] = ev.EnqueuedTimeUtc
	if pk := partitionKey(ev.SystemProperties); pk != "" {
		a[AttrPartitionKey] = pk
	}
	return ingest.Message{
		Offset:     c.n,
		Position:   c.pos.at(c.n),
		Format:     messageFormatEventHubs,
		Body:       ev.Body,
		Enqueued:   parseEnqueued(ev.EnqueuedTimeUtc),
		Attributes: a,
	}, nil
}

func (c *captureReader) close() error { return c.dec.Close() }

func partitionKey(props map[string]any) string {
	for _, k := range [...]string{"x-opt-partition-key", "PartitionKey"} {
		switch v := props[k].(type) {
		case string:
			return v
		case []byte:
			return string(v)
		}
	}
	return ""
}

// parseEnqueued reads EnqueuedTimeUtc in the forms seen in Capture files:
// .NET's invariant culture ("8/31/2017 7:11:45 PM") and ISO 8601.
func parseEnqueued(s string) time.Time {
	for _, l := range [...]string{"1/2/2006 3:04:05 PM", time.RFC3339Nano, "2006-01-02 15:04:05"} {
		if t, err := time.Parse(l, s); err == nil {
			return t.UTC()
		}
	}
	return time.Time{}
}
