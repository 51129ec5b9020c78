package bundle

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/custody-audit/custody/storage/trail"
)

// FindingKind classifies what bundle verification found. Every kind fails
// verification.
type FindingKind string

// Finding kinds.
const (
	KindBadSignature FindingKind = "bad_signature" // the manifest's or a checkpoint's signature does not verify with the key
	KindManifest     FindingKind = "manifest"      // manifest.json altered, unreadable or inconsistent
	KindFileMissing  FindingKind = "file_missing"  // a file the manifest lists is not in the bundle
	KindFileAdded    FindingKind = "file_added"    // a file in the bundle the manifest does not list
	KindFileAltered  FindingKind = "file_altered"  // a file's SHA-256, size or row count differs from the manifest
	KindMalformed    FindingKind = "malformed"     // a line or record that cannot be read as a row
	KindModified     FindingKind = "modified"      // a row's fields do not hash to its hash
	KindChainBreak   FindingKind = "chain_break"   // prev_hash does not link to the previous row, or a run's ends differ from the manifest
	KindMissing      FindingKind = "missing"       // rows the manifest lists are not in the data
	KindAdded        FindingKind = "added"         // a row the manifest does not list, or a row repeated
	KindOutOfOrder   FindingKind = "out_of_order"  // a row listed by the manifest, found after rows that follow it
	KindRootMismatch FindingKind = "root_mismatch" // the rows and the range proof do not reproduce the signed root
	KindOCSFMismatch FindingKind = "ocsf_mismatch" // an OCSF line's fields differ from those derived from its row
	KindDuplicates   FindingKind = "duplicates"    // duplicates.jsonl or the manifest's event count differ from the data's repeated event ids
)

// Finding is one problem, located as precisely as the bundle allows.
type Finding struct {
	Kind FindingKind `json:"kind"`
	File string      `json:"file,omitempty"`
	// Line is the 1-based line (jsonl, ocsf), record (csv, header not
	// counted) or row (parquet) number within File.
	Line   uint64 `json:"line,omitempty"`
	Chain  string `json:"chain,omitempty"`
	Seq    uint64 `json:"seq,omitempty"`
	Detail string `json:"detail"`
}

func (f Finding) String() string {
	var b strings.Builder
	b.WriteString(string(f.Kind))
	b.WriteString(":")
	if f.File != "" {
		b.WriteString(" " + f.File)
		if f.Line > 0 {
			fmt.Fprintf(&b, " %s %d", unitOf(f.File), f.Line)
		}
		b.WriteString(":")
	}
	if f.Chain != "" {
		fmt.Fprintf(&b, " chain %s", f.Chain)
		if f.Seq > 0 {
			fmt.Fprintf(&b, " seq %d", f.Seq)
		}
		b.WriteString(":")
	}
	b.WriteString(" " + f.Detail)
	return b.String()
}

// unitOf names what Finding.Line counts in a data file.
func unitOf(file string) string {
	switch {
	case strings.HasSuffix(file, ".csv"):
		return "record"
	case strings.HasSuffix(file, ".parquet"):
		return "row"
	}
	return "line"
}

// maxFindings bounds the findings a report lists; the rest are counted.
const maxFindings = 1000

// Report is the outcome of Verify.
type Report struct {
	Dir  string `json:"dir"`
	Key  string `json:"key"`
	Rows uint64 `json:"rows"`
	// Events is the number of distinct event ids among the rows read,
	// recomputed from the data: what the canned queries count.
	Events     uint64        `json:"events"`
	Files      int           `json:"files"`
	Chains     int           `json:"chains"`
	Findings   []Finding     `json:"findings"`
	Suppressed int           `json:"suppressed"` // findings beyond maxFindings, not listed
	Elapsed    time.Duration `json:"elapsed_ns"`
}

// OK reports whether the bundle verified.
func (r *Report) OK() bool { return len(r.Findings) == 0 && r.Suppressed == 0 }

func (r *Report) add(f Finding) {
	if len(r.Findings) >= maxFindings {
		r.Suppressed++
		return
	}
	r.Findings = append(r.Findings, f)
}

// VerifyOptions configure Verify.
type VerifyOptions struct {
	// Verifier is the store's public key. Required.
	Verifier note.Verifier
	// Progress, when set, is called with the data bytes checked so far.
	Progress func(done, total uint64)
}

// Verify checks the bundle in dir offline: the manifest's signature, every
// file's SHA-256, size and row count, each row's hash recomputed from its
// fields, the links between consecutive rows, and each chain's range proof
// against its signed checkpoint. It reports everything it finds; an error
// means the bundle could not be examined at all.
func Verify(ctx context.Context, dir string, opts VerifyOptions) (*Report, error) {
	if opts.Verifier == nil {
		return nil, errors.New("verify export: a public key is required")
	}
	start := time.Now()
	rep := &Report{Dir: dir, Key: keyID(opts.Verifier.Name(), opts.Verifier.KeyHash())}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read bundle: %w", err)
	}
	mb, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		rep.add(Finding{Kind: KindFileMissing, File: ManifestFile, Detail: "the bundle has no readable manifest: " + err.Error()})
		rep.Elapsed = time.Since(start)
		return rep, nil
	}
	sig, err := os.ReadFile(filepath.Join(dir, SignatureFile))
	if err != nil {
		rep.add(Finding{Kind: KindFileMissing, File: SignatureFile, Detail: "the manifest is unsigned: " + err.Error()})
	} else if err := checkManifestSignature(mb, sig, opts.Verifier); err != nil {
		kind := KindBadSignature
		if errors.Is(err, ErrManifestAltered) {
			kind = KindManifest
		}
		rep.add(Finding{Kind: kind, File: ManifestFile, Detail: err.Error()})
	}
	m, err := decodeManifest(mb)
	if err != nil {
		rep.add(Finding{Kind: KindManifest, File: ManifestFile, Detail: err.Error()})
		rep.Elapsed = time.Since(start)
		return rep, nil
	}
	if m.EventEncoding != trail.EventEncodingVersion {
		rep.add(Finding{Kind: KindManifest, File: ManifestFile, Detail: fmt.Sprintf("event encoding version %d is not supported (this verifier knows version %d)", m.EventEncoding, trail.EventEncodingVersion)})
		rep.Elapsed = time.Since(start)
		return rep, nil
	}
	rep.Files, rep.Chains = len(m.Files), len(m.Chains)

	v := newVerifier(m, rep, opts.Verifier)
	v.checkManifest()
	listed := map[string]bool{ManifestFile: true, SignatureFile: true}
	var total uint64
	for _, f := range m.Files {
		listed[f.Name] = true
		total += uint64(max(f.Bytes, 0))
	}
	if m.Duplicates != nil && m.Duplicates.Name == DuplicatesFile {
		listed[DuplicatesFile] = true
	}
	for _, e := range entries {
		if !listed[e.Name()] {
			rep.add(Finding{Kind: KindFileAdded, File: e.Name(), Detail: "not listed in the manifest"})
		}
	}
	var done uint64
	for _, f := range m.Files {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		v.checkFile(dir, f, func(n int64) {
			done += uint64(n)
			if opts.Progress != nil {
				opts.Progress(done, total)
			}
		})
	}
	v.finish()
	v.checkDuplicates(dir)
	rep.Events = v.dups.events()
	rep.Elapsed = time.Since(start)
	return rep, nil
}

// bundleVerifier holds the state of one verification.
type bundleVerifier struct {
	m      *Manifest
	rep    *Report
	key    note.Verifier
	chains map[string]*chainState
	index  map[string]int
	file   string
	// dups follows the rows' event ids, to recompute duplicates.jsonl.
	dups *duplicateTracker
	// chunkLen is the size text files are read in (chunkSize; tests
	// make it small to cut records across chunks).
	chunkLen int
}

// whyMissing is why a chain's root is not checked when rows are missing:
// the missing rows are reported instead.
const whyMissing = "rows are missing"

// chainState follows one chain's rows against the manifest's runs.
type chainState struct {
	c     *Chain
	proof *proofChecker
	root  *trail.Hash // signed root; nil when the checkpoint does not verify
	ri    int         // run holding next
	next  uint64      // next expected sequence number; 0 once every run is complete
	// missing are sequence ranges skipped so far, [first, last].
	missing  [][2]uint64
	lastSeq  uint64
	lastHash trail.Hash
	lastLine uint64
	lastFile string
}

func newVerifier(m *Manifest, rep *Report, key note.Verifier) *bundleVerifier {
	v := &bundleVerifier{m: m, rep: rep, key: key, chains: map[string]*chainState{}, index: columnIndex(), chunkLen: chunkSize, dups: newDuplicateTracker()}
	for i := range m.Chains {
		c := &m.Chains[i]
		st := &chainState{c: c, proof: newProofChecker(c)}
		if len(c.Runs) > 0 {
			st.next = c.Runs[0].First
		}
		v.chains[c.Chain] = st
	}
	return v
}

// checkManifest checks the manifest's own consistency and every
// checkpoint's signature.
func (v *bundleVerifier) checkManifest() {
	m := v.m
	bad := func(format string, args ...any) {
		v.rep.add(Finding{Kind: KindManifest, File: ManifestFile, Detail: fmt.Sprintf(format, args...)})
	}
	if len(m.Files) == 0 {
		bad("lists no data files")
	}
	var fileRows, chainRows uint64
	for _, f := range m.Files {
		fileRows += f.Rows
		if f.Name == "" || f.Name != filepath.Base(f.Name) || f.Name == ManifestFile || f.Name == SignatureFile || strings.HasPrefix(f.Name, ".") {
			bad("file name %q is not a plain data file name", f.Name)
		}
	}
	if m.Data != dataFormatOf(m.Data) {
		bad("data format %q is unknown", m.Data)
	}
	seen := map[string]bool{}
	for i := range m.Chains {
		c := &m.Chains[i]
		if seen[c.Chain] {
			bad("chain %s is listed twice", c.Chain)
		}
		seen[c.Chain] = true
		var n uint64
		var prev uint64
		for j, r := range c.Runs {
			if r.First == 0 || r.Last < r.First || (j > 0 && r.First <= prev+1) || r.Last > c.TreeSize {
				bad("chain %s: run %d [%d, %d] is out of order, overlapping, adjacent to the previous one or beyond the tree size %d", c.Chain, j, r.First, r.Last, c.TreeSize)
			}
			prev = r.Last
			n += r.Last - r.First + 1
		}
		if n != c.Rows {
			bad("chain %s: runs hold %d rows, the chain says %d", c.Chain, n, c.Rows)
		}
		chainRows += c.Rows
		st := v.chains[c.Chain]
		cp, err := trail.OpenCheckpoint([]byte(c.Checkpoint), v.key)
		switch {
		case err != nil:
			v.rep.add(Finding{Kind: KindBadSignature, File: ManifestFile, Chain: c.Chain, Detail: "checkpoint: " + err.Error()})
		case cp.Chain != c.Chain || cp.Size != c.TreeSize || hex.EncodeToString(cp.Root[:]) != c.Root:
			bad("chain %s: tree_size %d and root %s differ from the signed checkpoint (chain %s, size %d, root %x)", c.Chain, c.TreeSize, c.Root, cp.Chain, cp.Size, cp.Root)
		default:
			root := cp.Root
			st.root = &root
		}
	}
	if fileRows != m.Rows || chainRows != m.Rows {
		bad("rows: the manifest says %d, its files %d and its chains %d", m.Rows, fileRows, chainRows)
	}
	switch {
	case m.Version >= 2 && (m.Events == nil || m.Duplicates == nil):
		bad("version %d must state events and the duplicates file", m.Version)
	case m.Version < 2 && (m.Events != nil || m.Duplicates != nil):
		bad("version %d has no events or duplicates file", m.Version)
	case m.Duplicates == nil:
	case m.Duplicates.Name != DuplicatesFile:
		bad("duplicates file %q is not %s", m.Duplicates.Name, DuplicatesFile)
	case *m.Events+m.Duplicates.Rows != m.Rows:
		bad("%d events and %d duplicate rows do not add up to the %d rows", *m.Events, m.Duplicates.Rows, m.Rows)
	}
}

// checkDuplicates compares the duplicates file and the manifest's event
// count with what the data's rows, in file order, say (version 2).
func (v *bundleVerifier) checkDuplicates(dir string) {
	m := v.m
	if m.Duplicates == nil || m.Events == nil || m.Duplicates.Name != DuplicatesFile {
		return // version 1, or reported by checkManifest
	}
	b, err := os.ReadFile(filepath.Join(dir, DuplicatesFile))
	if err != nil {
		v.rep.add(Finding{Kind: KindFileMissing, File: DuplicatesFile, Detail: fmt.Sprintf("listed in the manifest with %d rows, not readable: %v", m.Duplicates.Rows, err)})
		return
	}
	sum := sha256.Sum256(b)
	if hex.EncodeToString(sum[:]) != m.Duplicates.SHA256 || int64(len(b)) != m.Duplicates.Bytes {
		v.rep.add(Finding{Kind: KindFileAltered, File: DuplicatesFile, Detail: fmt.Sprintf("SHA-256 %x and %d bytes, the manifest says %s and %d bytes", sum, len(b), m.Duplicates.SHA256, m.Duplicates.Bytes)})
	}
	// The marks are recomputed from the rows: when rows are missing,
	// added or unreadable, those findings say what is wrong and the marks
	// cannot be judged.
	for _, f := range v.rep.Findings {
		switch f.Kind {
		case KindMissing, KindAdded, KindOutOfOrder, KindMalformed, KindFileMissing:
			return
		}
	}
	if v.rep.Suppressed > 0 {
		return
	}
	if got := v.dups.events(); got != *m.Events {
		v.rep.add(Finding{Kind: KindDuplicates, File: ManifestFile, Detail: fmt.Sprintf("the manifest says %d distinct events, the data holds %d", *m.Events, got)})
	}
	want := v.dups.dups
	if bytes.Equal(b, encodeDuplicates(want)) {
		return
	}
	listed, err := decodeDuplicates(b)
	if err != nil {
		v.rep.add(Finding{Kind: KindMalformed, File: DuplicatesFile, Detail: err.Error()})
		return
	}
	before := len(v.rep.Findings) + v.rep.Suppressed
	at := func(d Duplicate) string { return d.Chain + "\x00" + strconv.FormatUint(d.Seq, 10) }
	wantAt := make(map[string]Duplicate, len(want))
	for _, d := range want {
		wantAt[at(d)] = d
	}
	for i, d := range listed {
		w, ok := wantAt[at(d)]
		switch {
		case !ok:
			v.rep.add(Finding{Kind: KindDuplicates, File: DuplicatesFile, Line: uint64(i + 1), Chain: d.Chain, Seq: d.Seq,
				Detail: fmt.Sprintf("marks the row a copy of event %q, but no earlier row of the data holds that event id", d.EventID)})
		case w != d:
			v.rep.add(Finding{Kind: KindDuplicates, File: DuplicatesFile, Line: uint64(i + 1), Chain: d.Chain, Seq: d.Seq,
				Detail: fmt.Sprintf("says event %q first held at %s seq %d; the data says event %q first held at %s seq %d", d.EventID, d.FirstChain, d.FirstSeq, w.EventID, w.FirstChain, w.FirstSeq)})
		}
		delete(wantAt, at(d))
	}
	for _, d := range want {
		if _, left := wantAt[at(d)]; left {
			v.rep.add(Finding{Kind: KindDuplicates, File: DuplicatesFile, Chain: d.Chain, Seq: d.Seq,
				Detail: fmt.Sprintf("does not mark the row, a copy of event %q first held at %s seq %d", d.EventID, d.FirstChain, d.FirstSeq)})
		}
	}
	if len(v.rep.Findings)+v.rep.Suppressed == before {
		v.rep.add(Finding{Kind: KindDuplicates, File: DuplicatesFile, Detail: "the rows are listed out of data file order or not in the canonical encoding"})
	}
}

func dataFormatOf(s string) string {
	if slices.Contains(Formats(), s) {
		return s
	}
	return ""
}

// checkFile verifies one data file: its digest, size and row count, and
// every row in it.
func (v *bundleVerifier) checkFile(dir string, fi FileInfo, progress func(int64)) {
	v.file = fi.Name
	path := filepath.Join(dir, fi.Name)
	if fi.Name != filepath.Base(fi.Name) {
		return // reported by checkManifest; never read outside the bundle
	}
	f, err := os.Open(path)
	if err != nil {
		v.rep.add(Finding{Kind: KindFileMissing, File: fi.Name, Detail: fmt.Sprintf("listed in the manifest with %d rows, not readable: %v", fi.Rows, err)})
		return
	}
	defer f.Close()
	h := sha256.New()
	var rows uint64
	var size int64
	switch v.m.Data {
	case FormatParquet:
		size, err = io.Copy(h, f)
		progress(size)
		if err == nil {
			if st, serr := f.Stat(); serr == nil {
				rows, err = v.readParquetRows(f, st.Size())
			}
		}
	case FormatCSV:
		rows, size, err = v.readCSVFile(f, &h, progress)
	default:
		rows, size, err = v.readLines(f, h, progress)
	}
	if err != nil {
		v.rep.add(Finding{Kind: KindMalformed, File: fi.Name, Detail: err.Error()})
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if sum != fi.SHA256 || size != fi.Bytes {
		v.rep.add(Finding{Kind: KindFileAltered, File: fi.Name, Detail: fmt.Sprintf("SHA-256 %s and %d bytes; the manifest says %s and %d bytes", sum, size, fi.SHA256, fi.Bytes)})
	}
	if rows != fi.Rows {
		v.rep.add(Finding{Kind: KindFileAltered, File: fi.Name, Detail: fmt.Sprintf("%d rows; the manifest says %d", rows, fi.Rows)})
	}
	v.rep.Rows += rows
}

// countingReader hashes and counts what is read through it.
type countingReader struct {
	r        io.Reader
	h        hash.Hash
	n        int64
	progress func(int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.h.Write(p[:n])
	c.n += int64(n)
	c.progress(int64(n))
	return n, err
}

// batchLines is how many records a worker decodes at a time.
const batchLines = 256

// recordBatch is a run of consecutive records of a data file, the first
// numbered first, decoded by one worker into res.
type recordBatch[T any] struct {
	first uint64
	recs  []T
	res   []lineResult
}

// decodeInOrder checks a data file's records on every core, in file
// order: read (one goroutine: files are read sequentially) hands each
// record to emit; GOMAXPROCS workers decode batches of them, each with its
// own decode function from newDecode (so it may keep scratch state),
// into the batch's results in place (rows are large to copy); and
// the caller's goroutine hands each result to check in file order. The
// first record is numbered n0+1. It returns how many records were read
// (counting the n0 before), and read's error.
func decodeInOrder[T any](n0 uint64, read func(emit func(T)) error, newDecode func() func(n uint64, rec T, res *lineResult), check func(*lineResult)) (uint64, error) {
	n := n0
	var readErr error
	inOrder(func(send func(*recordBatch[T])) {
		b := &recordBatch[T]{first: n0 + 1}
		flush := func() {
			if len(b.recs) > 0 {
				send(b)
			}
			b = &recordBatch[T]{first: n + 1}
		}
		readErr = read(func(rec T) {
			n++
			b.recs = append(b.recs, rec)
			if len(b.recs) == batchLines {
				flush()
			}
		})
		flush()
	}, func() func(*recordBatch[T]) {
		decode := newDecode()
		return func(b *recordBatch[T]) {
			b.res = make([]lineResult, len(b.recs))
			for i, rec := range b.recs {
				decode(b.first+uint64(i), rec, &b.res[i])
			}
		}
	}, func(b *recordBatch[T]) {
		for i := range b.res {
			check(&b.res[i])
		}
	})
	return n, readErr
}

// readLines reads a JSON-lines data file (jsonl or ocsf) to its end,
// hashing it into h, and decodes and hashes its lines on every core
// (checkRecords). It returns the lines and bytes read.
func (v *bundleVerifier) readLines(r io.Reader, h hash.Hash, progress func(int64)) (uint64, int64, error) {
	newDecode := func() func(uint64, []byte, string, *lineResult) {
		d := newLineChecker(v.index)
		return func(n uint64, line []byte, text string, res *lineResult) {
			decodeLine(d, v.m.Data, n, bytes.TrimSuffix(line, []byte("\n")), strings.TrimSuffix(text, "\n"), res)
		}
	}
	n, size, err := checkRecords(r, v.chunkLen, h, progress, splitLine, newDecode, func(c *chunk, i int) bool {
		v.apply(&c.res[i])
		return true
	})
	if err != nil {
		return n, size, fmt.Errorf("read line %d: %w", n+1, err)
	}
	return n, size, nil
}

// rowKey is what the in-order checks need of a row: its place in its
// chain and its links.
type rowKey struct {
	Chain    string
	Seq      uint64
	PrevHash trail.Hash
	Hash     trail.Hash
	// EventID is a copy, never a view of a reused buffer.
	EventID string
}

func keyOf(r *trail.Row) *rowKey {
	return &rowKey{Chain: r.Chain, Seq: r.Seq, PrevHash: r.PrevHash, Hash: r.Hash, EventID: strings.Clone(r.Event.ID)}
}

// lineResult is one decoded line, ready to be checked in order.
type lineResult struct {
	n         uint64
	key       rowKey
	computed  trail.Hash // EventHash of the row
	malformed error      // the line cannot be read as a row
	noncanon  error      // the line decodes, but is not the row's canonical encoding
	ocsfDiff  []string   // OCSF fields that differ from the derived ones
	// fallback: the record is not one the fast reader reads as the
	// general one would; the general reader takes over from it.
	fallback bool
}

// decodeLine decodes and hashes one line of a jsonl or ocsf file (line,
// and the same bytes as text) into res. It touches no verifier state, so
// lines decode in parallel.
func decodeLine(d *lineChecker, format string, n uint64, line []byte, text string, res *lineResult) {
	*res = lineResult{n: n}
	if len(line) == 0 {
		res.malformed = errors.New("empty line")
		return
	}
	r := &d.row
	if format != FormatOCSF {
		if d.strict.scan(text, line, r) {
			res.computed = d.hasher.Hash(r)
			d.setKey(res, r)
			return
		}
		if err := d.decode(line, r); errors.Is(err, errNotCanonical) {
			res.noncanon = err
		} else if err != nil {
			res.malformed = err
			return
		}
		res.computed = d.hasher.Hash(r)
		d.setKey(res, r)
		return
	}
	if d.canonicalOCSF(line, text, r) {
		res.computed = d.hasher.Hash(r)
		d.setKey(res, r)
		return
	}
	*r = trail.Row{}
	got, rec, err := splitOCSF(line)
	if err != nil {
		res.malformed = err
		return
	}
	if err := decodeJSONRow(rec, r, d.index); err != nil {
		res.malformed = fmt.Errorf("unmapped.%s: %w", ocsfRecordKey, err)
		return
	}
	res.computed = d.hasher.Hash(r)
	d.setKey(res, r)
	d.line = appendOCSFEvent(&d.ocsf, d.line[:0], r)
	wantDoc, _, err := splitOCSF(d.line)
	if err != nil {
		res.noncanon = fmt.Errorf("derive OCSF: %w", err)
		return
	}
	res.ocsfDiff = diffKeys(got, wantDoc)
}

// apply checks a decoded line against the bundle, in file order.
func (v *bundleVerifier) apply(res *lineResult) {
	if res.malformed != nil {
		v.malformed(res.n, res.malformed)
		return
	}
	if res.noncanon != nil {
		v.malformed(res.n, res.noncanon)
	}
	v.row(res.n, &res.key, res.computed)
	if len(res.ocsfDiff) > 0 {
		v.rep.add(Finding{Kind: KindOCSFMismatch, File: v.file, Line: res.n, Chain: res.key.Chain, Seq: res.key.Seq,
			Detail: "OCSF fields " + strings.Join(res.ocsfDiff, ", ") + " differ from those derived from the row"})
	}
}

// splitOCSF parses an OCSF line into its top-level fields, with
// unmapped re-encoded without the custody record, and the record.
func splitOCSF(line []byte) (map[string]json.RawMessage, json.RawMessage, error) {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(line, &doc); err != nil {
		return nil, nil, fmt.Errorf("not an OCSF object: %w", err)
	}
	var um map[string]json.RawMessage
	if err := json.Unmarshal(doc["unmapped"], &um); err != nil {
		return nil, nil, fmt.Errorf("OCSF unmapped: %w", err)
	}
	rec := um[ocsfRecordKey]
	delete(um, ocsfRecordKey)
	b, err := json.Marshal(um)
	if err != nil {
		return nil, nil, fmt.Errorf("OCSF unmapped: %w", err)
	}
	doc["unmapped"] = b
	for k, x := range doc {
		var c bytes.Buffer
		if err := json.Compact(&c, x); err != nil {
			return nil, nil, fmt.Errorf("OCSF %s: %w", k, err)
		}
		doc[k] = c.Bytes()
	}
	return doc, rec, nil
}

// diffKeys lists the top-level keys whose values differ, sorted.
func diffKeys(got, want map[string]json.RawMessage) []string {
	var out []string
	for k, w := range want {
		if g, ok := got[k]; !ok || !bytes.Equal(g, w) {
			out = append(out, k)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// readCSV reads a CSV data file with encoding/csv.
func (v *bundleVerifier) readCSV(r io.Reader) (uint64, error) {
	cr := newCSVReader(r)
	head, err := cr.Read()
	if err != nil {
		return 0, fmt.Errorf("read CSV header: %w", err)
	}
	if !slices.Equal(head, csvHeader()) {
		v.rep.add(Finding{Kind: KindMalformed, File: v.file, Detail: "the CSV header differs from export-v1's columns"})
	}
	return v.readCSVRecords(cr, 0)
}

func newCSVReader(r io.Reader) *csv.Reader {
	cr := csv.NewReader(bufio.NewReaderSize(r, 1<<20))
	cr.FieldsPerRecord = -1
	return cr
}

// readCSVRecords reads the records of cr, numbering them after the n
// already read, and returns the records of the file.
func (v *bundleVerifier) readCSVRecords(cr *csv.Reader, n uint64) (uint64, error) {
	// Records are parsed in order (a quoted field may span lines), then
	// decoded and hashed on every core (decodeInOrder).
	n0 := n
	read := func(emit func(csvRecord)) error {
		for {
			rec, err := cr.Read()
			if errors.Is(err, io.EOF) {
				return nil
			}
			n++
			if err != nil {
				var pe *csv.ParseError
				if errors.As(err, &pe) && !errors.Is(err, csv.ErrFieldCount) {
					return fmt.Errorf("record %d: %w", n, err)
				}
			}
			emit(csvRecord{fields: rec, err: err})
		}
	}
	newDecode := func() func(uint64, csvRecord, *lineResult) {
		var hasher trail.Hasher
		return func(n uint64, rec csvRecord, res *lineResult) {
			*res = lineResult{n: n, malformed: rec.err}
			if res.malformed == nil {
				var r trail.Row
				if res.malformed = decodeCSVRow(rec.fields, &r, v.index); res.malformed == nil {
					res.computed = hasher.Hash(&r)
					res.key = *keyOf(&r)
				}
			}
		}
	}
	// n, not decodeInOrder's count: a record that ends reading is counted
	// too, as the rows of the file.
	_, err := decodeInOrder(n0, read, newDecode, v.apply)
	return n, err
}

// csvRecord is one CSV record with its read error (a wrong field count,
// which makes the record malformed but lets reading go on).
type csvRecord struct {
	fields []string
	err    error
}

func (v *bundleVerifier) malformed(n uint64, err error) {
	v.rep.add(Finding{Kind: KindMalformed, File: v.file, Line: n, Detail: err.Error()})
}

// row checks one decoded row: its hash, its place in the manifest's runs,
// its link to the previous row, and feeds the chain's range proof.
func (v *bundleVerifier) row(n uint64, r *rowKey, computed trail.Hash) {
	v.dups.add(r.Chain, r.Seq, r.EventID)
	at := Finding{File: v.file, Line: n, Chain: r.Chain, Seq: r.Seq}
	report := func(kind FindingKind, format string, args ...any) {
		f := at
		f.Kind, f.Detail = kind, fmt.Sprintf(format, args...)
		v.rep.add(f)
	}
	if got := computed; got != r.Hash {
		report(KindModified, "the row's fields hash to %x but its hash is %x: a field was altered", got[:8], r.Hash[:8])
	}
	st := v.chains[r.Chain]
	if st == nil {
		report(KindAdded, "the manifest lists no chain %q", r.Chain)
		return
	}
	runs := st.c.Runs
	if st.next == 0 || r.Seq != st.next {
		k, ok := slices.BinarySearchFunc(runs, r.Seq, func(run Run, seq uint64) int {
			switch {
			case run.Last < seq:
				return -1
			case run.First > seq:
				return 1
			}
			return 0
		})
		if !ok {
			report(KindAdded, "the manifest does not list this sequence number")
			return
		}
		if st.next == 0 || r.Seq < st.next {
			if st.unmiss(r.Seq) {
				report(KindOutOfOrder, "found after rows that follow it")
			} else {
				report(KindAdded, "appears again (a repeated or inserted line)")
			}
			return
		}
		// r.Seq > next: everything in between is missing so far.
		for j := st.ri; j <= k; j++ {
			a, b := max(runs[j].First, st.next), min(runs[j].Last, r.Seq-1)
			if a <= b {
				st.missing = append(st.missing, [2]uint64{a, b})
			}
		}
		st.proof.breakWith(whyMissing)
		st.ri, st.next = k, r.Seq
	}
	run := runs[st.ri]
	if r.Seq == run.First && hex.EncodeToString(r.PrevHash[:]) != run.PrevHash {
		report(KindChainBreak, "prev_hash %x differs from the manifest's prev_hash for the run starting here", r.PrevHash[:8])
	} else if r.Seq != run.First && st.lastSeq == r.Seq-1 && st.lastFile == v.file && r.PrevHash != st.lastHash {
		report(KindChainBreak, "prev_hash %x does not link to the hash %x of seq %d (%s %d)", r.PrevHash[:8], st.lastHash[:8], st.lastSeq, unitOf(v.file), st.lastLine)
	} else if r.Seq != run.First && st.lastSeq == r.Seq-1 && r.PrevHash != st.lastHash {
		report(KindChainBreak, "prev_hash %x does not link to the hash %x of seq %d", r.PrevHash[:8], st.lastHash[:8], st.lastSeq)
	}
	if r.Seq == run.Last && hex.EncodeToString(r.Hash[:]) != run.LastHash {
		report(KindChainBreak, "hash %x differs from the manifest's last_hash for the run ending here", r.Hash[:8])
	}
	st.proof.add(r.Seq, r.Hash)
	st.lastSeq, st.lastHash, st.lastLine, st.lastFile = r.Seq, r.Hash, n, v.file
	if r.Seq == run.Last {
		st.ri++
		st.next = 0
		if st.ri < len(runs) {
			st.next = runs[st.ri].First
		}
	} else {
		st.next = r.Seq + 1
	}
}

// unmiss removes seq from the missing ranges; it reports whether seq was
// missing.
func (st *chainState) unmiss(seq uint64) bool {
	for i, m := range st.missing {
		if seq < m[0] || seq > m[1] {
			continue
		}
		var repl [][2]uint64
		if m[0] < seq {
			repl = append(repl, [2]uint64{m[0], seq - 1})
		}
		if seq < m[1] {
			repl = append(repl, [2]uint64{seq + 1, m[1]})
		}
		st.missing = slices.Replace(st.missing, i, i+1, repl...)
		return true
	}
	return false
}

// finish reports missing rows and checks each chain's root.
func (v *bundleVerifier) finish() {
	for i := range v.m.Chains {
		st := v.chains[v.m.Chains[i].Chain]
		runs := st.c.Runs
		if st.next != 0 {
			for j := st.ri; j < len(runs); j++ {
				st.missing = append(st.missing, [2]uint64{max(runs[j].First, st.next), runs[j].Last})
			}
			st.proof.breakWith(whyMissing)
		}
		for _, m := range st.missing {
			detail := fmt.Sprintf("seq %d is listed in the manifest but not in the data", m[0])
			if m[1] > m[0] {
				detail = fmt.Sprintf("seq %d–%d (%d rows) are listed in the manifest but not in the data", m[0], m[1], m[1]-m[0]+1)
			}
			v.rep.add(Finding{Kind: KindMissing, Chain: st.c.Chain, Detail: detail})
		}
		root, why := st.proof.root()
		switch {
		case root == nil && why == whyMissing:
			// reported row by row above
		case root == nil:
			v.rep.add(Finding{Kind: KindRootMismatch, File: ManifestFile, Chain: st.c.Chain, Detail: "the range proof cannot be checked: " + why})
		case st.root != nil && !bytes.Equal(root, st.root[:]):
			v.rep.add(Finding{Kind: KindRootMismatch, Chain: st.c.Chain, Detail: fmt.Sprintf("the rows and the range proof give root %x, the signed checkpoint at size %d says %x", root, st.c.TreeSize, st.root[:])})
		}
	}
}
