// Package web is Custody's investigation page: a read-only web application
// over the store for responders and auditors (issue 16). It serves a small
// front end embedded in the binary (assets/, no CDN, works offline) and a
// JSON API under /api/:
//
//	GET  /api/meta                    services, classes, outcomes, tags, what this server offers
//	GET  /api/search                  filtered events, newest first, keyset-paged (after=<cursor>)
//	GET  /api/timeline                one principal's or one resource's events by service
//	GET  /api/gaps                    gaps in the evidence in a window
//	GET  /api/event                   one event: every field, the raw record, its checkpoint and inclusion proof
//	GET  /api/queries                 the canned query catalogue
//	GET  /api/queries/{name}          run one (format=json|csv)
//	GET  /api/integrity               chains, heads, checkpoints, the last verify
//	POST /api/verify                  start a verify; GET /api/verify/{id} polls its progress
//	POST /api/export                  a signed bundle as a zip download
//	GET  /api/collector               sources, lag, quarantine (custody run --web only)
//
// Every query is a fixed SQL text with ClickHouse server-side parameters;
// every input is validated before it reaches one. The server never writes
// to the store: `custody serve` opens the engine read-only (the reader
// role on servers). Beyond loopback it requires TLS and bearer tokens or
// Microsoft Entra ID sign-in (see Listen and oidc.go).
package web

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/custody-audit/custody/queries"
	"github.com/custody-audit/custody/storage"
	"github.com/custody-audit/custody/storage/engine"
)

//go:embed assets
var assetFiles embed.FS

// Options configure a Server.
type Options struct {
	// Store is the trail, opened read-only. Required.
	Store *storage.Store
	// Verifier checks checkpoint signatures (the store's public key).
	// Required: the event view and verify need it.
	Verifier note.Verifier
	// VerifierKey is the public key's text (name+hash+key), given to the
	// page so that it checks checkpoint signatures itself.
	VerifierKey string
	// Signer signs export bundles. Nil disables exports (the page says
	// so): the signing key is the one secret a reader would hold.
	Signer note.Signer
	// CheckpointDir is compared with the store's checkpoints by verify.
	CheckpointDir string
	// Collector reports the collector's sources; nil outside `custody run`.
	Collector Collector
	// Tokens, when not empty, are the bearer tokens the API accepts.
	Tokens *TokenSet
	// OIDC, when set, signs users in with Microsoft Entra ID (a session
	// cookie), beside or instead of Tokens.
	OIDC *OIDC
	// Logger receives request errors; nil discards them.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// TempDir holds exports while they are zipped; empty means the
	// system's temporary directory.
	TempDir string
}

// Collector is what `custody run --web` reports about its sources.
type Collector interface {
	Sources(ctx context.Context) []SourceStatus
}

// CollectorFunc adapts a function to Collector.
type CollectorFunc func(ctx context.Context) []SourceStatus

// Sources implements Collector.
func (f CollectorFunc) Sources(ctx context.Context) []SourceStatus { return f(ctx) }

// SourceStatus is one collector source.
type SourceStatus struct {
	Name        string           `json:"name"`
	Kind        string           `json:"kind"`
	Running     bool             `json:"running"`
	Messages    uint64           `json:"messages"`
	Stored      uint64           `json:"stored"`
	Skipped     uint64           `json:"skipped"`
	Quarantined uint64           `json:"quarantined"`
	Dropped     uint64           `json:"dropped"`
	Lag         map[string]int64 `json:"lag,omitempty"` // events behind, per stream
	LagError    string           `json:"lag_error,omitempty"`
}

// Server serves the page and its API.
type Server struct {
	opts    Options
	eng     engine.Engine
	db      string
	cat     *queries.Catalogue
	log     *slog.Logger
	now     func() time.Time
	mux     *http.ServeMux
	verify  *verifyJobs
	exports sync.Mutex // one export at a time: each reads the whole selection
	marks   int        // a timeline's most marks: maxMarks, fewer in tests
}

// New returns a server over opts.Store.
func New(opts Options) (*Server, error) {
	if opts.Store == nil {
		return nil, errors.New("web: no store")
	}
	if opts.Verifier == nil {
		return nil, errors.New("web: the store's verification key is required")
	}
	cat, err := queries.Load()
	if err != nil {
		return nil, fmt.Errorf("web: %w", err)
	}
	s := &Server{opts: opts, eng: readOnly{opts.Store.Engine()}, db: opts.Store.Database(), cat: cat, log: opts.Logger, now: opts.Now, marks: maxMarks}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.verify = newVerifyJobs()
	s.routes()
	return s, nil
}

// pages are the front end's views; each is served index.html, whose
// script reads the path and the query string.
var pages = []string{"/", "/search", "/timeline", "/event", "/queries", "/integrity", "/export", "/collector"}

func (s *Server) routes() {
	mux := http.NewServeMux()
	static, err := fs.Sub(assetFiles, "assets")
	if err != nil {
		panic(err) // the embedded tree always has assets/
	}
	files := http.FileServerFS(static)
	mux.Handle("GET /assets/", http.StripPrefix("/assets/", files))
	for _, p := range pages {
		pattern := "GET " + p
		if p == "/" {
			pattern = "GET /{$}"
		}
		mux.Handle(pattern, s.pageAuthed(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, err := fs.ReadFile(static, "index.html")
			if err != nil {
				http.Error(w, "page missing", http.StatusInternalServerError)
				return
			}
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			_, _ = w.Write(b)
		})))
	}
	if s.opts.OIDC != nil {
		s.oidcRoutes(mux)
	}
	api := func(pattern string, h func(http.ResponseWriter, *http.Request) error) {
		mux.Handle(pattern, s.authed(apiHandler{s, h}))
	}
	api("GET /api/meta", s.handleMeta)
	api("GET /api/search", s.handleSearch)
	api("GET /api/timeline", s.handleTimeline)
	api("GET /api/gaps", s.handleGaps)
	api("GET /api/event", s.handleEvent)
	api("GET /api/queries", s.handleQueries)
	api("GET /api/queries/{name}", s.handleQuery)
	api("GET /api/integrity", s.handleIntegrity)
	api("POST /api/verify", s.handleVerifyStart)
	api("GET /api/verify/{id}", s.handleVerifyStatus)
	api("POST /api/export", s.handleExport)
	api("GET /api/collector", s.handleCollector)
	s.mux = mux
}

// ServeHTTP implements http.Handler: the security headers on every
// response, then the routes.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; form-action "+s.opts.OIDC.formAction()+"; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	if r.TLS != nil {
		h.Set("Strict-Transport-Security", "max-age=31536000")
	}
	if strings.HasPrefix(r.URL.Path, "/api/") {
		h.Set("Cache-Control", "no-store")
	}
	// Without tokens the page is for this machine only: a request naming
	// another host is a DNS-rebinding page reaching for loopback.
	if s.opts.Tokens == nil && s.opts.OIDC == nil && !loopbackHost(r.Host) {
		http.Error(w, "this server answers to localhost only", http.StatusMisdirectedRequest)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// loopbackHost reports whether a Host header names this machine.
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Errors of the API. A handler returning one of these answers with its
// status and message; anything else is logged and answered 500 without
// detail (engine errors can quote the store's layout).
var (
	errBadRequest = errors.New("bad request")
	errNotFound   = errors.New("not found")
	errConflict   = errors.New("conflict")
	errDisabled   = errors.New("not available on this server")
)

// apiError is an error the client may read.
type apiError struct {
	kind error
	msg  string
}

func (e *apiError) Error() string { return e.msg }
func (e *apiError) Unwrap() error { return e.kind }

func badRequest(format string, a ...any) error {
	return &apiError{errBadRequest, fmt.Sprintf(format, a...)}
}

type apiHandler struct {
	s *Server
	h func(http.ResponseWriter, *http.Request) error
}

func (a apiHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost {
		// A state-changing request must come from the page's script: a
		// cross-site form cannot set this header, and a cross-site
		// script cannot without a preflight this server never grants.
		if r.Header.Get("X-Custody-Request") != "1" {
			writeJSON(w, http.StatusForbidden, map[string]string{"error": "missing X-Custody-Request header"})
			return
		}
	}
	err := a.h(w, r)
	if err == nil {
		return
	}
	var ae *apiError
	status := http.StatusInternalServerError
	msg := "internal error (see the server log)"
	if errors.As(err, &ae) {
		msg = ae.msg
		switch {
		case errors.Is(ae.kind, errBadRequest):
			status = http.StatusBadRequest
		case errors.Is(ae.kind, errNotFound):
			status = http.StatusNotFound
		case errors.Is(ae.kind, errConflict):
			status = http.StatusConflict
		case errors.Is(ae.kind, errDisabled):
			status = http.StatusNotImplemented
		}
	} else if errors.Is(err, context.Canceled) {
		return
	} else {
		a.s.log.ErrorContext(r.Context(), "web request failed", "path", r.URL.Path, "err", err)
	}
	writeJSON(w, status, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v)
}

// readOnly refuses writes whatever the engine under it allows: the
// collector's engine (custody run --web) can write, the page never does.
type readOnly struct{ engine.Engine }

func (readOnly) Exec(context.Context, string, engine.Params) error { return engine.ErrReadOnly }
func (readOnly) PrepareBatch(context.Context, string, []engine.Column) (engine.Batch, error) {
	return nil, engine.ErrReadOnly
}
