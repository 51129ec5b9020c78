package web

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/custody-audit/custody/internal/chdbtest"
	"github.com/custody-audit/custody/internal/entrafake"
	"github.com/custody-audit/custody/storage"
)

const (
	oidcTenant   = "7d1c0e3a-contoso"
	oidcClient   = "custody-page-client"
	oidcSecret   = "Zq8~not-to-be-seen-anywhere-0123456789"
	oidcFedToken = "eyJ.federated-service-account-token.sig"
)

// oidcWorld is one embedded store, one Entra ID authority and everything
// the page's servers and browsers said, to search for secrets at the end.
type oidcWorld struct {
	store    *storage.Store
	verifier note.Verifier
	auth     *entrafake.Authority
	logs     *syncBuffer
	mu       sync.Mutex
	bodies   bytes.Buffer // every response body any client read
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// dana is the user signed in at the authority.
var dana = entrafake.User{ObjectID: "00000000-dana", Name: "Dana Dev", Username: "dana.dev@contoso.com",
	Groups: []string{"grp-responders"}, Roles: []string{"Custody.Reader"}}

func newOIDCWorld(t *testing.T) *oidcWorld {
	t.Helper()
	ctx := context.Background()
	eng := chdbtest.Open(t, "")
	if _, err := storage.Migrate(ctx, eng, storage.SchemaOptions{}, "web-test"); err != nil {
		t.Fatal(err)
	}
	_, vkey, err := storage.GenerateKey("web-test")
	if err != nil {
		t.Fatal(err)
	}
	w := &oidcWorld{logs: &syncBuffer{}}
	if w.verifier, err = note.NewVerifier(vkey); err != nil {
		t.Fatal(err)
	}
	if w.store, err = storage.Open(ctx, eng, storage.Options{Actor: "web-test"}); err != nil {
		t.Fatal(err)
	}
	if w.auth, err = entrafake.New(entrafake.Options{Resources: []string{"https://management.azure.com"}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.auth.Close)
	w.auth.AddClient(oidcTenant, oidcClient, oidcSecret)
	w.auth.SignIn(&dana)
	return w
}

// page is one `custody serve` with Entra ID sign-in over TLS.
type page struct {
	url  string
	srv  *Server
	pool *x509.CertPool
	cert *x509.Certificate
}

func (w *oidcWorld) serve(t *testing.T, o OIDCOptions, tokens *TokenSet) *page {
	t.Helper()
	ts := httptest.NewUnstartedServer(nil)
	base := "https://" + ts.Listener.Addr().String()
	if o.ClientID == "" {
		o.ClientID = oidcClient
	}
	w.auth.AddRedirectURI(oidcTenant, o.ClientID, base+"/auth/callback")
	w.auth.AddRedirectURI(oidcTenant, o.ClientID, base+"/auth/signed-out")
	if o.ClientSecret == "" && o.ClientAssertion == nil {
		o.ClientSecret = oidcSecret
	}
	o.Authority = w.auth.URL() + "/" + oidcTenant + "/v2.0"
	o.RedirectURL = base + "/auth/callback"
	o.HTTPClient = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: w.auth.CertPool()}}}
	x, err := NewOIDC(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Options{Store: w.store, Verifier: w.verifier, OIDC: x, Tokens: tokens,
		Logger: slog.New(slog.NewTextHandler(w.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	ts.Config.Handler = srv
	ts.StartTLS()
	t.Cleanup(ts.Close)
	pool := w.auth.CertPool()
	pool.AddCert(ts.Certificate())
	return &page{url: base, srv: srv, pool: pool, cert: ts.Certificate()}
}

// recorder keeps every response's body (for the secrets check) and the
// Set-Cookie headers and redirects seen.
type recorder struct {
	w         *oidcWorld
	base      http.RoundTripper
	mu        sync.Mutex
	cookies   []*http.Cookie
	locations []string
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	res, err := r.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		return nil, err
	}
	res.Body = io.NopCloser(bytes.NewReader(b))
	if !strings.HasPrefix(req.URL.String(), r.w.auth.URL()) { // the page's answers, not the authority's
		r.w.mu.Lock()
		r.w.bodies.Write(b)
		r.w.mu.Unlock()
	}
	r.mu.Lock()
	r.cookies = append(r.cookies, res.Cookies()...)
	if l := res.Header.Get("Location"); l != "" {
		r.locations = append(r.locations, l)
	}
	r.mu.Unlock()
	return res, nil
}

// browser is an HTTP client with a cookie jar trusting the page and the
// authority; follow says whether it follows redirects.
func (p *page) browser(t *testing.T, w *oidcWorld, follow bool) (*http.Client, *recorder) {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{w: w, base: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.pool}}}
	c := &http.Client{Jar: jar, Transport: rec, Timeout: 10 * time.Second}
	if !follow {
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	}
	return c, rec
}

func get(t *testing.T, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	res, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

// signIn walks the whole flow from a page view and returns the browser.
func (p *page) signIn(t *testing.T, w *oidcWorld) (*http.Client, *recorder) {
	t.Helper()
	c, rec := p.browser(t, w, true)
	res, body := get(t, c, p.url+"/timeline?actor=x")
	if res.StatusCode != 200 || res.Request.URL.Path != "/timeline" || res.Request.URL.RawQuery != "actor=x" || !strings.Contains(body, "<title>Custody</title>") {
		t.Fatalf("sign-in ended at %s with %d: %s", res.Request.URL, res.StatusCode, body)
	}
	return c, rec
}

func TestOIDC(t *testing.T) {
	w := newOIDCWorld(t)

	t.Run("sign in, use the API, sign out", func(t *testing.T) {
		p := w.serve(t, OIDCOptions{}, nil)
		c, rec := p.signIn(t, w)
		// The authorize request carried PKCE S256, state and nonce.
		var authz *url.URL
		for _, l := range rec.locations {
			if u, _ := url.Parse(l); u != nil && strings.HasSuffix(u.Path, "/oauth2/v2.0/authorize") {
				authz = u
			}
		}
		if authz == nil {
			t.Fatalf("no redirect to the authorize endpoint in %v", rec.locations)
		}
		q := authz.Query()
		for _, k := range []string{"state", "nonce", "code_challenge"} {
			if len(q.Get(k)) < 32 {
				t.Errorf("authorize request's %s = %q, want a random value", k, q.Get(k))
			}
		}
		if q.Get("code_challenge_method") != "S256" || q.Get("response_type") != "code" || q.Get("client_id") != oidcClient {
			t.Errorf("authorize request %s", authz.RawQuery)
		}
		// The session cookie's attributes.
		var sess *http.Cookie
		for _, ck := range rec.cookies {
			if ck.Name == sessionCookie && ck.Value != "" {
				sess = ck
			}
		}
		if sess == nil {
			t.Fatal("no session cookie set")
		}
		if !sess.HttpOnly || !sess.Secure || sess.SameSite != http.SameSiteLaxMode || sess.Path != "/" || sess.Domain != "" ||
			sess.MaxAge <= 0 || sess.MaxAge > int(DefaultSessionLifetime/time.Second) {
			t.Errorf("session cookie %+v: want HttpOnly, Secure, SameSite=Lax, Path=/, host-only, Max-Age within %s", sess, DefaultSessionLifetime)
		}
		res, body := get(t, c, p.url+"/api/meta")
		if res.StatusCode != 200 || !strings.Contains(body, `"username":"dana.dev@contoso.com"`) {
			t.Fatalf("meta after sign-in: %d %s", res.StatusCode, body)
		}
		// A POST still needs the page's header, session or not.
		req, _ := http.NewRequest("POST", p.url+"/api/verify", strings.NewReader("{}"))
		if res, err := c.Do(req); err != nil || res.StatusCode != http.StatusForbidden {
			t.Errorf("POST without X-Custody-Request: %v %v", res.StatusCode, err)
		}
		// Signing out ends the Entra ID session too: the page sends the
		// browser to the discovery document's end_session_endpoint, which
		// sends it back to /auth/signed-out.
		signOuts := w.auth.SignOuts()
		rec.locations = nil
		res, err := c.PostForm(p.url+"/auth/logout", nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.Request.URL.String() != p.url+"/auth/signed-out" || !strings.Contains(string(b), "and of Microsoft Entra ID") {
			t.Errorf("sign-out ended at %s: %s", res.Request.URL, b)
		}
		if len(rec.locations) == 0 {
			t.Fatal("sign-out did not redirect")
		}
		end, err := url.Parse(rec.locations[0])
		if err != nil || end.Scheme+"://"+end.Host+end.Path != w.auth.URL()+"/"+oidcTenant+"/oauth2/v2.0/logout" {
			t.Fatalf("sign-out redirected to %s, want the end_session_endpoint", rec.locations[0])
		}
		eq := end.Query()
		if eq.Get("post_logout_redirect_uri") != p.url+"/auth/signed-out" || eq.Get("client_id") != oidcClient || eq.Get("logout_hint") != entrafake.LoginHint(dana) {
			t.Errorf("end session request %s", end.RawQuery)
		}
		if w.auth.SignOuts() != signOuts+1 {
			t.Errorf("the authority's session was not ended (%d sign-outs, was %d)", w.auth.SignOuts(), signOuts)
		}
		res, body = get(t, c, p.url+"/api/meta")
		if res.StatusCode != http.StatusUnauthorized || !strings.Contains(body, `"sign_in":"/auth/login"`) {
			t.Errorf("meta after sign-out: %d %s", res.StatusCode, body)
		}
		// Signing in again needs the authority's sign-in again.
		if res, _ := get(t, c, p.url+"/timeline?actor=x"); res.Request.URL.Path != "/auth/callback" || res.StatusCode != http.StatusForbidden {
			t.Errorf("sign-in after sign-out ended at %s with %d, want the authority's login_required", res.Request.URL, res.StatusCode)
		}
		w.auth.SignIn(&dana)
	})

	t.Run("no session is sent to sign in", func(t *testing.T) {
		p := w.serve(t, OIDCOptions{}, nil)
		c, _ := p.browser(t, w, false)
		res, _ := get(t, c, p.url+"/search?actor=dana")
		if res.StatusCode != http.StatusFound || res.Header.Get("Location") != "/auth/login?next=%2Fsearch%3Factor%3Ddana" {
			t.Errorf("page without session: %d to %q", res.StatusCode, res.Header.Get("Location"))
		}
		res, body := get(t, c, p.url+"/api/search")
		if res.StatusCode != http.StatusUnauthorized || !strings.Contains(body, `"sign_in"`) {
			t.Errorf("API without session: %d %s", res.StatusCode, body)
		}
		// An open redirect through next is refused.
		res, _ = get(t, c, p.url+"/auth/login?next=//evil.example/x")
		if res.StatusCode != http.StatusFound {
			t.Fatalf("login: %d", res.StatusCode)
		}
		res, _ = get(t, c, res.Header.Get("Location"))
		if res, _ = get(t, c, res.Header.Get("Location")); res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/" {
			t.Errorf("callback after next=//evil.example: %d to %q", res.StatusCode, res.Header.Get("Location"))
		}
	})

	t.Run("federated credential", func(t *testing.T) {
		const fedClient = "custody-page-federated"
		w.auth.AddFederatedClient(oidcTenant, fedClient, oidcFedToken)
		p := w.serve(t, OIDCOptions{ClientID: fedClient, ClientAssertion: func(context.Context) (string, error) { return oidcFedToken, nil }}, nil)
		p.signIn(t, w)
	})

	refusals := []struct {
		name  string
		tweak func(*entrafake.IDClaims)
		opts  OIDCOptions
		log   string
	}{
		{"wrong audience", func(c *entrafake.IDClaims) { c.Audience = "another-app" }, OIDCOptions{}, "expected audience"},
		{"expired", func(c *entrafake.IDClaims) {
			c.IssuedAt -= 7200
			c.NotBefore -= 7200
			c.Expires = time.Now().Add(-time.Hour).Unix()
		}, OIDCOptions{}, "expired"},
		{"wrong nonce", func(c *entrafake.IDClaims) { c.Nonce = "replayed-nonce" }, OIDCOptions{}, "nonce does not match"},
		{"another issuer", func(c *entrafake.IDClaims) { c.Issuer = "https://login.microsoftonline.com/other/v2.0" }, OIDCOptions{}, "different provider"},
		{"outside the allowed groups", nil, OIDCOptions{Groups: []string{"grp-auditors"}}, "not a member"},
		{"outside the allowed roles", nil, OIDCOptions{Roles: []string{"Custody.Admin"}}, "not a member"},
	}
	for _, tc := range refusals {
		t.Run("refused: "+tc.name, func(t *testing.T) {
			p := w.serve(t, tc.opts, nil)
			w.auth.TweakIDTokens(tc.tweak)
			defer w.auth.TweakIDTokens(nil)
			c, _ := p.browser(t, w, true)
			before := len(w.logs.String())
			res, body := get(t, c, p.url+"/search")
			if res.StatusCode != http.StatusForbidden || !strings.Contains(body, "Sign-in refused") {
				t.Errorf("sign-in: %d at %s: %s", res.StatusCode, res.Request.URL, body)
			}
			if log := w.logs.String()[before:]; !strings.Contains(log, tc.log) {
				t.Errorf("server log does not say %q:\n%s", tc.log, log)
			}
			if res, _ := get(t, c, p.url+"/api/meta"); res.StatusCode != http.StatusUnauthorized {
				t.Errorf("API after a refused sign-in: %d", res.StatusCode)
			}
		})
	}
	t.Run("allowed by group or role", func(t *testing.T) {
		w.serve(t, OIDCOptions{Groups: []string{"grp-responders"}}, nil).signIn(t, w)
		w.serve(t, OIDCOptions{Roles: []string{"Custody.Reader"}}, nil).signIn(t, w)
	})

	t.Run("refused: bad state, no sign-in started", func(t *testing.T) {
		p := w.serve(t, OIDCOptions{}, nil)
		c, _ := p.browser(t, w, false)
		res, _ := get(t, c, p.url+"/auth/login")
		res, _ = get(t, c, res.Header.Get("Location")) // the authority answers with code and state
		cb, err := url.Parse(res.Header.Get("Location"))
		if err != nil || cb.Query().Get("code") == "" {
			t.Fatalf("authority answered %d %q", res.StatusCode, res.Header.Get("Location"))
		}
		q := cb.Query()
		q.Set("state", "forged-state")
		cb.RawQuery = q.Encode()
		if res, body := get(t, c, cb.String()); res.StatusCode != http.StatusBadRequest || !strings.Contains(body, "does not belong") {
			t.Errorf("forged state: %d %s", res.StatusCode, body)
		}
		// Another browser (no login cookie) bringing a callback.
		other, _ := p.browser(t, w, false)
		if res, _ := get(t, other, p.url+"/auth/callback?code=abc&state=def"); res.StatusCode != http.StatusBadRequest {
			t.Errorf("callback without a started sign-in: %d", res.StatusCode)
		}
		if res, _ := get(t, c, p.url+"/api/meta"); res.StatusCode != http.StatusUnauthorized {
			t.Errorf("API after forged callbacks: %d", res.StatusCode)
		}
	})

	t.Run("refused: tampered or foreign session cookie", func(t *testing.T) {
		p := w.serve(t, OIDCOptions{}, nil)
		c, _ := p.signIn(t, w)
		u, _ := url.Parse(p.url)
		var val string
		for _, ck := range c.Jar.Cookies(u) {
			if ck.Name == sessionCookie {
				val = ck.Value
			}
		}
		if val == "" {
			t.Fatal("no session cookie in the jar")
		}
		flip := []byte(val)
		flip[len(flip)/2] ^= 1
		if flip[len(flip)/2] == '-' || flip[len(flip)/2] == '_' {
			flip[len(flip)/2] = 'A'
		}
		// The same cookie on another server (another key) is refused too.
		q := w.serve(t, OIDCOptions{}, nil)
		both := x509.NewCertPool()
		both.AddCert(p.cert)
		both.AddCert(q.cert)
		for _, tc := range []struct{ base, value string }{{p.url, string(flip)}, {q.url, val}, {p.url, "garbage-cookie"}} {
			b, _ := p.browser(t, w, false)
			b.Transport.(*recorder).base = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: both}}
			req, _ := http.NewRequest("GET", tc.base+"/api/meta", nil)
			req.AddCookie(&http.Cookie{Name: sessionCookie, Value: tc.value})
			res, err := b.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != http.StatusUnauthorized {
				t.Errorf("cookie %q at %s: %d, want 401", tc.value[:8], tc.base, res.StatusCode)
			}
		}
	})

	t.Run("session lifetime is bounded", func(t *testing.T) {
		var mu sync.Mutex
		now := time.Now()
		clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
		p := w.serve(t, OIDCOptions{SessionLifetime: time.Hour, Now: clock}, nil)
		c, _ := p.signIn(t, w)
		if res, _ := get(t, c, p.url+"/api/meta"); res.StatusCode != 200 {
			t.Fatalf("meta: %d", res.StatusCode)
		}
		mu.Lock()
		now = now.Add(time.Hour + time.Second)
		mu.Unlock()
		if res, _ := get(t, c, p.url+"/api/meta"); res.StatusCode != http.StatusUnauthorized {
			t.Errorf("meta after the session's lifetime: %d", res.StatusCode)
		}
	})

	t.Run("bearer tokens beside sign-in", func(t *testing.T) {
		tok := "tok-0123456789abcdefghijklmnop"
		path := filepath.Join(t.TempDir(), "tokens")
		if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		ts, err := LoadTokens(path)
		if err != nil {
			t.Fatal(err)
		}
		p := w.serve(t, OIDCOptions{}, ts)
		c, _ := p.browser(t, w, false)
		req, _ := http.NewRequest("GET", p.url+"/api/meta", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Errorf("bearer token: %d", res.StatusCode)
		}
		res, body := get(t, c, p.url+"/api/meta")
		var m map[string]any
		_ = json.Unmarshal([]byte(body), &m)
		if res.StatusCode != http.StatusUnauthorized || m["bearer"] != true || m["sign_in"] != "/auth/login" {
			t.Errorf("no credentials: %d %s", res.StatusCode, body)
		}
		// With tokens too, the page loads and offers both ways in.
		if res, _ := get(t, c, p.url+"/search"); res.StatusCode != 200 {
			t.Errorf("page with tokens and sign-in: %d", res.StatusCode)
		}
		p.signIn(t, w)
	})

	t.Run("configuration refused", func(t *testing.T) {
		base := OIDCOptions{Authority: w.auth.URL() + "/" + oidcTenant + "/v2.0", ClientID: oidcClient, ClientSecret: oidcSecret,
			RedirectURL: "https://custody.example/auth/callback"}
		for name, mod := range map[string]func(*OIDCOptions){
			"both secret and assertion": func(o *OIDCOptions) { o.ClientAssertion = func(context.Context) (string, error) { return "", nil } },
			"no credential":             func(o *OIDCOptions) { o.ClientSecret = "" },
			"http redirect":             func(o *OIDCOptions) { o.RedirectURL = "http://custody.example/auth/callback" },
			"other callback path":       func(o *OIDCOptions) { o.RedirectURL = "https://custody.example/cb" },
			"http authority":            func(o *OIDCOptions) { o.Authority = "http://login.example/t/v2.0" },
			"long session":              func(o *OIDCOptions) { o.SessionLifetime = 48 * time.Hour },
			"short key":                 func(o *OIDCOptions) { o.SessionKey = []byte("short") },
		} {
			o := base
			mod(&o)
			if _, err := NewOIDC(context.Background(), o); err == nil {
				t.Errorf("%s: accepted", name)
			} else if strings.Contains(err.Error(), oidcSecret) {
				t.Errorf("%s: the error quotes the secret: %v", name, err)
			}
		}
	})

	// Nothing secret reached a log line or a response body: not the client
	// secret, the federated credential, any authorization code or token.
	t.Run("no secrets in logs or pages", func(t *testing.T) {
		logs := w.logs.String()
		w.mu.Lock()
		bodies := w.bodies.String()
		w.mu.Unlock()
		if !strings.Contains(logs, "signed in") || !strings.Contains(logs, "sign-in refused") {
			t.Fatalf("the log lacks the sign-in lines the test expects:\n%s", logs)
		}
		secrets := append([]string{oidcSecret, oidcFedToken}, w.auth.IssuedTokens()...)
		if len(secrets) < 10 {
			t.Fatalf("only %d codes and tokens issued", len(secrets))
		}
		for _, s := range secrets {
			if strings.Contains(logs, s) {
				t.Errorf("the server log holds a secret (%.12s…)", s)
			}
			if strings.Contains(bodies, s) {
				t.Errorf("a response body holds a secret (%.12s…)", s)
			}
		}
	})
}
