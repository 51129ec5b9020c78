package storage

import (
	"encoding/binary"
	"strings"
	"testing"
)

// walkRec is one row of a packed chain-walk group, as the engine sends it.
type walkRec struct {
	seq       uint64
	hash, ph  byte // fill bytes of the 32-byte hash and prev_hash
	status    byte
	elidePrev bool // prev_hash equals the hash before it and is left out
}

func packWalk(recs []walkRec) []byte {
	var out []byte
	for _, r := range recs {
		out = binary.BigEndian.AppendUint16(out, uint16(r.seq%walkGroup))
		h, ph := fill(r.hash), fill(r.ph)
		out = append(out, h[:]...)
		if r.elidePrev {
			out = append(out, r.status)
			continue
		}
		out = append(out, r.status|walkPrevFollows)
		out = append(out, ph[:]...)
	}
	return out
}

func fill(b byte) Hash {
	var h Hash
	if b != 0 {
		for i := range h {
			h[i] = b
		}
	}
	return h
}

// TestWalkRecords decodes packed groups into the walker's findings, and
// rejects malformed groups with an error rather than a panic or a silent
// skip.
func TestWalkRecords(t *testing.T) {
	cases := []struct {
		desc    string
		base    uint64
		recs    []byte
		want    []FindingKind
		rows    uint64
		checked uint64
		wantErr string
	}{
		{desc: "linked rows, prev_hash left out", recs: packWalk([]walkRec{
			{seq: 1, hash: 1, status: contentOK},
			{seq: 2, hash: 2, status: contentOK, elidePrev: true},
			{seq: 3, hash: 3, status: contentUnchecked, elidePrev: true},
		}), rows: 3, checked: 2},
		{desc: "first row in a group carries zero prev_hash implicitly", recs: packWalk([]walkRec{
			{seq: 1, hash: 1, status: contentOK, elidePrev: true},
		}), rows: 1, checked: 1},
		{desc: "modified, duplicate, gap and break", recs: packWalk([]walkRec{
			{seq: 1, hash: 1, status: contentModified},
			{seq: 1, hash: 1, ph: 0, status: contentOK},
			{seq: 2, hash: 2, ph: 9, status: contentOK},
			{seq: 5, hash: 5, ph: 4, status: contentOK},
		}), want: []FindingKind{KindModified, KindDuplicate, KindChainBreak, KindGap}, rows: 4, checked: 4},
		{desc: "inserted row", recs: packWalk([]walkRec{
			{seq: 1, hash: 1, status: contentOK},
			{seq: 1, hash: 7, status: contentOK},
		}), want: []FindingKind{KindInserted}, rows: 2, checked: 2},
		{desc: "group base", base: 3 * walkGroup, recs: packWalk([]walkRec{
			{seq: 3*walkGroup + 1, hash: 1, status: contentOK},
		}), want: []FindingKind{KindGap}, rows: 1, checked: 1},
		{desc: "truncated record", recs: packWalk([]walkRec{{seq: 1, hash: 1, status: contentOK}})[:30], wantErr: "truncated record"},
		{desc: "truncated prev_hash", recs: packWalk([]walkRec{{seq: 1, hash: 1, status: contentOK}})[:40], wantErr: "truncated record"},
		{desc: "unknown flags", recs: packWalk([]walkRec{{seq: 1, hash: 1, status: 3}}), wantErr: "unknown flags"},
		{desc: "offset beyond the group", recs: append([]byte{0xff, 0xff}, packWalk([]walkRec{{seq: 1, hash: 1, status: contentOK}})[2:]...), wantErr: "beyond the group"},
	}
	for _, tc := range cases {
		t.Run(tc.desc, func(t *testing.T) {
			out := &walk{}
			w := newLinkWalker("c", nil, nil, out)
			leaves := groupLeaves(nil, tc.recs)
			n, err := walkRecords(w, tc.base, tc.recs, leaves)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if n.rows != tc.rows || n.checked != tc.checked {
				t.Errorf("rows %d checked %d, want %d and %d", n.rows, n.checked, tc.rows, tc.checked)
			}
			var got []FindingKind
			for _, f := range append(append([]Finding{}, out.mods...), out.links...) {
				got = append(got, f.Kind)
			}
			if strings.Join(kindStrings(got), ",") != strings.Join(kindStrings(tc.want), ",") {
				t.Errorf("findings %v, want %v", got, tc.want)
			}
		})
	}
}

func kindStrings(l []FindingKind) []string {
	out := make([]string, len(l))
	for i, k := range l {
		out[i] = string(k)
	}
	return out
}
