// Package bundle writes auditor bundles of stored events and verifies them
// offline, with nothing but the store's public key.
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
	"regexp"
	"slices"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/custody-audit/custody/normalize"
	"github.com/custody-audit/custody/queries"
	"github.com/custody-audit/custody/storage"
	"github.com/custody-audit/custody/storage/engine"
)

// Options configure an export.
type Options struct {
	// Engine is the store's engine; Database the database holding the
	// trail (empty means queries.DefaultDatabase).
	Engine   engine.Engine
	Database string
	// From (inclusive) and To (exclusive) bound event_time. Required.
	From, To time.Time
	// Chain limits the export to one chain; empty exports all.
	Chain string
	// Query, when set, exports only the events whose event_id the
	// catalogue query returns over [From, To), run with QueryArgs. The
	// query must return an event_id column.
	Query     *queries.Query
	QueryArgs map[string]string
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

	// rowBuffer is how many bytes of rows are held in memory before
	// they spill to a temporary file; 0 means rowBufferBytes. Tests set
	// it to make small exports spill.
	rowBuffer int
}

// Result is what an export wrote.
type Result struct {
	Dir      string
	Manifest *Manifest
	Elapsed  time.Duration
}

// Errors of Export.
var (
	ErrBadOptions = errors.New("bad export options")
	ErrNotEmpty   = errors.New("output directory is not empty")
	ErrNoEventID  = errors.New("query returns no event_id column")
	ErrStore      = errors.New("the store fails its own checks")
)

var identifier = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func (o *Options) check() error {
	switch {
	case o.Engine == nil:
		return fmt.Errorf("%w: no engine", ErrBadOptions)
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
	case o.Database != "" && !identifier.MatchString(o.Database):
		return fmt.Errorf("%w: database name %q must be a plain identifier", ErrBadOptions, o.Database)
	}
	return nil
}

// Export writes a bundle of the selected events to opts.Dir. Nothing is
// left in Dir when it fails.
func Export(ctx context.Context, opts Options) (res *Result, err error) {
	start := time.Now()
	if err := opts.check(); err != nil {
		return nil, err
	}
	if opts.Database == "" {
		opts.Database = queries.DefaultDatabase
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
		Format: BundleFormat, Version: BundleVersion, EventEncoding: storage.EventEncodingVersion,
		CreatedAt: now().UTC().Format(time.RFC3339Nano), CreatedBy: opts.Actor,
		Key:       keyID(opts.Signer.Name(), opts.Signer.KeyHash()),
		Store:     StoreInfo{Engine: opts.Engine.Kind(), Database: opts.Database},
		Selection: Selection{From: formatTime(opts.From), To: formatTime(opts.To), Chain: opts.Chain},
		Data:      opts.Format,
	}
	filter := engine.Params{"from": queries.FormatTime(opts.From), "to": queries.FormatTime(opts.To), "chain": opts.Chain}
	where := "event_time >= {from:DateTime64(6)} AND event_time < {to:DateTime64(6)} AND ({chain:String} = '' OR chain = {chain:String})"
	if opts.Query != nil {
		ids, bound, err := queryEventIDs(ctx, opts)
		if err != nil {
			return nil, err
		}
		m.Selection.Query, m.Selection.Params, m.Selection.Bound = opts.Query.Name, opts.QueryArgs, bound
		filter["ids"] = arrayText(ids)
		where += " AND has({ids:Array(String)}, event_id)"
	}

	var total uint64
	if opts.Progress != nil {
		if total, err = count(ctx, opts, where, filter); err != nil {
			return nil, err
		}
	}
	chains, file, dups, err := writeData(ctx, opts, where, filter, total)
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

// queryEventIDs runs the catalogue query and returns the event ids it
// found (sorted, unique) and the parameters it was bound with.
func queryEventIDs(ctx context.Context, opts Options) ([]string, map[string]string, error) {
	params, err := opts.Query.Bind(opts.QueryArgs, opts.From, opts.To)
	if err != nil {
		return nil, nil, err
	}
	rows, err := queries.Runner{Engine: opts.Engine, Database: opts.Database}.RunBound(ctx, opts.Query, params)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	col := -1
	for i, c := range rows.Columns() {
		if c.Name == "event_id" {
			col = i
		}
	}
	if col < 0 {
		return nil, nil, fmt.Errorf("%w: %s answers with aggregates, not events; export the window instead, or a query listing events", ErrNoEventID, opts.Query.Name)
	}
	seen := map[string]bool{}
	var ids []string
	for rows.Next() {
		id := rows.Values()[col]
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("query %s: %w", opts.Query.Name, err)
	}
	slices.Sort(ids)
	bound := make(map[string]string, len(params))
	for k, v := range params {
		bound[k] = v
	}
	return ids, bound, nil
}

// arrayText renders an Array(String) parameter value.
func arrayText(items []string) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, it := range items {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('\'')
		for j := 0; j < len(it); j++ {
			if it[j] == '\'' || it[j] == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(it[j])
		}
		b.WriteByte('\'')
	}
	b.WriteByte(']')
	return b.String()
}

func count(ctx context.Context, opts Options, where string, p engine.Params) (uint64, error) {
	rows, err := opts.Engine.Query(ctx, "SELECT count() FROM "+opts.Database+".events WHERE "+where, p)
	if err != nil {
		return 0, fmt.Errorf("count events: %w", err)
	}
	defer rows.Close()
	var n uint64
	for rows.Next() {
		if err := rows.Scan(&n); err != nil {
			return 0, fmt.Errorf("count events: %w", err)
		}
	}
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("count events: %w", err)
	}
	return n, nil
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
func writeData(ctx context.Context, opts Options, where string, p engine.Params, total uint64) (chains []*Chain, fi FileInfo, dups *duplicateTracker, err error) {
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

	sorted, err := readRows(ctx, opts, where, p, total)
	if err != nil {
		return nil, fi, nil, err
	}
	defer sorted.close()
	chains, err = sorted.chainRuns()
	if err != nil {
		return nil, fi, nil, err
	}
	// The proofs need the engine and the rows' order only: they are
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

// readRows reads the selected rows in storage order (see order.go) and
// returns them ready to be taken in chain and sequence order. Their
// hashes are checked as they are written (writeOrdered).
func readRows(ctx context.Context, opts Options, where string, p engine.Params, total uint64) (*rowSorter, error) {
	rows, err := opts.Engine.Query(ctx, "SELECT "+storage.EventColumnList()+" FROM "+opts.Database+".events WHERE "+where, p)
	if err != nil {
		return nil, fmt.Errorf("read events: %w", err)
	}
	defer rows.Close()
	limit := rowBufferBytes
	if opts.rowBuffer > 0 {
		limit = opts.rowBuffer
	}
	s := newRowSorter(limit)
	// Rows are scanned here and buffered by a second goroutine, a batch
	// at a time, so that the two overlap.
	scanned := make(chan []storage.Row, 1)
	recycled := make(chan []storage.Row, 2)
	recycled <- make([]storage.Row, 0, readBatchRows)
	recycled <- make([]storage.Row, 0, readBatchRows)
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
		for rows.Next() {
			batch = append(batch, storage.Row{})
			if err := storage.ScanRow(rows, &batch[len(batch)-1]); err != nil {
				return fmt.Errorf("read events: %w", err)
			}
			if len(batch) == cap(batch) {
				scanned <- batch
				batch = <-recycled
			}
			n++
			if opts.Progress != nil && n%4096 == 0 {
				opts.Progress(n/2, max(n, total))
			}
		}
		scanned <- batch
		if err := rows.Err(); err != nil {
			return fmt.Errorf("read events: %w", err)
		}
		if err := rows.Close(); err != nil {
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

// ocsfDocument is the OCSF event derived from r (normalize.OCSF over the
// row's event with empty lists and maps in one form).
func ocsfDocument(r *storage.Row) map[string]any {
	c := *r
	normalizeRow(&c)
	return normalize.OCSF(c.Event)
}

// prove picks the first signed checkpoint covering the chain's last
// exported row and computes the range proof against it.
func prove(ctx context.Context, opts Options, c *Chain) error {
	lastSeq := c.Runs[len(c.Runs)-1].Last
	db := opts.Database
	var (
		size  uint64
		root  storage.Hash
		msg   string
		found bool
	)
	err := engine.Each(ctx, opts.Engine, "SELECT tree_size, root_hash, note FROM "+db+".checkpoints WHERE chain = {chain:String} AND tree_size >= {seq:UInt64} ORDER BY tree_size LIMIT 1",
		engine.Params{"chain": c.Chain, "seq": fmt.Sprint(lastSeq)}, func(r engine.Rows) error {
			found = true
			return r.Scan(&size, &root, &msg)
		})
	if err != nil {
		return fmt.Errorf("read checkpoint: %w", err)
	}
	if !found {
		return fmt.Errorf("no signed checkpoint covers seq %d yet (rows after the newest checkpoint are unattested): export an earlier window or let the collector sign its next batch", lastSeq)
	}
	cp, err := storage.OpenCheckpoint([]byte(msg), opts.Verifier)
	if err != nil {
		return fmt.Errorf("%w: checkpoint at size %d: %w", ErrStore, size, err)
	}
	if cp.Chain != c.Chain || cp.Size != size || cp.Root != root {
		return fmt.Errorf("%w: stored checkpoint columns (size %d) differ from its signed note", ErrStore, size)
	}
	c.Checkpoint, c.TreeSize, c.Root = msg, size, hex.EncodeToString(root[:])

	// Start from the newest stored compact range at or before the first
	// exported row, then read the hashes up to the checkpoint.
	first := c.Runs[0].First - 1
	var start uint64
	var hashes [][]byte
	err = engine.Each(ctx, opts.Engine, "SELECT tree_size, compact_range FROM "+db+".checkpoints WHERE chain = {chain:String} AND tree_size <= {seq:UInt64} ORDER BY tree_size DESC LIMIT 1",
		engine.Params{"chain": c.Chain, "seq": fmt.Sprint(first)}, func(r engine.Rows) error {
			var hs []string
			if err := r.Scan(&start, &hs); err != nil {
				return err
			}
			hashes = make([][]byte, len(hs))
			for i, h := range hs {
				hashes[i] = []byte(h)
			}
			return nil
		})
	if err != nil {
		return fmt.Errorf("read compact range: %w", err)
	}
	b, err := newProofBuilder(c.Runs, size, start, hashes)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrStore, err)
	}
	var feedErr error
	err = engine.Each(ctx, opts.Engine, "SELECT seq, hash FROM "+db+".events WHERE chain = {chain:String} AND seq > {after:UInt64} AND seq <= {size:UInt64} ORDER BY seq",
		engine.Params{"chain": c.Chain, "after": fmt.Sprint(start), "size": fmt.Sprint(size)}, func(r engine.Rows) error {
			var seq uint64
			var h storage.Hash
			if err := r.Scan(&seq, &h); err != nil {
				return err
			}
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
