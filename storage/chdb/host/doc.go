// Package host runs the embedded engine inside the custody-chdb process:
// clickhouse-local from libchdb, serving one store as a private ClickHouse
// server on loopback (see Listen).
//
// It is the only package that loads libchdb. The library is 570 MB and
// carries a whole ClickHouse, so linking it into the custody binary would
// make every command, even --help, depend on it; running it in its own
// process also means a crash inside the C++ engine cannot corrupt the
// collector's memory, and the operating system tells the collector at
// once when the engine is gone.
package host
