// Command clickhouse stands in for an official clickhouse binary in tests
// of the embedded engine's binary path (chdb.Options.EngineBinary), where
// no official binary can be installed: it takes the binary's command line
// for clickhouse-local, `clickhouse local ARGS`, and runs clickhouse-local
// from libchdb (chDB's query_stable_v2, the entry point custody-chdb calls
// in-process) with ARGS. What the query writes goes to standard output
// when it ends, its error to standard error with exit status 1, as
// `clickhouse local` does. It is not ClickHouse's binary: only its command
// line, standard streams and exit status are the same. Nothing but tests
// builds it (chdbtest.ClickHouseBinary).
package main

import (
	"fmt"
	"os"

	"github.com/custody-audit/custody/storage/chdb"
	"github.com/custody-audit/custody/storage/chdb/host"
)

func main() {
	if len(os.Args) < 2 || os.Args[1] != "local" {
		fmt.Fprintln(os.Stderr, "usage: clickhouse local [clickhouse-local arguments] (only the local tool is here)")
		os.Exit(2)
	}
	lib, err := chdb.FindLibrary("")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	out, err := host.Local(lib, append([]string{"clickhouse"}, os.Args[2:]...))
	if _, werr := os.Stdout.Write(out); err == nil {
		err = werr
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
