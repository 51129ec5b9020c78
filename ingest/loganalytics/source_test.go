package loganalytics

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/custody-audit/custody/ingest"
	"github.com/custody-audit/custody/internal/lafake"
)

var update = flag.Bool("update", false, "rewrite golden files")

var fixtureTables = []string{"AKSAudit", "AzureActivity", "AzureDiagnostics", "ContainerRegistryLoginEvents"}

func fixtureServer(t testing.TB) *lafake.Server {
	var tables []lafake.Table
	for _, name := range fixtureTables {
		tables = append(tables, loadTable(t, name))
	}
	return newServer(t, tables...)
}

// goldenMessage is the stored form of a message in golden files.
type goldenMessage struct {
	Stream     string            `json:"stream"`
	Offset     int64             `json:"offset"`
	Position   string            `json:"position"`
	Format     string            `json:"format"`
	Enqueued   time.Time         `json:"enqueued"`
	Attributes map[string]string `json:"attributes"`
	Body       json.RawMessage   `json:"body"`
}

func sortMessages(msgs []ingest.Message) {
	slices.SortStableFunc(msgs, func(a, b ingest.Message) int {
		if c := strings.Compare(a.Stream, b.Stream); c != 0 {
			return c
		}
		if a.Offset != b.Offset {
			return int(a.Offset - b.Offset)
		}
		return strings.Compare(a.Position, b.Position)
	})
}

func checkGolden(t *testing.T, name string, msgs []ingest.Message) {
	t.Helper()
	sortMessages(msgs)
	out := make([]goldenMessage, len(msgs))
	for i, m := range msgs {
		out[i] = goldenMessage{m.Stream, m.Offset, m.Position, m.Format, m.Enqueued.UTC(), m.Attributes, m.Body}
	}
	got, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	path := filepath.Join("testdata", "golden", name+".json")
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("golden %s: %v (run with -update)", path, err)
	}
	if string(got) != string(want) {
		t.Errorf("messages differ from %s (run with -update to see):\n%s", path, got)
	}
}

// TestFullRead reads every fixture table from a lookback start to now and
// checks the messages against the golden file: one message per row, the
// default templates' filters applied by the server, the ingestion-time
// helper column kept out of the body.
func TestFullRead(t *testing.T) {
	srv := fixtureServer(t)
	e := newEnv(t, srv, nil, testConfig(srv, fixtureTables...))
	msgs := e.mustDrain(e.src)

	if rej := srv.Rejected(); len(rej) > 0 {
		t.Fatalf("server could not interpret queries: %q", rej)
	}
	if got := len(msgs); got != 10 {
		t.Errorf("got %d messages, want 10 (4 AKSAudit, 2 AzureActivity, 2 AzureDiagnostics, 2 ContainerRegistryLoginEvents)", got)
	}
	for _, m := range msgs {
		if strings.Contains(string(m.Body), IngestionTimeColumn) {
			t.Errorf("%s: body carries the helper column", m.Position)
		}
		if m.Attributes["table"] == "" || !strings.HasSuffix(m.Stream, "/"+m.Attributes["table"]) {
			t.Errorf("%s: stream %q and table attribute %q disagree", m.Position, m.Stream, m.Attributes["table"])
		}
		if m.Offset != m.Enqueued.UnixMicro() {
			t.Errorf("%s: offset %d is not the ingestion time %s", m.Position, m.Offset, m.Enqueued)
		}
	}
	if got := countBy(t, msgs, "ResourceProviderValue"); got["MICROSOFT.STORAGE"] != 0 {
		t.Errorf("AzureActivity filter let a storage operation through: %v", got)
	}
	if got := countBy(t, msgs, "Category"); got["kube-apiserver"] != 0 || got["kube-audit"] != 1 || got["kube-audit-admin"] != 1 {
		t.Errorf("AzureDiagnostics categories = %v, want one kube-audit and one kube-audit-admin", got)
	}
	for _, q := range srv.Queries() {
		if q.Prefer != "wait=180" {
			t.Errorf("Prefer header %q, want wait=180", q.Prefer)
		}
		if q.Timespan != "" {
			t.Errorf("query sent timespan %q; a TimeGenerated restriction would drop late rows", q.Timespan)
		}
	}
	checkGolden(t, "full_read", msgs)
}

func aksRow(t testing.TB, ingested time.Time, auditID string) lafake.Row {
	tbl := loadTable(t, "AKSAudit")
	r := tbl.Rows[0]
	vals := slices.Clone(r.Values)
	vals[3] = auditID
	return lafake.Row{Ingested: ingested, Values: vals}
}

// TestLateArrivingRows: a row generated hours ago but ingested after the
// last window is picked up by the next poll, and a row whose ingestion
// time lies inside the previous window but became queryable only later is
// picked up thanks to the overlap. Nothing already delivered comes again.
func TestLateArrivingRows(t *testing.T) {
	srv := fixtureServer(t)
	// Already present at the first poll, inside the later overlap.
	if err := srv.AppendRows("AKSAudit", aksRow(t, t0.Add(-4*time.Minute), "present-in-overlap")); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, srv, nil, testConfig(srv, "AKSAudit"))
	first := e.mustDrain(e.src)
	if len(first) != 5 {
		t.Fatalf("first poll: %d messages, want 5", len(first))
	}

	late := aksRow(t, t0.Add(-time.Minute), "generated-long-ago")
	late.Values[1] = t0.Add(-4 * time.Hour).Format(time.RFC3339) // TimeGenerated
	overlapLate := aksRow(t, t0.Add(-5*time.Minute), "queryable-late")
	if err := srv.AppendRows("AKSAudit", late, overlapLate); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(2 * time.Minute)
	second := e.mustDrain(e.src)
	got := countBy(t, second, "AuditId")
	want := map[string]int{"generated-long-ago": 1, "queryable-late": 1}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("second poll delivered %v, want %v", got, want)
	}
	// The overlap was really re-read: the server returned the row present
	// at the first poll twice, the source delivered it once.
	reads := 0
	for _, q := range srv.Queries() {
		if strings.Contains(q.Query, "ingestion_time() > datetime(2024-05-01T11:53:00.000000Z)") {
			reads++
		}
	}
	if reads != 1 {
		t.Errorf("%d queries started at the overlap (11:53), want 1", reads)
	}
}

// TestOverlapDedupIdenticalRows: two byte-identical rows ingested at the
// same instant are both delivered (they are two records), and neither is
// delivered again when the overlap is re-read on later polls.
func TestOverlapDedupIdenticalRows(t *testing.T) {
	srv := newServer(t, lafake.Table{Name: "AKSAudit", Columns: loadTable(t, "AKSAudit").Columns})
	r := aksRow(t, t0.Add(-3*time.Minute), "twin")
	if err := srv.AppendRows("AKSAudit", r, r); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, srv, nil, testConfig(srv, "AKSAudit"))
	var all []ingest.Message
	for range 4 {
		all = append(all, e.mustDrain(e.src)...)
		e.clock.Advance(time.Minute)
	}
	if got := countBy(t, all, "AuditId")["twin"]; got != 2 {
		t.Errorf("twin rows delivered %d times over 4 polls, want 2", got)
	}
}

// TestThrottling: 429 with Retry-After is waited out (the requested wait
// is what the server asked for) and the query succeeds.
func TestThrottling(t *testing.T) {
	srv := fixtureServer(t)
	srv.Throttle(2, "7")
	e := newEnv(t, srv, nil, testConfig(srv, "AKSAudit"))
	msgs := e.mustDrain(e.src)
	if len(msgs) != 4 {
		t.Errorf("got %d messages, want 4", len(msgs))
	}
	if got, want := e.sleep.Waits(), []time.Duration{7 * time.Second, 7 * time.Second}; !slices.Equal(got, want) {
		t.Errorf("waits = %v, want %v", got, want)
	}
	throttled := 0
	for _, q := range srv.Queries() {
		if q.Status == 429 {
			throttled++
		}
	}
	if throttled != 2 {
		t.Errorf("server answered 429 %d times, want 2", throttled)
	}
}

// TestThrottlingExhausted: when the retries run out the table backs off
// without an error and without moving on; the rows come on a later poll.
func TestThrottlingExhausted(t *testing.T) {
	srv := fixtureServer(t)
	cfg := testConfig(srv, "AKSAudit")
	cfg.ThrottleRetries = 1
	srv.Throttle(2, "30")
	e := newEnv(t, srv, nil, cfg)
	if msgs := e.mustDrain(e.src); len(msgs) != 0 {
		t.Fatalf("got %d messages while throttled, want 0", len(msgs))
	}
	if !strings.Contains(e.logs.String(), "still throttled") {
		t.Errorf("no throttling warning logged")
	}
	e.clock.Advance(2 * time.Minute)
	msgs := e.mustDrain(e.src)
	if len(msgs) != 4 {
		t.Errorf("after back-off got %d messages, want 4", len(msgs))
	}
	if got, want := e.sleep.Waits(), []time.Duration{30 * time.Second}; !slices.Equal(got, want) {
		t.Errorf("waits = %v, want %v", got, want)
	}
}

// TestPartialError: a PartialError result is not used; the window is read
// again in halves and every row arrives exactly once.
func TestPartialError(t *testing.T) {
	srv := fixtureServer(t)
	srv.FailPartial(1)
	e := newEnv(t, srv, nil, testConfig(srv, "AKSAudit"))
	msgs := e.mustDrain(e.src)
	assertExactlyOnce(t, msgs, "AuditId", 4)
	partial := 0
	for _, q := range srv.Queries() {
		if q.Partial {
			partial++
		}
	}
	if partial != 1 {
		t.Errorf("%d partial answers, want 1", partial)
	}
	if !strings.Contains(e.logs.String(), "E_EXTENT_LOAD_FAILED") {
		t.Errorf("the partial error's reason was not logged")
	}
}

func assertExactlyOnce(t *testing.T, msgs []ingest.Message, key string, want int) {
	t.Helper()
	counts := countBy(t, msgs, key)
	if len(counts) != want {
		t.Errorf("%d distinct %s, want %d: %v", len(counts), key, want, counts)
	}
	for k, n := range counts {
		if n != 1 {
			t.Errorf("%s %q delivered %d times", key, k, n)
		}
	}
}

// denseServer holds n AKSAudit rows ingested one second apart from 10:00.
func denseServer(t *testing.T, n int) *lafake.Server {
	srv := newServer(t, lafake.Table{Name: "AKSAudit", Columns: loadTable(t, "AKSAudit").Columns})
	for i := range n {
		if err := srv.AppendRows("AKSAudit", aksRow(t, t0.Add(-2*time.Hour+time.Duration(i)*time.Second), fmt.Sprintf("dense-%03d", i))); err != nil {
			t.Fatal(err)
		}
	}
	return srv
}

// TestWindowSplit: a window whose result reaches the row limit (the
// configured one, or the service's truncation signalled by PartialError,
// or the size limit) is split until each part fits; all rows arrive once.
func TestWindowSplit(t *testing.T) {
	cases := []struct {
		name      string
		maxRows   int
		rowLimit  int
		sizeLimit int
	}{
		{name: "configured max_rows", maxRows: 3},
		{name: "service row limit", rowLimit: 4},
		{name: "service size limit", sizeLimit: 4000},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := denseServer(t, 20)
			srv.SetLimits(tc.rowLimit, tc.sizeLimit)
			cfg := testConfig(srv, "AKSAudit")
			if tc.maxRows > 0 {
				cfg.MaxRows = tc.maxRows
			}
			e := newEnv(t, srv, nil, cfg)
			msgs := e.mustDrain(e.src)
			assertExactlyOnce(t, msgs, "AuditId", 20)
			if !strings.Contains(e.logs.String(), "splitting window") {
				t.Errorf("no split logged")
			}
			for _, q := range srv.Queries() {
				if tc.maxRows > 0 && !strings.HasSuffix(q.Query, fmt.Sprintf("| take %d", tc.maxRows+1)) {
					t.Errorf("query does not cap rows at max_rows+1: %q", q.Query)
				}
			}
		})
	}
}

// TestWindowTooSmall: rows that cannot be split apart (same ingestion
// instant) beyond the limit give a clear error, and nothing is skipped.
func TestWindowTooSmall(t *testing.T) {
	srv := newServer(t, lafake.Table{Name: "AKSAudit", Columns: loadTable(t, "AKSAudit").Columns})
	for i := range 3 {
		if err := srv.AppendRows("AKSAudit", aksRow(t, t0.Add(-time.Hour), fmt.Sprintf("same-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	cfg := testConfig(srv, "AKSAudit")
	cfg.MaxRows = 2
	e := newEnv(t, srv, nil, cfg)
	msgs, err := e.drain(e.src, nil)
	if !errors.Is(err, ErrWindowTooSmall) {
		t.Fatalf("err = %v, want ErrWindowTooSmall", err)
	}
	if len(msgs) != 0 {
		t.Errorf("delivered %d rows past an unreadable window", len(msgs))
	}
	// Raising the limit reads them.
	e.cfg.MaxRows = 3
	src := e.open(nil)
	assertExactlyOnce(t, e.mustDrain(src), "AuditId", 3)
}

// TestResume: a source started with a stored position reads from that
// position minus the overlap: nothing older comes again, everything newer
// comes. Tables without a stored position start at the lookback.
func TestResume(t *testing.T) {
	srv := fixtureServer(t)
	stored := time.Date(2024, 5, 1, 11, 5, 0, 0, time.UTC) // the third AKSAudit row
	positions := map[string]int64{Stream(testWorkspace, "AKSAudit"): stored.UnixMicro()}
	e := newEnv(t, srv, positions, testConfig(srv, "AKSAudit", "ContainerRegistryLoginEvents"))
	msgs := e.mustDrain(e.src)
	var aks []string
	registry := 0
	for _, m := range msgs {
		switch m.Attributes["table"] {
		case "AKSAudit":
			if m.Offset <= stored.Add(-e.cfg.Overlap).UnixMicro() {
				t.Errorf("row %s before the resume point came again", m.Position)
			}
			aks = append(aks, field(t, m, "AuditId"))
		case "ContainerRegistryLoginEvents":
			registry++
		}
	}
	slices.Sort(aks)
	// The stored row is inside the overlap and is delivered again (the
	// store drops it by event id); the newer one is new.
	want := []string{"6f0b2c1e-0003-4b1e-9c1a-000000000003", "6f0b2c1e-0004-4b1e-9c1a-000000000004"}
	if !slices.Equal(aks, want) {
		t.Errorf("AKSAudit after resume = %v, want %v", aks, want)
	}
	if registry != 2 {
		t.Errorf("ContainerRegistryLoginEvents without position: %d rows, want 2", registry)
	}
}

// TestNackRedelivers: a batch the store could not take is delivered again;
// batches acknowledged before it are not.
func TestNackRedelivers(t *testing.T) {
	srv := denseServer(t, 10)
	cfg := testConfig(srv, "AKSAudit")
	cfg.BatchSize = 3
	e := newEnv(t, srv, nil, cfg)
	msgs, err := e.drain(e.src, func(n int) error {
		if n == 1 {
			return errors.New("store unavailable")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	assertExactlyOnce(t, msgs, "AuditId", 10)
}

// TestMissingTable: a table the workspace does not have is skipped with a
// warning and retried later; the others are read.
func TestMissingTable(t *testing.T) {
	srv := fixtureServer(t)
	e := newEnv(t, srv, nil, testConfig(srv, "ContainerEvent_CL", "AKSAudit"))
	msgs := e.mustDrain(e.src)
	if len(msgs) != 4 {
		t.Errorf("got %d messages, want the 4 AKSAudit rows", len(msgs))
	}
	if !strings.Contains(e.logs.String(), "table not found") {
		t.Errorf("missing table not logged")
	}
	n := 0
	for _, q := range srv.Queries() {
		if strings.HasPrefix(q.Query, "ContainerEvent_CL") {
			n++
		}
	}
	e.clock.Advance(time.Minute)
	e.mustDrain(e.src)
	for _, q := range srv.Queries() {
		if strings.HasPrefix(q.Query, "ContainerEvent_CL") {
			n--
		}
	}
	if n != 0 {
		t.Errorf("missing table queried again before missing_table_retry")
	}
}

// TestUnsupportedTemplate: a template the server cannot run fails loudly,
// naming the table and the service's error code.
func TestUnsupportedTemplate(t *testing.T) {
	srv := fixtureServer(t)
	cfg := testConfig(srv, "AKSAudit")
	cfg.Queries = map[string]string{"AKSAudit": "AKSAudit\n" + WindowFilter + "\n| summarize count() by Verb"}
	e := newEnv(t, srv, nil, cfg)
	_, err := e.drain(e.src, nil)
	if err == nil || !strings.Contains(err.Error(), "AKSAudit") || !strings.Contains(err.Error(), "BadArgumentError") {
		t.Fatalf("err = %v, want a BadArgumentError naming AKSAudit", err)
	}
	if len(srv.Rejected()) != 1 {
		t.Errorf("server rejected %d queries, want 1", len(srv.Rejected()))
	}
}

// TestWorkloadIdentity authenticates with a federated token file, the way
// AKS workload identity does.
func TestWorkloadIdentity(t *testing.T) {
	srv := fixtureServer(t)
	tokenFile := filepath.Join(t.TempDir(), "token")
	const assertion = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6Y3VzdG9keTpjb2xsZWN0b3IifQ.c2ln"
	if err := os.WriteFile(tokenFile, []byte(assertion), 0o600); err != nil {
		t.Fatal(err)
	}
	srv.Authority().AddFederatedClient(testTenant, "wi-client", assertion)
	cfg := testConfig(srv, "AKSAudit")
	cfg.Credential = CredentialConfig{Kind: CredentialWorkloadIdentity, TenantID: testTenant, ClientID: "wi-client",
		TokenFile: tokenFile, AuthorityHost: srv.Authority().AuthorityHost(), DisableInstanceDiscovery: true}
	e := newEnv(t, srv, nil, cfg)
	if msgs := e.mustDrain(e.src); len(msgs) != 4 {
		t.Errorf("got %d messages, want 4", len(msgs))
	}
}

// TestManagedIdentity authenticates with the App Service managed identity
// protocol, which azidentity selects from IDENTITY_ENDPOINT and
// IDENTITY_HEADER.
func TestManagedIdentity(t *testing.T) {
	srv := fixtureServer(t)
	t.Setenv("IDENTITY_ENDPOINT", srv.Authority().EnableManagedIdentity("mi-header-secret"))
	t.Setenv("IDENTITY_HEADER", "mi-header-secret")
	cfg := testConfig(srv, "AKSAudit")
	cfg.Credential = CredentialConfig{Kind: CredentialManagedIdentity, AuthorityHost: srv.Authority().AuthorityHost()}
	e := newEnv(t, srv, nil, cfg)
	if msgs := e.mustDrain(e.src); len(msgs) != 4 {
		t.Errorf("got %d messages, want 4", len(msgs))
	}
	if strings.Contains(e.logs.String(), "mi-header-secret") {
		t.Errorf("logs leak the identity header")
	}
}

type staticToken string

func (s staticToken) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: string(s), ExpiresOn: time.Now().Add(time.Hour)}, nil
}

// TestSecretsNeverLeak: neither the client secret nor any bearer token
// appears in errors or logs, whether authentication fails or succeeds.
func TestSecretsNeverLeak(t *testing.T) {
	srv := fixtureServer(t)
	var errs []string

	// Wrong client secret: the token endpoint refuses.
	cfg := testConfig(srv, "AKSAudit")
	cfg.Credential.ClientSecret = "wrong-" + testSecret
	bad := newEnv(t, srv, nil, cfg)
	if _, err := bad.drain(bad.src, nil); err == nil {
		t.Fatal("no error with a wrong client secret")
	} else {
		errs = append(errs, err.Error())
	}

	// Tokens the API does not accept (not a JWT, issued for another
	// resource, expired): 403 from the query API, saying why.
	const bogus = "bogus.bearer.token-value"
	mint := func(resource string, life time.Duration) string {
		tok, _, err := srv.Authority().IssueToken(testTenant, testClientID, resource, life)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	for _, tc := range []struct{ token, reason string }{
		{bogus, "malformed token"},
		{mint("https://management.azure.com", time.Hour), "audience mismatch"},
		{mint(srv.Audience(), -time.Minute), "expired"},
	} {
		forged := &env{t: t, srv: srv, clock: &clock{now: t0}, sleep: &sleeper{}, logs: bad.logs, cfg: testConfig(srv, "AKSAudit")}
		src, err := New(forged.cfg, nil, Options{Logger: bad.src.opts.Logger, Transport: srv.HTTPClient(), Credential: staticToken(tc.token),
			Now: forged.clock.Now, Sleep: forged.sleep.Sleep, Idle: forged.idle})
		if err != nil {
			t.Fatal(err)
		}
		if err := src.Connect(context.Background()); err != nil {
			t.Fatal(err)
		}
		if _, err := forged.drain(src, nil); err == nil || !strings.Contains(err.Error(), "InvalidAuthenticationToken") ||
			!strings.Contains(err.Error(), tc.reason) {
			t.Fatalf("err = %v, want InvalidAuthenticationToken (%s)", err, tc.reason)
		} else {
			errs = append(errs, err.Error())
		}
	}

	// Success: tokens were issued and used.
	good := newEnv(t, srv, nil, testConfig(srv, "AKSAudit"))
	good.mustDrain(good.src)

	secrets := append(srv.Authority().IssuedTokens(), testSecret, bogus)
	if len(secrets) < 3 {
		t.Fatal("server issued no token")
	}
	logs := bad.logs.String() + good.logs.String()
	if !strings.Contains(logs, "window read") {
		t.Fatal("debug logs were not captured")
	}
	cfgDump, _ := json.Marshal(good.cfg)
	for _, s := range secrets {
		for _, e := range errs {
			if strings.Contains(e, s) {
				t.Errorf("error leaks a secret: %s", e)
			}
		}
		if strings.Contains(logs, s) {
			t.Errorf("logs leak a secret")
		}
		if strings.Contains(string(cfgDump)+fmt.Sprintf("%v %+v %#v", good.cfg, good.cfg, good.cfg), s) {
			t.Errorf("config formatting leaks the client secret")
		}
	}
}

// TestValueFidelity: cells reach the body exactly as the service sent
// them, including integers beyond float64 precision and decimals.
func TestValueFidelity(t *testing.T) {
	srv := newServer(t, lafake.Table{
		Name:    "ContainerRegistryLoginEvents",
		Columns: []lafake.Column{{Name: "TimeGenerated", Type: "datetime"}, {Name: "Big", Type: "long"}, {Name: "Dec", Type: "decimal"}, {Name: "Props", Type: "dynamic"}, {Name: "Flag", Type: "bool"}},
		Rows: []lafake.Row{{Ingested: t0.Add(-time.Hour), Values: []any{
			"2024-05-01T10:59:59.1234567Z", json.Number("9007199254740993"), json.Number("0.10000000000000000001"), `{"a":[1,2]}`, true,
		}}},
	})
	e := newEnv(t, srv, nil, testConfig(srv, "ContainerRegistryLoginEvents"))
	msgs := e.mustDrain(e.src)
	if len(msgs) != 1 {
		t.Fatalf("got %d messages", len(msgs))
	}
	want := `{"TimeGenerated":"2024-05-01T10:59:59.1234567Z","Big":9007199254740993,"Dec":0.10000000000000000001,"Props":"{\"a\":[1,2]}","Flag":true}`
	if string(msgs[0].Body) != want {
		t.Errorf("body\n got %s\nwant %s", msgs[0].Body, want)
	}
}

// TestNotConnected: ReadBatch before Connect says so.
func TestNotConnected(t *testing.T) {
	srv := fixtureServer(t)
	src, err := New(testConfig(srv, "AKSAudit"), nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := src.ReadBatch(context.Background()); !errors.Is(err, ingest.ErrNotConnected) {
		t.Errorf("err = %v, want ErrNotConnected", err)
	}
}

var _ ingest.Source = (*Source)(nil)
