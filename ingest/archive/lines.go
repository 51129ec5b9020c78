package archive

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"hash"
	"io"
	"math"
)

// lineBlockLen is the size of the blocks lineBlocks reads into. Large
// enough that the tail a block boundary cuts off (copied once into the
// next block) is a small fraction of the input, small enough that a block
// kept alive by one message's body is cheap.
const lineBlockLen = 1 << 20

// lineBlocks splits its input into lines without copying them: it reads
// into large blocks and hands out each line as a sub-slice of its block.
// A block is never written again once a line of it has been handed out
// (a new block is allocated instead, and the GC frees the old one once
// no message refers to it), so a line stays valid for as long as anyone
// holds it: the pipeline keeps message bodies (events' Raw, quarantined
// records) until their batch is stored. The only copy is of the start of a
// line cut by a block boundary, moved to the front of the next block; a
// line longer than a block gets a buffer of its own, grown up to just over
// the line limit.
type lineBlocks struct {
	br    *bufio.Reader // what detection peeked is buffered here
	under io.Reader     // br's source: read directly once br is drained
	size  int           // block size for new blocks
	buf   []byte        // current block: buf[start:end] is read and not yet handed out
	start int
	end   int
	err   error // from the last read: io.EOF at the end of input
}

func newLineBlocks(br *bufio.Reader, under io.Reader, size int) *lineBlocks {
	if under == nil {
		under = br
	}
	return &lineBlocks{br: br, under: under, size: size}
}

// next returns the next line without its newline, at most limit bytes of it,
// as a slice no later read overwrites (its capacity ends at its length).
// full is the line's real length and, when it is over limit, sum is the
// SHA-256 of the whole line. newline is false at the end of input, where
// the last line (possibly empty) is returned. A read error other than
// io.EOF is returned once the complete lines before it are handed out.
func (r *lineBlocks) next(limit int) (body []byte, full int, newline bool, sum [32]byte, err error) {
	scanned := 0 // bytes of buf[start:end] known to hold no newline
	for {
		if i := bytes.IndexByte(r.buf[r.start+scanned:r.end], '\n'); i >= 0 {
			e := r.start + scanned + i
			line := r.buf[r.start:e:e]
			r.start = e + 1
			body, full, sum = cut(line, limit)
			return body, full, true, sum, nil
		}
		scanned = r.end - r.start
		if scanned > limit {
			return r.skipOversize(limit)
		}
		if r.err != nil {
			if !errors.Is(r.err, io.EOF) {
				return nil, 0, false, sum, r.err
			}
			line := r.buf[r.start:r.end:r.end]
			r.start = r.end
			body, full, sum = cut(line, limit)
			return body, full, false, sum, nil
		}
		r.fill(limit)
	}
}

// cut returns line's first limit bytes, its length and, if it is longer,
// its SHA-256.
func cut(line []byte, limit int) (body []byte, full int, sum [32]byte) {
	if len(line) <= limit {
		return line, len(line), sum
	}
	return line[:limit:limit], len(line), sha256.Sum256(line)
}

// skipOversize finishes a line known to be longer than limit, whose first
// buf[start:end] bytes (more than limit) are read: it keeps the first limit
// bytes and hashes the whole line, reading on to its newline or the end of
// input.
func (r *lineBlocks) skipOversize(limit int) (body []byte, full int, newline bool, sum [32]byte, err error) {
	body = r.buf[r.start : r.start+limit : r.start+limit]
	h := sha256.New()
	h.Write(r.buf[r.start:r.end])
	full = r.end - r.start
	r.start = r.end
	for {
		if i := bytes.IndexByte(r.buf[r.start:r.end], '\n'); i >= 0 {
			h.Write(r.buf[r.start : r.start+i])
			full += i
			r.start += i + 1
			return body, full, true, sumOf(h), nil
		}
		h.Write(r.buf[r.start:r.end])
		full += r.end - r.start
		r.start = r.end
		if r.err != nil {
			if !errors.Is(r.err, io.EOF) {
				return nil, 0, false, sum, r.err
			}
			return body, full, false, sumOf(h), nil
		}
		r.fill(limit)
	}
}

func sumOf(h hash.Hash) (sum [32]byte) {
	h.Sum(sum[:0])
	return sum
}

// fill reads more input after buf[end]. When the block is full it first
// moves the unread buf[start:end] (the start of a line) to the front of a
// new block, doubling the block size while that part fills half of it, up
// to just over limit: a line that long is over the limit whatever follows.
// It sets r.err when the read fails or the input ends.
func (r *lineBlocks) fill(limit int) {
	if r.end == len(r.buf) {
		pending := r.end - r.start
		size := r.size
		for size < 2*pending && size <= limit {
			size *= 2
		}
		// A block need not hold more than the limit and one byte (to see
		// that a line is over it); limit may be math.MaxInt (no limit).
		room := limit
		if limit < math.MaxInt {
			room = limit + 1
		}
		size = min(size, max(r.size, room))
		nb := make([]byte, size)
		copy(nb, r.buf[r.start:r.end])
		r.buf, r.start, r.end = nb, 0, pending
	}
	src := r.under
	if r.br.Buffered() > 0 {
		src = r.br
	}
	for range 100 {
		n, err := src.Read(r.buf[r.end:])
		r.end += n
		if err != nil {
			r.err = err
			return
		}
		if n > 0 {
			return
		}
	}
	r.err = io.ErrNoProgress
}

// rest returns a reader of what is not yet handed out: the unread part of
// the block, then the rest of the input. Nothing is handed out after it.
func (r *lineBlocks) rest() io.Reader {
	unread := bytes.NewReader(r.buf[r.start:r.end])
	r.start = r.end
	if r.err != nil && !errors.Is(r.err, io.EOF) {
		return io.MultiReader(unread, &errReader{r.err})
	}
	return io.MultiReader(unread, r.br)
}

type errReader struct{ err error }

func (e *errReader) Read([]byte) (int, error) { return 0, e.err }
