// Package bundle is the auditor evidence bundle: its format and codecs
// (jsonl, csv, parquet, ocsf), the writer (Write, fed by a Source), the
// signed manifest and Merkle proofs, and the offline verifier (Verify),
// which needs nothing but the store's public key. It imports no store and
// no engine (TestVerifierImportsNoStore): bundle/export reads the rows,
// checkpoints and hashes of a Custody store for Write.
//
// An auditor should not have to trust the system that produced the
// evidence, nor have access to it. A bundle therefore carries every stored
// field of each exported event (so each row's hash can be recomputed), the
// signed checkpoint covering each chain's rows, a Merkle range proof tying
// the rows to that checkpoint's root, and a manifest with the SHA-256 of
// every file, itself signed with the store's key. Verify checks all of it
// and reports, by file, line and sequence number, anything altered,
// missing or added.
//
// The bundle layout and every encoding are specified in
// storage/docs/format/export-v1.md.
package bundle

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/custody-audit/custody/storage/trail"
)

// Source is the store as Write reads it. Package bundle/export implements
// it over a store's engine; this package imports no store, so that the
// verifier an auditor runs depends on none.
type Source interface {
	// Count returns how many rows Rows gives. Write asks only when it
	// reports progress.
	Count(ctx context.Context) (uint64, error)
	// Rows calls fn with each selected row, in any order. fn keeps a
	// shallow copy: the source must not reuse a row's strings or slices
	// after fn returns.
	Rows(ctx context.Context, fn func(r *trail.Row) error) error
	// CheckpointCovering returns the first stored checkpoint of chain
	// whose tree size is at least seq, as stored: its size and root
	// columns and its signed note. found is false when there is none.
	CheckpointCovering(ctx context.Context, chain string, seq uint64) (size uint64, root trail.Hash, note string, found bool, err error)
	// CompactRange returns the newest stored compact range of chain at a
	// tree size of at most seq: the size and the range's hashes; size 0
	// and no hashes when there is none.
	CompactRange(ctx context.Context, chain string, seq uint64) (size uint64, hashes [][]byte, err error)
	// Hashes calls fn with the sequence number and stored hash of every
	// row of chain in (after, upto], in sequence order.
	Hashes(ctx context.Context, chain string, after, upto uint64, fn func(seq uint64, h trail.Hash) error) error
}

// WriteOptions configure Write.
type WriteOptions struct {
	// Source gives the selected rows and the chains' checkpoints and
	// hashes; Store names it in the manifest.
	Source Source
	Store  StoreInfo
	// From (inclusive) and To (exclusive) bound event_time, Chain names
	// the one chain exported (empty: all); Query, QueryParams and
	// QueryBound record the catalogue query that chose the events, if
	// any. The source applies the selection; the manifest records it.
	From, To    time.Time
	Chain       string
	Query       string
	QueryParams map[string]string
	QueryBound  map[string]string
	Output
}

// Output is how and where a bundle is written and who signs it: the
// part of the options the store-side export (bundle/export) passes on
// unchanged.
type Output struct {
	// Format is one of Formats().
	Format string
	// Dir receives the bundle. It is created, and must be empty if it
	// exists.
	Dir string
	// Signer signs the manifest: the store's checkpoint signing key.
	Signer note.Signer
	// Verifier is the store's verification key. Checkpoints are checked
	// with it at export, and it must be Signer's public half, so that the
	// one key an auditor holds checks the whole bundle.
	Verifier note.Verifier
	// Actor is recorded as the bundle's creator.
	Actor string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Progress, when set, is called as rows are written.
	Progress func(done, total uint64)
	// RowBuffer is how many bytes of rows are held in memory before they
	// spill to a temporary file; 0 means 64 MiB. Tests set it small to
	// make small exports spill.
	RowBuffer int
}

// Result is what an export wrote.
type Result struct {
	Dir      string
	Manifest *Manifest
	Elapsed  time.Duration
}

// Errors of Write.
var (
	ErrBadOptions = errors.New("bad export options")
	ErrNotEmpty   = errors.New("output directory is not empty")
	ErrStore      = errors.New("the store fails its own checks")
)

func (o *WriteOptions) check() error {
	switch {
	case o.Source == nil:
		return fmt.Errorf("%w: no source of rows", ErrBadOptions)
	case o.Signer == nil:
		return fmt.Errorf("%w: a signing key is required to sign the manifest", ErrBadOptions)
	case o.Verifier == nil:
		return fmt.Errorf("%w: the store's verification key is required", ErrBadOptions)
	case o.Signer.Name() != o.Verifier.Name() || o.Signer.KeyHash() != o.Verifier.KeyHash():
		return fmt.Errorf("%w: the signing key %s is not the pair of the verification key %s", ErrBadOptions,
			keyID(o.Signer.Name(), o.Signer.KeyHash()), keyID(o.Verifier.Name(), o.Verifier.KeyHash()))
	case o.From.IsZero() || o.To.IsZero():
		return fmt.Errorf("%w: --from and --to are required", ErrBadOptions)
	case !o.From.Before(o.To):
		return fmt.Errorf("%w: from %s is not before to %s", ErrBadOptions, formatTime(o.From), formatTime(o.To))
	case !slices.Contains(Formats(), o.Format):
		return fmt.Errorf("%w: format %q (want %s)", ErrBadOptions, o.Format, strings.Join(Formats(), ", "))
	case o.Dir == "":
		return fmt.Errorf("%w: no output directory", ErrBadOptions)
	}
	return nil
}

// Write writes a bundle of the source's rows to opts.Dir. Nothing is left
// in Dir when it fails.
func Write(ctx context.Context, opts WriteOptions) (res *Result, err error) {
	start := time.Now()
	if err := opts.check(); err != nil {
		return nil, err
	}
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	created, err := prepareDir(opts.Dir)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			cleanup(opts.Dir, created, opts.Format)
		}
	}()

	m := &Manifest{
		Format: BundleFormat, Version: BundleVersion, EventEncoding: trail.EventEncodingVersion,
		CreatedAt: now().UTC().Format(time.RFC3339Nano), CreatedBy: opts.Actor,
		Key:   keyID(opts.Signer.Name(), opts.Signer.KeyHash()),
		Store: opts.Store,
		Selection: Selection{From: formatTime(opts.From), To: formatTime(opts.To), Chain: opts.Chain,
			Query: opts.Query, Params: opts.QueryParams, Bound: opts.QueryBound},
		Data: opts.Format,
	}
	var total uint64
	if opts.Progress != nil {
		if total, err = opts.Source.Count(ctx); err != nil {
			return nil, fmt.Errorf("count events: %w", err)
		}
	}
	chains, file, dups, err := writeData(ctx, opts, total)
	if err != nil {
		return nil, err
	}
	m.Files = []FileInfo{file}
	m.Rows = file.Rows
	events := dups.events()
	db := encodeDuplicates(dups.dups)
	if err := writeFileSync(filepath.Join(opts.Dir, DuplicatesFile), db); err != nil {
		return nil, err
	}
	dsum := sha256.Sum256(db)
	m.Events = &events
	m.Duplicates = &FileInfo{Name: DuplicatesFile, SHA256: hex.EncodeToString(dsum[:]), Bytes: int64(len(db)), Rows: uint64(len(dups.dups))}
	for _, c := range chains {
		m.Chains = append(m.Chains, *c)
	}
	if m.Chains == nil {
		m.Chains = []Chain{}
	}
	mb, err := encodeManifest(m)
	if err != nil {
		return nil, err
	}
	sig, err := signManifest(mb, opts.Signer)
	if err != nil {
		return nil, err
	}
	if err := writeFileSync(filepath.Join(opts.Dir, ManifestFile), mb); err != nil {
		return nil, err
	}
	if err := writeFileSync(filepath.Join(opts.Dir, SignatureFile), sig); err != nil {
		return nil, err
	}
	return &Result{Dir: opts.Dir, Manifest: m, Elapsed: time.Since(start)}, nil
}

// prepareDir creates dir or checks that it is empty; created says whether
// it was created here.
func prepareDir(dir string) (created bool, err error) {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return false, fmt.Errorf("create output directory: %w", err)
		}
		return true, nil
	case err != nil:
		return false, fmt.Errorf("read output directory: %w", err)
	case len(entries) > 0:
		return false, fmt.Errorf("%w: %s", ErrNotEmpty, dir)
	}
	return false, nil
}

// cleanup removes what a failed export wrote.
func cleanup(dir string, created bool, format string) {
	for _, n := range []string{dataFileName(format), DuplicatesFile, ManifestFile, SignatureFile} {
		_ = os.Remove(filepath.Join(dir, n))
	}
	if created {
		_ = os.Remove(dir)
	}
}

func writeFileSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", filepath.Base(path), err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	return nil
}

// countingWriter hashes and counts what passes through it.
type countingWriter struct {
	w io.Writer
	h hash.Hash
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.h.Write(p)
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// writeData writes the data file and returns the chains it holds, with
// their runs, the file's description and its repeated event ids.
func writeData(ctx context.Context, opts WriteOptions, total uint64) (chains []*Chain, fi FileInfo, dups *duplicateTracker, err error) {
	name := dataFileName(opts.Format)
	f, err := os.OpenFile(filepath.Join(opts.Dir, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return nil, fi, nil, fmt.Errorf("create %s: %w", name, err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("close %s: %w", name, cerr)
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<20)
	cw := &countingWriter{w: bw, h: sha256.New()}
	var pw *parquetWriter
	switch opts.Format {
	case FormatCSV:
		if err := writeCSVHeader(cw); err != nil {
			return nil, fi, nil, err
		}
	case FormatParquet:
		pw = newParquetWriter(cw)
	}

	sorted, err := readRows(ctx, opts, total)
	if err != nil {
		return nil, fi, nil, err
	}
	defer sorted.close()
	chains, err = sorted.chainRuns()
	if err != nil {
		return nil, fi, nil, err
	}
	// The proofs need the source and the rows' order only: they are
	// computed while the file is written. Either failing stops the other.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	proved := make(chan error, 1)
	go func() {
		err := proveAll(wctx, opts, chains)
		if err != nil {
			cancel()
		}
		proved <- err
	}()
	n := len(sorted.refs)
	progress := func(done int) {
		if opts.Progress != nil {
			// reading was the first half of the work
			opts.Progress(half(n)+uint64(done)/2, uint64(n))
		}
	}
	dups = newDuplicateTracker()
	err = writeOrdered(wctx, sorted, opts.Format, cw, pw, dups, progress)
	if err == nil && pw != nil {
		err = pw.close()
	}
	if err != nil {
		cancel()
	}
	if perr := <-proved; perr != nil && ctx.Err() == nil && (err == nil || errors.Is(err, context.Canceled)) {
		return nil, fi, nil, perr // the writing was stopped by this
	}
	if err != nil {
		return nil, fi, nil, err
	}
	if err := bw.Flush(); err != nil {
		return nil, fi, nil, fmt.Errorf("write %s: %w", name, err)
	}
	if err := f.Sync(); err != nil {
		return nil, fi, nil, fmt.Errorf("sync %s: %w", name, err)
	}
	if opts.Progress != nil {
		opts.Progress(uint64(n), uint64(n))
	}
	return chains, FileInfo{Name: name, SHA256: hex.EncodeToString(cw.h.Sum(nil)), Bytes: cw.n, Rows: uint64(n)}, dups, nil
}

// readRows reads the selected rows from the source and returns them
// ready to be taken in chain and sequence order (see order.go). Their
// hashes are checked as they are written (writeOrdered).
func readRows(ctx context.Context, opts WriteOptions, total uint64) (*rowSorter, error) {
	limit := rowBufferBytes
	if opts.RowBuffer > 0 {
		limit = opts.RowBuffer
	}
	s := newRowSorter(limit)
	// Rows are read here and buffered by a second goroutine, a batch at
	// a time, so that the two overlap.
	scanned := make(chan []trail.Row, 1)
	recycled := make(chan []trail.Row, 2)
	recycled <- make([]trail.Row, 0, readBatchRows)
	recycled <- make([]trail.Row, 0, readBatchRows)
	added := make(chan error, 1)
	go func() {
		var err error
		for batch := range scanned {
			for i := range batch {
				if err == nil {
					err = s.add(&batch[i])
				}
			}
			recycled <- batch[:0]
		}
		added <- err
	}()
	readErr := func() error {
		defer close(scanned)
		batch := <-recycled
		var n uint64
		err := opts.Source.Rows(ctx, func(r *trail.Row) error {
			batch = append(batch, *r)
			if len(batch) == cap(batch) {
				scanned <- batch
				batch = <-recycled
			}
			n++
			if opts.Progress != nil && n%4096 == 0 {
				opts.Progress(n/2, max(n, total))
			}
			return nil
		})
		scanned <- batch
		if err != nil {
			return fmt.Errorf("read events: %w", err)
		}
		return nil
	}()
	if err := errors.Join(readErr, <-added); err != nil {
		s.close()
		return nil, err
	}
	if err := s.sort(); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

// readBatchRows is how many scanned rows are handed to the buffering
// goroutine at a time.
const readBatchRows = 256

// half is n/2 for progress reports.
func half(n int) uint64 { return uint64(n) / 2 }

// ocsfRecordKey is where an OCSF line keeps the custody row.
const ocsfRecordKey = "custody_record"
