package main

import (
	"context"
	"fmt"

	"github.com/urfave/cli/v3"

	"github.com/custody-audit/custody/storage"
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
			eng, err := openEngine(ctx, cmd, migrating, modeUser[migrating])
			if err != nil {
				return err
			}
			defer eng.Close(context.Background())
			applied, err := storage.Migrate(ctx, eng, schemaOptions(cmd), actorName())
			if err != nil {
				return err
			}
			if len(applied) == 0 {
				fmt.Fprintln(cmd.Root().Writer, "schema is up to date")
				return nil
			}
			for _, v := range applied {
				fmt.Fprintf(cmd.Root().Writer, "applied migration %04d\n", v)
			}
			return nil
		},
	}
}
