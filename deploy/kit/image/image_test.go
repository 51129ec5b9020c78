package image_test

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/custody-audit/custody/deploy/kit/image"
)

// repoRoot is the Custody repository this module sits in.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", "..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "cmd", "custody")); err != nil {
		t.Fatalf("not in the Custody repository: %v", err)
	}
	return root
}

// inputs builds custody and custody-chdb from this checkout, installs
// libchdb and fetches the pinned Debian packages (each idempotent), and
// returns the build's configuration.
func inputs(t *testing.T) image.Config {
	t.Helper()
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skipf("the image is built for linux/amd64 (libchdb's npm build); this is %s/%s", runtime.GOOS, runtime.GOARCH)
	}
	root := repoRoot(t)
	bin := t.TempDir()
	// Built as make build builds them (no -trimpath), so that the compile
	// cache make test has already filled serves this build.
	for _, cmd := range []string{"custody", "custody-chdb"} {
		run(t, root, nil, "go", "build", "-o", filepath.Join(bin, cmd), "./cmd/"+cmd)
	}
	lib := strings.TrimSpace(run(t, root, nil, filepath.Join(root, "deploy", "local", "install-libchdb.sh")))
	debs := strings.TrimSpace(run(t, root, nil, filepath.Join(root, "deploy", "image", "fetch-debs.sh")))
	return image.Config{
		Custody:     filepath.Join(bin, "custody"),
		CustodyChdb: filepath.Join(bin, "custody-chdb"),
		LibChdb:     lib,
		DebsDir:     debs,
		Created:     time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC),
		Version:     "test",
		Revision:    "0123456789abcdef",
		WorkDir:     t.TempDir(),
	}
}

func run(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), name, args...)
	cmd.Dir = dir
	if env != nil {
		cmd.Env = env
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// TestImage builds the image twice from the same inputs (the digests must
// match), writes it as an OCI layout, reads it back, and runs Custody from
// its unpacked layers in a chroot: keygen, init, a backfill of the
// incident's archive, a canned query and verify. The chroot holds nothing
// but the image, so this proves the image carries every file the binaries
// and the engine load.
func TestImage(t *testing.T) {
	c := inputs(t)
	ctx := t.Context()

	first, err := image.Build(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	oci := filepath.Join(t.TempDir(), "oci")
	if err := image.WriteLayout(oci, first.Image, "custody:test"); err != nil {
		t.Fatal(err)
	}

	t.Run("reproducible", func(t *testing.T) {
		second, err := image.Build(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		defer second.Close()
		if second.Digest != first.Digest {
			t.Errorf("same inputs, different digests: %s then %s", first.Digest, second.Digest)
		}
	})

	img := readLayout(t, oci, first.Digest)
	t.Run("config", func(t *testing.T) {
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cf.Config.User != "65532:65532" || !slices.Equal(cf.Config.Entrypoint, []string{"/usr/local/bin/custody"}) {
			t.Errorf("user %q entrypoint %q, want 65532:65532 and custody", cf.Config.User, cf.Config.Entrypoint)
		}
		for k, want := range map[string]string{
			"org.opencontainers.image.revision": "0123456789abcdef",
			"org.opencontainers.image.version":  "test",
			"org.opencontainers.image.created":  "2026-12-01T00:00:00Z",
			"org.opencontainers.image.source":   "https://github.com/custody-audit/custody",
		} {
			if got := cf.Config.Labels[k]; got != want {
				t.Errorf("label %s = %q, want %q", k, got, want)
			}
		}
		if cf.OS != "linux" || cf.Architecture != "amd64" {
			t.Errorf("platform %s/%s", cf.OS, cf.Architecture)
		}
	})

	rootfs := filepath.Join(t.TempDir(), "rootfs")
	files := unpack(t, img, rootfs)
	t.Run("layers", func(t *testing.T) {
		// Every file is root's but the data directories, and the
		// C runtime's licence ships with it.
		for _, name := range []string{
			"usr/local/bin/custody", "usr/local/bin/custody-chdb", "usr/local/lib/libchdb.so",
			"lib64/ld-linux-x86-64.so.2", "lib/x86_64-linux-gnu/libc.so.6", "lib/x86_64-linux-gnu/libgcc_s.so.1",
			"etc/ssl/certs/ca-certificates.crt", "etc/passwd", "etc/group",
			"usr/share/doc/libc6/copyright", "var/lib/dpkg/status.d/libc6",
		} {
			if _, ok := files[name]; !ok {
				t.Errorf("image has no /%s", name)
			}
		}
		for name, h := range files {
			owned := strings.TrimSuffix(name, "/") == "var/lib/custody" || strings.TrimSuffix(name, "/") == "var/lib/custody-checkpoints"
			if owned != (h.Uid == image.UID) || (!owned && (h.Uid != 0 || h.Gid != 0)) {
				t.Errorf("/%s owned by %d:%d", name, h.Uid, h.Gid)
			}
			if !h.ModTime.Equal(c.Created) {
				t.Errorf("/%s has time %s, want %s", name, h.ModTime, c.Created)
			}
		}
		passwd, _ := os.ReadFile(filepath.Join(rootfs, "etc", "passwd"))
		if !strings.Contains(string(passwd), "custody:x:65532:65532:") {
			t.Errorf("/etc/passwd has no custody user:\n%s", passwd)
		}
	})

	t.Run("chroot", func(t *testing.T) {
		if os.Geteuid() != 0 {
			if os.Getenv("CI") != "" {
				t.Fatal("the chroot test needs root, and CI runs as root")
			}
			t.Skip("running the image in a chroot needs root (CI runs it as root): run `sudo go test ./image` in deploy/kit")
		}
		runInChroot(t, img, rootfs)
	})
}

// tail is the end of b, at most n bytes.
func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

func readLayout(t *testing.T, dir string, digest v1.Hash) v1.Image {
	t.Helper()
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 || im.Manifests[0].Digest != digest || im.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != "custody:test" {
		t.Fatalf("layout index %+v, want the image %s tagged custody:test", im.Manifests, digest)
	}
	img, err := idx.Image(digest)
	if err != nil {
		t.Fatal(err)
	}
	// Reading every layer back checks each against its digest.
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 3 {
		t.Fatalf("%d layers, want runtime, libchdb and custody", len(layers))
	}
	return img
}

// unpack writes the image's file system (its layers applied in order) into
// dir, with the owners and modes the image gives, and returns its headers
// by path.
func unpack(t *testing.T, img v1.Image, dir string) map[string]*tar.Header {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(bufio.NewReaderSize(rc, 1<<20))
	files := map[string]*tar.Header{}
	asRoot := os.Geteuid() == 0
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("read image: %v", err)
		}
		files[h.Name] = h
		target := filepath.Join(dir, filepath.FromSlash(h.Name))
		if !strings.HasPrefix(target, dir+string(filepath.Separator)) {
			t.Fatalf("image entry %q leaves the root", h.Name)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				t.Fatal(err)
			}
		case tar.TypeSymlink:
			if err := os.Symlink(h.Linkname, target); err != nil {
				t.Fatal(err)
			}
			continue
		case tar.TypeReg:
			f, err := os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(f, tr); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatalf("image entry %s: unexpected type %c", h.Name, h.Typeflag)
		}
		if err := os.Chmod(target, os.FileMode(h.Mode&0o777)|modeBits(h.Mode)); err != nil {
			t.Fatal(err)
		}
		if asRoot {
			if err := os.Lchown(target, h.Uid, h.Gid); err != nil {
				t.Fatal(err)
			}
		}
	}
	return files
}

func modeBits(m int64) os.FileMode {
	var mode os.FileMode
	if m&0o1000 != 0 {
		mode |= os.ModeSticky
	}
	return mode
}

// runInChroot runs the incident's backfill, a canned query and verify with
// the image's own binaries, as the image's user, with only the image's
// files in reach. What a container runtime provides besides the image is
// provided here too: /proc (in a mount and PID namespace of its own, gone
// when the command ends) and the /dev nodes every process opens.
func runInChroot(t *testing.T, img v1.Image, rootfs string) {
	tools := map[string]string{}
	for _, tool := range []string{"unshare", "chroot", "sh", "mount"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Fatalf("%s (util-linux, coreutils) is needed to run the image: %v", tool, err)
		}
		tools[tool] = p
	}
	for _, d := range []string{"proc", "dev", "dev/pts"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The engine host talks to its engine over a pseudo-terminal: a
	// devpts instance of its own (mounted below), /dev/ptmx pointing into
	// it, as container runtimes set it up.
	if err := os.Symlink("pts/ptmx", filepath.Join(rootfs, "dev", "ptmx")); err != nil {
		t.Fatal(err)
	}
	for name, minor := range map[string]int{"null": 3, "zero": 5, "random": 8, "urandom": 9} {
		if err := syscall.Mknod(filepath.Join(rootfs, "dev", name), syscall.S_IFCHR|0o666, 1<<8|minor); err != nil {
			t.Fatalf("mknod /dev/%s: %v", name, err)
		}
		// mknod's mode went through the umask.
		if err := os.Chmod(filepath.Join(rootfs, "dev", name), 0o666); err != nil {
			t.Fatal(err)
		}
	}
	// The incident's archive, where the collector's user can read it, and
	// the keys in the data directory (the chart mounts them from a Secret).
	incident := filepath.Join(rootfs, "var", "lib", "custody", "incident")
	run(t, "", nil, "cp", "-r", filepath.Join(repoRoot(t), "deploy", "local", "incident", "archive"), incident)
	run(t, "", nil, "chown", "-R", fmt.Sprintf("%d:%d", image.UID, image.GID), incident)

	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	env := append(slices.Clone(cf.Config.Env),
		"CUSTODY_SIGNING_KEY=/var/lib/custody/custody.key",
		"CUSTODY_VERIFY_KEY=/var/lib/custody/custody.pub",
		"CUSTODY_LOG_LEVEL=warn")
	custody := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
		defer cancel()
		const script = `root=$1 mount=$2 chroot=$3; shift 3
"$mount" -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$root/dev/pts" && exec "$chroot" --userspec=` +
			"65532:65532" + ` "$root" "$@"`
		argv := append([]string{"--fork", "--pid", "--mount-proc=" + filepath.Join(rootfs, "proc"),
			tools["sh"], "-c", script, "sh", rootfs, tools["mount"], tools["chroot"],
			cf.Config.Entrypoint[0]}, args...)
		cmd := exec.CommandContext(ctx, tools["unshare"], argv...)
		cmd.Env = env
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			// The embedded engine's own log says why it would not start.
			engineLog, _ := os.ReadFile(filepath.Join(rootfs, "var", "lib", "custody", "store", "engine.log"))
			t.Fatalf("custody %s in the image: %v\n%s%s\nengine.log:\n%s", strings.Join(args, " "), err, stdout.String(), stderr.String(), tail(engineLog, 4096))
		}
		return stdout.String()
	}
	custody("keygen", "--name", "custody.image.test")
	custody("init")
	custody("backfill", "/var/lib/custody/incident")
	rows := custody("query", "aks-exec", "--from", "2025-06-12T00:00:00Z", "--to", "2025-06-13T00:00:00Z", "--format", "json")
	var found bool
	for line := range strings.Lines(rows) {
		var r struct {
			Actor, Pod, Kind string
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("aks-exec row %q: %v", line, err)
		}
		if r.Actor == "dana.dev@contoso.com" && r.Pod == "payments-api-6f7d9c8b5-x7k2p" && r.Kind == "exec" {
			found = true
		}
	}
	if !found {
		t.Errorf("aks-exec in the image does not show the phished account's exec into payments-api:\n%s", rows)
	}
	verify := custody("verify")
	if !strings.Contains(verify, "verify OK: 24 chains, 145 rows") {
		t.Errorf("verify in the image: %s", verify)
	}
	// The store was written by the image's user.
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(rootfs, "var", "lib", "custody", "store"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != image.UID {
		t.Errorf("store owned by uid %d, want %d", st.Uid, image.UID)
	}
}
