package bundle

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync/atomic"

	"github.com/custody-audit/custody/normalize"
	"github.com/custody-audit/custody/storage/trail"
)

// Once the rows are read and ordered, the engine is free and the machine's
// cores are the Go side's: the chains' range proofs (engine queries and
// Merkle hashing) are computed while the data file is written, and the
// lines of the text formats are encoded by several goroutines, then
// written in order.

// chainRuns returns the chains of the ordered rows with their runs, as
// the manifest lists them. A sequence number held twice is an error.
func (s *rowSorter) chainRuns() ([]*Chain, error) {
	var (
		chains []*Chain
		cur    *Chain
		prev   int // index of the previous row
	)
	closeRun := func() error {
		if cur == nil || len(cur.Runs) == 0 {
			return nil
		}
		_, h, err := s.hashes(prev)
		if err != nil {
			return err
		}
		cur.Runs[len(cur.Runs)-1].LastHash = hex.EncodeToString(h[:])
		return nil
	}
	for i, ref := range s.refs {
		name := s.names[ref.chain]
		if cur == nil || cur.Chain != name {
			if err := closeRun(); err != nil {
				return nil, err
			}
			cur = &Chain{Chain: name}
			chains = append(chains, cur)
		}
		switch k := len(cur.Runs); {
		case k > 0 && cur.Runs[k-1].Last+1 == ref.seq:
			cur.Runs[k-1].Last = ref.seq
		case k > 0 && cur.Runs[k-1].Last >= ref.seq:
			return nil, fmt.Errorf("%w: chain %s holds seq %d twice or out of order: run custody verify", ErrStore, name, ref.seq)
		default:
			if err := closeRun(); err != nil {
				return nil, err
			}
			ph, _, err := s.hashes(i)
			if err != nil {
				return nil, err
			}
			cur.Runs = append(cur.Runs, Run{First: ref.seq, Last: ref.seq, PrevHash: hex.EncodeToString(ph[:])})
		}
		cur.Rows++
		prev = i
	}
	if err := closeRun(); err != nil {
		return nil, err
	}
	return chains, nil
}

// proveAll computes every chain's range proof.
func proveAll(ctx context.Context, opts WriteOptions, chains []*Chain) error {
	for _, c := range chains {
		if err := prove(ctx, opts, c); err != nil {
			return fmt.Errorf("prove chain %s: %w", c.Chain, err)
		}
	}
	return nil
}

// prove picks the first signed checkpoint covering the chain's last
// exported row and computes the range proof against it.
func prove(ctx context.Context, opts WriteOptions, c *Chain) error {
	lastSeq := c.Runs[len(c.Runs)-1].Last
	size, root, msg, found, err := opts.Source.CheckpointCovering(ctx, c.Chain, lastSeq)
	if err != nil {
		return fmt.Errorf("read checkpoint: %w", err)
	}
	if !found {
		return fmt.Errorf("no signed checkpoint covers seq %d yet (rows after the newest checkpoint are unattested): export an earlier window or let the collector sign its next batch", lastSeq)
	}
	cp, err := trail.OpenCheckpoint([]byte(msg), opts.Verifier)
	if err != nil {
		return fmt.Errorf("%w: checkpoint at size %d: %w", ErrStore, size, err)
	}
	if cp.Chain != c.Chain || cp.Size != size || cp.Root != root {
		return fmt.Errorf("%w: stored checkpoint columns (size %d) differ from its signed note", ErrStore, size)
	}
	c.Checkpoint, c.TreeSize, c.Root = msg, size, hex.EncodeToString(root[:])

	// Start from the newest stored compact range at or before the first
	// exported row, then read the hashes up to the checkpoint.
	start, hashes, err := opts.Source.CompactRange(ctx, c.Chain, c.Runs[0].First-1)
	if err != nil {
		return fmt.Errorf("read compact range: %w", err)
	}
	b, err := newProofBuilder(c.Runs, size, start, hashes)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrStore, err)
	}
	var feedErr error
	err = opts.Source.Hashes(ctx, c.Chain, start, size, func(seq uint64, h trail.Hash) error {
		if err := b.add(seq, h); err != nil {
			feedErr = err
			return err
		}
		return nil
	})
	if feedErr != nil {
		return fmt.Errorf("%w: %w", ErrStore, feedErr)
	}
	if err != nil {
		return fmt.Errorf("read chain hashes: %w", err)
	}
	gaps, err := b.finish(root)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrStore, err)
	}
	c.Gaps = gaps
	return nil
}

// lineEncoder encodes a row as one line of a text format, line end
// included.
type lineEncoder interface {
	appendLine(dst []byte, r *trail.Row) ([]byte, error)
}

type jsonlLines struct{ enc jsonEncoder }

func (j *jsonlLines) appendLine(dst []byte, r *trail.Row) ([]byte, error) {
	return append(j.enc.appendRow(dst, r), '\n'), nil
}

type ocsfLines struct {
	enc     jsonEncoder
	ocsf    normalize.OCSFWriter
	record  []byte
	escaped []byte
}

func (o *ocsfLines) appendLine(dst []byte, r *trail.Row) ([]byte, error) {
	o.record = o.enc.appendRow(o.record[:0], r)
	dst, err := appendOCSFLine(&o.ocsf, &o.escaped, dst, r, o.record)
	if err != nil {
		return nil, err
	}
	return append(dst, '\n'), nil
}

type csvLines struct{ enc csvEncoder }

func (c *csvLines) appendLine(dst []byte, r *trail.Row) ([]byte, error) {
	return c.enc.appendLine(dst, r), nil
}

// newLineEncoder returns the line encoder of a text format.
func newLineEncoder(format string) lineEncoder {
	switch format {
	case FormatCSV:
		return &csvLines{}
	case FormatOCSF:
		return &ocsfLines{}
	}
	return &jsonlLines{}
}

// writeBatch is a run of ordered rows checked and encoded by one worker:
// into lines (text formats) or decoded rows (Parquet, whose writer is
// sequential).
type writeBatch struct {
	from, to int
	// src holds the rows' encoded bytes, views of the sorter's memory or
	// of spilled, which holds the rows read back from its file.
	src     [][]byte
	spilled []byte
	out     []byte
	rows    []trail.Row
	ids     []string // the rows' event ids, copied
	err     error
}

// writeBatchRows is how many rows a worker handles at a time.
const writeBatchRows = 512

// load takes the batch's rows from rd: views of memory, or copies of
// spilled rows in one buffer (from free when one is big enough).
func (b *writeBatch) load(rd *rowReader, s *rowSorter, free chan []byte) error {
	need := 0
	for _, ref := range s.refs[b.from:b.to] {
		if ref.file {
			need += int(ref.n)
		}
	}
	if need > 0 {
		select {
		case buf := <-free:
			if cap(buf) >= need {
				b.spilled = buf[:need]
			}
		default:
		}
		if b.spilled == nil {
			b.spilled = make([]byte, need)
		}
	}
	b.src = make([][]byte, 0, b.to-b.from)
	at := 0
	for i := b.from; i < b.to; i++ {
		v, err := rd.read(i, b.spilled[at:])
		if err != nil {
			return err
		}
		if s.refs[i].file {
			at += len(v)
		}
		b.src = append(b.src, v)
	}
	return nil
}

// checkRow refuses a row that no longer matches its hash, and, for the
// text formats, one whose lists or maps a text format cannot carry.
func checkRow(h *trail.Hasher, r *trail.Row, text bool) error {
	if got := h.Hash(r); got != r.Hash {
		return fmt.Errorf("%w: chain %s seq %d no longer matches its hash: run custody verify", ErrStore, r.Chain, r.Seq)
	}
	if text {
		if err := listsValid(r); err != nil {
			return fmt.Errorf("chain %s seq %d: %w; export it as parquet", r.Chain, r.Seq, err)
		}
	}
	return nil
}

// writeOrdered checks the ordered rows and writes them in the format of
// opts: text lines to w, or rows through pw when it is set. GOMAXPROCS
// goroutines decode, check and encode batches of rows; they are written
// in order; dups is given every row's event id in that order. progress is
// called with the rows written.
func writeOrdered(ctx context.Context, s *rowSorter, format string, w io.Writer, pw *parquetWriter, dups *duplicateTracker, progress func(n int)) error {
	name := dataFileName(format)
	workers := max(1, runtime.GOMAXPROCS(0))
	// free recycles the batches' line buffers: a batch of lines is
	// megabytes, and growing a fresh one every time costs more than
	// encoding it; spilledFree those of rows read back from disk.
	free := make(chan []byte, 3*workers)
	spilledFree := make(chan []byte, 3*workers)
	var stop atomic.Bool
	var err error
	inOrder(func(send func(*writeBatch)) {
		// the rows in order, spilled runs read sequentially
		rd := s.reader()
		for from := 0; from < len(s.refs) && !stop.Load(); from += writeBatchRows {
			b := &writeBatch{from: from, to: min(from+writeBatchRows, len(s.refs))}
			b.err = b.load(rd, s, spilledFree)
			send(b)
		}
	}, func() func(*writeBatch) {
		enc := newLineEncoder(format)
		var h trail.Hasher
		var r trail.Row
		return func(b *writeBatch) {
			select {
			case b.out = <-free:
			default:
			}
			if pw != nil {
				b.rows = make([]trail.Row, 0, b.to-b.from)
			}
			for _, src := range b.src {
				if b.err != nil || stop.Load() {
					break
				}
				if b.err = decodeRow(src, &r); b.err != nil {
					break
				}
				if b.err = checkRow(&h, &r, pw == nil); b.err != nil {
					break
				}
				b.ids = append(b.ids, strings.Clone(r.Event.ID))
				if pw != nil {
					b.rows = append(b.rows, r)
					continue
				}
				if b.out, b.err = enc.appendLine(b.out, &r); b.err != nil {
					b.err = fmt.Errorf("write %s: %w", name, b.err)
				}
			}
		}
	}, func(b *writeBatch) {
		if err != nil {
			return // draining after a failure
		}
		switch {
		case b.err != nil:
			err = b.err
		case ctx.Err() != nil:
			err = ctx.Err()
		case pw != nil:
			for i := range b.rows {
				if err = pw.write(&b.rows[i]); err != nil {
					err = fmt.Errorf("write %s: %w", name, err)
					break
				}
			}
		default:
			if _, werr := w.Write(b.out); werr != nil {
				err = fmt.Errorf("write %s: %w", name, werr)
			}
		}
		if err != nil {
			stop.Store(true)
			return
		}
		for i, id := range b.ids {
			ref := s.refs[b.from+i]
			dups.add(s.names[ref.chain], ref.seq, id)
		}
		select {
		case free <- b.out[:0]:
		default:
		}
		if pw == nil && b.spilled != nil {
			// Parquet rows are views of it until the writer is done
			select {
			case spilledFree <- b.spilled[:0]:
			default:
			}
		}
		progress(b.to)
	})
	return err
}
