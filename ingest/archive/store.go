package archive

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
)

// Object is one archive file or blob.
type Object struct {
	// Stream is the ingest stream the object's messages belong to:
	// "archive/<account>/<container>/<blob name>", or for a file
	// "file/<absolute path without its leading slash>" ("file/srv/a.json").
	// The account comes from the URL, so the stream is the same whichever
	// way the backfill authenticates.
	Stream string
	// Name is how positions name the object: "<container>/<blob name>" or
	// the absolute file path.
	Name string
	// Size in bytes at listing time.
	Size int64
	// Hour is the hour the path names (see PathHour); zero when it names
	// none.
	Hour time.Time
	// Modified is the last-modified time at listing time.
	Modified time.Time
	// ref is what Open needs (blob name or file path).
	ref string
}

// Store lists and opens archive objects. Local and Blob implement it.
type Store interface {
	// List calls fn for every object, in any order; fn's error stops the
	// listing and is returned.
	List(ctx context.Context, fn func(Object) error) error
	// Open returns the object's content.
	Open(ctx context.Context, obj Object) (io.ReadCloser, error)
}

// Local reads files and directory trees (walked recursively; names starting
// with "." are skipped inside a tree, but a path given explicitly is read
// whatever its name).
type Local struct {
	paths []string
}

// NewLocal returns a Store over the given files and directories.
func NewLocal(paths ...string) (*Local, error) {
	if len(paths) == 0 {
		return nil, fmt.Errorf("local archive: no paths: %w", ErrBadConfig)
	}
	abs := make([]string, 0, len(paths))
	for _, p := range paths {
		a, err := filepath.Abs(p)
		if err != nil {
			return nil, fmt.Errorf("local archive %s: %w", p, err)
		}
		abs = append(abs, a)
	}
	return &Local{paths: abs}, nil
}

// List walks the paths. Each file is listed once even when paths overlap.
func (l *Local) List(ctx context.Context, fn func(Object) error) error {
	seen := make(map[string]bool)
	emit := func(p string, info fs.FileInfo) error {
		if seen[p] {
			return nil
		}
		seen[p] = true
		slashed := filepath.ToSlash(p)
		hour, _ := PathHour(slashed)
		return fn(Object{
			Stream:   "file/" + strings.TrimPrefix(slashed, "/"),
			Name:     slashed,
			Size:     info.Size(),
			Hour:     hour,
			Modified: info.ModTime().UTC(),
			ref:      p,
		})
	}
	for _, root := range l.paths {
		info, err := os.Stat(root)
		if err != nil {
			return fmt.Errorf("local archive: %w", err)
		}
		if !info.IsDir() {
			if err := emit(root, info); err != nil {
				return err
			}
			continue
		}
		err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return fmt.Errorf("walk: %w", err)
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			if p != root && strings.HasPrefix(d.Name(), ".") {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			if !d.Type().IsRegular() {
				return nil
			}
			info, err := d.Info()
			if err != nil {
				return fmt.Errorf("stat %s: %w", p, err)
			}
			return emit(p, info)
		})
		if err != nil {
			return fmt.Errorf("local archive %s: %w", root, err)
		}
	}
	return nil
}

// Open opens the file.
func (l *Local) Open(_ context.Context, obj Object) (io.ReadCloser, error) {
	f, err := os.Open(obj.ref)
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	return f, nil
}

// BlobConfig says which container to read and how to authenticate. Exactly
// one of ConnectionString, a SAS in ContainerURL, or Credential is used.
// The secrets in it never appear in logs or errors (see LogValue).
type BlobConfig struct {
	// ConnectionString is a storage account connection string (secret);
	// Container names the container.
	ConnectionString string
	// ContainerURL is https://<account>.blob.core.windows.net/<container>,
	// optionally with a SAS query string (secret).
	ContainerURL string
	// Container is the container name when ConnectionString is used, or
	// when ContainerURL is the account's service URL.
	Container string
	// Prefix limits the listing to blob names starting with it, for
	// example "resourceId=/SUBSCRIPTIONS/<id>/".
	Prefix string
	// Credential is an Entra ID credential (azidentity: workload identity,
	// managed identity, client secret, Azure CLI) used with ContainerURL.
	Credential azcore.TokenCredential
	// ClientOptions tunes retries and transport; nil for the defaults.
	ClientOptions *policy.ClientOptions
}

// LogValue renders the config without its secrets.
func (c BlobConfig) LogValue() slog.Value {
	auth := "none"
	switch {
	case c.ConnectionString != "":
		auth = "connection-string"
	case c.Credential != nil:
		auth = "entra-id"
	case strings.Contains(c.ContainerURL, "sig="):
		auth = "sas"
	}
	return slog.GroupValue(
		slog.String("container_url", RedactURL(c.ContainerURL)),
		slog.String("container", c.Container),
		slog.String("prefix", c.Prefix),
		slog.String("auth", auth),
	)
}

// String renders the config without its secrets.
func (c BlobConfig) String() string { return c.LogValue().String() }

// Blob reads a container of a storage account.
type Blob struct {
	client  *container.Client
	account string
	name    string
	prefix  string
}

// NewBlob builds the container client for cfg.
func NewBlob(cfg BlobConfig) (*Blob, error) {
	var opts *container.ClientOptions
	if cfg.ClientOptions != nil {
		opts = &container.ClientOptions{ClientOptions: *cfg.ClientOptions}
	}
	var (
		client *container.Client
		err    error
	)
	switch {
	case cfg.ConnectionString != "":
		if cfg.Container == "" {
			return nil, fmt.Errorf("blob archive: container is required with a connection string: %w", ErrBadConfig)
		}
		client, err = container.NewClientFromConnectionString(cfg.ConnectionString, cfg.Container, opts)
	case cfg.ContainerURL != "":
		u := cfg.ContainerURL
		if cfg.Container != "" {
			u, err = url.JoinPath(u, cfg.Container)
			if err != nil {
				return nil, fmt.Errorf("blob archive: container url %s: %w", RedactURL(cfg.ContainerURL), ErrBadConfig)
			}
		}
		if cfg.Credential != nil {
			client, err = container.NewClient(u, cfg.Credential, opts)
		} else {
			client, err = container.NewClientWithNoCredential(u, opts)
		}
	default:
		return nil, fmt.Errorf("blob archive: set a connection string or a container URL: %w", ErrBadConfig)
	}
	if err != nil {
		return nil, fmt.Errorf("blob archive: client: %w", redactErr(err))
	}
	return NewBlobFromClient(client, cfg.Prefix)
}

// NewBlobFromClient wraps an existing container client.
func NewBlobFromClient(client *container.Client, prefix string) (*Blob, error) {
	parts, err := blob.ParseURL(client.URL())
	if err != nil {
		return nil, fmt.Errorf("blob archive: container url %s: %w", RedactURL(client.URL()), redactErr(err))
	}
	account := parts.IPEndpointStyleInfo.AccountName
	if account == "" {
		account, _, _ = strings.Cut(parts.Host, ".")
	}
	if parts.ContainerName == "" {
		return nil, fmt.Errorf("blob archive: url %s names no container: %w", RedactURL(client.URL()), ErrBadConfig)
	}
	return &Blob{client: client, account: account, name: parts.ContainerName, prefix: prefix}, nil
}

// List lists the blobs under the prefix.
func (b *Blob) List(ctx context.Context, fn func(Object) error) error {
	pager := b.client.NewListBlobsFlatPager(&container.ListBlobsFlatOptions{Prefix: &b.prefix})
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("list container %s/%s: %w", b.account, b.name, redactErr(err))
		}
		for _, it := range page.Segment.BlobItems {
			if it.Name == nil {
				continue
			}
			obj := Object{
				Stream: "archive/" + b.account + "/" + b.name + "/" + *it.Name,
				Name:   b.name + "/" + *it.Name,
				ref:    *it.Name,
			}
			if p := it.Properties; p != nil {
				if p.ContentLength != nil {
					obj.Size = *p.ContentLength
				}
				if p.LastModified != nil {
					obj.Modified = p.LastModified.UTC()
				}
			}
			obj.Hour, _ = PathHour(*it.Name)
			if err := fn(obj); err != nil {
				return err
			}
		}
	}
	return nil
}

// Open downloads the blob as a stream; the SDK's retry reader resumes a
// broken download where it stopped.
func (b *Blob) Open(ctx context.Context, obj Object) (io.ReadCloser, error) {
	resp, err := b.client.NewBlobClient(obj.ref).DownloadStream(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("download: %w", redactErr(err))
	}
	return resp.NewRetryReader(ctx, &blob.RetryReaderOptions{MaxRetries: 5}), nil
}
