package eventhubs_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/custody-audit/custody/ingest/eventhubs"
)

func loadConfig(t *testing.T, name string) eventhubs.Config {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "config", name))
	if err != nil {
		t.Fatal(err)
	}
	cfg := eventhubs.DefaultConfig()
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return cfg
}

func TestConfigGood(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "config", "*.good.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no good configs: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			cfg := loadConfig(t, filepath.Base(f))
			if err := cfg.Validate(); err != nil {
				t.Fatalf("validate: %v", err)
			}
			if _, err := eventhubs.New(cfg, nil, nil); err != nil {
				t.Fatalf("new: %v", err)
			}
		})
	}
	cfg := loadConfig(t, "connection-string.good.yaml")
	if cfg.MaxWait != 2*time.Second || cfg.Prefetch != 500 || cfg.MaxBatchSize != 1000 ||
		cfg.ConsumerGroup != "custody" || strings.Join(cfg.Partitions, ",") != "0,1" ||
		cfg.RetryDelay != time.Second { // a default kept
		t.Fatalf("decoded config = %+v", cfg)
	}
	s, err := eventhubs.New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.Stream("1"), "eventhubs/contoso.servicebus.windows.net/aks-audit/custody/1"; got != want {
		t.Fatalf("stream = %q, want %q", got, want)
	}
}

func TestConfigBad(t *testing.T) {
	cases := []struct {
		file, err string
	}{
		{"no-connection-string.bad.yaml", "connection_string: required with credential connection-string"},
		{"no-event-hub.bad.yaml", "event_hub: required (the connection string has no EntityPath)"},
		{"hub-mismatch.bad.yaml", `event_hub: "b" differs from the connection string's EntityPath "a"`},
		{"no-endpoint.bad.yaml", "connection_string: malformed connection string: no Endpoint"},
		{"no-namespace.bad.yaml", "namespace: required with credential managed-identity"},
		{"no-client-secret.bad.yaml", "client_secret: required with credential client-secret"},
		{"bad-credential.bad.yaml", `credential: "certificate" is not one of connection-string, workload-identity, managed-identity, client-secret, azure-cli`},
		{"bad-start.bad.yaml", `start_position: "yesterday" is not earliest, latest or an RFC 3339 time`},
		{"bad-prefetch.bad.yaml", "prefetch: 6000 out of range [1, 5000]"},
		{"bad-batch.bad.yaml", "max_batch_size: 0 out of range [1, 5000]"},
		{"bad-wait.bad.yaml", "max_wait: 0s must be positive"},
		{"dup-partition.bad.yaml", `partitions[2]: "0" listed twice`},
		{"stray-secret.bad.yaml", "client_secret: only used with credential client-secret, not azure-cli"},
		{"namespace-connstring.bad.yaml", "namespace: not a host name (want <name>.servicebus.windows.net)"},
		{"processor-no-checkpoints.bad.yaml", "checkpoints: connection_string or container_url required with balance processor"},
		{"processor-partitions.bad.yaml", "partitions: must be empty with balance processor (the processor assigns them)"},
		{"static-checkpoints.bad.yaml", "checkpoints: only used with balance processor"},
		{"processor-url-no-auth.bad.yaml", "checkpoints.container_url: needs a SAS query or an Entra ID credential"},
		{"bad-balance.bad.yaml", `balance: "round-robin" is not static or processor`},
		{"processor-expiration.bad.yaml", "ownership_expiration: 30s must exceed load_balancing_interval 1m0s"},
		{"processor-checkpoint-interval.bad.yaml", "checkpoint_interval: -1s must not be negative"},
		{"authority-http.bad.yaml", "authority_host: not an https URL"},
		{"authority-azure-cli.bad.yaml", "authority_host: not used with credential azure-cli (the CLI's login decides)"},
		{"authority-connstring.bad.yaml", "disable_instance_discovery: only used with an Entra ID credential"},
		{"custom-endpoint.bad.yaml", "custom_endpoint: not a host:port"},
	}
	files, _ := filepath.Glob(filepath.Join("testdata", "config", "*.bad.yaml"))
	if len(files) != len(cases) {
		t.Fatalf("%d bad configs on disk, %d cases", len(files), len(cases))
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			cfg := loadConfig(t, tc.file)
			err := cfg.Validate()
			if err == nil || err.Error() != tc.err {
				t.Fatalf("validate = %v, want %q", err, tc.err)
			}
			if _, err := eventhubs.New(cfg, nil, nil); err == nil || !strings.HasSuffix(err.Error(), tc.err) {
				t.Fatalf("new = %v, want it to end in %q", err, tc.err)
			}
		})
	}
}

func TestConfigRedaction(t *testing.T) {
	cfg := loadConfig(t, "client-secret.good.yaml")
	for _, s := range []string{cfg.String(), cfg.GoString(), cfg.LogValue().String()} {
		if strings.Contains(s, "not-a-real-secret") || !strings.Contains(s, "[REDACTED]") {
			t.Fatalf("not redacted: %s", s)
		}
	}
	proc := loadConfig(t, "processor.good.yaml")
	proc.Credential = eventhubs.CredentialConnectionString
	sas := proc
	sas.Checkpoints = eventhubs.CheckpointConfig{ContainerURL: "https://x.blob.core.windows.net/c?sv=2024&sig=c2FzLXNpZ25hdHVyZQ%3D%3D"}
	for _, c := range []eventhubs.Config{proc, sas} {
		for _, s := range []string{c.String(), c.GoString(), c.LogValue().String()} {
			for _, secret := range []string{"ZmFrZS1rZXk=", "ZmFrZS1hY2NvdW50LWtleQ==", "c2FzLXNpZ25hdHVyZQ", "sig="} {
				if strings.Contains(s, secret) {
					t.Fatalf("%q not redacted: %s", secret, s)
				}
			}
		}
	}
	if cfg.ClientSecret != "not-a-real-secret" {
		t.Fatal("redaction changed the config itself")
	}
}

func TestNewCredential(t *testing.T) {
	token := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(token, []byte("header.payload.sig"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := eventhubs.DefaultConfig()
	base.Namespace = "contoso.servicebus.windows.net"
	base.EventHub = "aks-audit"
	base.TenantID = "00000000-0000-0000-0000-000000000002"
	base.ClientID = "00000000-0000-0000-0000-000000000001"
	cases := []struct {
		kind   eventhubs.CredentialKind
		adjust func(*eventhubs.Config)
		want   string // the azidentity type built
	}{
		{eventhubs.CredentialWorkloadIdentity, func(c *eventhubs.Config) { c.TokenFile = token }, "*azidentity.WorkloadIdentityCredential"},
		{eventhubs.CredentialManagedIdentity, nil, "*azidentity.ManagedIdentityCredential"},
		{eventhubs.CredentialClientSecret, func(c *eventhubs.Config) { c.ClientSecret = "s" }, "*azidentity.ClientSecretCredential"},
		{eventhubs.CredentialAzureCLI, nil, "*azidentity.AzureCLICredential"},
	}
	for _, tc := range cases {
		t.Run(string(tc.kind), func(t *testing.T) {
			cfg := base
			cfg.Credential = tc.kind
			if tc.adjust != nil {
				tc.adjust(&cfg)
			}
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			cred, err := eventhubs.NewCredential(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if got := typeName(cred); got != tc.want {
				t.Fatalf("credential type %s, want %s", got, tc.want)
			}
		})
	}
	cfg := base
	if _, err := eventhubs.NewCredential(cfg); err == nil {
		t.Fatal("connection-string is not an Entra credential, yet one was built")
	}
}

func typeName(v any) string { return fmt.Sprintf("%T", v) }
