package web

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// Microsoft Entra ID sign-in (OpenID Connect authorization code flow with
// PKCE, state and nonce) as an alternative to bearer tokens. The flow:
//
//	GET  /auth/login?next=/path   sets a short-lived encrypted cookie holding state, nonce
//	                              and the PKCE verifier, and redirects to the authority
//	GET  /auth/callback           checks state, redeems the code (client secret or
//	                              federated client assertion), validates the ID token
//	                              (signature by the authority's JWKS, issuer, audience,
//	                              expiry, nonce), checks groups/roles, and sets the session
//	POST /auth/logout             clears the session and, when the discovery document names
//	                              an end_session_endpoint, sends the browser there to end the
//	                              Entra ID session too (RP-Initiated Logout: client_id,
//	                              post_logout_redirect_uri = /auth/signed-out, and the ID
//	                              token's login_hint claim as logout_hint when it has one)
//	GET  /auth/signed-out         where the authority sends the browser back
//
// Sessions are AES-256-GCM sealed cookies (HttpOnly, Secure, SameSite=Lax,
// host-only) with a bounded lifetime; nothing about them is kept on the
// server, so a restart with a generated key signs everybody out. For the
// same reason the sign-out sends no id_token_hint: the ID token is not
// kept (it would not fit a cookie with a user's groups), and Entra ID
// takes logout_hint instead, from the login_hint optional claim.

// Cookie names. The __Host- prefix makes browsers refuse them unless
// Secure, host-only and Path=/.
const (
	sessionCookie = "__Host-custody-session"
	loginCookie   = "__Host-custody-login"
)

// Lifetimes.
const (
	// DefaultSessionLifetime is how long a sign-in lasts unless
	// OIDCOptions.SessionLifetime says otherwise.
	DefaultSessionLifetime = 8 * time.Hour
	// MaxSessionLifetime bounds SessionLifetime.
	MaxSessionLifetime = 24 * time.Hour
	// loginLifetime is how long a started sign-in can be completed.
	loginLifetime = 10 * time.Minute
)

// OIDCOptions configure Entra ID sign-in.
type OIDCOptions struct {
	// Authority is the tenant's issuer URL, whose discovery document is
	// Authority + "/.well-known/openid-configuration", for example
	// https://login.microsoftonline.com/<tenant-id>/v2.0.
	Authority string
	// ClientID is the app registration's application (client) id.
	ClientID string
	// ClientSecret authenticates the app at the token endpoint; or
	ClientSecret string
	// ClientAssertion returns a federated credential (the workload
	// identity's projected service account token) for each code
	// redemption. Exactly one of ClientSecret and ClientAssertion.
	ClientAssertion func(ctx context.Context) (string, error)
	// RedirectURL is this server's /auth/callback as registered in the
	// app registration, for example https://custody.example.com/auth/callback.
	RedirectURL string
	// Groups and Roles, when given, admit only users whose ID token's
	// groups claim (group object ids) or roles claim (app role values)
	// holds at least one of them.
	Groups, Roles []string
	// SessionKey seals the cookies (at least 32 bytes; hashed to the
	// AES-256 key). Nil generates one at start.
	SessionKey []byte
	// SessionLifetime bounds a session; zero means DefaultSessionLifetime.
	SessionLifetime time.Duration
	// HTTPClient reaches the authority; nil means http.DefaultClient.
	HTTPClient *http.Client
	// Now is the clock of sessions; nil means time.Now.
	Now func() time.Time
}

// OIDC is a configured Entra ID sign-in, ready for Options.OIDC.
type OIDC struct {
	opts     OIDCOptions
	client   *http.Client
	oauth    oauth2.Config
	verifier *oidc.IDTokenVerifier
	aead     cipher.AEAD
	now      func() time.Time
	lifetime time.Duration
	secure   bool // the redirect URL is https: cookies are Secure
	// endSession is the authority's end_session_endpoint (nil when the
	// discovery document names none) and signedOut this server's
	// /auth/signed-out, its post_logout_redirect_uri.
	endSession *url.URL
	signedOut  string
}

// session is the sealed content of the session cookie.
type session struct {
	Subject  string `json:"sub"`
	Name     string `json:"name,omitempty"`
	Username string `json:"user,omitempty"`
	// LogoutHint is the ID token's login_hint claim (an Entra ID
	// optional claim), sent back as logout_hint on sign-out.
	LogoutHint string `json:"lh,omitempty"`
	Expires    int64  `json:"exp"`
}

// loginState is the sealed content of the login cookie.
type loginState struct {
	State    string `json:"state"`
	Nonce    string `json:"nonce"`
	Verifier string `json:"verifier"`
	Next     string `json:"next"`
	Expires  int64  `json:"exp"`
}

// errSignInRefused wraps the reasons a sign-in is refused.
var errSignInRefused = errors.New("sign-in refused")

// LoadSessionKey reads a session key file: at least 32 bytes (for
// example `head -c 32 /dev/urandom | base64`). Errors never quote it.
func LoadSessionKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read session key file: %w", err)
	}
	b = []byte(strings.TrimSpace(string(b)))
	if len(b) < 32 {
		return nil, fmt.Errorf("session key file %s: want at least 32 bytes, have %d", path, len(b))
	}
	return b, nil
}

// NewOIDC reads the authority's discovery document and prepares the flow.
func NewOIDC(ctx context.Context, o OIDCOptions) (*OIDC, error) {
	switch {
	case o.Authority == "":
		return nil, errors.New("entra sign-in: the authority URL is required")
	case o.ClientID == "":
		return nil, errors.New("entra sign-in: the client id is required")
	case (o.ClientSecret == "") == (o.ClientAssertion == nil):
		return nil, errors.New("entra sign-in: give exactly one of a client secret file and a federated token file")
	case o.SessionLifetime < 0 || o.SessionLifetime > MaxSessionLifetime:
		return nil, fmt.Errorf("entra sign-in: session lifetime must be at most %s", MaxSessionLifetime)
	}
	ru, err := url.Parse(o.RedirectURL)
	if err != nil || ru.Host == "" || ru.Path != "/auth/callback" || ru.RawQuery != "" || ru.Fragment != "" {
		return nil, fmt.Errorf("entra sign-in: the redirect URL must be this server's https://<host>/auth/callback, not %q", o.RedirectURL)
	}
	if ru.Scheme != "https" && !(ru.Scheme == "http" && loopbackHost(ru.Host)) {
		return nil, errors.New("entra sign-in: the redirect URL must be https (plain http only on a loopback host)")
	}
	au, err := url.Parse(o.Authority)
	if err != nil || au.Scheme != "https" || au.Host == "" {
		return nil, fmt.Errorf("entra sign-in: the authority must be an https URL, not %q", o.Authority)
	}
	x := &OIDC{opts: o, client: o.HTTPClient, now: o.Now, lifetime: o.SessionLifetime, secure: ru.Scheme == "https"}
	if x.client == nil {
		x.client = http.DefaultClient
	}
	if x.now == nil {
		x.now = time.Now
	}
	if x.lifetime == 0 {
		x.lifetime = DefaultSessionLifetime
	}
	key := o.SessionKey
	if key == nil {
		key = make([]byte, 32)
		_, _ = rand.Read(key) // crypto/rand.Read never fails
	}
	if len(key) < 32 {
		return nil, errors.New("entra sign-in: the session key must be at least 32 bytes")
	}
	sum := sha256.Sum256(key)
	block, err := aes.NewCipher(sum[:])
	if err != nil {
		return nil, fmt.Errorf("entra sign-in: session cipher: %w", err)
	}
	if x.aead, err = cipher.NewGCM(block); err != nil {
		return nil, fmt.Errorf("entra sign-in: session cipher: %w", err)
	}
	provider, err := oidc.NewProvider(oidc.ClientContext(ctx, x.client), strings.TrimRight(o.Authority, "/"))
	if err != nil {
		return nil, fmt.Errorf("entra sign-in: read the discovery document of %s: %w", o.Authority, err)
	}
	var disc struct {
		EndSession string `json:"end_session_endpoint"`
	}
	if err := provider.Claims(&disc); err != nil {
		return nil, fmt.Errorf("entra sign-in: read the discovery document of %s: %w", o.Authority, err)
	}
	if disc.EndSession != "" {
		eu, err := url.Parse(disc.EndSession)
		if err != nil || eu.Scheme != "https" || eu.Host == "" || eu.Fragment != "" {
			return nil, fmt.Errorf("entra sign-in: the discovery document's end_session_endpoint is not an https URL: %q", trimForError(disc.EndSession))
		}
		x.endSession = eu
	}
	x.signedOut = (&url.URL{Scheme: ru.Scheme, Host: ru.Host, Path: "/auth/signed-out"}).String()
	x.verifier = provider.Verifier(&oidc.Config{ClientID: o.ClientID, Now: x.now})
	x.oauth = oauth2.Config{ClientID: o.ClientID, ClientSecret: o.ClientSecret, RedirectURL: o.RedirectURL,
		Endpoint: provider.Endpoint(), Scopes: []string{oidc.ScopeOpenID, "profile"}}
	x.oauth.Endpoint.AuthStyle = oauth2.AuthStyleInParams
	return x, nil
}

// seal encrypts v for the cookie name (the name is authenticated too, so
// one cookie cannot stand in for the other).
func (x *OIDC) seal(name string, v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("encode %s: %w", name, err)
	}
	nonce := make([]byte, x.aead.NonceSize())
	_, _ = rand.Read(nonce)
	return base64.RawURLEncoding.EncodeToString(x.aead.Seal(nonce, nonce, b, []byte(name))), nil
}

// open decrypts and decodes a cookie sealed by seal; false if it is
// missing, altered, or sealed with another key.
func (x *OIDC) open(r *http.Request, name string, v any) bool {
	c, err := r.Cookie(name)
	if err != nil {
		return false
	}
	b, err := base64.RawURLEncoding.DecodeString(c.Value)
	if err != nil || len(b) < x.aead.NonceSize() {
		return false
	}
	plain, err := x.aead.Open(nil, b[:x.aead.NonceSize()], b[x.aead.NonceSize():], []byte(name))
	if err != nil {
		return false
	}
	return json.Unmarshal(plain, v) == nil
}

func (x *OIDC) setCookie(w http.ResponseWriter, name, value string, maxAge time.Duration) {
	c := &http.Cookie{Name: name, Value: value, Path: "/", HttpOnly: true, Secure: true, SameSite: http.SameSiteLaxMode}
	if maxAge > 0 {
		c.MaxAge = int(maxAge / time.Second)
	} else {
		c.MaxAge = -1
	}
	http.SetCookie(w, c)
}

// session returns the request's valid, unexpired session.
func (x *OIDC) session(r *http.Request) (session, bool) {
	var s session
	if !x.open(r, sessionCookie, &s) || s.Subject == "" || x.now().Unix() >= s.Expires {
		return session{}, false
	}
	return s, true
}

// safeNext returns next when it is a path on this server, else "/".
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") || len(next) > 2048 {
		return "/"
	}
	return next
}

func randomString() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// authPage answers a sign-in problem as a small page (no script, so the
// Content-Security-Policy holds) that offers to start again. msg is
// fixed text of this package, never a value from the request or the
// authority.
func authPage(w http.ResponseWriter, status int, title, msg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>%s · Custody</title><link rel="stylesheet" href="/assets/app.css"></head>
<body><main id="main" class="card"><h1>%s</h1><p>%s</p><p><a href="/auth/login">Sign in with Microsoft Entra ID</a></p></main></body></html>
`, html.EscapeString(title), html.EscapeString(title), html.EscapeString(msg))
}

func (s *Server) oidcRoutes(mux *http.ServeMux) {
	x := s.opts.OIDC
	mux.HandleFunc("GET /auth/login", func(w http.ResponseWriter, r *http.Request) {
		ls := loginState{State: randomString(), Nonce: randomString(), Verifier: oauth2.GenerateVerifier(),
			Next: safeNext(r.URL.Query().Get("next")), Expires: x.now().Add(loginLifetime).Unix()}
		v, err := x.seal(loginCookie, ls)
		if err != nil {
			s.log.ErrorContext(r.Context(), "sign-in: seal the login state", "err", err)
			authPage(w, http.StatusInternalServerError, "Sign-in failed", "Internal error (see the server log).")
			return
		}
		x.setCookie(w, loginCookie, v, loginLifetime)
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, x.oauth.AuthCodeURL(ls.State, oauth2.S256ChallengeOption(ls.Verifier), oidc.Nonce(ls.Nonce)), http.StatusFound)
	})
	mux.HandleFunc("GET /auth/callback", s.handleCallback)
	mux.HandleFunc("POST /auth/logout", func(w http.ResponseWriter, r *http.Request) {
		x.setCookie(w, sessionCookie, "", 0)
		w.Header().Set("Cache-Control", "no-store")
		sess, ok := x.session(r)
		if ok {
			s.log.InfoContext(r.Context(), "signed out", "sub", sess.Subject, "user", sess.Username)
		}
		http.Redirect(w, r, x.logoutURL(sess), http.StatusSeeOther)
	})
	mux.HandleFunc("GET /auth/signed-out", func(w http.ResponseWriter, r *http.Request) {
		msg := "You are signed out of the investigation page. Your Microsoft sign-in itself is unchanged."
		if x.endSession != nil {
			msg = "You are signed out of the investigation page and of Microsoft Entra ID."
		}
		authPage(w, http.StatusOK, "Signed out", msg)
	})
}

// logoutURL is where a sign-out sends the browser: the authority's
// end_session_endpoint, which ends the Entra ID session and returns to
// /auth/signed-out (registered as a redirect URI of the app registration
// too), or straight to /auth/signed-out when it has none.
func (x *OIDC) logoutURL(sess session) string {
	if x.endSession == nil {
		return "/auth/signed-out"
	}
	u := *x.endSession
	q := u.Query()
	q.Set("client_id", x.opts.ClientID)
	q.Set("post_logout_redirect_uri", x.signedOut)
	if sess.LogoutHint != "" {
		q.Set("logout_hint", sess.LogoutHint)
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// formAction is the Content-Security-Policy's form-action: the sign-out
// form's redirect to the end_session_endpoint is a form navigation too.
func (x *OIDC) formAction() string {
	if x == nil || x.endSession == nil {
		return "'self'"
	}
	return "'self' " + x.endSession.Scheme + "://" + x.endSession.Host
}

func (s *Server) handleCallback(w http.ResponseWriter, r *http.Request) {
	x := s.opts.OIDC
	ctx := r.Context()
	w.Header().Set("Cache-Control", "no-store")
	var ls loginState
	ok := x.open(r, loginCookie, &ls)
	x.setCookie(w, loginCookie, "", 0) // one try per started sign-in
	q := r.URL.Query()
	if !ok || x.now().Unix() >= ls.Expires {
		s.log.WarnContext(ctx, "sign-in refused: no sign-in in progress in this browser (or it expired)")
		authPage(w, http.StatusBadRequest, "Sign-in expired", "This sign-in was not started in this browser or took too long. Start again.")
		return
	}
	if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(ls.State)) != 1 {
		s.log.WarnContext(ctx, "sign-in refused: state does not match the sign-in started in this browser")
		authPage(w, http.StatusBadRequest, "Sign-in refused", "The answer from Microsoft Entra ID does not belong to the sign-in started in this browser. Start again.")
		return
	}
	if e := q.Get("error"); e != "" {
		s.log.WarnContext(ctx, "sign-in refused by the authority", "error", oauthErrorCode(e))
		authPage(w, http.StatusForbidden, "Sign-in refused", "Microsoft Entra ID did not sign you in ("+oauthErrorCode(e)+").")
		return
	}
	sess, err := x.redeem(ctx, q.Get("code"), ls)
	if err != nil {
		s.log.WarnContext(ctx, "sign-in refused", "err", err)
		msg := "The sign-in could not be completed (the reason is in the server log)."
		if errors.Is(err, errNotMember) {
			msg = "Your account is not in a group or app role allowed to use this page."
		}
		authPage(w, http.StatusForbidden, "Sign-in refused", msg)
		return
	}
	v, err := x.seal(sessionCookie, sess)
	if err != nil {
		s.log.ErrorContext(ctx, "sign-in: seal the session", "err", err)
		authPage(w, http.StatusInternalServerError, "Sign-in failed", "Internal error (see the server log).")
		return
	}
	x.setCookie(w, sessionCookie, v, time.Unix(sess.Expires, 0).Sub(x.now()))
	s.log.InfoContext(ctx, "signed in", "sub", sess.Subject, "user", sess.Username)
	http.Redirect(w, r, ls.Next, http.StatusSeeOther)
}

// oauthErrorCode keeps an error code's letters and underscores only, so
// nothing the redirect carried is echoed as is.
func oauthErrorCode(e string) string {
	e = strings.Map(func(r rune) rune {
		if r == '_' || (r >= 'a' && r <= 'z') {
			return r
		}
		return -1
	}, e)
	if len(e) > 40 {
		e = e[:40]
	}
	return e
}

// errNotMember means the user holds none of the allowed groups or roles.
var errNotMember = fmt.Errorf("%w: not a member of an allowed group or app role", errSignInRefused)

// idClaims are the ID token claims the page uses.
type idClaims struct {
	Name              string   `json:"name"`
	PreferredUsername string   `json:"preferred_username"`
	LoginHint         string   `json:"login_hint"`
	ObjectID          string   `json:"oid"`
	Groups            []string `json:"groups"`
	Roles             []string `json:"roles"`
	ClaimNames        struct {
		Groups string `json:"groups"`
	} `json:"_claim_names"`
}

// redeem exchanges the code (with the PKCE verifier), validates the ID
// token and the user's groups and roles, and returns the session.
// Its errors name the check that failed, never a token or the code.
func (x *OIDC) redeem(ctx context.Context, code string, ls loginState) (session, error) {
	if code == "" {
		return session{}, fmt.Errorf("%w: the callback carries no code", errSignInRefused)
	}
	ctx = context.WithValue(ctx, oauth2.HTTPClient, x.client)
	opts := []oauth2.AuthCodeOption{oauth2.VerifierOption(ls.Verifier)}
	if x.opts.ClientAssertion != nil {
		a, err := x.opts.ClientAssertion(ctx)
		if err != nil {
			return session{}, fmt.Errorf("read the federated credential: %w", err)
		}
		opts = append(opts, oauth2.SetAuthURLParam("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
			oauth2.SetAuthURLParam("client_assertion", a))
	}
	tok, err := x.oauth.Exchange(ctx, code, opts...)
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) {
			return session{}, fmt.Errorf("%w: redeem the code: the token endpoint answered %d %s: %s", errSignInRefused, re.Response.StatusCode, oauthErrorCode(re.ErrorCode), firstLine(re.ErrorDescription))
		}
		return session{}, fmt.Errorf("redeem the code at the token endpoint: %w", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return session{}, fmt.Errorf("%w: the token endpoint returned no id_token", errSignInRefused)
	}
	idt, err := x.verifier.Verify(ctx, raw)
	if err != nil {
		return session{}, fmt.Errorf("%w: ID token: %w", errSignInRefused, err)
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(ls.Nonce)) != 1 {
		return session{}, fmt.Errorf("%w: ID token: nonce does not match the sign-in's", errSignInRefused)
	}
	var c idClaims
	if err := idt.Claims(&c); err != nil {
		return session{}, fmt.Errorf("%w: ID token claims: %w", errSignInRefused, err)
	}
	if len(x.opts.Groups) > 0 || len(x.opts.Roles) > 0 {
		if c.ClaimNames.Groups != "" && len(x.opts.Roles) == 0 {
			return session{}, fmt.Errorf("%w: the user is in too many groups for the groups claim (overage); emit only groups assigned to the application, or use app roles", errNotMember)
		}
		member := slices.ContainsFunc(c.Groups, func(g string) bool { return slices.Contains(x.opts.Groups, g) }) ||
			slices.ContainsFunc(c.Roles, func(g string) bool { return slices.Contains(x.opts.Roles, g) })
		if !member {
			return session{}, fmt.Errorf("%w (subject %s)", errNotMember, idt.Subject)
		}
	}
	hint := c.LoginHint
	if len(hint) > 512 {
		hint = "" // an opaque hint that long would only bloat the cookie
	}
	return session{Subject: idt.Subject, Name: c.Name, Username: c.PreferredUsername, LogoutHint: hint, Expires: x.now().Add(x.lifetime).Unix()}, nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// sessionKey is the request context key of the signed-in session.
type sessionKey struct{}

// signedIn returns the session the request was authenticated with, if it
// was one.
func signedIn(ctx context.Context) (session, bool) {
	s, ok := ctx.Value(sessionKey{}).(session)
	return s, ok
}

// pageAuthed sends a browser without a session to sign in, when Entra ID
// sign-in is the only way in (with bearer tokens too, the page loads and
// offers both).
func (s *Server) pageAuthed(h http.Handler) http.Handler {
	x := s.opts.OIDC
	if x == nil || s.opts.Tokens != nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := x.session(r); !ok {
			http.Redirect(w, r, "/auth/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusFound)
			return
		}
		h.ServeHTTP(w, r)
	})
}
