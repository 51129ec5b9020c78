package storage

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"

	"github.com/custody-audit/custody/storage/engine"
)

// verifiedTables are the tables whose parts verify has the engine check
// (CHECK TABLE: every file of every part against the part's checksums):
// the three it reads, and the custody log, which records who did what.
var verifiedTables = []string{"events", "checkpoints", "purges", "custody_log"}

// partCheck is one part the engine's check found bad.
type partCheck struct {
	table, part, message string
	// shard is the part's shard number on a cluster (system.clusters'
	// shard_num, the Distributed tables' _shard_num); 0 on one server.
	shard uint32
	// eng is the server holding the part (the store's engine on one
	// server, the replica's on a cluster).
	eng engine.Engine
}

// key names the part among every shard's: its name, prefixed with its
// shard number on a cluster (shards name their parts alike).
func (p partCheck) key() string {
	if p.shard == 0 {
		return p.part
	}
	return fmt.Sprintf("%d:%s", p.shard, p.part)
}

// badParts is the outcome of the engine's part check: the bad parts by
// table (partCheck.key). Verification leaves them out of every query (see
// filter), so a corrupt column file is a finding instead of an engine
// error that stops verification, and the rows it held show as gaps.
type badParts struct {
	byTable map[string][]string
	// sharded: the tables are Distributed, the keys name shard and part.
	sharded bool
}

// filter is the condition leaving table's bad parts out, with its
// parameter set in p; "" when there are none.
func (b badParts) filter(table string, p engine.Params) string {
	parts := b.byTable[table]
	if len(parts) == 0 {
		return ""
	}
	name := "skip_parts_" + table
	p[name] = engine.StringArray(parts)
	if b.sharded {
		return "concat(toString(_shard_num), ':', _part) NOT IN {" + name + ":Array(String)}"
	}
	return "_part NOT IN {" + name + ":Array(String)}"
}

// and is filter joined to a condition with AND.
func (b badParts) and(table string, p engine.Params) string {
	if f := b.filter(table, p); f != "" {
		return " AND " + f
	}
	return ""
}

// checkParts has the engine check every part of the verified tables. A
// bad part is a corrupt_part finding per chain it held (with the sequence
// numbers, when they can still be read); an engine that cannot run the
// check (no CHECK privilege, a cluster's server it cannot reach) gives a
// part_check_skipped warning.
//
// On a cluster the tables the store reads are Distributed, which have no
// parts: the check runs on every server of the cluster (every replica of
// every shard, from system.clusters), connected with Options.DialShard,
// on the local tables behind them.
func (s *Store) checkParts(ctx context.Context, add func(Finding)) (badParts, error) {
	if s.opts.Schema.Cluster != "" {
		return s.checkClusterParts(ctx, add)
	}
	var bad []partCheck
	for _, t := range verifiedTables {
		ok, err := s.hasTable(ctx, t)
		if err != nil {
			return badParts{}, err
		}
		if !ok {
			continue
		}
		found, err := checkTable(ctx, s.eng, s.db, t, t)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, engine.ErrEngineGone) {
				return badParts{}, err
			}
			add(Finding{Kind: KindPartCheckSkipped, Chain: "", Detail: fmt.Sprintf("the engine's part check of %s could not run, so corrupt parts would stop verification with an engine error instead of being reported: %s", t, engineMessage(err))})
			return badParts{}, nil
		}
		for i := range found {
			found[i].eng = s.eng
		}
		bad = append(bad, found...)
	}
	return s.badPartFindings(ctx, bad, false, add), nil
}

// badPartFindings reports bad parts and returns them as badParts.
func (s *Store) badPartFindings(ctx context.Context, bad []partCheck, sharded bool, add func(Finding)) badParts {
	out := badParts{byTable: map[string][]string{}, sharded: sharded}
	for _, b := range bad {
		out.byTable[b.table] = append(out.byTable[b.table], b.key())
	}
	for _, b := range bad {
		for _, f := range s.partFindings(ctx, b) {
			add(f)
		}
	}
	return out
}

// clusterReplica is one server of the store's cluster.
type clusterReplica struct {
	shard, replica uint32
	host           string
	port           uint16
}

// checkClusterParts is checkParts on a cluster.
func (s *Store) checkClusterParts(ctx context.Context, add func(Finding)) (badParts, error) {
	c := s.opts.Schema.Cluster
	skip := func(detail string) (badParts, error) {
		add(Finding{Kind: KindPartCheckSkipped, Detail: "the engine's part check could not run on cluster " + c + ", so corrupt parts would stop verification with an engine error instead of being reported: " + detail})
		return badParts{sharded: true}, nil
	}
	if s.opts.DialShard == nil {
		return skip("a Distributed table has no parts to check, and this store has no way to connect to the cluster's servers (Options.DialShard)")
	}
	var replicas []clusterReplica
	err := s.queryEach(ctx, "SELECT shard_num, replica_num, host_name, port FROM system.clusters WHERE cluster = {c:String} ORDER BY shard_num, replica_num",
		engine.Params{"c": c}, func(r engine.Rows) error {
			var x clusterReplica
			if err := r.Scan(&x.shard, &x.replica, &x.host, &x.port); err != nil {
				return err
			}
			replicas = append(replicas, x)
			return nil
		})
	if err != nil {
		if ctx.Err() != nil || errors.Is(err, engine.ErrEngineGone) {
			return badParts{}, err
		}
		return skip("read the cluster's servers: " + engineMessage(err))
	}
	if len(replicas) == 0 {
		return skip("system.clusters names no servers of it")
	}
	var bad []partCheck
	for _, r := range replicas {
		found, err := s.checkReplica(ctx, r)
		if err != nil {
			if ctx.Err() != nil {
				return badParts{}, ctx.Err()
			}
			// The rest of the cluster is still checked.
			add(Finding{Kind: KindPartCheckSkipped, Detail: fmt.Sprintf("the engine's part check of shard %d replica %d (%s) could not run, so its corrupt parts would stop verification with an engine error instead of being reported: %s",
				r.shard, r.replica, net.JoinHostPort(r.host, strconv.Itoa(int(r.port))), engineMessage(err))})
			continue
		}
		bad = append(bad, found...)
	}
	out := s.badPartFindings(ctx, bad, true, add)
	closed := map[engine.Engine]bool{}
	for _, b := range bad {
		if !closed[b.eng] {
			closed[b.eng] = true
			_ = b.eng.Close(ctx)
		}
	}
	return out, nil
}

// checkReplica checks the local tables of one server of the cluster; the
// engine of each bad part it returns is open (the caller closes it).
func (s *Store) checkReplica(ctx context.Context, r clusterReplica) ([]partCheck, error) {
	eng, err := s.opts.DialShard(ctx, r.host, int(r.port))
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	var out []partCheck
	for _, t := range verifiedTables {
		var n uint64
		err := engine.Each(ctx, eng, "SELECT count() FROM system.tables WHERE database = {db:String} AND name = {t:String}",
			engine.Params{"db": s.db, "t": t + "_local"}, func(r engine.Rows) error { return r.Scan(&n) })
		if err != nil {
			_ = eng.Close(ctx)
			return nil, fmt.Errorf("look up table %s_local: %w", t, err)
		}
		if n == 0 {
			continue
		}
		found, err := checkTable(ctx, eng, s.db, t+"_local", t)
		if err != nil {
			_ = eng.Close(ctx)
			return nil, err
		}
		for i := range found {
			found[i].shard, found[i].eng = r.shard, eng
		}
		out = append(out, found...)
	}
	if len(out) == 0 {
		_ = eng.Close(ctx)
	}
	return out, nil
}

// checkTable runs CHECK TABLE db.local with a row per part on eng and
// returns the parts that failed, as parts of table.
func checkTable(ctx context.Context, eng engine.Engine, db, local, table string) ([]partCheck, error) {
	var out []partCheck
	err := engine.Each(ctx, eng, "CHECK TABLE "+db+"."+local+" SETTINGS check_query_single_value_result = 0", nil, func(r engine.Rows) error {
		cols := r.Columns()
		vals := make([]any, len(cols))
		var part, msg string
		var passed uint8
		for i, c := range cols {
			switch c {
			case "part_path":
				vals[i] = &part
			case "is_passed":
				vals[i] = &passed
			case "message":
				vals[i] = &msg
			default:
				vals[i] = new(string)
			}
		}
		if err := r.Scan(vals...); err != nil {
			return err
		}
		if passed == 0 {
			out = append(out, partCheck{table: table, part: part, message: msg})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("check parts of %s: %w", local, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].part < out[j].part })
	return out, nil
}

// partFindings describes a bad part: for an events part, one finding per
// chain it held with the sequence numbers, read from the part's chain and
// seq columns when they still decode.
func (s *Store) partFindings(ctx context.Context, b partCheck) []Finding {
	why := engineMessage(errors.New(b.message))
	if b.table != "events" {
		on := ""
		if b.shard != 0 {
			on = fmt.Sprintf(" on shard %d", b.shard)
		}
		return []Finding{{Kind: KindCorruptPart, Part: b.part, Detail: fmt.Sprintf("part %s of %s%s fails the engine's check (%s); verification leaves it out", b.part, b.table, on, why)}}
	}
	where, table := "", "events"
	if b.shard != 0 {
		where, table = fmt.Sprintf(" on shard %d", b.shard), "events_local"
	}
	var out []Finding
	err := engine.Each(ctx, b.eng, "SELECT toString(chain), min(seq), max(seq), count() FROM "+s.db+"."+table+" WHERE _part = {part:String} GROUP BY chain ORDER BY chain",
		engine.Params{"part": b.part}, func(r engine.Rows) error {
			var f Finding
			var n uint64
			if err := r.Scan(&f.Chain, &f.Seq, &f.Through, &n); err != nil {
				return err
			}
			f.Kind, f.Part = KindCorruptPart, b.part
			f.Detail = fmt.Sprintf("part %s%s fails the engine's check (%s); its %d rows of the chain, seq %d..%d, are left out of the verification (and show as missing)", b.part, where, why, n, f.Seq, f.Through)
			out = append(out, f)
			return nil
		})
	if err != nil || len(out) == 0 {
		return []Finding{{Kind: KindCorruptPart, Part: b.part, Detail: fmt.Sprintf("part %s%s fails the engine's check (%s); its chains and sequence numbers cannot be read, the missing rows reported below are the ones it held", b.part, where, why)}}
	}
	return out
}

// engineMessage is the first sentence of an engine error, without the
// stack of context ClickHouse appends.
func engineMessage(err error) string {
	m := err.Error()
	if _, after, ok := strings.Cut(m, "DB::Exception: "); ok {
		m = after
	}
	for _, end := range []string{". (", " (version", "\n"} {
		if i := strings.Index(m, end); i > 0 {
			m = m[:i]
		}
	}
	if len(m) > 300 {
		m = m[:300] + "…"
	}
	return m
}
