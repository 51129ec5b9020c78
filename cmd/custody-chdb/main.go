// Command custody-chdb hosts the embedded chDB engine for one Custody store.
// custody starts it as a child process; it is not meant to be run by hand.
// See storage/chdb for the protocol and why the engine lives in its own
// process.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/custody-audit/custody/storage/chdb/host"
)

func main() {
	var opts host.Options
	flag.StringVar(&opts.Dir, "store", "", "store directory")
	flag.BoolVar(&opts.ReadOnly, "read-only", false, "refuse every write")
	flag.Parse()
	if opts.Dir == "" {
		fmt.Fprintln(os.Stderr, "custody-chdb: --store is required (this program is started by custody)")
		os.Exit(2)
	}
	if err := host.Serve(opts, os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "custody-chdb:", err)
		os.Exit(1)
	}
}
