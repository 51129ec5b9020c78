package bundle

import (
	"bytes"
	"encoding/csv"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/custody-audit/custody/event"
	"github.com/custody-audit/custody/storage/trail"
)

// TestCSVLineMatchesEncodingCSV checks that a CSV line is what
// encoding/csv writes for its fields, and that it reads back as the row.
func TestCSVLineMatchesEncodingCSV(t *testing.T) {
	rows := []trail.Row{
		{Chain: "aks/0", Seq: 1, Event: event.Event{ID: " leading space", Time: time.Unix(0, 0).UTC(), ReceivedTime: time.Unix(1, 5000).UTC(),
			Actor: event.Actor{Name: "a,b", Groups: []string{`q"uote`, "x"}}, Reason: "line\nbreak", UserAgent: `\.`,
			Tags: []string{}, Attributes: map[string]string{"k": "v,w", "\"": "\n"}, Raw: []byte{0, 0xff}, SourceIP: netip.MustParseAddr("2001:db8::1")}},
		{Chain: "acr/0", Seq: 2, Event: event.Event{ID: "cr\rhere", Action: "\xff invalid", RequestID: "\u00a0nbsp", Raw: []byte{}, Time: time.Unix(0, 0).UTC(), ReceivedTime: time.Unix(0, 0).UTC()}},
		{Chain: "", Seq: 3, Event: event.Event{Raw: []byte{}, Time: time.Unix(0, 0).UTC(), ReceivedTime: time.Unix(0, 0).UTC()}},
	}
	var enc csvEncoder
	for i := range rows {
		r := &rows[i]
		line := enc.appendLine(nil, r)
		rec, err := csv.NewReader(bytes.NewReader(line)).Read()
		if err != nil {
			t.Fatalf("row %d: %v\n%s", i, err, line)
		}
		var want bytes.Buffer
		w := csv.NewWriter(&want)
		if err := w.Write(rec); err != nil {
			t.Fatal(err)
		}
		w.Flush()
		if !bytes.Equal(line, want.Bytes()) {
			t.Errorf("row %d:\ngot  %q\nwant %q", i, line, want.Bytes())
		}
		var back trail.Row
		if err := decodeCSVRow(rec, &back, columnIndex()); err != nil {
			t.Fatalf("row %d: %v", i, err)
		}
		normalizeRow(&back)
		c := *r
		normalizeRow(&c)
		if !reflect.DeepEqual(back, c) {
			t.Errorf("row %d reads back as\n%+v\nwant\n%+v", i, back, c)
		}
	}
}
