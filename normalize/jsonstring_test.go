package normalize_test

import (
	"bytes"
	"encoding/json"
	"testing"
	"unicode/utf8"

	"github.com/custody-audit/custody/normalize"
	"github.com/custody-audit/custody/normalize/internal/loadgen"
)

// encodingJSON is s as encoding/json writes a string, with or without
// HTML escaping.
func encodingJSON(t *testing.T, s string, html bool) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(html)
	if err := enc.Encode(s); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

// FuzzAppendJSONString holds the one JSON string escaper to encoding/json
// in each form, for strings and byte slices alike: EscapeNoHTML and
// EscapeHTML are encoding/json's two forms; EscapeBundle is encoding/json
// without HTML escaping with \b and \f written \u0008 and \u000c, over
// UTF-8 text (the only text the bundle puts in its strings; other bytes
// are copied).
func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "plain", "x<y>&z \"q\" \\ \n\r\t\b\f\x00\x1f\x7f", "ü € \u2028 \u2029 𝄞 \xff\xfe \xe2\x80", "abcdefgh<ijklmnop&qrstuvw>xyz01234567", "12345678\x01"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		check := func(esc normalize.JSONEscape, want []byte) {
			t.Helper()
			if got := normalize.AppendJSONString([]byte("prefix"), s, esc); !bytes.Equal(got, append([]byte("prefix"), want...)) {
				t.Fatalf("%q form %d: got %s, want %s", s, esc, got[6:], want)
			}
			if got := normalize.AppendJSONString(nil, []byte(s), esc); !bytes.Equal(got, want) {
				t.Fatalf("%q form %d as bytes: got %s, want %s", s, esc, got, want)
			}
		}
		check(normalize.EscapeNoHTML, encodingJSON(t, s, false))
		check(normalize.EscapeHTML, encodingJSON(t, s, true))
		if utf8.ValidString(s) {
			want := []byte{'"'}
			for _, r := range s {
				switch r {
				case '\b':
					want = append(want, `\u0008`...)
				case '\f':
					want = append(want, `\u000c`...)
				default:
					q := encodingJSON(t, string(r), false)
					want = append(want, q[1:len(q)-1]...)
				}
			}
			want = append(want, '"')
			check(normalize.EscapeBundle, want)
		}
	})
}

// BenchmarkAppendJSONString escapes generated records as the event JSON
// form writes Raw: JSON text whose AKS audit event is itself an escaped
// string, so quotes and backslashes come every few bytes.
func BenchmarkAppendJSONString(b *testing.B) {
	g := loadgen.New(42, loadgen.DefaultMix())
	var recs [][]byte
	total := 0
	for range 100 {
		r := g.Record()
		recs = append(recs, r)
		total += len(r)
	}
	b.SetBytes(int64(total / len(recs)))
	b.ReportAllocs()
	var dst []byte
	i := 0
	for b.Loop() {
		dst = normalize.AppendJSONString(dst[:0], recs[i%len(recs)], normalize.EscapeNoHTML)
		i++
	}
}
