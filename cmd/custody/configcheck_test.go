package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigCheck runs `custody config check` on good and bad files: the
// exact report for good ones, the error for bad ones, never a secret.
func TestConfigCheck(t *testing.T) {
	const secret = "c2VjcmV0LXBhc3N3b3Jk"
	for _, tc := range []struct {
		name, yaml string
		env        map[string]string
		want       string // stdout, or the error's text with wantErr
		wantErr    bool
	}{
		{name: "embedded", yaml: "store: /data/store\neventhubs:\n  namespace: ns.servicebus.windows.net\n  event_hub: audit\n  credential: workload-identity\nmetrics_addr: :9464\nretention:\n  min_days: 400\n",
			want: "config CONFIG: OK\nstore: embedded, /data/store\nsources: eventhubs (ns.servicebus.windows.net/audit, workload-identity)\nmetrics: :9464\n"},
		{name: "engine binary", yaml: "store: /data/store\nengine_binary: /usr/bin/clickhouse\neventhubs:\n  namespace: ns.servicebus.windows.net\n  event_hub: audit\n  credential: workload-identity\n",
			want: "config CONFIG: OK\nstore: embedded, /data/store (engine: /usr/bin/clickhouse local)\nsources: eventhubs (ns.servicebus.windows.net/audit, workload-identity)\nmetrics: off\n"},
		{name: "servers", yaml: "loganalytics:\n  workspace_id: 00000000-0000-0000-0000-000000000000\n  credential: {kind: workload-identity}\neventhub: {}\n",
			env:  map[string]string{"CUSTODY_CLICKHOUSE": "clickhouse://custody:" + secret + "@ch:9440/?secure=true"},
			want: "config CONFIG: OK\nstore: ClickHouse servers (DSN from CUSTODY_CLICKHOUSE), database custody\nsources: loganalytics (workspace 00000000-0000-0000-0000-000000000000, workload-identity)\nmetrics: off\nwarning: top-level key \"eventhub\" is read by no command\n"},
		{name: "unknown field", yaml: "eventhubs:\n  namespace: ns.servicebus.windows.net\n  event_hub: audit\n  credential: workload-identity\n  prefetc: 1\n", want: "field prefetc not found", wantErr: true},
		{name: "no source", yaml: "store: /data/store\n", want: "no source", wantErr: true},
		{name: "log level", yaml: "log_level: loud\nloganalytics:\n  workspace_id: 00000000-0000-0000-0000-000000000000\n", want: "log_level", wantErr: true},
		{name: "secret in error", yaml: "eventhubs:\n  connection_string: \"Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=l;SharedAccessKey=" + secret + ";EntityPath=audit\"\n  prefetch: 0\n", want: "prefetch", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "custody.yaml")
			if err := os.WriteFile(p, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			app := newApp()
			var out bytes.Buffer
			app.Writer, app.ErrWriter = &out, &out
			err := app.Run(t.Context(), []string{"custody", "--config", p, "config", "check"})
			if tc.wantErr {
				var ue usageError
				if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("err = %v, want a usage error with %q", err, tc.want)
				}
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error reveals the secret: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if want := strings.ReplaceAll(tc.want, "CONFIG", p); out.String() != want {
				t.Errorf("stdout:\n%s\nwant:\n%s", out.String(), want)
			}
			if strings.Contains(out.String(), secret) {
				t.Errorf("report reveals the secret:\n%s", out.String())
			}
		})
	}
}
