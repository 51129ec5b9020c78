package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/custody-audit/custody/internal/chdbtest"
	"github.com/custody-audit/custody/internal/ehbroker"
	"github.com/custody-audit/custody/internal/storetest"
	"github.com/custody-audit/custody/storage"
	"github.com/custody-audit/custody/storage/chdb"
	"github.com/custody-audit/custody/storage/engine"
)

// The tests in this file run `custody run` end to end: the real collector
// (the run command, in process or as a child process) reads the Event Hubs
// test broker through the real azeventhubs SDK, normalizes, and appends to
// a real store with integrity on (the embedded store, and for some tests
// also a ClickHouse server started apart: storetest.Run); every test ends
// with exact counts from the store and `custody verify`.

// e2eHub is the event hub the tests' broker serves.
const e2eHub = "aks-audit"

// e2eStore is a keyed, initialized store.
type e2eStore struct {
	*cliStore
}

// newE2EStore is an e2eStore on the embedded store.
func newE2EStore(t *testing.T) *e2eStore {
	t.Helper()
	return newE2EStoreOn(t, storetest.Embedded)
}

// newE2EStoreOn is an e2eStore on backend b.
func newE2EStoreOn(t *testing.T, b storetest.Backend) *e2eStore {
	t.Helper()
	s := &e2eStore{newCLIStore(t, b)}
	for _, args := range [][]string{{"keygen"}, {"init"}} {
		s.mustCLI(args...)
	}
	return s
}

func startE2EBroker(t *testing.T, partitions int) *ehbroker.Broker {
	t.Helper()
	cfg := ehbroker.DefaultConfig(e2eHub)
	cfg.Partitions = partitions
	br, err := ehbroker.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = br.Close(context.Background()) })
	return br
}

// auditRecord is one AKS kube-audit resource-log record as diagnostic
// settings stream it to Event Hubs (Microsoft's documented schema): the
// Kubernetes audit event is a JSON string in properties.log. Write verbs
// pass the noise policy; pad grows userAgent to size the record.
func auditRecord(auditID string, pad int) string {
	inner := fmt.Sprintf(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":%q,"stage":"ResponseComplete","requestURI":"/api/v1/namespaces/prod/configmaps/%s","verb":"update","user":{"username":"alice@contoso.com","groups":["system:authenticated"]},"sourceIPs":["203.0.113.7"],"userAgent":"kubectl/v1.31 %s","objectRef":{"resource":"configmaps","namespace":"prod","name":%q,"apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-11-27T10:00:00.000000Z","stageTimestamp":"2026-11-27T10:00:00.100000Z"}`,
		auditID, auditID, strings.Repeat("x", pad), auditID)
	return fmt.Sprintf(`{"time":"2026-11-27T10:00:00.1000000Z","resourceId":"/SUBSCRIPTIONS/S/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/AKS1","category":"kube-audit","operationName":"Microsoft.ContainerService/managedClusters/diagnosticLogs/Read","properties":{"log":%q,"stream":"stdout","pod":"kube-apiserver-1"}}`, inner+"\n")
}

// auditBodies returns n Event Hubs bodies of perBody records each, with
// audit ids "<tag>-<body>-<record>".
func auditBodies(tag string, n, perBody, pad int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		var b strings.Builder
		b.WriteString(`{"records":[`)
		for r := range perBody {
			if r > 0 {
				b.WriteByte(',')
			}
			b.WriteString(auditRecord(fmt.Sprintf("%s-%d-%d", tag, i, r), pad))
		}
		b.WriteString("]}")
		out[i] = []byte(b.String())
	}
	return out
}

// publishAll publishes bodies round-robin over the broker's partitions in
// chunks, returning the last sequence number of each partition.
func publishAll(t testing.TB, br *ehbroker.Broker, bodies [][]byte) map[string]int64 {
	t.Helper()
	ids := br.PartitionIDs()
	last := map[string]int64{}
	const chunk = 50
	for i := 0; i < len(bodies); i += chunk {
		p := ids[(i/chunk)%len(ids)]
		part := bodies[i:min(i+chunk, len(bodies))]
		first, err := br.Publish(p, part...)
		if err != nil {
			t.Fatal(err)
		}
		last[p] = first + int64(len(part)) - 1
	}
	return last
}

// freeAddr returns a loopback address no one listens on.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// collectorYAML is the run config for a collector of the broker's
// partitions (all when none are given), tuned for short tests: batches of
// up to batch messages, with as many prefetched per partition.
func collectorYAML(connString, metricsAddr string, batch int, partitions ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "eventhubs:\n  connection_string: %q\n  prefetch: %d\n  max_batch_size: %d\n  max_wait: 100ms\n  retry_delay: 50ms\n  max_retry_delay: 500ms\n", connString, batch, batch)
	if len(partitions) > 0 {
		fmt.Fprintf(&b, "  partitions: [%s]\n", strings.Join(partitions, ", "))
	}
	fmt.Fprintf(&b, "pipeline:\n  retry_delay: 50ms\n  max_retry_delay: 400ms\n  shutdown_timeout: 20s\nmetrics_addr: %s\n", metricsAddr)
	return b.String()
}

// runningCollector is `custody run` running in this process.
type runningCollector struct {
	metrics string // http://addr
	cancel  context.CancelFunc
	done    chan error
}

// startCollector runs `custody run` in process on the store with the
// given config body (see collectorYAML) and the store in the config file
// (on a server, the collector account's DSN), with runFlags after "run"
// (--web ADDR); stop ends it as SIGTERM would.
func startCollector(t *testing.T, s *e2eStore, yaml, metricsAddr string, runFlags ...string) *runningCollector {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "custody.yaml")
	if err := os.WriteFile(cfg, []byte(yaml+s.storeYAML(storage.UserCollector)), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &runningCollector{metrics: "http://" + metricsAddr, cancel: cancel, done: make(chan error, 1)}
	go func() {
		app := newApp()
		app.Writer, app.ErrWriter = io.Discard, io.Discard
		c.done <- app.Run(ctx, append([]string{"custody", "--config", cfg,
			"--signing-key", filepath.Join(s.dir, "k"), "--verify-key", filepath.Join(s.dir, "k.pub"),
			"--checkpoint-dir", filepath.Join(s.dir, "cp"), "--log-level", "warn", "run"}, runFlags...))
	}()
	t.Cleanup(func() {
		cancel()
		<-c.done
	})
	return c
}

// stop cancels the collector's context (what SIGTERM does in main) and
// requires a clean exit.
func (c *runningCollector) stop(t *testing.T) {
	t.Helper()
	c.cancel()
	select {
	case err := <-c.done:
		c.done <- nil // for the cleanup
		if err != nil {
			t.Fatalf("custody run exited with %v, want a clean stop", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("custody run did not stop within 60s of its context ending")
	}
}

// scrape reads the collector's /metrics into series -> value, where a
// series is the metric name with its labels as Prometheus prints them.
func scrape(metricsURL string) (map[string]float64, error) {
	resp, err := http.Get(metricsURL + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics line %q: %w", line, err)
		}
		out[line[:i]] = v
	}
	return out, sc.Err()
}

// metricSum adds up every series of a metric.
func metricSum(m map[string]float64, name string) float64 {
	var sum float64
	for k, v := range m {
		if k == name || strings.HasPrefix(k, name+"{") {
			sum += v
		}
	}
	return sum
}

// storedOffsets returns the custody_ingest_stored_offset gauge per
// partition id (the last segment of the stream label).
func storedOffsets(m map[string]float64) map[string]int64 {
	out := map[string]int64{}
	for k, v := range m {
		if !strings.HasPrefix(k, "custody_ingest_stored_offset{") {
			continue
		}
		_, rest, _ := strings.Cut(k, `stream="`)
		stream, _, _ := strings.Cut(rest, `"`)
		out[stream[strings.LastIndexByte(stream, '/')+1:]] = int64(v)
	}
	return out
}

// requireLag checks the custody_ingest_lag_events gauge has one series per
// partition and that they add up to want. The gauge is asked of the hub at
// each scrape and has no series while that management request fails (on
// a loaded machine one can time out), so it scrapes again for a while
// before it fails; a wrong sum that persists still fails.
func (c *runningCollector) requireLag(t *testing.T, partitions int, want float64) {
	t.Helper()
	var series int
	var got float64
	var err error
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		var m map[string]float64
		if m, err = scrape(c.metrics); err != nil {
			continue
		}
		series = 0
		for k := range m {
			if strings.HasPrefix(k, "custody_ingest_lag_events{") {
				series++
			}
		}
		if got = metricSum(m, "custody_ingest_lag_events"); series == partitions && got == want {
			return
		}
	}
	t.Errorf("lag: %d series adding up to %v, want %d adding up to %v (last scrape error %v)", series, got, partitions, want, err)
}

// waitFor polls the collector's metrics until cond holds.
func (c *runningCollector) waitFor(t *testing.T, what string, timeout time.Duration, cond func(map[string]float64) bool) map[string]float64 {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last map[string]float64
	var lastErr error
	for time.Now().Before(deadline) {
		select {
		case err := <-c.done:
			c.done <- err
			t.Fatalf("waiting for %s: custody run exited: %v", what, err)
		default:
		}
		m, err := scrape(c.metrics)
		if err == nil {
			last = m
			if cond(m) {
				return m
			}
		}
		lastErr = err
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("waiting for %s: not reached in %s (offsets %v, scrape error %v)", what, timeout, storedOffsets(last), lastErr)
	return nil
}

// waitStored waits until every partition in want is acknowledged up to
// its sequence number.
func (c *runningCollector) waitStored(t *testing.T, want map[string]int64) map[string]float64 {
	t.Helper()
	return c.waitFor(t, fmt.Sprintf("stored offsets %v", want), 60*time.Second, func(m map[string]float64) bool {
		got := storedOffsets(m)
		for p, seq := range want {
			if got[p] < seq {
				return false
			}
		}
		return true
	})
}

// inspect opens the store, returns the results of single-number queries
// and checks the whole trail verifies (what `custody verify` does, on the
// same engine to save a start).
func (s *e2eStore) inspect(queries ...string) []uint64 {
	s.t.Helper()
	ctx := context.Background()
	eng := s.engine()
	defer eng.Close(ctx)
	out := make([]uint64, len(queries))
	for i, q := range queries {
		out[i] = queryCount(s.t, eng, q)
	}
	verifier, err := storage.LoadVerifier(filepath.Join(s.dir, "k.pub"))
	if err != nil {
		s.t.Fatal(err)
	}
	st, err := storage.Open(ctx, eng, storage.Options{})
	if err != nil {
		s.t.Fatal(err)
	}
	rep, err := st.Verify(ctx, storage.VerifyOptions{Verifier: verifier, CheckpointDir: filepath.Join(s.dir, "cp")})
	if err != nil {
		s.t.Fatalf("verify: %v", err)
	}
	if !rep.OK() {
		for _, f := range rep.Findings {
			s.t.Log(f.String())
		}
		s.t.Errorf("verify FAILED: %d findings", len(rep.Findings))
	}
	return out
}

// requireExactly checks the trail holds exactly want events, all distinct,
// and that it verifies. It returns the results of the extra queries.
func (s *e2eStore) requireExactly(want uint64, extra ...string) []uint64 {
	s.t.Helper()
	got := s.inspect(append([]string{"SELECT count() FROM custody.events", "SELECT uniqExact(event_id) FROM custody.events"}, extra...)...)
	if got[0] != want || got[1] != want {
		s.t.Errorf("trail holds %d events (%d distinct), want exactly %d", got[0], got[1], want)
	}
	return got[2:]
}

// TestRunResumesAfterRestart stops the collector mid-stream (as SIGTERM
// does), publishes more, and restarts it: the trail ends with every event
// exactly once; on both backends.
func TestRunResumesAfterRestart(t *testing.T) { storetest.Run(t, testRunResumesAfterRestart) }

func testRunResumesAfterRestart(t *testing.T, b storetest.Backend) {
	s := newE2EStoreOn(t, b)
	br := startE2EBroker(t, 4)
	const n, m, per = 400, 200, 5
	last := publishAll(t, br, auditBodies("first", n, per, 100))

	addr := freeAddr(t)
	c := startCollector(t, s, collectorYAML(br.ConnectionString(), addr, 200), addr)
	// Stop as soon as something is stored, while the rest is in flight.
	early := c.waitFor(t, "first events stored", 60*time.Second, func(m map[string]float64) bool {
		return metricSum(m, "custody_ingest_events_out_total") > 0
	})
	c.stop(t)

	for p, seq := range publishAll(t, br, auditBodies("second", m, per, 100)) {
		last[p] = seq
	}
	addr = freeAddr(t)
	c = startCollector(t, s, collectorYAML(br.ConnectionString(), addr, 200), addr)
	c.waitStored(t, last)
	c.requireLag(t, 4, 0)
	c.stop(t)
	if got := s.requireExactly((n+m)*per, "SELECT countIf(position(raw, '\"first-') > 0) FROM custody.events")[0]; got != n*per {
		t.Errorf("the trail holds %d events of the first publication, want %d", got, n*per)
	}
	t.Logf("the first run had stored %v of %d events shortly before the stop", metricSum(early, "custody_ingest_events_out_total"), (n+m)*per)
}

// TestRunSurvivesDroppedConnections drops every broker connection
// repeatedly while the collector reads: nothing is lost or duplicated.
func TestRunSurvivesDroppedConnections(t *testing.T) {
	s := newE2EStore(t)
	br := startE2EBroker(t, 4)
	addr := freeAddr(t)
	c := startCollector(t, s, collectorYAML(br.ConnectionString(), addr, 200), addr)
	const rounds, per = 6, 4
	last := map[string]int64{}
	dropped := 0
	for r := range rounds {
		for p, seq := range publishAll(t, br, auditBodies(fmt.Sprintf("r%d", r), 200, per, 100)) {
			last[p] = seq
		}
		// Drop while the round is being read.
		c.waitFor(t, "reading", 30*time.Second, func(m map[string]float64) bool {
			return metricSum(m, "custody_ingest_messages_in_total") > float64(r*200)
		})
		dropped += br.DropConnections()
	}
	c.waitStored(t, last)
	c.stop(t)
	if accepted, _ := br.Stats(); dropped == 0 || accepted < 2 {
		t.Fatalf("dropped %d connections, broker accepted %d: the drops did not happen mid-stream", dropped, accepted)
	}
	s.requireExactly(rounds * 200 * per)
}

// enginePID is the process running the engine the collector of s writes
// to: the custody-chdb child of this process, or the server's.
func (s *e2eStore) enginePID(t *testing.T) int {
	t.Helper()
	if s.backend == storetest.Server {
		return s.server.PID()
	}
	return engineHostPID(t, os.Getpid())
}

// engineHostPID finds the custody-chdb child of this process.
func engineHostPID(t *testing.T, parent int) int {
	t.Helper()
	pid, err := childNamed(parent, "custody-chdb")
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// childNamed returns the pid of parent's child process whose command name
// is comm.
func childNamed(parent int, comm string) (int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		open, close := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
		if open < 0 || close < open || string(b[open+1:close]) != comm {
			continue
		}
		f := strings.Fields(string(b[close+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(parent) {
			return pid, nil
		}
	}
	return 0, fmt.Errorf("no %s child of pid %d", comm, parent)
}

// TestRunBackpressureWhenStoreUnavailable makes the store unavailable in
// two real ways while events keep arriving, and checks that the collector
// stops reading (the broker stops delivering once the SDK's prefetch and
// the source's hand-over slots are full, so memory is bounded), then
// catches up with nothing lost:
//
//   - the events table is detached (by the store's admin, through the
//     collector's engine), so each write fails, as on a broken disk: the
//     pipeline retries with backoff;
//   - the engine host process is frozen with SIGSTOP, so writes hang, as
//     with a stalled disk: nothing is read until it continues.
//
// On both backends (on a server, the server's process is frozen).
func TestRunBackpressureWhenStoreUnavailable(t *testing.T) {
	storetest.Run(t, testRunBackpressureWhenStoreUnavailable)
}

func testRunBackpressureWhenStoreUnavailable(t *testing.T, b storetest.Backend) {
	s := newE2EStoreOn(t, b)
	br := startE2EBroker(t, 4)
	const partitions, maxBatch, per = 4, 50, 1
	// Everything the collector may hold unacknowledged: per partition the
	// SDK's prefetch (maxBatch), a received batch waiting to be handed
	// over and one in the hand-over channel, and credit the SDK grants
	// early (a prefetch more); in the pipeline the group being written
	// (at most the queue's batches and one more), the refilled queue and
	// the batch the reader holds. Measured: 1100-1150 idle, 1350 once on
	// a loaded machine, far from the backlog it must not read through.
	const queueBatches = 4 // pipeline.queue_batches' default
	const bound = partitions*4*maxBatch + (2*queueBatches+2)*maxBatch + partitions*maxBatch
	total := 0
	last := publishAll(t, br, auditBodies("before", 100, per, 100))
	total += 100 * per

	addr := freeAddr(t)
	c := startCollector(t, s, collectorYAML(br.ConnectionString(), addr, maxBatch), addr)
	c.waitStored(t, last)

	for _, phase := range []struct {
		name          string
		fail, recover func()
		wantErrors    bool
	}{
		{name: "events table detached", wantErrors: true, fail: func() {
			admin(t, s, "DETACH TABLE custody.events")
		}, recover: func() {
			admin(t, s, "ATTACH TABLE custody.events")
		}},
		{name: "engine host frozen", fail: func() {
			if err := syscall.Kill(s.enginePID(t), syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
		}, recover: func() {
			if err := syscall.Kill(s.enginePID(t), syscall.SIGCONT); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		base := br.Delivered()
		before, err := scrape(c.metrics)
		if err != nil {
			t.Fatal(err)
		}
		phase.fail()
		const backlog = 2000
		for p, seq := range publishAll(t, br, auditBodies(strings.ReplaceAll(phase.name, " ", "-"), backlog, per, 100)) {
			last[p] = seq
		}
		total += backlog * per
		if phase.wantErrors {
			c.waitFor(t, phase.name+": failing writes retried", 30*time.Second, func(m map[string]float64) bool {
				return metricSum(m, "custody_ingest_retries_total") >= metricSum(before, "custody_ingest_retries_total")+3
			})
		}
		// Delivery stops: the count holds still for 1s.
		held, since := br.Delivered(), time.Now()
		for time.Since(since) < time.Second {
			time.Sleep(100 * time.Millisecond)
			if d := br.Delivered(); d != held {
				held, since = d, time.Now()
			}
		}
		if got := held - base; got > bound || got >= backlog {
			t.Errorf("%s: the broker delivered %d of %d events while the store was unavailable, want at most %d", phase.name, got, backlog, bound)
		}
		after, err := scrape(c.metrics)
		if err != nil {
			t.Fatal(err)
		}
		// Nothing of the backlog was acknowledged, and the lag says so.
		c.requireLag(t, partitions, backlog)
		if !phase.wantErrors && metricSum(after, "custody_ingest_events_out_total") != metricSum(before, "custody_ingest_events_out_total") {
			// The frozen host may have taken one batch before it stopped;
			// anything more means the pipeline is not waiting.
			if d := metricSum(after, "custody_ingest_events_out_total") - metricSum(before, "custody_ingest_events_out_total"); d > maxBatch*per {
				t.Errorf("%s: %v events stored while the engine was frozen", phase.name, d)
			}
		}
		t.Logf("%s: delivered %d of %d events, then held", phase.name, held-base, backlog)
		phase.recover()
		c.waitStored(t, last)
		c.requireLag(t, partitions, 0)
	}
	c.stop(t)
	s.requireExactly(uint64(total))
}

// TestRunQuarantinesPoisonMessages publishes a body that is not JSON and a
// body with one bad record among good ones: both bad parts are
// quarantined with a reason and the stream goes on; on both backends.
func TestRunQuarantinesPoisonMessages(t *testing.T) {
	storetest.Run(t, testRunQuarantinesPoisonMessages)
}

func testRunQuarantinesPoisonMessages(t *testing.T, b storetest.Backend) {
	s := newE2EStoreOn(t, b)
	br := startE2EBroker(t, 2)
	good := auditBodies("good", 3, 2, 50)
	mixed := []byte(`{"records":[` + auditRecord("mixed-1", 50) +
		`,{"time":"2026-11-27T10:00:00Z","category":"kube-audit","properties":{"log":"{\"kind\":\"Event\",\"auditID\":"}},` +
		auditRecord("mixed-2", 50) + `]}`)
	if _, err := br.Publish("0", good[0], []byte("\x00\x01 not json at all"), mixed, good[1]); err != nil {
		t.Fatal(err)
	}
	last, err := br.Publish("1", good[2])
	if err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	c := startCollector(t, s, collectorYAML(br.ConnectionString(), addr, 200), addr)
	m := c.waitStored(t, map[string]int64{"0": 3, "1": last})
	c.stop(t)
	if q := metricSum(m, "custody_ingest_quarantined_total"); q != 2 {
		t.Errorf("quarantined_total = %v, want 2", q)
	}
	got := s.requireExactly(3*2+2,
		"SELECT count() FROM custody.quarantine",
		"SELECT count() FROM custody.quarantine WHERE source_offset = 1 AND reason != '' AND raw = '\\x00\\x01 not json at all'",
		"SELECT count() FROM custody.quarantine WHERE source_offset = 2 AND position(reason, 'properties.log holds invalid JSON') > 0",
		"SELECT count() FROM custody.events WHERE source_offset = 3",
	)
	if want := []uint64{2, 1, 1, 2}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("quarantine rows, not-JSON body, bad record, events after the poison = %v, want %v", got, want)
	}
}

// TestRunTwoCollectorsSplitPartitions runs two collectors at once with
// static assignment, A on partitions 0-1 and B on 2-3. The embedded store
// admits one process, so there each has its own store (as two collector
// hosts would): each store holds exactly its partitions, and the union is
// the hub with no event in both. On a server both write to one store,
// which then holds the hub exactly once, each partition's events in its
// own chain.
func TestRunTwoCollectorsSplitPartitions(t *testing.T) {
	storetest.Run(t, testRunTwoCollectorsSplitPartitions)
}

func testRunTwoCollectorsSplitPartitions(t *testing.T, backend storetest.Backend) {
	a := newE2EStoreOn(t, backend)
	b := a
	if backend == storetest.Embedded {
		b = newE2EStoreOn(t, backend)
	}
	br := startE2EBroker(t, 4)
	const bodies, per = 400, 3
	last := publishAll(t, br, auditBodies("split", bodies, per, 100))
	addrA, addrB := freeAddr(t), freeAddr(t)
	ca := startCollector(t, a, collectorYAML(br.ConnectionString(), addrA, 200, "0", "1"), addrA)
	cb := startCollector(t, b, collectorYAML(br.ConnectionString(), addrB, 200, "2", "3"), addrB)
	ca.waitStored(t, map[string]int64{"0": last["0"], "1": last["1"]})
	cb.waitStored(t, map[string]int64{"2": last["2"], "3": last["3"]})
	ca.stop(t)
	cb.stop(t)

	perStore := func(s *e2eStore, parts ...string) uint64 {
		var n int64
		for _, p := range parts {
			n += last[p] + 1
		}
		return uint64(n) * per
	}
	foreign := func(parts ...string) string {
		return fmt.Sprintf("SELECT count() FROM custody.events WHERE splitByChar('/', chain)[-1] IN ('%s')", strings.Join(parts, "', '"))
	}
	if backend == storetest.Server {
		got := a.requireExactly(bodies*per, foreign("0", "1"), foreign("2", "3"))
		if want := []uint64{perStore(a, "0", "1"), perStore(b, "2", "3")}; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("events of partitions 0-1 and 2-3 = %v, want %v", got, want)
		}
		return
	}
	if n := a.requireExactly(perStore(a, "0", "1"), foreign("2", "3"))[0]; n != 0 {
		t.Errorf("collector A stored %d events of B's partitions", n)
	}
	if n := b.requireExactly(perStore(b, "2", "3"), foreign("0", "1"))[0]; n != 0 {
		t.Errorf("collector B stored %d events of A's partitions", n)
	}
	if got := perStore(a, "0", "1") + perStore(b, "2", "3"); got != bodies*per {
		t.Errorf("the two stores hold %d events together, the hub %d", got, bodies*per)
	}
}

// buildCustody builds custody and custody-chdb into a temporary directory.
func buildCustody(t testing.TB) string {
	t.Helper()
	root := chdbtest.RepoRoot(t)
	bin := t.TempDir()
	for _, c := range []string{"custody", "custody-chdb"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(bin, c), "./cmd/"+c)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", c, err, out)
		}
	}
	return bin
}

// childCollector is `custody run` as a child process.
type childCollector struct {
	cmd     *exec.Cmd
	metrics string
	stderr  *bytes.Buffer
	done    chan error
}

func startChildCollector(t testing.TB, bin, dir, yaml, metricsAddr, logLevel string) *childCollector {
	t.Helper()
	cfg := filepath.Join(dir, "custody.yaml")
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	c := &childCollector{metrics: "http://" + metricsAddr, stderr: new(bytes.Buffer), done: make(chan error, 1)}
	c.cmd = exec.Command(filepath.Join(bin, "custody"), "--config", cfg, "--log-level", logLevel, "run")
	c.cmd.Env = append(os.Environ(),
		"CUSTODY_STORE="+filepath.Join(dir, "store"),
		"CUSTODY_SIGNING_KEY="+filepath.Join(dir, "k"),
		"CUSTODY_VERIFY_KEY="+filepath.Join(dir, "k.pub"),
		"CUSTODY_CHECKPOINT_DIR="+filepath.Join(dir, "cp"),
		"CUSTODY_CHDB_HOST="+filepath.Join(bin, "custody-chdb"),
	)
	c.cmd.Stdout, c.cmd.Stderr = c.stderr, c.stderr
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.done <- c.cmd.Wait() }()
	t.Cleanup(func() {
		_ = c.cmd.Process.Kill()
		<-c.done
		c.done <- nil
	})
	return c
}

// sigterm stops the child as an orchestrator would and requires exit 0.
func (c *childCollector) sigterm(t testing.TB) {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-c.done:
		c.done <- err
		if err != nil {
			t.Fatalf("custody run after SIGTERM: %v (want exit 0)\n%s", err, c.stderr)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("custody run ignored SIGTERM for 60s\n%s", c.stderr)
	}
}

func (c *childCollector) waitStored(t testing.TB, want map[string]int64, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case err := <-c.done:
			c.done <- err
			t.Fatalf("custody run exited: %v\n%s", err, c.stderr)
		default:
		}
		if m, err := scrape(c.metrics); err == nil {
			got, ok := storedOffsets(m), true
			for p, seq := range want {
				ok = ok && got[p] >= seq
			}
			if ok {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("stored offsets %v not reached in %s\n%s", want, timeout, c.stderr)
}

// TestRunNeverLogsSecrets runs the collector binary at debug level with a
// distinctive SharedAccessKey, through connection drops and a refused
// reconnect, stops it with SIGTERM, and checks the key is in none of its
// output nor its metrics. On a server, the collector account's password
// (in the DSN of its config file) is searched for too, after writes that
// failed for a while (the events table detached).
func TestRunNeverLogsSecrets(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the custody binary")
	}
	bin := buildCustody(t)
	storetest.Run(t, func(t *testing.T, b storetest.Backend) { testRunNeverLogsSecrets(t, b, bin) })
}

func testRunNeverLogsSecrets(t *testing.T, b storetest.Backend, bin string) {
	s := newE2EStoreOn(t, b)
	br := startE2EBroker(t, 2)
	var raw [32]byte
	_, _ = rand.Read(raw[:])
	key := base64.StdEncoding.EncodeToString(raw[:])
	cs := "Endpoint=sb://" + br.Addr() + ";SharedAccessKeyName=custody-listen;SharedAccessKey=" + key + ";UseDevelopmentEmulator=true;EntityPath=" + e2eHub

	last := publishAll(t, br, auditBodies("secret", 100, 2, 50))
	addr := freeAddr(t)
	c := startChildCollector(t, bin, s.dir, collectorYAML(cs, addr, 200)+s.storeYAML(storage.UserCollector), addr, "debug")
	c.waitStored(t, last, 60*time.Second)
	// Errors are where secrets leak: break the connection and refuse the
	// reconnect for a while, so reconnect failures are logged.
	br.Refuse(true)
	br.DropConnections()
	time.Sleep(1500 * time.Millisecond)
	br.Refuse(false)
	for p, seq := range publishAll(t, br, auditBodies("secret-after", 100, 2, 50)) {
		last[p] = seq
	}
	c.waitStored(t, last, 60*time.Second)
	secrets := []string{key, url64(key)}
	stored := uint64(400)
	if b == storetest.Server {
		pw, _ := s.server.Password(storage.UserCollector)
		secrets = append(secrets, pw, url.QueryEscape(pw))
		admin(t, s, "DETACH TABLE custody.events")
		for p, seq := range publishAll(t, br, auditBodies("secret-store", 50, 2, 50)) {
			last[p] = seq
		}
		stored += 100
		time.Sleep(1500 * time.Millisecond)
		admin(t, s, "ATTACH TABLE custody.events")
		c.waitStored(t, last, 60*time.Second)
	}
	m, err := http.Get(c.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(m.Body)
	m.Body.Close()
	c.sigterm(t)

	logs := c.stderr.String()
	// The namespace (the broker's address) is logged, so the log is the
	// right text to search; the key next to it in the string must not be.
	wants := []string{`"msg":"collector running"`, `"level":"WARN"`, `"msg":"pipeline stopped"`, br.Addr()}
	if b == storetest.Server {
		wants = append(wants, `"msg":"store write failed; retrying"`)
	}
	for _, want := range wants {
		if !strings.Contains(logs, want) {
			t.Errorf("collector log lacks %s; the test did not exercise what it should:\n%s", want, logs)
		}
	}
	for name, text := range map[string]string{"log": logs, "metrics": string(metrics)} {
		for i, secret := range secrets {
			if strings.Contains(text, secret) {
				t.Errorf("a secret (%d: %s) appears in the collector's %s", i, []string{"the SharedAccessKey", "the SharedAccessKey", "the store password", "the store password"}[i], name)
			}
		}
	}
	if engineLog, err := os.ReadFile(filepath.Join(s.dir, "store", "engine.log")); err == nil && bytes.Contains(engineLog, []byte(key)) {
		t.Error("the SharedAccessKey appears in the engine log")
	}
	s.requireExactly(stored)
}

// url64 is how a key looks once query-escaped.
func url64(key string) string {
	r := strings.NewReplacer("+", "%2B", "/", "%2F", "=", "%3D")
	return r.Replace(key)
}

// admin runs statement on the store the collector of s writes to, as its
// admin: on the embedded store through the collector's engine.
func admin(t *testing.T, s *e2eStore, statement string) {
	t.Helper()
	ctx := context.Background()
	var eng engine.Engine
	if s.backend == storetest.Server {
		eng = storetest.Connect(t, s.server, chdb.AdminUser)
	} else {
		var err error
		if eng, err = chdb.Attach(ctx, filepath.Join(s.dir, "store"), chdb.AdminUser, false); err != nil {
			t.Fatal(err)
		}
	}
	defer eng.Close(ctx)
	if err := eng.Exec(ctx, statement, nil); err != nil {
		t.Fatalf("%s: %v", statement, err)
	}
}
