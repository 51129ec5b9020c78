package storage

import (
	"bytes"
	"strings"
	"testing"
)

// packRow is one row of the chain walk query, as the engine sends it.
type packRow struct {
	status   uint8
	chain    string
	seq      uint64
	hash, ph byte // fill bytes, see fill
}

// TestWalkPacker packs the walk query's rows into groups: one per chain
// and walkGroup sequence numbers, prev_hash left out where it links to the
// record before it, modified rows kept apart, and rows out of order or
// with an unknown status refused with an error.
func TestWalkPacker(t *testing.T) {
	type group struct {
		chain string
		base  uint64
		recs  []walkRec
	}
	cases := []struct {
		desc     string
		rows     []packRow
		want     []group
		modified []modifiedRow
		wantErr  string
	}{
		{desc: "two chains, two groups", rows: []packRow{
			{contentOK, "a", 1, 1, 0},
			{contentModified, "a", 2, 2, 1},
			{contentOK, "a", 2, 2, 1},
			{contentUnchecked, "a", 3, 3, 9},
			{contentOK, "a", walkGroup, 4, 3},
			{contentOK, "a", walkGroup + 1, 5, 4},
			{contentOK, "b", 1, 6, 0},
			{contentModified, "a", 7, 7, 6},
		}, want: []group{
			{"a", 0, []walkRec{
				{seq: 1, hash: 1, status: contentOK, elidePrev: true},
				{seq: 2, hash: 2, status: contentOK, elidePrev: true},
				{seq: 3, hash: 3, ph: 9, status: contentUnchecked},
			}},
			{"a", walkGroup, []walkRec{
				{seq: walkGroup, hash: 4, ph: 3, status: contentOK},
				{seq: walkGroup + 1, hash: 5, status: contentOK, elidePrev: true},
			}},
			{"b", 0, []walkRec{{seq: 1, hash: 6, status: contentOK, elidePrev: true}}},
		}, modified: []modifiedRow{{"a", 2, fill(2)}, {"a", 7, fill(7)}}},
		{desc: "a repeated sequence number", rows: []packRow{
			{contentOK, "a", 5, 5, 4},
			{contentOK, "a", 5, 6, 4},
		}, want: []group{{"a", 0, []walkRec{
			{seq: 5, hash: 5, ph: 4, status: contentOK},
			{seq: 5, hash: 6, ph: 4, status: contentOK},
		}}}},
		{desc: "seq going back in a group", rows: []packRow{{contentOK, "a", 5, 5, 4}, {contentOK, "a", 4, 4, 3}}, wantErr: "out of order"},
		{desc: "seq going back a group", rows: []packRow{{contentOK, "a", walkGroup, 5, 4}, {contentOK, "a", 4, 4, 3}}, wantErr: "out of order"},
		{desc: "chain going back", rows: []packRow{{contentOK, "b", 1, 5, 0}, {contentOK, "a", 2, 4, 3}}, wantErr: "out of order"},
		{desc: "unknown status", rows: []packRow{{3, "a", 1, 1, 0}}, wantErr: "unknown status"},
	}
	for _, tc := range cases {
		t.Run(tc.desc, func(t *testing.T) {
			var got []*walkGroupRows
			pk := &walkPacker{newGroup: func() *walkGroupRows { return &walkGroupRows{} }}
			var err error
			for _, r := range tc.rows {
				h, ph := fill(r.hash), fill(r.ph)
				var done *walkGroupRows
				if done, err = pk.add(r.status, []byte(r.chain), r.seq, &h, &ph); err != nil {
					break
				}
				if done != nil {
					got = append(got, done)
				}
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if g := pk.finish(); g != nil {
				got = append(got, g)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("%d groups, want %d", len(got), len(tc.want))
			}
			for i, w := range tc.want {
				g := got[i]
				if g.chain != w.chain || g.base != w.base || g.rows != uint64(len(w.recs)) || !bytes.Equal(g.recs, packWalk(w.recs)) {
					t.Errorf("group %d: chain %s base %d rows %d records %x, want %s %d %d %x", i, g.chain, g.base, g.rows, g.recs, w.chain, w.base, len(w.recs), packWalk(w.recs))
				}
			}
			if len(pk.modified) != len(tc.modified) {
				t.Fatalf("modified %v, want %v", pk.modified, tc.modified)
			}
			for i := range tc.modified {
				if pk.modified[i] != tc.modified[i] {
					t.Errorf("modified %d: %v, want %v", i, pk.modified[i], tc.modified[i])
				}
			}
		})
	}
}
