// Package vectors holds Custody's known-answer vectors: the JSON files
// under testdata/vectors that pin every evidence format (the event hash,
// Merkle leaves, nodes, tree heads and proofs, the signed checkpoint note,
// the purge record and the export bundle) to fixed bytes. Generate writes
// them (see vectorgen); the tests of storage and bundle read them
// with Load and check today's code against them, so that a change that
// would orphan existing stores or bundles fails a test.
package vectors

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/custody-audit/custody/event"
	"github.com/custody-audit/custody/storage"
)

// Vector file names under testdata/vectors.
const (
	EventHashFile  = "event-hash.json"
	MerkleFile     = "merkle.json"
	CheckpointFile = "checkpoint.json"
	PurgeFile      = "purge.json"
)

// BundleFile is the vector file of the bundle in format.
func BundleFile(format string) string { return "bundle-" + format + ".json" }

// timeLayout is the text form of the vectors' times: RFC 3339 UTC with
// exactly six fractional digits, as export-v1.md writes them.
const timeLayout = "2006-01-02T15:04:05.000000Z"

// Row is a stored events row in the vectors' JSON: every column of
// event-v1.md by name, times as timeLayout, raw as standard base64,
// hashes as hex. Integers are exact JSON numbers (seq may exceed 2^53).
type Row struct {
	Chain                string            `json:"chain"`
	Seq                  uint64            `json:"seq"`
	SourceOffset         int64             `json:"source_offset"`
	EventID              string            `json:"event_id"`
	EventTime            string            `json:"event_time"`
	ReceivedTime         string            `json:"received_time"`
	Service              string            `json:"service"`
	Category             string            `json:"category"`
	SourceKind           string            `json:"source_kind"`
	SourceFormat         string            `json:"source_format"`
	SourcePosition       string            `json:"source_position"`
	TenantID             string            `json:"tenant_id"`
	SubscriptionID       string            `json:"subscription_id"`
	ResourceGroup        string            `json:"resource_group"`
	Provider             string            `json:"provider"`
	ResourceType         string            `json:"resource_type"`
	ResourceName         string            `json:"resource_name"`
	ResourceID           string            `json:"resource_id"`
	ActorName            string            `json:"actor_name"`
	ActorObjectID        string            `json:"actor_object_id"`
	ActorType            string            `json:"actor_type"`
	ActorAppID           string            `json:"actor_app_id"`
	ActorGroups          []string          `json:"actor_groups"`
	ImpersonatedBy       string            `json:"impersonated_by"`
	SourceIP             string            `json:"source_ip"`
	UserAgent            string            `json:"user_agent"`
	Action               string            `json:"action"`
	ActionClass          string            `json:"action_class"`
	TargetAPIGroup       string            `json:"target_api_group"`
	TargetResource       string            `json:"target_resource"`
	TargetSubresource    string            `json:"target_subresource"`
	TargetNamespace      string            `json:"target_namespace"`
	TargetName           string            `json:"target_name"`
	TargetRepository     string            `json:"target_repository"`
	TargetTag            string            `json:"target_tag"`
	TargetDigest         string            `json:"target_digest"`
	TargetContainerGroup string            `json:"target_container_group"`
	TargetContainer      string            `json:"target_container"`
	TargetImage          string            `json:"target_image"`
	Outcome              string            `json:"outcome"`
	StatusCode           int32             `json:"status_code"`
	Reason               string            `json:"reason"`
	CorrelationID        string            `json:"correlation_id"`
	RequestID            string            `json:"request_id"`
	Tags                 []string          `json:"tags"`
	Attributes           map[string]string `json:"attributes"`
	Raw                  string            `json:"raw"` // base64
	RawFormat            string            `json:"raw_format"`
	PrevHash             string            `json:"prev_hash"` // hex
}

// EventHashVector is one row and what event-v1.md makes of it.
type EventHashVector struct {
	Desc string `json:"desc"`
	Row  Row    `json:"row"`
	// Preimage is the hashed bytes (hex); Hash their SHA-256 (hex).
	Preimage string `json:"preimage,omitempty"`
	Hash     string `json:"hash"`
	// WantErr, on a corrupted variant, says why Hash must not match the
	// row: the row was changed after Hash was computed.
	WantErr string `json:"wantErr,omitempty"`
}

// EventHashes is event-hash.json.
type EventHashes struct {
	Spec    string            `json:"spec"`
	Good    []EventHashVector `json:"good"`
	Corrupt []EventHashVector `json:"corrupt"`
}

// LeafVector is an RFC 6962 leaf: Leaf = SHA-256(0x00 || Hash).
type LeafVector struct {
	Hash string `json:"hash"`
	Leaf string `json:"leaf"`
}

// NodeVector is an RFC 6962 node: Node = SHA-256(0x01 || Left || Right).
type NodeVector struct {
	Left  string `json:"left"`
	Right string `json:"right"`
	Node  string `json:"node"`
}

// HeadVector is the root over the first Size leaves.
type HeadVector struct {
	Size uint64 `json:"size"`
	Root string `json:"root"`
}

// InclusionVector is an RFC 6962 inclusion proof of leaf Index in the
// tree of Size leaves with root Root.
type InclusionVector struct {
	Desc    string   `json:"desc,omitempty"`
	Index   uint64   `json:"index"`
	Size    uint64   `json:"size"`
	Leaf    string   `json:"leaf"`
	Proof   []string `json:"proof"`
	Root    string   `json:"root"`
	WantErr string   `json:"wantErr,omitempty"`
}

// ConsistencyVector is an RFC 6962 consistency proof from the tree of
// From leaves (root FromRoot) to the tree of To leaves (root ToRoot).
type ConsistencyVector struct {
	Desc     string   `json:"desc,omitempty"`
	From     uint64   `json:"from"`
	To       uint64   `json:"to"`
	FromRoot string   `json:"from_root"`
	ToRoot   string   `json:"to_root"`
	Proof    []string `json:"proof"`
	WantErr  string   `json:"wantErr,omitempty"`
}

// Merkle is merkle.json: a tree over the row hashes Hashes (leaf i is
// SHA-256(0x00 || Hashes[i])).
type Merkle struct {
	Spec               string              `json:"spec"`
	Hashes             []string            `json:"hashes"`
	Leaves             []LeafVector        `json:"leaves"`
	Nodes              []NodeVector        `json:"nodes"`
	Heads              []HeadVector        `json:"heads"`
	Inclusion          []InclusionVector   `json:"inclusion"`
	Consistency        []ConsistencyVector `json:"consistency"`
	CorruptInclusion   []InclusionVector   `json:"corrupt_inclusion"`
	CorruptConsistency []ConsistencyVector `json:"corrupt_consistency"`
}

// Key is the fixed test key every note of the vectors is signed with. It
// is a published test key: never use it for a store.
type Key struct {
	Private string `json:"private"` // PRIVATE+KEY+name+hash+key
	Public  string `json:"public"`  // name+hash+key
}

// NoteVector is a signed note and, for a good one, what it says.
type NoteVector struct {
	Desc    string `json:"desc"`
	Note    string `json:"note"`
	Chain   string `json:"chain,omitempty"`
	Size    uint64 `json:"size,omitempty"`
	Root    string `json:"root,omitempty"` // hex
	WantErr string `json:"wantErr,omitempty"`
}

// Checkpoints is checkpoint.json.
type Checkpoints struct {
	Spec    string       `json:"spec"`
	Key     Key          `json:"key"`
	Good    []NoteVector `json:"good"`
	Corrupt []NoteVector `json:"corrupt"`
}

// PurgeVector is a purge record (purge-v1.md): the columns verify checks
// and the signed note.
type PurgeVector struct {
	Desc         string   `json:"desc"`
	Chain        string   `json:"chain"`
	FirstSeq     uint64   `json:"first_seq"`
	LastSeq      uint64   `json:"last_seq"`
	Root         string   `json:"root"`      // hex
	LastHash     string   `json:"last_hash"` // hex
	Partition    string   `json:"partition"`
	ID           string   `json:"id"`
	At           string   `json:"at"`            // RFC 3339
	CompactRange []string `json:"compact_range"` // hex
	Note         string   `json:"note"`
	WantErr      string   `json:"wantErr,omitempty"`
}

// Purges is purge.json.
type Purges struct {
	Spec    string        `json:"spec"`
	Key     Key           `json:"key"`
	Good    []PurgeVector `json:"good"`
	Corrupt []PurgeVector `json:"corrupt"`
}

// File is one file of a bundle: Text when it is UTF-8 text, else Base64.
type File struct {
	Text   *string `json:"text,omitempty"`
	Base64 string  `json:"base64,omitempty"`
}

// Bytes returns the file's content.
func (f File) Bytes() ([]byte, error) {
	if f.Text != nil {
		return []byte(*f.Text), nil
	}
	b, err := base64.StdEncoding.DecodeString(f.Base64)
	if err != nil {
		return nil, fmt.Errorf("bundle file: %w", err)
	}
	return b, nil
}

// Corruption changes one file of a good bundle; the verifier must then
// report a finding of kind WantErr.
type Corruption struct {
	Desc string `json:"desc"`
	File string `json:"file"`
	// Op is "replace" (the first occurrence of Old by New), "flip" (XOR
	// byte Offset with 0x01), "remove" (delete the file), "add" (a file
	// holding New), "truncate" (keep the first Offset bytes), or "set" (the
	// whole file becomes New).
	Op      string `json:"op"`
	Old     string `json:"old,omitempty"`
	New     string `json:"new,omitempty"`
	Offset  int    `json:"offset,omitempty"`
	WantErr string `json:"wantErr"`
}

// Bundle is bundle-<format>.json: a complete bundle and its corruptions.
type Bundle struct {
	Spec    string          `json:"spec"`
	Format  string          `json:"format"`
	Key     Key             `json:"key"`
	Files   map[string]File `json:"files"`
	Corrupt []Corruption    `json:"corrupt"`
}

// Apply returns files with c applied (files is not changed).
func (c Corruption) Apply(files map[string][]byte) (map[string][]byte, error) {
	out := make(map[string][]byte, len(files)+1)
	for k, v := range files {
		out[k] = v
	}
	b, ok := out[c.File]
	if !ok && c.Op != "add" {
		return nil, fmt.Errorf("corruption %q: no file %s", c.Desc, c.File)
	}
	switch c.Op {
	case "replace":
		if !strings.Contains(string(b), c.Old) {
			return nil, fmt.Errorf("corruption %q: %s does not contain %q", c.Desc, c.File, c.Old)
		}
		out[c.File] = []byte(strings.Replace(string(b), c.Old, c.New, 1))
	case "flip":
		if c.Offset < 0 || c.Offset >= len(b) {
			return nil, fmt.Errorf("corruption %q: offset %d outside %s", c.Desc, c.Offset, c.File)
		}
		nb := append([]byte(nil), b...)
		nb[c.Offset] ^= 1
		out[c.File] = nb
	case "remove":
		delete(out, c.File)
	case "add", "set":
		out[c.File] = []byte(c.New)
	case "truncate":
		if c.Offset < 0 || c.Offset > len(b) {
			return nil, fmt.Errorf("corruption %q: offset %d outside %s", c.Desc, c.Offset, c.File)
		}
		out[c.File] = b[:c.Offset]
	default:
		return nil, fmt.Errorf("corruption %q: unknown op %q", c.Desc, c.Op)
	}
	return out, nil
}

// Contents decodes every file of the bundle.
func (b *Bundle) Contents() (map[string][]byte, error) {
	out := map[string][]byte{}
	for name, f := range b.Files {
		c, err := f.Bytes()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		out[name] = c
	}
	return out, nil
}

// WriteDir writes files into dir.
func WriteDir(dir string, files map[string][]byte) error {
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return fmt.Errorf("write bundle file: %w", err)
		}
	}
	return nil
}

// Dir is testdata/vectors of the repository whose root is root.
func Dir(root string) string { return filepath.Join(root, "testdata", "vectors") }

// Load reads the vector file name in dir into v.
func Load(dir, name string, v any) error {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return fmt.Errorf("read vectors: %w", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("parse vectors %s: %w", name, err)
	}
	return nil
}

// StorageRow converts a vector row to the store's row (Hash left zero).
func (r *Row) StorageRow() (storage.Row, error) {
	var out storage.Row
	et, err := time.Parse(timeLayout, r.EventTime)
	if err != nil {
		return out, fmt.Errorf("event_time: %w", err)
	}
	rt, err := time.Parse(timeLayout, r.ReceivedTime)
	if err != nil {
		return out, fmt.Errorf("received_time: %w", err)
	}
	var ip netip.Addr
	if r.SourceIP != "" {
		if ip, err = netip.ParseAddr(r.SourceIP); err != nil {
			return out, fmt.Errorf("source_ip: %w", err)
		}
	}
	raw, err := base64.StdEncoding.DecodeString(r.Raw)
	if err != nil {
		return out, fmt.Errorf("raw: %w", err)
	}
	prev, err := ParseHash(r.PrevHash)
	if err != nil {
		return out, fmt.Errorf("prev_hash: %w", err)
	}
	out = storage.Row{Chain: r.Chain, Seq: r.Seq, Offset: r.SourceOffset, PrevHash: prev, Event: event.Event{
		ID: r.EventID, Time: et, ReceivedTime: rt,
		Service: event.Service(r.Service), Category: r.Category, SourceKind: r.SourceKind, SourceFormat: r.SourceFormat,
		SourcePosition: r.SourcePosition, TenantID: r.TenantID, SubscriptionID: r.SubscriptionID,
		ResourceGroup: r.ResourceGroup, Provider: r.Provider, ResourceType: r.ResourceType,
		ResourceName: r.ResourceName, ResourceID: r.ResourceID,
		Actor: event.Actor{Name: r.ActorName, ObjectID: r.ActorObjectID, Type: event.ActorType(r.ActorType),
			AppID: r.ActorAppID, Groups: r.ActorGroups, ImpersonatedBy: r.ImpersonatedBy},
		SourceIP: ip, UserAgent: r.UserAgent, Action: r.Action, ActionClass: event.ActionClass(r.ActionClass),
		Target: event.Target{APIGroup: r.TargetAPIGroup, Resource: r.TargetResource, Subresource: r.TargetSubresource,
			Namespace: r.TargetNamespace, Name: r.TargetName, Repository: r.TargetRepository, Tag: r.TargetTag,
			Digest: r.TargetDigest, ContainerGroup: r.TargetContainerGroup, Container: r.TargetContainer, Image: r.TargetImage},
		Outcome: event.Outcome(r.Outcome), StatusCode: r.StatusCode, Reason: r.Reason,
		CorrelationID: r.CorrelationID, RequestID: r.RequestID, Tags: r.Tags, Attributes: r.Attributes,
		Raw: raw, RawFormat: r.RawFormat,
	}}
	return out, nil
}

// ParseHash decodes 64 hex digits.
func ParseHash(s string) (storage.Hash, error) {
	var h storage.Hash
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(h) {
		return h, fmt.Errorf("%q is not 64 hex digits", s)
	}
	copy(h[:], b)
	return h, nil
}
