package storage

import (
	"context"
	"errors"
	"fmt"
	"sort"
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
}

// badParts is the outcome of the engine's part check: the bad parts by
// table. Verification leaves them out of every query (see partFilter), so
// a corrupt column file is a finding instead of an engine error that stops
// verification, and the rows it held show as gaps.
type badParts map[string][]string

// filter is the condition leaving table's bad parts out, with its
// parameter set in p; "" when there are none.
func (b badParts) filter(table string, p engine.Params) string {
	parts := b[table]
	if len(parts) == 0 {
		return ""
	}
	name := "skip_parts_" + table
	p[name] = ArrayLiteral(parts)
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
// check (no CHECK privilege, Distributed tables on a cluster) gives one
// part_check_skipped warning.
func (s *Store) checkParts(ctx context.Context, add func(Finding)) (badParts, error) {
	var bad []partCheck
	for _, t := range verifiedTables {
		ok, err := s.hasTable(ctx, t)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		found, err := s.checkTable(ctx, t)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, engine.ErrEngineGone) {
				return nil, err
			}
			add(Finding{Kind: KindPartCheckSkipped, Chain: "", Detail: fmt.Sprintf("the engine's part check of %s could not run, so corrupt parts would stop verification with an engine error instead of being reported: %s", t, engineMessage(err))})
			return badParts{}, nil
		}
		bad = append(bad, found...)
	}
	out := badParts{}
	for _, b := range bad {
		out[b.table] = append(out[b.table], b.part)
	}
	for _, b := range bad {
		for _, f := range s.partFindings(ctx, b) {
			add(f)
		}
	}
	return out, nil
}

// checkTable runs CHECK TABLE with a row per part and returns the parts
// that failed.
func (s *Store) checkTable(ctx context.Context, table string) ([]partCheck, error) {
	var out []partCheck
	err := s.queryEach(ctx, "CHECK TABLE "+s.db+"."+table+" SETTINGS check_query_single_value_result = 0", nil, func(r engine.Rows) error {
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
		return nil, fmt.Errorf("check parts of %s: %w", table, err)
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
		return []Finding{{Kind: KindCorruptPart, Part: b.part, Detail: fmt.Sprintf("part %s of %s fails the engine's check (%s); verification leaves it out", b.part, b.table, why)}}
	}
	var out []Finding
	err := s.queryEach(ctx, "SELECT toString(chain), min(seq), max(seq), count() FROM "+s.db+".events WHERE _part = {part:String} GROUP BY chain ORDER BY chain",
		engine.Params{"part": b.part}, func(r engine.Rows) error {
			var f Finding
			var n uint64
			if err := r.Scan(&f.Chain, &f.Seq, &f.Through, &n); err != nil {
				return err
			}
			f.Kind, f.Part = KindCorruptPart, b.part
			f.Detail = fmt.Sprintf("part %s fails the engine's check (%s); its %d rows of the chain, seq %d..%d, are left out of the verification (and show as missing)", b.part, why, n, f.Seq, f.Through)
			out = append(out, f)
			return nil
		})
	if err != nil || len(out) == 0 {
		return []Finding{{Kind: KindCorruptPart, Part: b.part, Detail: fmt.Sprintf("part %s fails the engine's check (%s); its chains and sequence numbers cannot be read, the missing rows reported below are the ones it held", b.part, why)}}
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
