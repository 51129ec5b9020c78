package storage

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
)

// ExternalCheckpoint is a signed checkpoint kept outside the store: one an
// auditor kept (custody verify --since) or one published to a place the
// store's host cannot rewrite (see storage/witness). Verification treats
// it like the store's own checkpoints (the chain's root at its size must
// match, and a chain shorter than it is truncated) and, with Prove set,
// also proves the chain's newest signed checkpoint a consistent extension
// of it (RFC 6962 consistency proof).
type ExternalCheckpoint struct {
	// Source says where the note came from, for findings: a file name, a
	// blob name.
	Source string
	// Note is the signed note text.
	Note []byte
	// Prove asks for a consistency proof from this checkpoint to the
	// chain's newest signed one (see VerifyReport.Consistency).
	Prove bool
}

// ReadExternalCheckpoints reads signed checkpoint notes kept outside the
// store: each path is a checkpoint file, or a directory whose *.checkpoint
// files are read (a copy of a checkpoint directory). Every note read is
// to be proved (Prove).
func ReadExternalCheckpoints(paths []string) ([]ExternalCheckpoint, error) {
	var out []ExternalCheckpoint
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("read kept checkpoint: %w", err)
		}
		if !fi.IsDir() {
			b, err := os.ReadFile(p)
			if err != nil {
				return nil, fmt.Errorf("read kept checkpoint: %w", err)
			}
			out = append(out, ExternalCheckpoint{Source: p, Note: b, Prove: true})
			continue
		}
		files, err := ReadCheckpointDir(p)
		if err != nil {
			return nil, err
		}
		if len(files) == 0 {
			return nil, fmt.Errorf("read kept checkpoints: %s holds no *.checkpoint file", p)
		}
		names := make([]string, 0, len(files))
		for n := range files {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			out = append(out, ExternalCheckpoint{Source: filepath.Join(p, n), Note: files[n], Prove: true})
		}
	}
	return out, nil
}

// ConsistencyProof is the RFC 6962 consistency proof that a chain's tree
// at From leaves (an external checkpoint) is a prefix of its tree at To
// leaves (the chain's newest signed checkpoint), built from the chain's
// rows as verify walked them. OK says whether it verified against both
// signed roots; an auditor can check it again with any RFC 6962 library.
type ConsistencyProof struct {
	Chain    string   `json:"chain"`
	Source   string   `json:"source"` // where the From checkpoint came from
	From     uint64   `json:"from_size"`
	FromRoot []byte   `json:"from_root"`
	To       uint64   `json:"to_size"`
	ToRoot   []byte   `json:"to_root"`
	Hashes   [][]byte `json:"proof"`
	OK       bool     `json:"ok"`
	Error    string   `json:"error,omitempty"`
	// Purged says the proof could not be built because rows it needs
	// were purged under retention (a warning, not a failure).
	Purged bool `json:"purged,omitempty"`
}

// proofBuilder collects, from a chain's leaves in order, the node hashes
// of a consistency proof from a checkpoint to a bigger one (see
// proof.Consistency): each proof node is a perfect subtree, so its hash is
// the root of a walkTree fed its leaves.
type proofBuilder struct {
	from, to chainCheckpoint
	nodes    proof.Nodes
	order    []int // indices into nodes.IDs, by first leaf
	hashes   [][]byte
	cur      int      // position in order of the node being built
	tree     walkTree // the node being built
	broken   string   // why the proof cannot be built
	purged   bool     // the chain's first rows were purged
}

// nodeLeaves is the node's leaf range [begin, end).
func nodeLeaves(id compact.NodeID) (uint64, uint64) {
	return id.Index << id.Level, (id.Index + 1) << id.Level
}

// newProofBuilder plans the proof from from to to. Requires 0 < from.Size
// <= to.Size.
func newProofBuilder(from, to chainCheckpoint) *proofBuilder {
	b := &proofBuilder{from: from, to: to}
	nodes, err := proof.Consistency(from.Size, to.Size)
	if err != nil {
		b.broken = err.Error()
		return b
	}
	b.nodes = nodes
	b.hashes = make([][]byte, len(nodes.IDs))
	b.order = make([]int, len(nodes.IDs))
	for i := range b.order {
		b.order[i] = i
	}
	sort.Slice(b.order, func(i, j int) bool {
		x, _ := nodeLeaves(nodes.IDs[b.order[i]])
		y, _ := nodeLeaves(nodes.IDs[b.order[j]])
		return x < y
	})
	return b
}

// leaf takes the leaf at index (0-based). Leaves must come in order, each
// once; a leaf index beyond one not given (a tree resumed after a purge)
// leaves the nodes before it unbuilt.
func (b *proofBuilder) leaf(index uint64, h *Hash) {
	for b.cur < len(b.order) {
		id := b.nodes.IDs[b.order[b.cur]]
		begin, end := nodeLeaves(id)
		if index < begin {
			return
		}
		if index >= end {
			b.cur++ // the node's leaves did not all come; it stays unbuilt
			b.tree = walkTree{}
			continue
		}
		if index-begin != b.tree.End() {
			return // a leaf before this one in the node is missing
		}
		_ = b.tree.Append(h)
		if b.tree.End() == end-begin {
			root, _ := b.tree.Root()
			b.hashes[b.order[b.cur]] = root
			b.cur++
			b.tree = walkTree{}
		}
		return
	}
}

// result verifies the proof built against both signed roots.
func (b *proofBuilder) result(chain string) ConsistencyProof {
	p := ConsistencyProof{Chain: chain, Source: b.from.source, From: b.from.Size, FromRoot: b.from.Root[:], To: b.to.Size, ToRoot: b.to.Root[:]}
	if b.broken == "" {
		for i, h := range b.hashes {
			if h == nil {
				lo, hi := nodeLeaves(b.nodes.IDs[i])
				b.broken = fmt.Sprintf("rows %d..%d, a node of the proof, are not all in the store", lo+1, hi)
				break
			}
		}
	}
	if b.broken != "" {
		p.Error, p.Purged = b.broken, b.purged
		return p
	}
	hs, err := b.nodes.Rehash(b.hashes, rfc6962.DefaultHasher.HashChildren)
	if err == nil {
		p.Hashes = hs
		err = proof.VerifyConsistency(rfc6962.DefaultHasher, b.from.Size, b.to.Size, hs, b.from.Root[:], b.to.Root[:])
	}
	if err != nil {
		p.Error = err.Error()
		return p
	}
	p.OK = true
	return p
}

// planProofs pairs each checkpoint of a chain that asks for a proof (an
// external one, see ExternalCheckpoint.Prove) with the store's newest
// checkpoint of the chain (cps is sorted by size). When the store holds
// none as big, the proof fails at once: checkpoints were removed from the
// store (the walk also compares the external root with the chain's, or
// reports the chain truncated). purged says the chain's first rows were
// purged under retention, so a proof needing them cannot be built.
func planProofs(cps []chainCheckpoint, purged bool) []*proofBuilder {
	var newest *chainCheckpoint
	for i := range cps {
		if !cps[i].external {
			newest = &cps[i]
		}
	}
	var out []*proofBuilder
	for _, cp := range cps {
		if !cp.prove || cp.Size == 0 {
			continue
		}
		switch {
		case newest == nil:
			out = append(out, &proofBuilder{from: cp, broken: "the store holds no signed checkpoint of the chain (removed from the store?)"})
		case newest.Size < cp.Size:
			out = append(out, &proofBuilder{from: cp, to: *newest, broken: fmt.Sprintf("the store's newest signed checkpoint covers %d rows, fewer than the kept one (checkpoints removed from the store)", newest.Size)})
		default:
			b := newProofBuilder(cp, *newest)
			b.purged = purged
			if purged && b.broken == "" {
				b.broken = "the chain's first rows were purged under retention; the proof needs them"
			}
			out = append(out, b)
		}
	}
	return out
}

// openExternal verifies the external checkpoints and returns them by chain;
// a note that does not verify is a bad signature finding.
func openExternal(ext []ExternalCheckpoint, v note.Verifier, only string, add func(Finding)) map[string][]chainCheckpoint {
	out := map[string][]chainCheckpoint{}
	for _, e := range ext {
		cp, err := OpenCheckpoint(e.Note, v)
		if err != nil {
			add(Finding{Kind: KindBadSignature, Detail: fmt.Sprintf("checkpoint %s: %v", e.Source, err)})
			continue
		}
		if only != "" && cp.Chain != only {
			continue
		}
		out[cp.Chain] = append(out[cp.Chain], chainCheckpoint{Checkpoint: cp, source: e.Source, external: true, prove: e.Prove})
	}
	return out
}

// witnessFindings says, for each chain with rows or checkpoints that no
// checkpoint kept outside the store covers (no checkpoint directory file,
// no --since, no published checkpoint), that a truncation of the chain
// together with its stored checkpoints would go unseen. More than
// maxWitnessFindings chains make one finding.
func witnessFindings(chains []string, cps map[string][]chainCheckpoint) []Finding {
	var bare []string
	for _, c := range chains {
		ext := false
		for _, cp := range cps[c] {
			ext = ext || cp.external
		}
		if !ext {
			bare = append(bare, c)
		}
	}
	const why = "no signed checkpoint kept outside the store covers this chain (checkpoint directory, --since, published checkpoints): deleting its newest rows together with their checkpoints would go unseen"
	if len(bare) <= maxWitnessFindings {
		out := make([]Finding, 0, len(bare))
		for _, c := range bare {
			out = append(out, Finding{Kind: KindNoExternalCheckpoint, Chain: c, Detail: why})
		}
		return out
	}
	return []Finding{{Kind: KindNoExternalCheckpoint, Chain: bare[0], Detail: fmt.Sprintf("%s; so are %d more chains", why, len(bare)-1)}}
}

const maxWitnessFindings = 10

// inconsistentFindings turns failed proofs into findings.
func inconsistentFindings(ps []ConsistencyProof) []Finding {
	var out []Finding
	for _, p := range ps {
		if p.Purged {
			out = append(out, Finding{Kind: KindUnproven, Chain: p.Chain, Seq: p.From, Detail: fmt.Sprintf("no consistency proof from the checkpoint at %d rows (%s): %s", p.From, p.Source, p.Error)})
		} else if !p.OK && p.To == 0 {
			out = append(out, Finding{Kind: KindInconsistent, Chain: p.Chain, Seq: p.From, Detail: fmt.Sprintf("nothing in the store extends the checkpoint at %d rows (%s): %s", p.From, p.Source, p.Error)})
		} else if !p.OK {
			out = append(out, Finding{Kind: KindInconsistent, Chain: p.Chain, Seq: p.From, Detail: fmt.Sprintf("the store's signed checkpoint at %d rows is not a proven extension of the checkpoint at %d rows (%s): %s", p.To, p.From, p.Source, p.Error)})
		}
	}
	return out
}
