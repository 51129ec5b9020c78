package web

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/custody-audit/custody/queries"
)

// maxQueryRows bounds a canned query's rows in the page (the CSV download
// streams them all).
const maxQueryRows = 10000

type paramInfo struct {
	Name     string `json:"name"`
	Type     string `json:"type"`
	Kind     string `json:"kind,omitempty"`
	Help     string `json:"help"`
	Default  string `json:"default"`
	Required bool   `json:"required"`
	Min      *int64 `json:"min,omitempty"`
	Max      *int64 `json:"max,omitempty"`
}

type queryInfo struct {
	Name     string      `json:"name"`
	Title    string      `json:"title"`
	Question string      `json:"question"`
	Why      string      `json:"why"`
	MITRE    []string    `json:"mitre"`
	Window   string      `json:"window"`
	Params   []paramInfo `json:"params"`
}

func (s *Server) handleQueries(w http.ResponseWriter, r *http.Request) error {
	var out []queryInfo
	for _, q := range s.cat.List() {
		qi := queryInfo{Name: q.Name, Title: q.Title, Question: q.Question, Why: q.Why, MITRE: q.MITRE, Window: q.Window.String(), Params: []paramInfo{}}
		if qi.MITRE == nil {
			qi.MITRE = []string{}
		}
		for _, p := range q.Params {
			qi.Params = append(qi.Params, paramInfo{p.Name, p.Type, p.Kind, p.Help, p.Default, p.Required, p.Min, p.Max})
		}
		out = append(out, qi)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// queryArgs reads a canned query's arguments from the query string: its
// declared parameters as p.<name>, the window as from and to.
func queryArgs(q *queries.Query, v url.Values) (map[string]string, error) {
	args := map[string]string{}
	for k, vals := range v {
		switch {
		case k == "from" || k == "to" || k == "format":
			continue
		case strings.HasPrefix(k, "p."):
			name := strings.TrimPrefix(k, "p.")
			found := false
			for _, p := range q.Params {
				found = found || p.Name == name
			}
			if !found {
				return nil, badRequest("query %s has no parameter %q", q.Name, trimForError(name))
			}
			if len(vals) != 1 {
				return nil, badRequest("parameter %s given more than once", trimForError(name))
			}
			if vals[0] != "" {
				args[name] = vals[0]
			}
		default:
			return nil, badRequest("unknown parameter %q", trimForError(k))
		}
	}
	return args, nil
}

func (s *Server) handleQuery(w http.ResponseWriter, r *http.Request) error {
	q, err := s.cat.Get(r.PathValue("name"))
	if err != nil {
		return &apiError{errNotFound, fmt.Sprintf("no query named %q", trimForError(r.PathValue("name")))}
	}
	v := r.URL.Query()
	args, err := queryArgs(q, v)
	if err != nil {
		return err
	}
	from, to := q.DefaultWindow(s.now())
	if v.Get("from") != "" || v.Get("to") != "" {
		if from, to, err = parseWindow(v.Get("from"), v.Get("to"), s.now(), q.Window); err != nil {
			return err
		}
	}
	params, err := q.Bind(args, from, to)
	if err != nil {
		if errors.Is(err, queries.ErrBadParam) || errors.Is(err, queries.ErrBadWindow) {
			return badRequest("%s", err.Error())
		}
		return err
	}
	format := v.Get("format")
	if format != "" && format != "json" && format != "csv" {
		return badRequest("format: want json or csv")
	}
	rows, err := queries.Runner{Engine: s.eng, Database: s.db}.RunBound(r.Context(), q, params)
	if err != nil {
		return fmt.Errorf("run %s: %w", q.Name, err)
	}
	defer rows.Close()
	if format == "csv" {
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s.csv"`, q.Name))
		if _, err := queries.Render(w, rows, queries.RenderOptions{Format: queries.FormatCSV}); err != nil {
			s.log.ErrorContext(r.Context(), "csv download failed", "query", q.Name, "err", err)
		}
		return nil
	}
	cols := rows.Columns()
	out := map[string]any{"query": q.Name, "from": formatEventTime(from), "to": formatEventTime(to)}
	names := make([]map[string]string, len(cols))
	for i, c := range cols {
		names[i] = map[string]string{"name": c.Name, "type": c.Type}
	}
	var data [][]string
	truncated := false
	for rows.Next() {
		if len(data) == maxQueryRows {
			truncated = true
			break
		}
		data = append(data, append([]string(nil), rows.Values()...))
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("run %s: %w", q.Name, err)
	}
	if data == nil {
		data = [][]string{}
	}
	out["columns"], out["rows"], out["truncated"] = names, data, truncated
	writeJSON(w, http.StatusOK, out)
	return nil
}
