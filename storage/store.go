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
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"

	"github.com/custody-audit/custody/event"
	"github.com/custody-audit/custody/storage/engine"
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
}

// Store is an open audit trail. Append is safe for concurrent use; batches
// of one chain are serialized.
type Store struct {
	eng    engine.Engine
	db     string
	opts   Options
	log    *slog.Logger
	now    func() time.Time
	mu     sync.Mutex
	chains map[string]*chainHead
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
}

var rangeFactory = &compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}

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
type BatchEvent struct {
	Offset int64
	Event  event.Event
}

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

func appendRow(b engine.Batch, r *Row) error {
	e := &r.Event
	t := &e.Target
	return b.Append(r.Chain, r.Seq, e.ID, e.Time, e.ReceivedTime,
		string(e.Service), e.Category, e.SourceKind, e.SourceFormat, e.SourcePosition, r.Offset,
		e.TenantID, e.SubscriptionID, e.ResourceGroup, e.Provider, e.ResourceType, e.ResourceName,
		e.ResourceID, e.Actor.Name, e.Actor.ObjectID, string(e.Actor.Type), e.Actor.AppID, nonNil(e.Actor.Groups),
		e.Actor.ImpersonatedBy, ipText(e.SourceIP), e.UserAgent, e.Action, string(e.ActionClass),
		t.APIGroup, t.Resource, t.Subresource, t.Namespace, t.Name, t.Repository, t.Tag, t.Digest,
		t.ContainerGroup, t.Container, t.Image,
		string(e.Outcome), e.StatusCode, e.Reason, e.CorrelationID, e.RequestID,
		nonNil(e.Tags), nonNilMap(e.Attributes), e.Raw, e.RawFormat, r.PrevHash, r.Hash)
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

func nonNil(l []string) []string {
	if l == nil {
		return []string{}
	}
	return l
}

func nonNilMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// canonical brings an event to exactly what the store keeps, so the hash
// computed before the insert equals the one recomputed from the stored row.
// A missing time is stored as the Unix epoch: DateTime64 cannot hold Go's
// zero time, and both encode as 0 in the hash.
func canonical(e event.Event) event.Event {
	e.Time = canonicalTime(e.Time)
	e.ReceivedTime = canonicalTime(e.ReceivedTime)
	return e
}

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
// stored after it.
func (s *Store) loadHead(ctx context.Context, chain string, h *chainHead) error {
	p := engine.Params{"chain": chain}
	err := s.queryEach(ctx, "SELECT max(seq), argMax(hash, seq), max(source_offset), count() FROM "+s.db+".events WHERE chain = {chain:String}", p, func(r engine.Rows) error {
		var n uint64
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

// Append stores one batch of one stream: quarantined records first, then
// the events as the next rows of the stream's chain (one insert), then a
// signed checkpoint and the stream position. Records the store already
// holds (a batch replayed after a crash) are skipped. On error nothing of
// the chain's in-memory state moves, and retrying the same batch is safe.
func (s *Store) Append(ctx context.Context, b Batch) (AppendResult, error) {
	var res AppendResult
	if s.opts.Signer == nil {
		return res, ErrNoSigner
	}
	if b.Stream == "" {
		return res, errors.New("append: batch has no stream")
	}
	h, err := s.head(ctx, b.Stream)
	if err != nil {
		return res, err
	}
	defer h.mu.Unlock()

	// Quarantine first: its rows carry their offsets, so a replay skips
	// what is already there.
	var quar []QuarantineRecord
	var seenIDs, seenRaw map[string]bool
	if b.DedupeByEventID {
		if seenIDs, seenRaw, err = s.storedIdentities(ctx, b); err != nil {
			return res, err
		}
	}
	for _, q := range b.Quarantined {
		if b.DedupeByEventID {
			sum := sha256.Sum256(q.Raw)
			if !seenRaw[string(sum[:])] {
				quar = append(quar, q)
				seenRaw[string(sum[:])] = true
			}
		} else if q.Offset > h.quarOffset {
			quar = append(quar, q)
		}
	}
	if len(quar) > 0 {
		qb, err := s.eng.PrepareBatch(ctx, s.db+".quarantine", quarantineColumns)
		if err != nil {
			return res, fmt.Errorf("append quarantine: %w", err)
		}
		for _, q := range quar {
			if err := qb.Append(b.Stream, q.Offset, q.Position, q.Received.UTC().Truncate(time.Microsecond), q.Format, q.Reason, q.Raw, Hash(sha256.Sum256(q.Raw))); err != nil {
				return res, fmt.Errorf("append quarantine: %w", err)
			}
		}
		// The token covers the records' content too: Log Analytics
		// re-reads windows, so two different batches can span the same
		// offsets.
		content := sha256.New()
		for _, q := range quar {
			sum := sha256.Sum256(q.Raw)
			content.Write(sum[:])
		}
		if err := qb.Send(ctx, token("q", b.Stream, uint64(quar[0].Offset), uint64(quar[len(quar)-1].Offset))+hex.EncodeToString(content.Sum(nil)[:8])); err != nil {
			return res, fmt.Errorf("append quarantine: %w", err)
		}
		for _, q := range quar {
			h.quarOffset = max(h.quarOffset, q.Offset)
		}
		res.Quarantined = len(quar)
	}

	// Events: chain them onto the head in a scratch state; the head moves
	// only once the insert succeeded.
	seq, last := h.seq, h.last
	tree, err := cloneRange(h.tree)
	if err != nil {
		return res, err
	}
	var enc hashEncoder
	rows := make([]Row, 0, len(b.Events))
	maxOffset := h.eventsOffset
	for i := range b.Events {
		be := &b.Events[i]
		if b.DedupeByEventID {
			if seenIDs[be.Event.ID] {
				res.Skipped++
				continue
			}
			seenIDs[be.Event.ID] = true
		} else if be.Offset <= h.eventsOffset {
			res.Skipped++
			continue
		}
		seq++
		r := Row{Chain: b.Stream, Seq: seq, Offset: be.Offset, Event: canonical(be.Event), PrevHash: last}
		r.Hash = enc.EventHash(&r)
		leaf := LeafHash(r.Hash)
		if err := tree.Append(leaf[:], nil); err != nil {
			return res, fmt.Errorf("append Merkle leaf: %w", err)
		}
		last = r.Hash
		rows = append(rows, r)
		if be.Offset > maxOffset {
			maxOffset = be.Offset
		}
	}
	if len(rows) > 0 {
		eb, err := s.eng.PrepareBatch(ctx, s.db+".events", eventColumns)
		if err != nil {
			return res, fmt.Errorf("append events: %w", err)
		}
		for i := range rows {
			if err := appendRow(eb, &rows[i]); err != nil {
				return res, fmt.Errorf("append events: %w", err)
			}
		}
		if err := eb.Send(ctx, token("e", b.Stream, rows[0].Seq, rows[len(rows)-1].Seq)+hex.EncodeToString(last[:8])); err != nil {
			return res, fmt.Errorf("append events to chain %s at seq %d: %w", b.Stream, rows[0].Seq, err)
		}
		h.seq, h.last, h.tree, h.eventsOffset = seq, last, tree, maxOffset
		res.Stored = len(rows)
	}
	// Sign whenever the chain is ahead of its newest checkpoint: after
	// new rows, and on a retry whose rows were stored by an attempt that
	// failed before signing.
	if h.seq > h.signedSize {
		cp, err := s.checkpoint(ctx, b.Stream, h)
		if err != nil {
			return res, err
		}
		h.signedSize = cp.Size
		res.Checkpoint = cp
	}
	res.Seq = h.seq

	err = s.eng.Exec(ctx, "INSERT INTO "+s.db+".source_positions VALUES ({s:String}, {o:Int64}, {p:String}, {e:UInt64}, {q:UInt64}, {d:UInt64}, {at:DateTime64(6)})", engine.Params{
		"s": b.Stream, "o": fmt.Sprint(b.Offset), "p": b.Position, "e": fmt.Sprint(res.Stored), "q": fmt.Sprint(res.Quarantined), "d": fmt.Sprint(b.Dropped), "at": formatTime(s.now()),
	})
	if err != nil {
		return res, fmt.Errorf("record position of %s: %w", b.Stream, err)
	}
	return res, nil
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
			engine.Params{"chain": b.Stream, "ids": ArrayLiteral(list)}, func(r engine.Rows) error {
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
			engine.Params{"chain": b.Stream, "sums": ArrayLiteral(upper(list))}, func(r engine.Rows) error {
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

// ArrayLiteral renders strings as the text of a ClickHouse Array(String)
// parameter value: ['a','b\'c']. The result is bound as a parameter,
// never spliced into SQL.
func ArrayLiteral(list []string) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, v := range list {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('\'')
		for j := 0; j < len(v); j++ {
			switch c := v[j]; c {
			case '\'', '\\':
				b.WriteByte('\\')
				b.WriteByte(c)
			case '\t':
				b.WriteString(`\t`)
			case '\n':
				b.WriteString(`\n`)
			case 0:
				b.WriteString(`\0`)
			default:
				b.WriteByte(c)
			}
		}
		b.WriteByte('\'')
	}
	b.WriteByte(']')
	return b.String()
}

var quarantineColumns = []engine.Column{
	{Name: "chain", Type: "String"}, {Name: "source_offset", Type: "Int64"}, {Name: "source_position", Type: "String"},
	{Name: "received_time", Type: "DateTime64(6, 'UTC')"}, {Name: "format", Type: "String"}, {Name: "reason", Type: "String"},
	{Name: "raw", Type: "String"}, {Name: "raw_sha256", Type: "FixedString(32)"},
}

// token derives an insert deduplication token from what the batch covers,
// so a retry of the same batch is recognised by ClickHouse.
func token(kind, chain string, first, last uint64) string {
	h := sha256.New()
	h.Write([]byte(kind))
	h.Write([]byte(chain))
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], first)
	binary.BigEndian.PutUint64(b[8:], last)
	h.Write(b[:])
	return kind + "-" + hex.EncodeToString(h.Sum(nil)[:16])
}

// checkpoint signs and stores the chain's current tree head.
func (s *Store) checkpoint(ctx context.Context, chain string, h *chainHead) (*Checkpoint, error) {
	rootBytes, err := h.tree.GetRootHash(nil)
	if err != nil {
		return nil, fmt.Errorf("compute Merkle root: %w", err)
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
	cb, err := s.eng.PrepareBatch(ctx, s.db+".checkpoints", checkpointColumns)
	if err != nil {
		return nil, fmt.Errorf("store checkpoint: %w", err)
	}
	if err := cb.Append(chain, h.seq, root, h.last, rng, string(msg), s.now().UTC()); err != nil {
		return nil, fmt.Errorf("store checkpoint: %w", err)
	}
	if err := cb.Send(ctx, token("c", chain, h.seq, h.seq)); err != nil {
		return nil, fmt.Errorf("store checkpoint of %s at %d: %w", chain, h.seq, err)
	}
	if err := writeCheckpointFile(s.opts.CheckpointDir, chain, msg); err != nil {
		return nil, err
	}
	return &Checkpoint{Chain: chain, Size: h.seq, Root: root, Note: msg}, nil
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
	return writeCustodyLog(ctx, s.eng, s.db, s.opts.Actor, action, detail, result)
}

func writeCustodyLog(ctx context.Context, eng engine.Engine, db, actor, action, detail, result string) error {
	host, _ := os.Hostname()
	err := eng.Exec(ctx, "INSERT INTO "+db+".custody_log VALUES ({at:DateTime64(6)}, {actor:String}, {host:String}, {action:String}, {detail:String}, {result:String})", engine.Params{
		"at": formatTime(time.Now()), "actor": actor, "host": host, "action": action, "detail": detail, "result": result,
	})
	if err != nil {
		return fmt.Errorf("write custody log: %w", err)
	}
	return nil
}

// cloneRange copies a compact range so a failed insert leaves the chain's
// tree untouched.
func cloneRange(r *compact.Range) (*compact.Range, error) {
	src := r.Hashes()
	hashes := make([][]byte, len(src))
	for i, h := range src {
		hashes[i] = append([]byte(nil), h...)
	}
	c, err := rangeFactory.NewRange(r.Begin(), r.End(), hashes)
	if err != nil {
		return nil, fmt.Errorf("copy Merkle range: %w", err)
	}
	return c, nil
}
