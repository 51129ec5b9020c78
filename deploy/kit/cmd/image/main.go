// Command image builds Custody's container image as an OCI image layout
// (and optionally a tarball `docker load` and `podman load` read), with no
// container daemon, and prints the image's digest. `make image` runs it:
//
//	$ go run ./cmd/image --custody ../../bin/custody --custody-chdb ../../bin/custody-chdb \
//	    --libchdb /usr/local/lib/libchdb.so --debs ../../.cache/image/debs --out ../../dist/image/oci
//	sha256:…
//
// See package github.com/custody-audit/custody/deploy/kit/image for what
// goes into the image.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/custody-audit/custody/deploy/kit/image"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	var c image.Config
	var out, tarPath, ref, created string
	fs.StringVar(&c.Custody, "custody", "bin/custody", "the custody binary")
	fs.StringVar(&c.CustodyChdb, "custody-chdb", "bin/custody-chdb", "the custody-chdb binary (embedded engine host)")
	fs.StringVar(&c.LibChdb, "libchdb", "/usr/local/lib/libchdb.so", "libchdb.so (deploy/local/install-libchdb.sh)")
	fs.StringVar(&c.DebsDir, "debs", ".cache/image/debs", "unpacked Debian packages (deploy/image/fetch-debs.sh)")
	fs.StringVar(&c.Version, "version", "", "version label")
	fs.StringVar(&c.Revision, "revision", "", "source revision label (git commit)")
	fs.StringVar(&c.Arch, "arch", "amd64", "image architecture {amd64|arm64}")
	fs.StringVar(&created, "created", os.Getenv("SOURCE_DATE_EPOCH"), "creation time, Unix seconds (default SOURCE_DATE_EPOCH, else 0); fixes the digest")
	fs.StringVar(&out, "out", "dist/image/oci", "OCI image layout directory to write (replaced)")
	fs.StringVar(&tarPath, "tarball", "", "also write a tarball for `docker load` / `podman load` here")
	fs.StringVar(&ref, "ref", "custody:latest", "reference the layout and tarball tag the image with")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if created != "" {
		sec, err := strconv.ParseInt(created, 10, 64)
		if err != nil {
			return fmt.Errorf("--created %q: want Unix seconds", created)
		}
		c.Created = time.Unix(sec, 0)
	}
	tag, err := name.NewTag(ref)
	if err != nil {
		return fmt.Errorf("--ref: %w", err)
	}
	res, err := image.Build(ctx, c)
	if err != nil {
		return err
	}
	err = image.WriteLayout(out, res.Image, tag.String())
	if err == nil && tarPath != "" {
		if err = tarball.WriteToFile(tarPath, tag, res.Image); err != nil {
			err = fmt.Errorf("write tarball %s: %w", tarPath, err)
		}
	}
	if cerr := res.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return errors.Join(err, os.RemoveAll(out))
	}
	fmt.Println(res.Digest)
	return nil
}
