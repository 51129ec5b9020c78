package normalize

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
	"testing"

	"github.com/custody-audit/custody/event"
)

// The allocation-free helpers must give exactly what the strings and
// strconv calls they replace give, non-ASCII and odd forms included.
var lowerCases = []string{
	"", "a", "Success", "SUCCEEDED", "failed", "Microsoft.ContainerService/managedClusters/write",
	"o\u212a", "\u212aelvin", "\u0130stanbul", "ſtarted", "Ok", "OK", "NotFound", "nocontent",
	"200", "+200", "-200", "0", "999", "1000", "00042", "+", "-", "2x", " 200", "99999999999999999999999",
	"\xff\xfeBAD", strings.Repeat("AbC", 50), "AuthorizationFailed", "Forbidden",
}

func TestLowerHelpersMatchStrings(t *testing.T) {
	var sc strCache
	for _, s := range lowerCases {
		want := strings.ToLower(s)
		if got := lowerString(s, &sc); got != want {
			t.Errorf("lowerString(%q) = %q, want %q", s, got, want)
		}
		if got := lowerString(s, &sc); got != want { // from the cache
			t.Errorf("lowerString(%q) again = %q, want %q", s, got, want)
		}
		var buf [16]byte
		if got := string(lowerBytes(buf[:], s)); got != want {
			t.Errorf("lowerBytes(%q) = %q, want %q", s, got, want)
		}
		if got := string(appendLower([]byte("x"), s)); got != "x"+want {
			t.Errorf("appendLower(%q) = %q, want %q", s, got, "x"+want)
		}
		for _, t2 := range lowerCases {
			for _, needle := range []string{"authorizationfailed", "forbidden", "ok"} {
				want := strings.Contains(strings.ToLower(s+t2), needle)
				if got := lowerContains(needle, s, t2); got != want {
					t.Errorf("lowerContains(%q, %q, %q) = %v, want %v", needle, s, t2, got, want)
				}
			}
		}
	}
}

func TestStatusCodeTextMatchesAtoi(t *testing.T) {
	ref := func(s string) int32 {
		if s == "" {
			return 0
		}
		if n, err := strconv.Atoi(s); err == nil && n > 0 && n < 1000 {
			return int32(n)
		}
		return httpStatusNames[strings.ToLower(s)]
	}
	for _, s := range lowerCases {
		if got, want := statusCodeText(s), ref(s); got != want {
			t.Errorf("statusCodeText(%q) = %d, want %d", s, got, want)
		}
	}
}

// TestHashIDMatchesDerivedID holds hashID to the id the Activity Log
// decoder has always derived: stored ids must not change.
func TestHashIDMatchesDerivedID(t *testing.T) {
	ref := func(prefix string, parts ...string) string {
		h := sha256.New()
		for _, s := range parts {
			h.Write([]byte(s))
			h.Write([]byte{0})
		}
		return prefix + hex.EncodeToString(h.Sum(nil)[:16])
	}
	parts := []string{"3f2c1d0e-aaaa-4bbb-8ccc-000000000101", "microsoft.containerservice/managedclusters/write", "success", "2025-05-06T10:01:02Z"}
	var pre []byte
	for _, p := range parts {
		pre = append(append(pre, p...), 0)
	}
	if got, want := hashID("arm:", pre), ref("arm:", parts...); got != want {
		t.Fatalf("hashID = %s, want %s", got, want)
	}
	if got, want := hashID("arm:", pre), "arm:"; len(got) != len(want)+32 {
		t.Fatalf("hashID = %s: want prefix and 32 hex digits", got)
	}
}

// TestEscListCopies checks that every call gets a list of its own: events
// must not share their groups through the cache.
func TestEscListCopies(t *testing.T) {
	var sc strCache
	v := []byte(`[\"system:nodes\",\"system:authenticated\"]`)
	var lists [][]string
	for range 3 {
		l, ok := sc.escList(v)
		if !ok || len(l) != 2 || l[0] != "system:nodes" || l[1] != "system:authenticated" {
			t.Fatalf("escList = %q, %v", l, ok)
		}
		lists = append(lists, l)
		l[0] = "changed"
	}
	if &lists[0][0] == &lists[1][0] || &lists[1][0] == &lists[2][0] {
		t.Fatal("escList handed out the same list twice")
	}
	if l, ok := sc.escList([]byte(`[]`)); !ok || l != nil {
		t.Fatalf("escList([]) = %#v, %v, want nil, true", l, ok)
	}
}

// TestOwnStrings holds ownStrings to what materialize and recPos.String
// make of the same values, whichever form they arrive in.
func TestOwnStrings(t *testing.T) {
	vals := []rawVal{
		{},
		{b: []byte("4a2c-id"), plain: true},
		{b: []byte(""), plain: true},
		{b: []byte(`"/api/v1/pods?x=1"`)},
		{b: []byte(`"a\u0026b"`), esc: true},
		{b: []byte(`"a\/b"`)}, // escapes, flag not known
		{b: []byte(`\"a\\\\b\"`), escaped: true},
		{b: []byte(`42`)},
		{b: []byte(`""`)},
	}
	for _, rp := range []recPos{{base: "p0", index: 7}, {base: "", index: 0}, {base: "file.json", index: -1}, {base: "", index: -1}} {
		for _, id := range vals {
			for _, uri := range vals {
				var e event.Event
				a := auditEvent{auditIDRaw: id, requestURIRaw: uri, nameRaw: uri}
				ownStrings(&e, &a, rp)
				a.materialize(nil, nil)
				want := auditEvent{auditIDRaw: id, requestURIRaw: uri, nameRaw: uri}
				want.materialize(nil, nil)
				if e.SourcePosition != rp.String() || a.auditID != want.auditID || a.requestURI != want.requestURI || a.name != want.name {
					t.Errorf("ownStrings(%+v, %q, %q) = %q %q %q %q, want %q %q %q %q", rp, id.b, uri.b,
						e.SourcePosition, a.auditID, a.requestURI, a.name, rp.String(), want.auditID, want.requestURI, want.name)
				}
			}
		}
	}
}
