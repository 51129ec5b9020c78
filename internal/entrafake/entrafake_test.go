package entrafake_test

import (
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/custody-audit/custody/internal/entrafake"
)

const (
	resource = "https://eventhubs.azure.net"
	tenant   = "72f988bf-0000-4000-8000-000000000001"
)

func newAuthority(t *testing.T) *entrafake.Authority {
	t.Helper()
	a, err := entrafake.New(entrafake.Options{Resources: []string{resource}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return a
}

func issue(t *testing.T, a *entrafake.Authority, res string, life time.Duration) string {
	t.Helper()
	tok, _, err := a.IssueToken(tenant, "app", res, life)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestVerify: a good token verifies for its resource (trailing slashes and
// "/.default" ignored); every corruption fails with the matching sentinel.
func TestVerify(t *testing.T) {
	a := newAuthority(t)
	other := newAuthority(t)
	good := issue(t, a, resource+"/", time.Hour)
	second := issue(t, a, resource, time.Hour)
	seg := strings.Split(good, ".")
	seg2 := strings.Split(second, ".")
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
	cases := []struct {
		desc, token, resource string
		wantErr               error
	}{
		{"good", good, resource, nil},
		{"good, resource with slash", good, resource + "/", nil},
		{"good, resource as SDK scope", good, resource + "//.default", nil},
		{"empty", "", resource, entrafake.ErrMalformed},
		{"two segments", seg[0] + "." + seg[1], resource, entrafake.ErrMalformed},
		{"four segments", good + ".x", resource, entrafake.ErrMalformed},
		{"signature not base64", seg[0] + "." + seg[1] + ".!!", resource, entrafake.ErrMalformed},
		{"truncated signature", good[:len(good)-4], resource, entrafake.ErrMalformed},
		{"alg none", none + "." + seg[1] + "." + seg[2], resource, entrafake.ErrMalformed},
		{"claims of another token", seg[0] + "." + seg2[1] + "." + seg[2], resource, entrafake.ErrSignature},
		{"another authority", issue(t, other, resource, time.Hour), resource, entrafake.ErrSignature},
		{"another resource", good, "https://storage.azure.com", entrafake.ErrAudience},
		{"expired", issue(t, a, resource, -time.Second), resource, entrafake.ErrExpired},
	}
	for _, tc := range cases {
		t.Run(tc.desc, func(t *testing.T) {
			c, err := a.Verify(tc.token, tc.resource)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("Verify = %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				if tc.token != "" && strings.Contains(err.Error(), tc.token) {
					t.Fatalf("error echoes the token: %v", err)
				}
				return
			}
			if c.Audience != resource || c.TenantID != tenant || c.Subject != "app" ||
				!strings.HasPrefix(c.Issuer, a.URL()+"/") || time.Until(c.ExpiresAt()) < 59*time.Minute {
				t.Fatalf("claims = %+v", c)
			}
		})
	}
}

// TestEndpoints: the token endpoint takes the SDK's Event Hubs scope and
// answers errors in Entra ID's shape; the managed identity endpoint
// checks its header. Tokens from both verify.
func TestEndpoints(t *testing.T) {
	a := newAuthority(t)
	a.AddClient(tenant, "app", "s3cret")
	a.AddFederatedClient(tenant, "wi", "federated.assertion.value")
	mi := a.EnableManagedIdentity("hdr")
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConfig(a)}}

	tokenURL := a.URL() + "/" + tenant + "/oauth2/v2.0/token"
	cases := []struct {
		desc       string
		form       url.Values
		wantStatus int
		wantError  string
	}{
		{"client secret, SDK scope", url.Values{"grant_type": {"client_credentials"}, "client_id": {"app"},
			"client_secret": {"s3cret"}, "scope": {resource + "//.default openid offline_access profile"}}, 200, ""},
		{"client assertion", url.Values{"grant_type": {"client_credentials"}, "client_id": {"wi"},
			"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
			"client_assertion":      {"federated.assertion.value"}, "scope": {resource + "/.default"}}, 200, ""},
		{"wrong secret", url.Values{"grant_type": {"client_credentials"}, "client_id": {"app"},
			"client_secret": {"nope"}, "scope": {resource + "/.default"}}, 401, "invalid_client"},
		{"unknown client", url.Values{"grant_type": {"client_credentials"}, "client_id": {"who"},
			"client_secret": {"s3cret"}, "scope": {resource + "/.default"}}, 400, "unauthorized_client"},
		{"unknown resource", url.Values{"grant_type": {"client_credentials"}, "client_id": {"app"},
			"client_secret": {"s3cret"}, "scope": {"https://vault.azure.net/.default"}}, 400, "invalid_scope"},
		{"two resources", url.Values{"grant_type": {"client_credentials"}, "client_id": {"app"},
			"client_secret": {"s3cret"}, "scope": {resource + "/.default https://vault.azure.net/.default"}}, 400, "invalid_scope"},
		{"password grant", url.Values{"grant_type": {"password"}, "client_id": {"app"}}, 400, "unsupported_grant_type"},
	}
	for _, tc := range cases {
		t.Run(tc.desc, func(t *testing.T) {
			resp, err := client.PostForm(tokenURL, tc.form)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body struct {
				AccessToken string `json:"access_token"`
				Error       string `json:"error"`
				Desc        string `json:"error_description"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.wantStatus || body.Error != tc.wantError {
				t.Fatalf("status %d error %q, want %d %q", resp.StatusCode, body.Error, tc.wantStatus, tc.wantError)
			}
			if tc.wantStatus != 200 {
				if !strings.HasPrefix(body.Desc, "AADSTS") {
					t.Fatalf("error_description %q lacks the AADSTS code", body.Desc)
				}
				return
			}
			if _, err := a.Verify(body.AccessToken, resource); err != nil {
				t.Fatalf("issued token does not verify: %v", err)
			}
		})
	}

	for _, hdr := range []string{"hdr", "wrong"} {
		req, _ := http.NewRequest(http.MethodGet, mi+"?api-version=2019-08-01&resource="+url.QueryEscape(resource+"/"), nil)
		req.Header.Set("X-IDENTITY-HEADER", hdr)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			AccessToken string `json:"access_token"`
			ExpiresOn   string `json:"expires_on"`
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case hdr == "hdr" && (resp.StatusCode != 200 || body.ExpiresOn == ""):
			t.Fatalf("managed identity: status %d, %+v", resp.StatusCode, body)
		case hdr == "hdr":
			if _, err := a.Verify(body.AccessToken, resource); err != nil {
				t.Fatalf("managed identity token: %v", err)
			}
		case resp.StatusCode != 401:
			t.Fatalf("wrong identity header: status %d", resp.StatusCode)
		}
	}
	if granted, refused := a.Requests(); granted != 3 || refused != 6 {
		t.Fatalf("requests granted %d refused %d, want 3 and 6", granted, refused)
	}
}

func tlsConfig(a *entrafake.Authority) *tls.Config {
	return &tls.Config{RootCAs: a.CertPool(), MinVersion: tls.VersionTLS12}
}
