package web

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/custody-audit/custody/storage"
	"github.com/custody-audit/custody/storage/engine"
)

// errUnattested means no signed checkpoint covers the row yet.
var errUnattested = errors.New("no signed checkpoint covers this row yet")

// storedCheckpoint is a checkpoint row of the store.
type storedCheckpoint struct {
	Size uint64
	Root storage.Hash
	Note string
}

// inclusion is an RFC 6962 inclusion proof of one row's leaf in the tree
// of the first checkpoint that covers it.
type inclusion struct {
	Checkpoint storedCheckpoint
	Index      uint64 // leaf index: seq - 1
	Proof      [][]byte
}

var rangeFactory = &compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}

// proveInclusion builds the inclusion proof of row seq of chain. It reads
// the first checkpoint covering the row, the checkpoint before it (whose
// stored compact range stands for every earlier leaf) and the row hashes
// between the two (one append's worth), so its cost does not grow with
// the chain. The proof is checked against the checkpoint's root before it
// is returned.
func proveInclusion(ctx context.Context, eng engine.Engine, db, chain string, seq uint64) (*inclusion, error) {
	if seq == 0 {
		return nil, errors.New("seq 0 is no row")
	}
	p := engine.Params{"chain": chain, "seq": strconv.FormatUint(seq, 10)}
	var cover *storedCheckpoint
	err := engine.Each(ctx, eng, "SELECT tree_size, root_hash, note FROM "+db+".checkpoints WHERE chain = {chain:String} AND tree_size >= {seq:UInt64} ORDER BY tree_size LIMIT 1", p, func(r engine.Rows) error {
		var c storedCheckpoint
		var root []byte
		if err := r.Scan(&c.Size, &root, &c.Note); err != nil {
			return err
		}
		copy(c.Root[:], root)
		cover = &c
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read covering checkpoint: %w", err)
	}
	if cover == nil {
		return nil, errUnattested
	}
	// The compact range of the newest checkpoint before the row: the
	// perfect subtrees covering leaves [0, base).
	var base uint64
	var baseHashes [][]byte
	err = engine.Each(ctx, eng, "SELECT tree_size, compact_range FROM "+db+".checkpoints WHERE chain = {chain:String} AND tree_size < {seq:UInt64} ORDER BY tree_size DESC LIMIT 1", p, func(r engine.Rows) error {
		var hs []string
		if err := r.Scan(&base, &hs); err != nil {
			return err
		}
		baseHashes = make([][]byte, len(hs))
		for i, h := range hs {
			baseHashes[i] = []byte(h)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read previous checkpoint: %w", err)
	}
	rng, err := rangeFactory.NewRange(0, base, baseHashes)
	if err != nil {
		return nil, fmt.Errorf("stored compact range at %d: %w", base, err)
	}
	known := map[compact.NodeID][]byte{}
	for i, id := range compact.RangeNodes(0, base, nil) {
		known[id] = baseHashes[i]
	}
	visit := func(id compact.NodeID, h []byte) { known[id] = h }
	next := base + 1
	p["base"], p["size"] = strconv.FormatUint(base, 10), strconv.FormatUint(cover.Size, 10)
	err = engine.Each(ctx, eng, "SELECT seq, hash FROM "+db+".events WHERE chain = {chain:String} AND seq > {base:UInt64} AND seq <= {size:UInt64} ORDER BY seq", p, func(r engine.Rows) error {
		var s uint64
		var h []byte
		if err := r.Scan(&s, &h); err != nil {
			return err
		}
		if s != next || len(h) != 32 {
			return fmt.Errorf("chain %s: row %d where %d was expected (rows missing or stored twice)", chain, s, next)
		}
		next++
		leaf := rfc6962.DefaultHasher.HashLeaf(h)
		return rng.Append(leaf, visit)
	})
	if err != nil {
		return nil, fmt.Errorf("read leaves %d-%d: %w", base+1, cover.Size, err)
	}
	if next != cover.Size+1 {
		return nil, fmt.Errorf("chain %s holds rows up to %d, but its checkpoint covers %d", chain, next-1, cover.Size)
	}
	root, err := rng.GetRootHash(nil)
	if err != nil {
		return nil, fmt.Errorf("compute root: %w", err)
	}
	if string(root) != string(cover.Root[:]) {
		return nil, fmt.Errorf("chain %s: the rows do not hash to the root of the checkpoint at size %d", chain, cover.Size)
	}
	nodes, err := proof.Inclusion(seq-1, cover.Size)
	if err != nil {
		return nil, err
	}
	hashes := make([][]byte, len(nodes.IDs))
	for i, id := range nodes.IDs {
		h, ok := known[id]
		if !ok {
			return nil, fmt.Errorf("proof node %v of chain %s is not derivable", id, chain)
		}
		hashes[i] = h
	}
	pf, err := nodes.Rehash(hashes, rfc6962.DefaultHasher.HashChildren)
	if err != nil {
		return nil, err
	}
	return &inclusion{Checkpoint: *cover, Index: seq - 1, Proof: pf}, nil
}
