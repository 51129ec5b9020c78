package main

import (
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v3"
)

func sqlCommand() *cli.Command {
	return &cli.Command{
		Name:      "sql",
		Usage:     "run read-only ClickHouse SQL against the trail",
		ArgsUsage: "<query> | -",
		Description: `For investigators: ad-hoc SQL over the trail's tables (events, quarantine,
checkpoints, source_positions, custody_log in database custody). The engine
runs with readonly=2, so anything that writes is refused by ClickHouse
itself.

   $ custody sql "SELECT actor_name, count() FROM custody.events GROUP BY actor_name ORDER BY 2 DESC LIMIT 10"
   $ echo "SELECT * FROM custody.custody_log" | custody sql - --format csv`,
		Flags: []cli.Flag{&cli.StringFlag{Name: "format", Value: "table", Usage: "{table|tsv|csv}"}},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			q := strings.Join(cmd.Args().Slice(), " ")
			if q == "-" {
				b, err := io.ReadAll(os.Stdin)
				if err != nil {
					return fmt.Errorf("read query: %w", err)
				}
				q = string(b)
			}
			if strings.TrimSpace(q) == "" {
				return usageError{fmt.Errorf("sql needs a query")}
			}
			st, err := openStore(ctx, cmd, readOnly)
			if err != nil {
				return err
			}
			defer st.Engine().Close(context.Background())
			rows, err := st.Engine().Query(ctx, q, nil)
			if err != nil {
				return fmt.Errorf("query: %w", err)
			}
			defer rows.Close()
			cols := rows.Columns()
			out := cmd.Root().Writer
			var write func([]string) error
			var flush func() error
			switch cmd.String("format") {
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
			for rows.Next() {
				vals := make([]string, len(cols))
				dest := make([]any, len(cols))
				for i := range vals {
					dest[i] = &vals[i]
				}
				if err := rows.Scan(dest...); err != nil {
					return err
				}
				if err := write(vals); err != nil {
					return err
				}
			}
			if err := rows.Err(); err != nil {
				return fmt.Errorf("query: %w", err)
			}
			return flush()
		},
	}
}
