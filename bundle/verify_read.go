package bundle

import (
	"bytes"
	"errors"
	"hash"
	"io"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/custody-audit/custody/normalize"
	"github.com/custody-audit/custody/storage/trail"
)

// Reading a text data file for verification: the file is read in large
// chunks, each chunk is cut into whole records and hashed (on a goroutine
// of its own: the file's SHA-256 is one sequential stream) as it arrives,
// and the records of a chunk are decoded on one of the workers. The
// worker copies the chunk's records into one string, and the decoded
// rows' strings are substrings of it: one copy per chunk, no unsafe view
// of a buffer the next chunk reuses. The chunks go back to a pool once
// their results are checked and their bytes hashed.

// chunkSize is the size a chunk is read at; a record longer than that
// grows its chunk.
const chunkSize = 1 << 20

// chunk is a run of whole records of a data file, the first numbered
// first, and their decoded results.
type chunk struct {
	buf   []byte
	ends  []int // end of each record in buf (after its terminator); the first starts at 0
	first uint64
	off   int64 // file offset of buf[0]
	res   []lineResult
	// hashed is closed once the bytes read into buf are hashed.
	hashed chan struct{}
}

// hashItem is bytes to hash, or, with done set, a mark to close once the
// bytes before it are hashed.
type hashItem struct {
	b    []byte
	done chan struct{}
}

// record returns record i of the chunk and its file offset.
func (c *chunk) record(i int) ([]byte, int64) {
	start := 0
	if i > 0 {
		start = c.ends[i-1]
	}
	return c.buf[start:c.ends[i]], c.off + int64(start)
}

// splitFunc returns the length of the first whole record of data, with
// its terminator, or 0 when data holds none; at the end of the file the
// rest of data is the last record.
type splitFunc func(data []byte, atEOF bool) int

// splitLine cuts at '\n', as bufio.Reader.ReadBytes does.
func splitLine(data []byte, atEOF bool) int {
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		return i + 1
	}
	if atEOF {
		return len(data)
	}
	return 0
}

// checkRecords reads r to its end in chunks of chunkLen bytes, hashing every byte into h and
// reporting each read to progress; cuts the bytes into records with
// split; decodes the records on GOMAXPROCS workers, each with its own
// decode function from newDecode (so it may keep scratch state; it gets
// each record as bytes and as the same text in a string), into
// the chunk's results; and hands each result to check, in file order.
// When check returns false no further results are handed over, but the
// file is still read and hashed to its end. It returns how many records
// were cut, the bytes read and the read error.
func checkRecords(r io.Reader, chunkLen int, h hash.Hash, progress func(int64), split splitFunc,
	newDecode func() func(n uint64, rec []byte, text string, res *lineResult), check func(c *chunk, i int) bool) (uint64, int64, error) {
	workers := max(1, runtime.GOMAXPROCS(0))
	free := make(chan *chunk, 4*workers+4)
	hashes := make(chan hashItem, 64)
	hashedAll := make(chan struct{})
	go func() {
		defer close(hashedAll)
		for it := range hashes {
			if it.done != nil {
				close(it.done)
			} else {
				h.Write(it.b)
			}
		}
	}()
	var stopped atomic.Bool
	var n uint64
	var size int64
	var readErr error
	inOrder(func(send func(*chunk)) {
		defer close(hashes)
		var carry []byte // the start of a record cut by the end of the last chunk
		eof := false
		for !eof {
			var c *chunk
			select {
			case c = <-free:
			default:
				c = &chunk{buf: make([]byte, 0, chunkLen)}
			}
			c.off = size - int64(len(carry))
			c.buf = append(c.buf[:0], carry...)
			c.ends = c.ends[:0]
			pos := 0
			for {
				for len(c.buf) < cap(c.buf) && !eof {
					k, err := r.Read(c.buf[len(c.buf):cap(c.buf)])
					if k > 0 {
						hashes <- hashItem{b: c.buf[len(c.buf) : len(c.buf)+k]}
					}
					c.buf = c.buf[:len(c.buf)+k]
					size += int64(k)
					if k > 0 {
						progress(int64(k))
					}
					if err != nil {
						if !errors.Is(err, io.EOF) {
							readErr = err
						}
						eof = true
					}
				}
				if stopped.Load() {
					break
				}
				for pos < len(c.buf) {
					k := split(c.buf[pos:], eof)
					if k == 0 {
						break
					}
					pos += k
					c.ends = append(c.ends, pos)
				}
				if len(c.ends) > 0 || eof {
					break
				}
				c.buf = slices.Grow(c.buf, cap(c.buf)) // a record longer than the chunk
			}
			c.hashed = make(chan struct{})
			hashes <- hashItem{done: c.hashed}
			carry = c.buf[pos:]
			if len(c.ends) == 0 || stopped.Load() {
				carry = nil
				<-c.hashed
				select {
				case free <- c:
				default:
				}
				continue
			}
			c.first = n + 1
			n += uint64(len(c.ends))
			send(c)
		}
	}, func() func(*chunk) {
		decode := newDecode()
		return func(c *chunk) {
			c.res = slices.Grow(c.res[:0], len(c.ends))[:len(c.ends)]
			text := string(c.buf[:c.ends[len(c.ends)-1]])
			start := 0
			for i, end := range c.ends {
				decode(c.first+uint64(i), c.buf[start:end], text[start:end], &c.res[i])
				start = end
			}
		}
	}, func(c *chunk) {
		if !stopped.Load() {
			for i := range c.res {
				if !check(c, i) {
					stopped.Store(true)
					break
				}
			}
		}
		<-c.hashed
		select {
		case free <- c:
		default:
		}
	})
	<-hashedAll
	return n, size, readErr
}

// lineChecker decodes the lines of a jsonl or ocsf file for one worker:
// a line the strict scanner reads is canonical as it is; any other goes
// through lineDecoder. It keeps the row it decodes into and its scanners'
// buffers from line to line.
type lineChecker struct {
	lineDecoder
	strict strictScanner // jsonl lines
	html   strictScanner // records embedded in OCSF lines
	ocsf   normalize.OCSFWriter
	record []byte // a record with HTML characters escaped
	// recordAt is where the last OCSF line had its record key.
	recordAt int
	row      trail.Row
	chain    string // the chain of the last row, owned (rows view the chunk)
}

func newLineChecker(index map[string]int) *lineChecker {
	return &lineChecker{
		lineDecoder: lineDecoder{index: index},
		strict:      strictScanner{index: index},
		html:        strictScanner{index: index, html: true},
	}
}

// setKey sets res's key from r. The chain name is kept once per change of
// chain (the row's holds its whole chunk).
func (d *lineChecker) setKey(res *lineResult, r *trail.Row) {
	if r.Chain != d.chain {
		d.chain = strings.Clone(r.Chain)
	}
	res.key = rowKey{Chain: d.chain, Seq: r.Seq, PrevHash: r.PrevHash, Hash: r.Hash, EventID: strings.Clone(r.Event.ID)}
}
