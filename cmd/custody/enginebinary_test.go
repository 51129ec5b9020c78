package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custody-audit/custody/internal/chdbtest"
)

// TestEngineBinary runs the commands on an embedded store whose engine
// runs from a clickhouse binary (--engine-binary; here chdbtest's stand-in
// with the official binary's `clickhouse local` command line), and checks
// that a binary that is not there is an error, not a fall back to libchdb.
func TestEngineBinary(t *testing.T) {
	chdbtest.RequireLibrary(t)
	t.Setenv("CUSTODY_CHDB_HOST", chdbtest.HostPath(t))
	binary := chdbtest.ClickHouseBinary(t)
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	runCtx := func(ctx context.Context, engineBinary string, args ...string) (string, error) {
		var out bytes.Buffer
		app := newApp()
		app.Writer, app.ErrWriter = &out, &out
		err := app.Run(ctx, append([]string{"custody", "--store", store, "--engine-binary", engineBinary,
			"--signing-key", filepath.Join(dir, "k"), "--verify-key", filepath.Join(dir, "k.pub"),
			"--checkpoint-dir", filepath.Join(dir, "checkpoints")}, args...))
		return out.String(), err
	}
	run := func(engineBinary string, args ...string) (string, error) {
		return runCtx(context.Background(), engineBinary, args...)
	}
	must := func(args ...string) string {
		t.Helper()
		out, err := run(binary, args...)
		if err != nil {
			t.Fatalf("custody %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	must("keygen")
	must("init")
	pt1h := filepath.Join(chdbtest.RepoRoot(t), "queries", "testdata", "deliveries", "PT1H.json")
	must("append", "--format", "archive", "--stream", "archive/PT1H.json", pt1h)
	var status struct {
		Chains []struct {
			Events uint64 `json:"events"`
		} `json:"chains"`
	}
	if err := json.Unmarshal([]byte(must("status", "--format", "json")), &status); err != nil {
		t.Fatal(err)
	}
	if len(status.Chains) != 1 || status.Chains[0].Events != 5 {
		t.Fatalf("status chains %+v, want one chain of 5 events", status.Chains)
	}
	must("verify")

	// custody serve (runServe) answers over the same store until stopped.
	port := freeLoopbackPort(t)
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		out, err := runCtx(ctx, binary, "serve", "--listen", "127.0.0.1:"+port)
		if err != nil {
			err = fmt.Errorf("%w\n%s", err, out)
		}
		served <- err
	}()
	var integrity string
	for deadline := time.Now().Add(time.Minute); integrity == ""; {
		select {
		case err := <-served:
			t.Fatalf("serve ended before answering: %v", err)
		default:
		}
		if resp, err := http.Get("http://127.0.0.1:" + port + "/api/integrity"); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("/api/integrity: %s\n%s", resp.Status, b)
			}
			integrity = string(b)
		} else if time.Now().After(deadline) {
			t.Fatalf("serve did not answer: %v", err)
		} else {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if !strings.Contains(integrity, `"archive/PT1H.json"`) {
		t.Errorf("/api/integrity does not show the chain:\n%s", integrity)
	}
	stop()
	if err := <-served; err != nil {
		t.Fatalf("serve, stopped: %v", err)
	}

	// Every start of the engine is in the store's engine.log, with what
	// ran it: here the binary, five times (init, append, status, verify,
	// serve).
	log, err := os.ReadFile(filepath.Join(store, "engine.log"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(log), "run by "+binary+" local (pid "); n != 5 {
		t.Fatalf("engine.log names %s local %d times, want 5:\n%s", binary, n, log)
	}
	if strings.Contains(string(log), "run by libchdb") {
		t.Fatalf("engine.log says libchdb ran the engine:\n%s", log)
	}

	missing := filepath.Join(dir, "no-such-clickhouse")
	if out, err := run(missing, "status"); err == nil || !strings.Contains(err.Error(), "clickhouse binary for the embedded engine") {
		t.Fatalf("status with a missing engine binary: %v\n%s", err, out)
	}
}

// freeLoopbackPort returns a loopback TCP port nothing listens on now.
func freeLoopbackPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}
