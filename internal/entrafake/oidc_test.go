package entrafake_test

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/custody-audit/custody/internal/entrafake"
)

// TestAuthorizationCode drives the authorize endpoint and the
// authorization_code grant by hand: a registered redirect URI gets a code
// and the state back; the code is redeemed once, by its client, with the
// PKCE verifier and the same redirect URI, for an ID token.
func TestAuthorizationCode(t *testing.T) {
	a, err := entrafake.New(entrafake.Options{Resources: []string{resource}})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	const client, secret, redirect = "web-app", "web-secret-value", "https://page.example/auth/callback"
	a.AddClient(tenant, client, secret)
	a.AddRedirectURI(tenant, client, redirect)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: a.CertPool()}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	verifier := strings.Repeat("v", 43)
	sum := sha256.Sum256([]byte(verifier))
	authorize := func(redirectURI string) *http.Response {
		q := url.Values{"client_id": {client}, "response_type": {"code"}, "redirect_uri": {redirectURI}, "scope": {"openid profile"},
			"state": {"st-1"}, "nonce": {"n-1"}, "code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"}}
		res, err := hc.Get(a.URL() + "/" + tenant + "/oauth2/v2.0/authorize?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}
	if res := authorize(redirect); res.StatusCode != http.StatusFound || !strings.Contains(res.Header.Get("Location"), "error=login_required") {
		t.Errorf("no user signed in: %d %s", res.StatusCode, res.Header.Get("Location"))
	}
	a.SignIn(&entrafake.User{ObjectID: "oid-1", Username: "u@contoso.com", Groups: []string{"g1"}})
	if res := authorize("https://evil.example/cb"); res.StatusCode != http.StatusBadRequest {
		t.Errorf("unregistered redirect URI: %d %s", res.StatusCode, res.Header.Get("Location"))
	}
	code := func() string {
		res := authorize(redirect)
		u, err := url.Parse(res.Header.Get("Location"))
		if err != nil || u.Query().Get("state") != "st-1" || u.Query().Get("code") == "" {
			t.Fatalf("authorize: %d %s", res.StatusCode, res.Header.Get("Location"))
		}
		return u.Query().Get("code")
	}
	redeem := func(code, verifier, redirectURI string) (int, map[string]any) {
		res, err := hc.PostForm(a.URL()+"/"+tenant+"/oauth2/v2.0/token", url.Values{"grant_type": {"authorization_code"}, "client_id": {client},
			"client_secret": {secret}, "code": {code}, "code_verifier": {verifier}, "redirect_uri": {redirectURI}})
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(res.Body).Decode(&m)
		return res.StatusCode, m
	}
	if st, m := redeem(code(), "wrong-verifier-"+verifier, redirect); st != 400 || !strings.Contains(m["error_description"].(string), "AADSTS501481") {
		t.Errorf("wrong PKCE verifier: %d %v", st, m)
	}
	if st, m := redeem(code(), verifier, "https://page.example/other"); st != 400 || m["error"] != "invalid_grant" {
		t.Errorf("other redirect URI: %d %v", st, m)
	}
	c := code()
	st, m := redeem(c, verifier, redirect)
	if st != 200 || m["id_token"] == nil {
		t.Fatalf("redeem: %d %v", st, m)
	}
	parts := strings.Split(m["id_token"].(string), ".")
	b, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var claims entrafake.IDClaims
	if err := json.Unmarshal(b, &claims); err != nil || claims.Audience != client || claims.Nonce != "n-1" || claims.Subject != "oid-1" || claims.Groups[0] != "g1" {
		t.Errorf("ID token claims %+v (%v)", claims, err)
	}
	if st, _ := redeem(c, verifier, redirect); st != 400 {
		t.Errorf("code redeemed twice: %d", st)
	}
	res, err := hc.Get(a.URL() + "/" + tenant + "/discovery/v2.0/keys")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var jwks struct {
		Keys []map[string]string `json:"keys"`
	}
	if err := json.NewDecoder(res.Body).Decode(&jwks); err != nil || len(jwks.Keys) != 1 || jwks.Keys[0]["crv"] != "Ed25519" {
		t.Errorf("JWKS %+v (%v)", jwks, err)
	}
}

// TestEndSession drives the end_session_endpoint named by the discovery
// document: it ends the authority's session and sends the browser back
// only to a redirect URI registered for the application (named by
// client_id or by id_token_hint), with the state; a logout_hint of
// another account ends nothing.
func TestEndSession(t *testing.T) {
	a, err := entrafake.New(entrafake.Options{Resources: []string{resource}})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	const client, secret = "web-app", "web-secret-value"
	const callback, signedOut = "https://page.example/auth/callback", "https://page.example/auth/signed-out"
	a.AddClient(tenant, client, secret)
	a.AddRedirectURI(tenant, client, callback)
	a.AddRedirectURI(tenant, client, signedOut)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: a.CertPool()}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := hc.Get(a.URL() + "/" + tenant + "/v2.0/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	var disc struct {
		EndSession string `json:"end_session_endpoint"`
	}
	err = json.NewDecoder(res.Body).Decode(&disc)
	res.Body.Close()
	if err != nil || disc.EndSession != a.URL()+"/"+tenant+"/oauth2/v2.0/logout" {
		t.Fatalf("discovery end_session_endpoint %q (%v)", disc.EndSession, err)
	}
	user := entrafake.User{ObjectID: "oid-1", Username: "u@contoso.com"}
	logout := func(q url.Values) *http.Response {
		res, err := hc.Get(disc.EndSession + "?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}
	signedIn := func() bool {
		q := url.Values{"client_id": {client}, "response_type": {"code"}, "redirect_uri": {callback}, "scope": {"openid"}, "state": {"s"}}
		res, err := hc.Get(a.URL() + "/" + tenant + "/oauth2/v2.0/authorize?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return !strings.Contains(res.Header.Get("Location"), "error=login_required")
	}

	a.SignIn(&user)
	res = logout(url.Values{"client_id": {client}, "post_logout_redirect_uri": {signedOut}, "logout_hint": {"someone-else"}})
	if res.StatusCode != http.StatusOK || !signedIn() || a.SignOuts() != 0 {
		t.Errorf("logout_hint of another account: %d, signed in %v, %d sign-outs", res.StatusCode, signedIn(), a.SignOuts())
	}
	res = logout(url.Values{"client_id": {client}, "post_logout_redirect_uri": {signedOut}, "logout_hint": {entrafake.LoginHint(user)}, "state": {"st-9"}})
	if res.StatusCode != http.StatusFound || res.Header.Get("Location") != signedOut+"?state=st-9" {
		t.Errorf("sign-out with a registered URI: %d to %q", res.StatusCode, res.Header.Get("Location"))
	}
	if signedIn() || a.SignOuts() != 1 {
		t.Errorf("after sign-out: signed in %v, %d sign-outs", signedIn(), a.SignOuts())
	}

	a.SignIn(&user)
	res = logout(url.Values{"client_id": {client}, "post_logout_redirect_uri": {"https://evil.example/"}})
	if res.StatusCode != http.StatusOK || res.Header.Get("Location") != "" || signedIn() {
		t.Errorf("unregistered post_logout_redirect_uri: %d to %q, still signed in %v", res.StatusCode, res.Header.Get("Location"), signedIn())
	}

	// id_token_hint names the application in place of client_id.
	a.SignIn(&user)
	tok, _, err := a.IssueToken(tenant, "oid-1", resource, 0)
	if err != nil {
		t.Fatal(err)
	}
	if res = logout(url.Values{"id_token_hint": {tok + "x"}, "post_logout_redirect_uri": {signedOut}}); res.StatusCode != http.StatusBadRequest || !signedIn() {
		t.Errorf("forged id_token_hint: %d, signed in %v", res.StatusCode, signedIn())
	}
}
