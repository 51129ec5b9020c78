package storage

import (
	"context"

	"github.com/custody-audit/custody/storage/engine"
	"github.com/custody-audit/custody/storage/trail"
)

// ExecMigrationStatement exposes execMigrationStatement to the external
// tests.
var ExecMigrationStatement = execMigrationStatement

// WithBeforeWalk sets a function Verify runs after reading the purge
// records and before reading the chains.
func WithBeforeWalk(o VerifyOptions, f func()) VerifyOptions {
	o.beforeWalk = f
	return o
}

// Hooks for the known-answer vector tests (vectors_test.go).
var (
	SignCheckpoint = signCheckpoint
	SignPurge      = signPurge
	CheckPurge     = checkPurge
)

// InsertRows stores rows in db.events exactly as given (chain, seq,
// prev_hash and hash included, no chaining), through the insert path the
// store appends with, so that the engine's EventHashSQL can be checked
// against rows no chain would produce (seq 2^64-1, arbitrary prev_hash).
func InsertRows(ctx context.Context, eng engine.Engine, db string, rows []Row) error {
	b, err := eng.PrepareBatch(ctx, db+".events", eventColumns)
	if err != nil {
		return err
	}
	var (
		args  []any
		attrs []engine.Pair
	)
	for i := range rows {
		r := &rows[i]
		p := pendingRow{chain: &r.Chain, seq: r.Seq, offset: r.Offset, ev: &r.Event,
			time: canonicalTime(r.Event.Time), received: canonicalTime(r.Event.ReceivedTime), ip: trail.IPText(r.Event.SourceIP),
			prev: r.PrevHash, hash: r.Hash}
		attrs = trail.SortPairs(attrs[:0], r.Event.Attributes)
		if args, err = appendRow(b, &p, &attrs, args); err != nil {
			_ = b.Abort()
			return err
		}
	}
	return b.Send(ctx, "")
}
