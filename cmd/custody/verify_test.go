package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/custody-audit/custody/internal/azurite"
	"github.com/custody-audit/custody/internal/chdbtest"
	"github.com/custody-audit/custody/internal/storetest"
	"github.com/custody-audit/custody/storage"
)

// TestVerifySince keeps a copy of the checkpoint directory, truncates the
// trail with its stored checkpoints behind Custody's back and removes the
// checkpoint directory: verify alone warns that nothing outside the store
// covers the chain, verify --since the kept copy fails. On both backends.
func TestVerifySince(t *testing.T) { storetest.Run(t, testVerifySince) }

func testVerifySince(t *testing.T, b storetest.Backend) {
	s := newCLIStore(t, b)
	dir := s.dir
	custodyCLI := func(_ *testing.T, _ string, args ...string) (string, error) { return s.cli(args...) }
	arch := filepath.Join(dir, "archive")
	writePT1H(t, arch, 25)
	for _, args := range [][]string{{"keygen"}, {"init"}, {"backfill", "--batch", "4", arch}} {
		s.mustCLI(args...)
	}
	kept := filepath.Join(dir, "kept")
	if err := os.CopyFS(kept, os.DirFS(filepath.Join(dir, "cp"))); err != nil {
		t.Fatal(err)
	}

	out, err := custodyCLI(t, dir, "verify", "--since", kept, "--format", "json")
	if err != nil {
		t.Fatalf("verify --since before tampering: %v\n%s", err, out)
	}
	var rep struct {
		OK     bool `json:"ok"`
		Report struct {
			External    int `json:"external_checkpoints"`
			Consistency []struct {
				OK   bool   `json:"ok"`
				From uint64 `json:"from_size"`
				To   uint64 `json:"to_size"`
			} `json:"consistency"`
			Findings []struct {
				Kind     string `json:"kind"`
				Severity string `json:"severity"`
			} `json:"findings"`
		} `json:"report"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !rep.OK || len(rep.Report.Consistency) != 1 || !rep.Report.Consistency[0].OK || rep.Report.Consistency[0].To != 25 || len(rep.Report.Findings) != 0 || rep.Report.External != 2 {
		t.Fatalf("verify --since before tampering: %s", out)
	}

	eng := s.engine()
	for _, q := range []string{
		"ALTER TABLE custody.events DELETE WHERE seq > 10 SETTINGS mutations_sync = 2",
		"ALTER TABLE custody.checkpoints DELETE WHERE tree_size > 10 SETTINGS mutations_sync = 2",
	} {
		if err := eng.Exec(context.Background(), q, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := eng.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "cp")); err != nil {
		t.Fatal(err)
	}

	out, err = custodyCLI(t, dir, "verify")
	if err != nil || !strings.HasPrefix(out, "no_external_checkpoint: chain ") || !strings.Contains(out, "verify OK: 1 chains, 10 rows") {
		t.Fatalf("verify without the kept checkpoints: %v\n%s", err, out)
	}
	out, err = custodyCLI(t, dir, "verify", "--since", kept)
	if _, silent := err.(silentError); !silent || !strings.HasPrefix(out, "truncated: chain ") || !strings.Contains(out, "\ninconsistent: chain ") || !strings.Contains(out, "verify FAILED") {
		t.Fatalf("verify --since after truncation: %v\n%s", err, out)
	}
	if _, err := custodyCLI(t, dir, "verify", "--since", filepath.Join(dir, "nothing")); err == nil || !strings.Contains(err.Error(), "--since: read kept checkpoint") {
		t.Fatalf("verify --since a missing file: %v", err)
	}
	// status shows the last verification
	out, err = custodyCLI(t, dir, "status")
	if err != nil || !regexp.MustCompile(`\nlast verify: \S+ by cli \(\S+\): failed, 10 rows, 2 errors, 0 warnings\n`).MatchString(out) {
		t.Fatalf("status: %v\n%s", err, out)
	}
}

// TestVerifyPublished publishes the checkpoints as the collector does to
// a Blob container (Azurite), truncates the trail with its stored
// checkpoints and rolls back the checkpoint file: verify alone passes,
// verify --published fails.
func TestVerifyPublished(t *testing.T) {
	chdbtest.RequireLibrary(t)
	t.Setenv("CUSTODY_CHDB_HOST", chdbtest.HostPath(t))
	ctx := context.Background()
	az := azurite.Start(t)
	if _, err := az.Client.CreateContainer(ctx, "checkpoints", nil); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "custody.yaml")
	if err := os.WriteFile(cfgPath, []byte("checkpoint_publish:\n  connection_string: \""+az.ConnectionString+"\"\n  container: checkpoints\n  interval: 1m\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	arch := filepath.Join(dir, "archive")
	writePT1H(t, arch, 25)
	for _, args := range [][]string{{"keygen"}, {"init"}, {"backfill", "--batch", "4", arch}} {
		if _, err := custodyCLI(t, dir, args...); err != nil {
			t.Fatalf("%s: %v", args[0], err)
		}
	}
	if _, err := custodyCLI(t, dir, "verify", "--published"); err == nil || !strings.Contains(err.Error(), "--published needs --config with a checkpoint_publish section") {
		t.Fatalf("verify --published without a config: %v", err)
	}
	cfg, err := loadPublishConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	w, err := openWitness(*cfg)
	if err != nil {
		t.Fatal(err)
	}
	eng := chdbtest.Open(t, filepath.Join(dir, "store"))
	st, err := storage.Open(ctx, eng, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	p := &publishLoop{store: st, witness: w, interval: time.Minute, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if err := p.once(ctx); err != nil {
		t.Fatal(err)
	}
	files, err := os.ReadDir(filepath.Join(dir, "cp"))
	if err != nil || len(files) != 1 {
		t.Fatalf("checkpoint directory: %v %v", files, err)
	}
	for _, q := range []string{
		"ALTER TABLE custody.events DELETE WHERE seq > 10 SETTINGS mutations_sync = 2",
		"ALTER TABLE custody.checkpoints DELETE WHERE tree_size > 10 SETTINGS mutations_sync = 2",
	} {
		if err := eng.Exec(ctx, q, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := eng.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "cp", files[0].Name())); err != nil {
		t.Fatal(err)
	}
	out, err := custodyCLI(t, dir, "--config", cfgPath, "verify", "--published")
	if _, silent := err.(silentError); !silent || !strings.HasPrefix(out, "truncated: chain ") || !strings.Contains(out, "(published file%2F") || !strings.Contains(out, "verify FAILED") {
		t.Fatalf("verify --published after truncation: %v\n%s", err, out)
	}
}

// TestVerifyReadOnlyStore: on a store directory it cannot write, verify
// says why it cannot run and what to do, instead of the engine's error
// about its log file. Root writes anywhere, so as root the command runs
// as nobody (setpriv).
func TestVerifyReadOnlyStore(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "custody")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	top, err := os.MkdirTemp("", "custody-ro-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod(filepath.Join(top, "store"), 0o755); _ = os.RemoveAll(top) })
	store := filepath.Join(top, "store")
	if err := os.MkdirAll(filepath.Join(store, "clickhouse"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, vkey, err := storage.GenerateKey("ro")
	if err != nil {
		t.Fatal(err)
	}
	pub := filepath.Join(top, "k.pub")
	if err := os.WriteFile(pub, []byte(vkey), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{top, filepath.Dir(bin), bin} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(store, 0o555); err != nil {
		t.Fatal(err)
	}
	args := []string{bin, "--store", store, "--verify-key", pub, "--checkpoint-dir", filepath.Join(top, "cp"), "verify"}
	if os.Geteuid() == 0 {
		setpriv, err := exec.LookPath("setpriv")
		if err != nil {
			t.Fatalf("running as root needs setpriv (util-linux) to drop to nobody: %v", err)
		}
		args = append([]string{setpriv, "--reuid", "65534", "--regid", "65534", "--clear-groups"}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = top
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "store "+store+" is read-only (permission denied)") || !strings.Contains(string(out), "cp -a "+store+" /tmp/custody-copy && custody verify --store /tmp/custody-copy") {
		t.Fatalf("verify on a read-only store: %v\n%s", err, out)
	}
}
