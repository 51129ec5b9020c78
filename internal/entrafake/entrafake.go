// Package entrafake is a local Microsoft Entra ID authority over TLS that
// issues signed access tokens, so Custody's tests can run the real
// azidentity credentials (client secret, workload identity, managed
// identity, Azure CLI) offline and a test peer can check the tokens it is
// handed the way a resource provider does: signature, issuer, audience and
// expiry.
//
// It exists because a peer that accepts any bearer string proves nothing
// about authentication: the Event Hubs test broker (internal/ehbroker)
// verifies the JWTs that the SDK puts to its $cbs node with Verify, and so
// refuses a token that this authority did not issue, issued for another
// resource, or that has expired. The Log Analytics query API fake
// (internal/lafake) starts one of these beside itself and checks the
// bearer token of every query the same way, so both fakes share one
// issuer, one token format and one set of credential kinds.
//
// The authority serves, at /{tenant}/...:
//
//   - OpenID Connect discovery (v2.0/.well-known/openid-configuration),
//     which MSAL reads before it asks for a token;
//   - the v2.0 token endpoint for the client-credentials grant with a
//     client secret or a client assertion (a federated token, as AKS
//     workload identity presents);
//   - OpenID Connect sign-in (oidc.go): the v2.0 authorize endpoint of the
//     authorization code flow (PKCE S256, state, nonce; it signs in the user
//     set with SignIn, as a browser that already has a session there would
//     be), the authorization_code grant at the token endpoint returning an
//     id_token, and the signing keys as a JWKS (discovery/v2.0/keys);
//
// and at /msi/token the App Service managed identity protocol
// (api-version 2019-08-01, X-IDENTITY-HEADER), which azidentity selects
// from IDENTITY_ENDPOINT and IDENTITY_HEADER. Errors have the service's
// shape (RFC 6749 section 5.2 with AADSTS codes).
//
// Tokens are compact JWTs signed with a per-authority Ed25519 key (alg
// EdDSA) carrying iss, aud, sub, tid, appid, iat, nbf, exp and jti. A
// scope "<resource>/.default" yields aud "<resource>" with trailing
// slashes removed, so the Event Hubs scope "https://eventhubs.azure.net//.default"
// yields aud "https://eventhubs.azure.net", as Entra ID does.
//
// See https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow,
// https://learn.microsoft.com/azure/app-service/overview-managed-identity#rest-endpoint-reference
// and RFC 7519 (JWT).
package entrafake

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultTokenLifetime is how long issued tokens are valid unless
// Options.TokenLifetime says otherwise.
const DefaultTokenLifetime = time.Hour

// clockSkew is the leeway Verify allows on nbf.
const clockSkew = 5 * time.Minute

// Sentinel errors returned (wrapped) by Verify.
var (
	// ErrMalformed means the token is not a compact JWT of this authority's
	// form.
	ErrMalformed = errors.New("malformed token")
	// ErrSignature means the signature does not verify with this
	// authority's key: the token was not issued here or was altered.
	ErrSignature = errors.New("token signature does not verify")
	// ErrIssuer means the token names another issuer.
	ErrIssuer = errors.New("token issuer is not this authority")
	// ErrAudience means the token was issued for another resource.
	ErrAudience = errors.New("token audience mismatch")
	// ErrExpired means the token's exp has passed (or its nbf is ahead).
	ErrExpired = errors.New("token expired or not yet valid")
)

// Options configures an Authority.
type Options struct {
	// Resources are the resource URIs (audiences) tokens may be issued for,
	// for example "https://eventhubs.azure.net". Trailing slashes are
	// ignored. At least one is required.
	Resources []string
	// TokenLifetime is how long issued tokens are valid. Zero means
	// DefaultTokenLifetime.
	TokenLifetime time.Duration
}

// Claims are the verified claims of a token.
type Claims struct {
	Issuer    string `json:"iss"`
	Audience  string `json:"aud"`
	Subject   string `json:"sub"`
	TenantID  string `json:"tid,omitempty"`
	AppID     string `json:"appid,omitempty"`
	IssuedAt  int64  `json:"iat"`
	NotBefore int64  `json:"nbf"`
	Expires   int64  `json:"exp"`
	ID        string `json:"jti"`
}

// ExpiresAt is exp as a time.
func (c Claims) ExpiresAt() time.Time { return time.Unix(c.Expires, 0) }

type client struct {
	tenant, id, secret, assertion string
	redirects                     []string
}

// Authority is a running token authority. Its methods are safe for
// concurrent use.
type Authority struct {
	srv       *httptest.Server
	key       ed25519.PrivateKey
	pub       ed25519.PublicKey
	resources []string
	lifetime  time.Duration

	mu       sync.Mutex
	clients  []client
	miHeader string // "" while managed identity is off
	issued   []string
	requests int
	refusals int
	signOuts int // sessions ended at the end_session_endpoint

	signedIn *User                 // the user the authorize endpoint signs in
	codes    map[string]*codeGrant // authorization codes not yet redeemed
	tweak    func(*IDClaims)       // alters ID tokens before signing (tests of refusals)
}

// New starts an authority on a loopback port with a fresh self-signed TLS
// certificate and signing key. Close it when done.
func New(opts Options) (*Authority, error) {
	if len(opts.Resources) == 0 {
		return nil, errors.New("entrafake: at least one resource required")
	}
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("entrafake signing key: %w", err)
	}
	a := &Authority{key: key, pub: pub, lifetime: opts.TokenLifetime, codes: map[string]*codeGrant{}}
	if a.lifetime <= 0 {
		a.lifetime = DefaultTokenLifetime
	}
	for _, r := range opts.Resources {
		a.resources = append(a.resources, normalizeResource(r))
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{tenant}/v2.0/.well-known/openid-configuration", a.handleDiscovery)
	mux.HandleFunc("POST /{tenant}/oauth2/v2.0/token", a.handleToken)
	mux.HandleFunc("GET /msi/token", a.handleManagedIdentity)
	mux.HandleFunc("GET /{tenant}/oauth2/v2.0/authorize", a.handleAuthorize)
	mux.HandleFunc("GET /{tenant}/discovery/v2.0/keys", a.handleKeys)
	mux.HandleFunc("GET /{tenant}/oauth2/v2.0/logout", a.handleLogout)
	mux.HandleFunc("POST /{tenant}/oauth2/v2.0/logout", a.handleLogout)
	a.srv = httptest.NewTLSServer(mux)
	return a, nil
}

// Close stops the server.
func (a *Authority) Close() { a.srv.Close() }

// URL is the https base URL.
func (a *Authority) URL() string { return a.srv.URL }

// AuthorityHost is the value for azidentity's authority host
// (azcore cloud.Configuration.ActiveDirectoryAuthorityHost).
func (a *Authority) AuthorityHost() string { return a.srv.URL + "/" }

// CertPool holds the certificate the server presents.
func (a *Authority) CertPool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(a.srv.Certificate())
	return p
}

// Certificate is the certificate the server presents, to add to a pool
// that also trusts other test peers.
func (a *Authority) Certificate() *x509.Certificate { return a.srv.Certificate() }

// AddClient registers an application that gets tokens with a client
// secret.
func (a *Authority) AddClient(tenant, clientID, secret string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.clients = append(a.clients, client{tenant: tenant, id: clientID, secret: secret})
}

// AddFederatedClient registers an application that gets tokens with a
// client assertion equal to assertion (the federated token a workload
// identity presents).
func (a *Authority) AddFederatedClient(tenant, clientID, assertion string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.clients = append(a.clients, client{tenant: tenant, id: clientID, assertion: assertion})
}

// EnableManagedIdentity turns on the App Service managed identity endpoint,
// which hands tokens to callers presenting header in X-IDENTITY-HEADER, and
// returns its URL (the IDENTITY_ENDPOINT value).
func (a *Authority) EnableManagedIdentity(header string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.miHeader = header
	return a.srv.URL + "/msi/token"
}

// IssueToken mints a token for resource directly, as a credential that
// brings its own token (the Azure CLI) would hold. A negative lifetime
// yields an already expired token; zero means the default lifetime.
func (a *Authority) IssueToken(tenant, subject, resource string, lifetime time.Duration) (string, time.Time, error) {
	if lifetime == 0 {
		lifetime = a.lifetime
	}
	return a.issue(tenant, subject, normalizeResource(resource), lifetime)
}

// IssuedTokens returns every token and authorization code issued so far, so tests can assert that
// none of them reaches a log or an error.
func (a *Authority) IssuedTokens() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.issued)
}

// Requests counts token requests answered with a token; Refusals those
// answered with an error.
func (a *Authority) Requests() (granted, refused int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.requests, a.refusals
}

// Verify checks a token's signature, issuer, audience and validity period
// against this authority and returns its claims. resource is compared
// without trailing slashes.
func (a *Authority) Verify(token, resource string) (Claims, error) {
	h, p, sig, err := split(token)
	if err != nil {
		return Claims{}, err
	}
	var hdr struct {
		Alg string `json:"alg"`
	}
	if err := decodeSegment(h, &hdr); err != nil || hdr.Alg != "EdDSA" {
		return Claims{}, fmt.Errorf("%w: header", ErrMalformed)
	}
	if !ed25519.Verify(a.pub, []byte(token[:len(h)+1+len(p)]), sig) {
		return Claims{}, ErrSignature
	}
	var c Claims
	if err := decodeSegment(p, &c); err != nil {
		return Claims{}, fmt.Errorf("%w: claims", ErrMalformed)
	}
	if !strings.HasPrefix(c.Issuer, a.srv.URL+"/") {
		return Claims{}, ErrIssuer
	}
	if c.Audience != normalizeResource(resource) {
		// Name the audiences, never the token.
		return Claims{}, fmt.Errorf("%w: issued for %q, not %q", ErrAudience, c.Audience, normalizeResource(resource))
	}
	now := time.Now()
	if !now.Before(c.ExpiresAt()) || now.Add(clockSkew).Before(time.Unix(c.NotBefore, 0)) {
		return Claims{}, fmt.Errorf("%w: valid %s to %s", ErrExpired,
			time.Unix(c.NotBefore, 0).UTC().Format(time.RFC3339), c.ExpiresAt().UTC().Format(time.RFC3339))
	}
	return c, nil
}

// VerifyToken is Verify returning the token's expiry only: the shape the
// Event Hubs test broker's ehbroker.TokenVerifier asks for.
func (a *Authority) VerifyToken(token, resource string) (time.Time, error) {
	c, err := a.Verify(token, resource)
	if err != nil {
		return time.Time{}, err
	}
	return c.ExpiresAt(), nil
}

func split(token string) (header, payload string, sig []byte, err error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" {
		return "", "", nil, fmt.Errorf("%w: want three dot-separated segments", ErrMalformed)
	}
	sig, err = base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || len(sig) != ed25519.SignatureSize {
		return "", "", nil, fmt.Errorf("%w: signature segment", ErrMalformed)
	}
	return parts[0], parts[1], sig, nil
}

func decodeSegment(seg string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// normalizeResource drops a "/.default" suffix and trailing slashes.
func normalizeResource(r string) string {
	return strings.TrimRight(strings.TrimSuffix(r, "/.default"), "/")
}

func (a *Authority) knownResource(r string) bool {
	return slices.Contains(a.resources, normalizeResource(r))
}

func (a *Authority) issue(tenant, subject, aud string, lifetime time.Duration) (string, time.Time, error) {
	now := time.Now()
	exp := now.Add(lifetime)
	jti := make([]byte, 16)
	_, _ = rand.Read(jti) // crypto/rand.Read never fails
	claims, err := json.Marshal(Claims{
		Issuer:    a.srv.URL + "/" + tenant + "/v2.0",
		Audience:  aud,
		Subject:   subject,
		TenantID:  tenant,
		AppID:     subject,
		IssuedAt:  now.Unix(),
		NotBefore: now.Add(-time.Minute).Unix(),
		Expires:   exp.Unix(),
		ID:        base64.RawURLEncoding.EncodeToString(jti),
	})
	if err != nil {
		return "", time.Time{}, fmt.Errorf("encode claims: %w", err)
	}
	signed := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"EdDSA","typ":"JWT"}`)) + "." +
		base64.RawURLEncoding.EncodeToString(claims)
	tok := signed + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(a.key, []byte(signed)))
	a.mu.Lock()
	a.issued = append(a.issued, tok)
	a.mu.Unlock()
	return tok, exp, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (a *Authority) refuse() {
	a.mu.Lock()
	a.refusals++
	a.mu.Unlock()
}

// tokenError answers like Entra ID's token endpoint.
func (a *Authority) tokenError(w http.ResponseWriter, status int, code, desc string, aadsts int) {
	a.refuse()
	writeJSON(w, status, map[string]any{
		"error":             code,
		"error_description": fmt.Sprintf("AADSTS%d: %s", aadsts, desc),
		"error_codes":       []int{aadsts},
		"timestamp":         time.Now().UTC().Format("2006-01-02 15:04:05Z"),
	})
}

func (a *Authority) handleDiscovery(w http.ResponseWriter, r *http.Request) {
	base := a.srv.URL + "/" + r.PathValue("tenant")
	writeJSON(w, http.StatusOK, map[string]any{
		"token_endpoint":                        base + "/oauth2/v2.0/token",
		"authorization_endpoint":                base + "/oauth2/v2.0/authorize",
		"end_session_endpoint":                  base + "/oauth2/v2.0/logout",
		"frontchannel_logout_supported":         true,
		"http_logout_supported":                 true,
		"issuer":                                base + "/v2.0",
		"token_endpoint_auth_methods_supported": []string{"client_secret_post", "private_key_jwt", "client_secret_basic"},
		"response_types_supported":              []string{"code", "id_token", "code id_token", "id_token token"},
		"jwks_uri":                              base + "/discovery/v2.0/keys",
		"id_token_signing_alg_values_supported": []string{"EdDSA"},
		"subject_types_supported":               []string{"pairwise"},
		"scopes_supported":                      []string{"openid", "profile", "email", "offline_access"},
		"code_challenge_methods_supported":      []string{"plain", "S256"},
		"claims_supported":                      []string{"sub", "iss", "aud", "exp", "iat", "nonce", "name", "preferred_username", "oid", "tid", "groups", "roles", "login_hint"},
	})
}

// scopeResource returns the resource of a client-credentials scope list:
// exactly one "<resource>/.default" plus only the OpenID Connect scopes
// MSAL adds.
func scopeResource(scope string) (string, bool) {
	res := ""
	for _, sc := range strings.Fields(scope) {
		switch {
		case sc == "openid" || sc == "offline_access" || sc == "profile":
		case strings.HasSuffix(sc, "/.default") && res == "":
			res = sc
		default:
			return "", false
		}
	}
	return res, res != ""
}

// authenticateClient finds the application the token request names and
// checks its secret or client assertion; on failure it has answered.
func (a *Authority) authenticateClient(w http.ResponseWriter, tenant string, f url.Values) (client, bool) {
	a.mu.Lock()
	var found *client
	for i := range a.clients {
		if a.clients[i].tenant == tenant && a.clients[i].id == f.Get("client_id") {
			c := a.clients[i]
			found = &c
		}
	}
	a.mu.Unlock()
	if found == nil {
		a.tokenError(w, http.StatusBadRequest, "unauthorized_client", "Application was not found in the directory.", 700016)
		return client{}, false
	}
	granted := false
	switch {
	case found.secret != "" && f.Get("client_secret") != "":
		granted = subtle.ConstantTimeCompare([]byte(found.secret), []byte(f.Get("client_secret"))) == 1
	case found.assertion != "" && f.Get("client_assertion") != "":
		granted = f.Get("client_assertion_type") == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" &&
			subtle.ConstantTimeCompare([]byte(found.assertion), []byte(f.Get("client_assertion"))) == 1
	}
	if !granted {
		a.tokenError(w, http.StatusUnauthorized, "invalid_client", "Invalid client secret provided.", 7000215)
		return client{}, false
	}
	return *found, true
}

func (a *Authority) handleToken(w http.ResponseWriter, r *http.Request) {
	tenant := r.PathValue("tenant")
	if err := r.ParseForm(); err != nil {
		a.tokenError(w, http.StatusBadRequest, "invalid_request", "The request body must contain form parameters.", 900144)
		return
	}
	f := r.PostForm
	if f.Get("grant_type") == "authorization_code" {
		a.redeemCode(w, tenant, f)
		return
	}
	if f.Get("grant_type") != "client_credentials" {
		a.tokenError(w, http.StatusBadRequest, "unsupported_grant_type", "Only client_credentials and authorization_code are supported by this server.", 70003)
		return
	}
	res, ok := scopeResource(f.Get("scope"))
	if !ok || !a.knownResource(res) {
		a.tokenError(w, http.StatusBadRequest, "invalid_scope", fmt.Sprintf("The provided value for scope %s is not valid.", f.Get("scope")), 70011)
		return
	}
	found, ok := a.authenticateClient(w, tenant, f)
	if !ok {
		return
	}
	tok, _, err := a.issue(tenant, found.id, normalizeResource(res), a.lifetime)
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
		"expires_in":     secs,
		"ext_expires_in": secs,
		"access_token":   tok,
	})
}

// handleManagedIdentity answers the App Service managed identity protocol
// (api-version 2019-08-01): GET ?resource=<resource>[&client_id=...] with
// the X-IDENTITY-HEADER secret.
func (a *Authority) handleManagedIdentity(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	want := a.miHeader
	a.mu.Unlock()
	q := r.URL.Query()
	switch {
	case want == "" || subtle.ConstantTimeCompare([]byte(want), []byte(r.Header.Get("X-IDENTITY-HEADER"))) != 1:
		a.refuse()
		writeJSON(w, http.StatusUnauthorized, map[string]any{"statusCode": 401, "message": "Unauthorized: the X-IDENTITY-HEADER is missing or wrong"})
		return
	case q.Get("api-version") != "2019-08-01":
		a.refuse()
		writeJSON(w, http.StatusBadRequest, map[string]any{"statusCode": 400, "message": "api-version must be 2019-08-01"})
		return
	case !a.knownResource(q.Get("resource")):
		a.refuse()
		writeJSON(w, http.StatusBadRequest, map[string]any{"statusCode": 400, "message": "unknown resource " + q.Get("resource")})
		return
	}
	subject := q.Get("client_id")
	if subject == "" {
		subject = "system-assigned"
	}
	tok, exp, err := a.issue("managed-identity", subject, normalizeResource(q.Get("resource")), a.lifetime)
	if err != nil {
		a.refuse()
		writeJSON(w, http.StatusInternalServerError, map[string]any{"statusCode": 500, "message": "token issuance failed"})
		return
	}
	a.mu.Lock()
	a.requests++
	a.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": tok,
		"expires_on":   strconv.FormatInt(exp.Unix(), 10),
		"resource":     q.Get("resource"),
		"token_type":   "Bearer",
		"client_id":    q.Get("client_id"),
	})
}
