package normalize_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/custody-audit/custody/normalize"
	"github.com/custody-audit/custody/normalize/internal/loadgen"
)

// The stream golden tests hold `custody normalize` to what it printed
// before it streamed: normalize.ProcessStream over a file, with events
// written by AppendEventJSON, must print exactly what the whole-file
// path (Process over the whole file, MarshalEventJSON through
// encoding/json: the reference below) printed. testdata/stream/golden.json
// holds the SHA-256 of both outputs per case; it was written from the
// reference on the main branch before streaming (go test -run
// TestStreamGolden -update), and the reference is checked against it too.

// streamCase is one input file and how it is normalized.
type streamCase struct {
	name     string
	body     []byte
	format   string
	ocsf     bool
	keepAll  bool
	registry []string
}

// streamOutput is what `custody normalize` prints for one file: events on
// stdout; quarantined records and the drop counts on stderr.
type streamOutput struct {
	Stdout, Stderr []byte
	Events         int
}

func (o streamOutput) digest() streamDigest {
	s, e := sha256.Sum256(o.Stdout), sha256.Sum256(o.Stderr)
	return streamDigest{Stdout: hex.EncodeToString(s[:]), Stderr: hex.EncodeToString(e[:]), Events: o.Events}
}

type streamDigest struct {
	Stdout string `json:"stdout_sha256"`
	Stderr string `json:"stderr_sha256"`
	Events int    `json:"events"`
}

func (c streamCase) normalizer(t testing.TB) *normalize.Normalizer {
	cfg := normalize.DefaultConfig()
	cfg.ApprovedRegistries = c.registry
	if c.keepAll {
		cfg.DropSystemReads = false
		cfg.KeepNonAdminCategories = true
		cfg.KeepContainerLogs = true
	}
	n, err := normalize.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func writeStderr(w *bytes.Buffer, quarantined []normalize.Quarantined, dropped map[string]int, t testing.TB) {
	for _, q := range quarantined {
		line, err := normalize.MarshalQuarantinedJSON(q)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(line)
		w.WriteByte('\n')
	}
	keys := make([]string, 0, len(dropped))
	for k := range dropped {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "dropped %s=%d\n", k, dropped[k])
	}
}

// referenceOutput is `custody normalize` before streaming: the whole file
// as one Input, events encoded with encoding/json.
func referenceOutput(t testing.TB, c streamCase) streamOutput {
	n := c.normalizer(t)
	res, err := n.Process(context.Background(), normalize.Input{Body: c.body, Format: c.format, SourceKind: "file", Position: c.name, Received: goldenReceived})
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	for _, e := range res.Events {
		var line []byte
		if c.ocsf {
			line, err = normalize.MarshalOCSFReference(e)
		} else {
			line, err = normalize.MarshalEventJSONReference(e)
		}
		if err != nil {
			t.Fatal(err)
		}
		out.Write(line)
		out.WriteByte('\n')
	}
	writeStderr(&errOut, res.Quarantined, res.Dropped, t)
	return streamOutput{Stdout: out.Bytes(), Stderr: errOut.Bytes(), Events: len(res.Events)}
}

// streamCases are the golden inputs of normalize/testdata read in their
// directory's format and as auto, OCSF too, and generated loads in every
// shape `custody normalize` reads.
func streamCases(t testing.TB) []streamCase {
	var cases []streamCase
	files, err := filepath.Glob("testdata/*/*.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		dir := filepath.Base(filepath.Dir(f))
		format, ok := dirFormat[dir]
		if !ok || strings.HasSuffix(f, "_expected.json") || strings.HasSuffix(f, ".meta.json") {
			continue
		}
		body, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var m caseMeta
		if b, err := os.ReadFile(strings.TrimSuffix(f, ".json") + ".meta.json"); err == nil {
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
		}
		if m.Format != "" {
			format = m.Format
		}
		name := dir + "/" + filepath.Base(f)
		cases = append(cases,
			streamCase{name: name, body: body, format: format, registry: m.ApprovedRegistries},
			streamCase{name: name + "#auto", body: body, format: normalize.FormatAuto},
			streamCase{name: name + "#ocsf", body: body, format: format, ocsf: true, registry: m.ApprovedRegistries},
			streamCase{name: name + "#keep", body: body, format: format, keepAll: true},
		)
	}
	for _, g := range generatedLoads() {
		cases = append(cases,
			streamCase{name: "gen/" + g.name, body: g.body, format: normalize.FormatAuto},
			streamCase{name: "gen/" + g.name + "#ocsf", body: g.body, format: normalize.FormatAuto, ocsf: true},
			streamCase{name: "gen/" + g.name + "#keep", body: g.body, format: normalize.FormatAuto, keepAll: true},
		)
	}
	return cases
}

type generated struct {
	name string
	body []byte
}

// generatedLoads are deterministic loads (normalize/internal/loadgen) in
// each shape a file can have.
func generatedLoads() []generated {
	var out []generated
	g := loadgen.New(7, loadgen.DefaultMix())
	var b bytes.Buffer
	for range 200 { // Event Hubs bodies, one per line: 4000 records
		b.Write(g.Body(20))
		b.WriteByte('\n')
	}
	out = append(out, generated{"bodies.jsonl", bytes.Clone(b.Bytes())})

	b.Reset()
	for range 3000 { // PT1H.json: one record per line
		b.Write(g.Record())
		b.WriteByte('\n')
	}
	out = append(out, generated{"pt1h.jsonl", bytes.Clone(b.Bytes())})

	out = append(out, generated{"records.json", g.Body(1500)}) // an old-style archive blob

	b.Reset()
	for i := range 30 { // pretty-printed bodies back to back
		if err := json.Indent(&b, g.Body(5), "", "  "); err != nil {
			panic(err)
		}
		if i%2 == 0 {
			b.WriteByte('\n')
		}
	}
	out = append(out, generated{"pretty-bodies.json", bytes.Clone(b.Bytes())})

	b.Reset()
	b.WriteString("\xef\xbb\xbf")
	for i := range 600 { // CRLF lines, blank lines, broken lines, a scalar
		b.Write(g.Record())
		switch i % 97 {
		case 3:
			b.WriteString("\r\n{\"category\": \"kube-audit\", \"properties\": {\"log\": \r\n")
		case 50:
			b.WriteString("\r\n\r\n   \r\n")
		case 70:
			b.WriteString("\n42\n[1,2]\n")
		default:
			b.WriteString("\r\n")
		}
	}
	b.WriteString(`{"records":[{"category":"kube-audit"`) // cut at the end
	out = append(out, generated{"messy.jsonl", bytes.Clone(b.Bytes())})

	return out
}

func TestStreamGolden(t *testing.T) {
	path := filepath.Join("testdata", "stream", "golden.json")
	cases := streamCases(t)
	if *update {
		want := map[string]streamDigest{}
		for _, c := range cases {
			want[c.name] = referenceOutput(t, c).digest()
		}
		b, err := json.MarshalIndent(want, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var want map[string]streamDigest
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	if len(want) != len(cases) {
		t.Errorf("golden file has %d cases, the test %d", len(want), len(cases))
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w, ok := want[c.name]
			if !ok {
				t.Fatalf("no golden digest")
			}
			if got := referenceOutput(t, c).digest(); got != w {
				t.Errorf("reference output %+v, golden %+v", got, w)
			}
			if got := streamedOutput(t, c, 0).digest(); got != w {
				t.Errorf("streamed output %+v, golden %+v", got, w)
			}
			// Input arriving in small pieces (a pipe) crosses every
			// buffer boundary.
			if !strings.Contains(c.name, "#") {
				for _, piece := range []int{1 + len(c.body)%13, 4093} {
					if got := streamedOutput(t, c, piece).digest(); got != w {
						t.Errorf("streamed in pieces of %d: %+v, golden %+v", piece, got, w)
					}
				}
			}
		})
	}
}

// streamedOutput is `custody normalize` as it streams: ProcessStream with
// events written by AppendEventJSON. readSize > 0 feeds the input in
// pieces of that size, to cross every buffer boundary.
func streamedOutput(t testing.TB, c streamCase, readSize int) streamOutput {
	n := c.normalizer(t)
	var out, errOut bytes.Buffer
	var quarantined []normalize.Quarantined
	dropped := map[string]int{}
	events := 0
	var r io.Reader = bytes.NewReader(c.body)
	if readSize > 0 {
		r = &pieceReader{b: c.body, n: readSize}
	}
	var line []byte
	err := n.ProcessStream(context.Background(), r, normalize.StreamOptions{Format: c.format, SourceKind: "file", Position: c.name, Received: goldenReceived},
		func(res *normalize.Result) error {
			for i := range res.Events {
				if c.ocsf {
					line = normalize.AppendOCSF(line[:0], &res.Events[i])
				} else {
					line = normalize.AppendEventJSON(line[:0], &res.Events[i])
				}
				out.Write(line)
				out.WriteByte('\n')
			}
			events += len(res.Events)
			for _, q := range res.Quarantined {
				q.Raw = bytes.Clone(q.Raw)
				quarantined = append(quarantined, q)
			}
			for k, v := range res.Dropped {
				dropped[k] += v
			}
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	if len(dropped) == 0 {
		dropped = nil
	}
	writeStderr(&errOut, quarantined, dropped, t)
	return streamOutput{Stdout: out.Bytes(), Stderr: errOut.Bytes(), Events: events}
}

// pieceReader returns at most n bytes per Read.
type pieceReader struct {
	b []byte
	n int
}

func (p *pieceReader) Read(b []byte) (int, error) {
	if len(p.b) == 0 {
		return 0, io.EOF
	}
	k := copy(b[:min(len(b), p.n)], p.b)
	p.b = p.b[k:]
	return k, nil
}

// FuzzStream holds ProcessStream to Process over the whole input, for any
// bytes, read whole and in small pieces.
func FuzzStream(f *testing.F) {
	for _, g := range generatedLoads() {
		f.Add(g.body[:min(len(g.body), 4000)], uint8(7))
	}
	f.Add([]byte("{\"a\":1}\n{bad\n{\"records\":[{\"category\":\"kube-audit\"}]}\n  12 \n"), uint8(3))
	f.Add([]byte("\xef\xbb\xbf[{\"auditID\":\"x\",\"kind\":\"Event\"}]\r\n{"), uint8(1))
	f.Fuzz(func(t *testing.T, body []byte, piece uint8) {
		c := streamCase{name: "fuzz", body: body, format: normalize.FormatAuto}
		want := referenceOutput(t, c)
		for _, p := range []int{0, int(piece%32) + 1} {
			got := streamedOutput(t, c, p)
			if !bytes.Equal(got.Stdout, want.Stdout) || !bytes.Equal(got.Stderr, want.Stderr) {
				t.Fatalf("pieces of %d:\nstream stdout %q\nstderr %q\nwhole stdout %q\nstderr %q", p, got.Stdout, got.Stderr, want.Stdout, want.Stderr)
			}
		}
	})
}
