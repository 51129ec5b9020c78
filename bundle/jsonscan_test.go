package bundle

import (
	"bytes"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/custody-audit/custody/event"
	"github.com/custody-audit/custody/storage/trail"
)

// scanRows are rows with every form a jsonl value takes: escapes of
// every kind, text that is not UTF-8 (base64), empty and missing lists,
// maps and raw bytes, both address families and none.
func scanRows() []trail.Row {
	ts := time.Date(2026, 11, 27, 10, 11, 12, 123456000, time.UTC)
	full := trail.Row{Chain: "aks/0", Seq: 18446744073709551615, Offset: -5, PrevHash: trail.Hash{1, 2}, Hash: trail.Hash{0xff, 0xfe}}
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
	empty := trail.Row{Chain: "c", Seq: 1}
	empty.Event.Time, empty.Event.ReceivedTime = time.Unix(0, 0).UTC(), time.Unix(0, 0).UTC()
	lists := empty
	lists.Event.Actor.Groups, lists.Event.Tags, lists.Event.Attributes, lists.Event.Raw = []string{}, []string{}, map[string]string{}, []byte{}
	lists.Event.SourceIP = netip.MustParseAddr("203.0.113.7")
	bad := full
	bad.Event.Action, bad.Event.Outcome = "\xc3", "ok\xff" // two base64 columns
	return []trail.Row{full, empty, lists, bad}
}

// TestExportLinesRead checks that every line export writes is read to
// the row the strict decoder reads, by the strict scanner (plain, and
// embedded in an OCSF line) and by the general path a line takes when the
// scanner refuses it (without a finding).
func TestExportLinesRead(t *testing.T) {
	index := columnIndex()
	var enc jsonEncoder
	for i, r := range scanRows() {
		line := enc.appendRow(nil, &r)
		var want trail.Row
		if err := decodeJSONRow(line, &want, index); err != nil {
			t.Fatalf("row %d: strict decode: %v", i, err)
		}
		for _, html := range []bool{false, true} {
			in := line
			if html {
				in = appendHTMLEscaped(nil, line)
			}
			s := strictScanner{index: index, html: html}
			var got trail.Row
			if !s.scan(string(in), in, &got) {
				t.Fatalf("row %d (html %v): refused an export line: %s", i, html, in)
			}
			if trail.EventHash(&got) != trail.EventHash(&want) || !bytes.Equal(enc.appendRow(nil, &got), line) {
				t.Errorf("row %d (html %v):\nscanned %+v\nstrict  %+v", i, html, got, want)
			}
		}
		d := lineDecoder{index: index}
		var got trail.Row
		if err := d.decode(line, &got); err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("row %d: decode %v\ngot  %+v\nwant %+v", i, err, got, want)
		}
	}
}

// TestStrictScannerRefuses checks that lines which are not what export
// writes, even where they decode to the same row, are refused.
func TestStrictScannerRefuses(t *testing.T) {
	index := columnIndex()
	var enc jsonEncoder
	r := scanRows()[0]
	line := enc.appendRow(nil, &r)
	hash := "ff" + strings.Repeat("fe", 1) + strings.Repeat("00", 30)
	for _, c := range []struct{ name, from, to string }{
		{"space after brace", `{"chain"`, `{ "chain"`},
		{"keys swapped", `"chain":"aks/0","seq":18446744073709551615`, `"seq":18446744073709551615,"chain":"aks/0"`},
		{"extra field", `,"hash":`, `,"extra":1,"hash":`},
		{"escaped slash", `"/a/b"`, `"\/a\/b"`},
		{"unicode escape", `"alice"`, `"\u0061lice"`},
		{"b64 of UTF-8", `"action":"","action_class":"","target_api_group":"","target_resource":"","target_subresource":"","target_namespace":"","target_name":"","target_repository":"","target_tag":"","target_digest":"","target_container_group":"","target_container":"","target_image":"","outcome":"",`,
			`"action":"YQ==","action_class":"","target_api_group":"","target_resource":"","target_subresource":"","target_namespace":"","target_name":"","target_repository":"","target_tag":"","target_digest":"","target_container_group":"","target_container":"","target_image":"","outcome":"/w==",`},
		{"b64 unsorted", `"b64":["user_agent"]`, `"b64":["user_agent","chain"]`},
		{"b64 empty", `,"b64":["user_agent"]`, `,"b64":[]`},
		{"named backspace", `\u0000`, `\b`},
		{"upper-case unicode escape", `\u001f`, `\u001F`},
		{"raw U+2028", `\u2028`, "\u2028"},
		{"number with plus", `"source_offset":-5`, `"source_offset":+5`},
		{"leading zero", `"source_offset":-5`, `"source_offset":-05`},
		{"minus zero", `"source_offset":-5`, `"source_offset":-0`},
		{"trailing text", `"}`, `"} `},
		{"truncated", `"}`, `"`},
		{"lone surrogate", `"alice"`, `"\ud800lice"`},
		{"raw escaped", `"raw":"`, `"raw":"\u0041`},
		{"upper-case hash", hash, strings.ToUpper(hash)},
		{"time offset", `10:11:12.123456Z`, `10:11:12.123456+00:00`},
		{"time millis", `10:11:12.123456Z`, `10:11:12.123Z"`},
		{"map keys unsorted", `"":"","k":"v"`, `"k":"v","":""`},
		{"raw with line break", `"raw":"eyJ4`, `"raw":"\neyJ4`},
	} {
		t.Run(c.name, func(t *testing.T) {
			edited := bytes.Replace(line, []byte(c.from), []byte(c.to), 1)
			if bytes.Equal(edited, line) {
				t.Fatalf("edit %q not found", c.from)
			}
			if c.name == "b64 of UTF-8" {
				// base64 of text that is UTF-8: the encoder writes it plain
				edited = bytes.Replace(edited, []byte(`"b64":["user_agent"]`), []byte(`"b64":["user_agent","action","outcome"]`), 1)
			}
			s := strictScanner{index: index}
			var got trail.Row
			if s.scan(string(edited), nil, &got) {
				t.Errorf("accepted: %s", edited)
			}
		})
	}
}

// FuzzCanonicalScanner holds the strict scanner to its contract: any
// line it accepts is the canonical encoding of the row it reads (so no
// re-encoding is needed to prove it), and the general decoder reads the
// same row from it.
func FuzzCanonicalScanner(f *testing.F) {
	var enc jsonEncoder
	for _, r := range scanRows() {
		line := enc.appendRow(nil, &r)
		f.Add(line, false)
		f.Add(appendHTMLEscaped(nil, line), true)
	}
	index := columnIndex()
	f.Fuzz(func(t *testing.T, line []byte, html bool) {
		s := strictScanner{index: index, html: html}
		var r, fromText trail.Row
		ok := s.scan(string(line), line, &r)
		// the scanner reads the text alone (CSV fields) the same way
		if okText := (&strictScanner{index: index, html: html}).scan(string(line), nil, &fromText); okText != ok || ok && trail.EventHash(&fromText) != trail.EventHash(&r) {
			t.Fatalf("with the line's bytes %v, from its text alone %v", ok, okText)
		}
		if !ok {
			return
		}
		want := enc.appendRow(nil, &r)
		if html {
			want = appendHTMLEscaped(nil, want)
		}
		if !bytes.Equal(want, line) {
			t.Fatalf("accepted a line that is not canonical:\n got %q\nwant %q", line, want)
		}
		if html {
			return
		}
		d := lineDecoder{index: index}
		var g trail.Row
		if err := d.decode(line, &g); err != nil {
			t.Fatalf("the general decoder refuses an accepted line: %v", err)
		}
		if trail.EventHash(&g) != trail.EventHash(&r) {
			t.Fatalf("the general decoder reads another row:\nstrict  %+v\ngeneral %+v", r, g)
		}
	})
}
