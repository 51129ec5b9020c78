package loganalytics

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/custody-audit/custody/internal/lafake"
)

// sharedSample returns the path of a file under the workspace's
// shared/samples directory (next to the repository), or skips the test
// when it is absent (a fresh clone has no such directory).
func sharedSample(t *testing.T, rel string) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Skip("repository root not found")
		}
		dir = parent
	}
	p := filepath.Join(dir, "..", "shared", "samples", rel)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("sample %s not available (%v); it is not redistributed with the repository", rel, err)
	}
	return p
}

// TestRealAzureActivityResponse serves the rows of a real AzureActivity
// query response (wazuh test data, GPL-2.0, read in place and not copied)
// and checks that each message body holds exactly the cells the service
// returned, column by column. Its rows are Microsoft.Authorization
// operations, so the default AzureActivity template must filter them out.
func TestRealAzureActivityResponse(t *testing.T) {
	b, err := os.ReadFile(sharedSample(t, "la-tables/wazuh-azure-tests-log_analytics_events.azureactivity.json"))
	if err != nil {
		t.Fatal(err)
	}
	var resp struct {
		Tables []struct {
			Columns []lafake.Column `json:"columns"`
			Rows    [][]any         `json:"rows"`
		} `json:"tables"`
	}
	if err := json.Unmarshal(b, &resp); err != nil {
		t.Fatal(err)
	}
	src := resp.Tables[0]
	tbl := lafake.Table{Name: "AzureActivity", Columns: src.Columns}
	for i, r := range src.Rows {
		tbl.Rows = append(tbl.Rows, lafake.Row{Ingested: t0.Add(-time.Hour + time.Duration(i)*time.Minute), Values: r})
	}

	srv := newServer(t, tbl)
	e := newEnv(t, srv, nil, testConfig(srv, "AzureActivity"))
	if msgs := e.mustDrain(e.src); len(msgs) != 0 {
		t.Errorf("default template let %d Microsoft.Authorization rows through", len(msgs))
	}

	srv2 := newServer(t, tbl)
	cfg := testConfig(srv2, "AzureActivity")
	cfg.Queries = map[string]string{"AzureActivity": "AzureActivity\n" + WindowFilter}
	e2 := newEnv(t, srv2, nil, cfg)
	msgs := e2.mustDrain(e2.src)
	if len(msgs) != len(src.Rows) {
		t.Fatalf("got %d messages, want %d", len(msgs), len(src.Rows))
	}
	sortMessages(msgs)
	for i, m := range msgs {
		var got map[string]any
		if err := json.Unmarshal(m.Body, &got); err != nil {
			t.Fatal(err)
		}
		if len(got) != len(src.Columns) {
			t.Errorf("row %d: %d columns in body, want %d", i, len(got), len(src.Columns))
		}
		for c, col := range src.Columns {
			if !reflect.DeepEqual(got[col.Name], src.Rows[i][c]) {
				t.Errorf("row %d column %s = %#v, want %#v", i, col.Name, got[col.Name], src.Rows[i][c])
			}
		}
	}
}
