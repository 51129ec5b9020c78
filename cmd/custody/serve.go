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

	flagWebOIDCAuthority   = "web-oidc-authority"
	flagWebOIDCClientID    = "web-oidc-client-id"
	flagWebOIDCSecretFile  = "web-oidc-client-secret-file"
	flagWebOIDCFederated   = "web-oidc-federated-token-file"
	flagWebOIDCRedirect    = "web-oidc-redirect-url"
	flagWebOIDCGroup       = "web-oidc-group"
	flagWebOIDCRole        = "web-oidc-role"
	flagWebOIDCSessionKey  = "web-oidc-session-key-file"
	flagWebOIDCSessionLife = "web-oidc-session-lifetime"
)

func webFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: flagWebTLSCert, Usage: "TLS certificate (PEM) for the page; required beyond loopback", Sources: cli.EnvVars("CUSTODY_WEB_TLS_CERT")},
		&cli.StringFlag{Name: flagWebTLSKey, Usage: "TLS private key (PEM)", Sources: cli.EnvVars("CUSTODY_WEB_TLS_KEY")},
		&cli.StringFlag{Name: flagWebTokenFile, Usage: "file of bearer tokens (one a line) the page's API accepts; required beyond loopback", Sources: cli.EnvVars("CUSTODY_WEB_TOKEN_FILE")},
		&cli.BoolFlag{Name: flagWebExport, Usage: "offer signed exports: loads the signing key (--signing-key) into the server", Sources: cli.EnvVars("CUSTODY_WEB_EXPORT")},
		&cli.StringFlag{Name: flagWebOIDCAuthority, Usage: "Microsoft Entra ID sign-in: the tenant's issuer URL, https://login.microsoftonline.com/<tenant-id>/v2.0", Sources: cli.EnvVars("CUSTODY_WEB_OIDC_AUTHORITY")},
		&cli.StringFlag{Name: flagWebOIDCClientID, Usage: "Entra ID sign-in: the app registration's application (client) id", Sources: cli.EnvVars("CUSTODY_WEB_OIDC_CLIENT_ID")},
		&cli.StringFlag{Name: flagWebOIDCSecretFile, Usage: "Entra ID sign-in: file holding the app's client secret", Sources: cli.EnvVars("CUSTODY_WEB_OIDC_CLIENT_SECRET_FILE")},
		&cli.StringFlag{Name: flagWebOIDCFederated, Usage: "Entra ID sign-in: file holding a federated credential (the workload identity's token, $AZURE_FEDERATED_TOKEN_FILE), read at each sign-in; instead of a secret", Sources: cli.EnvVars("CUSTODY_WEB_OIDC_FEDERATED_TOKEN_FILE")},
		&cli.StringFlag{Name: flagWebOIDCRedirect, Usage: "Entra ID sign-in: this server's callback as registered, https://<host>/auth/callback", Sources: cli.EnvVars("CUSTODY_WEB_OIDC_REDIRECT_URL")},
		&cli.StringSliceFlag{Name: flagWebOIDCGroup, Usage: "Entra ID sign-in: admit only members of this group (object id; repeatable, with --web-oidc-role: any of them)", Sources: cli.EnvVars("CUSTODY_WEB_OIDC_GROUPS")},
		&cli.StringSliceFlag{Name: flagWebOIDCRole, Usage: "Entra ID sign-in: admit only holders of this app role (value; repeatable)", Sources: cli.EnvVars("CUSTODY_WEB_OIDC_ROLES")},
		&cli.StringFlag{Name: flagWebOIDCSessionKey, Usage: "Entra ID sign-in: file of at least 32 random bytes sealing the session cookies (default: generated at start; restarts sign everybody out)", Sources: cli.EnvVars("CUSTODY_WEB_OIDC_SESSION_KEY_FILE")},
		&cli.DurationFlag{Name: flagWebOIDCSessionLife, Value: web.DefaultSessionLifetime, Usage: "Entra ID sign-in: how long a sign-in lasts (at most 24h)", Sources: cli.EnvVars("CUSTODY_WEB_OIDC_SESSION_LIFETIME")},
	}
}

const serveUsageText = `custody serve [--listen <host:port>] [--web-tls-cert <pem> --web-tls-key <pem>] [--web-token-file <file>]
      [--web-oidc-authority <url> --web-oidc-client-id <id> --web-oidc-client-secret-file <file> --web-oidc-redirect-url <url>]
      [--web-export]

Serves the investigation page: search, timelines of a principal or a
resource, every event with its original record and an inclusion proof the
page checks itself, the canned queries with CSV downloads, integrity (start
a verify and watch it), and signed exports (with --web-export). Read-only:
the store is opened read-only (use the reader role's DSN on servers).

It binds loopback by default. Any other address needs TLS and
authentication: bearer tokens (the page asks for a token and keeps it in
the tab) or Microsoft Entra ID sign-in (OpenID Connect, --web-oidc-*;
optionally only members of given groups or app roles), or both.

Examples:
  $ custody serve
  $ custody serve --listen 127.0.0.1:9000 --web-export
  $ custody --clickhouse 'clickhouse://reader:…@ch1:9440/?secure=true' serve \
      --listen 0.0.0.0:8443 --web-tls-cert page.crt --web-tls-key page.key --web-token-file tokens.txt
  $ custody serve --listen 0.0.0.0:8443 --web-tls-cert page.crt --web-tls-key page.key \
      --web-oidc-authority https://login.microsoftonline.com/<tenant-id>/v2.0 --web-oidc-client-id <app-id> \
      --web-oidc-client-secret-file /run/secrets/custody-oidc --web-oidc-redirect-url https://custody.example.com/auth/callback \
      --web-oidc-group <responders-group-object-id>`

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
			addr := cmd.String("listen")
			return runServe(ctx, serveOptions{
				Open: storeOpener(cmd, readOnly, ""),
				Listen: func(ctx context.Context, st *storage.Store) (func() error, error) {
					return listenWeb(ctx, cmd, st, addr, nil)
				},
			})
		},
	}
}

// serveOptions is the page `custody serve` serves, over which store.
type serveOptions struct {
	// Open opens the store to read.
	Open func(ctx context.Context) (*storage.Store, error)
	// Listen opens the page's listener over st (address, TLS and sign-in
	// from the web flags) and returns the function that serves until ctx
	// ends.
	Listen func(ctx context.Context, st *storage.Store) (func() error, error)
}

// runServe serves the page over the store until ctx ends.
func runServe(ctx context.Context, o serveOptions) error {
	st, err := o.Open(ctx)
	if err != nil {
		return err
	}
	defer st.Engine().Close(context.Background())
	serve, err := o.Listen(ctx, st)
	if err != nil {
		return err
	}
	return serve()
}

// listenWeb opens the page's listener (so a bad address or missing TLS
// fails at once) and returns the function that serves until ctx ends.
func listenWeb(ctx context.Context, cmd *cli.Command, st *storage.Store, addr string, collector web.Collector) (func() error, error) {
	log := logger(cmd)
	opts, lo, err := webOptions(ctx, cmd, st, addr, log)
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
	log.InfoContext(ctx, "serving the investigation page", "url", scheme+"://"+ln.Addr().String()+"/", "tokens", opts.Tokens != nil, "entra_sign_in", opts.OIDC != nil, "export", opts.Signer != nil)
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
func webOptions(ctx context.Context, cmd *cli.Command, st *storage.Store, addr string, log *slog.Logger) (web.Options, web.ListenOptions, error) {
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
	if opts.OIDC, err = webOIDC(ctx, cmd); err != nil {
		return opts, lo, err
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

// webOIDC reads the Entra ID sign-in flags; nil when no authority is
// given. The client secret and the federated credential come from files
// only, never from the command line, and no error quotes them.
func webOIDC(ctx context.Context, cmd *cli.Command) (*web.OIDC, error) {
	authority := cmd.String(flagWebOIDCAuthority)
	if authority == "" {
		for _, f := range []string{flagWebOIDCClientID, flagWebOIDCSecretFile, flagWebOIDCFederated, flagWebOIDCRedirect, flagWebOIDCSessionKey} {
			if cmd.String(f) != "" {
				return nil, usageError{fmt.Errorf("--%s needs --%s", f, flagWebOIDCAuthority)}
			}
		}
		return nil, nil
	}
	o := web.OIDCOptions{Authority: authority, ClientID: cmd.String(flagWebOIDCClientID), RedirectURL: cmd.String(flagWebOIDCRedirect),
		Groups: cmd.StringSlice(flagWebOIDCGroup), Roles: cmd.StringSlice(flagWebOIDCRole), SessionLifetime: cmd.Duration(flagWebOIDCSessionLife)}
	secretFile, fedFile := cmd.String(flagWebOIDCSecretFile), cmd.String(flagWebOIDCFederated)
	switch {
	case secretFile != "" && fedFile != "":
		return nil, usageError{fmt.Errorf("give one of --%s and --%s", flagWebOIDCSecretFile, flagWebOIDCFederated)}
	case secretFile != "":
		b, err := os.ReadFile(secretFile)
		if err != nil {
			return nil, fmt.Errorf("read the Entra ID client secret file: %w", err)
		}
		if o.ClientSecret = strings.TrimSpace(string(b)); o.ClientSecret == "" {
			return nil, fmt.Errorf("the Entra ID client secret file %s is empty", secretFile)
		}
	case fedFile != "":
		o.ClientAssertion = func(context.Context) (string, error) {
			b, err := os.ReadFile(fedFile) // projected tokens rotate: read at each use
			if err != nil {
				return "", fmt.Errorf("read the federated token file: %w", err)
			}
			if tok := strings.TrimSpace(string(b)); tok != "" {
				return tok, nil
			}
			return "", fmt.Errorf("the federated token file %s is empty", fedFile)
		}
	default:
		return nil, usageError{fmt.Errorf("Entra ID sign-in needs --%s or --%s", flagWebOIDCSecretFile, flagWebOIDCFederated)}
	}
	if p := cmd.String(flagWebOIDCSessionKey); p != "" {
		var err error
		if o.SessionKey, err = web.LoadSessionKey(p); err != nil {
			return nil, err
		}
	}
	return web.NewOIDC(ctx, o)
}
