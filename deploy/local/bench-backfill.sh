#!/usr/bin/env bash
# Times one whole `custody backfill` into a fresh embedded store, the engine
# host included: the measure of issue 13 (README, Benchmarks). Run several
# times, interleaved with the build you compare against: on a shared
# machine CPU time moves with the load too.
#
#   deploy/local/bench-backfill.sh [BIN_DIR [LOAD [LABEL]]]
#
# BIN_DIR holds custody and custody-chdb (default ./bin, `make build`);
# LOAD is a file of records (default: 200,000 generated ones, as
# `go run ./normalize/internal/loadgen/gen -records 200000` writes them,
# kept in $TMPDIR for the next run). Prints user+sys CPU of the command
# (custody waits for its engine host, so /usr/bin/time counts both), the
# engine host's share (utime+stime from /proc, sampled), wall clock, peak
# RSS, the events stored and the CPU per stored event. With
# CUSTODY_CPUPROFILE set, custody writes a Go CPU profile there.
set -euo pipefail
bin=$(cd "${1:-bin}" && pwd)
tmp=${TMPDIR:-/tmp}
load=${2:-$tmp/custody-bench-load-200k.jsonl}
label=${3:-$(basename "$(dirname "$bin")")}
if [ ! -s "$load" ]; then
	go run ./normalize/internal/loadgen/gen -records 200000 > "$load"
fi
load=$(cd "$(dirname "$load")" && pwd)/$(basename "$load")
dir=$(mktemp -d "$tmp/custody-bench-backfill.XXXXXX")
trap 'rm -rf "$dir"' EXIT
cd "$dir"
export PATH=$bin:$PATH CUSTODY_CHDB_HOST=$bin/custody-chdb
custody keygen >/dev/null 2>&1
custody init >/dev/null 2>&1
/usr/bin/time -v custody backfill "$load" >out.txt 2>time.txt &
timer=$!
engine=0
while kill -0 "$timer" 2>/dev/null; do
	pid=$(pgrep -n -f "custody-chdb --store $dir" || true)
	if [ -n "$pid" ]; then
		t=$(awk '{print $14+$15}' "/proc/$pid/stat" 2>/dev/null || true)
		[ -n "$t" ] && engine=$t
	fi
	sleep 0.1
done
wait "$timer"
field() { grep "$1" time.txt | awk '{print $NF}'; }
user=$(field 'User time'); sys=$(field 'System time')
events=$(grep -o '[0-9]* events stored' out.txt | awk '{print $1}')
hz=$(getconf CLK_TCK)
awk -v l="$label" -v u="$user" -v s="$sys" -v e="$engine" -v hz="$hz" -v n="$events" \
	-v w="$(field 'Elapsed')" -v r="$(field 'Maximum resident')" -v la="$(cut -d' ' -f1 /proc/loadavg)" \
	'BEGIN { printf "%s: user+sys %.2f s (engine host %.2f s), wall %s, peak RSS %d MiB, %d events stored, %.1f µs CPU per stored event, load %s\n", l, u+s, e/hz, w, r/1024, n, (u+s)*1e6/n, la }'
