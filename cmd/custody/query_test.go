package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/urfave/cli/v3"
	"golang.org/x/text/width"

	"github.com/custody-audit/custody/internal/storetest"
	"github.com/custody-audit/custody/queries"
	"github.com/custody-audit/custody/queries/querytest"
	"github.com/custody-audit/custody/storage/engine"
)

// runCLI runs `custody <args>` with the query commands on eng and returns
// stdout, stderr, the error and how often the store was opened.
func runCLI(t *testing.T, eng engine.Engine, args ...string) (string, string, error, int) {
	t.Helper()
	opened := 0
	open := func(ctx context.Context, cmd *cli.Command) (engine.Engine, func(), error) {
		opened++
		if eng == nil {
			t.Fatal("store opened for a command that must not need it")
		}
		return eng, func() {}, nil
	}
	var stdout, stderr bytes.Buffer
	root := &cli.Command{
		Name:      "custody",
		Writer:    &stdout,
		ErrWriter: &stderr,
		Commands:  []*cli.Command{queryCommand(open), timelineCommand(open)},
	}
	err := root.Run(context.Background(), append([]string{"custody"}, args...))
	return stdout.String(), stderr.String(), err, opened
}

// TestQueryCommand runs query and timeline on both backends (on a server
// as the reader role's account).
func TestQueryCommand(t *testing.T) { storetest.Run(t, testQueryCommand) }

func testQueryCommand(t *testing.T, b storetest.Backend) {
	admin, srv := querytest.OpenSeededOn(t, b)
	eng := querytest.Reader(t, admin, srv)
	day := []string{"--from", "2025-05-06", "--to", "2025-05-07"}
	tests := []struct {
		name       string
		args       []string
		wantOut    string
		wantStderr string
	}{
		{
			name: "csv",
			args: append([]string{"query", "aks-exec", "--format", "csv"}, day...),
			wantOut: `event_time,actor,cluster,namespace,pod,kind,container,command,outcome,status_code,source_ip,event_id,delivered_via
2025-05-06T09:12:33.104512Z,dev@contoso.com,prod-aks,payments,api-7f9c,exec,api,sh,success,101,203.0.113.66,00000000-0000-4000-a000-000000000013,eventhubs
2025-05-06T09:15:00.000000Z,dev@contoso.com,prod-aks,payments,api-7f9c,portforward,,,success,101,203.0.113.66,00000000-0000-4000-a000-000000000018,eventhubs
`,
		},
		{
			// The list value keeps its comma: --param is not split.
			name: "json with a list parameter",
			args: append([]string{"query", "outside-ip-ranges", "-p", "allowed_ranges=10.0.0.0/8,20.61.12.0/24,203.0.113.66", "--format", "json"}, day...),
			wantOut: `{"actor":"system:anonymous","source_ip":"198.51.100.77","events":1,"failures":1,"first":"2025-05-06T08:50:00.000000Z","last":"2025-05-06T08:50:00.000000Z","services":"aks","actions":"k8s:secrets:list","delivered_via":"eventhubs"}
`,
		},
		{
			name: "table",
			args: append([]string{"timeline", "--resource", "batch-runner", "--format", "table", "--width", "120"}, day...),
			wantOut: `EVENT_TIME                  SERVICE  ACTOR   ACTION  RESOURCE  TARGET  OUTCOME  STATUS_…  SOURCE_…  EVENT_ID   DELIVERE…
2025-05-06 09:30:00.000000  arm      dev@c…  arm:M…  batch-r…  batch…  success  201       203.0.1…  arm:947d…  eventhubs
`,
			wantStderr: "1 rows, 2025-05-06T00:00:00Z to 2025-05-07T00:00:00Z\n",
		},
		{
			name: "narrow table",
			args: append([]string{"timeline", "--resource", "batch-runner", "--format", "table", "--width", "80"}, day...),
			wantOut: `EVENT_TIME                  SERVICE  ACTOR   ACTION  RESOURCE   TARGET   OUTCOME
2025-05-06 09:30:00.000000  arm      dev@c…  arm:M…  batch-ru…  batch-…  success
`,
			wantStderr: "4 of 11 columns left off to fit 80 columns (status_code, source_ip, event_id, delivered_via): widen the terminal, set --width, or use --format csv or json\n" +
				"1 rows, 2025-05-06T00:00:00Z to 2025-05-07T00:00:00Z\n",
		},
		{
			name: "timeline by actor",
			args: []string{"timeline", "--actor", "system:serviceaccount:payments:api", "--from", "2025-05-01", "--to", "2025-05-07", "--format", "csv"},
			wantOut: `event_time,service,actor,action,resource,target,outcome,status_code,source_ip,user_agent,impersonated_by,event_id,delivered_via
2025-05-06T08:30:00.000000Z,aks,system:serviceaccount:payments:api,k8s:configmaps:get,prod-aks,payments/configmaps api-config,success,200,20.61.12.7,kubectl/v1.30.3 (linux/amd64) kubernetes/6fc0a69,alice@contoso.com,00000000-0000-4000-a000-000000000003,eventhubs
`,
		},
		{
			name: "timeline stops at the limit and says so",
			args: []string{"timeline", "--actor", "dev@contoso.com", "--limit", "2", "--from", "2025-05-01", "--to", "2025-05-07", "--format", "csv"},
			wantOut: `event_time,service,actor,action,resource,target,outcome,status_code,source_ip,user_agent,impersonated_by,event_id,delivered_via
2025-05-06T09:10:00.000000Z,arm,dev@contoso.com,arm:Microsoft.ContainerService/managedClusters/listClusterAdminCredential/action,prod-aks,,success,200,203.0.113.66,,,arm:9a4a1b983c7e32c5a13aaa6a257948a7,eventhubs
2025-05-06T09:12:33.104512Z,aks,dev@contoso.com,k8s:pods/exec:create,prod-aks,payments/pods/exec api-7f9c,success,101,203.0.113.66,kubectl/v1.30.3 (linux/amd64) kubernetes/6fc0a69,,00000000-0000-4000-a000-000000000013,eventhubs
`,
			wantStderr: "custody: stopped at the limit of 2 rows; narrow --from/--to or raise the limit to see the rest\n",
		},
		{
			name:    "empty result",
			args:    []string{"query", "aks-exec", "--from", "2025-05-01", "--to", "2025-05-02", "--format", "csv"},
			wantOut: "event_time,actor,cluster,namespace,pod,kind,container,command,outcome,status_code,source_ip,event_id,delivered_via\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, stderr, err, _ := runCLI(t, eng, tt.args...)
			if err != nil {
				t.Fatal(err)
			}
			if out != tt.wantOut {
				t.Errorf("stdout\n got:\n%s\nwant:\n%s", out, tt.wantOut)
			}
			if stderr != tt.wantStderr {
				t.Errorf("stderr %q, want %q", stderr, tt.wantStderr)
			}
		})
	}
}

// TestTableFitsTerminal runs the widest query into 80 columns.
func TestTableFitsTerminal(t *testing.T) {
	eng := querytest.OpenSeeded(t)
	out, _, err, _ := runCLI(t, eng, "timeline", "--actor", "dev@contoso.com", "--from", "2025-05-01", "--to", "2025-05-07", "--format", "table", "--width", "80")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 1+29 {
		t.Errorf("%d lines, want a header and 29 rows", len(lines))
	}
	for _, l := range lines {
		w := 0
		for _, r := range l {
			switch width.LookupRune(r).Kind() {
			case width.EastAsianWide, width.EastAsianFullwidth:
				w += 2
			default:
				w++
			}
		}
		if w > 80 {
			t.Errorf("line of %d columns: %q", w, l)
		}
	}
}

func TestQueryList(t *testing.T) {
	out, _, err, _ := runCLI(t, nil, "query", "--list", "--format", "csv")
	if err != nil {
		t.Fatal(err)
	}
	cat, err := queries.Load()
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if lines[0] != "name,window,params,mitre,question" || len(lines) != 1+len(cat.List()) {
		t.Fatalf("list:\n%s", out)
	}
	if want := "denial-bursts,24h,\"bucket_minutes,min_denials\",\"T1613,T1110\",Which principal and address pairs were refused (401/403) many times within a few minutes?"; !strings.Contains(out, want+"\n") {
		t.Errorf("list lacks %q:\n%s", want, out)
	}

	out, _, err, _ = runCLI(t, nil, "query", "--list", "image-blast-radius")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"image-blast-radius: Blast radius of an image digest\n\nWho pushed and pulled this image digest",
		"MITRE ATT&CK: T1525 Implant Internal Image; T1204.003 User Execution: Malicious Image\n",
		"Default window: 7d\n",
		"  digest (String, digest; required): manifest digest, sha256:<64 hex digits>\n",
		"FROM {db:Identifier}.events",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("description lacks %q:\n%s", want, out)
		}
	}
}

// TestQueryErrors checks that mistakes are reported before the store is
// opened.
func TestQueryErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"query"}, "query: name a query (custody query --list shows them)"},
		{[]string{"query", "nope"}, `query: unknown query "nope" (custody query --list shows the 24 known queries)`},
		{[]string{"query", "aks-exec", "extra"}, `query: one query name expected, got ["aks-exec" "extra"]`},
		{[]string{"query", "aks-exec", "--format", "xml"}, `query: --format: unknown output format "xml" (want table, json, csv)`},
		{[]string{"query", "principal-timeline", "--param", "actor"}, `query: --param "actor": want name=value`},
		{[]string{"query", "principal-timeline", "-p", "actor=a", "-p", "actor=b"}, `query: --param actor given twice`},
		{[]string{"query", "principal-timeline", "-p", "actor=a", "--from", "yesterday"}, `query: --from: "yesterday" is not a time (want RFC 3339 such as 2025-05-06T09:00:00Z, or 2025-05-06 09:00:00 UTC, or 2025-05-06), or a duration before now such as 7d`},
		{[]string{"query", "principal-timeline", "-p", "actor=a", "--from", "2025-05-07", "--to", "2025-05-06"}, `query principal-timeline: bad time window: from 2025-05-07T00:00:00Z is not before to 2025-05-06T00:00:00Z`},
		{[]string{"query", "mass-deletions", "-p", "min_deletes=lots"}, `query mass-deletions: bad query parameter min_deletes (UInt32): "lots" is not a whole number from 0 to 4294967295`},
		{[]string{"query", "--list", "-p", "a=b"}, `query: --list takes no --param, --from or --to`},
		{[]string{"timeline"}, `timeline: give --actor <principal> or --resource <id or name>`},
		{[]string{"timeline", "--actor", "a", "--resource", "b"}, `timeline: give --actor or --resource, not both`},
		{[]string{"timeline", "--resource", "/subscriptions/x"}, `query resource-timeline: bad query parameter resource (String, resource): "/subscriptions/x" is not an Azure resource id (/subscriptions/<id>/...) or a resource name`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, _, err, opened := runCLI(t, nil, tt.args...)
			if err == nil || err.Error() != tt.want {
				t.Errorf("error\n got: %v\nwant: %s", err, tt.want)
			}
			if opened != 0 {
				t.Errorf("store opened %d times", opened)
			}
		})
	}
}
