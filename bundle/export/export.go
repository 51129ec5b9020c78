// Package export writes an auditor bundle (package bundle) of the events
// a Custody store holds: it selects the rows (a window, a chain, or the
// events a catalogue query returns), and reads them, the chains'
// checkpoints and their stored hashes through the store's engine for
// bundle.Write. The bundle's format, its codecs and the offline verifier
// live in package bundle, which imports no store. Its tests are package
// bundle's black-box tests (bundle/export_test.go, duplicates_test.go),
// which write bundles from a store on both backends and verify them.
package export

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"time"

	"github.com/custody-audit/custody/bundle"
	"github.com/custody-audit/custody/queries"
	"github.com/custody-audit/custody/storage"
	"github.com/custody-audit/custody/storage/engine"
	"github.com/custody-audit/custody/storage/trail"
)

// Options configure an export.
type Options struct {
	// Engine is the store's engine; Database the database holding the
	// trail (empty means queries.DefaultDatabase).
	Engine   engine.Engine
	Database string
	// From (inclusive) and To (exclusive) bound event_time. Required.
	From, To time.Time
	// Chain limits the export to one chain; empty exports all.
	Chain string
	// Query, when set, exports only the events whose event_id the
	// catalogue query returns over [From, To), run with QueryArgs. The
	// query must return an event_id column.
	Query     *queries.Query
	QueryArgs map[string]string
	// Output is the bundle's format, directory, keys and progress.
	bundle.Output
}

// ErrNoEventID means the catalogue query returns no event_id column.
var ErrNoEventID = errors.New("query returns no event_id column")

var identifier = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Export writes a bundle of the selected events to opts.Dir (see
// bundle.Write). Nothing is left in Dir when it fails. Errors in the
// options wrap bundle.ErrBadOptions.
func Export(ctx context.Context, opts Options) (*bundle.Result, error) {
	switch {
	case opts.Engine == nil:
		return nil, fmt.Errorf("%w: no engine", bundle.ErrBadOptions)
	case opts.Database != "" && !identifier.MatchString(opts.Database):
		return nil, fmt.Errorf("%w: database name %q must be a plain identifier", bundle.ErrBadOptions, opts.Database)
	}
	if opts.Database == "" {
		opts.Database = queries.DefaultDatabase
	}
	src := &source{eng: opts.Engine, db: opts.Database,
		where:  "event_time >= {from:DateTime64(6)} AND event_time < {to:DateTime64(6)} AND ({chain:String} = '' OR chain = {chain:String})",
		params: engine.Params{"from": queries.FormatTime(opts.From), "to": queries.FormatTime(opts.To), "chain": opts.Chain}}
	wo := bundle.WriteOptions{
		Source: src, Store: bundle.StoreInfo{Engine: opts.Engine.Kind(), Database: opts.Database},
		From: opts.From, To: opts.To, Chain: opts.Chain, Output: opts.Output,
	}
	if opts.Query != nil {
		ids, bound, err := queryEventIDs(ctx, opts)
		if err != nil {
			return nil, err
		}
		wo.Query, wo.QueryParams, wo.QueryBound = opts.Query.Name, opts.QueryArgs, bound
		src.params["ids"] = engine.StringArray(ids)
		src.where += " AND has({ids:Array(String)}, event_id)"
	}
	return bundle.Write(ctx, wo)
}

// queryEventIDs runs the catalogue query and returns the event ids it
// found (sorted, unique) and the parameters it was bound with.
func queryEventIDs(ctx context.Context, opts Options) ([]string, map[string]string, error) {
	params, err := opts.Query.Bind(opts.QueryArgs, opts.From, opts.To)
	if err != nil {
		return nil, nil, err
	}
	rows, err := queries.Runner{Engine: opts.Engine, Database: opts.Database}.RunBound(ctx, opts.Query, params)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	col := -1
	for i, c := range rows.Columns() {
		if c.Name == "event_id" {
			col = i
		}
	}
	if col < 0 {
		return nil, nil, fmt.Errorf("%w: %s answers with aggregates, not events; export the window instead, or a query listing events", ErrNoEventID, opts.Query.Name)
	}
	seen := map[string]bool{}
	var ids []string
	for rows.Next() {
		id := rows.Values()[col]
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("query %s: %w", opts.Query.Name, err)
	}
	slices.Sort(ids)
	bound := make(map[string]string, len(params))
	for k, v := range params {
		bound[k] = v
	}
	return ids, bound, nil
}

// source is bundle.Source over the store's engine: the selected rows of
// the events table, and the checkpoints and hashes the proofs need.
type source struct {
	eng    engine.Engine
	db     string
	where  string // the selection, with server-side parameters
	params engine.Params
}

func (s *source) Count(ctx context.Context) (uint64, error) {
	rows, err := s.eng.Query(ctx, "SELECT count() FROM "+s.db+".events WHERE "+s.where, s.params)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	var n uint64
	for rows.Next() {
		if err := rows.Scan(&n); err != nil {
			return 0, err
		}
	}
	if err := rows.Err(); err != nil {
		return 0, err
	}
	return n, nil
}

func (s *source) Rows(ctx context.Context, fn func(r *trail.Row) error) error {
	rows, err := s.eng.QueryBlocks(ctx, "SELECT "+storage.EventColumnList()+" FROM "+s.db+".events WHERE "+s.where, s.params)
	if err != nil {
		return err
	}
	defer rows.Close()
	var r storage.Row
	for rows.Next() {
		r = storage.Row{} // fresh strings and slices for each row
		if err := storage.ScanRow(rows, &r); err != nil {
			return err
		}
		if err := fn(&r); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	return rows.Close()
}

func (s *source) CheckpointCovering(ctx context.Context, chain string, seq uint64) (size uint64, root trail.Hash, msg string, found bool, err error) {
	err = engine.Each(ctx, s.eng, "SELECT tree_size, root_hash, note FROM "+s.db+".checkpoints WHERE chain = {chain:String} AND tree_size >= {seq:UInt64} ORDER BY tree_size LIMIT 1",
		engine.Params{"chain": chain, "seq": fmt.Sprint(seq)}, func(r engine.Rows) error {
			found = true
			return r.Scan(&size, &root, &msg)
		})
	return size, root, msg, found, err
}

func (s *source) CompactRange(ctx context.Context, chain string, seq uint64) (size uint64, hashes [][]byte, err error) {
	err = engine.Each(ctx, s.eng, "SELECT tree_size, compact_range FROM "+s.db+".checkpoints WHERE chain = {chain:String} AND tree_size <= {seq:UInt64} ORDER BY tree_size DESC LIMIT 1",
		engine.Params{"chain": chain, "seq": fmt.Sprint(seq)}, func(r engine.Rows) error {
			var hs []string
			if err := r.Scan(&size, &hs); err != nil {
				return err
			}
			hashes = make([][]byte, len(hs))
			for i, h := range hs {
				hashes[i] = []byte(h)
			}
			return nil
		})
	return size, hashes, err
}

func (s *source) Hashes(ctx context.Context, chain string, after, upto uint64, fn func(seq uint64, h trail.Hash) error) error {
	return engine.Each(ctx, s.eng, "SELECT seq, hash FROM "+s.db+".events WHERE chain = {chain:String} AND seq > {after:UInt64} AND seq <= {size:UInt64} ORDER BY seq",
		engine.Params{"chain": chain, "after": fmt.Sprint(after), "size": fmt.Sprint(upto)}, func(r engine.Rows) error {
			var seq uint64
			var h trail.Hash
			if err := r.Scan(&seq, &h); err != nil {
				return err
			}
			return fn(seq, h)
		})
}
