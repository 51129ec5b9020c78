package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/custody-audit/custody/ingest/eventhubs"
	"github.com/custody-audit/custody/storage"
	"github.com/custody-audit/custody/storage/witness"
)

// loadPublishConfig reads the checkpoint_publish section of the config
// file at path; nil when the file has none.
func loadPublishConfig(path string) (*witness.Config, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	var f struct {
		Publish yaml.Node `yaml:"checkpoint_publish"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return decodePublishConfig(path, &f.Publish)
}

// decodePublishConfig decodes and validates a checkpoint_publish section.
func decodePublishConfig(path string, node *yaml.Node) (*witness.Config, error) {
	if node.Kind == 0 {
		return nil, nil
	}
	c := witness.DefaultConfig()
	if err := decodeSection(node, &c); err != nil {
		return nil, fmt.Errorf("config %s: checkpoint_publish: %w", path, err)
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("config %s: checkpoint_publish.%w", path, err)
	}
	return &c, nil
}

// openWitness builds the container client of cfg, with the Entra ID
// credential it names (built as for the eventhubs section).
func openWitness(cfg witness.Config) (*witness.Witness, error) {
	if cfg.Credential == "" {
		return witness.New(cfg, nil, nil)
	}
	cred, err := eventhubs.NewCredential(eventhubs.Config{Credential: eventhubs.CredentialKind(cfg.Credential), TenantID: cfg.TenantID,
		ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret, TokenFile: cfg.TokenFile, AuthorityHost: cfg.AuthorityHost})
	if err != nil {
		return nil, fmt.Errorf("checkpoint_publish: credential %s: %w", cfg.Credential, err)
	}
	return witness.New(cfg, cred, nil)
}

// publishLoop publishes the chains' newest checkpoints to the witness
// container every interval while the collector runs, and once more when
// it stops.
type publishLoop struct {
	store     *storage.Store
	witness   *witness.Witness
	interval  time.Duration
	log       *slog.Logger
	published map[string]uint64 // newest size published, by chain
}

func (p *publishLoop) run(ctx context.Context) {
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		if err := p.once(ctx); err != nil && ctx.Err() == nil {
			p.log.ErrorContext(ctx, "publish checkpoints", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// once publishes every chain's newest checkpoint not yet published. A
// checkpoint that differs from one already published at its size (the
// chain was rewritten and signed again) is logged as an error and the
// rest are still published.
func (p *publishLoop) once(ctx context.Context) error {
	if p.published == nil {
		p.published = map[string]uint64{}
	}
	cps, err := p.store.LatestCheckpoints(ctx)
	if err != nil {
		return err
	}
	var errs []error
	n := 0
	for _, cp := range cps {
		if p.published[cp.Chain] >= cp.Size {
			continue
		}
		if err := p.witness.Publish(ctx, cp); err != nil {
			if errors.Is(err, witness.ErrForked) {
				p.log.ErrorContext(ctx, "checkpoint differs from the published one: the chain was rewritten", "chain", cp.Chain, "size", cp.Size)
			}
			errs = append(errs, err)
			continue
		}
		p.published[cp.Chain] = cp.Size
		n++
	}
	if n > 0 {
		p.log.DebugContext(ctx, "checkpoints published", "chains", n)
	}
	return errors.Join(errs...)
}

// readPublished reads the newest published checkpoint of every chain (of
// only, when set) for custody verify --published.
func readPublished(ctx context.Context, configPath, only string) ([]storage.ExternalCheckpoint, error) {
	cfg, err := loadPublishConfig(configPath)
	if err != nil {
		return nil, err
	}
	if cfg == nil {
		return nil, usageError{errors.New("--published needs --config with a checkpoint_publish section")}
	}
	w, err := openWitness(*cfg)
	if err != nil {
		return nil, err
	}
	return w.Newest(ctx, only)
}
