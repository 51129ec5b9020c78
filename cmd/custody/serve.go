package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/urfave/cli/v3"
	"golang.org/x/mod/sumdb/note"

	"github.com/custody-audit/custody/storage"
	"github.com/custody-audit/custody/web"
)

// Flags of `custody serve`, shared with `custody run --web`.
const (
	flagWebTLSCert   = "web-tls-cert"
	flagWebTLSKey    = "web-tls-key"
	flagWebTokenFile = "web-token-file"
	flagWebExport    = "web-export"
)

func webFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: flagWebTLSCert, Usage: "TLS certificate (PEM) for the page; required beyond loopback", Sources: cli.EnvVars("CUSTODY_WEB_TLS_CERT")},
		&cli.StringFlag{Name: flagWebTLSKey, Usage: "TLS private key (PEM)", Sources: cli.EnvVars("CUSTODY_WEB_TLS_KEY")},
		&cli.StringFlag{Name: flagWebTokenFile, Usage: "file of bearer tokens (one a line) the page's API accepts; required beyond loopback", Sources: cli.EnvVars("CUSTODY_WEB_TOKEN_FILE")},
		&cli.BoolFlag{Name: flagWebExport, Usage: "offer signed exports: loads the signing key (--signing-key) into the server", Sources: cli.EnvVars("CUSTODY_WEB_EXPORT")},
	}
}

const serveUsageText = `custody serve [--listen <host:port>] [--web-tls-cert <pem> --web-tls-key <pem>] [--web-token-file <file>] [--web-export]

Serves the investigation page: search, timelines of a principal or a
resource, every event with its original record and an inclusion proof the
page checks itself, the canned queries with CSV downloads, integrity (start
a verify and watch it), and signed exports (with --web-export). Read-only:
the store is opened read-only (use the reader role's DSN on servers).

It binds loopback by default. Any other address needs TLS and bearer
tokens; the page asks for a token and keeps it in the tab.

Examples:
  $ custody serve
  $ custody serve --listen 127.0.0.1:9000 --web-export
  $ custody --clickhouse 'clickhouse://reader:…@ch1:9440/?secure=true' serve \
      --listen 0.0.0.0:8443 --web-tls-cert page.crt --web-tls-key page.key --web-token-file tokens.txt`

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:      "serve",
		Usage:     "serve the read-only investigation web page over the store",
		UsageText: serveUsageText,
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "listen", Value: "127.0.0.1:8080", Usage: "listen address", Sources: cli.EnvVars("CUSTODY_WEB_LISTEN")},
		}, webFlags()...),
		Action: func(ctx context.Context, cmd *cli.Command) error {
			if cmd.NArg() > 0 {
				return usageError{fmt.Errorf("serve: unexpected argument %q", cmd.Args().First())}
			}
			st, err := openStore(ctx, cmd, readOnly)
			if err != nil {
				return err
			}
			defer st.Engine().Close(context.Background())
			return serveWeb(ctx, cmd, st, cmd.String("listen"), nil)
		},
	}
}

// serveWeb serves the page over st on addr until ctx ends.
func serveWeb(ctx context.Context, cmd *cli.Command, st *storage.Store, addr string, collector web.Collector) error {
	serve, err := listenWeb(ctx, cmd, st, addr, collector)
	if err != nil {
		return err
	}
	return serve()
}

// listenWeb opens the page's listener (so a bad address or missing TLS
// fails at once) and returns the function that serves until ctx ends.
func listenWeb(ctx context.Context, cmd *cli.Command, st *storage.Store, addr string, collector web.Collector) (func() error, error) {
	log := logger(cmd)
	opts, lo, err := webOptions(cmd, st, addr, log)
	if err != nil {
		return nil, err
	}
	opts.Collector = collector
	srv, err := web.New(opts)
	if err != nil {
		return nil, err
	}
	ln, err := srv.Listen(lo)
	if err != nil {
		return nil, usageError{err}
	}
	scheme := "http"
	if lo.CertFile != "" {
		scheme = "https"
	}
	log.InfoContext(ctx, "serving the investigation page", "url", scheme+"://"+ln.Addr().String()+"/", "tokens", opts.Tokens != nil, "export", opts.Signer != nil)
	return func() error { return srv.Serve(ctx, ln) }, nil
}

// registryCollector reports the collector's sources from its metrics
// registry: the pipelines' counters by pipeline, and the lag gauge (which
// asks the source at each gather).
func registryCollector(reg *prometheus.Registry, sources []namedSource, ready *atomic.Bool) web.Collector {
	return web.CollectorFunc(func(ctx context.Context) []web.SourceStatus {
		out := make([]web.SourceStatus, len(sources))
		byName := map[string]*web.SourceStatus{}
		for i, s := range sources {
			out[i] = web.SourceStatus{Name: s.name, Kind: s.kind, Running: ready.Load()}
			byName[s.name] = &out[i]
		}
		mfs, err := reg.Gather()
		if err != nil {
			for i := range out {
				out[i].LagError = "metrics: " + err.Error()
			}
		}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				var pipeline, stream string
				for _, l := range m.GetLabel() {
					switch l.GetName() {
					case "pipeline":
						pipeline = l.GetValue()
					case "stream":
						stream = l.GetValue()
					}
				}
				s := byName[pipeline]
				if s == nil {
					continue
				}
				n := uint64(m.GetCounter().GetValue())
				switch mf.GetName() {
				case "custody_ingest_messages_in_total":
					s.Messages += n
				case "custody_ingest_events_out_total":
					s.Stored += n
				case "custody_ingest_events_skipped_total":
					s.Skipped += n
				case "custody_ingest_quarantined_total":
					s.Quarantined += n
				case "custody_ingest_dropped_total":
					s.Dropped += n
				case "custody_ingest_lag_events":
					if s.Lag == nil {
						s.Lag = map[string]int64{}
					}
					s.Lag[stream] = int64(m.GetGauge().GetValue())
				}
			}
		}
		return out
	})
}

// webOptions reads the page's keys and settings from the flags.
func webOptions(cmd *cli.Command, st *storage.Store, addr string, log *slog.Logger) (web.Options, web.ListenOptions, error) {
	lo := web.ListenOptions{Addr: addr, CertFile: cmd.String(flagWebTLSCert), KeyFile: cmd.String(flagWebTLSKey)}
	verifier, err := storage.LoadVerifier(cmd.String(flagVerifyKey))
	if err != nil {
		return web.Options{}, lo, err
	}
	vkey, err := os.ReadFile(cmd.String(flagVerifyKey))
	if err != nil {
		return web.Options{}, lo, fmt.Errorf("read verification key: %w", err)
	}
	opts := web.Options{Store: st, Verifier: verifier, VerifierKey: strings.TrimSpace(string(vkey)), CheckpointDir: cmd.String(flagCheckpointDir), Logger: log}
	if p := cmd.String(flagWebTokenFile); p != "" {
		if opts.Tokens, err = web.LoadTokens(p); err != nil {
			return opts, lo, err
		}
	}
	if cmd.Bool(flagWebExport) {
		var signer note.Signer
		if signer, err = storage.LoadSigner(cmd.String(flagSigningKey)); err != nil {
			return opts, lo, err
		}
		opts.Signer = signer
	}
	return opts, lo, nil
}
