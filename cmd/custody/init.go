package main

import (
	"context"
	"fmt"
	"io"

	"github.com/urfave/cli/v3"

	"github.com/custody-audit/custody/storage"
	"github.com/custody-audit/custody/storage/engine"
)

func initCommand() *cli.Command {
	return &cli.Command{
		Name:  "init",
		Usage: "create the store or migrate its schema to this version",
		Description: `Applies every schema migration the store has not seen yet and records it in
schema_migrations and the custody log. Safe to run again.

   $ custody init --store ./custody-data
   $ custody init --clickhouse 'clickhouse://custody:…@ch1:9440,ch2:9440/?secure=true' --cluster prod`,
		Action: func(ctx context.Context, cmd *cli.Command) error {
			return runInit(ctx, initOptions{
				Schema: schemaOptions(cmd), Actor: actorName(), Stdout: cmd.Root().Writer,
				Open: func(ctx context.Context) (engine.Engine, error) {
					return openEngine(ctx, cmd, migrating, modeUser[migrating])
				},
			})
		},
	}
}

// initOptions is what `custody init` migrates.
type initOptions struct {
	// Schema is the database (and cluster) the migrations create.
	Schema storage.SchemaOptions
	// Actor is who the custody log says migrated.
	Actor  string
	Stdout io.Writer
	// Open opens the engine as an account that may migrate.
	Open func(ctx context.Context) (engine.Engine, error)
}

// runInit applies the migrations the store has not seen and says which.
func runInit(ctx context.Context, o initOptions) error {
	eng, err := o.Open(ctx)
	if err != nil {
		return err
	}
	defer eng.Close(context.Background())
	applied, err := storage.Migrate(ctx, eng, o.Schema, o.Actor)
	if err != nil {
		return err
	}
	if len(applied) == 0 {
		fmt.Fprintln(o.Stdout, "schema is up to date")
		return nil
	}
	for _, v := range applied {
		fmt.Fprintf(o.Stdout, "applied migration %04d\n", v)
	}
	return nil
}
