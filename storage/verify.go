package storage

import (
	"bytes"
	"context"
	"fmt"
	"github.com/transparency-dev/merkle/compact"
	"sort"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/custody-audit/custody/storage/engine"
)

// FindingKind classifies what verification found.
type FindingKind string

// Finding kinds. All but KindUnattested and KindPurged fail verification.
const (
	KindModified          FindingKind = "modified"           // a row's content no longer matches its hash
	KindGap               FindingKind = "gap"                // rows missing from a chain (deleted rows, dropped partition)
	KindDuplicate         FindingKind = "duplicate"          // a sequence number stored twice with the same content
	KindInserted          FindingKind = "inserted"           // a sequence number stored twice with different content
	KindChainBreak        FindingKind = "chain_break"        // prev_hash does not link to the previous row (reordered or replaced rows)
	KindTruncated         FindingKind = "truncated"          // a signed checkpoint covers more rows than the chain holds
	KindRootMismatch      FindingKind = "root_mismatch"      // the chain's Merkle root differs from a signed checkpoint's
	KindBadSignature      FindingKind = "bad_signature"      // a checkpoint's signature does not verify
	KindCheckpointDiffers FindingKind = "checkpoint_differs" // the store's and the directory's checkpoints disagree
	KindUnattested        FindingKind = "unattested"         // rows after the newest signed checkpoint (warning)
	KindPurged            FindingKind = "purged"             // rows removed by an attested retention purge (information)
)

// Finding is one problem, located as precisely as the evidence allows.
type Finding struct {
	Kind    FindingKind `json:"kind"`
	Chain   string      `json:"chain"`
	Seq     uint64      `json:"seq,omitempty"`
	EventID string      `json:"event_id,omitempty"`
	Detail  string      `json:"detail"`
}

func (f Finding) String() string {
	s := fmt.Sprintf("%s: chain %s", f.Kind, f.Chain)
	if f.Seq > 0 {
		s += fmt.Sprintf(" seq %d", f.Seq)
	}
	if f.EventID != "" {
		s += fmt.Sprintf(" event %s", f.EventID)
	}
	return s + ": " + f.Detail
}

// Failing reports whether the finding fails verification.
func (f Finding) Failing() bool { return f.Kind != KindUnattested && f.Kind != KindPurged }

// VerifyOptions select what to verify.
type VerifyOptions struct {
	// Chain limits verification to one chain; empty verifies all.
	Chain string
	// From and To, when set, limit the content check (recomputing each
	// row's hash) to events in [From, To). Chain links, Merkle roots and
	// checkpoints are always checked whole: they are cheap and a window
	// cannot prove a deletion outside itself.
	From, To time.Time
	// Verifier checks checkpoint signatures. Required.
	Verifier note.Verifier
	// CheckpointDir is compared with the checkpoints stored in the store.
	CheckpointDir string
	// Independent recomputes every row's hash in Go from the rows read
	// out of the engine, instead of having the engine recompute them
	// (EventHashSQL, kept identical to the Go encoding by tests). Slower;
	// for those who would rather not trust the engine's arithmetic.
	Independent bool
	// Progress, when set, is called as rows are checked.
	Progress func(done, total uint64)
}

// VerifyReport is the outcome of Verify.
type VerifyReport struct {
	Chains      int           `json:"chains"`
	Rows        uint64        `json:"rows"`
	Checkpoints int           `json:"checkpoints"`
	Findings    []Finding     `json:"findings"`
	Elapsed     time.Duration `json:"elapsed_ns"`
}

// OK reports whether verification passed.
func (r *VerifyReport) OK() bool {
	for _, f := range r.Findings {
		if f.Failing() {
			return false
		}
	}
	return true
}

// chainCheckpoint is a verified checkpoint of a chain and where it came
// from.
type chainCheckpoint struct {
	Checkpoint
	source string
}

// Verify recomputes the trail: every row's hash from its content, every
// chain link, every chain's Merkle root at each signed checkpoint, and
// every checkpoint signature, in the store and in the checkpoint
// directory. It reports all it finds rather than stopping at the first.
func (s *Store) Verify(ctx context.Context, opts VerifyOptions) (*VerifyReport, error) {
	if opts.Verifier == nil {
		return nil, fmt.Errorf("verify: a verification key is required")
	}
	start := time.Now()
	rep := &VerifyReport{}
	add := func(f Finding) { rep.Findings = append(rep.Findings, f) }

	cps, err := s.loadCheckpoints(ctx, opts, add)
	if err != nil {
		return nil, err
	}
	chains, err := s.chainNames(ctx, opts.Chain)
	if err != nil {
		return nil, err
	}
	// A chain whose first rows were purged under retention starts after
	// them, from the signed purge record.
	starts, err := s.loadPurgeStarts(ctx, opts, add)
	if err != nil {
		return nil, err
	}
	for c := range cps {
		if _, ok := chains[c]; !ok && (opts.Chain == "" || opts.Chain == c) {
			chains[c] = 0 // a chain with checkpoints but no rows left
		}
	}
	for c := range starts {
		if _, ok := chains[c]; !ok {
			chains[c] = 0
		}
	}
	var total uint64
	for _, n := range chains {
		total += n
	}
	names := make([]string, 0, len(chains))
	for c := range chains {
		names = append(names, c)
	}
	sort.Strings(names)
	rep.Chains = len(names)
	var done uint64
	progress := func(n uint64) {
		done += n
		if opts.Progress != nil {
			opts.Progress(done, total*2)
		}
	}
	// Two passes over the whole table, however many chains it holds (an
	// archive backfill makes one per blob): links and Merkle roots in
	// sequence order, then every row's content.
	if err := s.verifyLinks(ctx, names, opts.Chain, cps, starts, add, progress); err != nil {
		return nil, err
	}
	n, err := s.verifyContent(ctx, opts, add, progress)
	if err != nil {
		return nil, err
	}
	rep.Rows = n
	for _, l := range cps {
		rep.Checkpoints += len(l)
	}
	rep.Elapsed = time.Since(start)
	return rep, nil
}

// chainNames returns the chains in the store with their row counts.
func (s *Store) chainNames(ctx context.Context, only string) (map[string]uint64, error) {
	out := map[string]uint64{}
	err := s.queryEach(ctx, "SELECT toString(chain), count() FROM "+s.db+".events WHERE {only:String} = '' OR chain = {only:String} GROUP BY chain",
		engine.Params{"only": only}, func(r engine.Rows) error {
			var c string
			var n uint64
			if err := r.Scan(&c, &n); err != nil {
				return err
			}
			out[c] = n
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("list chains: %w", err)
	}
	return out, nil
}

// loadCheckpoints reads and verifies every checkpoint in the store and in
// the checkpoint directory, by chain, sorted by size.
func (s *Store) loadCheckpoints(ctx context.Context, opts VerifyOptions, add func(Finding)) (map[string][]chainCheckpoint, error) {
	out := map[string][]chainCheckpoint{}
	latestStored := map[string]chainCheckpoint{}
	err := s.queryEach(ctx, "SELECT toString(chain), tree_size, root_hash, note FROM "+s.db+".checkpoints WHERE {only:String} = '' OR chain = {only:String} ORDER BY chain, tree_size",
		engine.Params{"only": opts.Chain}, func(r engine.Rows) error {
			var chain, msg string
			var size uint64
			var root Hash
			if err := r.Scan(&chain, &size, &root, &msg); err != nil {
				return err
			}
			cp, err := OpenCheckpoint([]byte(msg), opts.Verifier)
			if err != nil {
				add(Finding{Kind: KindBadSignature, Chain: chain, Seq: size, Detail: fmt.Sprintf("stored checkpoint at size %d: %v", size, err)})
				return nil
			}
			if cp.Chain != chain || cp.Size != size || cp.Root != root {
				add(Finding{Kind: KindBadSignature, Chain: chain, Seq: size, Detail: fmt.Sprintf("stored checkpoint columns (size %d) differ from its signed note (chain %s, size %d)", size, cp.Chain, cp.Size)})
				return nil
			}
			c := chainCheckpoint{Checkpoint: cp, source: "store"}
			out[chain] = append(out[chain], c)
			latestStored[chain] = c
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("read checkpoints: %w", err)
	}
	files, err := ReadCheckpointDir(opts.CheckpointDir)
	if err != nil {
		return nil, err
	}
	for name, msg := range files {
		cp, err := OpenCheckpoint(msg, opts.Verifier)
		if err != nil {
			add(Finding{Kind: KindBadSignature, Chain: name, Detail: fmt.Sprintf("checkpoint file %s: %v", name, err)})
			continue
		}
		if opts.Chain != "" && cp.Chain != opts.Chain {
			continue
		}
		out[cp.Chain] = append(out[cp.Chain], chainCheckpoint{Checkpoint: cp, source: "directory"})
		if st, ok := latestStored[cp.Chain]; !ok || st.Size < cp.Size {
			have := uint64(0)
			if ok {
				have = st.Size
			}
			add(Finding{Kind: KindCheckpointDiffers, Chain: cp.Chain, Seq: cp.Size, Detail: fmt.Sprintf("checkpoint directory holds a signed checkpoint at size %d; the store's newest is at %d (checkpoints were removed from the store)", cp.Size, have)})
		}
	}
	for c := range out {
		sort.SliceStable(out[c], func(i, j int) bool { return out[c][i].Size < out[c][j].Size })
	}
	return out, nil
}

// linkWalker checks one chain in sequence order: numbering, prev_hash
// links and the Merkle root at every checkpoint.
type linkWalker struct {
	chain    string
	cps      []chainCheckpoint
	add      func(Finding)
	tree     *compact.Range
	prev     Hash
	expect   uint64
	lastSeq  uint64
	lastHash Hash
	haveLast bool
	next     int // next checkpoint to compare
}

func newLinkWalker(chain string, cps []chainCheckpoint, start *chainStart, add func(Finding)) *linkWalker {
	w := &linkWalker{chain: chain, cps: cps, add: add, tree: rangeFactory.NewEmptyRange(0), expect: 1}
	if start != nil {
		w.tree, w.prev, w.expect, w.lastSeq = start.tree, start.last, start.seq+1, start.seq
	}
	w.checkRoot()
	return w
}

func (w *linkWalker) checkRoot() {
	for w.next < len(w.cps) && w.cps[w.next].Size <= w.tree.End() {
		cp := w.cps[w.next]
		w.next++
		if cp.Size != w.tree.End() {
			continue // skipped by a gap; reported there
		}
		root, err := w.tree.GetRootHash(nil)
		if err != nil || !bytes.Equal(root, cp.Root[:]) {
			w.add(Finding{Kind: KindRootMismatch, Chain: w.chain, Seq: cp.Size, Detail: fmt.Sprintf("Merkle root over the first %d rows is %x, the signed checkpoint (%s) says %x", cp.Size, root, cp.source, cp.Root)})
		}
	}
}

func (w *linkWalker) row(seq uint64, ph, h Hash, id string) error {
	if w.haveLast && seq == w.lastSeq {
		if h == w.lastHash {
			w.add(Finding{Kind: KindDuplicate, Chain: w.chain, Seq: seq, EventID: id, Detail: "the same row is stored twice"})
		} else {
			w.add(Finding{Kind: KindInserted, Chain: w.chain, Seq: seq, EventID: id, Detail: "a second, different row claims this sequence number"})
		}
		return nil
	}
	if seq > w.expect {
		w.add(Finding{Kind: KindGap, Chain: w.chain, Seq: w.expect, Detail: fmt.Sprintf("rows %d..%d are missing", w.expect, seq-1)})
		// the tree cannot continue over missing leaves; roots of later
		// checkpoints are not comparable.
		w.next = len(w.cps)
		w.prev = ph
	}
	if ph != w.prev {
		w.add(Finding{Kind: KindChainBreak, Chain: w.chain, Seq: seq, EventID: id, Detail: "prev_hash does not match the previous row's hash (rows reordered, replaced or removed)"})
	}
	if seq == w.tree.End()+1 {
		leaf := LeafHash(h)
		if err := w.tree.Append(leaf[:], nil); err != nil {
			return err
		}
		w.checkRoot()
	}
	w.prev, w.lastSeq, w.lastHash, w.haveLast = h, seq, h, true
	w.expect = seq + 1
	return nil
}

// finish reports truncation after, or rows beyond, the newest checkpoint.
func (w *linkWalker) finish() {
	if len(w.cps) > 0 {
		newest := w.cps[len(w.cps)-1]
		switch {
		case newest.Size > w.lastSeq:
			w.add(Finding{Kind: KindTruncated, Chain: w.chain, Seq: w.lastSeq + 1, Detail: fmt.Sprintf("a signed checkpoint (%s) covers %d rows but the chain ends at %d", newest.source, newest.Size, w.lastSeq)})
		case newest.Size < w.lastSeq:
			w.add(Finding{Kind: KindUnattested, Chain: w.chain, Seq: newest.Size + 1, Detail: fmt.Sprintf("rows %d..%d are not yet covered by a signed checkpoint", newest.Size+1, w.lastSeq)})
		}
	} else if w.lastSeq > 0 {
		w.add(Finding{Kind: KindUnattested, Chain: w.chain, Seq: 1, Detail: fmt.Sprintf("no signed checkpoint covers rows 1..%d", w.lastSeq)})
	}
}

// verifyLinks walks every chain (or only) in one query ordered by chain
// and sequence, finishing each chain of names, including those with no
// rows left.
func (s *Store) verifyLinks(ctx context.Context, names []string, only string, cps map[string][]chainCheckpoint, starts map[string]*chainStart, add func(Finding), progress func(uint64)) error {
	walkers := make(map[string]*linkWalker, len(names))
	walker := func(c string) *linkWalker {
		w, ok := walkers[c]
		if !ok {
			w = newLinkWalker(c, cps[c], starts[c], add)
			walkers[c] = w
		}
		return w
	}
	var batch uint64
	err := s.queryEach(ctx, "SELECT toString(chain), seq, prev_hash, hash, event_id FROM "+s.db+".events WHERE {only:String} = '' OR chain = {only:String} ORDER BY chain, seq, hash",
		engine.Params{"only": only}, func(r engine.Rows) error {
			var c, id string
			var seq uint64
			var ph, h Hash
			if err := r.Scan(&c, &seq, &ph, &h, &id); err != nil {
				return err
			}
			batch++
			if batch == 65536 {
				progress(batch)
				batch = 0
			}
			return walker(c).row(seq, ph, h, id)
		})
	if err != nil {
		return fmt.Errorf("verify chain links: %w", err)
	}
	progress(batch)
	for _, c := range names {
		walker(c).finish()
	}
	return nil
}

// verifyContent recomputes every row's hash from its stored columns, in
// storage order (no sort needed: each row carries its own prev_hash).
func (s *Store) verifyContent(ctx context.Context, opts VerifyOptions, add func(Finding), progress func(uint64)) (uint64, error) {
	q := "SELECT " + EventColumnList() + " FROM " + s.db + ".events WHERE ({only:String} = '' OR chain = {only:String})"
	p := engine.Params{"only": opts.Chain}
	if !opts.From.IsZero() {
		q += " AND event_time >= {from:DateTime64(6)}"
		p["from"] = formatTime(opts.From)
	}
	if !opts.To.IsZero() {
		q += " AND event_time < {to:DateTime64(6)}"
		p["to"] = formatTime(opts.To)
	}
	if !opts.Independent {
		return s.verifyContentInEngine(ctx, q, p, add, progress)
	}
	var n, batch uint64
	var enc hashEncoder
	var row Row
	err := s.queryEach(ctx, q, p, func(r engine.Rows) error {
		row = Row{}
		if err := ScanRow(r, &row); err != nil {
			return err
		}
		n++
		batch++
		if batch == 65536 {
			progress(batch)
			batch = 0
		}
		if got := enc.EventHash(&row); got != row.Hash {
			add(Finding{Kind: KindModified, Chain: row.Chain, Seq: row.Seq, EventID: row.Event.ID, Detail: fmt.Sprintf("stored content hashes to %x, the row's hash is %x", got[:8], row.Hash[:8])})
		}
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("verify content: %w", err)
	}
	progress(batch)
	return n, nil
}

// verifyContentInEngine has the engine recompute every row's hash and
// return only the rows that do not match, plus the number checked.
func (s *Store) verifyContentInEngine(ctx context.Context, q string, p engine.Params, add func(Finding), progress func(uint64)) (uint64, error) {
	// q selects the full column list; the same WHERE clause is reused.
	where := q[strings.Index(q, " FROM "):]
	var n uint64
	err := s.queryEach(ctx, "SELECT count()"+where, p, func(r engine.Rows) error { return r.Scan(&n) })
	if err != nil {
		return 0, fmt.Errorf("verify content: %w", err)
	}
	err = s.queryEach(ctx, "SELECT toString(chain), seq, event_id, hash, computed FROM (SELECT chain, seq, event_id, hash, "+EventHashSQL()+" AS computed"+where+") WHERE computed != hash ORDER BY chain, seq", p, func(r engine.Rows) error {
		var chain, id string
		var seq uint64
		var stored, got Hash
		if err := r.Scan(&chain, &seq, &id, &stored, &got); err != nil {
			return err
		}
		add(Finding{Kind: KindModified, Chain: chain, Seq: seq, EventID: id, Detail: fmt.Sprintf("stored content hashes to %x, the row's hash is %x", got[:8], stored[:8])})
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("verify content: %w", err)
	}
	progress(n)
	return n, nil
}
