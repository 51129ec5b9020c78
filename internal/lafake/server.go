// Package lafake is a local HTTPS server that answers the Azure Monitor Log
// Analytics query API (v1) the way the real service does, so the Log
// Analytics source can be tested with the real azlogs client and a real
// azidentity credential, over TLS, without a workspace.
//
// It exists because the behaviours that decide whether a collector loses or
// duplicates rows — ingestion-time windows, result truncation at the row or
// size limit, PartialError next to tables, 429 with Retry-After — only show
// up against a peer that speaks the wire protocol. The server therefore:
//
//   - serves POST /v1/workspaces/{id}/query and POST /v1/$batch with the
//     response shape of the REST spec (tables/columns/rows, "error" with
//     code PartialError next to tables, OneAPI error objects for 4xx);
//   - interprets a documented KQL subset (see kql.go) over in-memory
//     tables whose rows carry an ingestion time, and rejects any other
//     query loudly with a 400 SyntaxError, recording it in Rejected;
//   - starts an internal/entrafake authority beside itself, so the real
//     azidentity credentials (client secret, workload identity, managed
//     identity) get signed JWTs for the query API's resource offline, and
//     checks the bearer token of every query through that authority's
//     Verify: signature, issuer, audience (Options.Audience) and expiry. A
//     token that fails is refused with 403 InvalidAuthenticationToken, the
//     reason (never the token) in the error's innererror;
//   - injects faults on demand: throttling, partial errors, row and size
//     limits.
//
// Spec: https://learn.microsoft.com/azure/azure-monitor/logs/api/overview
// and the REST examples under Azure/azure-rest-api-specs
// specification/operationalinsights/data-plane.
package lafake

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/custody-audit/custody/internal/entrafake"
)

// Limits of the real service: a query result is truncated at 500,000
// records or 64 MiB, whichever comes first, and the response then carries
// a PartialError.
const (
	DefaultRowLimit  = 500000
	DefaultSizeLimit = 64 << 20
)

// DefaultAudience is the token audience of the public-cloud query API.
const DefaultAudience = "https://api.loganalytics.io"

// Column is one column of a table schema, as the API describes it.
type Column struct {
	Name string `json:"name"`
	// Type is the Kusto type name: string, datetime, dynamic, long, int,
	// real, bool, guid, timespan, decimal.
	Type string `json:"type"`
}

// Row is one stored row. Values are positional, one per table column, in
// the JSON form the API returns (datetime as RFC 3339 strings, dynamic as
// JSON strings, numbers as numbers); missing trailing values are null.
type Row struct {
	// Ingested is the row's ingestion_time().
	Ingested time.Time `json:"ingested"`
	Values   []any     `json:"values"`
}

// Table is an in-memory Log Analytics table.
type Table struct {
	Name    string   `json:"name"`
	Columns []Column `json:"columns"`
	Rows    []Row    `json:"rows"`
}

// QueryRecord is what the server saw of one query request.
type QueryRecord struct {
	Workspace string
	Query     string
	Timespan  string
	Prefer    string
	// Status is the HTTP status answered; Rows the rows returned;
	// Partial whether the answer carried a PartialError.
	Status  int
	Rows    int
	Partial bool
}

// Options configures a Server.
type Options struct {
	// Workspaces are the workspace ids the server answers for. Empty means
	// any id.
	Workspaces []string
	// Audience is the resource (scope without "/.default") the authority
	// issues tokens for and the query API requires as the token audience.
	// Empty means DefaultAudience.
	Audience string
	// TokenLifetime is how long issued tokens are valid. Zero means
	// entrafake.DefaultTokenLifetime.
	TokenLifetime time.Duration
}

type fault struct {
	throttle   int
	retryAfter string
	partial    int
}

// Server is a running fake query API. All methods are safe for concurrent
// use.
type Server struct {
	srv      *httptest.Server
	auth     *entrafake.Authority
	client   *http.Client
	opts     Options
	audience string

	mu        sync.Mutex
	tables    map[string]*Table
	faults    fault
	rowLimit  int
	sizeLimit int
	queries   []QueryRecord
	rejected  []string
}

// New starts a server, and the Entra ID authority that issues its tokens,
// on loopback ports with self-signed certificates. Close it when done.
func New(opts Options) (*Server, error) {
	s := &Server{
		opts:      opts,
		audience:  strings.TrimRight(opts.Audience, "/"),
		tables:    map[string]*Table{},
		rowLimit:  DefaultRowLimit,
		sizeLimit: DefaultSizeLimit,
	}
	if s.audience == "" {
		s.audience = DefaultAudience
	}
	auth, err := entrafake.New(entrafake.Options{Resources: []string{s.audience}, TokenLifetime: opts.TokenLifetime})
	if err != nil {
		return nil, fmt.Errorf("lafake authority: %w", err)
	}
	s.auth = auth
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/workspaces/{workspace}/query", s.handleQuery)
	mux.HandleFunc("POST /v1/$batch", s.handleBatch)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, oneAPIError{Code: "PathNotFoundError", Message: "The requested path does not exist"})
	})
	s.srv = httptest.NewTLSServer(mux)
	// the client trusts the server's and the authority's certificates
	roots := x509.NewCertPool()
	roots.AddCert(s.srv.Certificate())
	roots.AddCert(auth.Certificate())
	s.client = &http.Client{Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2: true,
	}}
	return s, nil
}

// URL is the https base URL: the query endpoint for the azlogs cloud
// configuration.
func (s *Server) URL() string { return s.srv.URL }

// Authority is the Entra ID authority that issues the tokens the server
// accepts: register applications on it (AddClient, AddFederatedClient),
// turn on managed identity (EnableManagedIdentity), mint tokens
// (IssueToken) and point credentials at its AuthorityHost.
func (s *Server) Authority() *entrafake.Authority { return s.auth }

// Audience is the token audience the server expects.
func (s *Server) Audience() string { return s.audience }

// HTTPClient returns an *http.Client that trusts the certificates of the
// server and its authority and nothing else, for the query client and the
// credential alike.
func (s *Server) HTTPClient() *http.Client { return s.client }

// Close shuts the server and its authority down.
func (s *Server) Close() {
	s.srv.Close()
	s.auth.Close()
	s.client.CloseIdleConnections()
}

// LoadTables adds or replaces tables.
func (s *Server) LoadTables(tables ...Table) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range tables {
		t := t
		t.Rows = append([]Row(nil), t.Rows...)
		s.tables[t.Name] = &t
	}
}

// AppendRows adds rows to an existing table, as if they had just been
// ingested (their Ingested time is whatever the caller set).
func (s *Server) AppendRows(table string, rows ...Row) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tables[table]
	if !ok {
		return fmt.Errorf("append rows: no table %q", table)
	}
	t.Rows = append(t.Rows, rows...)
	return nil
}

// Throttle makes the next n query requests fail with 429 Too Many
// Requests and the given Retry-After header value (seconds or an HTTP
// date; empty omits the header).
func (s *Server) Throttle(n int, retryAfter string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.throttle = n
	s.faults.retryAfter = retryAfter
}

// FailPartial makes the next n queries that return at least one row answer
// 200 with half of their rows and a PartialError, as the service does when
// part of the query failed.
func (s *Server) FailPartial(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.partial = n
}

// SetLimits sets the result truncation limits (rows and serialized row
// bytes). Zero or negative restores the service default.
func (s *Server) SetLimits(rows, bytes int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rowLimit, s.sizeLimit = rows, bytes
	if rows <= 0 {
		s.rowLimit = DefaultRowLimit
	}
	if bytes <= 0 {
		s.sizeLimit = DefaultSizeLimit
	}
}

// Queries returns the query requests seen so far, oldest first.
func (s *Server) Queries() []QueryRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]QueryRecord(nil), s.queries...)
}

// Rejected returns the queries the server could not interpret.
func (s *Server) Rejected() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.rejected...)
}

// oneAPIError is the error object of the Log Analytics API.
type oneAPIError struct {
	Code       string         `json:"code"`
	Message    string         `json:"message"`
	Details    []oneAPIError  `json:"details,omitempty"`
	InnerError map[string]any `json:"innererror,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, e oneAPIError) {
	writeJSON(w, status, map[string]any{"error": e})
}

func badArgument(inner, msg string) oneAPIError {
	return oneAPIError{
		Code:    "BadArgumentError",
		Message: "The request had some invalid properties",
		InnerError: map[string]any{
			"code":    inner,
			"message": msg,
		},
	}
}

// authorize checks the bearer token and answers 401/403 like the service.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) bool {
	h := r.Header.Get("Authorization")
	if h == "" {
		writeError(w, http.StatusUnauthorized, oneAPIError{Code: "AuthenticationFailed", Message: "Authentication failed. The 'Authorization' header is missing."})
		return false
	}
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok {
		writeError(w, http.StatusForbidden, invalidToken("the Authorization header is not a bearer token"))
		return false
	}
	// Verify's errors name the reason and the audiences, never the token.
	if _, err := s.auth.Verify(tok, s.audience); err != nil {
		writeError(w, http.StatusForbidden, invalidToken(err.Error()))
		return false
	}
	return true
}

// invalidToken is the 403 answer to a bearer token the authority did not
// issue for this API or that has expired; reason must not hold the token.
func invalidToken(reason string) oneAPIError {
	return oneAPIError{
		Code:       "InvalidAuthenticationToken",
		Message:    "The access token is invalid.",
		InnerError: map[string]any{"code": "TokenValidationFailed", "message": reason},
	}
}

func (s *Server) workspaceKnown(id string) bool {
	if len(s.opts.Workspaces) == 0 {
		return true
	}
	for _, w := range s.opts.Workspaces {
		if strings.EqualFold(w, id) {
			return true
		}
	}
	return false
}

// queryBody is the request body of the query API.
type queryBody struct {
	Query      *string  `json:"query"`
	Timespan   string   `json:"timespan,omitempty"`
	Workspaces []string `json:"workspaces,omitempty"`
}

// answer is the outcome of one query: an HTTP status and a JSON body, plus
// headers for throttling.
type answer struct {
	status  int
	body    any
	headers map[string]string
	rows    int
	partial bool
}

func (s *Server) handleQuery(w http.ResponseWriter, r *http.Request) {
	if !s.authorize(w, r) {
		return
	}
	var body queryBody
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	if err := dec.Decode(&body); err != nil {
		writeError(w, http.StatusBadRequest, badArgument("InvalidBody", "The request body is not valid JSON: "+err.Error()))
		return
	}
	prefer := r.Header.Get("Prefer")
	a := s.query(r.PathValue("workspace"), body, prefer)
	for k, v := range a.headers {
		w.Header().Set(k, v)
	}
	writeJSON(w, a.status, a.body)
}

// batchRequest and batchResponse are the $batch envelope.
type batchRequest struct {
	Requests []struct {
		ID        string            `json:"id"`
		Headers   map[string]string `json:"headers"`
		Body      queryBody         `json:"body"`
		Method    string            `json:"method"`
		Path      string            `json:"path"`
		Workspace string            `json:"workspace"`
	} `json:"requests"`
}

func (s *Server) handleBatch(w http.ResponseWriter, r *http.Request) {
	if !s.authorize(w, r) {
		return
	}
	var req batchRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<20)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, badArgument("InvalidBody", "The request body is not valid JSON: "+err.Error()))
		return
	}
	type resp struct {
		ID      string            `json:"id"`
		Status  int               `json:"status"`
		Headers map[string]string `json:"headers,omitempty"`
		Body    any               `json:"body"`
	}
	out := struct {
		Responses []resp `json:"responses"`
	}{Responses: []resp{}}
	for _, q := range req.Requests {
		if q.Path != "/query" || (q.Method != "" && q.Method != http.MethodPost) {
			out.Responses = append(out.Responses, resp{ID: q.ID, Status: http.StatusBadRequest,
				Body: map[string]any{"error": badArgument("InvalidPath", "Only POST /query is supported in a batch")}})
			continue
		}
		a := s.query(q.Workspace, q.Body, q.Headers["Prefer"])
		out.Responses = append(out.Responses, resp{ID: q.ID, Status: a.status, Headers: a.headers, Body: a.body})
	}
	writeJSON(w, http.StatusOK, out)
}

// preferences parses the Prefer header ("wait=600, include-statistics=true").
func preferences(h string) (wait int, stats, render bool, err error) {
	for _, part := range strings.Split(h, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "wait":
			n, convErr := strconv.Atoi(strings.TrimSpace(v))
			if convErr != nil || n < 0 || n > 600 {
				return 0, false, false, fmt.Errorf("wait must be an integer between 0 and 600, got %q", v)
			}
			wait = n
		case "include-statistics":
			stats = strings.EqualFold(strings.TrimSpace(v), "true")
		case "include-render":
			render = strings.EqualFold(strings.TrimSpace(v), "true")
		case "ai.include-error-payload", "include-dataSources":
		default:
			return 0, false, false, fmt.Errorf("unknown preference %q", k)
		}
	}
	return wait, stats, render, nil
}

// query runs one query request and records it.
func (s *Server) query(workspace string, body queryBody, prefer string) answer {
	rec := QueryRecord{Workspace: workspace, Prefer: prefer, Timespan: body.Timespan}
	if body.Query != nil {
		rec.Query = *body.Query
	}
	a := s.evaluate(workspace, body, prefer)
	rec.Status, rec.Rows, rec.Partial = a.status, a.rows, a.partial
	s.mu.Lock()
	s.queries = append(s.queries, rec)
	s.mu.Unlock()
	return a
}

func (s *Server) evaluate(workspace string, body queryBody, prefer string) answer {
	s.mu.Lock()
	if s.faults.throttle > 0 {
		s.faults.throttle--
		h := map[string]string{}
		if s.faults.retryAfter != "" {
			h["Retry-After"] = s.faults.retryAfter
		}
		s.mu.Unlock()
		return answer{status: http.StatusTooManyRequests, headers: h, body: map[string]any{"error": oneAPIError{
			Code: "ThrottledError", Message: "Your request was throttled: too many requests. Retry after the interval in the Retry-After header.",
		}}}
	}
	s.mu.Unlock()

	if !s.workspaceKnown(workspace) {
		return answer{status: http.StatusNotFound, body: map[string]any{"error": oneAPIError{
			Code: "WorkspaceNotFoundError", Message: fmt.Sprintf("The workspace %s could not be found", workspace),
		}}}
	}
	if len(body.Workspaces) > 0 {
		return s.reject(strings.Join(body.Workspaces, ","), badArgument("InvalidWorkspaces", "additional workspaces are not supported by this server"))
	}
	_, stats, render, err := preferences(prefer)
	if err != nil {
		return answer{status: http.StatusBadRequest, body: map[string]any{"error": badArgument("InvalidPreferHeader", err.Error())}}
	}
	if body.Query == nil || strings.TrimSpace(*body.Query) == "" {
		return answer{status: http.StatusBadRequest, body: map[string]any{"error": badArgument("MissingQuery", "The query is missing")}}
	}
	from, to, err := parseTimespan(body.Timespan, time.Now())
	if err != nil {
		return answer{status: http.StatusBadRequest, body: map[string]any{"error": badArgument("InvalidTimespan", err.Error())}}
	}
	q, err := parseQuery(*body.Query)
	if err != nil {
		return s.reject(*body.Query, badArgument("SyntaxError", "A syntax error occurred: "+err.Error()))
	}

	s.mu.Lock()
	cols, rows, err := run(q, s.tables)
	rowLimit, sizeLimit := s.rowLimit, s.sizeLimit
	injectPartial := false
	if err == nil && len(rows) > 0 && s.faults.partial > 0 {
		s.faults.partial--
		injectPartial = true
	}
	s.mu.Unlock()
	if err != nil {
		if se, ok := err.(*semanticError); ok {
			return answer{status: http.StatusBadRequest, body: map[string]any{"error": badArgument("SemanticError", "A semantic error occurred: "+se.msg)}}
		}
		return s.reject(*body.Query, badArgument("SyntaxError", err.Error()))
	}
	if !from.IsZero() {
		rows = filterTimespan(cols, rows, from, to)
	}

	out := make([][]any, 0, len(rows))
	size := 0
	var partial *oneAPIError
	for _, r := range rows {
		if len(out) >= rowLimit {
			partial = partialError(codeTooLarge, fmt.Sprintf("Query result set has exceeded the internal record count limit %d records (E_QUERY_RESULT_SET_TOO_LARGE).", rowLimit))
			break
		}
		b, err := json.Marshal(r.values)
		if err != nil {
			return answer{status: http.StatusInternalServerError, body: map[string]any{"error": oneAPIError{Code: "InternalServerError", Message: "row cannot be encoded"}}}
		}
		if size+len(b) > sizeLimit {
			partial = partialError(codeTooLarge, fmt.Sprintf("Query result set has exceeded the internal data size limit %d bytes (E_QUERY_RESULT_SET_TOO_LARGE).", sizeLimit))
			break
		}
		size += len(b)
		out = append(out, r.values)
	}
	if injectPartial && partial == nil {
		out = out[:len(out)/2]
		partial = partialError("-2133196798", "Partial query failure: an extent could not be loaded (E_EXTENT_LOAD_FAILED).")
	}
	res := map[string]any{"tables": []any{map[string]any{
		"name":    "PrimaryResult",
		"columns": cols,
		"rows":    out,
	}}}
	if partial != nil {
		res["error"] = partial
	}
	if stats {
		res["statistics"] = map[string]any{"query": map[string]any{"executionTime": 0.001, "resourceUsage": map[string]any{}}}
	}
	if render {
		res["render"] = map[string]any{"visualization": "table"}
	}
	return answer{status: http.StatusOK, body: res, rows: len(out), partial: partial != nil}
}

func (s *Server) reject(text string, e oneAPIError) answer {
	s.mu.Lock()
	s.rejected = append(s.rejected, text)
	s.mu.Unlock()
	return answer{status: http.StatusBadRequest, body: map[string]any{"error": e}}
}

// codeTooLarge is the engine's inner error code for a result truncated at
// the row or size limit.
const codeTooLarge = "-2133196797"

// partialError is the PartialError the service returns next to the tables
// when part of a query failed or its result was truncated: an EngineError
// detail whose innererror carries the engine's code and message.
func partialError(engineCode, msg string) *oneAPIError {
	return &oneAPIError{
		Code:    "PartialError",
		Message: "There were some errors when processing your query.",
		Details: []oneAPIError{{
			Code:    "EngineError",
			Message: "Something went wrong processing your query on the server.",
			InnerError: map[string]any{
				"code":         engineCode,
				"message":      msg,
				"severity":     2,
				"severityName": "Error",
			},
		}},
	}
}

// parseTimespan reads the request's ISO 8601 timespan: "start/end",
// "start/duration", "duration/end" or a bare duration ending now. An empty
// timespan means no time restriction (zero times).
func parseTimespan(ts string, now time.Time) (time.Time, time.Time, error) {
	if ts == "" {
		return time.Time{}, time.Time{}, nil
	}
	a, b, twoParts := strings.Cut(ts, "/")
	if !twoParts {
		d, err := parseISODuration(a)
		if err != nil {
			return time.Time{}, time.Time{}, fmt.Errorf("timespan %q: %w", ts, err)
		}
		return now.Add(-d), now, nil
	}
	start, errA := parseDatetime(a)
	end, errB := parseDatetime(b)
	switch {
	case errA == nil && errB == nil:
		return start, end, nil
	case errA == nil:
		d, err := parseISODuration(b)
		if err != nil {
			return time.Time{}, time.Time{}, fmt.Errorf("timespan %q: %w", ts, err)
		}
		return start, start.Add(d), nil
	case errB == nil:
		d, err := parseISODuration(a)
		if err != nil {
			return time.Time{}, time.Time{}, fmt.Errorf("timespan %q: %w", ts, err)
		}
		return end.Add(-d), end, nil
	}
	return time.Time{}, time.Time{}, fmt.Errorf("timespan %q is not an ISO 8601 interval", ts)
}

// parseISODuration reads PnDTnHnMnS (weeks, months and years are not
// accepted: their length is ambiguous).
func parseISODuration(s string) (time.Duration, error) {
	rest, ok := strings.CutPrefix(s, "P")
	if !ok || rest == "" {
		return 0, fmt.Errorf("duration %q must start with P", s)
	}
	var d time.Duration
	inTime := false
	num := ""
	parts := 0
	for _, c := range rest {
		switch {
		case c == 'T':
			inTime = true
		case c >= '0' && c <= '9' || c == '.':
			num += string(c)
		default:
			f, err := strconv.ParseFloat(num, 64)
			if err != nil {
				return 0, fmt.Errorf("duration %q: bad number", s)
			}
			var unit time.Duration
			switch {
			case c == 'D' && !inTime:
				unit = 24 * time.Hour
			case c == 'H' && inTime:
				unit = time.Hour
			case c == 'M' && inTime:
				unit = time.Minute
			case c == 'S' && inTime:
				unit = time.Second
			default:
				return 0, fmt.Errorf("duration %q: unsupported designator %q", s, c)
			}
			d += time.Duration(f * float64(unit))
			num = ""
			parts++
		}
	}
	if num != "" || parts == 0 {
		return 0, fmt.Errorf("duration %q: no complete component", s)
	}
	return d, nil
}

// filterTimespan keeps rows whose TimeGenerated lies in [from, to), as the
// service applies the request timespan to TimeGenerated.
func filterTimespan(cols []Column, rows []resultRow, from, to time.Time) []resultRow {
	idx := -1
	for i, c := range cols {
		if c.Name == "TimeGenerated" {
			idx = i
		}
	}
	if idx < 0 {
		return rows
	}
	kept := rows[:0:0]
	for _, r := range rows {
		s, _ := r.values[idx].(string)
		t, err := parseDatetime(s)
		if err == nil && !t.Before(from) && t.Before(to) {
			kept = append(kept, r)
		}
	}
	return kept
}
