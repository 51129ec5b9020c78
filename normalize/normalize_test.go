package normalize_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/custody-audit/custody/event"
	"github.com/custody-audit/custody/normalize"
)

func newDefault(t testing.TB) *normalize.Normalizer {
	t.Helper()
	n, err := normalize.New(normalize.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func process(t testing.TB, n *normalize.Normalizer, in normalize.Input) normalize.Result {
	t.Helper()
	res, err := n.Process(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*normalize.Config)
		wantErr string
	}{
		{"default", func(*normalize.Config) {}, ""},
		{"zero value", func(c *normalize.Config) { *c = normalize.Config{} }, ""},
		{"match-all principal", func(c *normalize.Config) { c.SystemPrincipals = []string{"*"} },
			`invalid normalize config: system principal "*" would match every user`},
		{"inner star", func(c *normalize.Config) { c.SystemPrincipals = []string{"system:*:foo"} },
			`invalid normalize config: system principal "system:*:foo": '*' is only allowed at the end`},
		{"upper verb", func(c *normalize.Config) { c.ReadVerbs = []string{"GET"} },
			`invalid normalize config: read verb "GET" must be a lower-case Kubernetes verb`},
		{"bad stage", func(c *normalize.Config) { c.KeepStages = []string{"Done"} },
			`invalid normalize config: unknown audit stage "Done" (want RequestReceived, ResponseStarted, ResponseComplete or Panic)`},
		{"registry with path", func(c *normalize.Config) { c.ApprovedRegistries = []string{"myacr.azurecr.io/team"} },
			`invalid normalize config: approved registry "myacr.azurecr.io/team" must be a host name, optionally starting with "*."`},
		{"wildcard registry", func(c *normalize.Config) { c.ApprovedRegistries = []string{"*.azurecr.io"} }, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := normalize.DefaultConfig()
			tc.mutate(&cfg)
			err := cfg.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				if _, err := normalize.New(cfg); err != nil {
					t.Fatalf("New() = %v", err)
				}
				return
			}
			if err == nil || err.Error() != tc.wantErr {
				t.Fatalf("Validate() = %v, want %q", err, tc.wantErr)
			}
			if !errors.Is(err, normalize.ErrInvalidConfig) {
				t.Fatalf("error does not wrap ErrInvalidConfig")
			}
			if _, err := normalize.New(cfg); err == nil {
				t.Fatal("New accepted an invalid config")
			}
		})
	}
}

// TestCrossPathIDs checks that the same event delivered through Event Hubs
// and through Log Analytics gets the same ID and the same key fields.
func TestCrossPathIDs(t *testing.T) {
	n := newDefault(t)
	eh := process(t, n, normalize.Input{Body: readTestdata(t, "eventhubs/aks-admin-mix-documented.json"), Format: "eventhubs"})
	ehACR := process(t, n, normalize.Input{Body: readTestdata(t, "eventhubs/acr-events-documented.json"), Format: "eventhubs"})
	ehAct := process(t, n, normalize.Input{Body: readTestdata(t, "eventhubs/activity-container-admin-documented.json"), Format: "eventhubs"})
	byID := map[string]event.Event{}
	for _, r := range []normalize.Result{eh, ehACR, ehAct} {
		for _, e := range r.Events {
			if _, ok := byID[e.ID]; !ok {
				byID[e.ID] = e
			}
		}
	}
	for _, c := range []struct{ file, table string }{
		{"loganalytics/aksauditadmin-row-documented.json", "AKSAuditAdmin"},
		{"loganalytics/azurediagnostics-kube-audit-row-documented.json", "AzureDiagnostics"},
		{"loganalytics/acr-login-row-documented.json", "ContainerRegistryLoginEvents"},
		{"loganalytics/acr-push-row-documented.json", "ContainerRegistryRepositoryEvents"},
		{"loganalytics/azureactivity-row-documented.json", "AzureActivity"},
	} {
		t.Run(c.table, func(t *testing.T) {
			la := process(t, n, normalize.Input{Body: readTestdata(t, c.file), Format: "loganalytics", Attributes: map[string]string{"table": c.table}})
			if len(la.Events) != 1 {
				t.Fatalf("got %d events, want 1 (quarantined %v)", len(la.Events), la.Quarantined)
			}
			got := la.Events[0]
			want, ok := byID[got.ID]
			if !ok {
				t.Fatalf("Log Analytics event id %q matches no Event Hubs event", got.ID)
			}
			if got.Action != want.Action || got.ResourceID != want.ResourceID || got.Actor.Name != want.Actor.Name ||
				got.Outcome != want.Outcome || got.ActionClass != want.ActionClass || got.SourceIP != want.SourceIP {
				t.Errorf("fields differ across paths:\n LA: %s %s %s %s %s %v\n EH: %s %s %s %s %s %v",
					got.Action, got.ResourceID, got.Actor.Name, got.Outcome, got.ActionClass, got.SourceIP,
					want.Action, want.ResourceID, want.Actor.Name, want.Outcome, want.ActionClass, want.SourceIP)
			}
		})
	}
}

// TestRawIsRecordSlice checks that an event's Raw is exactly its own
// record inside an Event Hubs body, not the whole body.
func TestRawIsRecordSlice(t *testing.T) {
	body := readTestdata(t, "eventhubs/acr-events-documented.json")
	res := process(t, newDefault(t), normalize.Input{Body: body, Format: "eventhubs"})
	if len(res.Events) != 5 {
		t.Fatalf("got %d events, want 5", len(res.Events))
	}
	for i, e := range res.Events {
		if len(e.Raw) >= len(body) || e.Raw[0] != '{' || e.Raw[len(e.Raw)-1] != '}' {
			t.Fatalf("event %d: raw is not one record: %q", i, e.Raw)
		}
		if !strings.Contains(string(e.Raw), e.CorrelationID) {
			t.Errorf("event %d: raw does not hold its own correlation id", i)
		}
	}
}

func TestPolicyIsConfigurable(t *testing.T) {
	body := readTestdata(t, "eventhubs/aks-admin-mix-documented.json")
	def := process(t, newDefault(t), normalize.Input{Body: body})
	cfg := normalize.DefaultConfig()
	cfg.DropSystemReads = false
	cfg.KeepNonAdminCategories = true
	n, err := normalize.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	all := process(t, n, normalize.Input{Body: body})
	if def.Dropped[normalize.DropSystemRead] != 1 || all.Dropped[normalize.DropSystemRead] != 0 {
		t.Errorf("system_read drops: default %d, keep-all %d; want 1 and 0", def.Dropped[normalize.DropSystemRead], all.Dropped[normalize.DropSystemRead])
	}
	if got, want := len(all.Events), len(def.Events)+3; got != want {
		t.Errorf("keep-all config kept %d events, want %d", got, want)
	}
	// Every record is accounted for under both policies.
	for _, r := range []normalize.Result{def, all} {
		total := len(r.Events) + len(r.Quarantined)
		for _, c := range r.Dropped {
			total += c
		}
		if total != 11 {
			t.Errorf("events+quarantined+dropped = %d, want the 11 records of the body", total)
		}
	}
}

func TestStagePolicy(t *testing.T) {
	body := readTestdata(t, "k8s-audit/stages-audit2rbac.json")
	res := process(t, newDefault(t), normalize.Input{Body: body, Format: "k8s-audit"})
	if res.Dropped[normalize.DropStageReceived] != 4 || len(res.Events) != 6 {
		t.Fatalf("got %d events and drops %v, want 6 ResponseComplete events (one per audit id) and 4 RequestReceived drops", len(res.Events), res.Dropped)
	}
	seen := map[string]bool{}
	for _, e := range res.Events {
		if seen[e.ID] {
			t.Errorf("audit id %s emitted twice", e.ID)
		}
		seen[e.ID] = true
		if e.Attributes["k8s.stage"] != "ResponseComplete" {
			t.Errorf("kept stage %q", e.Attributes["k8s.stage"])
		}
	}
}

func TestProcessErrors(t *testing.T) {
	n := newDefault(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := n.Process(ctx, normalize.Input{Body: []byte(`{}`)}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Process with canceled ctx = %v, want context.Canceled", err)
	}
	res := process(t, n, normalize.Input{Body: []byte(`{"records":[]}`), Format: "syslog"})
	if len(res.Quarantined) != 1 || !strings.Contains(res.Quarantined[0].Reason, `unknown input format "syslog"`) {
		t.Fatalf("unknown format: got %+v", res.Quarantined)
	}
}

func TestConcurrentUse(t *testing.T) {
	n := newDefault(t)
	body := readTestdata(t, "eventhubs/aks-admin-mix-documented.json")
	want := len(process(t, n, normalize.Input{Body: body}).Events)
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for g := 0; g < runtime.GOMAXPROCS(0)*2; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				res, err := n.Process(context.Background(), normalize.Input{Body: body})
				if err != nil || len(res.Events) != want {
					errs <- "concurrent Process gave a different result"
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
}

func TestOCSF(t *testing.T) {
	n := newDefault(t)
	acr := process(t, n, normalize.Input{Body: readTestdata(t, "eventhubs/acr-events-documented.json")})
	login := ocsfDoc(t, acr.Events[0])
	if login["class_uid"] != float64(normalize.OCSFClassAuthentication) || login["type_uid"] != float64(300201) || login["status_id"] != float64(1) {
		t.Errorf("ACR login: class %v type %v status %v", login["class_uid"], login["type_uid"], login["status_id"])
	}
	push := ocsfDoc(t, acr.Events[2])
	if push["class_uid"] != float64(normalize.OCSFClassAPIActivity) || push["activity_name"] != "Update" {
		t.Errorf("ACR push: class %v activity %v", push["class_uid"], push["activity_name"])
	}
	aks := process(t, n, normalize.Input{Body: readTestdata(t, "eventhubs/aks-admin-mix-documented.json")})
	for _, e := range aks.Events {
		o := ocsfDoc(t, e)
		if o["metadata"].(map[string]any)["uid"] != e.ID || o["raw_data"] != string(e.Raw) {
			t.Errorf("OCSF lost the id or raw data of %s", e.ID)
		}
		if e.Action == "k8s:clusterrolebindings:create" && (o["activity_id"] != float64(1) || o["status_id"] != float64(1)) {
			t.Errorf("clusterrolebinding create: activity %v status %v", o["activity_id"], o["status_id"])
		}
	}
}

// ocsfDoc is e's OCSF event read back as a tree of maps.
func ocsfDoc(t *testing.T, e event.Event) map[string]any {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(normalize.AppendOCSF(nil, &e), &doc); err != nil {
		t.Fatalf("OCSF of %s is not JSON: %v", e.ID, err)
	}
	return doc
}

// sharedSamples returns the shared sample directory (../shared/samples
// beside the repository), or skips when a fresh clone does not have it.
func sharedSamples(t *testing.T) string {
	t.Helper()
	dir := filepath.Join("..", "..", "shared", "samples")
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("shared samples not present at %s (fresh clone): %v", dir, err)
	}
	return dir
}

// TestSharedSamples runs the records whose licence does not allow a copy
// in testdata (Elastic License, GPL, unknown) and checks their key facts.
func TestSharedSamples(t *testing.T) {
	dir := sharedSamples(t)
	n := newDefault(t)
	run := func(t *testing.T, rel, format string) normalize.Result {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(dir, rel))
		if err != nil {
			t.Fatal(err)
		}
		return process(t, n, normalize.Input{Body: b, Format: format, Position: rel})
	}
	t.Run("wazuh AzureActivity response", func(t *testing.T) {
		r := run(t, "la-tables/wazuh-azure-tests-log_analytics_events.azureactivity.json", "auto")
		if len(r.Events) != 2 || r.Events[0].Action != "arm:Microsoft.Authorization/roleAssignments/write" ||
			r.Events[0].ActionClass != event.ClassPermissionChange || r.Events[1].Outcome != event.OutcomeSuccess || r.Events[0].Outcome != event.OutcomeUnknown {
			t.Fatalf("got %+v", r.Events)
		}
		if r.Events[0].ID == r.Events[1].ID {
			t.Error("Started and Succeeded rows share an id")
		}
	})
	t.Run("ACR failed pull", func(t *testing.T) {
		r := run(t, "acr/unidentified-go-enrich-test-TestParse_ACR.json", "auto")
		e := r.Events[0]
		if e.Action != "acr:pull" || e.StatusCode != 404 || e.Outcome != event.OutcomeFailure || e.Target.Digest == "" || e.Target.Tag != "" {
			t.Fatalf("got %+v", e)
		}
	})
	t.Run("impersonation", func(t *testing.T) {
		r := run(t, "k8s-audit/unidentified-kodekloud-cks-challenge4-writeup.citadel-audit-lines.jsonl", "auto")
		if len(r.Events) != 5 || r.Dropped[normalize.DropSystemRead] != 1 {
			t.Fatalf("got %d events, drops %v", len(r.Events), r.Dropped)
		}
		e := r.Events[0]
		if e.Actor.Name != "agent-smith" || e.Actor.ImpersonatedBy != "kubernetes-admin" {
			t.Fatalf("actor %+v", e.Actor)
		}
	})
	t.Run("jq pretty concatenated", func(t *testing.T) {
		r := run(t, "k8s-audit/90daysofdevops-2023-day61-openshift-apiserver-jq-pretty.json", "auto")
		if len(r.Events) != 1 || r.Dropped[normalize.DropStageStarted] != 1 {
			t.Fatalf("got %d events, drops %v", len(r.Events), r.Dropped)
		}
	})
	t.Run("every sample accounted for", func(t *testing.T) {
		files, _ := filepath.Glob(filepath.Join(dir, "*", "*"))
		for _, f := range files {
			rel, _ := filepath.Rel(dir, f)
			r := run(t, rel, "auto")
			if len(r.Events)+len(r.Quarantined)+len(r.Dropped) == 0 {
				t.Errorf("%s: nothing came out", rel)
			}
		}
	})
}

func TestAuditEventWithoutValidTimeIsQuarantined(t *testing.T) {
	n, err := normalize.New(normalize.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a1","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/x/secrets/s","verb":"get","user":{"username":"alice@contoso.com"},"objectRef":{"resource":"secrets","namespace":"x","name":"s"},"responseStatus":{"code":200},"requestReceivedTimestamp":"2026-01-01T08:40:70Z","stageTimestamp":"nope"}`)
	res, err := n.Process(context.Background(), normalize.Input{Body: body, Format: normalize.FormatK8sAudit})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Events) != 0 || len(res.Quarantined) != 1 || !strings.Contains(res.Quarantined[0].Reason, "without a valid time") {
		t.Fatalf("want one quarantined record, got %d events, %+v", len(res.Events), res.Quarantined)
	}
}

// TestSystemReadTime checks that the noise policy drops a system read only
// when some timestamp of it is valid, whichever one, and quarantines it
// otherwise, in the Event Hubs form (the escaped reader) and as a plain
// audit event.
func TestSystemReadTime(t *testing.T) {
	n, err := normalize.New(normalize.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, times string
		dropped     bool
	}{
		{"strict requestReceivedTimestamp", `"requestReceivedTimestamp":"2026-01-01T08:40:00.123Z"`, true},
		{"requestReceivedTimestamp without a zone", `"requestReceivedTimestamp":"2026-01-01 08:40:00"`, true},
		{"invalid requestReceivedTimestamp, valid stageTimestamp", `"requestReceivedTimestamp":"2026-01-01T08:40:70Z","stageTimestamp":"2026-01-01T08:40:01Z"`, true},
		{"no valid time", `"requestReceivedTimestamp":"2026-01-01T08:40:70Z","stageTimestamp":"nope"`, false},
	} {
		event := `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a1","stage":"ResponseComplete","requestURI":"/api/v1/pods","verb":"list","user":{"username":"system:node:aks-1"},"objectRef":{"resource":"pods"},"responseStatus":{"code":200},` + tc.times + `}`
		for _, in := range auditInputs(event) {
			res, err := n.Process(context.Background(), in)
			if err != nil {
				t.Fatal(err)
			}
			gotDropped := res.Dropped[normalize.DropSystemRead] == 1 && len(res.Quarantined) == 0
			gotQuarantined := len(res.Quarantined) == 1 && strings.Contains(res.Quarantined[0].Reason, "without a valid time") && len(res.Dropped) == 0
			if len(res.Events) != 0 || gotDropped != tc.dropped || gotQuarantined == tc.dropped {
				t.Errorf("%s (%s): %d events, dropped %v, quarantined %+v; want dropped %v", tc.name, in.Format, len(res.Events), res.Dropped, res.Quarantined, tc.dropped)
			}
		}
	}
}

// auditInputs is one Kubernetes audit event as the two paths read it:
// plain, and escaped in the log property of an Event Hubs kube-audit
// record.
func auditInputs(event string) []normalize.Input {
	escaped, _ := json.Marshal(event)
	return []normalize.Input{
		{Body: []byte(event), Format: normalize.FormatK8sAudit},
		{Body: []byte(`{"records":[{"category":"kube-audit","properties":{"log":` + string(escaped) + `}}]}`), Format: normalize.FormatEventHubs},
	}
}

// TestUnknownStage: a stage Kubernetes does not write makes the record
// malformed: it is quarantined with the reason, on the plain and the
// escaped path, and never becomes a drop reason (drop reasons are metric
// labels, so a record's text must not make new ones). A known stage the
// policy does not keep is still dropped under its fixed name.
func TestUnknownStage(t *testing.T) {
	n, err := normalize.New(normalize.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		stage      string
		dropReason string // "" when the record must be quarantined
	}{
		{"RequestReceived", normalize.DropStageReceived},
		{"ResponseStarted", normalize.DropStageStarted},
		{"responsecomplete", ""},
		{"ResponseComplete\u00e9", ""},
		{"Done", ""},
	} {
		stage, _ := json.Marshal(tc.stage)
		event := `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a1","stage":` + string(stage) + `,"requestURI":"/api/v1/namespaces/payments/secrets/db","verb":"get","user":{"username":"alice@contoso.com"},"objectRef":{"resource":"secrets","namespace":"payments","name":"db"},"responseStatus":{"code":200},"requestReceivedTimestamp":"2026-01-01T08:40:00.123Z"}`
		for _, in := range auditInputs(event) {
			res, err := n.Process(context.Background(), in)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Events) != 0 {
				t.Errorf("stage %q (%s): %d events, want none", tc.stage, in.Format, len(res.Events))
				continue
			}
			if tc.dropReason != "" {
				if res.Dropped[tc.dropReason] != 1 || len(res.Dropped) != 1 || len(res.Quarantined) != 0 {
					t.Errorf("stage %q (%s): dropped %v, quarantined %d; want one %s", tc.stage, in.Format, res.Dropped, len(res.Quarantined), tc.dropReason)
				}
				continue
			}
			if len(res.Dropped) != 0 || len(res.Quarantined) != 1 || !strings.Contains(res.Quarantined[0].Reason, "unknown stage") {
				t.Errorf("stage %q (%s): dropped %v, quarantined %+v; want it quarantined for its unknown stage", tc.stage, in.Format, res.Dropped, res.Quarantined)
			}
		}
	}
}
