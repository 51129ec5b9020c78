// Package storage keeps Custody's audit trail in ClickHouse: append-only,
// tamper-evident and resumable.
//
// Every event belongs to a chain (one per ingest stream) and carries its
// sequence number, the previous row's hash and its own hash over every
// stored field and the raw record (docs/format/event-v1.md). The rows of a
// chain are also the leaves of an RFC 6962 Merkle tree whose heads are
// signed as Go signed-note checkpoints after every batch, stored, and
// written to a checkpoint directory that can live outside the store
// (docs/format/checkpoint.md). Verify recomputes all of it.
//
// Crash safety: each event row holds the source offset it was read at, so
// the events insert itself records how far a stream is durable. On restart
// a chain's head is read back from the store and anything already stored
// is skipped, so a batch replayed after a crash is neither lost nor
// duplicated.
//
// The same SQL runs on the embedded chDB engine and on ClickHouse servers;
// see storage/engine.
package storage

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"golang.org/x/mod/sumdb/note"

	"github.com/custody-audit/custody/event"
	"github.com/custody-audit/custody/storage/engine"
	"github.com/custody-audit/custody/storage/trail"
)

// Options configure a Store.
type Options struct {
	// Schema names the database (and cluster) holding the tables.
	Schema SchemaOptions
	// Signer signs checkpoints. Required to append; read-only uses
	// (status, sql, queries) may leave it nil.
	Signer note.Signer
	// CheckpointDir receives each chain's latest signed checkpoint. Keep
	// it outside the store (another disk, a WORM bucket mount) so that
	// whoever can rewrite the store cannot rewrite the checkpoints too.
	// Empty keeps checkpoints only in the store.
	CheckpointDir string
	// Actor is recorded in the custody log for changes this store makes.
	Actor string
	// Logger receives operational logs; nil discards them.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// DialShard connects to one server of the store's cluster (Schema.
	// Cluster), at host and port as system.clusters names it, with the
	// store's own account: verify checks every server's parts there (a
	// Distributed table has none). Nil on a cluster skips that check with
	// a warning; unused on one server.
	DialShard func(ctx context.Context, host string, port int) (engine.Engine, error)
}

// Store is an open audit trail. Append is safe for concurrent use; batches
// of one chain are serialized.
type Store struct {
	eng     engine.Engine
	db      string
	opts    Options
	log     *slog.Logger
	now     func() time.Time
	mu      sync.Mutex
	chains  map[string]*chainHead
	scratch []*appendScratch // free list, see appendScratch
}

// appendScratch is the reusable working memory of one Append: the row on
// its way in and the hash encoder's buffer. Kept on a free list (not a
// sync.Pool, which the garbage collections big batches trigger would
// empty), so steady-state appends allocate almost nothing per event.
type appendScratch struct {
	enc   hashEncoder
	rows  []sortedRow   // the group's rows, hashed, in chain order
	pairs []engine.Pair // their attributes as hashed (sortedRow.attrs)
	keys  []insertKey   // the rows in the events table's sort order
	attrs []engine.Pair // the row's attributes as hashed, for appendRow
	args  []any         // appendRow's argument list
	// ips is the group's source addresses as text, one after the other
	// (sortedRow.ip): the hash reads each as it is written, and the
	// insert takes them from one string made of them all, instead of a
	// string allocated per event.
	ips []byte
}

// sizePairsAt is the row after which appendLocked sizes its attribute list
// for the rest of the group, from the rows so far.
const sizePairsAt = 64

// sortedRow is a hashed row waiting to be added to the insert, with its
// attributes as hashed, pairs[attrs[0]:attrs[1]] of the scratch, and its
// address text, ips[ip[0]:ip[1]].
type sortedRow struct {
	pendingRow
	attrs, ip [2]int
}

// insertKey is a row's place in the events table's sorting key, ORDER BY
// (toStartOfDay(event_time), service, actor_name, event_time) in
// migrations/0001_trail.sql: the engine sorts every insert by it unless
// its rows already are, and sorting a group of tens of megabytes cost it
// about 40% of the insert (measured in README.md, issue 13). day is
// toStartOfDay's day (UTC, as the column); an order that differs from the
// engine's (times before 1970 or after 2106, where its DateTime saturates)
// only makes it sort the insert itself.
type insertKey struct {
	day, micros int64
	service     string
	actor       string
	row         int
}

// floorDiv is a / b rounded down (b > 0).
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

func compareInsertKeys(a, b insertKey) int {
	if c := cmp.Compare(a.day, b.day); c != 0 {
		return c
	}
	if c := strings.Compare(a.service, b.service); c != 0 {
		return c
	}
	if c := strings.Compare(a.actor, b.actor); c != 0 {
		return c
	}
	if c := cmp.Compare(a.micros, b.micros); c != 0 {
		return c
	}
	return cmp.Compare(a.row, b.row)
}

func (s *Store) getScratch() *appendScratch {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := len(s.scratch); n > 0 {
		sc := s.scratch[n-1]
		s.scratch = s.scratch[:n-1]
		return sc
	}
	return &appendScratch{}
}

// putScratch returns sc to the free list, first dropping its references to
// the caller's events so a finished batch is not kept alive.
func (s *Store) putScratch(sc *appendScratch) {
	clear(sc.rows)
	sc.rows = sc.rows[:0]
	clear(sc.pairs)
	sc.pairs = sc.pairs[:0]
	clear(sc.keys)
	sc.keys = sc.keys[:0]
	sc.attrs = nil
	clear(sc.args)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.scratch) < 2 {
		s.scratch = append(s.scratch, sc)
	}
}

// chainHead is the in-memory state of one chain, rebuilt from the store
// on first use.
type chainHead struct {
	mu           sync.Mutex
	seq          uint64
	last         Hash
	tree         *compact.Range
	eventsOffset int64  // highest source offset stored in events
	quarOffset   int64  // highest source offset stored in quarantine
	signedSize   uint64 // tree size of the newest stored checkpoint
	// fileBehind: the newest checkpoint may be missing from the
	// checkpoint directory (writing it failed). loadHead leaves it alone.
	fileBehind bool
}

var rangeFactory = &compact.RangeFactory{Hash: hashChildren}

// Open returns a store over eng. The schema must exist (see Migrate).
func Open(ctx context.Context, eng engine.Engine, opts Options) (*Store, error) {
	if err := checkIdentifier("database", opts.Schema.database()); err != nil {
		return nil, err
	}
	s := &Store{eng: eng, db: opts.Schema.database(), opts: opts, log: opts.Logger, now: opts.Now, chains: map[string]*chainHead{}}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.opts.Actor == "" {
		s.opts.Actor = DefaultActor()
	}
	rows, err := eng.Query(ctx, "SELECT count() FROM system.tables WHERE database = {db:String} AND name = 'events'", engine.Params{"db": s.db})
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	var n uint64
	for rows.Next() {
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return nil, fmt.Errorf("open store: %w", err)
		}
	}
	if err := rows.Close(); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	if n == 0 {
		return nil, ErrNoSchema
	}
	return s, nil
}

// Errors of the store.
var (
	// ErrNoSchema means the store has not been initialised.
	ErrNoSchema = errors.New("store has no schema: run `custody init` first")
	// ErrNoSigner means an append was attempted without a signing key.
	ErrNoSigner = errors.New("appending needs a checkpoint signing key (custody keygen, then --signing-key)")
)

// Engine is the engine the store runs on.
func (s *Store) Engine() engine.Engine { return s.eng }

// Database is the database holding the tables.
func (s *Store) Database() string { return s.db }

// DefaultActor names who acts when nobody says otherwise: CUSTODY_ACTOR,
// else the local user and host.
func DefaultActor() string {
	if a := os.Getenv("CUSTODY_ACTOR"); a != "" {
		return a
	}
	u := os.Getenv("USER")
	if u == "" {
		u = "unknown"
	}
	h, _ := os.Hostname()
	return u + "@" + h
}

// BatchEvent is a normalized event and the source offset it was read at.
type BatchEvent = event.AtOffset

// QuarantineRecord is a record that could not be normalized.
type QuarantineRecord struct {
	Offset   int64
	Position string
	Received time.Time
	Format   string
	Reason   string
	Raw      []byte
}

// Batch is what one stream delivered: events and quarantined records in
// offset order, and the offset the whole batch covers (including records
// dropped by policy).
type Batch struct {
	// DedupeByEventID is for streams whose offsets are not strictly
	// increasing (Log Analytics windows re-read an overlap, and a late row
	// can carry an older ingestion time than rows already stored): events
	// are skipped when their event id is already in the chain, and
	// quarantined records when their raw bytes are. Otherwise records at
	// or below the stream's stored offsets are skipped.
	DedupeByEventID bool
	Stream          string
	Events          []BatchEvent
	Quarantined     []QuarantineRecord
	Offset          int64
	Position        string
	Dropped         int
}

// AppendResult says what an Append stored.
type AppendResult struct {
	Stored      int    // events appended to the chain
	Skipped     int    // events already stored before (replay after a crash)
	Quarantined int    // quarantine rows stored
	Seq         uint64 // chain head after the batch
	Checkpoint  *Checkpoint
}

// eventColumns lists the events columns in table order; appendRow
// provides values in the same order.
var eventColumns = []engine.Column{
	{Name: "chain", Type: "String"}, {Name: "seq", Type: "UInt64"}, {Name: "event_id", Type: "String"},
	{Name: "event_time", Type: "DateTime64(6, 'UTC')"}, {Name: "received_time", Type: "DateTime64(6, 'UTC')"},
	{Name: "service", Type: "String"}, {Name: "category", Type: "String"}, {Name: "source_kind", Type: "String"},
	{Name: "source_format", Type: "String"}, {Name: "source_position", Type: "String"}, {Name: "source_offset", Type: "Int64"},
	{Name: "tenant_id", Type: "String"}, {Name: "subscription_id", Type: "String"}, {Name: "resource_group", Type: "String"},
	{Name: "provider", Type: "String"}, {Name: "resource_type", Type: "String"}, {Name: "resource_name", Type: "String"},
	{Name: "resource_id", Type: "String"}, {Name: "actor_name", Type: "String"}, {Name: "actor_object_id", Type: "String"},
	{Name: "actor_type", Type: "String"}, {Name: "actor_app_id", Type: "String"}, {Name: "actor_groups", Type: "Array(String)"},
	{Name: "impersonated_by", Type: "String"}, {Name: "source_ip", Type: "String"}, {Name: "user_agent", Type: "String"},
	{Name: "action", Type: "String"}, {Name: "action_class", Type: "String"},
	{Name: "target_api_group", Type: "String"}, {Name: "target_resource", Type: "String"}, {Name: "target_subresource", Type: "String"},
	{Name: "target_namespace", Type: "String"}, {Name: "target_name", Type: "String"}, {Name: "target_repository", Type: "String"},
	{Name: "target_tag", Type: "String"}, {Name: "target_digest", Type: "String"}, {Name: "target_container_group", Type: "String"},
	{Name: "target_container", Type: "String"}, {Name: "target_image", Type: "String"},
	{Name: "outcome", Type: "String"}, {Name: "status_code", Type: "Int32"}, {Name: "reason", Type: "String"},
	{Name: "correlation_id", Type: "String"}, {Name: "request_id", Type: "String"},
	{Name: "tags", Type: "Array(String)"}, {Name: "attributes", Type: "Map(String, String)"},
	{Name: "raw", Type: "String"}, {Name: "raw_format", Type: "String"},
	{Name: "prev_hash", Type: "FixedString(32)"}, {Name: "hash", Type: "FixedString(32)"},
}

// EventColumnList is the events column names, comma-separated, in the
// order ScanRow expects.
func EventColumnList() string {
	var b []byte
	for i, c := range eventColumns {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = append(b, c.Name...)
	}
	return string(b)
}

// pendingRow is an event on its way into the chain. It points at the
// caller's event rather than copying it: a batch is tens of thousands of
// events, and the append path touches each field once to hash it and once
// to encode it.
type pendingRow struct {
	chain          *string
	seq            uint64
	offset         int64
	ev             *event.Event
	time, received time.Time // canonical (see canonicalTime)
	ip             string    // trail.IPText(ev.SourceIP)
	prev, hash     Hash
}

// appendRow adds r to b, passing each field by pointer (engine.Batch
// reads it before returning; the raw record, Borrowed, it may send from
// where it is) so that no value is boxed. attrs is the
// event's attributes sorted by key, as the row's hash encoded them. args
// is the caller's reused argument list (a variadic call through the
// interface would allocate one per row); the returned list still points
// into r, so the caller clears it once the batch is done.
func appendRow(b engine.Batch, r *pendingRow, attrs *[]engine.Pair, args []any) ([]any, error) {
	e := r.ev
	t := &e.Target
	args = append(args[:0], r.chain, &r.seq, &e.ID, &r.time, &r.received,
		(*string)(&e.Service), &e.Category, &e.SourceKind, &e.SourceFormat, &e.SourcePosition, &r.offset,
		&e.TenantID, &e.SubscriptionID, &e.ResourceGroup, &e.Provider, &e.ResourceType, &e.ResourceName,
		&e.ResourceID, &e.Actor.Name, &e.Actor.ObjectID, (*string)(&e.Actor.Type), &e.Actor.AppID, &e.Actor.Groups,
		&e.Actor.ImpersonatedBy, &r.ip, &e.UserAgent, &e.Action, (*string)(&e.ActionClass),
		&t.APIGroup, &t.Resource, &t.Subresource, &t.Namespace, &t.Name, &t.Repository, &t.Tag, &t.Digest,
		&t.ContainerGroup, &t.Container, &t.Image,
		(*string)(&e.Outcome), &e.StatusCode, &e.Reason, &e.CorrelationID, &e.RequestID,
		&e.Tags, attrs, (*engine.Borrowed)(&e.Raw), &e.RawFormat, &r.prev, &r.hash)
	return args, b.Append(args...)
}

// ScanRow reads one row selected with EventColumnList.
func ScanRow(rows engine.Rows, r *Row) error {
	e := &r.Event
	t := &e.Target
	var service, actorType, class, outcome, ip string
	var raw []byte
	if err := rows.Scan(&r.Chain, &r.Seq, &e.ID, &e.Time, &e.ReceivedTime,
		&service, &e.Category, &e.SourceKind, &e.SourceFormat, &e.SourcePosition, &r.Offset,
		&e.TenantID, &e.SubscriptionID, &e.ResourceGroup, &e.Provider, &e.ResourceType, &e.ResourceName,
		&e.ResourceID, &e.Actor.Name, &e.Actor.ObjectID, &actorType, &e.Actor.AppID, &e.Actor.Groups,
		&e.Actor.ImpersonatedBy, &ip, &e.UserAgent, &e.Action, &class,
		&t.APIGroup, &t.Resource, &t.Subresource, &t.Namespace, &t.Name, &t.Repository, &t.Tag, &t.Digest,
		&t.ContainerGroup, &t.Container, &t.Image,
		&outcome, &e.StatusCode, &e.Reason, &e.CorrelationID, &e.RequestID,
		&e.Tags, &e.Attributes, &raw, &e.RawFormat, &r.PrevHash, &r.Hash); err != nil {
		return err
	}
	e.Service, e.Actor.Type, e.ActionClass, e.Outcome = event.Service(service), event.ActorType(actorType), event.ActionClass(class), event.Outcome(outcome)
	e.Raw = raw
	e.SourceIP = parseIP(ip)
	return nil
}

// canonicalTime brings a time to exactly what the store keeps, so the hash
// computed before the insert equals the one recomputed from the stored row.
// A missing time is stored as the Unix epoch: DateTime64 cannot hold Go's
// zero time, and both encode as 0 in the hash.
func canonicalTime(t time.Time) time.Time {
	if t.IsZero() {
		return time.Unix(0, 0).UTC()
	}
	return t.UTC().Truncate(time.Microsecond)
}

// head returns the chain's state, loading it from the store on first use.
func (s *Store) head(ctx context.Context, chain string) (*chainHead, error) {
	s.mu.Lock()
	h, ok := s.chains[chain]
	if !ok {
		h = &chainHead{}
		s.chains[chain] = h
	}
	s.mu.Unlock()
	h.mu.Lock()
	if h.tree == nil {
		if err := s.loadHead(ctx, chain, h); err != nil {
			h.mu.Unlock()
			return nil, fmt.Errorf("load chain %s: %w", chain, err)
		}
	}
	return h, nil
}

// loadHead rebuilds a chain head: the last row, the highest stored
// offsets, and the Merkle range from the latest checkpoint plus the leaves
// stored after it. A chain whose rows were all purged under retention
// resumes from its newest purge record (see resumeAfterPurge).
func (s *Store) loadHead(ctx context.Context, chain string, h *chainHead) error {
	p := engine.Params{"chain": chain}
	var n uint64
	err := s.queryEach(ctx, "SELECT max(seq), argMax(hash, seq), max(source_offset), count() FROM "+s.db+".events WHERE chain = {chain:String}", p, func(r engine.Rows) error {
		if err := r.Scan(&h.seq, &h.last, &h.eventsOffset, &n); err != nil {
			return err
		}
		if n == 0 {
			h.seq, h.last, h.eventsOffset = 0, Hash{}, -1
		}
		return nil
	})
	if err != nil {
		return err
	}
	h.quarOffset = -1
	err = s.queryEach(ctx, "SELECT max(source_offset), count() FROM "+s.db+".quarantine WHERE chain = {chain:String}", p, func(r engine.Rows) error {
		var off int64
		var n uint64
		if err := r.Scan(&off, &n); err != nil {
			return err
		}
		if n > 0 {
			h.quarOffset = off
		}
		return nil
	})
	if err != nil {
		return err
	}
	var purged *compact.Range
	if n == 0 {
		if purged, err = s.resumeAfterPurge(ctx, chain, h); err != nil {
			return err
		}
	}
	tree := rangeFactory.NewEmptyRange(0)
	err = s.queryEach(ctx, "SELECT tree_size, compact_range FROM "+s.db+".checkpoints WHERE chain = {chain:String} AND tree_size <= {size:UInt64} ORDER BY tree_size DESC LIMIT 1",
		engine.Params{"chain": chain, "size": fmt.Sprint(h.seq)}, func(r engine.Rows) error {
			var size uint64
			var hashes []string
			if err := r.Scan(&size, &hashes); err != nil {
				return err
			}
			raw := make([][]byte, len(hashes))
			for i, x := range hashes {
				raw[i] = []byte(x)
			}
			t, err := rangeFactory.NewRange(0, size, raw)
			if err != nil {
				return fmt.Errorf("restore Merkle range at %d: %w", size, err)
			}
			tree = t
			h.signedSize = size
			return nil
		})
	if err != nil {
		return err
	}
	if purged != nil && tree.End() < purged.End() {
		tree = purged
	}
	if tree.End() < h.seq {
		err = s.queryEach(ctx, "SELECT seq, hash FROM "+s.db+".events WHERE chain = {chain:String} AND seq > {after:UInt64} ORDER BY seq",
			engine.Params{"chain": chain, "after": fmt.Sprint(tree.End())}, func(r engine.Rows) error {
				var seq uint64
				var hash Hash
				if err := r.Scan(&seq, &hash); err != nil {
					return err
				}
				if seq != tree.End()+1 {
					return fmt.Errorf("chain has a gap before seq %d: run custody verify", seq)
				}
				leaf := LeafHash(hash)
				return tree.Append(leaf[:], nil)
			})
		if err != nil {
			return err
		}
	}
	h.tree = tree
	return nil
}

// queryEach runs query and calls fn for each row.
func (s *Store) queryEach(ctx context.Context, query string, p engine.Params, fn func(engine.Rows) error) error {
	return engine.Each(ctx, s.eng, query, p, fn)
}

// blocksEach is queryEach for results of many rows: it reads them as
// columnar blocks (engine.EachBlock).
func (s *Store) blocksEach(ctx context.Context, query string, p engine.Params, fn func(engine.Rows) error) error {
	return engine.EachBlock(ctx, s.eng, query, p, fn)
}

// Append stores one batch of one stream; see AppendMany.
func (s *Store) Append(ctx context.Context, b Batch) (AppendResult, error) {
	res, err := s.AppendMany(ctx, []Batch{b})
	if err != nil {
		return AppendResult{}, err
	}
	return res[0], nil
}

// AppendMany stores batches of one or more streams together, as one
// insert per table: quarantined records first, then the events as the
// next rows of their streams' chains, then a signed checkpoint per chain
// that grew and the streams' positions. A collector reading many
// partitions groups what arrived while the previous write ran (group
// commit), so the engine takes a few large inserts instead of many small
// ones: each insert costs the engine milliseconds of fixed work and each
// small part is rewritten by merges again and again.
//
// Records the store already holds (a batch replayed after a crash) are
// skipped. Batches of one stream are applied in order. On error the
// chains involved are reloaded from the store before their next append, so
// retrying the same batches is safe whether or not a failed insert was
// stored.
func (s *Store) AppendMany(ctx context.Context, batches []Batch) ([]AppendResult, error) {
	if s.opts.Signer == nil {
		return nil, ErrNoSigner
	}
	var chains []string
	for _, b := range batches {
		if b.Stream == "" {
			return nil, errors.New("append: batch has no stream")
		}
		if !slices.Contains(chains, b.Stream) {
			chains = append(chains, b.Stream)
		}
	}
	// Lock the chains in name order, so two concurrent calls sharing
	// chains cannot deadlock.
	slices.Sort(chains)
	heads := make(map[string]*chainHead, len(chains))
	ok := false
	defer func() {
		for _, h := range heads {
			if !ok {
				h.tree = nil // reload from the store before the next append
			}
			h.mu.Unlock()
		}
	}()
	for _, c := range chains {
		h, err := s.head(ctx, c)
		if err != nil {
			return nil, err
		}
		heads[c] = h
	}
	res, err := s.appendLocked(ctx, batches, heads)
	if err != nil {
		return nil, err
	}
	ok = true
	return res, nil
}

// chainWork is a chain's state while a group of batches is chained onto
// it; the head moves to it only once the inserts succeeded.
type chainWork struct {
	seq          uint64
	last         Hash
	tree         walkTree // a copy of the head's: appending allocates nothing
	eventsOffset int64
	quarOffset   int64
	stored       bool // rows were added
}

func (s *Store) appendLocked(ctx context.Context, batches []Batch, heads map[string]*chainHead) ([]AppendResult, error) {
	results := make([]AppendResult, len(batches))
	work := make(map[string]*chainWork, len(heads))
	for c, h := range heads {
		work[c] = &chainWork{seq: h.seq, last: h.last, tree: newWalkTree(h.tree), eventsOffset: h.eventsOffset, quarOffset: h.quarOffset}
	}

	// Quarantine first: its rows carry their offsets, so a replay skips
	// what is already there.
	var qb engine.Batch
	content := sha256.New()
	seen := make([]map[string]bool, len(batches)) // DedupeByEventID: stored event ids per batch
	for i, b := range batches {
		w := work[b.Stream]
		base := w.quarOffset // a message's records share its offset
		var seenRaw map[string]bool
		if b.DedupeByEventID {
			ids, raws, err := s.storedIdentities(ctx, b)
			if err != nil {
				return nil, err
			}
			seen[i], seenRaw = ids, raws
		}
		for _, q := range b.Quarantined {
			sum := sha256.Sum256(q.Raw)
			if b.DedupeByEventID {
				if seenRaw[string(sum[:])] {
					continue
				}
				seenRaw[string(sum[:])] = true
			} else if q.Offset <= base {
				continue
			}
			if qb == nil {
				var err error
				if qb, err = s.eng.PrepareBatch(ctx, s.db+".quarantine", quarantineColumns); err != nil {
					return nil, fmt.Errorf("append quarantine: %w", err)
				}
			}
			if err := qb.Append(b.Stream, q.Offset, q.Position, q.Received.UTC().Truncate(time.Microsecond), q.Format, q.Reason, engine.Borrowed(q.Raw), Hash(sum)); err != nil {
				_ = qb.Abort()
				return nil, fmt.Errorf("append quarantine: %w", err)
			}
			// The token covers the records' content too: Log Analytics
			// re-reads windows, so two different batches can span the
			// same offsets.
			content.Write([]byte(b.Stream))
			content.Write(binary.BigEndian.AppendUint64(nil, uint64(q.Offset)))
			content.Write(sum[:])
			w.quarOffset = max(w.quarOffset, q.Offset)
			results[i].Quarantined++
		}
	}
	if qb != nil {
		if err := qb.Send(ctx, "q-"+hex.EncodeToString(content.Sum(nil)[:16])); err != nil {
			_ = qb.Abort()
			return nil, fmt.Errorf("append quarantine: %w", err)
		}
	}

	// Events: chain them onto the heads in the scratch state, in chain
	// order (each row's hash covers the one before it), then add them to
	// the insert in the events table's sort order (insertKey), so that the
	// engine finds them sorted and writes the part without sorting and
	// copying every column first.
	scratch := s.getScratch()
	defer s.putScratch(scratch)
	// Sized for the whole group at once: grown by append, a group's
	// slices of tens of thousands of rows would be copied over and over.
	total := 0
	for _, b := range batches {
		total += len(b.Events)
	}
	rows := slices.Grow(scratch.rows[:0], total)
	pairs, ips := scratch.pairs[:0], scratch.ips[:0]
	var eb engine.Batch
	abort := func() {
		if eb != nil {
			_ = eb.Abort()
		}
	}
	stored := 0
	var firstChain string
	var firstSeq uint64
	ranges := sha256.New() // the dedup token: every chain's new range
	for i, b := range batches {
		w := work[b.Stream]
		base := w.eventsOffset // a message's events share its offset
		n := 0
		var first uint64
		for j := range b.Events {
			be := &b.Events[j]
			if b.DedupeByEventID {
				if seen[i][be.Event.ID] {
					results[i].Skipped++
					continue
				}
				seen[i][be.Event.ID] = true
			} else if be.Offset <= base {
				results[i].Skipped++
				continue
			}
			w.seq++
			e := &be.Event
			rows = append(rows, sortedRow{pendingRow: pendingRow{chain: &batches[i].Stream, seq: w.seq, offset: be.Offset, ev: e,
				time: canonicalTime(e.Time), received: canonicalTime(e.ReceivedTime), prev: w.last}})
			r := &rows[len(rows)-1]
			at := len(ips)
			ips = trail.AppendIPText(ips, e.SourceIP)
			r.ip = [2]int{at, len(ips)}
			if done := len(rows) - 1; done == sizePairsAt && total > done {
				// The rest of the group: as many attributes per row as
				// the rows so far, an eighth more.
				pairs = slices.Grow(pairs, len(pairs)*(total-done)/done*9/8)
			}
			base := len(pairs)
			r.hash, pairs = scratch.enc.hashAttrs(pairs, b.Stream, w.seq, r.offset, &r.prev, e, r.time, r.received, ips[at:])
			r.attrs = [2]int{base, len(pairs)}
			leaf := LeafHash(r.hash)
			if err := w.tree.Append(&leaf); err != nil {
				return nil, fmt.Errorf("append Merkle leaf: %w", err)
			}
			if len(rows) == 1 {
				firstChain, firstSeq = b.Stream, w.seq
			}
			if n == 0 {
				first = w.seq
			}
			n++
			w.last = r.hash
			w.eventsOffset = max(w.eventsOffset, be.Offset)
		}
		if n > 0 {
			results[i].Stored = n
			stored += n
			w.stored = true
			ranges.Write([]byte(b.Stream))
			ranges.Write(binary.BigEndian.AppendUint64(nil, first))
			ranges.Write(w.last[:])
		}
	}
	scratch.rows, scratch.pairs, scratch.ips = rows, pairs, ips
	if len(rows) > 0 {
		ipTexts := string(ips)
		keys := slices.Grow(scratch.keys[:0], len(rows))
		for i := range rows {
			r := &rows[i]
			r.pendingRow.ip = ipTexts[r.ip[0]:r.ip[1]]
			us := r.time.UnixMicro()
			keys = append(keys, insertKey{day: floorDiv(us, 86_400_000_000), micros: us,
				service: string(r.ev.Service), actor: r.ev.Actor.Name, row: i})
		}
		slices.SortFunc(keys, compareInsertKeys)
		scratch.keys = keys
		var err error
		if eb, err = s.eng.PrepareBatch(ctx, s.db+".events", eventColumns); err != nil {
			return nil, fmt.Errorf("append events: %w", err)
		}
		for _, k := range keys {
			r := &rows[k.row]
			scratch.attrs = pairs[r.attrs[0]:r.attrs[1]]
			if scratch.args, err = appendRow(eb, &r.pendingRow, &scratch.attrs, scratch.args); err != nil {
				abort()
				return nil, fmt.Errorf("append events: %w", err)
			}
		}
	}
	trees := make(map[string]*compact.Range, len(work))
	for c, w := range work {
		if w.stored {
			t, err := w.tree.compactRange(rangeFactory)
			if err != nil {
				abort()
				return nil, fmt.Errorf("append Merkle leaves of %s: %w", c, err)
			}
			trees[c] = t
		}
	}
	if eb != nil {
		if err := eb.Send(ctx, "e-"+hex.EncodeToString(ranges.Sum(nil)[:16])); err != nil {
			abort()
			return nil, fmt.Errorf("append %d events to chain %s at seq %d: %w", stored, firstChain, firstSeq, err)
		}
	}
	for c, h := range heads {
		w := work[c]
		h.quarOffset = w.quarOffset
		if w.stored {
			h.seq, h.last, h.tree, h.eventsOffset = w.seq, w.last, trees[c], w.eventsOffset
		}
	}

	// Sign every chain that is ahead of its newest checkpoint: after new
	// rows, and on a retry whose rows were stored by an attempt that
	// failed before signing.
	signed, err := s.checkpoint(ctx, heads)
	if err != nil {
		return nil, err
	}
	pb, err := s.eng.PrepareBatch(ctx, s.db+".source_positions", positionColumns)
	if err != nil {
		return nil, fmt.Errorf("record positions: %w", err)
	}
	now := s.now().UTC()
	for i, b := range batches {
		h := heads[b.Stream]
		results[i].Seq = h.seq
		results[i].Checkpoint = signed[b.Stream]
		if err := pb.Append(b.Stream, b.Offset, b.Position, uint64(results[i].Stored), uint64(results[i].Quarantined), uint64(b.Dropped), now); err != nil {
			_ = pb.Abort()
			return nil, fmt.Errorf("record positions: %w", err)
		}
	}
	if err := pb.Send(ctx, ""); err != nil {
		_ = pb.Abort()
		return nil, fmt.Errorf("record positions of %s: %w", strings.Join(slices.Sorted(maps.Keys(heads)), ", "), err)
	}
	return results, nil
}

var positionColumns = []engine.Column{
	{Name: "stream", Type: "String"}, {Name: "source_offset", Type: "Int64"}, {Name: "source_position", Type: "String"},
	{Name: "events", Type: "UInt64"}, {Name: "quarantined", Type: "UInt64"}, {Name: "dropped", Type: "UInt64"},
	{Name: "updated_at", Type: "DateTime64(6, 'UTC')"},
}

// storedIdentities returns which of the batch's event ids, and which of its
// quarantined records' raw SHA-256 sums, the chain already holds.
func (s *Store) storedIdentities(ctx context.Context, b Batch) (ids, raws map[string]bool, err error) {
	ids, raws = map[string]bool{}, map[string]bool{}
	if len(b.Events) > 0 {
		list := make([]string, len(b.Events))
		for i, e := range b.Events {
			list[i] = e.Event.ID
		}
		err = s.queryEach(ctx, "SELECT DISTINCT event_id FROM "+s.db+".events WHERE chain = {chain:String} AND event_id IN {ids:Array(String)}",
			engine.Params{"chain": b.Stream, "ids": engine.StringArray(list)}, func(r engine.Rows) error {
				var id string
				if err := r.Scan(&id); err != nil {
					return err
				}
				ids[id] = true
				return nil
			})
		if err != nil {
			return nil, nil, fmt.Errorf("check stored event ids: %w", err)
		}
	}
	if len(b.Quarantined) > 0 {
		list := make([]string, len(b.Quarantined))
		for i, q := range b.Quarantined {
			sum := sha256.Sum256(q.Raw)
			list[i] = hex.EncodeToString(sum[:])
		}
		err = s.queryEach(ctx, "SELECT DISTINCT hex(raw_sha256) FROM "+s.db+".quarantine WHERE chain = {chain:String} AND hex(raw_sha256) IN {sums:Array(String)}",
			engine.Params{"chain": b.Stream, "sums": engine.StringArray(upper(list))}, func(r engine.Rows) error {
				var h string
				if err := r.Scan(&h); err != nil {
					return err
				}
				sum, err := hex.DecodeString(h)
				if err != nil {
					return err
				}
				raws[string(sum)] = true
				return nil
			})
		if err != nil {
			return nil, nil, fmt.Errorf("check stored quarantine records: %w", err)
		}
	}
	return ids, raws, nil
}

func upper(l []string) []string {
	out := make([]string, len(l))
	for i, s := range l {
		out[i] = strings.ToUpper(s)
	}
	return out
}

var quarantineColumns = []engine.Column{
	{Name: "chain", Type: "String"}, {Name: "source_offset", Type: "Int64"}, {Name: "source_position", Type: "String"},
	{Name: "received_time", Type: "DateTime64(6, 'UTC')"}, {Name: "format", Type: "String"}, {Name: "reason", Type: "String"},
	{Name: "raw", Type: "String"}, {Name: "raw_sha256", Type: "FixedString(32)"},
}

// checkpoint signs the tree head of every chain in heads that is ahead of
// its newest checkpoint, stores them in one insert and writes each to the
// checkpoint directory. It returns the new checkpoints by chain.
func (s *Store) checkpoint(ctx context.Context, heads map[string]*chainHead) (map[string]*Checkpoint, error) {
	signed := map[string]*Checkpoint{}
	var cb engine.Batch
	for _, chain := range slices.Sorted(maps.Keys(heads)) {
		h := heads[chain]
		if h.seq <= h.signedSize && !h.fileBehind {
			continue
		}
		rootBytes, err := h.tree.GetRootHash(nil)
		if err != nil {
			return nil, fmt.Errorf("compute Merkle root of %s: %w", chain, err)
		}
		var root Hash
		copy(root[:], rootBytes)
		msg, err := signCheckpoint(s.opts.Signer, chain, h.seq, root)
		if err != nil {
			return nil, err
		}
		hashes := h.tree.Hashes()
		rng := make([]string, len(hashes))
		for i, x := range hashes {
			rng[i] = string(x)
		}
		if cb == nil {
			if cb, err = s.eng.PrepareBatch(ctx, s.db+".checkpoints", checkpointColumns); err != nil {
				return nil, fmt.Errorf("store checkpoints: %w", err)
			}
		}
		if err := cb.Append(chain, h.seq, root, h.last, rng, string(msg), s.now().UTC()); err != nil {
			_ = cb.Abort()
			return nil, fmt.Errorf("store checkpoint of %s: %w", chain, err)
		}
		signed[chain] = &Checkpoint{Chain: chain, Size: h.seq, Root: root, Note: msg}
	}
	if cb == nil {
		return signed, nil
	}
	tok := sha256.New()
	for _, chain := range slices.Sorted(maps.Keys(signed)) {
		tok.Write([]byte(chain))
		tok.Write(binary.BigEndian.AppendUint64(nil, signed[chain].Size))
	}
	if err := cb.Send(ctx, "c-"+hex.EncodeToString(tok.Sum(nil)[:16])); err != nil {
		_ = cb.Abort()
		return nil, fmt.Errorf("store checkpoints: %w", err)
	}
	for chain, cp := range signed {
		h := heads[chain]
		h.signedSize = cp.Size
		// Until the file is written the next append signs again, even
		// though the store (reloaded after this error) holds the row.
		h.fileBehind = true
		if err := writeCheckpointFile(s.opts.CheckpointDir, chain, cp.Note); err != nil {
			return nil, err
		}
		h.fileBehind = false
	}
	return signed, nil
}

var checkpointColumns = []engine.Column{
	{Name: "chain", Type: "String"}, {Name: "tree_size", Type: "UInt64"}, {Name: "root_hash", Type: "FixedString(32)"},
	{Name: "last_hash", Type: "FixedString(32)"}, {Name: "compact_range", Type: "Array(String)"},
	{Name: "note", Type: "String"}, {Name: "created_at", Type: "DateTime64(6, 'UTC')"},
}

// Positions returns, per stream, the offset up to which everything is
// durable: the newest recorded position, raised by any event stored after
// it (a crash between the events insert and the position insert). The
// quarantine table does not raise it: its rows are written before the
// batch's events, so a crash in between would otherwise skip those events;
// replayed quarantine rows are recognised by their offsets instead.
func (s *Store) Positions(ctx context.Context) (map[string]int64, error) {
	out := map[string]int64{}
	q := `SELECT stream, max(o) FROM (
		SELECT stream, source_offset AS o FROM ` + s.db + `.source_positions
		UNION ALL SELECT toString(chain) AS stream, max(source_offset) AS o FROM ` + s.db + `.events GROUP BY chain
	) GROUP BY stream`
	err := s.queryEach(ctx, q, nil, func(r engine.Rows) error {
		var stream string
		var off int64
		if err := r.Scan(&stream, &off); err != nil {
			return err
		}
		out[stream] = off
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read stream positions: %w", err)
	}
	return out, nil
}

// Log writes an entry to the custody log.
func (s *Store) Log(ctx context.Context, action, detail, result string) error {
	return writeCustodyLog(ctx, s.eng, s.db, s.opts.Actor, s.now(), action, detail, result)
}

// writeCustodyLog records an entry made at the time at.
func writeCustodyLog(ctx context.Context, eng engine.Engine, db, actor string, at time.Time, action, detail, result string) error {
	host, _ := os.Hostname()
	err := eng.Exec(ctx, "INSERT INTO "+db+".custody_log VALUES ({at:DateTime64(6)}, {actor:String}, {host:String}, {action:String}, {detail:String}, {result:String})", engine.Params{
		"at": formatTime(at), "actor": actor, "host": host, "action": action, "detail": detail, "result": result,
	})
	if err != nil {
		return fmt.Errorf("write custody log: %w", err)
	}
	return nil
}
