package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/custody-audit/custody/storage"
)

// holdCommand places, lists and releases legal holds.
func holdCommand() *cli.Command {
	return &cli.Command{
		Name:  "hold",
		Usage: "place, list and release legal holds that stop retention purges",
		Description: `A legal hold keeps every month holding an event it matches: by resource id
(and everything under it), by actor (name, object id or app id) or by time
range. Every change is recorded in the custody log.

   $ custody hold add --actor dev@contoso.com --reason "case 2026-114"
   $ custody hold add --resource /subscriptions/…/resourceGroups/prod-rg --reason "litigation"
   $ custody hold add --from 2026-03-01 --to 2026-04-01 --reason "regulator request"
   $ custody hold list
   $ custody hold release hold-3f2a9c01d4e5 --reason "case closed"`,
		Commands: []*cli.Command{
			{
				Name:  "add",
				Usage: "place a legal hold on a resource, an actor or a time range",
				Description: `   $ custody hold add --actor dev@contoso.com --reason "case 2026-114"
   $ custody hold add --from 2026-03-01 --to 2026-04-01 --reason "regulator request"`,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "resource", Usage: "Azure resource id; holds it and every resource under it"},
					&cli.StringFlag{Name: "actor", Usage: "actor name, object id or app id"},
					&cli.StringFlag{Name: "from", Usage: "hold events from this time (RFC 3339 or YYYY-MM-DD), with --to"},
					&cli.StringFlag{Name: "to", Usage: "hold events before this time"},
					&cli.StringFlag{Name: "reason", Usage: "why (case number, request); required"},
					&cli.StringFlag{Name: "format", Value: "text", Usage: "{text|json}"},
				},
				Action: func(ctx context.Context, cmd *cli.Command) error {
					h, err := holdFromFlags(cmd)
					if err != nil {
						return err
					}
					return runHoldAdd(ctx, holdAddOptions{Hold: h, JSON: cmd.String("format") == "json", Stdout: cmd.Root().Writer,
						Open: storeOpener(cmd, readWrite, storage.UserPurger)})
				},
			},
			{
				Name:        "list",
				Usage:       "list legal holds",
				Description: `   $ custody hold list --all --format json`,
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "all", Usage: "include released holds"},
					&cli.StringFlag{Name: "format", Value: "table", Usage: "{table|json}"},
				},
				Action: func(ctx context.Context, cmd *cli.Command) error {
					return runHoldList(ctx, holdListOptions{All: cmd.Bool("all"), JSON: cmd.String("format") == "json", Stdout: cmd.Root().Writer,
						Open: storeOpener(cmd, readOnly, "")})
				},
			},
			{
				Name:        "release",
				Usage:       "release a legal hold",
				ArgsUsage:   "HOLD-ID",
				Description: `   $ custody hold release hold-3f2a9c01d4e5 --reason "case closed"`,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "reason", Usage: "why the hold ends; required"},
				},
				Action: func(ctx context.Context, cmd *cli.Command) error {
					if cmd.NArg() != 1 {
						return usageError{fmt.Errorf("hold release needs one hold id")}
					}
					return runHoldRelease(ctx, holdReleaseOptions{ID: cmd.Args().First(), Reason: cmd.String("reason"), Stdout: cmd.Root().Writer,
						Open: storeOpener(cmd, readWrite, storage.UserPurger)})
				},
			},
		},
	}
}

// holdAddOptions is the hold `custody hold add` places.
type holdAddOptions struct {
	Hold storage.Hold
	// JSON writes the placed hold as JSON.
	JSON   bool
	Stdout io.Writer
	// Open opens the store as an account that may change holds.
	Open func(ctx context.Context) (*storage.Store, error)
}

// runHoldAdd places the hold and says so.
func runHoldAdd(ctx context.Context, o holdAddOptions) error {
	st, err := o.Open(ctx)
	if err != nil {
		return err
	}
	defer st.Engine().Close(context.Background())
	h, err := st.AddHold(ctx, o.Hold)
	if err != nil {
		return err
	}
	if o.JSON {
		return json.NewEncoder(o.Stdout).Encode(h)
	}
	fmt.Fprintf(o.Stdout, "%s placed: %s (%s)\n", h.ID, h.Subject(), h.Reason)
	return nil
}

// holdReleaseOptions is the hold `custody hold release` ends, and why.
type holdReleaseOptions struct {
	ID, Reason string
	Stdout     io.Writer
	// Open opens the store as an account that may change holds; not
	// called without a reason.
	Open func(ctx context.Context) (*storage.Store, error)
}

// runHoldRelease releases the hold and says so.
func runHoldRelease(ctx context.Context, o holdReleaseOptions) error {
	if o.Reason == "" {
		return usageError{fmt.Errorf("hold release needs --reason")}
	}
	st, err := o.Open(ctx)
	if err != nil {
		return err
	}
	defer st.Engine().Close(context.Background())
	h, err := st.ReleaseHold(ctx, o.ID, o.Reason)
	if err != nil {
		return err
	}
	fmt.Fprintf(o.Stdout, "%s released: %s (%s)\n", h.ID, h.Subject(), h.ReleaseReason)
	return nil
}

// holdFromFlags builds the hold `hold add` asks for: exactly one of
// --resource, --actor or --from/--to, and a reason.
func holdFromFlags(cmd *cli.Command) (storage.Hold, error) {
	h := storage.Hold{Reason: cmd.String("reason")}
	kinds := 0
	if r := cmd.String("resource"); r != "" {
		h.Kind, h.Resource = storage.HoldResource, r
		kinds++
	}
	if a := cmd.String("actor"); a != "" {
		h.Kind, h.Actor = storage.HoldActor, a
		kinds++
	}
	if cmd.IsSet("from") || cmd.IsSet("to") {
		from, err := parseTimeFlag(cmd.String("from"))
		if err != nil {
			return h, usageError{fmt.Errorf("--from: %w", err)}
		}
		to, err := parseTimeFlag(cmd.String("to"))
		if err != nil {
			return h, usageError{fmt.Errorf("--to: %w", err)}
		}
		if from.IsZero() || to.IsZero() {
			return h, usageError{fmt.Errorf("a time hold needs both --from and --to")}
		}
		h.Kind, h.From, h.To = storage.HoldTime, from, to
		kinds++
	}
	if kinds != 1 {
		return h, usageError{fmt.Errorf("hold add needs exactly one of --resource, --actor or --from/--to")}
	}
	if h.Reason == "" {
		return h, usageError{fmt.Errorf("hold add needs --reason")}
	}
	return h, nil
}

// holdListOptions is what `custody hold list` shows.
type holdListOptions struct {
	// All includes released holds.
	All bool
	// JSON writes a JSON array instead of the table.
	JSON   bool
	Stdout io.Writer
	// Open opens the store to read.
	Open func(ctx context.Context) (*storage.Store, error)
}

// runHoldList lists the active holds, or all of them.
func runHoldList(ctx context.Context, o holdListOptions) error {
	st, err := o.Open(ctx)
	if err != nil {
		return err
	}
	defer st.Engine().Close(context.Background())
	holds, err := st.Holds(ctx)
	if err != nil {
		return err
	}
	shown := []storage.Hold{}
	for _, h := range holds {
		if o.All || h.Active() {
			shown = append(shown, h)
		}
	}
	if o.JSON {
		return json.NewEncoder(o.Stdout).Encode(shown)
	}
	tw := tabwriter.NewWriter(o.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATUS\tHOLDS\tREASON\tPLACED\tBY")
	for _, h := range shown {
		status := "active"
		if !h.Active() {
			status = fmt.Sprintf("released %s by %s (%s)", h.ReleasedAt.Format(time.RFC3339), h.ReleasedBy, h.ReleaseReason)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", h.ID, status, h.Subject(), h.Reason, h.CreatedAt.Format(time.RFC3339), h.CreatedBy)
	}
	return tw.Flush()
}
