package web

import (
	"net/url"
	"strconv"
	"strings"
	"testing"
)

// TestSecondDelivery runs the page's search, timeline and gaps on a store
// holding the incident once and on one holding its AKS audit archive
// again through Event Hubs (a second diagnostic setting): every answer
// counts each event once, the same events in the same order, and says how
// it was delivered; the event page lists both copies, each with a proof.
func TestSecondDelivery(t *testing.T) {
	one := newFixture(t, Options{})
	two := newFixtureDeliveries(t, Options{}, true)
	day := "from=" + incidentFrom + "&to=" + incidentTo

	// pages reads every page of a search.
	pages := func(f *fixture, base string) (events []eventSummary, n int) {
		path := base
		for path != "" {
			var res struct {
				Events []eventSummary `json:"events"`
				Next   string         `json:"next"`
			}
			decode(t, f.get(t, path), &res)
			events = append(events, res.Events...)
			n++
			path = ""
			if res.Next != "" {
				path = base + "&after=" + res.Next
			}
		}
		return events, n
	}
	// key is what both stores must agree on: the event, not its copy.
	key := func(e eventSummary) string {
		return strings.Join([]string{e.ID, e.Time, e.Service, e.Actor, e.Action, e.Class, e.Outcome, e.Resource, e.SourceIP, e.Tags}, "|")
	}
	for _, c := range []struct{ name, path string }{
		{"the day, newest first, pages of 50", "/api/search?" + day + "&limit=50"},
		{"the day, oldest first, pages of 7", "/api/search?" + day + "&limit=7&order=asc"},
		{"dana, pages of 4", "/api/search?from=2025-06-01&to=2025-07-01&order=asc&limit=4&actor=" + url.QueryEscape(phished)},
		{"the attacker's exec, pages of 1", "/api/search?" + day + "&ip=203.0.113.0/24&class=exec&limit=1"},
		{"the cluster, pages of 3", "/api/search?" + day + "&limit=3&service=aks&resource=payments-aks"},
	} {
		t.Run(c.name, func(t *testing.T) {
			want, wantPages := pages(one, c.path)
			got, gotPages := pages(two, c.path)
			if len(want) == 0 {
				t.Fatalf("no events for %s", c.path)
			}
			if len(got) != len(want) || gotPages != wantPages {
				t.Fatalf("%d events in %d pages with a second delivery, want %d in %d", len(got), gotPages, len(want), wantPages)
			}
			seen := map[string]bool{}
			doubled := 0
			for i := range got {
				if key(got[i]) != key(want[i]) {
					t.Errorf("event %d: %s\nwant %s", i, key(got[i]), key(want[i]))
				}
				if seen[got[i].ID] {
					t.Errorf("event %s shown twice", got[i].ID)
				}
				seen[got[i].ID] = true
				switch wantVia := want[i].DeliveredVia; {
				case strings.HasPrefix(want[i].Chain, "incident/archive/"):
					if got[i].DeliveredVia != "archive,eventhubs" || wantVia != "archive" {
						t.Errorf("%s: delivered_via %q (single delivery %q), want archive,eventhubs (archive)", got[i].ID, got[i].DeliveredVia, wantVia)
					}
					doubled++
				case got[i].DeliveredVia != wantVia || wantVia == "":
					t.Errorf("%s: delivered_via %q, want %q", got[i].ID, got[i].DeliveredVia, wantVia)
				}
			}
			if doubled == 0 {
				t.Errorf("no event of %s was delivered twice: the case tests nothing", c.path)
			}
		})
	}

	t.Run("timeline and gaps count once", func(t *testing.T) {
		for _, path := range []string{"/api/timeline?actor=" + url.QueryEscape(phished), "/api/timeline?resource=payments-aks&" + day, "/api/gaps?" + day} {
			var a, b struct {
				Events []eventSummary `json:"events"`
				Total  int            `json:"total"`
				Gaps   []gap          `json:"gaps"`
				From   string         `json:"from"`
				To     string         `json:"to"`
			}
			decode(t, one.get(t, path), &a)
			decode(t, two.get(t, path), &b)
			if len(a.Events) != len(b.Events) || a.Total != b.Total || a.From != b.From || a.To != b.To {
				t.Fatalf("%s: %d marks (total %d, %s-%s) with a second delivery, want %d (total %d, %s-%s)", path,
					len(b.Events), b.Total, b.From, b.To, len(a.Events), a.Total, a.From, a.To)
			}
			for i := range a.Events {
				if key(a.Events[i]) != key(b.Events[i]) {
					t.Errorf("%s mark %d: %s, want %s", path, i, key(b.Events[i]), key(a.Events[i]))
				}
			}
			if len(a.Gaps) != len(b.Gaps) {
				t.Fatalf("%s: gaps %+v with a second delivery, want %+v", path, b.Gaps, a.Gaps)
			}
			for i := range a.Gaps {
				if a.Gaps[i] != b.Gaps[i] {
					t.Errorf("%s: gap %+v, want %+v", path, b.Gaps[i], a.Gaps[i])
				}
			}
		}
	})

	// Gaps count rows per bucket, then events only where that decides:
	// AKS holds 34 events from 12:15 to 16:50 (68 rows with the second
	// delivery), fewer than a service needs to be called silent, and 100
	// or more from 08:00 to 18:00; both windows hold its 67 quiet minutes
	// after 14:37.
	t.Run("a sparse service stays sparse when delivered twice", func(t *testing.T) {
		for _, c := range []struct {
			window string
			silent bool
		}{
			{"from=2025-06-12T12:15:00Z&to=2025-06-12T16:50:00Z", false},
			{"from=2025-06-12T08:00:00Z&to=2025-06-12T18:00:00Z", true},
		} {
			for _, f := range []*fixture{one, two} {
				var res struct {
					Gaps []gap `json:"gaps"`
				}
				decode(t, f.get(t, "/api/gaps?"+c.window), &res)
				silent := false
				for _, g := range res.Gaps {
					if g.Kind == "silent" && g.Service == "aks" {
						silent = silent || g.From <= "2025-06-12T14:45" && g.To >= "2025-06-12T15:40"
					}
				}
				if silent != c.silent {
					t.Errorf("%s (second delivery %v): aks silent after 14:37 %v, want %v: %+v", c.window, f == two, silent, c.silent, res.Gaps)
				}
			}
		}
	})

	// A timeline with more events than it draws: the first marks, each
	// event once, and the total counts events, not copies.
	t.Run("a truncated timeline counts once", func(t *testing.T) {
		one.srv.marks, two.srv.marks = 7, 7
		defer func() { one.srv.marks, two.srv.marks = maxMarks, maxMarks }()
		for _, path := range []string{"/api/timeline?resource=payments-aks&" + day, "/api/timeline?resource=payments-aks"} {
			var a, b struct {
				Events    []eventSummary `json:"events"`
				Total     int            `json:"total"`
				Truncated bool           `json:"truncated"`
				From, To  string
			}
			decode(t, one.get(t, path), &a)
			decode(t, two.get(t, path), &b)
			if len(a.Events) != 7 || !a.Truncated || a.Total <= 7 {
				t.Fatalf("%s: %d marks of %d (truncated %v): the case tests nothing", path, len(a.Events), a.Total, a.Truncated)
			}
			if len(b.Events) != len(a.Events) || b.Total != a.Total || !b.Truncated || b.From != a.From || b.To != a.To {
				t.Errorf("%s: %d marks of %d (%s-%s) with a second delivery, want %d of %d (%s-%s)", path, len(b.Events), b.Total, b.From, b.To, len(a.Events), a.Total, a.From, a.To)
			}
			doubled := 0
			for i := range min(len(a.Events), len(b.Events)) {
				if key(a.Events[i]) != key(b.Events[i]) {
					t.Errorf("%s mark %d: %s, want %s", path, i, key(b.Events[i]), key(a.Events[i]))
				}
				if b.Events[i].DeliveredVia == "archive,eventhubs" {
					doubled++
				}
			}
			if doubled == 0 {
				t.Errorf("%s: no mark was delivered twice: the case tests nothing", path)
			}
		}
	})

	t.Run("the event page lists every copy with its proof", func(t *testing.T) {
		got, _ := pages(two, "/api/search?"+day+"&limit=500&class=exec")
		var ev eventSummary
		for _, e := range got {
			if e.DeliveredVia == "archive,eventhubs" {
				ev = e
				break
			}
		}
		if ev.ID == "" {
			t.Fatal("no exec event delivered twice")
		}
		type copyPage struct {
			Chain   string      `json:"chain"`
			Seq     uint64      `json:"seq"`
			EventID string      `json:"event_id"`
			Copies  []eventCopy `json:"copies"`
			Hash    bool        `json:"hash_matches"`
			Proof   struct {
				ServerOK bool `json:"server_ok"`
			} `json:"proof"`
		}
		var page copyPage
		decode(t, two.get(t, "/api/event?chain="+url.QueryEscape(ev.Chain)+"&seq="+strconv.FormatUint(ev.Seq, 10)), &page)
		if len(page.Copies) != 2 {
			t.Fatalf("copies %+v, want the archive's and Event Hubs'", page.Copies)
		}
		if page.Copies[0].Chain != ev.Chain || page.Copies[0].Seq != ev.Seq {
			t.Errorf("first copy %+v, want the one the search shows (%s %d)", page.Copies[0], ev.Chain, ev.Seq)
		}
		for i, c := range page.Copies {
			want := []string{"eventhubs", "archive"}[i] // "eventhubs/…" sorts before "incident/…"
			if c.Delivery != want || !strings.HasPrefix(c.Proof, "/api/event?") {
				t.Errorf("copy %d: %+v, want delivery %s and a proof link", i, c, want)
			}
			var cp copyPage
			decode(t, two.get(t, c.Proof), &cp)
			if cp.Chain != c.Chain || cp.Seq != c.Seq || cp.EventID != ev.ID || !cp.Hash || !cp.Proof.ServerOK || len(cp.Copies) != 2 {
				t.Errorf("copy %d's proof page: %+v", i, cp)
			}
		}
		var single copyPage
		decode(t, one.get(t, "/api/event?id="+url.QueryEscape(ev.ID)), &single)
		if len(single.Copies) != 1 || single.Copies[0].Delivery != "archive" {
			t.Errorf("single delivery: copies %+v, want the archive's", single.Copies)
		}
	})
}
