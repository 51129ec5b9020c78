package archive_test

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/custody-audit/custody/ingest/archive"
)

// TestObjectsLargerThanABlock reads objects of several MiB (the line
// reader reads 1 MiB blocks) in each shape whose lines it splits: every
// line comes out whole at its offset however block boundaries cut it, a
// pretty-printed body is one message, and records over the limit are cut
// and hashed whole.
func TestObjectsLargerThanABlock(t *testing.T) {
	record := func(i int) string {
		// Lengths vary so that lines end at every position of a block.
		return fmt.Sprintf(`{"time":"2026-11-27T10:00:00Z","n":%d,"pad":"%s"}`, i, strings.Repeat("x", 700+i%997))
	}
	var jsonl, crlf, bodies, pretty bytes.Buffer
	var want, wantBodies []string
	for i := range 4000 {
		want = append(want, record(i))
		jsonl.WriteString(record(i) + "\n")
		crlf.WriteString(record(i) + "\r\n")
	}
	for i := range 200 {
		var b strings.Builder
		b.WriteString(`{"records":[`)
		for j := range 20 {
			if j > 0 {
				b.WriteByte(',')
			}
			b.WriteString(record(i*20 + j))
		}
		b.WriteString("]}")
		wantBodies = append(wantBodies, b.String())
		bodies.WriteString(b.String() + "\n")
	}
	pretty.WriteString("{\n  \"records\": [\n")
	for i := range 2000 {
		if i > 0 {
			pretty.WriteString(",\n")
		}
		pretty.WriteString("    " + record(i))
	}
	pretty.WriteString("\n  ]\n}\n")
	prettyBody := strings.TrimSpace(pretty.String())
	over := 1<<20 + 10

	for _, tc := range []struct {
		name    string
		file    string
		content []byte
		format  archive.Format
		max     int
		want    []largeMsg
	}{
		{name: "json lines", file: "PT1H.json", content: jsonl.Bytes(), want: msgsOf(want)},
		{name: "json lines with CRLF, no last newline", file: "PT1H.json", content: bytes.TrimSuffix(crlf.Bytes(), []byte("\r\n")), want: msgsOf(want)},
		{name: "event hubs bodies", file: "bodies.jsonl", content: bodies.Bytes(), want: msgsOf(wantBodies)},
		{name: "event hubs bodies over the limit", file: "bodies.jsonl", content: bodies.Bytes(), max: 25000, want: func() []largeMsg {
			var out []largeMsg
			for _, b := range wantBodies {
				if len(b) <= 25000 {
					out = append(out, largeMsg{body: b})
					continue
				}
				out = append(out, largeMsg{body: b[:25000], truncated: strconv.Itoa(len(b)), quarantine: fmt.Sprintf("SHA-256 of the whole record: %x", sha256.Sum256([]byte(b)))})
			}
			return out
		}()},
		{name: "pretty-printed body", file: "one.json", content: pretty.Bytes(), format: archive.FormatEventHubs, want: []largeMsg{{body: prettyBody}}},
		{name: "pretty-printed body over the limit", file: "one.json", content: pretty.Bytes(), format: archive.FormatEventHubs, max: over, want: []largeMsg{{
			body: strings.TrimSpace(prettyBody[:over]), truncated: strconv.Itoa(len(prettyBody) + 1),
			quarantine: fmt.Sprintf("SHA-256 of the whole record: %x", sha256.Sum256(pretty.Bytes())),
		}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if len(tc.content) < 2<<20 {
				t.Fatalf("test object of %d bytes: want several blocks", len(tc.content))
			}
			root := t.TempDir()
			writeTree(t, root, map[string][]byte{tc.file: tc.content})
			cfg := archive.Config{Format: tc.format, MaxRecordBytes: tc.max, Now: func() time.Time { return fixedNow().Add(24 * time.Hour) }}
			msgs, err := drain(t, newLocal(t, cfg, archive.Resume{}, root))
			if err != nil {
				t.Fatal(err)
			}
			if len(msgs) != len(tc.want) {
				t.Fatalf("%d messages, want %d", len(msgs), len(tc.want))
			}
			for i, m := range msgs {
				w := tc.want[i]
				if string(m.Body) != w.body || m.Attributes[archive.AttrTruncated] != w.truncated || !strings.HasSuffix(m.Quarantine, w.quarantine) || (w.quarantine == "") != (m.Quarantine == "") {
					t.Fatalf("message %d (offset %d): %d bytes, truncated %q, quarantine %q; want %d bytes, truncated %q, quarantine ending %q",
						i+1, m.Offset, len(m.Body), m.Attributes[archive.AttrTruncated], m.Quarantine, len(w.body), w.truncated, w.quarantine)
				}
				if m.Offset != int64(i+1) {
					t.Fatalf("message %d at offset %d", i+1, m.Offset)
				}
			}
		})
	}
}

// largeMsg is what TestObjectsLargerThanABlock expects of a message.
type largeMsg struct {
	body       string
	truncated  string // AttrTruncated
	quarantine string // the end of the quarantine reason
}

func msgsOf(bodies []string) []largeMsg {
	out := make([]largeMsg, len(bodies))
	for i, b := range bodies {
		out[i].body = b
	}
	return out
}
