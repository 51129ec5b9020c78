// Command custody-chdb hosts the embedded ClickHouse engine (libchdb) for
// one Custody store. custody starts it as a child process; it is not meant
// to be run by hand. With --listen it runs a private ClickHouse server on
// a loopback port (see storage/chdb and storage/chdb/host); without, it
// answers the older framed protocol on stdin/stdout.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/custody-audit/custody/storage/chdb/host"
)

func main() {
	var opts host.Options
	var listen bool
	flag.StringVar(&opts.Dir, "store", "", "store directory")
	flag.BoolVar(&opts.ReadOnly, "read-only", false, "refuse every write")
	flag.BoolVar(&listen, "listen", false, "run a private ClickHouse server on loopback (spec on stdin; stops when stdin closes)")
	flag.Parse()
	if opts.Dir == "" {
		fmt.Fprintln(os.Stderr, "custody-chdb: --store is required (this program is started by custody)")
		os.Exit(2)
	}
	var err error
	if listen {
		var in, out, term *os.File
		if in, out, term, err = host.Stdio(); err == nil {
			err = host.Listen(host.ServerOptions{Dir: opts.Dir, Library: os.Getenv("CHDB_LIB_PATH"), Terminal: term}, in, out)
		}
	} else {
		err = host.Serve(opts, os.Stdin, os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "custody-chdb:", err)
		os.Exit(1)
	}
}
