package vectors

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/merkle/testonly"
	"golang.org/x/mod/sumdb/note"

	"github.com/custody-audit/custody/bundle"
	"github.com/custody-audit/custody/bundle/export"
	"github.com/custody-audit/custody/event"
	"github.com/custody-audit/custody/storage"
	"github.com/custody-audit/custody/storage/engine"
)

// keyName names the fixed test key.
const keyName = "custody-vectors"

// seedReader is a deterministic stream of bytes (SHA-256 in counter
// mode over a label): the fixed test keys are generated from it, so the
// generator reproduces them and every signature byte for byte (Ed25519
// signatures are deterministic).
type seedReader struct {
	label string
	n     uint64
	buf   []byte
}

func (s *seedReader) Read(p []byte) (int, error) {
	for len(s.buf) < len(p) {
		sum := sha256.Sum256(binary.BigEndian.AppendUint64([]byte(s.label), s.n))
		s.n++
		s.buf = append(s.buf, sum[:]...)
	}
	n := copy(p, s.buf)
	s.buf = s.buf[n:]
	return n, nil
}

// TestKey returns the fixed key labelled label (the vectors use
// "custody-vectors"; "other" is a key the bundles were not signed with).
func TestKey(label string) (Key, error) {
	skey, vkey, err := note.GenerateKey(&seedReader{label: "custody vectors key " + label}, keyName)
	if err != nil {
		return Key{}, fmt.Errorf("generate test key: %w", err)
	}
	return Key{Private: skey, Public: vkey}, nil
}

// Pair opens the key.
func (k Key) Pair() (note.Signer, note.Verifier, error) {
	s, err := note.NewSigner(k.Private)
	if err != nil {
		return nil, nil, fmt.Errorf("test signing key: %w", err)
	}
	v, err := note.NewVerifier(k.Public)
	if err != nil {
		return nil, nil, fmt.Errorf("test verification key: %w", err)
	}
	return s, v, nil
}

// Generate computes every vector file: name -> bytes. eng is an empty
// engine (the bundles are written by exporting from a store on it).
func Generate(ctx context.Context, eng engine.Engine) (map[string][]byte, error) {
	key, err := TestKey("main")
	if err != nil {
		return nil, err
	}
	other, err := TestKey("other")
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	put := func(name string, v any) error {
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		if err := enc.Encode(v); err != nil {
			return fmt.Errorf("encode %s: %w", name, err)
		}
		out[name] = b.Bytes()
		return nil
	}
	eh, err := eventHashes()
	if err != nil {
		return nil, err
	}
	if err := put(EventHashFile, eh); err != nil {
		return nil, err
	}
	m, tree, err := merkleVectors()
	if err != nil {
		return nil, err
	}
	if err := put(MerkleFile, m); err != nil {
		return nil, err
	}
	cp, err := checkpointVectors(key, other, tree)
	if err != nil {
		return nil, err
	}
	if err := put(CheckpointFile, cp); err != nil {
		return nil, err
	}
	pv, err := purgeVectors(key, tree, m)
	if err != nil {
		return nil, err
	}
	if err := put(PurgeFile, pv); err != nil {
		return nil, err
	}
	bs, err := bundles(ctx, eng, key, other)
	if err != nil {
		return nil, err
	}
	for _, b := range bs {
		if err := put(BundleFile(b.Format), b); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// preimage is the event-v1.md encoding of r, written from the document
// (not from storage/chain.go), so the generator cross-checks the store's
// hash with a second implementation.
func preimage(r *Row) ([]byte, error) {
	prev, err := hex.DecodeString(r.PrevHash)
	if err != nil || len(prev) != 32 {
		return nil, fmt.Errorf("prev_hash %q", r.PrevHash)
	}
	raw, err := base64.StdEncoding.DecodeString(r.Raw)
	if err != nil {
		return nil, fmt.Errorf("raw: %w", err)
	}
	b := []byte{0x45, 0x01}
	b = append(b, prev...)
	str := func(s string) { b = binary.AppendUvarint(b, uint64(len(s))); b = append(b, s...) }
	i64 := func(v int64) { b = binary.BigEndian.AppendUint64(b, uint64(v)) }
	tm := func(s string) error {
		t, err := time.Parse(timeLayout, s)
		if err != nil {
			return err
		}
		i64(t.UnixMicro())
		return nil
	}
	list := func(l []string) {
		b = binary.AppendUvarint(b, uint64(len(l)))
		for _, s := range l {
			str(s)
		}
	}
	str(r.Chain)
	i64(int64(r.Seq))
	i64(r.SourceOffset)
	str(r.EventID)
	if err := tm(r.EventTime); err != nil {
		return nil, err
	}
	if err := tm(r.ReceivedTime); err != nil {
		return nil, err
	}
	for _, s := range []string{r.Service, r.Category, r.SourceKind, r.SourceFormat, r.SourcePosition, r.TenantID,
		r.SubscriptionID, r.ResourceGroup, r.Provider, r.ResourceType, r.ResourceName, r.ResourceID, r.ActorName,
		r.ActorObjectID, r.ActorType, r.ActorAppID} {
		str(s)
	}
	list(r.ActorGroups)
	for _, s := range []string{r.ImpersonatedBy, r.SourceIP, r.UserAgent, r.Action, r.ActionClass,
		r.TargetAPIGroup, r.TargetResource, r.TargetSubresource, r.TargetNamespace, r.TargetName, r.TargetRepository,
		r.TargetTag, r.TargetDigest, r.TargetContainerGroup, r.TargetContainer, r.TargetImage, r.Outcome} {
		str(s)
	}
	i64(int64(r.StatusCode))
	str(r.Reason)
	str(r.CorrelationID)
	str(r.RequestID)
	list(r.Tags)
	keys := make([]string, 0, len(r.Attributes))
	for k := range r.Attributes {
		keys = append(keys, k)
	}
	slices.Sort(keys) // Go compares strings bytewise
	b = binary.AppendUvarint(b, uint64(len(keys)))
	for _, k := range keys {
		str(k)
		str(r.Attributes[k])
	}
	b = binary.AppendUvarint(b, uint64(len(raw)))
	b = append(b, raw...)
	str(r.RawFormat)
	return b, nil
}

var zeroHash = strings.Repeat("0", 64)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// fullRow has every field set.
func fullRow() Row {
	return Row{
		Chain: "eventhubs/ns1.servicebus.windows.net/aks-audit/$Default/0", Seq: 2, SourceOffset: 4711,
		EventID: "8d1f0a52-0c5e-4d35-9a7e-1f2b3c4d5e6f", EventTime: "2026-11-27T10:00:00.123456Z", ReceivedTime: "2026-11-27T10:00:02.000001Z",
		Service: "aks", Category: "kube-audit", SourceKind: "eventhubs", SourceFormat: "resource-log",
		SourcePosition: "partition 0 sequence 4711", TenantID: "72f988bf-86f1-41af-91ab-2d7cd011db47",
		SubscriptionID: "4f1a2b3c-0000-4000-8000-00000000c0de", ResourceGroup: "rg1", Provider: "Microsoft.ContainerService",
		ResourceType: "managedClusters", ResourceName: "aks1",
		ResourceID: "/subscriptions/4f1a2b3c-0000-4000-8000-00000000c0de/resourcegroups/rg1/providers/microsoft.containerservice/managedclusters/aks1",
		ActorName:  "alice@contoso.com", ActorObjectID: "oid-1", ActorType: "user", ActorAppID: "app-1",
		ActorGroups: []string{"system:authenticated", "g'2"}, ImpersonatedBy: "bob@contoso.com", SourceIP: "203.0.113.7",
		UserAgent: "kubectl/v1.31.0", Action: "k8s:pods/exec:create", ActionClass: "exec",
		TargetAPIGroup: "core", TargetResource: "pods", TargetSubresource: "exec", TargetNamespace: "prod", TargetName: "web-0",
		TargetRepository: "team/app", TargetTag: "v1", TargetDigest: "sha256:" + strings.Repeat("ab", 32),
		TargetContainerGroup: "cg1", TargetContainer: "app", TargetImage: "acr1.azurecr.io/team/app:v1",
		Outcome: "success", StatusCode: 101, Reason: "allowed by RBAC", CorrelationID: "corr-1", RequestID: "req-1",
		Tags: []string{"exec_into_container"}, Attributes: map[string]string{"k8s.stage": "ResponseStarted", "tab\tkey": "line\nbreak"},
		Raw: b64(`{"auditID":"8d1f0a52-0c5e-4d35-9a7e-1f2b3c4d5e6f","verb":"create"}` + "\n"), RawFormat: "json",
		PrevHash: "5d41402abc4b2a76b9719d911017c592" + "5d41402abc4b2a76b9719d911017c592",
	}
}

func eventHashes() (*EventHashes, error) {
	empty := Row{Seq: 1, EventTime: "1970-01-01T00:00:00.000000Z", ReceivedTime: "1970-01-01T00:00:00.000000Z", PrevHash: zeroHash,
		ActorGroups: []string{}, Tags: []string{}, Attributes: map[string]string{}}
	maxRow := fullRow()
	maxRow.Seq, maxRow.SourceOffset, maxRow.StatusCode = 1<<64-1, 1<<63-1, 1<<31-1
	maxRow.EventTime, maxRow.ReceivedTime = "2299-12-31T23:59:59.999999Z", "2299-12-31T23:59:59.999999Z"
	maxRow.PrevHash = strings.Repeat("ff", 32)
	maxRow.UserAgent = strings.Repeat("u", 127) // the longest one-byte length
	maxRow.Reason = strings.Repeat("r", 128)    // the shortest two-byte length
	maxRow.ResourceID = strings.Repeat("i", 16384)
	maxRow.SourceIP = "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"
	maxRow.Tags = []string{"", "a", strings.Repeat("t", 200)}
	maxRow.Raw = b64(strings.Repeat("R", 300))
	minRow := fullRow()
	minRow.Seq, minRow.SourceOffset, minRow.StatusCode = 1, -1<<63, -1<<31
	minRow.EventTime, minRow.ReceivedTime = "1900-01-01T00:00:00.000000Z", "1969-12-31T23:59:59.999999Z"
	minRow.PrevHash = zeroHash
	nonASCII := fullRow()
	nonASCII.ActorName, nonASCII.UserAgent, nonASCII.Reason = "Zoë Müller", "日本語 🚀", "ça va \u00a0\u2028"
	nonASCII.Attributes = map[string]string{"é": "1", "z": "2", "\ufffd": "3", "😀": "4", "": "", "A": "Ä"}
	nonASCII.ActorGroups = []string{"ü", "", "グループ"}
	nonASCII.SourceIP = "2001:db8::7"
	rawRow := fullRow()
	rawRow.Raw = base64.StdEncoding.EncodeToString([]byte{0x00, 0x01, 0xff, 0xfe, '\r', '\n', '"', '\\', 0x80})
	rawRow.RawFormat = "binary"
	rawRow.SourceIP = ""

	out := &EventHashes{Spec: "storage/docs/format/event-v1.md"}
	for _, c := range []struct {
		desc string
		row  Row
	}{
		{"every field set (an AKS exec)", fullRow()},
		{"every field empty, zero times, seq 1, zero prev_hash", empty},
		{"maximal values: seq 2^64-1, offset 2^63-1, status 2^31-1, the latest DateTime64(6) time, lengths 127/128/300/16384 across uvarint boundaries, IPv6", maxRow},
		{"minimal values: offset -2^63, status -2^31, times before the epoch", minRow},
		{"non-ASCII text, map keys sorted bytewise (\"\" < \"A\" < \"z\" < \"é\" < U+FFFD < U+1F600), empty list elements", nonASCII},
		{"a raw record of binary bytes (NUL, 0xff, CR LF, quote, backslash), no source address", rawRow},
	} {
		v, err := goodHash(c.desc, c.row)
		if err != nil {
			return nil, err
		}
		out.Good = append(out.Good, v)
	}
	base := out.Good[0]
	for _, c := range []struct {
		desc string
		mut  func(r *Row)
	}{
		{"actor_name edited", func(r *Row) { r.ActorName = "mallory@contoso.com" }},
		{"event_time one microsecond later", func(r *Row) { r.EventTime = "2026-11-27T10:00:00.123457Z" }},
		{"one raw byte changed", func(r *Row) { r.Raw = b64(`{"auditID":"8d1f0a52-0c5e-4d35-9a7e-1f2b3c4d5e6f","verb":"delete"}` + "\n") }},
		{"prev_hash of another row", func(r *Row) { r.PrevHash = zeroHash }},
		{"seq changed (row moved in its chain)", func(r *Row) { r.Seq = 3 }},
		{"chain renamed", func(r *Row) { r.Chain = "eventhubs/ns1.servicebus.windows.net/aks-audit/$Default/1" }},
		{"a tag moved into actor_groups (list boundaries are hashed)", func(r *Row) {
			r.ActorGroups = append(slices.Clone(r.ActorGroups), "exec_into_container")
			r.Tags = []string{}
		}},
		{"an attribute's key and value boundary moved", func(r *Row) {
			r.Attributes = map[string]string{"k8s.stageResponse": "Started", "tab\tkey": "line\nbreak"}
		}},
		{"status_code changed", func(r *Row) { r.StatusCode = 200 }},
		{"source_ip in another text form of the same address", func(r *Row) { r.SourceIP = "203.0.113.007" }},
	} {
		r := base.Row
		r.ActorGroups, r.Tags = slices.Clone(r.ActorGroups), slices.Clone(r.Tags)
		c.mut(&r)
		if c.desc == "source_ip in another text form of the same address" {
			// not parseable as an address by the store; hash it as text
			pre, err := preimage(&r)
			if err != nil {
				return nil, err
			}
			if sum := sha256.Sum256(pre); hex.EncodeToString(sum[:]) == base.Hash {
				return nil, errors.New("corrupt vector hashes like the good one")
			}
			continue
		}
		sr, err := r.StorageRow()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.desc, err)
		}
		if h := storage.EventHash(&sr); hex.EncodeToString(h[:]) == base.Hash {
			return nil, fmt.Errorf("corrupt vector %q hashes like the good one", c.desc)
		}
		out.Corrupt = append(out.Corrupt, EventHashVector{Desc: c.desc, Row: r, Hash: base.Hash, WantErr: "hash mismatch"})
	}
	return out, nil
}

func goodHash(desc string, r Row) (EventHashVector, error) {
	pre, err := preimage(&r)
	if err != nil {
		return EventHashVector{}, fmt.Errorf("%s: %w", desc, err)
	}
	sum := sha256.Sum256(pre)
	sr, err := r.StorageRow()
	if err != nil {
		return EventHashVector{}, fmt.Errorf("%s: %w", desc, err)
	}
	if h := storage.EventHash(&sr); h != sum {
		return EventHashVector{}, fmt.Errorf("%s: storage.EventHash %x differs from the document's encoding %x", desc, h, sum)
	}
	return EventHashVector{Desc: desc, Row: r, Preimage: hex.EncodeToString(pre), Hash: hex.EncodeToString(sum[:])}, nil
}

func hexes(l [][]byte) []string {
	out := make([]string, len(l))
	for i, b := range l {
		out[i] = hex.EncodeToString(b)
	}
	return out
}

func unhexes(l []string) [][]byte {
	out := make([][]byte, len(l))
	for i, s := range l {
		out[i], _ = hex.DecodeString(s)
	}
	return out
}

// merkleLeaves is the number of leaves of the Merkle vectors' tree.
const merkleLeaves = 8

func merkleVectors() (*Merkle, *testonly.Tree, error) {
	h := rfc6962.DefaultHasher
	tree := testonly.New(h)
	m := &Merkle{Spec: "storage/docs/format/event-v1.md (Merkle leaves), RFC 6962 section 2.1"}
	for i := 0; i < merkleLeaves; i++ {
		sum := sha256.Sum256([]byte(fmt.Sprintf("custody vector row %d", i+1)))
		m.Hashes = append(m.Hashes, hex.EncodeToString(sum[:]))
		tree.AppendData(sum[:])
		m.Leaves = append(m.Leaves, LeafVector{Hash: hex.EncodeToString(sum[:]), Leaf: hex.EncodeToString(tree.LeafHash(uint64(i)))})
	}
	l := func(i int) []byte { return tree.LeafHash(uint64(i)) }
	n01, n23 := h.HashChildren(l(0), l(1)), h.HashChildren(l(2), l(3))
	for _, p := range [][2][]byte{{l(0), l(1)}, {l(2), l(3)}, {n01, n23}} {
		m.Nodes = append(m.Nodes, NodeVector{Left: hex.EncodeToString(p[0]), Right: hex.EncodeToString(p[1]), Node: hex.EncodeToString(h.HashChildren(p[0], p[1]))})
	}
	for size := uint64(0); size <= merkleLeaves; size++ {
		m.Heads = append(m.Heads, HeadVector{Size: size, Root: hex.EncodeToString(tree.HashAt(size))})
	}
	for _, c := range [][2]uint64{{0, 1}, {0, 8}, {5, 8}, {6, 7}, {4, 5}, {2, 3}} {
		p, err := tree.InclusionProof(c[0], c[1])
		if err != nil {
			return nil, nil, fmt.Errorf("inclusion proof: %w", err)
		}
		m.Inclusion = append(m.Inclusion, InclusionVector{Index: c[0], Size: c[1], Leaf: hex.EncodeToString(l(int(c[0]))), Proof: hexes(p), Root: hex.EncodeToString(tree.HashAt(c[1]))})
	}
	for _, c := range [][2]uint64{{1, 8}, {2, 5}, {3, 7}, {4, 8}, {5, 8}, {7, 8}, {8, 8}} {
		p, err := tree.ConsistencyProof(c[0], c[1])
		if err != nil {
			return nil, nil, fmt.Errorf("consistency proof: %w", err)
		}
		m.Consistency = append(m.Consistency, ConsistencyVector{From: c[0], To: c[1], FromRoot: hex.EncodeToString(tree.HashAt(c[0])), ToRoot: hex.EncodeToString(tree.HashAt(c[1])), Proof: hexes(p)})
	}
	good := m.Inclusion[2] // leaf 5 of 8
	flip := func(s string) string { b, _ := hex.DecodeString(s); b[0] ^= 1; return hex.EncodeToString(b) }
	for _, c := range []struct {
		desc, want string
		mut        func(v *InclusionVector)
	}{
		{"a proof node changed", "does not match", func(v *InclusionVector) { v.Proof[1] = flip(v.Proof[1]) }},
		{"another leaf's index", "does not match", func(v *InclusionVector) { v.Index = 4 }},
		{"a node missing", "wrong proof size", func(v *InclusionVector) { v.Proof = v.Proof[:len(v.Proof)-1] }},
		{"the leaf of another row", "does not match", func(v *InclusionVector) { v.Leaf = m.Leaves[4].Leaf }},
	} {
		v := good
		v.Proof = slices.Clone(v.Proof)
		c.mut(&v)
		v.Desc, v.WantErr = c.desc, c.want
		if err := CheckInclusion(v); err == nil || !strings.Contains(err.Error(), c.want) {
			return nil, nil, fmt.Errorf("corrupt inclusion %q: %v, want %q", c.desc, err, c.want)
		}
		m.CorruptInclusion = append(m.CorruptInclusion, v)
	}
	gc := m.Consistency[2] // 3 -> 7
	for _, c := range []struct {
		desc, want string
		mut        func(v *ConsistencyVector)
	}{
		{"two proof nodes swapped", "does not match", func(v *ConsistencyVector) { v.Proof[0], v.Proof[1] = v.Proof[1], v.Proof[0] }},
		{"the old root of another tree", "does not match", func(v *ConsistencyVector) { v.FromRoot = m.Heads[4].Root }},
		{"an extra node", "wrong proof size", func(v *ConsistencyVector) { v.Proof = append(v.Proof, v.Proof[0]) }},
		{"the new tree rewrote an old leaf", "does not match", func(v *ConsistencyVector) { v.ToRoot = flip(v.ToRoot) }},
	} {
		v := gc
		v.Proof = slices.Clone(v.Proof)
		c.mut(&v)
		v.Desc, v.WantErr = c.desc, c.want
		if err := CheckConsistency(v); err == nil || !strings.Contains(err.Error(), c.want) {
			return nil, nil, fmt.Errorf("corrupt consistency %q: %v, want %q", c.desc, err, c.want)
		}
		m.CorruptConsistency = append(m.CorruptConsistency, v)
	}
	return m, tree, nil
}

// CheckInclusion verifies an inclusion vector with transparency-dev's
// RFC 6962 verifier.
func CheckInclusion(v InclusionVector) error {
	leaf, _ := hex.DecodeString(v.Leaf)
	root, _ := hex.DecodeString(v.Root)
	return proof.VerifyInclusion(rfc6962.DefaultHasher, v.Index, v.Size, leaf, unhexes(v.Proof), root)
}

// CheckConsistency verifies a consistency vector with transparency-dev's
// RFC 6962 verifier.
func CheckConsistency(v ConsistencyVector) error {
	from, _ := hex.DecodeString(v.FromRoot)
	to, _ := hex.DecodeString(v.ToRoot)
	return proof.VerifyConsistency(rfc6962.DefaultHasher, v.From, v.To, unhexes(v.Proof), from, to)
}

func sign(k Key, text string) (string, error) {
	s, _, err := k.Pair()
	if err != nil {
		return "", err
	}
	msg, err := note.Sign(&note.Note{Text: text}, s)
	if err != nil {
		return "", fmt.Errorf("sign vector note: %w", err)
	}
	return string(msg), nil
}

// checkpointText is checkpoint.md's body.
func checkpointText(chain string, size uint64, root []byte) string {
	return fmt.Sprintf("custody/%s\n%d\n%s\n", chain, size, base64.StdEncoding.EncodeToString(root))
}

func checkpointVectors(key, other Key, tree *testonly.Tree) (*Checkpoints, error) {
	out := &Checkpoints{Spec: "storage/docs/format/checkpoint.md", Key: key}
	for _, c := range []struct {
		chain string
		size  uint64
	}{{"aks/0", 8}, {"eventhubs/ns1.servicebus.windows.net/aks-audit/$Default/0", 5}, {"loganalytics/ws1/ContainerRegistryRepositoryEvents", 1}} {
		root := tree.HashAt(c.size)
		msg, err := sign(key, checkpointText(c.chain, c.size, root))
		if err != nil {
			return nil, err
		}
		out.Good = append(out.Good, NoteVector{Desc: fmt.Sprintf("chain %s at size %d", c.chain, c.size), Note: msg, Chain: c.chain, Size: c.size, Root: hex.EncodeToString(root)})
	}
	good := out.Good[0]
	root8 := tree.HashAt(8)
	resign := func(text string) string { s, _ := sign(key, text); return s }
	otherSig, err := sign(other, checkpointText("aks/0", 8, root8))
	if err != nil {
		return nil, err
	}
	for _, c := range []struct{ desc, note, want string }{
		{"size edited after signing", strings.Replace(good.Note, "\n8\n", "\n9\n", 1), "signature does not verify"},
		{"root edited after signing", strings.Replace(good.Note, base64.StdEncoding.EncodeToString(root8), base64.StdEncoding.EncodeToString(tree.HashAt(7)), 1), "signature does not verify"},
		{"signed by another key of the same name", otherSig, "signature does not verify"},
		{"signature line removed", good.Note[:strings.Index(good.Note, "\n\n")+2], "signature does not verify"},
		{"origin not a custody chain (signed)", resign(fmt.Sprintf("example.com/log\n8\n%s\n", base64.StdEncoding.EncodeToString(root8))), "is not a custody chain"},
		{"root of 31 bytes (signed)", resign(checkpointText("aks/0", 8, root8[:31])), "root of 31 bytes"},
		{"size missing (signed)", resign(fmt.Sprintf("custody/aks/0\n%s\n", base64.StdEncoding.EncodeToString(root8))), "parse checkpoint"},
	} {
		out.Corrupt = append(out.Corrupt, NoteVector{Desc: c.desc, Note: c.note, WantErr: c.want})
	}
	return out, nil
}

// purgeText is purge-v1.md's note text.
func purgeText(v *PurgeVector, version string) (string, error) {
	root, err := hex.DecodeString(v.Root)
	if err != nil {
		return "", err
	}
	last, err := hex.DecodeString(v.LastHash)
	if err != nil {
		return "", err
	}
	return checkpointText(v.Chain, v.LastSeq, root) + fmt.Sprintf("purge %s\nfirst %d\nlast-hash %s\npartition %s\nid %s\nat %s\n",
		version, v.FirstSeq, base64.StdEncoding.EncodeToString(last), v.Partition, v.ID, v.At), nil
}

func purgeVectors(key Key, tree *testonly.Tree, m *Merkle) (*Purges, error) {
	out := &Purges{Spec: "storage/docs/format/purge-v1.md", Key: key}
	// rows 1..5 purged: the compact range of leaves [0, 5) is the root of
	// leaves 0..3 and leaf 4
	g := PurgeVector{Desc: "rows 1..5 of chain aks/0 purged with partition 202611", Chain: "aks/0", FirstSeq: 1, LastSeq: 5,
		Root: hex.EncodeToString(tree.HashAt(5)), LastHash: m.Hashes[4], Partition: "202611",
		ID: "3f2c1d4e-5b6a-4789-8abc-def012345678", At: "2026-12-01T03:00:00.5Z",
		CompactRange: []string{hex.EncodeToString(tree.HashAt(4)), m.Leaves[4].Leaf}}
	text, err := purgeText(&g, "v1")
	if err != nil {
		return nil, err
	}
	if g.Note, err = sign(key, text); err != nil {
		return nil, err
	}
	out.Good = append(out.Good, g)
	resign := func(v *PurgeVector, text string) { v.Note, _ = sign(key, text) }
	for _, c := range []struct {
		desc, want string
		mut        func(v *PurgeVector)
	}{
		{"partition edited after signing", "signature does not verify", func(v *PurgeVector) {
			v.Note = strings.Replace(v.Note, "partition 202611", "partition 202612", 1)
		}},
		{"purge v2 (signed)", "unknown purge version", func(v *PurgeVector) { t, _ := purgeText(v, "v2"); resign(v, t) }},
		{"extension lines reordered (signed)", "want \"first\"", func(v *PurgeVector) {
			t, _ := purgeText(v, "v1")
			lines := strings.Split(t, "\n")
			lines[4], lines[5] = lines[5], lines[4]
			resign(v, strings.Join(lines, "\n"))
		}},
		{"a plain checkpoint (signed)", "want 6 purge lines", func(v *PurgeVector) {
			root, _ := hex.DecodeString(v.Root)
			resign(v, checkpointText(v.Chain, v.LastSeq, root))
		}},
		{"first after last (signed)", "does not start a range", func(v *PurgeVector) {
			v.FirstSeq = 6
			t, _ := purgeText(v, "v1")
			resign(v, t)
			v.FirstSeq = 1
		}},
		{"a compact range node changed", "compact range hashes to", func(v *PurgeVector) {
			v.CompactRange = []string{m.Heads[4].Root, m.Leaves[3].Leaf}
		}},
		{"columns differ from the signed note", "differ from its signed note", func(v *PurgeVector) { v.FirstSeq = 2 }},
	} {
		v := g
		v.CompactRange = slices.Clone(g.CompactRange)
		c.mut(&v)
		v.Desc, v.WantErr = c.desc, c.want
		out.Corrupt = append(out.Corrupt, v)
	}
	return out, nil
}

// vectorTime is the fixed clock of the bundle vectors' store and exports.
var vectorTime = time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)

// bundleEvent is event i of chain aks/0 (acr false) or acr/0.
func bundleEvent(acr bool, i int) event.Event {
	t0 := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	ts := t0.Add(time.Duration(i) * time.Minute).Add(123456 * time.Microsecond)
	if acr {
		ts = ts.Add(90 * time.Second)
		id := fmt.Sprintf("acr-%04d", i)
		if i == 1 {
			id = "acr-0000" // delivered twice: a duplicate in version 2
		}
		return event.Event{
			ID: id, Time: ts, ReceivedTime: ts.Add(time.Second),
			Service: event.ServiceACR, Category: "ContainerRegistryRepositoryEvents", SourceKind: "blob", SourceFormat: "resource-log",
			SourcePosition: fmt.Sprintf("PT1H.json/%d", i), ResourceName: "acr1", Provider: "Microsoft.ContainerRegistry", ResourceType: "registries",
			Actor:  event.Actor{Name: "ci-bot", Type: event.ActorServicePrincipal, AppID: "app-1"},
			Action: "acr:push", ActionClass: event.ClassWrite, Outcome: event.OutcomeSuccess, StatusCode: 201,
			Target: event.Target{Repository: "team/app", Tag: "v1", Digest: "sha256:" + strings.Repeat("0c", 32)},
			Raw:    []byte(`{"correlationId":"acr-0000"}`), RawFormat: "json",
		}
	}
	e := event.Event{
		ID: fmt.Sprintf("aks-%04d", i), Time: ts, ReceivedTime: ts.Add(2 * time.Second),
		Service: event.ServiceAKS, Category: "kube-audit", SourceKind: "eventhubs", SourceFormat: "resource-log",
		SourcePosition: fmt.Sprintf("0/%d", i), TenantID: "72f988bf-86f1-41af-91ab-2d7cd011db47", SubscriptionID: "4f1a2b3c-0000-4000-8000-00000000c0de",
		ResourceGroup: "rg1", Provider: "Microsoft.ContainerService", ResourceType: "managedClusters", ResourceName: "aks1",
		ResourceID: "/subscriptions/4f1a2b3c-0000-4000-8000-00000000c0de/resourcegroups/rg1/providers/microsoft.containerservice/managedclusters/aks1",
		Actor:      event.Actor{Name: "alice@contoso.com", ObjectID: "oid-1", Type: event.ActorUser, Groups: []string{"system:authenticated", `g"2`}},
		UserAgent:  "kubectl/v1.31.0", Action: "k8s:pods:get", ActionClass: event.ClassRead,
		Target:  event.Target{Resource: "pods", Namespace: "prod", Name: fmt.Sprintf("web-%d", i)},
		Outcome: event.OutcomeSuccess, StatusCode: 200,
		Attributes: map[string]string{"k8s.stage": "ResponseComplete", "tab\tkey": "line\nbreak"},
		Raw:        []byte(fmt.Sprintf("{\"auditID\":\"aks-%04d\",\"bin\":\"\x00\xff\"}\n", i)), RawFormat: "json",
	}
	switch i {
	case 1:
		e.SourceIP = netip.MustParseAddr("2001:db8::7")
	case 2:
		e.SourceIP = netip.MustParseAddr("203.0.113.7")
		e.UserAgent = "curl/8 \xff\xfe" // not UTF-8
	case 3:
		e.Action, e.ActionClass = "k8s:pods/exec:create", event.ClassExec
		e.Target.Subresource, e.Target.Container = "exec", "app"
		e.StatusCode, e.Tags = 101, []string{event.TagExecIntoContainer}
		e.Reason = "first line\r\nsecond line" // CSV readers fold \r\n
	case 4:
		e.Actor.Name = "Zoë Müller"
	}
	return e
}

// bundles writes a store (chain aks/0: rows 1..6 in batches of 3 and 3;
// acr/0: 2 rows, the second repeating the first's event id) and exports
// aks/0's rows 2..4 and both acr/0 rows (minutes 1..4 of the day) in every
// format.
func bundles(ctx context.Context, eng engine.Engine, key, other Key) ([]*Bundle, error) {
	signer, verifier, err := key.Pair()
	if err != nil {
		return nil, err
	}
	if _, err := storage.Migrate(ctx, eng, storage.SchemaOptions{}, "vectors"); err != nil {
		return nil, fmt.Errorf("migrate vector store: %w", err)
	}
	now := func() time.Time { return vectorTime }
	st, err := storage.Open(ctx, eng, storage.Options{Signer: signer, Actor: "vectors", Now: now})
	if err != nil {
		return nil, fmt.Errorf("open vector store: %w", err)
	}
	add := func(chain string, acr bool, from, to int) error {
		b := storage.Batch{Stream: chain, Offset: int64(to)}
		for i := from; i < to; i++ {
			b.Events = append(b.Events, storage.BatchEvent{Offset: int64(i + 1), Event: bundleEvent(acr, i)})
		}
		if _, err := st.Append(ctx, b); err != nil {
			return fmt.Errorf("append vector events: %w", err)
		}
		return nil
	}
	if err := add("aks/0", false, 0, 3); err != nil {
		return nil, err
	}
	if err := add("aks/0", false, 3, 6); err != nil {
		return nil, err
	}
	if err := add("acr/0", true, 0, 2); err != nil {
		return nil, err
	}
	t0 := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	otherSig, err := sign(other, "custody-export/v1\nsha256 "+strings.Repeat("0", 64)+"\n")
	if err != nil {
		return nil, err
	}
	var out []*Bundle
	for _, format := range bundle.Formats() {
		dir, err := os.MkdirTemp("", "custody-vectors-")
		if err != nil {
			return nil, fmt.Errorf("bundle vector: %w", err)
		}
		defer os.RemoveAll(dir)
		bdir := filepath.Join(dir, "bundle")
		res, err := export.Export(ctx, export.Options{
			Engine: eng,
			From:   t0.Add(time.Minute),
			To:     t0.Add(5 * time.Minute),
			Output: bundle.Output{Format: format, Dir: bdir, Signer: signer, Verifier: verifier, Actor: "vectors", Now: now},
		})
		if err != nil {
			return nil, fmt.Errorf("export %s vector: %w", format, err)
		}
		b := &Bundle{Spec: "storage/docs/format/export-v1.md", Format: format, Key: key, Files: map[string]File{}}
		entries, err := os.ReadDir(bdir)
		if err != nil {
			return nil, fmt.Errorf("bundle vector: %w", err)
		}
		files := map[string][]byte{}
		for _, e := range entries {
			c, err := os.ReadFile(filepath.Join(bdir, e.Name()))
			if err != nil {
				return nil, fmt.Errorf("bundle vector: %w", err)
			}
			files[e.Name()] = c
			if filepath.Ext(e.Name()) != ".parquet" && utf8.Valid(c) {
				s := string(c)
				b.Files[e.Name()] = File{Text: &s}
			} else {
				b.Files[e.Name()] = File{Base64: base64.StdEncoding.EncodeToString(c)}
			}
		}
		data := res.Manifest.Files[0].Name
		b.Corrupt = bundleCorruptions(format, data, files, otherSig)
		// every corruption must be found as declared
		if err := CheckBundle(ctx, b, func(ctx context.Context, dir string) ([]string, error) {
			rep, err := bundle.Verify(ctx, dir, bundle.VerifyOptions{Verifier: verifier})
			if err != nil {
				return nil, err
			}
			var kinds []string
			for _, f := range rep.Findings {
				kinds = append(kinds, string(f.Kind)+": "+f.String())
			}
			return kinds, nil
		}); err != nil {
			return nil, fmt.Errorf("%s bundle vector: %w", format, err)
		}
		out = append(out, b)
	}
	return out, nil
}

func bundleCorruptions(format, data string, files map[string][]byte, otherSig string) []Corruption {
	cs := []Corruption{
		{Desc: "manifest.json edited (created_by)", File: bundle.ManifestFile, Op: "replace", Old: `"created_by": "vectors"`, New: `"created_by": "mallory"`, WantErr: string(bundle.KindManifest)},
		{Desc: "manifest.sig made with another key", File: bundle.SignatureFile, Op: "set", New: otherSig, WantErr: string(bundle.KindBadSignature)},
		{Desc: "the data file removed", File: data, Op: "remove", WantErr: string(bundle.KindFileMissing)},
		{Desc: "a file added", File: "notes.txt", Op: "add", New: "added later\n", WantErr: string(bundle.KindFileAdded)},
		{Desc: "the data file truncated", File: data, Op: "truncate", Offset: len(files[data]) / 2, WantErr: string(bundle.KindFileAltered)},
		{Desc: "duplicates.jsonl emptied", File: bundle.DuplicatesFile, Op: "set", New: "", WantErr: string(bundle.KindFileAltered)},
	}
	switch format {
	case bundle.FormatJSONL:
		cs = append(cs,
			Corruption{Desc: "a row's actor_name edited", File: data, Op: "replace", Old: `"actor_name":"alice@contoso.com"`, New: `"actor_name":"mallory@contoso.com"`, WantErr: string(bundle.KindModified)},
			Corruption{Desc: "a line reformatted (space after a colon)", File: data, Op: "replace", Old: `"seq":2,`, New: `"seq": 2,`, WantErr: string(bundle.KindMalformed)},
		)
	case bundle.FormatCSV:
		cs = append(cs, Corruption{Desc: "a record's actor_name edited", File: data, Op: "replace", Old: "alice@contoso.com", New: "mallory@contoso.com", WantErr: string(bundle.KindModified)})
	case bundle.FormatOCSF:
		cs = append(cs,
			Corruption{Desc: "a row's actor_name edited in the custody record", File: data, Op: "replace", Old: `"actor_name":"alice@contoso.com"`, New: `"actor_name":"mallory@contoso.com"`, WantErr: string(bundle.KindModified)},
			Corruption{Desc: "an OCSF field edited (the derived user name)", File: data, Op: "replace", Old: `"name":"alice@contoso.com"`, New: `"name":"mallory@contoso.com"`, WantErr: string(bundle.KindOCSFMismatch)},
		)
	case bundle.FormatParquet:
		cs = append(cs, Corruption{Desc: "one byte of the parquet file flipped", File: data, Op: "flip", Offset: len(files[data]) / 2, WantErr: string(bundle.KindFileAltered)})
	}
	return cs
}

// CheckBundle verifies b's good bundle and every corruption with verify
// (which returns the findings of a bundle directory as "kind: text"): the
// good one must have no finding, each corruption one of its WantErr kind.
func CheckBundle(ctx context.Context, b *Bundle, verify func(ctx context.Context, dir string) ([]string, error)) error {
	files, err := b.Contents()
	if err != nil {
		return err
	}
	run := func(files map[string][]byte) ([]string, error) {
		dir, err := os.MkdirTemp("", "custody-vector-bundle-")
		if err != nil {
			return nil, fmt.Errorf("bundle vector: %w", err)
		}
		defer os.RemoveAll(dir)
		if err := WriteDir(dir, files); err != nil {
			return nil, err
		}
		return verify(ctx, dir)
	}
	found, err := run(files)
	if err != nil {
		return fmt.Errorf("verify the good bundle: %w", err)
	}
	if len(found) > 0 {
		return fmt.Errorf("the good bundle has findings: %s", strings.Join(found, "; "))
	}
	for _, c := range b.Corrupt {
		cf, err := c.Apply(files)
		if err != nil {
			return err
		}
		found, err := run(cf)
		if err != nil {
			return fmt.Errorf("verify corruption %q: %w", c.Desc, err)
		}
		if !slices.ContainsFunc(found, func(f string) bool { return strings.HasPrefix(f, c.WantErr+": ") }) {
			return fmt.Errorf("corruption %q: findings %q, want one of kind %s", c.Desc, found, c.WantErr)
		}
	}
	return nil
}
