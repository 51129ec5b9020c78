package queries_test

import (
	"bufio"
	"bytes"
	"context"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/custody-audit/custody/internal/chdbtest"
	"github.com/custody-audit/custody/internal/storetest"
	"github.com/custody-audit/custody/normalize"
	"github.com/custody-audit/custody/queries"
	"github.com/custody-audit/custody/storage"
)

// The incident scenario of deploy/local/incident (written by its gen
// program, told in docs/incident.md): one day of AKS, ACR, ACI and
// Activity Log records in which the phished account dana.dev@contoso.com
// is used from 203.0.113.77. These tests load it the way `make demo` does,
// into a real hash-chained store, and check that every canned query a
// responder runs answers with exactly the attack's rows.

const (
	scenarioDay   = "2025-06-12 "
	phished       = "dana.dev@contoso.com"
	attackerIP    = "203.0.113.77"
	corpIP        = "198.51.100.10"
	backdoorImage = "sha256:208c617e65c7dd2d62f72172b3eca6b10e6a4ff8df7da14cb7d8b6c39b430dc9"
	kubeletMI     = "9f8e7d6c-5b4a-4c3d-8e2f-1a0b9c8d7e05"
	ciApp         = "0c9b8a7d-6e5f-4a3b-8c2d-1e0f9a8b7c03"
)

// Totals of the dataset: what each delivery path holds after the noise
// policy. docs/incident.md quotes them.
const (
	scenarioEvents      = 172 // 145 kube-audit + 7 Activity Log + 14 ACR + 6 AzureActivity
	scenarioSystemReads = 552 // kube-audit reads by nodes and control-plane components
)

// scenarioFile is one file of the dataset and how it is delivered.
type scenarioFile struct {
	rel     string // path under deploy/local/incident
	format  string // normalize input format
	kind    string // source kind
	perLine bool   // one message per line (archive lines, Event Hubs bodies)
}

func scenarioFiles(t testing.TB, dir string) []scenarioFile {
	t.Helper()
	var files []scenarioFile
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		switch top, _, _ := strings.Cut(rel, "/"); {
		case top == "archive" && d.Name() == "PT1H.json":
			files = append(files, scenarioFile{rel, normalize.FormatArchive, "blob", true})
		case top == "eventhubs" && strings.HasSuffix(rel, ".jsonl"):
			files = append(files, scenarioFile{rel, normalize.FormatEventHubs, "eventhubs", true})
		case top == "loganalytics" && strings.HasSuffix(rel, ".json"):
			files = append(files, scenarioFile{rel, normalize.FormatLogAnalytics, "loganalytics", false})
		}
		return nil
	})
	if err != nil {
		t.Fatalf("list scenario: %v", err)
	}
	if len(files) < 3 {
		t.Fatalf("scenario in %s has %d files: is the dataset there?", dir, len(files))
	}
	return files
}

// ingestStats is what loading the scenario did.
type ingestStats struct {
	stored, quarantined int
	dropped             map[string]int
}

// loadScenario normalizes every file of the dataset and appends it to
// st, one chain per file, the way `custody backfill` and `custody append`
// do in the demo.
func loadScenario(ctx context.Context, t testing.TB, st *storage.Store) ingestStats {
	t.Helper()
	dir := filepath.Join(chdbtest.RepoRoot(t), "deploy", "local", "incident")
	n, err := normalize.New(normalize.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	received := time.Date(2025, 6, 12, 16, 0, 0, 0, time.UTC)
	stats := ingestStats{dropped: map[string]int{}}
	for _, f := range scenarioFiles(t, dir) {
		body, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(f.rel)))
		if err != nil {
			t.Fatal(err)
		}
		msgs := [][]byte{body}
		if f.perLine {
			msgs = nil
			sc := bufio.NewScanner(bytes.NewReader(body))
			sc.Buffer(make([]byte, 0, 1<<20), 16<<20)
			for sc.Scan() {
				msgs = append(msgs, slices.Clone(sc.Bytes()))
			}
			if err := sc.Err(); err != nil {
				t.Fatalf("%s: %v", f.rel, err)
			}
		}
		b := storage.Batch{Stream: "incident/" + f.rel, Offset: int64(len(msgs)), Position: f.rel}
		for i, m := range msgs {
			off := int64(i + 1)
			res, err := n.Process(ctx, normalize.Input{Body: m, Format: f.format, SourceKind: f.kind,
				Position: f.rel + " line " + strconv.FormatInt(off, 10), Received: received})
			if err != nil {
				t.Fatalf("normalize %s line %d: %v", f.rel, off, err)
			}
			for _, e := range res.Events {
				b.Events = append(b.Events, storage.BatchEvent{Offset: off, Event: e})
			}
			for _, q := range res.Quarantined {
				t.Errorf("%s line %d quarantined: %s", f.rel, off, q.Reason)
				stats.quarantined++
			}
			for reason, c := range res.Dropped {
				stats.dropped[reason] += c
				b.Dropped += c
			}
		}
		res, err := st.Append(ctx, b)
		if err != nil {
			t.Fatalf("append %s: %v", f.rel, err)
		}
		stats.stored += res.Stored
	}
	return stats
}

// openScenario returns a store on backend b holding the scenario and
// its verifier, and the fixture.
func openScenario(t *testing.T, b storetest.Backend) (*storage.Store, note.Verifier, string, *storetest.Fixture) {
	t.Helper()
	ctx := context.Background()
	f := storetest.NewOn(t, "scenario-test", b)
	st, verifier := f.Store, f.Verifier
	stats := loadScenario(ctx, t, st)
	if stats.stored != scenarioEvents || stats.quarantined != 0 {
		t.Errorf("scenario stored %d events and quarantined %d; want %d and 0", stats.stored, stats.quarantined, scenarioEvents)
	}
	if want := map[string]int{normalize.DropSystemRead: scenarioSystemReads}; !maps.Equal(stats.dropped, want) {
		t.Errorf("dropped by policy %v, want %v", stats.dropped, want)
	}
	return st, verifier, f.CheckpointDir, f
}

// scenarioCase is one query a responder runs and the rows it must give,
// cut down to the columns that tell the story. Times are on the
// scenario's day, without the date.
type scenarioCase struct {
	name   string
	query  string
	params map[string]string
	cols   []string
	want   [][]string
}

func scenarioCases() []scenarioCase {
	return []scenarioCase{
		{
			name:   "principal timeline of the phished account",
			query:  "principal-timeline",
			params: map[string]string{"actor": phished},
			cols:   []string{"event_time", "service", "action", "target", "outcome", "status_code", "source_ip"},
			want: [][]string{
				// An ordinary morning from the office.
				{"08:41:09.663071", "arm", "arm:Microsoft.ContainerService/managedClusters/listClusterUserCredential/action", "", "success", "200", corpIP},
				{"08:42:02.310000", "aks", "k8s:pods:list", "payments/pods", "success", "200", corpIP},
				{"08:42:15.884000", "aks", "k8s:pods/log:get", "payments/pods/log payments-api-6f7d9c8b5-x7k2p", "success", "200", corpIP},
				{"08:47:33.051000", "aks", "k8s:deployments:list", "payments/deployments", "success", "200", corpIP},
				{"11:52:47.730000", "aks", "k8s:deployments:get", "payments/deployments payments-api", "success", "200", corpIP},
				{"12:38:19.660000", "aks", "k8s:pods:list", "payments/pods", "success", "200", corpIP},
				// The same identity from the attacker's address.
				{"14:02:37.447193", "arm", "arm:Microsoft.ContainerService/managedClusters/listClusterAdminCredential/action", "", "success", "200", attackerIP},
				{"14:05:12.640112", "aks", "k8s:pods:list", "payments/pods", "success", "200", attackerIP},
				{"14:06:03.104512", "aks", "k8s:pods/exec:create", "payments/pods/exec payments-api-6f7d9c8b5-x7k2p", "success", "101", attackerIP},
				{"14:08:30.551020", "aks", "k8s:secrets:list", "payments/secrets", "success", "200", attackerIP},
				{"14:08:41.009871", "aks", "k8s:secrets:get", "payments/secrets payments-db-credentials", "success", "200", attackerIP},
				{"14:08:47.312200", "aks", "k8s:secrets:get", "payments/secrets stripe-api-key", "success", "200", attackerIP},
				{"14:09:15.777310", "aks", "k8s:secrets:list", "kube-system/secrets", "failure", "403", attackerIP},
				{"14:12:02.918004", "aks", "k8s:secrets:list", "secrets", "success", "200", attackerIP},
				{"14:19:40.205100", "acr", "acr:login", "", "success", "200", attackerIP},
				{"14:20:05.881200", "acr", "acr:push", "payments/api:v2.4.0@" + backdoorImage, "success", "201", attackerIP},
				{"14:31:05.118000", "arm", "arm:Microsoft.ContainerInstance/containerGroups/write", "cg-build-cache", "unknown", "0", attackerIP},
				{"14:31:19.602000", "arm", "arm:Microsoft.ContainerInstance/containerGroups/write", "cg-build-cache", "success", "201", attackerIP},
				{"14:44:10.412000", "arm", "arm:Microsoft.Insights/diagnosticSettings/delete", "", "success", "200", attackerIP},
			},
		},
		{
			name:  "step 1: the AKS admin credential",
			query: "aks-admin-credentials",
			cols:  []string{"event_time", "actor", "kind", "cluster", "resource_group", "outcome", "source_ip"},
			want: [][]string{
				{"14:02:37.447193", phished, "admin credential", "payments-aks", "payments-prod-rg", "success", attackerIP},
			},
		},
		{
			name:  "step 2: exec into the payments API pod",
			query: "aks-exec",
			cols:  []string{"event_time", "actor", "namespace", "pod", "container", "command", "status_code", "source_ip"},
			want: [][]string{
				{"11:05:44.020000", "priya.sre@contoso.com", "payments", "payments-worker-85b4c7d9f6-j2w5r", "worker", "sh", "101", corpIP},
				{"14:06:03.104512", phished, "payments", "payments-api-6f7d9c8b5-x7k2p", "api",
					"sh -c env; cat /var/run/secrets/kubernetes.io/serviceaccount/token", "101", attackerIP},
			},
		},
		{
			name:  "step 3: secrets read by people (cert-manager tuned out)",
			query: "secret-access",
			params: map[string]string{"system_prefixes": "system:serviceaccount:kube-system:,system:node:,system:kube-,system:apiserver," +
				"system:serviceaccount:cert-manager:"},
			cols: []string{"event_time", "actor", "action", "namespace", "name", "outcome", "status_code", "source_ip"},
			want: [][]string{
				{"14:08:30.551020", phished, "k8s:secrets:list", "payments", "", "success", "200", attackerIP},
				{"14:08:41.009871", phished, "k8s:secrets:get", "payments", "payments-db-credentials", "success", "200", attackerIP},
				{"14:08:47.312200", phished, "k8s:secrets:get", "payments", "stripe-api-key", "success", "200", attackerIP},
				{"14:09:15.777310", phished, "k8s:secrets:list", "kube-system", "", "failure", "403", attackerIP},
				{"14:12:02.918004", phished, "k8s:secrets:list", "", "", "success", "200", attackerIP},
			},
		},
		{
			name:  "step 4: cluster-admin bound with the admin certificate",
			query: "rbac-changes",
			cols:  []string{"event_time", "actor", "action", "target", "cluster_admin", "source_ip"},
			want: [][]string{
				{"09:05:12.500000", "priya.sre@contoso.com", "k8s:rolebindings:create", "payments/rolebindings oncall-view", "0", corpIP},
				{"14:11:20.250330", "masterclient", "k8s:clusterrolebindings:create", "clusterrolebindings dana-cluster-admin", "1", attackerIP},
				{"15:45:08.006412", "priya.sre@contoso.com", "k8s:clusterrolebindings:delete", "clusterrolebindings dana-cluster-admin", "0", corpIP},
			},
		},
		{
			name:  "step 5: the backdoored push over a production tag",
			query: "acr-changes",
			cols:  []string{"event_time", "actor", "action", "repository", "tag", "digest", "source_ip"},
			want: [][]string{
				{"09:38:40.530302", ciApp, "acr:push", "payments/api", "v2.4.0", "sha256:1b43b171862bd93bf4e4c6f87bf865627b3860a998f63277214663f03fe308f5", "10.20.1.4"},
				{"12:16:26.317117", ciApp, "acr:push", "payments/worker", "v1.9.3", "sha256:dbb73379a9518edd12c8891fb5d3500a6b8ce8e1476e2f2d7bac5410930b64e8", "10.20.1.4"},
				{"14:20:05.881200", phished, "acr:push", "payments/api", "v2.4.0", backdoorImage, attackerIP},
				{"17:02:48.964000", ciApp, "acr:push", "payments/api", "v2.4.1", "sha256:510c14d84ebeac697f14c458b12f491506348221509462cdf4f5eef79dcea503", "10.20.1.4"},
			},
		},
		{
			name:   "step 5: where the backdoored digest went",
			query:  "image-blast-radius",
			params: map[string]string{"digest": backdoorImage},
			cols:   []string{"event_time", "what", "actor", "resource", "target", "source_ip"},
			want: [][]string{
				{"14:20:05.881200", "pushed", phished, "contosopayments", "payments/api", attackerIP},
				{"14:37:55.041000", "pulled", kubeletMI, "contosopayments", "payments/api", "10.224.0.6"},
			},
		},
		{
			name:  "step 6: the container group",
			query: "aci-lifecycle",
			cols:  []string{"event_time", "actor", "operation", "resource_group", "container_group", "images", "outcome", "source_ip"},
			want: [][]string{
				{"09:15:03.221000", "tom.dev@contoso.com", "containerGroups/write", "sandbox-rg", "cg-integration-tests", "contosodev.azurecr.io/tests/runner:1.8", "unknown", corpIP},
				{"09:15:21.904000", "tom.dev@contoso.com", "containerGroups/write", "sandbox-rg", "cg-integration-tests", "", "success", corpIP},
				{"09:52:40.663000", "tom.dev@contoso.com", "containerGroups/delete", "sandbox-rg", "cg-integration-tests", "", "success", corpIP},
				{"14:31:05.118000", phished, "containerGroups/write", "sandbox-rg", "cg-build-cache", "docker.io/evil/miner:5.2", "unknown", attackerIP},
				{"14:31:19.602000", phished, "containerGroups/write", "sandbox-rg", "cg-build-cache", "", "success", attackerIP},
				{"15:50:12.335000", "priya.sre@contoso.com", "containerGroups/delete", "sandbox-rg", "cg-build-cache", "", "success", corpIP},
			},
		},
		{
			name:   "step 6: the only image from outside the allow-list",
			query:  "unapproved-images",
			params: map[string]string{"allowed_registries": "contosopayments.azurecr.io,contosodev.azurecr.io,mcr.microsoft.com"},
			cols:   []string{"event_time", "service", "actor", "resource", "image", "registry"},
			want: [][]string{
				{"14:31:05.118000", "arm", phished, "cg-build-cache", "docker.io/evil/miner:5.2", "docker.io"},
			},
		},
		{
			name:  "step 7: the audit export deleted, then restored",
			query: "logging-changes",
			cols:  []string{"event_time", "actor", "action", "setting", "monitored_resource", "source_ip"},
			want: [][]string{
				{"14:44:10.412000", phished, "arm:Microsoft.Insights/diagnosticSettings/delete", "aks-audit-archive",
					"/subscriptions/3c5e7a91-2b4d-4f60-8a1c-9e0d2f4b6a80/resourcegroups/payments-prod-rg/providers/microsoft.containerservice/managedclusters/payments-aks", attackerIP},
				{"15:40:25.000000", "priya.sre@contoso.com", "arm:Microsoft.Insights/diagnosticSettings/write", "aks-audit-archive",
					"/subscriptions/3c5e7a91-2b4d-4f60-8a1c-9e0d2f4b6a80/resourcegroups/payments-prod-rg/providers/microsoft.containerservice/managedclusters/payments-aks", corpIP},
			},
		},
	}
}

// TestIncidentScenario loads the scenario into a signed store, verifies
// the trail, and checks each query's answer. One store serves every case:
// loading it is most of the test's time. On a server the queries run as
// the reader role's account, as `custody query` does.
func TestIncidentScenario(t *testing.T) { storetest.Run(t, testIncidentScenario) }

func testIncidentScenario(t *testing.T, b storetest.Backend) {
	st, verifier, cpDir, f := openScenario(t, b)
	ctx := context.Background()

	rep, err := st.Verify(ctx, storage.VerifyOptions{Verifier: verifier, CheckpointDir: cpDir})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.Rows != scenarioEvents {
		t.Fatalf("verify: ok=%v rows=%d (want %d), findings %v", rep.OK(), rep.Rows, scenarioEvents, rep.Findings)
	}
	if f.Server != nil {
		if st, err = storage.Open(ctx, storetest.Connect(t, f.Server, storage.UserInvestigator), storage.Options{}); err != nil {
			t.Fatal(err)
		}
	}

	cat, err := queries.Load()
	if err != nil {
		t.Fatal(err)
	}
	from := time.Date(2025, 6, 12, 0, 0, 0, 0, time.UTC)
	to := from.Add(24 * time.Hour)
	for _, c := range scenarioCases() {
		t.Run(c.name, func(t *testing.T) {
			got := runProjected(ctx, t, st, cat, c.query, c.params, from, to, c.cols)
			if !slices.EqualFunc(got, c.want, slices.Equal) {
				t.Errorf("%s rows differ\n--- got\n%s--- want\n%s", c.query, formatRows(got), formatRows(c.want))
			}
		})
	}
	t.Run("untuned defaults and the masterclient pivot", func(t *testing.T) {
		checkDefaults(ctx, t, st, cat, from, to)
	})
}

// checkDefaults checks what the queries say before a responder tunes
// them: the default secret-access query also lists cert-manager's hourly
// read of the TLS secret (23 hours of the day: the export was off for the
// 15:17 one), and the default allow-list, which trusts every *.azurecr.io
// registry, still catches the Docker Hub image.
func checkDefaults(ctx context.Context, t *testing.T, st *storage.Store, cat *queries.Catalogue, from, to time.Time) {
	rows := runProjected(ctx, t, st, cat, "secret-access", nil, from, to, []string{"actor", "name"})
	byActor := map[string]int{}
	for _, r := range rows {
		byActor[r[0]]++
		if r[0] == "system:serviceaccount:cert-manager:cert-manager" && r[1] != "api-tls" {
			t.Errorf("cert-manager read %q, want only api-tls", r[1])
		}
	}
	if want := map[string]int{phished: 5, "system:serviceaccount:cert-manager:cert-manager": 23}; !maps.Equal(byActor, want) {
		t.Errorf("secret-access rows by actor %v, want %v", byActor, want)
	}

	rows = runProjected(ctx, t, st, cat, "unapproved-images", nil, from, to, []string{"actor", "image"})
	if want := [][]string{{phished, "docker.io/evil/miner:5.2"}}; !slices.EqualFunc(rows, want, slices.Equal) {
		t.Errorf("unapproved-images with the default allow-list:\n%s", formatRows(rows))
	}

	// The admin certificate's actions carry no Entra identity: the
	// timeline of the phished account misses the binding, the timeline of
	// "masterclient" has it, from the attacker's address.
	rows = runProjected(ctx, t, st, cat, "principal-timeline", map[string]string{"actor": "masterclient"}, from, to,
		[]string{"action", "target", "source_ip"})
	if want := [][]string{{"k8s:clusterrolebindings:create", "clusterrolebindings dana-cluster-admin", attackerIP}}; !slices.EqualFunc(rows, want, slices.Equal) {
		t.Errorf("principal-timeline of masterclient:\n%s", formatRows(rows))
	}
}

// runProjected runs a catalogue query and returns the named columns of
// its rows; times lose the scenario's date.
func runProjected(ctx context.Context, t *testing.T, st *storage.Store, cat *queries.Catalogue, name string,
	params map[string]string, from, to time.Time, cols []string) [][]string {
	t.Helper()
	q, err := cat.Get(name)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := queries.Runner{Engine: st.Engine(), Database: st.Database()}.Run(ctx, q, params, from, to)
	if err != nil {
		t.Fatal(err)
	}
	res, err := queries.Collect(rows)
	if err != nil {
		t.Fatal(err)
	}
	idx := make([]int, len(cols))
	for i, c := range cols {
		idx[i] = slices.IndexFunc(res.Columns, func(rc queries.Column) bool { return rc.Name == c })
		if idx[i] < 0 {
			t.Fatalf("query %s has no column %q", name, c)
		}
	}
	out := make([][]string, 0, len(res.Rows))
	for _, r := range res.Rows {
		row := make([]string, len(idx))
		for i, j := range idx {
			v := r[j]
			if res.Columns[j].Time() {
				if !strings.HasPrefix(v, scenarioDay) {
					t.Errorf("query %s: time %q is not on the scenario's day", name, v)
				}
				v = strings.TrimPrefix(v, scenarioDay)
			}
			row[i] = v
		}
		out = append(out, row)
	}
	return out
}

func formatRows(rows [][]string) string {
	var b strings.Builder
	for _, r := range rows {
		b.WriteString(strings.Join(r, " | "))
		b.WriteByte('\n')
	}
	return b.String()
}
