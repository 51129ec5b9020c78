package lafake

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/monitor/query/azlogs"
)

const ws = "63613592-b6f7-4c3d-a390-22ba13102111"

type staticToken string

func (s staticToken) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: string(s), ExpiresOn: time.Now().Add(time.Hour)}, nil
}

// newServer starts a server that the test closes.
func newServer(t *testing.T, opts Options) *Server {
	t.Helper()
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// issue mints a token from s's authority for resource; a negative
// lifetime yields an expired one, zero the default lifetime.
func issue(t *testing.T, s *Server, resource string, lifetime time.Duration) string {
	t.Helper()
	tok, _, err := s.Authority().IssueToken("tenant-1", "app-1", resource, lifetime)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func cloudFor(s *Server) cloud.Configuration {
	return cloud.Configuration{
		ActiveDirectoryAuthorityHost: s.Authority().AuthorityHost(),
		Services: map[cloud.ServiceName]cloud.ServiceConfiguration{
			azlogs.ServiceName: {Endpoint: s.URL(), Audience: s.Audience()},
		},
	}
}

// newClient returns a real azlogs client over TLS to s using cred, with
// SDK retries off so fault injection is seen as is.
func newClient(t *testing.T, s *Server, cred azcore.TokenCredential) *azlogs.Client {
	t.Helper()
	c, err := azlogs.NewClient(cred, &azlogs.ClientOptions{ClientOptions: azcore.ClientOptions{
		Cloud: cloudFor(s), Transport: s.HTTPClient(), Retry: policy.RetryOptions{MaxRetries: -1},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// specExample is the REST spec's oms-post-example.json.
type specExample struct {
	Parameters struct {
		WorkspaceID string `json:"workspaceId"`
		Body        struct {
			Query string `json:"query"`
		} `json:"body"`
	} `json:"parameters"`
	Responses struct {
		OK struct {
			Body json.RawMessage `json:"body"`
		} `json:"200"`
	} `json:"responses"`
}

// TestSpecExample loads the rows of the REST spec's example response into
// the server, sends the example's query with the real azlogs client and
// checks the answer is the example's body, value for value.
func TestSpecExample(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "oms-post-example.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ex specExample
	if err := json.Unmarshal(b, &ex); err != nil {
		t.Fatal(err)
	}
	var body struct {
		Tables []struct {
			Columns []Column `json:"columns"`
			Rows    [][]any  `json:"rows"`
		} `json:"tables"`
	}
	if err := json.Unmarshal(ex.Responses.OK.Body, &body); err != nil {
		t.Fatal(err)
	}
	tbl := Table{Name: "Usage", Columns: body.Tables[0].Columns}
	for i, r := range body.Tables[0].Rows {
		tbl.Rows = append(tbl.Rows, Row{Ingested: time.Date(2017, 8, 24, 7, 0, i, 0, time.UTC), Values: r})
	}
	// Extra rows beyond "take" must not show.
	for i := range 15 {
		tbl.Rows = append(tbl.Rows, Row{Ingested: time.Date(2017, 8, 24, 8, 0, i, 0, time.UTC), Values: body.Tables[0].Rows[0]})
	}
	s := newServer(t, Options{Workspaces: []string{ex.Parameters.WorkspaceID}})
	s.LoadTables(tbl)

	c := newClient(t, s, staticToken(issue(t, s, s.Audience(), 0)))
	var raw *http.Response
	q := "Usage | take 2"
	res, err := c.QueryWorkspace(runtime.WithCaptureResponse(context.Background(), &raw), ex.Parameters.WorkspaceID, azlogs.QueryBody{Query: &q}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Error != nil || len(res.Tables) != 1 || len(res.Tables[0].Rows) != 2 {
		t.Fatalf("unexpected result: %+v", res)
	}
	payload, err := runtime.Payload(raw)
	if err != nil {
		t.Fatal(err)
	}
	var got, want any
	if err := json.Unmarshal(payload, &got); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(ex.Responses.OK.Body, &want); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("response differs from the spec example:\n got %s\nwant %s", payload, ex.Responses.OK.Body)
	}
}

func testTable() Table {
	base := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
	row := func(min int, id, cat, prov string, n float64) Row {
		return Row{Ingested: base.Add(time.Duration(min) * time.Minute), Values: []any{
			base.Add(time.Duration(min-1) * time.Minute).Format(time.RFC3339), id, cat, prov, n,
		}}
	}
	return Table{
		Name: "T",
		Columns: []Column{
			{Name: "TimeGenerated", Type: "datetime"}, {Name: "Id", Type: "string"},
			{Name: "Category", Type: "string"}, {Name: "Provider", Type: "string"}, {Name: "N", Type: "long"},
		},
		Rows: []Row{
			row(0, "a", "kube-audit", "Microsoft.ContainerService", 3),
			row(10, "b", "kube-apiserver", "MICROSOFT.CONTAINERSERVICE", 1),
			row(20, "c", "kube-audit-admin", "Microsoft.Storage", 2),
			row(30, "d", "kube-audit", "microsoft.insights", 5),
		},
	}
}

// TestKQL runs the supported KQL subset and checks the rows (by Id) or the
// error code for queries outside it.
func TestKQL(t *testing.T) {
	s := newServer(t, Options{})
	s.LoadTables(testTable())
	c := newClient(t, s, staticToken(issue(t, s, s.Audience(), 0)))
	cases := []struct {
		query   string
		want    string // ids joined, or the inner error code
		columns int
	}{
		{query: "T", want: "a,b,c,d", columns: 5},
		{query: "T | where ingestion_time() > datetime(2024-05-01T10:00:00.000000Z) and ingestion_time() <= datetime(2024-05-01T10:20:00Z)", want: "b,c"},
		{query: "T\n// a comment\n| where Category in (\"kube-audit\", \"kube-audit-admin\")", want: "a,c,d"},
		{query: `T | where Provider in~ ("microsoft.containerservice", "Microsoft.Insights")`, want: "a,b,d"},
		{query: `T | where Provider !in~ ("microsoft.containerservice")`, want: "c,d"},
		{query: `T | where Category == "kube-audit" and Id != 'a'`, want: "d"},
		{query: `T | where Provider =~ "MICROSOFT.STORAGE"`, want: "c"},
		{query: `T | where N >= 3`, want: "a,d"},
		{query: `T | where TimeGenerated < datetime(2024-05-01T10:15:00Z)`, want: "a,b"},
		{query: "T | extend I = ingestion_time() | order by I desc | take 2", want: "d,c", columns: 6},
		{query: "T | order by N asc", want: "b,c,a,d"},
		{query: "T | sort by Id", want: "d,c,b,a"},
		{query: "T | limit 1", want: "a"},
		{query: "T | project Id, N", want: "a,b,c,d", columns: 2},
		{query: "T | summarize count() by Category", want: "SyntaxError"},
		{query: "T | where tolower(Provider) == 'x'", want: "SyntaxError"},
		{query: "T | where Id contains 'a'", want: "SyntaxError"},
		{query: "T | order by Id asc, N desc", want: "SyntaxError"},
		{query: `T | where Id == "unterminated`, want: "SyntaxError"},
		{query: "Nope | take 1", want: "SemanticError"},
		{query: "T | where Missing == 1", want: "SemanticError"},
	}
	for _, tc := range cases {
		t.Run(tc.query, func(t *testing.T) {
			q := tc.query
			res, err := c.QueryWorkspace(context.Background(), ws, azlogs.QueryBody{Query: &q}, nil)
			if err != nil {
				var re *azcore.ResponseError
				if !errors.As(err, &re) || re.StatusCode != 400 || re.ErrorCode != "BadArgumentError" {
					t.Fatalf("err = %v", err)
				}
				if !strings.Contains(err.Error(), `"code": "`+tc.want+`"`) {
					t.Errorf("error does not carry inner code %s: %v", tc.want, err)
				}
				return
			}
			var ids []string
			idCol := -1
			for i, col := range res.Tables[0].Columns {
				if *col.Name == "Id" {
					idCol = i
				}
			}
			for _, r := range res.Tables[0].Rows {
				ids = append(ids, r[idCol].(string))
			}
			if got := strings.Join(ids, ","); got != tc.want {
				t.Errorf("rows %s, want %s", got, tc.want)
			}
			if tc.columns > 0 && len(res.Tables[0].Columns) != tc.columns {
				t.Errorf("%d columns, want %d", len(res.Tables[0].Columns), tc.columns)
			}
		})
	}
	if n := len(s.Rejected()); n != 5 {
		t.Errorf("%d queries recorded as rejected, want the 5 syntax errors", n)
	}
}

// TestFaults checks the error answers: authentication, workspace,
// throttling, partial errors and truncation.
func TestFaults(t *testing.T) {
	s := newServer(t, Options{Workspaces: []string{ws}})
	s.LoadTables(testTable())
	c := newClient(t, s, staticToken(issue(t, s, s.Audience(), 0)))
	q := "T"
	ctx := context.Background()

	// No Authorization header: 401.
	resp, err := s.HTTPClient().Post(s.URL()+"/v1/workspaces/"+ws+"/query", "application/json", strings.NewReader(`{"query":"T"}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 401 || !strings.Contains(string(b), "AuthenticationFailed") {
		t.Errorf("no token: %d %s", resp.StatusCode, b)
	}

	expectCode := func(name string, err error, status int, code string) {
		t.Helper()
		var re *azcore.ResponseError
		if !errors.As(err, &re) || re.StatusCode != status || re.ErrorCode != code {
			t.Errorf("%s: err = %v, want %d %s", name, err, status, code)
		}
	}
	// Tokens the query API refuses: each a 403 that says why and does not
	// echo the token.
	other := newServer(t, Options{})
	for _, tc := range []struct {
		name, token, reason string
	}{
		{"forged token", "forged", "malformed token"},
		{"another authority", issue(t, other, s.Audience(), 0), "signature does not verify"},
		{"another resource", issue(t, s, "https://management.azure.com", 0), "audience mismatch"},
		{"expired", issue(t, s, s.Audience(), -time.Minute), "expired"},
	} {
		_, err = newClient(t, s, staticToken(tc.token)).QueryWorkspace(ctx, ws, azlogs.QueryBody{Query: &q}, nil)
		expectCode(tc.name, err, 403, "InvalidAuthenticationToken")
		if err != nil && (!strings.Contains(err.Error(), tc.reason) || strings.Contains(err.Error(), tc.token)) {
			t.Errorf("%s: error lacks %q or echoes the token: %v", tc.name, tc.reason, err)
		}
	}
	_, err = c.QueryWorkspace(ctx, "00000000-0000-0000-0000-000000000000", azlogs.QueryBody{Query: &q}, nil)
	expectCode("unknown workspace", err, 404, "WorkspaceNotFoundError")

	s.Throttle(1, "12")
	var raw *http.Response
	_, err = c.QueryWorkspace(runtime.WithCaptureResponse(ctx, &raw), ws, azlogs.QueryBody{Query: &q}, nil)
	expectCode("throttled", err, 429, "ThrottledError")
	if raw == nil || raw.Header.Get("Retry-After") != "12" {
		t.Errorf("429 without Retry-After: 12")
	}

	s.FailPartial(1)
	res, err := c.QueryWorkspace(ctx, ws, azlogs.QueryBody{Query: &q}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Error == nil || res.Error.Code != "PartialError" || len(res.Tables[0].Rows) != 2 {
		t.Errorf("partial: error %v, %d rows; want PartialError and 2 of 4 rows", res.Error, len(res.Tables[0].Rows))
	}

	s.SetLimits(3, 0)
	res, err = c.QueryWorkspace(ctx, ws, azlogs.QueryBody{Query: &q}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Error == nil || !strings.Contains(res.Error.Error(), "record count limit 3") || len(res.Tables[0].Rows) != 3 {
		t.Errorf("row limit: error %v, %d rows", res.Error, len(res.Tables[0].Rows))
	}
	s.SetLimits(0, 150)
	res, err = c.QueryWorkspace(ctx, ws, azlogs.QueryBody{Query: &q}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Error == nil || !strings.Contains(res.Error.Error(), "data size limit 150") || len(res.Tables[0].Rows) >= 4 {
		t.Errorf("size limit: error %v, %d rows", res.Error, len(res.Tables[0].Rows))
	}
	s.SetLimits(0, 0)

	// Timespan applies to TimeGenerated; statistics are returned on request.
	span := azlogs.NewTimeInterval(time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC), time.Date(2024, 5, 1, 10, 15, 0, 0, time.UTC))
	stats := true
	res, err = c.QueryWorkspace(ctx, ws, azlogs.QueryBody{Query: &q, Timespan: &span}, &azlogs.QueryWorkspaceOptions{Options: &azlogs.QueryOptions{Statistics: &stats}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Tables[0].Rows) != 1 || res.Statistics == nil {
		t.Errorf("timespan: %d rows (want 1: 'b' generated 10:09), statistics %s", len(res.Tables[0].Rows), res.Statistics)
	}
	last := s.Queries()[len(s.Queries())-1]
	if last.Prefer != "include-statistics=true" || last.Timespan != string(span) {
		t.Errorf("recorded %+v", last)
	}
}

// TestBatch answers the $batch envelope with per-request statuses.
func TestBatch(t *testing.T) {
	s := newServer(t, Options{Workspaces: []string{ws}})
	s.LoadTables(testTable())
	c := newClient(t, s, staticToken(issue(t, s, s.Audience(), 0)))
	q1, q2 := "T | take 2", "T | summarize count()"
	id1, id2, w := "1", "2", ws
	res, err := c.QueryBatch(context.Background(), azlogs.BatchRequest{Requests: []azlogs.BatchQueryRequest{
		{Body: &azlogs.QueryBody{Query: &q1}, ID: &id1, WorkspaceID: &w},
		{Body: &azlogs.QueryBody{Query: &q2}, ID: &id2, WorkspaceID: &w},
	}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Responses) != 2 {
		t.Fatalf("%d responses", len(res.Responses))
	}
	r1, r2 := res.Responses[0], res.Responses[1]
	if *r1.Status != 200 || len(r1.Body.Tables[0].Rows) != 2 {
		t.Errorf("first: status %d", *r1.Status)
	}
	if *r2.Status != 400 || r2.Body.Error == nil || r2.Body.Error.Code != "BadArgumentError" {
		t.Errorf("second: status %d error %v", *r2.Status, r2.Body.Error)
	}
}

// TestEntraAuthority: a real azidentity ClientSecretCredential gets a
// token from the server's authority and the query API accepts it; a wrong
// secret is refused.
func TestEntraAuthority(t *testing.T) {
	s := newServer(t, Options{})
	s.LoadTables(testTable())
	s.Authority().AddClient("tenant-1", "app-1", "right-secret")
	opts := func() *azidentity.ClientSecretCredentialOptions {
		return &azidentity.ClientSecretCredentialOptions{
			ClientOptions:            azcore.ClientOptions{Cloud: cloudFor(s), Transport: s.HTTPClient()},
			DisableInstanceDiscovery: true,
		}
	}
	good, err := azidentity.NewClientSecretCredential("tenant-1", "app-1", "right-secret", opts())
	if err != nil {
		t.Fatal(err)
	}
	q := "T | take 1"
	for range 2 {
		if _, err := newClient(t, s, good).QueryWorkspace(context.Background(), ws, azlogs.QueryBody{Query: &q}, nil); err != nil {
			t.Fatalf("query with a client secret credential: %v", err)
		}
	}
	if n, _ := s.Authority().Requests(); n != 1 {
		t.Errorf("%d token requests for one credential, want 1 (cached)", n)
	}
	bad, err := azidentity.NewClientSecretCredential("tenant-1", "app-1", "wrong-secret", opts())
	if err != nil {
		t.Fatal(err)
	}
	_, err = newClient(t, s, bad).QueryWorkspace(context.Background(), ws, azlogs.QueryBody{Query: &q}, nil)
	if err == nil || !strings.Contains(err.Error(), "AADSTS7000215") {
		t.Errorf("wrong secret: err = %v", err)
	}
	if strings.Contains(fmt.Sprint(err), "wrong-secret") {
		t.Errorf("error echoes the secret")
	}
}

func TestParseTimespan(t *testing.T) {
	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		in       string
		from, to time.Time
		err      bool
	}{
		{in: ""},
		{in: "PT12H", from: now.Add(-12 * time.Hour), to: now},
		{in: "P1DT30M", from: now.Add(-24*time.Hour - 30*time.Minute), to: now},
		{in: "2024-05-01T00:00:00Z/2024-05-01T06:00:00Z", from: now.Add(-12 * time.Hour), to: now.Add(-6 * time.Hour)},
		{in: "2024-05-01T00:00:00Z/PT1H", from: now.Add(-12 * time.Hour), to: now.Add(-11 * time.Hour)},
		{in: "PT1H/2024-05-01T06:00:00Z", from: now.Add(-7 * time.Hour), to: now.Add(-6 * time.Hour)},
		{in: "P1Y", err: true},
		{in: "12H", err: true},
		{in: "PT1H/PT2H", err: true},
		{in: "PT", err: true},
	}
	for _, tc := range cases {
		from, to, err := parseTimespan(tc.in, now)
		if (err != nil) != tc.err || !from.Equal(tc.from) || !to.Equal(tc.to) {
			t.Errorf("parseTimespan(%q) = %v, %v, %v", tc.in, from, to, err)
		}
	}
}
