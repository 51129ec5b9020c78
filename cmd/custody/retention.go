package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/custody-audit/custody/storage"
)

// retentionCommand plans and applies retention purges of whole events
// partitions (see storage/retention.go for the rules).
func retentionCommand() *cli.Command {
	policyFlags := func() []cli.Flag {
		return []cli.Flag{
			&cli.StringFlag{Name: "policy", Usage: "YAML file with a retention: section (default: the --config file's, else min 400 days)", Sources: cli.EnvVars("CUSTODY_RETENTION_POLICY")},
			&cli.IntFlag{Name: "min-days", Usage: "default minimum retention in days (overrides the policy's min_days)"},
			&cli.IntFlag{Name: "max-days", Usage: "default maximum retention in days, 0 for none (overrides the policy's max_days)"},
		}
	}
	return &cli.Command{
		Name:  "retention",
		Usage: "show and apply the retention policy: purge whole months past retention and not held",
		Description: `A month of events (one partition) goes only when every row in it is past
the minimum retention of its service and category, no legal hold matches
any of its rows, and for every chain its rows come before everything that
stays. Each purge is recorded with a signed checkpoint of the purged rows,
so custody verify reports it instead of a gap. A month of quarantined
records (ones that could not be normalized) goes only past the longest
minimum of any rule and while no legal hold could concern it; its purge is
written to the custody log with a digest of the records.

   $ custody retention plan
   $ custody retention plan --policy retention.yaml --format json
   $ custody retention apply
   $ custody retention apply --partition 202401

retention.yaml (or the retention: section of --config):

   retention:
     min_days: 400            # default minimum retention
     max_days: 0              # default maximum, 0 for none (plan flags overdue months)
     rules:
       - {service: aks, category: kube-audit, min_days: 730}
       - {service: arm, max_days: 1095}`,
		Commands: []*cli.Command{
			{
				Name:  "plan",
				Usage: "show what a retention purge would remove now, and why each month stays or goes",
				Description: `   $ custody retention plan
   $ custody retention plan --min-days 730 --format json`,
				Flags: append(policyFlags(), &cli.StringFlag{Name: "format", Value: "text", Usage: "{text|json}"}),
				Action: func(ctx context.Context, cmd *cli.Command) error {
					opts, err := retentionOptionsFrom(cmd)
					if err != nil {
						return err
					}
					opts.Open = storeOpener(cmd, readOnly, "")
					return runRetentionPlan(ctx, opts)
				},
			},
			{
				Name:  "apply",
				Usage: "purge the months the plan removes, recording each purge",
				Description: `Verifies every chain it is about to purge from, records a signed purge
record per chain, drops the partition and writes the custody log. A month
named with --partition that must be kept is refused (exit 1) and the
refusal is logged; nothing within retention can be removed.

   $ custody retention apply
   $ custody retention apply --partition 202401 --partition 202402`,
				Flags: append(policyFlags(),
					&cli.StringSliceFlag{Name: "partition", Usage: "purge only this month (YYYYMM); repeat for more"},
					&cli.StringFlag{Name: "format", Value: "text", Usage: "{text|json}"}),
				Action: func(ctx context.Context, cmd *cli.Command) error {
					opts, err := retentionOptionsFrom(cmd)
					if err != nil {
						return err
					}
					opts.Open = storeOpener(cmd, appending, storage.UserPurger)
					return runRetentionApply(ctx, retentionApplyOptions{retentionOptions: opts,
						VerifyKey: cmd.String(flagVerifyKey), Partitions: cmd.StringSlice("partition")})
				},
			},
		},
	}
}

// retentionOptions are the settings of `custody retention plan|apply`.
type retentionOptions struct {
	Policy storage.RetentionConfig
	Format string // text or json
	Stdout io.Writer
	// Open opens the store: to read for plan, as the retention account
	// for apply.
	Open func(ctx context.Context) (*storage.Store, error)
}

// retentionApplyOptions are the settings of `custody retention apply`.
type retentionApplyOptions struct {
	retentionOptions
	// VerifyKey is the verification key file: each chain is verified
	// before anything is purged from it.
	VerifyKey string
	// Partitions limits the purge to these months (YYYYMM); empty means
	// every month the plan removes.
	Partitions []string
}

// retentionOptionsFrom reads the policy (--policy, else the --config
// file's retention section, else the defaults) and applies the flags.
func retentionOptionsFrom(cmd *cli.Command) (retentionOptions, error) {
	opts := retentionOptions{Policy: storage.DefaultRetentionConfig(), Format: cmd.String("format"), Stdout: cmd.Root().Writer}
	if opts.Format != "text" && opts.Format != "json" {
		return opts, usageError{fmt.Errorf("--format %q: want text or json", opts.Format)}
	}
	path := cmd.String("policy")
	if path == "" {
		path = cmd.String(flagConfig)
	}
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return opts, usageError{fmt.Errorf("read retention policy: %w", err)}
		}
		if opts.Policy, err = storage.ParseRetentionConfig(b); err != nil {
			return opts, usageError{fmt.Errorf("%s: %w", path, err)}
		}
	}
	if cmd.IsSet("min-days") {
		opts.Policy.MinDays = int(cmd.Int("min-days"))
	}
	if cmd.IsSet("max-days") {
		opts.Policy.MaxDays = int(cmd.Int("max-days"))
	}
	if err := opts.Policy.Validate(); err != nil {
		return opts, usageError{err}
	}
	return opts, nil
}

// runRetentionPlan shows what a purge would remove now, and why.
func runRetentionPlan(ctx context.Context, opts retentionOptions) error {
	st, err := opts.Open(ctx)
	if err != nil {
		return err
	}
	defer st.Engine().Close(context.Background())
	w := opts.Stdout
	plan, err := st.PlanRetention(ctx, opts.Policy)
	if err != nil {
		return err
	}
	if opts.Format == "json" {
		return json.NewEncoder(w).Encode(plan)
	}
	writePlan(w, plan, opts.Policy)
	return nil
}

// writePlan prints one block per partition: the verdict line, the reasons
// and what each chain would lose.
func writePlan(w io.Writer, plan *storage.RetentionPlan, policy storage.RetentionConfig) {
	maxDays := "no maximum"
	if policy.MaxDays > 0 {
		maxDays = fmt.Sprintf("max %d days", policy.MaxDays)
	}
	fmt.Fprintf(w, "retention plan at %s: min %d days, %s, %d rules\n", plan.At.Format(time.RFC3339), policy.MinDays, maxDays, len(policy.Rules))
	var rows, purgeRows uint64
	var purge int
	for _, pp := range plan.Partitions {
		verdict := "keep "
		if pp.Purge {
			verdict = "PURGE"
			purge++
			purgeRows += pp.Rows
		}
		rows += pp.Rows
		overdue := ""
		if pp.Overdue {
			overdue = ", OVERDUE"
		}
		fmt.Fprintf(w, "\n%s  %s  %d rows, received %s to %s, newest %s%s\n", pp.Partition, verdict, pp.Rows,
			pp.From.Format(time.DateOnly), pp.To.Format(time.DateOnly), pp.Newest.Format(time.DateOnly), overdue)
		for _, r := range pp.Reasons {
			fmt.Fprintf(w, "    %s\n", r)
		}
		for _, c := range pp.Chains {
			fmt.Fprintf(w, "    chain %s: seq %d..%d, %d rows (%s)\n", c.Chain, c.FirstSeq, c.LastSeq, c.Rows, formatCounts(c.Counts))
		}
	}
	fmt.Fprintf(w, "\nwould purge %d of %d partitions, %d of %d rows\n", purge, len(plan.Partitions), purgeRows, rows)
	if len(plan.Quarantine) == 0 {
		return
	}
	fmt.Fprintf(w, "\nquarantine (records that could not be normalized; kept for the longest minimum of any rule):\n")
	var qRows, qPurgeRows uint64
	var qPurge int
	for _, qp := range plan.Quarantine {
		verdict := "keep "
		if qp.Purge {
			verdict = "PURGE"
			qPurge++
			qPurgeRows += qp.Rows
		}
		qRows += qp.Rows
		overdue := ""
		if qp.Overdue {
			overdue = ", OVERDUE"
		}
		fmt.Fprintf(w, "\n%s  %s  %d records, received %s to %s%s\n", qp.Partition, verdict, qp.Rows, qp.From.Format(time.DateOnly), qp.To.Format(time.DateOnly), overdue)
		for _, r := range qp.Reasons {
			fmt.Fprintf(w, "    %s\n", r)
		}
	}
	fmt.Fprintf(w, "\nwould purge %d of %d quarantine partitions, %d of %d records\n", qPurge, len(plan.Quarantine), qPurgeRows, qRows)
}

func formatCounts(m map[string]uint64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

// runRetentionApply purges what the plan removes (of Partitions, when
// given), recording each purge, and reports it.
func runRetentionApply(ctx context.Context, opts retentionApplyOptions) error {
	verifier, err := storage.LoadVerifier(opts.VerifyKey)
	if err != nil {
		return err
	}
	st, err := opts.Open(ctx)
	if err != nil {
		return err
	}
	defer st.Engine().Close(context.Background())
	w := opts.Stdout
	res, err := st.ApplyRetention(ctx, opts.Policy, storage.ApplyRetentionOptions{Verifier: verifier, Partitions: opts.Partitions})
	if err != nil {
		return err
	}
	if opts.Format == "json" {
		return json.NewEncoder(w).Encode(res)
	}
	byPartition := map[string][]storage.PurgeRecord{}
	for _, r := range res.Records {
		byPartition[r.Partition] = append(byPartition[r.Partition], r)
	}
	for _, p := range res.Purged {
		recs := byPartition[p]
		var id string
		var rows uint64
		if len(recs) > 0 {
			id, rows = recs[0].ID, recs[0].PartitionRows
		}
		fmt.Fprintf(w, "purged partition %s: %d rows (%s)\n", p, rows, id)
		for _, r := range recs {
			fmt.Fprintf(w, "    chain %s: seq %d..%d, %d rows\n", r.Chain, r.FirstSeq, r.LastSeq, r.Rows)
		}
	}
	for _, q := range res.Quarantine {
		fmt.Fprintf(w, "purged quarantine partition %s: %d records (sha256 %s)\n", q.Partition, q.Rows, q.Digest)
	}
	if len(res.Purged) == 0 && len(res.Quarantine) == 0 {
		fmt.Fprintf(w, "retention apply: nothing to purge (%d partitions kept; see custody retention plan)\n", len(res.Plan.Partitions)+len(res.Plan.Quarantine))
		return nil
	}
	if len(res.Purged) > 0 {
		fmt.Fprintf(w, "retention apply: %d partitions, %d rows purged; custody verify reports them as purged\n", len(res.Purged), res.Rows)
	}
	if len(res.Quarantine) > 0 {
		var n uint64
		for _, q := range res.Quarantine {
			n += q.Rows
		}
		fmt.Fprintf(w, "retention apply: %d quarantine partitions, %d records purged; recorded in the custody log\n", len(res.Quarantine), n)
	}
	return nil
}
