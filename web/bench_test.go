package web

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/custody-audit/custody/internal/chdbtest"
	"github.com/custody-audit/custody/queries/querytest"
	"github.com/custody-audit/custody/storage"
	"github.com/custody-audit/custody/storage/engine"
)

// The benchmark store holds the queries benchmark's generated events
// (querytest.BenchInsertSQL, without its second deliveries): events over
// 30 days ending 2025-06-01, CUSTODY_BENCH_EVENTS of them (default
// 1,000,000), kept in CUSTODY_BENCH_DIR/<count> between runs. Give it a
// directory of its own: the queries benchmark's store also holds copies.
func benchEnd() time.Time { return time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC) }

const benchSpan = 30 * 24 * time.Hour

func benchServer(b *testing.B) (*Server, engine.Engine, uint64) {
	b.Helper()
	total := uint64(1_000_000)
	if s := os.Getenv("CUSTODY_BENCH_EVENTS"); s != "" {
		n, err := strconv.ParseUint(strings.ReplaceAll(s, "_", ""), 10, 64)
		if err != nil || n == 0 {
			b.Fatalf("CUSTODY_BENCH_EVENTS=%q: want a positive count", s)
		}
		total = n
	}
	dir := os.Getenv("CUSTODY_BENCH_DIR")
	if dir != "" {
		dir = filepath.Join(dir, strconv.FormatUint(total, 10))
	}
	eng := chdbtest.Open(b, dir)
	ctx := context.Background()
	querytest.CreateSchema(ctx, b, eng)
	var have uint64
	if err := engine.Each(ctx, eng, "SELECT count() FROM custody.events", nil, func(r engine.Rows) error { return r.Scan(&have) }); err != nil {
		b.Fatal(err)
	}
	if have != total {
		if have != 0 {
			b.Fatalf("store %s holds %d events, want 0 or %d", dir, have, total)
		}
		start := time.Now()
		const chunk = 1_000_000
		for off := uint64(0); off < total; off += chunk {
			if err := eng.Exec(ctx, querytest.BenchInsertSQL(off, min(chunk, total-off), total, benchEnd(), benchSpan), nil); err != nil {
				b.Fatalf("generate events: %v", err)
			}
		}
		if err := eng.Exec(ctx, "OPTIMIZE TABLE custody.events FINAL", nil); err != nil {
			b.Fatalf("merge generated parts: %v", err)
		}
		b.Logf("generated %d events in %s", total, time.Since(start).Round(time.Millisecond))
	}
	// A migration's MATERIALIZE INDEX runs in the background: measure
	// the store once its indexes are built.
	for {
		var pending uint64
		if err := engine.Each(ctx, eng, "SELECT count() FROM system.mutations WHERE database = 'custody' AND NOT is_done", nil, func(r engine.Rows) error { return r.Scan(&pending) }); err != nil {
			b.Fatal(err)
		}
		if pending == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	st, err := storage.Open(ctx, eng, storage.Options{})
	if err != nil {
		b.Fatal(err)
	}
	_, vkey, err := storage.GenerateKey("bench")
	if err != nil {
		b.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		b.Fatal(err)
	}
	srv, err := New(Options{Store: st, Verifier: v, Now: benchEnd})
	if err != nil {
		b.Fatal(err)
	}
	return srv, eng, total
}

// BenchmarkPage measures what the page asks of the server, through the
// whole handler (validation, the engine, JSON): searches and timelines on
// the generated store, and prints a Markdown table of p50 and p95 and,
// per request, the engine's CPU time, queries, and the rows and bytes
// they read (the engine's own counters: unlike the times, these hardly
// depend on the load on the machine).
//
//	CUSTODY_BENCH_EVENTS=10000000 CUSTODY_BENCH_DIR=/var/tmp/custody-bench go test ./web -run '^$' -bench Page -benchtime 20x -timeout 60m
func BenchmarkPage(b *testing.B) {
	srv, eng, total := benchServer(b)
	aks3 := "/subscriptions/4f1a2b3c-0000-4000-8000-00000000c0de/resourcegroups/rg3/providers/microsoft.containerservice/managedclusters/aks3"
	week := "from=2025-05-25T00:00:00Z&to=2025-06-01T00:00:00Z"
	month := "from=2025-05-02T00:00:00Z&to=2025-06-01T00:00:00Z"
	// get answers path through the handler and returns the answer and the
	// handler's time (not the benchmark's decoding of the JSON).
	get := func(b *testing.B, path string) (map[string]any, time.Duration) {
		req := httptest.NewRequest("GET", "http://127.0.0.1"+path, nil)
		w := httptest.NewRecorder()
		start := time.Now()
		srv.ServeHTTP(w, req)
		took := time.Since(start)
		if w.Code != 200 {
			b.Fatalf("GET %s: %d %s", path, w.Code, w.Body)
		}
		var out map[string]any
		if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
			b.Fatal(err)
		}
		return out, took
	}
	// The second page of a search, by its cursor.
	next := func(b *testing.B, path string) string {
		out, _ := get(b, path)
		n, _ := out["next"].(string)
		if n == "" {
			b.Fatalf("%s: no next page", path)
		}
		return path + "&after=" + url.QueryEscape(n)
	}
	cases := []struct{ name, path string }{
		{"search: last 7 days, first page", "/api/search?" + week},
		{"search: last 7 days, page 2", ""},
		{"search: 30 days, one principal", "/api/search?" + month + "&actor=user42@contoso.com"},
		{"search: 30 days, one resource", "/api/search?" + month + "&resource=" + url.QueryEscape(aks3)},
		{"search: 30 days, exec from an address range", "/api/search?" + month + "&ip=203.0.113.0/24&class=exec"},
		{"search: 30 days, secret access denied", "/api/search?" + month + "&tag=secret_access&outcome=failure"},
		{"timeline: one principal, whole history", "/api/timeline?actor=user42@contoso.com"},
		{"timeline: one principal, one day", "/api/timeline?actor=user42@contoso.com&from=2025-05-20T00:00:00Z&to=2025-05-21T00:00:00Z"},
		{"timeline: one resource, 7 days", "/api/timeline?resource=" + url.QueryEscape(aks3) + "&" + week},
		{"gaps: 7 days (after a timeline's marks)", "/api/gaps?" + week},
		{"gaps: 30 days", "/api/gaps?" + month},
	}
	cases[1].path = next(b, cases[0].path)
	type stat struct {
		name   string
		events int
		times  []time.Duration
		// per request, from system.query_log
		queries, rows, bytes float64
		cpu                  time.Duration // the engine's, per request
	}
	var stats []*stat
	for _, c := range cases {
		st := &stat{name: c.name}
		stats = append(stats, st)
		b.Run(c.name, func(b *testing.B) {
			q0, r0, b0, c0 := engineReads(b, eng)
			for b.Loop() {
				out, took := get(b, c.path)
				st.times = append(st.times, took)
				ev, ok := out["events"].([]any)
				if !ok {
					ev, _ = out["gaps"].([]any)
				}
				st.events = len(ev)
			}
			q1, r1, b1, c1 := engineReads(b, eng)
			if n := float64(len(st.times)); n > 0 {
				// The second engineReads call is a SELECT too.
				st.queries, st.rows, st.bytes = float64(q1-q0-1)/n, float64(r1-r0)/n, float64(b1-b0)/n
				st.cpu = time.Duration(float64(c1-c0)/n) * time.Microsecond
			}
		})
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "\n%d events over %s.\n\n| request | events (gaps) returned | p50 | p95 | engine CPU | queries | rows read | bytes read |\n|---|---:|---:|---:|---:|---:|---:|---:|\n", total, benchSpan)
	for _, st := range stats {
		if len(st.times) == 0 {
			continue // left out by -bench
		}
		slices.Sort(st.times)
		fmt.Fprintf(&sb, "| %s | %d | %s | %s | %s | %.0f | %s | %s |\n", st.name, st.events, msOf(pct(st.times, 50)), msOf(pct(st.times, 95)),
			msOf(st.cpu), st.queries, humanCount(st.rows), humanBytes(st.bytes))
	}
	fmt.Print(sb.String())
}

// engineReads returns the engine's counts of SELECT queries and of the
// rows and bytes they read from tables since it started, and the CPU time
// of its query threads (system.events: SelectQuery, SelectedRows,
// SelectedBytes, UserTimeMicroseconds + SystemTimeMicroseconds; the
// embedded engine keeps no system.query_log). The benchmark's engine is the store's admin.
func engineReads(b *testing.B, eng engine.Engine) (queries, rows, bytes, cpuUS uint64) {
	b.Helper()
	err := engine.Each(context.Background(), eng, `SELECT sumIf(value, event = 'SelectQuery'), sumIf(value, event = 'SelectedRows'), sumIf(value, event = 'SelectedBytes'),
	sumIf(value, event IN ('UserTimeMicroseconds', 'SystemTimeMicroseconds'))
FROM system.events WHERE event IN ('SelectQuery', 'SelectedRows', 'SelectedBytes', 'UserTimeMicroseconds', 'SystemTimeMicroseconds')`, nil, func(r engine.Rows) error { return r.Scan(&queries, &rows, &bytes, &cpuUS) })
	if err != nil {
		b.Fatalf("read the engine's counters: %v", err)
	}
	return queries, rows, bytes, cpuUS
}

func humanCount(v float64) string {
	switch {
	case v >= 1e6:
		return strconv.FormatFloat(v/1e6, 'f', 2, 64) + "M"
	case v >= 1e3:
		return strconv.FormatFloat(v/1e3, 'f', 1, 64) + "k"
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
}

func humanBytes(v float64) string {
	switch {
	case v >= 1<<30:
		return strconv.FormatFloat(v/(1<<30), 'f', 2, 64) + " GiB"
	case v >= 1<<20:
		return strconv.FormatFloat(v/(1<<20), 'f', 1, 64) + " MiB"
	case v >= 1<<10:
		return strconv.FormatFloat(v/(1<<10), 'f', 0, 64) + " KiB"
	}
	return strconv.FormatFloat(v, 'f', 0, 64) + " B"
}

func pct(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[max((len(sorted)*p+99)/100-1, 0)]
}

func msOf(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 0, 64) + " ms"
}
