package archive_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/hamba/avro/v2/ocf"

	"github.com/custody-audit/custody/ingest/archive"
)

// Paths of the fixture tree, relative to its root. The first segment is the
// container when the tree is uploaded to Blob Storage.
const (
	nsgBlob = "insights-logs-networksecuritygrouprulecounter/resourceId=/SUBSCRIPTIONS/A0A0A0A0-BBBB-CCCC-DDDD-E1E1E1E1E1E1/RESOURCEGROUPS/TESTRESOURCEGROUP/PROVIDERS/MICROSOFT.NETWORK/NETWORKSECURITYGROUPS/TESTNSG/y=2026/m=11/d=27/h=10/m=00/PT1H.json"
	oldBlob = "insights-activity-logs/resourceId=/SUBSCRIPTIONS/AAAA0A0A-BB1B-CC2C-DD3D-EEEEEE4E4E4E/y=2018/m=10/d=31/h=23/m=00/PT1H.json"
	capFile = "capture/custody-ns/audit-hub/0/2026/11/27/11/05/00.avro"
	oneBody = "bodies/one.json"
	bodies  = "bodies/many.jsonl"
)

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func compact(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// fixtureTree returns the files of the fixture tree by relative path.
func fixtureTree(t testing.TB) map[string][]byte {
	t.Helper()
	nsg := bytes.TrimSpace(readTestdata(t, "msdocs-resource-logs-storage-PT1H-line.jsonl"))
	act := bytes.TrimSpace(readTestdata(t, "msdocs-activity-log-storage-PT1H-line.jsonl"))
	ehPretty := readTestdata(t, "msdocs-resource-logs-eventhub-example.json")
	eh := compact(t, ehPretty)

	var lines bytes.Buffer // JSON Lines, with a blank line (offsets follow lines)
	lines.Write(nsg)
	lines.WriteString("\n\n")
	lines.Write(act)
	lines.WriteString("\r\n")

	var old bytes.Buffer // pre-Nov-2018 form, pretty-printed
	old.WriteString("{\n  \"records\": [\n    ")
	old.Write(act)
	old.WriteString(",\n    ")
	old.Write(nsg)
	old.WriteString("\n  ]\n}\n")

	many := append(append(append([]byte{}, eh...), '\n'), eh...)
	many = append(many, '\n')

	return map[string][]byte{
		nsgBlob: lines.Bytes(),
		oldBlob: old.Bytes(),
		capFile: captureFile(t, [][]byte{eh, []byte(`{"records":[]}`), nil}, 100),
		oneBody: ehPretty,
		bodies:  many,
	}
}

// captureFile writes an Event Hubs Capture Avro file (deflate, as Capture
// writes them) with the documented schema, one event per body.
func captureFile(t testing.TB, bodies [][]byte, firstSeq int64) []byte {
	t.Helper()
	schema := string(readTestdata(t, "msdocs-explore-captured-avro-files-schema.avsc.json"))
	var buf bytes.Buffer
	enc, err := ocf.NewEncoder(schema, &buf, ocf.WithCodec(ocf.Deflate), ocf.WithBlockLength(2))
	if err != nil {
		t.Fatalf("avro encoder: %v", err)
	}
	for i, b := range bodies {
		seq := firstSeq + int64(i)
		ev := archive.CaptureEvent{
			SequenceNumber:  seq,
			Offset:          string(rune('0'+i)) + "4294967296",
			EnqueuedTimeUtc: "11/27/2026 11:05:0" + string(rune('0'+i)) + " AM",
			SystemProperties: map[string]any{
				"x-opt-partition-key":   "cluster-a",
				"x-opt-sequence-number": seq,
			},
			Properties: map[string]any{"source": "test"},
			Body:       b,
		}
		if err := enc.Encode(ev); err != nil {
			t.Fatalf("avro encode: %v", err)
		}
	}
	if err := enc.Close(); err != nil {
		t.Fatalf("avro close: %v", err)
	}
	return buf.Bytes()
}

func writeTree(t testing.TB, root string, files map[string][]byte) {
	t.Helper()
	for rel, b := range files {
		p := filepath.Join(root, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
