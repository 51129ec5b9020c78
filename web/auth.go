package web

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

// TokenSet is the bearer tokens the API accepts, kept as SHA-256 sums so
// the tokens themselves are not held longer than reading the file takes.
type TokenSet struct {
	sums [][32]byte
}

// minTokenLen is the shortest token accepted: 128 bits of base64 or hex.
const minTokenLen = 22

// LoadTokens reads a token file: one token per line; blank lines and lines
// starting with # are ignored. Errors never quote a token.
func LoadTokens(path string) (*TokenSet, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read token file: %w", err)
	}
	ts := &TokenSet{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if len(line) < minTokenLen || strings.ContainsAny(line, " \t") {
			return nil, fmt.Errorf("token file %s line %d: a token is one word of at least %d characters", path, n, minTokenLen)
		}
		ts.sums = append(ts.sums, sha256.Sum256([]byte(line)))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read token file: %w", err)
	}
	if len(ts.sums) == 0 {
		return nil, fmt.Errorf("token file %s holds no token", path)
	}
	return ts, nil
}

// Check reports whether token is one of the set, in time independent of
// which token matches and how much of it.
func (t *TokenSet) Check(token string) bool {
	sum := sha256.Sum256([]byte(token))
	ok := 0
	for _, s := range t.sums {
		ok |= subtle.ConstantTimeCompare(sum[:], s[:])
	}
	return ok == 1
}

// authed requires a valid bearer token or an Entra ID session when the
// server has either.
func (s *Server) authed(h http.Handler) http.Handler {
	if s.opts.Tokens == nil && s.opts.OIDC == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.opts.Tokens != nil {
			tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if ok && s.opts.Tokens.Check(strings.TrimSpace(tok)) {
				h.ServeHTTP(w, r)
				return
			}
		}
		if s.opts.OIDC != nil {
			if sess, ok := s.opts.OIDC.session(r); ok {
				h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), sessionKey{}, sess)))
				return
			}
		}
		body := map[string]any{}
		if s.opts.Tokens != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="custody"`)
			body["error"] = "sign in with a bearer token"
			body["bearer"] = true
		}
		if s.opts.OIDC != nil {
			body["error"] = "sign in"
			body["sign_in"] = "/auth/login"
		}
		writeJSON(w, http.StatusUnauthorized, body)
	})
}

// ListenOptions say where and how the page is served.
type ListenOptions struct {
	// Addr is host:port. A host other than a loopback address needs
	// TLS and tokens or Entra ID sign-in.
	Addr string
	// CertFile and KeyFile enable TLS.
	CertFile, KeyFile string
}

// ErrUnsafeListen means the address is reachable from other machines but
// TLS or authentication is missing.
var ErrUnsafeListen = errors.New("serving beyond loopback needs TLS (--web-tls-cert, --web-tls-key) and authentication: bearer tokens (--web-token-file) or Entra ID sign-in (--web-oidc-authority ...)")

// IsLoopback reports whether a listen address only accepts connections
// from this machine.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Listen checks the options and opens the listener: loopback is served as
// configured; any other address only with TLS and tokens or sign-in.
func (s *Server) Listen(o ListenOptions) (net.Listener, error) {
	tlsOn := o.CertFile != "" || o.KeyFile != ""
	if tlsOn && (o.CertFile == "" || o.KeyFile == "") {
		return nil, errors.New("TLS needs both --web-tls-cert and --web-tls-key")
	}
	if !IsLoopback(o.Addr) && (!tlsOn || (s.opts.Tokens == nil && s.opts.OIDC == nil)) {
		return nil, ErrUnsafeListen
	}
	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", o.Addr, err)
	}
	if tlsOn {
		cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("load TLS certificate: %w", err)
		}
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	}
	return ln, nil
}

// Serve serves on ln until ctx ends, then shuts down gracefully.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) }}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		s.verify.cancelAll()
		_ = srv.Shutdown(sctx)
		return nil
	}
}
