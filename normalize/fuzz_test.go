package normalize_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custody-audit/custody/event"
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
			want, err := normalize.MarshalOCSFReference(e)
			if err != nil {
				t.Fatalf("OCSF reference: %v", err)
			}
			if got := normalize.AppendOCSF(nil, &e); !bytes.Equal(got, want) {
				t.Fatalf("AppendOCSF\n%s\nwant (json.Marshal of the OCSF maps)\n%s", got, want)
			}
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

// FuzzEventJSON holds AppendEventJSON to the encoding/json form it
// replaced (MarshalEventJSONReference): any strings, any raw bytes, byte
// for byte the same output.
func FuzzEventJSON(f *testing.F) {
	f.Add("id", "alice@contoso.com", "k8s:pods/exec:create", "ns", "key", "v\u2028\x00<>&", []byte(`{"a":"\u00e9"}`), int32(200), "203.0.113.7")
	f.Add("", "", "", "", "", "", []byte{0xff, 0xfe, 'x'}, int32(0), "")
	f.Add("\xed\xa0\x80", "\t\b\f\r\n\"\\", "x\x7f", "\xc3", "k2", "\u2029", []byte(nil), int32(-1), "fe80::1%eth\"0")
	f.Fuzz(func(t *testing.T, id, actor, action, ns, key, val string, raw []byte, status int32, ip string) {
		e := event.Event{ID: id, Time: time.Unix(int64(status)*1000, int64(len(raw))*1001).UTC(), Service: event.Service(ns), Category: val,
			SourcePosition: key, Actor: event.Actor{Name: actor, Type: event.ActorType(ns), Groups: []string{key, val}, ImpersonatedBy: val},
			Action: action, Target: event.Target{Namespace: ns, Name: val, Image: key}, StatusCode: status, Reason: id,
			Tags: []string{val}, Attributes: map[string]string{key: val, val: key, "": id}, Raw: raw, RawFormat: action}
		if status%2 == 0 {
			e.ReceivedTime = e.Time.Add(time.Duration(status))
			e.Target = event.Target{}
			e.Tags = nil
		}
		if a, err := netip.ParseAddr(ip); err == nil {
			e.SourceIP = a
		}
		want, err := normalize.MarshalEventJSONReference(e)
		if err != nil {
			t.Skip(err)
		}
		if got := normalize.AppendEventJSON(nil, &e); !bytes.Equal(got, want) {
			t.Fatalf("AppendEventJSON:\n%s\nencoding/json:\n%s", got, want)
		}
	})
}
