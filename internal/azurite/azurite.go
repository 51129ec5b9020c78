// Package azurite starts Azurite, Microsoft's Azure Storage emulator, for
// tests that need a real Blob service on loopback: the archive backfill reads
// diagnostic-settings containers and Event Hubs Capture files through the
// real azblob client, and the Event Hubs processor keeps its checkpoints in a
// Blob container.
//
// Azurite speaks the Blob REST protocol (https://github.com/Azure/Azurite), so
// tests exercise the same client code paths as production. Tests call
// [Start]; it skips the test when Azurite is not installed (run
// deploy/local/install-azurite.sh) unless the environment says CI=true, where
// a missing emulator fails the test instead, so CI cannot pass by skipping.
package azurite

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
)

// Azurite's well-known development account. The key is public (documented by
// Microsoft for the emulator) and only ever valid against an emulator.
const (
	AccountName = "devstoreaccount1"
	AccountKey  = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

// Environment variables and paths used to find the emulator.
const (
	// EnvBinary names an azurite-blob launcher to use instead of the
	// repository's .cache install or PATH.
	EnvBinary = "CUSTODY_AZURITE_BIN"
	// InstallScript installs the pinned Azurite into the repository cache.
	InstallScript = "deploy/local/install-azurite.sh"

	binaryName    = "azurite-blob"
	cacheRelPath  = ".cache/npm/node_modules/.bin/azurite-blob"
	startTimeout  = 60 * time.Second
	stopTimeout   = 5 * time.Second
	pollInterval  = 25 * time.Millisecond
	logTailOnFail = 64 << 10
)

// listenLine is how Azurite announces the address it bound; with --blobPort 0
// the kernel picks a free port and this line is the only way to learn it.
const listenLine = `successfully listens on (http://127\.0\.0\.1:\d+)`

// Instance is a running Azurite Blob service owned by one test.
type Instance struct {
	// ServiceURL is the account's Blob endpoint, path style:
	// http://127.0.0.1:<port>/devstoreaccount1.
	ServiceURL string
	// ConnectionString authenticates as the development account with its
	// shared key.
	ConnectionString string
	// Credential is the development account's shared key credential (for
	// signing SAS URLs in tests).
	Credential *azblob.SharedKeyCredential
	// Client is a ready client for the account.
	Client *azblob.Client
	// LogPath is the file holding Azurite's stdout and stderr.
	LogPath string
}

// Start launches azurite-blob on 127.0.0.1 with an in-memory store, waits
// until it answers, and stops it (the whole process group) when the test
// ends. Azurite's output goes to a file in t.TempDir and is shown in the
// test log when the test fails.
func Start(t testing.TB) *Instance {
	t.Helper()
	bin, err := findBinary()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("azurite: %v (CI=true: the Blob tests must run; install it with %s)", err, InstallScript)
		}
		t.Skipf("azurite: %v; install it with %s (or set %s)", err, InstallScript, EnvBinary)
	}

	dir := t.TempDir()
	logPath := filepath.Join(dir, "azurite.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatalf("azurite: create log file: %v", err)
	}
	workspace := filepath.Join(dir, "workspace")
	if err := os.Mkdir(workspace, 0o700); err != nil {
		t.Fatalf("azurite: create workspace: %v", err)
	}

	cmd := exec.Command(bin,
		"--blobHost", "127.0.0.1",
		"--blobPort", "0",
		"--inMemoryPersistence",
		"--extentMemoryLimit", "512",
		"--skipApiVersionCheck",
		"--loose",
		"--disableTelemetry",
		"--silent",
	)
	cmd.Dir = workspace
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		t.Fatalf("azurite: start %s: %v", bin, err)
	}
	proc := &process{pid: cmd.Process.Pid, done: make(chan struct{})}
	go func() {
		proc.err = cmd.Wait()
		close(proc.done)
	}()

	t.Cleanup(func() {
		proc.stop()
		logFile.Close()
		if t.Failed() {
			t.Logf("azurite log (%s):\n%s", logPath, tail(logPath, logTailOnFail))
		}
	})

	endpoint, err := waitListening(logPath, proc)
	if err != nil {
		t.Fatalf("azurite: %v", err)
	}

	inst := &Instance{
		ServiceURL: endpoint + "/" + AccountName,
		ConnectionString: fmt.Sprintf(
			"DefaultEndpointsProtocol=http;AccountName=%s;AccountKey=%s;BlobEndpoint=%s/%s;",
			AccountName, AccountKey, endpoint, AccountName),
		LogPath: logPath,
	}
	inst.Credential, err = azblob.NewSharedKeyCredential(AccountName, AccountKey)
	if err != nil {
		t.Fatalf("azurite: shared key credential: %v", err)
	}
	inst.Client, err = azblob.NewClientWithSharedKeyCredential(inst.ServiceURL+"/", inst.Credential, nil)
	if err != nil {
		t.Fatalf("azurite: blob client: %v", err)
	}
	if err := waitAnswering(inst.Client, proc); err != nil {
		t.Fatalf("azurite: %v", err)
	}
	return inst
}

// findBinary looks in CUSTODY_AZURITE_BIN, then the repository's .cache
// install, then PATH.
func findBinary() (string, error) {
	if p := os.Getenv(EnvBinary); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s=%s: %w", EnvBinary, p, err)
		}
		return p, nil
	}
	if root, err := repoRoot(); err == nil {
		p := filepath.Join(root, cacheRelPath)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath(binaryName)
	if err != nil {
		return "", fmt.Errorf("%s not found in %s, the repository's %s, or PATH", binaryName, EnvBinary, cacheRelPath)
	}
	return p, nil
}

// repoRoot walks up from the working directory to the directory holding
// go.mod (tests run in their package directory).
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("working directory: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// waitListening polls Azurite's log for the address it bound.
func waitListening(logPath string, proc *process) (string, error) {
	re := regexp.MustCompile(listenLine)
	deadline := time.Now().Add(startTimeout)
	for time.Now().Before(deadline) {
		if proc.exited() {
			return "", fmt.Errorf("azurite-blob exited before listening: %w", proc.err)
		}
		if b, err := os.ReadFile(logPath); err == nil {
			if m := re.FindSubmatch(b); m != nil {
				return string(m[1]), nil
			}
		}
		time.Sleep(pollInterval)
	}
	return "", fmt.Errorf("azurite-blob did not report a listening address within %s", startTimeout)
}

// waitAnswering lists containers until the service answers a real request.
func waitAnswering(c *azblob.Client, proc *process) error {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	var last error
	for ctx.Err() == nil {
		if proc.exited() {
			return fmt.Errorf("azurite-blob exited: %w", proc.err)
		}
		pager := c.NewListContainersPager(nil)
		if _, last = pager.NextPage(ctx); last == nil {
			return nil
		}
		time.Sleep(pollInterval)
	}
	return fmt.Errorf("azurite-blob did not answer within %s: %w", startTimeout, last)
}

// process is the running emulator; done closes when it has exited, after
// err is set.
type process struct {
	pid  int
	done chan struct{}
	err  error
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop terminates Azurite and anything it spawned (its process group), then
// kills what is left after a grace period.
func (p *process) stop() {
	_ = syscall.Kill(-p.pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
		_ = syscall.Kill(-p.pid, syscall.SIGKILL)
		<-p.done
	}
	// Children in the group that outlived the leader.
	_ = syscall.Kill(-p.pid, syscall.SIGKILL)
}

// tail returns at most the last n bytes of a file, starting at a line.
func tail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(read log: %v)", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Sprintf("(stat log: %v)", err)
	}
	off := max(st.Size()-n, 0)
	if _, err := f.Seek(off, 0); err != nil {
		return fmt.Sprintf("(seek log: %v)", err)
	}
	var buf bytes.Buffer
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	first := off > 0
	for sc.Scan() {
		if first {
			first = false
			continue
		}
		buf.WriteString(strings.TrimRight(sc.Text(), "\r"))
		buf.WriteByte('\n')
	}
	return buf.String()
}
