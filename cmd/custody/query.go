package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v3"
	"golang.org/x/term"

	"github.com/custody-audit/custody/queries"
	"github.com/custody-audit/custody/storage/engine"
)

// StoreOpener opens the store for reading from the global flags. The
// returned func releases it.
type StoreOpener func(ctx context.Context, cmd *cli.Command) (engine.Engine, func(), error)

// queryOptions holds what `custody query` and `custody timeline` need;
// runQuery takes it whole so tests can call it without flag parsing.
type queryOptions struct {
	List   bool
	Name   string   // query name; with List, show that query in full
	Params []string // name=value
	From   string   // time or duration before now; "" for the query's window
	To     string   // time or duration before now; "" for now
	Format string   // table, json, csv; "" picks table on a terminal, json otherwise
	Width  int      // table width; 0 detects the terminal or uses 120
	// Database holds the trail (the global --database flag); empty means
	// queries.DefaultDatabase.
	Database string
	Stdout   io.Writer
	Stderr   io.Writer
	Now      func() time.Time
	// Open opens the store; it is not called for --list.
	Open func(ctx context.Context) (engine.Engine, func(), error)
}

const queryUsageText = `custody query --list [<name>]
custody query <name> [--param <name>=<value>]... [--from <time>] [--to <time>] [--format {table|json|csv}]

Runs a canned forensic query on the store. --list shows the catalogue, or
one query in full (question, why it matters, MITRE ATT&CK, parameters, SQL).
Times are RFC 3339 (2025-05-06T09:00:00Z), a date (2025-05-06), or a
duration before now (90m, 24h, 7d); the window defaults to each query's own.
List parameters take comma-separated values. Tables are sized for the
terminal; JSON (one object per line) and CSV stream. An event delivered by
several paths (Event Hubs, Log Analytics, an archive) is counted and shown
once; delivered_via lists the paths, and delivery-conflicts lists events
whose copies disagree.

Examples:
  $ custody query --list
  $ custody query aks-exec --from 2025-05-06 --to 2025-05-07
  $ custody query principal-timeline --param actor=dev@contoso.com --format json
  $ custody query outside-ip-ranges --param allowed_ranges=10.0.0.0/8,20.61.12.0/24 --from 7d`

const timelineUsageText = `custody timeline {--actor <principal> | --resource <id or name>} [--from <time>] [--to <time>] [--format {table|json|csv}]

Shows everything one principal did (by name, UPN or Entra object id,
impersonated requests included), or everything that happened to one
resource and the resources below it, across ACI, ACR, AKS and the Activity
Log, oldest first, each event once however many paths delivered it
(delivered_via lists them). It runs the principal-timeline or
resource-timeline query; the window defaults to the last 30 days.

Examples:
  $ custody timeline --actor dev@contoso.com --from 2025-05-01
  $ custody timeline --resource /subscriptions/…/managedClusters/prod-aks --format csv`

func windowFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "from", Usage: "start of the window (inclusive): RFC 3339 time, date, or duration before now such as 7d"},
		&cli.StringFlag{Name: "to", Usage: "end of the window (exclusive): RFC 3339 time, date, or duration before now; default now"},
		&cli.StringFlag{Name: "format", Aliases: []string{"f"}, Usage: "output format: {table|json|csv}; default table on a terminal, json otherwise", Sources: cli.EnvVars("CUSTODY_QUERY_FORMAT")},
		&cli.IntFlag{Name: "width", Usage: "table width in columns; default the terminal's, or 120"},
	}
}

// queryCommand is `custody query`.
func queryCommand(open StoreOpener) *cli.Command {
	return &cli.Command{
		Name:      "query",
		Usage:     "run a canned forensic query (custody query --list shows them)",
		UsageText: queryUsageText,
		ArgsUsage: "<name>",
		// --param values carry their own commas (lists, CIDRs).
		DisableSliceFlagSeparator: true,
		Flags: append([]cli.Flag{
			&cli.BoolFlag{Name: "list", Aliases: []string{"l"}, Usage: "list the queries, or show one in full"},
			&cli.StringSliceFlag{Name: "param", Aliases: []string{"p"}, Usage: "query parameter `name=value` (repeatable)"},
		}, windowFlags()...),
		Action: func(ctx context.Context, cmd *cli.Command) error {
			if cmd.NArg() > 1 {
				return fmt.Errorf("query: one query name expected, got %q", cmd.Args().Slice())
			}
			o := commandOptions(cmd, open)
			o.List = cmd.Bool("list")
			o.Name = cmd.Args().First()
			o.Params = cmd.StringSlice("param")
			return runQuery(ctx, o)
		},
	}
}

// timelineCommand is `custody timeline`.
func timelineCommand(open StoreOpener) *cli.Command {
	return &cli.Command{
		Name:      "timeline",
		Usage:     "show everything one principal did, or everything that happened to one resource",
		UsageText: timelineUsageText,
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "actor", Aliases: []string{"a"}, Usage: "principal: user name, UPN, Kubernetes username or Entra object id"},
			&cli.StringFlag{Name: "resource", Aliases: []string{"r"}, Usage: "Azure resource id (any case) or resource name"},
			&cli.UintFlag{Name: "limit", Usage: "at most this many events, oldest first (default 10000)"},
		}, windowFlags()...),
		Action: func(ctx context.Context, cmd *cli.Command) error {
			if cmd.NArg() > 0 {
				return fmt.Errorf("timeline: unexpected argument %q: use --actor or --resource", cmd.Args().First())
			}
			o := commandOptions(cmd, open)
			actor, resource := cmd.String("actor"), cmd.String("resource")
			switch {
			case actor != "" && resource != "":
				return errors.New("timeline: give --actor or --resource, not both")
			case actor != "":
				o.Name, o.Params = "principal-timeline", []string{"actor=" + actor}
			case resource != "":
				o.Name, o.Params = "resource-timeline", []string{"resource=" + resource}
			default:
				return errors.New("timeline: give --actor <principal> or --resource <id or name>")
			}
			if cmd.IsSet("limit") {
				o.Params = append(o.Params, "limit="+strconv.FormatUint(uint64(cmd.Uint("limit")), 10))
			}
			return runQuery(ctx, o)
		},
	}
}

func commandOptions(cmd *cli.Command, open StoreOpener) queryOptions {
	return queryOptions{
		From:   cmd.String("from"),
		To:     cmd.String("to"),
		Format: cmd.String("format"),
		Width:  int(cmd.Int("width")),
		// The global flag, when the root defines it.
		Database: cmd.String("database"),
		Stdout:   orWriter(cmd.Root().Writer, os.Stdout),
		Stderr:   orWriter(cmd.Root().ErrWriter, os.Stderr),
		Now:      time.Now,
		Open: func(ctx context.Context) (engine.Engine, func(), error) {
			return open(ctx, cmd)
		},
	}
}

// runQuery lists the catalogue or runs one query.
func runQuery(ctx context.Context, o queryOptions) error {
	if o.Now == nil {
		o.Now = time.Now
	}
	cat, err := queries.Load()
	if err != nil {
		return err
	}
	format, width := outputFormat(o)
	if err := queries.CheckFormat(format); err != nil {
		return fmt.Errorf("query: --format: %w", err)
	}
	if o.List {
		if len(o.Params) > 0 || o.From != "" || o.To != "" {
			return errors.New("query: --list takes no --param, --from or --to")
		}
		if o.Name != "" {
			q, err := cat.Get(o.Name)
			if err != nil {
				return fmt.Errorf("query: %w", err)
			}
			return describeQuery(o.Stdout, q)
		}
		_, err := queries.Render(o.Stdout, catalogueResult(cat).Stream(), queries.RenderOptions{Format: format, Width: width})
		return err
	}
	if o.Name == "" {
		return errors.New("query: name a query (custody query --list shows them)")
	}
	q, err := cat.Get(o.Name)
	if err != nil {
		return fmt.Errorf("query: %w", err)
	}
	args := make(map[string]string, len(o.Params))
	for _, p := range o.Params {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return fmt.Errorf("query: --param %q: want name=value", p)
		}
		if _, dup := args[k]; dup {
			return fmt.Errorf("query: --param %s given twice", k)
		}
		args[k] = v
	}
	now := o.Now().UTC()
	from, to := q.DefaultWindow(now)
	if o.To != "" {
		if to, err = parseWhen(o.To, now); err != nil {
			return fmt.Errorf("query: --to: %w", err)
		}
		if o.From == "" {
			from = to.Add(-q.Window)
		}
	}
	if o.From != "" {
		if from, err = parseWhen(o.From, now); err != nil {
			return fmt.Errorf("query: --from: %w", err)
		}
	}
	// Validate before opening the store: a typo costs nothing.
	params, err := q.Bind(args, from, to)
	if err != nil {
		return fmt.Errorf("query %s: %w", q.Name, err)
	}
	eng, release, err := o.Open(ctx)
	if err != nil {
		return fmt.Errorf("query: open store: %w", err)
	}
	defer release()
	rows, err := queries.Runner{Engine: eng, Database: o.Database}.RunBound(ctx, q, params)
	if err != nil {
		return err
	}
	n, err := queries.Render(o.Stdout, rows, queries.RenderOptions{Format: format, Width: width, Notice: o.Stderr})
	if cerr := rows.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("query %s: %w", q.Name, cerr)
	}
	if err != nil {
		return err
	}
	if format == queries.FormatTable {
		fmt.Fprintf(o.Stderr, "%d rows, %s to %s\n", n, from.Format(time.RFC3339), to.Format(time.RFC3339))
	}
	if limit, ok := params["limit"]; ok && limit == strconv.Itoa(n) {
		fmt.Fprintf(o.Stderr, "custody: stopped at the limit of %s rows; narrow --from/--to or raise the limit to see the rest\n", limit)
	}
	return nil
}

// outputFormat resolves the default format and the table width: a table
// sized to the terminal for people, JSON lines for pipes.
func outputFormat(o queryOptions) (string, int) {
	format, width := o.Format, o.Width
	f, isFile := o.Stdout.(*os.File)
	tty := isFile && term.IsTerminal(int(f.Fd()))
	if format == "" {
		format = queries.FormatJSON
		if tty || o.List {
			format = queries.FormatTable
		}
	}
	if width <= 0 && tty {
		if w, _, err := term.GetSize(int(f.Fd())); err == nil && w > 20 {
			width = w
		}
	}
	return format, width
}

// parseWhen reads a time, or a duration before now ("7d", "90m").
func parseWhen(s string, now time.Time) (time.Time, error) {
	if d, err := queries.ParseDuration(s); err == nil {
		return now.Add(-d), nil
	}
	t, err := queries.ParseTime(s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w, or a duration before now such as 7d", err)
	}
	return t, nil
}

// catalogueResult lists the catalogue as rows for the renderers.
func catalogueResult(cat *queries.Catalogue) *queries.Result {
	res := &queries.Result{Columns: []queries.Column{
		{Name: "name", Type: "String"}, {Name: "window", Type: "String"}, {Name: "params", Type: "String"},
		{Name: "mitre", Type: "String"}, {Name: "question", Type: "String"},
	}}
	for _, q := range cat.List() {
		var params, mitre []string
		for _, p := range q.Params {
			params = append(params, p.Name)
		}
		for _, m := range q.MITRE {
			id, _, _ := strings.Cut(m, " ")
			mitre = append(mitre, id)
		}
		res.Rows = append(res.Rows, []string{q.Name, formatWindow(q.Window), strings.Join(params, ","), strings.Join(mitre, ","), q.Question})
	}
	return res
}

func formatWindow(d time.Duration) string {
	if day := 24 * time.Hour; d%day == 0 && d > day {
		return strconv.Itoa(int(d/day)) + "d"
	}
	return strings.TrimSuffix(strings.TrimSuffix(d.String(), "0s"), "0m")
}

// describeQuery prints one query in full.
func describeQuery(w io.Writer, q *queries.Query) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s\n\n%s\n\n%s\n\n", q.Name, q.Title, q.Question, q.Why)
	if len(q.MITRE) > 0 {
		fmt.Fprintf(&b, "MITRE ATT&CK: %s\n", strings.Join(q.MITRE, "; "))
	}
	fmt.Fprintf(&b, "Default window: %s\n", formatWindow(q.Window))
	if len(q.Params) > 0 {
		b.WriteString("Parameters:\n")
		for _, p := range q.Params {
			typ := p.Type
			if p.Kind != "" {
				typ += ", " + p.Kind
			}
			def := "required"
			if !p.Required {
				def = fmt.Sprintf("default %q", p.Default)
			}
			fmt.Fprintf(&b, "  %s (%s; %s): %s\n", p.Name, typ, def, p.Help)
		}
	}
	fmt.Fprintf(&b, "\n%s\n", q.SQL)
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}
