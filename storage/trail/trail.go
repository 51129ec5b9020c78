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
	// attrs is where Hash and HashParts sort a row's attributes.
	attrs []Pair
	// keySets holds, by attribute count, the sorted keys of the most
	// recent maps of that size, the last used first: rows of one source
	// carry the same keys over and over, and a map holding every key of a
	// set of its own size has exactly those keys, so its sorted pairs are
	// a lookup per key instead of a walk of the map and a sort. Several
	// per size, so that event kinds whose maps happen to be the same
	// size (an audit event's and an Activity Log record's) do not evict
	// each other's set on every row of a mixed stream.
	keySets [maxKeySet + 1][keySetsPerSize][]string
	d       hash.Hash // SHA-256, nil until first used
	sum     []byte
	ip      []byte // Hash's address text
}

// maxKeySet is the largest attribute map whose sorted keys a Hasher keeps.
const maxKeySet = 32

// keySetsPerSize is how many key sets of one size a Hasher keeps.
const keySetsPerSize = 4

// Pair is one attribute, a key and its value. It is an alias of the
// unnamed struct so that storage/engine's Pair, the same alias, is the
// same type: the store inserts the list HashPartsAttrs appends to as is.
type Pair = struct{ Key, Value string }

// SortPairs appends m's entries to dst sorted by key (byte order), the
// order the event hash encodes a map in.
func SortPairs(dst []Pair, m map[string]string) []Pair {
	n := len(dst)
	for k, v := range m {
		dst = append(dst, Pair{Key: k, Value: v})
	}
	sortPairs(dst[n:])
	return dst
}

// sortPairs sorts l by key: an insertion sort for the few attributes an
// event has (slices.SortFunc with strings.Compare costs an indirect call
// and a three-way compare per step), else slices.SortFunc.
func sortPairs(l []Pair) {
	if len(l) > 12 {
		slices.SortFunc(l, func(a, b Pair) int { return strings.Compare(a.Key, b.Key) })
		return
	}
	for i := 1; i < len(l); i++ {
		p := l[i]
		j := i
		for ; j > 0 && p.Key < l[j-1].Key; j-- {
		}
		if j < i {
			copy(l[j+1:i+1], l[j:i])
			l[j] = p
		}
	}
}

// sortedPairs appends m's entries to dst sorted by key, as SortPairs,
// using and refreshing h.keySets.
func (h *Hasher) sortedPairs(dst []Pair, m map[string]string) []Pair {
	n := len(m)
	if n == 0 || n > maxKeySet {
		return SortPairs(dst, m)
	}
	sets := &h.keySets[n]
	for i := range sets {
		if out, ok := lookupPairs(dst, m, sets[i]); ok {
			// Most recent first: the next row of this kind finds it first.
			hit := sets[i]
			copy(sets[1:i+1], sets[:i])
			sets[0] = hit
			return out
		}
	}
	base := len(dst)
	dst = SortPairs(dst, m)
	// The least recently used set gives way, its memory reused. Cloned:
	// the set outlives the row, whose strings may share memory with a
	// big message body.
	keys := sets[len(sets)-1][:0]
	for _, p := range dst[base:] {
		keys = append(keys, strings.Clone(p.Key))
	}
	copy(sets[1:], sets[:len(sets)-1])
	sets[0] = keys
	return dst
}

// lookupPairs appends m's value for each of keys, sorted keys of m's size,
// to dst; ok is false (and dst unchanged) if m lacks one of them.
func lookupPairs(dst []Pair, m map[string]string, keys []string) (out []Pair, ok bool) {
	if len(keys) == 0 {
		return dst, false
	}
	base := len(dst)
	for _, k := range keys {
		v, ok := m[k]
		if !ok {
			return dst[:base], false
		}
		dst = append(dst, Pair{Key: k, Value: v})
	}
	return dst, true
}

// The encoders below append to a local buffer and return it rather than
// growing h.buf in place: a slice stored into the heap on every field
// costs a write barrier each while the garbage collector runs, which for
// a collector holding batches of events is much of the time.

func appendStr(b []byte, s string) []byte {
	if len(s) < 0x80 {
		b = append(b, byte(len(s)))
	} else {
		b = binary.AppendUvarint(b, uint64(len(s)))
	}
	return append(b, s...)
}

func appendBytes(b, s []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendI64(b []byte, v int64) []byte { return binary.BigEndian.AppendUint64(b, uint64(v)) }

func appendTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return appendI64(b, 0)
	}
	return appendI64(b, t.UnixMicro())
}

func appendList(b []byte, l []string) []byte {
	b = binary.AppendUvarint(b, uint64(len(l)))
	for _, s := range l {
		b = appendStr(b, s)
	}
	return b
}

func appendPairs(b []byte, l []Pair) []byte {
	b = binary.AppendUvarint(b, uint64(len(l)))
	for _, p := range l {
		b = appendStr(b, p.Key)
		b = appendStr(b, p.Value)
	}
	return b
}

// AppendIPText appends IPText(a) to dst, without making a string.
func AppendIPText(dst []byte, a netip.Addr) []byte {
	if !a.IsValid() {
		return dst
	}
	return a.AppendTo(dst)
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
	h.ip = AppendIPText(h.ip[:0], r.Event.SourceIP)
	return h.HashParts(r.Chain, r.Seq, r.Offset, &r.PrevHash, &r.Event, r.Event.Time, r.Event.ReceivedTime, h.ip)
}

// HashParts is Hash over a row's parts: the append path hashes the
// caller's event in place, with its canonical times and address text
// (AppendIPText) computed once for both the hash and the insert.
func (h *Hasher) HashParts(chain string, seq uint64, offset int64, prev *Hash, e *event.Event, evTime, received time.Time, ip []byte) Hash {
	var sum Hash
	sum, h.attrs = h.hashParts(h.attrs[:0], chain, seq, offset, prev, e, evTime, received, ip)
	return sum
}

// HashPartsAttrs is HashParts that appends the row's attributes, sorted
// by key as the hash encodes them, to attrs: the append path gathers a
// whole group's attributes for its insert, so the Map column holds exactly
// what the hash covers, without the map being walked and sorted twice.
func (h *Hasher) HashPartsAttrs(attrs []Pair, chain string, seq uint64, offset int64, prev *Hash, e *event.Event, evTime, received time.Time, ip []byte) (Hash, []Pair) {
	return h.hashParts(attrs, chain, seq, offset, prev, e, evTime, received, ip)
}

// hashParts hashes a row, appending its sorted attributes to attrs.
func (h *Hasher) hashParts(attrs []Pair, chain string, seq uint64, offset int64, prev *Hash, e *event.Event, evTime, received time.Time, ip []byte) (Hash, []Pair) {
	b := append(h.buf[:0], eventHashPrefix, EventEncodingVersion)
	b = append(b, prev[:]...)
	b = appendStr(b, chain)
	b = appendI64(b, int64(seq))
	b = appendI64(b, offset)
	b = appendStr(b, e.ID)
	b = appendTime(b, evTime)
	b = appendTime(b, received)
	b = appendStr(b, string(e.Service))
	b = appendStr(b, e.Category)
	b = appendStr(b, e.SourceKind)
	b = appendStr(b, e.SourceFormat)
	b = appendStr(b, e.SourcePosition)
	b = appendStr(b, e.TenantID)
	b = appendStr(b, e.SubscriptionID)
	b = appendStr(b, e.ResourceGroup)
	b = appendStr(b, e.Provider)
	b = appendStr(b, e.ResourceType)
	b = appendStr(b, e.ResourceName)
	b = appendStr(b, e.ResourceID)
	b = appendStr(b, e.Actor.Name)
	b = appendStr(b, e.Actor.ObjectID)
	b = appendStr(b, string(e.Actor.Type))
	b = appendStr(b, e.Actor.AppID)
	b = appendList(b, e.Actor.Groups)
	b = appendStr(b, e.Actor.ImpersonatedBy)
	b = appendBytes(b, ip)
	b = appendStr(b, e.UserAgent)
	b = appendStr(b, e.Action)
	b = appendStr(b, string(e.ActionClass))
	t := &e.Target
	b = appendStr(b, t.APIGroup)
	b = appendStr(b, t.Resource)
	b = appendStr(b, t.Subresource)
	b = appendStr(b, t.Namespace)
	b = appendStr(b, t.Name)
	b = appendStr(b, t.Repository)
	b = appendStr(b, t.Tag)
	b = appendStr(b, t.Digest)
	b = appendStr(b, t.ContainerGroup)
	b = appendStr(b, t.Container)
	b = appendStr(b, t.Image)
	b = appendStr(b, string(e.Outcome))
	b = appendI64(b, int64(e.StatusCode))
	b = appendStr(b, e.Reason)
	b = appendStr(b, e.CorrelationID)
	b = appendStr(b, e.RequestID)
	b = appendList(b, e.Tags)
	base := len(attrs)
	attrs = h.sortedPairs(attrs, e.Attributes)
	b = appendPairs(b, attrs[base:])
	// The raw record, the biggest field, goes to the digest from where it
	// is instead of being copied into buf first: the same bytes in the
	// same order, so the same hash; the raw format after it goes in the
	// buffer's tail.
	b = binary.AppendUvarint(b, uint64(len(e.Raw)))
	head := len(b)
	b = appendStr(b, e.RawFormat)
	if h.d == nil {
		h.d = sha256.New()
	} else {
		h.d.Reset()
	}
	h.d.Write(b[:head])
	h.d.Write(e.Raw)
	h.d.Write(b[head:])
	h.buf = b
	h.sum = h.d.Sum(h.sum[:0])
	return Hash(h.sum), attrs
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
