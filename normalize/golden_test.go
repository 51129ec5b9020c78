package normalize_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/custody-audit/custody/normalize"
)

var update = flag.Bool("update", false, "rewrite the golden *_expected.json files")

// caseMeta is the optional <case>.meta.json beside a golden input.
type caseMeta struct {
	Format             string   `json:"format"`
	Table              string   `json:"table"`
	ApprovedRegistries []string `json:"approved_registries"`
	KeepNonAdmin       bool     `json:"keep_non_admin"`
}

// dirFormat is the input format each testdata directory is read with.
var dirFormat = map[string]string{
	"eventhubs":    normalize.FormatEventHubs,
	"archive":      normalize.FormatArchive,
	"k8s-audit":    normalize.FormatK8sAudit,
	"loganalytics": normalize.FormatLogAnalytics,
	"auto":         normalize.FormatAuto,
	"cornercases":  normalize.FormatAuto,
}

var goldenReceived = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// goldenDoc is the shape of an _expected.json file.
type goldenDoc struct {
	Events      []json.RawMessage `json:"events"`
	Quarantined []json.RawMessage `json:"quarantined"`
	Dropped     map[string]int    `json:"dropped"`
}

func goldenCases(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("testdata/*/*.json")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range files {
		if strings.HasSuffix(f, "_expected.json") || strings.HasSuffix(f, ".meta.json") {
			continue
		}
		if _, ok := dirFormat[filepath.Base(filepath.Dir(f))]; !ok {
			continue
		}
		out = append(out, f)
	}
	if len(out) < 30 {
		t.Fatalf("found only %d golden inputs", len(out))
	}
	return out
}

func loadMeta(t *testing.T, input string) caseMeta {
	t.Helper()
	var m caseMeta
	b, err := os.ReadFile(strings.TrimSuffix(input, ".json") + ".meta.json")
	if os.IsNotExist(err) {
		return m
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", input, err)
	}
	return m
}

// runCase normalizes one golden input and renders the result document.
func runCase(t *testing.T, input string) ([]byte, normalize.Result, []byte) {
	t.Helper()
	body, err := os.ReadFile(input)
	if err != nil {
		t.Fatal(err)
	}
	m := loadMeta(t, input)
	cfg := normalize.DefaultConfig()
	cfg.ApprovedRegistries = m.ApprovedRegistries
	cfg.KeepNonAdminCategories = m.KeepNonAdmin
	n, err := normalize.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	format := dirFormat[filepath.Base(filepath.Dir(input))]
	if m.Format != "" {
		format = m.Format
	}
	in := normalize.Input{
		Body:       body,
		Format:     format,
		SourceKind: "file",
		Position:   filepath.Base(input),
		Received:   goldenReceived,
	}
	if m.Table != "" {
		in.Attributes = map[string]string{"table": m.Table}
	}
	res, err := n.Process(context.Background(), in)
	if err != nil {
		t.Fatalf("Process: %v", err)
	}
	doc := goldenDoc{Events: []json.RawMessage{}, Quarantined: []json.RawMessage{}, Dropped: res.Dropped}
	if doc.Dropped == nil {
		doc.Dropped = map[string]int{}
	}
	for _, e := range res.Events {
		j, err := normalize.MarshalEventJSON(e)
		if err != nil {
			t.Fatal(err)
		}
		doc.Events = append(doc.Events, j)
	}
	for _, q := range res.Quarantined {
		j, err := normalize.MarshalQuarantinedJSON(q)
		if err != nil {
			t.Fatal(err)
		}
		doc.Quarantined = append(doc.Quarantined, j)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), res, body
}

// TestGolden normalizes every testdata/<source>/<case>.json and compares
// with <case>_expected.json. Run with -update to rewrite the expectations.
func TestGolden(t *testing.T) {
	for _, input := range goldenCases(t) {
		name := strings.TrimPrefix(strings.TrimSuffix(input, ".json"), "testdata/")
		t.Run(name, func(t *testing.T) {
			got, res, body := runCase(t, input)
			checkInvariants(t, res, body)
			want := strings.TrimSuffix(input, ".json") + "_expected.json"
			if *update {
				if err := os.WriteFile(want, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			exp, err := os.ReadFile(want)
			if err != nil {
				t.Fatalf("%v (run go test ./normalize -run TestGolden -update)", err)
			}
			if !bytes.Equal(got, exp) {
				t.Errorf("%s differs from %s:\n%s", input, want, firstDiff(string(exp), string(got)))
			}
		})
	}
}

// checkInvariants asserts what must hold for every input: each event's
// Raw is a byte-for-byte part of the body (or, for a Log Analytics
// response, a row assembled from it), times are UTC microseconds, ids are
// set, tags sorted and unique.
func checkInvariants(t *testing.T, res normalize.Result, body []byte) {
	t.Helper()
	for i, e := range res.Events {
		if e.ID == "" {
			t.Errorf("event %d has no ID", i)
		}
		if e.RawFormat != normalize.RawLARowAssembled && !bytes.Contains(body, e.Raw) {
			t.Errorf("event %d: Raw is not a slice of the input body", i)
		}
		if e.Time.Location() != time.UTC || e.Time.Nanosecond()%1000 != 0 {
			t.Errorf("event %d: time %v is not UTC microseconds", i, e.Time)
		}
		if e.ResourceID != strings.ToLower(e.ResourceID) {
			t.Errorf("event %d: resource id %q not lower-cased", i, e.ResourceID)
		}
		for j := 1; j < len(e.Tags); j++ {
			if e.Tags[j] <= e.Tags[j-1] {
				t.Errorf("event %d: tags not sorted and unique: %v", i, e.Tags)
			}
		}
		if e.Outcome == "" || e.ActionClass == "" || e.Actor.Type == "" || e.Action == "" {
			t.Errorf("event %d: outcome/class/actor type/action must be set: %+v", i, e)
		}
	}
	for i, q := range res.Quarantined {
		if q.Reason == "" || len(q.Raw) == 0 && len(bytes.TrimSpace(body)) > 0 {
			t.Errorf("quarantined %d has no reason or no raw bytes", i)
		}
	}
}

func firstDiff(want, got string) string {
	wl, gl := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(wl) || i < len(gl); i++ {
		var w, g string
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if w != g {
			return "line " + strconv.Itoa(i+1) + ":\n want: " + w + "\n  got: " + g
		}
	}
	return "(no line differs)"
}
