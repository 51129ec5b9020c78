package storage_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/custody-audit/custody/event"
	"github.com/custody-audit/custody/internal/storetest"
	"github.com/custody-audit/custody/storage"
	"github.com/custody-audit/custody/storage/engine"
)

type fixture struct {
	signer   note.Signer
	eng      engine.Engine
	store    *storage.Store
	verifier note.Verifier
	cpDir    string
}

func newFixture(t *testing.T) *fixture { return newFixtureB(t) }

func newFixtureB(t testing.TB) *fixture { return newFixtureOn(t, storetest.Embedded) }

// newFixtureOn opens a fresh store on backend b.
func newFixtureOn(t testing.TB, b storetest.Backend) *fixture {
	t.Helper()
	f := storetest.NewOn(t, "test", b)
	return &fixture{signer: f.Signer, eng: f.Eng, store: f.Store, verifier: f.Verifier, cpDir: f.CheckpointDir}
}

func sampleEvent(i int) event.Event {
	ts := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Second)
	return event.Event{
		ID: fmt.Sprintf("audit-%04d", i), Time: ts.Add(123456789), ReceivedTime: ts.Add(time.Minute),
		Service: event.ServiceAKS, Category: "kube-audit", SourceKind: "eventhubs", SourceFormat: "resource-log",
		SourcePosition: fmt.Sprintf("partition 0 sequence %d", i), SubscriptionID: "sub", ResourceGroup: "rg",
		Provider: "Microsoft.ContainerService", ResourceType: "managedClusters", ResourceName: "aks1",
		ResourceID: "/subscriptions/sub/resourcegroups/rg/providers/microsoft.containerservice/managedclusters/aks1",
		Actor:      event.Actor{Name: "alice@contoso.com", Type: event.ActorUser, Groups: []string{"g1", "g'2"}},
		SourceIP:   netip.MustParseAddr("203.0.113.7"), UserAgent: "kubectl/v1.31",
		Action: "k8s:pods/exec:create", ActionClass: event.ClassExec,
		Target:  event.Target{Resource: "pods", Subresource: "exec", Namespace: "prod", Name: "web-0"},
		Outcome: event.OutcomeSuccess, StatusCode: 101, Tags: []string{event.TagExecIntoContainer},
		Attributes: map[string]string{"stage": "ResponseStarted", "k\tv": "x\ny"},
		Raw:        []byte(fmt.Sprintf(`{"auditID":"audit-%04d","weird":"\t\u0000"}`+"\n", i)), RawFormat: "json",
	}
}

func appendN(t *testing.T, st *storage.Store, stream string, from, to int) {
	t.Helper()
	b := storage.Batch{Stream: stream, Offset: int64(to)}
	for i := from; i <= to; i++ {
		b.Events = append(b.Events, storage.BatchEvent{Offset: int64(i), Event: sampleEvent(i)})
	}
	if _, err := st.Append(context.Background(), b); err != nil {
		t.Fatal(err)
	}
}

// verify runs verification both ways (the engine recomputing hashes, and
// Go recomputing them independently), checks both agree, and returns one.
func (f *fixture) verify(t *testing.T) *storage.VerifyReport {
	t.Helper()
	rep, err := f.store.Verify(context.Background(), storage.VerifyOptions{Verifier: f.verifier, CheckpointDir: f.cpDir})
	if err != nil {
		t.Fatal(err)
	}
	ind, err := f.store.Verify(context.Background(), storage.VerifyOptions{Verifier: f.verifier, CheckpointDir: f.cpDir, Independent: true})
	if err != nil {
		t.Fatal(err)
	}
	if findingSet(rep) != findingSet(ind) || rep.Rows != ind.Rows {
		t.Fatalf("engine and independent verification disagree:\nengine:      %v\nindependent: %v", rep.Findings, ind.Findings)
	}
	return rep
}

func TestAppendVerifyAndResume(t *testing.T) { storetest.Run(t, testAppendVerifyAndResume) }

func testAppendVerifyAndResume(t *testing.T, backend storetest.Backend) {
	ctx := context.Background()
	f := newFixtureOn(t, backend)
	appendN(t, f.store, "eh/p0", 1, 10)
	appendN(t, f.store, "eh/p0", 11, 25)
	appendN(t, f.store, "eh/p1", 1, 5)
	rep := f.verify(t)
	if !rep.OK() || rep.Rows != 30 || rep.Chains != 2 {
		t.Fatalf("clean trail: ok=%v rows=%d chains=%d findings=%v", rep.OK(), rep.Rows, rep.Chains, rep.Findings)
	}
	// A second store on the same engine is a restart: it resumes the
	// chain and skips what is already stored (offsets 20-25 here).
	st2, err := storage.Open(ctx, f.eng, storage.Options{Signer: f.signer, CheckpointDir: f.cpDir})
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, st2, "eh/p0", 20, 30)
	pos, err := st2.Positions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if pos["eh/p0"] != 30 || pos["eh/p1"] != 5 {
		t.Fatalf("positions after the restart = %v, want eh/p0 30 and eh/p1 5", pos)
	}
	rep = f.verify(t)
	if !rep.OK() || rep.Rows != 35 || rep.Chains != 2 {
		t.Fatalf("after the restart: ok=%v rows=%d (want 35: offsets 20-25 stored once) chains=%d findings=%v", rep.OK(), rep.Rows, rep.Chains, rep.Findings)
	}
}

func TestReplayAfterCrashStoresNothingTwice(t *testing.T) {
	storetest.Run(t, testReplayAfterCrashStoresNothingTwice)
}

func testReplayAfterCrashStoresNothingTwice(t *testing.T, backend storetest.Backend) {
	ctx := context.Background()
	f := newFixtureOn(t, backend)
	skey, vkey, _ := storage.GenerateKey("replay")
	signer, _ := note.NewSigner(skey)
	verifier, _ := note.NewVerifier(vkey)
	st, err := storage.Open(ctx, f.eng, storage.Options{Signer: signer})
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, st, "s", 1, 10)
	// a new process: fresh in-memory state, the source redelivers 5..15
	st2, err := storage.Open(ctx, f.eng, storage.Options{Signer: signer})
	if err != nil {
		t.Fatal(err)
	}
	b := storage.Batch{Stream: "s", Offset: 15}
	for i := 5; i <= 15; i++ {
		b.Events = append(b.Events, storage.BatchEvent{Offset: int64(i), Event: sampleEvent(i)})
	}
	res, err := st2.Append(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if res.Stored != 5 || res.Skipped != 6 || res.Seq != 15 {
		t.Fatalf("replay: %+v", res)
	}
	rep, err := st2.Verify(ctx, storage.VerifyOptions{Verifier: verifier})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.Rows != 15 {
		t.Fatalf("after replay: rows=%d findings=%v", rep.Rows, rep.Findings)
	}
}

// TestTamperIsDetected changes the store behind Custody's back, the way an
// intruder with database access would, and checks verify names each
// change.
func TestTamperIsDetected(t *testing.T) { storetest.Run(t, testTamperIsDetected) }

func testTamperIsDetected(t *testing.T, backend storetest.Backend) {
	cases := []struct {
		name   string
		tamper func(t *testing.T, f *fixture)
		want   storage.FindingKind
		seq    uint64
	}{
		{"update a column (source ip)", func(t *testing.T, f *fixture) {
			exec(t, f, "ALTER TABLE custody.events UPDATE source_ip = '198.51.100.66' WHERE chain = 'eh/p0' AND seq = 7 SETTINGS mutations_sync = 2")
		}, storage.KindModified, 7},
		{"update the raw record", func(t *testing.T, f *fixture) {
			exec(t, f, "ALTER TABLE custody.events UPDATE raw = '{}' WHERE chain = 'eh/p0' AND seq = 3 SETTINGS mutations_sync = 2")
		}, storage.KindModified, 3},
		{"delete a row", func(t *testing.T, f *fixture) {
			exec(t, f, "ALTER TABLE custody.events DELETE WHERE chain = 'eh/p0' AND seq = 12 SETTINGS mutations_sync = 2")
		}, storage.KindGap, 12},
		{"insert a duplicate", func(t *testing.T, f *fixture) {
			exec(t, f, "INSERT INTO custody.events SELECT * FROM custody.events WHERE chain = 'eh/p0' AND seq = 5")
		}, storage.KindDuplicate, 5},
		{"insert a forged row", func(t *testing.T, f *fixture) {
			exec(t, f, "INSERT INTO custody.events SELECT * REPLACE ('forged' AS event_id, unhex(repeat('ab', 32)) AS hash) FROM custody.events WHERE chain = 'eh/p0' AND seq = 9")
		}, storage.KindInserted, 9},
		{"swap two rows", func(t *testing.T, f *fixture) {
			exec(t, f, "ALTER TABLE custody.events UPDATE seq = if(seq = 4, 5, 4) WHERE chain = 'eh/p0' AND seq IN (4, 5) SETTINGS mutations_sync = 2")
		}, storage.KindModified, 4},
		{"truncate after a checkpoint", func(t *testing.T, f *fixture) {
			exec(t, f, "ALTER TABLE custody.events DELETE WHERE chain = 'eh/p0' AND seq > 20 SETTINGS mutations_sync = 2")
		}, storage.KindTruncated, 21},
		{"drop a partition", func(t *testing.T, f *fixture) {
			exec(t, f, "ALTER TABLE custody.events DROP PARTITION 202611")
		}, storage.KindTruncated, 1},
		{"edit a checkpoint file", func(t *testing.T, f *fixture) {
			path := filepath.Join(f.cpDir, "eh%2Fp0.checkpoint")
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.SplitN(string(b), "\n", 3)
			lines[1] = "26"
			if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")), 0o600); err != nil {
				t.Fatal(err)
			}
		}, storage.KindBadSignature, 0},
		{"remove checkpoints from the store and truncate", func(t *testing.T, f *fixture) {
			exec(t, f, "ALTER TABLE custody.checkpoints DELETE WHERE tree_size > 10 SETTINGS mutations_sync = 2")
			exec(t, f, "ALTER TABLE custody.events DELETE WHERE chain = 'eh/p0' AND seq > 10 SETTINGS mutations_sync = 2")
		}, storage.KindTruncated, 11},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixtureOn(t, backend)
			appendN(t, f.store, "eh/p0", 1, 10)
			appendN(t, f.store, "eh/p0", 11, 25)
			if rep := f.verify(t); !rep.OK() {
				t.Fatalf("before tampering: %v", rep.Findings)
			}
			tc.tamper(t, f)
			rep := f.verify(t)
			if rep.OK() {
				t.Fatalf("tampering not detected")
			}
			for _, fd := range rep.Findings {
				if fd.Kind == tc.want && (tc.seq == 0 || fd.Seq == tc.seq) {
					return
				}
			}
			t.Fatalf("want a %s finding at seq %d, got %v", tc.want, tc.seq, rep.Findings)
		})
	}
}

func exec(t *testing.T, f *fixture, q string) {
	t.Helper()
	if err := f.eng.Exec(context.Background(), q, nil); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func TestDedupeByEventID(t *testing.T) { storetest.Run(t, testDedupeByEventID) }

func testDedupeByEventID(t *testing.T, backend storetest.Backend) {
	ctx := context.Background()
	f := newFixtureOn(t, backend)
	stream := "loganalytics/ws/AKSAudit"
	batch := func(ids ...int) storage.Batch {
		b := storage.Batch{Stream: stream, DedupeByEventID: true}
		for _, i := range ids {
			b.Events = append(b.Events, storage.BatchEvent{Offset: int64(1000 - i), Event: sampleEvent(i)})
			b.Offset = max(b.Offset, int64(1000-i))
		}
		b.Quarantined = []storage.QuarantineRecord{{Offset: 1, Raw: []byte("not json"), Reason: "bad"}}
		return b
	}
	if _, err := f.store.Append(ctx, batch(1, 2, 3)); err != nil {
		t.Fatal(err)
	}
	// an overlap re-read plus a late row whose offset is older than
	// everything stored: only the late row is new
	res, err := f.store.Append(ctx, batch(2, 3, 9))
	if err != nil {
		t.Fatal(err)
	}
	if res.Stored != 1 || res.Skipped != 2 || res.Quarantined != 0 {
		t.Fatalf("overlap batch: %+v", res)
	}
	if rep := f.verify(t); !rep.OK() || rep.Rows != 4 {
		t.Fatalf("verify: rows=%d %v", rep.Rows, rep.Findings)
	}
}

func TestLongChainNamesGetCheckpointFiles(t *testing.T) {
	storetest.Run(t, testLongChainNamesGetCheckpointFiles)
}

func testLongChainNamesGetCheckpointFiles(t *testing.T, backend storetest.Backend) {
	f := newFixtureOn(t, backend)
	stream := "archive/acct/insights-logs-kube-audit/resourceId=/SUBSCRIPTIONS/4F1A2B3C-0000-4000-8000-00000000C0DE/RESOURCEGROUPS/PROD-RG/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/PROD-AKS/y=2026/m=11/d=27/h=10/m=00/PT1H.json"
	appendN(t, f.store, stream, 1, 3)
	files, err := storage.ReadCheckpointDir(f.cpDir)
	if err != nil || len(files) != 1 {
		t.Fatalf("checkpoint files: %v %v", files, err)
	}
	if rep := f.verify(t); !rep.OK() {
		t.Fatalf("verify: %v", rep.Findings)
	}
}

func TestRetryAfterFailedCheckpointSigns(t *testing.T) {
	storetest.Run(t, testRetryAfterFailedCheckpointSigns)
}

func testRetryAfterFailedCheckpointSigns(t *testing.T, backend storetest.Backend) {
	ctx := context.Background()
	f := newFixtureOn(t, backend)
	blocked := filepath.Join(t.TempDir(), "not-a-dir")
	if err := os.WriteFile(blocked, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	skey, vkey, _ := storage.GenerateKey("retry")
	signer, _ := note.NewSigner(skey)
	verifier, _ := note.NewVerifier(vkey)
	st, err := storage.Open(ctx, f.eng, storage.Options{Signer: signer, CheckpointDir: blocked})
	if err != nil {
		t.Fatal(err)
	}
	b := storage.Batch{Stream: "s", Offset: 3, Events: []storage.BatchEvent{{Offset: 1, Event: sampleEvent(1)}, {Offset: 2, Event: sampleEvent(2)}}}
	if _, err := st.Append(ctx, b); err == nil {
		t.Fatal("checkpoint directory is a file: want an error")
	}
	os.Remove(blocked)
	res, err := st.Append(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if res.Stored != 0 || res.Checkpoint == nil || res.Checkpoint.Size != 2 {
		t.Fatalf("retry must sign the missed checkpoint: %+v", res)
	}
	rep, err := st.Verify(ctx, storage.VerifyOptions{Verifier: verifier, CheckpointDir: blocked})
	if err != nil || !rep.OK() {
		t.Fatalf("verify: %v %v", err, rep.Findings)
	}
}

// findingSet renders findings order-independently: the engine reports
// modified rows by sequence, the independent check in storage order.
func findingSet(r *storage.VerifyReport) string {
	var l []string
	for _, f := range r.Findings {
		l = append(l, f.String())
	}
	sort.Strings(l)
	return strings.Join(l, "\n")
}

// TestCrashBetweenQuarantineAndEventsLosesNothing simulates a crash after a
// batch's quarantine rows were stored and before its events were: the
// resume position must not move past the unstored events.
func TestCrashBetweenQuarantineAndEventsLosesNothing(t *testing.T) {
	storetest.Run(t, testCrashBetweenQuarantineAndEventsLosesNothing)
}

func testCrashBetweenQuarantineAndEventsLosesNothing(t *testing.T, backend storetest.Backend) {
	ctx := context.Background()
	f := newFixtureOn(t, backend)
	appendN(t, f.store, "s", 1, 10)
	// the quarantine insert of batch 11..30 landed, its events did not
	exec(t, f, "INSERT INTO custody.quarantine (chain, source_offset, raw, reason) VALUES ('s', 30, 'not json', 'bad')")
	pos, err := f.store.Positions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if pos["s"] != 10 {
		t.Fatalf("resume position %d, want 10: events 11..29 would be skipped", pos["s"])
	}
	// a restarted collector replays 11..30: the events are stored, the
	// quarantine row is recognised
	st, err := storage.Open(ctx, f.eng, storage.Options{Signer: f.signer, CheckpointDir: f.cpDir})
	if err != nil {
		t.Fatal(err)
	}
	b := storage.Batch{Stream: "s", Offset: 30, Quarantined: []storage.QuarantineRecord{{Offset: 30, Raw: []byte("not json"), Reason: "bad"}}}
	for i := 11; i <= 29; i++ {
		b.Events = append(b.Events, storage.BatchEvent{Offset: int64(i), Event: sampleEvent(i)})
	}
	res, err := st.Append(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if res.Stored != 19 || res.Quarantined != 0 {
		t.Fatalf("replay: %+v", res)
	}
	if rep := f.verify(t); !rep.OK() || rep.Rows != 29 {
		t.Fatalf("verify: rows=%d %v", rep.Rows, rep.Findings)
	}
}

// TestAppendManyGroupsStreams stores batches of two streams, one of them
// twice, in one call: each chain continues in order, each gets a signed
// checkpoint, and replaying the same call stores nothing.
func TestAppendManyGroupsStreams(t *testing.T) { storetest.Run(t, testAppendManyGroupsStreams) }

func testAppendManyGroupsStreams(t *testing.T, backend storetest.Backend) {
	ctx := context.Background()
	f := newFixtureOn(t, backend)
	batch := func(stream string, from, to int) storage.Batch {
		b := storage.Batch{Stream: stream, Offset: int64(to)}
		for i := from; i <= to; i++ {
			e := sampleEvent(i)
			e.ID = fmt.Sprintf("%s-%d", stream, i)
			b.Events = append(b.Events, storage.BatchEvent{Offset: int64(i), Event: e})
		}
		return b
	}
	in := []storage.Batch{batch("a", 1, 3), batch("b", 1, 2), batch("a", 4, 5)}
	res, err := f.store.AppendMany(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		stored int
		seq    uint64
	}{{3, 5}, {2, 2}, {2, 5}}
	for i, w := range want {
		if res[i].Stored != w.stored || res[i].Seq != w.seq || res[i].Skipped != 0 {
			t.Errorf("result %d: %+v, want stored %d seq %d", i, res[i], w.stored, w.seq)
		}
	}
	if res[1].Checkpoint == nil || res[1].Checkpoint.Size != 2 || res[2].Checkpoint == nil || res[2].Checkpoint.Size != 5 {
		t.Errorf("checkpoints: %+v %+v", res[1].Checkpoint, res[2].Checkpoint)
	}
	files, err := storage.ReadCheckpointDir(f.cpDir)
	if err != nil || len(files) != 2 {
		t.Fatalf("checkpoint files: %v %v", files, err)
	}
	again, err := f.store.AppendMany(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range again {
		if r.Stored != 0 || r.Skipped != len(in[i].Events) {
			t.Errorf("replay %d stored %+v", i, r)
		}
	}
	if rep := f.verify(t); !rep.OK() || rep.Rows != 7 {
		t.Fatalf("verify: rows=%d %v", rep.Rows, rep.Findings)
	}
	pos, err := f.store.Positions(ctx)
	if err != nil || pos["a"] != 5 || pos["b"] != 2 {
		t.Errorf("positions %v %v", pos, err)
	}
}
