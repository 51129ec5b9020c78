package storage

import (
	"crypto/sha256"
	"math/bits"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
)

// walkTree is the Merkle tree of a chain as the walk builds it, leaf by
// leaf: the compact range [0, size) of RFC 6962 (as compact.Range with
// rfc6962's hasher keeps it), in a fixed array, so that appending a leaf
// allocates nothing. A walk appends a leaf and hashes about one node per
// row, and compact.Range allocates each node hash it computes.
//
// A tree continued from a range that does not start at leaf 0 (never
// written by Custody; a purge record covers a chain's first rows) keeps
// that range in other and has no root, as compact.Range would.
type walkTree struct {
	size   uint64
	hashes [64]Hash // roots of the perfect subtrees, the biggest first: one per bit of size
	other  *compact.Range
}

// newWalkTree continues the compact range r; a nil r is the empty tree.
func newWalkTree(r *compact.Range) walkTree {
	var t walkTree
	if r == nil {
		return t
	}
	hs := r.Hashes()
	fits := r.Begin() == 0 && len(hs) == bits.OnesCount64(r.End())
	for _, h := range hs {
		fits = fits && len(h) == sha256.Size
	}
	if !fits {
		// Continue a copy: appending must not write into the caller's
		// range (a chain head's, which stays as it was if the append
		// fails). NewRange refuses only hashes that do not fit r's
		// bounds, which a valid range's never do.
		if o, err := walkRanges.NewRange(r.Begin(), r.End(), append([][]byte(nil), hs...)); err == nil {
			t.other = o
		} else {
			t.other = r
		}
		return t
	}
	for i, h := range hs {
		copy(t.hashes[i][:], h)
	}
	t.size = r.End()
	return t
}

// End is the number of leaves in [0, End).
func (t *walkTree) End() uint64 {
	if t.other != nil {
		return t.other.End()
	}
	return t.size
}

// Append adds the next leaf.
func (t *walkTree) Append(leaf *Hash) error {
	if t.other != nil {
		// (a copy: the range keeps the slice)
		return t.other.Append(append([]byte(nil), leaf[:]...), nil)
	}
	// merge with the subtrees the new leaf completes: one per trailing
	// one bit of size
	h := *leaf
	n := bits.OnesCount64(t.size)
	for s := t.size; s&1 == 1; s >>= 1 {
		n--
		h = nodeHash(&t.hashes[n], &h)
	}
	t.hashes[n] = h
	t.size++
	return nil
}

// compactRange is t as a compact.Range made by f (a continued range as
// it is), for a chain head; the hashes are t's own copies.
func (t *walkTree) compactRange(f *compact.RangeFactory) (*compact.Range, error) {
	if t.other != nil {
		return t.other, nil
	}
	n := bits.OnesCount64(t.size)
	hashes := make([][]byte, n)
	buf := make([]byte, n*sha256.Size)
	for i := range hashes {
		hashes[i] = buf[i*sha256.Size : (i+1)*sha256.Size : (i+1)*sha256.Size]
		copy(hashes[i], t.hashes[i][:])
	}
	return f.NewRange(0, t.size, hashes)
}

// Root is the tree's RFC 6962 root hash: nil for an empty tree, an error
// for a range that does not start at leaf 0 (see compact.Range.GetRootHash).
func (t *walkTree) Root() ([]byte, error) {
	if t.other != nil {
		return t.other.GetRootHash(nil)
	}
	n := bits.OnesCount64(t.size)
	if n == 0 {
		return nil, nil
	}
	h := t.hashes[n-1]
	for i := n - 2; i >= 0; i-- {
		h = nodeHash(&t.hashes[i], &h)
	}
	return h[:], nil
}

// nodeHash is RFC 6962's interior node hash, SHA-256(0x01 || left || right).
func nodeHash(left, right *Hash) Hash {
	var b [1 + 2*sha256.Size]byte
	b[0] = rfc6962.RFC6962NodeHashPrefix
	copy(b[1:], left[:])
	copy(b[1+sha256.Size:], right[:])
	return sha256.Sum256(b[:])
}
