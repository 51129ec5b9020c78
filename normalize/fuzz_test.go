package normalize_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/custody-audit/custody/normalize"
)

// fuzzSeeds adds every golden input (real samples and documented
// fixtures) to the corpus.
func fuzzSeeds(f *testing.F, add func(b []byte)) {
	files, err := filepath.Glob("testdata/*/*.json")
	if err != nil {
		f.Fatal(err)
	}
	for _, file := range files {
		if strings.HasSuffix(file, "_expected.json") || strings.HasSuffix(file, ".meta.json") {
			continue
		}
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		add(b)
	}
}

var fuzzFormats = []string{"auto", "eventhubs", "archive", "loganalytics", "k8s-audit"}

// FuzzProcess feeds arbitrary bodies through every decoder. It checks that
// Process never panics or errors, that every event's Raw lies inside the
// body (or is an assembled Log Analytics row), that quarantined records
// carry a reason, and that every event marshals to valid JSON.
func FuzzProcess(f *testing.F) {
	fuzzSeeds(f, func(b []byte) {
		for i := range fuzzFormats {
			f.Add(b, uint8(i))
		}
	})
	cfg := normalize.DefaultConfig()
	cfg.ApprovedRegistries = []string{"prodacr.azurecr.io"}
	n, err := normalize.New(cfg)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte, format uint8) {
		in := normalize.Input{Body: body, Format: fuzzFormats[int(format)%len(fuzzFormats)], Position: "fuzz", Attributes: map[string]string{"table": "AKSAudit"}}
		res, err := n.Process(context.Background(), in)
		if err != nil {
			t.Fatalf("Process: %v", err)
		}
		for _, e := range res.Events {
			if e.RawFormat != normalize.RawLARowAssembled && !bytes.Contains(body, e.Raw) {
				t.Fatalf("Raw is not part of the body")
			}
			j, err := normalize.MarshalEventJSON(e)
			if err != nil || !json.Valid(j) {
				t.Fatalf("event JSON: %v", err)
			}
			_ = normalize.OCSF(e)
		}
		for _, q := range res.Quarantined {
			if q.Reason == "" {
				t.Fatal("quarantined record without a reason")
			}
		}
	})
}

// FuzzScanner checks the validating JSON reader against encoding/json:
// both must agree on whether a body is one valid JSON value.
func FuzzScanner(f *testing.F) {
	fuzzSeeds(f, func(b []byte) { f.Add(b) })
	for _, s := range []string{`{}`, `[]`, `"\u00e9\ud83d\ude00"`, `-0.5e+10`, `{"a":[1,true,null,"x\n"]}`, `{"a" 1}`, `[1,]`, `"\x01"`, `01`, `1.`, `"\ud800"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if bytes.Count(b, []byte("["))+bytes.Count(b, []byte("{")) > 200 {
			t.Skip("nesting may exceed the reader's depth limit, which encoding/json does not have")
		}
		got := normalize.ValidJSONValue(b)
		want := json.Valid(b)
		if got != want {
			t.Fatalf("ValidJSONValue(%q) = %v, encoding/json says %v", b, got, want)
		}
	})
}
