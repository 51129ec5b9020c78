package export

import (
	"bytes"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/custody-audit/custody/event"
	"github.com/custody-audit/custody/storage"
)

// scanRows are rows with every form a jsonl value takes: escapes of
// every kind, text that is not UTF-8 (base64), empty and missing lists,
// maps and raw bytes, both address families and none.
func scanRows() []storage.Row {
	ts := time.Date(2026, 11, 27, 10, 11, 12, 123456000, time.UTC)
	full := storage.Row{Chain: "aks/0", Seq: 18446744073709551615, Offset: -5, PrevHash: storage.Hash{1, 2}, Hash: storage.Hash{0xff, 0xfe}}
	full.Event = event.Event{
		ID: "id-\"quoted\"\\back\\slash", Time: ts, ReceivedTime: ts.Add(time.Second),
		Service: event.ServiceAKS, Category: "tab\there", SourcePosition: "nl\nx cr\rx \x00 \x01 \x1f \x7f",
		ResourceName: "ü € \u2028 \u2029 𝄞 </script>&", ResourceID: "/a/b",
		Actor:      event.Actor{Name: "alice", Type: event.ActorUser, Groups: []string{"a", "", `g"2`, "\u2028"}},
		SourceIP:   netip.MustParseAddr("2001:db8::7"),
		UserAgent:  "curl/8 \xff\xfe", // not UTF-8: base64
		Reason:     "first\r\nsecond",
		StatusCode: -2147483648,
		Tags:       []string{"exec-into-container"},
		Attributes: map[string]string{"k": "v", "tab\tkey": "line\nbreak", "": ""},
		Raw:        []byte("{\"x\":\"\x00\xff\"}\n"), RawFormat: "json",
	}
	empty := storage.Row{Chain: "c", Seq: 1}
	empty.Event.Time, empty.Event.ReceivedTime = time.Unix(0, 0).UTC(), time.Unix(0, 0).UTC()
	lists := empty
	lists.Event.Actor.Groups, lists.Event.Tags, lists.Event.Attributes, lists.Event.Raw = []string{}, []string{}, map[string]string{}, []byte{}
	lists.Event.SourceIP = netip.MustParseAddr("203.0.113.7")
	bad := full
	bad.Event.Action, bad.Event.Outcome = "\xc3", "ok\xff" // two base64 columns
	return []storage.Row{full, empty, lists, bad}
}

// TestScanCanonicalMatchesStrict checks that the canonical scanner reads
// every line export writes to the row the strict decoder reads.
func TestScanCanonicalMatchesStrict(t *testing.T) {
	index := columnIndex()
	var enc jsonEncoder
	for i, r := range scanRows() {
		line := enc.appendRow(nil, &r)
		var want, got storage.Row
		if err := decodeJSONRow(line, &want, index); err != nil {
			t.Fatalf("row %d: strict decode: %v", i, err)
		}
		if !scanCanonical(line, &got, index) {
			t.Fatalf("row %d: the scanner refused a canonical line: %s", i, line)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("row %d:\nscanned %+v\nstrict  %+v", i, got, want)
		}
		var d lineDecoder
		d.index = index
		var dec storage.Row
		if err := d.decode(line, &dec); err != nil || !reflect.DeepEqual(dec, want) {
			t.Errorf("row %d: decode %v, %+v", i, err, dec)
		}
	}
}

// TestScanCanonicalRefuses checks that lines laid out otherwise are left
// to the strict decoder, or, when the scanner reads them, do not
// re-encode to themselves (and so are still reported as non-canonical).
func TestScanCanonicalRefuses(t *testing.T) {
	index := columnIndex()
	var enc jsonEncoder
	r := scanRows()[0]
	line := enc.appendRow(nil, &r)
	for _, c := range []struct{ name, from, to string }{
		{"space after brace", `{"chain"`, `{ "chain"`},
		{"keys swapped", `"chain":"aks/0","seq":18446744073709551615`, `"seq":18446744073709551615,"chain":"aks/0"`},
		{"extra field", `,"hash":`, `,"extra":1,"hash":`},
		{"escaped slash", `"/a/b"`, `"\/a\/b"`},
		{"unicode escape", `"alice"`, `"\u0061lice"`},
		{"number with plus", `"source_offset":-5`, `"source_offset":+5`},
		{"leading zero", `"source_offset":-5`, `"source_offset":-05`},
		{"trailing text", `"}`, `"} `},
		{"truncated", `"}`, `"`},
		{"lone surrogate", `"alice"`, `"\ud800lice"`},
		{"raw escaped", `"raw":"`, `"raw":"\u0041`},
	} {
		t.Run(c.name, func(t *testing.T) {
			edited := bytes.Replace(line, []byte(c.from), []byte(c.to), 1)
			if bytes.Equal(edited, line) {
				t.Fatalf("edit %q not found", c.from)
			}
			var got storage.Row
			if scanCanonical(edited, &got, index) && bytes.Equal(enc.appendRow(nil, &got), edited) {
				t.Errorf("accepted as canonical: %s", edited)
			}
		})
	}
}
