package main

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/custody-audit/custody/internal/chdbtest"
	"github.com/custody-audit/custody/storage/engine"
)

// The tests in this file kill the embedded engine's host process (the
// custody-chdb child of this test process) with SIGKILL under a running
// backfill and a running collector: both must notice at once and exit
// with engine.ErrEngineGone instead of retrying for ever, and a rerun
// must store the rest exactly once.

// pt1hLines returns n kube-audit-admin PT1H.json lines (see writePT1H).
func pt1hLines(from, n int) string {
	var b strings.Builder
	for i := from; i < from+n; i++ {
		log := fmt.Sprintf(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"gone-%04d","stage":"ResponseComplete",`+
			`"requestURI":"/api/v1/namespaces/payments/secrets/db-%d","verb":"get","user":{"username":"alice@contoso.com"},"sourceIPs":["20.61.12.7"],`+
			`"objectRef":{"resource":"secrets","apiVersion":"v1","namespace":"payments","name":"db-%d"},"responseStatus":{"metadata":{},"code":200},`+
			`"requestReceivedTimestamp":"2025-05-06T09:%02d:00.000000Z","stageTimestamp":"2025-05-06T09:%02d:00.100000Z"}`, i, i, i, i%60, i%60)
		fmt.Fprintf(&b, `{"category": "kube-audit-admin", "operationName": "Microsoft.ContainerService/managedClusters/diagnosticLogs/Read", "properties": {"log": %q, "pod": "kube-apiserver-0"}, "resourceId": "/SUBSCRIPTIONS/4F1A2B3C-0000-4000-8000-00000000C0DE/RESOURCEGROUPS/PROD-RG/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/PROD-AKS", "time": "2025-05-06T09:%02d:00.200000Z"}`+"\n", log+"\n", i%60)
	}
	return b.String()
}

// TestBackfillExitsWhenEngineKilled feeds a backfill through a FIFO, so
// the engine can be killed at a known point: after the first lines, with
// the backfill waiting for more. The next write meets the dead engine and
// the backfill exits with ErrEngineGone and a message that says so (it
// used to retry every 30 s for ever). Rerun over the whole file, it
// stores the rest: every event once.
func TestBackfillExitsWhenEngineKilled(t *testing.T) {
	chdbtest.RequireLibrary(t)
	t.Setenv("CUSTODY_CHDB_HOST", chdbtest.HostPath(t))
	dir := t.TempDir()
	for _, args := range [][]string{{"keygen"}, {"init"}} {
		if _, err := custodyCLI(t, dir, args...); err != nil {
			t.Fatalf("%s: %v", args[0], err)
		}
	}
	fifo := filepath.Join(dir, "growing.jsonl")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := custodyCLI(t, dir, "backfill", "--batch", "1", "--format", "jsonlines", fifo)
		done <- err
	}()
	w, err := os.OpenFile(fifo, os.O_WRONLY, 0) // waits for the backfill to open it
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.WriteString(pt1hLines(1, 3)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // let the first lines reach the store (not required)
	if err := syscall.Kill(engineHostPID(t, os.Getpid()), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteString(pt1hLines(4, 3)); err != nil {
		t.Fatal(err)
	}
	w.Close()
	select {
	case err = <-done:
	case <-time.After(2 * time.Minute):
		t.Fatal("backfill still running 2 minutes after its engine was killed")
	}
	if !errors.Is(err, engine.ErrEngineGone) {
		t.Fatalf("backfill = %v, want an error wrapping engine.ErrEngineGone", err)
	}
	for _, want := range []string{"engine process exited", "engine.log", "run the same command again to resume"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q lacks %q", err, want)
		}
	}

	// The same path, now a complete file: the rerun stores what is missing.
	if err := os.Remove(fifo); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(fifo, []byte(pt1hLines(1, 6)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := custodyCLI(t, dir, "backfill", "--format", "jsonlines", fifo); err != nil {
		t.Fatalf("rerun: %v", err)
	}
	out, err := custodyCLI(t, dir, "sql", "--format", "tsv", "SELECT count(), uniqExact(event_id) FROM custody.events")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Fields(out); len(got) < 2 || got[len(got)-2] != "6" || got[len(got)-1] != "6" {
		t.Errorf("after the rerun the store holds %q, want 6 events, 6 distinct", out)
	}
}

// TestRunExitsWhenEngineKilled kills the engine under an idle collector:
// nothing is being written, yet it stops being ready and exits at once
// with ErrEngineGone; started again, it resumes from the stored positions.
func TestRunExitsWhenEngineKilled(t *testing.T) {
	s := newE2EStore(t)
	br := startE2EBroker(t, 2)
	last := publishAll(t, br, auditBodies("before", 20, 2, 50))
	addr := freeAddr(t)
	yaml := collectorYAML(br.ConnectionString(), addr, 50)
	c := startCollector(t, s, yaml, addr)
	c.waitStored(t, last)

	if err := syscall.Kill(engineHostPID(t, os.Getpid()), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var err error
	notReady := false
wait:
	for deadline := time.Now().Add(2 * time.Minute); ; {
		select {
		case err = <-c.done:
			c.done <- nil // for the cleanup
			break wait
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("custody run still running 2 minutes after its engine was killed")
		}
		if resp, err := http.Get(c.metrics + "/readyz"); err == nil {
			notReady = notReady || resp.StatusCode == http.StatusServiceUnavailable
			resp.Body.Close()
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !errors.Is(err, engine.ErrEngineGone) {
		t.Fatalf("custody run = %v, want an error wrapping engine.ErrEngineGone", err)
	}
	if !strings.Contains(err.Error(), "resumes from the positions in the store") {
		t.Errorf("message %q does not say how it recovers", err)
	}
	t.Logf("exit: %v (a 503 from /readyz seen before it: %v)", err, notReady)

	for p, seq := range publishAll(t, br, auditBodies("after", 20, 2, 50)) {
		last[p] = seq
	}
	c = startCollector(t, s, yaml, addr)
	c.waitStored(t, last)
	c.stop(t)
	s.requireExactly(80)
}
