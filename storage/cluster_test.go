package storage_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/custody-audit/custody/bundle"
	"github.com/custody-audit/custody/bundle/export"
	"github.com/custody-audit/custody/internal/chdbtest"
	"github.com/custody-audit/custody/internal/storetest"
	"github.com/custody-audit/custody/queries"
	"github.com/custody-audit/custody/queries/querytest"
	"github.com/custody-audit/custody/storage"
	"github.com/custody-audit/custody/storage/chdb"
	"github.com/custody-audit/custody/storage/clickhouse"
	"github.com/custody-audit/custody/storage/engine"
)

// TestTwoShards runs the store on a cluster of two ClickHouse servers
// started from libchdb: remote_servers naming both (one shard of one
// replica each, an inter-server secret), the trail's tables as plain
// MergeTree tables on each, Distributed tables in front sharded by chain
// (storetest.Shards). Through the Distributed tables of the first server
// it appends the seed incident on five chains, restarts the store and
// appends again (the chain heads come back through the cluster), checks
// every chain lives whole on one shard and both shards hold some, reads
// the status and checkpoints, verifies (clean; then a row changed on the
// second shard is found), runs every canned query case against an
// embedded store holding the same appends (the same rows), and exports a
// bundle that verify-export accepts.
func TestTwoShards(t *testing.T) {
	ctx := context.Background()
	cl := storetest.NewOn(t, "two-shards", storetest.Shards)
	emb := storetest.NewOn(t, "two-shards", storetest.Embedded)

	seed := querytest.SeedEvents(ctx, t)
	var names []string
	for name := range seed {
		names = append(names, name)
	}
	sort.Strings(names)
	chainOf := map[string]string{}
	for i, name := range names {
		chain := "archive/contoso/insights-logs/" + name
		if strings.Contains(name, "eventhubs") {
			chain = fmt.Sprintf("eventhubs/contoso-audit/container-audit/%d", i)
		}
		chainOf[name] = chain
	}
	// Each chain in two appends, the second by a store opened afresh (a
	// restart: its chain heads are read back through the cluster).
	appendHalf := func(t *testing.T, f *storetest.Fixture, st *storage.Store, second bool) {
		t.Helper()
		for _, name := range names {
			evs := seed[name]
			lo, hi := 0, len(evs)/2
			if second {
				lo, hi = len(evs)/2, len(evs)
			}
			b := storage.Batch{Stream: chainOf[name], Offset: int64(hi)}
			for i := lo; i < hi; i++ {
				b.Events = append(b.Events, storage.BatchEvent{Offset: int64(i + 1), Event: evs[i]})
			}
			if second {
				// A record normalize could not read, after the events.
				b.Offset = int64(hi + 1)
				b.Quarantined = []storage.QuarantineRecord{{Offset: int64(hi + 1), Position: "end", Received: evs[0].ReceivedTime,
					Format: "json", Reason: "not JSON", Raw: []byte("{truncated")}}
			}
			if len(b.Events) == 0 && len(b.Quarantined) == 0 {
				continue
			}
			if _, err := st.Append(ctx, b); err != nil {
				t.Fatalf("%s: append %s: %v", f.Backend, name, err)
			}
		}
	}
	total := 0
	for _, name := range names {
		total += len(seed[name])
	}
	// On the cluster the collector's account appends: its inserts reach
	// the second shard as itself (the inter-server secret), with its
	// INSERT on the local tables and nothing more.
	writer := func(f *storetest.Fixture) engine.Engine {
		if f == cl {
			return storetest.ConnectCluster(t, cl.Server, storage.UserCollector)
		}
		return f.Eng
	}
	for _, f := range []*storetest.Fixture{cl, emb} {
		for _, second := range []bool{false, true} {
			st, err := storage.Open(ctx, writer(f), storage.Options{Signer: f.Signer, CheckpointDir: f.CheckpointDir, Actor: "two-shards", Schema: f.Schema, DialShard: f.DialShard})
			if err != nil {
				t.Fatal(err)
			}
			appendHalf(t, f, st, second)
		}
	}

	// The inter-server secret is kept in each server's config, readable by
	// its owner only.
	for _, s := range cl.Servers {
		st, err := os.Stat(filepath.Join(s.Dir(), chdb.EngineDir, "config.xml"))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("engine config of %s: %v %v, want mode 0600", s.Addr(), st.Mode(), err)
		}
	}

	// Every chain lives whole on one shard, and both shards hold chains.
	shardOf := map[string]int{}
	for i, s := range cl.Servers {
		admin := storetest.Connect(t, s, chdb.AdminUser)
		for chain, n := range countBy(t, admin, "SELECT toString(chain), count() FROM custody.events_local GROUP BY chain") {
			if prev, ok := shardOf[chain]; ok {
				t.Errorf("chain %s on shards %d and %d", chain, prev+1, i+1)
			}
			shardOf[chain] = i
			_ = n
		}
	}
	perShard := map[int]int{}
	for _, i := range shardOf {
		perShard[i]++
	}
	if len(shardOf) != len(names) || perShard[0] == 0 || perShard[1] == 0 {
		t.Fatalf("chains by shard %v (per shard %v), want all %d chains spread over both", shardOf, perShard, len(names))
	}

	// Status: rows and heads per chain, as `custody status` reads them,
	// and the newest checkpoints, the same as on the embedded store.
	for _, q := range []string{
		"SELECT toString(chain), count(), max(seq) FROM custody.events GROUP BY chain",
		"SELECT toString(chain), count() FROM custody.quarantine GROUP BY chain",
		"SELECT toString(stream), toUInt64(max(source_offset)) FROM custody.source_positions GROUP BY stream",
	} {
		if got, want := fmt.Sprint(countBy(t, cl.Eng, q)), fmt.Sprint(countBy(t, emb.Eng, q)); got != want {
			t.Errorf("%s: on the cluster %s, embedded %s", q, got, want)
		}
	}
	if n := countBy(t, cl.Eng, "SELECT 'all', count() FROM custody.quarantine"); n["all"] != uint64(len(names)) {
		t.Errorf("%d quarantine rows on the cluster, want %d", n["all"], len(names))
	}
	cps, err := cl.Store.LatestCheckpoints(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ecps, err := emb.Store.LatestCheckpoints(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(cps) != len(names) || len(cps) != len(ecps) {
		t.Fatalf("%d checkpoints on the cluster, %d embedded, want %d", len(cps), len(ecps), len(names))
	}
	for i := range cps {
		if cps[i].Chain != ecps[i].Chain || cps[i].Size != ecps[i].Size || cps[i].Root != ecps[i].Root {
			t.Errorf("checkpoint %d: cluster %s size %d, embedded %s size %d", i, cps[i].Chain, cps[i].Size, ecps[i].Chain, ecps[i].Size)
		}
	}

	// Verify as the collector's account, as `custody verify` does: clean,
	// with every server's parts checked (CHECK TABLE on each shard's local
	// tables: a Distributed table has no parts).
	verifier, err := storage.Open(ctx, storetest.ConnectCluster(t, cl.Server, storage.UserCollector),
		storage.Options{Schema: cl.Schema, CheckpointDir: cl.CheckpointDir, DialShard: storetest.DialShard(cl.Servers, storage.UserCollector)})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := verifier.Verify(ctx, storage.VerifyOptions{Verifier: cl.Verifier, CheckpointDir: cl.CheckpointDir})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.Rows != uint64(total) || rep.Chains != len(names) {
		t.Fatalf("clean cluster: ok=%v rows=%d (want %d) chains=%d findings=%v", rep.OK(), rep.Rows, total, rep.Chains, rep.Findings)
	}
	for _, f := range rep.Findings {
		if f.Kind == storage.KindPartCheckSkipped {
			t.Errorf("the part check did not run on the cluster: %s", f.Detail)
		}
	}
	// A store that cannot reach the servers says the check was skipped.
	blind, err := storage.Open(ctx, cl.Eng, storage.Options{Schema: cl.Schema})
	if err != nil {
		t.Fatal(err)
	}
	rep, err = blind.Verify(ctx, storage.VerifyOptions{Verifier: cl.Verifier, CheckpointDir: cl.CheckpointDir})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || kinds(rep) != "part_check_skipped" {
		t.Errorf("verify without DialShard: ok=%v %v, want only part_check_skipped", rep.OK(), rep.Findings)
	}

	// Canned queries, as the investigator with readonly=2, as `custody
	// query` runs them (the reader role: no remote(), no temporary
	// tables; on the other shard the reader's own role applies): every case script's query gives the cluster
	// the same rows as the embedded store. Copies of one event live in
	// chains on different shards, so the catalogue's IN subqueries must
	// see the whole cluster (distributed_product_mode).
	reader, err := clickhouse.Open(ctx, clickhouse.Options{DSN: chdbtest.DSN(t, cl.Server, storage.UserInvestigator), Cluster: storetest.ClusterName, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close(ctx)
	caseQueries(t, reader, emb.Eng)
	// The columnar reader (exports, verify) sends the same settings: a
	// subquery over a Distributed table sees the whole cluster and the
	// other shard keeps the reader's role.
	rows, err := reader.QueryBlocks(ctx, "SELECT count() FROM custody.events WHERE event_id IN (SELECT event_id FROM custody.events)", nil)
	if err != nil {
		t.Fatalf("columnar read through the cluster as the reader: %v", err)
	}
	var n uint64
	for rows.Next() {
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
	}
	if err := rows.Close(); err != nil || n != uint64(total) {
		t.Errorf("columnar read through the cluster: %d rows (want %d), %v", n, total, err)
	}

	// Export and verify-export.
	from, to := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, format := range []string{bundle.FormatJSONL, bundle.FormatParquet} {
		dir := filepath.Join(t.TempDir(), "bundle")
		if _, err := export.Export(ctx, export.Options{Engine: cl.Eng, From: from, To: to, Output: bundle.Output{Signer: cl.Signer, Verifier: cl.Verifier, Format: format, Dir: dir, Actor: "auditor@test"}}); err != nil {
			t.Fatalf("export %s from the cluster: %v", format, err)
		}
		vr, err := bundle.Verify(ctx, dir, bundle.VerifyOptions{Verifier: cl.Verifier})
		if err != nil {
			t.Fatal(err)
		}
		if !vr.OK() || vr.Rows != uint64(total) || vr.Chains != len(names) {
			t.Errorf("verify-export %s: ok=%v rows=%d chains=%d findings=%v", format, vr.OK(), vr.Rows, vr.Chains, vr.Findings)
		}
	}

	// Tamper with a row on the second shard, where only its local table
	// holds it: verify through the cluster finds it.
	var victim string
	for chain, i := range shardOf {
		if i == 1 && (victim == "" || chain < victim) {
			victim = chain
		}
	}
	admin2 := storetest.Connect(t, cl.Servers[1], chdb.AdminUser)
	if err := admin2.Exec(ctx, "ALTER TABLE custody.events_local UPDATE source_ip = '198.51.100.66' WHERE chain = {c:String} AND seq = 2 SETTINGS mutations_sync = 2", engine.Params{"c": victim}); err != nil {
		t.Fatal(err)
	}
	rep, err = verifier.Verify(ctx, storage.VerifyOptions{Verifier: cl.Verifier, CheckpointDir: cl.CheckpointDir})
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() || !hasFinding(rep, storage.KindModified, victim, 2) {
		t.Fatalf("a row changed on shard 2 (%s seq 2) went unseen: %v", victim, rep.Findings)
	}

	// Flip a byte in a part file on shard 2: the part check there finds
	// it, and verify leaves the part out (through the Distributed table,
	// by shard and part name) instead of stopping on the engine's
	// checksum error.
	var part, path string
	q := "SELECT name, path FROM system.parts WHERE active AND database = 'custody' AND table = 'events_local' AND name IN (SELECT _part FROM custody.events_local WHERE chain = {c:String}) ORDER BY name LIMIT 1"
	if err := engine.Each(ctx, admin2, q, engine.Params{"c": victim}, func(r engine.Rows) error { return r.Scan(&part, &path) }); err != nil || path == "" {
		t.Fatalf("find a part of %s on shard 2: %q %v", victim, path, err)
	}
	file := filepath.Join(path, "data.bin")
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(file, b, 0o640); err != nil {
		t.Fatal(err)
	}
	rep, err = verifier.Verify(ctx, storage.VerifyOptions{Verifier: cl.Verifier, CheckpointDir: cl.CheckpointDir})
	if err != nil {
		t.Fatalf("verify stopped on a corrupt part on shard 2: %v", err)
	}
	var corrupt []storage.Finding
	for _, f := range rep.Findings {
		if f.Kind == storage.KindCorruptPart {
			corrupt = append(corrupt, f)
		}
		if f.Chain != victim && f.Kind != storage.KindNoExternalCheckpoint && f.Chain != "" {
			t.Errorf("finding about an intact chain: %v", f)
		}
	}
	if len(corrupt) != 1 || corrupt[0].Part != part || corrupt[0].Chain != victim || !strings.Contains(corrupt[0].Detail, "on shard 2") {
		t.Fatalf("want one corrupt_part finding for %s on shard 2 (chain %s), got %v", part, victim, rep.Findings)
	}
}

// countBy runs a query of (key, count[, ...]) rows and returns the counts
// by key (further columns are appended to the key).
func countBy(t *testing.T, eng engine.Engine, q string) map[string]uint64 {
	t.Helper()
	out := map[string]uint64{}
	err := engine.Each(context.Background(), eng, q, nil, func(r engine.Rows) error {
		cols := r.Columns()
		var key string
		var n uint64
		vals := []any{&key, &n}
		extra := make([]uint64, len(cols)-2)
		for i := range extra {
			vals = append(vals, &extra[i])
		}
		if err := r.Scan(vals...); err != nil {
			return err
		}
		if len(extra) > 0 {
			key = fmt.Sprint(key, extra)
		}
		out[key] = n
		return nil
	})
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return out
}

// caseQueries runs the query, window and parameters of every case script
// in queries/testdata/cases on both engines and compares the rows.
func caseQueries(t *testing.T, got, want engine.Engine) {
	t.Helper()
	cat, err := queries.Load()
	if err != nil {
		t.Fatal(err)
	}
	paths, err := filepath.Glob(filepath.Join("..", "queries", "testdata", "cases", "*.txt"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no case scripts: %v", err)
	}
	withRows := 0
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		head, _, _ := strings.Cut(string(b), "----\n")
		var q *queries.Query
		var from, to time.Time
		args := map[string]string{}
		for _, line := range strings.Split(strings.TrimSpace(head), "\n") {
			k, v, _ := strings.Cut(line, ": ")
			switch k {
			case "query":
				if q, err = cat.Get(v); err != nil {
					t.Fatal(err)
				}
			case "from":
				from, err = queries.ParseTime(v)
			case "to":
				to, err = queries.ParseTime(v)
			case "param":
				name, val, _ := strings.Cut(v, "=")
				args[name] = val
			}
			if err != nil {
				t.Fatalf("%s: %v", p, err)
			}
		}
		run := func(eng engine.Engine) (string, int) {
			rows, err := queries.Run(context.Background(), eng, q, args, from, to)
			if err != nil {
				t.Fatalf("%s: %v", filepath.Base(p), err)
			}
			var buf bytes.Buffer
			n, err := queries.Render(&buf, rows, queries.RenderOptions{Format: queries.FormatCSV})
			if cerr := rows.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				t.Fatalf("%s: %v", filepath.Base(p), err)
			}
			return buf.String(), n
		}
		g, n := run(got)
		w, _ := run(want)
		if g != w {
			t.Errorf("%s: the cluster's rows differ from the embedded store's\n--- cluster\n%s--- embedded\n%s", filepath.Base(p), g, w)
		}
		if n > 0 {
			withRows++
		}
	}
	if withRows < len(paths)/2 {
		t.Errorf("only %d of %d case queries returned rows: the comparison says little", withRows, len(paths))
	}
}
