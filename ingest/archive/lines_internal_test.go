package archive

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"math"
	"strings"
	"testing"
	"testing/iotest"
)

// readLineReference is the line reader lineBlocks replaced (one fresh
// slice per line, copied out of a bufio.Reader): lineBlocks must return
// exactly what it returned.
func readLineReference(br *bufio.Reader, max int) (body []byte, full int, newline bool, sum [32]byte, err error) {
	var h hash.Hash
	for {
		chunk, err := br.ReadSlice('\n')
		n := len(chunk)
		if err == nil && n > 0 {
			chunk = chunk[:n-1] // drop '\n'
		}
		if h == nil && full+len(chunk) > max {
			h = sha256.New()
			h.Write(body)
		}
		if h != nil {
			h.Write(chunk)
		}
		if room := max - len(body); room > 0 {
			body = append(body, chunk[:min(room, len(chunk))]...)
		}
		full += len(chunk)
		if h != nil && (err == nil || errors.Is(err, io.EOF)) {
			h.Sum(sum[:0])
		}
		switch {
		case err == nil:
			return body, full, true, sum, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			return body, full, false, sum, nil
		default:
			return nil, 0, false, sum, err
		}
	}
}

// lineResult is one call's result, compared whole.
type lineResult struct {
	body    string
	full    int
	newline bool
	sum     [32]byte
	err     string
}

func (r lineResult) String() string {
	s := fmt.Sprintf("%q full=%d newline=%v err=%q", r.body, r.full, r.newline, r.err)
	if r.sum != [32]byte{} {
		s += fmt.Sprintf(" sum=%x", r.sum[:4])
	}
	return s
}

func result(body []byte, full int, newline bool, sum [32]byte, err error) lineResult {
	r := lineResult{body: string(body), full: full, newline: newline, sum: sum}
	if err != nil {
		r.err = err.Error()
	}
	return r
}

// readAllBlocks reads input with lineBlocks of block size size, after a
// detection-like Peek of peek bytes, until the end of input or an error.
// It checks that no line handed out changed by the end (blocks are not
// reused) and that each line's capacity ends at its length.
func readAllBlocks(t *testing.T, input io.Reader, size, peek, limit int) []lineResult {
	t.Helper()
	br := bufio.NewReaderSize(input, 16)
	if peek > 0 {
		_, _ = br.Peek(min(peek, 16))
	}
	lb := newLineBlocks(br, input, size)
	var out []lineResult
	var bodies [][]byte
	for range 10000 {
		body, full, newline, sum, err := lb.next(limit)
		if cap(body) != len(body) {
			t.Fatalf("line %d: capacity %d beyond its length %d: an append would overwrite the block", len(out)+1, cap(body), len(body))
		}
		out = append(out, result(body, full, newline, sum, err))
		bodies = append(bodies, body)
		if err != nil || !newline {
			break
		}
	}
	for i, b := range bodies {
		if string(b) != out[i].body {
			t.Fatalf("line %d changed after later reads: %q, was %q", i+1, b, out[i].body)
		}
	}
	return out
}

func readAllReference(input io.Reader, limit int) []lineResult {
	br := bufio.NewReaderSize(input, 16)
	var out []lineResult
	for range 10000 {
		r := result(readLineReference(br, limit))
		out = append(out, r)
		if r.err != "" || !r.newline {
			break
		}
	}
	return out
}

var errRead = errors.New("read failed")

// TestLineBlocks: lines cut by block boundaries, longer than a block,
// over the limit (kept up to it and hashed whole) in and across blocks,
// CRLF, and a last line without newline come out as the reference reader
// returned them, whatever the block size and however the input arrives.
func TestLineBlocks(t *testing.T) {
	long := strings.Repeat("y", 50)
	over := `{"a":"` + strings.Repeat("x", 40) + `"}` // 48 bytes, over limit 20
	sumOver := sha256.Sum256([]byte(over))
	for _, tc := range []struct {
		name  string
		in    string
		limit int
		err   error // returned by the input after in
		want  []lineResult
	}{
		{name: "empty", in: "", limit: 20, want: []lineResult{{}}},
		{name: "lines", in: "{\"a\":1}\n{\"b\":2}\n", limit: 20,
			want: []lineResult{{body: `{"a":1}`, full: 7, newline: true}, {body: `{"b":2}`, full: 7, newline: true}, {}}},
		{name: "crlf kept for the caller to trim", in: "ab\r\ncd\r\n", limit: 20,
			want: []lineResult{{body: "ab\r", full: 3, newline: true}, {body: "cd\r", full: 3, newline: true}, {}}},
		{name: "last line without newline", in: "ab\ncd", limit: 20,
			want: []lineResult{{body: "ab", full: 2, newline: true}, {body: "cd", full: 2}}},
		{name: "blank lines", in: "\n\n \nx\n", limit: 20,
			want: []lineResult{{full: 0, newline: true}, {newline: true}, {body: " ", full: 1, newline: true}, {body: "x", full: 1, newline: true}, {}}},
		{name: "line spanning blocks", in: "0123456789\nabcdefghijklmnopq\nz\n", limit: 40,
			want: []lineResult{{body: "0123456789", full: 10, newline: true}, {body: "abcdefghijklmnopq", full: 17, newline: true}, {body: "z", full: 1, newline: true}, {}}},
		{name: "line longer than a block", in: "a\n" + long + "\nb\n", limit: 64,
			want: []lineResult{{body: "a", full: 1, newline: true}, {body: long, full: 50, newline: true}, {body: "b", full: 1, newline: true}, {}}},
		{name: "line of exactly the limit", in: long[:20] + "\n" + long[:21] + "\n", limit: 20,
			want: []lineResult{{body: long[:20], full: 20, newline: true}, {body: long[:20], full: 21, newline: true, sum: sha256.Sum256([]byte(long[:21]))}, {}}},
		{name: "over-max line", in: "a\n" + over + "\nb\n", limit: 20,
			want: []lineResult{{body: "a", full: 1, newline: true}, {body: over[:20], full: 48, newline: true, sum: sumOver}, {body: "b", full: 1, newline: true}, {}}},
		{name: "over-max last line without newline", in: "a\n" + over, limit: 20,
			want: []lineResult{{body: "a", full: 1, newline: true}, {body: over[:20], full: 48, sum: sumOver}}},
		{name: "over-max line ending in CRLF", in: over + "\r\nb", limit: 20,
			want: []lineResult{{body: over[:20], full: 49, newline: true, sum: sha256.Sum256([]byte(over + "\r"))}, {body: "b", full: 1}}},
		{name: "read error after lines", in: "a\nb", limit: 20, err: errRead,
			want: []lineResult{{body: "a", full: 1, newline: true}, {err: errRead.Error()}}},
		{name: "read error inside an over-max line", in: "a\n" + over, limit: 20, err: errRead,
			want: []lineResult{{body: "a", full: 1, newline: true}, {err: errRead.Error()}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			input := func() io.Reader {
				r := io.Reader(strings.NewReader(tc.in))
				if tc.err != nil {
					r = io.MultiReader(r, iotest.ErrReader(tc.err))
				}
				return r
			}
			if got := readAllReference(input(), tc.limit); fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("reference reader:\n got %v\nwant %v", got, tc.want)
			}
			for _, size := range []int{1, 4, 16, 1 << 20} {
				for _, arrive := range []struct {
					name string
					wrap func(io.Reader) io.Reader
				}{
					{"whole", func(r io.Reader) io.Reader { return r }},
					{"byte by byte", iotest.OneByteReader},
					{"halves", iotest.HalfReader},
				} {
					for _, peek := range []int{0, 16} {
						got := readAllBlocks(t, arrive.wrap(input()), size, peek, tc.limit)
						if fmt.Sprint(got) != fmt.Sprint(tc.want) {
							t.Errorf("block %d, %s, peek %d:\n got %v\nwant %v", size, arrive.name, peek, got, tc.want)
						}
					}
				}
			}
		})
	}
}

// FuzzLineBlocks holds lineBlocks to the reference reader on any input,
// limit and block size.
func FuzzLineBlocks(f *testing.F) {
	f.Add([]byte("{\"a\":1}\n\r\n{\"b\":"), uint8(5), uint8(3))
	f.Add([]byte(strings.Repeat("x", 70)+"\nab\ncd"), uint8(20), uint8(8))
	f.Fuzz(func(t *testing.T, in []byte, limit, size uint8) {
		lim, sz := int(limit)+1, int(size)+1
		want := readAllReference(bytes.NewReader(in), lim)
		got := readAllBlocks(t, iotest.HalfReader(bytes.NewReader(in)), sz, 16, lim)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("limit %d block %d:\n got %v\nwant %v", lim, sz, got, want)
		}
	})
}

// TestLineBlocksNoLimit reads a line longer than a block with the largest
// limit Config accepts (math.MaxInt): the block must grow to hold it. The
// block size was computed as limit+1, which overflowed and left the block
// at its first size, so the read failed with io.ErrNoProgress.
func TestLineBlocksNoLimit(t *testing.T) {
	long := strings.Repeat("x", 3000)
	in := "a\n" + long + "\nb"
	got := readAllBlocks(t, strings.NewReader(in), 1024, 0, math.MaxInt)
	want := readAllReference(strings.NewReader(in), math.MaxInt)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %v\nwant %v", got, want)
	}
}
