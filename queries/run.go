package queries

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/custody-audit/custody/storage/engine"
)

// Column is one result column: its name and ClickHouse type.
type Column struct {
	Name string
	Type string
}

// Numeric reports whether the column holds an integer or float, which JSON
// output writes as a number.
func (c Column) Numeric() bool {
	t := strings.TrimSuffix(strings.TrimPrefix(c.Type, "Nullable("), ")")
	return isIntType(t) || t == "Float32" || t == "Float64"
}

// Time reports whether the column is a DateTime or DateTime64.
func (c Column) Time() bool { return strings.HasPrefix(c.Type, "DateTime") }

// DefaultWindow is the query's default time window ending at now:
// [now-Window, now).
func (q *Query) DefaultWindow(now time.Time) (from, to time.Time) {
	to = now.UTC()
	return to.Add(-q.Window), to
}

// Bind validates args (parameter name -> value as a user types it) and the
// window, fills defaults, and returns the server-side parameters to run the
// query with. Unknown names, missing required values and values that do
// not fit their declared type are refused with errors wrapping
// ErrBadParam; a window with from not before to wraps ErrBadWindow.
func (q *Query) Bind(args map[string]string, from, to time.Time) (engine.Params, error) {
	if from.IsZero() || to.IsZero() {
		return nil, fmt.Errorf("%w: from and to are required", ErrBadWindow)
	}
	if !from.Before(to) {
		return nil, fmt.Errorf("%w: from %s is not before to %s", ErrBadWindow, from.UTC().Format(time.RFC3339Nano), to.UTC().Format(time.RFC3339Nano))
	}
	known := make(map[string]Param, len(q.Params))
	for _, p := range q.Params {
		known[p.Name] = p
	}
	var unknown []string
	for name := range args {
		if _, ok := known[name]; !ok {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return nil, fmt.Errorf("%w: query %s has no parameter %s (%s)", ErrBadParam, q.Name, strings.Join(quoteAll(unknown), ", "), q.paramList())
	}
	params := engine.Params{ParamFrom: FormatTime(from), ParamTo: FormatTime(to)}
	for _, p := range q.Params {
		v, given := args[p.Name]
		if !given {
			if p.Required {
				return nil, fmt.Errorf("%w: query %s needs --param %s=<%s>: %s", ErrBadParam, q.Name, p.Name, p.describe(), p.Help)
			}
			v = p.Default
		}
		if p.Required && strings.TrimSpace(v) == "" {
			return nil, fmt.Errorf("%w: query %s needs a non-empty %s: %s", ErrBadParam, q.Name, p.Name, p.Help)
		}
		b, err := p.Bind(v)
		if err != nil {
			return nil, err
		}
		params[p.Name] = b
	}
	return params, nil
}

func (q *Query) paramList() string {
	if len(q.Params) == 0 {
		return "it takes none besides --from and --to"
	}
	names := make([]string, 0, len(q.Params))
	for _, p := range q.Params {
		names = append(names, p.Name)
	}
	return "it takes " + strings.Join(names, ", ")
}

func quoteAll(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = fmt.Sprintf("%q", v)
	}
	return out
}

// Runner runs catalogue queries against one store.
type Runner struct {
	Engine engine.Engine
	// Database holds the events table; empty means DefaultDatabase.
	Database string
}

// Run validates args and the window (see Query.Bind), runs q on eng in the
// default database and returns its rows as a stream. The caller must
// Close the stream: while it is open it holds the engine.
func Run(ctx context.Context, eng engine.Engine, q *Query, args map[string]string, from, to time.Time) (*Rows, error) {
	return Runner{Engine: eng}.Run(ctx, q, args, from, to)
}

// Run is the package-level Run in r's database.
func (r Runner) Run(ctx context.Context, q *Query, args map[string]string, from, to time.Time) (*Rows, error) {
	params, err := q.Bind(args, from, to)
	if err != nil {
		return nil, err
	}
	return r.RunBound(ctx, q, params)
}

// RunBound runs q with parameters returned by Query.Bind.
func (r Runner) RunBound(ctx context.Context, q *Query, params engine.Params) (*Rows, error) {
	params, err := r.withDB(params)
	if err != nil {
		return nil, err
	}
	types, err := resultTypes(ctx, r.Engine, q.SQL, params)
	if err != nil {
		return nil, fmt.Errorf("query %s: %w", q.Name, err)
	}
	// Every column is read as text so that both engines scan it the
	// same way; the types tell renderers what it was.
	rows, err := r.Engine.Query(ctx, "SELECT COLUMNS('.*') APPLY toString FROM (\n"+q.SQL+"\n)", params)
	if err != nil {
		return nil, fmt.Errorf("query %s: %w", q.Name, err)
	}
	names := rows.Columns()
	if len(names) != len(types) {
		_ = rows.Close()
		return nil, fmt.Errorf("query %s: %d result columns but %d types", q.Name, len(names), len(types))
	}
	out := &Rows{rows: rows, header: slices.Clone(names), cols: make([]Column, len(names)), vals: make([]string, len(names)), ptrs: make([]any, len(names))}
	for i, n := range names {
		n = strings.TrimSuffix(strings.TrimPrefix(n, "toString("), ")")
		if len(n) > 1 && n[0] == '`' && n[len(n)-1] == '`' {
			n = n[1 : len(n)-1]
		}
		out.cols[i] = Column{Name: n, Type: types[i]}
		out.ptrs[i] = &out.vals[i]
	}
	return out, nil
}

// withDB returns a copy of params with the database bound.
func (r Runner) withDB(params engine.Params) (engine.Params, error) {
	db := r.Database
	if db == "" {
		db = DefaultDatabase
	}
	if !identifier.MatchString(db) {
		return nil, fmt.Errorf("database name %q must be a plain identifier", db)
	}
	out := make(engine.Params, len(params)+1)
	for k, v := range params {
		out[k] = v
	}
	out[ParamDB] = db
	return out, nil
}

var identifier = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// resultTypes returns the ClickHouse types of sql's result columns
// without running it: the type of a scalar subquery over no rows.
func resultTypes(ctx context.Context, eng engine.Engine, sql string, params engine.Params) ([]string, error) {
	rows, err := eng.Query(ctx, "SELECT toTypeName((SELECT tuple(*) FROM (\n"+sql+"\n) WHERE 0))", params)
	if err != nil {
		return nil, fmt.Errorf("result types: %w", err)
	}
	defer rows.Close()
	var t string
	for rows.Next() {
		if err := rows.Scan(&t); err != nil {
			return nil, fmt.Errorf("result types: %w", err)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("result types: %w", err)
	}
	if err := rows.Close(); err != nil {
		return nil, fmt.Errorf("result types: %w", err)
	}
	if in, ok := strings.CutPrefix(t, "Nullable("); ok {
		t = strings.TrimSuffix(in, ")")
	}
	in, ok := strings.CutPrefix(t, "Tuple(")
	if !ok || !strings.HasSuffix(in, ")") {
		return nil, fmt.Errorf("result types: unexpected %q", t)
	}
	return splitTypes(strings.TrimSuffix(in, ")")), nil
}

// splitTypes splits a list of ClickHouse types at the commas outside
// parentheses and quotes: "DateTime64(6, 'UTC'), String".
func splitTypes(s string) []string {
	var out []string
	depth, start := 0, 0
	quoted := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case quoted && c == '\\':
			i++
		case c == '\'':
			quoted = !quoted
		case quoted:
		case c == '(':
			depth++
		case c == ')':
			depth--
		case c == ',' && depth == 0:
			out = append(out, strings.TrimSpace(s[start:i]))
			start = i + 1
		}
	}
	return append(out, strings.TrimSpace(s[start:]))
}

// Rows is a query result stream, used like database/sql.Rows.
type Rows struct {
	rows engine.Rows
	// header is the engine's column names. The embedded engine's stream
	// repeats the header line at the start of every chunk of a result
	// spanning several blocks (chDB QueryStream with TSVWithNames); a row
	// equal to it is that repetition, not data: every value would have to
	// read "toString(<its own column>)".
	header []string
	cols   []Column
	vals   []string
	ptrs   []any
	err    error
}

// Columns returns the result columns.
func (r *Rows) Columns() []Column { return r.cols }

// Next advances to the next row.
func (r *Rows) Next() bool {
	if r.err != nil || !r.rows.Next() {
		return false
	}
	for {
		if err := r.rows.Scan(r.ptrs...); err != nil {
			r.err = fmt.Errorf("read row: %w", err)
			return false
		}
		if !slices.Equal(r.vals, r.header) {
			return true
		}
		if !r.rows.Next() {
			return false
		}
	}
}

// Values returns the current row as text, one value per column. The slice
// is reused by Next.
func (r *Rows) Values() []string { return r.vals }

// Err returns the error that ended the stream, if any.
func (r *Rows) Err() error {
	if r.err != nil {
		return r.err
	}
	return r.rows.Err()
}

// Close releases the stream and the engine.
func (r *Rows) Close() error { return r.rows.Close() }

// Result is a whole result held in memory.
type Result struct {
	Columns []Column
	Rows    [][]string
}

// Collect reads the rest of r into a Result and closes r.
func Collect(r *Rows) (*Result, error) {
	defer r.Close()
	res := &Result{Columns: r.Columns()}
	for r.Next() {
		res.Rows = append(res.Rows, slices.Clone(r.Values()))
	}
	if err := r.Err(); err != nil {
		return nil, err
	}
	if err := r.Close(); err != nil {
		return nil, fmt.Errorf("close result: %w", err)
	}
	return res, nil
}
