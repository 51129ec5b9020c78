package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/custody-audit/custody/internal/chdbtest"
	"github.com/custody-audit/custody/storage/chdb"
)

// TestInvestigateWhileCollecting: while one custody process appends to an
// embedded store (reading a FIFO the test holds open, so it owns the store
// for as long as the test wants), read-only commands in other processes
// connect to its engine, and a second appender is refused with a message
// naming the owning custody process.
func TestInvestigateWhileCollecting(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real processes")
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
	store := filepath.Join(dir, "store")
	env := append(os.Environ(),
		"CUSTODY_STORE="+store,
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
		t.Helper()
		out, err := custody(args...).CombinedOutput()
		if err != nil {
			t.Fatalf("custody %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	run("keygen")
	run("init")
	bodies := filepath.Join(dir, "bodies.jsonl")
	writeAuditBodies(t, bodies, 300)
	run("append", "--format", "eventhubs", "--stream", "first", bodies)

	fifo := filepath.Join(dir, "feed")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	collector := custody("append", "--format", "eventhubs", "--stream", "live", fifo)
	if err := collector.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- collector.Wait() }()
	feed, err := os.OpenFile(fifo, os.O_WRONLY, 0) // blocks until the collector opens it
	if err != nil {
		t.Fatal(err)
	}
	defer feed.Close()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		if _, err := chdb.ReadEndpoint(store); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the collector's engine never published its endpoint")
		}
	}

	if out := run("status"); !strings.Contains(out, "first") {
		t.Fatalf("status while collecting:\n%s", out)
	}
	if out := run("sql", "--format", "tsv", "SELECT count() FROM custody.events"); !strings.Contains(out, "300") {
		t.Fatalf("sql while collecting:\n%s", out)
	}
	if out := run("verify"); !strings.Contains(out, "verify OK") {
		t.Fatalf("verify while collecting:\n%s", out)
	}
	out, err := custody("append", "--format", "eventhubs", "--stream", "second", bodies).CombinedOutput()
	want := fmt.Sprintf("in use by custody process %d", collector.Process.Pid)
	if err == nil || !strings.Contains(string(out), want) {
		t.Fatalf("a second appender: %v\n%s\nwant a refusal saying %q", err, out, want)
	}

	// The collector goes on to store what it is fed.
	live, err := os.ReadFile(bodies)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := feed.Write(live); err != nil {
		t.Fatal(err)
	}
	feed.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("collector: %v", err)
		}
	case <-time.After(2 * time.Minute):
		_ = collector.Process.Kill()
		t.Fatal("the collector did not finish")
	}
	if out := run("sql", "--format", "tsv", "SELECT count() FROM custody.events WHERE chain = 'live'"); !strings.Contains(out, "300") {
		t.Fatalf("after collecting:\n%s", out)
	}
}
