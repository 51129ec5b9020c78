// Package witness publishes signed checkpoints to a second place the
// store's host cannot rewrite, an Azure Blob container meant for a
// time-based retention (immutability, WORM) policy, and reads them back
// for `custody verify --published`.
//
// Every checkpoint is a blob of its own, never overwritten:
//
//	<prefix><path-escaped chain>/<tree size, 20 digits>.checkpoint
//
// holding the signed note exactly as in the store (see
// storage/docs/format/checkpoint.md). Blobs are created with
// If-None-Match: *, so a container under an immutability policy accepts
// them, and a different note already published at the same size (a
// forked chain) is an error, not a silent overwrite. A verifier takes the
// biggest size of each chain.
package witness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"github.com/custody-audit/custody/storage"
)

// Config is the `checkpoint_publish:` section of the config file: which
// container receives the checkpoints and how to sign in. Exactly one of
// ConnectionString and ContainerURL is set; with ContainerURL, a SAS in
// its query or an Entra ID credential (Credential) authenticates.
type Config struct {
	// ContainerURL is https://<account>.blob.core.windows.net/<container>,
	// optionally with a SAS query (secret: never logged).
	ContainerURL string `yaml:"container_url"`
	// ConnectionString is a storage account connection string (secret);
	// Container names the container.
	ConnectionString string `yaml:"connection_string"`
	Container        string `yaml:"container"`
	// Prefix starts every blob name, e.g. "prod/". Default "".
	Prefix string `yaml:"prefix"`
	// Credential is the Entra ID credential used with ContainerURL when
	// it has no SAS: managed-identity, workload-identity, client-secret
	// or azure-cli (as for eventhubs). Empty with a SAS or a connection
	// string.
	Credential string `yaml:"credential"`
	// TenantID, ClientID, ClientSecret (secret), TokenFile and
	// AuthorityHost are as in the eventhubs section.
	TenantID      string `yaml:"tenant_id"`
	ClientID      string `yaml:"client_id"`
	ClientSecret  string `yaml:"client_secret"`
	TokenFile     string `yaml:"token_file"`
	AuthorityHost string `yaml:"authority_host"`
	// Interval is how often the collector publishes the chains' newest
	// checkpoints. Default 5m. A truncation is detectable from the newest
	// published checkpoint on, so this bounds what an intruder on the
	// store's host could remove unseen.
	Interval time.Duration `yaml:"interval"`
}

// DefaultConfig publishes every five minutes.
func DefaultConfig() Config { return Config{Interval: 5 * time.Minute} }

// Credential kinds that need Entra ID.
var entraKinds = []string{"managed-identity", "workload-identity", "client-secret", "azure-cli"}

// Validate reports the first invalid field. Secrets are never echoed.
func (c Config) Validate() error {
	switch {
	case c.ConnectionString != "" && c.ContainerURL != "":
		return errors.New("give connection_string or container_url, not both")
	case c.ConnectionString != "":
		if c.Container == "" {
			return errors.New("container: required with connection_string")
		}
		if c.Credential != "" {
			return errors.New("credential: not used with connection_string")
		}
	case c.ContainerURL != "":
		if c.Container != "" {
			return errors.New("container: not used with container_url (the URL names the container)")
		}
		u, err := url.Parse(c.ContainerURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return errors.New("container_url: not an http(s) URL")
		}
		if u.RawQuery == "" && c.Credential == "" {
			return errors.New("container_url: needs a SAS query or a credential")
		}
		if c.Credential != "" {
			ok := false
			for _, k := range entraKinds {
				ok = ok || c.Credential == k
			}
			if !ok {
				return fmt.Errorf("credential: %q is not one of %s", c.Credential, strings.Join(entraKinds, ", "))
			}
		}
	default:
		return errors.New("container_url or connection_string required")
	}
	if c.Interval < time.Second {
		return fmt.Errorf("interval: %s must be at least 1s", c.Interval)
	}
	return nil
}

// LogValue renders the config without its secrets.
func (c Config) LogValue() slog.Value {
	auth := c.Credential
	switch {
	case c.ConnectionString != "":
		auth = "connection-string"
	case auth == "":
		auth = "sas"
	}
	u := c.ContainerURL
	if p, err := url.Parse(u); err == nil {
		p.RawQuery = ""
		u = p.String()
	}
	return slog.GroupValue(slog.String("container_url", u), slog.String("container", c.Container), slog.String("prefix", c.Prefix), slog.String("auth", auth))
}

// Witness publishes checkpoints to, and reads them from, one container.
type Witness struct {
	client *container.Client
	prefix string
}

// New builds the container client. cred is the Entra ID credential for
// cfg.Credential (nil for a SAS or a connection string); opts tune the
// transport (nil for the defaults).
func New(cfg Config, cred azcore.TokenCredential, opts *policy.ClientOptions) (*Witness, error) {
	var o *container.ClientOptions
	if opts != nil {
		o = &container.ClientOptions{ClientOptions: *opts}
	}
	var (
		c   *container.Client
		err error
	)
	switch {
	case cfg.ConnectionString != "":
		c, err = container.NewClientFromConnectionString(cfg.ConnectionString, cfg.Container, o)
	case cred != nil:
		c, err = container.NewClient(cfg.ContainerURL, cred, o)
	default:
		c, err = container.NewClientWithNoCredential(cfg.ContainerURL, o)
	}
	if err != nil {
		// the SDK's message may quote the connection string or the SAS
		return nil, errors.New("checkpoint_publish: cannot build the container client (check container_url or connection_string)")
	}
	return &Witness{client: c, prefix: cfg.Prefix}, nil
}

// blobName is where the checkpoint of chain at size lives.
func (w *Witness) blobName(chain string, size uint64) string {
	return w.prefix + url.PathEscape(chain) + "/" + fmt.Sprintf("%020d", size) + ".checkpoint"
}

// ErrForked means a different checkpoint is already published at the same
// chain and size: the chain was rewritten and signed again.
var ErrForked = errors.New("a different checkpoint is already published at this size")

// Publish writes one checkpoint, unless the same one is already there.
func (w *Witness) Publish(ctx context.Context, cp storage.Checkpoint) error {
	name := w.blobName(cp.Chain, cp.Size)
	b := w.client.NewBlockBlobClient(name)
	_, err := b.Upload(ctx, streaming.NopCloser(bytes.NewReader(cp.Note)), &blockblob.UploadOptions{
		HTTPHeaders:      &blob.HTTPHeaders{BlobContentType: to.Ptr("text/plain; charset=utf-8")},
		AccessConditions: &blob.AccessConditions{ModifiedAccessConditions: &blob.ModifiedAccessConditions{IfNoneMatch: to.Ptr(azcore.ETagAny)}},
	})
	if err == nil {
		return nil
	}
	if !bloberror.HasCode(err, bloberror.BlobAlreadyExists, bloberror.ConditionNotMet) {
		return fmt.Errorf("publish checkpoint %s: %w", name, err)
	}
	have, err := w.download(ctx, name)
	if err != nil {
		return err
	}
	if !bytes.Equal(have, cp.Note) {
		return fmt.Errorf("publish checkpoint of %s at size %d: %w", cp.Chain, cp.Size, ErrForked)
	}
	return nil
}

func (w *Witness) download(ctx context.Context, name string) ([]byte, error) {
	resp, err := w.client.NewBlobClient(name).DownloadStream(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("read published checkpoint %s: %w", name, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("read published checkpoint %s: %w", name, err)
	}
	return b, nil
}

// Newest reads the newest published checkpoint of every chain (of only
// that chain, when set), as external checkpoints to prove the trail
// against.
func (w *Witness) Newest(ctx context.Context, only string) ([]storage.ExternalCheckpoint, error) {
	prefix := w.prefix
	if only != "" {
		prefix += url.PathEscape(only) + "/"
	}
	newest := map[string]uint64{} // chain dir -> size
	var order []string
	pager := w.client.NewListBlobsFlatPager(&container.ListBlobsFlatOptions{Prefix: &prefix})
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list published checkpoints: %w", err)
		}
		for _, it := range page.Segment.BlobItems {
			if it.Name == nil {
				continue
			}
			rest := strings.TrimPrefix(*it.Name, w.prefix)
			dir, file, ok := strings.Cut(rest, "/")
			if !ok || !strings.HasSuffix(file, ".checkpoint") {
				continue
			}
			size, err := strconv.ParseUint(strings.TrimSuffix(file, ".checkpoint"), 10, 64)
			if err != nil {
				continue
			}
			if have, seen := newest[dir]; !seen || size > have {
				if !seen {
					order = append(order, dir)
				}
				newest[dir] = size
			}
		}
	}
	var out []storage.ExternalCheckpoint
	for _, dir := range order {
		name := w.prefix + dir + "/" + fmt.Sprintf("%020d", newest[dir]) + ".checkpoint"
		b, err := w.download(ctx, name)
		if err != nil {
			return nil, err
		}
		out = append(out, storage.ExternalCheckpoint{Source: "published " + name, Note: b, Prove: true})
	}
	return out, nil
}
