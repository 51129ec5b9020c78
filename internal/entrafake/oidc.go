package entrafake

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// OpenID Connect sign-in: the authorization code flow of
// https://learn.microsoft.com/entra/identity-platform/v2-protocols-oidc
// and https://learn.microsoft.com/entra/identity-platform/v2-oauth2-auth-code-flow.

// codeLifetime is how long an authorization code can be redeemed (Entra
// ID's are short-lived too).
const codeLifetime = 5 * time.Minute

// keyID names the signing key in the JWKS and in ID tokens' headers.
const keyID = "entrafake-ed25519"

// User is a directory user that signs in through the authorize endpoint.
type User struct {
	// ObjectID is the user's object id (claims oid and sub).
	ObjectID string
	// Name and Username are the name and preferred_username claims.
	Name, Username string
	// Groups (object ids) and Roles (app role values) are emitted as the
	// groups and roles claims, as an app registration with group claims
	// and app roles assigned does.
	Groups, Roles []string
}

// IDClaims are the claims of an ID token this authority issues.
type IDClaims struct {
	Issuer            string   `json:"iss"`
	Audience          string   `json:"aud"`
	Subject           string   `json:"sub"`
	ObjectID          string   `json:"oid"`
	TenantID          string   `json:"tid"`
	Nonce             string   `json:"nonce,omitempty"`
	Name              string   `json:"name,omitempty"`
	PreferredUsername string   `json:"preferred_username,omitempty"`
	Groups            []string `json:"groups,omitempty"`
	Roles             []string `json:"roles,omitempty"`
	LoginHint         string   `json:"login_hint,omitempty"`
	IssuedAt          int64    `json:"iat"`
	NotBefore         int64    `json:"nbf"`
	Expires           int64    `json:"exp"`
}

type codeGrant struct {
	tenant, clientID, redirect, challenge, nonce, scope string
	user                                                User
	expires                                             time.Time
}

// AddRedirectURI registers a redirect URI of a client's app registration
// (the Web platform's redirect URIs). The authorize endpoint refuses any
// other.
func (a *Authority) AddRedirectURI(tenant, clientID, uri string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i := range a.clients {
		if a.clients[i].tenant == tenant && a.clients[i].id == clientID {
			a.clients[i].redirects = append(a.clients[i].redirects, uri)
		}
	}
}

// SignIn sets the user the authorize endpoint signs in, as if the browser
// already had a session at the authority; nil signs out (the endpoint
// then answers login_required).
func (a *Authority) SignIn(u *User) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.signedIn = u
}

// TweakIDTokens makes f alter the claims of every ID token issued from
// now on before it is signed (nil stops): a token this authority signs
// but issued for another audience, already expired, or with another
// nonce, so a relying party's checks can be tested one at a time.
func (a *Authority) TweakIDTokens(f func(*IDClaims)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.tweak = f
}

func (a *Authority) handleKeys(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"keys": []map[string]string{{
		"kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA", "kid": keyID,
		"x": base64.RawURLEncoding.EncodeToString(a.pub),
	}}})
}

// authorizeError answers an authorization request: to the redirect URI
// with error and state once the client and redirect URI are known good
// (RFC 6749 section 4.1.2.1), else as a page.
func authorizeError(w http.ResponseWriter, r *http.Request, redirect, state, code, desc string) {
	if redirect == "" {
		http.Error(w, "AADSTS: "+desc, http.StatusBadRequest)
		return
	}
	u, _ := url.Parse(redirect) // checked against the registration
	q := u.Query()
	q.Set("error", code)
	q.Set("error_description", desc)
	if state != "" {
		q.Set("state", state)
	}
	u.RawQuery = q.Encode()
	http.Redirect(w, r, u.String(), http.StatusFound)
}

func (a *Authority) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	tenant := r.PathValue("tenant")
	q := r.URL.Query()
	a.mu.Lock()
	var c *client
	for i := range a.clients {
		if a.clients[i].tenant == tenant && a.clients[i].id == q.Get("client_id") {
			cc := a.clients[i]
			c = &cc
		}
	}
	user := a.signedIn
	a.mu.Unlock()
	if c == nil {
		a.refuse()
		authorizeError(w, r, "", "", "unauthorized_client", "AADSTS700016: Application was not found in the directory.")
		return
	}
	redirect := q.Get("redirect_uri")
	if !slices.Contains(c.redirects, redirect) {
		a.refuse()
		authorizeError(w, r, "", "", "invalid_request", "AADSTS50011: The redirect URI specified in the request does not match the redirect URIs configured for the application.")
		return
	}
	state := q.Get("state")
	switch {
	case q.Get("response_type") != "code":
		a.refuse()
		authorizeError(w, r, redirect, state, "unsupported_response_type", "AADSTS700054: only response_type=code is enabled for this application.")
		return
	case !slices.Contains(strings.Fields(q.Get("scope")), "openid"):
		a.refuse()
		authorizeError(w, r, redirect, state, "invalid_scope", "AADSTS70011: the scope must include openid.")
		return
	case q.Get("code_challenge") != "" && q.Get("code_challenge_method") != "S256":
		a.refuse()
		authorizeError(w, r, redirect, state, "invalid_request", "AADSTS501491: code_challenge_method must be S256 here.")
		return
	case user == nil:
		a.refuse()
		authorizeError(w, r, redirect, state, "login_required", "AADSTS50058: A silent sign-in request was sent but no user is signed in.")
		return
	}
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	code := base64.RawURLEncoding.EncodeToString(b)
	a.mu.Lock()
	a.codes[code] = &codeGrant{tenant: tenant, clientID: c.id, redirect: redirect, challenge: q.Get("code_challenge"),
		nonce: q.Get("nonce"), scope: q.Get("scope"), user: *user, expires: time.Now().Add(codeLifetime)}
	a.issued = append(a.issued, code)
	a.mu.Unlock()
	u, _ := url.Parse(redirect)
	rq := u.Query()
	rq.Set("code", code)
	if state != "" {
		rq.Set("state", state)
	}
	u.RawQuery = rq.Encode()
	http.Redirect(w, r, u.String(), http.StatusFound)
}

// redeemCode answers the authorization_code grant: the client
// authenticates, the code is its own, unexpired, unused, for the same
// redirect URI, and the PKCE verifier hashes to the challenge.
func (a *Authority) redeemCode(w http.ResponseWriter, tenant string, f url.Values) {
	c, ok := a.authenticateClient(w, tenant, f)
	if !ok {
		return
	}
	a.mu.Lock()
	g := a.codes[f.Get("code")]
	delete(a.codes, f.Get("code")) // one redemption, right or wrong
	a.mu.Unlock()
	switch {
	case g == nil || g.tenant != tenant || g.clientID != c.id:
		a.tokenError(w, http.StatusBadRequest, "invalid_grant", "The provided authorization code is invalid or was already redeemed.", 70000)
		return
	case time.Now().After(g.expires):
		a.tokenError(w, http.StatusBadRequest, "invalid_grant", "The provided authorization code has expired.", 70008)
		return
	case g.redirect != f.Get("redirect_uri"):
		a.tokenError(w, http.StatusBadRequest, "invalid_grant", "The redirect URI does not match the one of the authorization request.", 50148)
		return
	case g.challenge != "" && !pkceMatches(g.challenge, f.Get("code_verifier")):
		a.tokenError(w, http.StatusBadRequest, "invalid_grant", "The code_verifier does not match the code_challenge supplied in the authorization request.", 501481)
		return
	}
	idt, err := a.issueIDToken(g)
	if err != nil {
		a.tokenError(w, http.StatusInternalServerError, "server_error", "token issuance failed", 50000)
		return
	}
	access, _, err := a.issue(tenant, g.user.ObjectID, "00000003-0000-0000-c000-000000000000", a.lifetime)
	if err != nil {
		a.tokenError(w, http.StatusInternalServerError, "server_error", "token issuance failed", 50000)
		return
	}
	a.mu.Lock()
	a.requests++
	a.mu.Unlock()
	secs := int(a.lifetime / time.Second)
	writeJSON(w, http.StatusOK, map[string]any{
		"token_type":     "Bearer",
		"scope":          g.scope,
		"expires_in":     secs,
		"ext_expires_in": secs,
		"access_token":   access,
		"id_token":       idt,
	})
}

func pkceMatches(challenge, verifier string) bool {
	sum := sha256.Sum256([]byte(verifier))
	return subtle.ConstantTimeCompare([]byte(base64.RawURLEncoding.EncodeToString(sum[:])), []byte(challenge)) == 1
}

// issueIDToken signs the ID token of a redeemed code (audience: the
// client id), after the test's tweak if any.
func (a *Authority) issueIDToken(g *codeGrant) (string, error) {
	now := time.Now()
	c := IDClaims{
		Issuer: a.srv.URL + "/" + g.tenant + "/v2.0", Audience: g.clientID,
		Subject: g.user.ObjectID, ObjectID: g.user.ObjectID, TenantID: g.tenant, Nonce: g.nonce,
		Name: g.user.Name, PreferredUsername: g.user.Username, Groups: g.user.Groups, Roles: g.user.Roles,
		LoginHint: LoginHint(g.user), IssuedAt: now.Unix(), NotBefore: now.Add(-time.Minute).Unix(), Expires: now.Add(a.lifetime).Unix(),
	}
	a.mu.Lock()
	tweak := a.tweak
	a.mu.Unlock()
	if tweak != nil {
		tweak(&c)
	}
	claims, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("encode ID token claims: %w", err)
	}
	signed := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"EdDSA","typ":"JWT","kid":"`+keyID+`"}`)) + "." +
		base64.RawURLEncoding.EncodeToString(claims)
	tok := signed + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(a.key, []byte(signed)))
	a.mu.Lock()
	a.issued = append(a.issued, tok)
	a.mu.Unlock()
	return tok, nil
}

// LoginHint is the login_hint claim the authority puts in a user's ID
// tokens (Entra ID's optional claim of that name, an opaque value a
// relying party passes back as logout_hint to sign that account out
// without an account picker).
func LoginHint(u User) string {
	return base64.RawURLEncoding.EncodeToString([]byte("hint:" + u.ObjectID))
}

// SignOuts counts the sessions ended at the end_session_endpoint.
func (a *Authority) SignOuts() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.signOuts
}

// handleLogout is the end_session_endpoint (OpenID Connect RP-Initiated
// Logout 1.0, https://learn.microsoft.com/entra/identity-platform/v2-protocols-oidc#send-a-sign-out-request):
// it ends the browser's session at the authority, then sends the browser
// to post_logout_redirect_uri (with state) when that is a redirect URI of
// the application named by client_id or by the audience of id_token_hint
// (an ID token this authority issued); otherwise it shows its own
// signed-out page. A logout_hint (the login_hint claim) that is not the
// signed-in user's ends nothing: Entra ID would ask which account to sign
// out.
func (a *Authority) handleLogout(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "AADSTS90015: malformed sign-out request", http.StatusBadRequest)
		return
	}
	tenant := r.PathValue("tenant")
	clientID := r.Form.Get("client_id")
	if hint := r.Form.Get("id_token_hint"); hint != "" {
		var c IDClaims
		header, payload, sig, err := split(hint)
		if err != nil || decodeSegment(payload, &c) != nil || !ed25519.Verify(a.pub, []byte(header+"."+payload), sig) ||
			c.TenantID != tenant || (clientID != "" && clientID != c.Audience) {
			a.refuse()
			http.Error(w, "AADSTS900144: id_token_hint is not an ID token of this tenant issued to this application", http.StatusBadRequest)
			return
		}
		clientID = c.Audience
	}
	redirect := r.Form.Get("post_logout_redirect_uri")
	a.mu.Lock()
	user := a.signedIn
	if lh := r.Form.Get("logout_hint"); lh != "" && (user == nil || lh != LoginHint(*user)) {
		a.mu.Unlock()
		a.refuse()
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, "<!doctype html><title>Pick an account</title><h1>Pick an account to sign out of</h1>")
		return
	}
	a.signedIn = nil
	if user != nil {
		a.signOuts++
	}
	registered := false
	for _, c := range a.clients {
		if c.tenant == tenant && c.id == clientID && slices.Contains(c.redirects, redirect) {
			registered = true
		}
	}
	a.mu.Unlock()
	if redirect == "" || !registered {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, "<!doctype html><title>Sign out</title><h1>You signed out of your account</h1><p>It's a good idea to close all browser windows.</p>")
		return
	}
	u, _ := url.Parse(redirect) // a registered redirect URI
	if st := r.Form.Get("state"); st != "" {
		q := u.Query()
		q.Set("state", st)
		u.RawQuery = q.Encode()
	}
	http.Redirect(w, r, u.String(), http.StatusFound)
}
