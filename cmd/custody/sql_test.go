package main

import (
	"bytes"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/custody-audit/custody/internal/storetest"
	"github.com/custody-audit/custody/storage"
	"github.com/custody-audit/custody/storage/chdb"
)

// TestSQLIsReadOnly runs every statement the outside probe used to read
// or write files, reach the network or disturb the engine through custody
// sql (issue 11), on both backends: each is refused, nothing it aimed at
// changes, the listener it pointed at sees no connection, and the signing
// key is never printed. On a server, custody sql also refuses to run as a
// user holding more than the reader role.
func TestSQLIsReadOnly(t *testing.T) {
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		s := newCLIStore(t, b)
		dir := s.dir
		writePT1H(t, filepath.Join(dir, "archive"), 5)
		for _, args := range [][]string{{"keygen"}, {"init"}, {"backfill", filepath.Join(dir, "archive")}} {
			s.mustCLI(args...)
		}
		sql := func(user, q string) (string, error) {
			return s.cliAs(user, "sql", "--format", "tsv", q)
		}
		out, err := sql(storage.UserInvestigator, "SELECT count() FROM custody.events")
		if err != nil || out != "count()\n5\n" {
			t.Fatalf("read: %q %v", out, err)
		}

		cps, _ := filepath.Glob(filepath.Join(dir, "cp", "*"))
		if len(cps) == 0 {
			t.Fatal("no checkpoint file written")
		}
		checkpoint := cps[0]
		before, err := os.ReadFile(checkpoint)
		if err != nil {
			t.Fatal(err)
		}
		var accepted atomic.Int64
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				accepted.Add(1)
				c.Close()
			}
		}()
		peer := ln.Addr().String()
		key := filepath.Join(dir, "k")

		for _, q := range []string{
			"INSERT INTO FUNCTION file('" + checkpoint + "', 'RawBLOB', 'a String') SELECT 'garbage' SETTINGS engine_file_truncate_on_insert = 1",
			"SELECT * FROM file('" + key + "', 'LineAsString')",
			"SELECT * FROM url('http://" + peer + "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fmanagement.azure.com%2F', 'RawBLOB', headers('Metadata' = 'true'))",
			"SELECT * FROM remote('" + peer + "', system.one)",
			"SELECT * FROM mysql('" + peer + "', 'db', 't', 'u', 'p')",
			"SELECT * FROM postgresql('" + peer + "', 'db', 't', 'u', 'p')",
			"SELECT * FROM hdfs('hdfs://" + peer + "/x', 'TSV', 'a String')",
			"SELECT * FROM s3('http://" + peer + "/bucket/x', 'TSV', 'a String')",
			"SELECT * FROM executable('cat /etc/passwd', 'TSV', 'a String')",
			"CREATE TEMPORARY TABLE t (a UInt8)",
			"SYSTEM STOP MERGES",
			"KILL QUERY WHERE 1",
			"SELECT * FROM system.stack_trace",
			"SELECT query FROM system.processes",
			"INSERT INTO custody.events (chain) VALUES ('x')",
			"ALTER TABLE custody.events DELETE WHERE 1",
			"DROP TABLE custody.events",
			"TRUNCATE TABLE custody.checkpoints",
			"CREATE TABLE custody.x (a UInt8) ENGINE = Memory",
			"SELECT 1 INTO OUTFILE '" + filepath.Join(dir, "leak.txt") + "'",
			"SELECT 1; DROP TABLE custody.events",
		} {
			out, err := sql(storage.UserInvestigator, q)
			if err == nil {
				t.Errorf("custody sql accepted: %s\n%s", q, out)
				continue
			}
			if strings.Contains(out, "PRIVATE+KEY") || strings.Contains(err.Error(), "PRIVATE+KEY") {
				t.Errorf("%s: the signing key was printed", q)
			}
		}
		after, err := os.ReadFile(checkpoint)
		if err != nil || !bytes.Equal(before, after) {
			t.Errorf("checkpoint file changed: %v\n%s", err, after)
		}
		if n := accepted.Load(); n != 0 {
			t.Errorf("the listener received %d connections", n)
		}
		if _, err := os.Stat(filepath.Join(dir, "leak.txt")); err == nil {
			t.Error("INTO OUTFILE wrote a file")
		}

		if b == storetest.Server {
			// An admin's or the collector's DSN is refused before the
			// query runs.
			for _, user := range []string{chdb.AdminUser, storage.UserCollector} {
				_, err := sql(user, "SELECT count() FROM custody.events")
				if !errors.Is(err, errRefused) || !strings.Contains(err.Error(), storage.RoleReader) {
					t.Errorf("custody sql as %s: %v, want a refusal naming %s", user, err, storage.RoleReader)
				}
			}
		}
	})
}

// TestSQLPrintsEveryType: custody sql prints columns of every type (on
// servers it failed on anything but String: issue 11 item 8), as
// ClickHouse's text formats write them.
func TestSQLPrintsEveryType(t *testing.T) {
	const q = `SELECT toUInt64(18446744073709551615) AS u64, toInt32(-7) AS i32,
		toDateTime64('2026-01-02 03:04:05.123456', 6, 'UTC') AS dt64, toDateTime('2026-01-02 03:04:05', 'UTC') AS dt, toDate('2026-01-02') AS d,
		['a', 'b''c'] AS arr, map('a', 'b', 'k', 'v') AS m, toLowCardinality('lc') AS lc, toFixedString('ab', 2) AS fs,
		CAST(NULL AS Nullable(UInt8)) AS null_u8, CAST(7 AS Nullable(UInt8)) AS some_u8, [toUInt64(1), 2] AS arr_u64,
		CAST([NULL, 'x'] AS Array(Nullable(String))) AS arr_null, true AS b, 1.5 AS f`
	const want = "u64\ti32\tdt64\tdt\td\tarr\tm\tlc\tfs\tnull_u8\tsome_u8\tarr_u64\tarr_null\tb\tf\n" +
		"18446744073709551615\t-7\t2026-01-02 03:04:05.123456\t2026-01-02 03:04:05\t2026-01-02\t['a','b\\'c']\t{'a':'b','k':'v'}\tlc\tab\tNULL\t7\t[1,2]\t[NULL,'x']\ttrue\t1.5\n"
	storetest.Run(t, func(t *testing.T, b storetest.Backend) {
		s := newCLIStore(t, b)
		for _, args := range [][]string{{"keygen"}, {"init"}} {
			s.mustCLI(args...)
		}
		out, err := s.cli("sql", "--format", "tsv", q)
		if err != nil {
			t.Fatal(err)
		}
		if out != want {
			t.Errorf("custody sql printed\n%s\nwant\n%s", out, want)
		}
	})
}
