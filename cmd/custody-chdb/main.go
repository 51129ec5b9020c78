// Command custody-chdb runs the embedded ClickHouse engine for one Custody
// store as a private server on loopback: clickhouse-local from libchdb in
// this process, or, with --clickhouse-binary, an official clickhouse
// binary's `clickhouse local` as its child, with the same arguments,
// config and statements. custody starts it as a child process and it is
// not meant to be run by hand: it reads its access policy as one JSON line
// on stdin, answers one JSON line on stdout once the server accepts
// connections, and stops the server when stdin closes. See storage/chdb
// and storage/chdb/host.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/custody-audit/custody/storage/chdb/host"
)

func main() {
	var dir, binary string
	flag.StringVar(&dir, "store", "", "store directory")
	flag.StringVar(&binary, "clickhouse-binary", "", "official clickhouse executable to run the engine from (`clickhouse local`) instead of libchdb")
	flag.Parse()
	if dir == "" {
		fmt.Fprintln(os.Stderr, "custody-chdb: --store is required (this program is started by custody)")
		os.Exit(2)
	}
	in, out, term, err := host.Stdio()
	if err == nil {
		err = host.Listen(host.ServerOptions{Dir: dir, Library: os.Getenv("CHDB_LIB_PATH"), Binary: binary, Terminal: term, Diagnostics: os.Stderr}, in, out)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "custody-chdb:", err)
		os.Exit(1)
	}
}
