package storage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
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
	// KindNoExternalCheckpoint: no checkpoint kept outside the store covers
	// the chain, so a truncation together with its stored checkpoints
	// would go unseen (warning).
	KindNoExternalCheckpoint FindingKind = "no_external_checkpoint"
	// KindInconsistent: the chain's newest signed checkpoint is not a
	// proven extension (RFC 6962 consistency proof) of an external one.
	KindInconsistent FindingKind = "inconsistent"
	// KindUnproven: a consistency proof from an external checkpoint could
	// not be built because the rows it needs were purged under retention
	// (warning).
	KindUnproven FindingKind = "unproven"
	// KindCorruptPart: the engine's own check of a part (its files'
	// checksums) failed; the part's rows are left out of the rest of the
	// verification, so they also show as gaps.
	KindCorruptPart FindingKind = "corrupt_part"
	// KindPartCheckSkipped: the engine could not run its part check (no
	// privilege, an engine without CHECK TABLE) (warning).
	KindPartCheckSkipped FindingKind = "part_check_skipped"
)

// Severities of findings (see Finding.Severity).
const (
	SeverityError   = "error"   // fails verification
	SeverityWarning = "warning" // does not fail, but an auditor should know
	SeverityInfo    = "info"    // an attested, expected change (a retention purge)
)

// Finding is one problem, located as precisely as the evidence allows.
type Finding struct {
	Kind  FindingKind `json:"kind"`
	Chain string      `json:"chain"`
	Seq   uint64      `json:"seq,omitempty"`
	// Through, when set, ends a range of rows Seq..Through the finding is
	// about (duplicates are reported as ranges).
	Through uint64 `json:"through,omitempty"`
	// Part names the engine's data part a corrupt_part finding is about.
	Part    string `json:"part,omitempty"`
	EventID string `json:"event_id,omitempty"`
	Detail  string `json:"detail"`
}

// MarshalJSON adds the finding's severity.
func (f Finding) MarshalJSON() ([]byte, error) {
	type plain Finding
	return json.Marshal(struct {
		plain
		Severity string `json:"severity"`
	}{plain(f), f.Severity()})
}

// Severity is SeverityError for a finding that fails verification,
// SeverityWarning for one an auditor should know of, SeverityInfo for an
// attested purge.
func (f Finding) Severity() string {
	switch f.Kind {
	case KindPurged:
		return SeverityInfo
	case KindUnattested, KindNoExternalCheckpoint, KindUnproven, KindPartCheckSkipped:
		return SeverityWarning
	}
	return SeverityError
}

func (f Finding) String() string {
	s := fmt.Sprintf("%s: chain %s", f.Kind, f.Chain)
	if f.Part != "" {
		s = fmt.Sprintf("%s: part %s", f.Kind, f.Part)
		if f.Chain != "" {
			s += " chain " + f.Chain
		}
	}
	if f.Seq > 0 && f.Through > f.Seq {
		s += fmt.Sprintf(" seq %d..%d", f.Seq, f.Through)
	} else if f.Seq > 0 {
		s += fmt.Sprintf(" seq %d", f.Seq)
	}
	if f.EventID != "" {
		s += fmt.Sprintf(" event %s", f.EventID)
	}
	return s + ": " + f.Detail
}

// Failing reports whether the finding fails verification.
func (f Finding) Failing() bool { return f.Severity() == SeverityError }

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
	// External are signed checkpoints kept outside the store (an
	// auditor's, custody verify --since; published ones), checked like the
	// store's and, when they ask, proven extended by the chain's newest
	// checkpoint (VerifyReport.Consistency).
	External []ExternalCheckpoint
	// Independent recomputes every row's hash in Go from the rows read
	// out of the engine, instead of having the engine recompute them
	// (EventHashSQL, kept identical to the Go encoding by tests). Slower;
	// for those who would rather not trust the engine's arithmetic.
	Independent bool
	// Progress, when set, is called as rows are checked.
	Progress func(done, total uint64)

	// beforeWalk, when set, runs once the purge records are read and
	// before the chains are, so that tests can purge in between.
	beforeWalk func()
	// skip are the parts the engine's check found bad, left out of every
	// query (see checkParts).
	skip badParts
	// parts are the findings of the part check, reported with the rest.
	parts []Finding
}

// VerifyReport is the outcome of Verify.
type VerifyReport struct {
	Chains      int    `json:"chains"`
	Rows        uint64 `json:"rows"`
	Checkpoints int    `json:"checkpoints"`
	// External is how many of the checkpoints were kept outside the
	// store (the checkpoint directory, --since, published ones).
	External int       `json:"external_checkpoints"`
	Findings []Finding `json:"findings"`
	// Consistency holds the proofs asked for by external checkpoints.
	Consistency []ConsistencyProof `json:"consistency,omitempty"`
	Elapsed     time.Duration      `json:"elapsed_ns"`
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
	source   string
	external bool // kept outside the store
	prove    bool // asks for a consistency proof (see ExternalCheckpoint)
}

// Verify recomputes the trail: every row's hash from its content, every
// chain link, every chain's Merkle root at each signed checkpoint, and
// every checkpoint signature, in the store and in the checkpoint
// directory. It reports all it finds rather than stopping at the first.
//
// Its memory is bounded by what is in flight, not by the size of the store
// (see verifyChains), apart from every chain's name and checkpoints and
// the findings.
func (s *Store) Verify(ctx context.Context, opts VerifyOptions) (*VerifyReport, error) {
	if opts.Verifier == nil {
		return nil, fmt.Errorf("verify: a verification key is required")
	}
	start := time.Now()
	var err error
	opts.skip, err = s.checkParts(ctx, func(f Finding) { opts.parts = append(opts.parts, f) })
	if err != nil {
		return nil, err
	}
	rep, err := s.verifyTrail(ctx, opts)
	if rep != nil {
		rep.Elapsed = time.Since(start)
	}
	return rep, err
}

// verifyTrail is Verify once the parts are checked.
func (s *Store) verifyTrail(ctx context.Context, opts VerifyOptions) (*VerifyReport, error) {
	mark, err := s.purgeMark(ctx, opts.skip)
	if err != nil {
		return nil, err
	}
	rep, err := s.verify(ctx, opts, walkWindowRows)
	if err != nil || rep.OK() {
		return rep, err
	}
	// The chains are read in several queries after the purge records. A
	// retention purge recorded meanwhile (on ClickHouse servers, by
	// another process) leaves rows missing that the records read did not
	// explain: read the trail again, against the records as they are now.
	again, err := s.purgeMark(ctx, opts.skip)
	if err != nil || again == mark {
		return rep, err
	}
	opts.beforeWalk = nil
	return s.verify(ctx, opts, walkWindowRows)
}

// purgeMark changes whenever a purge is recorded.
func (s *Store) purgeMark(ctx context.Context, skip badParts) (string, error) {
	ok, err := s.hasTable(ctx, "purges")
	if err != nil || !ok {
		return "", err
	}
	var n uint64
	var last time.Time
	p := engine.Params{}
	q := "SELECT count(), max(purged_at) FROM " + s.db + ".purges"
	if f := skip.filter("purges", p); f != "" {
		q += " WHERE " + f
	}
	err = s.queryEach(ctx, q, p, func(r engine.Rows) error {
		return r.Scan(&n, &last)
	})
	if err != nil {
		return "", fmt.Errorf("read purges: %w", err)
	}
	return fmt.Sprint(n, " ", last.UnixMicro()), nil
}

// verify is Verify with windows of the chain walk of about window rows
// (see planWalk).
func (s *Store) verify(ctx context.Context, opts VerifyOptions, window uint64) (*VerifyReport, error) {
	if opts.Verifier == nil {
		return nil, fmt.Errorf("verify: a verification key is required")
	}
	start := time.Now()
	rep := &VerifyReport{}
	add := func(f Finding) { rep.Findings = append(rep.Findings, f) }
	for _, f := range opts.parts {
		add(f)
	}

	cps, err := s.loadCheckpoints(ctx, opts, add)
	if err != nil {
		return nil, err
	}
	chains, err := s.chainNames(ctx, opts.Chain, opts.skip)
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
			chains[c] = chainSpan{} // a chain with checkpoints but no rows left
		}
	}
	for c := range starts {
		if _, ok := chains[c]; !ok {
			chains[c] = chainSpan{}
		}
	}
	var total uint64
	for _, sp := range chains {
		total += sp.rows
	}
	names := make([]string, 0, len(chains))
	for c := range chains {
		names = append(names, c)
	}
	sort.Strings(names)
	rep.Chains = len(names)
	for _, f := range witnessFindings(names, cps) {
		add(f)
	}
	// Progress counts the walk's rows (links and Merkle roots, however
	// many chains: an archive backfill makes one per blob), whose windows
	// come after the engine's content check. An independent check reads
	// every row a second time, for Go to hash.
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
	var spans []chainSpan // the chains with rows, by name
	for _, c := range names {
		if sp := chains[c]; sp.rows > 0 {
			spans = append(spans, sp)
		}
	}
	if opts.beforeWalk != nil {
		opts.beforeWalk()
	}
	wk := &walk{}
	n, err := s.verifyChains(ctx, names, planWalk(spans, window), opts, cps, starts, wk, progress)
	if err != nil {
		return nil, err
	}
	if opts.Independent {
		if n, err = s.verifyContentInGo(ctx, opts, wk, progress); err != nil {
			return nil, err
		}
	}
	if err := s.locate(ctx, wk, opts.skip); err != nil {
		return nil, err
	}
	rep.Findings = append(append(rep.Findings, wk.links...), wk.mods...)
	rep.Findings = append(rep.Findings, inconsistentFindings(wk.proofs)...)
	rep.Consistency = wk.proofs
	rep.Rows = n
	for _, l := range cps {
		rep.Checkpoints += len(l)
		for _, cp := range l {
			if cp.external {
				rep.External++
			}
		}
	}
	rep.Elapsed = time.Since(start)
	return rep, nil
}

// chainSpan is a chain's rows: how many, and their first and last
// sequence numbers.
type chainSpan struct {
	name           string
	rows, min, max uint64
}

// chainNames returns the chains in the store with their rows.
func (s *Store) chainNames(ctx context.Context, only string, skip badParts) (map[string]chainSpan, error) {
	out := map[string]chainSpan{}
	p := engine.Params{"only": only}
	err := s.queryEach(ctx, "SELECT toString(chain), count(), min(seq), max(seq) FROM "+s.db+".events WHERE ({only:String} = '' OR chain = {only:String})"+skip.and("events", p)+" GROUP BY chain",
		p, func(r engine.Rows) error {
			var sp chainSpan
			if err := r.Scan(&sp.name, &sp.rows, &sp.min, &sp.max); err != nil {
				return err
			}
			out[sp.name] = sp
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("list chains: %w", err)
	}
	return out, nil
}

// StoredCheckpoint is a row of the checkpoints table as verification
// reads it.
type StoredCheckpoint struct {
	Chain string
	Size  uint64
	Root  Hash
	Note  []byte
}

// loadCheckpoints reads every checkpoint in the store and in the
// checkpoint directory, and checks them (checkCheckpoints).
func (s *Store) loadCheckpoints(ctx context.Context, opts VerifyOptions, add func(Finding)) (map[string][]chainCheckpoint, error) {
	var stored []StoredCheckpoint
	p := engine.Params{"only": opts.Chain}
	err := s.queryEach(ctx, "SELECT toString(chain), tree_size, root_hash, note FROM "+s.db+".checkpoints WHERE ({only:String} = '' OR chain = {only:String})"+opts.skip.and("checkpoints", p)+" ORDER BY chain, tree_size",
		p, func(r engine.Rows) error {
			var c StoredCheckpoint
			var msg string
			if err := r.Scan(&c.Chain, &c.Size, &c.Root, &msg); err != nil {
				return err
			}
			c.Note = []byte(msg)
			stored = append(stored, c)
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("read checkpoints: %w", err)
	}
	files, err := ReadCheckpointDir(opts.CheckpointDir)
	if err != nil {
		return nil, err
	}
	out, findings := checkCheckpoints(stored, files, opts.External, opts.Verifier, opts.Chain)
	for _, f := range findings {
		add(f)
	}
	return out, nil
}

// checkCheckpoints verifies the checkpoints stored in the store (in
// (chain, size) order), those in the checkpoint directory (by file name)
// and the external ones, of every chain or only one, and returns the
// valid ones by chain, sorted by size, with a finding for each that does
// not verify and for each directory checkpoint newer than the store's
// newest (checkpoints removed from the store).
func checkCheckpoints(stored []StoredCheckpoint, files map[string][]byte, ext []ExternalCheckpoint, v note.Verifier, only string) (map[string][]chainCheckpoint, []Finding) {
	var findings []Finding
	add := func(f Finding) { findings = append(findings, f) }
	out := map[string][]chainCheckpoint{}
	latestStored := map[string]chainCheckpoint{}
	for _, st := range stored {
		if only != "" && st.Chain != only {
			continue
		}
		chain, size := st.Chain, st.Size
		cp, err := OpenCheckpoint(st.Note, v)
		if err != nil {
			add(Finding{Kind: KindBadSignature, Chain: chain, Seq: size, Detail: fmt.Sprintf("stored checkpoint at size %d: %v", size, err)})
			continue
		}
		if cp.Chain != chain || cp.Size != size || cp.Root != st.Root {
			add(Finding{Kind: KindBadSignature, Chain: chain, Seq: size, Detail: fmt.Sprintf("stored checkpoint columns (size %d) differ from its signed note (chain %s, size %d)", size, cp.Chain, cp.Size)})
			continue
		}
		c := chainCheckpoint{Checkpoint: cp, source: "store"}
		out[chain] = append(out[chain], c)
		latestStored[chain] = c
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		cp, err := OpenCheckpoint(files[name], v)
		if err != nil {
			add(Finding{Kind: KindBadSignature, Chain: name, Detail: fmt.Sprintf("checkpoint file %s: %v", name, err)})
			continue
		}
		if only != "" && cp.Chain != only {
			continue
		}
		out[cp.Chain] = append(out[cp.Chain], chainCheckpoint{Checkpoint: cp, source: "directory", external: true})
		if st, ok := latestStored[cp.Chain]; !ok || st.Size < cp.Size {
			have := uint64(0)
			if ok {
				have = st.Size
			}
			add(Finding{Kind: KindCheckpointDiffers, Chain: cp.Chain, Seq: cp.Size, Detail: fmt.Sprintf("checkpoint directory holds a signed checkpoint at size %d; the store's newest is at %d (checkpoints were removed from the store)", cp.Size, have)})
		}
	}
	for c, l := range openExternal(ext, v, only, add) {
		out[c] = append(out[c], l...)
	}
	for c := range out {
		sort.SliceStable(out[c], func(i, j int) bool { return out[c][i].Size < out[c][j].Size })
	}
	return out, findings
}

// ChainRow is one row of a chain as the walk reads it: its sequence
// number, hash and prev_hash, and whether its content no longer hashes to
// its hash (as the content check found).
type ChainRow struct {
	Seq            uint64
	Hash, PrevHash Hash
	Modified       bool
}

// checkChain decides what one chain's rows (in (seq, hash) order) show
// against its verified checkpoints (sorted by size) and, when its first
// rows were purged, where its purge record leaves it: gaps, duplicates
// (as ranges), inserted rows, chain breaks, modified rows, root
// mismatches, truncation or unattested rows, and the consistency proofs
// external checkpoints ask for. It is the chain walk verification
// streams the store's rows through, over rows given in full; findings
// about one row carry no event id (the store looks those up).
func checkChain(chain string, rows []ChainRow, cps []chainCheckpoint, start *chainStart) ([]Finding, []ConsistencyProof) {
	out := &walk{}
	w := newLinkWalker(chain, cps, start, out)
	for _, r := range rows {
		st := uint8(contentOK)
		if r.Modified {
			st = contentModified
		}
		// the walker takes rows that passed the content check; a
		// modified row is reported and walked like the rest, as the
		// streaming walk does (see verifyChains)
		if err := w.row(r.Seq, r.PrevHash, r.Hash, leafHash(&r.Hash), st); err != nil {
			out.add(Finding{Kind: KindRootMismatch, Chain: chain, Seq: r.Seq, Detail: err.Error()})
		}
	}
	out.links = append(out.links, w.finish()...)
	return append(out.links, out.mods...), out.proofs
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
	links  []Finding // chain findings, in walk order
	mods   []Finding // modified rows, by chain and sequence
	refs   []rowRef
	proofs []ConsistencyProof // asked for by external checkpoints, by chain
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
	tree     walkTree
	prev     Hash
	expect   uint64
	lastSeq  uint64
	lastHash Hash
	haveLast bool
	next     int // next checkpoint to compare
	proofs   []*proofBuilder
	// the open range of duplicated rows: the index of its finding in
	// out.links and its last sequence number
	dupOpen bool
	dupIdx  int
	dupEnd  uint64
}

// walkRanges builds the Merkle trees of a chain walk that continues a range
// walkTree does not hold (see newWalkTree). Its node hash is RFC 6962's
// (nodeHash, as rangeFactory's).
var walkRanges = &compact.RangeFactory{Hash: func(left, right []byte) []byte {
	h := nodeHash((*Hash)(left), (*Hash)(right))
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
	w := &linkWalker{chain: chain, cps: cps, out: out, expect: 1}
	w.proofs = planProofs(cps, start != nil)
	if start != nil {
		w.prev, w.expect, w.lastSeq = start.last, start.seq+1, start.seq
		// continue the purge record's tree
		w.tree = newWalkTree(start.tree)
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
		root, err := w.tree.Root()
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
			switch {
			case w.dupOpen && w.dupEnd == seq:
				// a third copy: the finding stands
			case w.dupOpen && w.dupEnd+1 == seq:
				f := &w.out.links[w.dupIdx]
				f.Through, w.dupEnd = seq, seq
				f.Detail = fmt.Sprintf("rows %d..%d are each stored more than once", f.Seq, seq)
			default:
				w.dupOpen, w.dupIdx, w.dupEnd = true, len(w.out.links), seq
				w.out.locate(Finding{Kind: KindDuplicate, Chain: w.chain, Seq: seq, Detail: "the same row is stored twice"}, h)
			}
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
		for _, b := range w.proofs {
			b.leaf(seq-1, &leaf)
		}
		if err := w.tree.Append(&leaf); err != nil {
			return err
		}
		w.checkRoot()
	}
	w.prev, w.lastSeq, w.lastHash, w.haveLast = h, seq, h, true
	w.expect = seq + 1
	return nil
}

// finish returns what the chain's end shows: truncation after, or rows
// beyond, the newest checkpoint.
func (w *linkWalker) finish() []Finding {
	for _, b := range w.proofs {
		w.out.proofs = append(w.out.proofs, b.result(w.chain))
	}
	w.proofs = nil
	if len(w.cps) > 0 {
		newest := w.cps[len(w.cps)-1]
		switch {
		case newest.Size > w.lastSeq:
			return []Finding{{Kind: KindTruncated, Chain: w.chain, Seq: w.lastSeq + 1, Detail: fmt.Sprintf("a signed checkpoint (%s) covers %d rows but the chain ends at %d", newest.source, newest.Size, w.lastSeq)}}
		case newest.Size < w.lastSeq:
			return []Finding{{Kind: KindUnattested, Chain: w.chain, Seq: newest.Size + 1, Detail: fmt.Sprintf("rows %d..%d are not yet covered by a signed checkpoint", newest.Size+1, w.lastSeq)}}
		}
	} else if w.lastSeq > 0 {
		return []Finding{{Kind: KindUnattested, Chain: w.chain, Seq: 1, Detail: fmt.Sprintf("no signed checkpoint covers rows 1..%d", w.lastSeq)}}
	}
	return nil
}

// windowSQL is the From/To window of the content check as a condition on
// event_time, with its parameters set in p; "" when there is none.
func windowSQL(opts VerifyOptions, p engine.Params) string {
	var window []string
	if !opts.From.IsZero() {
		window = append(window, "event_time >= {from:DateTime64(6)}")
		p["from"] = formatTime(opts.From)
	}
	if !opts.To.IsZero() {
		window = append(window, "event_time < {to:DateTime64(6)}")
		p["to"] = formatTime(opts.To)
	}
	return strings.Join(window, " AND ")
}

// Verify reads the trail with two kinds of query:
//
//   - the content check, one query over every row in the From/To window
//     (and of opts.Chain, when set): chain, seq and hash, with status
//     contentModified, of each row whose recomputed hash (EventHashSQL)
//     differs from its stored one. It streams (nothing is sorted or
//     grouped), the engine runs it on every thread it has (see
//     walkSettings), and a clean trail returns nothing. Recomputing hashes
//     is most of verify's CPU, and this is the only query that reads the
//     wide columns, once.
//   - the walk, one query per window of chains and sequence numbers (see
//     planWalk): chain, seq, hash and prev_hash (narrow columns, about 80
//     bytes a row) sorted by (chain, seq, hash, prev_hash), with a status of
//     contentOK for a row in the From/To window (its content is checked)
//     and contentUnchecked for one outside it. Go walks the rows as they
//     arrive, in two goroutines.
//
// The windows bound what the engine's sort holds (the embedded engine has
// no disk to spill a sort to: measured, max_bytes_before_external_sort
// does not spill), and Go keeps no more of the rows than a few groups (see
// walkGroup). The form before grouped and packed every row's walk columns
// in the engine, an aggregation holding all of them until the last row was
// read. Only the narrow columns are read again by each window, so a big
// store, whose windows share granules, reads its wide columns once.
//
// The queries are separate reads of the store: a retention purge made
// between them (on ClickHouse servers, by another process; the embedded
// store lets one process in at a time) would show as a gap, so Verify
// reads the trail again when the purge records changed while it ran.

// Go packs the walk's rows of one chain whose sequence numbers share a
// group of walkGroup into one binary string of records, in (seq, hash)
// order:
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
// So an intact chain copies each hash once.
const (
	walkGroup       = 1024
	walkPrevFollows = 8
)

// walkWindowRows is about how many rows one query of the chain walk
// covers (see planWalk): its sort holds their narrow columns, about 80 MB.
const walkWindowRows = 1 << 20

// walkWindow is the rows one query of the chain walk reads: those of the
// chains from first to last (in byte order) with sequence numbers in
// [minSeq, maxSeq].
type walkWindow struct {
	first, last    string
	minSeq, maxSeq uint64
}

// planWalk cuts the chains with rows (spans, by name) into windows of
// about max rows, in walk order: consecutive whole chains while they fit,
// and a chain of more than max rows alone, in slices of max sequence
// numbers. Rows appended meanwhile fall in the window of their chain's
// last slice. Requires max > 0.
func planWalk(spans []chainSpan, max uint64) []walkWindow {
	var out []walkWindow
	var cur *walkWindow
	var n uint64
	for _, sp := range spans {
		if sp.rows <= max {
			if cur == nil || n+sp.rows > max {
				out = append(out, walkWindow{first: sp.name, minSeq: 0, maxSeq: math.MaxUint64})
				cur, n = &out[len(out)-1], 0
			}
			cur.last = sp.name
			n += sp.rows
			continue
		}
		cur = nil
		lo := uint64(0)
		for k := uint64(1); ; k++ {
			hi := sp.min + k*max - 1
			if hi >= sp.max || hi < lo {
				out = append(out, walkWindow{first: sp.name, last: sp.name, minSeq: lo, maxSeq: math.MaxUint64})
				break
			}
			out = append(out, walkWindow{first: sp.name, last: sp.name, minSeq: lo, maxSeq: hi})
			lo = hi + 1
		}
	}
	return out
}

// walkSettings run the chain walk on every core the engine has for the
// whole query. The engine shares out a table's granules among its threads;
// by default a thread takes at least 160k rows or 240 MiB of a part at
// once, so a store of a few parts of that size or less can recompute most
// of its hashes on one core while the other idles. Smaller shares keep
// both busy. Blocks of 8192 rows keep the hash preimages of a block (about
// 1.2 KB a row) to 10 MB, memory the engine reuses block after block.
const walkSettings = "merge_tree_min_rows_for_concurrent_read = 8192, merge_tree_min_bytes_for_concurrent_read = 1048576, max_block_size = 8192"

// walkSQL is the chain walk query of one window (see walkWindow; its
// bounds are the parameters chain_first, chain_last, seq_min and
// seq_max). noConditionCache turns off ClickHouse's query condition cache
// (an engine that has one), as in contentSQL.
func walkSQL(db string, opts VerifyOptions, p engine.Params, noConditionCache bool) string {
	rows := "chain >= {chain_first:String} AND chain <= {chain_last:String} AND seq >= {seq_min:UInt64} AND seq <= {seq_max:UInt64}"
	window := windowSQL(opts, p)
	status := "toUInt8(" + strconv.Itoa(contentOK) + ")"
	switch {
	case opts.Independent:
		status = "toUInt8(" + strconv.Itoa(contentUnchecked) + ")"
	case window != "":
		status = "toUInt8(if(" + window + ", " + strconv.Itoa(contentOK) + ", " + strconv.Itoa(contentUnchecked) + "))"
	}
	rows += opts.skip.and("events", p)
	return "SELECT " + status + ", toString(chain), seq, hash, prev_hash FROM " + db + ".events WHERE " + rows +
		" ORDER BY chain, seq, hash, prev_hash" + verifySettings(noConditionCache)
}

// contentSQL is the content check: the rows of the From/To window (of
// opts.Chain, when set) whose content no longer hashes to their hash.
// noConditionCache turns off ClickHouse's query condition cache (an
// engine that has one): it remembers the granules a filter matched
// nothing in, and would let a second verification in the same process
// skip reading them again, recomputing their hashes included.
func contentSQL(db string, opts VerifyOptions, p engine.Params, noConditionCache bool) string {
	cond := []string{EventHashSQL() + " != hash"}
	if w := windowSQL(opts, p); w != "" {
		cond = append(cond, w)
	}
	if opts.Chain != "" {
		cond = append(cond, "chain = {verify_chain:String}")
		p["verify_chain"] = opts.Chain
	}
	if f := opts.skip.filter("events", p); f != "" {
		cond = append(cond, f)
	}
	return "SELECT toUInt8(" + strconv.Itoa(contentModified) + "), toString(chain), seq, hash, prev_hash FROM " + db + ".events WHERE " +
		strings.Join(cond, " AND ") + verifySettings(noConditionCache)
}

func verifySettings(noConditionCache bool) string {
	settings := " SETTINGS " + walkSettings
	if noConditionCache {
		settings += ", use_query_condition_cache = 0"
	}
	return settings
}

// windowParams sets the bounds of w in p (see walkSQL).
func windowParams(p engine.Params, w walkWindow) {
	p["chain_first"], p["chain_last"] = w.first, w.last
	p["seq_min"], p["seq_max"] = strconv.FormatUint(w.minSeq, 10), strconv.FormatUint(w.maxSeq, 10)
}

// hasSetting reports whether the engine knows a setting (servers older
// than a setting refuse a query that names it).
func (s *Store) hasSetting(ctx context.Context, name string) (bool, error) {
	ok, err := s.exists(ctx, "SELECT count() FROM system.settings WHERE name = {name:String}", engine.Params{"name": name})
	if err != nil {
		return false, fmt.Errorf("read engine settings: %w", err)
	}
	return ok, nil
}

// modifiedRow is a row the content check found modified.
type modifiedRow struct {
	chain string
	seq   uint64
	hash  Hash
}

// verifyChains walks every chain (or only opts.Chain) in sequence order,
// one query per window (see planWalk and walkSQL), finishing each chain of
// names, including those with no rows left. Unless opts.Independent, one
// query first has the engine recompute every row's hash in the From/To
// window (contentSQL); it returns how many rows were checked that way.
//
// Memory is bounded by what is in flight, not by the size of the store.
// The engine sorts the narrow columns of one window's rows at a time
// (walkWindowRows of them, about 80 MB) and hashes rows a block at a time.
// This process holds at most walkQueue+4 groups of walkGroup rows (67
// bytes and a Merkle leaf a row: 100 KB a group), one Native block of the result (8192 rows),
// one chain's Merkle compact range (64 hashes at most), and, as before the
// walk, every chain's name and verified checkpoints; beyond that only the
// findings, one per row a finding names (nothing, for a clean trail).
func (s *Store) verifyChains(ctx context.Context, names []string, windows []walkWindow, opts VerifyOptions, cps map[string][]chainCheckpoint, starts map[string]*chainStart, out *walk, progress func(uint64)) (uint64, error) {
	noCache, err := s.hasSetting(ctx, "use_query_condition_cache")
	if err != nil {
		return 0, err
	}
	// Reading the result (pipe, decoding, packing groups, Merkle leaves)
	// and walking it (Merkle nodes, links) take about as long as each
	// other: a goroutine walks groups while the next ones are read.
	ends := make(map[string][]Finding, len(names)) // what finish found, by chain walked
	jobs := make(chan *walkGroupRows, walkQueue)
	free := make(chan *walkGroupRows, walkQueue+2)
	walked := make(chan walkResult, 1)
	go func() {
		var res walkResult
		var cur *linkWalker
		for g := range jobs {
			if res.err == nil {
				if cur == nil || cur.chain != g.chain {
					if cur != nil {
						ends[cur.chain] = cur.finish()
					}
					cur = newLinkWalker(g.chain, cps[g.chain], starts[g.chain], out)
				}
				var n walkCounts
				n, res.err = walkRecords(cur, g.base, g.recs, g.leaves)
				res.checked += n.checked
				if res.err == nil && n.rows != g.rows {
					res.err = fmt.Errorf("chain walk: the group at seq %d holds %d records, %d were read", g.base, n.rows, g.rows)
				}
			}
			select {
			case free <- g:
			default:
			}
		}
		if cur != nil && res.err == nil {
			ends[cur.chain] = cur.finish()
		}
		walked <- res
	}()

	var (
		status uint8
		chain  []byte
		seq    uint64
		h, ph  Hash
	)
	dest := []any{&status, &chain, &seq, &h, &ph}
	pk := &walkPacker{newGroup: func() *walkGroupRows {
		select {
		case g := <-free:
			return g
		default:
			return &walkGroupRows{}
		}
	}}
	send := func(g *walkGroupRows) {
		if g != nil {
			// the leaves are hashed here, the rest of the walk in the
			// walker, which has more to do
			g.leaves = groupLeaves(g.leaves[:0], g.recs)
			progress(g.rows)
			jobs <- g
		}
	}
	if !opts.Independent {
		p := engine.Params{}
		err = s.blocksEach(ctx, contentSQL(s.db, opts, p, noCache), p, func(r engine.Rows) error {
			if err := r.Scan(dest...); err != nil {
				return err
			}
			_, err := pk.add(status, chain, seq, &h, &ph)
			return err
		})
	}
	p := engine.Params{}
	q := walkSQL(s.db, opts, p, noCache)
	for _, w := range windows {
		if err != nil {
			break
		}
		windowParams(p, w)
		err = s.blocksEach(ctx, q, p, func(r engine.Rows) error {
			if err := r.Scan(dest...); err != nil {
				return err
			}
			done, err := pk.add(status, chain, seq, &h, &ph)
			send(done)
			return err
		})
		if err != nil {
			break
		}
	}
	if err == nil {
		send(pk.finish())
	}
	close(jobs)
	res := <-walked
	if err == nil {
		err = res.err
	}
	if err != nil {
		return 0, fmt.Errorf("verify chains: %w", err)
	}
	for _, c := range names {
		f, ok := ends[c]
		if !ok {
			f = newLinkWalker(c, cps[c], starts[c], out).finish()
		}
		out.links = append(out.links, f...)
	}
	// modified rows, by chain and sequence number as the walk met them
	modified := pk.modified
	sort.Slice(modified, func(i, j int) bool {
		a, b := &modified[i], &modified[j]
		if a.chain != b.chain {
			return a.chain < b.chain
		}
		if a.seq != b.seq {
			return a.seq < b.seq
		}
		return bytes.Compare(a.hash[:], b.hash[:]) < 0
	})
	for _, m := range modified {
		out.locate(Finding{Kind: KindModified, Chain: m.chain, Seq: m.seq, Detail: "stored content does not hash to the row's hash"}, m.hash)
	}
	return res.checked, nil
}

// walkPacker packs the rows of the chain walk query (see walkGroup) into
// groups as they arrive, and keeps the modified rows the content check
// reports.
type walkPacker struct {
	g        *walkGroupRows // the group being filled
	last     uint64         // sequence number of the last row packed
	prev     Hash           // hash of the last record of g
	modified []modifiedRow
	newGroup func() *walkGroupRows // an empty group to fill (its buffers may be reused)
}

// add takes the next row of the query; it returns the group the row
// follows when the row starts a new one. Walk rows must come in (chain,
// seq) order.
func (pk *walkPacker) add(status uint8, chain []byte, seq uint64, h, ph *Hash) (*walkGroupRows, error) {
	switch status {
	case contentModified:
		pk.modified = append(pk.modified, modifiedRow{chain: string(chain), seq: seq, hash: *h})
		return nil, nil
	case contentOK, contentUnchecked:
	default:
		return nil, fmt.Errorf("chain walk: row at seq %d has unknown status %d", seq, status)
	}
	g := pk.g
	var done *walkGroupRows
	if g == nil || string(chain) != g.chain || seq/walkGroup != g.base/walkGroup {
		name := string(chain)
		if g != nil {
			if name < g.chain || name == g.chain && seq < pk.last {
				return nil, fmt.Errorf("chain walk: rows out of order at chain %s seq %d", name, seq)
			}
			if name == g.chain {
				name = g.chain // one string per chain
			}
		}
		done, g = g, pk.newGroup()
		g.chain, g.base, g.rows, g.recs = name, seq/walkGroup*walkGroup, 0, g.recs[:0]
		pk.g, pk.prev = g, Hash{}
	} else if seq < pk.last {
		return nil, fmt.Errorf("chain walk: rows out of order at chain %s seq %d", g.chain, seq)
	}
	g.recs = appendWalkRecord(g.recs, seq, h, ph, &pk.prev, status)
	g.rows++
	pk.last, pk.prev = seq, *h
	return done, nil
}

// finish returns the last group, if any.
func (pk *walkPacker) finish() *walkGroupRows {
	g := pk.g
	pk.g = nil
	return g
}

// appendWalkRecord appends the record of a walk row (see walkGroup) to
// recs, the records of its group so far, with prev_hash left out when it
// is prev, the hash of the record before it (zero for the first).
func appendWalkRecord(recs []byte, seq uint64, h, ph, prev *Hash, status uint8) []byte {
	recs = binary.BigEndian.AppendUint16(recs, uint16(seq%walkGroup))
	recs = append(recs, h[:]...)
	if *ph == *prev {
		return append(recs, status)
	}
	recs = append(recs, status|walkPrevFollows)
	return append(recs, ph[:]...)
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
	p := engine.Params{"only": opts.Chain}
	q := "SELECT " + EventColumnList() + " FROM " + s.db + ".events WHERE ({only:String} = '' OR chain = {only:String})" + opts.skip.and("events", p)
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
	err := s.blocksEach(ctx, q, p, func(r engine.Rows) error {
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
func (s *Store) locate(ctx context.Context, out *walk, skip badParts) error {
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
		found, err := s.lookupRows(ctx, c, seqs, needHash, skip)
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
func (s *Store) lookupRows(ctx context.Context, chain string, seqs []uint64, withHash bool, skip badParts) (map[rowKey][]foundRow, error) {
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
	skipParams := engine.Params{}
	base := "SELECT " + cols + " FROM " + s.db + ".events WHERE chain = {chain:String}" + skip.and("events", skipParams)
	if len(seqs) > locateFullScan {
		skipParams["chain"] = chain
		if err := s.queryEach(ctx, base, skipParams, scan); err != nil {
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
		for k, v := range skipParams {
			p[k] = v
		}
		if err := s.queryEach(ctx, base+" AND seq BETWEEN {lo:UInt64} AND {hi:UInt64} AND seq IN {seqs:Array(UInt64)}", p, scan); err != nil {
			return nil, err
		}
	}
	return found, nil
}
