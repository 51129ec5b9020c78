package queries

import (
	"bytes"
	"context"
	"encoding/csv"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/custody-audit/custody/internal/storetest"
	"github.com/custody-audit/custody/queries/querytest"
	"github.com/custody-audit/custody/storage"
	"github.com/custody-audit/custody/storage/engine"
)

// TestDeliveriesCountOnce checks the promise of the deliveries cases in
// general: with every event delivered through Event Hubs, an archive and
// Log Analytics, each case's query gives the rows a single delivery
// gives, with the three paths listed; and the trail keeps every copy,
// each chain complete and verifiable.
func TestDeliveriesCountOnce(t *testing.T) { storetest.Run(t, testDeliveriesCountOnce) }

func testDeliveriesCountOnce(t *testing.T, b storetest.Backend) {
	ctx := context.Background()
	cat, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	three, stats := querytest.OpenDeliveriesOn(t, b, querytest.DeliveryEventHubs, querytest.DeliveryArchive, querytest.DeliveryLogAnalytics)
	one, single := querytest.OpenDeliveriesOn(t, b, querytest.DeliveryArchive)
	threeReader, oneReader := querytest.Reader(t, three.Eng, three.Server), querytest.Reader(t, one.Eng, one.Server)

	// Every copy is stored, in chains that verify.
	if want := 3 * single.Total(); stats.Total() != want || single.Total() != 5 {
		t.Fatalf("stored %d rows in %v from three deliveries and %d from one; want %d and 5", stats.Total(), stats.Rows, single.Total(), want)
	}
	rep, err := three.Store.Verify(ctx, storage.VerifyOptions{Verifier: three.Verifier, CheckpointDir: three.CheckpointDir})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.Rows != uint64(stats.Total()) {
		t.Fatalf("verify: ok=%v rows=%d (want %d), findings %v", rep.OK(), rep.Rows, stats.Total(), rep.Findings)
	}

	paths, err := filepath.Glob(filepath.Join("testdata", "deliveries", "cases", "*.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		c := readCase(t, p)
		if c.query == "delivery-conflicts" {
			continue
		}
		t.Run(strings.TrimSuffix(filepath.Base(p), ".txt"), func(t *testing.T) {
			q, err := cat.Get(c.query)
			if err != nil {
				t.Fatal(err)
			}
			got := runCSV(ctx, t, threeReader, q, c)
			want := runCSV(ctx, t, oneReader, q, c)
			if len(got) < 2 {
				t.Fatalf("%s returned no rows", c.query)
			}
			via := slices.Index(got[0], "delivered_via")
			if via < 0 {
				t.Fatalf("%s has no delivered_via column: %v", c.query, got[0])
			}
			for _, r := range got[1:] {
				if r[via] != "archive,eventhubs,loganalytics" {
					t.Errorf("delivered_via %q, want all three paths, in %v", r[via], r)
				}
			}
			for _, r := range want[1:] {
				if r[via] != "archive" {
					t.Errorf("single delivery: delivered_via %q, want archive, in %v", r[via], r)
				}
			}
			strip := func(rows [][]string) [][]string {
				out := make([][]string, len(rows))
				for i, r := range rows {
					out[i] = slices.Delete(slices.Clone(r), via, via+1)
				}
				return out
			}
			if g, w := strip(got), strip(want); !slices.EqualFunc(g, w, slices.Equal) {
				t.Errorf("three deliveries give other rows than one:\n--- three\n%v\n--- one\n%v", g, w)
			}
		})
	}
}

// runCSV runs a case's query and returns its CSV rows, header first.
func runCSV(ctx context.Context, t *testing.T, eng engine.Engine, q *Query, c caseFile) [][]string {
	t.Helper()
	rows, err := Run(ctx, eng, q, c.args, c.from, c.to)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	_, err = Render(&buf, rows, RenderOptions{Format: FormatCSV})
	if cerr := rows.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return recs
}
