package bundle

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/custody-audit/custody/event"
	"github.com/custody-audit/custody/storage/trail"
)

// A bundle lists rows ordered by chain, then sequence number, but the
// events table is stored in its forensic order (day, service, actor,
// time). Having the engine sort the wide rows costs it several times
// more than reading them, so the rows are read in storage order, kept in
// a compact binary form and ordered here by a narrow index.
//
// Up to rowBufferBytes of rows are held in memory. Whenever that fills,
// the rows held are sorted and written to an unlinked temporary file as
// one run, and memory is used again. Each run is in the final order, so
// taking the rows in that order reads every run front to back: the file
// is written once and read once, sequentially, whatever the export's
// size, instead of one random read per row.

// rowBufferBytes bounds the encoded rows an export holds in memory; the
// rest goes to a temporary file.
const rowBufferBytes = 256 << 20

// rowBlock is the size of the in-memory blocks encoded rows are packed
// into (a row larger than that gets a block of its own).
const rowBlock = 4 << 20

// runReadBuffer is the read buffer of each spilled run.
const runReadBuffer = 256 << 10

// rowRef locates one encoded row: the chain (an index into the sorter's
// chain names), its sequence number, and where its bytes are.
type rowRef struct {
	chain uint32
	n     uint32 // encoded length
	seq   uint64
	off   int64 // block<<32 | offset in memory; file offset when file is set
	file  bool
	run   uint32 // the spilled run holding a file row
}

// spillRun is where one run of sorted rows lies in the temporary file.
type spillRun struct{ start, end int64 }

// rowSorter collects rows and returns them ordered by chain, then seq.
type rowSorter struct {
	// limit is how many encoded bytes are kept in memory.
	limit  int
	chains map[string]uint32
	names  []string
	refs   []rowRef
	blocks [][]byte // only ever appended to while rows are handed out
	spare  [][]byte // blocks emptied by a spill, for reuse
	mem    int      // bytes held in blocks
	// memFrom is the first of the refs held in memory: those before it
	// have been spilled.
	memFrom int
	runs    []spillRun
	tmp     *os.File
	tw      *bufio.Writer
	toff    int64
	enc     []byte
}

// newRowSorter keeps up to limit bytes of encoded rows in memory.
func newRowSorter(limit int) *rowSorter {
	return &rowSorter{limit: limit, chains: map[string]uint32{}}
}

// add stores a copy of r.
func (s *rowSorter) add(r *trail.Row) error {
	id, ok := s.chains[r.Chain]
	if !ok {
		id = uint32(len(s.names))
		s.chains[r.Chain] = id
		s.names = append(s.names, r.Chain)
	}
	s.enc = encodeRow(s.enc[:0], r)
	if s.mem > 0 && s.mem+len(s.enc) > s.limit {
		if err := s.spill(); err != nil {
			return err
		}
	}
	ref := rowRef{chain: id, seq: r.Seq, n: uint32(len(s.enc))}
	k := len(s.blocks) - 1
	if k < 0 || len(s.blocks[k])+len(s.enc) > cap(s.blocks[k]) {
		s.blocks = append(s.blocks, s.newBlock(len(s.enc)))
		k++
	}
	ref.off = int64(k)<<32 | int64(len(s.blocks[k]))
	s.blocks[k] = append(s.blocks[k], s.enc...)
	s.mem += len(s.enc)
	s.refs = append(s.refs, ref)
	return nil
}

// newBlock returns an empty block for at least n bytes.
func (s *rowSorter) newBlock(n int) []byte {
	if k := len(s.spare) - 1; k >= 0 && cap(s.spare[k]) >= n {
		b := s.spare[k]
		s.spare = s.spare[:k]
		return b
	}
	return make([]byte, 0, max(rowBlock, n))
}

// byChainSeq orders refs by chain name, then seq, given each chain id's
// rank in name order (see ranks).
func byChainSeq(rank []uint32) func(a, b rowRef) int {
	return func(a, b rowRef) int {
		if a.chain != b.chain {
			return int(rank[a.chain]) - int(rank[b.chain])
		}
		switch {
		case a.seq < b.seq:
			return -1
		case a.seq > b.seq:
			return 1
		}
		return 0
	}
}

// ranks maps each chain id to its position in the order of the chains'
// names (of the chains seen so far, whose order later ones do not change).
func (s *rowSorter) ranks() []uint32 {
	order := make([]uint32, len(s.names))
	for i := range order {
		order[i] = uint32(i)
	}
	slices.SortFunc(order, func(a, b uint32) int { return strings.Compare(s.names[a], s.names[b]) })
	rank := make([]uint32, len(s.names))
	for pos, id := range order {
		rank[id] = uint32(pos)
	}
	return rank
}

// spill writes the rows held in memory to the temporary file as one
// sorted run and frees their memory.
func (s *rowSorter) spill() error {
	if s.tmp == nil {
		f, err := os.CreateTemp("", "custody-export-*")
		if err != nil {
			return fmt.Errorf("create temporary file: %w", err)
		}
		// unlinked at once: nothing is left behind, however the
		// export ends
		_ = os.Remove(f.Name())
		s.tmp, s.tw = f, bufio.NewWriterSize(f, 1<<20)
	}
	held := s.refs[s.memFrom:]
	slices.SortStableFunc(held, byChainSeq(s.ranks()))
	run := spillRun{start: s.toff}
	for i := range held {
		ref := &held[i]
		if _, err := s.tw.Write(s.memRow(*ref)); err != nil {
			return fmt.Errorf("write temporary file: %w", err)
		}
		ref.off, ref.file, ref.run = s.toff, true, uint32(len(s.runs))
		s.toff += int64(ref.n)
	}
	run.end = s.toff
	s.runs = append(s.runs, run)
	for _, b := range s.blocks {
		s.spare = append(s.spare, b[:0])
	}
	s.blocks, s.mem, s.memFrom = s.blocks[:0], 0, len(s.refs)
	return nil
}

// memRow is the bytes of a row held in memory.
func (s *rowSorter) memRow(ref rowRef) []byte {
	blk, at := ref.off>>32, ref.off&(1<<32-1)
	return s.blocks[blk][at : at+int64(ref.n)]
}

// sort orders the rows by chain, then seq, and makes them readable. The
// sort is stable, as each spill's is, so that rows sharing a chain and
// seq (which chainRuns refuses) keep their run order too.
func (s *rowSorter) sort() error {
	slices.SortStableFunc(s.refs, byChainSeq(s.ranks()))
	if s.tw != nil {
		if err := s.tw.Flush(); err != nil {
			return fmt.Errorf("write temporary file: %w", err)
		}
	}
	return nil
}

// rowReader hands out the sorted rows' bytes in order, reading each
// spilled run front to back through a buffer of its own. One goroutine
// uses it at a time.
type rowReader struct {
	s    *rowSorter
	runs []*runCursor
}

type runCursor struct {
	r   *bufio.Reader
	pos int64 // file offset of the next byte r returns
}

func (s *rowSorter) reader() *rowReader {
	return &rowReader{s: s, runs: make([]*runCursor, len(s.runs))}
}

// read returns the bytes of the i-th row in order: a view of memory, or
// the row read from its run into dst (which must hold its n bytes).
func (rd *rowReader) read(i int, dst []byte) ([]byte, error) {
	ref := rd.s.refs[i]
	if !ref.file {
		return rd.s.memRow(ref), nil
	}
	run := rd.s.runs[ref.run]
	c := rd.runs[ref.run]
	if c == nil || c.pos != ref.off {
		// the run's first row, or (only for rows sharing a chain and
		// seq) not the one after the last read
		sec := io.NewSectionReader(rd.s.tmp, ref.off, run.end-ref.off)
		if c == nil {
			c = &runCursor{r: bufio.NewReaderSize(sec, runReadBuffer)}
			rd.runs[ref.run] = c
		} else {
			c.r.Reset(sec)
		}
		c.pos = ref.off
	}
	dst = dst[:ref.n]
	if _, err := io.ReadFull(c.r, dst); err != nil {
		return nil, fmt.Errorf("read temporary file: %w", err)
	}
	c.pos += int64(ref.n)
	return dst, nil
}

// hashes returns the prev_hash and hash of the i-th row in order without
// decoding the rest of it.
func (s *rowSorter) hashes(i int) (prev, hash trail.Hash, err error) {
	ref := s.refs[i]
	if ref.n < hashesEnd {
		return prev, hash, errBadRow
	}
	var b [2 * len(trail.Hash{})]byte
	if ref.file {
		if _, err := s.tmp.ReadAt(b[:], ref.off+hashesAt); err != nil {
			return prev, hash, fmt.Errorf("read temporary file: %w", err)
		}
	} else {
		copy(b[:], s.memRow(ref)[hashesAt:hashesEnd])
	}
	copy(prev[:], b[:32])
	copy(hash[:], b[32:])
	return prev, hash, nil
}

// close releases the rows.
func (s *rowSorter) close() {
	s.blocks, s.spare, s.refs = nil, nil, nil
	if s.tmp != nil {
		_ = s.tmp.Close()
		s.tmp = nil
	}
}

// encodeRow appends r in a private binary form (uvarint-prefixed strings,
// fixed-width numbers) that decodeRow reads back field for field.
func encodeRow(dst []byte, r *trail.Row) []byte {
	e := &r.Event
	t := &e.Target
	str := func(s string) {
		dst = binary.AppendUvarint(dst, uint64(len(s)))
		dst = append(dst, s...)
	}
	list := func(l []string) {
		if l == nil {
			dst = append(dst, 0)
			return
		}
		dst = binary.AppendUvarint(dst, uint64(len(l))+1)
		for _, s := range l {
			str(s)
		}
	}
	tm := func(t time.Time) {
		dst = binary.LittleEndian.AppendUint64(dst, uint64(t.Unix()))
		dst = binary.LittleEndian.AppendUint32(dst, uint32(t.Nanosecond()))
	}
	dst = binary.LittleEndian.AppendUint64(dst, r.Seq)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(r.Offset))
	dst = binary.LittleEndian.AppendUint32(dst, uint32(e.StatusCode))
	tm(e.Time)
	tm(e.ReceivedTime)
	dst = append(dst, r.PrevHash[:]...) // at hashesAt
	dst = append(dst, r.Hash[:]...)
	ip, _ := e.SourceIP.MarshalBinary()
	dst = binary.AppendUvarint(dst, uint64(len(ip)))
	dst = append(dst, ip...)
	for _, s := range [...]string{r.Chain, e.ID, string(e.Service), e.Category, e.SourceKind, e.SourceFormat, e.SourcePosition,
		e.TenantID, e.SubscriptionID, e.ResourceGroup, e.Provider, e.ResourceType, e.ResourceName, e.ResourceID,
		e.Actor.Name, e.Actor.ObjectID, string(e.Actor.Type), e.Actor.AppID, e.Actor.ImpersonatedBy,
		e.UserAgent, e.Action, string(e.ActionClass),
		t.APIGroup, t.Resource, t.Subresource, t.Namespace, t.Name, t.Repository, t.Tag, t.Digest, t.ContainerGroup, t.Container, t.Image,
		string(e.Outcome), e.Reason, e.CorrelationID, e.RequestID, e.RawFormat} {
		str(s)
	}
	list(e.Actor.Groups)
	list(e.Tags)
	if e.Attributes == nil {
		dst = append(dst, 0)
	} else {
		dst = binary.AppendUvarint(dst, uint64(len(e.Attributes))+1)
		for k, v := range e.Attributes {
			str(k)
			str(v)
		}
	}
	if e.Raw == nil {
		dst = append(dst, 0)
	} else {
		dst = binary.AppendUvarint(dst, uint64(len(e.Raw))+1)
		dst = append(dst, e.Raw...)
	}
	return dst
}

var errBadRow = errors.New("corrupt buffered row")

// hashesAt and hashesEnd bound prev_hash and hash in an encoded row.
const (
	hashesAt  = 44
	hashesEnd = hashesAt + 64
)

// decodeRow reads a row written by encodeRow. The row's strings are its
// own; its raw bytes are a view of b, which must not change while the row
// is in use.
func decodeRow(b []byte, r *trail.Row) error {
	if len(b) < hashesEnd+1 {
		return errBadRow
	}
	*r = trail.Row{}
	e := &r.Event
	t := &e.Target
	r.Seq = binary.LittleEndian.Uint64(b)
	r.Offset = int64(binary.LittleEndian.Uint64(b[8:]))
	e.StatusCode = int32(binary.LittleEndian.Uint32(b[16:]))
	e.Time = time.Unix(int64(binary.LittleEndian.Uint64(b[20:])), int64(binary.LittleEndian.Uint32(b[28:]))).UTC()
	e.ReceivedTime = time.Unix(int64(binary.LittleEndian.Uint64(b[32:])), int64(binary.LittleEndian.Uint32(b[40:]))).UTC()
	copy(r.PrevHash[:], b[hashesAt:hashesAt+32])
	copy(r.Hash[:], b[hashesAt+32:hashesEnd])
	p := hashesEnd
	ipn, k := binary.Uvarint(b[p:])
	if k <= 0 || ipn > uint64(len(b)-p-k) {
		return errBadRow
	}
	p += k
	if ipn > 0 {
		if err := e.SourceIP.UnmarshalBinary(b[p : p+int(ipn)]); err != nil {
			return errBadRow
		}
	}
	p += int(ipn)
	// The strings are substrings of one copy of the rest of the row.
	base := p
	all := string(b[p:])
	bad := false
	uv := func() uint64 {
		v, n := binary.Uvarint(b[p:])
		if n <= 0 {
			bad = true
			return 0
		}
		p += n
		return v
	}
	str := func() string {
		l := uv()
		if bad || l > uint64(len(b)-p) {
			bad = true
			return ""
		}
		s := all[p-base : p-base+int(l)]
		p += int(l)
		return s
	}
	var service, actorType, class, outcome string
	for _, f := range [...]*string{&r.Chain, &e.ID, &service, &e.Category, &e.SourceKind, &e.SourceFormat, &e.SourcePosition,
		&e.TenantID, &e.SubscriptionID, &e.ResourceGroup, &e.Provider, &e.ResourceType, &e.ResourceName, &e.ResourceID,
		&e.Actor.Name, &e.Actor.ObjectID, &actorType, &e.Actor.AppID, &e.Actor.ImpersonatedBy,
		&e.UserAgent, &e.Action, &class,
		&t.APIGroup, &t.Resource, &t.Subresource, &t.Namespace, &t.Name, &t.Repository, &t.Tag, &t.Digest, &t.ContainerGroup, &t.Container, &t.Image,
		&outcome, &e.Reason, &e.CorrelationID, &e.RequestID, &e.RawFormat} {
		*f = str()
	}
	e.Service, e.Actor.Type, e.ActionClass, e.Outcome = event.Service(service), event.ActorType(actorType), event.ActionClass(class), event.Outcome(outcome)
	list := func() []string {
		n := uv()
		if n-1 > uint64(len(b)-p) && n > 0 {
			bad = true
		}
		if bad || n == 0 {
			return nil
		}
		l := make([]string, n-1)
		for i := range l {
			l[i] = str()
		}
		return l
	}
	e.Actor.Groups = list()
	e.Tags = list()
	if n := uv(); n > 0 && n-1 > uint64(len(b)-p) {
		bad = true
	} else if n > 0 && !bad {
		e.Attributes = make(map[string]string, n-1)
		for i := uint64(1); i < n; i++ {
			k := str()
			e.Attributes[k] = str()
		}
	}
	if n := uv(); n > 0 && !bad {
		if n-1 > uint64(len(b)-p) {
			return errBadRow
		}
		e.Raw = b[p : p+int(n-1) : p+int(n-1)]
		p += int(n - 1)
	}
	if bad || p != len(b) {
		return errBadRow
	}
	return nil
}
