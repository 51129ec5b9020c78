package main

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v3"
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

// TestApplyMemoryLimit: run and backfill set the soft heap limit the flag
// asks for unless GOMEMLIMIT is set, and the GC percent ingestGCPercent
// only while a limit is in force and GOGC is not set: a user's GOGC, and
// GOMEMLIMIT=off or --memory-limit-mib 0 (no limit), leave the percent
// as it was. startLimit stands for the limit the runtime read from
// GOMEMLIMIT when the process started.
func TestApplyMemoryLimit(t *testing.T) {
	const none = math.MaxInt64
	oldLimit, oldPercent := debug.SetMemoryLimit(-1), debug.SetGCPercent(-1)
	debug.SetGCPercent(oldPercent)
	t.Cleanup(func() {
		debug.SetMemoryLimit(oldLimit)
		debug.SetGCPercent(oldPercent)
	})
	for _, tc := range []struct {
		name        string
		args        []string
		env         map[string]string
		startLimit  int64
		wantLimit   int64
		wantPercent int
	}{
		{"default", nil, nil, none, 384 << 20, ingestGCPercent},
		{"flag", []string{"--memory-limit-mib", "1000"}, nil, none, 1000 << 20, ingestGCPercent},
		{"user's GOGC", nil, map[string]string{"GOGC": "50"}, none, 384 << 20, 100},
		{"no limit", []string{"--memory-limit-mib", "0"}, nil, none, none, 100},
		{"GOMEMLIMIT=off", nil, map[string]string{"GOMEMLIMIT": "off"}, none, none, 100},
		{"GOMEMLIMIT wins", nil, map[string]string{"GOMEMLIMIT": "2GiB"}, 2 << 30, 2 << 30, ingestGCPercent},
		{"GOMEMLIMIT and GOGC", nil, map[string]string{"GOMEMLIMIT": "2GiB", "GOGC": "off"}, 2 << 30, 2 << 30, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range []string{"GOGC", "GOMEMLIMIT", "CUSTODY_MEMORY_LIMIT_MIB"} {
				t.Setenv(k, tc.env[k])
			}
			debug.SetMemoryLimit(tc.startLimit)
			debug.SetGCPercent(100)
			cmd := &cli.Command{
				Name:   "backfill",
				Flags:  []cli.Flag{memoryLimitFlag()},
				Action: func(_ context.Context, cmd *cli.Command) error { applyMemoryLimit(cmd); return nil },
			}
			if err := cmd.Run(context.Background(), append([]string{"backfill"}, tc.args...)); err != nil {
				t.Fatal(err)
			}
			limit, percent := debug.SetMemoryLimit(-1), debug.SetGCPercent(100)
			if limit != tc.wantLimit || percent != tc.wantPercent {
				t.Errorf("memory limit %d, GC percent %d; want %d, %d", limit, percent, tc.wantLimit, tc.wantPercent)
			}
		})
	}
}
