package main

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/custody-audit/custody/internal/chdbtest"
)

// TestSIGKILLNeverLosesOrDuplicates appends a file in a child custody
// process, kills it with SIGKILL at random moments, restarts it, and after
// every restart checks that the trail verifies and holds exactly the
// events of the lines the store says it has, no more, no fewer.
func TestSIGKILLNeverLosesOrDuplicates(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test runs real processes")
	}
	chdbtest.RequireLibrary(t)
	root := chdbtest.RepoRoot(t)
	bin := t.TempDir()
	for _, c := range []string{"custody", "custody-chdb"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(bin, c), "./cmd/"+c)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", c, err, out)
		}
	}
	dir := t.TempDir()
	const lines = 4000
	input := filepath.Join(dir, "bodies.jsonl")
	writeAuditBodies(t, input, lines)
	env := append(os.Environ(),
		"CUSTODY_STORE="+filepath.Join(dir, "store"),
		"CUSTODY_SIGNING_KEY="+filepath.Join(dir, "k"),
		"CUSTODY_VERIFY_KEY="+filepath.Join(dir, "k.pub"),
		"CUSTODY_CHECKPOINT_DIR="+filepath.Join(dir, "cp"),
		"CUSTODY_CHDB_HOST="+filepath.Join(bin, "custody-chdb"),
	)
	custody := func(args ...string) *exec.Cmd {
		c := exec.Command(filepath.Join(bin, "custody"), args...)
		c.Env = env
		return c
	}
	run := func(args ...string) string {
		out, err := custody(args...).CombinedOutput()
		if err != nil {
			t.Fatalf("custody %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	run("keygen")
	run("init")
	rng := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
	kills := 0
	for round := 0; round < 30 && kills < 8; round++ {
		c := custody("append", "--format", "eventhubs", "--stream", "crash", "--batch", "100", input)
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- c.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("append exited: %v", err)
			}
		case <-time.After(time.Duration(300+rng.IntN(1500)) * time.Millisecond):
			_ = c.Process.Signal(syscall.SIGKILL)
			<-done
			kills++
		}
		// The engine host dies with its parent; wait for the store lock.
		var out string
		for i := 0; i < 50; i++ {
			o, err := custody("sql", "--format", "tsv", "SELECT count(), uniqExact(event_id), max(source_offset) FROM custody.events WHERE chain = 'crash'").CombinedOutput()
			if err == nil {
				out = string(o)
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		f := strings.Fields(strings.Split(strings.TrimSpace(out), "\n")[1])
		var count, unique, maxOffset int
		fmt.Sscan(f[0], &count)
		fmt.Sscan(f[1], &unique)
		fmt.Sscan(f[2], &maxOffset)
		if count != unique || count != maxOffset {
			t.Fatalf("after kill %d: %d events, %d distinct, lines stored up to %d: lost or duplicated events", kills, count, unique, maxOffset)
		}
		if out := run("verify"); !strings.Contains(out, "verify OK") {
			t.Fatalf("after kill %d verify: %s", kills, out)
		}
	}
	if kills == 0 {
		t.Fatal("the appender was never killed: make the input larger")
	}
	run("append", "--format", "eventhubs", "--stream", "crash", input)
	out := run("sql", "--format", "tsv", "SELECT count(), uniqExact(event_id) FROM custody.events")
	if got := strings.Fields(strings.Split(strings.TrimSpace(out), "\n")[1]); got[0] != fmt.Sprint(lines) || got[1] != fmt.Sprint(lines) {
		t.Fatalf("after %d kills the trail holds %v events, want %d", kills, got, lines)
	}
	if out := run("verify"); !strings.Contains(out, "verify OK") {
		t.Fatalf("final verify: %s", out)
	}
	t.Logf("%d SIGKILLs, %d events, no loss, no duplicate", kills, lines)
}

// writeAuditBodies writes n Event Hubs bodies, one kube-audit record each
// (write verbs, kept by the noise policy), one per line.
func writeAuditBodies(t *testing.T, path string, n int) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	pad := strings.Repeat("x", 600)
	for i := 1; i <= n; i++ {
		inner := fmt.Sprintf(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"crash-%06d","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/prod/configmaps/c%d","verb":"update","user":{"username":"alice@contoso.com","groups":["system:authenticated"]},"sourceIPs":["203.0.113.7"],"userAgent":"kubectl/v1.31 %s","objectRef":{"resource":"configmaps","namespace":"prod","name":"c%d","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-11-27T10:00:00.000000Z","stageTimestamp":"2026-11-27T10:00:00.100000Z"}`, i, i, pad, i)
		rec := fmt.Sprintf(`{"records":[{"time":"2026-11-27T10:00:00.1000000Z","resourceId":"/SUBSCRIPTIONS/S/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/AKS1","category":"kube-audit","operationName":"Microsoft.ContainerService/managedClusters/diagnosticLogs/Read","properties":{"log":%q,"stream":"stdout","pod":"kube-apiserver-1"}}]}`, inner+"\n")
		fmt.Fprintln(w, rec)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()
}
