// Package archive backfills Custody from what Azure leaves in storage: the
// containers diagnostic settings write (insights-logs-<category>/... and
// insights-activity-logs/... PT1H.json blobs, JSON Lines since November 2018
// and one {"records":[...]} object before), Event Hubs Capture Avro files,
// and raw Event Hubs bodies saved as files. It reads them from local
// directories or from Azure Blob Storage and hands them to the pipeline as an
// ingest.Source.
//
// Each object (file or blob) is its own stream, "file/<path>" or
// "archive/<account>/<container>/<blob>", and a message's offset is its
// 1-based line or record number inside the object. Resume therefore needs
// nothing but the store's positions: an object is re-read and every record
// at or below the stored offset is skipped, and an object recorded as
// complete at its current size is not opened at all (see Resume). Objects
// are selected by the hour their path names (see PathHour, TimeRange) and
// read in hour order, streaming: a blob is never held in memory.
//
// Layouts: https://learn.microsoft.com/azure/azure-monitor/essentials/resource-logs#send-to-azure-storage
// and https://learn.microsoft.com/azure/event-hubs/explore-captured-avro-files.
package archive

import (
	"bufio"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/custody-audit/custody/ingest"
)

// Sentinel errors.
var (
	// ErrBadConfig reports an invalid configuration.
	ErrBadConfig = errors.New("invalid archive configuration")
	// ErrUnrecognized reports content whose format could not be detected.
	ErrUnrecognized = errors.New("unrecognized archive content")
	// ErrMalformed reports content that does not parse as its format
	// (a truncated Avro file, a broken records blob).
	ErrMalformed = errors.New("malformed archive content")
	// ErrClosed is returned by ReadBatch after Close.
	ErrClosed = errors.New("archive source closed")
)

// ObjectError is a failure to read one object; Offset is the last record
// read from it before the failure (0 if none).
type ObjectError struct {
	Stream string
	Name   string
	Offset int64
	Err    error

	idx int // position in the source's object list
}

func (e *ObjectError) Error() string {
	return fmt.Sprintf("archive object %s (after record %d): %s", e.Name, e.Offset, Redact(e.Err.Error()))
}

func (e *ObjectError) Unwrap() error { return e.Err }

// Config tunes a backfill.
type Config struct {
	// Format forces how objects are read; FormatAuto (or "") detects it per
	// object.
	Format Format
	// Range selects objects by the hour in their path; objects whose path
	// names no hour are always included. Zero selects everything.
	Range TimeRange
	// MaxBatchMessages caps the messages in one batch. 0 means 1000.
	MaxBatchMessages int
	// MaxBatchBytes caps the body bytes in one batch (a single larger
	// message still makes a batch). 0 means 8 MiB.
	MaxBatchBytes int
	// MaxRecordBytes caps one line or body; a longer one is cut to this
	// size, marked with AttrTruncated and quarantined with a reason that
	// names the limit and the whole record's SHA-256. 0 means 64 MiB.
	MaxRecordBytes int
	// SettleAfter is how long after its last modification, and after the
	// end of the hour its path names, an object is taken as no longer
	// written. Until then a last line without a newline that is not a
	// whole record is left unread (Azure appends to the current hour's
	// PT1H.json): its offset stays before it and the next run reads it
	// whole; after that it is quarantined. 0 means 2h.
	SettleAfter time.Duration
	// ContinueOnError makes an unreadable object (bad format, truncated,
	// download failure) a recorded failure (Failures, Progress) instead of
	// the end of the backfill. The records read before the failure are
	// still delivered.
	ContinueOnError bool
	// OnComplete, if set, is called once every message of an object is
	// acknowledged (durable); persist the completion and pass it back in
	// Resume.Completed to skip the object next time. Called from AckFunc.
	OnComplete func(Completion)
	// Now is the clock for Message.Received and progress; nil is time.Now.
	Now func() time.Time
}

// Defaults for the zero Config fields.
const (
	DefaultMaxBatchMessages = 1000
	DefaultMaxBatchBytes    = 8 << 20
	DefaultMaxRecordBytes   = 64 << 20
	DefaultSettleAfter      = 2 * time.Hour
)

// DefaultConfig returns a Config with every default filled in.
func DefaultConfig() Config {
	return Config{
		Format:           FormatAuto,
		MaxBatchMessages: DefaultMaxBatchMessages,
		MaxBatchBytes:    DefaultMaxBatchBytes,
		MaxRecordBytes:   DefaultMaxRecordBytes,
		SettleAfter:      DefaultSettleAfter,
	}
}

// Validate checks the config and names the field at fault.
func (c Config) Validate() error {
	if _, err := ParseFormat(string(c.Format)); err != nil {
		return fmt.Errorf("format: %w", err)
	}
	if !c.Range.From.IsZero() && !c.Range.To.IsZero() && !c.Range.From.Before(c.Range.To) {
		return fmt.Errorf("range: from %s is not before to %s: %w", c.Range.From.Format(time.RFC3339), c.Range.To.Format(time.RFC3339), ErrBadConfig)
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"max_batch_messages", c.MaxBatchMessages}, {"max_batch_bytes", c.MaxBatchBytes}, {"max_record_bytes", c.MaxRecordBytes}} {
		if f.v < 0 {
			return fmt.Errorf("%s: %d is negative: %w", f.name, f.v, ErrBadConfig)
		}
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Format == "" {
		c.Format = FormatAuto
	}
	if c.MaxBatchMessages == 0 {
		c.MaxBatchMessages = DefaultMaxBatchMessages
	}
	if c.MaxBatchBytes == 0 {
		c.MaxBatchBytes = DefaultMaxBatchBytes
	}
	if c.MaxRecordBytes == 0 {
		c.MaxRecordBytes = DefaultMaxRecordBytes
	}
	if c.SettleAfter == 0 {
		c.SettleAfter = DefaultSettleAfter
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Resume is what the store already holds.
type Resume struct {
	// Positions maps a stream to the offset of its last stored message;
	// messages at or below it are skipped.
	Positions map[string]int64
	// Completed maps a stream to the object size at which it was completely
	// stored (from Config.OnComplete); such an object is not opened again
	// unless its size changed (a PT1H.json of the current hour grows).
	Completed map[string]int64
	// Stored are objects stored whole before, by content (from
	// Completion.SHA256). An object the store holds nothing of whose size
	// and SHA-256 match one of another stream is the same archive at
	// another path: it is not stored again (Duplicates names it).
	Stored []StoredObject
}

// StoredObject is an object stored whole: its stream, size and content
// digest.
type StoredObject struct {
	Stream string
	Size   int64
	SHA256 [32]byte
}

// Duplicate is an object skipped because its content was stored before
// under another stream.
type Duplicate struct {
	Name string // the object skipped
	Of   string // the stream that holds its content
}

// Completion reports an object whose messages are all durable.
type Completion struct {
	Stream string
	// Size is the number of bytes read: the whole object (its listed size
	// unless it grew while it was read).
	Size int64
	// LastOffset is the offset of its last message (0 if it had none).
	LastOffset int64
	// SHA256 is the digest of the object's whole content as read.
	SHA256 [32]byte
}

// Source is an ingest.Source over the objects of a Store. ReadBatch is
// meant for one goroutine; AckFunc may be called from another.
type Source struct {
	store    Store
	cfg      Config
	resume   Resume
	log      *slog.Logger
	progress *Progress

	readMu   sync.Mutex // guards the read state below
	ioCtx    context.Context
	ioCancel context.CancelFunc
	listed   bool
	closed   bool
	objects  []Object
	credit   []credit // what each object added to progress, for rewinds
	next     int
	lastLen  int // messages in the last batch
	cur      *openObject
	sticky   error
	failures []*ObjectError
	held     map[int]bool // objects whose incomplete last line was left unread
	bySize   map[int64][]StoredObject
	dups     []Duplicate

	ackMu    sync.Mutex // guards the acknowledgement state below
	acked    map[string]int64
	pending  []*batchState
	rewindTo int // object index to re-read from after a nack; -1 if none
	seq      uint64
}

type credit struct {
	object bool
	bytes  int64
}

type openObject struct {
	idx    int
	rc     io.ReadCloser
	sum    hash.Hash // of everything read
	count  *countingReader
	rr     recordReader
	skip   int64
	last   int64
	format Format
}

type batchState struct {
	seq       uint64
	firstObj  int
	acked     bool
	void      bool
	streams   map[string]int64
	completes []Completion
	messages  int
}

// New returns a source over store. resume comes from the store; logger may
// be nil.
func New(store Store, cfg Config, resume Resume, logger *slog.Logger) (*Source, error) {
	if store == nil {
		return nil, fmt.Errorf("archive source: nil store: %w", ErrBadConfig)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("archive source: %w", err)
	}
	cfg = cfg.withDefaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	bySize := map[int64][]StoredObject{}
	for _, o := range resume.Stored {
		if o.Size > 0 {
			bySize[o.Size] = append(bySize[o.Size], o)
		}
	}
	return &Source{
		store:    store,
		bySize:   bySize,
		cfg:      cfg,
		resume:   resume,
		log:      logger,
		progress: newProgress(cfg.Now),
		acked:    make(map[string]int64),
		rewindTo: -1,
	}, nil
}

// Progress returns the live progress counters.
func (s *Source) Progress() *Progress { return s.progress }

// Failures returns the objects that could not be read (with
// ContinueOnError; otherwise the first failure ends the backfill).
func (s *Source) Failures() []*ObjectError {
	s.readMu.Lock()
	defer s.readMu.Unlock()
	return slices.Clone(s.failures)
}

// Connect lists the store once, selects the objects in the time range and
// orders them by hour, then name. Idempotent. Downloads started later are
// bound to ctx's values but not its deadline; Close cancels them, and
// ReadBatch's ctx is honoured between messages.
func (s *Source) Connect(ctx context.Context) error {
	s.readMu.Lock()
	defer s.readMu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if s.listed {
		return nil
	}
	var objs []Object
	var skippedRange int
	err := s.store.List(ctx, func(o Object) error {
		if !o.Hour.IsZero() && !s.cfg.Range.Overlaps(o.Hour) {
			skippedRange++
			return nil
		}
		objs = append(objs, o)
		return nil
	})
	if err != nil {
		return fmt.Errorf("archive source: %w", err)
	}
	slices.SortFunc(objs, func(a, b Object) int {
		return cmp.Or(a.Hour.Compare(b.Hour), cmp.Compare(a.Name, b.Name))
	})
	var total int64
	for _, o := range objs {
		total += o.Size
	}
	s.objects, s.listed = objs, true
	s.ioCtx, s.ioCancel = context.WithCancel(context.WithoutCancel(ctx))
	s.credit = make([]credit, len(objs))
	s.progress.setTotals(int64(len(objs)), total)
	s.log.InfoContext(ctx, "archive backfill listed",
		slog.Int("objects", len(objs)), slog.Int64("bytes", total), slog.Int("outside_range", skippedRange))
	return nil
}

// ReadBatch returns the next messages, at most MaxBatchMessages and about
// MaxBatchBytes, possibly spanning objects. It returns ingest.ErrEndOfInput
// when every object has been read.
func (s *Source) ReadBatch(ctx context.Context) ([]ingest.Message, ingest.AckFunc, error) {
	s.readMu.Lock()
	defer s.readMu.Unlock()
	if s.closed {
		return nil, nil, ErrClosed
	}
	if !s.listed {
		return nil, nil, ingest.ErrNotConnected
	}
	s.applyRewind()

	bs := &batchState{firstObj: -1, streams: make(map[string]int64)}
	if s.cur != nil {
		bs.firstObj = s.cur.idx
	}
	var (
		// Sized like the last batch: batches are usually alike, and growing
		// the slice by doubling copies every message several times.
		batch = make([]ingest.Message, 0, min(max(s.lastLen, 16), s.cfg.MaxBatchMessages))
		bytes int
	)
	for s.sticky == nil && len(batch) < s.cfg.MaxBatchMessages && bytes < s.cfg.MaxBatchBytes {
		if err := ctx.Err(); err != nil {
			if len(batch) > 0 {
				break
			}
			return nil, nil, err
		}
		if s.cur == nil {
			if s.next >= len(s.objects) {
				break
			}
			idx := s.next
			s.next++
			if s.isCompleted(idx) {
				continue
			}
			if dup, err := s.isDuplicate(ctx, idx); err != nil {
				s.fail(ctx, idx, 0, err)
				continue
			} else if dup {
				continue
			}
			if err := s.open(idx); err != nil {
				s.fail(ctx, idx, 0, err)
				continue
			}
			if bs.firstObj < 0 {
				bs.firstObj = idx
			}
		}
		cur := s.cur
		m, err := cur.rr.next()
		s.addBytes(cur.idx, cur.count.take())
		if errors.Is(err, io.EOF) {
			s.finish(cur, bs)
			continue
		}
		if err != nil {
			s.closeCur()
			s.fail(ctx, cur.idx, cur.last, err)
			continue
		}
		cur.last = m.Offset
		if m.Offset <= cur.skip {
			continue
		}
		m.Stream = s.objects[cur.idx].Stream
		m.Received = s.cfg.Now()
		batch = append(batch, m)
		bytes += len(m.Body)
		bs.streams[m.Stream] = m.Offset
	}
	bs.messages = len(batch)
	s.lastLen = len(batch)
	s.progress.addMessages(int64(len(batch)))

	s.ackMu.Lock()
	s.seq++
	bs.seq = s.seq
	if len(batch) == 0 {
		// Nothing to acknowledge: completions found here are durable as soon
		// as everything before them is.
		bs.acked = true
	}
	s.pending = append(s.pending, bs)
	done := s.settle()
	s.ackMu.Unlock()
	s.fire(done)

	if len(batch) == 0 {
		if s.sticky != nil {
			return nil, nil, s.sticky
		}
		return nil, nil, ingest.ErrEndOfInput
	}
	return batch, s.ackFunc(bs), nil
}

// Close stops reading and closes the open object. Idempotent.
func (s *Source) Close(ctx context.Context) error {
	s.readMu.Lock()
	defer s.readMu.Unlock()
	s.closed = true
	if s.ioCancel != nil {
		s.ioCancel()
	}
	return s.closeCur()
}

func (s *Source) isCompleted(idx int) bool {
	o := s.objects[idx]
	size, ok := s.resume.Completed[o.Stream]
	if !ok || size != o.Size {
		return false
	}
	s.progress.objectSkipped(o.Size)
	s.credit[idx] = credit{object: true, bytes: o.Size}
	return true
}

// isDuplicate reports whether object idx, of which the store holds
// nothing, has the size and content of an object stored whole under
// another stream; such an object is skipped and recorded (Duplicates).
// Only objects of a stored size are read for their digest first.
func (s *Source) isDuplicate(ctx context.Context, idx int) (bool, error) {
	o := s.objects[idx]
	cands := s.bySize[o.Size]
	if len(cands) == 0 || s.resume.Positions[o.Stream] > 0 {
		return false, nil
	}
	s.ackMu.Lock()
	acked := s.acked[o.Stream]
	s.ackMu.Unlock()
	if acked > 0 {
		return false, nil
	}
	rc, err := s.store.Open(s.ioCtx, o)
	if err != nil {
		return false, err
	}
	h := sha256.New()
	_, err = io.Copy(h, rc)
	rc.Close()
	if err != nil {
		return false, fmt.Errorf("read for its digest: %w", err)
	}
	var sum [32]byte
	h.Sum(sum[:0])
	for _, c := range cands {
		if c.SHA256 == sum && c.Stream != o.Stream {
			s.dups = append(s.dups, Duplicate{Name: o.Name, Of: c.Stream})
			s.progress.objectSkipped(o.Size)
			s.credit[idx] = credit{object: true, bytes: o.Size}
			s.log.InfoContext(ctx, "archive object already stored at another path; skipped", slog.String("object", o.Name), slog.String("stored_as", c.Stream), slog.String("sha256", hex.EncodeToString(sum[:])))
			return true, nil
		}
	}
	return false, nil
}

// Duplicates returns the objects skipped because their content was
// stored before under another stream.
func (s *Source) Duplicates() []Duplicate {
	s.readMu.Lock()
	defer s.readMu.Unlock()
	return slices.Clone(s.dups)
}

func (s *Source) open(idx int) error {
	ctx := s.ioCtx
	o := s.objects[idx]
	rc, err := s.store.Open(ctx, o)
	if err != nil {
		return err
	}
	sum := sha256.New()
	count := &countingReader{r: io.TeeReader(rc, sum)}
	br := bufio.NewReaderSize(count, defaultReadBufferLen)
	rr, f, err := newRecordReader(br, count, o, s.cfg.Format, s.cfg.MaxRecordBytes, !s.settled(o))
	s.addBytes(idx, count.take())
	if err != nil {
		rc.Close()
		return err
	}
	skip := s.resume.Positions[o.Stream]
	s.ackMu.Lock()
	skip = max(skip, s.acked[o.Stream])
	s.ackMu.Unlock()
	s.cur = &openObject{idx: idx, rc: rc, sum: sum, count: count, rr: rr, skip: skip, format: f}
	s.progress.setCurrent(o.Name)
	s.log.DebugContext(ctx, "archive object opened", slog.String("object", o.Name), slog.String("format", string(f)), slog.Int64("skip_through", skip))
	return nil
}

// settled reports whether o is no longer written: modified, and past the
// end of the hour its path names, at least SettleAfter ago.
func (s *Source) settled(o Object) bool {
	now := s.cfg.Now()
	if !o.Modified.IsZero() && now.Sub(o.Modified) < s.cfg.SettleAfter {
		return false
	}
	return o.Hour.IsZero() || now.Sub(o.Hour.Add(time.Hour)) >= s.cfg.SettleAfter
}

// Incomplete returns the objects whose last line was left unread because
// it is incomplete and the object may still grow; the next run reads it.
func (s *Source) Incomplete() []string {
	s.readMu.Lock()
	defer s.readMu.Unlock()
	var out []string
	for i := range s.objects {
		if s.held[i] {
			out = append(out, s.objects[i].Name)
		}
	}
	return out
}

func (s *Source) finish(cur *openObject, bs *batchState) {
	o := s.objects[cur.idx]
	if h, ok := cur.rr.(holder); ok && h.incompleteHeld() {
		// Not complete: the next run reads the held line whole.
		s.closeCur()
		if s.held == nil {
			s.held = map[int]bool{}
		}
		s.held[cur.idx] = true
		s.progress.objectDone(o.Size, cur.count.total)
		s.credit[cur.idx] = credit{object: true, bytes: o.Size}
		s.log.Info("archive object ends in an incomplete line; left for the next run", slog.String("object", o.Name), slog.Int64("after_line", cur.last))
		return
	}
	// The digest covers the whole object only if reading reached its end
	// (a line reader stops at EOF; the others too).
	_, _ = io.Copy(io.Discard, cur.count)
	s.addBytes(cur.idx, cur.count.take())
	var digest [32]byte
	cur.sum.Sum(digest[:0])
	s.closeCur()
	s.progress.objectDone(o.Size, cur.count.total)
	s.credit[cur.idx] = credit{object: true, bytes: o.Size}
	bs.completes = append(bs.completes, Completion{Stream: o.Stream, Size: cur.count.total, LastOffset: cur.last, SHA256: digest})
	if cur.count.total > 0 {
		// A copy later in this same run is recognised too.
		s.bySize[cur.count.total] = append(s.bySize[cur.count.total], StoredObject{Stream: o.Stream, Size: cur.count.total, SHA256: digest})
	}
}

func (s *Source) closeCur() error {
	if s.cur == nil {
		return nil
	}
	cur := s.cur
	s.cur = nil
	err := errors.Join(cur.rr.close(), cur.rc.Close())
	if err != nil {
		return fmt.Errorf("close %s: %w", s.objects[cur.idx].Name, redactErr(err))
	}
	return nil
}

// fail records an unreadable object; without ContinueOnError it ends the
// backfill after the messages already in hand are delivered.
func (s *Source) fail(ctx context.Context, idx int, offset int64, err error) {
	o := s.objects[idx]
	oe := &ObjectError{Stream: o.Stream, Name: o.Name, Offset: offset, Err: redactErr(err), idx: idx}
	s.failures = append(s.failures, oe)
	s.progress.objectFailed(o.Size)
	s.credit[idx].object = true
	s.log.ErrorContext(ctx, "archive object unreadable", slog.String("object", o.Name), slog.Int64("after_record", offset), slog.String("error", oe.Error()), slog.Bool("continuing", s.cfg.ContinueOnError))
	if !s.cfg.ContinueOnError {
		s.sticky = oe
	}
}

// applyRewind moves reading back after a nack. Called with readMu held.
func (s *Source) applyRewind() {
	s.ackMu.Lock()
	to := s.rewindTo
	s.rewindTo = -1
	s.ackMu.Unlock()
	if to < 0 {
		return
	}
	s.closeCur()
	// Failures at or after the rewind point will be met again.
	s.failures = slices.DeleteFunc(s.failures, func(f *ObjectError) bool { return f.idx >= to })
	for i := range s.held {
		if i >= to {
			delete(s.held, i)
		}
	}
	if oe, ok := s.sticky.(*ObjectError); ok && oe.idx >= to {
		s.sticky = nil
	}
	var objects, bytes int64
	for i := to; i < s.next; i++ {
		if s.credit[i].object {
			objects++
		}
		bytes += s.credit[i].bytes
		s.credit[i] = credit{}
	}
	s.next = to
	s.progress.uncount(objects, bytes)
}

func (s *Source) addBytes(idx int, n int64) {
	s.credit[idx].bytes += n
	s.progress.addBytes(n)
}

func (s *Source) ackFunc(bs *batchState) ingest.AckFunc {
	return func(ctx context.Context, err error) error {
		s.ackMu.Lock()
		if bs.void || bs.acked {
			s.ackMu.Unlock()
			return nil
		}
		if err != nil {
			// Everything not yet durable is read again, from the first object
			// of the oldest pending batch; what is durable is skipped.
			to := bs.firstObj
			for _, p := range s.pending {
				if p.firstObj >= 0 {
					to = min(to, p.firstObj)
				}
				p.void = true
			}
			s.pending = nil
			if s.rewindTo < 0 || to < s.rewindTo {
				s.rewindTo = to
			}
			s.ackMu.Unlock()
			s.log.WarnContext(ctx, "archive batch not stored; will re-read", slog.Uint64("batch", bs.seq), slog.String("error", Redact(err.Error())))
			return nil
		}
		bs.acked = true
		done := s.settle()
		s.ackMu.Unlock()
		s.progress.addAcked(int64(bs.messages))
		s.fire(done)
		return nil
	}
}

// settle retires the acknowledged prefix of pending batches, advancing the
// acked positions, and returns the completions that became durable. Called
// with ackMu held.
func (s *Source) settle() []Completion {
	var done []Completion
	n := 0
	for _, p := range s.pending {
		if !p.acked {
			break
		}
		for st, off := range p.streams {
			s.acked[st] = max(s.acked[st], off)
		}
		done = append(done, p.completes...)
		n++
	}
	s.pending = slices.Delete(s.pending, 0, n)
	return done
}

func (s *Source) fire(done []Completion) {
	if s.cfg.OnComplete == nil {
		return
	}
	for _, c := range done {
		s.cfg.OnComplete(c)
	}
}

// countingReader counts bytes for progress.
type countingReader struct {
	r       io.Reader
	total   int64
	untaken int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.total += int64(n)
	c.untaken += int64(n)
	return n, err
}

func (c *countingReader) take() int64 {
	n := c.untaken
	c.untaken = 0
	return n
}

var _ ingest.Source = (*Source)(nil)
