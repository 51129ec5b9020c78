package queries

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/custody-audit/custody/internal/chdbtest"
	"github.com/custody-audit/custody/queries/querytest"
	"github.com/custody-audit/custody/storage/engine"
)

// Benchmark data: benchEvents generated events spread evenly over
// benchSpan ending at benchEnd, 65% AKS, 25% ACR, 10% Activity Log, from a
// few thousand principals, addresses and resources, with the forensic
// tags at plausible rates. Every query runs with its default window ending
// at benchEnd.
func benchEnd() time.Time { return time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC) }

const benchSpan = 30 * 24 * time.Hour

// benchArgs are the values of required parameters: things that exist in
// the generated data.
func benchArgs() map[string]map[string]string {
	return map[string]map[string]string{
		"principal-timeline": {"actor": "user42@contoso.com"},
		"resource-timeline":  {"resource": "/subscriptions/4f1a2b3c-0000-4000-8000-00000000c0de/resourcegroups/rg3/providers/microsoft.containerservice/managedclusters/aks3"},
		"resource-actors":    {"resource": "/subscriptions/4f1a2b3c-0000-4000-8000-00000000c0de/resourcegroups/rg3/providers/microsoft.containerservice/managedclusters/aks3"},
		"image-blast-radius": {"digest": benchDigest(7)},
	}
}

func benchDigest(n int) string {
	return fmt.Sprintf("sha256:%064x", n*7919+1)
}

// benchInsertSQL generates count events from offset (see
// querytest.BenchInsertSQL, shared with the web page's benchmark).
func benchInsertSQL(offset, count, total uint64) string {
	return querytest.BenchInsertSQL(offset, count, total, benchEnd(), benchSpan)
}

// benchDuplicatesSQL copies one generated event in ten into Log Analytics
// chains, as a second diagnostic setting would deliver it.
const benchDuplicatesSQL = `INSERT INTO custody.events
SELECT * REPLACE (
    concat('loganalytics/bench-workspace/', multiIf(service = 'aks', 'AKSAudit', service = 'acr', 'ContainerRegistryRepositoryEvents', 'AzureActivity')) AS chain,
    rowNumberInAllBlocks() + 1 AS seq,
    'loganalytics' AS source_kind,
    'la-row' AS source_format,
    received_time + toIntervalMinute(3) AS received_time,
    if(cityHash64(event_id) % 10000 = 0, status_code + 1, status_code) AS status_code)
FROM custody.events
WHERE cityHash64(event_id) % 10 = 0`

// benchDuplicateShare: one generated event in this many is stored twice.
const benchDuplicateShare = 10

// benchStore opens (and on first use fills) the benchmark store.
// CUSTODY_BENCH_EVENTS sets the size (default 1,000,000);
// CUSTODY_BENCH_DIR keeps the store between runs.
func benchStore(b *testing.B) (engine.Engine, uint64) {
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
	have := countEvents(ctx, b, eng)
	if have == total {
		return eng, total
	}
	if have != 0 {
		b.Fatalf("store %s holds %d events, want 0 or %d", dir, have, total)
	}
	start := time.Now()
	const chunk = 1_000_000
	for off := uint64(0); off < total; off += chunk {
		n := min(chunk, total-off)
		if err := eng.Exec(ctx, benchInsertSQL(off, n, total), nil); err != nil {
			b.Fatalf("generate events: %v", err)
		}
	}
	// One event in ten reaches the store a second time, through Log
	// Analytics, and one in a thousand of those copies disagrees with the
	// first (a different status code): delivery-conflicts has something to
	// find, and every other query collapses the copies.
	if err := eng.Exec(ctx, benchDuplicatesSQL, nil); err != nil {
		b.Fatalf("generate second deliveries: %v", err)
	}
	// Merge the generated parts, so that every run measures the same
	// store rather than whatever the background merges have reached.
	if err := eng.Exec(ctx, "OPTIMIZE TABLE custody.events FINAL", nil); err != nil {
		b.Fatalf("merge generated parts: %v", err)
	}
	b.Logf("generated %d events in %s", total, time.Since(start).Round(time.Millisecond))
	return eng, total
}

func countEvents(ctx context.Context, b *testing.B, eng engine.Engine) uint64 {
	rows, err := eng.Query(ctx, "SELECT countIf(startsWith(chain, 'eventhubs/')) FROM custody.events", nil)
	if err != nil {
		b.Fatal(err)
	}
	defer rows.Close()
	var n uint64
	for rows.Next() {
		if err := rows.Scan(&n); err != nil {
			b.Fatal(err)
		}
	}
	return n
}

// estimateRows is the engine's estimate of the rows the query reads after
// partition, primary key and skip index pruning (EXPLAIN ESTIMATE; the
// embedded engine keeps no query log).
func estimateRows(ctx context.Context, b *testing.B, eng engine.Engine, q *Query, params engine.Params) uint64 {
	params, err := Runner{Engine: eng}.withDB(params)
	if err != nil {
		b.Fatal(err)
	}
	rows, err := eng.Query(ctx, "SELECT sum(rows) FROM viewExplain('EXPLAIN ESTIMATE', '', (\n"+q.SQL+"\n))", params)
	if err != nil {
		b.Fatalf("estimate %s: %v", q.Name, err)
	}
	defer rows.Close()
	var n uint64
	for rows.Next() {
		if err := rows.Scan(&n); err != nil {
			b.Fatal(err)
		}
	}
	return n
}

// BenchmarkCatalogue runs every canned query with its default window on a
// generated store and prints a Markdown table of rows estimated, rows
// returned, first-run time, p50 and p95:
//
//	CUSTODY_BENCH_EVENTS=10000000 go test ./queries -run '^$' -bench Catalogue -benchtime 10x -timeout 60m
func BenchmarkCatalogue(b *testing.B) {
	cat, err := Load()
	if err != nil {
		b.Fatal(err)
	}
	eng, total := benchStore(b)
	ctx := context.Background()
	type stat struct {
		name           string
		estimate, rows uint64
		first          time.Duration
		times          []time.Duration
	}
	var stats []*stat
	for _, q := range cat.List() {
		args := benchArgs()[q.Name]
		from, to := q.DefaultWindow(benchEnd())
		params, err := q.Bind(args, from, to)
		if err != nil {
			b.Fatal(err)
		}
		st := &stat{name: q.Name, estimate: estimateRows(ctx, b, eng, q, params)}
		stats = append(stats, st)
		b.Run(q.Name, func(b *testing.B) {
			for b.Loop() {
				start := time.Now()
				rows, err := Runner{Engine: eng}.RunBound(ctx, q, params)
				if err != nil {
					b.Fatal(err)
				}
				res, err := Collect(rows)
				if err != nil {
					b.Fatal(err)
				}
				d := time.Since(start)
				if st.first == 0 {
					st.first = d
				}
				st.times = append(st.times, d)
				st.rows = uint64(len(res.Rows))
			}
		})
	}
	var out strings.Builder
	fmt.Fprintf(&out, "\n%d events over %s, one in %d delivered twice; each query with its default window ending at the newest event.\n\n", total, benchSpan, benchDuplicateShare)
	out.WriteString("| query | rows read (estimate) | rows returned | first run | p50 | p95 |\n|---|---:|---:|---:|---:|---:|\n")
	for _, st := range stats {
		slices.Sort(st.times)
		fmt.Fprintf(&out, "| %s | %d | %d | %s | %s | %s |\n", st.name, st.estimate, st.rows,
			ms(st.first), ms(percentile(st.times, 50)), ms(percentile(st.times, 95)))
	}
	fmt.Print(out.String())
}

func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := (len(sorted)*p + 99) / 100
	return sorted[max(i-1, 0)]
}

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 0, 64) + " ms"
}
