package storage

import (
	"crypto/sha256"
	"fmt"
	"testing"
)

// TestProofBuilder builds consistency proofs between every pair of sizes
// of a small tree from its leaves, as the chain walk feeds them, checks
// them against the roots rfc6962 computes, and checks that a changed leaf
// or a swapped root fails.
func TestProofBuilder(t *testing.T) {
	const n = 21
	leaves := make([]Hash, n)
	for i := range leaves {
		h := Hash(sha256.Sum256([]byte(fmt.Sprint(i))))
		leaves[i] = leafHash(&h)
	}
	roots := make([]Hash, n+1)
	for size := 1; size <= n; size++ {
		var tr walkTree
		for i := 0; i < size; i++ {
			_ = tr.Append(&leaves[i])
		}
		r, _ := tr.Root()
		copy(roots[size][:], r)
	}
	cp := func(size int, root Hash) chainCheckpoint {
		return chainCheckpoint{Checkpoint: Checkpoint{Chain: "c", Size: uint64(size), Root: root}, source: fmt.Sprint("cp", size)}
	}
	for m := 1; m <= n; m++ {
		for size := m; size <= n; size++ {
			cases := []struct {
				desc    string
				from    chainCheckpoint
				flip    int // leaf index to change, -1 for none
				wantErr bool
			}{
				{"good", cp(m, roots[m]), -1, false},
				// A proof to a power-of-two size, or between equal sizes,
				// holds no node over the first m leaves (the verifier has
				// their root): the walk compares the roots instead.
				{"leaf changed", cp(m, roots[m]), (m - 1) / 2, m != size && m&(m-1) != 0},
				{"new leaf changed", cp(m, roots[m]), size - 1, m != size},
				{"from root wrong", cp(m, roots[m-1]), -1, m > 1},
			}
			for _, tc := range cases {
				if tc.desc == "from root wrong" && m == 1 {
					continue
				}
				b := newProofBuilder(tc.from, cp(size, roots[size]))
				for i := 0; i < size; i++ {
					l := leaves[i]
					if i == tc.flip {
						l[0] ^= 1
					}
					b.leaf(uint64(i), &l)
				}
				p := b.result("c")
				if p.OK == tc.wantErr {
					t.Errorf("%d -> %d %s: ok=%v err=%s", m, size, tc.desc, p.OK, p.Error)
				}
			}
		}
	}
}
