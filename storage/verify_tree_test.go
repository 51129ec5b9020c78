package storage

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"testing"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
)

// TestWalkTreeMatchesCompactRange checks walkTree against transparency-dev's
// compact.Range with the RFC 6962 hasher: the same root at every size,
// growing from empty and continuing a range loaded at every size, and the
// same refusal to give a root for a range that does not start at leaf 0.
func TestWalkTreeMatchesCompactRange(t *testing.T) {
	rf := &compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
	clone := func(r *compact.Range) *compact.Range {
		c, err := rf.NewRange(r.Begin(), r.End(), append([][]byte(nil), r.Hashes()...))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	leaf := func(i uint64) Hash {
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], i)
		return Hash(sha256.Sum256(b[:]))
	}
	const n = 300
	ref := rf.NewEmptyRange(0)
	refs := []*compact.Range{clone(ref)}
	wt := newWalkTree(nil)
	for i := uint64(0); i < n; i++ {
		l := leaf(i)
		if err := ref.Append(l[:], nil); err != nil {
			t.Fatal(err)
		}
		refs = append(refs, clone(ref))
		if err := wt.Append(&l); err != nil {
			t.Fatal(err)
		}
		want, _ := ref.GetRootHash(nil)
		got, err := wt.Root()
		if err != nil || !bytes.Equal(got, want) || wt.End() != i+1 {
			t.Fatalf("size %d: root %x end %d (%v), want %x", i+1, got, wt.End(), err, want)
		}
	}
	empty := newWalkTree(nil)
	if got, err := empty.Root(); got != nil || err != nil {
		t.Errorf("empty tree: root %x, %v; want none, as compact.Range", got, err)
	}
	// continuing a range loaded at each size gives the same roots
	for size := 0; size < 70; size++ {
		c := newWalkTree(clone(refs[size]))
		if c.other != nil {
			t.Fatalf("size %d: a range from leaf 0 was not loaded", size)
		}
		for i := uint64(size); i < n; i++ {
			l := leaf(i)
			if err := c.Append(&l); err != nil {
				t.Fatal(err)
			}
		}
		want, _ := ref.GetRootHash(nil)
		if got, _ := c.Root(); !bytes.Equal(got, want) {
			t.Fatalf("continued from size %d: root %x, want %x", size, got, want)
		}
	}
	// a loaded range is not written into
	before := clone(refs[5])
	c := newWalkTree(refs[5])
	l := leaf(99)
	_ = c.Append(&l)
	if !refs[5].Equal(before) {
		t.Error("appending changed the range the tree was loaded from")
	}
	// a range from leaf 3 appends but has no root
	part := rf.NewEmptyRange(3)
	for i := uint64(3); i < 10; i++ {
		l := leaf(i)
		_ = part.Append(l[:], nil)
	}
	p := newWalkTree(part)
	l = leaf(10)
	if err := p.Append(&l); err != nil || p.End() != 11 {
		t.Fatalf("range from leaf 3: append %v, end %d", err, p.End())
	}
	if _, err := p.Root(); err == nil {
		t.Error("range from leaf 3: a root, want an error")
	}
}
