package grafana_test

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/custody-audit/custody/deploy/kit/grafana"
	"github.com/custody-audit/custody/internal/incidenttest"
	"github.com/custody-audit/custody/internal/storetest"
	"github.com/custody-audit/custody/normalize"
	"github.com/custody-audit/custody/storage"
	"github.com/custody-audit/custody/storage/engine"
)

const grafanaDir = "../../grafana"

// Datasource uids the dashboards may use, as provisioned.
const (
	clickhouseUID = "custody-clickhouse"
	prometheusUID = "custody-prometheus"
)

type dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []variable `json:"list"`
	} `json:"templating"`
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type panel struct {
	ID         int                      `json:"id"`
	Title      string                   `json:"title"`
	Type       string                   `json:"type"`
	Datasource datasource               `json:"datasource"`
	GridPos    struct{ X, Y, W, H int } `json:"gridPos"`
	Targets    []struct {
		RefID      string     `json:"refId"`
		Datasource datasource `json:"datasource"`
		EditorType string     `json:"editorType"`
		QueryType  string     `json:"queryType"`
		RawSQL     string     `json:"rawSql"`
		Expr       string     `json:"expr"`
	} `json:"targets"`
}

type variable struct {
	Name       string     `json:"name"`
	Type       string     `json:"type"`
	Datasource datasource `json:"datasource"`
	Query      string     `json:"query"`
}

func loadDashboards(t *testing.T) map[string]dashboard {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(grafanaDir, "dashboards", "*.json"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no dashboards: %v", err)
	}
	out := map[string]dashboard{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var d dashboard
		dec := json.NewDecoder(bytes.NewReader(b))
		if err := dec.Decode(&d); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		out[filepath.Base(p)] = d
	}
	return out
}

// TestDashboardStructure checks what Grafana needs to load the
// dashboards: unique uids, panels with ids, positions and a query against
// a provisioned data source, variables defined where used.
func TestDashboardStructure(t *testing.T) {
	uids := map[string]bool{}
	want := []string{"custody-collector.json", "custody-integrity.json", "custody-investigation.json", "custody-overview.json"}
	dbs := loadDashboards(t)
	var names []string
	for name := range dbs {
		names = append(names, name)
	}
	slices.Sort(names)
	if !slices.Equal(names, want) {
		t.Errorf("dashboards %v, want %v", names, want)
	}
	varUse := regexp.MustCompile(`\$\{(\w+)(?::\w+)?\}|\$(\w+)`)
	for name, d := range dbs {
		if d.UID == "" || uids[d.UID] || d.Title == "" {
			t.Errorf("%s: uid %q (unique, non-empty) and title %q", name, d.UID, d.Title)
		}
		uids[d.UID] = true
		vars := map[string]bool{}
		for _, v := range d.Templating.List {
			vars[v.Name] = true
			if v.Datasource.UID != clickhouseUID || v.Query == "" {
				t.Errorf("%s: variable %s: query against %s", name, v.Name, v.Datasource.UID)
			}
		}
		ids := map[int]bool{}
		for _, p := range d.Panels {
			if p.ID == 0 || ids[p.ID] {
				t.Errorf("%s: panel %q: id %d not unique", name, p.Title, p.ID)
			}
			ids[p.ID] = true
			if p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
				t.Errorf("%s: panel %q: gridPos %+v", name, p.Title, p.GridPos)
			}
			if len(p.Targets) == 0 {
				t.Errorf("%s: panel %q has no query", name, p.Title)
			}
			for _, tg := range p.Targets {
				switch tg.Datasource.UID {
				case clickhouseUID:
					if tg.Datasource.Type != "grafana-clickhouse-datasource" || tg.EditorType != "sql" || tg.RawSQL == "" {
						t.Errorf("%s: panel %q: ClickHouse target %+v", name, p.Title, tg)
					}
					for _, m := range varUse.FindAllStringSubmatch(tg.RawSQL, -1) {
						v := m[1] + m[2]
						if !strings.HasPrefix(v, "__") && !vars[v] {
							t.Errorf("%s: panel %q uses variable %s, which the dashboard does not define", name, p.Title, v)
						}
					}
				case prometheusUID:
					if tg.Datasource.Type != "prometheus" || tg.Expr == "" {
						t.Errorf("%s: panel %q: Prometheus target %+v", name, p.Title, tg)
					}
				default:
					t.Errorf("%s: panel %q: data source %q is not provisioned", name, p.Title, tg.Datasource.UID)
				}
			}
		}
	}
}

// TestProvisioning checks the provisioning files: the data sources the
// dashboards use, the ClickHouse password by reference only.
func TestProvisioning(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(grafanaDir, "provisioning", "datasources", "custody.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var ds struct {
		APIVersion  int `yaml:"apiVersion"`
		Datasources []struct {
			Name           string            `yaml:"name"`
			UID            string            `yaml:"uid"`
			Type           string            `yaml:"type"`
			JSONData       map[string]any    `yaml:"jsonData"`
			SecureJSONData map[string]string `yaml:"secureJsonData"`
		} `yaml:"datasources"`
	}
	if err := yaml.Unmarshal(b, &ds); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, d := range ds.Datasources {
		got[d.UID] = d.Type
		for k, v := range d.SecureJSONData {
			if !regexp.MustCompile(`^\$[A-Z_]+$`).MatchString(v) {
				t.Errorf("data source %s: secureJsonData.%s is not an environment reference", d.UID, k)
			}
		}
		if d.Type == "grafana-clickhouse-datasource" && d.JSONData["defaultDatabase"] != "custody" {
			t.Errorf("data source %s: defaultDatabase %v", d.UID, d.JSONData["defaultDatabase"])
		}
	}
	if got[clickhouseUID] != "grafana-clickhouse-datasource" || got[prometheusUID] != "prometheus" || ds.APIVersion != 1 {
		t.Errorf("provisioned data sources %v (apiVersion %d)", got, ds.APIVersion)
	}

	// The ClickHouse data source logs in as an account of the servers kit
	// that holds the reader role and nothing else.
	users, err := os.ReadFile(filepath.Join(grafanaDir, "..", "clickhouse", "users.d", "custody-users.xml"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Users struct {
			Any []struct {
				XMLName xml.Name
				Grants  []string `xml:"grants>query"`
			} `xml:",any"`
		} `xml:"users"`
	}
	if err := xml.Unmarshal(users, &cfg); err != nil {
		t.Fatal(err)
	}
	for _, d := range ds.Datasources {
		if d.Type != "grafana-clickhouse-datasource" {
			continue
		}
		name, _ := d.JSONData["username"].(string)
		found := false
		for _, u := range cfg.Users.Any {
			if u.XMLName.Local == name {
				found = true
				if !slices.Equal(u.Grants, []string{"GRANT " + storage.RoleReader}) {
					t.Errorf("data source user %s has grants %q, want only the reader role", name, u.Grants)
				}
			}
		}
		if !found {
			t.Errorf("data source user %q is not an account of deploy/clickhouse", name)
		}
	}
}

// The incident's day, and the values a responder picks in the variables.
var (
	incidentQuery = grafana.Query{
		From:     time.Date(2025, 6, 12, 0, 0, 0, 0, time.UTC),
		To:       time.Date(2025, 6, 13, 0, 0, 0, 0, time.UTC),
		Interval: time.Hour,
		Variables: map[string]string{
			"actor":     "dana.dev@contoso.com",
			"resource":  "cg-build-cache",
			"source_ip": "203.0.113.77",
		},
	}
)

// queryFor is the dashboard's time range in the test: the incident's day,
// and for the integrity dashboard from that day to now (it shows the
// verification this test runs, today).
func queryFor(uid string) grafana.Query {
	q := incidentQuery
	if uid == "custody-integrity" {
		q.To = time.Now().Add(time.Hour)
	}
	return q
}

// result is a query's column names and rows, every value as ClickHouse's
// TSV text.
type result struct {
	cols []string
	rows [][]string
}

// col returns column name of every row.
func (r result) col(t *testing.T, name string) []string {
	t.Helper()
	i := slices.Index(r.cols, name)
	if i < 0 {
		t.Fatalf("no column %s in %v", name, r.cols)
	}
	out := make([]string, len(r.rows))
	for j, row := range r.rows {
		out[j] = row[i]
	}
	return out
}

// project returns the named columns of every row.
func (r result) project(t *testing.T, names ...string) [][]string {
	t.Helper()
	out := make([][]string, len(r.rows))
	for _, n := range names {
		for j, v := range r.col(t, n) {
			out[j] = append(out[j], v)
		}
	}
	return out
}

// run executes sql on eng and returns every value as text.
func run(ctx context.Context, t *testing.T, eng engine.Engine, sql string) (result, error) {
	t.Helper()
	var res result
	err := engine.Each(ctx, eng, "SELECT formatRowNoNewline('TSV', *), arrayStringConcat(JSONExtractKeys(formatRowNoNewline('JSONEachRow', *)), '\\t') FROM ("+sql+")", nil, func(rs engine.Rows) error {
		var line, names string
		if err := rs.Scan(&line, &names); err != nil {
			return err
		}
		res.cols = strings.Split(names, "\t")
		res.rows = append(res.rows, strings.Split(line, "\t"))
		return nil
	})
	return res, err
}

// secondDelivery prefixes the chains of the incident's second delivery:
// every record again, as a second diagnostic setting would send it
// through Event Hubs. The panels must answer as for one delivery.
const secondDelivery = "eventhubs/incident-ns/second-setting/$Default/"

// loadIncident normalizes deploy/local/incident and appends it to st, one
// chain per file, as `make demo` and queries/scenario_test.go do; then
// appends it again through the second delivery (the same event ids in
// chains of their own).
func loadIncident(ctx context.Context, t *testing.T, st *storage.Store) {
	t.Helper()
	incidenttest.Load(ctx, t, st, incidenttest.Options{Prefix: "incident/"})
	incidenttest.Load(ctx, t, st, incidenttest.Options{Prefix: secondDelivery})
	received := incidenttest.Received()
	n, err := normalize.New(normalize.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	// One record the incident does not have: a kube-audit record whose
	// audit event is cut off, which normalize quarantines.
	bad := []byte(`{"records":[{"time":"2025-06-12T10:00:00Z","category":"kube-audit","resourceId":"/SUBSCRIPTIONS/3C5E7A91-2B4D-4F60-8A1C-9E0D2F4B6A80/RESOURCEGROUPS/PAYMENTS-PROD-RG/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/PAYMENTS-AKS","properties":{"log":"{\\"kind\\":\\"Event\\",\\"auditID\\":"}}]}`)
	res, err := n.Process(ctx, normalize.Input{Body: bad, Format: normalize.FormatEventHubs, SourceKind: "eventhubs", Position: "bad 1", Received: received})
	if err != nil || len(res.Quarantined) != 1 {
		t.Fatalf("malformed record: %v, %+v", err, res)
	}
	q := res.Quarantined[0]
	if _, err := st.Append(ctx, storage.Batch{Stream: "incident/malformed", Offset: 1, Position: "bad 1", Quarantined: []storage.QuarantineRecord{
		{Offset: 1, Position: q.Position, Received: received, Format: q.Format, Reason: q.Reason, Raw: q.Raw}}}); err != nil {
		t.Fatal(err)
	}
}

// checkDelivered holds a panel that lists events (it has an event_id
// column) to one row per event, each saying how the event was delivered:
// on the twice-delivered incident, eventhubs among them.
func checkDelivered(t *testing.T, r result) {
	if !slices.Contains(r.cols, "event_id") {
		return
	}
	ids := r.col(t, "event_id")
	via := r.col(t, "delivered_via")
	seen := map[string]bool{}
	for i, id := range ids {
		if seen[id] {
			t.Errorf("event %s listed twice", id)
		}
		seen[id] = true
		// The first delivery's path (archive, eventhubs or
		// loganalytics, by file) and the second's, eventhubs.
		if paths := strings.Split(via[i], ","); !slices.Contains(paths, "eventhubs") || !slices.IsSorted(paths) {
			t.Errorf("event %s delivered_via %q, want its paths sorted, eventhubs among them", id, via[i])
		}
	}
}

// TestPanelsOnIncident runs every ClickHouse panel and variable query of
// every dashboard on a store holding the incident and checks each returns
// what the panel is for.
func TestPanelsOnIncident(t *testing.T) {
	ctx := context.Background()
	f := storetest.New(t, "grafana-test")
	loadIncident(ctx, t, f.Store)
	started := time.Now()
	vopts := storage.VerifyOptions{Verifier: f.Verifier}
	rep, err := f.Store.Verify(ctx, vopts)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Store.RecordVerify(ctx, storage.NewVerifyRun(started, "cli", vopts, rep)); err != nil {
		t.Fatal(err)
	}

	checks := panelChecks()
	checked := map[string]bool{}
	for name, d := range loadDashboards(t) {
		for _, v := range d.Templating.List {
			sql, err := grafana.Expand(v.Query, queryFor(d.UID))
			if err != nil {
				t.Fatalf("%s variable %s: %v", name, v.Name, err)
			}
			res, err := run(ctx, t, f.Eng, sql)
			if err != nil {
				t.Fatalf("%s variable %s: %v\n%s", name, v.Name, err, sql)
			}
			key := d.UID + "/$" + v.Name
			checked[key] = true
			check, ok := checks[key]
			if !ok {
				t.Errorf("%s: no expectation for variable %s", name, v.Name)
				continue
			}
			check(t, res)
		}
		for _, p := range d.Panels {
			for _, tg := range p.Targets {
				if tg.Datasource.UID != clickhouseUID {
					continue
				}
				sql, err := grafana.Expand(tg.RawSQL, queryFor(d.UID))
				if err != nil {
					t.Fatalf("%s panel %q: %v", name, p.Title, err)
				}
				res, err := run(ctx, t, f.Eng, sql)
				if err != nil {
					t.Errorf("%s panel %q: %v\n%s", name, p.Title, err, sql)
					continue
				}
				key := d.UID + "/" + p.Title
				checked[key] = true
				check, ok := checks[key]
				if !ok {
					t.Errorf("%s: no expectation for panel %q; it returned %v %v", name, p.Title, res.cols, res.rows)
					continue
				}
				t.Run(key, func(t *testing.T) {
					check(t, res)
					checkDelivered(t, res)
				})
			}
		}
	}
	for key := range checks {
		if !checked[key] {
			t.Errorf("expectation for %s, which no dashboard has", key)
		}
	}

	// A variable's value is data, whatever it holds: the principal
	// timeline with values that would break out of a quoted literal finds
	// nothing and fails nowhere, and a name with ':' finds its rows.
	timeline := panelSQL(t, "custody-investigation.json", "Principal timeline")
	for value, want := range map[string]int{
		`x' OR 1=1 --`:  0,
		`x\' OR 1=1 --`: 0,
		`') OR ('1'='1`: 0,
		"system:serviceaccount:cert-manager:cert-manager": 23,
	} {
		q := incidentQuery
		q.Variables = map[string]string{"actor": value}
		sql, err := grafana.Expand(timeline, q)
		if err != nil {
			t.Fatal(err)
		}
		res, err := run(ctx, t, f.Eng, sql)
		if err != nil || len(res.rows) != want {
			t.Errorf("principal timeline for actor %q: %d rows, %v; want %d rows\n%s", value, len(res.rows), err, want, sql)
		}
	}
}

// panelSQL returns the raw SQL of a dashboard's panel.
func panelSQL(t *testing.T, file, title string) string {
	t.Helper()
	for _, p := range loadDashboards(t)[file].Panels {
		if p.Title == title {
			return p.Targets[0].RawSQL
		}
	}
	t.Fatalf("%s has no panel %q", file, title)
	return ""
}

func equalRows(t *testing.T, what string, got, want [][]string) {
	t.Helper()
	if !slices.EqualFunc(got, want, slices.Equal) {
		var b strings.Builder
		for _, r := range got {
			fmt.Fprintf(&b, "  %q,\n", r)
		}
		t.Errorf("%s: got %d rows:\n%swant %d rows: %q", what, len(got), b.String(), len(want), want)
	}
}
