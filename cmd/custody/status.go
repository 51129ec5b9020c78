package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/custody-audit/custody/queries"
	"github.com/custody-audit/custody/storage"
	"github.com/custody-audit/custody/storage/engine"
)

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "show each chain's head: events, last sequence, last checkpoint, store size, repeated deliveries",
		Description: `   $ custody status
   $ custody status --format json --deliveries-window 30d

   The deliveries line counts, over the window ending at the newest stored
   event, the events stored more than once (one event delivered by several
   paths) and those whose copies disagree (custody query delivery-conflicts
   lists them).`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "format", Value: "table", Usage: "{table|json}"},
			&cli.StringFlag{Name: "deliveries-window", Value: "7d", Usage: "window of the deliveries line, ending at the newest stored event (e.g. 24h, 7d, 52w)"},
		},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			window, err := queries.ParseDuration(cmd.String("deliveries-window"))
			if err != nil {
				return usageError{fmt.Errorf("status: --deliveries-window: %w", err)}
			}
			return runStatus(ctx, statusOptions{
				Window: window, JSON: cmd.String("format") == "json",
				Stdout: cmd.Root().Writer, Open: storeOpener(cmd, readOnly, ""),
			})
		},
	}
}

// statusOptions is what `custody status` shows and where.
type statusOptions struct {
	// Window is the deliveries line's window, ending at the newest stored
	// event.
	Window time.Duration
	// JSON writes one JSON document instead of the table.
	JSON   bool
	Stdout io.Writer
	// Open opens the store to read.
	Open func(ctx context.Context) (*storage.Store, error)
}

// chainStatus is one chain's line of custody status.
type chainStatus struct {
	Chain          string `json:"chain"`
	Events         uint64 `json:"events"`
	LastSeq        uint64 `json:"last_seq"`
	LastEvent      string `json:"last_event_time"`
	CheckpointSize uint64 `json:"checkpoint_size"`
	CheckpointAt   string `json:"checkpoint_at"`
	Quarantined    uint64 `json:"quarantined"`
}

// runStatus reads each chain's head, the store's size, the deliveries
// over the window and the last verify, and writes them.
func runStatus(ctx context.Context, o statusOptions) error {
	st, err := o.Open(ctx)
	if err != nil {
		return err
	}
	defer st.Engine().Close(context.Background())
	db := st.Database()
	var chains []chainStatus
	rows, err := st.Engine().Query(ctx, `SELECT e.chain, e.n, e.last_seq, toString(e.last_time), ifNull(c.size, 0), ifNull(toString(c.at), ''), ifNull(q.n, 0)
FROM (SELECT toString(chain) AS chain, count() AS n, max(seq) AS last_seq, max(event_time) AS last_time FROM `+db+`.events GROUP BY chain) AS e
LEFT JOIN (SELECT toString(chain) AS chain, max(tree_size) AS size, max(created_at) AS at FROM `+db+`.checkpoints GROUP BY chain) AS c ON c.chain = e.chain
LEFT JOIN (SELECT toString(chain) AS chain, count() AS n FROM `+db+`.quarantine GROUP BY chain) AS q ON q.chain = e.chain
ORDER BY e.chain SETTINGS join_use_nulls = 1`, nil)
	if err != nil {
		return fmt.Errorf("read chain heads: %w", err)
	}
	for rows.Next() {
		var c chainStatus
		if err := rows.Scan(&c.Chain, &c.Events, &c.LastSeq, &c.LastEvent, &c.CheckpointSize, &c.CheckpointAt, &c.Quarantined); err != nil {
			rows.Close()
			return err
		}
		chains = append(chains, c)
	}
	if err := rows.Close(); err != nil {
		return err
	}
	// On a cluster system.parts is this server's: its shard's share, the
	// events table a Distributed one (the reader holds no remote()).
	var bytesOnDisk, total, distributed uint64
	if err := scanOne(ctx, st.Engine(), `SELECT sum(bytes_on_disk), sum(rows),
    (SELECT count() FROM system.tables WHERE database = {db:String} AND name = 'events' AND engine = 'Distributed')
FROM system.parts WHERE active AND database = {db:String}`, engine.Params{"db": db}, &bytesOnDisk, &total, &distributed); err != nil {
		return fmt.Errorf("read store size: %w", err)
	}
	onDisk := "on disk"
	if distributed > 0 {
		onDisk = "on disk on this server of the cluster"
	}
	// One event can be stored once per path that delivered it.
	// over the window ending just after the newest stored event
	var newest string
	if err := scanOne(ctx, st.Engine(), "SELECT toString(max(event_time) + toIntervalMicrosecond(1)) FROM "+db+".events", nil, &newest); err != nil {
		return fmt.Errorf("count deliveries: %w", err)
	}
	to, err := queries.ParseTime(strings.Replace(newest, " ", "T", 1) + "Z")
	if err != nil {
		return fmt.Errorf("count deliveries: newest event time %q: %w", newest, err)
	}
	d := deliveries{From: to.Add(-o.Window).Format(time.RFC3339Nano), To: to.Format(time.RFC3339Nano)}
	p := engine.Params{"from": queries.FormatTime(to.Add(-o.Window)), "to": queries.FormatTime(to)}
	if err := scanOne(ctx, st.Engine(), queries.DeliverySummarySQL(db), p, &d.Rows, &d.Events, &d.Repeated, &d.Conflicting); err != nil {
		return fmt.Errorf("count deliveries: %w", err)
	}
	lastVerify, err := st.LastVerify(ctx)
	if err != nil {
		return err
	}
	w := o.Stdout
	if o.JSON {
		return json.NewEncoder(w).Encode(map[string]any{"engine": st.Engine().Kind(), "database": db, "bytes_on_disk": bytesOnDisk, "cluster_server_only": distributed > 0,
			"deliveries": d, "chains": chains, "last_verify": lastVerify})
	}
	fmt.Fprintf(w, "engine %s, database %s, %s %s\n", st.Engine().Kind(), db, humanBytes(bytesOnDisk), onDisk)
	fmt.Fprintf(w, "%s\n", d)
	fmt.Fprintf(w, "%s\n\n", lastVerifyLine(lastVerify))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CHAIN\tEVENTS\tLAST SEQ\tLAST EVENT\tCHECKPOINT\tCHECKPOINT AT\tQUARANTINED")
	for _, c := range chains {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%d\t%s\t%d\n", c.Chain, c.Events, c.LastSeq, c.LastEvent, c.CheckpointSize, c.CheckpointAt, c.Quarantined)
	}
	return tw.Flush()
}

// deliveries summarizes events stored more than once (one event
// delivered by several paths, each copy in its own chain).
type deliveries struct {
	From        string `json:"from"`        // window start, inclusive (RFC 3339)
	To          string `json:"to"`          // window end, exclusive
	Rows        uint64 `json:"rows"`        // stored event rows
	Events      uint64 `json:"events"`      // distinct event ids
	Repeated    uint64 `json:"repeated"`    // events stored more than once
	Conflicting uint64 `json:"conflicting"` // of those, events whose copies disagree
}

func (d deliveries) String() string {
	if d.Rows == 0 {
		return "deliveries: no events stored yet"
	}
	s := fmt.Sprintf("deliveries from %s to %s: %d events in %d rows; %d delivered more than once", d.From, d.To, d.Events, d.Rows, d.Repeated)
	if d.Conflicting > 0 {
		return s + fmt.Sprintf("; %d with copies that disagree (custody query delivery-conflicts lists them)", d.Conflicting)
	}
	return s + ", none with copies that disagree"
}

// scanOne runs a query expected to return one row.
func scanOne(ctx context.Context, eng engine.Engine, q string, p engine.Params, dest ...any) error {
	return engine.Each(ctx, eng, q, p, func(r engine.Rows) error { return r.Scan(dest...) })
}

func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// lastVerifyLine says when the trail was last verified and with what
// result.
func lastVerifyLine(r *storage.VerifyRun) string {
	if r == nil {
		return "last verify: never (run custody verify)"
	}
	return fmt.Sprintf("last verify: %s by %s (%s): %s, %d rows, %d errors, %d warnings",
		r.FinishedAt.UTC().Format(time.RFC3339), r.Trigger, r.Actor, r.Result, r.Rows, r.Errors, r.Warnings)
}
