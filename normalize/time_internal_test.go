package normalize

import (
	"testing"
	"time"
)

// TestParseRFC3339UTC checks the strict fast path against time.Parse: for
// every input it accepts it must give time.Parse's instant, and the inputs
// it leaves to time.Parse must still parse (or fail) as before.
func TestParseRFC3339UTC(t *testing.T) {
	for _, s := range []string{
		"2025-04-20T16:00:00Z", "2025-04-20T16:00:00.123456Z", "2025-04-20T16:00:00.1Z",
		"2025-04-20T16:00:00.123456789Z", "2025-04-20T16:00:00.1234567891Z", "2025-04-20T16:00:00+02:00",
		"2025-04-20T16:00:00.5-07:30", "2024-02-29T23:59:59Z", "2023-02-29T00:00:00Z", "2025-04-31T00:00:00Z",
		"2025-13-01T00:00:00Z", "2025-04-20T24:00:00Z", "2025-04-20T16:60:00Z", "2025-04-20T16:00:60Z",
		"2025-04-20T16:00:00+24:00", "2025-04-20T16:00:00+02:60", "2025-04-20t16:00:00z", "2025-04-20 16:00:00Z",
		"2025-04-20T16:00:00", "2025-04-20T16:00:00.Z", "2025-04-20T16:00:00,5Z", "0000-01-01T00:00:00Z",
		"9999-12-31T23:59:59.999999999Z", "2025-04-20T16:00:00+0200", "2025-04-20T16:00:00Z ", "+025-04-20T16:00:00Z",
		"2025-4-20T16:00:00Z", "", "2025-04-20T16:00:00.123456Z07:00",
	} {
		want, wantErr := time.Parse(time.RFC3339Nano, s)
		got, ok := parseRFC3339UTC(s)
		if ok && (wantErr != nil || !got.Equal(want) || got.Location() != time.UTC) {
			t.Errorf("parseRFC3339UTC(%q) = %v, time.Parse = %v, %v", s, got, want, wantErr)
		}
		gotB, okB := parseRFC3339UTC([]byte(s))
		if okB != ok || !gotB.Equal(got) {
			t.Errorf("parseRFC3339UTC([]byte(%q)) = %v, %v; string form %v, %v", s, gotB, okB, got, ok)
		}
		p1, ok1 := parseTime(s)
		p2, ok2 := parseTimeBytes([]byte(s))
		if ok1 != ok2 || !p1.Equal(p2) {
			t.Errorf("parseTime(%q) = %v, %v but parseTimeBytes = %v, %v", s, p1, ok1, p2, ok2)
		}
		if wantErr == nil && (!ok1 || !p1.Equal(want)) {
			t.Errorf("parseTime(%q) = %v, %v, want %v", s, p1, ok1, want)
		}
	}
}

// FuzzParseRFC3339UTC checks the fast path against time.Parse on arbitrary
// input.
func FuzzParseRFC3339UTC(f *testing.F) {
	f.Add("2025-04-20T16:00:00.123456Z")
	f.Add("2025-04-20T16:00:00+02:00")
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := parseRFC3339UTC(s)
		if !ok {
			return
		}
		want, err := time.Parse(time.RFC3339Nano, s)
		if err != nil || !got.Equal(want) {
			t.Fatalf("parseRFC3339UTC(%q) = %v, time.Parse = %v, %v", s, got, want, err)
		}
	})
}
