package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadRunConfig(t *testing.T) {
	const secret = "ZmFrZS1rZXk="
	eh := "eventhubs:\n  connection_string: \"Endpoint=sb://contoso.servicebus.windows.net/;SharedAccessKeyName=listen;SharedAccessKey=" + secret + ";EntityPath=aks-audit\"\n"
	for _, tc := range []struct {
		name, yaml, wantErr string
	}{
		{"good", eh + "pipeline:\n  retry_delay: 1s\nmetrics_addr: 127.0.0.1:0\nstore: ./x\n", ""},
		{"no source", "store: ./x\n", "no source: add an eventhubs or loganalytics section"},
		{"unknown field", eh + "  prefetc: 10\n", "field prefetc not found"},
		{"bad pipeline", eh + "pipeline:\n  retry_delay: 0s\n", "pipeline.retry_delay: 0s must be positive"},
		{"bad eventhubs", eh + "  prefetch: 0\n", "prefetch"},
		{"bad loganalytics", "loganalytics:\n  workspace_id: nope\n", "workspace_id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "custody.yaml")
			if err := os.WriteFile(p, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			rc, err := loadRunConfig(p)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if rc.EventHubs == nil || rc.EventHubs.ConsumerGroup != "$Default" || rc.Pipeline.RetryDelay != time.Second || rc.Pipeline.ShutdownTimeout != 30*time.Second || rc.MetricsAddr != "127.0.0.1:0" {
					t.Errorf("config %+v not decoded over the defaults", rc)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error reveals the key: %v", err)
			}
		})
	}
}

// TestExampleConfigLoads keeps deploy/custody.example.yaml valid.
func TestExampleConfigLoads(t *testing.T) {
	rc, err := loadRunConfig("../../deploy/custody.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if rc.EventHubs == nil || rc.LogAnalytics == nil || rc.MetricsAddr == "" {
		t.Fatalf("example config: %+v", rc)
	}
}
