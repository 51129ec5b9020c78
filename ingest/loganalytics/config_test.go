package loganalytics

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// loadConfig decodes a YAML file over DefaultConfig, as the collector's
// config loader does.
func loadConfig(t *testing.T, name string) Config {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "config", name))
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	if err := yaml.Unmarshal(b, &cfg); err != nil {
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
			if err := loadConfig(t, filepath.Base(f)).Validate(); err != nil {
				t.Errorf("Validate: %v", err)
			}
		})
	}

	full := loadConfig(t, "full.good.yaml")
	if full.WindowSize != 5*time.Minute || full.PollInterval != 30*time.Second || full.StartLookback != 168*time.Hour {
		t.Errorf("durations not decoded: %+v", full)
	}
	if full.QueryTemplate("MyCustomTable_CL") != DefaultQuery {
		t.Errorf("table without a query does not use DefaultQuery")
	}
	if !strings.Contains(full.QueryTemplate("AzureActivity"), `in~ ("Microsoft.ContainerService")`) {
		t.Errorf("query override lost: %q", full.QueryTemplate("AzureActivity"))
	}
	if full.Credential.ClientSecret.Reveal() != "from-the-environment-in-real-life" {
		t.Errorf("client secret not decoded")
	}
	cc := full.cloudConfig()
	if cc.ActiveDirectoryAuthorityHost != "https://login.microsoftonline.us/" {
		t.Errorf("government authority = %q", cc.ActiveDirectoryAuthorityHost)
	}
}

func TestConfigBad(t *testing.T) {
	cases := []struct {
		file string
		want []string // every line of the joined error, in order
	}{
		{"no-workspace.bad.yaml", []string{
			"workspace_id: required",
		}},
		{"bad-values.bad.yaml", []string{
			`workspace_id: "not-a-guid" is not a GUID`,
			`cloud: "mars" is not one of public, china, government`,
			`endpoint: "http://api.loganalytics.io" is not an https URL`,
			"credential.tenant_id: required for client-secret",
			"credential.client_id: required for client-secret",
			"credential.client_secret: required for client-secret",
			`tables[1]: "AKSAudit | take 1" is not a table name`,
			`tables[2]: "AKSAudit" is listed twice`,
			"window_size: must be positive, got 0s",
			"overlap: must not be negative, got -1m0s",
			"max_rows: must be between 1 and 500000, got 600000",
			"batch_size: must be positive, got 0",
			"server_timeout: must be between 1s and 10m, got 11m0s",
		}},
		{"template-without-window.bad.yaml", []string{
			`queries.AKSAudit: template must keep the window filter "` + WindowFilter + `"`,
			`queries.AzureActivity: execute template: template: AzureActivity:1:16: executing "AzureActivity" at <.Nope>: can't evaluate field Nope in type struct { Table string; From string; To string }`,
		}},
		{"bad-credential.bad.yaml", []string{
			`credential.kind: "certificate" is not one of workload-identity, managed-identity, client-secret, azure-cli`,
		}},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			err := loadConfig(t, tc.file).Validate()
			if err == nil {
				t.Fatal("Validate accepted a bad config")
			}
			if got, want := err.Error(), strings.Join(tc.want, "\n"); got != want {
				t.Errorf("errors:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

// TestSecretRedacted: the client secret never shows in any rendering of
// the config.
func TestSecretRedacted(t *testing.T) {
	cfg := loadConfig(t, "full.good.yaml")
	const secret = "from-the-environment-in-real-life"
	j, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	y, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for name, out := range map[string]string{
		"json": string(j), "yaml": string(y),
		"%v": fmt.Sprintf("%v", cfg), "%+v": fmt.Sprintf("%+v", cfg), "%#v": fmt.Sprintf("%#v", cfg), "%s": fmt.Sprintf("%s", cfg.Credential.ClientSecret),
	} {
		if strings.Contains(out, secret) {
			t.Errorf("%s rendering leaks the secret", name)
		}
		if !strings.Contains(out, redacted) {
			t.Errorf("%s rendering does not mark the secret as redacted", name)
		}
	}
}

// TestDefaultQueries: the shipped templates cover every default table,
// render, and keep the window filter.
func TestDefaultQueries(t *testing.T) {
	cfg := DefaultConfig()
	cfg.WorkspaceID = testWorkspace
	if err := cfg.Validate(); err != nil {
		t.Fatalf("DefaultConfig with a workspace does not validate: %v", err)
	}
	for _, table := range DefaultTables() {
		q, ok := cfg.Queries[table]
		if !ok {
			t.Errorf("no default query for %s", table)
			continue
		}
		out, err := renderQuery(q, table, t0.Add(-time.Hour), t0)
		if err != nil {
			t.Errorf("%s: %v", table, err)
		}
		if !strings.HasPrefix(out, table+"\n") {
			t.Errorf("%s: query does not start with its table: %q", table, out)
		}
	}
}
