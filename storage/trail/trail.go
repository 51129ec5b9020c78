// Package trail holds the trail's hashed formats as pure code: the stored
// row, its event hash (storage/docs/format/event-v1.md), the RFC 6962
// Merkle leaf and node, and the signed checkpoint note
// (storage/docs/format/checkpoint.md). It does no I/O and knows no engine,
// so an offline verifier (bundle) depends on it without depending on the
// store; package storage re-exports these names for the store's users.
package trail

import (
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/custody-audit/custody/event"
	"github.com/transparency-dev/merkle/rfc6962"
)

// Hash is a SHA-256 digest.
type Hash = [32]byte

// Constants of the event hash encoding; storage/docs/format/event-v1.md is
// the spec they mirror.
const (
	// eventHashPrefix separates event hashes from Merkle leaf (0x00) and
	// node (0x01) hashes: no preimage of one kind is a preimage of another.
	eventHashPrefix = 0x45 // 'E'
	// EventEncodingVersion is the version byte following the prefix. A
	// change to the field list or their encoding is a new version.
	EventEncodingVersion = 1
)

// Row is one stored event with its chain position.
type Row struct {
	Chain    string
	Seq      uint64 // 1-based position in Chain
	Offset   int64  // source offset the event was read at
	Event    event.Event
	PrevHash Hash // Hash of row Seq-1; zero for Seq 1
	Hash     Hash // EventHash of this row
}

// Hasher computes row hashes with one reused buffer and digest. Not safe
// for concurrent use; give each goroutine its own. The zero value is ready.
type Hasher struct {
	buf []byte
	// attrs is the last row's attributes sorted by key, as hashed (see
	// SortedAttributes).
	attrs []Pair
	d     hash.Hash // SHA-256, nil until first used
	sum   []byte
}

// Pair is one attribute, a key and its value. It is an alias of the
// unnamed struct so that storage/engine's Pair, the same alias, is the
// same type: the store inserts the list SortedAttributes returns as is.
type Pair = struct{ Key, Value string }

// SortPairs appends m's entries to dst sorted by key (byte order), the
// order the event hash encodes a map in.
func SortPairs(dst []Pair, m map[string]string) []Pair {
	for k, v := range m {
		dst = append(dst, Pair{Key: k, Value: v})
	}
	slices.SortFunc(dst, func(a, b Pair) int { return strings.Compare(a.Key, b.Key) })
	return dst
}

// SortedAttributes returns the attributes of the row hashed last, sorted
// by key, as the hash encoded them; valid until the next hash. The append
// path inserts them from here, so the Map column holds exactly what the
// hash covers, without the map being walked and sorted twice.
func (h *Hasher) SortedAttributes() []Pair { return h.attrs }

func (h *Hasher) str(s string) {
	h.buf = binary.AppendUvarint(h.buf, uint64(len(s)))
	h.buf = append(h.buf, s...)
}

func (h *Hasher) i64(v int64) { h.buf = binary.BigEndian.AppendUint64(h.buf, uint64(v)) }

func (h *Hasher) time(t time.Time) {
	if t.IsZero() {
		h.i64(0)
		return
	}
	h.i64(t.UnixMicro())
}

func (h *Hasher) list(l []string) {
	h.buf = binary.AppendUvarint(h.buf, uint64(len(l)))
	for _, s := range l {
		h.str(s)
	}
}

func (h *Hasher) dict(m map[string]string) {
	h.attrs = SortPairs(h.attrs[:0], m)
	h.buf = binary.AppendUvarint(h.buf, uint64(len(h.attrs)))
	for _, p := range h.attrs {
		h.str(p.Key)
		h.str(p.Value)
	}
}

// IPText is the stored form of an address: canonical text, "" if unknown.
func IPText(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// EventHash computes the hash of a row from every stored field, in column
// order (see storage/docs/format/event-v1.md):
//
//	SHA-256(0x45 || 0x01 || prev_hash || chain || seq || offset || fields... || raw)
//
// Times count as microseconds since the epoch (what DateTime64(6) keeps),
// integers as 8 bytes big-endian, strings as uvarint length then bytes,
// lists as a uvarint count then strings, maps as a count then key/value
// pairs sorted by key.
func (h *Hasher) Hash(r *Row) Hash {
	return h.HashParts(r.Chain, r.Seq, r.Offset, &r.PrevHash, &r.Event, r.Event.Time, r.Event.ReceivedTime, IPText(r.Event.SourceIP))
}

// HashParts is Hash over a row's parts: the append path hashes the
// caller's event in place, with its canonical times and address text
// (IPText) computed once for both the hash and the insert.
func (h *Hasher) HashParts(chain string, seq uint64, offset int64, prev *Hash, e *event.Event, evTime, received time.Time, ip string) Hash {
	h.buf = append(h.buf[:0], eventHashPrefix, EventEncodingVersion)
	h.buf = append(h.buf, prev[:]...)
	h.str(chain)
	h.i64(int64(seq))
	h.i64(offset)
	h.str(e.ID)
	h.time(evTime)
	h.time(received)
	h.str(string(e.Service))
	h.str(e.Category)
	h.str(e.SourceKind)
	h.str(e.SourceFormat)
	h.str(e.SourcePosition)
	h.str(e.TenantID)
	h.str(e.SubscriptionID)
	h.str(e.ResourceGroup)
	h.str(e.Provider)
	h.str(e.ResourceType)
	h.str(e.ResourceName)
	h.str(e.ResourceID)
	h.str(e.Actor.Name)
	h.str(e.Actor.ObjectID)
	h.str(string(e.Actor.Type))
	h.str(e.Actor.AppID)
	h.list(e.Actor.Groups)
	h.str(e.Actor.ImpersonatedBy)
	h.str(ip)
	h.str(e.UserAgent)
	h.str(e.Action)
	h.str(string(e.ActionClass))
	t := &e.Target
	h.str(t.APIGroup)
	h.str(t.Resource)
	h.str(t.Subresource)
	h.str(t.Namespace)
	h.str(t.Name)
	h.str(t.Repository)
	h.str(t.Tag)
	h.str(t.Digest)
	h.str(t.ContainerGroup)
	h.str(t.Container)
	h.str(t.Image)
	h.str(string(e.Outcome))
	h.i64(int64(e.StatusCode))
	h.str(e.Reason)
	h.str(e.CorrelationID)
	h.str(e.RequestID)
	h.list(e.Tags)
	h.dict(e.Attributes)
	// The raw record, the biggest field, goes to the digest from where it
	// is instead of being copied into buf first: the same bytes in the
	// same order, so the same hash.
	h.buf = binary.AppendUvarint(h.buf, uint64(len(e.Raw)))
	if h.d == nil {
		h.d = sha256.New()
	} else {
		h.d.Reset()
	}
	h.d.Write(h.buf)
	h.d.Write(e.Raw)
	h.buf = h.buf[:0]
	h.str(e.RawFormat)
	h.d.Write(h.buf)
	h.sum = h.d.Sum(h.sum[:0])
	return Hash(h.sum)
}

// EventHash computes a row's hash; see Hasher.Hash. For many rows use a
// Hasher, which reuses its buffer.
func EventHash(r *Row) Hash {
	var h Hasher
	return h.Hash(r)
}

// LeafHash is the RFC 6962 Merkle leaf of a row: SHA-256(0x00 || hash),
// computed on the stack (rfc6962's hasher allocates a digest per call).
func LeafHash(h Hash) Hash {
	var b [1 + sha256.Size]byte
	b[0] = rfc6962.RFC6962LeafHashPrefix
	copy(b[1:], h[:])
	return sha256.Sum256(b[:])
}

// HashChildren is the RFC 6962 interior node SHA-256(0x01 || left ||
// right), rfc6962.DefaultHasher.HashChildren without a digest allocated
// per call; the Merkle ranges of the append path use it.
func HashChildren(left, right []byte) []byte {
	if len(left) != sha256.Size || len(right) != sha256.Size {
		return rfc6962.DefaultHasher.HashChildren(left, right)
	}
	var b [1 + 2*sha256.Size]byte
	b[0] = rfc6962.RFC6962NodeHashPrefix
	copy(b[1:], left)
	copy(b[1+sha256.Size:], right)
	sum := sha256.Sum256(b[:])
	return sum[:]
}
