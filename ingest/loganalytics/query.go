package loganalytics

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/monitor/query/azlogs"
)

// IngestionTimeColumn is the column the source adds to every query to
// learn each row's ingestion_time(); it is not part of the message body.
const IngestionTimeColumn = "_CustodyIngestionTime"

// querySuffix is appended to every rendered template: the ingestion time
// column, the order the rows are handed out in, and the row cap (one more
// than MaxRows, so an overflow is visible).
const querySuffix = "\n| extend " + IngestionTimeColumn + " = ingestion_time()" +
	"\n| order by " + IngestionTimeColumn + " asc" +
	"\n| take %d"

// buildQuery renders the full query text for one window (from, to] in µs.
func (s *Source) buildQuery(t *tableState, from, to int64) (string, error) {
	q, err := renderQuery(t.template, t.name, time.UnixMicro(from), time.UnixMicro(to))
	if err != nil {
		return "", fmt.Errorf("query template: %w", err)
	}
	return q + fmt.Sprintf(querySuffix, s.cfg.MaxRows+1), nil
}

// incompleteError means a result cannot be used whole: truncated at a
// limit or partially failed. The window must be split.
type incompleteError struct{ reason string }

func (e *incompleteError) Error() string { return "incomplete result: " + e.reason }

// throttledError means the service kept answering 429.
type throttledError struct{ retryAfter time.Duration }

func (e *throttledError) Error() string {
	return fmt.Sprintf("throttled (retry after %s)", e.retryAfter)
}

// missingTableError means the workspace has no such table (yet): a
// diagnostic setting that has never sent a record creates none.
type missingTableError struct{ table string }

func (e *missingTableError) Error() string { return "table " + e.table + " not found" }

// query runs one window query, retrying throttled requests.
func (s *Source) query(ctx context.Context, client *azlogs.Client, t *tableState, from, to int64) ([]fetchedRow, error) {
	text, err := s.buildQuery(t, from, to)
	if err != nil {
		return nil, err
	}
	var qopts *azlogs.QueryWorkspaceOptions
	if s.cfg.ServerTimeout > 0 {
		wait := int(s.cfg.ServerTimeout / time.Second)
		qopts = &azlogs.QueryWorkspaceOptions{Options: &azlogs.QueryOptions{Wait: &wait}}
	}
	for attempt := 0; ; attempt++ {
		var raw *http.Response
		res, err := client.QueryWorkspace(runtime.WithCaptureResponse(ctx, &raw), s.cfg.WorkspaceID,
			azlogs.QueryBody{Query: &text}, qopts)
		if err == nil {
			return s.decode(t, res, raw)
		}
		var re *azcore.ResponseError
		if !errors.As(err, &re) {
			return nil, fmt.Errorf("query: %w", err)
		}
		switch {
		case re.StatusCode == http.StatusTooManyRequests:
			delay := retryAfter(re.RawResponse, attempt)
			if delay > s.cfg.MaxRetryAfter {
				delay = s.cfg.MaxRetryAfter
			}
			if attempt >= s.cfg.ThrottleRetries {
				return nil, &throttledError{retryAfter: delay}
			}
			s.log.InfoContext(ctx, "query throttled; waiting", "table", t.name,
				"retry_after", delay.String(), "attempt", attempt+1)
			if err := s.opts.Sleep(ctx, delay); err != nil {
				return nil, fmt.Errorf("wait for retry-after: %w", err)
			}
			continue
		case re.StatusCode == http.StatusBadRequest && isMissingTable(re):
			return nil, &missingTableError{table: t.name}
		}
		return nil, fmt.Errorf("query: %w", err)
	}
}

// retryAfter reads the wait a 429 asks for: retry-after-ms,
// x-ms-retry-after-ms, then Retry-After (seconds or an HTTP date). Without
// any, it backs off exponentially from one second.
func retryAfter(resp *http.Response, attempt int) time.Duration {
	if resp != nil {
		for _, h := range []string{"Retry-After-Ms", "X-Ms-Retry-After-Ms"} {
			if v := resp.Header.Get(h); v != "" {
				if ms, err := strconv.ParseInt(v, 10, 64); err == nil && ms >= 0 {
					return time.Duration(ms) * time.Millisecond
				}
			}
		}
		if v := resp.Header.Get("Retry-After"); v != "" {
			if secs, err := strconv.ParseInt(v, 10, 64); err == nil && secs >= 0 {
				return time.Duration(secs) * time.Second
			}
			if at, err := http.ParseTime(v); err == nil {
				return max(time.Until(at), 0)
			}
		}
	}
	return time.Second << min(attempt, 8)
}

// isMissingTable recognises Kusto's "Failed to resolve table" semantic
// error for the queried table.
func isMissingTable(re *azcore.ResponseError) bool {
	if re.RawResponse == nil {
		return false
	}
	body, err := runtime.Payload(re.RawResponse)
	if err != nil {
		return false
	}
	var e struct {
		Error struct {
			Code       string `json:"code"`
			InnerError struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"innererror"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) != nil {
		return false
	}
	return e.Error.InnerError.Code == "SemanticError" &&
		strings.Contains(e.Error.InnerError.Message, "Failed to resolve table")
}

// rawResults mirrors the response with every cell kept as the exact JSON
// the service sent, so long integers and decimals keep their digits (the
// SDK's Row decodes numbers into float64).
type rawResults struct {
	Tables []struct {
		Name    string `json:"name"`
		Columns []struct {
			Name string `json:"name"`
			Type string `json:"type"`
		} `json:"columns"`
		Rows [][]json.RawMessage `json:"rows"`
	} `json:"tables"`
}

// decode turns a successful response into rows, or an incompleteError.
func (s *Source) decode(t *tableState, res azlogs.QueryWorkspaceResponse, raw *http.Response) ([]fetchedRow, error) {
	if res.Error != nil {
		return nil, &incompleteError{reason: partialReason(res.Error)}
	}
	if raw == nil {
		return nil, errors.New("decode response: no raw response captured")
	}
	payload, err := runtime.Payload(raw)
	if err != nil {
		return nil, fmt.Errorf("decode response: %w", err)
	}
	var rr rawResults
	if err := json.Unmarshal(payload, &rr); err != nil {
		return nil, fmt.Errorf("decode response: %w", err)
	}
	if len(rr.Tables) == 0 {
		return nil, errors.New("decode response: no result table")
	}
	tbl := rr.Tables[0]
	if len(tbl.Rows) > s.cfg.MaxRows {
		return nil, &incompleteError{reason: fmt.Sprintf("more than max_rows (%d) rows", s.cfg.MaxRows)}
	}
	ingCol := -1
	for i, c := range tbl.Columns {
		if c.Name == IngestionTimeColumn {
			ingCol = i
		}
	}
	if ingCol < 0 {
		return nil, fmt.Errorf("decode response: column %s missing; the template for %s must not drop it", IngestionTimeColumn, t.name)
	}
	rows := make([]fetchedRow, 0, len(tbl.Rows))
	var body bytes.Buffer
	for n, cells := range tbl.Rows {
		if len(cells) != len(tbl.Columns) {
			return nil, fmt.Errorf("decode response: row %d has %d cells for %d columns", n+1, len(cells), len(tbl.Columns))
		}
		var ts string
		if err := json.Unmarshal(cells[ingCol], &ts); err != nil || ts == "" {
			return nil, fmt.Errorf("decode response: row %d: ingestion time is null; the template for %s must keep ingestion_time() (extend before project/summarize)", n+1, t.name)
		}
		ingested, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			return nil, fmt.Errorf("decode response: row %d: ingestion time: %w", n+1, err)
		}
		body.Reset()
		body.WriteByte('{')
		first := true
		for i, c := range tbl.Columns {
			if i == ingCol {
				continue
			}
			if !first {
				body.WriteByte(',')
			}
			first = false
			name, _ := json.Marshal(c.Name) // a string always marshals
			body.Write(name)
			body.WriteByte(':')
			if err := json.Compact(&body, cells[i]); err != nil {
				return nil, fmt.Errorf("decode response: row %d column %s: %w", n+1, c.Name, err)
			}
		}
		body.WriteByte('}')
		b := bytes.Clone(body.Bytes())
		rows = append(rows, fetchedRow{ingested: ingested, body: b, key: hashRow(ingested, b)})
	}
	return rows, nil
}

// partialReason summarises a PartialError for logs: the codes and
// messages of its details.
func partialReason(e *azlogs.ErrorInfo) string {
	var pe struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Details []struct {
			Code       string `json:"code"`
			Message    string `json:"message"`
			InnerError struct {
				Message string `json:"message"`
			} `json:"innererror"`
		} `json:"details"`
	}
	if json.Unmarshal([]byte(e.Error()), &pe) != nil {
		return e.Code
	}
	parts := []string{pe.Code}
	for _, d := range pe.Details {
		msg := d.InnerError.Message
		if msg == "" {
			msg = d.Message
		}
		parts = append(parts, d.Code+": "+msg)
	}
	return strings.Join(parts, "; ")
}
