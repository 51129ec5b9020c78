// Package image assembles Custody's container image without a container
// daemon: an OCI image of three layers, from the bottom up
//
//   - runtime: the C runtime the binaries and libchdb load, from pinned
//     Debian packages (deploy/image/debs.lock, unpacked by
//     deploy/image/fetch-debs.sh), the CA bundle, /etc/passwd and /etc/group
//     with the non-root user custody (uid and gid 65532), and the data
//     directories that user owns;
//   - libchdb: the embedded ClickHouse engine, /usr/local/lib/libchdb.so;
//   - custody: /usr/local/bin/custody and /usr/local/bin/custody-chdb.
//
// The engine layer changes least and the binaries most, so a new build
// usually ships only its top layer. The build is reproducible: every entry
// has a fixed time (Config.Created), owner and mode, entries are sorted,
// and gzip writes no name or time, so the same inputs give the same digest.
package image

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"
)

// The image's user and the paths the chart and the docs rely on.
const (
	UID           = 65532
	GID           = 65532
	UserName      = "custody"
	BinDir        = "/usr/local/bin"
	LibChdbPath   = "/usr/local/lib/libchdb.so"
	DataDir       = "/var/lib/custody"             // working directory; the store below it
	StoreDir      = "/var/lib/custody/store"       // CUSTODY_STORE
	CheckpointDir = "/var/lib/custody-checkpoints" // CUSTODY_CHECKPOINT_DIR: mount other storage here
	KeyDir        = "/etc/custody/keys"            // signing and verification keys (a Secret)
	ConfigPath    = "/etc/custody/custody.yaml"    // the collector's config (a ConfigMap)
	MetricsPort   = 9464
	caBundle      = "/etc/ssl/certs/ca-certificates.crt"
)

// Config is what one build takes in.
type Config struct {
	// Custody and CustodyChdb are the built binaries (make build).
	Custody, CustodyChdb string
	// LibChdb is libchdb.so (deploy/local/install-libchdb.sh).
	LibChdb string
	// DebsDir holds one unpacked tree per Debian package, as
	// deploy/image/fetch-debs.sh leaves them; every tree goes into the
	// runtime layer but for documentation other than copyright files.
	DebsDir string
	// Created is the time stamped on every entry and on the image; the
	// digest depends on it, so reproducible builds pass a fixed one (the
	// commit's time). Zero means the Unix epoch.
	Created time.Time
	// Version and Revision go into the OCI labels; empty leaves them out.
	Version, Revision string
	// Arch is the image's architecture (GOARCH spelling); every ELF input
	// must be built for it. Empty means amd64.
	Arch string
	// WorkDir receives the compressed layers while the image is built;
	// empty uses the system's temporary directory.
	WorkDir string
}

// Result is a built image.
type Result struct {
	Image  v1.Image
	Digest v1.Hash // the image manifest's digest
	// cleanup removes the compressed layers the image reads from.
	cleanup func() error
}

// Close removes the build's temporary layer files. The image cannot be
// read after it.
func (r *Result) Close() error { return r.cleanup() }

// Build assembles the image. The caller writes it with WriteLayout or
// WriteTarball and then calls Close.
func Build(ctx context.Context, c Config) (*Result, error) {
	if c.Arch == "" {
		c.Arch = "amd64"
	}
	if c.Created.IsZero() {
		c.Created = time.Unix(0, 0)
	}
	c.Created = c.Created.UTC()
	for _, f := range []string{c.Custody, c.CustodyChdb, c.LibChdb} {
		if err := checkELF(f, c.Arch); err != nil {
			return nil, err
		}
	}
	runtime, err := runtimeEntries(c)
	if err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp(c.WorkDir, "custody-image-")
	if err != nil {
		return nil, fmt.Errorf("build image: %w", err)
	}
	res := &Result{cleanup: func() error { return os.RemoveAll(work) }}
	layers := []struct {
		name    string
		entries []entry
	}{
		{"runtime", runtime},
		{"libchdb", withParents([]entry{fileEntry(LibChdbPath, c.LibChdb, 0o755)})},
		{"custody", withParents([]entry{
			fileEntry(path.Join(BinDir, "custody"), c.Custody, 0o755),
			fileEntry(path.Join(BinDir, "custody-chdb"), c.CustodyChdb, 0o755),
		})},
	}
	img := empty.Image
	img = mutate.MediaType(img, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	for _, l := range layers {
		if err := ctx.Err(); err != nil {
			_ = res.Close()
			return nil, err
		}
		layer, err := writeLayer(filepath.Join(work, l.name+".tar.gz"), l.entries, c.Created)
		if err != nil {
			_ = res.Close()
			return nil, fmt.Errorf("build image: layer %s: %w", l.name, err)
		}
		img, err = mutate.Append(img, mutate.Addendum{Layer: layer, History: v1.History{
			Created:   v1.Time{Time: c.Created},
			CreatedBy: "deploy/kit/cmd/image: " + l.name,
			Comment:   l.name + " layer",
		}})
		if err != nil {
			_ = res.Close()
			return nil, fmt.Errorf("build image: layer %s: %w", l.name, err)
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		_ = res.Close()
		return nil, fmt.Errorf("build image: config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS = c.Arch, "linux"
	cf.Created = v1.Time{Time: c.Created}
	cf.Config = imageConfig(c)
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		_ = res.Close()
		return nil, fmt.Errorf("build image: config: %w", err)
	}
	if res.Digest, err = img.Digest(); err != nil {
		_ = res.Close()
		return nil, fmt.Errorf("build image: digest: %w", err)
	}
	res.Image = img
	return res, nil
}

// Labels are the OCI annotations (as image labels) of an image built from c.
func Labels(c Config) map[string]string {
	l := map[string]string{
		"org.opencontainers.image.title":       "custody",
		"org.opencontainers.image.description": "Audit-log collector and tamper-evident evidence store for Azure ACI, ACR and AKS",
		"org.opencontainers.image.source":      "https://github.com/custody-audit/custody",
		"org.opencontainers.image.url":         "https://github.com/custody-audit/custody",
		"org.opencontainers.image.created":     c.Created.UTC().Format(time.RFC3339),
	}
	if c.Version != "" {
		l["org.opencontainers.image.version"] = c.Version
	}
	if c.Revision != "" {
		l["org.opencontainers.image.revision"] = c.Revision
	}
	return l
}

func imageConfig(c Config) v1.Config {
	return v1.Config{
		User:         fmt.Sprintf("%d:%d", UID, GID),
		WorkingDir:   DataDir,
		Entrypoint:   []string{path.Join(BinDir, "custody")},
		Cmd:          []string{"--config", ConfigPath, "run"},
		Env:          Env(),
		ExposedPorts: map[string]struct{}{fmt.Sprintf("%d/tcp", MetricsPort): {}},
		Labels:       Labels(c),
		StopSignal:   "SIGTERM",
	}
}

// Env is the image's environment: the store, checkpoint and key paths the
// chart mounts volumes at, so every custody command finds them.
func Env() []string {
	return []string{
		"PATH=/usr/local/bin:/usr/bin:/bin",
		"HOME=" + DataDir,
		"CUSTODY_STORE=" + StoreDir,
		"CUSTODY_CHECKPOINT_DIR=" + CheckpointDir,
		"CUSTODY_SIGNING_KEY=" + path.Join(KeyDir, "custody.key"),
		"CUSTODY_VERIFY_KEY=" + path.Join(KeyDir, "custody.pub"),
		"CHDB_LIB_PATH=" + LibChdbPath,
		"SSL_CERT_FILE=" + caBundle,
	}
}

// WriteLayout writes the image into an OCI image layout at dir (created or
// replaced), tagged ref in the index.
func WriteLayout(dir string, img v1.Image, ref string) error {
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("write layout: %w", err)
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("write layout %s: %w", dir, err)
	}
	anns := map[string]string{"org.opencontainers.image.ref.name": ref}
	if err := p.AppendImage(img, layout.WithAnnotations(anns)); err != nil {
		return fmt.Errorf("write layout %s: %w", dir, err)
	}
	return nil
}

// entry is one tar entry of a layer.
type entry struct {
	name     string // absolute path in the image
	typ      byte   // tar.TypeReg, TypeDir or TypeSymlink
	mode     int64
	uid, gid int
	src      string // TypeReg: the file to copy, or
	data     []byte // its content when src is empty
	link     string // TypeSymlink: the target
}

func fileEntry(name, src string, mode int64) entry {
	return entry{name: name, typ: tar.TypeReg, mode: mode, src: src}
}

func dataEntry(name string, mode int64, data string) entry {
	return entry{name: name, typ: tar.TypeReg, mode: mode, data: []byte(data)}
}

func dirEntry(name string, mode int64, uid, gid int) entry {
	return entry{name: name, typ: tar.TypeDir, mode: mode, uid: uid, gid: gid}
}

// withParents adds every missing parent directory (root-owned, 0755) and
// sorts the entries by path, so a layer lists a directory before its
// contents and the order never depends on the input's.
func withParents(es []entry) []entry {
	have := map[string]bool{}
	for _, e := range es {
		have[e.name] = true
	}
	for _, e := range es {
		for d := path.Dir(e.name); d != "/" && !have[d]; d = path.Dir(d) {
			have[d] = true
			es = append(es, dirEntry(d, 0o755, 0, 0))
		}
	}
	sort.Slice(es, func(i, j int) bool { return es[i].name < es[j].name })
	return es
}

// runtimeEntries lists the runtime layer: the unpacked Debian packages, the
// CA bundle built from ca-certificates' certificates, the user and the
// data directories.
func runtimeEntries(c Config) ([]entry, error) {
	trees, err := os.ReadDir(c.DebsDir)
	if err != nil {
		return nil, fmt.Errorf("read Debian packages (deploy/image/fetch-debs.sh): %w", err)
	}
	byName := map[string]entry{}
	var certs []string
	var pkgs []string
	for _, t := range trees {
		if !t.IsDir() || t.Name() == "deb" {
			continue
		}
		pkgs = append(pkgs, t.Name())
		root := filepath.Join(c.DebsDir, t.Name())
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			if rel == "." {
				return nil
			}
			name := "/" + filepath.ToSlash(rel)
			if skipDebPath(name) {
				if d.IsDir() {
					return nil
				}
				return nil
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			var e entry
			switch {
			case d.Type()&fs.ModeSymlink != 0:
				target, err := os.Readlink(p)
				if err != nil {
					return err
				}
				e = entry{name: name, typ: tar.TypeSymlink, mode: 0o777, link: target}
			case d.IsDir():
				e = dirEntry(name, 0o755, 0, 0)
			case info.Mode().IsRegular():
				mode := int64(0o644)
				if info.Mode()&0o111 != 0 {
					mode = 0o755
				}
				e = fileEntry(name, p, mode)
				if strings.HasPrefix(name, "/usr/share/ca-certificates/") && strings.HasSuffix(name, ".crt") {
					certs = append(certs, p)
				}
			default:
				return fmt.Errorf("%s: unsupported file type %s", p, info.Mode().Type())
			}
			if prev, ok := byName[name]; ok && (prev.typ != tar.TypeDir || e.typ != tar.TypeDir) {
				return fmt.Errorf("%s is in two packages", name)
			}
			byName[name] = e
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("read Debian package %s: %w", t.Name(), err)
		}
	}
	for _, want := range []string{"libc6", "ca-certificates"} {
		if !slices.Contains(pkgs, want) {
			return nil, fmt.Errorf("read Debian packages: %s has no %s (run deploy/image/fetch-debs.sh)", c.DebsDir, want)
		}
	}
	if len(certs) == 0 {
		return nil, errors.New("read Debian packages: ca-certificates holds no certificates")
	}
	// update-ca-certificates would concatenate them at install time; the
	// image has no package manager, so the bundle is made here, in the
	// same sorted order.
	sort.Strings(certs)
	var bundle strings.Builder
	for _, p := range certs {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("CA bundle: %w", err)
		}
		bundle.Write(b)
		if len(b) > 0 && b[len(b)-1] != '\n' {
			bundle.WriteByte('\n')
		}
	}
	es := make([]entry, 0, len(byName)+16)
	for _, e := range byName {
		es = append(es, e)
	}
	es = append(es,
		dataEntry(caBundle, 0o644, bundle.String()),
		dataEntry("/etc/passwd", 0o644, fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\n%s:x:%d:%d:Custody:%s:/sbin/nologin\n", UserName, UID, GID, DataDir)),
		dataEntry("/etc/group", 0o644, fmt.Sprintf("root:x:0:\n%s:x:%d:\n", UserName, GID)),
		dataEntry("/etc/nsswitch.conf", 0o644, "passwd: files\ngroup: files\nhosts: files dns\n"),
		dataEntry("/etc/hosts", 0o644, "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"),
		dirEntry("/tmp", 0o1777, 0, 0),
		dirEntry("/root", 0o700, 0, 0),
		dirEntry(DataDir, 0o700, UID, GID),
		dirEntry(CheckpointDir, 0o700, UID, GID),
		dirEntry("/etc/custody", 0o755, 0, 0),
		dirEntry(KeyDir, 0o755, 0, 0),
	)
	return withParents(es), nil
}

// skipDebPath leaves out what a runtime without a package manager never
// reads: documentation but for the copyright files (the licences the
// image must carry), lintian overrides, and ca-certificates' update hooks.
func skipDebPath(name string) bool {
	switch {
	case strings.HasPrefix(name, "/usr/share/doc/"):
		rest := strings.TrimPrefix(name, "/usr/share/doc/")
		return strings.Contains(rest, "/") && path.Base(rest) != "copyright"
	case strings.HasPrefix(name, "/usr/share/lintian"),
		strings.HasPrefix(name, "/usr/share/man"),
		strings.HasPrefix(name, "/usr/sbin/update-ca-certificates"),
		strings.HasPrefix(name, "/etc/ca-certificates"):
		return true
	}
	return false
}

// writeLayer writes the gzip-compressed tar of es to file, hashing the tar
// and the compressed stream as they are written, so the layer's digests
// cost no second pass over its bytes.
func writeLayer(file string, es []entry, created time.Time) (_ *fileLayer, err error) {
	f, err := os.Create(file)
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	compressed, uncompressed := sha256.New(), sha256.New()
	bw := bufio.NewWriterSize(io.MultiWriter(f, compressed), 1<<20)
	// klauspost's gzip writes the same format as the standard library's,
	// about twice as fast at this level; its output, like the standard
	// library's, depends only on the input and the level (no name, no
	// time in the header).
	zw, err := gzip.NewWriterLevel(bw, gzip.BestSpeed)
	if err != nil {
		return nil, err
	}
	tw := tar.NewWriter(io.MultiWriter(zw, uncompressed))
	for _, e := range es {
		if err := writeEntry(tw, e, created); err != nil {
			return nil, fmt.Errorf("%s: %w", e.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	if err := bw.Flush(); err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	return &fileLayer{file: file, size: st.Size(),
		digest: v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(compressed.Sum(nil))},
		diffID: v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(uncompressed.Sum(nil))},
	}, nil
}

// fileLayer is a gzip-compressed layer in a file, with the digests
// writeLayer computed.
type fileLayer struct {
	file           string
	size           int64
	digest, diffID v1.Hash
}

func (l *fileLayer) Digest() (v1.Hash, error)            { return l.digest, nil }
func (l *fileLayer) DiffID() (v1.Hash, error)            { return l.diffID, nil }
func (l *fileLayer) Size() (int64, error)                { return l.size, nil }
func (l *fileLayer) MediaType() (types.MediaType, error) { return types.OCILayer, nil }
func (l *fileLayer) Compressed() (io.ReadCloser, error)  { return os.Open(l.file) }

func (l *fileLayer) Uncompressed() (io.ReadCloser, error) {
	f, err := os.Open(l.file)
	if err != nil {
		return nil, err
	}
	zr, err := gzip.NewReader(bufio.NewReaderSize(f, 1<<20))
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	return readCloser{zr, func() error { return errors.Join(zr.Close(), f.Close()) }}, nil
}

type readCloser struct {
	io.Reader
	close func() error
}

func (r readCloser) Close() error { return r.close() }

func writeEntry(tw *tar.Writer, e entry, created time.Time) error {
	h := &tar.Header{
		Typeflag: e.typ,
		Name:     strings.TrimPrefix(e.name, "/"),
		Mode:     e.mode,
		Uid:      e.uid,
		Gid:      e.gid,
		ModTime:  created,
		Format:   tar.FormatPAX,
	}
	switch e.typ {
	case tar.TypeDir:
		h.Name += "/"
		return tw.WriteHeader(h)
	case tar.TypeSymlink:
		h.Linkname = e.link
		return tw.WriteHeader(h)
	}
	if e.src == "" {
		h.Size = int64(len(e.data))
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		_, err := tw.Write(e.data)
		return err
	}
	f, err := os.Open(e.src)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	h.Size = st.Size()
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	n, err := io.Copy(tw, f)
	if err == nil && n != h.Size {
		err = fmt.Errorf("%s changed while it was read", e.src)
	}
	return err
}

// checkELF fails unless file is an ELF file built for arch.
func checkELF(file, arch string) error {
	f, err := elf.Open(file)
	if err != nil {
		return fmt.Errorf("image input %s: %w", file, err)
	}
	defer f.Close()
	want := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[arch]
	if want == 0 {
		return fmt.Errorf("image: unsupported architecture %q", arch)
	}
	if f.Machine != want {
		return fmt.Errorf("image input %s is built for %s, not %s", file, f.Machine, arch)
	}
	return nil
}
