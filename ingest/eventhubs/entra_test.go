package eventhubs_test

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/custody-audit/custody/ingest"
	"github.com/custody-audit/custody/ingest/eventhubs"
	"github.com/custody-audit/custody/internal/ehbroker"
	"github.com/custody-audit/custody/internal/entrafake"
)

// Entra ID identities of the tests. The secrets are distinctive so a leak
// into logs or errors is found by a plain substring search.
const (
	entraNamespace = "custody-test.servicebus.windows.net"
	entraTenant    = "72f988bf-0000-4000-8000-0000000000e1"
	entraClientID  = "0e1f2a3b-0000-4000-8000-0000000e1c11"
	entraSecret    = "eh-s3cr3t~client-secret-that-must-never-leak"
	entraWIClient  = "0e1f2a3b-0000-4000-8000-0000000e1a1d"
	entraMIHeader  = "mi-header-s3cr3t-never-leak"
	// entraAssertion is the federated (service account) token a workload
	// identity presents, as the AKS webhook mounts it.
	entraAssertion = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6Y3VzdG9keTpjb2xsZWN0b3IifQ.ZmVkZXJhdGVk"
)

// entraEnv is a token authority and an Event Hubs broker that trusts its
// tokens, reached over TLS.
type entraEnv struct {
	auth   *entrafake.Authority
	broker *ehbroker.Broker
	roots  *x509.CertPool // the broker's test CA and the authority's cert
	logs   *syncBuffer
	logger *slog.Logger
}

func newEntraEnv(t *testing.T) *entraEnv {
	t.Helper()
	auth, err := entrafake.New(entrafake.Options{Resources: []string{ehbroker.EventHubsResource, "https://storage.azure.com"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(auth.Close)
	b := startBroker(t, ehbroker.Config{EventHub: "audit", Partitions: 2, TLS: true,
		TLSHosts: []string{entraNamespace}, Tokens: auth})
	roots := b.RootCAs().Clone()
	roots.AddCert(auth.Certificate())
	logs := &syncBuffer{}
	return &entraEnv{auth: auth, broker: b, roots: roots, logs: logs,
		logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
}

// config is a fast-retrying source config for kind that dials the
// broker's TLS listener in place of the namespace.
func (e *entraEnv) config(kind eventhubs.CredentialKind) eventhubs.Config {
	cfg := eventhubs.DefaultConfig()
	cfg.Credential = kind
	cfg.Namespace = entraNamespace
	cfg.EventHub = "audit"
	cfg.CustomEndpoint = e.broker.TLSAddr()
	cfg.MaxWait = 100 * time.Millisecond
	cfg.MaxBatchSize = 100
	cfg.RetryDelay = 20 * time.Millisecond
	cfg.MaxRetryDelay = 200 * time.Millisecond
	switch kind {
	case eventhubs.CredentialClientSecret, eventhubs.CredentialWorkloadIdentity:
		cfg.AuthorityHost = e.auth.AuthorityHost()
		cfg.DisableInstanceDiscovery = true
		cfg.TenantID = entraTenant
	case eventhubs.CredentialAzureCLI:
		cfg.TenantID = entraTenant
	}
	return cfg
}

// connect builds and connects a source; it returns Connect's error.
func (e *entraEnv) connect(t *testing.T, cfg eventhubs.Config, stored map[string]int64) (*eventhubs.Source, error) {
	t.Helper()
	s, err := eventhubs.New(cfg, stored, e.logger, eventhubs.WithTLSRootCAs(e.roots))
	if err != nil {
		t.Fatalf("new source: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := s.Connect(ctx); err != nil {
		return nil, err
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s, nil
}

// uniqueIdentity is a user-assigned managed identity client id no other
// test uses. MSAL keeps managed identity tokens in a process-wide cache
// keyed by identity and resource, so a second test asking for the same
// identity would get the first test's token (signed by another authority)
// without a request.
func uniqueIdentity() string {
	return fmt.Sprintf("0e1f2a3b-0000-4000-8000-%012d", time.Now().UnixNano()%1e12)
}

// fakeAZ puts an `az` executable first on PATH that answers
// `az account get-access-token -o json --resource <resource> --tenant <t>`
// (the command azidentity's AzureCLICredential runs through /bin/sh) with
// token in the JSON shape the CLI prints, and fails like the CLI on any
// other arguments. It returns the file the fake appends its arguments to.
func fakeAZ(t *testing.T, token string, expires time.Time) string {
	t.Helper()
	return writeFakeAZ(t, token, expires, "")
}

// writeFakeAZ writes the fake az; a non-empty failure makes it print that
// to stderr and exit 1 instead, as the CLI does when nobody is logged in.
func writeFakeAZ(t *testing.T, token string, expires time.Time, failure string) string {
	t.Helper()
	dir := t.TempDir()
	argsFile := filepath.Join(dir, "args")
	failFile := filepath.Join(dir, "failure")
	if err := os.WriteFile(failFile, []byte(failure), 0o600); err != nil {
		t.Fatal(err)
	}
	want := "account get-access-token -o json --resource " + ehbroker.EventHubsResource + "/ --tenant " + entraTenant
	script := fmt.Sprintf(`#!/bin/sh
printf '%%s\n' "$*" >> '%s'
if [ "$*" != '%s' ]; then
	echo "ERROR: unrecognized arguments: $*" >&2
	exit 2
fi
if [ -s '%s' ]; then
	cat '%s' >&2
	exit 1
fi
cat <<'JSON'
{
  "accessToken": "%s",
  "expiresOn": "%s",
  "expires_on": %d,
  "subscription": "00000000-0000-4000-8000-000000005ub5",
  "tenant": "%s",
  "tokenType": "Bearer"
}
JSON
`, argsFile, want, failFile, failFile, token, expires.Local().Format("2006-01-02 15:04:05.000000"), expires.Unix(), entraTenant)
	if err := os.WriteFile(filepath.Join(dir, "az"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	return argsFile
}

// TestEntraIDCredentials reads events with each Entra ID credential kind,
// the real azidentity credential getting its token from the local
// authority and the SDK putting it to the broker's $cbs node over TLS,
// where it is verified; then it restarts from the positions a store would
// hold and reads only the new events.
func TestEntraIDCredentials(t *testing.T) {
	cases := []struct {
		kind  eventhubs.CredentialKind
		setup func(t *testing.T, e *entraEnv, cfg *eventhubs.Config)
		// check runs after the first read, for credential-specific checks.
		check func(t *testing.T, e *entraEnv)
	}{
		{
			kind: eventhubs.CredentialClientSecret,
			setup: func(t *testing.T, e *entraEnv, cfg *eventhubs.Config) {
				e.auth.AddClient(entraTenant, entraClientID, entraSecret)
				cfg.ClientID, cfg.ClientSecret = entraClientID, entraSecret
			},
		},
		{
			kind: eventhubs.CredentialWorkloadIdentity,
			setup: func(t *testing.T, e *entraEnv, cfg *eventhubs.Config) {
				file := filepath.Join(t.TempDir(), "azure-identity-token")
				if err := os.WriteFile(file, []byte(entraAssertion), 0o600); err != nil {
					t.Fatal(err)
				}
				e.auth.AddFederatedClient(entraTenant, entraWIClient, entraAssertion)
				cfg.ClientID, cfg.TokenFile = entraWIClient, file
			},
		},
		{
			kind: eventhubs.CredentialManagedIdentity,
			setup: func(t *testing.T, e *entraEnv, cfg *eventhubs.Config) {
				// App Service style: azidentity picks the protocol from
				// these two variables.
				t.Setenv("IDENTITY_ENDPOINT", e.auth.EnableManagedIdentity(entraMIHeader))
				t.Setenv("IDENTITY_HEADER", entraMIHeader)
				cfg.ClientID = uniqueIdentity()
			},
		},
		{
			kind: eventhubs.CredentialAzureCLI,
			setup: func(t *testing.T, e *entraEnv, cfg *eventhubs.Config) {
				tok, exp, err := e.auth.IssueToken(entraTenant, "cli-user", ehbroker.EventHubsResource, time.Hour)
				if err != nil {
					t.Fatal(err)
				}
				args := fakeAZ(t, tok, exp)
				t.Cleanup(func() {
					b, err := os.ReadFile(args)
					if err != nil {
						t.Errorf("the fake az never ran: %v", err)
					}
					for line := range strings.Lines(string(b)) {
						if !strings.HasPrefix(line, "account get-access-token -o json --resource https://eventhubs.azure.net/ --tenant ") {
							t.Errorf("az ran with unexpected arguments %q", line)
						}
					}
				})
			},
		},
	}
	for _, tc := range cases {
		t.Run(string(tc.kind), func(t *testing.T) {
			e := newEntraEnv(t)
			cfg := e.config(tc.kind)
			tc.setup(t, e, &cfg)
			publish(t, e.broker, "0", 0, 30)
			publish(t, e.broker, "1", 0, 20)

			s, err := e.connect(t, cfg, nil)
			if err != nil {
				t.Fatalf("connect: %v", err)
			}
			c := newCollector(t, s)
			c.readN(50)
			c.expectSeq(s.Stream("0"), 0, 29)
			c.expectSeq(s.Stream("1"), 0, 19)
			for _, m := range c.msgs {
				p := m.Stream[strings.LastIndex(m.Stream, "/")+1:]
				if string(m.Body) != string(body(p, int(m.Offset))) {
					t.Fatalf("%s %d: body %s", m.Stream, m.Offset, m.Body)
				}
			}
			if want := "eventhubs/" + entraNamespace + "/audit/$Default/0"; s.Stream("0") != want {
				t.Errorf("stream = %q, want %q", s.Stream("0"), want)
			}
			st := e.broker.TokenStats()
			if st.JWTAccepted == 0 || st.JWTRefused != 0 || st.SASAccepted != 0 || st.Unauthorized != 0 {
				t.Errorf("broker token stats %+v, want only accepted Entra ID tokens", st)
			}
			if accepted, _ := e.broker.Stats(); accepted == 0 {
				t.Error("no connection reached the broker")
			}

			// Restart from the positions a store holds: only new events.
			stored := map[string]int64{}
			for _, p := range s.Positions() {
				stored[p.Stream] = p.Offset
			}
			if stored[s.Stream("0")] != 29 || stored[s.Stream("1")] != 19 {
				t.Fatalf("positions = %v, want 29 and 19", stored)
			}
			if err := s.Close(t.Context()); err != nil {
				t.Fatal(err)
			}
			publish(t, e.broker, "0", 30, 5)
			publish(t, e.broker, "1", 20, 3)
			s2, err := e.connect(t, cfg, stored)
			if err != nil {
				t.Fatalf("reconnect: %v", err)
			}
			c2 := newCollector(t, s2)
			c2.readN(8)
			c2.expectNothingMore()
			c2.expectSeq(s2.Stream("0"), 30, 34)
			c2.expectSeq(s2.Stream("1"), 20, 22)

			secrets := append(e.auth.IssuedTokens(), entraSecret, entraAssertion, entraMIHeader)
			if len(secrets) < 4 {
				t.Fatal("the authority issued no token")
			}
			logs := e.logs.String()
			if !strings.Contains(logs, "event hubs source connected") {
				t.Fatal("logs were not captured")
			}
			for _, secret := range secrets {
				if strings.Contains(logs, secret) {
					t.Errorf("logs leak a secret or token")
				}
			}
		})
	}
}

// TestEntraIDRejected: a credential the authority refuses, and tokens the
// broker refuses (another issuer, another resource, expired), each end
// Connect with an error that says what went wrong and carries no secret or
// token; nothing is read.
func TestEntraIDRejected(t *testing.T) {
	cases := []struct {
		name  string
		kind  eventhubs.CredentialKind
		setup func(t *testing.T, e *entraEnv, cfg *eventhubs.Config) (secrets []string)
		// want are substrings of the error; unauthorized says the broker
		// (not the authority) refused.
		want         []string
		unauthorized bool
	}{
		{
			name: "wrong client secret",
			kind: eventhubs.CredentialClientSecret,
			setup: func(t *testing.T, e *entraEnv, cfg *eventhubs.Config) []string {
				e.auth.AddClient(entraTenant, entraClientID, entraSecret)
				cfg.ClientID, cfg.ClientSecret = entraClientID, "wrong-"+entraSecret
				return []string{entraSecret, "wrong-" + entraSecret}
			},
			want: []string{"ClientSecretCredential", "invalid_client", "AADSTS7000215"},
		},
		{
			name: "unknown federated token",
			kind: eventhubs.CredentialWorkloadIdentity,
			setup: func(t *testing.T, e *entraEnv, cfg *eventhubs.Config) []string {
				file := filepath.Join(t.TempDir(), "azure-identity-token")
				if err := os.WriteFile(file, []byte(entraAssertion+"x"), 0o600); err != nil {
					t.Fatal(err)
				}
				e.auth.AddFederatedClient(entraTenant, entraWIClient, entraAssertion)
				cfg.ClientID, cfg.TokenFile = entraWIClient, file
				return []string{entraAssertion}
			},
			want: []string{"WorkloadIdentityCredential", "invalid_client"},
		},
		{
			name: "wrong identity header",
			kind: eventhubs.CredentialManagedIdentity,
			setup: func(t *testing.T, e *entraEnv, cfg *eventhubs.Config) []string {
				t.Setenv("IDENTITY_ENDPOINT", e.auth.EnableManagedIdentity(entraMIHeader))
				t.Setenv("IDENTITY_HEADER", "not-"+entraMIHeader)
				cfg.ClientID = uniqueIdentity()
				return []string{entraMIHeader, "not-" + entraMIHeader}
			},
			want: []string{"ManagedIdentityCredential", "401"},
		},
		{
			name: "azure cli not logged in",
			kind: eventhubs.CredentialAzureCLI,
			setup: func(t *testing.T, e *entraEnv, cfg *eventhubs.Config) []string {
				writeFakeAZ(t, "", time.Now(), "ERROR: Please run 'az login' to setup account.")
				return nil
			},
			want: []string{"AzureCLICredential", "az login"},
		},
		{
			name: "empty token from the cli",
			kind: eventhubs.CredentialAzureCLI,
			setup: func(t *testing.T, e *entraEnv, cfg *eventhubs.Config) []string {
				// azidentity passes an empty accessToken on; the broker
				// must refuse it.
				fakeAZ(t, "", time.Now().Add(time.Hour))
				return nil
			},
			want:         []string{"401", "not a non-empty string"},
			unauthorized: true,
		},
		{
			name: "token from another authority",
			kind: eventhubs.CredentialAzureCLI,
			setup: func(t *testing.T, e *entraEnv, cfg *eventhubs.Config) []string {
				other, err := entrafake.New(entrafake.Options{Resources: []string{ehbroker.EventHubsResource}})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(other.Close)
				tok, exp, err := other.IssueToken(entraTenant, "intruder", ehbroker.EventHubsResource, time.Hour)
				if err != nil {
					t.Fatal(err)
				}
				fakeAZ(t, tok, exp)
				return []string{tok}
			},
			want:         []string{"401", "signature does not verify"},
			unauthorized: true,
		},
		{
			name: "token for another resource",
			kind: eventhubs.CredentialAzureCLI,
			setup: func(t *testing.T, e *entraEnv, cfg *eventhubs.Config) []string {
				tok, exp, err := e.auth.IssueToken(entraTenant, "cli-user", "https://storage.azure.com", time.Hour)
				if err != nil {
					t.Fatal(err)
				}
				fakeAZ(t, tok, exp)
				return []string{tok}
			},
			want:         []string{"401", "audience mismatch"},
			unauthorized: true,
		},
		{
			name: "expired token",
			kind: eventhubs.CredentialAzureCLI,
			setup: func(t *testing.T, e *entraEnv, cfg *eventhubs.Config) []string {
				// A token the CLI still holds after it expired; the SDK
				// presents what the credential returns.
				tok, _, err := e.auth.IssueToken(entraTenant, "cli-user", ehbroker.EventHubsResource, -time.Minute)
				if err != nil {
					t.Fatal(err)
				}
				fakeAZ(t, tok, time.Now().Add(time.Hour))
				return []string{tok}
			},
			want:         []string{"401", "expired"},
			unauthorized: true,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEntraEnv(t)
			cfg := e.config(tc.kind)
			secrets := tc.setup(t, e, &cfg)
			publish(t, e.broker, "0", 0, 5)

			_, err := e.connect(t, cfg, nil)
			if err == nil {
				t.Fatal("connected with a rejected credential")
			}
			msg := err.Error()
			t.Logf("connect error: %s", msg)
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
			if !errors.Is(err, eventhubs.ErrAuthentication) {
				t.Errorf("error %q is not ErrAuthentication", msg)
			}
			st := e.broker.TokenStats()
			if st.JWTAccepted != 0 || st.SASAccepted != 0 {
				t.Errorf("broker accepted a token: %+v", st)
			}
			if tc.unauthorized && st.JWTRefused == 0 {
				t.Errorf("broker refused no token: %+v", st)
			}
			if e.broker.Delivered() != 0 {
				t.Errorf("broker delivered %d events to a rejected client", e.broker.Delivered())
			}
			logs := e.logs.String()
			for _, s := range append(secrets, e.auth.IssuedTokens()...) {
				if strings.Contains(msg, s) {
					t.Errorf("error leaks a secret or token: %s", msg)
				}
				if strings.Contains(logs, s) {
					t.Errorf("logs leak a secret or token")
				}
			}
		})
	}
}

// TestEntraIDConfigLeavesConnectionStringAlone: the emulator connection
// string still reaches the plain listener of a TLS-enabled broker, with
// SAS tokens, and the Entra ID options refuse to mix with it.
func TestEntraIDConfigLeavesConnectionStringAlone(t *testing.T) {
	e := newEntraEnv(t)
	publish(t, e.broker, "1", 0, 7)
	s := newSource(t, testConfig(e.broker), nil, nil)
	c := newCollector(t, s)
	c.readN(7)
	c.expectSeq(s.Stream("1"), 0, 6)
	if st := e.broker.TokenStats(); st.SASAccepted == 0 || st.JWTAccepted != 0 {
		t.Errorf("token stats %+v, want SAS tokens only", st)
	}

	bad := testConfig(e.broker)
	bad.AuthorityHost = e.auth.AuthorityHost()
	if _, err := eventhubs.New(bad, nil, nil); err == nil || !strings.Contains(err.Error(), "authority_host: only used with an Entra ID credential") {
		t.Errorf("authority_host with a connection string: err = %v", err)
	}
}

// TestEntraIDPositionsSurviveTokenRejection: when the authority starts
// refusing, a restarted source fails to connect and reads nothing; once it
// accepts again the source resumes exactly after the stored positions.
func TestEntraIDPositionsSurviveTokenRejection(t *testing.T) {
	e := newEntraEnv(t)
	cfg := e.config(eventhubs.CredentialClientSecret)
	cfg.ClientID, cfg.ClientSecret = entraClientID, entraSecret
	publish(t, e.broker, "0", 0, 12)
	stored := map[string]int64{}
	probe, err := eventhubs.New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	stored[probe.Stream("0")] = 4

	// Not registered yet: the token request fails.
	if _, err := e.connect(t, cfg, stored); err == nil {
		t.Fatal("connected before the client was registered")
	}
	e.auth.AddClient(entraTenant, entraClientID, entraSecret)
	s, err := e.connect(t, cfg, stored)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	c := newCollector(t, s)
	c.readN(7)
	c.expectNothingMore()
	c.expectSeq(s.Stream("0"), 5, 11)
	c.expectSeq(s.Stream("1"), 0, -1)
	granted, refused := e.auth.Requests()
	if granted == 0 || refused == 0 {
		t.Errorf("authority granted %d and refused %d token requests, want both > 0", granted, refused)
	}
	if !slices.ContainsFunc(s.Positions(), func(p ingest.StreamPosition) bool { return p.Stream == s.Stream("0") && p.Offset == 11 }) {
		t.Errorf("positions = %v, want %s at 11", s.Positions(), s.Stream("0"))
	}
}

// TestEntraIDNeedsTrustedBroker: without WithTLSRootCAs the source trusts
// only the system roots, so it refuses the broker's test certificate and
// never hands it a token.
func TestEntraIDNeedsTrustedBroker(t *testing.T) {
	e := newEntraEnv(t)
	tok, exp, err := e.auth.IssueToken(entraTenant, "cli-user", ehbroker.EventHubsResource, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	fakeAZ(t, tok, exp)
	s, err := eventhubs.New(e.config(eventhubs.CredentialAzureCLI), nil, e.logger)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	err = s.Connect(ctx)
	if err == nil {
		_ = s.Close(ctx)
		t.Fatal("connected to a broker whose certificate no trusted CA signed")
	}
	if !strings.Contains(err.Error(), "certificate") || errors.Is(err, eventhubs.ErrAuthentication) {
		t.Errorf("err = %v, want a certificate error that is not ErrAuthentication", err)
	}
	if st := e.broker.TokenStats(); st != (ehbroker.TokenStats{}) {
		t.Errorf("the untrusted broker received tokens: %+v", st)
	}
}
