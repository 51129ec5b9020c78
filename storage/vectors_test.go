package storage_test

import (
	"context"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"

	"github.com/custody-audit/custody/internal/chdbtest"
	"github.com/custody-audit/custody/internal/vectors"
	"github.com/custody-audit/custody/storage"
)

// The known-answer vectors of testdata/vectors pin the formats: a change
// to the event hash, the Merkle tree, the checkpoint or the purge note
// that would orphan existing stores fails here (regenerate the vectors
// only for a new format version).

func vectorDir(t *testing.T) string { return vectors.Dir(chdbtest.RepoRoot(t)) }

func loadVectors(t *testing.T, name string, v any) {
	t.Helper()
	if err := vectors.Load(vectorDir(t), name, v); err != nil {
		t.Fatal(err)
	}
}

func vectorRows(t *testing.T, vs []vectors.EventHashVector) []storage.Row {
	t.Helper()
	var rows []storage.Row
	for _, v := range vs {
		r, err := v.Row.StorageRow()
		if err != nil {
			t.Fatalf("%s: %v", v.Desc, err)
		}
		rows = append(rows, r)
	}
	return rows
}

// TestEventHashVectors checks the Go event hash (EventHash and a Hasher
// reused across rows) against event-hash.json.
func TestEventHashVectors(t *testing.T) {
	var eh vectors.EventHashes
	loadVectors(t, vectors.EventHashFile, &eh)
	if len(eh.Good) == 0 || len(eh.Corrupt) == 0 {
		t.Fatal("no event hash vectors")
	}
	var hasher storage.Hasher
	for i, r := range vectorRows(t, eh.Good) {
		v := eh.Good[i]
		for _, got := range []storage.Hash{storage.EventHash(&r), hasher.Hash(&r)} {
			if hex.EncodeToString(got[:]) != v.Hash {
				t.Errorf("%s: hash %x, want %s", v.Desc, got, v.Hash)
			}
		}
	}
	for i, r := range vectorRows(t, eh.Corrupt) {
		v := eh.Corrupt[i]
		if got := storage.EventHash(&r); hex.EncodeToString(got[:]) == v.Hash {
			t.Errorf("%s: the corrupted row still hashes to %s (%s)", v.Desc, v.Hash, v.WantErr)
		}
	}
}

// TestEventHashVectorsSQL stores the vector rows in a real engine and
// checks the engine's EventHashSQL against event-hash.json.
func TestEventHashVectorsSQL(t *testing.T) {
	ctx := context.Background()
	var eh vectors.EventHashes
	loadVectors(t, vectors.EventHashFile, &eh)
	eng := chdbtest.Open(t, "")
	if _, err := storage.Migrate(ctx, eng, storage.SchemaOptions{}, "test"); err != nil {
		t.Fatal(err)
	}
	all := append(append([]vectors.EventHashVector{}, eh.Good...), eh.Corrupt...)
	rows := vectorRows(t, all)
	for i := range rows {
		// a distinct chain per vector: seq may repeat across vectors
		rows[i].Chain = fmt.Sprintf("v%03d/%s", i, rows[i].Chain)
	}
	if err := storage.InsertRows(ctx, eng, "custody", rows); err != nil {
		t.Fatal(err)
	}
	// the chain column is part of the hash: hash the stored row with the
	// vector's chain name put back
	sql := strings.ReplaceAll(storage.EventHashSQL(), "formatRow('RowBinary', prev_hash, chain,", "formatRow('RowBinary', prev_hash, substring(chain, 6),")
	if sql == storage.EventHashSQL() {
		t.Fatal("EventHashSQL no longer starts with prev_hash, chain: adjust the test")
	}
	got := map[string]string{}
	rs, err := eng.Query(ctx, "SELECT toString(chain), hex("+sql+") FROM custody.events", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	for rs.Next() {
		var c, h string
		if err := rs.Scan(&c, &h); err != nil {
			t.Fatal(err)
		}
		got[c] = strings.ToLower(h)
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	for i, v := range all {
		h, ok := got[rows[i].Chain]
		switch {
		case !ok:
			t.Errorf("%s: row not stored", v.Desc)
		case v.WantErr == "" && h != v.Hash:
			t.Errorf("%s: engine hash %s, want %s", v.Desc, h, v.Hash)
		case v.WantErr != "" && h == v.Hash:
			t.Errorf("%s: the corrupted row still hashes to %s in the engine", v.Desc, v.Hash)
		}
	}
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestMerkleVectors checks leaf and node hashes, tree heads built the way
// the store builds them (compact ranges of LeafHash), and the inclusion
// and consistency proofs against merkle.json.
func TestMerkleVectors(t *testing.T) {
	var m vectors.Merkle
	loadVectors(t, vectors.MerkleFile, &m)
	for _, l := range m.Leaves {
		h, err := vectors.ParseHash(l.Hash)
		if err != nil {
			t.Fatal(err)
		}
		if got := storage.LeafHash(h); hex.EncodeToString(got[:]) != l.Leaf {
			t.Errorf("leaf of %s: %x, want %s", l.Hash, got, l.Leaf)
		}
	}
	for _, n := range m.Nodes {
		if got := rfc6962.DefaultHasher.HashChildren(mustHex(t, n.Left), mustHex(t, n.Right)); hex.EncodeToString(got) != n.Node {
			t.Errorf("node %s|%s: %x, want %s", n.Left, n.Right, got, n.Node)
		}
	}
	rf := compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
	for _, head := range m.Heads {
		r := rf.NewEmptyRange(0)
		for _, l := range m.Hashes[:head.Size] {
			h, _ := vectors.ParseHash(l)
			leaf := storage.LeafHash(h)
			if err := r.Append(leaf[:], nil); err != nil {
				t.Fatal(err)
			}
		}
		var got []byte
		if head.Size == 0 {
			got = rfc6962.DefaultHasher.EmptyRoot()
		} else {
			var err error
			if got, err = r.GetRootHash(nil); err != nil {
				t.Fatal(err)
			}
		}
		if hex.EncodeToString(got) != head.Root {
			t.Errorf("root at size %d: %x, want %s", head.Size, got, head.Root)
		}
	}
	for _, v := range m.Inclusion {
		if err := vectors.CheckInclusion(v); err != nil {
			t.Errorf("inclusion of %d in %d: %v", v.Index, v.Size, err)
		}
	}
	for _, v := range m.Consistency {
		if err := vectors.CheckConsistency(v); err != nil {
			t.Errorf("consistency %d -> %d: %v", v.From, v.To, err)
		}
	}
	for _, v := range m.CorruptInclusion {
		if err := vectors.CheckInclusion(v); err == nil || !strings.Contains(err.Error(), v.WantErr) {
			t.Errorf("%s: %v, want %q", v.Desc, err, v.WantErr)
		}
	}
	for _, v := range m.CorruptConsistency {
		if err := vectors.CheckConsistency(v); err == nil || !strings.Contains(err.Error(), v.WantErr) {
			t.Errorf("%s: %v, want %q", v.Desc, err, v.WantErr)
		}
	}
}

func vectorKey(t *testing.T, k vectors.Key) (note.Signer, note.Verifier) {
	t.Helper()
	s, v, err := k.Pair()
	if err != nil {
		t.Fatal(err)
	}
	return s, v
}

// TestCheckpointVectors checks that the store signs exactly the notes of
// checkpoint.json and that OpenCheckpoint accepts them and refuses every
// corrupted one.
func TestCheckpointVectors(t *testing.T) {
	var cp vectors.Checkpoints
	loadVectors(t, vectors.CheckpointFile, &cp)
	signer, verifier := vectorKey(t, cp.Key)
	for _, v := range cp.Good {
		root, err := vectors.ParseHash(v.Root)
		if err != nil {
			t.Fatal(err)
		}
		msg, err := storage.SignCheckpoint(signer, v.Chain, v.Size, root)
		if err != nil {
			t.Fatal(err)
		}
		if string(msg) != v.Note {
			t.Errorf("%s: the store signs\n%s\nwant\n%s", v.Desc, msg, v.Note)
		}
		got, err := storage.OpenCheckpoint([]byte(v.Note), verifier)
		if err != nil {
			t.Errorf("%s: %v", v.Desc, err)
			continue
		}
		if got.Chain != v.Chain || got.Size != v.Size || got.Root != root {
			t.Errorf("%s: opened as %s %d %x", v.Desc, got.Chain, got.Size, got.Root)
		}
	}
	for _, v := range cp.Corrupt {
		if _, err := storage.OpenCheckpoint([]byte(v.Note), verifier); err == nil || !strings.Contains(err.Error(), v.WantErr) {
			t.Errorf("%s: %v, want %q", v.Desc, err, v.WantErr)
		}
	}
}

func purgeRecord(t *testing.T, v vectors.PurgeVector) storage.PurgeRecord {
	t.Helper()
	p := storage.PurgeRecord{Chain: v.Chain, FirstSeq: v.FirstSeq, LastSeq: v.LastSeq, Partition: v.Partition, ID: v.ID, Note: []byte(v.Note)}
	var err error
	if p.Root, err = vectors.ParseHash(v.Root); err != nil {
		t.Fatal(err)
	}
	if p.LastHash, err = vectors.ParseHash(v.LastHash); err != nil {
		t.Fatal(err)
	}
	for _, c := range v.CompactRange {
		h, err := vectors.ParseHash(c)
		if err != nil {
			t.Fatal(err)
		}
		p.CompactRange = append(p.CompactRange, h)
	}
	return p
}

// TestPurgeVectors checks that the store signs exactly the purge notes of
// purge.json, that verify's purge check accepts them and refuses every
// corrupted record.
func TestPurgeVectors(t *testing.T) {
	var pv vectors.Purges
	loadVectors(t, vectors.PurgeFile, &pv)
	signer, verifier := vectorKey(t, pv.Key)
	for _, v := range pv.Good {
		p := purgeRecord(t, v)
		var err error
		if p.PurgedAt, err = time.Parse(time.RFC3339Nano, v.At); err != nil {
			t.Fatal(err)
		}
		msg, err := storage.SignPurge(signer, &p)
		if err != nil {
			t.Fatal(err)
		}
		if string(msg) != v.Note {
			t.Errorf("%s: the store signs\n%s\nwant\n%s", v.Desc, msg, v.Note)
		}
		if _, err := storage.CheckPurge(p, verifier); err != nil {
			t.Errorf("%s: %v", v.Desc, err)
		}
	}
	for _, v := range pv.Corrupt {
		if _, err := storage.CheckPurge(purgeRecord(t, v), verifier); err == nil || !strings.Contains(err.Error(), v.WantErr) {
			t.Errorf("%s: %v, want %q", v.Desc, err, v.WantErr)
		}
	}
}
