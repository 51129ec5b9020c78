package normalize

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"strconv"
	"strings"
	"time"
)

// DefaultMaxRecordBytes is the default longest top-level value
// ProcessStream reads whole (StreamOptions.MaxRecordBytes).
const DefaultMaxRecordBytes = 64 << 20

// StreamOptions says how ProcessStream reads one file or pipe.
type StreamOptions struct {
	// Format, SourceKind, Received and Attributes are those of Input.
	Format     string
	SourceKind string
	Received   time.Time
	Attributes map[string]string
	// Position names the input (a file name, "stdin"). As in Process, a
	// stream of several top-level values gives value k the position
	// "<Position>/k", a stream of one value the position itself.
	Position string
	// MaxRecordBytes is the longest top-level value read whole; a longer
	// one is quarantined with its first MaxRecordBytes bytes and a reason
	// naming the limit and the whole value's SHA-256 (OversizeReason). It
	// bounds the memory ProcessStream uses. 0 means DefaultMaxRecordBytes.
	MaxRecordBytes int
}

// streamReadSize is how much ProcessStream reads at a time.
const streamReadSize = 256 << 10

// dedupeWindow is how many event ids of earlier values ProcessStream
// remembers to drop a second stage of the same Kubernetes audit id (see
// DropDuplicateStage): two generations of this many.
const dedupeWindow = 1 << 15

// ProcessStream normalizes a whole input read from r as it goes, with
// memory bounded by the longest top-level value (MaxRecordBytes) whatever
// the input's size: JSON Lines (a PT1H.json, Event Hubs bodies one per
// line), a {"records":[...]} body, pretty-printed values back to back.
// fn receives the Result of each top-level value in input order; the Raw
// bytes of its events and quarantined records point into a buffer that is
// reused once fn returns.
//
// For any input whose values are each within MaxRecordBytes the results
// add up to what Process gives for the whole input as one Body (events,
// quarantined records, drop counts and positions), except that a second
// stage of a Kubernetes audit id more than about 32k events after the
// first is no longer recognised as a duplicate. The error is ctx's, r's or
// fn's.
func (n *Normalizer) ProcessStream(ctx context.Context, r io.Reader, o StreamOptions, fn func(*Result) error) error {
	if o.MaxRecordBytes <= 0 {
		o.MaxRecordBytes = DefaultMaxRecordBytes
	}
	s := &streamer{n: n, r: r, o: o, fn: fn, seed: maphash.MakeSeed(), pending: -1}
	s.format = strings.ToLower(strings.TrimSpace(o.Format))
	if s.format == "" {
		s.format = FormatAuto
	}
	return s.run(ctx)
}

type streamer struct {
	n      *Normalizer
	r      io.Reader
	o      StreamOptions
	fn     func(*Result) error
	format string

	buf  []byte // buf[:end] holds input from offset base on
	end  int
	base int64
	eof  bool

	units     int   // top-level values found so far
	slowUntil int64 // values starting before this offset skip the line-end attempt (see value)
	pending   int64 // start of the first value while it is not known whether a second follows; -1 if none
	first     span

	seed      maphash.Seed
	seen, old map[uint64]struct{}
}

// span is one top-level value [start, stop) in input offsets; reason is
// set when it is not valid JSON, raw when it was cut at the limit.
type span struct {
	start, stop int64
	reason      string
	raw         []byte
	res         *Result // the value normalized already (see value)
	release     func()  // returns res's working memory
}

func (s *streamer) at(off int64) int { return int(off - s.base) }

// fill reads at least want more bytes of input (less at its end), first
// dropping what lies before keep. Callers waiting for the end of a value
// ask for as much again as they hold, so a long value read in small
// pieces (a pipe) is scanned a bounded number of times.
func (s *streamer) fill(keep int64, want int) error {
	if s.eof {
		return nil
	}
	if k := s.at(keep); k > 0 {
		copy(s.buf, s.buf[k:s.end])
		s.end -= k
		s.base = keep
	}
	if space := max(want, streamReadSize); len(s.buf)-s.end < space {
		nb := make([]byte, max(2*len(s.buf), s.end+space))
		copy(nb, s.buf[:s.end])
		s.buf = nb
	}
	for goal := s.end + max(want, 1); s.end < goal; {
		m, err := s.r.Read(s.buf[s.end:])
		s.end += m
		if errors.Is(err, io.EOF) {
			s.eof = true
			return nil
		}
		if err != nil {
			return fmt.Errorf("read input: %w", err)
		}
	}
	return nil
}

func (s *streamer) keep(off int64) int64 {
	if s.pending >= 0 {
		return min(s.pending, off)
	}
	return off
}

func (s *streamer) run(ctx context.Context) error {
	cur := int64(0)
	for s.end < 3 && !s.eof {
		if err := s.fill(0, 0); err != nil {
			return err
		}
	}
	if bytes.HasPrefix(s.buf[:s.end], []byte("\xef\xbb\xbf")) {
		cur = 3
	}
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("normalize %s: %w", s.o.Position, err)
		}
		// The next value's start.
		for {
			j := skipSpace(s.buf[:s.end], s.at(cur))
			cur = s.base + int64(j)
			if j < s.end || s.eof {
				break
			}
			if err := s.fill(s.keep(cur), 0); err != nil {
				return err
			}
		}
		if s.at(cur) >= s.end {
			break
		}
		sp, err := s.value(ctx, cur)
		if err != nil {
			return err
		}
		cur = sp.stop
		if err := s.unit(ctx, sp); err != nil {
			return err
		}
	}
	switch {
	case s.pending >= 0:
		return s.emit(ctx, s.first, s.o.Position)
	case s.units == 0:
		res := Result{}
		res.drop(DropEmptyMessage)
		return s.fn(&res)
	}
	return nil
}

// value finds the extent of the top-level value starting at start.
//
// After the first value it first tries the cheap way, which JSON Lines
// (a PT1H.json, bodies one per line) always take: the rest of the line,
// found by IndexByte, normalized at once. Process reports whether that
// was exactly one valid value, which is then the very span the
// validating scan would have found (a valid value has one end). Otherwise
// (a pretty-printed value, two values on a line, invalid JSON), and always
// for the first value, whose position is not known yet, the validating
// scan decides and the cheap attempt's result is dropped.
func (s *streamer) value(ctx context.Context, start int64) (span, error) {
	max := s.o.MaxRecordBytes
	for s.units > 0 && start >= s.slowUntil {
		i := s.at(start)
		if c := s.buf[i]; c != '{' && c != '[' {
			break
		}
		e := s.end
		if k := bytes.IndexByte(s.buf[i:s.end], '\n'); k >= 0 {
			e = i + k
		} else if !s.eof {
			if s.end-i >= max {
				break
			}
			if err := s.fill(s.keep(start), s.end-i); err != nil {
				return span{}, err
			}
			continue
		}
		if e-i > max {
			break // the validating scan deals with it
		}
		pos := joinPos(s.o.Position, strconv.Itoa(s.units))
		res, ok, release, err := s.n.process(ctx, Input{Body: s.buf[i:e], Format: s.o.Format, SourceKind: s.o.SourceKind,
			Position: pos, Received: s.o.Received, Attributes: s.o.Attributes}, true)
		if err != nil {
			return span{}, err
		}
		if !ok {
			// Not one value: the rest of this line takes the validating
			// scan (trying each value's rest of line again would take
			// time quadratic in the values on a line).
			release()
			s.slowUntil = s.base + int64(e)
			break
		}
		return span{start: start, stop: s.base + int64(e), res: &res, release: release}, nil
	}
	for {
		i := s.at(start)
		e, err := skipValue(s.buf[:s.end], i, 0)
		if err == nil && (e < s.end || s.eof) {
			if e-i > max {
				return s.oversize(ctx, start)
			}
			return span{start: start, stop: s.base + int64(e)}, nil
		}
		if s.eof || (err != nil && !s.needMore(err)) {
			return s.invalid(ctx, start, err)
		}
		if s.end-i > max {
			return s.oversize(ctx, start)
		}
		if err := s.fill(s.keep(start), s.end-i); err != nil {
			return span{}, err
		}
	}
}

// needMore reports whether a scan error may only mean the buffer ends
// inside the value.
func (s *streamer) needMore(err error) bool {
	if errors.Is(err, errUnexpectedEnd) {
		return true
	}
	var se *syntaxError
	return errors.As(err, &se) && s.end-se.off < 16
}

// invalid makes the span of a value that is not valid JSON: as Process
// does, it runs to the next line that starts with '{'.
func (s *streamer) invalid(ctx context.Context, start int64, err error) (span, error) {
	var se *syntaxError
	if errors.As(err, &se) {
		err = &syntaxError{msg: se.msg, off: se.off + int(s.base)}
	}
	reason := "invalid JSON: " + err.Error()
	searched := start
	for {
		from := s.at(searched)
		if k := bytes.Index(s.buf[from:s.end], []byte("\n{")); k >= 0 {
			return span{start: start, stop: s.base + int64(from+k+1), reason: reason}, nil
		}
		if s.eof {
			return span{start: start, stop: s.base + int64(s.end), reason: reason}, nil
		}
		if s.end-s.at(start) > s.o.MaxRecordBytes {
			sp, err := s.oversize(ctx, start)
			sp.reason = reason + "; " + sp.reason
			return sp, err
		}
		searched = max(start, s.base+int64(s.end)-1)
		if err := s.fill(s.keep(start), s.end-s.at(start)); err != nil {
			return span{}, err
		}
	}
}

// oversize quarantines a value longer than MaxRecordBytes: its first
// MaxRecordBytes bytes are kept and it runs, as an invalid value does, to
// the next line that starts with '{', hashed all the way (without the
// whitespace before that line).
func (s *streamer) oversize(ctx context.Context, start int64) (span, error) {
	limit := s.o.MaxRecordBytes
	if s.pending >= 0 {
		// The first value cannot be held any longer: it is the first of
		// several.
		s.pending = -1
		if err := s.emit(ctx, s.first, joinPos(s.o.Position, "0")); err != nil {
			return span{}, err
		}
	}
	raw := bytes.Clone(s.buf[s.at(start) : s.at(start)+limit])
	h := sha256.New()
	hashed := start // input before this offset is hashed
	searched := start
	for {
		from := s.at(searched)
		stop := s.base + int64(s.end)
		k := bytes.Index(s.buf[from:s.end], []byte("\n{"))
		if k >= 0 {
			stop = s.base + int64(from+k+1)
		}
		// Hash up to the last non-space byte before stop.
		last := bytes.TrimRight(s.buf[s.at(hashed):s.at(stop)], " \t\r\n")
		h.Write(last)
		hashed += int64(len(last))
		if k >= 0 || s.eof {
			var sum [32]byte
			h.Sum(sum[:0])
			return span{start: start, stop: stop, raw: raw, reason: OversizeReason(hashed-start, int64(limit), sum)}, nil
		}
		searched = max(start, stop-1)
		if err := s.fill(min(hashed, searched), 0); err != nil {
			return span{}, err
		}
	}
}

// unit handles the value sp: the first is held until it is known whether
// another follows (which decides its position), as long as it is in the
// buffer.
func (s *streamer) unit(ctx context.Context, sp span) error {
	s.units++
	switch {
	case s.units == 1 && sp.raw == nil:
		s.pending, s.first = sp.start, sp
		return nil
	case s.pending >= 0:
		first := s.first
		s.pending = -1
		if err := s.emit(ctx, first, joinPos(s.o.Position, "0")); err != nil {
			return err
		}
	}
	pos := joinPos(s.o.Position, strconv.Itoa(s.units-1))
	if s.units == 1 {
		pos = s.o.Position // an oversize first value: taken as the only one
	}
	return s.emit(ctx, sp, pos)
}

// emit normalizes one value and hands the result to fn.
func (s *streamer) emit(ctx context.Context, sp span, pos string) error {
	if sp.res != nil {
		defer sp.release()
		s.dedupe(sp.res)
		return s.fn(sp.res)
	}
	if sp.reason != "" {
		raw := sp.raw
		if raw == nil {
			raw = s.buf[s.at(sp.start):s.at(sp.stop)]
		}
		res := Result{}
		res.quarantine(raw, s.format, pos, sp.reason)
		return s.fn(&res)
	}
	res, _, release, err := s.n.process(ctx, Input{Body: s.buf[s.at(sp.start):s.at(sp.stop)], Format: s.o.Format, SourceKind: s.o.SourceKind,
		Position: pos, Received: s.o.Received, Attributes: s.o.Attributes}, true)
	defer release()
	if err != nil {
		return err
	}
	s.dedupe(&res)
	return s.fn(&res)
}

// dedupe drops, as Process does within one value, a second stage of a
// Kubernetes audit id already seen in an earlier value.
func (s *streamer) dedupe(res *Result) {
	if s.seen == nil {
		s.seen = make(map[uint64]struct{}, 1024)
	}
	kept := res.Events[:0]
	for i := range res.Events {
		e := &res.Events[i]
		h := maphash.String(s.seed, e.ID)
		_, dup := s.seen[h]
		if !dup {
			_, dup = s.old[h]
		}
		if dup && e.Attributes["id_source"] == "k8s_audit_id" {
			res.drop(DropDuplicateStage)
			continue
		}
		if len(s.seen) >= dedupeWindow {
			s.old, s.seen = s.seen, make(map[uint64]struct{}, dedupeWindow)
		}
		s.seen[h] = struct{}{}
		kept = append(kept, *e)
	}
	res.Events = kept
}
