package storage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/merkle/compact"
	"golang.org/x/mod/sumdb/note"

	"github.com/custody-audit/custody/storage/engine"
)

// PurgeFormatVersion is the version of the purge extension lines; see
// docs/format/purge-v1.md.
const PurgeFormatVersion = 1

// Purge note extension keys, in the order they appear.
const (
	purgeMarker    = "purge"
	purgeFirstKey  = "first"
	purgeLastHash  = "last-hash"
	purgePartition = "partition"
	purgeIDKey     = "id"
	purgeAtKey     = "at"
)

// PurgeAttestation is the signed content of a purge note: rows
// FirstSeq..LastSeq of Chain were purged under retention, leaving a chain
// whose first LastSeq leaves have Merkle root Root and whose row LastSeq
// hashes to LastHash.
type PurgeAttestation struct {
	Chain     string
	FirstSeq  uint64
	LastSeq   uint64
	Root      Hash
	LastHash  Hash
	Partition string
	ID        string
	At        time.Time
}

// signPurge signs rec's attestation: a checkpoint of the chain at LastSeq
// with the purge extension lines.
func signPurge(signer note.Signer, rec *PurgeRecord) ([]byte, error) {
	body := log.Checkpoint{Origin: checkpointOrigin(rec.Chain), Size: rec.LastSeq, Hash: rec.Root[:]}.Marshal()
	ext := fmt.Sprintf("%s v%d\n%s %d\n%s %s\n%s %s\n%s %s\n%s %s\n",
		purgeMarker, PurgeFormatVersion,
		purgeFirstKey, rec.FirstSeq,
		purgeLastHash, base64.StdEncoding.EncodeToString(rec.LastHash[:]),
		purgePartition, rec.Partition,
		purgeIDKey, rec.ID,
		purgeAtKey, rec.PurgedAt.UTC().Format(time.RFC3339Nano))
	msg, err := note.Sign(&note.Note{Text: string(body) + ext}, signer)
	if err != nil {
		return nil, fmt.Errorf("sign purge of %s: %w", rec.Chain, err)
	}
	return msg, nil
}

// OpenPurgeNote verifies a signed purge note and parses it. It rejects a
// note that is not a purge (a plain checkpoint), an unknown version, and
// missing, reordered or malformed extension lines.
func OpenPurgeNote(msg []byte, v note.Verifier) (PurgeAttestation, error) {
	var a PurgeAttestation
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		return a, fmt.Errorf("%w: %w", ErrBadSignature, err)
	}
	var cp log.Checkpoint
	rest, err := cp.Unmarshal([]byte(n.Text))
	if err != nil {
		return a, fmt.Errorf("parse purge note: %w", err)
	}
	if !strings.HasPrefix(cp.Origin, "custody/") || len(cp.Hash) != 32 {
		return a, fmt.Errorf("parse purge note: origin %q or root is not a custody chain's", cp.Origin)
	}
	a.Chain, a.LastSeq = strings.TrimPrefix(cp.Origin, "custody/"), cp.Size
	copy(a.Root[:], cp.Hash)
	lines := strings.Split(strings.TrimSuffix(string(rest), "\n"), "\n")
	keys := []string{purgeMarker, purgeFirstKey, purgeLastHash, purgePartition, purgeIDKey, purgeAtKey}
	if len(rest) == 0 || len(lines) != len(keys) {
		return a, fmt.Errorf("parse purge note: want %d purge lines after the checkpoint, got %d", len(keys), len(lines))
	}
	vals := make([]string, len(keys))
	for i, k := range keys {
		kk, val, ok := strings.Cut(lines[i], " ")
		if !ok || kk != k || val == "" {
			return a, fmt.Errorf("parse purge note: line %d is %q, want %q and a value", 4+i, lines[i], k)
		}
		vals[i] = val
	}
	if vals[0] != "v"+strconv.Itoa(PurgeFormatVersion) {
		return a, fmt.Errorf("parse purge note: unknown purge version %q", vals[0])
	}
	if a.FirstSeq, err = strconv.ParseUint(vals[1], 10, 64); err != nil || a.FirstSeq == 0 || a.FirstSeq > a.LastSeq {
		return a, fmt.Errorf("parse purge note: first seq %q does not start a range ending at %d", vals[1], a.LastSeq)
	}
	h, err := base64.StdEncoding.DecodeString(vals[2])
	if err != nil || len(h) != 32 {
		return a, fmt.Errorf("parse purge note: last hash %q is not 32 bytes of base64", vals[2])
	}
	copy(a.LastHash[:], h)
	a.Partition, a.ID = vals[3], vals[4]
	if a.At, err = time.Parse(time.RFC3339Nano, vals[5]); err != nil {
		return a, fmt.Errorf("parse purge note: time: %w", err)
	}
	return a, nil
}

// purgeRecordColumns are read back by readPurges, in this order.
const purgeRecordColumns = "purge_id, partition_id, range_from, range_to, newest_time, partition_rows, toString(chain), first_seq, last_seq, chain_rows, counts, last_hash, compact_range, root_hash, head_seq, head_hash, checkpoint_size, checkpoint_root, checkpoint_note, policy, note, purged_at, actor"

func (s *Store) readPurges(ctx context.Context, chain string, skip badParts) ([]PurgeRecord, error) {
	ok, err := s.hasTable(ctx, "purges")
	if err != nil || !ok {
		return nil, err
	}
	var out []PurgeRecord
	p := engine.Params{"only": chain}
	err = s.queryEach(ctx, "SELECT "+purgeRecordColumns+" FROM "+s.db+".purges WHERE ({only:String} = '' OR chain = {only:String})"+skip.and("purges", p)+" ORDER BY chain, last_seq, purged_at",
		p, func(r engine.Rows) error {
			var p PurgeRecord
			var counts, msg string
			var rng []string
			if err := r.Scan(&p.ID, &p.Partition, &p.From, &p.To, &p.Newest, &p.PartitionRows, &p.Chain, &p.FirstSeq, &p.LastSeq, &p.Rows,
				&counts, &p.LastHash, &rng, &p.Root, &p.HeadSeq, &p.HeadHash, &p.CheckpointSize, &p.CheckpointRoot, &p.CheckpointNote,
				&p.Policy, &msg, &p.PurgedAt, &p.Actor); err != nil {
				return err
			}
			p.Note = []byte(msg)
			if err := json.Unmarshal([]byte(counts), &p.Counts); err != nil {
				p.Counts = nil // shown as unknown; the signed note is what verify trusts
			}
			for _, x := range rng {
				var h Hash
				copy(h[:], x)
				if len(x) != len(h) {
					return fmt.Errorf("purge %s: compact range hash of %d bytes", p.ID, len(x))
				}
				p.CompactRange = append(p.CompactRange, h)
			}
			out = append(out, p)
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("read purges: %w", err)
	}
	return out, nil
}

// Purges returns every purge record, by chain and sequence.
func (s *Store) Purges(ctx context.Context) ([]PurgeRecord, error) {
	return s.readPurges(ctx, "", badParts{})
}

// checkPurge verifies one purge record: its signature, that its columns
// say what the note says, and that its compact range hashes to the signed
// root. It returns the tree resumed at LastSeq.
func checkPurge(p PurgeRecord, v note.Verifier) (*compact.Range, error) {
	a, err := OpenPurgeNote(p.Note, v)
	if err != nil {
		return nil, err
	}
	if a.Chain != p.Chain || a.FirstSeq != p.FirstSeq || a.LastSeq != p.LastSeq || a.Root != p.Root || a.LastHash != p.LastHash || a.ID != p.ID || a.Partition != p.Partition {
		return nil, fmt.Errorf("purge record columns (chain %s, seq %d..%d, partition %s) differ from its signed note (chain %s, seq %d..%d, partition %s)",
			p.Chain, p.FirstSeq, p.LastSeq, p.Partition, a.Chain, a.FirstSeq, a.LastSeq, a.Partition)
	}
	raw := make([][]byte, len(p.CompactRange))
	for i := range p.CompactRange {
		raw[i] = p.CompactRange[i][:]
	}
	tree, err := rangeFactory.NewRange(0, p.LastSeq, raw)
	if err != nil {
		return nil, fmt.Errorf("purge record's compact range: %w", err)
	}
	root, err := tree.GetRootHash(nil)
	if err != nil || !bytes.Equal(root, a.Root[:]) {
		return nil, fmt.Errorf("purge record's compact range hashes to %x, the signed root is %x", root, a.Root)
	}
	return tree, nil
}

// chainStart is where verification of a chain begins: after the rows an
// attested purge removed (seq 0 and an empty tree when nothing was).
type chainStart struct {
	seq  uint64
	last Hash
	tree *compact.Range
}

// loadPurgeStarts checks every purge record and decides, per chain, where
// verification starts: after the newest valid purge whose rows are all
// gone. Each purge is reported as a non-failing KindPurged finding; a
// record that does not verify is a KindBadSignature finding and ignored,
// so the rows it claims to cover count as missing.
func (s *Store) loadPurgeStarts(ctx context.Context, opts VerifyOptions, add func(Finding)) (map[string]*chainStart, error) {
	recs, err := s.readPurges(ctx, opts.Chain, opts.skip)
	if err != nil || len(recs) == 0 {
		return nil, err
	}
	minSeq := map[string]uint64{}
	p := engine.Params{"only": opts.Chain}
	err = s.queryEach(ctx, "SELECT toString(chain), min(seq) FROM "+s.db+".events WHERE ({only:String} = '' OR chain = {only:String})"+opts.skip.and("events", p)+" GROUP BY chain",
		p, func(r engine.Rows) error {
			var c string
			var m uint64
			if err := r.Scan(&c, &m); err != nil {
				return err
			}
			minSeq[c] = m
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("read chain starts: %w", err)
	}
	starts, findings := purgeStarts(recs, minSeq, opts.Verifier)
	for _, f := range findings {
		add(f)
	}
	return starts, nil
}

// purgeStarts decides, from the purge records and each chain's first
// stored sequence number, where verification of each chain starts: after
// the newest valid purge whose rows are all gone. Each purge is a
// KindPurged finding (information); a record that does not verify is a
// KindBadSignature finding and ignored, so the rows it claims to cover
// count as missing.
func purgeStarts(recs []PurgeRecord, minSeq map[string]uint64, v note.Verifier) (map[string]*chainStart, []Finding) {
	var findings []Finding
	add := func(f Finding) { findings = append(findings, f) }
	recs = append([]PurgeRecord(nil), recs...)
	sort.SliceStable(recs, func(i, j int) bool {
		if recs[i].Chain != recs[j].Chain {
			return recs[i].Chain < recs[j].Chain
		}
		return recs[i].LastSeq < recs[j].LastSeq
	})
	out := map[string]*chainStart{}
	for _, p := range recs {
		tree, err := checkPurge(p, v)
		if err != nil {
			add(Finding{Kind: KindBadSignature, Chain: p.Chain, Seq: p.FirstSeq, Detail: fmt.Sprintf("purge record %s (rows %d..%d, partition %s) does not verify: %v", p.ID, p.FirstSeq, p.LastSeq, p.Partition, err)})
			continue
		}
		m, hasRows := minSeq[p.Chain]
		detail := fmt.Sprintf("rows %d..%d (%d, partition %s, received %s to %s) purged under retention at %s by %s (%s)",
			p.FirstSeq, p.LastSeq, p.Rows, p.Partition, day(p.From), day(p.To), p.PurgedAt.UTC().Format(time.RFC3339), p.Actor, p.ID)
		if hasRows && p.LastSeq >= m {
			add(Finding{Kind: KindPurged, Chain: p.Chain, Seq: p.FirstSeq, Detail: detail + fmt.Sprintf("; rows from seq %d are still stored (the partition drop did not complete: run custody retention apply again)", m)})
			continue
		}
		add(Finding{Kind: KindPurged, Chain: p.Chain, Seq: p.FirstSeq, Detail: detail})
		if cur := out[p.Chain]; cur == nil || p.LastSeq > cur.seq {
			out[p.Chain] = &chainStart{seq: p.LastSeq, last: p.LastHash, tree: tree}
		}
	}
	return out, findings
}

// purgeQuarantinePartition drops one quarantine partition the plan
// removes and writes the custody log entry that records it: the partition,
// its record count and the digest of its records (see QuarantinePurge).
// Quarantined records are not chained, so there is no purge record to
// sign; the digest lets anyone holding a copy prove which records went.
func (s *Store) purgeQuarantinePartition(ctx context.Context, qp QuarantinePlan) (QuarantinePurge, error) {
	out := QuarantinePurge{Partition: qp.Partition, Actor: s.opts.Actor}
	if !isPartitionID(qp.Partition) {
		return out, fmt.Errorf("quarantine partition id %q is not YYYYMM", qp.Partition)
	}
	sum := sha256.New()
	err := s.queryEach(ctx, "SELECT raw_sha256 FROM "+s.db+".quarantine WHERE toYYYYMM(received_time) = {p:UInt32} ORDER BY chain, source_offset, raw_sha256",
		engine.Params{"p": qp.Partition}, func(r engine.Rows) error {
			var h Hash
			if err := r.Scan(&h); err != nil {
				return err
			}
			sum.Write(h[:])
			out.Rows++
			return nil
		})
	if err != nil {
		return out, fmt.Errorf("read quarantine partition %s: %w", qp.Partition, err)
	}
	// Nothing may have arrived since the plan: the digest covers exactly
	// what is dropped.
	if out.Rows != qp.Rows {
		return out, fmt.Errorf("quarantine partition %s changed during the purge (%d records planned, %d now): nothing dropped, run apply again", qp.Partition, qp.Rows, out.Rows)
	}
	out.Digest = hex.EncodeToString(sum.Sum(nil))
	table, onCluster := s.db+".quarantine", ""
	if c := s.opts.Schema.Cluster; c != "" {
		table, onCluster = s.db+".quarantine_local", " ON CLUSTER "+c
	}
	if err := s.eng.Exec(ctx, "ALTER TABLE "+table+onCluster+" DROP PARTITION ID '"+qp.Partition+"'", nil); err != nil {
		return out, fmt.Errorf("drop quarantine partition %s: %w", qp.Partition, err)
	}
	out.PurgedAt = s.now().UTC().Truncate(time.Microsecond)
	detail := fmt.Sprintf("quarantine partition %s records=%d received %s..%s sha256(raw_sha256 by chain, source_offset)=%s min_days=%d at %s",
		qp.Partition, out.Rows, qp.From.Format(time.RFC3339), qp.To.Format(time.RFC3339), out.Digest, qp.MinDays, out.PurgedAt.Format(time.RFC3339Nano))
	if err := s.Log(ctx, "retention.purge", detail, "ok"); err != nil {
		return out, err
	}
	return out, nil
}

// resumeAfterPurge restores the head of a chain none of whose rows are
// stored any more because retention purged them all: the chain continues
// at the newest purge record's last_seq + 1, linked to its last_hash, with
// the Merkle tree resumed from its compact range. The stored offsets are
// raised to the stream's recorded position, since everything up to it was
// stored (and then purged). It returns nil when the chain has no purge
// record: a new chain. A chain whose newest checkpoint lies beyond the
// newest purge lost rows outside Custody and is refused.
func (s *Store) resumeAfterPurge(ctx context.Context, chain string, h *chainHead) (*compact.Range, error) {
	recs, err := s.readPurges(ctx, chain, badParts{})
	if err != nil || len(recs) == 0 {
		return nil, err
	}
	last := recs[0]
	for _, r := range recs[1:] {
		if r.LastSeq > last.LastSeq {
			last = r
		}
	}
	var signed uint64
	err = s.queryEach(ctx, "SELECT max(tree_size) FROM "+s.db+".checkpoints WHERE chain = {chain:String}", engine.Params{"chain": chain}, func(r engine.Rows) error {
		return r.Scan(&signed)
	})
	if err != nil {
		return nil, fmt.Errorf("read newest checkpoint: %w", err)
	}
	if signed > last.LastSeq {
		return nil, fmt.Errorf("chain has no rows, but its newest checkpoint is at seq %d and its newest purge (%s) ends at %d: rows %d..%d are missing, run custody verify",
			signed, last.ID, last.LastSeq, last.LastSeq+1, signed)
	}
	raw := make([][]byte, len(last.CompactRange))
	for i := range last.CompactRange {
		raw[i] = last.CompactRange[i][:]
	}
	tree, err := rangeFactory.NewRange(0, last.LastSeq, raw)
	if err != nil {
		return nil, fmt.Errorf("restore Merkle range of purge %s: %w", last.ID, err)
	}
	if root, err := tree.GetRootHash(nil); err != nil || !bytes.Equal(root, last.Root[:]) {
		return nil, fmt.Errorf("purge %s: its compact range does not hash to its root", last.ID)
	}
	var pos int64
	var n uint64
	err = s.queryEach(ctx, "SELECT max(source_offset), count() FROM "+s.db+".source_positions WHERE stream = {chain:String}", engine.Params{"chain": chain}, func(r engine.Rows) error {
		return r.Scan(&pos, &n)
	})
	if err != nil {
		return nil, fmt.Errorf("read stream position: %w", err)
	}
	h.seq, h.last = last.LastSeq, last.LastHash
	if n > 0 {
		h.eventsOffset, h.quarOffset = max(h.eventsOffset, pos), max(h.quarOffset, pos)
	}
	return tree, nil
}
