package storage_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/custody-audit/custody/event"
	"github.com/custody-audit/custody/internal/storetest"
	"github.com/custody-audit/custody/storage"
	"github.com/custody-audit/custody/storage/engine"
)

var update = flag.Bool("update", false, "rewrite golden files")

// retentionNow is the clock of the retention tests: with the default 400
// days, everything received before 2025-10-23 is past retention.
var retentionNow = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

type retentionFixture struct {
	eng      engine.Engine
	store    *storage.Store
	signer   note.Signer
	verifier note.Verifier
	cpDir    string
	now      time.Time
	seq      map[string]int
}

func newRetentionFixture(t testing.TB) *retentionFixture {
	t.Helper()
	return newRetentionFixtureOn(t, storetest.Embedded)
}

// newRetentionFixtureOn opens a fresh store on backend b.
func newRetentionFixtureOn(t testing.TB, b storetest.Backend) *retentionFixture {
	t.Helper()
	ctx := context.Background()
	eng, _ := storetest.Engine(t, b)
	if _, err := storage.Migrate(ctx, eng, storage.SchemaOptions{}, "test"); err != nil {
		t.Fatal(err)
	}
	signer, verifier := storetest.Keys(t, "custody-retention-test")
	f := &retentionFixture{eng: eng, signer: signer, verifier: verifier, cpDir: t.TempDir(), now: retentionNow, seq: map[string]int{}}
	var err error
	f.store, err = storage.Open(ctx, eng, storage.Options{Signer: signer, CheckpointDir: f.cpDir, Actor: "records-officer", Now: func() time.Time { return f.now }})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// seedMonth appends n events to chain received in the month of day, in
// one batch (one checkpoint). actor, when set, is the actor of the
// batch's middle event.
func (f *retentionFixture) seedMonth(t testing.TB, chain string, service event.Service, category string, day time.Time, n int, actor string) {
	t.Helper()
	b := storage.Batch{Stream: chain}
	for i := 0; i < n; i++ {
		f.seq[chain]++
		e := sampleEvent(f.seq[chain])
		e.ID = fmt.Sprintf("%s-%04d", chain, f.seq[chain])
		e.Service, e.Category = service, category
		e.ReceivedTime = day.Add(time.Duration(i) * time.Hour)
		e.Time = e.ReceivedTime.Add(-90 * time.Second)
		if actor != "" && i == n/2 {
			e.Actor.Name = actor
		}
		b.Events = append(b.Events, storage.BatchEvent{Offset: int64(f.seq[chain]), Event: e})
		b.Offset = int64(f.seq[chain])
	}
	if _, err := f.store.Append(context.Background(), b); err != nil {
		t.Fatal(err)
	}
}

// seed writes five months of two chains: three past the default
// retention (202501-202503), two within it (202512, 202611). Mallory acts
// in 202502.
func (f *retentionFixture) seed(t *testing.T) {
	t.Helper()
	months := []struct {
		day   time.Time
		actor string
	}{
		{time.Date(2025, 1, 10, 8, 0, 0, 0, time.UTC), ""},
		{time.Date(2025, 2, 10, 8, 0, 0, 0, time.UTC), "mallory@contoso.com"},
		{time.Date(2025, 3, 10, 8, 0, 0, 0, time.UTC), ""},
		{time.Date(2025, 12, 10, 8, 0, 0, 0, time.UTC), ""},
		{time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC), ""},
	}
	for _, m := range months {
		f.seedMonth(t, "eh/p0", event.ServiceAKS, "kube-audit", m.day, 5, m.actor)
		f.seedMonth(t, "la/ContainerRegistryLoginEvents", event.ServiceACR, "ContainerRegistryLoginEvents", m.day, 3, "")
	}
}

func (f *retentionFixture) verify(t *testing.T) *storage.VerifyReport {
	t.Helper()
	rep, err := f.store.Verify(context.Background(), storage.VerifyOptions{Verifier: f.verifier, CheckpointDir: f.cpDir})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func (f *retentionFixture) exec(t *testing.T, q string) {
	t.Helper()
	if err := f.eng.Exec(context.Background(), q, nil); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func (f *retentionFixture) count(t *testing.T, q string) uint64 {
	t.Helper()
	rows, err := f.eng.Query(context.Background(), q, nil)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	var n uint64
	for rows.Next() {
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
	}
	return n
}

// renderPlan is the plan as the golden file holds it, with hold ids
// replaced by their position.
func renderPlan(p *storage.RetentionPlan, holds []storage.Hold) string {
	var b strings.Builder
	fmt.Fprintf(&b, "at %s\n", p.At.Format(time.RFC3339))
	for _, pp := range p.Partitions {
		verdict := "keep"
		if pp.Purge {
			verdict = "purge"
		}
		fmt.Fprintf(&b, "%s %s rows=%d received %s..%s newest %s overdue=%v\n", pp.Partition, verdict, pp.Rows,
			pp.From.Format(time.RFC3339), pp.To.Format(time.RFC3339), pp.Newest.Format(time.RFC3339), pp.Overdue)
		for _, c := range pp.Chains {
			fmt.Fprintf(&b, "  chain %s seq %d..%d rows=%d counts=%v\n", c.Chain, c.FirstSeq, c.LastSeq, c.Rows, c.Counts)
		}
		for _, g := range pp.Groups {
			fmt.Fprintf(&b, "  group %s/%s rows=%d min=%d max=%d keep-until %s\n", g.Service, g.Category, g.Rows, g.MinDays, g.MaxDays, g.KeepUntil.Format(time.RFC3339))
		}
		for _, r := range pp.Reasons {
			for i, h := range holds {
				r = strings.ReplaceAll(r, h.ID, fmt.Sprintf("HOLD%d", i+1))
			}
			fmt.Fprintf(&b, "  - %s\n", r)
		}
	}
	return b.String()
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "retention", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (run with -update after checking):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func TestRetentionPlan(t *testing.T) { storetest.Run(t, testRetentionPlan) }

func testRetentionPlan(t *testing.T, backend storetest.Backend) {
	ctx := context.Background()
	f := newRetentionFixtureOn(t, backend)
	f.seed(t)
	cfg := storage.DefaultRetentionConfig()
	cfg.MaxDays = 600
	cfg.Rules = []storage.RetentionRule{{Service: "acr", MinDays: 300}}
	h, err := f.store.AddHold(ctx, storage.Hold{Kind: storage.HoldActor, Actor: "Mallory@contoso.com", Reason: "case 2026-114: phished account"})
	if err != nil {
		t.Fatal(err)
	}
	// A time hold outside every partition and a released hold block
	// nothing.
	if _, err := f.store.AddHold(ctx, storage.Hold{Kind: storage.HoldTime, From: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), To: time.Date(2024, 2, 1, 0, 0, 0, 0, time.UTC), Reason: "old case"}); err != nil {
		t.Fatal(err)
	}
	rel, err := f.store.AddHold(ctx, storage.Hold{Kind: storage.HoldResource, Resource: "/subscriptions/SUB/resourceGroups/rg", Reason: "closed case"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.ReleaseHold(ctx, rel.ID, "case closed"); err != nil {
		t.Fatal(err)
	}
	plan, err := f.store.PlanRetention(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "plan.golden", renderPlan(plan, []storage.Hold{h}))
	var purge []string
	for _, pp := range plan.Purgeable() {
		purge = append(purge, pp.Partition)
	}
	if strings.Join(purge, ",") != "202501" {
		t.Errorf("purgeable partitions %v, want only 202501 (202502 held, 202503 behind it)", purge)
	}
}

func TestRetentionHoldByResourceAndTime(t *testing.T) {
	storetest.Run(t, testRetentionHoldByResourceAndTime)
}

func testRetentionHoldByResourceAndTime(t *testing.T, backend storetest.Backend) {
	ctx := context.Background()
	f := newRetentionFixtureOn(t, backend)
	f.seed(t)
	cases := []struct {
		name string
		hold storage.Hold
		want string // purgeable partitions
	}{
		{"none", storage.Hold{}, "202501,202502,202503"},
		// sampleEvent's resource, under a resource group given in
		// another case: every partition holds it.
		{"resource group", storage.Hold{Kind: storage.HoldResource, Resource: "/SUBSCRIPTIONS/sub/resourceGroups/RG/"}, ""},
		{"other resource", storage.Hold{Kind: storage.HoldResource, Resource: "/subscriptions/sub/resourcegroups/rg2"}, "202501,202502,202503"},
		{"time in march", storage.Hold{Kind: storage.HoldTime, From: time.Date(2025, 3, 10, 9, 0, 0, 0, time.UTC), To: time.Date(2025, 3, 10, 9, 0, 1, 0, time.UTC)}, "202501,202502"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var added storage.Hold
			if tc.hold.Kind != "" {
				tc.hold.Reason = "test"
				var err error
				if added, err = f.store.AddHold(ctx, tc.hold); err != nil {
					t.Fatal(err)
				}
				defer f.store.ReleaseHold(ctx, added.ID, "test done")
			}
			plan, err := f.store.PlanRetention(ctx, storage.DefaultRetentionConfig())
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, pp := range plan.Purgeable() {
				got = append(got, pp.Partition)
			}
			if strings.Join(got, ",") != tc.want {
				t.Errorf("purgeable %v, want %s", got, tc.want)
			}
		})
	}
}

func TestRetentionApplyAndVerify(t *testing.T) { storetest.Run(t, testRetentionApplyAndVerify) }

func testRetentionApplyAndVerify(t *testing.T, backend storetest.Backend) {
	ctx := context.Background()
	f := newRetentionFixtureOn(t, backend)
	f.seed(t)
	cfg := storage.DefaultRetentionConfig()
	hold, err := f.store.AddHold(ctx, storage.Hold{Kind: storage.HoldActor, Actor: "mallory@contoso.com", Reason: "case 2026-114"})
	if err != nil {
		t.Fatal(err)
	}

	// A held partition is refused by name, and nothing is removed.
	_, err = f.store.ApplyRetention(ctx, cfg, storage.ApplyRetentionOptions{Verifier: f.verifier, Partitions: []string{"202502"}})
	if !errors.Is(err, storage.ErrRetained) || !strings.Contains(err.Error(), hold.ID) {
		t.Fatalf("apply held partition: %v, want ErrRetained naming %s", err, hold.ID)
	}

	res, err := f.store.ApplyRetention(ctx, cfg, storage.ApplyRetentionOptions{Verifier: f.verifier})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(res.Purged, ",") != "202501" || res.Rows != 8 || len(res.Records) != 2 {
		t.Fatalf("apply: purged %v rows %d records %d", res.Purged, res.Rows, len(res.Records))
	}
	if n := f.count(t, "SELECT count() FROM custody.events WHERE toYYYYMM(received_time) = 202501"); n != 0 {
		t.Fatalf("partition 202501 still holds %d rows", n)
	}
	recs, err := f.store.Purges(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"eh/p0": "1..5 rows=5 head=25 cp=25", "la/ContainerRegistryLoginEvents": "1..3 rows=3 head=15 cp=15"}
	for _, r := range recs {
		got := fmt.Sprintf("%d..%d rows=%d head=%d cp=%d", r.FirstSeq, r.LastSeq, r.Rows, r.HeadSeq, r.CheckpointSize)
		if want[r.Chain] != got || r.Partition != "202501" || r.Actor != "records-officer" || len(r.CompactRange) == 0 || r.PartitionRows != 8 {
			t.Errorf("purge record of %s: %s partition %s actor %s range %d, want %s", r.Chain, got, r.Partition, r.Actor, len(r.CompactRange), want[r.Chain])
		}
		a, err := storage.OpenPurgeNote(r.Note, f.verifier)
		if err != nil || a.LastSeq != r.LastSeq || a.Root != r.Root {
			t.Errorf("purge note of %s: %+v %v", r.Chain, a, err)
		}
	}
	if len(recs) != 2 {
		t.Fatalf("%d purge records, want 2", len(recs))
	}
	rep := f.verify(t)
	if !rep.OK() || rep.Rows != 32 {
		t.Fatalf("verify after purge: ok=%v rows=%d findings=%v", rep.OK(), rep.Rows, rep.Findings)
	}
	if got := kinds(rep); got != "purged,purged" {
		t.Fatalf("findings %s, want two purged: %v", got, rep.Findings)
	}
	if n := f.count(t, "SELECT count() FROM custody.custody_log WHERE action = 'retention.purge' AND result = 'ok' AND position(detail, 'partition 202501') > 0"); n != 1 {
		t.Errorf("custody log has %d purge entries, want 1", n)
	}

	// Release the hold: the rest of the expired months go, the chains
	// keep growing, and verify still passes.
	if _, err := f.store.ReleaseHold(ctx, hold.ID, "case closed"); err != nil {
		t.Fatal(err)
	}
	res, err = f.store.ApplyRetention(ctx, cfg, storage.ApplyRetentionOptions{Verifier: f.verifier})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(res.Purged, ",") != "202502,202503" {
		t.Fatalf("second apply purged %v", res.Purged)
	}
	f.seedMonth(t, "eh/p0", event.ServiceAKS, "kube-audit", time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC), 2, "")
	rep = f.verify(t)
	if !rep.OK() || rep.Rows != 18 || kinds(rep) != strings.Repeat("purged,", 5)+"purged" {
		t.Fatalf("verify after second purge: ok=%v rows=%d findings=%v", rep.OK(), rep.Rows, rep.Findings)
	}

	// Dropping a retained month behind Custody's back still fails.
	f.exec(t, "ALTER TABLE custody.events DROP PARTITION 202512")
	rep = f.verify(t)
	if rep.OK() {
		t.Fatalf("a dropped retained partition passed verify: %v", rep.Findings)
	}
	if !hasFinding(rep, storage.KindGap, "eh/p0", 16) || !hasFinding(rep, storage.KindGap, "la/ContainerRegistryLoginEvents", 10) {
		t.Fatalf("want gaps at eh/p0 16 and la 10, got %v", rep.Findings)
	}
}

// TestVerifyDuringPurge checks that a purge recorded while verify reads
// the chains (another process's, on ClickHouse servers) is not reported
// as deleted rows: verify reads the trail again against the new records.
func TestVerifyDuringPurge(t *testing.T) { storetest.Run(t, testVerifyDuringPurge) }

func testVerifyDuringPurge(t *testing.T, backend storetest.Backend) {
	ctx := context.Background()
	f := newRetentionFixtureOn(t, backend)
	f.seed(t)
	purged := false
	opts := storage.WithBeforeWalk(storage.VerifyOptions{Verifier: f.verifier, CheckpointDir: f.cpDir}, func() {
		if purged {
			return
		}
		purged = true
		if _, err := f.store.ApplyRetention(ctx, storage.DefaultRetentionConfig(), storage.ApplyRetentionOptions{Verifier: f.verifier, Partitions: []string{"202501"}}); err != nil {
			t.Fatal(err)
		}
	})
	rep, err := f.store.Verify(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !purged || !rep.OK() || rep.Rows != 32 || kinds(rep) != "purged,purged" {
		t.Fatalf("verify across a purge: purged=%v ok=%v rows=%d findings=%v", purged, rep.OK(), rep.Rows, rep.Findings)
	}
}

func TestRetentionRefusesWithinRetention(t *testing.T) {
	storetest.Run(t, testRetentionRefusesWithinRetention)
}

func testRetentionRefusesWithinRetention(t *testing.T, backend storetest.Backend) {
	ctx := context.Background()
	f := newRetentionFixtureOn(t, backend)
	f.seed(t)
	cfg := storage.DefaultRetentionConfig()
	cases := []struct {
		name       string
		cfg        storage.RetentionConfig
		partitions []string
		want       string
	}{
		{"current month", cfg, []string{"202611"}, "retained: aks/kube-audit rows are kept until 2027-12-25"},
		{"last december", cfg, []string{"202512"}, "retained: acr/ContainerRegistryLoginEvents rows are kept until 2027-01-14"},
		// 202503 is past retention but 202501 and 202502 hold the
		// chains' earlier rows: purging it alone leaves a hole.
		{"skips earlier months", cfg, []string{"202503"}, "chain eh/p0 has earlier rows in partition 202501"},
		// a longer minimum for one category keeps every partition with
		// such rows.
		{"longer rule", storage.RetentionConfig{MinDays: 400, Rules: []storage.RetentionRule{{Service: "aks", Category: "kube-audit", MinDays: 3650}}}, []string{"202501"}, "min 3650 days"},
		{"unknown partition", cfg, []string{"202404"}, `no events partition "202404"`},
	}
	before := f.count(t, "SELECT count() FROM custody.events")
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.store.ApplyRetention(ctx, tc.cfg, storage.ApplyRetentionOptions{Verifier: f.verifier, Partitions: tc.partitions})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("apply %v: %v, want an error containing %q", tc.partitions, err, tc.want)
			}
		})
	}
	if after := f.count(t, "SELECT count() FROM custody.events"); after != before {
		t.Fatalf("refused purges removed rows: %d -> %d", before, after)
	}
	if n := f.count(t, "SELECT count() FROM custody.purges"); n != 0 {
		t.Fatalf("refused purges left %d purge records", n)
	}
	if n := f.count(t, "SELECT count() FROM custody.custody_log WHERE action = 'retention.purge' AND result = 'refused'"); n != 4 {
		t.Errorf("custody log has %d refused purges, want 4", n)
	}
	// Without a signing key nothing can be purged.
	ro, err := storage.Open(ctx, f.eng, storage.Options{Now: func() time.Time { return f.now }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ro.ApplyRetention(ctx, cfg, storage.ApplyRetentionOptions{Verifier: f.verifier}); !errors.Is(err, storage.ErrNoSigner) {
		t.Fatalf("apply without signer: %v", err)
	}
}

// TestRetentionPurgeMidBatch: batches straddle month boundaries, so no
// checkpoint ends where a partition does; the purge computes the Merkle
// range from the leaves, the next one resumes from the previous purge.
func TestRetentionPurgeMidBatch(t *testing.T) { storetest.Run(t, testRetentionPurgeMidBatch) }

func testRetentionPurgeMidBatch(t *testing.T, backend storetest.Backend) {
	ctx := context.Background()
	f := newRetentionFixtureOn(t, backend)
	// 6 events 12h apart per batch: Jan 30 - Feb 1, Feb 27 - Mar 1, and
	// one recent batch that keeps the chain's head.
	for _, start := range []time.Time{
		time.Date(2025, 1, 30, 0, 0, 0, 0, time.UTC),
		time.Date(2025, 2, 27, 0, 0, 0, 0, time.UTC),
		time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC),
	} {
		b := storage.Batch{Stream: "la/AKSAudit"}
		for i := 0; i < 6; i++ {
			f.seq["la/AKSAudit"]++
			n := f.seq["la/AKSAudit"]
			e := sampleEvent(n)
			e.ReceivedTime = start.Add(time.Duration(i) * 12 * time.Hour)
			e.Time = e.ReceivedTime
			b.Events = append(b.Events, storage.BatchEvent{Offset: int64(n), Event: e})
			b.Offset = int64(n)
		}
		if _, err := f.store.Append(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	// checkpoints at 6, 12, 18; January holds seq 1..4, February 5..10,
	// March 11..12.
	for _, tc := range []struct {
		partition string
		first     uint64
		last      uint64
	}{{"202501", 1, 4}, {"202502", 5, 10}, {"202503", 11, 12}} {
		res, err := f.store.ApplyRetention(ctx, storage.DefaultRetentionConfig(), storage.ApplyRetentionOptions{Verifier: f.verifier, Partitions: []string{tc.partition}})
		if err != nil {
			t.Fatalf("purge %s: %v", tc.partition, err)
		}
		if len(res.Records) != 1 || res.Records[0].FirstSeq != tc.first || res.Records[0].LastSeq != tc.last {
			t.Fatalf("purge %s: %+v", tc.partition, res.Records)
		}
		rep := f.verify(t)
		if !rep.OK() || !hasFinding(rep, storage.KindPurged, "la/AKSAudit", tc.first) {
			t.Fatalf("verify after purging %s: %v", tc.partition, rep.Findings)
		}
	}
	// The range in the last record is the tree at 12: the checkpoint at 18
	// still verifies from it (checked above); a wrong range would not.
	f.exec(t, "ALTER TABLE custody.purges UPDATE compact_range = arrayReverse(compact_range) WHERE last_seq = 12 SETTINGS mutations_sync = 2")
	rep := f.verify(t)
	if rep.OK() || !hasFinding(rep, storage.KindBadSignature, "la/AKSAudit", 11) {
		t.Fatalf("an altered compact range passed: %v", rep.Findings)
	}
}

// TestRetentionRefusesTamperedChain: a purge record must never attest
// rows that were changed.
func TestRetentionRefusesTamperedChain(t *testing.T) {
	storetest.Run(t, testRetentionRefusesTamperedChain)
}

func testRetentionRefusesTamperedChain(t *testing.T, backend storetest.Backend) {
	ctx := context.Background()
	f := newRetentionFixtureOn(t, backend)
	f.seed(t)
	f.exec(t, "ALTER TABLE custody.events UPDATE source_ip = '198.51.100.66' WHERE chain = 'eh/p0' AND seq = 2 SETTINGS mutations_sync = 2")
	_, err := f.store.ApplyRetention(ctx, storage.DefaultRetentionConfig(), storage.ApplyRetentionOptions{Verifier: f.verifier})
	if !errors.Is(err, storage.ErrRetained) || !strings.Contains(err.Error(), "modified: chain eh/p0 seq 2") {
		t.Fatalf("apply over a tampered chain: %v", err)
	}
	if n := f.count(t, "SELECT count() FROM custody.purges"); n != 0 {
		t.Fatalf("%d purge records after a refused purge", n)
	}
}

// TestPurgeTamperIsDetected: purge records are evidence too.
func TestPurgeTamperIsDetected(t *testing.T) { storetest.Run(t, testPurgeTamperIsDetected) }

func testPurgeTamperIsDetected(t *testing.T, backend storetest.Backend) {
	cases := []struct {
		name   string
		tamper func(t *testing.T, f *retentionFixture)
		want   storage.FindingKind
		chain  string
		seq    uint64
	}{
		{"delete the purge records", func(t *testing.T, f *retentionFixture) {
			f.exec(t, "ALTER TABLE custody.purges DELETE WHERE 1 SETTINGS mutations_sync = 2")
		}, storage.KindGap, "eh/p0", 1},
		{"stretch a purge record over retained rows", func(t *testing.T, f *retentionFixture) {
			f.exec(t, "ALTER TABLE custody.events DELETE WHERE chain = 'eh/p0' AND seq <= 15 SETTINGS mutations_sync = 2")
			f.exec(t, "INSERT INTO custody.purges SELECT * REPLACE (15 AS last_seq) FROM custody.purges WHERE chain = 'eh/p0'")
			f.exec(t, "ALTER TABLE custody.purges DELETE WHERE chain = 'eh/p0' AND last_seq = 5 SETTINGS mutations_sync = 2")
		}, storage.KindBadSignature, "eh/p0", 1},
		{"forge a purge record", func(t *testing.T, f *retentionFixture) {
			f.exec(t, "ALTER TABLE custody.events DELETE WHERE chain = 'la/ContainerRegistryLoginEvents' AND seq <= 6 SETTINGS mutations_sync = 2")
			f.exec(t, `INSERT INTO custody.purges SELECT * REPLACE ('forged' AS purge_id, 6 AS last_seq, 4 AS first_seq,
				replaceOne(note, '\n3\n', '\n6\n') AS note) FROM custody.purges WHERE chain = 'la/ContainerRegistryLoginEvents'`)
		}, storage.KindBadSignature, "la/ContainerRegistryLoginEvents", 4},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newRetentionFixtureOn(t, backend)
			f.seed(t)
			if _, err := f.store.ApplyRetention(context.Background(), storage.DefaultRetentionConfig(), storage.ApplyRetentionOptions{Verifier: f.verifier}); err != nil {
				t.Fatal(err)
			}
			if rep := f.verify(t); !rep.OK() {
				t.Fatalf("before tampering: %v", rep.Findings)
			}
			tc.tamper(t, f)
			rep := f.verify(t)
			if rep.OK() {
				t.Fatalf("tampering not detected: %v", rep.Findings)
			}
			if !hasFinding(rep, tc.want, tc.chain, tc.seq) {
				t.Fatalf("want a %s finding for %s at seq %d, got %v", tc.want, tc.chain, tc.seq, rep.Findings)
			}
		})
	}
}

func TestLegalHolds(t *testing.T) { storetest.Run(t, testLegalHolds) }

func testLegalHolds(t *testing.T, backend storetest.Backend) {
	ctx := context.Background()
	f := newRetentionFixtureOn(t, backend)
	bad := []struct {
		hold storage.Hold
		want string
	}{
		{storage.Hold{Kind: storage.HoldActor, Actor: "x"}, "legal hold needs a reason"},
		{storage.Hold{Kind: storage.HoldResource, Reason: "r"}, "resource hold needs a resource id"},
		{storage.Hold{Kind: storage.HoldActor, Actor: " ", Reason: "r"}, "actor hold needs an actor"},
		{storage.Hold{Kind: storage.HoldTime, From: retentionNow, Reason: "r"}, "time hold needs both from and to"},
		{storage.Hold{Kind: storage.HoldTime, From: retentionNow, To: retentionNow, Reason: "r"}, "time hold: from 2026-11-27T12:00:00Z is not before to 2026-11-27T12:00:00Z"},
		{storage.Hold{Kind: "everything", Reason: "r"}, `legal hold kind "everything": want resource, actor or time`},
	}
	for _, tc := range bad {
		if _, err := f.store.AddHold(ctx, tc.hold); err == nil || err.Error() != tc.want {
			t.Errorf("AddHold(%+v) = %v, want %q", tc.hold, err, tc.want)
		}
	}
	a, err := f.store.AddHold(ctx, storage.Hold{Kind: storage.HoldResource, Resource: " /subscriptions/sub/resourceGroups/rg ", Reason: "litigation"})
	if err != nil {
		t.Fatal(err)
	}
	f.now = f.now.Add(time.Hour)
	b, err := f.store.AddHold(ctx, storage.Hold{Kind: storage.HoldTime, From: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), To: time.Date(2025, 2, 1, 0, 0, 0, 0, time.UTC), Reason: "audit"})
	if err != nil {
		t.Fatal(err)
	}
	f.now = f.now.Add(time.Hour)
	if _, err := f.store.ReleaseHold(ctx, a.ID, " "); err == nil {
		t.Error("release without a reason succeeded")
	}
	if _, err := f.store.ReleaseHold(ctx, a.ID, "settled"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.ReleaseHold(ctx, a.ID, "again"); !errors.Is(err, storage.ErrHoldReleased) {
		t.Errorf("second release: %v", err)
	}
	if _, err := f.store.ReleaseHold(ctx, "hold-000000000000", "x"); !errors.Is(err, storage.ErrNoSuchHold) {
		t.Errorf("unknown release: %v", err)
	}
	holds, err := f.store.Holds(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(holds) != 2 || holds[0].ID != a.ID || holds[1].ID != b.ID {
		t.Fatalf("holds %+v", holds)
	}
	h := holds[0]
	if h.Active() || h.Resource != "/subscriptions/sub/resourceGroups/rg" || h.CreatedBy != "records-officer" || h.ReleaseReason != "settled" || !h.ReleasedAt.Equal(retentionNow.Add(2*time.Hour)) {
		t.Errorf("released hold %+v", h)
	}
	if !holds[1].Active() || holds[1].Subject() != "time 2025-01-01T00:00:00Z to 2025-02-01T00:00:00Z" {
		t.Errorf("active hold %+v", holds[1])
	}
	if n := f.count(t, "SELECT count() FROM custody.custody_log WHERE action IN ('hold.add', 'hold.release') AND actor = 'records-officer'"); n != 3 {
		t.Errorf("custody log has %d hold entries, want 3", n)
	}
}

func TestRetentionConfig(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "retention", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no config fixtures: %v", err)
	}
	wantErr := map[string]string{
		"min-zero.bad.yaml":        "retention.min_days: must be at least 1 day, got 0",
		"max-below-min.bad.yaml":   "retention.max_days: 100 is below retention.min_days 400",
		"unknown-service.bad.yaml": `retention.rules[1].service: unknown service "aca" (aks, acr, aci or arm)`,
		"no-service.bad.yaml":      "retention.rules[0].service: required (aks, acr, aci or arm)",
		"duplicate.bad.yaml":       "retention.rules[1]: same service and category as retention.rules[0]",
		"rule-max.bad.yaml":        "retention.rules[1]: max_days 500 is below min_days 730 for aks/kube-audit",
		"unknown-field.bad.yaml":   "parse retention policy: yaml: unmarshal errors:\n  line 3: field min_day not found in type storage.RetentionConfig",
		"negative.bad.yaml":        "retention.rules[0].min_days: must be 0 (inherit) or a number of days, got -1",
	}
	for _, path := range files {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			_, err = storage.ParseRetentionConfig(b)
			if strings.HasSuffix(name, ".good.yaml") {
				if err != nil {
					t.Fatalf("good config: %v", err)
				}
				return
			}
			want, ok := wantErr[name]
			if !ok {
				t.Fatalf("no expected error for %s", name)
			}
			if err == nil || err.Error() != want {
				t.Fatalf("error %v, want %q", err, want)
			}
		})
	}
	b, err := os.ReadFile(filepath.Join("testdata", "retention", "rules.good.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := storage.ParseRetentionConfig(b)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		service, category string
		min, max          int
	}{
		{"aks", "kube-audit", 730, 1095},
		{"aks", "guard", 500, 1095},
		{"acr", "ContainerRegistryLoginEvents", 400, 0},
		{"arm", "Administrative", 400, 2000},
	} {
		r := cfg.RuleFor(tc.service, tc.category)
		if r.MinDays != tc.min || r.MaxDays != tc.max {
			t.Errorf("RuleFor(%s, %s) = min %d max %d, want %d %d", tc.service, tc.category, r.MinDays, r.MaxDays, tc.min, tc.max)
		}
	}
	def, err := storage.ParseRetentionConfig([]byte("store: ./data\n"))
	if err != nil || def.MinDays != 400 || def.MaxDays != 0 {
		t.Errorf("config without a retention section: %+v %v", def, err)
	}
}

func TestOpenPurgeNoteRejects(t *testing.T) {
	skey, vkey, _ := storage.GenerateKey("purge-vectors")
	signer, _ := note.NewSigner(skey)
	verifier, _ := note.NewVerifier(vkey)
	root := "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
	good := "custody/eh/p0\n5\n" + root + "\npurge v1\nfirst 1\nlast-hash " + root + "\npartition 202501\nid purge-202501-0a0b\nat 2026-11-27T12:00:00Z\n"
	cases := []struct {
		desc, text, wantErr string
	}{
		{"good", good, ""},
		{"plain checkpoint", "custody/eh/p0\n5\n" + root + "\n", "want 6 purge lines after the checkpoint, got 1"},
		{"unknown version", strings.Replace(good, "purge v1", "purge v2", 1), `unknown purge version "v2"`},
		{"first after last", strings.Replace(good, "first 1", "first 6", 1), `first seq "6" does not start a range ending at 5`},
		{"first zero", strings.Replace(good, "first 1", "first 0", 1), `first seq "0"`},
		{"short hash", strings.Replace(good, "last-hash "+root, "last-hash AAAA", 1), "last hash"},
		{"reordered", strings.Replace(good, "partition 202501\nid purge-202501-0a0b", "id purge-202501-0a0b\npartition 202501", 1), `line 7 is "id purge-202501-0a0b", want "partition"`},
		{"extra line", good + "x y\n", "want 6 purge lines"},
		{"not custody", strings.Replace(good, "custody/eh/p0", "other/eh/p0", 1), "is not a custody chain's"},
	}
	for _, tc := range cases {
		t.Run(tc.desc, func(t *testing.T) {
			msg, err := note.Sign(&note.Note{Text: tc.text}, signer)
			if err != nil {
				t.Fatal(err)
			}
			a, err := storage.OpenPurgeNote(msg, verifier)
			if tc.wantErr == "" {
				if err != nil || a.Chain != "eh/p0" || a.FirstSeq != 1 || a.LastSeq != 5 || a.Partition != "202501" {
					t.Fatalf("good note: %+v %v", a, err)
				}
				// any flipped byte breaks the signature
				bad := append([]byte(nil), msg...)
				bad[20] ^= 1
				if _, err := storage.OpenPurgeNote(bad, verifier); !errors.Is(err, storage.ErrBadSignature) {
					t.Fatalf("flipped byte: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func kinds(rep *storage.VerifyReport) string {
	var out []string
	for _, f := range rep.Findings {
		out = append(out, string(f.Kind))
	}
	return strings.Join(out, ",")
}

func hasFinding(rep *storage.VerifyReport, kind storage.FindingKind, chain string, seq uint64) bool {
	for _, f := range rep.Findings {
		if f.Kind == kind && f.Chain == chain && f.Seq == seq {
			return true
		}
	}
	return false
}

// seedQuarantine stores one record that could not be normalized per
// received time, on stream blob/archive, and returns the raw records.
func (f *retentionFixture) seedQuarantine(t *testing.T, received ...time.Time) [][]byte {
	t.Helper()
	b := storage.Batch{Stream: "blob/archive"}
	var raws [][]byte
	for _, at := range received {
		f.seq["blob/archive"]++
		n := f.seq["blob/archive"]
		raw := []byte(fmt.Sprintf(`{"time":"%s","category":"kube-audit","properties":"not json %d`, at.Format(time.RFC3339), n))
		raws = append(raws, raw)
		b.Quarantined = append(b.Quarantined, storage.QuarantineRecord{Offset: int64(n), Position: fmt.Sprint(n), Received: at, Format: "resource-log", Reason: "properties is not JSON", Raw: raw})
		b.Offset = int64(n)
	}
	if _, err := f.store.Append(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	return raws
}

func quarantineVerdicts(p *storage.RetentionPlan) string {
	var out []string
	for _, qp := range p.Quarantine {
		v := "keep"
		if qp.Purge {
			v = "purge"
		}
		out = append(out, fmt.Sprintf("%s %s %d", qp.Partition, v, qp.Rows))
	}
	return strings.Join(out, ",")
}

// TestRetentionQuarantine: quarantined records have no trustworthy
// service or category, so they are kept for the longest minimum of any
// rule, and while any legal hold could concern them.
func TestRetentionQuarantine(t *testing.T) { storetest.Run(t, testRetentionQuarantine) }

func testRetentionQuarantine(t *testing.T, backend storetest.Backend) {
	ctx := context.Background()
	f := newRetentionFixtureOn(t, backend)
	f.seed(t)
	jan := f.seedQuarantine(t, time.Date(2025, 1, 10, 8, 0, 0, 0, time.UTC), time.Date(2025, 1, 20, 8, 0, 0, 0, time.UTC))
	f.seedQuarantine(t, time.Date(2025, 3, 10, 8, 0, 0, 0, time.UTC), time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC))
	// 2025-01-20 + 650 days = 2026-11-01, past; 2025-03-10 + 650 =
	// 2026-12-20, not yet (the default 400 days alone would let it go).
	cfg := storage.RetentionConfig{MinDays: 400, Rules: []storage.RetentionRule{{Service: "acr", MinDays: 300}, {Service: "aks", Category: "kube-audit", MinDays: 650}}}
	if r := cfg.QuarantineRule(); r.MinDays != 650 || r.MaxDays != 0 {
		t.Fatalf("quarantine rule %+v, want min 650 and no maximum", r)
	}
	if r := (storage.RetentionConfig{MinDays: 400, MaxDays: 500, Rules: []storage.RetentionRule{{Service: "arm", MaxDays: 900}}}).QuarantineRule(); r.MinDays != 400 || r.MaxDays != 900 {
		t.Fatalf("quarantine rule %+v, want min 400 max 900", r)
	}

	plan, err := f.store.PlanRetention(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := quarantineVerdicts(plan), "202501 purge 2,202503 keep 1,202611 keep 1"; got != want {
		t.Fatalf("quarantine verdicts %s, want %s", got, want)
	}
	if r := plan.Quarantine[1].Reasons; len(r) != 1 || r[0] != "retained: quarantined records are kept until 2026-12-20 (min 650 days from 2025-03-10, the longest minimum of any rule)" {
		t.Errorf("202503 reasons %q", r)
	}

	// Holds: a time hold keeps the months it overlaps; an actor or
	// resource hold cannot be evaluated on unparsed records and keeps
	// every quarantine month.
	cases := []struct {
		name   string
		hold   storage.Hold
		want   string
		reason string
	}{
		{"time in january", storage.Hold{Kind: storage.HoldTime, From: time.Date(2025, 1, 31, 23, 0, 0, 0, time.UTC), To: time.Date(2025, 2, 2, 0, 0, 0, 0, time.UTC)}, "202501 keep 2,202503 keep 1,202611 keep 1", "overlaps this month of unparsed records (time 2025-01-31T23:00:00Z to 2025-02-02T00:00:00Z; test)"},
		{"time in february", storage.Hold{Kind: storage.HoldTime, From: time.Date(2025, 2, 1, 0, 0, 0, 0, time.UTC), To: time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)}, "202501 purge 2,202503 keep 1,202611 keep 1", ""},
		{"actor", storage.Hold{Kind: storage.HoldActor, Actor: "nobody@contoso.com"}, "202501 keep 2,202503 keep 1,202611 keep 1", "(actor nobody@contoso.com; test) cannot be matched against unparsed records, so it keeps every quarantine partition"},
		{"resource", storage.Hold{Kind: storage.HoldResource, Resource: "/subscriptions/none"}, "202501 keep 2,202503 keep 1,202611 keep 1", "cannot be matched against unparsed records"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.hold.Reason = "test"
			h, err := f.store.AddHold(ctx, tc.hold)
			if err != nil {
				t.Fatal(err)
			}
			defer f.store.ReleaseHold(ctx, h.ID, "test done")
			plan, err := f.store.PlanRetention(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if got := quarantineVerdicts(plan); got != tc.want {
				t.Errorf("verdicts %s, want %s", got, tc.want)
			}
			reasons := strings.Join(plan.Quarantine[0].Reasons, "\n")
			if tc.reason != "" && (!strings.Contains(reasons, "held: "+h.ID) || !strings.Contains(reasons, tc.reason)) {
				t.Errorf("202501 reasons %q, want %q", plan.Quarantine[0].Reasons, tc.reason)
			}
			if tc.reason == "" {
				return
			}
			// apply under the hold drops no quarantine record, and a
			// held month named explicitly is refused.
			_, err = f.store.ApplyRetention(ctx, cfg, storage.ApplyRetentionOptions{Verifier: f.verifier, Partitions: []string{"202501"}})
			if !errors.Is(err, storage.ErrRetained) || !strings.Contains(err.Error(), "quarantine partition 202501 (2 records): held: "+h.ID) {
				t.Fatalf("apply of a held quarantine month: %v", err)
			}
			res, err := f.store.ApplyRetention(ctx, cfg, storage.ApplyRetentionOptions{Verifier: f.verifier})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Quarantine) != 0 {
				t.Fatalf("held quarantine purged: %+v", res.Quarantine)
			}
			if n := f.count(t, "SELECT count() FROM custody.quarantine"); n != 4 {
				t.Fatalf("quarantine holds %d records under the hold, want 4", n)
			}
		})
	}

	// Within retention, even by name: refused, nothing dropped.
	_, err = f.store.ApplyRetention(ctx, cfg, storage.ApplyRetentionOptions{Verifier: f.verifier, Partitions: []string{"202503"}})
	if !errors.Is(err, storage.ErrRetained) || !strings.Contains(err.Error(), "quarantine partition 202503 (1 records): retained: quarantined records are kept until 2026-12-20") {
		t.Fatalf("apply of a retained quarantine month: %v", err)
	}

	res, err := f.store.ApplyRetention(ctx, cfg, storage.ApplyRetentionOptions{Verifier: f.verifier})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Quarantine) != 1 || res.Quarantine[0].Partition != "202501" || res.Quarantine[0].Rows != 2 || res.Quarantine[0].Actor != "records-officer" {
		t.Fatalf("quarantine purged %+v, want 202501 with 2 records", res.Quarantine)
	}
	// The digest: SHA-256 over each record's raw SHA-256, in offset order.
	d := sha256.New()
	for _, raw := range jan {
		s := sha256.Sum256(raw)
		d.Write(s[:])
	}
	digest := hex.EncodeToString(d.Sum(nil))
	if res.Quarantine[0].Digest != digest {
		t.Errorf("digest %s, want %s", res.Quarantine[0].Digest, digest)
	}
	if n := f.count(t, "SELECT count() FROM custody.quarantine WHERE toYYYYMM(received_time) = 202501"); n != 0 {
		t.Fatalf("quarantine 202501 still holds %d records", n)
	}
	if n := f.count(t, "SELECT count() FROM custody.quarantine"); n != 2 {
		t.Fatalf("quarantine holds %d records after the purge, want 2 (202503, 202611)", n)
	}
	if n := f.count(t, "SELECT count() FROM custody.custody_log WHERE action = 'retention.purge' AND result = 'ok' AND actor = 'records-officer' AND position(detail, 'quarantine partition 202501 records=2 ') = 1 AND position(detail, '"+digest+"') > 0"); n != 1 {
		t.Errorf("custody log has %d quarantine purge entries with the digest, want 1", n)
	}
	if n := f.count(t, "SELECT count() FROM custody.custody_log WHERE action = 'retention.purge' AND result = 'refused' AND position(detail, 'quarantine partition') = 1"); n != 4 {
		t.Errorf("custody log has %d refused quarantine purges, want 4 (three held, one retained)", n)
	}
	if rep := f.verify(t); !rep.OK() {
		t.Fatalf("verify after the quarantine purge: %v", rep.Findings)
	}
	// Nothing left to purge is not an error.
	res, err = f.store.ApplyRetention(ctx, cfg, storage.ApplyRetentionOptions{Verifier: f.verifier})
	if err != nil || len(res.Quarantine) != 0 {
		t.Fatalf("second apply: %v %+v", err, res.Quarantine)
	}
}

// TestRetentionPurgesFinishedChain: a chain that stopped receiving (a
// finished archive stream) loses its last partition too once past
// retention, and if the stream comes back it continues the same chain
// and Merkle tree after the purge, from its recorded position.
func TestRetentionPurgesFinishedChain(t *testing.T) {
	storetest.Run(t, testRetentionPurgesFinishedChain)
}

func testRetentionPurgesFinishedChain(t *testing.T, backend storetest.Backend) {
	ctx := context.Background()
	f := newRetentionFixtureOn(t, backend)
	f.seedMonth(t, "blob/finished", event.ServiceARM, "Administrative", time.Date(2025, 1, 10, 8, 0, 0, 0, time.UTC), 4, "")
	f.seedMonth(t, "blob/finished", event.ServiceARM, "Administrative", time.Date(2025, 2, 10, 8, 0, 0, 0, time.UTC), 3, "")
	f.seedMonth(t, "eh/p0", event.ServiceAKS, "kube-audit", time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC), 2, "")

	plan, err := f.store.PlanRetention(ctx, storage.DefaultRetentionConfig())
	if err != nil {
		t.Fatal(err)
	}
	var purge []string
	for _, pp := range plan.Purgeable() {
		purge = append(purge, pp.Partition)
	}
	if strings.Join(purge, ",") != "202501,202502" {
		t.Fatalf("purgeable %v, want 202501,202502 (the head of blob/finished too): %+v", purge, plan.Partitions)
	}
	res, err := f.store.ApplyRetention(ctx, storage.DefaultRetentionConfig(), storage.ApplyRetentionOptions{Verifier: f.verifier})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Records) != 2 || res.Records[1].FirstSeq != 5 || res.Records[1].LastSeq != 7 || res.Records[1].HeadSeq != 7 {
		t.Fatalf("purge records %+v", res.Records)
	}
	if n := f.count(t, "SELECT count() FROM custody.events WHERE chain = 'blob/finished'"); n != 0 {
		t.Fatalf("blob/finished keeps %d rows", n)
	}
	rep := f.verify(t)
	if !rep.OK() || kinds(rep) != "purged,purged" || !hasFinding(rep, storage.KindPurged, "blob/finished", 5) {
		t.Fatalf("verify after purging a whole chain: ok=%v %v", rep.OK(), rep.Findings)
	}

	// The stream's position survives the purge (source_positions is never
	// purged): a restarted collector resumes after offset 7.
	reopen := func() *storage.Store {
		st, err := storage.Open(ctx, f.eng, storage.Options{Signer: f.signer, CheckpointDir: f.cpDir, Actor: "collector", Now: func() time.Time { return f.now }})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	st := reopen()
	pos, err := st.Positions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if pos["blob/finished"] != 7 {
		t.Fatalf("position of blob/finished after the purge: %d, want 7", pos["blob/finished"])
	}

	// The stream comes back with a replay of offsets 6..7 and two new
	// records: the replay is skipped, the chain continues at seq 8.
	b := storage.Batch{Stream: "blob/finished", Offset: 9}
	for off := 6; off <= 9; off++ {
		e := sampleEvent(off)
		e.ID = fmt.Sprintf("blob/finished-%04d", off)
		e.Service, e.Category = event.ServiceARM, "Administrative"
		e.ReceivedTime = time.Date(2026, 11, 27, 8, off, 0, 0, time.UTC)
		e.Time = e.ReceivedTime
		b.Events = append(b.Events, storage.BatchEvent{Offset: int64(off), Event: e})
	}
	got, err := st.Append(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Stored != 2 || got.Skipped != 2 || got.Seq != 9 || got.Checkpoint == nil || got.Checkpoint.Size != 9 {
		t.Fatalf("append after the purge: %+v", got)
	}
	if n := f.count(t, "SELECT min(seq) FROM custody.events WHERE chain = 'blob/finished'"); n != 8 {
		t.Fatalf("chain restarted at seq %d, want 8", n)
	}
	// Appending again, through another fresh store (the head now comes
	// from the rows), and verify: the purge is attested, no gap, the
	// checkpoints at 9 and 10 extend the purged tree.
	st = reopen()
	e := sampleEvent(10)
	e.ID, e.ReceivedTime = "blob/finished-0010", time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	if got, err = st.Append(ctx, storage.Batch{Stream: "blob/finished", Offset: 10, Events: []storage.BatchEvent{{Offset: 10, Event: e}}}); err != nil || got.Seq != 10 {
		t.Fatalf("second append: %+v %v", got, err)
	}
	rep = f.verify(t)
	if !rep.OK() || rep.Rows != 5 || kinds(rep) != "purged,purged" {
		t.Fatalf("verify after resuming: ok=%v rows=%d %v", rep.OK(), rep.Rows, rep.Findings)
	}

	// Rows lost after a purge outside Custody are not papered over: the
	// chain refuses to resume.
	f.exec(t, "ALTER TABLE custody.events DELETE WHERE chain = 'blob/finished' SETTINGS mutations_sync = 2")
	if _, err := reopen().Append(ctx, storage.Batch{Stream: "blob/finished", Offset: 11}); err == nil || !strings.Contains(err.Error(), "rows 8..10 are missing") {
		t.Fatalf("resume over deleted rows: %v", err)
	}
}
