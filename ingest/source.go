// Package ingest reads raw diagnostic records from where Azure delivers them
// (Event Hubs, Log Analytics, storage archives, files) and moves them through
// normalize into the store without losing or duplicating any.
//
// The stage shape follows Redpanda Connect (Benthos): a Source connects,
// hands out batches with an AckFunc, and is closed. Acknowledging a batch
// means it is durable in the store; a source only moves its own notion of
// progress forward on ack. Resume positions always come from the store
// (see Sink.Positions), never from the source's own bookkeeping, so a crash
// between the store write and an ack loses nothing and duplicates nothing.
package ingest

import (
	"context"
	"errors"
	"time"
)

// Sentinel errors of the source lifecycle.
var (
	// ErrNotConnected is returned by ReadBatch when the source lost its
	// connection; the pipeline calls Connect again after a backoff.
	ErrNotConnected = errors.New("source not connected")
	// ErrEndOfInput is returned by ReadBatch when a finite source (a file,
	// a backfill) has nothing more to give.
	ErrEndOfInput = errors.New("end of input")
)

// Message is one raw unit as the source delivered it: an Event Hubs event
// body, one line of a PT1H.json blob, one Log Analytics row. One message may
// hold many records (an Event Hubs body is {"records":[...]}).
type Message struct {
	// Stream names the ordered stream the message belongs to, for example
	// "eventhubs/<namespace>/<hub>/<consumer group>/3" or
	// "loganalytics/<workspace>/AKSAudit". Each stream becomes one chain.
	Stream string
	// Offset orders messages within Stream and is what resume compares:
	// the Event Hubs sequence number, a row ordinal, a byte offset.
	Offset int64
	// Position is the human-readable source position stored with every
	// event (partition 3 sequence 1042; blob path and line).
	Position string
	// Format hints the decoder ("eventhubs", "archive", "loganalytics",
	// "k8s-audit"); empty means auto-detect.
	Format string
	// Body is the raw bytes, exactly as delivered.
	Body []byte
	// Enqueued is when the source says it accepted the message (zero if
	// unknown); Received is when Custody read it.
	Enqueued time.Time
	Received time.Time
	// Quarantine, when not empty, says why the message cannot be a
	// record (the source cut it at its size limit, or it ends an object
	// mid-record for good): it is stored in quarantine with this reason,
	// not normalized.
	Quarantine string
	// Attributes carries source metadata worth keeping (partition key,
	// table name, blob path). Read it only: a source may share one map
	// between many messages (the archive source gives every message of
	// an object the same map).
	Attributes map[string]string
}

// AckFunc reports the fate of a batch back to its source: nil once the batch
// is durable in the store, an error if it could not be stored (the source
// then redelivers from the last acknowledged position or stops).
type AckFunc func(ctx context.Context, err error) error

// Source is an input of raw messages.
type Source interface {
	// Connect establishes the connection. Idempotent.
	Connect(ctx context.Context) error
	// ReadBatch blocks until at least one message is available, ctx is
	// done, or the source ends (ErrEndOfInput).
	ReadBatch(ctx context.Context) ([]Message, AckFunc, error)
	// Close releases the source's resources.
	Close(ctx context.Context) error
}

// StreamPosition is how far one stream has been stored.
type StreamPosition struct {
	Stream string
	// Offset of the last message whose records are all durable (stored,
	// quarantined or counted as dropped by policy).
	Offset int64
}
