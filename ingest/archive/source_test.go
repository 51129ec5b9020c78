package archive_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/custody-audit/custody/ingest"
	"github.com/custody-audit/custody/ingest/archive"
)

var update = flag.Bool("update", false, "rewrite golden files")

func fixedNow() time.Time { return time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC) }

// drain reads the source to its end, acknowledging every batch.
func drain(t testing.TB, src *archive.Source) ([]ingest.Message, error) {
	t.Helper()
	ctx := context.Background()
	if err := src.Connect(ctx); err != nil {
		return nil, err
	}
	var all []ingest.Message
	for {
		batch, ack, err := src.ReadBatch(ctx)
		if errors.Is(err, ingest.ErrEndOfInput) {
			return all, nil
		}
		if err != nil {
			return all, err
		}
		if len(batch) == 0 {
			t.Fatal("ReadBatch returned an empty batch without an error")
		}
		all = append(all, batch...)
		if err := ack(ctx, nil); err != nil {
			t.Fatalf("ack: %v", err)
		}
	}
}

func newLocal(t testing.TB, cfg archive.Config, resume archive.Resume, paths ...string) *archive.Source {
	t.Helper()
	store, err := archive.NewLocal(paths...)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Now == nil {
		cfg.Now = fixedNow
	}
	src, err := archive.New(store, cfg, resume, nil)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// goldenMessage is the stable rendering of a message in golden files; root
// is replaced by "<root>".
type goldenMessage struct {
	Stream     string            `json:"stream"`
	Offset     int64             `json:"offset"`
	Position   string            `json:"position"`
	Format     string            `json:"format"`
	Enqueued   string            `json:"enqueued,omitempty"`
	Attributes map[string]string `json:"attributes"`
	Body       string            `json:"body"`
}

func render(t testing.TB, msgs []ingest.Message, root string) []byte {
	t.Helper()
	var buf bytes.Buffer
	for _, m := range msgs {
		g := goldenMessage{
			Stream:     strings.ReplaceAll(m.Stream, strings.TrimPrefix(filepath.ToSlash(root), "/"), "<root>"),
			Offset:     m.Offset,
			Position:   strings.ReplaceAll(m.Position, filepath.ToSlash(root), "<root>"),
			Format:     m.Format,
			Attributes: map[string]string{},
			Body:       string(m.Body),
		}
		for k, v := range m.Attributes {
			g.Attributes[k] = strings.ReplaceAll(v, filepath.ToSlash(root), "<root>")
		}
		if !m.Enqueued.IsZero() {
			g.Enqueued = m.Enqueued.Format(time.RFC3339Nano)
		}
		if !m.Received.Equal(fixedNow()) {
			t.Errorf("%s: Received = %s, want the injected clock", m.Position, m.Received)
		}
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(g); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden (run with -update to create): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("messages differ from %s (run with -update after checking):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func TestLocalGolden(t *testing.T) {
	root := t.TempDir()
	writeTree(t, root, fixtureTree(t))
	msgs, err := drain(t, newLocal(t, archive.Config{}, archive.Resume{}, root))
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "local.jsonl", render(t, msgs, root))
}

func streamsOf(msgs []ingest.Message) []string {
	var s []string
	for _, m := range msgs {
		if !slices.Contains(s, m.Stream) {
			s = append(s, m.Stream)
		}
	}
	return s
}

func offsetsOf(msgs []ingest.Message, stream string) []int64 {
	var o []int64
	for _, m := range msgs {
		if m.Stream == stream {
			o = append(o, m.Offset)
		}
	}
	return o
}

func fileStream(root, rel string) string {
	return "file/" + strings.TrimPrefix(filepath.ToSlash(filepath.Join(root, rel)), "/")
}

func TestTimeRangeSelection(t *testing.T) {
	root := t.TempDir()
	writeTree(t, root, fixtureTree(t))
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	undated := []string{fileStream(root, bodies), fileStream(root, oneBody)}
	tests := []struct {
		name     string
		from, to string
		want     []string // dated streams, in read order, before the undated ones
	}{
		{"everything", "", "", []string{fileStream(root, oldBlob), fileStream(root, nsgBlob), fileStream(root, capFile)}},
		{"hour 10 only, from mid-hour", "2026-11-27T10:30:00Z", "2026-11-27T11:00:00Z", []string{fileStream(root, nsgBlob)}},
		{"to is exclusive", "2026-11-27T09:00:00Z", "2026-11-27T10:00:00Z", nil},
		{"from reaches into hour 11", "2026-11-27T11:59:59Z", "", []string{fileStream(root, capFile)}},
		{"only 2018", "", "2019-01-01T00:00:00Z", []string{fileStream(root, oldBlob)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var r archive.TimeRange
			if tc.from != "" {
				r.From = at(tc.from)
			}
			if tc.to != "" {
				r.To = at(tc.to)
			}
			msgs, err := drain(t, newLocal(t, archive.Config{Range: r}, archive.Resume{}, root))
			if err != nil {
				t.Fatal(err)
			}
			// Undated objects (no hour in their path) are always included and
			// sort first (zero hour).
			want := append(slices.Clone(undated), tc.want...)
			if got := streamsOf(msgs); !slices.Equal(got, want) {
				t.Errorf("streams:\n got %q\nwant %q", got, want)
			}
		})
	}
}

// countingStore counts Open calls on a real Local store.
type countingStore struct {
	archive.Store
	opened []string
}

func (c *countingStore) Open(ctx context.Context, o archive.Object) (io.ReadCloser, error) {
	c.opened = append(c.opened, o.Stream)
	return c.Store.Open(ctx, o)
}

func TestResumeSkipsStored(t *testing.T) {
	root := t.TempDir()
	files := fixtureTree(t)
	writeTree(t, root, files)
	local, err := archive.NewLocal(root)
	if err != nil {
		t.Fatal(err)
	}
	store := &countingStore{Store: local}
	resume := archive.Resume{
		Positions: map[string]int64{
			fileStream(root, nsgBlob): 1, // line 1 stored; line 3 is next
			fileStream(root, capFile): 2,
			fileStream(root, bodies):  2, // all stored, but not known complete
		},
		Completed: map[string]int64{
			fileStream(root, oldBlob): int64(len(files[oldBlob])),     // complete at this size: not opened
			fileStream(root, oneBody): int64(len(files[oneBody])) - 1, // grew since: re-read
		},
	}
	src, err := archive.New(store, archive.Config{Now: fixedNow}, resume, nil)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := drain(t, src)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]int64{
		fileStream(root, nsgBlob): {3},
		fileStream(root, capFile): {3},
		fileStream(root, bodies):  nil,
		fileStream(root, oneBody): {1},
		fileStream(root, oldBlob): nil,
	}
	for stream, offs := range want {
		if got := offsetsOf(msgs, stream); !slices.Equal(got, offs) {
			t.Errorf("%s: offsets %v, want %v", stream, got, offs)
		}
	}
	if slices.Contains(store.opened, fileStream(root, oldBlob)) {
		t.Errorf("completed object was opened")
	}
	snap := src.Progress().Snapshot()
	if snap.SkippedObjects != 1 || snap.DoneObjects != 5 || snap.DoneBytes != snap.TotalBytes || snap.ETA != 0 {
		t.Errorf("progress after resume: %+v", snap)
	}
}

func TestAckCompletionAndRewind(t *testing.T) {
	root := t.TempDir()
	files := fixtureTree(t)
	writeTree(t, root, map[string][]byte{nsgBlob: files[nsgBlob], capFile: files[capFile]})
	var completed []archive.Completion
	cfg := archive.Config{MaxBatchMessages: 2, OnComplete: func(c archive.Completion) { completed = append(completed, c) }}
	src := newLocal(t, cfg, archive.Resume{}, root)
	ctx := context.Background()
	if err := src.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	read := func() ([]ingest.Message, ingest.AckFunc) {
		t.Helper()
		b, ack, err := src.ReadBatch(ctx)
		if err != nil {
			t.Fatalf("ReadBatch: %v", err)
		}
		return b, ack
	}
	key := func(ms []ingest.Message) []string {
		var k []string
		for _, m := range ms {
			k = append(k, fmt.Sprintf("%s#%d", filepath.Base(m.Stream), m.Offset))
		}
		return k
	}

	b1, ack1 := read() // nsg lines 1 and 3
	if got := key(b1); !slices.Equal(got, []string{"PT1H.json#1", "PT1H.json#3"}) {
		t.Fatalf("batch 1 = %v", got)
	}
	b2, ack2 := read() // capture records 1 and 2 (nsg completed here)
	if got := key(b2); !slices.Equal(got, []string{"00.avro#1", "00.avro#2"}) {
		t.Fatalf("batch 2 = %v", got)
	}
	if len(completed) != 0 {
		t.Fatalf("completion reported before any ack: %v", completed)
	}
	// Acks out of order: batch 2 first settles nothing.
	if err := ack2(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if len(completed) != 0 {
		t.Fatalf("completion reported while batch 1 is pending: %v", completed)
	}
	if err := ack1(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if len(completed) != 1 || completed[0].Stream != fileStream(root, nsgBlob) || completed[0].LastOffset != 3 || completed[0].Size != int64(len(files[nsgBlob])) {
		t.Fatalf("completions after ack = %+v", completed)
	}

	b3, ack3 := read() // capture record 3
	if got := key(b3); !slices.Equal(got, []string{"00.avro#3"}) {
		t.Fatalf("batch 3 = %v", got)
	}
	// The store failed: the batch comes again, and nothing before it.
	if err := ack3(ctx, errors.New("store unavailable")); err != nil {
		t.Fatal(err)
	}
	b4, ack4 := read()
	if got := key(b4); !slices.Equal(got, []string{"00.avro#3"}) {
		t.Fatalf("redelivered batch = %v", got)
	}
	if !bytes.Equal(b4[0].Body, b3[0].Body) {
		t.Fatalf("redelivered body differs")
	}
	if err := ack4(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := src.ReadBatch(ctx); !errors.Is(err, ingest.ErrEndOfInput) {
		t.Fatalf("after the last batch: %v, want ErrEndOfInput", err)
	}
	if len(completed) != 2 || completed[1].Stream != fileStream(root, capFile) || completed[1].LastOffset != 3 {
		t.Fatalf("completions at end = %+v", completed)
	}
	snap := src.Progress().Snapshot()
	if snap.Rewinds != 1 || snap.DoneObjects != 2 || snap.DoneBytes != snap.TotalBytes || snap.AckedMessages != 5 {
		t.Errorf("progress = %+v", snap)
	}
	if err := src.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := src.ReadBatch(ctx); !errors.Is(err, archive.ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

func TestMalformedInputs(t *testing.T) {
	files := fixtureTree(t)
	capture := files[capFile]
	wrongSchema := func() []byte {
		var buf bytes.Buffer
		enc, err := newOtherAvro(&buf)
		if err != nil {
			t.Fatal(err)
		}
		return enc
	}()
	tests := []struct {
		name      string
		file      string
		content   []byte
		format    archive.Format
		wantErr   error
		wantMsgs  int    // delivered before the failure
		errSubstr string // in the error text
	}{
		{"truncated avro", "t/0/2026/11/27/11/05/00.avro", capture[:len(capture)-40], archive.FormatAuto, archive.ErrMalformed, 2, "avro"},
		{"avro header only", "t/x.avro", capture[:6], archive.FormatAuto, archive.ErrMalformed, 0, "avro header"},
		{"avro garbage blocks", "t/y.avro", append(append([]byte{}, capture[:len(capture)/2]...), bytes.Repeat([]byte{0xff}, 64)...), archive.FormatAuto, archive.ErrMalformed, 0, "avro"},
		{"avro of another schema", "t/z.avro", wrongSchema, archive.FormatAuto, archive.ErrMalformed, 0, "not an Event Hubs Capture file"},
		{"truncated records blob", "insights-activity-logs/y=2018/m=10/d=31/h=23/m=00/PT1H.json", files[oldBlob][:len(files[oldBlob])/2+40], archive.FormatAuto, archive.ErrMalformed, 1, "truncated"},
		{"records is not an array", "PT1H.json", []byte(`{"records": {"a": 1}}`), archive.FormatRecords, archive.ErrMalformed, 0, "not an array"},
		{"not JSON nor Avro", "notes.txt", []byte("hello, world\n"), archive.FormatAuto, archive.ErrUnrecognized, 0, "hello, w"},
		{"capture forced on JSON", "x.json", []byte("{\"a\":1}\n"), archive.FormatCapture, archive.ErrMalformed, 0, "avro header"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			writeTree(t, root, map[string][]byte{tc.file: tc.content})
			msgs, err := drain(t, newLocal(t, archive.Config{Format: tc.format}, archive.Resume{}, root))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			var oe *archive.ObjectError
			if !errors.As(err, &oe) || oe.Stream != fileStream(root, tc.file) {
				t.Fatalf("err %v does not name the object", err)
			}
			if !strings.Contains(err.Error(), tc.errSubstr) {
				t.Errorf("err %q lacks %q", err, tc.errSubstr)
			}
			if len(msgs) != tc.wantMsgs {
				t.Errorf("%d messages delivered before the failure, want %d", len(msgs), tc.wantMsgs)
			}
		})
	}
}

func TestContinueOnError(t *testing.T) {
	root := t.TempDir()
	files := fixtureTree(t)
	writeTree(t, root, map[string][]byte{
		"a/broken.avro": files[capFile][:len(files[capFile])-40],
		"b/" + oldBlob:  files[oldBlob],
	})
	src := newLocal(t, archive.Config{ContinueOnError: true}, archive.Resume{}, root)
	msgs, err := drain(t, src)
	if err != nil {
		t.Fatalf("err = %v, want the backfill to go on", err)
	}
	if got := offsetsOf(msgs, fileStream(root, "b/"+oldBlob)); !slices.Equal(got, []int64{1, 2}) {
		t.Errorf("good object offsets = %v", got)
	}
	if got := offsetsOf(msgs, fileStream(root, "a/broken.avro")); !slices.Equal(got, []int64{1, 2}) {
		t.Errorf("broken object delivered %v before failing, want [1 2]", got)
	}
	f := src.Failures()
	if len(f) != 1 || f[0].Stream != fileStream(root, "a/broken.avro") || f[0].Offset != 2 || !errors.Is(f[0], archive.ErrMalformed) {
		t.Fatalf("failures = %v", f)
	}
	if snap := src.Progress().Snapshot(); snap.FailedObjects != 1 || snap.DoneObjects != 2 {
		t.Errorf("progress = %+v", snap)
	}
}

// TestLongLineIsCutAndMarked: a line over MaxRecordBytes is cut and
// quarantined with a reason naming the limit and the whole line's SHA-256;
// an incomplete last line is left unread while the object may still grow
// (Incomplete names it) and quarantined once it is settled.
func TestLongLineIsCutAndMarked(t *testing.T) {
	root := t.TempDir()
	long := `{"a":"` + strings.Repeat("x", 300) + `"}`
	writeTree(t, root, map[string][]byte{"PT1H.json": []byte(long + "\n{\"b\":2}\n{\"c\":")})
	wantReason := fmt.Sprintf("record of %d bytes is over the max_record_bytes limit of 100 bytes (raise --max-record-bytes to keep it whole): only its first 100 bytes are kept; SHA-256 of the whole record: %x", len(long), sha256.Sum256([]byte(long)))
	for _, tc := range []struct {
		name    string
		now     func() time.Time
		settled bool
	}{
		{"growing", time.Now, false},
		{"settled", func() time.Time { return time.Now().Add(3 * time.Hour) }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := newLocal(t, archive.Config{MaxRecordBytes: 100, Format: archive.FormatJSONLines, Now: tc.now}, archive.Resume{}, root)
			msgs, err := drain(t, src)
			if err != nil {
				t.Fatal(err)
			}
			want := 2
			if tc.settled {
				want = 3
			}
			if len(msgs) != want {
				t.Fatalf("%d messages, want %d", len(msgs), want)
			}
			if len(msgs[0].Body) != 100 || msgs[0].Attributes[archive.AttrTruncated] != fmt.Sprint(len(long)) || msgs[0].Quarantine != wantReason {
				t.Errorf("long line: %d bytes, truncated=%q, quarantine %q, want %q", len(msgs[0].Body), msgs[0].Attributes[archive.AttrTruncated], msgs[0].Quarantine, wantReason)
			}
			if string(msgs[1].Body) != `{"b":2}` || msgs[1].Offset != 2 || msgs[1].Attributes[archive.AttrTruncated] != "" || msgs[1].Quarantine != "" {
				t.Errorf("line after the long one: %+v", msgs[1])
			}
			if !tc.settled {
				if inc := src.Incomplete(); len(inc) != 1 || !strings.HasSuffix(inc[0], "PT1H.json") {
					t.Errorf("Incomplete() = %v, want the PT1H.json", inc)
				}
				return
			}
			if msgs[2].Attributes[archive.AttrIncompleteLine] != "true" || msgs[2].Offset != 3 || !strings.HasPrefix(msgs[2].Quarantine, "incomplete last line") {
				t.Errorf("cut-off last line not quarantined: %+v", msgs[2])
			}
			if inc := src.Incomplete(); len(inc) != 0 {
				t.Errorf("Incomplete() = %v for a settled object", inc)
			}
		})
	}
}

// TestGrowingLineReadWholeNextRun: the last line of a growing object,
// left unread, is read whole by the next run resumed from the stored
// position, at the offset it would have had.
func TestGrowingLineReadWholeNextRun(t *testing.T) {
	root := t.TempDir()
	p := filepath.Join(root, "PT1H.json")
	writeTree(t, root, map[string][]byte{"PT1H.json": []byte("{\"a\":1}\n{\"b\":2}\n{\"c\":")})
	cfg := archive.Config{Format: archive.FormatJSONLines, Now: time.Now}
	first, err := drain(t, newLocal(t, cfg, archive.Resume{}, root))
	if err != nil || len(first) != 2 {
		t.Fatalf("first run: %d messages, %v; want 2", len(first), err)
	}
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("3}\n{\"d\":4}\n")
	f.Close()
	second, err := drain(t, newLocal(t, cfg, archive.Resume{Positions: map[string]int64{first[1].Stream: first[1].Offset}}, root))
	if err != nil {
		t.Fatal(err)
	}
	if len(second) != 2 || string(second[0].Body) != `{"c":3}` || second[0].Offset != 3 || second[1].Offset != 4 || second[0].Quarantine != "" {
		t.Fatalf("second run: %+v, want lines 3 and 4 whole", second)
	}
}

func TestEmptyObjectsComplete(t *testing.T) {
	root := t.TempDir()
	writeTree(t, root, map[string][]byte{"empty.json": nil, "blank.jsonl": []byte("\n\n  \n")})
	var done []string
	src := newLocal(t, archive.Config{OnComplete: func(c archive.Completion) { done = append(done, filepath.Base(c.Stream)) }}, archive.Resume{}, root)
	msgs, err := drain(t, src)
	if err != nil || len(msgs) != 0 {
		t.Fatalf("msgs=%d err=%v", len(msgs), err)
	}
	slices.Sort(done)
	if !slices.Equal(done, []string{"blank.jsonl", "empty.json"}) {
		t.Fatalf("completed = %v", done)
	}
}

func TestSharedWazuhSamples(t *testing.T) {
	dir := filepath.Join("..", "..", "..", "shared", "samples", "capture-archive")
	inline := filepath.Join(dir, "wazuh-azure-tests-storage_events_inline.jsonl")
	records := filepath.Join(dir, "wazuh-azure-tests-storage_events_json.json")
	if _, err := os.Stat(inline); err != nil {
		t.Skipf("shared samples not present (%v); this GPL-licensed sample is read in place only", err)
	}
	lines, err := drain(t, newLocal(t, archive.Config{}, archive.Resume{}, inline))
	if err != nil {
		t.Fatal(err)
	}
	recs, err := drain(t, newLocal(t, archive.Config{Format: archive.FormatRecords}, archive.Resume{}, records))
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 2 || len(recs) != 2 {
		t.Fatalf("%d line messages and %d record messages, want 2 and 2", len(lines), len(recs))
	}
	for i := range lines {
		var a, b any
		if err := json.Unmarshal(lines[i].Body, &a); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(recs[i].Body, &b); err != nil {
			t.Fatal(err)
		}
		ja, _ := json.Marshal(a)
		jb, _ := json.Marshal(b)
		if !bytes.Equal(ja, jb) {
			t.Errorf("record %d differs between the JSON Lines and the records form", i+1)
		}
		if lines[i].Format != "archive" || recs[i].Format != "archive" || recs[i].Offset != int64(i+1) {
			t.Errorf("record %d: formats %q/%q offset %d", i+1, lines[i].Format, recs[i].Format, recs[i].Offset)
		}
	}
	// Auto-detection: the last line has no newline and is still whole.
	if lines[1].Attributes[archive.AttrIncompleteLine] != "" {
		t.Errorf("valid last line without newline marked incomplete")
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  archive.Config
		want string
	}{
		{"defaults", archive.DefaultConfig(), ""},
		{"zero", archive.Config{}, ""},
		{"bad format", archive.Config{Format: "parquet"}, `format: format "parquet": want one of auto, jsonlines, records, capture, eventhubs`},
		{"empty range", archive.Config{Range: archive.TimeRange{From: fixedNow(), To: fixedNow()}}, "range: from 2026-11-27T12:00:00Z is not before to 2026-11-27T12:00:00Z"},
		{"negative batch", archive.Config{MaxBatchMessages: -1}, "max_batch_messages: -1 is negative"},
		{"negative record", archive.Config{MaxRecordBytes: -5}, "max_record_bytes: -5 is negative"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) || !errors.Is(err, archive.ErrBadConfig) {
				t.Fatalf("err = %v, want prefix %q", err, tc.want)
			}
		})
	}
}

func TestRenderProgressToLog(t *testing.T) {
	root := t.TempDir()
	writeTree(t, root, fixtureTree(t))
	src := newLocal(t, archive.Config{}, archive.Resume{}, root)
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	stop := archive.RenderProgress(t.Context(), src.Progress(), &logs, logger, time.Hour)
	if _, err := drain(t, src); err != nil {
		t.Fatal(err)
	}
	stop()
	stop() // idempotent
	var rec struct {
		Msg      string
		Progress struct {
			ObjectsDone  int64 `json:"objects_done"`
			ObjectsTotal int64 `json:"objects_total"`
			Messages     int64
			BytesDone    int64 `json:"bytes_done"`
			BytesTotal   int64 `json:"bytes_total"`
		}
	}
	lines := bytes.Split(bytes.TrimSpace(logs.Bytes()), []byte("\n"))
	if len(lines) != 1 {
		t.Fatalf("want one final log line, got:\n%s", logs.Bytes())
	}
	if err := json.Unmarshal(lines[0], &rec); err != nil {
		t.Fatal(err)
	}
	p := rec.Progress
	if rec.Msg != "backfill finished reading" || p.ObjectsDone != 5 || p.ObjectsTotal != 5 || p.Messages != 10 || p.BytesDone != p.BytesTotal || p.BytesTotal == 0 {
		t.Fatalf("final progress line: %s", lines[0])
	}
	if s := src.Progress().Snapshot().String(); !strings.HasPrefix(s, "5/5 objects") || !strings.Contains(s, "eta 0s") {
		t.Errorf("String() = %q", s)
	}
}

func TestNackBeforeFailureRedelivers(t *testing.T) {
	root := t.TempDir()
	files := fixtureTree(t)
	writeTree(t, root, map[string][]byte{"broken.avro": files[capFile][:len(files[capFile])-40]})
	src := newLocal(t, archive.Config{}, archive.Resume{}, root)
	ctx := context.Background()
	if err := src.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	b1, ack1, err := src.ReadBatch(ctx)
	if err != nil || len(b1) != 2 {
		t.Fatalf("first batch: %d messages, %v", len(b1), err)
	}
	// The records before the failure could not be stored: they come again,
	// then the failure.
	if err := ack1(ctx, errors.New("store down")); err != nil {
		t.Fatal(err)
	}
	b2, ack2, err := src.ReadBatch(ctx)
	if err != nil || len(b2) != 2 || b2[0].Offset != 1 {
		t.Fatalf("redelivery: %d messages, %v", len(b2), err)
	}
	if err := ack2(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := src.ReadBatch(ctx); !errors.Is(err, archive.ErrMalformed) {
		t.Fatalf("after redelivery: %v, want the object's failure", err)
	}
	if f := src.Failures(); len(f) != 1 {
		t.Fatalf("failures = %v, want exactly one", f)
	}
}
