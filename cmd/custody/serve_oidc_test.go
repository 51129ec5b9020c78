package main

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v3"

	"github.com/custody-audit/custody/internal/entrafake"
	"github.com/custody-audit/custody/web"
)

// TestWebOIDCFlags reads the Entra ID sign-in flags of `custody serve`
// against a local authority: secrets come from files only, and every
// mistake is refused without quoting them.
func TestWebOIDCFlags(t *testing.T) {
	auth, err := entrafake.New(entrafake.Options{Resources: []string{"https://management.azure.com"}})
	if err != nil {
		t.Fatal(err)
	}
	defer auth.Close()
	// The authority's certificate is trusted through the default client,
	// as the system pool trusts Entra ID's.
	saved := http.DefaultTransport
	http.DefaultTransport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: auth.CertPool()}}
	defer func() { http.DefaultTransport = saved }()

	const secret = "kQ8~client-secret-value-never-shown"
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	fedFile := filepath.Join(dir, "federated")
	emptyFile := filepath.Join(dir, "empty")
	keyFile := filepath.Join(dir, "session.key")
	for p, s := range map[string]string{secretFile: secret + "\n", fedFile: "eyJ.fed.token", emptyFile: "\n", keyFile: "short"} {
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	authority := auth.URL() + "/tenant-1/v2.0"
	base := []string{"--web-oidc-authority", authority, "--web-oidc-client-id", "app-1", "--web-oidc-redirect-url", "https://custody.example/auth/callback"}
	for _, tc := range []struct {
		name  string
		args  []string
		want  string // "" means accepted
		usage bool
	}{
		{"off", nil, "", false},
		{"secret file", append(base, "--web-oidc-client-secret-file", secretFile), "", false},
		{"federated token file", append(base, "--web-oidc-federated-token-file", fedFile), "", false},
		{"both", append(base, "--web-oidc-client-secret-file", secretFile, "--web-oidc-federated-token-file", fedFile), "give one of", true},
		{"neither", base, "needs --web-oidc-client-secret-file or", true},
		{"client id without authority", []string{"--web-oidc-client-id", "app-1"}, "needs --web-oidc-authority", true},
		{"empty secret file", append(base, "--web-oidc-client-secret-file", emptyFile), "is empty", false},
		{"short session key", append(base, "--web-oidc-client-secret-file", secretFile, "--web-oidc-session-key-file", keyFile), "at least 32 bytes", false},
		{"long session", append(base, "--web-oidc-client-secret-file", secretFile, "--web-oidc-session-lifetime", "72h"), "at most 24h", false},
		{"unknown tenant authority", []string{"--web-oidc-authority", auth.URL() + "/nope", "--web-oidc-client-id", "a", "--web-oidc-redirect-url", "https://c.example/auth/callback", "--web-oidc-client-secret-file", secretFile}, "discovery document", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var x *web.OIDC
			cmd := &cli.Command{Name: "serve", Flags: webFlags(), Action: func(ctx context.Context, cmd *cli.Command) (err error) {
				x, err = webOIDC(ctx, cmd)
				return err
			}}
			err := cmd.Run(t.Context(), append([]string{"serve"}, tc.args...))
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if (x != nil) != (len(tc.args) > 0) {
					t.Errorf("sign-in configured = %v", x != nil)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			var ue usageError
			if tc.usage != errors.As(err, &ue) {
				t.Errorf("usage error = %v, want %v", !tc.usage, tc.usage)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("the error quotes the secret: %v", err)
			}
		})
	}
	for _, f := range webFlags() {
		if n := f.Names()[0]; strings.Contains(n, "secret") && !strings.HasSuffix(n, "-file") {
			t.Errorf("flag --%s would put a secret on the command line", n)
		}
	}
}
