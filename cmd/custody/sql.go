package main

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/urfave/cli/v3"

	"github.com/custody-audit/custody/storage"
	"github.com/custody-audit/custody/storage/engine"
)

func sqlCommand() *cli.Command {
	return &cli.Command{
		Name:      "sql",
		Usage:     "run read-only ClickHouse SQL against the trail",
		ArgsUsage: "<query> | -",
		Description: `For investigators: ad-hoc SQL over the trail's tables (events, quarantine,
checkpoints, source_positions, custody_log, legal_holds, purges in database
custody). One SELECT, WITH, SHOW, DESCRIBE, EXISTS or EXPLAIN statement;
anything else is refused before it runs. The query runs as a user holding
only the custody_reader role: SELECT on the store's tables, no table
functions that reach files, URLs or other servers, no temporary tables, no
SYSTEM or KILL. On ClickHouse servers (--clickhouse) custody sql first reads
the connected user's effective grants and refuses a user with more than
that, so an admin's DSN cannot make it a write path.

   $ custody sql "SELECT actor_name, count() FROM custody.events GROUP BY actor_name ORDER BY 2 DESC LIMIT 10"
   $ echo "SELECT * FROM custody.custody_log" | custody sql - --format csv`,
		Flags: []cli.Flag{&cli.StringFlag{Name: "format", Value: "table", Usage: "{table|tsv|csv}"}},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			return runSQL(ctx, sqlOptions{
				Query: strings.Join(cmd.Args().Slice(), " "), Stdin: os.Stdin, Format: cmd.String("format"),
				Schema: schemaOptions(cmd), Stdout: cmd.Root().Writer, Open: storeOpener(cmd, readOnly, ""),
			})
		},
	}
}

// sqlOptions is the statement `custody sql` runs and where it writes.
type sqlOptions struct {
	// Query is the statement; "-" reads it from Stdin.
	Query string
	Stdin io.Reader
	// Format is table, tsv or csv.
	Format string
	// Schema names the trail's database.
	Schema storage.SchemaOptions
	Stdout io.Writer
	// Open opens the store as the reader; not called without a query.
	Open func(ctx context.Context) (*storage.Store, error)
}

// runSQL reads the statement and runs it as the reader (execSQL).
func runSQL(ctx context.Context, o sqlOptions) error {
	q := o.Query
	if q == "-" {
		b, err := io.ReadAll(o.Stdin)
		if err != nil {
			return fmt.Errorf("read query: %w", err)
		}
		q = string(b)
	}
	if strings.TrimSpace(q) == "" {
		return usageError{fmt.Errorf("sql needs a query")}
	}
	st, err := o.Open(ctx)
	if err != nil {
		return err
	}
	defer st.Engine().Close(context.Background())
	return execSQL(ctx, st.Engine(), o.Schema, q, o.Format, o.Stdout)
}

// errRefused is returned for a statement or a user custody sql refuses.
var errRefused = errors.New("custody sql refused")

// sqlStatementKinds are the statements custody sql runs, by the first
// keyword of ClickHouse's own canonical form of the query.
var sqlStatementKinds = map[string]bool{"SELECT": true, "WITH": true, "SHOW": true, "DESCRIBE": true, "EXISTS": true, "EXPLAIN": true}

// execSQL checks the connected user and the statement, runs it and writes
// its rows to out in format.
func execSQL(ctx context.Context, eng engine.Engine, opts storage.SchemaOptions, q, format string, out io.Writer) error {
	if err := checkReader(ctx, eng, opts); err != nil {
		return err
	}
	if err := checkReadStatement(ctx, eng, q); err != nil {
		return err
	}
	rows, err := eng.Query(ctx, q, nil)
	if err != nil {
		return fmt.Errorf("query: %w", err)
	}
	defer rows.Close()
	cols := rows.Columns()
	var write func([]string) error
	var flush func() error
	switch format {
	case "csv":
		cw := csv.NewWriter(out)
		write, flush = cw.Write, func() error { cw.Flush(); return cw.Error() }
	case "tsv":
		write = func(r []string) error { _, err := fmt.Fprintln(out, strings.Join(r, "\t")); return err }
		flush = func() error { return nil }
	default:
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		write = func(r []string) error {
			for i := range r {
				if len(r[i]) > 60 {
					r[i] = r[i][:57] + "..."
				}
			}
			_, err := fmt.Fprintln(tw, strings.Join(r, "\t"))
			return err
		}
		flush = tw.Flush
	}
	if err := write(append([]string(nil), cols...)); err != nil {
		return err
	}
	scan := textScanner(rows, len(cols))
	for rows.Next() {
		vals, err := scan()
		if err != nil {
			return fmt.Errorf("read row: %w", err)
		}
		if err := write(vals); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("query: %w", err)
	}
	return flush()
}

// checkReadStatement refuses anything but one read statement. ClickHouse
// itself parses the query (formatQuerySingleLine, the query passed as a
// parameter), so the kind is the engine's reading of it, comments and
// case aside; a query it cannot parse, or several, is refused with its
// syntax error. This stops statements a reader's grants allow or make
// no-ops of (SYSTEM STOP MERGES on tables it cannot see, KILL QUERY of its
// own queries, SET); the grants stop what a read statement reaches.
func checkReadStatement(ctx context.Context, eng engine.Engine, q string) error {
	var canonical string
	err := engine.Each(ctx, eng, "SELECT formatQuerySingleLine({q:String})", engine.Params{"q": q}, func(r engine.Rows) error {
		return r.Scan(&canonical)
	})
	if err != nil {
		return fmt.Errorf("parse query: %w", err)
	}
	kind, _, _ := strings.Cut(strings.TrimLeft(canonical, "( "), " ")
	if !sqlStatementKinds[kind] {
		return fmt.Errorf("%w: a %s statement; custody sql runs one SELECT, WITH, SHOW, DESCRIBE, EXISTS or EXPLAIN statement", errRefused, kind)
	}
	if strings.Contains(canonical, " INTO OUTFILE ") {
		return fmt.Errorf("%w: INTO OUTFILE; redirect custody sql's output instead", errRefused)
	}
	return nil
}

// checkReader refuses to run as a user with more privileges than the
// reader role (its own grants and its roles', SHOW GRANTS FINAL).
func checkReader(ctx context.Context, eng engine.Engine, opts storage.SchemaOptions) error {
	var lines []string
	err := engine.Each(ctx, eng, "SHOW GRANTS FINAL", nil, func(r engine.Rows) error {
		var l string
		err := r.Scan(&l)
		lines = append(lines, l)
		return err
	})
	if err != nil {
		return fmt.Errorf("read the connected user's grants: %w", err)
	}
	if excess := storage.ExcessGrants(lines, opts); len(excess) > 0 {
		if len(excess) > 5 {
			excess = append(excess[:5], fmt.Sprintf("and %d more", len(excess)-5))
		}
		return fmt.Errorf("%w: the connected ClickHouse user holds more than the %s role (%s); connect custody sql as a user with only %s (README.md, Least privilege)",
			errRefused, storage.RoleReader, strings.Join(excess, "; "), storage.RoleReader)
	}
	return nil
}

// typedRows is a result that knows its columns' types (clickhouse-go's).
type typedRows interface {
	ColumnTypes() []driver.ColumnType
}

// textScanner returns a function that reads the current row as text.
// Where the engine gives column types, each value scans into its own Go
// type and is written the way ClickHouse writes it in TSV (without the
// escaping); otherwise every column scans as a string.
func textScanner(rows engine.Rows, n int) func() ([]string, error) {
	tr, ok := rows.(typedRows)
	if !ok {
		return func() ([]string, error) {
			vals := make([]string, n)
			dest := make([]any, n)
			for i := range vals {
				dest[i] = &vals[i]
			}
			return vals, rows.Scan(dest...)
		}
	}
	types := tr.ColumnTypes()
	return func() ([]string, error) {
		dest := make([]any, len(types))
		for i, t := range types {
			dest[i] = reflect.New(t.ScanType()).Interface()
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, err
		}
		vals := make([]string, len(types))
		for i, t := range types {
			vals[i] = formatValue(reflect.ValueOf(dest[i]).Elem(), t.DatabaseTypeName(), false)
		}
		return vals, nil
	}
}

// formatValue writes v as ClickHouse's text formats do: NULL, DateTime64
// with its precision, Array as [..], Map as {..}, strings quoted inside
// them.
func formatValue(v reflect.Value, dbType string, nested bool) string {
	for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
		if v.IsNil() {
			return "NULL"
		}
		v = v.Elem()
	}
	inner := func(prefix string) string {
		t := strings.TrimSuffix(strings.TrimPrefix(dbType, prefix), ")")
		return t
	}
	switch x := v.Interface().(type) {
	case time.Time:
		return formatTimeAs(x, strings.TrimPrefix(strings.TrimPrefix(dbType, "Nullable("), "LowCardinality("))
	case string:
		if nested {
			return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(x) + "'"
		}
		return x
	case []byte:
		return formatValue(reflect.ValueOf(string(x)), dbType, nested)
	case fmt.Stringer:
		if nested {
			return "'" + x.String() + "'"
		}
		return x.String()
	}
	switch v.Kind() {
	case reflect.Slice, reflect.Array:
		elem := inner("Array(")
		parts := make([]string, v.Len())
		for i := range parts {
			parts[i] = formatValue(v.Index(i), elem, true)
		}
		return "[" + strings.Join(parts, ",") + "]"
	case reflect.Map:
		kt, vt, _ := strings.Cut(inner("Map("), ", ")
		keys := v.MapKeys()
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = formatValue(k, kt, true) + ":" + formatValue(v.MapIndex(k), vt, true)
		}
		sort.Strings(parts)
		return "{" + strings.Join(parts, ",") + "}"
	}
	return fmt.Sprint(v.Interface())
}

// formatTimeAs writes t for a Date, DateTime or DateTime64(p) column.
func formatTimeAs(t time.Time, dbType string) string {
	switch {
	case strings.HasPrefix(dbType, "Date32"), dbType == "Date" || strings.HasPrefix(dbType, "Date)"):
		return t.Format(time.DateOnly)
	case strings.HasPrefix(dbType, "DateTime64("):
		var p int
		fmt.Sscanf(dbType, "DateTime64(%d", &p)
		if p == 0 {
			return t.Format(time.DateTime)
		}
		return t.Format(time.DateTime + "." + strings.Repeat("0", p))
	}
	return t.Format(time.DateTime)
}
