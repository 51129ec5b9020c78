package storage

import (
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
)

// rowsOf makes an intact chain of n rows: each row's hash is the SHA-256
// of its number, linked by prev_hash.
func rowsOf(n int) []ChainRow {
	var out []ChainRow
	var prev Hash
	for i := 1; i <= n; i++ {
		h := Hash(sha256.Sum256([]byte(fmt.Sprint("row ", i))))
		out = append(out, ChainRow{Seq: uint64(i), Hash: h, PrevHash: prev})
		prev = h
	}
	return out
}

// rootOf is the RFC 6962 root over the first size rows.
func rootOf(rows []ChainRow, size int) Hash {
	var t walkTree
	for _, r := range rows[:size] {
		l := leafHash(&r.Hash)
		_ = t.Append(&l)
	}
	root, _ := t.Root()
	return Hash(root)
}

func findingList(fs []Finding) string {
	var s []string
	for _, f := range fs {
		x := fmt.Sprintf("%s@%d", f.Kind, f.Seq)
		if f.Through != 0 {
			x += fmt.Sprintf("..%d", f.Through)
		}
		s = append(s, x)
	}
	return strings.Join(s, " ")
}

// TestCheckChain decides over literal chain rows, without an engine.
func TestCheckChain(t *testing.T) {
	good := rowsOf(10)
	cp := func(size int, root Hash, external bool) chainCheckpoint {
		return chainCheckpoint{Checkpoint: Checkpoint{Chain: "c", Size: uint64(size), Root: root}, source: "test", external: external, prove: external}
	}
	at := func(size int) chainCheckpoint { return cp(size, rootOf(good, size), false) }
	edit := func(f func(rows []ChainRow) []ChainRow) []ChainRow {
		return f(append([]ChainRow(nil), good...))
	}
	cases := []struct {
		desc   string
		rows   []ChainRow
		cps    []chainCheckpoint
		want   string
		proofs string
	}{
		{"intact", good, []chainCheckpoint{at(4), at(10)}, "", ""},
		{"no checkpoint", good, nil, "unattested@1", ""},
		{"rows after the checkpoint", good, []chainCheckpoint{at(4)}, "unattested@5", ""},
		{"rows deleted", edit(func(r []ChainRow) []ChainRow { return append(r[:4], r[6:]...) }), []chainCheckpoint{at(10)}, "gap@5", ""},
		{"rows stored twice", edit(func(r []ChainRow) []ChainRow {
			// 1 2 3 3 4 4 5 ...
			out := append([]ChainRow(nil), r[:3]...)
			out = append(out, r[2], r[3], r[3])
			return append(out, r[4:]...)
		}), []chainCheckpoint{at(10)}, "duplicate@3..4", ""},
		{"a forged row", edit(func(r []ChainRow) []ChainRow {
			forged := ChainRow{Seq: 7, Hash: Hash{0xff}, PrevHash: r[5].Hash}
			return append(append(append([]ChainRow(nil), r[:7]...), forged), r[7:]...)
		}), []chainCheckpoint{at(10)}, "inserted@7", ""},
		{"a broken link", edit(func(r []ChainRow) []ChainRow { r[4].PrevHash = Hash{1}; return r }), []chainCheckpoint{at(10)}, "chain_break@5", ""},
		{"a modified row", edit(func(r []ChainRow) []ChainRow { r[2].Modified = true; return r }), []chainCheckpoint{at(10)}, "modified@3", ""},
		{"truncated", good[:8], []chainCheckpoint{at(4), at(10)}, "truncated@9", ""},
		{"root mismatch", good, []chainCheckpoint{cp(4, Hash{9}, false), at(10)}, "root_mismatch@4", ""},
		{"kept checkpoint proven", good, []chainCheckpoint{cp(4, rootOf(good, 4), true), at(10)}, "", "4->10 ok"},
		{"kept checkpoint of another history", good, []chainCheckpoint{cp(6, Hash{7}, true), at(10)}, "root_mismatch@6", "6->10 failed"},
		{"kept checkpoint beyond the store's", good[:6], []chainCheckpoint{at(6), cp(8, rootOf(good, 8), true)}, "truncated@7", "8->6 failed"},
	}
	for _, tc := range cases {
		t.Run(tc.desc, func(t *testing.T) {
			got, proofs := checkChain("c", tc.rows, tc.cps, nil)
			if s := findingList(got); s != tc.want {
				t.Errorf("findings %q, want %q (%v)", s, tc.want, got)
			}
			var ps []string
			for _, p := range proofs {
				res := "ok"
				if !p.OK {
					res = "failed"
				}
				ps = append(ps, fmt.Sprintf("%d->%d %s", p.From, p.To, res))
			}
			if s := strings.Join(ps, " "); s != tc.proofs {
				t.Errorf("proofs %q, want %q", s, tc.proofs)
			}
		})
	}
}

// TestCheckCheckpoints decides over literal checkpoint rows, files and
// kept notes, without an engine.
func TestCheckCheckpoints(t *testing.T) {
	skey, vkey, err := note.GenerateKey(rand.Reader, "test")
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := note.NewSigner(skey)
	verifier, _ := note.NewVerifier(vkey)
	sign := func(chain string, size uint64, root Hash) []byte {
		b, err := signCheckpoint(signer, chain, size, root)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	r4, r9 := Hash{4}, Hash{9}
	stored := []StoredCheckpoint{
		{Chain: "a", Size: 4, Root: r4, Note: sign("a", 4, r4)},
		{Chain: "a", Size: 9, Root: r4, Note: sign("a", 9, r9)}, // columns differ from the note
		{Chain: "b", Size: 2, Root: r4, Note: []byte("not a note")},
	}
	files := map[string][]byte{
		"a.checkpoint": sign("a", 12, r9),
		"b.checkpoint": append(sign("b", 2, r4), 'x'),
	}
	ext := []ExternalCheckpoint{{Source: "kept", Note: sign("a", 4, r4), Prove: true}}
	cps, findings := checkCheckpoints(stored, files, ext, verifier, "")
	if got, want := findingList(findings), "bad_signature@9 bad_signature@2 checkpoint_differs@12 bad_signature@0"; got != want {
		t.Errorf("findings %q, want %q (%v)", got, want, findings)
	}
	var got []string
	for _, c := range cps["a"] {
		got = append(got, fmt.Sprintf("%d %s ext=%v prove=%v", c.Size, c.source, c.external, c.prove))
	}
	if s, want := strings.Join(got, ", "), "4 store ext=false prove=false, 4 kept ext=true prove=true, 12 directory ext=true prove=false"; s != want {
		t.Errorf("checkpoints of a: %q, want %q", s, want)
	}
	if len(cps["b"]) != 0 {
		t.Errorf("checkpoints of b: %v", cps["b"])
	}
	// one chain only
	cps, findings = checkCheckpoints(stored[:1], files, nil, verifier, "b")
	if len(cps) != 0 || findingList(findings) != "bad_signature@0" {
		t.Errorf("only b: %v %v", cps, findings)
	}
}
