package storage

import (
	"time"

	"github.com/custody-audit/custody/event"
	"github.com/custody-audit/custody/storage/engine"
	"github.com/custody-audit/custody/storage/trail"
)

// The trail's hashed formats live in storage/trail, pure code an offline
// verifier can use without the store; these are its names as the store's
// users know them.

// Hash is a SHA-256 digest.
type Hash = trail.Hash

// EventEncodingVersion is the event hash's version byte (see
// storage/docs/format/event-v1.md).
const EventEncodingVersion = trail.EventEncodingVersion

// Row is one stored event with its chain position.
type Row = trail.Row

// Hasher computes row hashes with one reused buffer (trail.Hasher).
type Hasher = trail.Hasher

// EventHash computes a row's hash (trail.EventHash).
func EventHash(r *Row) Hash { return trail.EventHash(r) }

// LeafHash is the RFC 6962 Merkle leaf of a row (trail.LeafHash).
func LeafHash(h Hash) Hash { return trail.LeafHash(h) }

// hashEncoder is the hasher the append path and the verifier keep per
// goroutine.
type hashEncoder struct{ h trail.Hasher }

// EventHash computes r's hash.
func (h *hashEncoder) EventHash(r *Row) Hash { return h.h.Hash(r) }

// hashAttrs is EventHash over a row's parts that appends the row's
// attributes, sorted by key as hashed, to attrs (trail.Hasher.HashPartsAttrs).
func (h *hashEncoder) hashAttrs(attrs []engine.Pair, chain string, seq uint64, offset int64, prev *Hash, e *event.Event, evTime, received time.Time, ip []byte) (Hash, []engine.Pair) {
	return h.h.HashPartsAttrs(attrs, chain, seq, offset, prev, e, evTime, received, ip)
}

// hashChildren is the RFC 6962 interior node (trail.HashChildren).
func hashChildren(left, right []byte) []byte { return trail.HashChildren(left, right) }
