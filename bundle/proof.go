package bundle

import (
	"encoding/hex"
	"fmt"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/custody-audit/custody/storage/trail"
)

// A range proof binds a chain's exported rows to a signed checkpoint of
// size N. The exported sequence numbers form runs [First, Last]; the
// leaves not exported form gaps: [0, First₁-1), [Last₁, First₂-1), …,
// [Last_k, N) in 0-based leaf indices. For every gap the proof carries its
// Merkle compact range: the roots of the perfect subtrees that tile it,
// left to right. Merging gap ranges and the leaves recomputed from the
// exported rows, in order, yields the compact range of [0, N), whose root
// must equal the checkpoint's. One proof per chain covers any mix of
// scattered single events and long contiguous ranges, with O(log N)
// hashes per gap.

var rangeFactory = &compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}

func hexHashes(hs [][]byte) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = hex.EncodeToString(h)
	}
	return out
}

func unhexHashes(hs []string) ([][]byte, error) {
	out := make([][]byte, len(hs))
	for i, h := range hs {
		b, err := hex.DecodeString(h)
		if err != nil || len(b) != 32 {
			return nil, fmt.Errorf("node hash %q is not 64 hex digits", h)
		}
		out[i] = b
	}
	return out, nil
}

// proofBuilder computes a chain's gaps while reading the chain's hashes
// in sequence order from some start, and the root over all of them.
type proofBuilder struct {
	runs []Run
	size uint64
	full *compact.Range // [0, end) of everything fed
	gap  *compact.Range // the open gap, nil inside a run
	gaps [][]string
	ri   int // index of the next run to reach
}

// newProofBuilder starts a builder from the compact range of the first
// start leaves (hashes as stored with a checkpoint of that size). Requires
// start < runs[0].First and runs[len(runs)-1].Last <= size.
func newProofBuilder(runs []Run, size, start uint64, hashes [][]byte) (*proofBuilder, error) {
	full, err := rangeFactory.NewRange(0, start, hashes)
	if err != nil {
		return nil, fmt.Errorf("restore Merkle range at %d: %w", start, err)
	}
	gap, err := rangeFactory.NewRange(0, start, hashes)
	if err != nil {
		return nil, fmt.Errorf("restore Merkle range at %d: %w", start, err)
	}
	return &proofBuilder{runs: runs, size: size, full: full, gap: gap}, nil
}

// next is the sequence number the builder needs next.
func (b *proofBuilder) next() uint64 { return b.full.End() + 1 }

// add feeds the hash of row seq, which must be b.next().
func (b *proofBuilder) add(seq uint64, h trail.Hash) error {
	if seq != b.next() {
		return fmt.Errorf("chain has no row %d (found %d next): run custody verify", b.next(), seq)
	}
	leaf := trail.LeafHash(h)
	if err := b.full.Append(leaf[:], nil); err != nil {
		return fmt.Errorf("append Merkle leaf: %w", err)
	}
	if b.ri < len(b.runs) && seq >= b.runs[b.ri].First {
		r := b.runs[b.ri]
		if b.gap != nil {
			b.gaps = append(b.gaps, hexHashes(b.gap.Hashes()))
			b.gap = nil
		}
		if seq == r.Last {
			if hex.EncodeToString(h[:]) != r.LastHash {
				return fmt.Errorf("row %d changed during the export", seq)
			}
			b.ri++
			b.gap = rangeFactory.NewEmptyRange(seq)
		}
		return nil
	}
	if err := b.gap.Append(leaf[:], nil); err != nil {
		return fmt.Errorf("append Merkle leaf: %w", err)
	}
	return nil
}

// finish closes the last gap and checks the root against the checkpoint's.
func (b *proofBuilder) finish(root trail.Hash) ([][]string, error) {
	if b.full.End() != b.size || b.ri != len(b.runs) || b.gap == nil {
		return nil, fmt.Errorf("chain read up to %d of %d rows", b.full.End(), b.size)
	}
	b.gaps = append(b.gaps, hexHashes(b.gap.Hashes()))
	got, err := b.full.GetRootHash(nil)
	if err != nil {
		return nil, fmt.Errorf("compute Merkle root: %w", err)
	}
	if hex.EncodeToString(got) != hex.EncodeToString(root[:]) {
		return nil, fmt.Errorf("Merkle root over the first %d rows is %x, the signed checkpoint says %x: run custody verify", b.size, got, root)
	}
	return b.gaps, nil
}

// proofChecker recomputes a chain's root from its gaps and the exported
// leaves, fed in sequence order.
type proofChecker struct {
	c      *Chain
	rng    *compact.Range
	ri     int
	broken string // why the root cannot be computed, once it cannot
}

// newProofChecker starts from the first gap. A malformed proof makes the
// checker broken from the start.
func newProofChecker(c *Chain) *proofChecker {
	p := &proofChecker{c: c}
	if len(c.Runs) == 0 {
		p.broken = "the chain lists no rows"
		return p
	}
	if len(c.Gaps) != len(c.Runs)+1 {
		p.broken = fmt.Sprintf("the proof has %d gaps for %d runs", len(c.Gaps), len(c.Runs))
		return p
	}
	p.rng, p.broken = gapRange(c, 0)
	return p
}

// gapRange restores gap i: leaves [end of run i-1, start of run i - 1).
func gapRange(c *Chain, i int) (*compact.Range, string) {
	var begin, end uint64
	if i > 0 {
		begin = c.Runs[i-1].Last
	}
	if i < len(c.Runs) {
		if c.Runs[i].First == 0 {
			return nil, "a run starts at sequence number 0"
		}
		end = c.Runs[i].First - 1
	} else {
		end = c.TreeSize
	}
	if end < begin {
		return nil, fmt.Sprintf("gap %d ends (%d) before it begins (%d)", i, end, begin)
	}
	hs, err := unhexHashes(c.Gaps[i])
	if err != nil {
		return nil, fmt.Sprintf("gap %d: %v", i, err)
	}
	r, err := rangeFactory.NewRange(begin, end, hs)
	if err != nil {
		return nil, fmt.Sprintf("gap %d [%d, %d): %v", i, begin, end, err)
	}
	return r, ""
}

// add feeds the leaf of the next exported row, which is the row the
// manifest lists next; the caller breaks the checker otherwise.
func (p *proofChecker) add(seq uint64, h trail.Hash) {
	if p.broken != "" {
		return
	}
	leaf := trail.LeafHash(h)
	if p.rng.End() != seq-1 {
		p.broken = fmt.Sprintf("row %d arrived where leaf %d was due", seq, p.rng.End())
		return
	}
	if err := p.rng.Append(leaf[:], nil); err != nil {
		p.broken = err.Error()
		return
	}
	if p.ri < len(p.c.Runs) && seq == p.c.Runs[p.ri].Last {
		p.ri++
		g, why := gapRange(p.c, p.ri)
		if why != "" {
			p.broken = why
			return
		}
		if err := p.rng.AppendRange(g, nil); err != nil {
			p.broken = err.Error()
		}
	}
}

func (p *proofChecker) breakWith(why string) {
	if p.broken == "" {
		p.broken = why
	}
}

// root returns the recomputed root over [0, TreeSize), or why there is
// none.
func (p *proofChecker) root() ([]byte, string) {
	if p.broken != "" {
		return nil, p.broken
	}
	if p.ri != len(p.c.Runs) || p.rng.End() != p.c.TreeSize {
		return nil, fmt.Sprintf("the rows end at leaf %d of %d", p.rng.End(), p.c.TreeSize)
	}
	r, err := p.rng.GetRootHash(nil)
	if err != nil {
		return nil, err.Error()
	}
	return r, ""
}
