package storage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
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
	// One pass over the whole table, however many chains it holds (an
	// archive backfill makes one per blob): links, Merkle roots and, unless
	// Independent, the engine's recomputation of every row's hash. An
	// independent check reads every row a second time, for Go to hash.
	passes := uint64(1)
	if opts.Independent {
		passes = 2
	}
	var done uint64
	progress := func(n uint64) {
		done += n
		if opts.Progress != nil {
			opts.Progress(done, total*passes)
		}
	}
	wk := &walk{}
	n, err := s.verifyChains(ctx, names, opts, cps, starts, wk, progress)
	if err != nil {
		return nil, err
	}
	if opts.Independent {
		if n, err = s.verifyContentInGo(ctx, opts, wk, progress); err != nil {
			return nil, err
		}
	}
	if err := s.locate(ctx, wk); err != nil {
		return nil, err
	}
	rep.Findings = append(append(rep.Findings, wk.links...), wk.mods...)
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

// Content status of a row in the chain walk, as the engine reports it.
const (
	contentModified  = 0 // the recomputed hash differs from the stored one
	contentOK        = 1 // the recomputed hash matches
	contentUnchecked = 2 // outside the From/To window, or left to Go (Independent)
)

// walk collects the findings of the chain walk. Findings about one row
// (modified, duplicated, inserted, chain break) are located afterwards:
// the walk reads narrow rows, and a clean trail has nothing to look up.
type walk struct {
	links []Finding // chain findings, in walk order
	mods  []Finding // modified rows, by chain and sequence
	refs  []rowRef
}

// rowRef points a finding at its row: the sequence number and the stored
// hash, which tells apart rows sharing a sequence number.
type rowRef struct {
	modified bool // the finding is mods[idx], not links[idx]
	idx      int
	chain    string
	seq      uint64
	hash     Hash
}

func (w *walk) add(f Finding) { w.links = append(w.links, f) }

// locate adds f, whose event id (and, for a modified row, detail) is filled
// in by Store.locate.
func (w *walk) locate(f Finding, h Hash) {
	r := rowRef{modified: f.Kind == KindModified, chain: f.Chain, seq: f.Seq, hash: h}
	if r.modified {
		r.idx = len(w.mods)
		w.mods = append(w.mods, f)
	} else {
		r.idx = len(w.links)
		w.links = append(w.links, f)
	}
	w.refs = append(w.refs, r)
}

// linkWalker checks one chain in sequence order: numbering, prev_hash
// links and the Merkle root at every checkpoint.
type linkWalker struct {
	chain    string
	cps      []chainCheckpoint
	out      *walk
	tree     *compact.Range
	prev     Hash
	expect   uint64
	lastSeq  uint64
	lastHash Hash
	haveLast bool
	next     int // next checkpoint to compare
}

// walkRanges builds the Merkle trees of the chain walk. Its node hash is
// RFC 6962's (SHA-256(0x01 || left || right), as rangeFactory's), computed
// without the hash.Hash allocations of rfc6962.Hasher: a walk hashes about
// two nodes per row.
var walkRanges = &compact.RangeFactory{Hash: func(left, right []byte) []byte {
	var b [1 + 2*sha256.Size]byte
	b[0] = rfc6962.RFC6962NodeHashPrefix
	copy(b[1:], left)
	copy(b[1+sha256.Size:], right)
	h := sha256.Sum256(b[:])
	return h[:]
}}

// leafHash is LeafHash, the RFC 6962 leaf SHA-256(0x00 || h), without
// its allocations.
func leafHash(h *Hash) Hash {
	var b [1 + sha256.Size]byte
	b[0] = rfc6962.RFC6962LeafHashPrefix
	copy(b[1:], h[:])
	return sha256.Sum256(b[:])
}

func newLinkWalker(chain string, cps []chainCheckpoint, start *chainStart, out *walk) *linkWalker {
	w := &linkWalker{chain: chain, cps: cps, out: out, tree: walkRanges.NewEmptyRange(0), expect: 1}
	if start != nil {
		w.prev, w.expect, w.lastSeq = start.last, start.seq+1, start.seq
		// continue the purge record's tree with walkRanges' hasher; a range
		// that cannot be rebuilt (never: it is a valid range) keeps its own
		w.tree = start.tree
		// (a copy of its hashes: appending must not write into the record's)
		if t, err := walkRanges.NewRange(start.tree.Begin(), start.tree.End(), append([][]byte(nil), start.tree.Hashes()...)); err == nil {
			w.tree = t
		}
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
			w.out.add(Finding{Kind: KindRootMismatch, Chain: w.chain, Seq: cp.Size, Detail: fmt.Sprintf("Merkle root over the first %d rows is %x, the signed checkpoint (%s) says %x", cp.Size, root, cp.source, cp.Root)})
		}
	}
}

// row takes the next row in (seq, hash) order, its Merkle leaf (see
// leafHash) and its content status.
func (w *linkWalker) row(seq uint64, ph, h, leaf Hash, content uint8) error {
	if content == contentModified {
		w.out.locate(Finding{Kind: KindModified, Chain: w.chain, Seq: seq, Detail: "stored content does not hash to the row's hash"}, h)
	}
	if w.haveLast && seq == w.lastSeq {
		if h == w.lastHash {
			w.out.locate(Finding{Kind: KindDuplicate, Chain: w.chain, Seq: seq, Detail: "the same row is stored twice"}, h)
		} else {
			w.out.locate(Finding{Kind: KindInserted, Chain: w.chain, Seq: seq, Detail: "a second, different row claims this sequence number"}, h)
		}
		return nil
	}
	if seq > w.expect {
		w.out.add(Finding{Kind: KindGap, Chain: w.chain, Seq: w.expect, Detail: fmt.Sprintf("rows %d..%d are missing", w.expect, seq-1)})
		// the tree cannot continue over missing leaves; roots of later
		// checkpoints are not comparable.
		w.next = len(w.cps)
		w.prev = ph
	}
	if ph != w.prev {
		w.out.locate(Finding{Kind: KindChainBreak, Chain: w.chain, Seq: seq, Detail: "prev_hash does not match the previous row's hash (rows reordered, replaced or removed)"}, h)
	}
	if seq == w.tree.End()+1 {
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
			w.out.add(Finding{Kind: KindTruncated, Chain: w.chain, Seq: w.lastSeq + 1, Detail: fmt.Sprintf("a signed checkpoint (%s) covers %d rows but the chain ends at %d", newest.source, newest.Size, w.lastSeq)})
		case newest.Size < w.lastSeq:
			w.out.add(Finding{Kind: KindUnattested, Chain: w.chain, Seq: newest.Size + 1, Detail: fmt.Sprintf("rows %d..%d are not yet covered by a signed checkpoint", newest.Size+1, w.lastSeq)})
		}
	} else if w.lastSeq > 0 {
		w.out.add(Finding{Kind: KindUnattested, Chain: w.chain, Seq: 1, Detail: fmt.Sprintf("no signed checkpoint covers rows 1..%d", w.lastSeq)})
	}
}

// contentSQL is the content status of a row (see contentModified): the
// engine recomputes the row's hash when it lies in the From/To window.
// It is a selected value, not a WHERE filter: ClickHouse's query condition
// cache remembers granules a filter matched nothing in, and would let a
// second verification in the same process skip recomputing them.
func contentSQL(opts VerifyOptions, p engine.Params) string {
	if opts.Independent {
		return "toUInt8(2)"
	}
	var window []string
	if !opts.From.IsZero() {
		window = append(window, "event_time >= {from:DateTime64(6)}")
		p["from"] = formatTime(opts.From)
	}
	if !opts.To.IsZero() {
		window = append(window, "event_time < {to:DateTime64(6)}")
		p["to"] = formatTime(opts.To)
	}
	check := "toUInt8(" + EventHashSQL() + " = hash)"
	if len(window) == 0 {
		return check
	}
	return "if(" + strings.Join(window, " AND ") + ", " + check + ", 2)"
}

// The chain walk's result packs the rows of one chain whose sequence
// numbers share a group of walkGroup into one binary string of records,
// sorted by (seq, hash):
//
//	seq % walkGroup   2 bytes, big-endian
//	hash              32 bytes
//	flags             1 byte: the content status (contentModified,
//	                  contentOK, contentUnchecked), plus walkPrevFollows
//	                  when prev_hash follows
//	prev_hash         32 bytes, only when it differs from the hash of the
//	                  record before it in the group (from 32 zero bytes
//	                  for the first record)
//
// So an intact chain sends each hash once.
const (
	walkGroup       = 1024
	walkPrevFollows = 8
)

// walkSQL is the chain walk query, with status the content status of a
// row. The status is computed where rows are read, so the engine hashes
// rows in parallel and groups only narrow tuples.
func walkSQL(db, status string) string {
	g := strconv.Itoa(walkGroup)
	return "SELECT toString(chain), grp, length(a), arrayStringConcat(arrayMap((x, p) -> concat(char(intDiv(x.1 % " + g + ", 256), x.1 % 256), x.2, " +
		"if(x.3 = p, char(x.4), concat(char(x.4 + " + strconv.Itoa(walkPrevFollows) + "), x.3))), " +
		"a, arrayPopBack(arrayPushFront(arrayMap(x -> x.2, a), toFixedString(repeat(char(0), 32), 32))))) " +
		"FROM (SELECT chain, intDiv(seq, " + g + ") AS grp, arraySort(groupArray((seq, hash, prev_hash, st))) AS a " +
		"FROM (SELECT chain, seq, hash, prev_hash, " + status + " AS st FROM " + db + ".events WHERE {only:String} = '' OR chain = {only:String}) " +
		"GROUP BY chain, grp) ORDER BY chain, grp"
}

// verifyChains walks every chain (or only opts.Chain) in sequence order in
// one query, finishing each chain of names, including those with no rows
// left. Unless opts.Independent, the same query has the engine recompute
// every row's hash in the window; it returns how many rows it checked that
// way.
//
// The engine reads every column to hash a row but returns only narrow,
// packed records (see walkGroup): grouping runs in parallel in the engine
// and replaces a sort of the whole table, and packing makes the result a
// few hundred rows instead of a row of five columns per event.
func (s *Store) verifyChains(ctx context.Context, names []string, opts VerifyOptions, cps map[string][]chainCheckpoint, starts map[string]*chainStart, out *walk, progress func(uint64)) (uint64, error) {
	// Reading the result (pipe, unescaping, Merkle leaves) and walking it
	// (links, Merkle nodes) take about as long as each other, and the
	// engine is idle once it sends the result: a goroutine walks groups
	// while the next ones are read.
	walkers := make(map[string]*linkWalker, len(names))
	jobs := make(chan *walkGroupRows, walkQueue)
	free := make(chan *walkGroupRows, walkQueue+2)
	walked := make(chan walkResult, 1)
	go func() {
		var res walkResult
		var cur *linkWalker
		for g := range jobs {
			if res.err == nil {
				if cur == nil || cur.chain != g.chain {
					cur = walkers[g.chain]
					if cur == nil {
						cur = newLinkWalker(g.chain, cps[g.chain], starts[g.chain], out)
						walkers[g.chain] = cur
					}
				}
				var n walkCounts
				n, res.err = walkRecords(cur, g.base, g.recs, g.leaves)
				res.checked += n.checked
				if res.err == nil && n.rows != g.rows {
					res.err = fmt.Errorf("chain walk: the group at seq %d holds %d records, the engine counted %d", g.base, n.rows, g.rows)
				}
			}
			select {
			case free <- g:
			default:
			}
		}
		walked <- res
	}()

	p := engine.Params{"only": opts.Chain}
	var chain []byte
	var grp uint64
	var chainName string
	err := s.queryEach(ctx, walkSQL(s.db, contentSQL(opts, p)), p, func(r engine.Rows) error {
		var g *walkGroupRows
		select {
		case g = <-free:
		default:
			g = &walkGroupRows{}
		}
		if err := r.Scan(&chain, &grp, &g.rows, &g.recs); err != nil {
			return err
		}
		if chainName != string(chain) {
			chainName = string(chain)
		}
		g.chain, g.base = chainName, grp*walkGroup
		// the leaves are hashed here, the rest of the walk in the worker
		g.leaves = groupLeaves(g.leaves[:0], g.recs)
		progress(g.rows)
		jobs <- g
		return nil
	})
	close(jobs)
	res := <-walked
	if err == nil {
		err = res.err
	}
	if err != nil {
		return 0, fmt.Errorf("verify chains: %w", err)
	}
	for _, c := range names {
		w := walkers[c]
		if w == nil {
			w = newLinkWalker(c, cps[c], starts[c], out)
		}
		w.finish()
	}
	return res.checked, nil
}

// walkQueue is how many groups of the chain walk may wait to be walked.
const walkQueue = 16

// walkGroupRows is one group of the chain walk's result.
type walkGroupRows struct {
	chain  string
	base   uint64 // sequence number of the group's first possible row
	rows   uint64 // records in recs
	recs   []byte
	leaves []Hash // Merkle leaf of each record
}

type walkResult struct {
	checked uint64
	err     error
}

type walkCounts struct{ rows, checked uint64 }

// groupLeaves appends the Merkle leaf of every record of a packed group
// (see walkGroup) to leaves, stopping at a malformed record (walkRecords
// reports it).
func groupLeaves(leaves []Hash, recs []byte) []Hash {
	for len(recs) >= 2+32+1 {
		h := (*Hash)(recs[2:34])
		leaves = append(leaves, leafHash(h))
		next := 35
		if recs[34]&walkPrevFollows != 0 {
			next += 32
		}
		if len(recs) < next {
			break
		}
		recs = recs[next:]
	}
	return leaves
}

// walkRecords feeds one group's packed records (see walkGroup) to w, with
// their Merkle leaves (see groupLeaves) when leaves is not nil.
func walkRecords(w *linkWalker, base uint64, recs []byte, leaves []Hash) (walkCounts, error) {
	var n walkCounts
	var prev, ph, h Hash
	for len(recs) > 0 {
		if len(recs) < 2+32+1 {
			return n, fmt.Errorf("chain walk: truncated record in the group at seq %d", base)
		}
		off := uint64(binary.BigEndian.Uint16(recs))
		if off >= walkGroup {
			return n, fmt.Errorf("chain walk: record offset %d in the group at seq %d is beyond the group", off, base)
		}
		seq := base + off
		copy(h[:], recs[2:34])
		flags := recs[34]
		recs = recs[35:]
		ph = prev
		if flags&walkPrevFollows != 0 {
			if len(recs) < 32 {
				return n, fmt.Errorf("chain walk: truncated record at seq %d", seq)
			}
			copy(ph[:], recs[:32])
			recs = recs[32:]
		}
		st := flags &^ walkPrevFollows
		if st > contentUnchecked {
			return n, fmt.Errorf("chain walk: record at seq %d has unknown flags %#x", seq, flags)
		}
		var leaf Hash
		if int(n.rows) < len(leaves) {
			leaf = leaves[n.rows]
		} else {
			leaf = leafHash(&h)
		}
		n.rows++
		if st != contentUnchecked {
			n.checked++
		}
		if err := w.row(seq, ph, h, leaf, st); err != nil {
			return n, err
		}
		prev = h
	}
	return n, nil
}

// verifyContentInGo recomputes every row's hash in Go from its stored
// columns, in storage order (no sort needed: each row carries its own
// prev_hash).
func (s *Store) verifyContentInGo(ctx context.Context, opts VerifyOptions, out *walk, progress func(uint64)) (uint64, error) {
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
			out.mods = append(out.mods, Finding{Kind: KindModified, Chain: row.Chain, Seq: row.Seq, EventID: row.Event.ID, Detail: modifiedDetail(got, row.Hash)})
		}
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("verify content: %w", err)
	}
	progress(batch)
	return n, nil
}

func modifiedDetail(got, stored Hash) string {
	return fmt.Sprintf("stored content hashes to %x, the row's hash is %x", got[:8], stored[:8])
}

// locateBatch is how many sequence numbers one lookup query names; a chain
// with more findings than locateFullScan is looked up in one pass over it.
const (
	locateBatch    = 8192
	locateFullScan = 8 * locateBatch
)

// locate fills in the event id of every finding about one row and the
// recomputed hash of every modified row, from the rows the findings name.
func (s *Store) locate(ctx context.Context, out *walk) error {
	byChain := map[string][]rowRef{}
	var chains []string
	for _, r := range out.refs {
		if _, ok := byChain[r.chain]; !ok {
			chains = append(chains, r.chain)
		}
		byChain[r.chain] = append(byChain[r.chain], r)
	}
	for _, c := range chains {
		refs := byChain[c]
		needHash := false
		seqSet := map[uint64]bool{}
		for _, r := range refs {
			needHash = needHash || r.modified
			seqSet[r.seq] = true
		}
		seqs := make([]uint64, 0, len(seqSet))
		for q := range seqSet {
			seqs = append(seqs, q)
		}
		sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
		found, err := s.lookupRows(ctx, c, seqs, needHash)
		if err != nil {
			return fmt.Errorf("locate findings in chain %s: %w", c, err)
		}
		for _, r := range refs {
			rows := found[rowKey{r.seq, r.hash}]
			if len(rows) == 0 {
				continue // the row changed since the walk; nothing to name
			}
			row := rows[0]
			if !r.modified {
				out.links[r.idx].EventID = row.id
				continue
			}
			for _, x := range rows {
				if x.computed != r.hash {
					row = x
					break
				}
			}
			out.mods[r.idx].EventID = row.id
			out.mods[r.idx].Detail = modifiedDetail(row.computed, r.hash)
		}
	}
	return nil
}

type rowKey struct {
	seq  uint64
	hash Hash
}

type foundRow struct {
	id       string
	computed Hash
}

// lookupRows reads the event id (and, when withHash, the recomputed hash)
// of the rows of chain with the given sequence numbers (sorted).
func (s *Store) lookupRows(ctx context.Context, chain string, seqs []uint64, withHash bool) (map[rowKey][]foundRow, error) {
	cols := "seq, hash, event_id"
	if withHash {
		cols += ", " + EventHashSQL()
	}
	found := map[rowKey][]foundRow{}
	want := map[uint64]bool{}
	for _, q := range seqs {
		want[q] = true
	}
	scan := func(r engine.Rows) error {
		var seq uint64
		var h Hash
		var fr foundRow
		dest := []any{&seq, &h, &fr.id}
		if withHash {
			dest = append(dest, &fr.computed)
		}
		if err := r.Scan(dest...); err != nil {
			return err
		}
		if want[seq] {
			found[rowKey{seq, h}] = append(found[rowKey{seq, h}], fr)
		}
		return nil
	}
	base := "SELECT " + cols + " FROM " + s.db + ".events WHERE chain = {chain:String}"
	if len(seqs) > locateFullScan {
		if err := s.queryEach(ctx, base, engine.Params{"chain": chain}, scan); err != nil {
			return nil, err
		}
		return found, nil
	}
	for len(seqs) > 0 {
		n := min(len(seqs), locateBatch)
		part := seqs[:n]
		seqs = seqs[n:]
		var list strings.Builder
		list.WriteByte('[')
		for i, q := range part {
			if i > 0 {
				list.WriteByte(',')
			}
			list.WriteString(strconv.FormatUint(q, 10))
		}
		list.WriteByte(']')
		p := engine.Params{"chain": chain, "seqs": list.String(), "lo": strconv.FormatUint(part[0], 10), "hi": strconv.FormatUint(part[n-1], 10)}
		if err := s.queryEach(ctx, base+" AND seq BETWEEN {lo:UInt64} AND {hi:UInt64} AND seq IN {seqs:Array(UInt64)}", p, scan); err != nil {
			return nil, err
		}
	}
	return found, nil
}
